//! Every topic of the logging and metrics case study (the architecture slide, in code).
//!
//! ```text
//! log forwarders ─▶ application_logs ─▶ log parser ─▶ parsed_logs ─▶ sinks (log store) and aggregation
//! metric collectors ─▶ application_metrics ─▶ sinks and aggregation
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
    consumers: &["log parser"],
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
    consumers: &["analytics sink", "metrics aggregation"],
};

/// Every line of `application_logs`, normalized ([`crate::events::LogRecord`]): what the sinks
/// and the log aggregation read.
pub const PARSED_LOGS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "parsed_logs",
    // The input's key, unchanged: one application's lines from one host stay in order, on the
    // partition of the same number as on application_logs.
    key: "application/host (the line's key on application_logs)",
    partitions: 12,
    // As long as the raw lines: a sink that fell behind, or a new one, can rebuild from here.
    retention: Retention::days(7),
    cleanup: Cleanup::Delete,
    purpose: "normalized log records (time, host, service, level, message, fields, format); unparsable lines kept with the reason",
    producers: &["log parser"],
    consumers: &["log sink", "analytics sink", "log aggregation"],
};

/// Per service per minute of event time: lines by level and the error rate
/// ([`crate::events::LogRollup`]), updated while the minute is open, then final.
pub const LOG_ROLLUPS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "log_rollups",
    key: "service|minute (checkout|2026-03-01T12:00Z)",
    // As parsed_logs: the rollups of a busy moment spread like its lines.
    partitions: 12,
    // Compacted: one record per service and minute stays (the final one), for dashboards and
    // a late reader; 30 days of a thousand services is 43 M small records.
    retention: Retention::days(30),
    cleanup: Cleanup::CompactDelete,
    purpose: "per service per minute: log lines by level, errors, error rate, late lines; final once the minute closed",
    producers: &["log aggregation"],
    consumers: &["dashboard"],
};

/// Per series per minute of the samples' time: count, sum, min, max, mean, p50/p99
/// ([`crate::events::MetricRollup`]).
pub const METRIC_ROLLUPS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "metric_rollups",
    key: "series|minute (name{labels}|2026-03-01T12:00Z)",
    partitions: 12,
    // Compacted: the final rollup of each series and minute stays, 30 days.
    retention: Retention::days(30),
    cleanup: Cleanup::CompactDelete,
    purpose: "per series per minute: count, sum, min, max, mean, p50/p99; series over the cardinality cap in an overflow series",
    producers: &["metrics aggregation"],
    consumers: &["dashboard"],
};

/// Alerts firing and resolved ([`crate::events::Alert`]).
pub const ALERTS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "alerts",
    key: "service",
    partitions: 12,
    retention: Retention::days(30),
    cleanup: Cleanup::Delete,
    purpose: "alerts firing and resolved: a service's error rate above the threshold for N consecutive minutes",
    producers: &["log aggregation (the alert rule)"],
    consumers: &["dashboard", "on-call"],
};

pub const ALL: &[TopicSpec] = &[
    APPLICATION_LOGS,
    PARSED_LOGS,
    APPLICATION_METRICS,
    LOG_ROLLUPS,
    METRIC_ROLLUPS,
    ALERTS,
];
