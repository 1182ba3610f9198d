use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::{Headers, OwnedHeaders};
use shared::testkit::TestKafka;
use shared::{ConsumerLoop, ConsumerOptions, EventProducer, HandlerError, Record};
use tests::{PINGS, Ping};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread")]
async fn undecodable_and_rejected_records_go_to_the_dlq_and_the_consumer_moves_on() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[PINGS]).await.unwrap();
    let topic = kafka.kafka().topic(&PINGS);
    let producer = EventProducer::new(kafka.kafka()).unwrap();

    // One key, so all four records share a partition and their order is fixed.
    let key = "same-key";
    let bad = producer
        .send(
            &topic,
            Some(key.as_bytes()),
            Some(b"{not json"),
            OwnedHeaders::new(),
            None,
        )
        .await
        .unwrap();
    let good = Ping::new(1, key);
    producer.publish(&topic, key, &good).await.unwrap();
    let poison = Ping::new(666, key); // the handler rejects seq 666 as permanently invalid
    let rejected = producer.publish(&topic, key, &poison).await.unwrap();
    let last = Ping::new(2, key);
    producer.publish(&topic, key, &last).await.unwrap();

    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let group = kafka.group_id("dlq");
    let consumer =
        ConsumerLoop::new(kafka.kafka(), ConsumerOptions::new(&group, [&topic])).unwrap();
    let stats = consumer.stats();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer.run(
        move |record: Record<Ping>| {
            let result = if record.value.seq == 666 {
                Err(HandlerError::Permanent("seq 666 is not allowed".into()))
            } else {
                sink.lock().unwrap().push(record.value.seq);
                Ok(())
            };
            async move { result }
        },
        shutdown.clone(),
    ));

    let dead = kafka
        .read_dlq(&topic, 2, Duration::from_secs(30))
        .await
        .unwrap();
    crate::eventually(
        Duration::from_secs(10),
        "both good records processed",
        || {
            let n = stats.processed();
            async move { n >= 2 }
        },
    )
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();

    assert_eq!(
        *seen.lock().unwrap(),
        vec![1, 2],
        "good records processed, in order, around the bad ones"
    );
    assert_eq!(stats.dead_lettered(), 2);

    let decode = dead
        .iter()
        .find(|d| d.kind == "decode")
        .expect("decode dead letter");
    // The reason names the type the topic carries and where serde found the bytes wrong.
    assert!(
        decode.error.contains("payload is not a valid Ping: ")
            && decode.error.contains("at line 1 column"),
        "{}",
        decode.error
    );
    assert!(
        dead.iter()
            .all(|d| d.application.as_deref() == Some(group.as_str())),
        "every letter names the rejecting group: {dead:#?}"
    );
    assert_eq!(decode.source_topic, topic);
    assert_eq!(
        (decode.source_partition, decode.source_offset),
        (bad.partition, bad.offset)
    );
    assert_eq!(
        decode.payload.as_deref(),
        Some(&b"{not json"[..]),
        "original bytes kept"
    );
    assert_eq!(decode.key.as_deref(), Some(key.as_bytes()));

    let reject = dead
        .iter()
        .find(|d| d.kind == "rejected")
        .expect("rejected dead letter");
    assert!(
        reject.error.contains("seq 666 is not allowed"),
        "{}",
        reject.error
    );
    assert_eq!(reject.source_offset, rejected.offset);

    let metrics = shared::metrics::encode();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("kafka_records_dead_lettered_total")
                && l.contains(&format!("topic=\"{topic}\""))
                && l.contains(&format!("application=\"{group}\""))
                && l.contains("kind=\"decode\"")
        })
        .unwrap_or_else(|| panic!("no dead-letter counter for {topic} in:\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
}

/// Runs a consumer loop in group `group` that rejects seq 666, until it dead-lettered `n`.
async fn rejecting_consumer(kafka: &TestKafka, topic: &str, group: &str, n: u64) {
    let consumer = ConsumerLoop::new(kafka.kafka(), ConsumerOptions::new(group, [topic])).unwrap();
    let stats = consumer.stats();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer.run(
        |record: Record<Ping>| async move {
            if record.value.seq == 666 {
                Err(HandlerError::Permanent("seq 666 is not allowed".into()))
            } else {
                Ok(())
            }
        },
        shutdown.clone(),
    ));
    crate::eventually(Duration::from_secs(30), "the records dead-lettered", || {
        let done = stats.dead_lettered() >= n;
        async move { done }
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// `casestudies dlq replay` re-produces a dead letter's original key, value and headers to the
/// source topic named in its headers, once per record even when two applications rejected it,
/// only the chosen application's with `--application`, and never twice (its group commits).
#[tokio::test(flavor = "multi_thread")]
async fn replay_reproduces_dead_letters_to_their_source_topic_once() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[PINGS]).await.unwrap();
    let topic = kafka.kafka().topic(&PINGS);
    let dlq_topic = shared::topics::dlq_name(&topic);
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let poison = Ping::new(666, "k");
    let original = producer.publish(&topic, "k", &poison).await.unwrap();

    // Two applications reject the same record: two letters.
    let (a, b) = (kafka.group_id("app-a"), kafka.group_id("app-b"));
    rejecting_consumer(&kafka, &topic, &a, 1).await;
    rejecting_consumer(&kafka, &topic, &b, 1).await;
    let letters = kafka
        .read_dlq(&topic, 2, Duration::from_secs(30))
        .await
        .unwrap();
    let mut by: Vec<_> = letters.iter().map(|l| l.application.clone()).collect();
    by.sort();
    assert_eq!(by, vec![Some(a.clone()), Some(b.clone())]);

    let args = |application: Option<&str>| casestudies::dlq::ReplayArgs {
        topic: dlq_topic.clone(),
        application: application.map(str::to_owned),
        limit: None,
    };
    // Only application a's letter.
    let report = casestudies::dlq::replay(kafka.kafka(), &args(Some(&a)))
        .await
        .unwrap();
    assert_eq!(report.total(), 1, "{report}");
    assert_eq!(report.replayed.get(&topic), Some(&1), "{report}");
    assert_eq!(report.other_applications, 1, "{report}");
    assert!(
        report.to_string().contains("replayed 1 dead letter(s)"),
        "{report}"
    );

    let records = kafka
        .wait_for_records(&topic, 2, Duration::from_secs(30))
        .await
        .unwrap();
    let replayed = records
        .iter()
        .find(|m| m.offset() != original.offset || m.partition() != original.partition)
        .expect("the replayed record");
    assert_eq!(replayed.key(), Some(&b"k"[..]));
    let value: Ping = serde_json::from_slice(replayed.payload().unwrap()).unwrap();
    assert_eq!(value, poison, "the original value");
    let header = |name: &str| {
        replayed
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("event_id").as_deref(), Some(poison.id.as_str()));
    assert!(
        header("replayed_from")
            .unwrap()
            .starts_with(&format!("{dlq_topic}/"))
    );
    assert_eq!(
        header("error"),
        None,
        "dead-letter headers are not replayed"
    );

    // Again for a: nothing new. Every application: one record for the two letters.
    let again = casestudies::dlq::replay(kafka.kafka(), &args(Some(&a)))
        .await
        .unwrap();
    assert_eq!(again.total(), 0, "{again}");
    let all = casestudies::dlq::replay(kafka.kafka(), &args(None))
        .await
        .unwrap();
    assert_eq!((all.total(), all.duplicates), (1, 1), "{all}");
    let all_again = casestudies::dlq::replay(kafka.kafka(), &args(None))
        .await
        .unwrap();
    assert_eq!(all_again.total(), 0, "{all_again}");
    let records = kafka
        .read_all(&topic, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        records.len(),
        3,
        "the original and two replays (a, then all)"
    );
}
