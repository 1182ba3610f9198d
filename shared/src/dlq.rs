//! Dead letters: a record a consumer cannot use goes, unchanged, to `<topic>.dlq` with the reason
//! in headers, and the consumer moves on. Nothing is dropped silently and nothing blocks a
//! partition forever.
//!
//! Every runtime here — the consumer loop, the streams runtime, the analytics sink — makes its
//! dead letters with [`Letter::new`] and counts them with [`Letter::acknowledged`] once the
//! broker has them, so the letters and `kafka_records_dead_lettered_total{application, topic,
//! kind}` always agree. Each application that rejects a record writes its own letter: a bad
//! record on a topic three applications read is three letters, told apart by `dead_lettered_by`.
//!
//! Headers added to the original record's own headers:
//!
//! | header             | value                                                         |
//! |--------------------|---------------------------------------------------------------|
//! | `error`            | why the record was dead-lettered (human-readable)             |
//! | `error.kind`       | `decode` or `rejected`                                        |
//! | `dead_lettered_by` | the application that rejected it (consumer group / app id)    |
//! | `source.topic`     | the topic it was read from                                    |
//! | `source.partition` | its partition                                                 |
//! | `source.offset`    | its offset                                                    |
//! | `dead_lettered_at` | RFC 3339 time it was dead-lettered                            |
//!
//! `casestudies dlq replay` re-produces letters to their source topic once the cause is fixed.

use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};

use crate::metrics::{self, DeadLetterLabels};
use crate::producer::{Delivery, EventProducer, ProduceError};
use crate::topics::dlq_name;

pub const HEADER_ERROR: &str = "error";
pub const HEADER_ERROR_KIND: &str = "error.kind";
pub const HEADER_APPLICATION: &str = "dead_lettered_by";
pub const HEADER_SOURCE_TOPIC: &str = "source.topic";
pub const HEADER_SOURCE_PARTITION: &str = "source.partition";
pub const HEADER_SOURCE_OFFSET: &str = "source.offset";
pub const HEADER_DEAD_LETTERED_AT: &str = "dead_lettered_at";
/// Set on a record re-produced by a replay: `<dlq topic>/<partition>/<offset>` of its letter.
pub const HEADER_REPLAYED_FROM: &str = "replayed_from";

/// The headers a dead letter adds (a replay strips them again).
pub const DEAD_LETTER_HEADERS: &[&str] = &[
    HEADER_ERROR,
    HEADER_ERROR_KIND,
    HEADER_APPLICATION,
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
    HEADER_DEAD_LETTERED_AT,
];

/// Why a record went to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// The bytes are not a valid record (bad JSON, wrong shape, bad key, no payload).
    Decode,
    /// Valid bytes that the handler says can never be processed.
    Rejected,
}

impl DeadLetterKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeadLetterKind::Decode => "decode",
            DeadLetterKind::Rejected => "rejected",
        }
    }
}

/// A dead letter ready to produce: the original record, re-addressed to `<topic>.dlq`, with
/// the reason and the rejecting application in its headers.
#[derive(Debug, Clone)]
pub struct Letter {
    /// `<source topic>.dlq`.
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: Option<i64>,
    pub application: String,
    pub source_topic: String,
    pub kind: DeadLetterKind,
}

impl Letter {
    /// The letter for `message`, rejected by `application` (its consumer group or application
    /// id) for `reason`. Logs it (one line, the same from every runtime).
    pub fn new(
        message: &OwnedMessage,
        application: &str,
        kind: DeadLetterKind,
        reason: &str,
    ) -> Letter {
        tracing::warn!(
            application,
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            kind = kind.as_str(),
            reason,
            "dead-lettering record"
        );
        let mut headers: Vec<(String, Vec<u8>)> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        headers.extend(
            [
                (HEADER_ERROR, reason.to_owned()),
                (HEADER_ERROR_KIND, kind.as_str().to_owned()),
                (HEADER_APPLICATION, application.to_owned()),
                (HEADER_SOURCE_TOPIC, message.topic().to_owned()),
                (HEADER_SOURCE_PARTITION, message.partition().to_string()),
                (HEADER_SOURCE_OFFSET, message.offset().to_string()),
                (HEADER_DEAD_LETTERED_AT, chrono::Utc::now().to_rfc3339()),
            ]
            .map(|(k, v)| (k.to_owned(), v.into_bytes())),
        );
        Letter {
            topic: dlq_name(message.topic()),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: message.timestamp().to_millis(),
            application: application.to_owned(),
            source_topic: message.topic().to_owned(),
            kind,
        }
    }

    /// Counts the letter in `kafka_records_dead_lettered_total`: call once the broker
    /// acknowledged it ([`send`] does).
    pub fn acknowledged(&self) {
        metrics::client()
            .dead_lettered
            .get_or_create(&DeadLetterLabels {
                application: self.application.clone(),
                topic: self.source_topic.clone(),
                kind: self.kind.as_str().to_owned(),
            })
            .inc();
    }

    /// The headers as a Kafka header list.
    pub fn owned_headers(&self) -> OwnedHeaders {
        owned_headers(&self.headers)
    }
}

/// A header list from `(name, value)` pairs.
pub fn owned_headers(pairs: &[(String, Vec<u8>)]) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    for (key, value) in pairs {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_slice()),
        });
    }
    headers
}

/// Produces `letter` and, once the broker acknowledged it, counts it.
pub async fn send(producer: &EventProducer, letter: &Letter) -> Result<Delivery, ProduceError> {
    let delivery = producer
        .send(
            &letter.topic,
            letter.key.as_deref(),
            letter.payload.as_deref(),
            letter.owned_headers(),
            letter.timestamp_ms,
        )
        .await?;
    letter.acknowledged();
    Ok(delivery)
}

/// A dead letter read back from a `.dlq` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub error: String,
    pub kind: String,
    /// The application that rejected the record (`None` for letters written before the header
    /// existed).
    pub application: Option<String>,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// The original record's own headers (the dead-letter headers removed).
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: Option<i64>,
}

impl DeadLetter {
    /// Parses a record of a dead-letter topic; `None` if it lacks the dead-letter headers.
    pub fn from_message(message: &impl Message) -> Option<DeadLetter> {
        let headers = message.headers()?;
        let get = |name: &str| {
            headers
                .iter()
                .filter(|h| h.key == name)
                .last()
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        Some(DeadLetter {
            error: get(HEADER_ERROR)?,
            kind: get(HEADER_ERROR_KIND)?,
            application: get(HEADER_APPLICATION),
            source_topic: get(HEADER_SOURCE_TOPIC)?,
            source_partition: get(HEADER_SOURCE_PARTITION)?.parse().ok()?,
            source_offset: get(HEADER_SOURCE_OFFSET)?.parse().ok()?,
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers: headers
                .iter()
                .filter(|h| !DEAD_LETTER_HEADERS.contains(&h.key))
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect(),
            timestamp_ms: message.timestamp().to_millis(),
        })
    }
}
