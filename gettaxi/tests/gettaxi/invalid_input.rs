//! Invalid positions, rides and weather are 400s that say why; undecodable and mis-keyed
//! records are dead-lettered by every application that reads them, and the services go on.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use gettaxi::topics::TAXI_POSITION;
use rdkafka::message::OwnedHeaders;
use reqwest::StatusCode;
use serde_json::json;
use shared::EventProducer;
use shared::testkit::TestKafka;

use crate::{MIDTOWN, client, known, offset, outcome, post, request_ride, spawn, taxi};

#[tokio::test(flavor = "multi_thread")]
async fn invalid_requests_are_400s_with_the_reason() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let services = [
        "user-position-service",
        "taxi-position-service",
        "weather-service",
        "ride-service",
    ];
    let app = spawn(&kafka, &services, dir.path()).await;
    let (url, http) = (app.url(), client());
    let future = (Utc::now() + TimeDelta::minutes(5)).to_rfc3339();
    let old = (Utc::now() - TimeDelta::hours(3)).to_rfc3339();
    let p = json!({"lat": 40.75, "lon": -73.98});
    let cases = [
        (
            "/v1/taxis/t1/position",
            json!({"lat": 91.0, "lon": 0.0, "status": "available"}),
            "lat",
        ),
        (
            "/v1/taxis/t1/position",
            json!({"lat": 0.0, "lon": -180.5, "status": "available"}),
            "lon",
        ),
        (
            "/v1/taxis/t1/position",
            json!({"lat": 1.0, "lon": 1.0, "status": "flying"}),
            "status",
        ),
        (
            "/v1/taxis/t1/position",
            json!({"lat": 1.0, "lon": 1.0, "status": "on_ride"}),
            "need ride_id",
        ),
        (
            "/v1/taxis/t1/position",
            json!({"lat": 1.0, "lon": 1.0, "status": "available", "ride_id": "r"}),
            "only sent with",
        ),
        (
            "/v1/taxis/t1/position",
            json!({"lat": 1.0, "lon": 1.0, "status": "available", "at": future}),
            "future",
        ),
        (
            "/v1/taxis/t1/position",
            json!({"lat": 1.0, "lon": 1.0, "status": "available", "at": old}),
            "old",
        ),
        (
            "/v1/taxis/t1/position",
            json!({"lat": "north", "lon": 1.0, "status": "available"}),
            "lat",
        ),
        (
            "/v1/taxis/t1/position",
            json!({"lat": 1.0, "lon": 1.0, "status": "available", "speed": 3}),
            "speed",
        ),
        (
            "/v1/taxis/t%2F1/position",
            json!({"lat": 1.0, "lon": 1.0, "status": "available"}),
            "taxi",
        ),
        (
            "/v1/users/u1/position",
            json!({"lat": -90.5, "lon": 1.0}),
            "lat",
        ),
        ("/v1/users/u1/position", json!({"lon": 1.0}), "lat"),
        (
            "/v1/users/u%20x/position",
            json!({"lat": 1.0, "lon": 1.0}),
            "user",
        ),
        (
            "/v1/rides",
            json!({"rider_id": "r", "pickup": p, "dropoff": {"lat": 95.0, "lon": 0.0}}),
            "dropoff",
        ),
        (
            "/v1/rides",
            json!({"rider_id": "", "pickup": p, "dropoff": p}),
            "rider_id",
        ),
        (
            "/v1/rides",
            json!({"rider_id": "r", "pickup": p, "dropoff": {"lat": 48.85, "lon": 2.35}}),
            "km apart",
        ),
        (
            "/v1/rides",
            json!({"rider_id": "r", "pickup": p}),
            "dropoff",
        ),
        ("/v1/rides", json!([1, 2]), ""),
    ];
    for (path, body, why) in cases {
        let (status, answer) = post(&http, &format!("{url}{path}"), &body).await;
        assert!(
            status.is_client_error(),
            "{path} {body} → {status} {answer}"
        );
        let reason = answer.to_string();
        assert!(
            reason.contains(why),
            "{path} {body}: {reason:?} should name {why:?}"
        );
    }
    // A number JSON can write but f64 cannot hold.
    let response = http
        .post(format!("{url}/v1/users/u1/position"))
        .header("content-type", "application/json")
        .body(r#"{"lat": 1e400, "lon": 1.0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert!(
        answer["detail"].as_str().unwrap().contains("lat"),
        "{answer}"
    );
    let weather = |region: &str, rain: serde_json::Value| {
        let (http, url) = (http.clone(), format!("{url}/v1/regions/{region}/weather"));
        async move { crate::put(&http, &url, &json!({"rain_mm_h": rain})).await }
    };
    let region = gettaxi::geo::region(MIDTOWN).to_string();
    let (status, answer) = weather("not-a-cell", json!(1.0)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let match_area = gettaxi::geo::match_area(MIDTOWN).to_string();
    let (status, answer) = weather(&match_area, json!(1.0)).await;
    assert!(
        answer["error"].as_str().unwrap().contains("resolution"),
        "{status} {answer}"
    );
    let (status, answer) = weather(&region, json!(-1.0)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = weather(&region, json!(4.5)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_taxi_records_are_dead_lettered_by_every_reader_and_matching_goes_on() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, &[], dir.path()).await;
    let (url, http) = (app.url(), client());
    let topic = kafka.kafka().topic(&TAXI_POSITION);
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let send = |key: &'static [u8], payload: String| {
        let (producer, topic) = (producer.clone(), topic.clone());
        async move {
            producer
                .send(
                    &topic,
                    Some(key),
                    Some(payload.as_bytes()),
                    OwnedHeaders::new(),
                    None,
                )
                .await
                .unwrap();
        }
    };
    send(b"bad-1", "{not json".into()).await;
    // Valid JSON under another taxi's key: it would land in a task where nobody looks for it.
    let miskeyed = json!({"event_id": "m", "taxi_id": "bad-2", "lat": 40.75, "lon": -73.98,
        "status": "available", "at": Utc::now()});
    send(b"someone-else", miskeyed.to_string()).await;

    // Matching still works after them.
    taxi(
        &http,
        &url,
        "good",
        offset(MIDTOWN, 200.0, 0.0),
        "available",
        None,
        Utc::now(),
    )
    .await;
    known(&http, &url, &["good".into()]).await;
    let ride = request_ride(&http, &url, "rider", MIDTOWN, offset(MIDTOWN, 900.0, 0.0)).await;
    let view = outcome(&http, &url, &ride, Duration::from_secs(60)).await;
    assert_eq!(view["taxi_id"], "good", "{view}");

    // Four applications read taxi_position: matching, surge pricing, the taxi cost service and
    // the analytics sink. Each dead-letters both records, naming itself and the reason.
    let letters = kafka
        .read_dlq(&topic, 8, Duration::from_secs(60))
        .await
        .unwrap();
    let prefix = kafka.kafka().prefix();
    let mut readers: Vec<String> = letters
        .iter()
        .filter(|l| l.kind == "decode")
        .map(|l| l.application.clone().unwrap())
        .collect();
    readers.sort();
    let mut expected: Vec<String> = [
        "gettaxi-analytics-sink-taxi_position",
        "gettaxi-matching",
        "gettaxi-surge",
        "gettaxi-taxi-cost",
    ]
    .iter()
    .map(|a| format!("{prefix}{a}"))
    .collect();
    expected.sort();
    assert_eq!(readers, expected, "{letters:#?}");
    let miskeyed: Vec<_> = letters.iter().filter(|l| l.kind != "decode").collect();
    assert_eq!(miskeyed.len(), 4, "{letters:#?}");
    assert!(
        miskeyed.iter().all(|l| l.error.contains("taxi_id")),
        "{miskeyed:#?}"
    );
    app.stop().await.unwrap();
}
