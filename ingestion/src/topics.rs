//! Every topic of the big-data ingestion case study (the architecture slide, in code).
//!
//! ```text
//! producers (apps, devices) ─▶ raw_events (Kafka as a buffer) ─┬─▶ speed layer (real-time analytics)
//!                                                             └─▶ batch layer ─▶ analytics store files
//! ```

use shared::{Cleanup, Retention, TopicSpec};

pub const CASE_STUDY: &str = "ingestion";

/// Everything the producers send, before any processing.
pub const RAW_EVENTS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "raw_events",
    key: "producer's choice (e.g. device or source id)",
    partitions: 32,
    // A buffer: long enough for the batch layer to catch up after an outage.
    retention: Retention::days(3),
    cleanup: Cleanup::Delete,
    purpose: "raw events from every producer, buffered for a speed layer and a batch layer",
    producers: &["producers (apps, devices)"],
    consumers: &["speed layer", "batch layer"],
};

pub const ALL: &[TopicSpec] = &[RAW_EVENTS];
