//! Consumer lag, like `kafka-consumer-groups --describe`: for each partition a group has
//! committed, the committed offset, the log-end offset and the difference.

use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::kafka::Kafka;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Next offset the group will read; `None` if it never committed this partition.
    pub committed: Option<i64>,
    pub log_end: i64,
    /// `log_end - committed` (everything, if nothing was committed).
    pub lag: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupLag {
    pub group: String,
    /// The group's state as the coordinator reports it (`Stable`, `Empty`, …), if it answered.
    pub state: Option<String>,
    /// `client_id@host` of each member (empty if the coordinator did not answer).
    pub members: Vec<String>,
    /// Why the coordinator did not describe the group (e.g. the embedded mock cluster does not
    /// implement ListGroups/DescribeGroups); `None` when it did.
    pub not_described: Option<String>,
    pub partitions: Vec<PartitionLag>,
}

impl GroupLag {
    pub fn total_lag(&self) -> i64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }
}

/// The lag of `group` on `topic` (every partition), or, without a topic, on every topic with
/// this handle's prefix where the group committed at least one offset.
pub async fn group_lag(
    kafka: &Kafka,
    group: &str,
    topic: Option<&str>,
) -> anyhow::Result<GroupLag> {
    let mut config = kafka.client_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create()?;
    let prefix = kafka.prefix().to_owned();
    let (group, topic) = (group.to_owned(), topic.map(str::to_owned));
    // Every call below blocks on the broker: run them on a blocking thread.
    tokio::task::spawn_blocking(move || describe(&consumer, &group, &prefix, topic.as_deref()))
        .await?
}

fn describe(
    consumer: &BaseConsumer,
    group: &str,
    prefix: &str,
    topic: Option<&str>,
) -> anyhow::Result<GroupLag> {
    let metadata = consumer
        .fetch_metadata(topic, TIMEOUT)
        .context("cannot read cluster metadata")?;
    let mut all = TopicPartitionList::new();
    for t in metadata.topics() {
        let wanted = match topic {
            Some(name) => t.name() == name,
            None => !t.name().starts_with("__") && t.name().starts_with(prefix),
        };
        if wanted {
            for p in t.partitions() {
                all.add_partition(t.name(), p.id());
            }
        }
    }
    let committed = consumer
        .committed_offsets(all, TIMEOUT)
        .context("cannot read committed offsets")?;
    let mut partitions = Vec::new();
    for element in committed.elements() {
        let committed = match element.offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        };
        if committed.is_none() && topic.is_none() {
            continue;
        }
        let (low, high) = consumer
            .fetch_watermarks(element.topic(), element.partition(), TIMEOUT)
            .with_context(|| {
                format!(
                    "cannot read offsets of {}[{}]",
                    element.topic(),
                    element.partition()
                )
            })?;
        partitions.push(PartitionLag {
            topic: element.topic().to_owned(),
            partition: element.partition(),
            committed,
            log_end: high,
            // Clamped: some brokers (tansu 0.6) under-report the log end after batched writes.
            lag: (high - committed.unwrap_or(low).max(low)).max(0),
        });
    }
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));

    // Membership is informative only: not every broker answers DescribeGroups the same way.
    let (state, members, not_described) = match consumer.fetch_group_list(Some(group), TIMEOUT) {
        Ok(list) => match list.groups().first() {
            Some(g) => (
                Some(g.state().to_owned()),
                g.members()
                    .iter()
                    .map(|m| format!("{}@{}", m.client_id(), m.client_host()))
                    .collect(),
                None,
            ),
            None => (
                None,
                Vec::new(),
                Some("the coordinator knows no such group".into()),
            ),
        },
        Err(err) => {
            tracing::debug!(%err, "group description unavailable");
            let reason = match err.rdkafka_error_code() {
                Some(rdkafka::types::RDKafkaErrorCode::UnsupportedFeature) => {
                    "this broker does not answer ListGroups/DescribeGroups (the embedded mock cluster does not)".to_owned()
                }
                _ => err.to_string(),
            };
            (None, Vec::new(), Some(reason))
        }
    };
    Ok(GroupLag {
        group: group.to_owned(),
        state,
        members,
        not_described,
        partitions,
    })
}
