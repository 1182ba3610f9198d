//! The sink: a topic → Apache Parquet files in an object store (a local directory or any
//! S3-compatible store, through the `object_store` crate), laid out the way Kafka Connect's S3
//! sink lays them out ([`layout`]):
//!
//! ```text
//! <topics.dir>/<topic>/date=YYYY-MM-DD/hour=H/<topic>+<partition>+<start offset>+<end offset>.parquet
//! ```
//!
//! so DuckDB, Spark or pandas read a topic's folder as one table:
//!
//! ```sql
//! SELECT show_id, count(*) FROM read_parquet('analytics/movieflix.show_positions/**/*.parquet', hive_partitioning = true)
//! GROUP BY ALL;
//! ```
//!
//! It is configured in code ([`SinkConfig::new`]: MovieFlix's and GetTaxi's analytics sinks) or
//! from a Connect-style `.properties` file ([`SinkConfig::from_properties`]: `flush.size`,
//! `rotate.interval.ms`, `rotate.schedule.interval.ms`, `store.url`, `s3.bucket.name`,
//! `topics.dir`, `path.format`, …: the ingestion case study's S3 sink).
//!
//! **Exactly once without transactions.** Every file holds one *contiguous* offset range of
//! one partition and is named after it. It is written with a create-if-absent put, which is
//! atomic on every store (a reader sees the whole file or nothing) and never replaces an
//! object; only then is `end + 1` committed to the group. After a crash the committed offset
//! may lag the files, so when a partition is (re)assigned the sink lists the topic's files,
//! takes the largest end offset, and skips records up to it: nothing is lost (uncommitted
//! records are re-read) and nothing is written twice (records already in a file are skipped,
//! and a replayed range can only meet its own name, which the store refuses to replace).
//!
//! Offsets belong to one cluster: on a new, empty broker the sink starts a new *generation* of
//! file names (`….g<n>.parquet`) and keeps the old files ([`recovery::bind_to_cluster`]).
//!
//! A file is committed when the next record belongs to another folder (time bucket), at
//! `flush.size` records, when a record's timestamp is `rotate.interval.ms` past the file's
//! first, when the file has been open `rotate.schedule.interval.ms` by the wall clock, when the
//! records buffered across every partition pass `buffer.max.bytes` (the largest file first:
//! memory stays bounded whatever the number of partitions), and on a graceful stop.
//!
//! The limit: a sink member that stalls longer than the group's session timeout while another
//! takes its partitions over can still write the range it held (a *zombie*); Kafka Connect's
//! S3 sink has the same window. The files stay correct row by row but may overlap.

mod args;
pub mod config;
pub mod layout;
pub mod parquet;
pub mod recovery;
mod sink;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

pub use args::{Analytics, AnalyticsArgs};
pub use config::SinkConfig;
pub use store::Store;

use crate::kafka::Kafka;
use crate::producer::EventProducer;

/// A column's physical type in the Parquet file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Utf8,
    Int32,
    Int64,
    Double,
    Bool,
    /// Milliseconds since the epoch, UTC (Parquet `TIMESTAMP(MILLIS, true)`).
    TimestampMillis,
}

/// One column of the table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    pub optional: bool,
}

impl Column {
    pub const fn required(name: &'static str, ty: ColumnType) -> Self {
        Column {
            name,
            ty,
            optional: false,
        }
    }
    pub const fn optional(name: &'static str, ty: ColumnType) -> Self {
        Column {
            name,
            ty,
            optional: true,
        }
    }
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Utf8(String),
    Int32(i32),
    Int64(i64),
    Double(f64),
    Bool(bool),
    TimestampMillis(i64),
}

/// A record type the sink can write: its JSON form on the topic, its columns, its event time.
pub trait AnalyticsRow: DeserializeOwned + Send + 'static {
    /// The table's columns (the sink appends `kafka_partition` and `kafka_offset`).
    fn columns() -> Vec<Column>;
    /// This record's cells, in `columns()` order.
    fn values(&self) -> Vec<Value>;
    /// Decides the `date=`/`hour=` directory.
    fn event_time(&self) -> DateTime<Utc>;
    /// The key the record must have (the same rule as the stateful processors',
    /// [`crate::consumer::check_key`]): a record under another key is dead-lettered, not stored.
    fn key(&self) -> Option<crate::consumer::PayloadKey<'_>> {
        None
    }
    /// A rule on the Kafka record's timestamp (ms), for tables whose other readers depend on it
    /// (a record the speed layer refuses must not be counted by the batch layer): `Err` is the
    /// reason the record is dead-lettered. None by default.
    fn check_timestamp(&self, record_timestamp_ms: Option<i64>) -> Result<(), String> {
        let _ = record_timestamp_ms;
        Ok(())
    }
}

/// What the sink did, per sink (consumer group), also on `/metrics`.
#[derive(Debug, Clone)]
pub struct SinkStats {
    /// Records read from the topic.
    pub read: Counter,
    /// Rows written to durable files.
    pub rows: Counter,
    pub files: Counter,
    /// Bytes of the files written.
    pub bytes: Counter,
    /// Records skipped because a file already held them (re-read after a crash).
    pub skipped: Counter,
    /// Dead letters acknowledged (in-process; on `/metrics` they are
    /// `kafka_records_dead_lettered_total{application=<group>}`, see [`crate::dlq`]).
    pub dead_lettered: Counter,
}

impl SinkStats {
    fn new(sink: &str) -> Self {
        static FAMILIES: OnceLock<[Family<SinkLabels, Counter>; 5]> = OnceLock::new();
        let families = FAMILIES.get_or_init(|| {
            let families: [Family<SinkLabels, Counter>; 5] = Default::default();
            for (family, (name, help)) in families.iter().zip([
                ("analytics_sink_records_read", "Records read from the topic"),
                (
                    "analytics_sink_rows",
                    "Rows written to durable Parquet files",
                ),
                ("analytics_sink_files", "Parquet files written"),
                ("analytics_sink_bytes", "Bytes of the Parquet files written"),
                (
                    "analytics_sink_skipped",
                    "Records skipped: already in a file (re-read after a crash)",
                ),
            ]) {
                crate::metrics::register(name, help, family.clone());
            }
            families
        });
        let labels = SinkLabels {
            sink: sink.to_owned(),
        };
        let [read, rows, files, bytes, skipped] = families
            .each_ref()
            .map(|f| f.get_or_create(&labels).clone());
        SinkStats {
            read,
            rows,
            files,
            bytes,
            skipped,
            dead_lettered: Counter::default(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

/// A running sink.
pub struct SinkHandle {
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
    pub stats: SinkStats,
}

impl SinkHandle {
    /// Waits for the sink thread (it closes its open files and commits when `shutdown` fires).
    pub async fn join(self) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || self.thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("sink thread panicked"))?
    }
}

/// Starts the sink on its own thread (Parquet encoding is CPU work, and the consumer is a
/// blocking one; the store is reached through the runtime). Call from within a Tokio runtime:
/// dead letters are produced through it.
///
/// `validate` is the services' own check of a record (the same function the API and the
/// processors call): a record it rejects is dead-lettered with its reason, not stored, so the
/// store never holds a fact the services refused.
pub async fn start<R: AnalyticsRow>(
    kafka: &Kafka,
    mut config: SinkConfig,
    validate: impl Fn(&R) -> Result<(), String> + Send + 'static,
    shutdown: CancellationToken,
) -> anyhow::Result<SinkHandle> {
    let identity = crate::cluster::identity(kafka).await?;
    config.generation =
        recovery::bind_to_cluster(&config.store, &config.layout, &config.topic, &identity)
            .await
            .with_context(|| format!("binding {} to the cluster", config.store))?;
    let revoked = Arc::new(Mutex::new(BTreeSet::new()));
    let rebalanced = Arc::new(AtomicBool::new(false));
    let consumer: BaseConsumer<sink::RebalanceContext> = kafka
        .group_consumer_config(&config.group_id, &config.consumer_properties)
        .create_with_context(sink::RebalanceContext {
            revoked: Arc::clone(&revoked),
            rebalanced: Arc::clone(&rebalanced),
        })?;
    consumer.subscribe(&[&config.topic])?;
    let stats = SinkStats::new(&config.group_id);
    let sink = sink::Sink::<R> {
        schema: Arc::new(parquet::schema::<R>(&config.topic)?),
        columns: R::columns(),
        producer: EventProducer::new(kafka)?,
        runtime: tokio::runtime::Handle::current(),
        consumer,
        revoked,
        rebalanced,
        open: BTreeMap::new(),
        durable: HashMap::new(),
        listing: None,
        buffered: 0,
        stats: stats.clone(),
        config,
        validate: Box::new(validate),
    };
    let thread = std::thread::Builder::new()
        .name("analytics-sink".into())
        .spawn(move || sink.run(shutdown))?;
    Ok(SinkHandle { thread, stats })
}

/// Every file below a local `dir`, sorted (for readers of a local store: tests, GetTaxi's
/// stored fares).
pub fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}
