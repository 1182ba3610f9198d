//! The sink's loop: consume, check, buffer per partition, write a file, then commit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use parquet::schema::types::Type;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::layout::{FileRange, TimestampSource};
use super::store::Created;
use super::{AnalyticsRow, Column, SinkConfig, SinkStats, Value};
use crate::dlq::{self, DeadLetterKind};
use crate::producer::EventProducer;

/// Remembers revoked partitions so the sink drops their unwritten rows (the next owner re-reads
/// them from the committed offset), and that a rebalance happened (another member may have
/// written files meanwhile, so the listing of the store is read again).
pub(super) struct RebalanceContext {
    pub revoked: Arc<Mutex<BTreeSet<i32>>>,
    pub rebalanced: Arc<AtomicBool>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = self.revoked.lock().expect("revoked lock");
            for element in tpl.elements() {
                revoked.insert(element.partition());
            }
        }
        self.rebalanced.store(true, Ordering::Relaxed);
    }
}

/// A file being filled: one partition, one folder, a contiguous offset range.
pub(super) struct OpenFile {
    encoded: String,
    /// The first row's timestamp (ms), for `rotate.interval.ms`.
    first_ts: i64,
    start: i64,
    end: i64,
    rows: Vec<Vec<Value>>,
    /// The records' bytes, for `buffer.max.bytes`.
    bytes: usize,
    opened: Instant,
}

/// The services' check of a record, applied before it is stored.
pub(super) type Validator<R> = Box<dyn Fn(&R) -> Result<(), String> + Send>;

/// Why a file is committed now (a label of `analytics_sink_files_total`-style logs).
#[derive(Debug, Clone, Copy)]
enum Why {
    FlushSize,
    Rotation,
    Schedule,
    Memory,
    Stop,
}

pub(super) struct Sink<R> {
    pub config: SinkConfig,
    pub schema: Arc<Type>,
    pub columns: Vec<Column>,
    pub producer: EventProducer,
    pub runtime: tokio::runtime::Handle,
    pub consumer: BaseConsumer<RebalanceContext>,
    pub revoked: Arc<Mutex<BTreeSet<i32>>>,
    pub rebalanced: Arc<AtomicBool>,
    pub open: BTreeMap<i32, OpenFile>,
    /// Per partition: the next offset not yet in a file (from the file names).
    pub durable: HashMap<i32, i64>,
    /// The store's file names, read once per rebalance.
    pub listing: Option<HashMap<i32, i64>>,
    /// Bytes held in `open`.
    pub buffered: usize,
    pub stats: SinkStats,
    pub validate: Validator<R>,
}

impl<R: AnalyticsRow> Sink<R> {
    pub fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(topic = %self.config.topic, store = %self.config.store, "sink started");
        let mut last_schedule_check = Instant::now();
        let result = (|| -> anyhow::Result<()> {
            while !shutdown.is_cancelled() {
                let polled = self
                    .consumer
                    .poll(Duration::from_millis(100))
                    .map(|result| result.map(|message| message.detach()));
                // A rebalance runs inside `poll`: drop revoked partitions' rows first.
                self.after_rebalance();
                match polled {
                    Some(Ok(message)) => self.handle(message, &shutdown)?,
                    Some(Err(err)) => tracing::warn!(%err, "sink consumer"),
                    None => {}
                }
                // The clock is read every 50 ms, not per record (it showed in profiles).
                if let Some(interval) = self.config.rotate_schedule_interval
                    && last_schedule_check.elapsed() >= Duration::from_millis(50)
                {
                    last_schedule_check = Instant::now();
                    let due: Vec<i32> = self
                        .open
                        .iter()
                        .filter(|(_, f)| f.opened.elapsed() >= interval)
                        .map(|(p, _)| *p)
                        .collect();
                    for partition in due {
                        self.close(partition, Why::Schedule, &shutdown)?;
                    }
                }
            }
            // Graceful stop: everything read so far becomes durable and committed.
            let partitions: Vec<i32> = self.open.keys().copied().collect();
            for partition in partitions {
                self.close(partition, Why::Stop, &CancellationToken::new())?;
            }
            Ok(())
        })();
        let _ = self.producer.flush(Duration::from_secs(10));
        tracing::info!(topic = %self.config.topic, "sink stopped");
        result
    }

    fn after_rebalance(&mut self) {
        if !self.rebalanced.swap(false, Ordering::Relaxed) {
            return;
        }
        self.listing = None;
        let revoked = std::mem::take(&mut *self.revoked.lock().expect("revoked lock"));
        for partition in revoked {
            // Not committed, so not lost: whoever owns the partition next re-reads these rows.
            if let Some(open) = self.open.remove(&partition) {
                self.buffered -= open.bytes;
            }
            self.durable.remove(&partition);
        }
    }

    /// The next offset of `partition` not yet in a file.
    fn durable(&mut self, partition: i32) -> anyhow::Result<i64> {
        if let Some(next) = self.durable.get(&partition) {
            return Ok(*next);
        }
        if self.listing.is_none() {
            let listing = self.runtime.block_on(super::recovery::recover(
                &self.config.store,
                &self.config.layout,
                &self.config.topic,
                self.config.generation,
            ))?;
            self.listing = Some(listing);
        }
        let next = self
            .listing
            .as_ref()
            .and_then(|l| l.get(&partition).copied())
            .unwrap_or(0);
        self.durable.insert(partition, next);
        Ok(next)
    }

    fn handle(
        &mut self,
        message: OwnedMessage,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let partition = message.partition();
        let offset = message.offset();
        self.stats.read.inc();
        if offset < self.durable(partition)? {
            self.stats.skipped.inc();
            return Ok(()); // already in a file: written before a crash, not yet committed
        }
        let checked = crate::consumer::decode::<R>(&message)
            .map_err(|reason| (DeadLetterKind::Decode, reason))
            .and_then(|record| {
                match record.value.key() {
                    Some(expected) => crate::consumer::check_key(record.key.as_deref(), expected),
                    None => Ok(()),
                }
                .and_then(|()| {
                    record
                        .value
                        .check_timestamp(message.timestamp().to_millis())
                })
                .and_then(|()| (self.validate)(&record.value))
                .map(|()| record.value)
                .map_err(|reason| (DeadLetterKind::Rejected, reason))
            });
        let row = match checked {
            Ok(row) => Some(row),
            Err((kind, reason)) => {
                let letter = dlq::Letter::new(&message, &self.config.group_id, kind, &reason);
                // Acknowledged before the offset can be committed with the next file.
                self.runtime
                    .block_on(dlq::send(&self.producer, &letter))
                    .map_err(|err| anyhow::anyhow!("dead-lettering a record: {err:#}"))?;
                self.stats.dead_lettered.inc();
                None
            }
        };
        let size = message.payload().map_or(0, <[u8]>::len) + 64;
        let Some(row) = row else {
            // A dead letter extends the open file's range (or opens an empty one), so the
            // offset is committed with the next file.
            match self.open.get_mut(&partition) {
                Some(open) => open.end = offset,
                None => {
                    self.open
                        .insert(partition, OpenFile::new(String::new(), 0, offset));
                }
            }
            return Ok(());
        };
        let at = match self.config.layout.timestamps {
            TimestampSource::RecordField => row.event_time(),
            TimestampSource::Record => message
                .timestamp()
                .to_millis()
                .and_then(DateTime::from_timestamp_millis)
                .unwrap_or_else(|| row.event_time()),
            TimestampSource::Wallclock => Utc::now(),
        };
        let ts = at.timestamp_millis();
        let encoded = self.config.layout.encode_partition(partition, at);
        if let Some(open) = self.open.get(&partition)
            && !open.rows.is_empty()
        {
            let rotate = open.encoded != encoded
                || self
                    .config
                    .rotate_interval
                    .is_some_and(|i| ts - open.first_ts >= i.as_millis() as i64);
            if rotate {
                failpoint("rotation");
                self.close(partition, Why::Rotation, shutdown)?;
            }
        }
        let open = self
            .open
            .entry(partition)
            .or_insert_with(|| OpenFile::new(encoded.clone(), ts, offset));
        if open.rows.is_empty() {
            open.encoded = encoded;
            open.first_ts = ts;
        }
        let mut values = row.values();
        values.push(Value::Int32(partition));
        values.push(Value::Int64(offset));
        open.rows.push(values);
        open.end = offset;
        open.bytes += size;
        self.buffered += size;
        if open.rows.len() >= self.config.flush_size {
            self.close(partition, Why::FlushSize, shutdown)?;
        }
        while self.buffered > self.config.buffer_max_bytes {
            let Some(largest) = self
                .open
                .iter()
                .max_by_key(|(_, f)| f.bytes)
                .map(|(p, _)| *p)
            else {
                break;
            };
            self.close(largest, Why::Memory, shutdown)?;
        }
        Ok(())
    }

    /// Writes the partition's open file (create-if-absent), then commits the offset after it.
    fn close(
        &mut self,
        partition: i32,
        why: Why,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let Some(open) = self.open.remove(&partition) else {
            return Ok(());
        };
        self.buffered -= open.bytes;
        if !open.rows.is_empty() {
            let range = FileRange {
                partition,
                start: open.start,
                end: open.end,
                generation: self.config.generation,
            };
            let path = self
                .config
                .layout
                .file_path(&self.config.topic, &open.encoded, range);
            let bytes = Bytes::from(super::parquet::encode(
                &self.schema,
                &self.columns,
                &open.rows,
            )?);
            failpoint("before-upload");
            let mut backoff = Duration::from_millis(100);
            let created = loop {
                match self
                    .runtime
                    .block_on(self.config.store.create(&path, bytes.clone()))
                {
                    Ok(created) => break created,
                    Err(err) if !shutdown.is_cancelled() => {
                        tracing::warn!(
                            error = format!("{err:#}"),
                            "sink upload failed; retrying in {backoff:?}"
                        );
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                    Err(err) => return Err(err),
                }
            };
            if created == Created::AlreadyThere {
                // The same range, written before a crash: the names say so, nothing is lost.
                tracing::warn!(%path, "file already in the store: kept as it is");
                self.stats.skipped.inc_by(open.rows.len() as u64);
            } else {
                self.stats.files.inc();
                self.stats.rows.inc_by(open.rows.len() as u64);
                self.stats.bytes.inc_by(bytes.len() as u64);
            }
            tracing::debug!(%path, rows = open.rows.len(), ?why, "file committed to the store");
            failpoint("after-upload");
        }
        self.durable.insert(partition, open.end + 1);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.config.topic, partition, Offset::Offset(open.end + 1))?;
        // A lost commit costs nothing but re-reading: the file names say what is written.
        if let Err(err) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(%err, partition, "sink offset commit failed");
        }
        failpoint("after-commit");
        Ok(())
    }
}

impl OpenFile {
    fn new(encoded: String, first_ts: i64, start: i64) -> Self {
        OpenFile {
            encoded,
            first_ts,
            start,
            end: start,
            rows: Vec::new(),
            bytes: 0,
            opened: Instant::now(),
        }
    }
}

/// A crash on purpose, for the tests that kill the sink at awkward moments:
/// `ANALYTICS_SINK_CRASH=<point>:<n>` aborts the process (no destructor, no commit, like a
/// SIGKILL) the `n`-th time the sink reaches `point` — `before-upload`, `after-upload` (the
/// file is in the store, its offset not committed), `after-commit`, or `rotation` (a record
/// for another folder or interval arrived; the open file is not written yet).
fn failpoint(point: &str) {
    static CRASH: OnceLock<Option<(String, std::sync::atomic::AtomicU64)>> = OnceLock::new();
    let crash = CRASH.get_or_init(|| {
        let value = std::env::var("ANALYTICS_SINK_CRASH").ok()?;
        let (point, n) = value.split_once(':')?;
        Some((
            point.to_owned(),
            std::sync::atomic::AtomicU64::new(n.parse().ok()?),
        ))
    });
    if let Some((at, left)) = crash
        && at == point
        && left.fetch_sub(1, Ordering::Relaxed) == 1
    {
        eprintln!("ANALYTICS_SINK_CRASH: aborting at {point}");
        std::process::abort();
    }
}
