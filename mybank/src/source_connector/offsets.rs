//! Offset storage and reconciliation: the source offset in the compacted `connect_offsets` topic,
//! and on start what the output partitions already hold past it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use shared::Kafka;

use super::{Mode, SourceConnector};

/// The header carrying a record's source offset (JSON), read back on restart.
pub const OFFSET_HEADER: &str = "connect.source.offset";

/// Where the connector is in the table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOffset {
    /// The last row's incrementing column.
    pub incrementing: i64,
    /// The last row's timestamp column, as the database returned it (mode
    /// `timestamp+incrementing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// The value stored in `connect_offsets`: the source offset and, beyond what Connect stores, the
/// next Kafka offset of each output partition when it was written (where to look on restart).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredOffset {
    #[serde(flatten)]
    pub source: SourceOffset,
    #[serde(default)]
    pub kafka_next: BTreeMap<i32, i64>,
}

impl SourceOffset {
    /// The order rows are read in: `(timestamp, id)` or `id`.
    pub(super) fn position(&self, mode: Mode) -> (Option<DateTime<Utc>>, i64) {
        let ts = match mode {
            Mode::Incrementing => None,
            Mode::TimestampIncrementing => self
                .timestamp
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
        };
        (ts, self.incrementing)
    }
}

impl SourceConnector {
    /// The last offset written to `connect_offsets` for this connector and table.
    pub(super) async fn read_stored_offset(&self) -> anyhow::Result<StoredOffset> {
        let key = self.config.offset_key();
        let records = read_partitions(
            &self.kafka,
            &self.offsets_topic,
            [(0, Offset::Beginning)].into(),
        )
        .await?;
        let mut stored = StoredOffset::default();
        for (_, record_key, payload, _) in records {
            if record_key.as_deref() == Some(key.as_bytes()) {
                stored = match payload {
                    Some(bytes) => serde_json::from_slice(&bytes)
                        .with_context(|| format!("bad offset record in {}", self.offsets_topic))?,
                    // A tombstone resets the connector (as in Connect).
                    None => StoredOffset::default(),
                };
            }
        }
        Ok(stored)
    }

    /// Per output partition, the last source offset written past the stored offset (the rows a
    /// crashed run produced but did not record).
    pub(super) async fn already_in_kafka(
        &self,
        stored: &StoredOffset,
    ) -> anyhow::Result<BTreeMap<i32, SourceOffset>> {
        let partitions = self.partition_count().await?;
        let from = (0..partitions)
            .map(|p| {
                let offset = stored
                    .kafka_next
                    .get(&p)
                    .map_or(Offset::Beginning, |next| Offset::Offset(*next));
                (p, offset)
            })
            .collect();
        let mut ahead: BTreeMap<i32, SourceOffset> = BTreeMap::new();
        let mode = self.config.mode;
        for (partition, _, _, offset) in read_partitions(&self.kafka, &self.topic, from).await? {
            let Some(offset) = offset else { continue };
            if offset.position(mode) <= stored.source.position(mode) {
                continue;
            }
            let entry = ahead.entry(partition).or_default();
            if offset.position(mode) > entry.position(mode) {
                *entry = offset;
            }
        }
        Ok(ahead)
    }

    pub(super) async fn write_offset(&self, stored: &StoredOffset) -> anyhow::Result<()> {
        let key = self.config.offset_key();
        let payload = serde_json::to_vec(stored)?;
        self.producer
            .send(
                FutureRecord::to(&self.offsets_topic)
                    .partition(0)
                    .key(key.as_str())
                    .payload(payload.as_slice()),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(err, _)| anyhow::anyhow!("writing the offset: {err}"))?;
        self.stats.offset_commits.inc();
        Ok(())
    }
}

type ReadRecord = (i32, Option<Vec<u8>>, Option<Vec<u8>>, Option<SourceOffset>);

/// Reads the given partitions from the given offsets to their end: until each has reached its
/// high watermark and nothing more arrived for a moment (tansu 0.6 under-reports watermarks).
async fn read_partitions(
    kafka: &Kafka,
    topic: &str,
    from: BTreeMap<i32, Offset>,
) -> anyhow::Result<Vec<ReadRecord>> {
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", "mybank-source-connector-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        let mut remaining = BTreeMap::new();
        for (partition, offset) in &from {
            let (_, high) =
                shared::kafka::watermarks(&consumer, &topic, *partition, Duration::from_secs(30))?;
            let start = match offset {
                Offset::Offset(o) => *o,
                _ => 0,
            };
            if high > start {
                remaining.insert(*partition, high);
            }
            tpl.add_partition_offset(&topic, *partition, *offset)?;
        }
        consumer.assign(&tpl)?;
        let mut records = Vec::new();
        let idle = Duration::from_millis(300);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match consumer.poll(idle) {
                Some(Ok(message)) => {
                    if let Some(high) = remaining.get(&message.partition())
                        && message.offset() + 1 >= *high
                    {
                        remaining.remove(&message.partition());
                    }
                    let offset = message.headers().and_then(|headers| {
                        headers
                            .iter()
                            .find(|h| h.key == OFFSET_HEADER)
                            .and_then(|h| h.value)
                            .and_then(|v| serde_json::from_slice(v).ok())
                    });
                    records.push((
                        message.partition(),
                        message.key().map(<[u8]>::to_vec),
                        message.payload().map(<[u8]>::to_vec),
                        offset,
                    ));
                }
                Some(Err(err)) => tracing::debug!(%err, "reader"),
                None if remaining.is_empty() => break,
                None => {}
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "reading {topic}: partitions {:?} did not reach their end",
                    remaining.keys()
                );
            }
        }
        Ok(records)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_order_by_timestamp_then_id() {
        let at = |ts: &str, id| SourceOffset {
            incrementing: id,
            timestamp: Some(ts.to_owned()),
        };
        let mode = Mode::TimestampIncrementing;
        assert!(
            at("2026-01-01T00:00:00.001Z", 1).position(mode)
                > at("2026-01-01T00:00:00.000Z", 9).position(mode)
        );
        assert!(
            at("2026-01-01T00:00:00.000Z", 2).position(mode)
                > at("2026-01-01T00:00:00.000Z", 1).position(mode)
        );
        assert!(
            SourceOffset::default().position(mode) < at("1970-01-01T00:00:00Z", 0).position(mode)
        );
    }
}
