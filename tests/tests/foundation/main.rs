//! Foundation tests: provisioning, typed round trip, dead letters, delivery semantics, consumer
//! groups, lag and the topics table. Every test runs on the broker `CASESTUDIES_TEST_KAFKA`
//! chooses (embedded by default; tansu and testcontainers in CI).

mod cli;
mod consumer_group;
mod dead_letters;
mod delivery_semantics;
mod http_ops;
mod provisioning;
mod round_trip;

pub use tests::eventually;
