//! The process-wide Prometheus registry, served by every service on `GET /metrics`.
//!
//! Client counters live here so every consumer and producer reports the same series; services
//! and the streams runtime add theirs with [`register`].

use std::sync::{Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Metric, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub topic: String,
    pub group: String,
}

/// `kafka_records_dead_lettered_total`: one series per rejecting application, source topic and
/// kind, counted by [`crate::dlq`] for every runtime (consumer loop, streams, analytics sink).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    /// The consumer group or streams application id that rejected the record.
    pub application: String,
    /// The topic the record was read from (its letter is on `<topic>.dlq`).
    pub topic: String,
    /// `decode` (bytes are not a valid record) or `rejected` (the handler said it never will be).
    pub kind: String,
}

/// The counters the Kafka plumbing in this crate updates.
pub struct ClientMetrics {
    pub produced: Family<TopicLabels, Counter>,
    pub processed: Family<ConsumerLabels, Counter>,
    pub dead_lettered: Family<DeadLetterLabels, Counter>,
    pub retries: Family<ConsumerLabels, Counter>,
}

struct Global {
    registry: Mutex<Registry>,
    client: ClientMetrics,
}

fn global() -> &'static Global {
    static GLOBAL: OnceLock<Global> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let mut registry = Registry::default();
        let client = ClientMetrics {
            produced: Family::default(),
            processed: Family::default(),
            dead_lettered: Family::default(),
            retries: Family::default(),
        };
        registry.register(
            "kafka_records_produced",
            "Records acknowledged by the broker",
            client.produced.clone(),
        );
        registry.register(
            "kafka_records_processed",
            "Records handled successfully by a consumer",
            client.processed.clone(),
        );
        registry.register(
            "kafka_records_dead_lettered",
            "Records sent to a dead-letter topic (acknowledged), by rejecting application and source topic",
            client.dead_lettered.clone(),
        );
        registry.register(
            "kafka_handler_retries",
            "Transient handler failures that were retried",
            client.retries.clone(),
        );
        Global {
            registry: Mutex::new(registry),
            client,
        }
    })
}

/// The counters of the Kafka plumbing.
pub fn client() -> &'static ClientMetrics {
    &global().client
}

/// Adds a metric to the process registry (e.g. a service's own counters).
pub fn register(name: &str, help: &str, metric: impl Metric) {
    global()
        .registry
        .lock()
        .expect("metrics registry lock")
        .register(name, help, metric);
}

/// The registry in Prometheus text exposition format.
pub fn encode() -> String {
    let mut out = String::new();
    let registry = global().registry.lock().expect("metrics registry lock");
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String");
    out
}
