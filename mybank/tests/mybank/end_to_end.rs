//! Rows inserted into the bank's database → alerts for transactions over the threshold in force
//! at their time; none under it, none before it, none after it was removed.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Duration as Age;

use reqwest::StatusCode;

use crate::{
    Bank, alerts_on_topic, client, eventually, notified, remove_threshold, send, set_threshold,
};

async fn thresholds_in_force_decide(bank: Bank) {
    let app = bank.spawn(&[], None).await;

    // Before any threshold: no alert, however large.
    let before = bank.insert("alice", 50_000.0, None).await;
    tokio::time::sleep(Duration::from_millis(5)).await;

    let enabled = set_threshold(&app, "alice", "1000").await;
    assert_eq!(enabled["event"]["type"], "ThresholdEnabled");
    let over = bank.insert("alice", 1500.0, None).await;
    let under = bank.insert("alice", 999.99, None).await;
    let equal = bank.insert("alice", 1000.0, None).await;
    let refund = bank.insert("alice", -1200.0, None).await; // the size counts, not the sign
    let no_threshold = bank.insert("bob", 1_000_000.0, None).await;
    // Created before the threshold existed, arriving now: judged by the rules of its time.
    let late_before = bank
        .insert("alice", 9000.0, Some(before.created_at - Age::minutes(1)))
        .await;
    tokio::time::sleep(Duration::from_millis(5)).await;

    let changed = set_threshold(&app, "alice", "2000.00").await;
    assert_eq!(changed["event"]["type"], "ThresholdChanged");
    assert_eq!(changed["event"]["previous"]["amount_minor"], 100_000);
    let under_new = bank.insert("alice", 1500.0, None).await;
    let over_new = bank.insert("alice", 2500.0, None).await;
    // Created while 1000 was in force (between the two changes), arriving after the change.
    let late_between = bank
        .insert(
            "alice",
            1500.0,
            Some(over.created_at + Age::milliseconds(1)),
        )
        .await;

    // dave: enabled, removed, enabled again.
    set_threshold(&app, "dave", "100").await;
    let dave_1 = bank.insert("dave", 500.0, None).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let disabled = remove_threshold(&app, "dave").await;
    assert_eq!(disabled["event"]["type"], "ThresholdDisabled");
    let dave_off = bank.insert("dave", 600.0, None).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    set_threshold(&app, "dave", "100").await;
    let dave_2 = bank.insert("dave", 700.0, None).await;

    let expected_alice: BTreeSet<i64> = [over.id, refund.id, over_new.id, late_between.id].into();
    let expected_dave: BTreeSet<i64> = [dave_1.id, dave_2.id].into();
    // Each user's records are processed in order on one partition: once the last expected alert
    // is there, every earlier record of that user has been judged.
    eventually(
        Duration::from_secs(60),
        "alice's and dave's notifications",
        || async {
            let alice: BTreeSet<i64> = notified(&app, "alice").await.into_iter().collect();
            let dave: BTreeSet<i64> = notified(&app, "dave").await.into_iter().collect();
            (alice.is_superset(&expected_alice) && dave.is_superset(&expected_dave)).then_some(())
        },
    )
    .await;
    assert_eq!(
        notified(&app, "alice")
            .await
            .into_iter()
            .collect::<BTreeSet<_>>(),
        expected_alice,
        "alice: alerts for {} (over 1000), {} (refund), {} (over 2000), {} (late, under 1000's rule) only; \
         not {} (before), {} / {} (under / equal), {} (late, before), {} (under 2000)",
        over.id,
        refund.id,
        over_new.id,
        late_between.id,
        before.id,
        under.id,
        equal.id,
        late_before.id,
        under_new.id
    );
    assert_eq!(
        notified(&app, "dave")
            .await
            .into_iter()
            .collect::<BTreeSet<_>>(),
        expected_dave,
        "dave: no alert for {} while the threshold was off",
        dave_off.id
    );
    assert!(
        notified(&app, "bob").await.is_empty(),
        "bob has no threshold ({})",
        no_threshold.id
    );

    // Paging: one notification a page, each page after the last alert of the one before, until
    // an empty page: every notification once, newest first. A limit outside 1..=500 or a cursor
    // that is not one of the user's notifications is a 400 that says so.
    let url = format!("{}/v1/users/alice/notifications", app.url());
    let (mut paged, mut before) = (Vec::new(), None::<String>);
    loop {
        let page_url = match &before {
            Some(alert_id) => format!("{url}?limit=1&before={alert_id}"),
            None => format!("{url}?limit=1"),
        };
        let (status, page) = send(client().get(page_url)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let Some(last) = page.as_array().unwrap().last() else {
            break;
        };
        assert_eq!(page.as_array().unwrap().len(), 1);
        paged.push(last["alert"]["transaction_id"].as_i64().unwrap());
        assert!(
            paged.len() <= expected_alice.len(),
            "pages repeat: {paged:?}"
        );
        before = Some(last["alert"]["alert_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        paged.iter().copied().collect::<BTreeSet<_>>(),
        expected_alice
    );
    assert_eq!(
        paged.len(),
        expected_alice.len(),
        "no page repeats one: {paged:?}"
    );
    for (query, why) in [
        ("limit=0", "from 1 to 500"),
        ("limit=501", "from 1 to 500"),
        ("before=txn-999999", "not one of the user's notifications"),
        ("before=a%20b", "not an alert id"),
    ] {
        let (status, body) = send(client().get(format!("{url}?{query}"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(why),
            "{query}: {body}"
        );
    }

    // The topic holds the same alerts, and one e-mail per alert is in the outbox.
    let on_topic: BTreeSet<i64> = alerts_on_topic(&bank)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let all: BTreeSet<i64> = expected_alice.union(&expected_dave).copied().collect();
    assert_eq!(on_topic, all);
    let outbox: BTreeSet<String> = std::fs::read_dir(bank.outbox())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".eml"))
        .collect();
    let expected_files: BTreeSet<String> = all.iter().map(|id| format!("txn-{id}.eml")).collect();
    assert_eq!(outbox, expected_files);
    let email =
        std::fs::read_to_string(bank.outbox().join(format!("txn-{}.eml", over.id))).unwrap();
    assert!(email.contains("1500.00 EUR"), "{email}");

    // Every row reached bank_transactions once, keyed by user.
    let rows = bank
        .kafka
        .read_all(
            &bank.topic(&mybank::topics::BANK_TRANSACTIONS),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert_eq!(rows.len() as i64, bank.db.count().await.unwrap());
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_alerts_follow_the_threshold_in_force() {
    thresholds_in_force_decide(Bank::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_alerts_follow_the_threshold_in_force() {
    if let Some(bank) = Bank::postgres().await {
        thresholds_in_force_decide(bank).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notifications_stream_live_and_openapi_lists_every_route() {
    let bank = Bank::sqlite().await;
    let app = bank.spawn(&[], None).await;
    set_threshold(&app, "erin", "10").await;

    let mut stream = client()
        .get(format!("{}/v1/users/erin/notifications/stream", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let big = bank.insert("erin", 25.0, None).await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains(&format!("txn-{}", big.id)) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("an SSE event within 30 s")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: alert"), "{seen}");
    assert!(seen.contains("25.00 EUR"), "{seen}");

    let (status, doc) = send(client().get(format!("{}/openapi.json", app.url()))).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v1/users/{user}/alert-threshold",
        "/v1/users/{user}/notifications",
        "/v1/users/{user}/notifications/stream",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from OpenAPI"
        );
    }
    for method in ["get", "put", "delete"] {
        assert!(doc["paths"]["/v1/users/{user}/alert-threshold"][method].is_object());
    }
    app.stop().await.unwrap();
}
