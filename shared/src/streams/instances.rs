//! Who owns which partition, for interactive queries across instances.
//!
//! Every instance with an HTTP endpoint (`StreamsConfig::endpoint`, Kafka Streams'
//! `application.server`) announces `{endpoint, partitions}` on the compacted
//! `<prefix><app id>-instances` topic (key: instance id) whenever its tasks change, and a
//! tombstone when it stops. Every instance reads the topic, so any of them can tell where a key
//! lives: the key's partition is computed with the producers' partitioner
//! ([`crate::producer::partition_for_key`]).
//!
//! The stream thread does both: `announce` when its tasks change, `read_announcements` once per
//! batch into the [`Directory`]. Until it has read the topic up to where it ended when the
//! instance started, the directory names no owner: a stale claim (say, of the instance this one
//! replaces, whose withdrawal is further on in the topic) would send queries to a stopped
//! instance, so they get a 503 ("retry shortly") instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::{Message, Offset};
use serde::{Deserialize, Serialize};

use super::commit::{AckContext, send};
use super::processor::StreamsConfig;

/// The instances topic of an (already prefixed) application id.
pub fn instances_topic(application_id: &str) -> String {
    format!("{application_id}-instances")
}

/// One instance's announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub endpoint: String,
    pub partitions: Vec<i32>,
    /// Milliseconds since the epoch: the newest claim on a partition wins.
    pub announced_ms: i64,
}

/// Where a query for a key should be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This instance runs the key's task.
    Local,
    /// Another instance does, at this endpoint.
    Remote(String),
    /// Nobody is known to own it right now (starting up or rebalancing).
    Unavailable,
}

/// What every instance knows about the others (updated by the stream thread).
#[derive(Clone, Default)]
pub struct Directory {
    instances: Arc<RwLock<HashMap<String, Announcement>>>,
    /// Read the instances topic up to its end at start-up: the claims are current.
    caught_up: Arc<AtomicBool>,
}

impl Directory {
    /// The claims read so far are as current as the topic was when this instance started.
    pub fn mark_caught_up(&self) {
        self.caught_up.store(true, Ordering::Release);
    }

    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    pub fn apply(&self, instance_id: String, announcement: Option<Announcement>) {
        let mut instances = self.instances.write().expect("directory lock");
        match announcement {
            Some(a) => {
                instances.insert(instance_id, a);
            }
            None => {
                instances.remove(&instance_id);
            }
        }
    }

    /// The endpoint of the instance that most recently claimed `partition`; none before the
    /// directory has caught up.
    pub fn owner(&self, partition: i32) -> Option<String> {
        if !self.is_caught_up() {
            return None;
        }
        self.instances
            .read()
            .expect("directory lock")
            .values()
            .filter(|a| a.partitions.contains(&partition))
            .max_by_key(|a| a.announced_ms)
            .map(|a| a.endpoint.clone())
    }

    /// Every known instance's endpoint and partitions (for `/…/instances` style endpoints).
    pub fn all(&self) -> Vec<Announcement> {
        let mut all: Vec<Announcement> = self
            .instances
            .read()
            .expect("directory lock")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        all
    }
}

/// Tells every instance which partitions this one serves (`None`: none any more).
pub(super) fn announce(
    producer: &BaseProducer<AckContext>,
    config: &StreamsConfig,
    instance_id: &str,
    partitions: Option<Vec<i32>>,
) -> anyhow::Result<()> {
    let topic = instances_topic(&config.application_id);
    let payload = match (partitions, &config.endpoint) {
        (Some(partitions), Some(endpoint)) => Some(serde_json::to_vec(&Announcement {
            endpoint: endpoint.clone(),
            partitions,
            announced_ms: chrono::Utc::now().timestamp_millis(),
        })?),
        _ => None,
    };
    let mut record =
        BaseRecord::<[u8], [u8], usize>::with_opaque_to(&topic, 0).key(instance_id.as_bytes());
    if let Some(payload) = &payload {
        record = record.payload(payload.as_slice());
    }
    send(producer, record)
}

/// Applies the announcements that arrived since the last look (never blocks); marks the
/// directory caught up once the consumer's position reaches `end` (the topic's end when the
/// instance started).
pub(super) fn read_announcements(announcements: &BaseConsumer, directory: &Directory, end: i64) {
    while let Some(result) = announcements.poll(Duration::ZERO) {
        match result {
            Ok(message) => {
                let Some(id) = message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                else {
                    continue;
                };
                let announcement = message
                    .payload()
                    .and_then(|p| serde_json::from_slice(p).ok());
                directory.apply(id, announcement);
            }
            Err(err) => tracing::debug!(%err, "instances topic"),
        }
    }
    if directory.is_caught_up() {
        return;
    }
    let position = announcements.position().ok().and_then(|positions| {
        positions.elements().first().and_then(|p| match p.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        })
    });
    if end <= 0 || position.is_some_and(|position| position >= end) {
        directory.mark_caught_up();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_owner_before_catching_up_then_the_newest_claim_wins() {
        let directory = Directory::default();
        directory.apply(
            "a".into(),
            Some(Announcement {
                endpoint: "http://a".into(),
                partitions: vec![0],
                announced_ms: 0,
            }),
        );
        assert_eq!(directory.owner(0), None, "no owner before catching up");
        directory.mark_caught_up();
        let claim = |endpoint: &str, partitions: Vec<i32>, at| Announcement {
            endpoint: endpoint.into(),
            partitions,
            announced_ms: at,
        };
        directory.apply("a".into(), Some(claim("http://a", vec![0, 1], 1)));
        directory.apply("b".into(), Some(claim("http://b", vec![1], 2)));
        assert_eq!(directory.owner(0).as_deref(), Some("http://a"));
        assert_eq!(directory.owner(1).as_deref(), Some("http://b"));
        directory.apply("b".into(), None);
        assert_eq!(
            directory.owner(1).as_deref(),
            Some("http://a"),
            "stale claims are still better than none"
        );
        assert_eq!(directory.owner(2), None);
    }
}
