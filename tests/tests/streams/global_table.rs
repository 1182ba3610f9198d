//! A global table: every partition of a small topic on every instance, looked up from any task.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::OwnedHeaders;
use serde::{Deserialize, Serialize};
use shared::streams::{self, Processor, ProcessorContext, StreamsConfig};
use shared::testkit::TestKafka;
use shared::{Cleanup, EventProducer, HandlerError, Retention, TopicSpec};
use tests::{Ping, WORDS};
use tokio_util::sync::CancellationToken;

const REGIONS: TopicSpec = TopicSpec {
    case_study: "test",
    name: "regions",
    key: "region id",
    partitions: 3,
    retention: Retention::Forever,
    cleanup: Cleanup::Compact,
    purpose: "reference data",
    producers: &["test"],
    consumers: &["labeller"],
};
const LABELLED: TopicSpec = TopicSpec {
    name: "labelled",
    consumers: &[],
    ..REGIONS
};

#[derive(Serialize, Deserialize)]
struct Region {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct Labelled {
    seq: u64,
    region: Option<String>,
}

struct Labeller {
    output: String,
}

impl Processor for Labeller {
    type Input = Ping;
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: Option<&str>,
        ping: Ping,
    ) -> Result<(), HandlerError> {
        let region_id = format!("region-{}", ping.seq % 5);
        let region: Option<Region> = ctx
            .global_get("regions", region_id.as_bytes())
            .map_err(HandlerError::Transient)?;
        let labelled = Labelled {
            seq: ping.seq,
            region: region.map(|r| r.name),
        };
        ctx.emit(&self.output, key.unwrap_or_default(), &labelled)
            .map_err(HandlerError::Transient)
    }
}

async fn set_region(producer: &EventProducer, topic: &str, id: u64, name: &str) {
    let payload = serde_json::to_vec(&Region { name: name.into() }).unwrap();
    let key = format!("region-{id}");
    producer
        .send(
            topic,
            Some(key.as_bytes()),
            Some(&payload),
            OwnedHeaders::new(),
            None,
        )
        .await
        .unwrap();
}

async fn labels(kafka: &TestKafka) -> Vec<(u64, Option<String>)> {
    let records = kafka
        .read_all(&kafka.kafka().topic(&LABELLED), Duration::from_secs(2))
        .await
        .unwrap();
    let mut out: Vec<(u64, Option<String>)> = records
        .iter()
        .map(|m| serde_json::from_slice::<Labelled>(m.payload().unwrap()).unwrap())
        .map(|l| (l.seq, l.region))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_task_sees_every_partition_of_a_global_table_and_its_updates() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[WORDS, REGIONS, LABELLED]).await.unwrap();
    let k = kafka.kafka();
    let producer = EventProducer::new(k).unwrap();
    for id in 0..4 {
        set_region(&producer, &k.topic(&REGIONS), id, &format!("Region {id}")).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamsConfig::new(k, "labeller", vec![k.topic(&WORDS)], &[]);
    config.state_dir = dir.path().to_path_buf();
    config.global_tables = vec![(k.topic(&REGIONS), "regions".into())];
    let stop = CancellationToken::new();
    let app = streams::start(
        k,
        config,
        Labeller {
            output: k.topic(&LABELLED),
        },
        stop.clone(),
    )
    .await
    .unwrap();

    crate::produce(&kafka, 0, 40, 7).await;
    crate::eventually(Duration::from_secs(60), "40 records labelled", || {
        let n = app.stats.processed.get();
        async move { n >= 40 }
    })
    .await;
    let first = labels(&kafka).await;
    assert_eq!(first.len(), 40);
    for (seq, region) in &first {
        let expected = (seq % 5 < 4).then(|| format!("Region {}", seq % 5));
        assert_eq!(
            region, &expected,
            "seq {seq}: all four tasks see all three table partitions"
        );
    }

    // Region 4 appears while the application runs: later records see it.
    set_region(&producer, &k.topic(&REGIONS), 4, "Region 4").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    crate::produce(&kafka, 100, 10, 7).await;
    crate::eventually(Duration::from_secs(60), "10 more labelled", || {
        let n = app.stats.processed.get();
        async move { n >= 50 }
    })
    .await;
    let later: Vec<_> = labels(&kafka)
        .await
        .into_iter()
        .filter(|(seq, _)| *seq >= 100)
        .collect();
    assert_eq!(later.len(), 10);
    for (seq, region) in later {
        assert_eq!(region, Some(format!("Region {}", seq % 5)), "seq {seq}");
    }
    stop.cancel();
    app.join().await.unwrap();
}
