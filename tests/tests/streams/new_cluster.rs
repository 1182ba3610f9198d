//! State outlives the broker it came from: a streams application whose state directory was
//! built on one cluster starts on another (a new embedded broker, as after `kill -9` of
//! `mybank all`). Its checkpoint's input offsets belong to the old cluster; reused, they would
//! skip the new cluster's first records. The state is discarded and rebuilt.
//!
//! Always two embedded brokers in this process, whatever `CASESTUDIES_TEST_KAFKA` says: the
//! test needs a second, empty cluster under the same topic names.

use std::sync::Arc;
use std::time::Duration;

use shared::embedded::EmbeddedBroker;
use shared::streams;
use shared::{EventProducer, Kafka};
use tests::{COUNTS, Ping, WORDS, counter_config};
use tokio_util::sync::CancellationToken;

async fn produce(
    kafka: &Kafka,
    from: u64,
    n: u64,
    keys: u64,
) -> std::collections::BTreeMap<String, u64> {
    let producer = EventProducer::new(kafka).unwrap();
    let mut sent = std::collections::BTreeMap::new();
    for seq in from..from + n {
        let key = format!("word-{}", seq % keys);
        producer
            .publish(&kafka.topic(&WORDS), &key, &Ping::new(seq, &key))
            .await
            .unwrap();
        *sent.entry(key).or_insert(0) += 1;
    }
    sent
}

#[tokio::test(flavor = "multi_thread")]
async fn state_built_on_another_cluster_is_discarded_and_rebuilt() {
    shared::telemetry::init_for_tests();
    let prefix = format!("t{:08x}.", uuid::Uuid::new_v4().as_u128() as u32);
    let state = tempfile::tempdir().unwrap();

    // Broker 1: 600 records, counted; the checkpoint ends at ~150 per partition.
    let first = Arc::new(EmbeddedBroker::start().unwrap());
    let kafka = Kafka::embedded(Arc::clone(&first), &prefix);
    shared::provision(&kafka, &[WORDS, COUNTS]).await.unwrap();
    let old = produce(&kafka, 0, 600, 17).await;
    let stop = CancellationToken::new();
    let app = streams::start(
        &kafka,
        counter_config(&kafka, state.path()),
        tests::counter(&kafka),
        stop.clone(),
    )
    .await
    .unwrap();
    crate::wait_for_counts(&[&app.stores], &old, Duration::from_secs(60)).await;
    let first_identity = shared::cluster::identity(&kafka).await.unwrap();
    // Another process sees the same identity (read from the incarnation topic).
    let external = Kafka::external(first.bootstrap_servers(), &prefix, Vec::new());
    assert_eq!(
        shared::cluster::identity(&external).await.unwrap(),
        first_identity
    );
    stop.cancel();
    app.join().await.unwrap();
    drop(kafka);
    drop(first);

    // Broker 2, empty, same topic names and the same state directory: 100 records, all at
    // offsets below the old checkpoint's.
    let second = Arc::new(EmbeddedBroker::start().unwrap());
    let kafka = Kafka::embedded(second, &prefix);
    assert_ne!(
        shared::cluster::identity(&kafka).await.unwrap(),
        first_identity,
        "two embedded brokers are two clusters"
    );
    shared::provision(&kafka, &[WORDS, COUNTS]).await.unwrap();
    let new = produce(&kafka, 1000, 100, 17).await;
    let stop = CancellationToken::new();
    let app = streams::start(
        &kafka,
        counter_config(&kafka, state.path()),
        tests::counter(&kafka),
        stop.clone(),
    )
    .await
    .unwrap();
    // Exactly the new cluster's records: nothing of the old state, no new record skipped.
    crate::wait_for_counts(&[&app.stores], &new, Duration::from_secs(60)).await;
    assert_eq!(app.stats.processed.get(), 100);
    assert_eq!(
        app.stats.skipped.get(),
        0,
        "no record skipped for the old checkpoint's offsets"
    );
    stop.cancel();
    app.join().await.unwrap();
}
