//! The metrics aggregation: per series per minute, count/sum/min/max/mean exact and p50/p99
//! within the sketch's 1 %; ours and collectd's JSON; series over the cardinality cap counted
//! in the overflow series, not stored; records that hold no samples dead-lettered with the
//! reason.

use std::collections::BTreeMap;
use std::time::Duration;

use logging::events::MetricRollup;
use logging::metrics_aggregation::{DEFAULT_SERIES_CAP, RELATIVE_ACCURACY};
use logging::topics::{APPLICATION_METRICS, METRIC_ROLLUPS};
use rdkafka::Message;
use rdkafka::message::OwnedHeaders;
use serde_json::json;
use shared::EventProducer;
use shared::testkit::TestKafka;

use crate::{WAIT, eventually, key, spawn};

const KEY: &str = "api/web-1";

async fn send(producer: &EventProducer, topic: &str, key: Option<&str>, payload: &[u8]) {
    producer
        .send(
            topic,
            key.map(str::as_bytes),
            Some(payload),
            OwnedHeaders::new(),
            None,
        )
        .await
        .unwrap();
}

/// The last rollup of every key on `metric_rollups`.
async fn last_rollups(kafka: &TestKafka) -> BTreeMap<String, MetricRollup> {
    let topic = kafka.kafka().topic(&METRIC_ROLLUPS);
    let mut last = BTreeMap::new();
    for m in kafka
        .read_all(&topic, Duration::from_secs(2))
        .await
        .unwrap()
    {
        let rollup: MetricRollup = serde_json::from_slice(m.payload().unwrap()).unwrap();
        last.insert(key(&m).unwrap(), rollup);
    }
    last
}

#[tokio::test(flavor = "multi_thread")]
async fn metric_rollups_exact_and_within_the_sketch_error_with_the_cardinality_cap() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, dir.path()).await;
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let topic = kafka.kafka().topic(&APPLICATION_METRICS);
    let minute = "2026-03-01T12:00";

    // 1,000 latencies of one series over 12:00, in records of 100 samples (ours).
    let values: Vec<f64> = (1..=1000).map(|i| (i as f64).powf(1.5) / 7.0).collect();
    for chunk in values.chunks(100).enumerate() {
        let (c, chunk) = chunk;
        let samples: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                json!({"name": "http_seconds", "labels": {"route": "/pay"}, "value": v,
                       "time": format!("{minute}:{:02}.{:03}Z", c * 5, i)})
            })
            .collect();
        send(
            &producer,
            &topic,
            Some(KEY),
            &serde_json::to_vec(&samples).unwrap(),
        )
        .await;
        if c == 4 {
            // Not samples, between the others: dead-lettered, and the rest goes on.
            send(&producer, &topic, Some(KEY), b"garbage").await;
            send(&producer, &topic, Some(KEY), b"[]").await;
        }
    }
    // collectd write_kafka's JSON: two values, one of them not known (null).
    let collectd = json!([{"values": [42.5, null], "dstypes": ["gauge", "gauge"],
        "dsnames": ["rx", "tx"], "time": 1_772_366_410.0, "interval": 10, "host": "web-1",
        "plugin": "interface", "plugin_instance": "eth0", "type": "if_octets", "type_instance": ""}]);
    send(
        &producer,
        &topic,
        Some(KEY),
        &serde_json::to_vec(&collectd).unwrap(),
    )
    .await;
    // The cap plus 3 series of one name in 12:00: the first 1,000 kept, 3 over the cap.
    let over = 3;
    let series: Vec<_> = (0..DEFAULT_SERIES_CAP + over)
        .map(|i| {
            json!({"name": "requests", "labels": {"user": format!("u{i:04}")},
                   "value": i as f64, "time": format!("{minute}:30Z")})
        })
        .collect();
    send(
        &producer,
        &topic,
        Some(KEY),
        &serde_json::to_vec(&series).unwrap(),
    )
    .await;
    // And 2 more samples of an over-cap series.
    let again = json!([{"name": "requests", "labels": {"user": "u1001"}, "value": 5000.0,
        "time": format!("{minute}:40Z")}, {"name": "requests", "labels": {"user": "u1002"},
        "value": 7000.0, "time": format!("{minute}:41Z")}]);
    send(
        &producer,
        &topic,
        Some(KEY),
        &serde_json::to_vec(&again).unwrap(),
    )
    .await;
    // A sample without a key: dead-lettered.
    let keyless = json!({"name": "x", "value": 1, "time": format!("{minute}:00Z")});
    send(
        &producer,
        &topic,
        None,
        &serde_json::to_vec(&keyless).unwrap(),
    )
    .await;
    // 12:03:00 closes 12:00 (grace 2 min).
    let closing = json!({"name": "tick", "value": 1, "time": "2026-03-01T12:03:00Z"});
    send(
        &producer,
        &topic,
        Some(KEY),
        &serde_json::to_vec(&closing).unwrap(),
    )
    .await;

    let latency_key = format!(r#"http_seconds{{route="/pay",source="{KEY}"}}|{minute}Z"#);
    let last = eventually(WAIT, "12:00 final", || async {
        let last = last_rollups(&kafka).await;
        let done = last.get(&latency_key).is_some_and(|r| r.is_final)
            && last
                .values()
                .filter(|r| r.name == "requests" && r.is_final)
                .count()
                == DEFAULT_SERIES_CAP as usize + 1;
        done.then_some(last)
    })
    .await;

    let latency = &last[&latency_key];
    let sum: f64 = values.iter().sum();
    assert_eq!(latency.count, 1000);
    assert_eq!((latency.min, latency.max), (values[0], values[999]));
    assert!((latency.sum - sum).abs() < 1e-6 * sum, "{latency:?}");
    assert!(
        (latency.mean - sum / 1000.0).abs() < 1e-9 * sum,
        "{latency:?}"
    );
    // The values are increasing: the sample of rank ⌊q·999⌋ is values[that].
    for (q, got) in [(0.5, latency.p50), (0.99, latency.p99)] {
        let truth = values[(q * 999.0_f64).floor() as usize];
        assert!(
            (got - truth).abs() <= RELATIVE_ACCURACY * truth,
            "p{q}: {got} against {truth}"
        );
    }

    let rx = last
        .values()
        .find(|r| r.name == "collectd_interface_if_octets_rx")
        .expect("collectd's rx");
    assert_eq!((rx.count, rx.min, rx.is_final), (1, 42.5, true));
    assert_eq!(rx.labels["plugin_instance"], "eth0");
    assert_eq!(rx.labels["source"], KEY);
    assert!(
        !last.values().any(|r| r.name.ends_with("_tx")),
        "null skipped"
    );

    let requests: Vec<&MetricRollup> = last.values().filter(|r| r.name == "requests").collect();
    let (overflow, kept): (Vec<&MetricRollup>, Vec<&MetricRollup>) =
        requests.into_iter().partition(|r| r.overflow);
    assert_eq!(kept.len(), DEFAULT_SERIES_CAP as usize);
    assert!(
        kept.iter()
            .all(|r| r.count == 1 && r.labels["user"].as_str() < "u1000")
    );
    assert_eq!(overflow.len(), 1, "{overflow:?}");
    let overflow = overflow[0];
    assert_eq!(overflow.labels["overflow"], "true");
    assert!(!overflow.labels.contains_key("user"));
    assert_eq!(
        (overflow.count, overflow.min, overflow.max, overflow.sum),
        (
            over + 2,
            1000.0,
            7000.0,
            1000.0 + 1001.0 + 1002.0 + 5000.0 + 7000.0
        )
    );

    let application = format!(
        "{}{}",
        kafka.kafka().prefix(),
        logging::metrics_aggregation::APPLICATION_ID
    );
    let letters = crate::letters_of(&kafka, &topic, &application, 3).await;
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.error.as_str()).collect();
    reasons.sort_unstable();
    assert!(
        reasons[0].contains("needs its application/host key"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("holds no samples"), "{reasons:?}");
    assert!(reasons[2].contains("is not JSON"), "{reasons:?}");
    for letter in &letters {
        assert_eq!(letter.application.as_deref(), Some(application.as_str()));
    }
    app.stop().await.unwrap();
}
