//! E-mail through a real SMTP server (aiosmtpd, started by the test): exactly one message per
//! alert, with the amount in the body — also when every alert is delivered again; an e-mail the
//! server refuses for good is recorded as failed and dead-lettered, and holds up nothing; a mail
//! server that cannot be reached shows in `/readyz` and the metrics while in-app alerts go on.

use std::collections::BTreeMap;
use std::time::Duration;

use mybank::bench::smtp_server::SmtpServer;
use mybank::mailer::ALERT_HEADER;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use reqwest::StatusCode;
use serde_json::Value;

use crate::{Bank, client, eventually, send, set_threshold};

/// The user's notifications (the API's JSON), by alert id.
async fn notifications_by_alert(
    app: &shared::service::Process,
    user: &str,
) -> BTreeMap<String, Value> {
    let (status, body) = send(client().get(format!(
        "{}/v1/users/{user}/notifications?limit=500",
        app.url()
    )))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["alert"]["alert_id"].as_str().unwrap().to_owned(),
                n.clone(),
            )
        })
        .collect()
}

/// The notification service's counter `name` on `/metrics` (its consumer group's; 0 when absent).
async fn counter(app: &shared::service::Process, bank: &Bank, name: &str) -> f64 {
    let group = format!(
        "{}{}",
        bank.kafka.kafka().prefix(),
        mybank::notification_service::GROUP_ID
    );
    let text = shared::testkit::http::metrics(&client(), &app.url()).await;
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| line.contains(&format!("group=\"{group}\"")))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// alert id → messages the SMTP server accepted for it.
fn by_alert(smtp: &SmtpServer) -> BTreeMap<String, Vec<mybank::bench::smtp_server::Received>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for message in smtp.messages().unwrap() {
        let id = message
            .header(ALERT_HEADER)
            .expect("alert header")
            .to_owned();
        out.entry(id).or_default().push(message);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_email_per_alert_even_when_alerts_are_redelivered() {
    let smtp = SmtpServer::start().await.expect(
        "a real SMTP server for this test: apt-get install python3-aiosmtpd (.ci/run does)",
    );
    let bank = Bank::sqlite().await;
    let app = bank.spawn(&[], Some(smtp.url())).await;
    set_threshold(&app, "grace", "1000").await;
    set_threshold(&app, "heidi", "50").await;
    let mut expected = BTreeMap::new();
    for i in 0..5 {
        let over = bank.insert("grace", 1500.0 + i as f64, None).await;
        expected.insert(over.alert_id(), format!("{}.00 EUR", 1500 + i));
        bank.insert("grace", 10.0 + i as f64, None).await;
        let over = bank.insert("heidi", 75.5, None).await;
        expected.insert(over.alert_id(), "75.50 EUR".to_owned());
    }
    let notifications = app
        .get::<mybank::notification_service::NotificationService>()
        .unwrap();
    // Received by the server, and recorded as sent by the mailer (which counts after the
    // server's answer, so a moment later).
    eventually(
        Duration::from_secs(60),
        "10 e-mails, recorded as sent",
        || async {
            (smtp.messages().unwrap().len() >= expected.len()
                && notifications.stats.emails.get() >= expected.len() as u64)
                .then_some(())
        },
    )
    .await;
    let processed = notifications.consumer.processed();
    // The counters are per consumer group, so they carry over to the restarted service.
    let emails_before = notifications.stats.emails.get();
    let duplicates_before = notifications.stats.duplicates.get();
    assert_eq!(emails_before, expected.len() as u64);
    app.stop().await.unwrap();
    drop(notifications);

    let received = by_alert(&smtp);
    assert_eq!(
        received.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (alert, messages) in &received {
        assert_eq!(messages.len(), 1, "{alert}: {} messages", messages.len());
        let amount = &expected[alert];
        assert!(
            messages[0].body.contains(amount.as_str()),
            "{alert}: body should name {amount}: {}",
            messages[0].body
        );
        assert!(
            messages[0]
                .header("Message-ID")
                .unwrap()
                .contains(alert.as_str())
        );
    }

    // Redelivery: the group's committed offsets go back to the beginning (as if the service had
    // died before committing), and the notification service starts again.
    let group = format!(
        "{}{}",
        bank.kafka.kafka().prefix(),
        mybank::notification_service::GROUP_ID
    );
    let consumer: BaseConsumer = bank
        .kafka
        .kafka()
        .group_consumer_config(&group, &[])
        .create()
        .unwrap();
    let topic = bank.topic(&mybank::topics::USER_ALERTS);
    // A commit must come from a member of the group: join it, then rewind every partition.
    consumer.subscribe(&[&topic]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while consumer.assignment().unwrap().count() < mybank::topics::USER_ALERTS.partitions as usize {
        assert!(std::time::Instant::now() < deadline, "no assignment");
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..mybank::topics::USER_ALERTS.partitions {
        tpl.add_partition_offset(&topic, p, Offset::Offset(0))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    consumer.unsubscribe();
    drop(consumer);

    let app = bank
        .spawn(&["notification-service"], Some(smtp.url()))
        .await;
    let notifications = app
        .get::<mybank::notification_service::NotificationService>()
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "every alert delivered again",
        || async {
            (notifications.stats.duplicates.get() >= duplicates_before + expected.len() as u64)
                .then_some(())
        },
    )
    .await;
    // Give a second e-mail, if there were to be one, time to arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(processed >= expected.len() as u64);
    assert_eq!(
        notifications.stats.emails.get(),
        emails_before,
        "no e-mail the second time"
    );
    let received = by_alert(&smtp);
    assert!(
        received.values().all(|m| m.len() == 1),
        "still one message per alert"
    );
    assert_eq!(received.len(), expected.len());
    app.stop().await.unwrap();
    smtp.stop().await;
}

/// A 100,000-character merchant (a subject line no SMTP server takes, unless bounded) and a
/// message the server refuses for good (`554`), followed by an ordinary alert of the same user
/// (so the same partition): the ordinary alert is notified in-app and e-mailed; the refused one
/// is marked failed with the server's reason, counted and dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_email_does_not_hold_up_the_alerts_after_it() {
    let smtp = SmtpServer::start_rejecting(&["Blocked Merchant"])
        .await
        .expect(
            "a real SMTP server for this test: apt-get install python3-aiosmtpd (.ci/run does)",
        );
    let bank = Bank::sqlite().await;
    let app = bank.spawn(&[], Some(smtp.url())).await;
    set_threshold(&app, "u002", "500").await;
    let huge = "X".repeat(100_000);
    let huge = bank
        .insert_at_merchant("u002", 900.0, None, &huge)
        .await
        .alert_id();
    let blocked = bank
        .insert_at_merchant("u002", 700.0, None, "Blocked Merchant")
        .await
        .alert_id();
    let ordinary = bank.insert("u002", 600.0, None).await.alert_id();

    let mailed = eventually(
        Duration::from_secs(60),
        "the huge-merchant and the ordinary alert e-mailed",
        || async {
            let received = by_alert(&smtp);
            (received.contains_key(&huge) && received.contains_key(&ordinary)).then_some(received)
        },
    )
    .await;
    let notifications = eventually(
        Duration::from_secs(60),
        "three notifications, e-mail sent, failed, sent",
        || async {
            let all = notifications_by_alert(&app, "u002").await;
            let state = |id: &str| {
                all.get(id)
                    .and_then(|n| n["email"].as_str().map(str::to_owned))
            };
            (state(&huge).as_deref() == Some("sent")
                && state(&blocked).as_deref() == Some("failed")
                && state(&ordinary).as_deref() == Some("sent"))
            .then_some(all)
        },
    )
    .await;
    assert_eq!(notifications.len(), 3);
    let error = notifications[&blocked]["email_error"].as_str().unwrap();
    assert!(
        error.contains("554"),
        "the server's reply as the reason: {error}"
    );
    assert!(!mailed.contains_key(&blocked));
    for (alert, messages) in &mailed {
        assert_eq!(messages.len(), 1, "{alert}: {} messages", messages.len());
    }
    let message = &mailed[&huge][0];
    let subject = message.header("Subject").unwrap();
    assert!(
        subject.len() < 100,
        "a bounded subject: {} characters",
        subject.len()
    );
    assert!(
        message.body.lines().all(|line| line.len() <= 998),
        "no body line over SMTP's 998 characters"
    );

    // The refused alert, once, on the dead-letter topic with the reason.
    let dlq = shared::topics::dlq_name(&bank.topic(&mybank::topics::USER_ALERTS));
    let letters = eventually(Duration::from_secs(30), "the dead letter", || async {
        let letters: Vec<shared::dlq::DeadLetter> = bank
            .kafka
            .read_all(&dlq, Duration::from_secs(2))
            .await
            .ok()?
            .iter()
            .filter_map(shared::dlq::DeadLetter::from_message)
            .collect();
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let alert: mybank::events::Alert =
        serde_json::from_slice(letters[0].payload.as_deref().unwrap()).unwrap();
    assert_eq!(alert.alert_id, blocked);
    assert!(letters[0].error.contains("554"), "{}", letters[0].error);

    assert_eq!(
        counter(&app, &bank, "mybank_notification_email_failures_total").await,
        1.0
    );
    assert_eq!(
        counter(&app, &bank, "mybank_notification_duplicates_total").await,
        0.0
    );
    let (status, body) = send(client().get(format!("{}/readyz", app.url()))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a refused message is not the service's problem: {body}"
    );
    app.stop().await.unwrap();
    smtp.stop().await;
}

/// No SMTP server at the configured address (connection refused, a transient failure): alerts
/// are still notified in-app, the e-mail stays pending and is retried, and `/readyz` and the
/// retry counter say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_mail_server_shows_in_readiness_while_alerts_go_on() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bank = Bank::sqlite().await;
    let app = bank
        .spawn(&[], Some(format!("smtp://127.0.0.1:{port}")))
        .await;
    set_threshold(&app, "u003", "500").await;
    let first = bank.insert("u003", 800.0, None).await.alert_id();
    let second = bank.insert("u003", 900.0, None).await.alert_id();
    let all = eventually(Duration::from_secs(60), "both alerts in-app", || async {
        let all = notifications_by_alert(&app, "u003").await;
        (all.contains_key(&first) && all.contains_key(&second)).then_some(all)
    })
    .await;
    assert!(all.values().all(|n| n["email"] == "pending"), "{all:?}");
    let body = eventually(Duration::from_secs(30), "/readyz answers 503", || async {
        let (status, body) = send(client().get(format!("{}/readyz", app.url()))).await;
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some(body)
    })
    .await;
    assert!(body["error"].as_str().unwrap().contains("e-mail"), "{body}");
    assert!(counter(&app, &bank, "mybank_notification_email_retries_total").await >= 1.0);
    assert_eq!(
        counter(&app, &bank, "mybank_notification_email_failures_total").await,
        0.0
    );
    app.stop().await.unwrap();
}
