//! [`Kafka`]: the resolved connection every service and test holds.
//!
//! It answers three questions: where the brokers are (embedded or external), what every topic is
//! called (the prefix), and which client properties every producer/consumer/admin starts from.

use std::sync::Arc;

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{self, KafkaArgs};
use crate::embedded::EmbeddedBroker;
use crate::topics::TopicSpec;

/// A cheap-to-clone handle on the cluster. When it started the embedded broker, the broker lives
/// until the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Kafka {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    bootstrap: String,
    prefix: String,
    properties: Vec<(String, String)>,
    embedded: Option<Arc<EmbeddedBroker>>,
}

/// librdkafka defaults every consumer here overrides (a `KAFKA_*` variable overrides them again).
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    // librdkafka forwards every assigned partition's fetch queue to the consumer's queue and
    // compares the length of *that* with `queued.min.messages` (100,000): a consumer more than
    // 100k records behind stops fetching every partition for `fetch.queue.backoff.ms` (1 s) and
    // then sits on an empty queue. Catching up on a backlog stalled ~0.5 s per 100k records
    // (`KAFKA_DEBUG=fetch`: "queued.min.messages exceeded", "Fetch backoff for 1000ms"); with
    // 10 ms the streams benchmark's count-per-key went from ~135-220k to ~300k records/s.
    // librdkafka's documentation advises lowering it when ~1 s gaps between messages appear.
    ("fetch.queue.backoff.ms", "10"),
];

/// A consumer profile for latency-sensitive paths (e.g. MyBank's alerts): the broker may hold a
/// fetch that finds nothing new for `fetch.wait.max.ms` — librdkafka's default is 500 ms, and the
/// embedded mock cluster holds it that long even when records arrive meanwhile. 5 ms costs a few
/// more fetch requests while idle. Add it with `ConsumerOptions::properties` or to
/// `StreamsConfig::consumer_properties`.
pub const LOW_LATENCY_CONSUMER: &[(&str, &str)] = &[("fetch.wait.max.ms", "5")];

impl Kafka {
    /// Resolves `args`: the configured cluster, or a freshly started embedded broker.
    /// Extra client properties come from `KAFKA_<PROPERTY>` environment variables.
    pub fn connect(args: &KafkaArgs) -> anyhow::Result<Kafka> {
        let properties = config::client_properties_from_env(std::env::vars());
        let kafka = match &args.bootstrap_servers {
            Some(bootstrap) if !bootstrap.trim().is_empty() => {
                Kafka::external(bootstrap.trim(), &args.topic_prefix, properties)
            }
            // Tuning and debugging properties (`KAFKA_DEBUG=fetch`, `KAFKA_FETCH_WAIT_MAX_MS`)
            // apply to the embedded broker's clients too.
            _ => Kafka::embedded(Arc::new(EmbeddedBroker::start()?), &args.topic_prefix)
                .with_properties(properties),
        };
        tracing::info!(
            bootstrap_servers = %kafka.bootstrap_servers(),
            embedded = kafka.is_embedded(),
            topic_prefix = %kafka.prefix(),
            properties = ?config::redacted(&kafka.inner.properties),
            "kafka configured"
        );
        Ok(kafka)
    }

    /// A handle on an already running cluster.
    pub fn external(bootstrap: &str, prefix: &str, properties: Vec<(String, String)>) -> Kafka {
        Kafka {
            inner: Arc::new(Inner {
                bootstrap: bootstrap.to_owned(),
                prefix: prefix.to_owned(),
                properties,
                embedded: None,
            }),
        }
    }

    /// A handle on an embedded broker (kept alive by the handle).
    pub fn embedded(broker: Arc<EmbeddedBroker>, prefix: &str) -> Kafka {
        Kafka {
            inner: Arc::new(Inner {
                bootstrap: broker.bootstrap_servers().to_owned(),
                prefix: prefix.to_owned(),
                properties: Vec::new(),
                embedded: Some(broker),
            }),
        }
    }

    /// The same cluster with `properties` as the extra client properties.
    pub fn with_properties(&self, properties: Vec<(String, String)>) -> Kafka {
        Kafka {
            inner: Arc::new(Inner {
                properties,
                ..(*self.inner).clone()
            }),
        }
    }

    /// The same cluster with another topic prefix (tests give each test its own).
    pub fn with_prefix(&self, prefix: &str) -> Kafka {
        Kafka {
            inner: Arc::new(Inner {
                bootstrap: self.inner.bootstrap.clone(),
                prefix: prefix.to_owned(),
                properties: self.inner.properties.clone(),
                embedded: self.inner.embedded.clone(),
            }),
        }
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.inner.bootstrap
    }

    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub fn is_embedded(&self) -> bool {
        self.inner.embedded.is_some()
    }

    pub fn embedded_broker(&self) -> Option<&EmbeddedBroker> {
        self.inner.embedded.as_deref()
    }

    /// The topic's name on this cluster (with this handle's prefix).
    pub fn topic(&self, spec: &TopicSpec) -> String {
        spec.full_name(self.prefix())
    }

    /// A consumer in `group_id` that never commits on its own (the caller commits explicitly,
    /// after — or before — processing) and starts from the earliest offset; `properties` last.
    pub fn group_consumer_config(
        &self,
        group_id: &str,
        properties: &[(String, String)],
    ) -> ClientConfig {
        let mut config = self.consumer_config();
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        for (key, value) in properties {
            config.set(key, value);
        }
        config
    }

    /// The safe producer settings every producer here starts from: `acks=all` and idempotence
    /// (no loss, no duplicates or reordering from retries), lz4, a small linger for batching.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("linger.ms", "5");
        config
    }

    /// What every consumer here starts from: the client properties plus [`CONSUMER_DEFAULTS`]
    /// (a `KAFKA_*` variable of the same name wins).
    pub fn consumer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        self.apply_defaults(&mut config, CONSUMER_DEFAULTS);
        config
    }

    /// Sets each of `defaults` on `config` unless a `KAFKA_*` variable named that property
    /// (the variable, already in `client_config`, wins).
    pub fn apply_defaults(&self, config: &mut ClientConfig, defaults: &[(&str, &str)]) {
        for (name, value) in defaults {
            if !self.inner.properties.iter().any(|(key, _)| key == name) {
                config.set(*name, *value);
            }
        }
    }

    /// The properties every client starts from: bootstrap servers plus `KAFKA_*` pass-through.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.inner.bootstrap);
        for (key, value) in &self.inner.properties {
            config.set(key, value);
        }
        config
    }
}

/// `consumer.fetch_watermarks`, retried while the broker answers that a partition has no leader
/// yet: Apache Kafka elects the leaders of a new topic's partitions after CreateTopics returns,
/// so the first seconds of a new topic answer `NotLeaderForPartition` or `LeaderNotAvailable`.
pub fn watermarks<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> KafkaResult<(i64, i64)> {
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.fetch_watermarks(topic, partition, timeout) {
            Err(err) if is_leadership_change(&err) && Instant::now() < deadline => {
                tracing::debug!(topic, partition, %err, "no partition leader yet: retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

/// Errors that mean "ask again in a moment": a partition's leader is being elected or moved.
pub fn is_leadership_change(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorLoadInProgress
        )
    )
}

#[cfg(test)]
mod tests {
    use super::Kafka;

    fn backoff(kafka: &Kafka) -> Option<String> {
        let config = kafka.consumer_config();
        config.get("fetch.queue.backoff.ms").map(str::to_owned)
    }

    #[test]
    fn consumers_get_the_defaults_unless_a_kafka_variable_names_the_property() {
        let plain = Kafka::external("localhost:9092", "", Vec::new());
        assert_eq!(backoff(&plain).as_deref(), Some("10"));
        let tuned = plain.with_properties(vec![(
            "fetch.queue.backoff.ms".to_owned(),
            "250".to_owned(),
        )]);
        assert_eq!(backoff(&tuned).as_deref(), Some("250"));
        let group = tuned.group_consumer_config("g", &[]);
        assert_eq!(group.get("fetch.queue.backoff.ms"), Some("250"));
        assert_eq!(group.get("group.id"), Some("g"));
    }
}
