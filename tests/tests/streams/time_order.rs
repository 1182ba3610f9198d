//! A task with two inputs processes their records in timestamp order, not in the order the
//! consumer fetched them, and waits for an empty input as `StreamsConfig::task_idle` says.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::streams::{self, Processor, ProcessorContext, StreamsConfig, TaskIdle};
use shared::testkit::TestKafka;
use shared::{Cleanup, EventProducer, HandlerError, Retention, TopicSpec};
use tokio_util::sync::CancellationToken;

const fn topic(name: &'static str) -> TopicSpec {
    TopicSpec {
        case_study: "test",
        name,
        key: "id",
        partitions: 2,
        retention: Retention::days(1),
        cleanup: Cleanup::Delete,
        purpose: "time order test",
        producers: &["test"],
        consumers: &["recorder"],
    }
}
const LEFT: TopicSpec = topic("left");
const RIGHT: TopicSpec = topic("right");

type Seen = Arc<Mutex<Vec<(i32, String, i64)>>>;

/// Records (partition, topic, timestamp) of every record, in the order it processes them.
struct Recorder {
    seen: Seen,
}

impl Processor for Recorder {
    type Input = serde_json::Value;

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        _key: Option<&str>,
        _value: serde_json::Value,
    ) -> Result<(), HandlerError> {
        let entry = (
            ctx.partition(),
            ctx.topic().to_owned(),
            ctx.timestamp_ms().unwrap_or(-1),
        );
        self.seen.lock().unwrap().push(entry);
        Ok(())
    }
}

/// Publishes `{}` under key `key` with timestamp `ts` to `topic`.
async fn send_at(producer: &EventProducer, topic: &str, key: &str, ts: i64) {
    producer
        .send(
            topic,
            Some(key.as_bytes()),
            Some(b"{}"),
            rdkafka::message::OwnedHeaders::new(),
            Some(ts),
        )
        .await
        .unwrap();
}

async fn start(
    kafka: &TestKafka,
    idle: TaskIdle,
    dir: &std::path::Path,
) -> (Seen, streams::StreamsHandle, CancellationToken) {
    let k = kafka.kafka();
    let mut config = StreamsConfig::new(
        k,
        "recorder",
        vec![k.topic(&LEFT), k.topic(&RIGHT)],
        &["seen"],
    );
    config.state_dir = dir.to_path_buf();
    config.batch_size = 50;
    config.task_idle = idle;
    let seen = Seen::default();
    let stop = CancellationToken::new();
    let app = streams::start(
        k,
        config,
        Recorder {
            seen: Arc::clone(&seen),
        },
        stop.clone(),
    )
    .await
    .unwrap();
    (seen, app, stop)
}

fn timestamps(seen: &Seen, partition: i32) -> Vec<i64> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(p, _, _)| *p == partition)
        .map(|(_, _, ts)| *ts)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn records_of_two_inputs_are_processed_in_timestamp_order_not_in_the_order_written() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[LEFT, RIGHT]).await.unwrap();
    let k = kafka.kafka();
    let producer = EventProducer::new(k).unwrap();
    // Everything of `right` is written first, then everything of `left`; in time they
    // alternate: left has the odd timestamps, right the even ones. Key "a" on one partition.
    let base = chrono::Utc::now().timestamp_millis() - 60_000;
    for i in 0..300 {
        send_at(&producer, &k.topic(&RIGHT), "a", base + 2 * i + 2).await;
    }
    for i in 0..300 {
        send_at(&producer, &k.topic(&LEFT), "a", base + 2 * i + 1).await;
    }
    let partition = shared::producer::partition_for_key(b"a", 2);

    let dir = tempfile::tempdir().unwrap();
    let (seen, app, stop) = start(&kafka, TaskIdle::default(), dir.path()).await;
    crate::eventually(Duration::from_secs(60), "every record processed", || {
        let n = app.stats.processed.get();
        async move { n >= 600 }
    })
    .await;
    let order = timestamps(&seen, partition);
    let expected: Vec<i64> = (1..=600).map(|i| base + i).collect();
    assert_eq!(order.len(), 600);
    let first_wrong = order.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(
        first_wrong,
        None,
        "not in time order from position {first_wrong:?}: {:?}",
        first_wrong.map(|i| &order[i.saturating_sub(2)..(i + 3).min(order.len())])
    );
    // Only the last record (right's, after left ran dry and was read to its end) was
    // processed while the other input had nothing buffered.
    assert!(
        app.stats.enforced.get() <= 1,
        "{} records processed without the other input",
        app.stats.enforced.get()
    );
    stop.cancel();
    app.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_input_is_waited_for_as_long_as_task_idle_says() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[LEFT, RIGHT]).await.unwrap();
    let k = kafka.kafka();
    let producer = EventProducer::new(k).unwrap();
    let partition = shared::producer::partition_for_key(b"a", 2);
    let dir = tempfile::tempdir().unwrap();
    let (seen, app, stop) = start(&kafka, TaskIdle::Wait(Duration::from_secs(2)), dir.path()).await;
    // The task is open and has read `left`: one record there (it waits 2 s for `right`).
    let base = chrono::Utc::now().timestamp_millis();
    send_at(&producer, &k.topic(&LEFT), "a", base).await;
    crate::eventually(Duration::from_secs(60), "warm-up processed", || {
        let n = app.stats.processed.get();
        async move { n >= 1 }
    })
    .await;

    // `right` gets a record; `left`'s earlier one comes 300 ms later, within the idle wait.
    send_at(&producer, &k.topic(&RIGHT), "a", base + 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    send_at(&producer, &k.topic(&LEFT), "a", base + 10).await;
    crate::eventually(Duration::from_secs(60), "both processed", || {
        let n = app.stats.processed.get();
        async move { n >= 3 }
    })
    .await;
    assert_eq!(
        timestamps(&seen, partition)
            .into_iter()
            .filter(|t| *t > base)
            .collect::<Vec<_>>(),
        [base + 10, base + 20]
    );
    assert!(app.stats.idle_micros.get() > 0, "the wait is counted");
    stop.cancel();
    app.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_idle_wait_a_quiet_input_does_not_hold_the_other_back() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[LEFT, RIGHT]).await.unwrap();
    let k = kafka.kafka();
    let producer = EventProducer::new(k).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (seen, app, stop) = start(&kafka, TaskIdle::default(), dir.path()).await;
    // Only `right` ever gets records: each is processed, marked as processed without the other.
    let base = chrono::Utc::now().timestamp_millis();
    for i in 0..5 {
        send_at(&producer, &k.topic(&RIGHT), "a", base + i).await;
    }
    crate::eventually(Duration::from_secs(60), "right's records processed", || {
        let n = app.stats.processed.get();
        async move { n >= 5 }
    })
    .await;
    assert_eq!(seen.lock().unwrap().len(), 5);
    assert_eq!(app.stats.enforced.get(), 5);
    stop.cancel();
    app.join().await.unwrap();
}
