//! The documented multi-process setup: `casestudies broker` runs an embedded broker (a
//! librdkafka mock cluster) and services in other processes point `KAFKA_BOOTSTRAP_SERVERS` at
//! it. The mock cluster ignores `CreateTopics` from any client but its own process, so the
//! broker creates every topic — the streams applications' internal ones included — and a client
//! that finds a topic missing fails at once, naming it.
//!
//! These tests always use their own embedded broker, whatever `CASESTUDIES_TEST_KAFKA` says:
//! the behaviour under test is the mock cluster's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use movieflix::app::MovieFlix;
use mybank::app::MyBank;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use reqwest::StatusCode;
use serde_json::json;
use shared::embedded::EmbeddedBroker;
use shared::service::cli::{self, ServeArgs};
use shared::testkit::http::{client, get, post};
use shared::{Kafka, TopicSpec};

/// A standalone broker as `casestudies broker` starts one (the embedded broker, then
/// [`casestudies::provision_broker`]), and a handle on it as another process sees it: an
/// external cluster at the printed address.
async fn standalone_broker(prefix: &str) -> (Kafka, Kafka) {
    shared::telemetry::init_for_tests();
    let broker = Arc::new(EmbeddedBroker::start().unwrap());
    let owner = Kafka::embedded(Arc::clone(&broker), prefix);
    casestudies::provision_broker(&owner).await.unwrap();
    let other_process = Kafka::external(broker.bootstrap_servers(), prefix, Vec::new());
    (owner, other_process)
}

fn partition_counts(kafka: &Kafka) -> HashMap<String, i32> {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().unwrap();
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    metadata
        .topics()
        .iter()
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standalone_broker_creates_every_internal_topic_at_its_partition_count() {
    let prefix = format!("t{:08x}.", rand_suffix());
    let (owner, _) = standalone_broker(&prefix).await;
    let counts = partition_counts(&owner);
    let configs = casestudies::all_streams(&owner);
    let ids: Vec<&str> = configs.iter().map(|c| c.application_id.as_str()).collect();
    for app in [
        "movieflix-resuming",
        "movieflix-recommendation-engine",
        "movieflix-recommendations",
        "mybank-thresholds",
        "mybank-big-transactions",
        "logging-log-parser",
        "logging-log-aggregation",
    ] {
        assert!(
            ids.iter().any(|id| id.ends_with(app)),
            "{app} is among the streams applications {ids:?}"
        );
    }
    for config in &configs {
        let partitions = shared::streams::app::input_partitions(config, &counts).unwrap();
        let internal = shared::streams::internal_topics(config, partitions);
        // At least the instances topic; a stateless application (Logging's log parser) has
        // no changelog.
        assert!(
            !internal.is_empty(),
            "{}: {internal:?}",
            config.application_id
        );
        for topic in internal {
            assert_eq!(
                counts.get(&topic.name).copied(),
                Some(topic.partitions),
                "{} on the standalone broker",
                topic.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn services_of_another_process_start_and_serve_on_the_standalone_broker() {
    let prefix = format!("t{:08x}.", rand_suffix());
    let (_owner, kafka) = standalone_broker(&prefix).await;
    let http = client();

    // MovieFlix, every service: a position in, the resuming service answers it.
    let dir = tempfile::tempdir().unwrap();
    let (movieflix, _) = cli::start::<MovieFlix>(
        &kafka,
        &[],
        &ServeArgs::for_tests(dir.path()),
        &movieflix::app::Options {
            analytics: shared::analytics::AnalyticsArgs::in_dir(dir.path().join("analytics")),
        },
    )
    .await
    .unwrap();
    let episode = movieflix::catalog::Catalog::shared()
        .get("s001")
        .unwrap()
        .duration_of(Some(1))
        .unwrap();
    let (status, body) = post(
        &http,
        &format!("{}/v1/positions", movieflix.url()),
        &json!({"user_id": "ann", "show_id": "s001", "episode": 1, "position_s": 300,
                "duration_s": episode, "at": chrono::Utc::now().to_rfc3339()}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let resume = format!("{}/v1/users/ann/resume/s001", movieflix.url());
    let answer = shared::testkit::eventually(Duration::from_secs(60), "ann's position", || {
        let (http, resume) = (http.clone(), resume.clone());
        async move {
            let (status, body) = get(&http, &resume).await;
            (status == StatusCode::OK).then_some(body)
        }
    })
    .await;
    assert_eq!(answer["position_s"], 300, "{answer}");

    // MyBank, every service: a threshold set and read back through the threshold service's
    // streams application.
    let bank_dir = tempfile::tempdir().unwrap();
    let (mybank, _) = cli::start::<MyBank>(
        &kafka,
        &[],
        &ServeArgs::for_tests(bank_dir.path()),
        &mybank::app::Options {
            config: None,
            database_url: None,
            notifications_database_url: None,
            smtp_url: None,
        },
    )
    .await
    .unwrap();
    mybank::app::set_threshold(&http, &mybank.url(), "u001", "500", "EUR")
        .await
        .unwrap();
    let threshold = format!("{}/v1/users/u001/alert-threshold", mybank.url());
    let answer = shared::testkit::eventually(Duration::from_secs(60), "u001's threshold", || {
        let (http, threshold) = (http.clone(), threshold.clone());
        async move {
            let (status, body) = get(&http, &threshold).await;
            (status == StatusCode::OK).then_some(body)
        }
    })
    .await;
    assert!(answer.to_string().contains("500"), "{answer}");

    mybank.stop().await.unwrap();
    movieflix.stop().await.unwrap();
}

/// A topic the standalone broker does not know: provisioning from another process fails at
/// once, naming the topic and the reason, instead of waiting for a `CreateTopics` answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_topic_missing_on_the_standalone_broker_fails_fast_naming_it() {
    const UNKNOWN: TopicSpec = TopicSpec {
        case_study: "test",
        name: "not-provisioned",
        ..tests::WORDS
    };
    let prefix = format!("t{:08x}.", rand_suffix());
    let (_owner, kafka) = standalone_broker(&prefix).await;
    let err = shared::provision(&kafka, &[UNKNOWN])
        .await
        .expect_err("the mock cluster cannot create it for another process");
    let message = format!("{err:#}");
    assert!(
        message.contains(&kafka.topic(&UNKNOWN)) && message.contains("ignores CreateTopics"),
        "{message}"
    );
}

fn rand_suffix() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}
