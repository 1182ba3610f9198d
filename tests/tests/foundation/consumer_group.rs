use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::testkit::{Backend, TestKafka};
use shared::{ConsumerLoop, ConsumerOptions, EventProducer, HandlerError, Record};
use tests::{PINGS, Ping};
use tokio_util::sync::CancellationToken;

type Seen = Arc<Mutex<HashMap<&'static str, HashSet<i32>>>>;

fn member(
    kafka: &TestKafka,
    name: &'static str,
    seen: &Seen,
) -> (
    Arc<shared::ConsumerStats>,
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let options = ConsumerOptions::new(kafka.group_id("split"), [kafka.kafka().topic(&PINGS)])
        .property("session.timeout.ms", "6000")
        .property("heartbeat.interval.ms", "500");
    let consumer = ConsumerLoop::new(kafka.kafka(), options).unwrap();
    let stats = consumer.stats();
    let shutdown = CancellationToken::new();
    let seen = Arc::clone(seen);
    let task = tokio::spawn(consumer.run(
        move |record: Record<Ping>| {
            seen.lock()
                .unwrap()
                .entry(name)
                .or_default()
                .insert(record.partition);
            async { Ok::<_, HandlerError>(()) }
        },
        shutdown.clone(),
    ));
    (stats, shutdown, task)
}

async fn produce(kafka: &TestKafka, from: u64, count: u64) {
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let topic = kafka.kafka().topic(&PINGS);
    for seq in from..from + count {
        let ping = Ping::new(seq, format!("key-{seq}"));
        producer.publish(&topic, &ping.key, &ping).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_members_split_the_partitions_and_one_takes_all_when_the_other_leaves() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[PINGS]).await.unwrap();
    let seen: Seen = Arc::default();
    let (a_stats, a_stop, a_task) = member(&kafka, "a", &seen);
    let (b_stats, b_stop, b_task) = member(&kafka, "b", &seen);

    crate::eventually(
        Duration::from_secs(60),
        "both members hold partitions",
        || {
            let (a, b) = (a_stats.assigned_partitions(), b_stats.assigned_partitions());
            async move { a > 0 && b > 0 && a + b == 6 }
        },
    )
    .await;
    produce(&kafka, 0, 120).await;
    crate::eventually(Duration::from_secs(30), "120 records processed", || {
        let n = a_stats.processed() + b_stats.processed();
        async move { n >= 120 }
    })
    .await;
    {
        let seen = seen.lock().unwrap();
        let (a, b) = (&seen["a"], &seen["b"]);
        assert!(
            a.is_disjoint(b),
            "a partition has one owner: a={a:?} b={b:?}"
        );
        assert_eq!(a.union(b).count(), 6, "every partition is owned");
    }

    // b leaves gracefully: a must get every partition, without waiting for a session timeout.
    b_stop.cancel();
    b_task.await.unwrap().unwrap();
    crate::eventually(Duration::from_secs(30), "a holds all 6 partitions", || {
        let a = a_stats.assigned_partitions();
        async move { a == 6 }
    })
    .await;
    seen.lock().unwrap().clear();
    let before = a_stats.processed();
    produce(&kafka, 1000, 60).await;
    crate::eventually(Duration::from_secs(30), "a processes the next 60", || {
        let n = a_stats.processed();
        async move { n >= before + 60 }
    })
    .await;
    assert_eq!(
        seen.lock().unwrap()["a"].len(),
        6,
        "a now reads every partition"
    );

    // Lag as `casestudies lag` shows it: a has committed everything it processed.
    let group = kafka.group_id("split");
    crate::eventually(Duration::from_secs(10), "lag reaches 0", || {
        let (kafka, group) = (kafka.kafka().clone(), group.clone());
        async move {
            let lag = shared::lag::group_lag(&kafka, &group, None).await.unwrap();
            lag.partitions.len() == 6 && lag.total_lag() == 0
        }
    })
    .await;
    // …and the group as the coordinator describes it: one member, `a`, in a stable group; a
    // broker that cannot describe groups (the mock cluster) is said to, not shown as "none".
    let lag = shared::lag::group_lag(kafka.kafka(), &group, None)
        .await
        .unwrap();
    let table = casestudies::lag_table(&lag);
    match kafka.backend() {
        Backend::Embedded => {
            assert!(
                table.contains("not reported (this broker does not answer"),
                "{table}"
            );
        }
        Backend::Apache | Backend::Testcontainers => {
            assert_eq!(lag.state.as_deref(), Some("Stable"), "{table}");
            assert_eq!(lag.members.len(), 1, "{table}");
            assert!(table.contains("state: Stable"), "{table}");
        }
        // Other brokers: described, or said not to be.
        _ => assert!(
            lag.state.is_some() || lag.not_described.is_some(),
            "{table}"
        ),
    }
    a_stop.cancel();
    a_task.await.unwrap().unwrap();
}
