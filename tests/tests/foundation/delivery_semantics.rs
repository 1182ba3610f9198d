//! At-least-once vs at-most-once, shown with a real process and a real SIGKILL.
//!
//! A `consumer-child` process consumes 200 records in batches of 50, "working" 20 ms per record
//! and writing each processed `seq` to a file. It is killed in the middle of its first batch;
//! a replacement in the same group then drains the topic.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use shared::testkit::TestKafka;
use shared::{DeliveryMode, EventProducer};
use tests::{PINGS, Ping, read_seqs};

const RECORDS: u64 = 200;

fn spawn_child(kafka: &TestKafka, group: &str, mode: &str, out: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_consumer-child"))
        .args(["--bootstrap", kafka.kafka().bootstrap_servers()])
        .args(["--topic", &kafka.kafka().topic(&PINGS)])
        .args(["--group", group, "--mode", mode])
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("spawn consumer-child")
}

fn sigkill(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid; no memory is touched.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill failed");
    child.wait().unwrap();
}

async fn produce(kafka: &TestKafka) {
    kafka.provision(&[PINGS]).await.unwrap();
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let topic = kafka.kafka().topic(&PINGS);
    for seq in 0..RECORDS {
        let ping = Ping::new(seq, format!("k{}", seq % 12));
        producer.publish(&topic, &ping.key, &ping).await.unwrap();
    }
}

/// Runs the scenario; returns (seqs processed by the killed child, seqs processed by its
/// replacement) once the replacement has caught up.
async fn kill_mid_batch_then_replace(mode: DeliveryMode) -> (Vec<u64>, Vec<u64>) {
    let kafka = TestKafka::start().await.unwrap();
    produce(&kafka).await;
    let dir = tempfile::tempdir().unwrap();
    let (first_out, second_out) = (dir.path().join("first"), dir.path().join("second"));
    let group = kafka.group_id("semantics");
    let mode_arg = match mode {
        DeliveryMode::AtLeastOnce => "at-least-once",
        DeliveryMode::AtMostOnce => "at-most-once",
    };

    let mut first = spawn_child(&kafka, &group, mode_arg, &first_out);
    crate::eventually(
        Duration::from_secs(60),
        "first consumer processes 10 records",
        || {
            let n = read_seqs(&first_out).len();
            async move { n >= 10 }
        },
    )
    .await;
    sigkill(&mut first);
    let killed = read_seqs(&first_out);
    assert!(
        killed.len() < 50,
        "killed inside the first batch of 50 ({} processed)",
        killed.len()
    );

    let mut second = spawn_child(&kafka, &group, mode_arg, &second_out);
    // Done when the group has committed everything and the replacement has stopped writing.
    let mut last_len = usize::MAX;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let lag = shared::lag::group_lag(kafka.kafka(), &group, Some(&kafka.kafka().topic(&PINGS)))
            .await
            .unwrap();
        let len = read_seqs(&second_out).len();
        if lag.total_lag() == 0
            && lag.partitions.iter().all(|p| p.committed.is_some())
            && len == last_len
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replacement did not catch up (lag {})",
            lag.total_lag()
        );
        last_len = len;
    }
    second.kill().unwrap();
    second.wait().unwrap();
    (killed, read_seqs(&second_out))
}

#[tokio::test(flavor = "multi_thread")]
async fn at_least_once_redelivers_what_a_killed_consumer_had_not_committed() {
    let (killed, replacement) = kill_mid_batch_then_replace(DeliveryMode::AtLeastOnce).await;
    let all: HashSet<u64> = killed.iter().chain(&replacement).copied().collect();
    assert_eq!(all, (0..RECORDS).collect(), "nothing lost");
    // The killed consumer's batch was never committed: its records came again.
    let redelivered = killed.iter().filter(|s| replacement.contains(s)).count();
    assert_eq!(
        redelivered,
        killed.len(),
        "every record of the uncommitted batch is re-delivered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn at_most_once_loses_the_rest_of_a_killed_consumers_batch() {
    let (killed, replacement) = kill_mid_batch_then_replace(DeliveryMode::AtMostOnce).await;
    let all: HashSet<u64> = killed.iter().chain(&replacement).copied().collect();
    let lost = RECORDS as usize - all.len();
    // The batch of 50 was committed before processing; the kill left 50 - processed unprocessed.
    assert!(
        lost > 0,
        "at-most-once must lose the unprocessed part of the batch"
    );
    assert_eq!(
        lost,
        50 - killed.len(),
        "exactly the rest of the killed batch is lost"
    );
    assert!(
        killed.iter().all(|s| !replacement.contains(s)),
        "nothing processed twice"
    );
}
