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

/// Pings as a table of the sink: `id`, `key`, `seq`, `at` (the sink tests).
impl shared::analytics::AnalyticsRow for Ping {
    fn columns() -> Vec<shared::analytics::Column> {
        use shared::analytics::{Column, ColumnType};
        vec![
            Column::required("id", ColumnType::Utf8),
            Column::required("key", ColumnType::Utf8),
            Column::required("seq", ColumnType::Int64),
            Column::required("at", ColumnType::TimestampMillis),
        ]
    }
    fn values(&self) -> Vec<shared::analytics::Value> {
        use shared::analytics::Value;
        vec![
            Value::Utf8(self.id.clone()),
            Value::Utf8(self.key.clone()),
            Value::Int64(self.seq as i64),
            Value::TimestampMillis(self.at.timestamp_millis()),
        ]
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
    fn key(&self) -> Option<shared::consumer::PayloadKey<'_>> {
        Some(shared::consumer::PayloadKey::new("key", &self.key))
    }
}

/// The topic the sink tests' `sink-child` writes to an object store.
pub const SINK_PINGS: TopicSpec = TopicSpec {
    case_study: "test",
    name: "sink_pings",
    key: "key",
    partitions: 4,
    retention: Retention::days(1),
    cleanup: Cleanup::Delete,
    purpose: "test records for the sink",
    producers: &["test"],
    consumers: &["sink-child"],
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

/// Store of the counting application.
pub const COUNT_STORE: &str = "counts";

pub use shared::streams::count::KeyCount;

/// The counting application: [`shared::streams::count::CountByKey`] writing to [`COUNTS`].
pub fn counter(kafka: &shared::Kafka) -> shared::streams::count::CountByKey {
    shared::streams::count::CountByKey {
        store: COUNT_STORE,
        output: Some(kafka.topic(&COUNTS)),
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

/// Counts records per partition and reports the count on every punctuation (wall clock).
pub struct PartitionTicker {
    pub output: String,
}

/// What [`PartitionTicker`] emits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    pub partition: i32,
    pub seen: u64,
}

impl shared::streams::Processor for PartitionTicker {
    type Input = Ping;

    fn process(
        &mut self,
        ctx: &mut shared::streams::ProcessorContext<'_>,
        _key: Option<&str>,
        _value: Ping,
    ) -> Result<(), shared::HandlerError> {
        let seen = ctx
            .get::<u64>(COUNT_STORE, b"seen")
            .map_err(shared::HandlerError::Transient)?
            .unwrap_or(0);
        ctx.put(COUNT_STORE, b"seen", &(seen + 1))
            .map_err(shared::HandlerError::Transient)
    }

    fn punctuate(
        &mut self,
        ctx: &mut shared::streams::ProcessorContext<'_>,
    ) -> Result<(), shared::HandlerError> {
        let seen = ctx
            .get::<u64>(COUNT_STORE, b"seen")
            .map_err(shared::HandlerError::Transient)?
            .unwrap_or(0);
        let tick = Tick {
            partition: ctx.partition(),
            seen,
        };
        ctx.emit(&self.output, &ctx.partition().to_string(), &tick)
            .map_err(shared::HandlerError::Transient)
    }
}

/// Polls `condition` until it holds or `timeout` passes (then panics with `what`): the boolean
/// form of [`shared::testkit::eventually`].
pub async fn eventually<F, Fut>(timeout: std::time::Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    shared::testkit::eventually(timeout, what, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await
}
