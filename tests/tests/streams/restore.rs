use std::time::Duration;

use shared::streams;
use shared::testkit::TestKafka;
use tests::{COUNTS, WORDS, counter_config};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread")]
async fn state_is_rebuilt_from_the_changelog_when_the_state_directory_is_lost() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[WORDS, COUNTS]).await.unwrap();
    let mut expected = crate::produce(&kafka, 0, 600, 17).await;

    let first_dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let first = streams::start(
        kafka.kafka(),
        counter_config(kafka.kafka(), first_dir.path()),
        tests::counter(kafka.kafka()),
        stop.clone(),
    )
    .await
    .unwrap();
    crate::wait_for_counts(&[&first.stores], &expected, Duration::from_secs(60)).await;
    assert_eq!(first.stats.processed.get(), 600);
    stop.cancel();
    first.join().await.unwrap();
    drop(first_dir); // the local RocksDB is gone

    let second_dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let second = streams::start(
        kafka.kafka(),
        counter_config(kafka.kafka(), second_dir.path()),
        tests::counter(kafka.kafka()),
        stop.clone(),
    )
    .await
    .unwrap();
    crate::wait_for_counts(&[&second.stores], &expected, Duration::from_secs(60)).await;
    assert!(
        second.stats.restored.get() >= 17,
        "state came from the changelog"
    );
    assert_eq!(
        second.stats.processed.get(),
        0,
        "no input record was counted again"
    );

    // Restore progress and lag are on /metrics, per application.
    let application = format!("{}counter", kafka.kafka().prefix());
    crate::eventually(Duration::from_secs(15), "lag gauge back to 0", || {
        let lag = second.stats.lag.get();
        async move { lag == 0 }
    })
    .await;
    let metrics = shared::metrics::encode();
    let restored = format!(
        "streams_restored_records_total{{application=\"{application}\"}} {}",
        second.stats.restored.get()
    );
    assert!(
        metrics.lines().any(|l| l == restored),
        "{restored} in:\n{metrics}"
    );
    let remaining = format!("streams_restore_remaining_records{{application=\"{application}\"}} 0");
    assert!(metrics.lines().any(|l| l == remaining), "{remaining}");

    // And it carries on from there.
    crate::add(&mut expected, crate::produce(&kafka, 600, 100, 17).await);
    crate::wait_for_counts(&[&second.stores], &expected, Duration::from_secs(60)).await;
    stop.cancel();
    second.join().await.unwrap();
}
