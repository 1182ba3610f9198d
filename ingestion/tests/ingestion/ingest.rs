//! The ingest API judges every line on its own: bad lines come back with their line number and
//! reason, good ones are on `raw_events` — keyed by actor, stamped with their event time.
//! Bodies that are not a batch at all are a 4xx with a JSON reason, and publish nothing.

use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use ingestion::app::Options;
use ingestion::events::{RawEvent, Source};
use rdkafka::Message;
use reqwest::StatusCode;
use serde_json::json;
use shared::testkit::TestKafka;

use crate::{client, post_events, send, spawn};

#[tokio::test(flavor = "multi_thread")]
async fn bad_lines_are_answered_with_their_reason_and_good_ones_are_published() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, &["ingest-api"], dir.path(), Options::default()).await;
    let (url, http) = (app.url(), client());
    let at = (Utc::now() - TimeDelta::minutes(5))
        .duration_trunc(TimeDelta::milliseconds(1))
        .unwrap();
    let id = |n: u8| format!("0190d2a0-0000-7000-8000-0000000000{n:02x}");
    let lines = [
        json!({"event_id": id(1), "source": "web", "event_type": "page_view", "actor": "u_1",
            "timestamp": at, "properties": {"path": "/"}}),
        json!("{not json"),
        json!({"event_id": id(3), "source": "iot", "event_type": "reading", "actor": "dev-7",
            "timestamp": at}),
        json!({"source": "web", "event_type": "Page View", "actor": "u_1", "timestamp": at}),
        json!({"source": "tv", "event_type": "click", "actor": "u_1", "timestamp": at}),
        json!({"source": "web", "event_type": "click", "actor": "u_1",
            "timestamp": Utc::now() + TimeDelta::hours(2)}),
        json!({"source": "web", "event_type": "click", "actor": "u_1", "timestamp": at,
            "received_at": at}),
        json!({"source": "mobile", "event_type": "tap", "timestamp": at}),
    ];
    let body: String = lines
        .iter()
        .map(|l| match l {
            serde_json::Value::String(raw) => format!("{raw}\n"),
            event => format!("{event}\n"),
        })
        .collect();
    let (status, answer) = post_events(&http, &url, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    let rejected: Vec<(u64, String)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        (2, "not an event"),
        (4, "must start with a lowercase letter"),
        (5, "unknown variant `tv`"),
        (6, "more than 1h after"),
        (7, "unknown field `received_at`"),
        (8, "missing field `actor`"),
    ];
    assert_eq!(rejected.len(), expected.len(), "{answer}");
    for ((line, error), (want_line, want)) in rejected.iter().zip(expected) {
        assert_eq!(*line, want_line, "{answer}");
        assert!(
            error.contains(want),
            "line {line}: {error:?} should say {want:?}"
        );
    }

    // The two good events are on raw_events, keyed by actor, at their event time.
    let topic = kafka.kafka().topic(&ingestion::topics::RAW_EVENTS);
    let records = kafka
        .read_all(&topic, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
    let mut seen = Vec::new();
    for record in &records {
        let event: RawEvent = serde_json::from_slice(record.payload().unwrap()).unwrap();
        assert_eq!(record.key(), Some(event.actor.as_bytes()));
        assert_eq!(
            record.partition(),
            shared::producer::partition_for_key(event.actor.as_bytes(), 32)
        );
        assert_eq!(record.timestamp().to_millis(), Some(at.timestamp_millis()));
        assert_eq!(event.timestamp, at);
        assert!(event.received_at > at);
        seen.push((event.event_id, event.source, event.actor));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            (id(1), Source::Web, "u_1".to_owned()),
            (id(3), Source::Iot, "dev-7".to_owned())
        ]
    );

    // A batch of bad lines only: a 400 with the same per-line answer.
    let (status, answer) = post_events(&http, &url, "{}\n[]\n".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["detail"]["accepted"], 0, "{answer}");
    assert_eq!(answer["detail"]["rejected"][1]["line"], 2, "{answer}");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_that_are_not_a_batch_are_4xx_with_a_json_reason_and_publish_nothing() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, &["ingest-api"], dir.path(), Options::default()).await;
    let (url, http) = (app.url(), client());
    let events = format!("{url}/v1/events");
    let good = json!({"source": "web", "event_type": "click", "actor": "u_1",
        "timestamp": Utc::now()})
    .to_string();

    // A JSON array, or no content type: 415.
    let (status, answer) = send(
        http.post(&events)
            .header("content-type", "application/json")
            .body(format!("[{good}]")),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("application/x-ndjson"),
        "{answer}"
    );
    let (status, answer) = send(http.post(&events).body(good.clone())).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
    assert!(answer["error"].is_string(), "{answer}");
    // A charset parameter is fine.
    let (status, answer) = send(
        http.post(&events)
            .header("content-type", "application/x-ndjson; charset=utf-8")
            .body(format!("{good}\n")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    // Empty bodies: 400.
    for empty in ["", "\n", " \r\n\n"] {
        let (status, answer) = post_events(&http, &url, empty.into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{empty:?}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("empty"),
            "{answer}"
        );
    }
    // Too many lines: 413, nothing published.
    let many = format!("{good}\n").repeat(ingestion::ingest_api::MAX_EVENTS + 1);
    let (status, answer) = post_events(&http, &url, many).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("10000"),
        "{answer}"
    );
    // Too many bytes: 413. The server may close the connection while the client still writes,
    // so the client can miss the answer: it tries a few times and must see the 413 once.
    let mut answered = None;
    for _ in 0..5 {
        let huge = "x".repeat(ingestion::ingest_api::MAX_BODY_BYTES + 1);
        match http
            .post(&events)
            .header("content-type", "application/x-ndjson")
            .body(huge)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status();
                answered = Some((status, response.json::<serde_json::Value>().await.unwrap()));
                break;
            }
            Err(err) => eprintln!("oversized body: {err}"),
        }
    }
    let (status, answer) = answered.expect("no answer to an oversized body in five tries");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(answer["error"].is_string(), "{answer}");

    // Only the one good batch reached the topic.
    let topic = kafka.kafka().topic(&ingestion::topics::RAW_EVENTS);
    let records = kafka
        .read_all(&topic, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    app.stop().await.unwrap();
}
