//! Fixtures shared by the cross-crate integration tests in `tests/tests/`.
//!
//! The tests themselves only use public APIs (`shared`, `casestudies`); this file holds the test
//! event type, test topic specs, and the driver for the `consumer-child` process.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::{Cleanup, Event, Retention, TopicSpec};

/// A test fact: "record `seq` with key `key` happened at `at`".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    pub id: String,
    pub key: String,
    pub seq: u64,
    pub at: DateTime<Utc>,
}

impl Ping {
    pub fn new(seq: u64, key: impl Into<String>) -> Self {
        Ping {
            id: shared::event::new_event_id(),
            key: key.into(),
            seq,
            at: Utc::now(),
        }
    }
}

impl Event for Ping {
    const TYPE: &'static str = "Ping";
    fn event_id(&self) -> String {
        self.id.clone()
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
}

/// A consumed test topic with six partitions.
pub const PINGS: TopicSpec = TopicSpec {
    case_study: "test",
    name: "pings",
    key: "key",
    partitions: 6,
    retention: Retention::days(1),
    cleanup: Cleanup::Delete,
    purpose: "test records",
    producers: &["test"],
    consumers: &["test consumer"],
};

/// Reads the `seq` numbers a `consumer-child` appended to its output file (one per line).
pub fn read_seqs(path: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// Input of the streams tests: four partitions.
pub const WORDS: TopicSpec = TopicSpec {
    case_study: "test",
    name: "words",
    key: "word",
    partitions: 4,
    retention: Retention::days(1),
    cleanup: Cleanup::Delete,
    purpose: "streams test input",
    producers: &["test"],
    consumers: &["counter"],
};

/// Output of the streams tests: the latest count per key.
pub const COUNTS: TopicSpec = TopicSpec {
    case_study: "test",
    name: "counts",
    key: "word",
    partitions: 4,
    retention: Retention::days(1),
    cleanup: Cleanup::Delete,
    purpose: "streams test output",
    producers: &["counter"],
    consumers: &[],
};

/// Store of [`CountPerKey`].
pub const COUNT_STORE: &str = "counts";

/// The count emitted for a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyCount {
    pub key: String,
    pub count: u64,
}

/// Counts records per key in a RocksDB store and emits every new count.
pub struct CountPerKey {
    pub output: String,
}

impl shared::streams::Processor for CountPerKey {
    type Input = Ping;

    fn process(
        &mut self,
        ctx: &mut shared::streams::ProcessorContext<'_>,
        key: Option<&str>,
        _value: Ping,
    ) -> Result<(), shared::HandlerError> {
        let key = key.ok_or_else(|| shared::HandlerError::Permanent("record has no key".into()))?;
        let transient = shared::HandlerError::Transient;
        let count = ctx
            .get::<u64>(COUNT_STORE, key.as_bytes())
            .map_err(transient)?
            .unwrap_or(0)
            + 1;
        ctx.put(COUNT_STORE, key.as_bytes(), &count)
            .map_err(transient)?;
        ctx.emit(
            &self.output,
            key,
            &KeyCount {
                key: key.to_owned(),
                count,
            },
        )
        .map_err(transient)
    }
}

/// The counting application's configuration (shared by in-process tests and `streams-child`).
pub fn counter_config(
    kafka: &shared::Kafka,
    state_dir: &std::path::Path,
) -> shared::streams::StreamsConfig {
    let mut config = shared::streams::StreamsConfig::new(
        kafka,
        "counter",
        vec![kafka.topic(&WORDS)],
        &[COUNT_STORE],
    );
    config.state_dir = state_dir.to_path_buf();
    config.batch_size = 50;
    config.consumer_properties = vec![
        ("session.timeout.ms".into(), "6000".into()),
        ("heartbeat.interval.ms".into(), "500".into()),
    ];
    config
}
