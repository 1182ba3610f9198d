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

use std::future::Future;
use std::time::Duration;

/// Polls `condition` every 50 ms until it holds or `timeout` passes (then panics with `what`).
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
