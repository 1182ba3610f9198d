//! The stream thread: consume a batch, hand each record to the processor with its task's
//! state, then commit the batch with the changelog protocol of [`super::changelog`].
//!
//! One OS thread per application instance, like a Kafka Streams `StreamThread`: RocksDB and
//! librdkafka's polling are blocking, so they stay off the async runtime. Tasks are keyed by
//! input partition (inputs are co-partitioned); a task is opened — and its state restored — as
//! soon as its partition is assigned, and closed when the partition is revoked. The stream thread
//! also polls the producer itself: it produces only while committing, and flushes right after.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{
    BorrowedMessage, DeliveryResult, Header, Headers, OwnedHeaders, OwnedMessage,
};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use rocksdb::WriteBatch;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::changelog::{self, BATCH_HEADER, Change, Entry, MARKER_KEY, Marker, StoreReplay};
use super::context::{Output, ProcessorContext, RecordMeta};
use super::guarantee::{self, Guarantee};
use super::instances::{self, Announcement, Directory, Route};
use super::metrics::StreamsStats;
use super::state::{Checkpoint, Overlay, StateDb};
use crate::consumer::HandlerError;
use crate::dlq;
use crate::kafka::Kafka;
use crate::topics::{Cleanup, PhysicalTopic, Retention, dlq_name};

/// User code of a streams application.
pub trait Processor: Send + 'static {
    /// The input records' value type (JSON). Undecodable records go to `<topic>.dlq`.
    type Input: DeserializeOwned;

    /// Handles one record. Writes and emits are committed with the batch; on `Err` they are
    /// undone (`Permanent` → dead-letter the record, `Transient` → retry it with backoff).
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: Option<&str>,
        value: Self::Input,
    ) -> Result<(), HandlerError>;

    /// Called every `punctuate_every` (wall clock) for each open task.
    fn punctuate(&mut self, _ctx: &mut ProcessorContext<'_>) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// What a streams application is.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// Names the consumer group, the state directory and the internal topics (prefixed).
    pub application_id: String,
    /// Input topics (full names), co-partitioned.
    pub inputs: Vec<String>,
    /// State store names.
    pub stores: Vec<String>,
    /// Where task databases live: `<state_dir>/<partition>/`.
    pub state_dir: PathBuf,
    pub batch_size: usize,
    pub batch_linger: Duration,
    pub punctuate_every: Option<Duration>,
    /// Extra consumer properties (e.g. `session.timeout.ms`); they override the runtime's
    /// `fetch.wait.max.ms=10`.
    pub consumer_properties: Vec<(String, String)>,
    /// This instance's HTTP endpoint (`http://host:port`), announced to the other instances so
    /// queries for keys it owns reach it (Kafka Streams' `application.server`).
    pub endpoint: Option<String>,
    /// Global tables: `(topic, store)` pairs, each materialized in full on every instance
    /// (read them with `ProcessorContext::global_get`).
    pub global_tables: Vec<(String, String)>,
    /// Internal repartition topics (full names, see [`StreamsConfig::repartition`]): created
    /// with the inputs' partition count. Add them to `inputs` to consume them.
    pub repartitions: Vec<String>,
    /// At-least-once with exact state (default) or exactly-once through Kafka transactions
    /// (see [`super::guarantee`]); `PROCESSING_GUARANTEE` overrides it for every application.
    pub guarantee: Guarantee,
}

impl StreamsConfig {
    /// `application_id` is prefixed with the cluster handle's topic prefix; the state directory
    /// defaults to `$STATE_DIR/<prefixed id>` (`STATE_DIR` defaults to `./state`).
    pub fn new(kafka: &Kafka, application_id: &str, inputs: Vec<String>, stores: &[&str]) -> Self {
        let application_id = format!("{}{application_id}", kafka.prefix());
        let root =
            std::env::var_os("STATE_DIR").map_or_else(|| PathBuf::from("state"), PathBuf::from);
        StreamsConfig {
            state_dir: root.join(&application_id),
            application_id,
            inputs,
            stores: stores.iter().map(|s| (*s).to_owned()).collect(),
            batch_size: 5000,
            batch_linger: Duration::from_millis(20),
            punctuate_every: None,
            consumer_properties: Vec::new(),
            endpoint: None,
            global_tables: Vec::new(),
            repartitions: Vec::new(),
            guarantee: Guarantee::AtLeastOnce,
        }
    }

    /// Declares an internal repartition topic `<app id>-<name>-repartition` and consumes it:
    /// emit records to it under a new key to re-key a stream (e.g. by the join key), and they
    /// come back to the task that owns that key. Returns its name.
    pub fn repartition(&mut self, name: &str) -> String {
        let topic = format!("{}-{name}-repartition", self.application_id);
        self.repartitions.push(topic.clone());
        self.inputs.push(topic.clone());
        topic
    }

    pub fn changelog(&self, store: &str) -> String {
        changelog::changelog_topic(&self.application_id, store)
    }
}

/// Read access to the committed state of the tasks this instance runs (interactive queries).
#[derive(Clone, Default)]
pub struct StoreReader {
    stores: Arc<Vec<String>>,
    tasks: Arc<RwLock<BTreeMap<i32, Arc<StateDb>>>>,
}

impl StoreReader {
    /// A key's committed value in the task of `partition` (`None` if that task is not here):
    /// one lookup, for stores whose key is not the record key (e.g. `user/show` under `user`).
    pub fn get_in<V: DeserializeOwned>(
        &self,
        partition: i32,
        store: &str,
        key: &[u8],
    ) -> anyhow::Result<Option<V>> {
        let index = self.index(store)?;
        let db = self
            .tasks
            .read()
            .expect("tasks lock")
            .get(&partition)
            .cloned();
        match db {
            Some(db) => match db.get(index, key)? {
                Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Entries of `store` with the key prefix, in the task of `partition` only.
    pub fn prefix_in<V: DeserializeOwned>(
        &self,
        partition: i32,
        store: &str,
        prefix: &[u8],
    ) -> anyhow::Result<Vec<(Vec<u8>, V)>> {
        let index = self.index(store)?;
        let end = super::context::prefix_end(prefix);
        let db = self
            .tasks
            .read()
            .expect("tasks lock")
            .get(&partition)
            .cloned();
        let Some(db) = db else {
            return Ok(Vec::new());
        };
        db.range(index, prefix, end.as_deref())?
            .into_iter()
            .map(|(k, v)| Ok((k, serde_json::from_slice(&v)?)))
            .collect()
    }

    /// A key's committed value, from whichever local task holds it.
    pub fn get<V: DeserializeOwned>(&self, store: &str, key: &[u8]) -> anyhow::Result<Option<V>> {
        let index = self.index(store)?;
        for db in self.tasks.read().expect("tasks lock").values() {
            if let Some(bytes) = db.get(index, key)? {
                return Ok(Some(serde_json::from_slice(&bytes)?));
            }
        }
        Ok(None)
    }

    /// Every committed entry of `store` with the given key prefix, over all local tasks.
    pub fn prefix<V: DeserializeOwned>(
        &self,
        store: &str,
        prefix: &[u8],
    ) -> anyhow::Result<Vec<(Vec<u8>, V)>> {
        let index = self.index(store)?;
        let end = super::context::prefix_end(prefix);
        let mut out = Vec::new();
        for db in self.tasks.read().expect("tasks lock").values() {
            for (k, v) in db.range(index, prefix, end.as_deref())? {
                out.push((k, serde_json::from_slice(&v)?));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Partitions whose tasks run here.
    pub fn partitions(&self) -> Vec<i32> {
        self.tasks
            .read()
            .expect("tasks lock")
            .keys()
            .copied()
            .collect()
    }

    fn index(&self, store: &str) -> anyhow::Result<usize> {
        self.stores
            .iter()
            .position(|s| s == store)
            .ok_or_else(|| anyhow::anyhow!("no store named {store:?}"))
    }
}

/// A running streams application.
pub struct StreamsHandle {
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
    pub stats: Arc<StreamsStats>,
    pub stores: StoreReader,
    /// The other instances and the partitions they own.
    pub directory: Directory,
    endpoint: Option<String>,
    input_partitions: i32,
}

impl StreamsHandle {
    /// Where a query for `key` must be answered: here, at another instance, or nowhere yet.
    pub fn route(&self, key: &[u8]) -> Route {
        let partition = instances::partition_for_key(key, self.input_partitions);
        if self.stores.partitions().contains(&partition) {
            return Route::Local;
        }
        match self.directory.owner(partition) {
            Some(endpoint) if Some(&endpoint) != self.endpoint.as_ref() => Route::Remote(endpoint),
            _ => Route::Unavailable,
        }
    }

    /// The input partition of a record key (the task whose stores hold its state).
    pub fn partition_of(&self, key: &[u8]) -> i32 {
        instances::partition_for_key(key, self.input_partitions)
    }

    /// Waits for the stream thread (it stops when the shutdown token is cancelled).
    pub async fn join(self) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || self.thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("stream thread panicked"))?
    }
}

/// Creates the changelog topics (compacted, partitioned like the largest input) and the
/// instances topic; returns the input partition count.
pub async fn provision_internal_topics(
    kafka: &Kafka,
    config: &StreamsConfig,
) -> anyhow::Result<i32> {
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        kafka.client_config().create()?;
    let (_, counts) = crate::provision::partition_counts(&Arc::new(admin)).await?;
    let partitions = config
        .inputs
        .iter()
        .filter(|t| !config.repartitions.contains(t))
        .map(|t| {
            counts
                .get(t)
                .copied()
                .with_context(|| format!("input topic {t} does not exist"))
        })
        .collect::<anyhow::Result<Vec<i32>>>()?
        .into_iter()
        .max()
        .unwrap_or(1);
    let mut topics: Vec<PhysicalTopic> = config
        .stores
        .iter()
        .map(|store| PhysicalTopic {
            name: config.changelog(store),
            partitions,
            retention: Retention::Forever,
            cleanup: Cleanup::Compact,
        })
        .collect();
    topics.extend(config.repartitions.iter().map(|name| PhysicalTopic {
        name: name.clone(),
        partitions,
        retention: Retention::days(1),
        cleanup: Cleanup::Delete,
    }));
    topics.push(PhysicalTopic {
        name: instances::instances_topic(&config.application_id),
        partitions: 1,
        retention: Retention::Forever,
        cleanup: Cleanup::Compact,
    });
    let report = crate::provision::provision_physical(kafka, &topics).await?;
    if let Some((topic, have, want)) = report.under_partitioned.first() {
        bail!(
            "changelog {topic} has {have} partitions but the input has {want}: state would be lost; delete it or fix the input"
        );
    }
    Ok(partitions)
}

/// Provisions the internal topics and starts the stream thread.
pub async fn start<P: Processor>(
    kafka: &Kafka,
    mut config: StreamsConfig,
    processor: P,
    shutdown: CancellationToken,
) -> anyhow::Result<StreamsHandle> {
    if let Some(guarantee) = Guarantee::from_env()? {
        config.guarantee = guarantee;
    }
    if config.guarantee == Guarantee::ExactlyOnce && kafka.is_embedded() {
        bail!(
            "{}: processing guarantee exactly_once_v2 needs a broker that runs transactions; the \
             embedded mock cluster does not hide aborted transactions. Use at_least_once (the \
             default, exact state on any broker) or set KAFKA_BOOTSTRAP_SERVERS",
            config.application_id
        );
    }
    let input_partitions = provision_internal_topics(kafka, &config).await?;
    let stats = Arc::new(StreamsStats::new(&config.application_id));
    let reader = StoreReader {
        stores: Arc::new(config.stores.clone()),
        tasks: Arc::default(),
    };
    let directory = Directory::default();
    let endpoint = config.endpoint.clone();
    let runtime = Runtime::new(
        kafka,
        config,
        Arc::clone(&stats),
        reader.clone(),
        directory.clone(),
    )?;
    let thread = std::thread::Builder::new()
        .name(format!("stream-{}", runtime.config.application_id))
        .spawn(move || runtime.run(processor, shutdown))?;
    Ok(StreamsHandle {
        thread,
        stats,
        stores: reader,
        directory,
        endpoint,
        input_partitions,
    })
}

/// Tracks which input partitions this member owns (updated inside `poll`).
struct GroupContext {
    assigned: Arc<Mutex<BTreeSet<i32>>>,
    /// Partitions revoked since the stream thread last looked: their tasks must be reopened
    /// (and caught up from the changelog) even if they were assigned back meanwhile.
    revoked: Arc<Mutex<BTreeSet<i32>>>,
    application_id: String,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions: BTreeSet<i32> = consumer
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        match rebalance {
            Rebalance::Revoke(tpl) => self
                .revoked
                .lock()
                .expect("revoked lock")
                .extend(tpl.elements().iter().map(|e| e.partition())),
            Rebalance::Error(err) => {
                tracing::warn!(app = %self.application_id, %err, "rebalance error")
            }
            Rebalance::Assign(_) => {}
        }
        tracing::info!(app = %self.application_id, ?partitions, "assignment changed");
        *self.assigned.lock().expect("assigned lock") = partitions;
    }
}

/// Delivery reports: errors, and the offsets of marker records (opaque = marker slot + 1).
#[derive(Default)]
struct AckContext {
    errors: Mutex<Vec<String>>,
    markers: Mutex<HashMap<usize, i64>>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        match result {
            Ok(message) => {
                if slot > 0 {
                    self.markers
                        .lock()
                        .expect("markers lock")
                        .insert(slot - 1, message.offset());
                }
            }
            Err((err, message)) => {
                self.errors
                    .lock()
                    .expect("errors lock")
                    .push(format!("{}: {err}", message.topic()));
            }
        }
    }
}

struct Task {
    partition: i32,
    db: Arc<StateDb>,
    overlay: Overlay,
    outputs: Vec<Output>,
    checkpoint: Checkpoint,
    next_offsets: BTreeMap<String, i64>,
    stream_time: i64,
    epoch: String,
    dirty: bool,
}

impl Task {
    /// The processor's view of this task for one record (or one punctuation).
    fn context<'a>(
        &'a mut self,
        config: &'a StreamsConfig,
        global: Option<&'a super::global::GlobalTables>,
        meta: RecordMeta,
    ) -> ProcessorContext<'a> {
        ProcessorContext {
            application_id: &config.application_id,
            stores: &config.stores,
            db: &self.db,
            global,
            overlay: &mut self.overlay,
            outputs: &mut self.outputs,
            undo: Vec::new(),
            meta,
            stream_time: self.stream_time,
            emitted: 0,
            late_dropped: 0,
        }
    }
}

struct Runtime {
    config: StreamsConfig,
    stats: Arc<StreamsStats>,
    reader: StoreReader,
    consumer: BaseConsumer<GroupContext>,
    restorer: BaseConsumer,
    producer: BaseProducer<AckContext>,
    assigned: Arc<Mutex<BTreeSet<i32>>>,
    revoked: Arc<Mutex<BTreeSet<i32>>>,
    tasks: BTreeMap<i32, Task>,
    directory: Directory,
    instance_id: String,
    /// Reads the instances topic from the beginning (no group).
    announcements: BaseConsumer,
    global: Option<super::global::GlobalTables>,
    /// Next offset per (input topic, partition) of the open tasks, for the lag thread.
    positions: Arc<Mutex<Vec<(String, i32, i64)>>>,
    /// A client for the lag thread's ListOffsets requests (they block: not on this thread).
    lag_client: Option<BaseConsumer>,
}

const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Fetch tuning of the stream thread's consumer and of the restorer, on top of
/// [`crate::kafka::CONSUMER_DEFAULTS`] (`KAFKA_*` variables and
/// `StreamsConfig::consumer_properties` override it).
pub const CONSUMER_TUNING: &[(&str, &str)] = &[
    // The broker may hold a fetch that finds nothing new for `fetch.wait.max.ms` (librdkafka:
    // 500 ms) — the embedded mock cluster does even when records arrive meanwhile, so a stream
    // thread that had caught up on a partition waited up to 500 ms for its next records, and a
    // restore reading to a known end waited that long at the end.
    ("fetch.wait.max.ms", "10"),
];

impl Runtime {
    fn new(
        kafka: &Kafka,
        config: StreamsConfig,
        stats: Arc<StreamsStats>,
        reader: StoreReader,
        directory: Directory,
    ) -> anyhow::Result<Self> {
        let assigned = Arc::new(Mutex::new(BTreeSet::new()));
        let revoked = Arc::new(Mutex::new(BTreeSet::new()));
        // `KAFKA_*` variables override the runtime's tuning, `consumer_properties` override both.
        let mut consumer_config = kafka.group_consumer_config(&config.application_id, &[]);
        kafka.apply_defaults(&mut consumer_config, CONSUMER_TUNING);
        // librdkafka's default, stated: inputs and changelogs are read without the records of
        // aborted transactions (exactly_once_v2 depends on it).
        consumer_config.set("isolation.level", "read_committed");
        for (name, value) in &config.consumer_properties {
            consumer_config.set(name, value);
        }
        let consumer: BaseConsumer<GroupContext> =
            consumer_config.create_with_context(GroupContext {
                assigned: Arc::clone(&assigned),
                revoked: Arc::clone(&revoked),
                application_id: config.application_id.clone(),
            })?;
        let inputs: Vec<&str> = config.inputs.iter().map(String::as_str).collect();
        consumer.subscribe(&inputs)?;
        let mut restorer = kafka.consumer_config();
        kafka.apply_defaults(&mut restorer, CONSUMER_TUNING);
        let restorer: BaseConsumer = restorer
            .set("group.id", format!("{}-restore", config.application_id))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.max.bytes", "67108864")
            .set("max.partition.fetch.bytes", "16777216")
            .create()?;
        let mut producer_config = kafka.producer_config();
        // A commit queues all its records before flushing: nothing to gain from waiting.
        producer_config.set("linger.ms", "0");
        if config.guarantee == Guarantee::ExactlyOnce {
            let id = guarantee::transactional_id(&config.application_id, &config.state_dir)?;
            producer_config.set("transactional.id", &id).set(
                "transaction.timeout.ms",
                guarantee::TRANSACTION_TIMEOUT.as_millis().to_string(),
            );
        }
        let producer: BaseProducer<AckContext> =
            producer_config.create_with_context(AckContext::default())?;
        if config.guarantee == Guarantee::ExactlyOnce {
            // Aborts whatever this instance left open before a crash, and fences its zombie.
            producer
                .init_transactions(FLUSH_TIMEOUT)
                .context("cannot initialise the transactional producer")?;
        }
        let announcements: BaseConsumer = kafka
            .client_config()
            .set("group.id", format!("{}-instances", config.application_id))
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &instances::instances_topic(&config.application_id),
            0,
            Offset::Beginning,
        )?;
        announcements.assign(&tpl)?;
        let global = if config.global_tables.is_empty() {
            None
        } else {
            Some(super::global::GlobalTables::open(
                kafka,
                &config.state_dir.join("global"),
                &config.global_tables,
                &format!("{}-global", config.application_id),
            )?)
        };
        let lag_client: BaseConsumer = kafka
            .client_config()
            .set("group.id", format!("{}-lag", config.application_id))
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Runtime {
            global,
            positions: Arc::default(),
            lag_client: Some(lag_client),
            directory,
            instance_id: uuid::Uuid::new_v4().to_string(),
            announcements,
            config,
            stats,
            reader,
            consumer,
            restorer,
            producer,
            assigned,
            revoked,
            tasks: BTreeMap::new(),
        })
    }

    fn run<P: Processor>(
        mut self,
        mut processor: P,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        tracing::info!(app = %self.config.application_id, inputs = ?self.config.inputs, stores = ?self.config.stores, "stream thread started");
        let mut next_punctuation = self
            .config
            .punctuate_every
            .map(|every| Instant::now() + every);
        let lag_stop = shutdown.child_token();
        let lag_thread = self.lag_client.take().map(|client| {
            let positions = Arc::clone(&self.positions);
            let stats = Arc::clone(&self.stats);
            let stop = lag_stop.clone();
            std::thread::Builder::new()
                .name("streams-lag".into())
                .spawn(move || lag_loop(&client, &positions, &stats, &stop))
        });
        let mut next_lag = Instant::now();
        let result = (|| -> anyhow::Result<()> {
            while !shutdown.is_cancelled() {
                let t0 = Instant::now();
                let batch = self.poll_batch(&shutdown)?;
                let (t1, batch_len) = (Instant::now(), batch.len());
                self.read_announcements();
                if let Some(global) = self.global.as_mut() {
                    global.poll(Duration::ZERO)?;
                }
                self.sync_tasks()?;
                let t2 = Instant::now();
                let interrupted = self.process_batch(&mut processor, batch, &shutdown)?;
                let t3 = Instant::now();
                if let (Some(every), Some(at)) = (self.config.punctuate_every, next_punctuation)
                    && Instant::now() >= at
                {
                    self.punctuate(&mut processor)?;
                    next_punctuation = Some(Instant::now() + every);
                }
                self.commit()?;
                if batch_len > 0 {
                    tracing::trace!(batch_len, poll = ?(t1 - t0), housekeeping = ?(t2 - t1), process = ?(t3 - t2), commit = ?t3.elapsed(), "batch");
                }
                if Instant::now() >= next_lag {
                    self.refresh_lag();
                    next_lag = Instant::now() + Duration::from_secs(5);
                }
                if interrupted {
                    break;
                }
            }
            Ok(())
        })();
        if self.config.endpoint.is_some() {
            let _ = self.announce(None); // withdraw: this instance answers no more queries
        }
        let _ = self.producer.flush(FLUSH_TIMEOUT);
        // Offsets of every committed batch, synchronously: the next owner starts right there.
        let mut offsets = TopicPartitionList::new();
        for task in self.tasks.values() {
            for (topic, offset) in &task.checkpoint.offsets {
                let _ =
                    offsets.add_partition_offset(topic, task.partition, Offset::Offset(*offset));
            }
        }
        // Under exactly_once_v2 they were committed in the batches' transactions.
        if offsets.count() > 0
            && self.config.guarantee == Guarantee::AtLeastOnce
            && let Err(err) = self.consumer.commit(&offsets, CommitMode::Sync)
        {
            tracing::warn!(app = %self.config.application_id, %err, "final offset commit failed");
        }
        self.reader.tasks.write().expect("tasks lock").clear();
        lag_stop.cancel(); // also when the stream thread failed
        if let Some(Ok(thread)) = lag_thread {
            let _ = thread.join();
        }
        match &result {
            Ok(()) => tracing::info!(app = %self.config.application_id, "stream thread stopped"),
            Err(err) => {
                tracing::error!(app = %self.config.application_id, err = format!("{err:#}"), "stream thread failed")
            }
        }
        result
    }

    /// Polls until a batch is full, the linger after the first record expires, or 100 ms pass.
    fn poll_batch(&self, shutdown: &CancellationToken) -> anyhow::Result<Vec<OwnedMessage>> {
        let mut batch = Vec::new();
        let started = Instant::now();
        let mut first_at: Option<Instant> = None;
        while batch.len() < self.config.batch_size && !shutdown.is_cancelled() {
            let waited = first_at.map_or(started.elapsed(), |t| t.elapsed());
            let budget = if first_at.is_some() {
                self.config.batch_linger
            } else {
                Duration::from_millis(100)
            };
            if waited >= budget {
                break;
            }
            match self.consumer.poll(budget - waited) {
                Some(Ok(message)) => {
                    first_at.get_or_insert_with(Instant::now);
                    batch.push(message.detach());
                }
                Some(Err(err)) => {
                    tracing::warn!(app = %self.config.application_id, %err, "consumer error")
                }
                None if first_at.is_none() => break,
                None => {}
            }
        }
        Ok(batch)
    }

    /// Closes the tasks of revoked partitions and opens (restores) those of assigned ones, so
    /// state is ready — and queryable — before the first record arrives.
    fn sync_tasks(&mut self) -> anyhow::Result<()> {
        let assigned = self.assigned.lock().expect("assigned lock").clone();
        let revoked_meanwhile = std::mem::take(&mut *self.revoked.lock().expect("revoked lock"));
        let close: Vec<i32> = self
            .tasks
            .keys()
            .filter(|p| !assigned.contains(p) || revoked_meanwhile.contains(p))
            .copied()
            .collect();
        let mut changed = !close.is_empty();
        for partition in close {
            // State was committed at the end of the previous batch: closing is just dropping.
            self.tasks.remove(&partition);
            self.reader
                .tasks
                .write()
                .expect("tasks lock")
                .remove(&partition);
            tracing::info!(app = %self.config.application_id, partition, "task closed");
        }
        let open: Vec<i32> = assigned
            .into_iter()
            .filter(|p| !self.tasks.contains_key(p))
            .collect();
        if !open.is_empty() {
            self.open_tasks(&open)?;
            changed = true;
        }
        if changed && self.config.endpoint.is_some() {
            let partitions = self.tasks.keys().copied().collect();
            self.announce(Some(partitions))?;
        }
        Ok(())
    }

    /// Updates the lag gauge: log end minus next offset, over this instance's partitions.
    ///
    /// From the end offsets librdkafka caches from fetch responses, not a ListOffsets request
    /// per partition: those block the stream thread (on tansu 0.6 for up to the timeout each,
    /// i.e. a minute per refresh for 64 partitions).
    fn refresh_lag(&self) {
        let mut positions = Vec::new();
        for task in self.tasks.values() {
            for topic in &self.config.inputs {
                let next = task.next_offsets.get(topic).copied().unwrap_or(0);
                positions.push((topic.clone(), task.partition, next));
            }
        }
        *self.positions.lock().expect("positions lock") = positions;
    }

    /// Tells every instance which partitions this one serves (`None`: none any more).
    fn announce(&self, partitions: Option<Vec<i32>>) -> anyhow::Result<()> {
        let topic = instances::instances_topic(&self.config.application_id);
        let payload = match (partitions, &self.config.endpoint) {
            (Some(partitions), Some(endpoint)) => Some(serde_json::to_vec(&Announcement {
                endpoint: endpoint.clone(),
                partitions,
                announced_ms: chrono::Utc::now().timestamp_millis(),
            })?),
            _ => None,
        };
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&topic, 0)
            .key(self.instance_id.as_bytes());
        if let Some(payload) = &payload {
            record = record.payload(payload.as_slice());
        }
        send(&self.producer, record)
    }

    /// Applies the announcements that arrived since the last look (never blocks).
    fn read_announcements(&self) {
        while let Some(result) = self.announcements.poll(Duration::ZERO) {
            match result {
                Ok(message) => {
                    let Some(id) = message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                    else {
                        continue;
                    };
                    let announcement = message
                        .payload()
                        .and_then(|p| serde_json::from_slice(p).ok());
                    self.directory.apply(id, announcement);
                }
                Err(err) => tracing::debug!(%err, "instances topic"),
            }
        }
    }

    /// Processes `batch`; `true` if shutdown interrupted a retry (the rest is left unprocessed).
    fn process_batch<P: Processor>(
        &mut self,
        processor: &mut P,
        batch: Vec<OwnedMessage>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<bool> {
        let assigned = self.assigned.lock().expect("assigned lock").clone();
        for message in batch {
            let partition = message.partition();
            if !assigned.contains(&partition) {
                continue; // revoked while the batch was gathered: the new owner processes it
            }
            if !self.tasks.contains_key(&partition) {
                self.open_tasks(&[partition])?;
            }
            let task = self.tasks.get_mut(&partition).expect("task opened above");
            let next = task.next_offsets.get(message.topic()).copied().unwrap_or(0);
            if message.offset() < next {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                continue; // already in the state (crash or rebalance before the offset commit)
            }
            let timestamp = message.timestamp().to_millis();
            task.stream_time = task.stream_time.max(timestamp.unwrap_or(i64::MIN));
            let mut backoff = Duration::from_millis(100);
            loop {
                let decoded = crate::consumer::decode::<P::Input>(&message);
                let record = match decoded {
                    Ok(record) => record,
                    Err(reason) => {
                        task.outputs.push(dead_letter(
                            &message,
                            dlq::DeadLetterKind::Decode,
                            &reason,
                        ));
                        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                };
                let outputs_before = task.outputs.len();
                let meta = RecordMeta {
                    topic: message.topic().to_owned(),
                    partition,
                    offset: message.offset(),
                    timestamp_ms: timestamp,
                };
                let mut ctx = task.context(&self.config, self.global.as_ref(), meta);
                match processor.process(&mut ctx, record.key.as_deref(), record.value) {
                    Ok(()) => {
                        self.stats
                            .late_dropped
                            .fetch_add(ctx.late_dropped, Ordering::Relaxed);
                        self.stats.processed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(HandlerError::Permanent(reason)) => {
                        ctx.rollback(outputs_before);
                        task.outputs.push(dead_letter(
                            &message,
                            dlq::DeadLetterKind::Rejected,
                            &reason,
                        ));
                        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(HandlerError::Transient(err)) => {
                        ctx.rollback(outputs_before);
                        tracing::warn!(app = %self.config.application_id, error = %format!("{err:#}"), retry_in = ?backoff, "processor failed; retrying");
                        if shutdown.is_cancelled() {
                            return Ok(true);
                        }
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
            match task.next_offsets.get_mut(message.topic()) {
                Some(next) => *next = message.offset() + 1,
                None => {
                    task.next_offsets
                        .insert(message.topic().to_owned(), message.offset() + 1);
                }
            }
            task.dirty = true;
        }
        Ok(false)
    }

    fn punctuate<P: Processor>(&mut self, processor: &mut P) -> anyhow::Result<()> {
        for task in self.tasks.values_mut() {
            let outputs_before = task.outputs.len();
            let meta = RecordMeta {
                topic: String::new(),
                partition: task.partition,
                offset: -1,
                timestamp_ms: None,
            };
            let mut ctx = task.context(&self.config, self.global.as_ref(), meta);
            match processor.punctuate(&mut ctx) {
                Ok(()) => {
                    if !ctx.undo.is_empty() || ctx.outputs.len() > outputs_before {
                        task.dirty = true;
                    }
                }
                Err(err) => {
                    ctx.rollback(outputs_before);
                    tracing::warn!(app = %self.config.application_id, partition = task.partition, %err, "punctuation failed");
                }
            }
        }
        Ok(())
    }

    /// Commits every dirty task: outputs + changelog → markers → RocksDB → input offsets.
    fn commit(&mut self) -> anyhow::Result<()> {
        let dirty: Vec<i32> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.dirty)
            .map(|(p, _)| *p)
            .collect();
        if dirty.is_empty() {
            return Ok(());
        }
        let transactional = self.config.guarantee == Guarantee::ExactlyOnce;
        if transactional {
            self.producer
                .begin_transaction()
                .context("cannot begin a transaction")?;
        }
        let marker_offsets = match self.produce_batch(&dirty) {
            Ok(offsets) => offsets,
            Err(err) if transactional => return self.abort_batch(&dirty, err),
            Err(err) => return Err(err),
        };
        if transactional {
            // 4 before 3: the input offsets commit with the outputs; state is written locally only
            // once the transaction committed (a crash in between: restore replays the markers).
            let committed = self
                .consumer
                .group_metadata()
                .context("no consumer group metadata")
                .and_then(|group| {
                    self.producer
                        .send_offsets_to_transaction(
                            &self.input_offsets(&dirty)?,
                            &group,
                            FLUSH_TIMEOUT,
                        )
                        .context("cannot add the input offsets to the transaction")
                })
                .and_then(|()| {
                    self.producer
                        .commit_transaction(FLUSH_TIMEOUT)
                        .context("cannot commit the transaction")
                });
            if let Err(err) = committed {
                return self.abort_batch(&dirty, err);
            }
        }

        // 3. State and checkpoint, atomically.
        let offsets = self.input_offsets(&dirty)?;
        self.write_state(&dirty, &marker_offsets.0, &marker_offsets.1)?;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);

        // 4. Input offsets (async: a lost commit only means records are skipped on reprocessing).
        if !transactional && let Err(err) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::warn!(app = %self.config.application_id, %err, "offset commit failed");
        }
        Ok(())
    }

    /// The next input offset of every dirty task, to commit.
    fn input_offsets(&self, dirty: &[i32]) -> anyhow::Result<TopicPartitionList> {
        let mut offsets = TopicPartitionList::new();
        for partition in dirty {
            for (topic, offset) in &self.tasks[partition].next_offsets {
                offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
            }
        }
        Ok(offsets)
    }

    /// Steps 1 and 2 of the commit: every dirty task's outputs and changelog records, all
    /// acknowledged, then a marker to every store's changelog. Returns the marker slots
    /// `(partition, store)` and the offset each marker got.
    #[allow(clippy::type_complexity)]
    fn produce_batch(
        &mut self,
        dirty: &[i32],
    ) -> anyhow::Result<(Vec<(i32, String)>, HashMap<usize, i64>)> {
        // 1. Outputs and changelog records, all acknowledged.
        for partition in dirty {
            let task = &self.tasks[partition];
            let batch = format!("{}:{}", task.epoch, task.checkpoint.seq + 1);
            for output in &task.outputs {
                let mut headers = OwnedHeaders::new();
                for (k, v) in &output.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v.as_slice()),
                    });
                }
                let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&output.topic, 0)
                    .headers(headers);
                if let Some(key) = &output.key {
                    record = record.key(key);
                }
                if let Some(payload) = &output.payload {
                    record = record.payload(payload);
                }
                if let Some(ts) = output.timestamp_ms {
                    record = record.timestamp(ts);
                }
                send(&self.producer, record)?;
            }
            for (index, writes) in task.overlay.iter().enumerate() {
                let topic = self.config.changelog(&self.config.stores[index]);
                for (key, value) in writes {
                    let headers = OwnedHeaders::new().insert(Header {
                        key: BATCH_HEADER,
                        value: Some(batch.as_str()),
                    });
                    let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&topic, 0)
                        .partition(task.partition)
                        .key(key.as_slice())
                        .headers(headers);
                    if let Some(value) = value {
                        record = record.payload(value.as_slice());
                    }
                    send(&self.producer, record)?;
                }
            }
        }
        self.flush_acknowledged()?;

        // 2. Markers, to every store's changelog; their offsets become the new positions.
        self.producer
            .context()
            .markers
            .lock()
            .expect("markers lock")
            .clear();
        let mut slots = Vec::new();
        for partition in dirty {
            let task = &self.tasks[partition];
            let marker = Marker {
                batch: format!("{}:{}", task.epoch, task.checkpoint.seq + 1),
                seq: task.checkpoint.seq + 1,
                offsets: task.next_offsets.clone(),
                stream_time: task.stream_time,
            };
            let value = serde_json::to_vec(&marker)?;
            for store in &self.config.stores {
                let topic = self.config.changelog(store);
                let slot = slots.len();
                slots.push((*partition, store.clone()));
                let record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&topic, slot + 1)
                    .partition(task.partition)
                    .key(MARKER_KEY)
                    .payload(value.as_slice());
                send(&self.producer, record)?;
            }
        }
        self.flush_acknowledged()?;
        let marker_offsets = std::mem::take(
            &mut *self
                .producer
                .context()
                .markers
                .lock()
                .expect("markers lock"),
        );
        Ok((slots, marker_offsets))
    }

    /// Step 3 of the commit: each dirty task's state and checkpoint in one RocksDB write batch.
    fn write_state(
        &mut self,
        dirty: &[i32],
        slots: &[(i32, String)],
        marker_offsets: &HashMap<usize, i64>,
    ) -> anyhow::Result<()> {
        for partition in dirty {
            let task = self.tasks.get_mut(partition).expect("dirty task");
            let mut checkpoint = Checkpoint {
                batch: format!("{}:{}", task.epoch, task.checkpoint.seq + 1),
                seq: task.checkpoint.seq + 1,
                offsets: task.next_offsets.clone(),
                stream_time: task.stream_time,
                positions: task.checkpoint.positions.clone(),
            };
            for (slot, (p, store)) in slots.iter().enumerate() {
                if p == partition {
                    let offset = marker_offsets
                        .get(&slot)
                        .copied()
                        .context("marker delivered without an offset")?;
                    checkpoint.positions.insert(store.clone(), offset);
                }
            }
            let mut batch = WriteBatch::default();
            task.db.stage(&mut batch, &task.overlay);
            task.db.commit(batch, &checkpoint)?;
            for writes in &mut task.overlay {
                writes.clear();
            }
            task.outputs.clear();
            task.checkpoint = checkpoint;
            task.dirty = false;
        }
        Ok(())
    }

    /// A transaction failed: abort it and forget the batch. The dirty tasks close without
    /// writing their state; the consumer goes back to their checkpoints, and the tasks reopen
    /// (and catch up from their changelogs, which never show aborted records) in the next loop.
    /// A fatal error — this instance was fenced by a newer one with its transactional id —
    /// stops the stream thread.
    fn abort_batch(&mut self, dirty: &[i32], err: anyhow::Error) -> anyhow::Result<()> {
        let fatal = err.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<KafkaError>(),
                Some(KafkaError::Transaction(e)) if e.is_fatal()
            )
        });
        if fatal {
            return Err(err.context("the transactional producer failed for good (fenced?)"));
        }
        tracing::warn!(app = %self.config.application_id, err = format!("{err:#}"), "transaction failed: aborting it and re-processing the batch");
        self.producer
            .abort_transaction(FLUSH_TIMEOUT)
            .context("cannot abort the transaction")?;
        let _ = std::mem::take(&mut *self.producer.context().errors.lock().expect("errors lock"));
        let mut rewind = TopicPartitionList::new();
        for partition in dirty {
            let Some(task) = self.tasks.remove(partition) else {
                continue;
            };
            self.reader
                .tasks
                .write()
                .expect("tasks lock")
                .remove(partition);
            for topic in &self.config.inputs {
                let offset = task
                    .checkpoint
                    .offsets
                    .get(topic)
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                rewind.add_partition_offset(topic, *partition, offset)?;
            }
        }
        self.consumer
            .seek_partitions(rewind, Duration::from_secs(10))
            .context("cannot rewind the consumer after an aborted transaction")?;
        Ok(())
    }

    fn flush_acknowledged(&self) -> anyhow::Result<()> {
        // Not `Producer::flush`: rust-rdkafka's flush polls in 100 ms steps that always run to
        // the end, which would put 200 ms into every commit. Trigger sending, then poll in
        // 1 ms steps until every delivery report has been served.
        let _ = self.producer.flush(Duration::ZERO);
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        while self.producer.in_flight_count() > 0 {
            if Instant::now() > deadline {
                bail!("records not acknowledged within {FLUSH_TIMEOUT:?}");
            }
            self.producer.poll(Duration::from_millis(1));
        }
        let errors =
            std::mem::take(&mut *self.producer.context().errors.lock().expect("errors lock"));
        if !errors.is_empty() {
            // Nothing of this batch is committed: restarting re-processes it (at-least-once).
            bail!(
                "{} records were not delivered, e.g. {}",
                errors.len(),
                errors[0]
            );
        }
        Ok(())
    }

    /// Opens the tasks of `partitions`, brings their RocksDBs up to date with their changelogs
    /// and adds them to the open tasks. One restore for all of them (every task's changelog
    /// partitions are assigned at once), so fetching one task's changelog overlaps with applying
    /// another's.
    fn open_tasks(&mut self, partitions: &[i32]) -> anyhow::Result<()> {
        let started = Instant::now();
        let stores = self.config.stores.len();
        // Opening a RocksDB writes and syncs a few files (~7 ms here): open them side by side.
        let dbs: Vec<anyhow::Result<StateDb>> = std::thread::scope(|scope| {
            let opening: Vec<_> = partitions
                .iter()
                .map(|partition| {
                    let path = self.config.state_dir.join(partition.to_string());
                    let stores = &self.config.stores;
                    scope.spawn(move || StateDb::open(&path, stores))
                })
                .collect();
            opening
                .into_iter()
                .map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|_| bail!("opening a state store panicked"))
                })
                .collect()
        });
        let mut opening = Vec::with_capacity(partitions.len());
        let mut sources = Vec::with_capacity(partitions.len() * stores);
        for (&partition, db) in partitions.iter().zip(dbs) {
            let db = db?;
            let local = db.checkpoint()?.unwrap_or_default();
            for store in &self.config.stores {
                sources.push(ChangelogSource {
                    topic: self.config.changelog(store),
                    partition,
                    start: local.positions.get(store).map_or(0, |p| p + 1),
                });
            }
            opening.push((partition, db, local));
        }
        // Source `i` is store `i % stores` of task `i / stores`.
        let mut replays: Vec<StoreReplay> =
            sources.iter().map(|_| StoreReplay::default()).collect();
        let mut latest: Vec<LatestValues> =
            sources.iter().map(|_| LatestValues::default()).collect();
        let mut restored = vec![0u64; partitions.len()];
        let mut held = 0usize;
        let ends = read_changelogs(
            &self.restorer,
            &sources,
            &self.stats.restore_remaining,
            |source, entry| {
                for change in replays[source].push(entry) {
                    held += latest[source].insert(change);
                    restored[source / stores] += 1;
                }
                if held >= LatestValues::CHUNK_BYTES {
                    for (index, values) in latest.iter_mut().enumerate() {
                        values.write(&opening[index / stores].1, index % stores)?;
                    }
                    held = 0;
                }
                Ok(())
            },
        )?;

        let mut replays = replays.into_iter();
        for (task, (partition, db, local)) in opening.into_iter().enumerate() {
            let mut markers: Vec<Marker> = Vec::new();
            let mut tails = Vec::with_capacity(stores);
            for index in 0..stores {
                let source = task * stores + index;
                latest[source].write(&db, index)?;
                let replay = replays.next().expect("one replay per source");
                markers.extend(replay.markers.iter().cloned());
                tails.push(replay.into_tail());
            }
            let (apply, repair) = changelog::resolve_tails(tails, &markers);
            let mut batch = WriteBatch::default();
            for (index, changes) in apply.iter().enumerate() {
                for change in changes {
                    db.stage_one(&mut batch, index, &change.key, change.value.as_deref());
                    restored[task] += 1;
                }
            }
            let mut checkpoint = local.clone();
            if let Some(latest) = changelog::latest(&markers).filter(|m| m.seq > local.seq) {
                checkpoint.batch = latest.batch.clone();
                checkpoint.seq = latest.seq;
                checkpoint.offsets = latest.offsets.clone();
                checkpoint.stream_time = latest.stream_time;
            }
            for (index, store) in self.config.stores.iter().enumerate() {
                let end = ends[task * stores + index];
                if end > 0 {
                    checkpoint.positions.insert(store.clone(), end - 1);
                }
            }
            db.commit(batch, &checkpoint)?;

            // Keys whose last changelog record belongs to a batch that never completed: write
            // their real value again in the next batch, so compaction keeps the right one.
            let mut overlay: Overlay = vec![BTreeMap::new(); stores];
            let mut repairs = 0;
            for (index, keys) in repair.into_iter().enumerate() {
                for key in keys {
                    let value = db.get(index, &key)?;
                    overlay[index].insert(key, value);
                    repairs += 1;
                }
            }
            self.stats
                .restored
                .fetch_add(restored[task], Ordering::Relaxed);
            tracing::info!(
                app = %self.config.application_id, partition, restored = restored[task], repairs,
                seq = checkpoint.seq, elapsed = ?started.elapsed(), "task opened"
            );
            let db = Arc::new(db);
            self.reader
                .tasks
                .write()
                .expect("tasks lock")
                .insert(partition, Arc::clone(&db));
            self.tasks.insert(
                partition,
                Task {
                    partition,
                    db,
                    overlay,
                    outputs: Vec::new(),
                    next_offsets: checkpoint.offsets.clone(),
                    stream_time: checkpoint.stream_time,
                    checkpoint,
                    epoch: format!("{:016x}", rand::random::<u64>()),
                    dirty: repairs > 0,
                },
            );
        }
        self.stats
            .restore_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// The latest restored value per key of one store, written to RocksDB in chunks. Until
/// compaction catches up, a changelog holds every update of a key, and only the last one is
/// state: keeping just that one saves RocksDB most of a restore's writes.
#[derive(Default)]
struct LatestValues {
    values: foldhash::HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl LatestValues {
    /// Bounds the memory a restore holds before writing (keys and values as read, over all
    /// the changelogs it reads).
    const CHUNK_BYTES: usize = 32 << 20;

    /// Holds `change`; returns the bytes it added.
    fn insert(&mut self, change: Change) -> usize {
        let bytes = change.key.len() + change.value.as_ref().map_or(0, Vec::len);
        self.values.insert(change.key, change.value);
        bytes
    }

    /// Writes what is held (order between keys does not matter: each key appears once).
    fn write(&mut self, db: &StateDb, store: usize) -> anyhow::Result<()> {
        if self.values.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (key, value) in self.values.drain() {
            db.stage_one(&mut batch, store, &key, value.as_deref());
        }
        db.write(batch)
    }
}

/// One changelog partition a restore reads, from `start`.
struct ChangelogSource {
    topic: String,
    partition: i32,
    start: i64,
}

/// Where the restore of one [`ChangelogSource`] stands.
struct SourceProgress {
    /// The end offset (high watermark) when the restore began: it reads up to there.
    high: i64,
    expected: i64,
    seen: i64,
    /// The record at `high - 1` was read: what follows is only what is already queued.
    draining: bool,
    done: bool,
}

/// Reads every source from its start to its current end with one assignment, calling
/// `on_entry(source index, entry)` for each record (in offset order within a source). Returns
/// each source's end offset (high watermark) read up to.
fn read_changelogs(
    restorer: &BaseConsumer,
    sources: &[ChangelogSource],
    remaining: &prometheus_client::metrics::gauge::Gauge,
    mut on_entry: impl FnMut(usize, Entry) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<i64>> {
    let mut progress = Vec::with_capacity(sources.len());
    let mut tpl = TopicPartitionList::new();
    let mut index: HashMap<(&str, i32), usize> = HashMap::new();
    for (i, source) in sources.iter().enumerate() {
        let (topic, partition) = (source.topic.as_str(), source.partition);
        let (low, high) =
            crate::kafka::watermarks(restorer, topic, partition, Duration::from_secs(30))
                .with_context(|| format!("offsets of changelog {topic}[{partition}]"))?;
        let start = source.start.max(low);
        let done = start >= high;
        if !done {
            tracing::debug!(topic, partition, records = high - start, "restoring");
            remaining.inc_by(high - start);
            tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
            index.insert((topic, partition), i);
        }
        progress.push(SourceProgress {
            high,
            expected: (high - start).max(0),
            seen: 0,
            draining: false,
            done,
        });
    }
    let ends = progress.iter().map(|p| p.high).collect();
    if index.is_empty() {
        return Ok(ends);
    }
    restorer.assign(&tpl)?;
    let mut last_progress = Instant::now();
    let mut last_batch = None;
    let mut last: Option<usize> = None; // the source of the previous record
    let mut undrained = index.len(); // sources still short of their end
    loop {
        // Past the reported end, keep taking what is already queued: some brokers (tansu 0.6)
        // report the end of a multi-record batch as its base offset + 1. The rest of that batch
        // came in the same fetch response as the record at the reported end, so it is queued
        // already: a short wait finds it (waiting 10 ms per task and store was ~15 % of a
        // whole restore).
        let wait = if undrained == 0 {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(500)
        };
        match restorer.poll(wait) {
            Some(Ok(message)) => {
                // Consecutive records mostly come from one partition: skip the lookup then.
                let source = match last {
                    Some(source)
                        if sources[source].partition == message.partition()
                            && sources[source].topic == message.topic() =>
                    {
                        source
                    }
                    _ => match index.get(&(message.topic(), message.partition())) {
                        Some(&source) => source,
                        None => continue, // left over from a previous assignment
                    },
                };
                last = Some(source);
                let p = &mut progress[source];
                last_progress = Instant::now();
                if p.seen < p.expected {
                    remaining.dec();
                }
                p.seen += 1;
                if !p.draining && message.offset() >= p.high - 1 {
                    p.draining = true;
                    undrained -= 1;
                }
                on_entry(source, parse_entry(&message, &mut last_batch)?)?;
            }
            Some(Err(err)) => tracing::warn!(%err, "restore consumer error"),
            None => {
                let positions = restorer.position()?;
                for (source, p) in sources.iter().zip(&mut progress) {
                    if p.done {
                        continue;
                    }
                    let position = positions
                        .find_partition(&source.topic, source.partition)
                        .and_then(|e| e.offset().to_raw())
                        .unwrap_or(-1);
                    if p.draining || position >= p.high {
                        undrained -= usize::from(!p.draining);
                        p.done = true;
                    }
                }
                if progress.iter().all(|p| p.done) {
                    break;
                }
                if last_progress.elapsed() > Duration::from_secs(60) {
                    let (source, p) = sources
                        .iter()
                        .zip(&progress)
                        .find(|(_, p)| !p.done)
                        .expect("a source is not done");
                    bail!(
                        "restore of {}[{}] stalled after {} of {} records",
                        source.topic,
                        source.partition,
                        p.seen,
                        p.expected
                    );
                }
            }
        }
    }
    for p in &progress {
        remaining.dec_by((p.expected - p.seen).max(0)); // compacted-away offsets
    }
    restorer.unassign()?;
    Ok(ends)
}

/// One changelog record as an [`Entry`]. `last_batch` is the batch id of the previous change:
/// consecutive records almost always share it, so it is allocated once per batch, not per record.
fn parse_entry(
    message: &BorrowedMessage<'_>,
    last_batch: &mut Option<Arc<str>>,
) -> anyhow::Result<Entry> {
    let key = message.key().unwrap_or_default();
    if key == MARKER_KEY {
        let marker = serde_json::from_slice(message.payload().unwrap_or_default())
            .context("corrupt marker")?;
        return Ok(Entry::Marker(marker));
    }
    let header = message.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == BATCH_HEADER)
            .and_then(|h| h.value)
    });
    let header = header.map_or(std::borrow::Cow::Borrowed(""), String::from_utf8_lossy);
    let batch = match last_batch {
        Some(batch) if **batch == *header => Arc::clone(batch),
        _ => Arc::clone(last_batch.insert(Arc::from(&*header))),
    };
    Ok(Entry::Change(Change {
        key: key.to_vec(),
        value: message.payload().map(<[u8]>::to_vec),
        batch,
    }))
}

/// Sends a record, waiting for room when the local queue is full.
fn send(
    producer: &BaseProducer<AckContext>,
    mut record: BaseRecord<'_, [u8], [u8], usize>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                // Serve delivery reports to make room (this thread is the producer's poller).
                producer.poll(Duration::from_millis(5));
            }
            Err((err, _)) => return Err(err.into()),
        }
    }
}

/// A dead letter as an output of the batch: acknowledged before the input offset is committed.
fn dead_letter(message: &OwnedMessage, kind: dlq::DeadLetterKind, reason: &str) -> Output {
    dlq::warn(message, kind, reason);
    let headers = dlq::dead_letter_headers(message, kind, reason);
    Output {
        topic: dlq_name(message.topic()),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: message.timestamp().to_millis(),
    }
}

/// Every 5 s: log end offset minus next offset over the published positions (the lag gauge).
/// On its own thread because every ListOffsets request blocks for a round trip — on tansu 0.6
/// for up to the timeout — which would stall processing.
fn lag_loop(
    client: &BaseConsumer,
    positions: &Mutex<Vec<(String, i32, i64)>>,
    stats: &StreamsStats,
    shutdown: &CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let snapshot = positions.lock().expect("positions lock").clone();
        let mut lag = 0i64;
        for (topic, partition, next) in snapshot {
            if shutdown.is_cancelled() {
                return;
            }
            if let Ok((_, high)) =
                client.fetch_watermarks(&topic, partition, Duration::from_secs(1))
            {
                lag += (high - next).max(0); // clamped: tansu under-reports the end
            }
        }
        stats.lag.set(lag);
        for _ in 0..50 {
            if shutdown.is_cancelled() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, value: Option<&str>) -> Change {
        Change {
            key: key.into(),
            value: value.map(Into::into),
            batch: Arc::from("e:1"),
        }
    }

    #[test]
    fn restore_writes_the_last_value_of_each_key_deletions_included() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path(), &["s".to_owned()]).unwrap();
        db.write({
            let mut batch = WriteBatch::default();
            db.stage_one(&mut batch, 0, b"gone", Some(b"old"));
            batch
        })
        .unwrap();
        let mut latest = LatestValues::default();
        let mut held = 0;
        for c in [
            change("a", Some("1")),
            change("b", Some("1")),
            change("a", Some("2")),
            change("gone", None),
            change("b", Some("3")),
        ] {
            held += latest.insert(c);
        }
        // Key + value bytes of each change read ("gone" has no value).
        assert_eq!(held, 2 + 2 + 2 + 4 + 2);
        latest.write(&db, 0).unwrap();
        assert_eq!(db.get(0, b"a").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(db.get(0, b"b").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(db.get(0, b"gone").unwrap(), None);
        assert!(latest.values.is_empty(), "written and emptied");
    }
}
