//! Invalid positions are refused with a 400 that says why, and nothing reaches the topic.

use std::time::Duration;

use movieflix::topics::SHOW_POSITION;
use reqwest::StatusCode;
use serde_json::json;
use shared::testkit::TestKafka;

use crate::{client, get, post, spawn};

#[tokio::test(flavor = "multi_thread")]
async fn invalid_positions_are_400s_and_nothing_is_published() {
    let kafka = TestKafka::start().await.unwrap();
    let (state, analytics) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let app = spawn(
        &kafka,
        &["video-position-service"],
        state.path(),
        analytics.path(),
    )
    .await;
    let http = client();
    let url = format!("{}/v1/positions", app.url());
    let cases = [
        (
            json!({"user_id": "u", "show_id": "m001", "position_s": 9999, "duration_s": 10}),
            "beyond duration_s",
        ),
        (
            json!({"user_id": "u", "show_id": "zzz", "position_s": 1, "duration_s": 10}),
            "unknown show_id",
        ),
        (
            json!({"user_id": "u", "show_id": "s001", "position_s": 1, "duration_s": 10}),
            "episode is required",
        ),
        (
            json!({"user_id": "u", "show_id": "m001", "episode": 2, "position_s": 1, "duration_s": 10}),
            "no episodes",
        ),
        (
            json!({"user_id": "", "show_id": "m001", "position_s": 1, "duration_s": 10}),
            "must not be empty",
        ),
        (
            json!({"user_id": "u/v", "show_id": "m001", "position_s": 1, "duration_s": 10}),
            "may only contain",
        ),
        (
            json!({"user_id": "u", "show_id": "m001", "position_s": 1, "duration_s": 0}),
            "duration_s must be positive",
        ),
        (
            json!({"user_id": "u", "show_id": "m001", "position_s": -1, "duration_s": 10}),
            "position_s",
        ),
        (
            json!({"user_id": "u", "show_id": "m001", "duration_s": 10}),
            "position_s",
        ),
        (
            json!({"user_id": "u", "show_id": "m001", "position_s": 1, "duration_s": 10,
            "at": "2999-01-01T00:00:00Z"}),
            "in the future",
        ),
        (
            json!({"user_id": "u", "show_id": "m001", "position_s": 1, "duration_s": 10,
            "at": "yesterday"}),
            "at",
        ),
        // Event times outside the documented window (7 days back, 5 minutes ahead).
        (
            json!({"user_id": "u", "show_id": "m001", "position_s": 1, "duration_s": 10,
            "at": "0001-01-01T00:00:00Z"}),
            "more than 7 days in the past",
        ),
        (
            json!({"user_id": "u", "show_id": "m001", "position_s": 1, "duration_s": 10,
            "at": "1970-01-01T00:00:00Z"}),
            "more than 7 days in the past",
        ),
        (
            json!({"user_id": "u", "show_id": "m001", "position_s": 1, "duration_s": 10,
            "at": (chrono::Utc::now() - chrono::TimeDelta::days(8)).to_rfc3339()}),
            "more than 7 days in the past",
        ),
        (
            json!({"user_id": "u", "show_id": "m001", "position_s": 1, "duration_s": 10,
            "at": (chrono::Utc::now() + chrono::TimeDelta::minutes(10)).to_rfc3339()}),
            "more than 5 minutes in the future",
        ),
    ];
    for (body, expected) in &cases {
        let (status, answer) = post(&http, &url, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        let message = format!("{} {}", answer["error"], answer["detail"]);
        assert!(
            message.contains(expected),
            "{body}: {message:?} should mention {expected:?}"
        );
    }
    // Not JSON at all, and JSON without the content type.
    let response = http
        .post(&url)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = http.post(&url).body("{}").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = get(&http, &format!("{}/v1/shows?genre=polka", app.url())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let published = kafka
        .read_all(&kafka.kafka().topic(&SHOW_POSITION), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        published.is_empty(),
        "{} records were published",
        published.len()
    );
    app.stop().await.unwrap();
}
