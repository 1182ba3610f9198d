//! The analytics sink: a topic → Apache Parquet files, partitioned by event date and hour, the
//! way Kafka Connect's S3/HDFS sinks lay them out (`date=YYYY-MM-DD/hour=H/…`, the hour without a
//! leading zero so engines type it as an integer every time: [`partition_dir`]), so DuckDB,
//! Spark or pandas read the directory as one table:
//!
//! ```sql
//! SELECT show_id, count(*) FROM read_parquet('analytics/**/*.parquet', hive_partitioning = true)
//! GROUP BY ALL;
//! ```
//!
//! Exactly-once rows without transactions, like the HDFS connector: every file holds one
//! *contiguous* offset range of one partition and is named after it
//! (`<topic>+<partition>+<first>-<last>.parquet`). A file is written under a temporary name,
//! fsynced, renamed, and its directory fsynced; only then is `last + 1` committed to the group.
//! After a crash the committed offset may lag the files, so when a partition is (re)assigned the
//! sink reads the largest `last` from the file names and skips records up to it: nothing is lost
//! (uncommitted records are re-read) and nothing is written twice (records already in a file are
//! skipped). Leftover temporary files are deleted.
//!
//! Offsets belong to one cluster: on a new, empty broker the sink starts a new *generation* of
//! file names (`….g<n>.parquet`) and keeps the old files ([`bind_to_cluster`]).
//!
//! A file is closed when the next record belongs to another date/hour (event times are mostly in
//! order per partition), when it holds `max_rows` rows, or when it is `max_age` old.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Datelike, Timelike, Utc};
use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::dlq::{self, DeadLetterKind};
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
}

/// Where and how often to write.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Consumer group (a sink is a consumer group, like a Connect sink connector).
    pub group_id: String,
    /// The topic (full name).
    pub topic: String,
    /// Root of the table (`ANALYTICS_DIR`).
    pub dir: PathBuf,
    /// Close a file at this many rows…
    pub max_rows: usize,
    /// …or when its first row is this old (bounds how stale the store is).
    pub max_age: Duration,
    pub consumer_properties: Vec<(String, String)>,
    /// Which cluster's offsets the file names hold ([`bind_to_cluster`]; 0 for the first
    /// cluster the directory saw).
    pub generation: u32,
}

impl SinkConfig {
    pub fn new(group_id: String, topic: String, dir: PathBuf) -> Self {
        SinkConfig {
            group_id,
            topic,
            dir,
            max_rows: 50_000,
            max_age: Duration::from_secs(10),
            consumer_properties: Vec::new(),
            generation: 0,
        }
    }
}

/// What the sink did, per sink (consumer group), also on `/metrics`.
#[derive(Debug, Clone)]
pub struct SinkStats {
    /// Rows written to durable files.
    pub rows: Counter,
    pub files: Counter,
    /// Records skipped because a file already held them (re-read after a crash).
    pub skipped: Counter,
    /// Dead letters acknowledged (in-process; on `/metrics` they are
    /// `kafka_records_dead_lettered_total{application=<group>}`, see [`crate::dlq`]).
    pub dead_lettered: Counter,
}

impl SinkStats {
    fn new(sink: &str) -> Self {
        static FAMILIES: OnceLock<[Family<SinkLabels, Counter>; 3]> = OnceLock::new();
        let families = FAMILIES.get_or_init(|| {
            let families: [Family<SinkLabels, Counter>; 3] = Default::default();
            for (family, (name, help)) in families.iter().zip([
                (
                    "analytics_sink_rows",
                    "Rows written to durable Parquet files",
                ),
                ("analytics_sink_files", "Parquet files written"),
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
        let [rows, files, skipped] = families
            .each_ref()
            .map(|f| f.get_or_create(&labels).clone());
        SinkStats {
            rows,
            files,
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

/// Starts the sink on its own thread (Parquet encoding and fsync are blocking). Call from
/// within a Tokio runtime: dead letters are produced through it.
///
/// `validate` is the services' own check of a record (the same function the API and the
/// processors call): a record it rejects is dead-lettered with its reason, not stored, so the
/// analytics store never holds a fact the services refused.
pub async fn start<R: AnalyticsRow>(
    kafka: &Kafka,
    mut config: SinkConfig,
    validate: impl Fn(&R) -> Result<(), String> + Send + 'static,
    shutdown: CancellationToken,
) -> anyhow::Result<SinkHandle> {
    std::fs::create_dir_all(&config.dir)
        .with_context(|| format!("creating {}", config.dir.display()))?;
    let identity = crate::cluster::identity(kafka).await?;
    config.generation = bind_to_cluster(&config.dir, &config.topic, &identity)?;
    let revoked = Arc::new(Mutex::new(BTreeSet::new()));
    let consumer: BaseConsumer<RevocationContext> = kafka
        .group_consumer_config(&config.group_id, &config.consumer_properties)
        .create_with_context(RevocationContext {
            revoked: Arc::clone(&revoked),
        })?;
    consumer.subscribe(&[&config.topic])?;
    let stats = SinkStats::new(&config.group_id);
    let sink = Sink::<R> {
        schema: Arc::new(schema::<R>(&config.topic)?),
        columns: R::columns(),
        producer: EventProducer::new(kafka)?,
        runtime: tokio::runtime::Handle::current(),
        consumer,
        revoked,
        open: BTreeMap::new(),
        durable: HashMap::new(),
        stats: stats.clone(),
        config,
        validate: Box::new(validate),
    };
    let thread = std::thread::Builder::new()
        .name("analytics-sink".into())
        .spawn(move || sink.run(shutdown))?;
    Ok(SinkHandle { thread, stats })
}

/// Remembers revoked partitions so the sink drops their unwritten rows (the next owner re-reads
/// them from the committed offset).
struct RevocationContext {
    revoked: Arc<Mutex<BTreeSet<i32>>>,
}

impl ClientContext for RevocationContext {}

impl ConsumerContext for RevocationContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = self.revoked.lock().expect("revoked lock");
            for element in tpl.elements() {
                revoked.insert(element.partition());
            }
        }
    }
}

/// A file being filled: one partition, one date/hour, a contiguous offset range.
struct OpenFile {
    bucket: (i32, u32, u32, u32),
    first: i64,
    last: i64,
    rows: Vec<Vec<Value>>,
    opened: Instant,
}

struct Sink<R> {
    config: SinkConfig,
    schema: Arc<Type>,
    columns: Vec<Column>,
    producer: EventProducer,
    runtime: tokio::runtime::Handle,
    consumer: BaseConsumer<RevocationContext>,
    revoked: Arc<Mutex<BTreeSet<i32>>>,
    open: BTreeMap<i32, OpenFile>,
    /// Per partition: the next offset not yet in a file (from the file names).
    durable: HashMap<i32, i64>,
    stats: SinkStats,
    validate: Validator<R>,
}

/// The services' check of a record, applied before it is stored.
type Validator<R> = Box<dyn Fn(&R) -> Result<(), String> + Send>;

impl<R: AnalyticsRow> Sink<R> {
    fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(topic = %self.config.topic, dir = %self.config.dir.display(), "analytics sink started");
        let result = (|| -> anyhow::Result<()> {
            while !shutdown.is_cancelled() {
                let polled = self
                    .consumer
                    .poll(Duration::from_millis(100))
                    .map(|result| result.map(|message| message.detach()));
                // A rebalance runs inside `poll`: drop revoked partitions' rows first.
                self.forget_revoked();
                match polled {
                    Some(Ok(message)) => self.handle(message)?,
                    Some(Err(err)) => tracing::warn!(%err, "analytics sink consumer"),
                    None => {}
                }
                let stale: Vec<i32> = self
                    .open
                    .iter()
                    .filter(|(_, f)| f.opened.elapsed() >= self.config.max_age)
                    .map(|(p, _)| *p)
                    .collect();
                for partition in stale {
                    self.close(partition)?;
                }
            }
            // Graceful stop: everything read so far becomes durable and committed.
            let partitions: Vec<i32> = self.open.keys().copied().collect();
            for partition in partitions {
                self.close(partition)?;
            }
            Ok(())
        })();
        let _ = self.producer.flush(Duration::from_secs(10));
        tracing::info!(topic = %self.config.topic, "analytics sink stopped");
        result
    }

    fn forget_revoked(&mut self) {
        let revoked = std::mem::take(&mut *self.revoked.lock().expect("revoked lock"));
        for partition in revoked {
            // Not committed, so not lost: whoever owns the partition next re-reads these rows.
            self.open.remove(&partition);
            self.durable.remove(&partition);
        }
    }

    fn handle(&mut self, message: OwnedMessage) -> anyhow::Result<()> {
        let partition = message.partition();
        let offset = message.offset();
        let durable = match self.durable.get(&partition) {
            Some(next) => *next,
            None => {
                let next = recover(
                    &self.config.dir,
                    &self.config.topic,
                    self.config.generation,
                    partition,
                )?;
                self.durable.insert(partition, next);
                next
            }
        };
        if offset < durable {
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
                    .context("dead-lettering a record")?;
                self.stats.dead_lettered.inc();
                None
            }
        };
        let bucket = row.as_ref().map(|r| bucket(r.event_time()));
        if let (Some(open), Some(bucket)) = (self.open.get(&partition), bucket)
            && open.bucket != bucket
            && !open.rows.is_empty()
        {
            self.close(partition)?;
        }
        let open = self.open.entry(partition).or_insert_with(|| OpenFile {
            bucket: bucket.unwrap_or((0, 0, 0, 0)),
            first: offset,
            last: offset,
            rows: Vec::new(),
            opened: Instant::now(),
        });
        if let (Some(row), Some(bucket)) = (row, bucket) {
            if open.rows.is_empty() {
                open.bucket = bucket;
            }
            let mut values = row.values();
            values.push(Value::Int32(partition));
            values.push(Value::Int64(offset));
            open.rows.push(values);
        }
        open.last = offset;
        if open.rows.len() >= self.config.max_rows {
            self.close(partition)?;
        }
        Ok(())
    }

    /// Writes the partition's open file durably, then commits the offset after it.
    fn close(&mut self, partition: i32) -> anyhow::Result<()> {
        let Some(open) = self.open.remove(&partition) else {
            return Ok(());
        };
        if !open.rows.is_empty() {
            let dir = self.config.dir.join(partition_dir(open.bucket));
            let name = file_name(
                &self.config.topic,
                self.config.generation,
                partition,
                open.first,
                open.last,
            );
            write_file(&dir, &name, &self.schema, &self.columns, &open.rows)?;
            self.stats.files.inc();
            self.stats.rows.inc_by(open.rows.len() as u64);
            tracing::debug!(file = %dir.join(&name).display(), rows = open.rows.len(), "parquet file written");
        }
        self.durable.insert(partition, open.last + 1);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.config.topic, partition, Offset::Offset(open.last + 1))?;
        // A lost commit costs nothing but re-reading: the file names say what is written.
        if let Err(err) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(%err, partition, "analytics sink offset commit failed");
        }
        Ok(())
    }
}

fn bucket(at: DateTime<Utc>) -> (i32, u32, u32, u32) {
    (at.year(), at.month(), at.day(), at.hour())
}

/// The directory of an event time's bucket: `date=YYYY-MM-DD/hour=H`, the hour *without* a
/// leading zero (0–23). Query engines guess a partition column's type from the folder names
/// they see; `hour=07` reads as text to engines that keep leading zeros while `hour=13` reads
/// as a number, so with zero-padding the column's type depended on which hours a run happened
/// to have. `hour=7` is the same integer to every engine in every run (to be explicit, DuckDB:
/// `hive_types = {'date': DATE, 'hour': INTEGER}`).
pub fn partition_dir((year, month, day, hour): (i32, u32, u32, u32)) -> PathBuf {
    PathBuf::from(format!("date={year:04}-{month:02}-{day:02}")).join(format!("hour={hour}"))
}

/// [`partition_dir`] of an event time.
pub fn partition_dir_of(at: DateTime<Utc>) -> PathBuf {
    partition_dir(bucket(at))
}

/// `<topic>+<partition>+<first>-<last>.parquet`, offsets zero-padded so names sort by offset;
/// from the second cluster the directory sees on, `….g<generation>.parquet` ([`bind_to_cluster`]).
pub fn file_name(topic: &str, generation: u32, partition: i32, first: i64, last: i64) -> String {
    format!(
        "{topic}+{partition}+{first:020}-{last:020}{}",
        file_suffix(generation)
    )
}

fn file_suffix(generation: u32) -> String {
    match generation {
        0 => ".parquet".to_owned(),
        g => format!(".g{g}.parquet"),
    }
}

/// The next offset of `partition` not yet in a file of this `generation`, from the file names
/// under `dir` (0 if none); deletes the partition's leftover temporary files.
pub fn recover(dir: &Path, topic: &str, generation: u32, partition: i32) -> anyhow::Result<i64> {
    let prefix = format!("{topic}+{partition}+");
    let suffix = file_suffix(generation);
    let mut next = 0;
    for path in files_under(dir)? {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') && name.contains(&prefix) && name.ends_with(".tmp") {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            continue;
        }
        let Some(range) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(&suffix))
        else {
            continue;
        };
        // Another generation's name (`….g2` before `.parquet`) does not parse as an offset.
        if let Some((_, last)) = range.split_once('-')
            && let Ok(last) = last.parse::<i64>()
        {
            next = next.max(last + 1);
        }
    }
    Ok(next)
}

/// Ties the sink's files of `topic` under `dir` to the cluster `identity` (the stamp
/// `<dir>/.<topic>.cluster`: identity and generation) and returns the generation to write.
///
/// File names hold offsets, which mean something only on the cluster that assigned them: on a
/// new, empty broker (the embedded one after a restart) offsets start at 0 again, and the old
/// names would make the sink skip the new records as "already written". The files themselves
/// are facts and stay; a new cluster gets the next generation, whose names alone say where to
/// resume. Files without a stamp are treated as another cluster's (at worst rows are written
/// again, never lost).
pub fn bind_to_cluster(dir: &Path, topic: &str, identity: &str) -> anyhow::Result<u32> {
    let stamp = dir.join(format!(".{topic}.cluster"));
    let recorded = match std::fs::read_to_string(&stamp) {
        Ok(text) => {
            let (generation, recorded) = text.trim().split_once(' ').with_context(|| {
                format!("{}: expected \"<generation> <cluster>\"", stamp.display())
            })?;
            let generation: u32 = generation
                .parse()
                .with_context(|| format!("{}: bad generation", stamp.display()))?;
            Some((generation, recorded.to_owned()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err).with_context(|| format!("reading {}", stamp.display())),
    };
    let generation = match recorded {
        Some((generation, recorded)) if recorded == identity => return Ok(generation),
        Some((generation, recorded)) => {
            tracing::warn!(
                dir = %dir.display(), topic,
                "analytics files of {topic} were written from {recorded}, but the broker is \
                 {identity}: they stay, and new files start generation {} (their offsets are \
                 this cluster's)",
                generation + 1
            );
            generation + 1
        }
        None => {
            let prefix = format!("{topic}+");
            let unstamped = files_under(dir)?.iter().any(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".parquet"))
            });
            if unstamped {
                tracing::warn!(
                    dir = %dir.display(), topic,
                    "analytics files of {topic} do not say which cluster they came from: they \
                     stay, and new files start generation 1"
                );
            }
            u32::from(unstamped)
        }
    };
    let tmp = dir.join(format!(".{topic}.cluster.tmp"));
    std::fs::write(&tmp, format!("{generation} {identity}"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &stamp).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(generation)
}

/// Every file below `dir` (the `date=…/hour=…` tree).
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

fn schema<R: AnalyticsRow>(topic: &str) -> anyhow::Result<Type> {
    use parquet::basic::{LogicalType, Repetition, TimeUnit, Type as Physical};
    let mut columns = R::columns();
    columns.push(Column::required("kafka_partition", ColumnType::Int32));
    columns.push(Column::required("kafka_offset", ColumnType::Int64));
    let fields = columns
        .iter()
        .map(|c| {
            let (physical, logical) = match c.ty {
                ColumnType::Utf8 => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
                ColumnType::Int32 => (Physical::INT32, None),
                ColumnType::Int64 => (Physical::INT64, None),
                ColumnType::Double => (Physical::DOUBLE, None),
                ColumnType::Bool => (Physical::BOOLEAN, None),
                ColumnType::TimestampMillis => (
                    Physical::INT64,
                    Some(LogicalType::timestamp(true, TimeUnit::MILLIS)),
                ),
            };
            let repetition = if c.optional {
                Repetition::OPTIONAL
            } else {
                Repetition::REQUIRED
            };
            Type::primitive_type_builder(c.name, physical)
                .with_logical_type(logical)
                .with_repetition(repetition)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let name: String = topic
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Ok(Type::group_type_builder(&name)
        .with_fields(fields)
        .build()?)
}

/// Writes `rows` to `dir/name` durably: temporary file, fsync, rename, fsync the directory.
fn write_file(
    dir: &Path,
    name: &str,
    schema: &Arc<Type>,
    columns: &[Column],
    rows: &[Vec<Value>],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let properties = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut writer = SerializedFileWriter::new(file, Arc::clone(schema), properties)?;
    let mut group = writer.next_row_group()?;
    let mut index = 0;
    let extra = [
        Column::required("kafka_partition", ColumnType::Int32),
        Column::required("kafka_offset", ColumnType::Int64),
    ];
    let all: Vec<&Column> = columns.iter().chain(extra.iter()).collect();
    while let Some(mut column) = group.next_column()? {
        let spec = all[index];
        let cells = rows.iter().map(|row| &row[index]);
        let definition: Vec<i16> = cells
            .clone()
            .map(|v| i16::from(!matches!(v, Value::Null)))
            .collect();
        let levels = spec.optional.then_some(definition.as_slice());
        // The non-null cells of the column, as the writer's type.
        fn cells_as<'r, T>(
            cells: impl Iterator<Item = &'r Value>,
            name: &str,
            extract: impl Fn(&Value) -> Option<T>,
        ) -> anyhow::Result<Vec<T>> {
            cells
                .filter(|v| !matches!(v, Value::Null))
                .map(|v| {
                    extract(v).ok_or_else(|| {
                        anyhow::anyhow!("column {name} holds a value of another type")
                    })
                })
                .collect()
        }
        let name = spec.name;
        match spec.ty {
            ColumnType::Utf8 => {
                let values = cells_as(cells, name, |v| match v {
                    Value::Utf8(s) => Some(ByteArray::from(s.as_str())),
                    _ => None,
                })?;
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&values, levels, None)?;
            }
            ColumnType::Int32 => {
                let values = cells_as(cells, name, |v| match v {
                    Value::Int32(n) => Some(*n),
                    _ => None,
                })?;
                column
                    .typed::<Int32Type>()
                    .write_batch(&values, levels, None)?;
            }
            ColumnType::Int64 | ColumnType::TimestampMillis => {
                let values = cells_as(cells, name, |v| match v {
                    Value::Int64(n) | Value::TimestampMillis(n) => Some(*n),
                    _ => None,
                })?;
                column
                    .typed::<Int64Type>()
                    .write_batch(&values, levels, None)?;
            }
            ColumnType::Double => {
                let values = cells_as(cells, name, |v| match v {
                    Value::Double(n) => Some(*n),
                    _ => None,
                })?;
                column
                    .typed::<DoubleType>()
                    .write_batch(&values, levels, None)?;
            }
            ColumnType::Bool => {
                let values = cells_as(cells, name, |v| match v {
                    Value::Bool(b) => Some(*b),
                    _ => None,
                })?;
                column
                    .typed::<BoolType>()
                    .write_batch(&values, levels, None)?;
            }
        }
        column.close()?;
        index += 1;
    }
    group.close()?;
    let file = writer.into_inner()?;
    file.sync_all()
        .with_context(|| format!("fsync {}", tmp.display()))?;
    drop(file);
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    // The rename itself is durable only once the directory entry is.
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_folders_are_integers_without_leading_zeros() {
        for (hour, expected) in [
            (0, "date=2026-11-02/hour=0"),
            (7, "date=2026-11-02/hour=7"),
            (13, "date=2026-11-02/hour=13"),
        ] {
            let at: DateTime<Utc> = format!("2026-11-02T{hour:02}:30:00Z").parse().unwrap();
            let dir = partition_dir_of(at);
            assert_eq!(dir, PathBuf::from(expected));
            // Every hour folder's value reads back as the same integer: one type in every run.
            let value = dir.to_str().unwrap().rsplit_once("hour=").unwrap().1;
            assert_eq!(value.parse::<u32>().unwrap().to_string(), value);
        }
    }

    #[test]
    fn recovery_reads_the_largest_offset_from_file_names_and_removes_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let hour = dir.path().join("date=2026-11-22/hour=7");
        std::fs::create_dir_all(&hour).unwrap();
        for (p, first, last) in [(3, 0, 9), (3, 10, 41), (4, 0, 99)] {
            std::fs::write(hour.join(file_name("t", 0, p, first, last)), b"x").unwrap();
        }
        let tmp = hour.join(format!(".{}.tmp", file_name("t", 0, 3, 42, 50)));
        std::fs::write(&tmp, b"partial").unwrap();
        assert_eq!(recover(dir.path(), "t", 0, 3).unwrap(), 42);
        assert!(!tmp.exists(), "a crash's temporary file is removed");
        assert_eq!(recover(dir.path(), "t", 0, 4).unwrap(), 100);
        assert_eq!(recover(dir.path(), "t", 0, 5).unwrap(), 0);
        assert_eq!(
            recover(dir.path(), "t", 0, 30).unwrap(),
            0,
            "partition 3's files are not partition 30's"
        );
        // Another cluster's generation starts from its own files only.
        std::fs::write(hour.join(file_name("t", 1, 3, 0, 4)), b"x").unwrap();
        assert_eq!(recover(dir.path(), "t", 1, 3).unwrap(), 5);
        assert_eq!(recover(dir.path(), "t", 0, 3).unwrap(), 42);
        assert_eq!(recover(dir.path(), "t", 2, 3).unwrap(), 0);
    }

    #[test]
    fn a_new_cluster_starts_a_new_generation_and_keeps_the_old_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(bind_to_cluster(dir.path(), "t", "cluster A").unwrap(), 0);
        assert_eq!(
            bind_to_cluster(dir.path(), "t", "cluster A").unwrap(),
            0,
            "same cluster"
        );
        let old = dir.path().join(file_name("t", 0, 0, 0, 9));
        std::fs::write(&old, b"x").unwrap();
        assert_eq!(bind_to_cluster(dir.path(), "t", "cluster B").unwrap(), 1);
        assert!(old.exists(), "facts stay");
        assert_eq!(bind_to_cluster(dir.path(), "t", "cluster B").unwrap(), 1);
        assert_eq!(bind_to_cluster(dir.path(), "t", "cluster A").unwrap(), 2);
        // Files from before stamps: another generation, so nothing is skipped.
        let unstamped = tempfile::tempdir().unwrap();
        std::fs::write(unstamped.path().join(file_name("u", 0, 0, 0, 9)), b"x").unwrap();
        assert_eq!(
            bind_to_cluster(unstamped.path(), "u", "cluster A").unwrap(),
            1
        );
        assert_eq!(
            bind_to_cluster(unstamped.path(), "v", "cluster A").unwrap(),
            0
        );
    }
}
