use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use shared::testkit::TestKafka;

/// Partition count of every topic the cluster reports.
fn partition_counts(kafka: &shared::Kafka) -> HashMap<String, usize> {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().unwrap();
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    metadata
        .topics()
        .iter()
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn provisions_every_topic_of_every_case_study_idempotently() {
    let kafka = TestKafka::start().await.unwrap();
    let specs = casestudies::all_topics();

    let first = kafka.provision(&specs).await.unwrap();
    let consumed = specs.iter().filter(|s| !s.consumers.is_empty()).count();
    assert_eq!(
        first.created.len(),
        specs.len() + consumed,
        "every topic and every DLQ created"
    );
    assert!(first.existing.is_empty());

    let counts = partition_counts(kafka.kafka());
    for spec in &specs {
        let name = kafka.kafka().topic(spec);
        assert_eq!(
            counts.get(&name).copied(),
            Some(spec.partitions as usize),
            "{name}"
        );
        if let Some(dlq) = spec.dlq_name(kafka.kafka().prefix()) {
            assert_eq!(
                counts.get(&dlq).copied(),
                Some(shared::topics::DLQ_PARTITIONS as usize),
                "{dlq}"
            );
        }
    }

    // What the broker itself says about the topics: retention and cleanup as specified. (The
    // embedded mock cluster creates topics through its own API and keeps no topic configs.)
    if kafka.kafka().embedded_broker().is_none() {
        let admin: AdminClient<DefaultClientContext> =
            kafka.kafka().client_config().create().unwrap();
        let names: Vec<String> = specs.iter().map(|s| kafka.kafka().topic(s)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let described = shared::provision::describe_topic_configs(&admin, &names)
            .await
            .unwrap();
        for (spec, (name, configs)) in specs.iter().zip(&described) {
            assert_eq!(
                configs.get("cleanup.policy").map(String::as_str),
                Some(spec.cleanup.as_config()),
                "{name}"
            );
            assert_eq!(
                configs.get("retention.ms"),
                Some(&spec.retention.as_ms().to_string()),
                "{name}"
            );
        }
    }

    let second = kafka.provision(&specs).await.unwrap();
    assert!(
        second.created.is_empty(),
        "second run creates nothing: {:?}",
        second.created
    );
    assert_eq!(second.existing.len(), first.created.len());
    assert!(second.under_partitioned.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_an_existing_topic_with_fewer_partitions_than_its_spec() {
    let kafka = TestKafka::start().await.unwrap();
    let spec = tests::PINGS;
    let name = kafka.kafka().topic(&spec);
    // Someone created the topic by hand with 2 partitions instead of 6.
    match kafka.kafka().embedded_broker() {
        Some(broker) => broker.create_topic(&name, 2, 1).unwrap(),
        None => {
            let admin: AdminClient<DefaultClientContext> =
                kafka.kafka().client_config().create().unwrap();
            let results = admin
                .create_topics(
                    &[NewTopic::new(&name, 2, TopicReplication::Fixed(1))],
                    &AdminOptions::new(),
                )
                .await
                .unwrap();
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            crate::eventually(Duration::from_secs(60), "hand-made topic visible", || {
                let visible = partition_counts(kafka.kafka()).get(&name) == Some(&2);
                async move { visible }
            })
            .await;
        }
    }

    let report = kafka.provision(&[spec]).await.unwrap();
    assert_eq!(
        report.under_partitioned,
        vec![(kafka.kafka().topic(&spec), 2, 6)]
    );
    assert_eq!(
        partition_counts(kafka.kafka())[&kafka.kafka().topic(&spec)],
        2,
        "left unchanged"
    );
}
