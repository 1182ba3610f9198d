//! What every case study shares, so that each case-study crate contains only its own topics,
//! events and services.
//!
//! Layout (one concept per file):
//!
//! | module        | what it owns                                                                 |
//! |---------------|------------------------------------------------------------------------------|
//! | [`analytics`] | the sink: a topic → Parquet files in an object store (local or S3), exactly once |
//! | [`bench`]     | what every `bench` subcommand shares: fresh prefixes, readers, percentiles  |
//! | [`config`]    | the clap `KafkaArgs` every binary flattens; `KAFKA_<PROPERTY>` pass-through   |
//! | [`kafka`]     | [`Kafka`]: the resolved connection (embedded or external), topic naming       |
//! | [`embedded`]  | librdkafka's mock cluster, started in-process when no broker is configured    |
//! | [`topics`]    | [`TopicSpec`]: name, key, partitions, retention, cleanup, producers/consumers |
//! | [`provision`] | creating missing topics (and their dead-letter topics), idempotently          |
//! | [`event`]     | the [`Event`] trait: every record is a fact with an id and an event time      |
//! | [`follow`]    | a query side's in-memory copy of a compacted topic: every partition, no group  |
//! | [`properties`]| Kafka Connect–style `.properties` files, errors naming the key                |
//! | [`producer`]  | typed, idempotent publishing with `acks=all` and standard headers             |
//! | [`service`]   | the service scaffold: services, one process per selection, the whole CLI      |
//! | [`consumer`]  | the consumer loop: decode, handle, commit after (or before) processing        |
//! | [`dlq`]       | dead-letter records: the failed bytes plus the reason in headers              |
//! | [`lag`]       | committed offset vs log-end offset per partition of a consumer group          |
//! | [`live`]      | what `casestudies up` needs from a case study: knob, queries, its own view    |
//! | [`http`]      | axum plumbing: `/healthz`, `/readyz`, `/metrics`, JSON errors, shutdown       |
//! | [`metrics`]   | the process-wide Prometheus registry and the client counters                 |
//! | [`shutdown`]  | SIGINT/SIGTERM → a cancellation token every task watches                      |
//! | [`streams`]   | the streams runtime: RocksDB stores, changelogs, exact state, windows |
//! | [`telemetry`] | tracing set-up (`RUST_LOG`, `LOG_FORMAT=json`)                                |
//! | `testkit`     | (feature `testkit`) a broker per test: embedded, tansu, testcontainers, external |
//!
//! Data flows one way in every case study: HTTP in → topic → processor → topic → query API.
//! The delivery guarantee is at-least-once everywhere; see `docs/ARCHITECTURE.md`.

pub mod analytics;
pub mod bench;
pub mod cluster;
pub mod config;
pub mod consumer;
pub mod dlq;
pub mod embedded;
pub mod event;
pub mod follow;
pub mod http;
pub mod kafka;
pub mod lag;
pub mod live;
pub mod metrics;
pub mod producer;
pub mod properties;
pub mod provision;
pub mod service;
pub mod shutdown;
pub mod streams;
pub mod telemetry;
pub mod topics;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::KafkaArgs;
pub use consumer::{
    ConsumerLoop, ConsumerOptions, ConsumerStats, DeliveryMode, Handler, HandlerError, Record,
};
pub use event::Event;
pub use kafka::Kafka;
pub use producer::{Delivery, EventProducer};
pub use provision::{ProvisionReport, provision};
pub use topics::{Cleanup, Retention, TopicSpec};
