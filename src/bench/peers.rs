//! The peers of `casestudies bench streams --peers`: Kafka Streams and Quix Streams running (b)'s
//! job — count per key in RocksDB with a changelog, at-least-once, one processing thread — on
//! the same input topic, one after the other, as separate processes. Their sources and how they
//! are built live in `bench/peers/`; each prints one JSON line
//! (`{"records", "records_per_s", "cpu_us_per_record"}`), taken like (b)'s figures: from the first
//! record to the last, CPU of the processing thread only.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use shared::Kafka;

/// One peer run.
#[derive(Debug)]
pub struct Peer {
    pub system: String,
    pub records_per_s: f64,
    pub cpu_us_per_record: Option<f64>,
}

/// A peer's program and the commit setting it runs with.
pub struct PeerRun {
    /// What the table calls it.
    pub system: String,
    /// `bench/peers/<dir>/run`.
    pub dir: &'static str,
    /// `default`, or the commit interval in the peer's unit (ms for Kafka Streams, s for Quix).
    pub commit: String,
}

/// The peers to run: Kafka Streams at its defaults and at (b)'s mean commit interval, Quix
/// Streams at its defaults.
pub fn runs(our_commit_interval: Duration) -> Vec<PeerRun> {
    let ms = our_commit_interval.as_millis().max(1);
    vec![
        PeerRun {
            system: "Kafka Streams 4.4.0, commit every 30 s (its default)".into(),
            dir: "kafka-streams",
            commit: "default".into(),
        },
        PeerRun {
            system: format!("Kafka Streams 4.4.0, commit every {ms} ms (as (b) did)"),
            dir: "kafka-streams",
            commit: ms.to_string(),
        },
        PeerRun {
            system: "Quix Streams 3.28.1, commit every 5 s (its default)".into(),
            dir: "quix",
            commit: "default".into(),
        },
    ]
}

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/peers")
}

/// Runs one peer on `records` records of `topic` (read from the beginning) and returns its
/// figures. The peer's own output (build logs, errors) goes to stderr.
pub async fn run(kafka: &Kafka, peer: &PeerRun, topic: &str, records: u64) -> anyhow::Result<Peer> {
    let script = peers_dir().join(peer.dir).join("run");
    let state = tempfile::tempdir()?;
    let id = format!(
        "{}peer-{}-{}",
        kafka.prefix(),
        peer.dir,
        rand::random::<u32>() & 0xffff
    );
    let child = tokio::process::Command::new(&script)
        .arg(kafka.bootstrap_servers())
        .arg(topic)
        .arg(records.to_string())
        .arg(&id)
        .arg(state.path())
        .arg(&peer.commit)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", script.display()))?;
    let output = tokio::time::timeout(Duration::from_secs(900), child.wait_with_output())
        .await
        .with_context(|| format!("{} did not finish within 15 minutes", peer.system))??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("{} failed ({}): {stdout}", peer.system, output.status);
    }
    parse(&peer.system, &stdout)
}

/// A peer's figures from the last JSON line of its output.
fn parse(system: &str, stdout: &str) -> anyhow::Result<Peer> {
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .with_context(|| format!("{system} printed no result: {stdout}"))?;
    let result: serde_json::Value = serde_json::from_str(line)
        .with_context(|| format!("{system}'s result is not JSON: {line}"))?;
    Ok(Peer {
        system: system.to_owned(),
        records_per_s: result["records_per_s"]
            .as_f64()
            .with_context(|| format!("{system}: no records_per_s in {line}"))?,
        cpu_us_per_record: result["cpu_us_per_record"].as_f64(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_peers_result_is_its_last_json_line() {
        let out = "building…\n{\"records\":9,\"records_per_s\":1}\n{\"records\":299999,\"records_per_s\":95586,\"cpu_us_per_record\":8.54}\n";
        let peer = super::parse("ks", out).unwrap();
        assert_eq!(peer.records_per_s, 95586.0);
        assert_eq!(peer.cpu_us_per_record, Some(8.54));
        let err = super::parse("ks", "Exception in thread main\n").unwrap_err();
        assert!(err.to_string().contains("ks printed no result"), "{err}");
        let err = super::parse("ks", "{\"records\":1}\n").unwrap_err();
        assert!(err.to_string().contains("no records_per_s"), "{err}");
        assert!(super::parse("ks", "{not json\n").is_err());
    }
}
