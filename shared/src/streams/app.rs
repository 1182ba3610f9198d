//! The stream thread: consume a batch, hand each record to the processor with its task's
//! state, then commit the batch with the changelog protocol of [`super::changelog`].
//!
//! One OS thread per application instance, like a Kafka Streams `StreamThread`: RocksDB and
//! librdkafka's polling are blocking, so they stay off the async runtime. Tasks are keyed by
//! input partition (inputs are co-partitioned); a task is opened — and its state restored — as
//! soon as its partition is assigned, and closed when the partition is revoked. The stream thread
//! also polls the producer itself: it produces only while committing, and flushes right after.
//!
//! This file holds the thread's loop; the rest of the runtime lives beside it: the application's
//! [`super::processor`] and configuration, [`super::query`] (interactive queries and the running
//! application's handle), `task` (a task, and the rebalance listener), `commit` (the commit
//! protocol and the producer), `restore` (opening tasks from their changelogs), `lag` (the lag
//! gauge) and [`super::instances`] (announcing which partitions this instance serves).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::commit::AckContext;
use super::context::RecordMeta;
use super::guarantee::{self, Guarantee};
use super::instances::{self, Directory};
use super::lag::lag_loop;
use super::metrics::StreamsStats;
use super::order;
use super::processor::{Processor, StreamsConfig};
use super::query::{StoreReader, StreamsHandle};
use super::restore;
use super::task::{GroupContext, Task};
use crate::kafka::Kafka;
use crate::topics::{Cleanup, PhysicalTopic, Retention};

/// The partition count of an application's tasks: that of its largest input (repartition
/// topics excluded: they are created with this count), from `counts` (topic → partitions).
pub fn input_partitions(
    config: &StreamsConfig,
    counts: &std::collections::HashMap<String, i32>,
) -> anyhow::Result<i32> {
    Ok(config
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
        .unwrap_or(1))
}

/// Every internal topic of an application whose tasks number `partitions`: a compacted
/// changelog per store and each repartition topic, with `partitions` partitions, and the
/// instances topic (one partition). What `casestudies broker` creates for every application of
/// every case study, and what [`provision_internal_topics`] creates at start.
pub fn internal_topics(config: &StreamsConfig, partitions: i32) -> Vec<PhysicalTopic> {
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
    topics
}

/// Creates the internal topics ([`internal_topics`]) with the inputs' partition count (read
/// from the cluster); returns that count. An existing changelog or repartition topic with fewer
/// partitions fails: state would be lost.
pub async fn provision_internal_topics(
    kafka: &Kafka,
    config: &StreamsConfig,
) -> anyhow::Result<i32> {
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        kafka.client_config().create()?;
    let (_, counts) = crate::provision::partition_counts(&Arc::new(admin)).await?;
    let partitions = input_partitions(config, &counts)?;
    let topics = internal_topics(config, partitions);
    let report = crate::provision::provision_physical(kafka, &topics).await?;
    if let Some((topic, have, want)) = report.under_partitioned.first() {
        bail!(
            "{topic} has {have} partitions but the input has {want}: state would be lost; delete it or fix the input"
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
    // Checkpoints hold input offsets of the cluster they came from: on another cluster the
    // state directory is discarded, and the state rebuilt from this cluster's changelogs.
    let cluster = crate::cluster::identity(kafka).await?;
    crate::cluster::bind_dir(
        &config.state_dir,
        &cluster,
        &format!("streams application {}", config.application_id),
    )?;
    let stats = Arc::new(StreamsStats::new(&config.application_id));
    let reader = StoreReader {
        stores: Arc::new(config.stores.clone()),
        ..StoreReader::default()
    };
    let directory = Directory::default();
    let endpoint = config.endpoint.clone();
    let application_id = config.application_id.clone();
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
        application_id,
        thread: std::sync::Mutex::new(Some(thread)),
        stats,
        stores: reader,
        directory,
        endpoint,
        input_partitions,
    })
}

pub(super) struct Runtime {
    pub(super) config: StreamsConfig,
    pub(super) stats: Arc<StreamsStats>,
    pub(super) reader: StoreReader,
    pub(super) consumer: BaseConsumer<GroupContext>,
    restorer: BaseConsumer,
    /// Wakes the stream thread when delivery reports arrive; dropped before the producer.
    pub(super) delivery: super::delivery::DeliveryWaker,
    pub(super) producer: BaseProducer<AckContext>,
    assigned: Arc<Mutex<BTreeSet<i32>>>,
    revoked: Arc<Mutex<BTreeSet<i32>>>,
    pub(super) tasks: BTreeMap<i32, Task>,
    directory: Directory,
    instance_id: String,
    /// Reads the instances topic from the beginning (no group).
    announcements: BaseConsumer,
    /// The instances topic's end when this instance started.
    announcements_end: i64,
    global: Option<super::global::GlobalTables>,
    /// Next offset per (input topic, partition) of the open tasks, for the lag thread.
    pub(super) positions: Arc<Mutex<Vec<(String, i32, i64)>>>,
    /// A client for the lag thread's ListOffsets requests (they block: not on this thread).
    lag_client: Option<BaseConsumer>,
}

pub(super) const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

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
        // Where the topic ends now: the directory names owners once it has read that far.
        let announcements_end = match announcements.fetch_watermarks(
            &instances::instances_topic(&config.application_id),
            0,
            Duration::from_secs(10),
        ) {
            Ok((_, high)) => high,
            Err(err) => {
                tracing::warn!(%err, "cannot read the end of the instances topic; routing from what arrives");
                0
            }
        };
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
            announcements_end,
            config,
            stats,
            reader,
            consumer,
            restorer,
            delivery: super::delivery::DeliveryWaker::new(&producer)?,
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
        // When a task waiting for an empty input (time order) wants to look again.
        let mut wake_at: Option<Instant> = None;
        let result = (|| -> anyhow::Result<()> {
            while !shutdown.is_cancelled() {
                let t0 = Instant::now();
                let batch = self.poll_batch(&shutdown, wake_at)?;
                let (t1, batch_len) = (Instant::now(), batch.len());
                instances::read_announcements(
                    &self.announcements,
                    &self.directory,
                    self.announcements_end,
                );
                if let Some(global) = self.global.as_mut() {
                    global.poll(Duration::ZERO)?;
                }
                self.sync_tasks()?;
                self.buffer(batch)?;
                let t2 = Instant::now();
                let (interrupted, wake) = self.process_buffered(&mut processor, &shutdown)?;
                wake_at = wake;
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
            // withdraw: this instance answers no more queries
            let _ = instances::announce(&self.producer, &self.config, &self.instance_id, None);
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
        self.reader.changed.notify_waiters();
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

    /// Polls until a batch is full, or the linger after the first record is over and nothing
    /// more has already arrived, or 100 ms pass without a record (less when a task waiting for
    /// an input wants to look again at `wake_at`).
    fn poll_batch(
        &self,
        shutdown: &CancellationToken,
        wake_at: Option<Instant>,
    ) -> anyhow::Result<Vec<OwnedMessage>> {
        let mut batch = Vec::new();
        let started = Instant::now();
        let idle_budget = wake_at.map_or(Duration::from_millis(100), |at| {
            at.saturating_duration_since(started)
                .min(Duration::from_millis(100))
        });
        let mut first_at: Option<Instant> = None;
        while batch.len() < self.config.batch_size && !shutdown.is_cancelled() {
            let timeout = match first_at {
                None => match idle_budget.checked_sub(started.elapsed()) {
                    Some(left) if !left.is_zero() => left,
                    _ => break,
                },
                // Zero once the linger is over: take what has already arrived, then process.
                Some(first) => self.config.batch_linger.saturating_sub(first.elapsed()),
            };
            match self.consumer.poll(timeout) {
                Some(Ok(message)) => {
                    first_at.get_or_insert_with(Instant::now);
                    batch.push(message.detach());
                }
                Some(Err(err)) => {
                    tracing::warn!(app = %self.config.application_id, %err, "consumer error")
                }
                None if first_at.is_none() || timeout.is_zero() => break,
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
            self.reader.close(partition);
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
            instances::announce(
                &self.producer,
                &self.config,
                &self.instance_id,
                Some(partitions),
            )?;
        }
        Ok(())
    }

    /// Puts the records of `batch` into their tasks' buffers (opening a task whose partition
    /// was assigned meanwhile); records of revoked partitions, and records the task's state
    /// already holds, are dropped.
    fn buffer(&mut self, batch: Vec<OwnedMessage>) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let assigned = self.assigned.lock().expect("assigned lock").clone();
        for message in batch {
            let partition = message.partition();
            if !assigned.contains(&partition) {
                continue; // revoked while the batch was gathered: the new owner processes it
            }
            let Some(input) = self.config.inputs.iter().position(|t| t == message.topic()) else {
                continue;
            };
            if !self.tasks.contains_key(&partition) {
                self.open_tasks(&[partition])?;
            }
            let task = self.tasks.get_mut(&partition).expect("task opened above");
            let next = task.next_offsets.get(message.topic()).copied().unwrap_or(0);
            if message.offset() < next {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                continue; // already in the state (crash or rebalance before the offset commit)
            }
            task.buffers.push(input, message);
        }
        Ok(())
    }

    /// Processes each task's buffered records in time order ([`super::order`]). Returns whether
    /// shutdown interrupted a retry (the rest is left unprocessed), and when a task that waits
    /// for an empty input wants to look again.
    fn process_buffered<P: Processor>(
        &mut self,
        processor: &mut P,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<(bool, Option<Instant>)> {
        let Runtime {
            config,
            stats,
            consumer,
            tasks,
            global,
            ..
        } = self;
        // What is known of an input partition with nothing buffered: read once per round, and
        // only when a task has an empty input.
        let mut inputs: Option<order::InputStates> = None;
        let mut wake_at: Option<Instant> = None;
        for (&partition, task) in tasks.iter_mut() {
            // The last record processed in this round: the end-of-batch hook's coordinates.
            let mut last: Option<RecordMeta> = None;
            loop {
                let next = task
                    .buffers
                    .next(config.task_idle, Instant::now(), |input| {
                        inputs
                            .get_or_insert_with(|| {
                                order::InputStates::read(consumer, &config.inputs)
                            })
                            .state(input, partition, &config.inputs, &task.next_offsets)
                    });
                let (message, enforced) = match next {
                    order::Next::Record { message, enforced } => (message, enforced),
                    order::Next::WaitUntil(at) => {
                        wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
                        break;
                    }
                    order::Next::Empty => break,
                };
                if enforced {
                    stats.enforced.fetch_add(1, Ordering::Relaxed);
                }
                if super::task::process_record(
                    config,
                    stats,
                    global.as_ref(),
                    processor,
                    task,
                    &message,
                    shutdown,
                ) {
                    if let Some(meta) = last {
                        super::task::end_batch(config, global.as_ref(), processor, task, meta);
                    }
                    return Ok((true, None));
                }
                last = Some(RecordMeta {
                    topic: message.topic().to_owned(),
                    partition,
                    offset: message.offset(),
                    timestamp_ms: message.timestamp().to_millis(),
                });
            }
            if let Some(meta) = last {
                super::task::end_batch(config, global.as_ref(), processor, task, meta);
            }
            let idle = std::mem::take(&mut task.buffers.idle);
            if !idle.is_zero() {
                stats
                    .idle_micros
                    .fetch_add(idle.as_micros() as u64, Ordering::Relaxed);
            }
        }
        Ok((false, wake_at))
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

    /// Opens the tasks of `partitions` (restoring their state, see [`restore::restore_tasks`])
    /// and adds them to the open tasks, queryable right away.
    fn open_tasks(&mut self, partitions: &[i32]) -> anyhow::Result<()> {
        let tasks = restore::restore_tasks(&self.config, &self.restorer, &self.stats, partitions)?;
        for task in tasks {
            self.reader.open(task.partition, Arc::clone(&task.db));
            self.tasks.insert(task.partition, task);
        }
        Ok(())
    }
}
