//! Every topic of GetTaxi (the architecture slide, in code).
//!
//! ```text
//! user app ─▶ user position service ─▶ user_position ─┐
//! taxi app ─▶ taxi position service ─▶ taxi_position ─┼─▶ surge pricing (streams) ─▶ surge_pricing ─▶ taxi cost service ─▶ user app
//!                                                      └─▶ cost computation / analytics sink (every position before and during a ride)
//! ```

use shared::{Cleanup, Retention, TopicSpec};

pub const CASE_STUDY: &str = "gettaxi";

/// Where each rider is, sent by the rider app.
pub const USER_POSITION: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "user_position",
    key: "user_id",
    // Many producers; > 30 partitions at high volume.
    partitions: 32,
    // Ephemeral: positions are only useful for a short while (rides are archived by the sink).
    retention: Retention::hours(6),
    cleanup: Cleanup::Delete,
    purpose: "rider positions from the user app, for matching, surge demand and ride cost",
    producers: &["user position service"],
    consumers: &[
        "driver matching",
        "surge pricing",
        "ride cost / analytics sink",
    ],
};

/// Where each taxi is, and whether it is available.
pub const TAXI_POSITION: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "taxi_position",
    key: "taxi_id",
    partitions: 32,
    retention: Retention::hours(6),
    cleanup: Cleanup::Delete,
    purpose: "taxi positions and availability from the driver app, for matching, surge supply and ride cost",
    producers: &["taxi position service"],
    consumers: &[
        "driver matching",
        "surge pricing",
        "ride cost / analytics sink",
    ],
};

/// The current surge multiplier per region.
pub const SURGE_PRICING: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "surge_pricing",
    key: "region",
    // Regional, may be high volume.
    partitions: 12,
    retention: Retention::days(1),
    // The latest price per region is what matters; old ones age out.
    cleanup: Cleanup::CompactDelete,
    purpose: "surge multiplier per region from supply and demand (other inputs such as weather may join)",
    producers: &["surge pricing (streams)"],
    consumers: &["taxi cost service"],
};

pub const ALL: &[TopicSpec] = &[USER_POSITION, TAXI_POSITION, SURGE_PRICING];
