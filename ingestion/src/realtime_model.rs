//! The query side's copy of `realtime_counts` — a compacted topic, i.e. a table keyed
//! `minute|source|event_type` — materialized in memory by the process that answers queries, then
//! kept current.
//!
//! It reads **every** partition (no consumer group, nothing committed): any instance answers any
//! range of minutes from its own memory. A restart reads the topic again from the beginning;
//! compaction keeps that to about one record per key, and minutes older than
//! [`KEEP_MINUTES`] behind the newest are dropped from memory, so it stays bounded (a day of
//! three sources × a dozen event types is ~50,000 rows).
//!
//! A record that is not a valid [`RealtimeCount`], or whose key is not its
//! `minute|source|event_type`, goes to `realtime_counts.dlq` (application
//! `ingestion-realtime-api`) and is counted. (The follower is MySocialMedia's read-model
//! follower, `mysocialmedia::read_model::follow`, with this module's apply.)

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use shared::consumer::PayloadKey;
use shared::dlq::{self, DeadLetterKind, Letter};
use shared::{EventProducer, Kafka};
use tokio_util::sync::CancellationToken;

use crate::events::{RealtimeCount, Source, count_key, validate_event_type};
use crate::topics::REALTIME_COUNTS;

/// The name on its dead letters and its (never committed) consumer group.
pub const APPLICATION: &str = "ingestion-realtime-api";
/// Minutes kept in memory behind the newest one: a day.
pub const KEEP_MINUTES: i64 = 24 * 60;

/// How far the follower has read, and what it rejected.
#[derive(Debug, Default)]
pub struct Progress {
    caught_up: AtomicBool,
    applied: AtomicU64,
    dead_lettered: AtomicU64,
}

impl Progress {
    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }
}

/// (minute start in ms, source, event type): the table's key, in an order where a range of
/// minutes is a range of the map.
pub type Key = (i64, Source, String);

/// `realtime_counts`, in memory.
#[derive(Debug, Default)]
pub struct RealtimeModel {
    rows: RwLock<BTreeMap<Key, RealtimeCount>>,
    pub progress: Arc<Progress>,
}

impl RealtimeModel {
    /// Starts reading `realtime_counts` from the beginning, until `shutdown`.
    pub async fn start(kafka: &Kafka, shutdown: CancellationToken) -> anyhow::Result<Arc<Self>> {
        let model = Arc::new(RealtimeModel::default());
        let reader = Arc::clone(&model);
        follow(
            kafka,
            &kafka.topic(&REALTIME_COUNTS),
            shutdown,
            Arc::clone(&model.progress),
            move |message| reader.apply(message),
        )
        .await?;
        Ok(model)
    }

    /// Applies one record (a tombstone removes the row).
    fn apply(&self, message: &OwnedMessage) -> Result<(), String> {
        let key = message
            .key()
            .map(std::str::from_utf8)
            .transpose()
            .map_err(|err| format!("key is not UTF-8: {err}"))?;
        let Some(payload) = message.payload() else {
            let key = key.ok_or("a tombstone needs a key")?;
            let mut rows = self.rows.write().expect("realtime model lock");
            rows.retain(|(m, s, t), _| count_key(*m, *s, t) != key);
            return Ok(());
        };
        let row: RealtimeCount = shared::consumer::json(payload)?;
        validate_event_type(&row.event_type)?;
        let minute = row.minute.timestamp_millis();
        let expected = count_key(minute, row.source, &row.event_type);
        shared::consumer::check_key(key, PayloadKey::new("minute|source|event_type", &expected))?;
        if minute % 60_000 != 0 {
            return Err(format!("minute {} is not a minute's start", row.minute));
        }
        self.insert(row);
        Ok(())
    }

    /// Puts `row` in the model (the newest record of its key wins), dropping minutes more than
    /// [`KEEP_MINUTES`] older than it.
    pub fn insert(&self, row: RealtimeCount) {
        let minute = row.minute.timestamp_millis();
        let mut rows = self.rows.write().expect("realtime model lock");
        rows.insert((minute, row.source, row.event_type.clone()), row);
        let oldest = minute - KEEP_MINUTES * 60_000;
        while let Some(entry) = rows.first_entry() {
            if entry.key().0 >= oldest {
                break;
            }
            entry.remove();
        }
    }

    /// The rows with `from ≤ minute < to`, of `source` and `event_type` if given, in (minute,
    /// source, event type) order.
    pub fn range(
        &self,
        from_ms: i64,
        to_ms: i64,
        source: Option<Source>,
        event_type: Option<&str>,
    ) -> Vec<RealtimeCount> {
        let rows = self.rows.read().expect("realtime model lock");
        rows.range((from_ms, Source::Web, String::new())..(to_ms, Source::Web, String::new()))
            .map(|(_, row)| row)
            .filter(|row| source.is_none_or(|s| row.source == s))
            .filter(|row| event_type.is_none_or(|t| row.event_type == t))
            .cloned()
            .collect()
    }

    /// The newest minute with a row, and the newest whose rows are all final.
    pub fn latest_minutes(&self) -> (Option<i64>, Option<i64>) {
        let rows = self.rows.read().expect("realtime model lock");
        let newest = rows.keys().next_back().map(|k| k.0);
        let mut finals: BTreeMap<i64, bool> = BTreeMap::new();
        for ((minute, _, _), row) in rows.iter() {
            *finals.entry(*minute).or_insert(true) &= row.is_final;
        }
        let newest_final = finals.iter().rev().find(|(_, f)| **f).map(|(m, _)| *m);
        (newest, newest_final)
    }

    pub fn len(&self) -> usize {
        self.rows.read().expect("realtime model lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_caught_up(&self) -> bool {
        self.progress.is_caught_up()
    }
}

/// Reads every partition of `topic` from the beginning and hands each record to `apply`, until
/// `shutdown`; a record `apply` refuses goes to `<topic>.dlq` with its reason. `progress` says
/// when what the topic held at the start has been read.
async fn follow(
    kafka: &Kafka,
    topic: &str,
    shutdown: CancellationToken,
    progress: Arc<Progress>,
    mut apply: impl FnMut(&OwnedMessage) -> Result<(), String> + Send + 'static,
) -> anyhow::Result<()> {
    let application = format!("{}{APPLICATION}", kafka.prefix());
    let consumer: StreamConsumer = kafka
        .consumer_config()
        .set("group.id", &application)
        .set("enable.auto.commit", "false")
        .create()?;
    let producer = EventProducer::new(kafka)?;
    let (consumer, ends) = tokio::task::spawn_blocking({
        let topic = topic.to_owned();
        move || -> anyhow::Result<(StreamConsumer, HashMap<i32, i64>)> {
            let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            let partitions = metadata
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len() as i32);
            anyhow::ensure!(partitions > 0, "topic {topic} does not exist");
            let mut tpl = TopicPartitionList::new();
            let mut ends = HashMap::new();
            for p in 0..partitions {
                tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
                let (_, high) =
                    shared::kafka::watermarks(&consumer, &topic, p, Duration::from_secs(30))?;
                if high > 0 {
                    ends.insert(p, high);
                }
            }
            consumer.assign(&tpl)?;
            Ok((consumer, ends))
        }
    })
    .await??;
    if ends.is_empty() {
        progress.caught_up.store(true, Ordering::Relaxed);
    }
    tokio::spawn(async move {
        let mut behind = ends;
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                message = consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message.detach(),
                Err(err) => {
                    tracing::warn!(%err, %application, "consumer error");
                    continue;
                }
            };
            match apply(&message) {
                Ok(()) => {
                    progress.applied.fetch_add(1, Ordering::Relaxed);
                }
                Err(reason) => {
                    let letter =
                        Letter::new(&message, &application, DeadLetterKind::Decode, &reason);
                    while let Err(err) = dlq::send(&producer, &letter).await {
                        tracing::warn!(%err, %application, "dead letter not sent; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    progress.dead_lettered.fetch_add(1, Ordering::Relaxed);
                }
            }
            if behind
                .get(&message.partition())
                .is_some_and(|end| message.offset() + 1 >= *end)
            {
                behind.remove(&message.partition());
                if behind.is_empty() {
                    progress.caught_up.store(true, Ordering::Relaxed);
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    const T0: i64 = 1_767_225_600_000;

    fn row(minute: i64, source: Source, event_type: &str, is_final: bool) -> RealtimeCount {
        RealtimeCount {
            minute: DateTime::from_timestamp_millis(minute).unwrap(),
            source,
            event_type: event_type.into(),
            count: 1,
            distinct_users: 1,
            partitions: 1,
            is_final,
        }
    }

    #[test]
    fn ranges_are_by_minute_then_filtered() {
        let model = RealtimeModel::default();
        model.insert(row(T0, Source::Web, "click", true));
        model.insert(row(T0, Source::Iot, "reading", true));
        model.insert(row(T0 + 60_000, Source::Web, "click", false));
        model.insert(row(T0 + 120_000, Source::Web, "click", false));
        assert_eq!(model.range(T0, T0 + 120_000, None, None).len(), 3);
        assert_eq!(
            model.range(T0, T0 + 60_000, Some(Source::Iot), None).len(),
            1
        );
        assert_eq!(
            model
                .range(T0, T0 + 180_000, Some(Source::Web), Some("click"))
                .len(),
            3
        );
        assert_eq!(
            model.latest_minutes(),
            (Some(T0 + 120_000), Some(T0)),
            "the newest minute, and the newest all-final one"
        );
    }

    #[test]
    fn the_newest_record_of_a_key_wins_and_old_minutes_go() {
        let model = RealtimeModel::default();
        model.insert(row(T0, Source::Web, "click", false));
        let mut last = row(T0, Source::Web, "click", true);
        last.count = 7;
        model.insert(last.clone());
        assert_eq!(model.range(T0, T0 + 1, None, None), vec![last]);
        model.insert(row(
            T0 + (KEEP_MINUTES + 1) * 60_000,
            Source::Web,
            "click",
            false,
        ));
        assert_eq!(
            model.len(),
            1,
            "a day and a minute later, the first minute is gone"
        );
    }
}
