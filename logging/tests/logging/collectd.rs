//! collectd with `write_kafka` (the real `collectd`, configured by `logging/config/collectd.conf`):
//! this host's values arrive on `application_metrics` as collectd's JSON under
//! `collectd/<hostname>`, and the metrics aggregation rolls them up per series per minute.

use std::time::Duration;

use logging::collectors::collectd::Collectd;
use logging::events::decode_samples;
use logging::topics::APPLICATION_METRICS;
use rdkafka::Message;
use shared::testkit::TestKafka;

use crate::{WAIT, eventually, key, metric_rollups, spawn_only};

const HOST: &str = "collectd-test-host";

#[tokio::test(flavor = "multi_thread")]
async fn collectd_write_kafka_values_arrive_and_are_rolled_up() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_only(&kafka, dir.path(), &["metrics-aggregation"]).await;
    let collectd = Collectd::start(kafka.kafka(), &dir.path().join("collectd"), HOST)
        .await
        .unwrap();
    assert_eq!(collectd.key(), "collectd/collectd-test-host");

    // collectd's JSON, as it wrote it, decodes to samples of this host's load and memory.
    let topic = kafka.kafka().topic(&APPLICATION_METRICS);
    let names = eventually(WAIT, "collectd's load, memory and cpu values", || async {
        let records = kafka
            .read_all(&topic, Duration::from_millis(500))
            .await
            .ok()?;
        let mut names = std::collections::BTreeSet::new();
        for record in &records {
            assert_eq!(key(record).as_deref(), Some(collectd.key()));
            let samples = decode_samples(record.payload().unwrap()).unwrap_or_else(|reason| {
                panic!(
                    "{reason}: {:?}",
                    String::from_utf8_lossy(record.payload().unwrap())
                )
            });
            for sample in samples {
                assert_eq!(sample.labels["host"], HOST);
                names.insert(sample.name);
            }
        }
        // The cpu plugin reports from its second read on (it needs two to compute).
        [
            "collectd_load_load_shortterm",
            "collectd_memory_memory",
            "collectd_cpu_cpu",
        ]
        .iter()
        .all(|name| names.contains(*name))
        .then_some(names)
    })
    .await;
    assert!(
        names.iter().any(|n| n.starts_with("collectd_interface_")),
        "{names:?}"
    );

    // The metrics aggregation made rollups of collectd's series, under its key.
    let (load, memory) = eventually(WAIT, "rollups of collectd's load and memory", || async {
        let all = metric_rollups(&kafka).await?;
        let of = |name: &str, type_instance: Option<&str>| {
            all.iter()
                .rfind(|r| {
                    r.name == name
                        && r.labels.get("type_instance").map(String::as_str) == type_instance
                })
                .cloned()
        };
        Some((
            of("collectd_load_load_shortterm", None)?,
            of("collectd_memory_memory", Some("used"))?,
        ))
    })
    .await;
    for rollup in [&load, &memory] {
        assert_eq!(
            rollup.labels["source"], "collectd/collectd-test-host",
            "{rollup:?}"
        );
        assert_eq!(rollup.labels["host"], HOST);
        assert!(rollup.count >= 1 && rollup.min <= rollup.mean && rollup.mean <= rollup.max);
        assert!(rollup.min >= 0.0, "{rollup:?}");
    }
    assert_eq!(load.labels["dstype"], "gauge");
    // This machine uses some memory.
    assert!(memory.max > 0.0, "{memory:?}");
    collectd.stop().await.unwrap();
    app.stop().await.unwrap();
}
