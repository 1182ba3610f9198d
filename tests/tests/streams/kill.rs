//! SIGKILL a count-per-key application at random moments, sometimes also deleting its state
//! directory, while records keep arriving; afterwards every count must equal the number of
//! records per key — not one more.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use rdkafka::Message;
use shared::streams;
use shared::streams::Guarantee;
use shared::testkit::TestKafka;
use tests::{COUNTS, KeyCount, WORDS, counter_config};
use tokio_util::sync::CancellationToken;

fn spawn(kafka: &TestKafka, state_dir: &Path, guarantee: Guarantee) -> Child {
    Command::new(env!("CARGO_BIN_EXE_streams-child"))
        .args(["--bootstrap", kafka.kafka().bootstrap_servers()])
        .args(["--prefix", kafka.kafka().prefix()])
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--guarantee", guarantee.as_str()])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("spawn streams-child")
}

fn signal(child: &mut Child, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; no memory is touched.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    child.wait().unwrap();
}

/// Produces 3,000 records over 31 keys while the counting application (a child process) is
/// SIGKILLed `kills` times at random moments — every second time also losing its state
/// directory — then runs it to the end of the input and stops it gracefully. Returns the
/// records sent per key.
async fn count_through_kills(
    kafka: &TestKafka,
    state: &Path,
    guarantee: Guarantee,
    kills: usize,
) -> BTreeMap<String, u64> {
    kafka.provision(&[WORDS, COUNTS]).await.unwrap();
    // The children reach the embedded broker over TCP, where CreateTopics is not honoured:
    // create the changelog here, as `casestudies broker` does for services.
    streams::app::provision_internal_topics(kafka.kafka(), &counter_config(kafka.kafka(), state))
        .await
        .unwrap();

    // Records keep arriving while the application is killed and restarted.
    let producing = {
        let kafka_handle = kafka.kafka().clone();
        tokio::spawn(async move {
            let producer = shared::EventProducer::new(&kafka_handle).unwrap();
            let topic = kafka_handle.topic(&WORDS);
            let mut sent: BTreeMap<String, u64> = BTreeMap::new();
            for seq in 0..3000u64 {
                let key = format!("word-{}", seq % 31);
                producer
                    .publish(&topic, &key, &tests::Ping::new(seq, &key))
                    .await
                    .unwrap();
                *sent.entry(key).or_insert(0) += 1;
                if seq % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            }
            sent
        })
    };

    let mut rng_state = 0x2545_f491_4f6c_dd1du64 ^ std::process::id() as u64;
    let mut next_delay = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        Duration::from_millis(300 + rng_state % 1200)
    };
    for round in 0..kills {
        if round % 2 == 1 {
            // Lose the local state too: the next start restores from the changelog.
            let _ = std::fs::remove_dir_all(state);
        }
        let mut child = spawn(kafka, state, guarantee);
        tokio::time::sleep(next_delay()).await;
        signal(&mut child, libc::SIGKILL);
    }
    let expected = producing.await.unwrap();

    // A last run to the end of the input, then a graceful stop.
    let mut child = spawn(kafka, state, guarantee);
    let group = format!("{}counter", kafka.kafka().prefix());
    crate::eventually(
        Duration::from_secs(120),
        "the application consumed every record",
        || {
            let (kafka, group, topic) = (
                kafka.kafka().clone(),
                group.clone(),
                kafka.kafka().topic(&WORDS),
            );
            async move {
                let lag = shared::lag::group_lag(&kafka, &group, Some(&topic))
                    .await
                    .unwrap();
                lag.partitions.iter().all(|p| p.committed.is_some()) && lag.total_lag() == 0
            }
        },
    )
    .await;
    signal(&mut child, libc::SIGTERM);
    expected
}

/// The surviving local state, and state rebuilt from the changelog alone, both equal `expected`.
async fn assert_state_is_exact(
    kafka: &TestKafka,
    state: &Path,
    guarantee: Guarantee,
    expected: &BTreeMap<String, u64>,
) {
    for dir in [state.to_path_buf(), tempfile::tempdir().unwrap().keep()] {
        let stop = CancellationToken::new();
        let mut config = counter_config(kafka.kafka(), &dir);
        config.guarantee = guarantee;
        let verifier = streams::start(
            kafka.kafka(),
            config,
            tests::counter(kafka.kafka()),
            stop.clone(),
        )
        .await
        .unwrap();
        crate::wait_for_counts(&[&verifier.stores], expected, Duration::from_secs(60)).await;
        assert_eq!(verifier.stats.processed.get(), 0, "nothing left to count");
        stop.cancel();
        verifier.join().await.unwrap();
    }
}

/// Every emitted count, per key, in the order of its partition.
async fn emitted_counts(kafka: &TestKafka) -> BTreeMap<String, Vec<u64>> {
    let emitted = kafka
        .read_all(&kafka.kafka().topic(&COUNTS), Duration::from_secs(3))
        .await
        .unwrap();
    let mut by_partition: BTreeMap<i32, Vec<_>> = BTreeMap::new();
    for m in &emitted {
        by_partition.entry(m.partition()).or_default().push(m);
    }
    let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for records in by_partition.values_mut() {
        records.sort_by_key(|m| m.offset());
        for m in records.iter() {
            let count: KeyCount = serde_json::from_slice(m.payload().unwrap()).unwrap();
            counts.entry(count.key).or_default().push(count.count);
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_stay_exact_when_the_application_is_killed_repeatedly() {
    let kafka = TestKafka::start().await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let expected = count_through_kills(&kafka, state.path(), Guarantee::AtLeastOnce, 5).await;
    assert_state_is_exact(&kafka, state.path(), Guarantee::AtLeastOnce, &expected).await;

    // Downstream view: at least one count per input (a batch re-processed after a kill emits
    // again, with the same ids), and the last count emitted per key is exact.
    let emitted = emitted_counts(&kafka).await;
    let inputs: u64 = expected.values().sum();
    let outputs: usize = emitted.values().map(Vec::len).sum();
    assert!(
        outputs as u64 >= inputs,
        "{outputs} counts emitted for {inputs} inputs"
    );
    let last: BTreeMap<String, u64> = emitted
        .iter()
        .map(|(key, counts)| (key.clone(), *counts.last().unwrap()))
        .collect();
    assert_eq!(last, expected);
}

/// exactly_once_v2: the same kills (more of them: a kill lands mid-transaction only when it
/// hits a batch; at_least_once repeats outputs in about half of the runs of this test), but a
/// `read_committed` reader of the output sees every count exactly once — 1, 2, …, n for each
/// key, nothing repeated, nothing skipped.
#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_outputs_every_count_once_when_the_application_is_killed_repeatedly() {
    let kafka = TestKafka::start().await.unwrap();
    if !kafka.supports_transactions() {
        eprintln!(
            "skipped: the {:?} test broker does not run transactions (use CASESTUDIES_TEST_KAFKA=apache)",
            kafka.backend()
        );
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let expected = count_through_kills(&kafka, state.path(), Guarantee::ExactlyOnce, 8).await;
    assert_state_is_exact(&kafka, state.path(), Guarantee::ExactlyOnce, &expected).await;

    let emitted = emitted_counts(&kafka).await;
    let want: BTreeMap<String, Vec<u64>> = expected
        .iter()
        .map(|(key, n)| (key.clone(), (1..=*n).collect()))
        .collect();
    assert_eq!(emitted, want);
}
