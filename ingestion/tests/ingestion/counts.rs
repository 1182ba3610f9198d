//! The counts are exact: events spread over several minutes, three sources and repeated actors
//! are sent through the ingest API while the speed layer is SIGKILLed twice (restarted once
//! with its state directory deleted); afterwards the last record of every key of
//! `realtime_counts`, and the realtime API, equal the counts and distinct actors computed here.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use ingestion::app::Options;
use ingestion::events::{Source, count_key};
use reqwest::StatusCode;
use serde_json::json;
use shared::testkit::TestKafka;

use crate::{client, get, post_events, realtime_counts, spawn};

/// `ingestion speed-layer` in a process of its own; SIGKILLed when dropped.
struct SpeedLayer(Child);

impl SpeedLayer {
    fn start(kafka: &TestKafka, state: &std::path::Path, data: &std::path::Path) -> SpeedLayer {
        let child = Command::new(env!("CARGO_BIN_EXE_ingestion"))
            .arg("speed-layer")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(state)
            .arg("--data-dir")
            .arg(data)
            // No event of the run is late: every one must be counted.
            .env("SPEED_GRACE", "1h")
            .env("KAFKA_BOOTSTRAP_SERVERS", kafka.kafka().bootstrap_servers())
            .env("TOPIC_PREFIX", kafka.kafka().prefix())
            // The killed member stays in the group until its session times out: keep it short.
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("KAFKA_HEARTBEAT_INTERVAL_MS", "500")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        SpeedLayer(child)
    }

    fn kill(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
        self.0.wait().unwrap();
    }
}

impl Drop for SpeedLayer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const TYPES: &[(Source, &str)] = &[
    (Source::Web, "page_view"),
    (Source::Web, "purchase"),
    (Source::Mobile, "tap"),
    (Source::Iot, "reading"),
];

#[tokio::test(flavor = "multi_thread")]
async fn counts_and_distinct_actors_equal_the_ground_truth_across_sigkills() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    kafka.provision(ingestion::topics::ALL).await.unwrap();
    // The child cannot create topics on an embedded broker: its internal topics are made here.
    let (config, _) = ingestion::speed_layer::config(kafka.kafka());
    shared::streams::app::provision_internal_topics(kafka.kafka(), &config)
        .await
        .unwrap();
    let app = spawn(
        &kafka,
        &["ingest-api", "realtime-api"],
        dir.path(),
        Options::default(),
    )
    .await;
    let (url, http) = (app.url(), client());
    let (state, data) = (
        dir.path().join("speed-state"),
        dir.path().join("speed-data"),
    );
    let mut speed = SpeedLayer::start(&kafka, &state, &data);

    // 60 batches of 100 events over the last 8 minutes, 150 actors; the truth alongside.
    let start = (Utc::now() - TimeDelta::minutes(8))
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut truth: BTreeMap<String, (u64, BTreeSet<String>)> = BTreeMap::new();
    const BATCHES: usize = 60;
    for batch in 0..BATCHES {
        let mut body = String::new();
        for i in 0..100 {
            let (source, event_type) = TYPES[next() as usize % TYPES.len()];
            let actor = format!("a{}", next() % 150);
            let offset_ms = ((batch * 100 + i) as i64 * 480_000) / (BATCHES as i64 * 100)
                + (next() % 5_000) as i64;
            let at: DateTime<Utc> = start + TimeDelta::milliseconds(offset_ms);
            body.push_str(
                &json!({"source": source, "event_type": event_type, "actor": actor,
                    "timestamp": at})
                .to_string(),
            );
            body.push('\n');
            let minute = ingestion::speed_layer::minute_of(at.timestamp_millis());
            let entry = truth
                .entry(count_key(minute, source, event_type))
                .or_default();
            entry.0 += 1;
            entry.1.insert(actor);
        }
        let (status, answer) = post_events(&http, &url, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["accepted"], 100, "{answer}");
        if batch == BATCHES / 3 {
            speed.kill();
            speed = SpeedLayer::start(&kafka, &state, &data);
        }
        if batch == 2 * BATCHES / 3 {
            speed.kill();
            std::fs::remove_dir_all(&state).unwrap();
            speed = SpeedLayer::start(&kafka, &state, &data);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let truth: BTreeMap<String, (u64, u64)> = truth
        .into_iter()
        .map(|(key, (count, actors))| (key, (count, actors.len() as u64)))
        .collect();

    // The compacted topic's last word on every key is the truth.
    let last = crate::eventually(
        Duration::from_secs(180),
        "realtime_counts equal to the truth",
        || async {
            let (last, _) = realtime_counts(&kafka).await;
            let counts: BTreeMap<String, (u64, u64)> = last
                .iter()
                .map(|(k, r)| (k.clone(), (r.count, r.distinct_users)))
                .collect();
            (counts == truth).then_some(last)
        },
    )
    .await;
    for (key, row) in &last {
        assert_eq!(
            *key,
            count_key(row.minute.timestamp_millis(), row.source, &row.event_type)
        );
    }
    // And the realtime API serves them.
    let from = start.to_rfc3339();
    let served = crate::eventually(Duration::from_secs(60), "the API serves them", || async {
        let (_, answer) = get(
            &http,
            &format!("{url}/v1/realtime/counts?from={}", urlencode(&from)),
        )
        .await;
        let counts: BTreeMap<String, (u64, u64)> = answer["counts"]
            .as_array()?
            .iter()
            .map(|r| {
                let row: ingestion::events::RealtimeCount =
                    serde_json::from_value(r.clone()).unwrap();
                (
                    count_key(row.minute.timestamp_millis(), row.source, &row.event_type),
                    (row.count, row.distinct_users),
                )
            })
            .collect();
        (counts == truth).then_some(counts)
    })
    .await;
    assert_eq!(served.len(), truth.len());
    drop(speed);
    app.stop().await.unwrap();
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}
