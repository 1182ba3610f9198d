//! **Log sink** (consumer): `parsed_logs` → a searchable [tantivy](https://docs.rs/tantivy)
//! index in the service's state directory (`<STATE_DIR>/logging-log-sink/`), searched by
//! `GET /v1/search` ([`api`]) and `logging search` (the same index, opened read-only).
//!
//! ```text
//! parsed_logs (LogRecord JSON) ─▶ [batch: delete id + add, commit the index] ─▶ commit offsets
//!                                        └──▶ parsed_logs.dlq (not a LogRecord, invalid)
//! ```
//!
//! **A batch, in order.** Poll up to `LOG_SINK_BATCH` records (default 5,000), waiting at most
//! `LOG_SINK_LINGER` (default 100 ms) after the first; dead-letter those that are no valid
//! [`LogRecord`] (the acknowledgement awaited); write the others to the index and `commit()` it
//! (durable: fsynced); only then commit the batch's offsets to the group. A crash anywhere
//! re-delivers at most the uncommitted batch, and the index is exactly once anyway: each
//! document's id is the record's `event_id` (its line's coordinates on `application_logs`), and
//! writing a record deletes that id first, in the same commit ([`index`]). The parser's own
//! repeats (at-least-once, same `event_id`) are replaced the same way.
//!
//! **Failures.** A record that is not a [`LogRecord`] (bad JSON, wrong shape, no payload) or
//! breaks its rules ([`LogRecord::validate`]) goes to `parsed_logs.dlq` with the reason and
//! `dead_lettered_by: <prefix>logging-log-sink`, counted; the records behind it are indexed.
//! Any valid record is indexable: the message is at most 64 KiB, names at most 255 characters,
//! and tantivy's tokenizer drops tokens over 40 bytes rather than refusing the document. A
//! failed write or commit (a full disk, an I/O error) is rolled back and the whole batch
//! written again, with exponential backoff from `LOG_SINK_RETRY_INITIAL` (100 ms) to
//! `LOG_SINK_RETRY_MAX` (10 s); no offset is committed meanwhile. After
//! `LOG_SINK_MAX_ATTEMPTS` (default 10) the batch's records go to the dead-letter topic with
//! the last error, and the sink moves on: nothing is dropped (`casestudies dlq replay` brings
//! them back once the store is fixed).
//!
//! **Test knobs**, not for production: `LOG_SINK_FAIL_COMMITS=<n>` makes the next `n` index
//! writes fail right before tantivy's `commit()` (the documents are added, then rolled back),
//! so the tests make the real sink fail and recover; `LOG_SINK_CRASH_AFTER_COMMITS=<n>` aborts
//! the process (like a SIGKILL) right after its `n`-th index commit, before that batch's
//! offsets are committed: the window where a crash re-delivers records already indexed.

pub mod api;
pub mod index;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use shared::dlq::{self, DeadLetterKind, Letter};
use shared::service::GroupSpec;
use shared::{EventProducer, Kafka};
use tokio_util::sync::CancellationToken;

use crate::events::LogRecord;
use crate::topics::PARSED_LOGS;
use index::{Indexed, LogIndex, LogReader};

/// The consumer group (prefixed with `TOPIC_PREFIX`), and the name of its state directory.
pub const GROUP_ID: &str = "logging-log-sink";

/// How the sink batches and retries.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub group_id: String,
    /// `parsed_logs`, full name.
    pub topic: String,
    /// The index's directory.
    pub dir: PathBuf,
    pub batch_size: usize,
    pub linger: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Attempts to write a batch before its records are dead-lettered.
    pub max_attempts: u32,
    /// Test knob: the next `n` writes fail before the commit.
    pub fail_commits: u32,
    pub consumer_properties: Vec<(String, String)>,
}

impl SinkConfig {
    /// The defaults for `kafka`, the index in `dir`.
    pub fn new(kafka: &Kafka, dir: PathBuf) -> SinkConfig {
        SinkConfig {
            group_id: group(kafka),
            topic: kafka.topic(&PARSED_LOGS),
            dir,
            batch_size: 5_000,
            linger: Duration::from_millis(100),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            max_attempts: 10,
            fail_commits: 0,
            consumer_properties: Vec::new(),
        }
    }

    /// The defaults, overridden by `LOG_SINK_BATCH`, `LOG_SINK_LINGER`,
    /// `LOG_SINK_RETRY_INITIAL`, `LOG_SINK_RETRY_MAX`, `LOG_SINK_MAX_ATTEMPTS` and the test knob
    /// `LOG_SINK_FAIL_COMMITS`.
    pub fn from_env(kafka: &Kafka, dir: PathBuf) -> anyhow::Result<SinkConfig> {
        let mut config = SinkConfig::new(kafka, dir);
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let duration = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            var(name).map_or(Ok(default), |v| {
                humantime::parse_duration(v.trim())
                    .map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}"))
            })
        };
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            var(name).map_or(Ok(default), |v| {
                v.trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}"))
            })
        };
        config.batch_size = number("LOG_SINK_BATCH", config.batch_size as u64)?.max(1) as usize;
        config.linger = duration("LOG_SINK_LINGER", config.linger)?;
        config.retry_initial = duration("LOG_SINK_RETRY_INITIAL", config.retry_initial)?;
        config.retry_max = duration("LOG_SINK_RETRY_MAX", config.retry_max)?;
        config.max_attempts =
            number("LOG_SINK_MAX_ATTEMPTS", config.max_attempts.into())?.max(1) as u32;
        config.fail_commits = number("LOG_SINK_FAIL_COMMITS", 0)? as u32;
        Ok(config)
    }
}

/// The sink's group: `<prefix>logging-log-sink`.
pub fn group(kafka: &Kafka) -> String {
    format!("{}{GROUP_ID}", kafka.prefix())
}

/// What the sink did (also on `/metrics`, labelled `sink=<group>`).
#[derive(Debug, Clone)]
pub struct SinkStats {
    /// Records committed to the index (a repeat counts again: it replaced itself).
    pub indexed: Counter,
    /// Index commits.
    pub commits: Counter,
    /// Failed writes or commits (each retried, or finally dead-lettered).
    pub failures: Counter,
    /// Records dead-lettered (acknowledged).
    pub dead_lettered: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

impl SinkStats {
    fn new(sink: &str) -> SinkStats {
        static FAMILIES: OnceLock<[Family<SinkLabels, Counter>; 4]> = OnceLock::new();
        let families = FAMILIES.get_or_init(|| {
            let families: [Family<SinkLabels, Counter>; 4] = Default::default();
            for (family, (name, help)) in families.iter().zip([
                (
                    "logging_log_sink_indexed",
                    "Log records committed to the index",
                ),
                ("logging_log_sink_commits", "Index commits"),
                (
                    "logging_log_sink_failures",
                    "Failed index writes or commits (retried with backoff)",
                ),
                (
                    "logging_log_sink_dead_lettered",
                    "Log records dead-lettered",
                ),
            ]) {
                shared::metrics::register(name, help, family.clone());
            }
            families
        });
        let labels = SinkLabels {
            sink: sink.to_owned(),
        };
        let [indexed, commits, failures, dead_lettered] = families
            .each_ref()
            .map(|f| f.get_or_create(&labels).clone());
        SinkStats {
            indexed,
            commits,
            failures,
            dead_lettered,
        }
    }
}

/// Called after each index commit with the records it made searchable (the bench's clock).
pub type OnCommit = Box<dyn Fn(&[Indexed]) + Send>;

/// A running sink: its index to search, its counters, its thread.
pub struct LogSink {
    pub reader: LogReader,
    pub stats: SinkStats,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl LogSink {
    /// Waits for the sink's thread (it finishes its batch, commits and leaves the group when
    /// `shutdown` fires).
    pub async fn join(self) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || self.thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("log sink thread panicked"))?
    }
}

/// Opens (or creates) the index and starts the sink on its own thread: tantivy's writes and
/// fsyncs are blocking work. Call from within a Tokio runtime (dead letters go through it).
pub async fn start(
    kafka: &Kafka,
    config: SinkConfig,
    on_commit: Option<OnCommit>,
    shutdown: CancellationToken,
) -> anyhow::Result<LogSink> {
    let index = LogIndex::open(&config.dir)?;
    let consumer: BaseConsumer = kafka
        .group_consumer_config(&config.group_id, &config.consumer_properties)
        .create()?;
    consumer.subscribe(&[&config.topic])?;
    let stats = SinkStats::new(&config.group_id);
    let reader = index.reader();
    let sink = Sink {
        producer: EventProducer::new(kafka)?,
        runtime: tokio::runtime::Handle::current(),
        consumer,
        fail_commits: config.fail_commits,
        config,
        index,
        stats: stats.clone(),
        on_commit,
    };
    let thread = std::thread::Builder::new()
        .name("log-sink".into())
        .spawn(move || sink.run(shutdown))?;
    Ok(LogSink {
        reader,
        stats,
        thread,
    })
}

struct Sink {
    config: SinkConfig,
    index: LogIndex,
    consumer: BaseConsumer,
    producer: EventProducer,
    runtime: tokio::runtime::Handle,
    stats: SinkStats,
    on_commit: Option<OnCommit>,
    fail_commits: u32,
}

impl Sink {
    fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(topic = %self.config.topic, dir = %self.config.dir.display(), "log sink started");
        while let Some(batch) = self.next_batch(&shutdown) {
            if !self.process(&batch, &shutdown) {
                break; // stopped in a retry: nothing of this batch committed
            }
        }
        let Sink {
            consumer, producer, ..
        } = self;
        drop(consumer); // leaves the group: its partitions move at once
        let _ = producer.flush(Duration::from_secs(5));
        tracing::info!("log sink stopped");
        Ok(())
    }

    /// Waits for a record, then gathers more until the batch is full or the linger is over;
    /// `None` on shutdown.
    fn next_batch(&self, shutdown: &CancellationToken) -> Option<Vec<OwnedMessage>> {
        let first = loop {
            if shutdown.is_cancelled() {
                return None;
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => break message.detach(),
                Some(Err(err)) => tracing::warn!(%err, "log sink consumer"),
                None => {}
            }
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + self.config.linger;
        while batch.len() < self.config.batch_size {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.consumer.poll(left) {
                Some(Ok(message)) => batch.push(message.detach()),
                Some(Err(err)) => tracing::warn!(%err, "log sink consumer"),
                None => break,
            }
        }
        Some(batch)
    }

    /// Dead-letters, indexes and commits one batch; `false` if shutdown interrupted it.
    fn process(&mut self, batch: &[OwnedMessage], shutdown: &CancellationToken) -> bool {
        let mut next: HashMap<i32, i64> = HashMap::new();
        let mut docs = Vec::with_capacity(batch.len());
        let mut letters = Vec::new();
        for message in batch {
            next.insert(message.partition(), message.offset() + 1);
            let checked = shared::consumer::decode::<LogRecord>(message)
                .map_err(|reason| (DeadLetterKind::Decode, reason))
                .and_then(|record| {
                    record
                        .value
                        .validate()
                        .map(|()| record.value)
                        .map_err(|reason| {
                            (
                                DeadLetterKind::Rejected,
                                format!("invalid LogRecord: {reason}"),
                            )
                        })
                });
            match checked {
                Ok(record) => docs.push((
                    message,
                    Indexed {
                        record,
                        partition: message.partition(),
                        offset: message.offset(),
                    },
                )),
                Err((kind, reason)) => {
                    letters.push(Letter::new(message, &self.config.group_id, kind, &reason))
                }
            }
        }
        let (messages, docs): (Vec<&OwnedMessage>, Vec<Indexed>) = docs.into_iter().unzip();
        if !docs.is_empty() {
            match self.write(&docs, shutdown) {
                Some(Ok(())) => {
                    self.stats.indexed.inc_by(docs.len() as u64);
                    self.stats.commits.inc();
                    if let Some(on_commit) = &self.on_commit {
                        on_commit(&docs);
                    }
                    crash_after_commit();
                }
                Some(Err(err)) => {
                    let reason = format!(
                        "not indexed after {} attempts: {err:#}",
                        self.config.max_attempts
                    );
                    letters.extend(messages.iter().map(|m| {
                        Letter::new(m, &self.config.group_id, DeadLetterKind::Rejected, &reason)
                    }));
                }
                None => return false,
            }
        }
        for letter in &letters {
            if !self.dead_letter(letter, shutdown) {
                return false;
            }
        }
        self.commit(&next);
        true
    }

    /// Writes and commits `docs`, retried with backoff: `None` if shutdown came first,
    /// `Some(Err)` once every attempt failed.
    fn write(
        &mut self,
        docs: &[Indexed],
        shutdown: &CancellationToken,
    ) -> Option<anyhow::Result<()>> {
        let mut backoff = self.config.retry_initial;
        let mut attempt = 1;
        loop {
            let fail = self.fail_commits > 0;
            self.fail_commits = self.fail_commits.saturating_sub(1);
            let result = self.index.write(docs, || {
                if fail {
                    anyhow::bail!("injected failure (LOG_SINK_FAIL_COMMITS, a test knob)")
                }
                Ok(())
            });
            match result {
                Ok(()) => return Some(Ok(())),
                Err(err) => {
                    self.stats.failures.inc();
                    if attempt >= self.config.max_attempts {
                        tracing::error!(error = %format!("{err:#}"), attempt, "index write failed; dead-lettering the batch");
                        return Some(Err(err));
                    }
                    tracing::warn!(error = %format!("{err:#}"), attempt, retry_in = ?backoff, "index write failed; retrying");
                    if !self.sleep(backoff, shutdown) {
                        return None;
                    }
                    backoff = (backoff * 2).min(self.config.retry_max);
                    attempt += 1;
                }
            }
        }
    }

    /// Sends `letter` until the broker acknowledges it; `false` if shutdown came first.
    fn dead_letter(&self, letter: &Letter, shutdown: &CancellationToken) -> bool {
        let mut backoff = self.config.retry_initial;
        loop {
            match self.runtime.block_on(dlq::send(&self.producer, letter)) {
                Ok(_) => {
                    self.stats.dead_lettered.inc();
                    return true;
                }
                Err(err) => {
                    tracing::error!(%err, retry_in = ?backoff, "cannot write dead letter; retrying");
                    if !self.sleep(backoff, shutdown) {
                        return false;
                    }
                    backoff = (backoff * 2).min(self.config.retry_max);
                }
            }
        }
    }

    fn sleep(&self, duration: Duration, shutdown: &CancellationToken) -> bool {
        self.runtime.block_on(async {
            tokio::select! {
                _ = shutdown.cancelled() => false,
                _ = tokio::time::sleep(duration) => true,
            }
        })
    }

    /// Commits the offsets after the batch, for partitions still assigned (another member
    /// commits what moved to it; re-indexing a record replaces it).
    fn commit(&self, next: &HashMap<i32, i64>) {
        let assignment = self.consumer.assignment().unwrap_or_default();
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in next {
            if assignment
                .find_partition(&self.config.topic, *partition)
                .is_some()
            {
                let _ = tpl.add_partition_offset(
                    &self.config.topic,
                    *partition,
                    Offset::Offset(*offset),
                );
            }
        }
        if tpl.count() > 0
            && let Err(err) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::warn!(%err, "log sink offset commit failed");
        }
    }
}

/// `LOG_SINK_CRASH_AFTER_COMMITS=<n>`: aborts the process at the `n`-th index commit, before
/// its offsets are committed (a test knob, see the module's doc).
fn crash_after_commit() {
    static LEFT: OnceLock<Option<std::sync::atomic::AtomicU64>> = OnceLock::new();
    let left = LEFT.get_or_init(|| {
        let n = std::env::var("LOG_SINK_CRASH_AFTER_COMMITS").ok()?;
        Some(std::sync::atomic::AtomicU64::new(n.trim().parse().ok()?))
    });
    if let Some(left) = left
        && left.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) == 1
    {
        eprintln!(
            "LOG_SINK_CRASH_AFTER_COMMITS: aborting after an index commit, before the offsets"
        );
        std::process::abort();
    }
}

/// The index directory of a process whose state directory is `state_dir`.
pub fn index_dir(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join(GROUP_ID)
}

/// The log sink on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "log-sink"
    }
    fn about(&self) -> &'static str {
        "parsed_logs → a tantivy index in the state directory; GET /v1/search."
    }
    fn groups(&self, kafka: &Kafka) -> Vec<GroupSpec> {
        vec![GroupSpec {
            group: group(kafka),
            topics: vec![kafka.topic(&PARSED_LOGS)],
        }]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        _: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let config = SinkConfig::from_env(&ctx.kafka, index_dir(&ctx.state_dir))?;
        let sink = start(&ctx.kafka, config, None, ctx.shutdown.clone()).await?;
        let stats = std::sync::Arc::new(sink.stats.clone());
        Ok(shared::service::Running::new()
            .routes(api::router(sink.reader.clone()))
            .handle(std::sync::Arc::new(sink.reader.clone()))
            .handle(stats)
            .on_stop(sink.join()))
    }
}
