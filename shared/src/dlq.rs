//! Dead letters: a record a consumer cannot use goes, unchanged, to `<topic>.dlq` with the reason
//! in headers, and the consumer moves on. Nothing is dropped silently and nothing blocks a
//! partition forever.
//!
//! Headers added to the original record's own headers:
//!
//! | header             | value                                              |
//! |--------------------|----------------------------------------------------|
//! | `error`            | why the record was dead-lettered (human-readable)  |
//! | `error.kind`       | `decode` or `rejected`                             |
//! | `source.topic`     | the topic it was read from                         |
//! | `source.partition` | its partition                                      |
//! | `source.offset`    | its offset                                         |
//! | `dead_lettered_at` | RFC 3339 time it was dead-lettered                 |

use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};

use crate::producer::{Delivery, EventProducer, ProduceError};
use crate::topics::dlq_name;

pub const HEADER_ERROR: &str = "error";
pub const HEADER_ERROR_KIND: &str = "error.kind";
pub const HEADER_SOURCE_TOPIC: &str = "source.topic";
pub const HEADER_SOURCE_PARTITION: &str = "source.partition";
pub const HEADER_SOURCE_OFFSET: &str = "source.offset";
pub const HEADER_DEAD_LETTERED_AT: &str = "dead_lettered_at";

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

/// Logs that `message` is being dead-lettered (one line, the same from every consumer).
pub fn warn(message: &OwnedMessage, kind: DeadLetterKind, reason: &str) {
    tracing::warn!(
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        kind = kind.as_str(),
        reason,
        "dead-lettering record"
    );
}

/// The headers of `message`'s dead letter: its own headers, then the reason and the source.
pub fn dead_letter_headers(
    message: &OwnedMessage,
    kind: DeadLetterKind,
    error: &str,
) -> Vec<(String, Vec<u8>)> {
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
            (HEADER_ERROR, error.to_owned()),
            (HEADER_ERROR_KIND, kind.as_str().to_owned()),
            (HEADER_SOURCE_TOPIC, message.topic().to_owned()),
            (HEADER_SOURCE_PARTITION, message.partition().to_string()),
            (HEADER_SOURCE_OFFSET, message.offset().to_string()),
            (HEADER_DEAD_LETTERED_AT, chrono::Utc::now().to_rfc3339()),
        ]
        .map(|(k, v)| (k.to_owned(), v.into_bytes())),
    );
    headers
}

/// Copies `message` (key, payload, timestamp, headers) to its dead-letter topic with the reason.
pub async fn dead_letter(
    producer: &EventProducer,
    message: &OwnedMessage,
    kind: DeadLetterKind,
    error: &str,
) -> Result<Delivery, ProduceError> {
    let mut headers = OwnedHeaders::new();
    for (key, value) in dead_letter_headers(message, kind, error) {
        headers = headers.insert(Header {
            key: &key,
            value: Some(&value),
        });
    }
    producer
        .send(
            &dlq_name(message.topic()),
            message.key(),
            message.payload(),
            headers,
            message.timestamp().to_millis(),
        )
        .await
}

/// A dead letter read back from a `.dlq` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub error: String,
    pub kind: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
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
            source_topic: get(HEADER_SOURCE_TOPIC)?,
            source_partition: get(HEADER_SOURCE_PARTITION)?.parse().ok()?,
            source_offset: get(HEADER_SOURCE_OFFSET)?.parse().ok()?,
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
        })
    }
}
