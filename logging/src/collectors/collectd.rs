//! collectd with `write_kafka` as a child process, configured by `logging/config/collectd.conf`:
//! this host's CPU, memory, load and interface values every second, as collectd's JSON, on
//! `application_metrics` under the key `collectd/<hostname>`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use shared::Kafka;

use super::child::{self, Child};
use crate::events::log_key;
use crate::topics::APPLICATION_METRICS;

/// The configuration template (`logging/config/collectd.conf`).
pub const TEMPLATE: &str = include_str!("../../config/collectd.conf");
pub const COLLECTD: &str = "/usr/sbin/collectd";
pub const WRITE_KAFKA: &str = "/usr/lib/collectd/write_kafka.so";
pub const PACKAGE: &str = "collectd-core";
/// `write_kafka`'s JSON library, which `collectd-core` only recommends: without it the plugin
/// does not load and collectd exits at start (its message names the missing library).
pub const JSON_LIBRARY_PACKAGE: &str = "libyajl2";
/// The application part of collectd's key.
pub const APPLICATION: &str = "collectd";

/// The template filled in.
pub fn render(
    work_dir: &Path,
    hostname: &str,
    bootstrap: &str,
    topic: &str,
) -> anyhow::Result<String> {
    child::render(
        TEMPLATE,
        &[
            ("WORK_DIR", &work_dir.display().to_string()),
            ("HOSTNAME", hostname),
            ("BOOTSTRAP", bootstrap),
            ("TOPIC", topic),
        ],
    )
}

/// A running collectd.
pub struct Collectd {
    child: Child,
    key: String,
}

impl Collectd {
    /// Provisions `application_metrics` (collectd does not create topics), writes the
    /// configuration to `work_dir` and starts `collectd -f`, its values naming `hostname`.
    pub async fn start(kafka: &Kafka, work_dir: &Path, hostname: &str) -> anyhow::Result<Collectd> {
        let program = child::program(COLLECTD, PACKAGE)?;
        child::program(WRITE_KAFKA, PACKAGE)?;
        shared::provision(kafka, &[APPLICATION_METRICS]).await?;
        std::fs::create_dir_all(work_dir)?;
        let work_dir = std::fs::canonicalize(work_dir)?;
        let conf = work_dir.join("collectd.conf");
        std::fs::write(
            &conf,
            render(
                &work_dir,
                hostname,
                kafka.bootstrap_servers(),
                &kafka.topic(&APPLICATION_METRICS),
            )?,
        )?;
        let mut command = Command::new(program);
        command.arg("-f").arg("-C").arg(&conf);
        let mut child = Child::spawn("collectd", command)?;
        // Nothing to wait for: collectd serves no port, and in the foreground it writes no PID
        // file. Its records on the topic say it works; a configuration it refuses (a plugin
        // that does not load) ends it at once, which this sees.
        tokio::time::sleep(Duration::from_millis(200)).await;
        child.check_running()?;
        Ok(Collectd {
            child,
            key: log_key(APPLICATION, hostname),
        })
    }

    /// The key of its records: `collectd/<hostname>`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// SIGTERM: collectd flushes and exits.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.child.stop_cleanly().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configuration_fills_in_completely() {
        let text = render(
            Path::new("/tmp/collectd"),
            "web-1",
            "127.0.0.1:9092",
            "logging.application_metrics",
        )
        .unwrap();
        assert!(text.contains(r#"<Topic "logging.application_metrics">"#));
        assert!(text.contains(r#"Key "collectd/web-1""#));
        assert!(text.contains("Interval 1\n"));
    }
}
