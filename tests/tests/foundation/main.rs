//! Foundation tests: provisioning, typed round trip, dead letters, delivery semantics, consumer
//! groups, lag, the topics table and the service scaffold. Every test runs on the broker
//! `CASESTUDIES_TEST_KAFKA` chooses (embedded by default; Apache Kafka and a container in CI).

mod cli;
mod consumer_group;
mod dead_letters;
mod delivery_semantics;
mod http_ops;
mod provisioning;
mod round_trip;
mod scaffold;
mod standalone_broker;

pub use tests::eventually;
