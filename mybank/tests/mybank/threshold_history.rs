//! Concurrent threshold commands still publish a true history per user (issue 17, item 7): the
//! command side decides `ThresholdEnabled` vs `ThresholdChanged` (and `previous`) from its view
//! of `user_settings`, so that view must hold every event published before the decision.

use std::collections::BTreeMap;
use std::time::Duration;

use mybank::events::SettingsEvent;
use mybank::money::Money;
use rand::{Rng, SeedableRng};
use rdkafka::Message;
use reqwest::StatusCode;
use serde_json::json;

use crate::{Bank, client, eventually, send};

const USERS: usize = 10;
const REQUESTS: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_threshold_commands_publish_a_true_history_per_user() {
    let bank = Bank::sqlite().await;
    let app = bank.spawn(&["app-threshold-service"], None).await;
    let users: Vec<String> = (0..USERS).map(|i| format!("conc{i:03}")).collect();

    // 400 commands at once, one in ten a DELETE; few distinct amounts, so some PUTs repeat the
    // current threshold (200, nothing published) and some DELETEs find none (204).
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let requests = (0..REQUESTS).map(|_| {
        let user = users[rng.random_range(0..USERS)].clone();
        let url = format!("{}/v1/users/{user}/alert-threshold", app.url());
        let request = if rng.random_ratio(1, 10) {
            client().delete(&url)
        } else {
            let euros = rng.random_range(1..=6) * 100;
            client()
                .put(&url)
                .json(&json!({"amount": euros.to_string(), "currency": "EUR"}))
        };
        send(request)
    });
    let answers = futures::future::join_all(requests).await;
    let mut statuses = BTreeMap::<u16, usize>::new();
    for (status, body) in &answers {
        *statuses.entry(status.as_u16()).or_default() += 1;
        // 503: the view did not catch up in time, nothing was published (a client retries).
        assert!(
            [
                StatusCode::OK,
                StatusCode::ACCEPTED,
                StatusCode::NO_CONTENT,
                StatusCode::SERVICE_UNAVAILABLE
            ]
            .contains(status),
            "{status} {body}"
        );
    }
    let published = statuses.get(&202).copied().unwrap_or(0);
    eprintln!("answers by status: {statuses:?}");
    assert!(published >= REQUESTS / 4, "only {published} published");

    // The topic, per user in offset order (one partition per user).
    let topic = bank.topic(&mybank::topics::USER_SETTINGS);
    let records = bank
        .kafka
        .read_all(&topic, Duration::from_secs(3))
        .await
        .unwrap();
    let mut history = BTreeMap::<String, Vec<(i64, SettingsEvent)>>::new();
    for record in &records {
        let event: SettingsEvent = serde_json::from_slice(record.payload().unwrap()).unwrap();
        if users.iter().any(|u| u == event.user_id()) {
            history
                .entry(event.user_id().to_owned())
                .or_default()
                .push((record.offset(), event));
        }
    }
    let on_topic: usize = history.values().map(Vec::len).sum();
    assert_eq!(on_topic, published, "one record per 202");

    let mut violations = Vec::new();
    for (user, events) in &mut history {
        events.sort_by_key(|(offset, _)| *offset);
        let mut current: Option<&Money> = None;
        for (offset, event) in events.iter() {
            match (current, event) {
                (None, SettingsEvent::ThresholdEnabled { threshold, .. }) => {
                    current = Some(threshold)
                }
                (
                    Some(now),
                    SettingsEvent::ThresholdChanged {
                        threshold,
                        previous,
                        ..
                    },
                ) => {
                    if previous != now {
                        violations.push(format!(
                            "{user}@{offset}: ThresholdChanged previous {previous:?}, but the threshold was {now:?}"
                        ));
                    }
                    if threshold == now {
                        violations.push(format!(
                            "{user}@{offset}: ThresholdChanged to the same threshold {now:?}"
                        ));
                    }
                    current = Some(threshold);
                }
                (Some(_), SettingsEvent::ThresholdDisabled { .. }) => current = None,
                (now, event) => {
                    violations.push(format!(
                        "{user}@{offset}: {} while the threshold was {now:?}",
                        event.event_type()
                    ));
                    current = event.threshold();
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "{} violations, e.g.\n{}",
        violations.len(),
        violations[..violations.len().min(10)].join("\n")
    );

    // And the view ends where each history ends.
    for user in &users {
        let last = history
            .get(user)
            .and_then(|events| events.last())
            .and_then(|(_, event)| event.threshold().cloned());
        let url = format!("{}/v1/users/{user}/alert-threshold", app.url());
        eventually(
            Duration::from_secs(20),
            "the view at the history's end",
            || {
                let (url, last) = (url.clone(), last.clone());
                async move {
                    let (status, body) = send(client().get(&url)).await;
                    match &last {
                        Some(money) => (status == StatusCode::OK
                            && body["threshold"] == serde_json::to_value(money).unwrap())
                        .then_some(()),
                        None => (status == StatusCode::NOT_FOUND).then_some(()),
                    }
                }
            },
        )
        .await;
    }
}
