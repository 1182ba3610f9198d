//! The records on Ingestion's topics (JSON), and the rules every reader applies to them: the
//! ingest API checks each line before publishing, the speed layer checks each record again
//! (anything may be written to a topic) and dead-letters what fails, and the batch layer must
//! count exactly what [`check_record`] accepts, so the two layers can be reconciled.
//!
//! **One event** ([`RawEvent`]) is "`actor` did `event_type` on `source` at `timestamp`":
//!
//! | field | what | rule |
//! |---|---|---|
//! | `event_id` | unique id, for de-duplication downstream | a UUID (lowercase, hyphenated); the API mints a UUIDv7 when the client sends none — a client that retries a batch sends its own ids, so the retry's duplicates can be dropped |
//! | `source` | the kind of producer | `web`, `mobile` or `iot` ([`Source`]) |
//! | `event_type` | what happened | [`validate_event_type`]: `[a-z0-9_.]{1,64}`, starting with a letter (`page_view`, `app.open`) |
//! | `actor` | who did it: the user id for `web` and `mobile`, the device id for `iot` | [`validate_actor`]: 1–128 of `A–Z a–z 0–9 _ . : -`; **the record key**, so one actor's events stay in order on one partition |
//! | `timestamp` | event time (RFC 3339), what the windows use | within [`MAX_AGE`] before and [`MAX_AHEAD`] after `received_at` |
//! | `received_at` | when the ingest API accepted it (its clock); set by the API, never by the client | — |
//! | `properties` | free-form JSON object | at most [`MAX_PROPERTIES_BYTES`] as JSON; `{}` when absent |
//!
//! The time bounds are checked against `received_at`, which travels with the event, not against
//! the reader's clock: a record is valid or not once and for all, so a replay (the batch layer
//! a day later, the speed layer after a crash) decides exactly as the first reading did.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shared::Event;
use utoipa::ToSchema;

/// The oldest event time accepted, before `received_at`: the retention of `raw_events` (3 days).
/// An older event could not be replayed by the batch layer anyway.
pub const MAX_AGE: TimeDelta = TimeDelta::days(3);
/// The latest event time accepted, after `received_at`: a device clock that runs an hour fast
/// is tolerated, a clock set to 2099 is not (it would close every window of its partition).
pub const MAX_AHEAD: TimeDelta = TimeDelta::hours(1);
/// The largest `properties` object, serialized.
pub const MAX_PROPERTIES_BYTES: usize = 4096;
/// The longest event type.
pub const MAX_EVENT_TYPE_CHARS: usize = 64;
/// The longest actor id.
pub const MAX_ACTOR_CHARS: usize = 128;

/// The kind of producer an event comes from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Web clickstream.
    Web,
    /// The mobile app.
    Mobile,
    /// IoT devices.
    Iot,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Web, Source::Mobile, Source::Iot];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Web => "web",
            Source::Mobile => "mobile",
            Source::Iot => "iot",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Source::ALL
            .into_iter()
            .find(|source| source.as_str() == s)
            .ok_or_else(|| format!("source {s:?} is not one of web, mobile, iot"))
    }
}

/// `[a-z0-9_.]{1,64}`, starting with a letter: a short identifier a dashboard can show and a
/// key (`minute|source|event_type`) can carry without escaping.
pub fn validate_event_type(event_type: &str) -> Result<(), String> {
    let chars = event_type.chars().count();
    if chars == 0 || chars > MAX_EVENT_TYPE_CHARS {
        return Err(format!(
            "event_type must be 1 to {MAX_EVENT_TYPE_CHARS} characters, not {chars}"
        ));
    }
    if !event_type.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!(
            "event_type {event_type:?} must start with a lowercase letter"
        ));
    }
    if let Some(bad) = event_type
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.')))
    {
        return Err(format!(
            "event_type {event_type:?} has {bad:?}: only a-z, 0-9, '_' and '.' are allowed"
        ));
    }
    Ok(())
}

/// 1–128 of `A–Z a–z 0–9 _ . : -`: user ids (`u_123`), device ids (`sensor-0042`), MAC
/// addresses (`aa:bb:cc:dd:ee:ff`). No `|` (keys of the speed layer's stores carry it).
pub fn validate_actor(actor: &str) -> Result<(), String> {
    let chars = actor.chars().count();
    if chars == 0 || chars > MAX_ACTOR_CHARS {
        return Err(format!(
            "actor must be 1 to {MAX_ACTOR_CHARS} characters, not {chars}"
        ));
    }
    if let Some(bad) = actor
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(format!(
            "actor {actor:?} has {bad:?}: only A-Z, a-z, 0-9, '_', '.', ':' and '-' are allowed"
        ));
    }
    Ok(())
}

/// A UUID in its canonical form (lowercase, hyphenated).
pub fn validate_event_id(id: &str) -> Result<(), String> {
    match uuid::Uuid::try_parse(id) {
        Ok(uuid) if uuid.hyphenated().to_string() == id => Ok(()),
        Ok(_) => Err(format!(
            "event_id {id:?} must be a lowercase hyphenated UUID"
        )),
        Err(err) => Err(format!("event_id {id:?} is not a UUID: {err}")),
    }
}

/// At most [`MAX_PROPERTIES_BYTES`] as JSON.
pub fn validate_properties(properties: &Map<String, Value>) -> Result<(), String> {
    let bytes = serde_json::to_vec(properties).map_or(usize::MAX, |json| json.len());
    if bytes > MAX_PROPERTIES_BYTES {
        return Err(format!(
            "properties are {bytes} bytes as JSON, at most {MAX_PROPERTIES_BYTES}"
        ));
    }
    Ok(())
}

/// `timestamp` within [`MAX_AGE`] before and [`MAX_AHEAD`] after `received_at`.
pub fn validate_timestamp(
    timestamp: DateTime<Utc>,
    received_at: DateTime<Utc>,
) -> Result<(), String> {
    if timestamp > received_at + MAX_AHEAD {
        return Err(format!(
            "timestamp {} is more than 1h after it was received ({})",
            rfc3339(timestamp),
            rfc3339(received_at)
        ));
    }
    if timestamp < received_at - MAX_AGE {
        return Err(format!(
            "timestamp {} is more than 3 days before it was received ({}): older than raw_events' retention",
            rfc3339(timestamp),
            rfc3339(received_at)
        ));
    }
    Ok(())
}

/// A time as the API writes it: RFC 3339, UTC, milliseconds.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One event on `raw_events`, key [`RawEvent::actor`] (see the module's table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEvent {
    pub event_id: String,
    pub source: Source,
    pub event_type: String,
    /// The user id (`web`, `mobile`) or the device id (`iot`); the record key.
    pub actor: String,
    /// Event time.
    pub timestamp: DateTime<Utc>,
    /// When the ingest API accepted the event.
    pub received_at: DateTime<Utc>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
}

impl Event for RawEvent {
    const TYPE: &'static str = "RawEvent";
    fn event_id(&self) -> String {
        self.event_id.clone()
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.timestamp
    }
}

impl RawEvent {
    /// Every rule of the module's table.
    pub fn validate(&self) -> Result<(), String> {
        validate_event_id(&self.event_id)?;
        validate_event_type(&self.event_type)?;
        validate_actor(&self.actor)?;
        validate_timestamp(self.timestamp, self.received_at)?;
        validate_properties(&self.properties)
    }
}

/// Whether a record of `raw_events` counts, for every layer that counts them: its payload is a
/// valid [`RawEvent`], its key is the event's actor (else it would be counted on a partition
/// where the actor's other events are not: distinct actors would be counted twice), and its
/// record timestamp is the event time (stream time, which closes windows, is built from record
/// timestamps; the ingest API sets them so). `Err` is the reason it is dead-lettered.
pub fn check_record(
    key: Option<&str>,
    record_timestamp_ms: Option<i64>,
    event: &RawEvent,
) -> Result<(), String> {
    shared::consumer::check_key(
        key,
        shared::consumer::PayloadKey::new("actor", &event.actor),
    )?;
    event.validate()?;
    let event_ms = event.timestamp.timestamp_millis();
    if record_timestamp_ms != Some(event_ms) {
        return Err(format!(
            "record timestamp {record_timestamp_ms:?} is not the event's timestamp {event_ms} ({})",
            rfc3339(event.timestamp)
        ));
    }
    Ok(())
}

/// The per-minute counts of one (source, event type) — on `realtime_counts` (compacted), key
/// [`count_key`] `minute|source|event_type`: the latest record per key is the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RealtimeCount {
    /// The minute's start: the window is `[minute, minute + 1 min)` of event time.
    pub minute: DateTime<Utc>,
    pub source: Source,
    pub event_type: String,
    /// Events counted in the minute.
    pub count: u64,
    /// Distinct actors among them.
    pub distinct_users: u64,
    /// How many partitions of `raw_events` had events for it.
    pub partitions: u32,
    /// `true` once every partition of `raw_events` has closed the minute (its stream time passed
    /// the minute's end + the grace period): nothing can change it any more. `false`: an update
    /// while the minute may still grow.
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// The key of a (minute, source, event type): `2026-03-01T12:34:00Z|web|click`. Event types and
/// sources have no `|`, so it splits back unambiguously.
pub fn count_key(minute_ms: i64, source: Source, event_type: &str) -> String {
    format!("{}|{source}|{event_type}", minute_label(minute_ms))
}

/// A minute's start as it appears in keys: RFC 3339 to the second, UTC.
pub fn minute_label(minute_ms: i64) -> String {
    DateTime::from_timestamp_millis(minute_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> RawEvent {
        let now = Utc::now();
        RawEvent {
            event_id: shared::event::new_event_id(),
            source: Source::Web,
            event_type: "page_view".into(),
            actor: "u_1".into(),
            timestamp: now,
            received_at: now,
            properties: Map::new(),
        }
    }

    #[test]
    fn event_types_are_short_identifiers() {
        assert!(validate_event_type("page_view").is_ok());
        assert!(validate_event_type("app.open2").is_ok());
        assert!(validate_event_type("").unwrap_err().contains("1 to 64"));
        assert!(validate_event_type(&"a".repeat(65)).is_err());
        assert!(validate_event_type("Click").unwrap_err().contains("letter"));
        assert!(
            validate_event_type("add-to-cart")
                .unwrap_err()
                .contains("'-'")
        );
        assert!(validate_event_type("a|b").is_err());
    }

    #[test]
    fn actors_are_ids_without_separators() {
        assert!(validate_actor("sensor-0042").is_ok());
        assert!(validate_actor("aa:bb:cc:dd:ee:ff").is_ok());
        assert!(validate_actor("").is_err());
        assert!(validate_actor(&"d".repeat(129)).is_err());
        assert!(validate_actor("a|b").unwrap_err().contains("'|'"));
        assert!(validate_actor("ann lee").is_err());
    }

    #[test]
    fn time_bounds_are_relative_to_received_at() {
        let received = Utc::now() - TimeDelta::days(10);
        assert!(validate_timestamp(received, received).is_ok());
        assert!(validate_timestamp(received + TimeDelta::minutes(60), received).is_ok());
        let ahead = validate_timestamp(received + TimeDelta::minutes(61), received).unwrap_err();
        assert!(ahead.contains("1h"), "{ahead}");
        assert!(validate_timestamp(received - TimeDelta::days(3), received).is_ok());
        let old = validate_timestamp(received - TimeDelta::hours(73), received).unwrap_err();
        assert!(old.contains("3 days"), "{old}");
    }

    #[test]
    fn properties_are_bounded() {
        let mut big = Map::new();
        big.insert("x".into(), Value::String("y".repeat(MAX_PROPERTIES_BYTES)));
        assert!(validate_properties(&big).unwrap_err().contains("4096"));
    }

    #[test]
    fn a_record_counts_only_under_its_actor_and_its_event_time() {
        let e = event();
        let ts = Some(e.timestamp.timestamp_millis());
        assert!(check_record(Some("u_1"), ts, &e).is_ok());
        let miskeyed = check_record(Some("u_2"), ts, &e).unwrap_err();
        assert!(miskeyed.contains("actor"), "{miskeyed}");
        assert!(check_record(None, ts, &e).is_err());
        let retimed = check_record(Some("u_1"), ts.map(|t| t + 1), &e).unwrap_err();
        assert!(retimed.contains("record timestamp"), "{retimed}");
        let bad = RawEvent {
            event_id: "E1".into(),
            ..e
        };
        assert!(
            check_record(Some("u_1"), ts, &bad)
                .unwrap_err()
                .contains("UUID")
        );
    }

    #[test]
    fn unknown_fields_are_refused_and_properties_default_to_empty() {
        let json = r#"{"event_id":"0190d2a0-0000-7000-8000-000000000000","source":"iot",
            "event_type":"reading","actor":"dev-1","timestamp":"2026-01-01T00:00:00Z",
            "received_at":"2026-01-01T00:00:01Z"}"#;
        let e: RawEvent = serde_json::from_str(json).unwrap();
        assert!(e.properties.is_empty());
        assert_eq!(e.source, Source::Iot);
        let typo = json.replace("\"actor\"", "\"actr\"");
        assert!(serde_json::from_str::<RawEvent>(&typo).is_err());
    }

    #[test]
    fn count_keys_name_the_minute_source_and_type() {
        let minute = DateTime::parse_from_rfc3339("2026-03-01T12:34:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            count_key(minute, Source::Mobile, "tap"),
            "2026-03-01T12:34:00Z|mobile|tap"
        );
    }
}
