//! A follower: a query side's own copy of a compacted topic (a table), kept current in memory.
//!
//! [`follow`] reads **every** partition of the topic from the beginning, with no consumer group
//! membership and nothing committed: every instance builds the whole table and answers any query
//! from its own memory, with no fan-out. A restart reads the topic again; compaction keeps that
//! to about one record per key. A record the caller's `apply` refuses goes to `<topic>.dlq` with
//! its reason, so a bad record is never lost silently. [`Progress`] says when the follower has
//! read what the topic held when it started (a readiness check) and counts what it applied and
//! rejected.
//!
//! Used by MySocialMedia's feed and trending board and by Ingestion's realtime API.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::dlq::{self, DeadLetterKind, Letter};
use crate::{EventProducer, Kafka};

/// How far a follower has read, and what it rejected.
#[derive(Debug, Default)]
pub struct Progress {
    caught_up: AtomicBool,
    applied: AtomicU64,
    dead_lettered: AtomicU64,
}

impl Progress {
    /// Whether the follower has read what the topic held when it started.
    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }
    /// Records applied so far.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }
    /// Records `apply` refused, sent to the dead-letter topic.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }
}

/// Reads every partition of `topic` from the beginning and hands each record to `apply`, until
/// `shutdown`; a record `apply` refuses goes to `<topic>.dlq` with its reason, named
/// `application` (prefixed with the [`Kafka`] prefix, like a streams application; also the
/// consumer's `group.id`, never joined nor committed). `progress` says when what the topic held
/// at the start has been read. Returns once the partitions are assigned; the reading goes on in
/// a task.
pub async fn follow(
    kafka: &Kafka,
    topic: &str,
    application: &str,
    shutdown: CancellationToken,
    progress: Arc<Progress>,
    mut apply: impl FnMut(&OwnedMessage) -> Result<(), String> + Send + 'static,
) -> anyhow::Result<()> {
    let application = format!("{}{application}", kafka.prefix());
    let consumer: StreamConsumer = kafka
        .consumer_config()
        .set("group.id", &application)
        .set("enable.auto.commit", "false")
        .create()?;
    let producer = EventProducer::new(kafka)?;
    // Where "caught up" is: the end of each partition now.
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
                    crate::kafka::watermarks(&consumer, &topic, p, Duration::from_secs(30))?;
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
                    // Retried until the broker takes it: a bad record is never lost silently.
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
                    tracing::info!(%application, topic = message.topic(), "caught up");
                }
            }
        }
    });
    Ok(())
}
