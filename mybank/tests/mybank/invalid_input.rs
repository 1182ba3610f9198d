//! Bad input never crashes a service or disappears: invalid requests are answered 400 with the
//! reason (and publish nothing); undecodable or invalid records go to the dead-letter topics and
//! the services keep going.

use std::time::Duration;

use rdkafka::message::OwnedHeaders;
use reqwest::StatusCode;
use serde_json::json;

use crate::{Bank, client, eventually, notified, send, set_threshold};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_thresholds_are_rejected_with_the_reason() {
    let bank = Bank::sqlite().await;
    let app = bank.spawn(&["app-threshold-service"], None).await;
    let url = |user: &str| format!("{}/v1/users/{user}/alert-threshold", app.url());
    for (body, why) in [
        (json!({"amount": "0", "currency": "EUR"}), "greater than 0"),
        (json!({"amount": 0, "currency": "EUR"}), "greater than 0"),
        (json!({"amount": "-5", "currency": "EUR"}), "greater than 0"),
        (json!({"amount": -5, "currency": "EUR"}), "greater than 0"),
        (json!({"amount": " 12 ", "currency": "EUR"}), "spaces"),
        (json!({"amount": "abc", "currency": "EUR"}), "not a decimal"),
        (json!({"amount": "1e3", "currency": "EUR"}), "not a decimal"),
        (json!({"amount": "10.001", "currency": "EUR"}), "decimals"),
        (json!({"amount": "10.5", "currency": "JPY"}), "decimals"),
        (json!({"amount": true, "currency": "EUR"}), "decimal number"),
        (
            json!({"amount": "100", "currency": "XYZ"}),
            "unknown currency",
        ),
        (
            json!({"amount": "100", "currency": "eur"}),
            "unknown currency",
        ),
        (json!({"amount": "100"}), "invalid request body"),
        (json!({"currency": "EUR"}), "invalid request body"),
    ] {
        let (status, answer) = send(client().put(url("alice")).json(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        let message = format!("{} {}", answer["error"], answer["detail"]);
        assert!(
            message.contains(why),
            "{body}: {message:?} should say {why:?}"
        );
    }
    // Numbers are read as written: an exponent is refused, not turned into 1000000000.0.
    for raw in [
        r#"{"amount": 1e9, "currency": "EUR"}"#,
        r#"{"amount": 1E3, "currency": "EUR"}"#,
        r#"{"amount": 100.5e0, "currency": "EUR"}"#,
    ] {
        let (status, answer) = send(
            client()
                .put(url("alice"))
                .header("content-type", "application/json")
                .body(raw),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw} → {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("not a decimal"),
            "{answer}"
        );
    }
    let (status, answer) = send(
        client()
            .put(url("not a user!"))
            .json(&json!({"amount": "100", "currency": "EUR"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, _) = send(client().put(url("alice")).body("{not json")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = send(
        client()
            .put(url("alice"))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Nothing was published.
    let settings = bank
        .kafka
        .read_all(
            &bank.topic(&mybank::topics::USER_SETTINGS),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert!(settings.is_empty(), "{} records published", settings.len());
    let (status, _) = send(client().get(url("alice"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(client().delete(url("alice"))).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "nothing to remove, nothing published"
    );
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_records_go_to_the_dead_letter_topics() {
    let bank = Bank::sqlite().await;
    let app = bank.spawn(&[], None).await;
    let producer = shared::EventProducer::new(bank.kafka.kafka()).unwrap();
    let transactions = bank.topic(&mybank::topics::BANK_TRANSACTIONS);
    let settings = bank.topic(&mybank::topics::USER_SETTINGS);
    let alerts = bank.topic(&mybank::topics::USER_ALERTS);
    let garbage = |topic: String, payload: &'static [u8]| {
        let producer = producer.clone();
        async move {
            producer
                .send(
                    &topic,
                    Some(b"mallory"),
                    Some(payload),
                    OwnedHeaders::new(),
                    None,
                )
                .await
                .unwrap();
        }
    };
    garbage(transactions.clone(), b"\x00\x01 not json").await;
    garbage(
        transactions.clone(),
        br#"{"id":"seven","user_id":"mallory"}"#,
    )
    .await;
    garbage(settings.clone(), b"{truncated").await;
    garbage(
        settings.clone(),
        br#"{"type":"ThresholdEnabled","event_id":"e1","user_id":"mallory","threshold":{"amount_minor":-1,"currency":"EUR"},"at":"2026-01-01T00:00:00Z"}"#,
    )
    .await;
    garbage(alerts.clone(), b"[1,2,3]").await;

    // The pipeline still works afterwards.
    set_threshold(&app, "frank", "100").await;
    let big = bank.insert("frank", 500.0, None).await;
    eventually(Duration::from_secs(60), "frank's alert", || async {
        notified(&app, "frank")
            .await
            .contains(&big.id)
            .then_some(())
    })
    .await;

    let letters = bank
        .kafka
        .read_dlq(&transactions, 2, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(letters.iter().all(|l| l.source_topic == transactions));
    let reasons: Vec<&str> = letters.iter().map(|l| l.error.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("not a transaction row")),
        "{reasons:?}"
    );
    // Two consumers of user_settings (the threshold view and the detector): two letters each.
    let letters = bank
        .kafka
        .read_dlq(&settings, 4, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        letters.iter().any(|l| l.error.contains("greater than 0")),
        "{:?}",
        letters.iter().map(|l| &l.error).collect::<Vec<_>>()
    );
    let letters = bank
        .kafka
        .read_dlq(&alerts, 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(letters[0].source_topic, alerts);

    let metrics = shared::testkit::http::metrics(&client(), &app.url()).await;
    assert!(
        metrics.contains("dead_lettered"),
        "dead letters are counted"
    );
    app.stop().await.unwrap();
}
