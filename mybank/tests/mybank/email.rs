//! E-mail through a real SMTP server (aiosmtpd, started by the test): exactly one message per
//! alert, with the amount in the body — also when every alert is delivered again.

use std::collections::BTreeMap;
use std::time::Duration;

use mybank::bench::smtp_server::SmtpServer;
use mybank::mailer::ALERT_HEADER;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::{Bank, eventually, set_threshold};

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
    eventually(Duration::from_secs(60), "10 e-mails", || async {
        (smtp.messages().unwrap().len() >= expected.len()).then_some(())
    })
    .await;
    let notifications = app
        .get::<mybank::notification_service::NotificationService>()
        .unwrap();
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
