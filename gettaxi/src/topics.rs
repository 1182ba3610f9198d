//! Every topic of GetTaxi (the architecture slide, in code).
//!
//! ```text
//! user app ─▶ user position service ─▶ user_position ─────────────┬─▶ surge pricing (streams) ─▶ surge_pricing ─┐
//! driver app ─▶ taxi position service ─▶ taxi_position ─┬─────────┤                                            │
//! user app ─▶ ride service ─▶ ride_requests ────────────┼─────────┘          weather ─▶ (table) ─┘             │
//!                                                        ├─▶ driver matching (streams) ─▶ rides ──────────────┐ │
//!                                                        └─▶ taxi cost service (streams) ◀────────────────────┼─┘
//!                                                                     └─▶ ride_fares ─┐                    │
//!                          ride service (streams: the ride view) ◀── ride_requests, rides, ride_fares ◀──┘
//! user_position, taxi_position, ride_fares ─▶ analytics sink ─▶ Parquet (fares recomputed from it)
//! ```
//!
//! Every topic a streams application reads together has 32 partitions: driver matching reads
//! `taxi_position` and `ride_requests` (and its repartition topics) in one task per partition,
//! the taxi cost service `taxi_position` and `ride_requests`, the ride service `ride_requests`,
//! `rides` and `ride_fares`.

use shared::{Cleanup, Retention, TopicSpec};

pub const CASE_STUDY: &str = "gettaxi";

/// Partitions of every co-partitioned topic.
pub const PARTITIONS: i32 = 32;

/// Where each rider is, sent by the rider app while it is open (a rider looking for a ride).
pub const USER_POSITION: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "user_position",
    key: "user_id",
    // Many producers; > 30 partitions at high volume.
    partitions: PARTITIONS,
    // Ephemeral: positions are only useful for a short while (the analytics sink keeps them).
    retention: Retention::hours(6),
    cleanup: Cleanup::Delete,
    purpose: "rider positions from the user app: surge demand, and the analytics store",
    producers: &["user position service"],
    consumers: &["surge pricing (streams)", "analytics sink"],
};

/// Where each taxi is, its status, and the ride it is on.
pub const TAXI_POSITION: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "taxi_position",
    key: "taxi_id",
    partitions: PARTITIONS,
    retention: Retention::hours(6),
    cleanup: Cleanup::Delete,
    purpose: "taxi positions and status (available / on ride / off duty) from the driver app: matching, surge supply, the fare's trace",
    producers: &["taxi position service"],
    consumers: &[
        "driver matching (streams)",
        "surge pricing (streams)",
        "taxi cost service (streams)",
        "analytics sink",
    ],
};

/// Riders asking for a taxi.
pub const RIDE_REQUESTS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "ride_requests",
    key: "ride_id",
    partitions: PARTITIONS,
    retention: Retention::days(7),
    cleanup: Cleanup::Delete,
    purpose: "ride requests (rider, pickup, drop-off): matched, quoted, counted as demand",
    producers: &["ride service"],
    consumers: &[
        "driver matching (streams)",
        "taxi cost service (streams)",
        "surge pricing (streams)",
        "ride service (streams)",
    ],
};

/// What driver matching decided for each request: a taxi, or none.
pub const RIDES: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "rides",
    key: "ride_id",
    partitions: PARTITIONS,
    retention: Retention::days(7),
    cleanup: Cleanup::Delete,
    purpose: "assignments: the nearest available taxi with its distance and ETA, or no driver",
    producers: &["driver matching (streams)"],
    consumers: &["ride service (streams)"],
};

/// Quotes, running fares and final fares.
pub const RIDE_FARES: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "ride_fares",
    key: "ride_id",
    partitions: PARTITIONS,
    retention: Retention::days(7),
    cleanup: Cleanup::Delete,
    purpose: "the quote at request time (surge locked in), the running fare during the ride, the final fare",
    producers: &["taxi cost service (streams)"],
    consumers: &["ride service (streams)", "analytics sink"],
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
    purpose: "surge multiplier per H3 region from demand and supply in a hopping window, weather joined",
    producers: &["surge pricing (streams)"],
    consumers: &["taxi cost service (streams)"],
};

/// Rain per region: another input of the pricing model (a table: the latest per region).
pub const WEATHER: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "weather",
    key: "region",
    partitions: 4,
    retention: Retention::Forever,
    cleanup: Cleanup::Compact,
    purpose: "rain per region (mm/h), joined into surge pricing as a table",
    producers: &["weather service"],
    consumers: &["surge pricing (streams)"],
};

pub const ALL: &[TopicSpec] = &[
    USER_POSITION,
    TAXI_POSITION,
    RIDE_REQUESTS,
    RIDES,
    RIDE_FARES,
    SURGE_PRICING,
    WEATHER,
];
