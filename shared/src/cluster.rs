//! Which cluster local state came from.
//!
//! Offsets mean something only on the cluster that assigned them: a RocksDB checkpoint saying
//! "input offset 5,000 applied", or a Parquet file named after offsets 0–4,999, is wrong on a
//! new, empty broker, whose offsets start at 0 again — reused, it skips the new records. So
//! every local store that records offsets also records the cluster's [`identity`], and on a
//! mismatch discards (or sets aside) what it knew, with a warning that says why.
//!
//! The identity is the cluster id from metadata (Apache Kafka's is a random id kept in the
//! cluster's storage: stable across broker restarts, new for a new cluster). The embedded broker
//! (librdkafka's mock cluster) is new and empty every time it starts, but its cluster id is
//! `mockCluster` followed by a memory address, which a later mock cluster may reuse; there the
//! identity is the broker's *incarnation* instead, a random id it writes at start to
//! [`INCARNATION_TOPIC`] (read from there by clients in other processes).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::embedded::INCARNATION_TOPIC;
use crate::kafka::Kafka;
use crate::provision::MOCK_CLUSTER_ID_PREFIX;

/// The identity of the cluster `kafka` reaches (see the module docs).
pub async fn identity(kafka: &Kafka) -> anyhow::Result<String> {
    if let Some(broker) = kafka.embedded_broker() {
        return Ok(format!("embedded broker {}", broker.incarnation()));
    }
    let admin = Arc::new(kafka.client_config().create()?);
    let id = crate::provision::cluster_id(&admin).await?;
    match id {
        Some(id) if id.starts_with(MOCK_CLUSTER_ID_PREFIX) => {
            let consumer: BaseConsumer = kafka
                .client_config()
                .set("group.id", "casestudies-incarnation-reader")
                .set("enable.auto.commit", "false")
                .create()?;
            let incarnation = tokio::task::spawn_blocking(move || read_incarnation(&consumer))
                .await?
                .with_context(|| {
                    format!(
                        "the broker at {} is an embedded broker (cluster id {id}) without an \
                         incarnation record on {INCARNATION_TOPIC}: start it with `casestudies broker`",
                        kafka.bootstrap_servers()
                    )
                })?;
            Ok(format!("embedded broker {incarnation}"))
        }
        Some(id) => Ok(format!("cluster {id}")),
        None => bail!(
            "the broker at {} reports no cluster id: local state cannot be tied to its cluster",
            kafka.bootstrap_servers()
        ),
    }
}

fn read_incarnation(consumer: &BaseConsumer) -> anyhow::Result<String> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(INCARNATION_TOPIC, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let payload = message.payload().unwrap_or_default();
                return Ok(String::from_utf8_lossy(payload).into_owned());
            }
            Some(Err(err)) => bail!("reading {INCARNATION_TOPIC}: {err}"),
            None => {}
        }
    }
    bail!("no record on {INCARNATION_TOPIC} within 10 s")
}

/// The file in a state directory naming the cluster its contents came from.
pub const STAMP_FILE: &str = "cluster";

/// Ties the directory `dir` to the cluster `identity`: when its stamp names another cluster, or
/// it has contents but no stamp (written before stamps, or interrupted while being discarded),
/// everything in it is deleted, with a warning naming `what` and the reason; then the stamp is
/// written. Returns whether anything was discarded.
pub fn bind_dir(dir: &Path, identity: &str, what: &str) -> anyhow::Result<bool> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let stamp = dir.join(STAMP_FILE);
    let recorded = match std::fs::read_to_string(&stamp) {
        Ok(text) => Some(text.trim().to_owned()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err).with_context(|| format!("reading {}", stamp.display())),
    };
    if recorded.as_deref() == Some(identity) {
        return Ok(false);
    }
    let entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    let discarded = !entries.is_empty();
    if discarded {
        let reason = match &recorded {
            Some(old) => format!(
                "it was built from {old}, but the broker is {identity}: its offsets belong to the \
                 other cluster and would skip this one's records"
            ),
            None => "it does not say which cluster it was built from".to_owned(),
        };
        tracing::warn!(
            dir = %dir.display(),
            "DISCARDING the local state of {what}: {reason}; it is rebuilt from this cluster"
        );
        // The stamp goes last: interrupted, the directory has contents but no stamp, and the
        // next start discards the rest.
        for entry in entries.iter().filter(|e| e.file_name() != STAMP_FILE) {
            let path = entry.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            }
            .with_context(|| format!("removing {}", path.display()))?;
        }
    }
    let tmp = dir.join(format!("{STAMP_FILE}.tmp"));
    std::fs::write(&tmp, identity).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &stamp).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(discarded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_from_another_cluster_is_emptied_and_restamped() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("app");
        assert!(
            !bind_dir(&state, "cluster A", "app").unwrap(),
            "new: nothing to discard"
        );
        std::fs::create_dir_all(state.join("0")).unwrap();
        std::fs::write(state.join("0/CURRENT"), "x").unwrap();
        assert!(
            !bind_dir(&state, "cluster A", "app").unwrap(),
            "same cluster: kept"
        );
        assert!(state.join("0/CURRENT").exists());

        assert!(
            bind_dir(&state, "cluster B", "app").unwrap(),
            "another cluster"
        );
        assert!(!state.join("0").exists());
        assert_eq!(
            std::fs::read_to_string(state.join(STAMP_FILE)).unwrap(),
            "cluster B"
        );

        // Contents without a stamp (an older version, or an interrupted discard): discarded.
        std::fs::remove_file(state.join(STAMP_FILE)).unwrap();
        std::fs::write(state.join("instance.id"), "x").unwrap();
        assert!(bind_dir(&state, "cluster B", "app").unwrap());
        assert!(!state.join("instance.id").exists());
    }
}
