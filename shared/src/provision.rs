//! Topic provisioning: create what is missing, leave what exists, shout about what is too small.
//!
//! Idempotent: run it at every start. Topics are created with their spec'd partitions,
//! `retention.ms` and `cleanup.policy`, plus a dead-letter topic for every consumed topic. An
//! existing topic with *fewer* partitions than its spec is not changed (adding partitions moves
//! keys to other partitions and breaks per-key order), but logged as a warning and reported.
//!
//! The embedded mock cluster ignores `CreateTopics`, so there topics go through the mock API.
//! A mock cluster of *another* process (`casestudies broker`) cannot be reached that way: it
//! creates every topic the case studies need when it starts, and provisioning against it fails
//! at once, naming the topics, when one is missing (rather than waiting for a `CreateTopics`
//! answer that never comes).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::kafka::Kafka;
use crate::topics::{PhysicalTopic, TopicSpec};

/// How long provisioning waits for new topics to show up in the cluster metadata.
const METADATA_WAIT: Duration = Duration::from_secs(30);

/// Largest replication factor asked for (capped by the number of brokers).
const MAX_REPLICATION: i32 = 3;

/// What [`provision`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProvisionReport {
    pub created: Vec<String>,
    pub existing: Vec<String>,
    /// `(topic, partitions it has, partitions its spec wants)`.
    pub under_partitioned: Vec<(String, i32, i32)>,
}

/// Creates every missing topic of `specs` (and their dead-letter topics) on `kafka`.
pub async fn provision(kafka: &Kafka, specs: &[TopicSpec]) -> anyhow::Result<ProvisionReport> {
    let wanted: Vec<PhysicalTopic> = specs
        .iter()
        .flat_map(|s| s.physical(kafka.prefix()))
        .collect();
    provision_physical(kafka, &wanted).await
}

/// Creates every missing topic of `wanted` (already named): internal topics use this directly.
pub async fn provision_physical(
    kafka: &Kafka,
    wanted: &[PhysicalTopic],
) -> anyhow::Result<ProvisionReport> {
    let admin: Arc<AdminClient<DefaultClientContext>> = Arc::new(kafka.client_config().create()?);
    let (brokers, existing) = partition_counts(&admin).await?;

    let mut report = ProvisionReport::default();
    let mut missing = Vec::new();
    for topic in wanted {
        match existing.get(&topic.name) {
            Some(&have) => {
                if have < topic.partitions {
                    tracing::warn!(
                        topic = %topic.name, have, want = topic.partitions,
                        "TOPIC HAS FEWER PARTITIONS THAN ITS SPEC: parallelism is capped at {have}; \
                         not changed automatically because adding partitions re-maps keys"
                    );
                    report
                        .under_partitioned
                        .push((topic.name.clone(), have, topic.partitions));
                }
                report.existing.push(topic.name.clone());
            }
            None => missing.push(topic),
        }
    }
    if missing.is_empty() {
        return Ok(report);
    }

    let replication = MAX_REPLICATION.min(brokers.max(1));
    if let Some(embedded) = kafka.embedded_broker() {
        for topic in &missing {
            embedded.create_topic(&topic.name, topic.partitions, replication)?;
        }
    } else {
        let names: Vec<&str> = missing.iter().map(|t| t.name.as_str()).collect();
        if is_mock_cluster(&admin).await? {
            bail!(
                "topics missing on {}: {names:?}. That broker is an embedded broker (librdkafka \
                 mock cluster) of another process, which ignores CreateTopics: only the process \
                 that runs it creates topics. Start it with `casestudies broker` (it creates \
                 every topic of the case studies and of their streams applications)",
                kafka.bootstrap_servers()
            );
        }
        tracing::info!(
            topics = ?names,
            bootstrap_servers = kafka.bootstrap_servers(),
            "creating topics (CreateTopics); waiting up to 30 s for the broker's answer"
        );
        let retention: Vec<String> = missing
            .iter()
            .map(|t| t.retention.as_ms().to_string())
            .collect();
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .zip(&retention)
            .map(|(t, retention_ms)| {
                NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(replication))
                    .set("cleanup.policy", t.cleanup.as_config())
                    .set("retention.ms", retention_ms)
            })
            .collect();
        let results = admin
            .create_topics(
                &new_topics,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .with_context(|| format!("CreateTopics request for {names:?} failed"))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => bail!("cannot create topic {topic}: {code}"),
            }
        }
    }
    wait_until_visible(&admin, &missing).await?;
    if !kafka.is_embedded() {
        verify_configs(&admin, &missing).await?;
    }
    for topic in missing {
        tracing::info!(topic = %topic.name, partitions = topic.partitions, "topic created");
        report.created.push(topic.name.clone());
    }
    Ok(report)
}

/// Whether the cluster is a librdkafka mock cluster (its cluster id reads `mockCluster…`).
pub async fn is_mock_cluster(
    admin: &Arc<AdminClient<DefaultClientContext>>,
) -> anyhow::Result<bool> {
    Ok(cluster_id(admin)
        .await?
        .is_some_and(|id| id.starts_with(MOCK_CLUSTER_ID_PREFIX)))
}

/// How librdkafka's mock cluster names itself in metadata: `mockCluster<address>`.
pub const MOCK_CLUSTER_ID_PREFIX: &str = "mockCluster";

/// The cluster id from metadata (`None` from brokers too old to report one).
pub async fn cluster_id(
    admin: &Arc<AdminClient<DefaultClientContext>>,
) -> anyhow::Result<Option<String>> {
    let admin = Arc::clone(admin);
    // librdkafka's call blocks (a Metadata request): keep it off the async workers.
    Ok(
        tokio::task::spawn_blocking(move || {
            admin.inner().fetch_cluster_id(Duration::from_secs(10))
        })
        .await?,
    )
}

/// The configuration of `topics` as the broker describes it: `(topic, [(name, value)])`.
pub async fn describe_topic_configs(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[&str],
) -> anyhow::Result<Vec<(String, HashMap<String, String>)>> {
    let resources: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let described = admin
        .describe_configs(&resources, &AdminOptions::new())
        .await
        .context("DescribeConfigs request failed")?;
    topics
        .iter()
        .zip(described)
        .map(|(topic, result)| {
            let resource = result.map_err(|code| anyhow::anyhow!("describe {topic}: {code}"))?;
            let entries = resource
                .entries
                .into_iter()
                .filter_map(|e| e.value.map(|v| (e.name, v)))
                .collect();
            Ok(((*topic).to_owned(), entries))
        })
        .collect()
}

/// Reads the created topics' configuration back: a broker that ignored `cleanup.policy` or
/// `retention.ms` (a compacted changelog created as `delete` loses state) fails provisioning.
async fn verify_configs(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[&PhysicalTopic],
) -> anyhow::Result<()> {
    let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    let described = match describe_topic_configs(admin, &names).await {
        Ok(described) => described,
        Err(err) => {
            tracing::warn!(
                err = format!("{err:#}"),
                "cannot read back the new topics' configuration"
            );
            return Ok(());
        }
    };
    for (topic, (name, configs)) in topics.iter().zip(described) {
        let want = [
            ("cleanup.policy", topic.cleanup.as_config().to_owned()),
            ("retention.ms", topic.retention.as_ms().to_string()),
        ];
        for (key, value) in want {
            match configs.get(key) {
                Some(have) if *have == value => {}
                have => bail!(
                    "topic {name} was created with {key}={} instead of {value}",
                    have.map_or("(not reported)", String::as_str)
                ),
            }
        }
    }
    Ok(())
}

/// Number of brokers, and the partition count of every topic, from cluster metadata.
pub async fn partition_counts(
    admin: &Arc<AdminClient<DefaultClientContext>>,
) -> anyhow::Result<(i32, HashMap<String, i32>)> {
    counts(admin, |_| true).await
}

/// Like [`partition_counts`], counting only the partitions that have a leader.
async fn led_partition_counts(
    admin: &Arc<AdminClient<DefaultClientContext>>,
) -> anyhow::Result<(i32, HashMap<String, i32>)> {
    counts(admin, |p| p.leader() >= 0 && p.error().is_none()).await
}

async fn counts(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    counted: fn(&rdkafka::metadata::MetadataPartition) -> bool,
) -> anyhow::Result<(i32, HashMap<String, i32>)> {
    let admin = Arc::clone(admin);
    // librdkafka's metadata call blocks: keep it off the async workers.
    let metadata = tokio::task::spawn_blocking(move || {
        admin.inner().fetch_metadata(None, Duration::from_secs(10))
    })
    .await?
    .context("cannot read cluster metadata (is the broker reachable?)")?;
    let topics = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| {
            let led = t.partitions().iter().filter(|p| counted(p)).count();
            (t.name().to_owned(), led as i32)
        })
        .collect();
    Ok((metadata.brokers().len() as i32, topics))
}

/// Brokers create topics asynchronously and elect their partitions' leaders after that; wait
/// until metadata shows every partition with a leader (Apache Kafka answers requests for a
/// partition without one with `NotLeaderForPartition`).
async fn wait_until_visible(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    topics: &[&PhysicalTopic],
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + METADATA_WAIT;
    loop {
        let (_, existing) = led_partition_counts(admin).await?;
        let pending: Vec<&str> = topics
            .iter()
            .filter(|t| existing.get(&t.name).is_none_or(|&n| n < t.partitions))
            .map(|t| t.name.as_str())
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("topics not visible in metadata after {METADATA_WAIT:?}: {pending:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
