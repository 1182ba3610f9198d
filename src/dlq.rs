//! `casestudies dlq replay`: re-produces dead letters to the topic they came from, once the
//! cause (a bug, a missing catalog entry) is fixed.
//!
//! Each letter's original key, payload, timestamp and headers go back to its `source.topic`
//! (the dead-letter headers removed, `replayed_from: <dlq>/<partition>/<offset>` added). Every
//! application reading that topic sees the record again — they are idempotent by event id or
//! by event time, see each case study's README. A record rejected by several applications has
//! one letter per application: a replay re-produces it once (the first letter; the others are
//! reported as duplicates). Progress is committed to the consumer group
//! `<prefix>casestudies-dlq-replay-<application or all>`, so a second replay only sees letters
//! that arrived since.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use shared::dlq::{self, DeadLetter};
use shared::{EventProducer, Kafka};

const TIMEOUT: Duration = Duration::from_secs(10);

/// What to replay.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The dead-letter topic (full name, e.g. `movieflix.show_position.dlq`).
    #[arg(long)]
    pub topic: String,
    /// Only letters this application wrote (`dead_lettered_by`, e.g. `movieflix-resuming`).
    #[arg(long)]
    pub application: Option<String>,
    /// Replay at most this many letters (the rest stay for the next replay).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub dlq_topic: String,
    pub group: String,
    /// Records re-produced, per source topic.
    pub replayed: BTreeMap<String, usize>,
    /// Letters of a record already replayed in this run (another application's letter of it).
    pub duplicates: usize,
    /// Letters of other applications (with `--application`).
    pub other_applications: usize,
    /// Records without dead-letter headers.
    pub not_letters: usize,
}

impl ReplayReport {
    pub fn total(&self) -> usize {
        self.replayed.values().sum()
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "replayed {} dead letter(s) from {}",
            self.total(),
            self.dlq_topic
        )?;
        for (topic, n) in &self.replayed {
            writeln!(f, "  → {topic}: {n}")?;
        }
        writeln!(
            f,
            "skipped: {} duplicate letter(s) of a replayed record, {} of other applications, {} without dead-letter headers",
            self.duplicates, self.other_applications, self.not_letters
        )?;
        writeln!(
            f,
            "progress committed for consumer group {} (a second replay starts after it)",
            self.group
        )
    }
}

/// The consumer group a replay commits its progress to.
pub fn replay_group(kafka: &Kafka, application: Option<&str>) -> String {
    format!(
        "{}casestudies-dlq-replay-{}",
        kafka.prefix(),
        application.unwrap_or("all")
    )
}

/// Replays the letters of `args.topic` written since the last replay (of the same group), up to
/// the end the topic had when the replay started.
pub async fn replay(kafka: &Kafka, args: &ReplayArgs) -> anyhow::Result<ReplayReport> {
    if !args.topic.ends_with(shared::topics::DLQ_SUFFIX) {
        bail!(
            "{} is not a dead-letter topic (its name ends with {})",
            args.topic,
            shared::topics::DLQ_SUFFIX
        );
    }
    let group = replay_group(kafka, args.application.as_deref());
    let consumer: BaseConsumer = kafka.group_consumer_config(&group, &[]).create()?;
    let producer = EventProducer::new(kafka)?;
    let mut report = ReplayReport {
        dlq_topic: args.topic.clone(),
        group: group.clone(),
        ..ReplayReport::default()
    };

    // Where to start (the group's committed offsets) and where to stop (the end now).
    let (start, end) = {
        let topic = args.topic.clone();
        let consumer = &consumer;
        tokio::task::block_in_place(|| positions(consumer, &topic))?
    };
    let mut assignment = TopicPartitionList::new();
    let mut pending = 0;
    for (&partition, &from) in &start {
        if from < end[&partition] {
            assignment.add_partition_offset(&args.topic, partition, Offset::Offset(from))?;
            pending += 1;
        }
    }
    if pending == 0 {
        return Ok(report);
    }
    consumer.assign(&assignment)?;

    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut seen = HashSet::new();
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut idle_since = Instant::now();
    'read: while report.total() < limit {
        let done = end
            .iter()
            .all(|(p, e)| next.get(p).copied().unwrap_or(start[p]) >= *e);
        if done {
            break;
        }
        let polled = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(100)));
        let message = match polled {
            None => {
                if idle_since.elapsed() > TIMEOUT * 3 {
                    bail!(
                        "no records from {} for {:?} before its end offsets {end:?}",
                        args.topic,
                        TIMEOUT * 3
                    );
                }
                continue 'read;
            }
            Some(result) => result.context("reading the dead-letter topic")?,
        };
        idle_since = Instant::now();
        let (partition, offset) = (message.partition(), message.offset());
        if offset >= end[&partition] {
            continue; // arrived after the replay started: the next replay's
        }
        next.insert(partition, offset + 1);
        let Some(letter) = DeadLetter::from_message(&message) else {
            report.not_letters += 1;
            continue;
        };
        if let Some(application) = &args.application
            && letter.application.as_deref() != Some(application)
        {
            report.other_applications += 1;
            continue;
        }
        let source = (
            letter.source_topic.clone(),
            letter.source_partition,
            letter.source_offset,
        );
        if !seen.insert(source) {
            report.duplicates += 1;
            continue;
        }
        let mut headers = letter.headers.clone();
        headers.push((
            dlq::HEADER_REPLAYED_FROM.to_owned(),
            format!("{}/{partition}/{offset}", args.topic).into_bytes(),
        ));
        producer
            .send(
                &letter.source_topic,
                letter.key.as_deref(),
                letter.payload.as_deref(),
                dlq::owned_headers(&headers),
                letter.timestamp_ms,
            )
            .await
            .with_context(|| format!("re-producing to {}", letter.source_topic))?;
        *report.replayed.entry(letter.source_topic).or_default() += 1;
    }

    let mut commit = TopicPartitionList::new();
    for (partition, offset) in &next {
        commit.add_partition_offset(&args.topic, *partition, Offset::Offset(*offset))?;
    }
    if commit.count() > 0 {
        tokio::task::block_in_place(|| consumer.commit(&commit, CommitMode::Sync))
            .with_context(|| format!("committing the replay's progress for group {group}"))?;
    }
    Ok(report)
}

/// Per partition of `topic`: the group's committed offset (or the beginning) and the end.
#[allow(clippy::type_complexity)]
fn positions(
    consumer: &BaseConsumer,
    topic: &str,
) -> anyhow::Result<(BTreeMap<i32, i64>, BTreeMap<i32, i64>)> {
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic {topic} does not exist");
    }
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer
        .committed_offsets(tpl, TIMEOUT)
        .context("reading the replay group's committed offsets")?;
    let (mut start, mut end) = (BTreeMap::new(), BTreeMap::new());
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, TIMEOUT)
            .with_context(|| format!("reading the end offsets of {topic}"))?;
        let from = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o.max(low),
            _ => low,
        };
        start.insert(p, from);
        end.insert(p, high);
    }
    Ok((start, end))
}
