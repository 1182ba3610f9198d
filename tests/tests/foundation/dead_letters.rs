use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::message::OwnedHeaders;
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
    let consumer = ConsumerLoop::new(
        kafka.kafka(),
        ConsumerOptions::new(kafka.group_id("dlq"), [&topic]),
    )
    .unwrap();
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
    assert!(
        decode.error.contains("payload is not a valid record"),
        "{}",
        decode.error
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
                && l.contains(&topic)
                && l.contains("decode")
        })
        .unwrap_or_else(|| panic!("no dead-letter counter for {topic} in:\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
}
