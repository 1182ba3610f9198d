//! **Ingest API** (producer): `POST /v1/events`, a batch of events as newline-delimited JSON
//! (`Content-Type: application/x-ndjson`), one [`IncomingEvent`] per line, published to
//! `raw_events` keyed by the event's actor (one user's or device's events in order, on one
//! partition).
//!
//! **Each line stands alone.** A line that is not a valid event is rejected with its line
//! number and the reason; the others are published. The answer:
//!
//! * `202` `{"accepted": n, "rejected": [{"line": 3, "error": "…"}]}` — at least one event was
//!   published (every accepted event is acknowledged by the broker, `acks=all`, before the
//!   answer);
//! * `400` `{"error": "no event in the batch was valid", "detail": {"accepted": 0, "rejected":
//!   […]}}` — every line was rejected; `400` too for an empty body;
//! * `413` — a body over [`MAX_BODY_BYTES`] or more than [`MAX_EVENTS`] lines: nothing published;
//! * `415` — another content type (a JSON array is not accepted: a batch of lines can be
//!   validated, published and answered line by line, and a producer can stream it);
//! * `503` — the broker did not acknowledge some events: `detail` lists those lines and how many
//!   were published. A client retries the batch; events that were published twice carry the
//!   same `event_id` if the client sent its own, so a reader can drop the duplicates.
//!
//! A blank last line (the body ends with a newline) is fine; a blank line elsewhere is rejected.
//! The API sets `received_at` (its clock, once per batch) and mints `event_id` (UUIDv7) when a
//! line has none; the time rules of [`crate::events`] are checked against `received_at`.
//!
//! **Fast publishing.** The batch's events are all handed to the producer first, then their
//! acknowledgements awaited together: librdkafka batches them per partition (`linger.ms=5`,
//! lz4), so a batch of 500 costs about one round trip, not 500.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shared::http::{ApiError, Json};
use shared::{EventProducer, Kafka};
use utoipa::ToSchema;

use crate::events::{RawEvent, Source};
use crate::topics::RAW_EVENTS;

/// The most events (lines) in one batch.
pub const MAX_EVENTS: usize = 10_000;
/// The largest body: 16 MiB (10,000 events of 1.6 KB on average).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// The content type of a batch.
pub const NDJSON: &str = "application/x-ndjson";

/// One line of a batch: an event as a producer sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncomingEvent {
    /// A UUID; minted by the API when absent. Send your own to make retries de-duplicable.
    pub event_id: Option<String>,
    pub source: Source,
    /// `[a-z0-9_.]{1,64}`, starting with a letter.
    pub event_type: String,
    /// The user id (web, mobile) or device id (iot): 1–128 of `A–Z a–z 0–9 _ . : -`.
    pub actor: String,
    /// Event time, RFC 3339: at most 1 h ahead of the API's clock, at most 3 days behind.
    pub timestamp: DateTime<Utc>,
    /// Any JSON object of at most 4 KiB.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
}

impl IncomingEvent {
    /// The event as published, received at `received_at`.
    pub fn into_raw(self, received_at: DateTime<Utc>) -> Result<RawEvent, String> {
        let event_id = match self.event_id {
            Some(id) => {
                // Any spelling of a UUID, stored in its canonical form.
                let uuid = uuid::Uuid::try_parse(&id)
                    .map_err(|err| format!("event_id {id:?} is not a UUID: {err}"))?;
                uuid.hyphenated().to_string()
            }
            None => shared::event::new_event_id(),
        };
        let event = RawEvent {
            event_id,
            source: self.source,
            event_type: self.event_type,
            actor: self.actor,
            timestamp: self.timestamp,
            received_at,
            properties: self.properties,
        };
        event.validate()?;
        Ok(event)
    }
}

/// A rejected line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    pub error: String,
}

/// The answer to a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    /// Events published (acknowledged by the broker).
    pub accepted: usize,
    /// Lines not published, in line order.
    pub rejected: Vec<LineError>,
}

/// The events of a batch with their line numbers, and the rejected lines.
pub type Parsed = (Vec<(usize, RawEvent)>, Vec<LineError>);

/// The lines of `body`, numbered from 1, each parsed and validated: the events to publish and
/// the rejected lines. `Err` for a body that is not a batch at all (empty, too many lines).
pub fn parse_batch(body: &[u8], received_at: DateTime<Utc>) -> Result<Parsed, ApiError> {
    let mut lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    // A body ending with a newline (or several) has blank last lines: not events.
    while lines.last().is_some_and(|l| l.trim_ascii().is_empty()) {
        lines.pop();
    }
    if lines.is_empty() {
        return Err(ApiError::bad_request(
            "the body is empty: send one JSON event per line",
        ));
    }
    if lines.len() > MAX_EVENTS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} lines: a batch has at most {MAX_EVENTS} events",
                lines.len()
            ),
        ));
    }
    let mut events = Vec::with_capacity(lines.len());
    let mut rejected = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        let number = i + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let parsed = if line.trim_ascii().is_empty() {
            Err("blank line".to_owned())
        } else {
            serde_json::from_slice::<IncomingEvent>(line)
                .map_err(|err| format!("not an event: {err}"))
                .and_then(|incoming| incoming.into_raw(received_at))
        };
        match parsed {
            Ok(event) => events.push((number, event)),
            Err(error) => rejected.push(LineError {
                line: number,
                error,
            }),
        }
    }
    Ok((events, rejected))
}

pub struct IngestApi {
    producer: EventProducer,
    topic: String,
}

impl IngestApi {
    pub fn new(kafka: &Kafka) -> anyhow::Result<Self> {
        Ok(IngestApi {
            producer: EventProducer::new(kafka)?,
            topic: kafka.topic(&RAW_EVENTS),
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(
                "/v1/events",
                post(ingest).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
            )
            .with_state(self)
    }

    pub fn flush(&self) {
        if let Err(err) = self.producer.flush(std::time::Duration::from_secs(10)) {
            tracing::warn!(%err, "ingest API: flush on shutdown");
        }
    }

    /// Publishes `events` all at once, then awaits every acknowledgement: the line numbers that
    /// failed, with the reason.
    pub async fn publish(&self, events: &[(usize, RawEvent)]) -> Vec<LineError> {
        let sends = events
            .iter()
            .map(|(_, event)| self.producer.publish(&self.topic, &event.actor, event));
        join_all(sends)
            .await
            .into_iter()
            .zip(events)
            .filter_map(|(result, (line, _))| {
                result.err().map(|err| LineError {
                    line: *line,
                    error: err.to_string(),
                })
            })
            .collect()
    }
}

/// Whether the request says NDJSON (parameters such as `charset` aside).
fn is_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(NDJSON))
}

/// Publishes a batch of events, each line on its own.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "ingest API",
    request_body(content = IncomingEvent, content_type = "application/x-ndjson",
        description = "One event per line (at most 10,000 lines, 16 MiB)"),
    responses(
        (status = 202, description = "The valid events were published; rejected lines with their reasons", body = BatchResult),
        (status = 400, description = "Empty body, or no valid line (detail: the BatchResult)"),
        (status = 413, description = "Over 16 MiB or 10,000 lines: nothing published"),
        (status = 415, description = "Not application/x-ndjson"),
        (status = 503, description = "The broker did not acknowledge some events (detail: which lines)"),
    )
)]
pub async fn ingest(
    State(api): State<Arc<IngestApi>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<BatchResult>), ApiError> {
    if !is_ndjson(&headers) {
        let given = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected {NDJSON} (one JSON event per line), not {given}"),
        ));
    }
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the body is over {MAX_BODY_BYTES} bytes")
        } else {
            "the body could not be read".to_owned()
        };
        ApiError::new(status, message).with_detail(rejection.body_text())
    })?;
    let (events, mut rejected) = parse_batch(&body, Utc::now())?;
    if events.is_empty() {
        return Err(
            ApiError::bad_request("no event in the batch was valid").with_detail(BatchResult {
                accepted: 0,
                rejected,
            }),
        );
    }
    let failed = api.publish(&events).await;
    if !failed.is_empty() {
        let published = events.len() - failed.len();
        tracing::warn!(
            failed = failed.len(),
            published,
            "ingest API: events not acknowledged"
        );
        return Err(ApiError::unavailable(format!(
            "the broker did not acknowledge {} events ({published} were published); retry the batch",
            failed.len()
        ))
        .with_detail(failed));
    }
    rejected.sort_by_key(|r| r.line);
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchResult {
            accepted: events.len(),
            rejected,
        }),
    ))
}

/// The ingest API on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "ingest-api"
    }
    fn about(&self) -> &'static str {
        "POST /v1/events (NDJSON batches, each line validated) → raw_events, keyed by actor."
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        _resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let api = Arc::new(IngestApi::new(&ctx.kafka)?);
        let flushed = Arc::clone(&api);
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&api).router())
            .handle(api)
            .on_stop(async move {
                flushed.flush();
                Ok(())
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(actor: &str, extra: &str) -> String {
        format!(
            r#"{{"source":"web","event_type":"click","actor":"{actor}","timestamp":"{}"{extra}}}"#,
            Utc::now().to_rfc3339()
        )
    }

    #[test]
    fn each_line_is_judged_alone_and_numbered_from_one() {
        let body = format!(
            "{}\n{{not json\n\n{}\r\n{}\n\n",
            line("u1", ""),
            line("u 2", ""),
            line("u3", r#","color":"red""#)
        );
        let (events, rejected) = parse_batch(body.as_bytes(), Utc::now()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].0, 1);
        let lines: Vec<usize> = rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3, 4, 5]);
        assert!(rejected[0].error.contains("not an event"), "{rejected:?}");
        assert_eq!(rejected[1].error, "blank line");
        assert!(rejected[2].error.contains("actor"), "{rejected:?}");
        assert!(rejected[3].error.contains("color"), "{rejected:?}");
    }

    #[test]
    fn event_ids_are_minted_or_normalized() {
        let given = "0190D2A0-0000-7000-8000-00000000000A";
        let body = format!(
            "{}\n{}\n{}",
            line("u1", ""),
            line("u1", &format!(r#","event_id":"{given}""#)),
            line("u1", r#","event_id":"e-1""#)
        );
        let (events, rejected) = parse_batch(body.as_bytes(), Utc::now()).unwrap();
        assert!(uuid::Uuid::try_parse(&events[0].1.event_id).is_ok());
        assert_eq!(events[1].1.event_id, given.to_lowercase());
        assert_eq!(rejected[0].line, 3);
    }

    #[test]
    fn empty_and_oversized_batches_are_refused_whole() {
        assert_eq!(
            parse_batch(b"", Utc::now()).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse_batch(b"\n \n", Utc::now()).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let many = "{}\n".repeat(MAX_EVENTS + 1);
        assert_eq!(
            parse_batch(many.as_bytes(), Utc::now()).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn received_at_is_the_api_clock_and_bounds_the_event_time() {
        let received = Utc::now();
        let future = format!(
            r#"{{"source":"iot","event_type":"reading","actor":"dev-1","timestamp":"{}"}}"#,
            (received + chrono::TimeDelta::hours(2)).to_rfc3339()
        );
        let (events, rejected) = parse_batch(future.as_bytes(), received).unwrap();
        assert!(events.is_empty());
        assert!(rejected[0].error.contains("1h"), "{rejected:?}");
        let (events, _) = parse_batch(line("u1", "").as_bytes(), received).unwrap();
        assert_eq!(events[0].1.received_at, received);
    }
}
