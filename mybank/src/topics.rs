//! Every topic of MyBank (the architecture slide, in code).
//!
//! ```text
//! transactions DB ─▶ source connector (CDC) ─▶ bank_transactions ─┐
//! user app ─▶ app threshold service ─▶ user_settings ─────────────┼─▶ big-transaction detection (streams) ─▶ user_alerts ─▶ notification service ─▶ apps, e-mail
//!                   source connector ◀─▶ connect_offsets (where it stopped)
//! ```

use shared::{Cleanup, Retention, TopicSpec};

pub const CASE_STUDY: &str = "mybank";

/// Rows of the bank's existing `transactions` table, brought over by the source connector.
pub const BANK_TRANSACTIONS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "bank_transactions",
    key: "user_id",
    partitions: 12,
    retention: Retention::days(30),
    cleanup: Cleanup::Delete,
    purpose: "CDC / JDBC-style copy of the transactions table, keyed by user for the join with settings",
    producers: &["source connector"],
    consumers: &["big-transaction detector (streams)"],
};

/// Users' alert-threshold changes, as events ("user 123 enabled threshold $1000 at 12:00").
pub const USER_SETTINGS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "user_settings",
    key: "user_id",
    // Low volume, but co-partitioned with bank_transactions for the join.
    partitions: 12,
    // Events, not state: the history decides which threshold applied at a transaction's time.
    retention: Retention::Forever,
    cleanup: Cleanup::Delete,
    purpose: "ThresholdEnabled / ThresholdChanged / ThresholdDisabled events from the apps",
    producers: &["app threshold service"],
    consumers: &["big-transaction detector (streams)"],
};

/// Alerts for transactions over the user's threshold.
pub const USER_ALERTS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "user_alerts",
    key: "user_id",
    partitions: 12,
    retention: Retention::days(7),
    cleanup: Cleanup::Delete,
    purpose: "one alert per large transaction, for in-app notifications and e-mail",
    producers: &["big-transaction detector (streams)"],
    consumers: &["notification service"],
};

/// Where the source connector stopped in each table (like Kafka Connect's offset storage).
pub const CONNECT_OFFSETS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "connect_offsets",
    key: "connector + table",
    partitions: 1,
    retention: Retention::Forever,
    // Only the latest position per connector and table matters.
    cleanup: Cleanup::Compact,
    purpose: "source offsets (last id / timestamp per table), so a restart neither skips nor repeats rows",
    producers: &["source connector"],
    consumers: &["source connector (on start)"],
};

pub const ALL: &[TopicSpec] = &[
    BANK_TRANSACTIONS,
    USER_SETTINGS,
    USER_ALERTS,
    CONNECT_OFFSETS,
];
