use std::time::Duration;

use shared::streams;
use shared::testkit::TestKafka;
use tests::{COUNTS, WORDS, counter_config};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread")]
async fn a_joining_instance_restores_its_partitions_and_takes_all_when_the_other_leaves() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[WORDS, COUNTS]).await.unwrap();
    let mut expected = crate::produce(&kafka, 0, 400, 23).await;
    let start = |dir: &std::path::Path, stop: &CancellationToken| {
        streams::start(
            kafka.kafka(),
            counter_config(kafka.kafka(), dir),
            tests::counter(kafka.kafka()),
            stop.clone(),
        )
    };

    let (dir_a, stop_a) = (tempfile::tempdir().unwrap(), CancellationToken::new());
    let a = start(dir_a.path(), &stop_a).await.unwrap();
    crate::wait_for_counts(&[&a.stores], &expected, Duration::from_secs(60)).await;

    let (dir_b, stop_b) = (tempfile::tempdir().unwrap(), CancellationToken::new());
    let b = start(dir_b.path(), &stop_b).await.unwrap();
    crate::eventually(
        Duration::from_secs(60),
        "the partitions are split between a and b",
        || {
            let (pa, pb) = (a.stores.partitions().len(), b.stores.partitions().len());
            async move { pa > 0 && pb > 0 && pa + pb == 4 }
        },
    )
    .await;
    assert!(
        b.stats.restored.get() > 0,
        "b restored the partitions it got from their changelogs"
    );

    crate::add(&mut expected, crate::produce(&kafka, 400, 400, 23).await);
    crate::wait_for_counts(&[&a.stores, &b.stores], &expected, Duration::from_secs(60)).await;

    stop_a.cancel();
    a.join().await.unwrap();
    crate::eventually(
        Duration::from_secs(60),
        "b holds all four partitions",
        || {
            let pb = b.stores.partitions().len();
            async move { pb == 4 }
        },
    )
    .await;
    crate::wait_for_counts(&[&b.stores], &expected, Duration::from_secs(60)).await;

    crate::add(&mut expected, crate::produce(&kafka, 800, 200, 23).await);
    crate::wait_for_counts(&[&b.stores], &expected, Duration::from_secs(60)).await;
    stop_b.cancel();
    b.join().await.unwrap();
}
