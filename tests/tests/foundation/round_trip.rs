use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::Headers;
use shared::testkit::TestKafka;
use shared::{ConsumerLoop, ConsumerOptions, EventProducer, HandlerError, Record};
use tests::{PINGS, Ping};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread")]
async fn typed_events_round_trip_and_a_key_always_lands_on_one_partition() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[PINGS]).await.unwrap();
    let topic = kafka.kafka().topic(&PINGS);
    let producer = EventProducer::new(kafka.kafka()).unwrap();

    let mut sent = Vec::new();
    let mut partition_of_key: HashMap<String, i32> = HashMap::new();
    for seq in 0..60 {
        let ping = Ping::new(seq, format!("user-{}", seq % 7));
        let delivery = producer.publish(&topic, &ping.key, &ping).await.unwrap();
        let first = *partition_of_key
            .entry(ping.key.clone())
            .or_insert(delivery.partition);
        assert_eq!(
            first, delivery.partition,
            "key {} moved partition",
            ping.key
        );
        assert!(delivery.offset >= 0);
        sent.push(ping);
    }
    assert!(
        partition_of_key
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1,
        "keys spread"
    );

    // Raw view: headers and timestamp are what `publish` promises.
    let raw = kafka
        .wait_for_records(&topic, 60, Duration::from_secs(30))
        .await
        .unwrap();
    let first = raw.iter().find(|m| m.offset() == 0).unwrap();
    let headers = first.headers().unwrap();
    let names: Vec<&str> = headers.iter().map(|h| h.key).collect();
    assert!(
        names.contains(&"event_id")
            && names.contains(&"event_type")
            && names.contains(&"produced_at"),
        "{names:?}"
    );

    // Typed view through the shared consumer loop.
    let received: Arc<Mutex<Vec<Record<Ping>>>> = Arc::default();
    let sink = Arc::clone(&received);
    let consumer = ConsumerLoop::new(
        kafka.kafka(),
        ConsumerOptions::new(kafka.group_id("rt"), [&topic]),
    )
    .unwrap();
    let stats = consumer.stats();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer.run(
        move |record: Record<Ping>| {
            sink.lock().unwrap().push(record);
            async { Ok::<_, HandlerError>(()) }
        },
        shutdown.clone(),
    ));
    crate::eventually(Duration::from_secs(30), "60 records consumed", || {
        let n = stats.processed();
        async move { n >= 60 }
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();

    let received = received.lock().unwrap();
    assert_eq!(received.len(), 60);
    for record in received.iter() {
        let original = &sent[record.value.seq as usize];
        assert_eq!(&record.value, original);
        assert_eq!(record.key.as_deref(), Some(original.key.as_str()));
        assert_eq!(record.partition, partition_of_key[&original.key]);
        assert_eq!(
            record.timestamp_ms,
            Some(original.at.timestamp_millis()),
            "record time is event time"
        );
        assert_eq!(record.header("event_type"), Some("Ping"));
        assert_eq!(record.header("event_id"), Some(original.id.as_str()));
    }
}
