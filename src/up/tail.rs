//! The dashboard's one reader of every topic: a consumer assigned to every partition of every
//! case study's topics (and their dead-letter topics), in no consumer group's way (it never
//! commits). It keeps, per topic, the records it has seen (a count), the last
//! [`RECENT`] of them (the live tail), and per partition the log end and the timestamps of
//! recent offsets (a group's lag in seconds is the age of the first record it has not
//! committed). The page never gets every record: it asks for a tail, and gets rates and lags.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use shared::Kafka;

/// Records kept per topic for the tail.
pub const RECENT: usize = 200;
/// Offsets whose timestamps are kept per partition (for lag in seconds).
const HISTORY: usize = 4096;
/// The most bytes of a record's value kept for the tail.
const VALUE_LIMIT: usize = 8 * 1024;

/// One record of a tail.
#[derive(Clone, Debug, Serialize)]
pub struct TailRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<String>,
    pub headers: BTreeMap<String, String>,
    #[serde(skip)]
    pub value: Vec<u8>,
}

impl TailRecord {
    /// The value as JSON when it is JSON, else as (lossy) text; `null` for a tombstone.
    pub fn value_json(&self) -> serde_json::Value {
        if self.value.is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_slice(&self.value).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&self.value).into_owned())
        })
    }

    pub fn value_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.value)
    }
}

#[derive(Default)]
struct PartitionState {
    /// The next offset to be written, as far as this reader knows.
    end: i64,
    /// `(offset, timestamp ms)` of the latest records, oldest first.
    history: VecDeque<(i64, i64)>,
}

#[derive(Default)]
struct TopicState {
    partitions: Vec<PartitionState>,
    seen: u64,
    recent: VecDeque<TailRecord>,
}

/// What the reader has seen, per full topic name.
#[derive(Clone, Default)]
pub struct Tail {
    topics: Arc<Mutex<HashMap<String, TopicState>>>,
}

impl Tail {
    /// Records seen on `topic` since the dashboard started.
    pub fn seen(&self, topic: &str) -> u64 {
        self.topics
            .lock()
            .expect("tail lock")
            .get(topic)
            .map_or(0, |t| t.seen)
    }

    /// How many partitions `topic` has (none if the reader does not read it).
    pub fn partitions(&self, topic: &str) -> Option<usize> {
        self.topics
            .lock()
            .expect("tail lock")
            .get(topic)
            .map(|t| t.partitions.len())
    }

    /// The latest records of `topic` that `keep` accepts, newest first, at most `limit`.
    pub fn recent(
        &self,
        topic: &str,
        limit: usize,
        keep: impl Fn(&TailRecord) -> bool,
    ) -> Vec<TailRecord> {
        let topics = self.topics.lock().expect("tail lock");
        let Some(state) = topics.get(topic) else {
            return Vec::new();
        };
        state
            .recent
            .iter()
            .rev()
            .filter(|r| keep(r))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The lag of a group that committed `committed` (next offset to read, per partition):
    /// records behind, and the age in seconds of the oldest record it has not committed (0
    /// when it is caught up). Partitions it never committed count from offset 0.
    pub fn lag(&self, topic: &str, committed: &HashMap<i32, i64>, now_ms: i64) -> (i64, f64) {
        let topics = self.topics.lock().expect("tail lock");
        let Some(state) = topics.get(topic) else {
            return (0, 0.0);
        };
        let (mut records, mut seconds) = (0i64, 0f64);
        for (partition, p) in state.partitions.iter().enumerate() {
            let from = committed.get(&(partition as i32)).copied().unwrap_or(0);
            let behind = (p.end - from).max(0);
            if behind == 0 {
                continue;
            }
            records += behind;
            // The first record not committed, or the oldest known (a lower bound).
            let at = p
                .history
                .iter()
                .find(|(offset, _)| *offset >= from)
                .or(p.history.front())
                .map(|(_, ts)| *ts);
            if let Some(at) = at {
                seconds = seconds.max((now_ms - at).max(0) as f64 / 1000.0);
            }
        }
        (records, seconds)
    }

    fn record(&self, message: &rdkafka::message::BorrowedMessage<'_>) {
        let mut topics = self.topics.lock().expect("tail lock");
        let Some(state) = topics.get_mut(message.topic()) else {
            return;
        };
        let partition = message.partition();
        let timestamp_ms = message.timestamp().to_millis();
        if let Some(p) = state.partitions.get_mut(partition as usize) {
            p.end = p.end.max(message.offset() + 1);
            if p.history.len() == HISTORY {
                p.history.pop_front();
            }
            p.history.push_back((
                message.offset(),
                timestamp_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
            ));
        }
        state.seen += 1;
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            h.value
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                                .unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let value = message.payload().unwrap_or_default();
        if state.recent.len() == RECENT {
            state.recent.pop_front();
        }
        state.recent.push_back(TailRecord {
            partition,
            offset: message.offset(),
            timestamp_ms,
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            value: value[..value.len().min(VALUE_LIMIT)].to_vec(),
        });
    }
}

/// Starts reading `topics` (full names): from their beginning on the embedded broker (its
/// topics are as new as this run), from their end on a cluster. Runs on its own thread until
/// `stop`.
pub fn start(
    kafka: &Kafka,
    topics: &[String],
    stop: CancellationToken,
) -> anyhow::Result<(Tail, std::thread::JoinHandle<()>)> {
    let consumer: BaseConsumer = kafka
        .client_config()
        .set(
            "group.id",
            format!("{}casestudies-dashboard", kafka.prefix()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .context("cannot create the dashboard's reader")?;
    let tail = Tail::default();
    let mut assignment = TopicPartitionList::new();
    {
        let mut states = tail.topics.lock().expect("tail lock");
        for topic in topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .with_context(|| format!("cannot read the metadata of {topic}"))?;
            let count = metadata
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len());
            let mut state = TopicState::default();
            for partition in 0..count as i32 {
                let (start, end) = if kafka.is_embedded() {
                    (Offset::Beginning, 0)
                } else {
                    let (_, high) = consumer
                        .fetch_watermarks(topic, partition, Duration::from_secs(10))
                        .with_context(|| format!("cannot read the end of {topic}[{partition}]"))?;
                    (Offset::Offset(high), high)
                };
                assignment.add_partition_offset(topic, partition, start)?;
                state.partitions.push(PartitionState {
                    end,
                    history: VecDeque::new(),
                });
            }
            states.insert(topic.clone(), state);
        }
    }
    consumer.assign(&assignment)?;
    let reader = tail.clone();
    let thread = std::thread::Builder::new()
        .name("dashboard-tail".into())
        .spawn(move || {
            while !stop.is_cancelled() {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(message)) => reader.record(&message),
                    Some(Err(err)) => tracing::debug!(%err, "dashboard reader"),
                    None => {}
                }
            }
        })?;
    Ok((tail, thread))
}
