//! The analytics store holds exactly the rows produced — also after the sink is killed with
//! SIGKILL in the middle of its files.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;

use movieflix::events::ShowPosition;
use movieflix::topics::{self, SHOW_POSITION};
use serde_json::json;
use shared::EventProducer;
use shared::testkit::TestKafka;

use crate::{client, eventually, parquet_rows, report, spawn};

#[tokio::test(flavor = "multi_thread")]
async fn parquet_files_hold_exactly_the_positions_produced() {
    let kafka = TestKafka::start().await.unwrap();
    let (state, analytics) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let app = spawn(
        &kafka,
        &["video-position-service", "analytics-sink"],
        state.path(),
        analytics.path(),
    )
    .await;
    let http = client();
    let movie = movieflix::catalog::Catalog::shared()
        .get("m005")
        .unwrap()
        .clone();
    let mut produced = BTreeSet::new();
    for i in 0..120u32 {
        // Event times across three hours: three date/hour directories.
        let at = Utc::now() - chrono::Duration::minutes(i64::from(i % 3) * 60);
        let accepted = report(
            &http,
            &app,
            json!({"user_id": format!("p{}", i % 17), "show_id": movie.id,
            "position_s": i, "duration_s": movie.duration_s, "at": at.to_rfc3339()}),
        )
        .await;
        produced.insert(accepted["event_id"].as_str().unwrap().to_owned());
    }
    let rows = eventually(Duration::from_secs(30), "120 rows in Parquet", || async {
        let rows = parquet_rows(analytics.path());
        (rows.len() >= produced.len()).then_some(rows)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await; // anything beyond 120 would show now
    let rows_now = parquet_rows(analytics.path());
    assert_eq!(rows_now.len(), rows.len());
    let ids: BTreeSet<String> = rows.iter().map(|r| r.0.clone()).collect();
    assert_eq!(ids.len(), rows.len(), "no duplicates");
    assert_eq!(ids, produced);
    // The table's files (the sink's hidden cluster stamp sits at the root, where query
    // engines skip it).
    let hours: BTreeSet<String> = shared::analytics::files_under(analytics.path())
        .unwrap()
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| p.parent().unwrap().display().to_string())
        .collect();
    assert!(hours.len() >= 2, "partitioned by date/hour: {hours:?}");
    assert!(
        hours
            .iter()
            .all(|h| h.contains("/date=") && h.contains("/hour="))
    );
    // `hour=7`, not `hour=07`: every folder's value is the integer it spells, so engines type
    // the column the same way whatever hours a run has.
    for dir in &hours {
        let hour = dir.rsplit_once("/hour=").unwrap().1;
        assert_eq!(hour.parse::<u32>().unwrap().to_string(), hour, "{dir}");
    }
    app.stop().await.unwrap();
}

/// Files name offsets, which belong to one cluster. The analytics directory that saw one broker,
/// then a new, empty one under the same topic names (the embedded broker after a restart):
/// the old files stay, and every record of the new broker is stored — none skipped as "already
/// in a file" because an old file's offsets were larger.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_new_cluster_the_sink_keeps_its_files_and_stores_every_new_record() {
    let first = TestKafka::start().await.unwrap();
    let prefix = first.kafka().prefix().to_owned();
    let analytics = tempfile::tempdir().unwrap();
    let http = client();
    let duration = movieflix::catalog::Catalog::shared()
        .get("m005")
        .unwrap()
        .duration_s;
    let positions = |viewer: &'static str, n: u32| {
        (0..n).map(move |i| {
            json!({"user_id": format!("{viewer}{}", i % 7), "show_id": "m005",
                "position_s": i, "duration_s": duration, "at": Utc::now().to_rfc3339()})
        })
    };
    let mut produced = BTreeSet::new();
    let state = tempfile::tempdir().unwrap();
    let app = spawn(
        &first,
        &["video-position-service", "analytics-sink"],
        state.path(),
        analytics.path(),
    )
    .await;
    for body in positions("a", 60) {
        let accepted = report(&http, &app, body).await;
        produced.insert(accepted["event_id"].as_str().unwrap().to_owned());
    }
    eventually(Duration::from_secs(30), "60 rows in Parquet", || async {
        (parquet_rows(analytics.path()).len() >= 60).then_some(())
    })
    .await;
    app.stop().await.unwrap();
    drop(first);

    let second = TestKafka::start().await.unwrap().with_prefix(&prefix);
    let state = tempfile::tempdir().unwrap();
    let app = spawn(
        &second,
        &["video-position-service", "analytics-sink"],
        state.path(),
        analytics.path(),
    )
    .await;
    for body in positions("b", 10) {
        let accepted = report(&http, &app, body).await;
        produced.insert(accepted["event_id"].as_str().unwrap().to_owned());
    }
    let rows = eventually(
        Duration::from_secs(30),
        "every row of both brokers",
        || async {
            let rows = parquet_rows(analytics.path());
            let ids: BTreeSet<String> = rows.iter().map(|r| r.0.clone()).collect();
            produced.is_subset(&ids).then_some(rows)
        },
    )
    .await;
    assert_eq!(rows.len(), produced.len(), "no row twice, none lost");
    app.stop().await.unwrap();
}

/// The sink applies the services' validation: a well-formed position the services reject
/// (unknown show, position beyond the duration) is dead-lettered with the reason, not stored
/// as a fact in the analytics store; a valid one behind it is stored.
#[tokio::test(flavor = "multi_thread")]
async fn the_sink_stores_no_position_the_services_reject() {
    let kafka = TestKafka::start().await.unwrap();
    let (state, analytics) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let app = spawn(&kafka, &["analytics-sink"], state.path(), analytics.path()).await;
    let topic = kafka.kafka().topic(&SHOW_POSITION);
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let movie = movieflix::catalog::Catalog::shared()
        .get("m002")
        .unwrap()
        .duration_s;
    let position = |show_id: &str, position_s: u32| ShowPosition {
        event_id: shared::event::new_event_id(),
        user_id: "erin".into(),
        show_id: show_id.into(),
        episode: None,
        position_s,
        duration_s: movie,
        at: Utc::now(),
    };
    // A time no service would accept, written around the API: no `date=1970-01-01` folder.
    let epoch = ShowPosition {
        at: "1970-01-01T00:00:01Z".parse().unwrap(),
        ..position("m002", 5)
    };
    for bad in [position("nope", 1), position("m002", movie + 1), epoch] {
        producer.publish(&topic, "erin", &bad).await.unwrap();
    }
    let good = position("m002", 7);
    producer.publish(&topic, "erin", &good).await.unwrap();

    let rows = eventually(
        Duration::from_secs(30),
        "the valid row in Parquet",
        || async {
            let rows = parquet_rows(analytics.path());
            (!rows.is_empty()).then_some(rows)
        },
    )
    .await;
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, vec![good.event_id.as_str()], "only the valid position");

    let letters = kafka
        .read_dlq(&topic, 3, Duration::from_secs(30))
        .await
        .unwrap();
    let sink = format!("{}movieflix-analytics-sink", kafka.kafka().prefix());
    let reasons: Vec<&str> = letters
        .iter()
        .map(|l| {
            assert_eq!(
                (l.kind.as_str(), l.application.as_deref()),
                ("rejected", Some(sink.as_str()))
            );
            l.error.as_str()
        })
        .collect();
    for why in [
        "is beyond duration_s",
        "unknown show_id",
        "outside what the analytics store accepts",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(why)),
            "{why}: {reasons:?}"
        );
    }
    app.stop().await.unwrap();
}

/// The `movieflix analytics-sink` process; SIGKILLed when dropped (also when a test fails).
struct SinkProcess(Child);

impl SinkProcess {
    fn signal(&mut self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, signal) };
        self.0.wait().unwrap();
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sink_child(kafka: &TestKafka, dir: &Path, max_age: &str) -> SinkProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_movieflix"))
        .arg("analytics-sink")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--sink-max-rows",
            "25",
            "--sink-max-age",
            max_age,
        ])
        .arg("--analytics-dir")
        .arg(dir)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("KAFKA_BOOTSTRAP_SERVERS", kafka.kafka().bootstrap_servers())
        .env("TOPIC_PREFIX", kafka.kafka().prefix())
        // The killed member stays in the group until its session times out: keep that short.
        .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
        .env("KAFKA_HEARTBEAT_INTERVAL_MS", "500")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    SinkProcess(child)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_killed_mid_file_neither_loses_nor_duplicates_rows() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(topics::ALL).await.unwrap();
    let analytics = tempfile::tempdir().unwrap();
    let topic = kafka.kafka().topic(&SHOW_POSITION);
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let total = 2_000;
    let mut produced = BTreeSet::new();
    for i in 0..total {
        let position = ShowPosition {
            event_id: shared::event::new_event_id(),
            user_id: format!("k{}", i % 97),
            show_id: "m007".into(),
            episode: None,
            position_s: i,
            duration_s: 10_000,
            at: Utc::now(),
        };
        producer
            .publish(&topic, &position.user_id, &position)
            .await
            .unwrap();
        produced.insert(position.event_id);
    }

    // Files close at 25 rows and never by age: whatever is buffered at the kill is mid-file.
    for round in 1..=2 {
        let mut child = sink_child(&kafka, analytics.path(), "1h");
        let target = round * 400;
        eventually(Duration::from_secs(90), "some files written", || async {
            (parquet_rows(analytics.path()).len() >= target).then_some(())
        })
        .await;
        child.signal(libc::SIGKILL);
    }
    let before_restart = parquet_rows(analytics.path()).len();
    assert!(before_restart < total as usize, "killed before the end");

    // Restarted (files now also close by age): it continues from the files, not the commits.
    let mut child = sink_child(&kafka, analytics.path(), "300ms");
    let rows = eventually(Duration::from_secs(90), "every row", || async {
        let rows = parquet_rows(analytics.path());
        (rows.len() >= total as usize).then_some(rows)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    child.signal(libc::SIGTERM);
    let rows_now = parquet_rows(analytics.path());
    assert_eq!(rows_now.len(), rows.len(), "nothing more after the end");
    let ids: BTreeSet<String> = rows_now.iter().map(|r| r.0.clone()).collect();
    assert_eq!(ids.len(), rows_now.len(), "no row twice");
    assert_eq!(ids, produced, "every row once");
    let coordinates: BTreeSet<(i32, i64)> = rows_now.iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(coordinates.len(), rows_now.len(), "no offset twice");
}
