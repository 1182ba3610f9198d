//! Threshold changes and transactions interleaved in time, as fast as the API and the database
//! take them, with no wait for the detector in between: each transaction gets exactly the alert
//! the threshold in force at its `created_at` allows. The detector reads `user_settings` and
//! `bank_transactions` as two inputs; the streams runtime processes them in time order. Once
//! with every service running, and once with the detector started after everything was
//! written, so that it reads two backlogs whose fetches interleave however they come.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use shared::service::Process as App;

use crate::{Bank, client, detector_processed, eventually, notified, send};

const USERS: [&str; 4] = ["ord-a", "ord-b", "ord-c", "ord-d"];
/// Thresholds in EUR, one per round: rises, falls, and (None) none at all.
const ROUNDS: [Option<u32>; 8] = [
    Some(1000),
    Some(2000),
    Some(500),
    None,
    Some(1500),
    Some(1000),
    None,
    Some(3000),
];

/// PUT (or DELETE) a threshold and return as soon as it is accepted: no wait for any view.
async fn command(app: &App, user: &str, euros: Option<u32>) -> bool {
    let url = format!("{}/v1/users/{user}/alert-threshold", app.url());
    loop {
        let request = match euros {
            Some(euros) => client()
                .put(&url)
                .json(&json!({"amount": euros.to_string(), "currency": "EUR"})),
            None => client().delete(&url),
        };
        let (status, body) = send(request).await;
        match status {
            StatusCode::ACCEPTED => return true,
            // Nothing changed (the same threshold, or none to remove): nothing published.
            StatusCode::OK | StatusCode::NO_CONTENT => return false,
            StatusCode::SERVICE_UNAVAILABLE => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("{other} {body}"),
        }
    }
}

async fn interleaved(bank: Bank, detector_starts_late: bool) {
    let app = if detector_starts_late {
        let services = [
            "source-connector",
            "app-threshold-service",
            "notification-service",
        ];
        bank.spawn(&services, None).await
    } else {
        bank.spawn(&[], None).await
    };
    let mut expected: BTreeSet<(String, i64)> = BTreeSet::new();
    let mut inputs = 0u64;
    for threshold in ROUNDS {
        for user in USERS {
            if command(&app, user, threshold).await {
                inputs += 1;
            }
            // Just over, just under, exactly at the threshold (no alert: it must be exceeded),
            // and a refund just over it (the size counts, not the sign).
            let t = f64::from(threshold.unwrap_or(1000));
            for (euros, alert) in [
                (t + 0.01, true),
                (t - 0.01, false),
                (t, false),
                (-(t + 1.0), true),
            ] {
                let transaction = bank.insert(user, euros, None).await;
                inputs += 1;
                if alert && threshold.is_some() {
                    expected.insert((user.to_owned(), transaction.id));
                }
            }
        }
    }
    let detector = if detector_starts_late {
        // Every transaction in Kafka first: the detector then starts on two full topics.
        let topic = bank.topic(&mybank::topics::BANK_TRANSACTIONS);
        let transactions = ROUNDS.len() * USERS.len() * 4;
        bank.kafka
            .wait_for_records(&topic, transactions, Duration::from_secs(60))
            .await
            .unwrap();
        Some(bank.spawn(&["big-transaction-detector"], None).await)
    } else {
        None
    };
    detector_processed(detector.as_ref().unwrap_or(&app), inputs).await;
    eventually(
        Duration::from_secs(60),
        "every expected alert notified",
        || async {
            let mut all = BTreeSet::new();
            for user in USERS {
                for id in notified(&app, user).await {
                    all.insert((user.to_owned(), id));
                }
            }
            all.is_superset(&expected).then_some(())
        },
    )
    .await;
    let mut notified_all = BTreeSet::new();
    for user in USERS {
        for id in notified(&app, user).await {
            notified_all.insert((user.to_owned(), id));
        }
    }
    let extra: Vec<_> = notified_all.difference(&expected).collect();
    assert!(
        extra.is_empty(),
        "alerts the threshold of their time does not allow: {extra:?}"
    );
    assert_eq!(notified_all.len(), expected.len());
    if let Some(detector) = detector {
        detector.stop().await.unwrap();
    }
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_interleaved_changes_and_transactions_get_the_alerts_of_their_time() {
    interleaved(Bank::sqlite().await, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_detector_started_on_both_backlogs_gets_the_alerts_of_their_time() {
    interleaved(Bank::sqlite().await, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_interleaved_changes_and_transactions_get_the_alerts_of_their_time() {
    if let Some(bank) = Bank::postgres().await {
        interleaved(bank, false).await;
    }
}
