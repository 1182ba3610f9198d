//! The source connector killed (SIGKILL) mid-stream, several times, while the bank keeps
//! inserting: after a restart every row is in `bank_transactions` exactly once — no gap, no
//! duplicate — in both modes.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mybank::source_connector::OFFSET_HEADER;
use rdkafka::Message;
use rdkafka::message::Headers;

use crate::Bank;

/// A `mybank source-connector` child process; killed when dropped, so a failing test leaves no
/// connector running.
struct Connector(Child);

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_connector(bank: &Bank, properties: &std::path::Path) -> Connector {
    let child = Command::new(env!("CARGO_BIN_EXE_mybank"))
        .arg("source-connector")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(properties)
        .arg("--database-url")
        .arg(&bank.db_url)
        .arg("--data-dir")
        .arg(bank.dir.path().join("connector"))
        .env(
            "KAFKA_BOOTSTRAP_SERVERS",
            bank.kafka.kafka().bootstrap_servers(),
        )
        .env("TOPIC_PREFIX", bank.kafka.kafka().prefix())
        .env(
            "RUST_LOG",
            std::env::var("CONNECTOR_LOG").unwrap_or("warn".into()),
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Connector(child)
}

/// SIGKILL: no flush, no offset write, whatever the connector was doing.
fn kill(connector: Connector) {
    drop(connector);
}

/// Record count per row id on `bank_transactions`, with each record's key and partition.
async fn copied(bank: &Bank) -> BTreeMap<i64, Vec<(String, i32)>> {
    let topic = bank.topic(&mybank::topics::BANK_TRANSACTIONS);
    let mut rows: BTreeMap<i64, Vec<(String, i32)>> = BTreeMap::new();
    for message in bank
        .kafka
        .read_all(&topic, Duration::from_secs(2))
        .await
        .unwrap()
    {
        let row: serde_json::Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        assert!(
            message
                .headers()
                .is_some_and(|h| h.iter().any(|h| h.key == OFFSET_HEADER)),
            "every record carries its source offset"
        );
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        assert_eq!(row["user_id"], key.as_str(), "keyed by user_id");
        rows.entry(row["id"].as_i64().unwrap())
            .or_default()
            .push((key, message.partition()));
    }
    rows
}

async fn killed_and_restarted_copies_every_row_once(mode: &str) {
    let bank = Bank::sqlite().await;
    bank.kafka.provision(mybank::topics::ALL).await.unwrap();
    // Small batches and a short poll: many offset writes, so a kill lands between a batch and
    // its offset often.
    let properties = bank.dir.path().join("connector.properties");
    std::fs::write(
        &properties,
        format!(
            "name=transactions-source\nconnection.url=sqlite:unused.db\nmode={mode}\n\
             table.whitelist=transactions\nincrementing.column.name=id\n\
             timestamp.column.name=created_at\ntopic.prefix=bank_\nkey.column.name=user_id\n\
             poll.interval.ms=10\nbatch.max.rows=40\n"
        ),
    )
    .unwrap();

    // The bank inserts ~200 rows/s until the three kills are done, so every kill lands while
    // there are rows left to copy, however slow the machine.
    let inserting = Arc::new(AtomicBool::new(true));
    let inserter = {
        let db = bank.db.clone();
        let inserting = Arc::clone(&inserting);
        tokio::spawn(async move {
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
            let mut i = 0usize;
            while inserting.load(Ordering::Relaxed) {
                let row = mybank::core_banking::random_transaction(&mut rng, 40);
                db.insert(&row).await.unwrap();
                i += 1;
                if i.is_multiple_of(5) {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        })
    };

    let topic = bank.topic(&mybank::topics::BANK_TRANSACTIONS);
    let mut seen_before = 0;
    for round in 0..3u64 {
        let child = start_connector(&bank, &properties);
        // Kill it while it is copying: once it has produced something new (start-up takes a
        // second or more in a debug build on a busy machine), a little later each round.
        bank.kafka
            .wait_for_records(&topic, seen_before + 1, Duration::from_secs(60))
            .await
            .unwrap_or_else(|err| panic!("round {round}: the connector made no progress: {err}"));
        tokio::time::sleep(Duration::from_millis(100 + 150 * round)).await;
        kill(child);
        let now = copied(&bank).await.len();
        assert!(
            now > seen_before,
            "round {round}: the connector made progress ({seen_before} → {now})"
        );
        seen_before = now;
    }
    // A few more rows after the last kill, then the bank stops.
    tokio::time::sleep(Duration::from_millis(300)).await;
    inserting.store(false, Ordering::Relaxed);
    inserter.await.unwrap();
    let rows_total = bank.db.count().await.unwrap() as usize;
    assert!(
        seen_before < rows_total,
        "the kills happened mid-stream ({seen_before} of {rows_total} copied)"
    );

    // The last run is stopped gracefully once it has caught up.
    let mut connector = start_connector(&bank, &properties);
    crate::eventually(Duration::from_secs(90), "every row copied", || async {
        (copied(&bank).await.len() >= rows_total).then_some(())
    })
    .await;
    // SAFETY: signalling our own child process by its pid.
    unsafe {
        libc::kill(connector.0.id() as i32, libc::SIGTERM);
    }
    assert!(
        connector.0.wait().unwrap().success(),
        "a graceful stop exits 0"
    );

    let rows = copied(&bank).await;
    let duplicates: Vec<_> = rows.iter().filter(|(_, r)| r.len() > 1).collect();
    assert!(duplicates.is_empty(), "rows copied twice: {duplicates:?}");
    let ids: Vec<i64> = rows.keys().copied().collect();
    assert_eq!(ids, (1..=rows_total as i64).collect::<Vec<_>>(), "no gap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incrementing_mode_survives_sigkill() {
    killed_and_restarted_copies_every_row_once("incrementing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timestamp_incrementing_mode_survives_sigkill() {
    killed_and_restarted_copies_every_row_once("timestamp+incrementing").await;
}

/// A crash between "batch acknowledged" and "offset written", made deterministic: the stored
/// offset is rewound to row 50 of 100 already in Kafka. On restart the connector finds rows
/// 51–100 in the partitions and skips them instead of producing them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_past_the_stored_offset_are_not_produced_twice() {
    let bank = Bank::sqlite().await;
    let app = bank.spawn(&["source-connector"], None).await;
    for i in 0..100 {
        bank.insert(&format!("user-{}", i % 7), 10.0 + i as f64, None)
            .await;
    }
    crate::eventually(Duration::from_secs(30), "100 rows copied", || async {
        (copied(&bank).await.len() >= 100).then_some(())
    })
    .await;
    app.stop().await.unwrap();

    let config = crate::connector_config();
    let producer = shared::EventProducer::new(bank.kafka.kafka()).unwrap();
    producer
        .send(
            &bank.topic(&mybank::topics::CONNECT_OFFSETS),
            Some(config.offset_key().as_bytes()),
            Some(br#"{"incrementing":50}"#),
            rdkafka::message::OwnedHeaders::new(),
            None,
        )
        .await
        .unwrap();

    let app = bank.spawn(&["source-connector"], None).await;
    // The counters are per connector and topic: they carry over from the first run.
    let stats = app
        .get::<mybank::source_connector::ConnectorStats>()
        .unwrap();
    let (produced_before, skipped_before) =
        (stats.produced.get(), stats.skipped_already_in_kafka.get());
    for i in 100..110 {
        bank.insert(&format!("user-{}", i % 7), 10.0 + i as f64, None)
            .await;
    }
    crate::eventually(Duration::from_secs(30), "110 rows copied", || async {
        (copied(&bank).await.len() >= 110).then_some(())
    })
    .await;
    app.stop().await.unwrap();
    assert_eq!(stats.skipped_already_in_kafka.get() - skipped_before, 50);
    assert_eq!(stats.produced.get() - produced_before, 10);
    let rows = copied(&bank).await;
    assert!(rows.values().all(|r| r.len() == 1), "a row copied twice");
    assert_eq!(rows.len(), 110);
}
