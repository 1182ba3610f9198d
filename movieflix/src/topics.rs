//! Every topic of MovieFlix (the architecture slide, in code).
//!
//! ```text
//! video player ─▶ video position service ─▶ show_position ─┬─▶ resuming service ─▶ video player
//!                                                           ├─▶ recommendation engine ─▶ recommendations ─▶ recommendations service ─▶ portal
//!                                                           └─▶ analytics sink ─▶ analytics store
//! recommendation engine ─▶ watched_after ─▶ recommendation engine (global table)
//! ```

use shared::{Cleanup, Retention, TopicSpec};

pub const CASE_STUDY: &str = "movieflix";

/// Where each viewer is in each show, sent every few seconds while playing.
pub const SHOW_POSITION: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "show_position",
    key: "user_id",
    // Many producers (every player); highly distributed at high volume (> 30 partitions).
    partitions: 32,
    retention: Retention::days(7),
    cleanup: Cleanup::Delete,
    purpose: "playback positions from every player, keyed by viewer so one viewer's events stay in order",
    producers: &["video position service"],
    consumers: &[
        "resuming service",
        "recommendation engine",
        "analytics sink",
    ],
};

/// The latest next-show recommendations per viewer.
pub const RECOMMENDATIONS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "recommendations",
    key: "user_id",
    // Low volume: a record when a profile changes meaningfully.
    partitions: 6,
    retention: Retention::Forever,
    // Only the latest recommendation per viewer matters.
    cleanup: Cleanup::Compact,
    purpose: "next-show recommendations per viewer, built by the streams engine (may use historical data)",
    producers: &["recommendation engine"],
    consumers: &["recommendations service"],
};

/// What viewers of a show start next, across all viewers (the engine's item-to-item signal).
///
/// Not on the slide: the recommendation engine's own output that it reads back, whole, on every
/// instance (a global table), because a viewer's task needs the counts of any show.
pub const WATCHED_AFTER: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "watched_after",
    key: "show_id",
    // Small (one record per show, a few hundred shows) and read whole by every instance.
    partitions: 6,
    retention: Retention::Forever,
    cleanup: Cleanup::Compact,
    purpose: "per show, the shows viewers start next and how often (item-to-item signal)",
    producers: &["recommendation engine"],
    consumers: &["recommendation engine (global table)"],
};

pub const ALL: &[TopicSpec] = &[SHOW_POSITION, RECOMMENDATIONS, WATCHED_AFTER];
