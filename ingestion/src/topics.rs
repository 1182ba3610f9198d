//! Every topic of the big-data ingestion case study (the architecture slide, in code).
//!
//! ```text
//! producers ─▶ ingest API ─▶ raw_events (Kafka as a buffer) ─┬─▶ speed layer (streams) ─▶ realtime_counts ─▶ realtime API
//!                                                            └─▶ batch layer ─▶ analytics store files
//! ```

use shared::{Cleanup, Retention, TopicSpec};

pub const CASE_STUDY: &str = "ingestion";

/// Everything the producers send, before any processing.
pub const RAW_EVENTS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "raw_events",
    // One actor's events in order on one partition: the speed layer counts distinct actors per
    // partition and sums the partitions, which is exact only because of this.
    key: "actor (user id for web and mobile, device id for iot)",
    partitions: 32,
    // A buffer: long enough for the batch layer to catch up after an outage.
    retention: Retention::days(3),
    cleanup: Cleanup::Delete,
    purpose: "raw events from every producer, buffered for a speed layer and a batch layer",
    producers: &["ingest API"],
    consumers: &["speed layer", "s3 sink"],
};

/// Per-minute counts per source and event type, from the speed layer.
pub const REALTIME_COUNTS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "realtime_counts",
    key: "minute|source|event_type (2026-03-01T12:34:00Z|web|click)",
    partitions: 8,
    // A table: the latest record per key is the answer; old minutes age out after a week.
    retention: Retention::days(7),
    cleanup: Cleanup::CompactDelete,
    purpose: "events and distinct actors per minute of event time, per source and event type",
    producers: &["speed layer"],
    consumers: &["realtime API"],
};

pub const ALL: &[TopicSpec] = &[RAW_EVENTS, REALTIME_COUNTS];
