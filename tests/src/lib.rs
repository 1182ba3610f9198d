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
