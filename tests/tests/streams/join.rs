//! A stream–table join with a re-key: orders are keyed by order id, the users table by user id.
//! Orders are re-keyed by user id through a repartition topic, so each lands on the task that
//! holds its user, and are enriched with the user's city (a left join: unknown users give null).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::Message;
use serde::{Deserialize, Serialize};
use shared::streams::{self, Processor, ProcessorContext, StreamsConfig};
use shared::testkit::TestKafka;
use shared::{Cleanup, EventProducer, HandlerError, Retention, TopicSpec};
use tokio_util::sync::CancellationToken;

const fn topic(
    name: &'static str,
    key: &'static str,
    partitions: i32,
    cleanup: Cleanup,
) -> TopicSpec {
    TopicSpec {
        case_study: "test",
        name,
        key,
        partitions,
        retention: Retention::days(1),
        cleanup,
        purpose: "join test",
        producers: &["test"],
        consumers: &["enricher"],
    }
}
const USERS: TopicSpec = topic("users", "user_id", 4, Cleanup::Compact);
const ORDERS: TopicSpec = topic("orders", "order_id", 3, Cleanup::Delete);
const ENRICHED: TopicSpec = topic("enriched", "user_id", 4, Cleanup::Delete);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    city: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    order_id: String,
    user_id: String,
    amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Enriched {
    order_id: String,
    user_id: String,
    city: Option<String>,
}

struct Enricher {
    users: String,
    orders: String,
    by_user: String,
    output: String,
}

impl Processor for Enricher {
    type Input = serde_json::Value;

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: Option<&str>,
        value: serde_json::Value,
    ) -> Result<(), HandlerError> {
        let invalid = |e: serde_json::Error| HandlerError::Permanent(e.to_string());
        let topic = ctx.topic().to_owned();
        if topic == self.users {
            // The table side: remember the latest value per user.
            let key = key.ok_or_else(|| HandlerError::Permanent("user without key".into()))?;
            let user: User = serde_json::from_value(value).map_err(invalid)?;
            ctx.put("users", key.as_bytes(), &user)
                .map_err(HandlerError::Transient)
        } else if topic == self.orders {
            // Re-key by the join key: the repartition topic brings it to the user's task.
            let order: Order = serde_json::from_value(value).map_err(invalid)?;
            ctx.emit(&self.by_user, &order.user_id.clone(), &order)
                .map_err(HandlerError::Transient)
        } else {
            let order: Order = serde_json::from_value(value).map_err(invalid)?;
            let user: Option<User> = ctx
                .get("users", order.user_id.as_bytes())
                .map_err(HandlerError::Transient)?;
            let enriched = Enriched {
                order_id: order.order_id,
                user_id: order.user_id.clone(),
                city: user.map(|u| u.city),
            };
            ctx.emit(&self.output, &order.user_id, &enriched)
                .map_err(HandlerError::Transient)
        }
    }
}

async fn send<T: Serialize>(producer: &EventProducer, topic: &str, key: &str, body: T) {
    // Plain JSON values: the join reads each topic's records as its own type.
    let payload = serde_json::to_vec(&body).unwrap();
    producer
        .send(
            topic,
            Some(key.as_bytes()),
            Some(&payload),
            rdkafka::message::OwnedHeaders::new(),
            None,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_are_rekeyed_through_a_repartition_topic_and_joined_with_the_users_table() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[USERS, ORDERS, ENRICHED]).await.unwrap();
    let k = kafka.kafka();
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamsConfig::new(
        k,
        "enricher",
        vec![k.topic(&USERS), k.topic(&ORDERS)],
        &["users"],
    );
    config.state_dir = dir.path().to_path_buf();
    let by_user = config.repartition("orders-by-user");
    let processor = Enricher {
        users: k.topic(&USERS),
        orders: k.topic(&ORDERS),
        by_user: by_user.clone(),
        output: k.topic(&ENRICHED),
    };
    let stop = CancellationToken::new();
    let app = streams::start(k, config, processor, stop.clone())
        .await
        .unwrap();

    let producer = EventProducer::new(k).unwrap();
    for u in 0..10 {
        send(
            &producer,
            &k.topic(&USERS),
            &format!("user-{u}"),
            User {
                city: format!("city-{u}"),
            },
        )
        .await;
    }
    crate::eventually(Duration::from_secs(60), "the users table is loaded", || {
        let n = app.stats.processed.get();
        async move { n >= 10 }
    })
    .await;
    // user-10 and user-11 are unknown: a left join gives them no city.
    for o in 0..60 {
        let order = Order {
            order_id: format!("order-{o}"),
            user_id: format!("user-{}", o % 12),
            amount: o,
        };
        send(&producer, &k.topic(&ORDERS), &order.order_id.clone(), order).await;
    }

    // 10 users + 60 orders + 60 re-keyed orders.
    crate::eventually(Duration::from_secs(60), "every order joined", || {
        let n = app.stats.processed.get();
        async move { n >= 130 }
    })
    .await;
    let enriched = kafka
        .read_all(&k.topic(&ENRICHED), Duration::from_secs(3))
        .await
        .unwrap();
    let mut by_order: BTreeMap<String, Enriched> = BTreeMap::new();
    for m in &enriched {
        let e: Enriched = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let user = e.user_id.clone();
        assert_eq!(
            m.partition(),
            shared::producer::partition_for_key(user.as_bytes(), 4),
            "output keyed by user"
        );
        by_order.insert(e.order_id.clone(), e);
    }
    assert_eq!(by_order.len(), 60);
    for (order_id, e) in &by_order {
        let u: u64 = e.user_id.trim_start_matches("user-").parse().unwrap();
        let expected = (u < 10).then(|| format!("city-{u}"));
        assert_eq!(e.city, expected, "{order_id}");
    }
    // The re-keyed records went through the repartition topic, keyed by user.
    let rekeyed = kafka
        .read_all(&by_user, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(rekeyed.len(), 60);
    for m in &rekeyed {
        let order: Order = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(m.key(), Some(order.user_id.as_bytes()));
        assert_eq!(
            m.partition(),
            shared::producer::partition_for_key(order.user_id.as_bytes(), 4)
        );
    }

    stop.cancel();
    app.join().await.unwrap();
}
