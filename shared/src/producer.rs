//! Typed publishing: serialize an [`Event`], key it, and wait for the broker's acknowledgement.
//!
//! Settings are the safe ones, not the fast ones: `acks=all` and `enable.idempotence=true` (no
//! loss, no duplicates from producer retries, order kept per partition), lz4 compression and a
//! small linger so batching still happens under load.

use std::time::Duration;

use chrono::Utc;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::Serialize;

use crate::event::Event;
use crate::kafka::Kafka;
use crate::metrics::{self, TopicLabels};

/// The partition librdkafka's default partitioner (`consistent_random`: CRC-32 of the key
/// modulo the partition count) picks for `key`: where every producer here puts a keyed record,
/// and so where a streams task or a connector must look for it. Producers in other languages
/// must use the same partitioner, not the Java client's murmur2.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (crc32fast::hash(key) % partitions.max(1) as u32) as i32
}

/// How long a send may wait for room in the local queue before failing.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the broker stored a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot serialize {event_type}: {source}")]
    Serialize {
        event_type: &'static str,
        source: serde_json::Error,
    },
    #[error("broker did not accept the record for {topic}: {source}")]
    Kafka {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
}

/// A cheap-to-clone producer shared by every task of a service.
#[derive(Clone)]
pub struct EventProducer {
    producer: FutureProducer,
}

impl EventProducer {
    pub fn new(kafka: &Kafka) -> anyhow::Result<Self> {
        let producer = kafka.producer_config().create()?;
        Ok(EventProducer { producer })
    }

    /// A producer with [`Kafka::producer_config`] plus `properties` (a `KAFKA_*` variable of
    /// the same name still wins), e.g. a log forwarder's `message.timeout.ms=0`: retry forever.
    pub fn with_properties(kafka: &Kafka, properties: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut config = kafka.producer_config();
        kafka.apply_defaults(&mut config, properties);
        Ok(EventProducer {
            producer: config.create()?,
        })
    }

    /// Publishes `event` to `topic` under `key`; the record timestamp is the event time, and the
    /// headers carry `event_id`, `event_type` and `produced_at`.
    pub async fn publish<E: Event>(
        &self,
        topic: &str,
        key: &str,
        event: &E,
    ) -> Result<Delivery, ProduceError> {
        let payload = serde_json::to_vec(event).map_err(|source| ProduceError::Serialize {
            event_type: E::TYPE,
            source,
        })?;
        let event_id = event.event_id();
        let produced_at = Utc::now().to_rfc3339();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "event_id",
                value: Some(event_id.as_str()),
            })
            .insert(Header {
                key: "event_type",
                value: Some(E::TYPE),
            })
            .insert(Header {
                key: "produced_at",
                value: Some(produced_at.as_str()),
            });
        self.send(
            topic,
            Some(key.as_bytes()),
            Some(&payload),
            headers,
            Some(event.event_time().timestamp_millis()),
        )
        .await
    }

    /// Publishes raw bytes: for dead letters, tests, and records that are not [`Event`]s.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: OwnedHeaders,
        timestamp_ms: Option<i64>,
    ) -> Result<Delivery, ProduceError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        if let Some(ts) = timestamp_ms {
            record = record.timestamp(ts);
        }
        match self.producer.send(record, QUEUE_TIMEOUT).await {
            Ok(delivery) => {
                metrics::client()
                    .produced
                    .get_or_create(&TopicLabels {
                        topic: topic.to_owned(),
                    })
                    .inc();
                Ok(Delivery {
                    partition: delivery.partition,
                    offset: delivery.offset,
                })
            }
            Err((source, _)) => Err(ProduceError::Kafka {
                topic: topic.to_owned(),
                source,
            }),
        }
    }

    /// Hands a raw record to the producer's queue now, in call order, and returns its
    /// acknowledgement to await later: a caller that must keep its records' order (lines of one
    /// file) and know which were acknowledged (to advance a read position) enqueues them one
    /// after another and awaits their acknowledgements together — one round trip for many,
    /// where awaiting [`EventProducer::send`] for each would cost one each. `Err` when the
    /// local queue is full (`queue.buffering.max.messages`): the caller waits and tries again.
    pub fn enqueue(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        timestamp_ms: Option<i64>,
    ) -> Result<
        impl std::future::Future<Output = Result<Delivery, ProduceError>> + Send + 'static,
        ProduceError,
    > {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        if let Some(ts) = timestamp_ms {
            record = record.timestamp(ts);
        }
        let topic = topic.to_owned();
        let delivery =
            self.producer
                .send_result(record)
                .map_err(|(source, _)| ProduceError::Kafka {
                    topic: topic.clone(),
                    source,
                })?;
        Ok(async move {
            match delivery.await {
                Ok(Ok(delivery)) => {
                    metrics::client()
                        .produced
                        .get_or_create(&TopicLabels { topic })
                        .inc();
                    Ok(Delivery {
                        partition: delivery.partition,
                        offset: delivery.offset,
                    })
                }
                Ok(Err((source, _))) => Err(ProduceError::Kafka { topic, source }),
                Err(_canceled) => Err(ProduceError::Kafka {
                    topic,
                    source: rdkafka::error::KafkaError::Canceled,
                }),
            }
        })
    }

    /// Waits until every queued record is acknowledged (call before exiting).
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        Ok(self.producer.flush(timeout)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_for_key_is_crc32_modulo() {
        // zlib's crc32("123456789") = 0xCBF43926, the standard check value.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            partition_for_key(b"123456789", 7),
            (0xCBF4_3926u32 % 7) as i32
        );
    }
}
