//! Every topic of the logging and metrics case study (the architecture slide, in code).
//!
//! ```text
//! log forwarders ─▶ application_logs ─────┬─▶ sinks (log store) and aggregation
//! metric collectors ─▶ application_metrics ┘
//! ```

use shared::{Cleanup, Retention, TopicSpec};

pub const CASE_STUDY: &str = "logging";

/// Log lines from every application and host.
pub const APPLICATION_LOGS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "application_logs",
    key: "application/host",
    partitions: 12,
    retention: Retention::days(7),
    cleanup: Cleanup::Delete,
    purpose: "log lines from log forwarders, keyed so one host's lines stay in order",
    producers: &["log forwarders"],
    consumers: &["log sink", "log aggregation"],
};

/// Metric samples from every application and host.
pub const APPLICATION_METRICS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "application_metrics",
    key: "application/host",
    partitions: 12,
    retention: Retention::days(3),
    cleanup: Cleanup::Delete,
    purpose: "metric samples from metric collectors",
    producers: &["metric collectors"],
    consumers: &["metrics sink", "metrics aggregation"],
};

pub const ALL: &[TopicSpec] = &[APPLICATION_LOGS, APPLICATION_METRICS];
