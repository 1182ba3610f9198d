//! The consumer loop every case study uses: poll a batch, decode each record, hand it to the
//! service's [`Handler`], and commit the offsets.
//!
//! **When offsets are committed is the delivery guarantee** (the course's "delivery semantics"):
//!
//! * [`DeliveryMode::AtLeastOnce`] (the default): a batch is processed first and its offsets are
//!   committed after. A crash between the two re-delivers the unprocessed (and possibly some
//!   processed) records to the next owner of the partition: nothing is lost, handlers must be
//!   idempotent.
//! * [`DeliveryMode::AtMostOnce`]: a batch's offsets are committed *before* it is processed. A
//!   crash in the middle loses the rest of the batch. It exists to show the difference.
//!
//! A record that cannot be decoded, or that the handler rejects as permanently invalid, is copied
//! to `<topic>.dlq` ([`crate::dlq`]) and the loop moves on; its offset is committed only once the
//! dead letter is acknowledged. A transient error is retried with exponential backoff, so the
//! partition waits rather than skips. On shutdown the loop finishes the record in hand, commits
//! what was processed, and closes the consumer, which leaves the group so its partitions move to
//! the other members at once instead of after a session timeout.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dlq::{self, DeadLetterKind};
use crate::kafka::Kafka;
use crate::metrics::{self, ConsumerLabels};
use crate::producer::EventProducer;

/// When offsets are committed relative to processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeliveryMode {
    /// Process, then commit: nothing lost, duplicates possible after a crash.
    #[default]
    AtLeastOnce,
    /// Commit, then process: no duplicates, records lost after a crash.
    AtMostOnce,
}

/// A decoded record with its coordinates.
#[derive(Debug, Clone)]
pub struct Record<T> {
    pub key: Option<String>,
    pub value: T,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record timestamp (event time for records from [`EventProducer::publish`]).
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl<T> Record<T> {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// How a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The record will never be processable (e.g. fails validation): dead-letter it, move on.
    #[error("permanently invalid: {0}")]
    Permanent(String),
    /// Worth retrying (a database or downstream service is unavailable): retry with backoff.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
}

/// `?` on store, serialization or I/O errors: worth retrying.
impl From<anyhow::Error> for HandlerError {
    fn from(err: anyhow::Error) -> Self {
        HandlerError::Transient(err)
    }
}

/// What a service does with one record. Closures `Fn(Record<T>) -> impl Future` implement it.
pub trait Handler<T>: Send + Sync + 'static {
    fn handle(&self, record: Record<T>) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<T, F, Fut> Handler<T> for F
where
    T: Send + 'static,
    F: Fn(Record<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn handle(&self, record: Record<T>) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self(record)
    }
}

/// What to consume and how.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    pub group_id: String,
    pub topics: Vec<String>,
    pub mode: DeliveryMode,
    /// Most records processed between two commits.
    pub batch_size: usize,
    /// How long a batch waits for more records once it has one.
    pub batch_linger: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Extra librdkafka properties for this consumer (e.g. `session.timeout.ms`).
    pub properties: Vec<(String, String)>,
}

impl ConsumerOptions {
    pub fn new(
        group_id: impl Into<String>,
        topics: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        ConsumerOptions {
            group_id: group_id.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            mode: DeliveryMode::AtLeastOnce,
            batch_size: 500,
            batch_linger: Duration::from_millis(10),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            properties: Vec::new(),
        }
    }

    pub fn mode(mut self, mode: DeliveryMode) -> Self {
        self.mode = mode;
        self
    }

    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    pub fn property(mut self, key: &str, value: &str) -> Self {
        self.properties.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Every property of a profile, e.g. [`crate::kafka::LOW_LATENCY_CONSUMER`].
    pub fn properties(mut self, profile: &[(&str, &str)]) -> Self {
        for (key, value) in profile {
            self = self.property(key, value);
        }
        self
    }
}

/// Live counters of one consumer loop (also exported as Prometheus counters).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub processed: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub retries: AtomicU64,
    /// Partitions currently assigned to this member (updated after every rebalance).
    pub assigned_partitions: AtomicU64,
}

impl ConsumerStats {
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
    pub fn assigned_partitions(&self) -> u64 {
        self.assigned_partitions.load(Ordering::Relaxed)
    }
}

/// Logs rebalances and failed commits: the two things an operator asks about first.
pub struct LoggingContext {
    group_id: String,
    stats: Arc<ConsumerStats>,
}

impl ClientContext for LoggingContext {}

impl ConsumerContext for LoggingContext {
    /// Counts from the events (added on assign, subtracted on revoke), not with
    /// `consumer.assignment()`: that call waits for the consumer's main thread, which never
    /// answers while the consumer is being dropped, and the drop serves the final revoke here.
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let assigned = &self.stats.assigned_partitions;
        match rebalance {
            Rebalance::Assign(tpl) => {
                assigned.fetch_add(tpl.count() as u64, Ordering::Relaxed);
                tracing::info!(group = %self.group_id, partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                let revoked = tpl.count() as u64;
                let _ = assigned.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(revoked))
                });
                tracing::info!(group = %self.group_id, partitions = tpl.count(), "partitions revoked")
            }
            Rebalance::Error(err) => {
                tracing::warn!(group = %self.group_id, %err, "rebalance error")
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(err) = result {
            // At-least-once makes this harmless: the records are re-delivered, never lost.
            tracing::warn!(group = %self.group_id, %err, "offset commit failed");
        }
    }
}

/// A subscribed consumer, ready to [`run`](ConsumerLoop::run).
pub struct ConsumerLoop {
    consumer: StreamConsumer<LoggingContext>,
    dead_letters: EventProducer,
    options: ConsumerOptions,
    stats: Arc<ConsumerStats>,
}

enum Outcome {
    Done,
    Interrupted,
}

impl ConsumerLoop {
    /// Creates the consumer and subscribes to the topics (the group is joined on first poll).
    pub fn new(kafka: &Kafka, options: ConsumerOptions) -> anyhow::Result<Self> {
        // Offsets are committed explicitly, after (or before) processing, never on a timer.
        let config = kafka.group_consumer_config(&options.group_id, &options.properties);
        let stats = Arc::<ConsumerStats>::default();
        let context = LoggingContext {
            group_id: options.group_id.clone(),
            stats: Arc::clone(&stats),
        };
        let consumer: StreamConsumer<LoggingContext> = config.create_with_context(context)?;
        let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(ConsumerLoop {
            consumer,
            dead_letters: EventProducer::new(kafka)?,
            options,
            stats,
        })
    }

    pub fn stats(&self) -> Arc<ConsumerStats> {
        Arc::clone(&self.stats)
    }

    /// Runs until `shutdown` is cancelled; then commits what was processed and leaves the group.
    pub async fn run<T, H>(self, handler: H, shutdown: CancellationToken) -> anyhow::Result<()>
    where
        T: DeserializeOwned + Send + 'static,
        H: Handler<T>,
    {
        tracing::info!(
            group = %self.options.group_id,
            topics = ?self.options.topics,
            mode = ?self.options.mode,
            "consumer started"
        );
        while let Some(batch) = self.next_batch(&shutdown).await {
            if self.options.mode == DeliveryMode::AtMostOnce {
                self.commit(&next_offsets(&batch), CommitMode::Sync);
            }
            let mut processed = HashMap::new();
            let mut interrupted = false;
            for message in &batch {
                match self.process(message, &handler, &shutdown).await {
                    Outcome::Done => {
                        processed.insert(
                            (message.topic().to_owned(), message.partition()),
                            message.offset() + 1,
                        );
                    }
                    Outcome::Interrupted => {
                        interrupted = true;
                        break;
                    }
                }
            }
            if self.options.mode == DeliveryMode::AtLeastOnce {
                let mode = if interrupted {
                    CommitMode::Sync
                } else {
                    CommitMode::Async
                };
                self.commit(&processed, mode);
            }
            if interrupted {
                break;
            }
        }
        let ConsumerLoop {
            consumer,
            dead_letters,
            options,
            ..
        } = self;
        tracing::info!(group = %options.group_id, "consumer stopping: leaving the group");
        // Closing blocks while librdkafka leaves the group; keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            drop(consumer);
            let _ = dead_letters.flush(Duration::from_secs(5));
        })
        .await?;
        Ok(())
    }

    /// Waits for one record, then gathers more until the batch is full or the linger expires.
    async fn next_batch(&self, shutdown: &CancellationToken) -> Option<Vec<OwnedMessage>> {
        let first = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return None,
                received = self.consumer.recv() => match received {
                    Ok(message) => break message.detach(),
                    Err(err) => {
                        tracing::warn!(group = %self.options.group_id, %err, "consumer error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
            }
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + self.options.batch_linger;
        while batch.len() < self.options.batch_size {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => batch.push(message.detach()),
                Ok(Err(err)) => {
                    tracing::warn!(group = %self.options.group_id, %err, "consumer error");
                    break;
                }
                Err(_linger_over) => break,
            }
        }
        Some(batch)
    }

    /// Handles one record until it is processed or dead-lettered (→ `Done`), or shutdown
    /// interrupts a retry (→ `Interrupted`, not committed).
    async fn process<T, H>(
        &self,
        message: &OwnedMessage,
        handler: &H,
        shutdown: &CancellationToken,
    ) -> Outcome
    where
        T: DeserializeOwned + Send + 'static,
        H: Handler<T>,
    {
        let labels = ConsumerLabels {
            topic: message.topic().to_owned(),
            group: self.options.group_id.clone(),
        };
        let mut backoff = self.options.retry_initial;
        loop {
            // Decoding again on each attempt keeps `T: Clone` out of the handler's contract.
            let record = match decode::<T>(message) {
                Ok(record) => record,
                Err(reason) => {
                    return self
                        .dead_letter(message, DeadLetterKind::Decode, &reason, shutdown)
                        .await;
                }
            };
            match handler.handle(record).await {
                Ok(()) => {
                    self.stats.processed.fetch_add(1, Ordering::Relaxed);
                    metrics::client().processed.get_or_create(&labels).inc();
                    return Outcome::Done;
                }
                Err(HandlerError::Permanent(reason)) => {
                    return self
                        .dead_letter(message, DeadLetterKind::Rejected, &reason, shutdown)
                        .await;
                }
                Err(HandlerError::Transient(err)) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    metrics::client().retries.get_or_create(&labels).inc();
                    tracing::warn!(
                        topic = message.topic(), partition = message.partition(), offset = message.offset(),
                        error = %format!("{err:#}"), retry_in = ?backoff, "handler failed; retrying"
                    );
                    if !sleep_unless_shutdown(backoff, shutdown).await {
                        return Outcome::Interrupted;
                    }
                    backoff = (backoff * 2).min(self.options.retry_max);
                }
            }
        }
    }

    /// Sends the record to its DLQ, retrying until the broker acknowledges it: a record is only
    /// committed once it is either processed or safely dead-lettered.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        kind: DeadLetterKind,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let letter = dlq::Letter::new(message, &self.options.group_id, kind, reason);
        let mut backoff = self.options.retry_initial;
        loop {
            match dlq::send(&self.dead_letters, &letter).await {
                Ok(_) => {
                    self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Done;
                }
                Err(err) => {
                    tracing::error!(%err, retry_in = ?backoff, "cannot write dead letter; retrying");
                    if !sleep_unless_shutdown(backoff, shutdown).await {
                        return Outcome::Interrupted;
                    }
                    backoff = (backoff * 2).min(self.options.retry_max);
                }
            }
        }
    }

    /// Commits `offsets` (next offset to read, per partition) for partitions still assigned:
    /// a partition that moved to another member during the batch is that member's to commit.
    fn commit(&self, offsets: &HashMap<(String, i32), i64>, mode: CommitMode) {
        let assignment = self.consumer.assignment().unwrap_or_default();
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in offsets {
            if assignment.find_partition(topic, *partition).is_some() {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
            }
        }
        if tpl.count() > 0
            && let Err(err) = self.consumer.commit(&tpl, mode)
        {
            tracing::warn!(group = %self.options.group_id, %err, "offset commit failed");
        }
    }
}

/// The offset after the last record of each partition in `batch`.
fn next_offsets(batch: &[OwnedMessage]) -> HashMap<(String, i32), i64> {
    let mut offsets = HashMap::new();
    for message in batch {
        offsets.insert(
            (message.topic().to_owned(), message.partition()),
            message.offset() + 1,
        );
    }
    offsets
}

/// Turns a raw message into a [`Record`], or says why it cannot be one (naming the type the
/// payload should have been and where serde found it wrong, see [`json`]).
pub fn decode<T: DeserializeOwned>(message: &OwnedMessage) -> Result<Record<T>, String> {
    decode_with(message, json::<T>)
}

/// [`decode`] with the payload decoded by `payload` (e.g. a type chosen per source topic).
pub fn decode_with<T>(
    message: &OwnedMessage,
    payload: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<Record<T>, String> {
    let key = match message.key() {
        None => None,
        Some(bytes) => Some(
            std::str::from_utf8(bytes)
                .map_err(|err| format!("key is not UTF-8: {err}"))?
                .to_owned(),
        ),
    };
    let bytes = message
        .payload()
        .ok_or_else(|| "record has no payload".to_owned())?;
    let value = payload(bytes)?;
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Record {
        key,
        value,
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        headers,
    })
}

/// Decodes a JSON payload as `T`; the error names `T` and serde's reason with its position,
/// e.g. "payload is not a valid ShowPosition: missing field `show_id` at line 1 column 80".
pub fn json<T: DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    serde_json::from_slice(payload)
        .map_err(|err| format!("payload is not a valid {}: {err}", type_name::<T>()))
}

/// `T`'s name without its module path (`ShowPosition`, not `movieflix::events::ShowPosition`).
pub fn type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    match base.rsplit_once("::") {
        Some((_, name)) if base.len() == full.len() => name,
        _ => full,
    }
}

/// The key a record must have because of what its payload says: the payload's id and the field
/// it comes from (`user_id`). State is kept per key, on the partition the key hashes to, and
/// queried there: a record under another key (or none) would be folded into the wrong task and
/// never found again. See [`check_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadKey<'v> {
    pub field: &'static str,
    pub value: &'v str,
}

impl<'v> PayloadKey<'v> {
    pub fn new(field: &'static str, value: &'v str) -> Self {
        PayloadKey { field, value }
    }
}

/// The one rule for a key that disagrees with its payload, for every stateful processor here:
/// the record is rejected (dead-lettered) with the reason `key "X" does not match user_id "Y"`
/// (`key null …` without a key). Re-keying it instead would hide a producer bug; the dead
/// letter shows it, and `casestudies dlq replay` cannot fix it, the producer must.
pub fn check_key(key: Option<&str>, expected: PayloadKey<'_>) -> Result<(), String> {
    match key {
        Some(key) if key == expected.value => Ok(()),
        Some(key) => Err(format!(
            "key {key:?} does not match {} {:?}",
            expected.field, expected.value
        )),
        None => Err(format!(
            "key null does not match {} {:?}",
            expected.field, expected.value
        )),
    }
}

/// Sleeps for `duration`; `false` if shutdown came first.
async fn sleep_unless_shutdown(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(duration) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_that_disagrees_with_the_payload_is_named_in_the_reason() {
        let expected = PayloadKey::new("user_id", "carl");
        assert_eq!(check_key(Some("carl"), expected), Ok(()));
        assert_eq!(
            check_key(Some("dave"), expected).unwrap_err(),
            r#"key "dave" does not match user_id "carl""#
        );
        assert_eq!(
            check_key(None, expected).unwrap_err(),
            r#"key null does not match user_id "carl""#
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Position {
        user_id: String,
    }

    #[test]
    fn a_json_error_names_the_type_and_where() {
        let err = json::<Position>(br#"{"user": "x"}"#).unwrap_err();
        assert_eq!(
            err,
            "payload is not a valid Position: missing field `user_id` at line 1 column 13"
        );
    }
}
