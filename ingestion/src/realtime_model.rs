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
//! `ingestion-realtime-api`) and is counted. (The reader is [`shared::follow`], as for
//! MySocialMedia's feed, with this module's apply.)

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use shared::Kafka;
use shared::consumer::PayloadKey;
use shared::follow::{Progress, follow};
use tokio_util::sync::CancellationToken;

use crate::events::{RealtimeCount, Source, count_key, validate_event_type};
use crate::topics::REALTIME_COUNTS;

/// The name on its dead letters and its (never committed) consumer group.
pub const APPLICATION: &str = "ingestion-realtime-api";
/// Minutes kept in memory behind the newest one: a day.
pub const KEEP_MINUTES: i64 = 24 * 60;

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
            APPLICATION,
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
