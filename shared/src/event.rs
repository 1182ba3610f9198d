//! Events: every record in every case study is a fact ("user_123 liked post_456 at 15:00"),
//! serialized as JSON, with an id (for de-duplication downstream) and the time it happened.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A fact that happened, published to a topic.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The event's type, sent in the `event_type` header (e.g. `ShowPositionRecorded`).
    const TYPE: &'static str;

    /// Unique per event: consumers drop a second delivery of the same id.
    fn event_id(&self) -> String;

    /// When it happened (not when it was produced): the record timestamp, and what windows use.
    fn event_time(&self) -> DateTime<Utc>;
}

/// A new time-ordered event id (UUIDv7): unique, and sorts by creation time.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
