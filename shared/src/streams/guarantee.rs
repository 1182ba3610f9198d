//! Processing guarantees: Kafka Streams' `processing.guarantee`, chosen per application
//! ([`StreamsConfig::guarantee`](super::StreamsConfig)) or for every application of a process
//! with `PROCESSING_GUARANTEE=at_least_once|exactly_once_v2`.
//!
//! * **`at_least_once`** (default): the commit protocol of `docs/STREAMS.md` keeps state exact
//!   on any broker; outputs may repeat after a crash, with the same event ids.
//! * **`exactly_once_v2`**: a batch's outputs, changelog records, markers and input offsets go
//!   in one Kafka transaction (one transactional producer per instance, fenced through the
//!   consumer group's generation as in KIP-447), so a `read_committed` consumer sees every
//!   output once. Needs a broker that runs transactions (Apache Kafka); the embedded mock
//!   cluster does not hide aborted transactions, so it is refused there.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};

/// The environment variable that chooses the guarantee for every streams application of a
/// process.
pub const ENV: &str = "PROCESSING_GUARANTEE";

/// How long a transaction may stay open before the broker aborts it: Kafka Streams' default
/// under exactly-once. An instance that crashed and comes back with its state directory reuses
/// its transactional id and aborts its open transaction at once; one that lost its state
/// directory leaves it to this timeout, and `read_committed` readers of its partitions (the
/// next owner's restore included) wait until then.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Guarantee {
    #[default]
    AtLeastOnce,
    ExactlyOnce,
}

impl Guarantee {
    /// `PROCESSING_GUARANTEE`, if set.
    pub fn from_env() -> anyhow::Result<Option<Guarantee>> {
        match std::env::var(ENV) {
            Ok(value) if !value.trim().is_empty() => Ok(Some(
                value.parse().with_context(|| format!("{ENV}={value:?}"))?,
            )),
            _ => Ok(None),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at_least_once",
            Guarantee::ExactlyOnce => "exactly_once_v2",
        }
    }
}

impl FromStr for Guarantee {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Guarantee> {
        match s.trim() {
            "at_least_once" => Ok(Guarantee::AtLeastOnce),
            "exactly_once_v2" | "exactly_once" => Ok(Guarantee::ExactlyOnce),
            other => bail!(
                "unknown processing guarantee {other:?}: expected at_least_once or exactly_once_v2"
            ),
        }
    }
}

/// The instance's transactional id, `<application id>-<instance id>`. The instance id is kept
/// in the state directory (`instance.id`), so a restarted instance takes over its own open
/// transaction (and aborts it) when it starts; two instances never share one.
pub fn transactional_id(application_id: &str, state_dir: &Path) -> anyhow::Result<String> {
    let path = state_dir.join("instance.id");
    let id = match std::fs::read_to_string(&path) {
        Ok(id) if uuid::Uuid::parse_str(id.trim()).is_ok() => id.trim().to_owned(),
        _ => {
            std::fs::create_dir_all(state_dir)
                .with_context(|| format!("cannot create {}", state_dir.display()))?;
            let id = uuid::Uuid::new_v4().to_string();
            let tmp = state_dir.join("instance.id.tmp");
            std::fs::write(&tmp, &id)?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            id
        }
    };
    Ok(format!("{application_id}-{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_streams_names() {
        assert_eq!(
            "at_least_once".parse::<Guarantee>().unwrap(),
            Guarantee::AtLeastOnce
        );
        assert_eq!(
            "exactly_once_v2".parse::<Guarantee>().unwrap(),
            Guarantee::ExactlyOnce
        );
        let err = "exactly-once".parse::<Guarantee>().unwrap_err().to_string();
        assert!(
            err.contains("expected at_least_once or exactly_once_v2"),
            "{err}"
        );
    }

    #[test]
    fn the_transactional_id_survives_a_restart_but_not_a_lost_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = transactional_id("app", dir.path()).unwrap();
        assert_eq!(transactional_id("app", dir.path()).unwrap(), first);
        assert!(first.starts_with("app-"));
        std::fs::remove_file(dir.path().join("instance.id")).unwrap();
        assert_ne!(transactional_id("app", dir.path()).unwrap(), first);
    }
}
