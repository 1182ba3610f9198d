//! Undecodable, invalid and mis-keyed records on `raw_events` are dead-lettered by the speed
//! layer — naming itself and the reason — and counting goes on; a bad row on `realtime_counts`
//! is dead-lettered by the realtime API's reader.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use ingestion::app::Options;
use ingestion::topics::{RAW_EVENTS, REALTIME_COUNTS};
use rdkafka::message::OwnedHeaders;
use reqwest::StatusCode;
use serde_json::json;
use shared::EventProducer;
use shared::testkit::TestKafka;

use crate::{client, get, post_events, spawn};

#[tokio::test(flavor = "multi_thread")]
async fn bad_records_are_dead_lettered_with_their_reason_and_counting_goes_on() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, &[], dir.path(), Options::default()).await;
    let (url, http) = (app.url(), client());

    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let now = Utc::now();
    let send = |topic: String, key: &str, payload: String, timestamp: i64| {
        let (producer, key) = (producer.clone(), key.to_owned());
        async move {
            producer
                .send(
                    &topic,
                    Some(key.as_bytes()),
                    Some(payload.as_bytes()),
                    OwnedHeaders::new(),
                    Some(timestamp),
                )
                .await
                .unwrap();
        }
    };
    let raw = kafka.kafka().topic(&RAW_EVENTS);
    let event = |actor: &str, event_type: &str| {
        json!({"event_id": shared::event::new_event_id(), "source": "web",
            "event_type": event_type, "actor": actor, "timestamp": now, "received_at": now})
        .to_string()
    };
    let ms = now.timestamp_millis();
    send(raw.clone(), "u_1", "{not json".into(), ms).await;
    // A valid event under another actor's key: it would be counted on the wrong partition.
    send(raw.clone(), "u_2", event("u_1", "click"), ms).await;
    // Valid JSON, invalid content.
    send(raw.clone(), "u_1", event("u_1", "Bad Type"), ms).await;
    // A record timestamp that is not the event time: stream time would not be event time.
    send(raw.clone(), "u_1", event("u_1", "click"), ms + 3_600_000).await;
    // A row of realtime_counts under the wrong key.
    let row = json!({"minute": "2026-01-01T00:00:00Z", "source": "web", "event_type": "click",
        "count": 1, "distinct_users": 1, "partitions": 1, "final": false});
    send(
        kafka.kafka().topic(&REALTIME_COUNTS),
        "2026-01-01T00:01:00Z|web|click",
        row.to_string(),
        ms,
    )
    .await;

    // Counting goes on behind them: a good event through the API is counted.
    let good = json!({"source": "iot", "event_type": "alarm", "actor": "dev-1",
        "timestamp": now - TimeDelta::seconds(1)});
    let (status, answer) = post_events(&http, &url, format!("{good}\n")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    crate::eventually(Duration::from_secs(60), "the alarm counted", || async {
        let (_, counts) = get(&http, &format!("{url}/v1/realtime/counts?source=iot")).await;
        (counts["counts"][0]["count"] == 1).then_some(())
    })
    .await;

    let prefix = kafka.kafka().prefix();
    let wait = Duration::from_secs(60);
    // Both readers of raw_events refuse the same four records for the same reasons: the
    // speed layer and the S3 sink (whose files the batch layer counts).
    let letters = kafka.read_dlq(&raw, 8, wait).await.unwrap();
    let speed = format!("{prefix}ingestion-speed-layer");
    let sink = format!("{prefix}connect-raw-events-s3-sink");
    for application in [&speed, &sink] {
        let letters: Vec<_> = letters
            .iter()
            .filter(|l| l.application.as_deref() == Some(application.as_str()))
            .collect();
        // The mis-keyed record is on another partition than the other three: letters are
        // matched by what they say, not by their order.
        let mut reasons: Vec<&str> = letters
            .iter()
            .map(|l| match (l.kind.as_str(), l.error.as_str()) {
                ("decode", e) if e.contains("RawEvent") => "undecodable",
                ("rejected", e) if e.contains(r#"key "u_2" does not match actor "u_1""#) => {
                    "mis-keyed"
                }
                ("rejected", e) if e.contains("event_type") => "invalid event type",
                ("rejected", e) if e.contains("record timestamp") => "timestamp not event time",
                _ => "unexpected",
            })
            .collect();
        reasons.sort_unstable();
        assert_eq!(
            reasons,
            [
                "invalid event type",
                "mis-keyed",
                "timestamp not event time",
                "undecodable"
            ],
            "{application}: {letters:#?}"
        );
    }
    let rows = kafka
        .read_dlq(&kafka.kafka().topic(&REALTIME_COUNTS), 1, wait)
        .await
        .unwrap();
    assert_eq!(
        rows[0].application,
        Some(format!("{prefix}ingestion-realtime-api"))
    );
    assert!(rows[0].error.contains("does not match"), "{rows:#?}");
    app.stop().await.unwrap();
}
