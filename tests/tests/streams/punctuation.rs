use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::Message;
use shared::streams;
use shared::testkit::TestKafka;
use tests::{COUNTS, PartitionTicker, Tick, WORDS, counter_config};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread")]
async fn punctuation_runs_on_the_wall_clock_for_every_task() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[WORDS, COUNTS]).await.unwrap();
    let sent = crate::produce(&kafka, 0, 200, 40).await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = counter_config(kafka.kafka(), dir.path());
    config.punctuate_every = Some(Duration::from_millis(200));
    let stop = CancellationToken::new();
    let app = streams::start(
        kafka.kafka(),
        config,
        PartitionTicker {
            output: kafka.kafka().topic(&COUNTS),
        },
        stop.clone(),
    )
    .await
    .unwrap();
    crate::eventually(Duration::from_secs(60), "all 200 records processed", || {
        let n = app.stats.processed.get();
        async move { n >= 200 }
    })
    .await;
    // With no input arriving any more, ticks keep coming: they are driven by the clock.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    app.join().await.unwrap();

    let ticks = kafka
        .read_all(&kafka.kafka().topic(&COUNTS), Duration::from_secs(3))
        .await
        .unwrap();
    let mut latest: BTreeMap<i32, (i64, u64)> = BTreeMap::new();
    let mut per_partition: BTreeMap<i32, usize> = BTreeMap::new();
    for m in &ticks {
        let tick: Tick = serde_json::from_slice(m.payload().unwrap()).unwrap();
        *per_partition.entry(tick.partition).or_default() += 1;
        let entry = latest.entry(tick.partition).or_insert((-1, 0));
        if m.offset() > entry.0 {
            *entry = (m.offset(), tick.seen);
        }
    }
    assert_eq!(
        per_partition.len(),
        4,
        "every task punctuates: {per_partition:?}"
    );
    assert!(
        per_partition.values().all(|&n| n >= 3),
        "several ticks per task in 1.5 s idle: {per_partition:?}"
    );
    let total_seen: u64 = latest.values().map(|(_, seen)| seen).sum();
    assert_eq!(
        total_seen,
        sent.values().sum::<u64>(),
        "the last ticks add up to every record"
    );
}
