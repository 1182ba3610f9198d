//! SIGKILL a count-per-key application at random moments, sometimes also deleting its state
//! directory, while records keep arriving; afterwards every count must equal the number of
//! records per key — not one more.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use rdkafka::Message;
use shared::streams;
use shared::testkit::TestKafka;
use tests::{COUNTS, KeyCount, WORDS, counter_config};
use tokio_util::sync::CancellationToken;

fn spawn(kafka: &TestKafka, state_dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_streams-child"))
        .args(["--bootstrap", kafka.kafka().bootstrap_servers()])
        .args(["--prefix", kafka.kafka().prefix()])
        .arg("--state-dir")
        .arg(state_dir)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("spawn streams-child")
}

fn signal(child: &mut Child, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; no memory is touched.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_stay_exact_when_the_application_is_killed_repeatedly() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[WORDS, COUNTS]).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    // The children reach the embedded broker over TCP, where CreateTopics is not honoured:
    // create the changelog here, as `casestudies broker` does for services.
    streams::app::provision_internal_topics(
        kafka.kafka(),
        &counter_config(kafka.kafka(), state.path()),
    )
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
    for round in 0..5 {
        if round % 2 == 1 {
            // Lose the local state too: the next start restores from the changelog.
            let _ = std::fs::remove_dir_all(state.path());
        }
        let mut child = spawn(&kafka, state.path());
        tokio::time::sleep(next_delay()).await;
        signal(&mut child, libc::SIGKILL);
    }
    let expected = producing.await.unwrap();

    // A last run to the end of the input, then a graceful stop.
    let mut child = spawn(&kafka, state.path());
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

    // The surviving local state, and state rebuilt from the changelog alone, are both exact.
    for dir in [
        state.path().to_path_buf(),
        tempfile::tempdir().unwrap().keep(),
    ] {
        let stop = CancellationToken::new();
        let verifier = streams::start(
            kafka.kafka(),
            counter_config(kafka.kafka(), &dir),
            tests::counter(kafka.kafka()),
            stop.clone(),
        )
        .await
        .unwrap();
        crate::wait_for_counts(&[&verifier.stores], &expected, Duration::from_secs(60)).await;
        assert_eq!(verifier.stats.processed.get(), 0, "nothing left to count");
        stop.cancel();
        verifier.join().await.unwrap();
    }

    // Downstream view: the last count emitted per key is exact too (duplicates carry the same id).
    let emitted = kafka
        .read_all(&kafka.kafka().topic(&COUNTS), Duration::from_secs(3))
        .await
        .unwrap();
    let inputs: u64 = expected.values().sum();
    assert!(
        emitted.len() as u64 >= inputs,
        "{} counts emitted for {inputs} inputs",
        emitted.len()
    );
    let mut by_partition: BTreeMap<i32, Vec<_>> = BTreeMap::new();
    for m in &emitted {
        by_partition.entry(m.partition()).or_default().push(m);
    }
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for records in by_partition.values_mut() {
        records.sort_by_key(|m| m.offset());
        for m in records.iter() {
            let count: KeyCount = serde_json::from_slice(m.payload().unwrap()).unwrap();
            last.insert(count.key, count.count);
        }
    }
    assert_eq!(last, expected);
}
