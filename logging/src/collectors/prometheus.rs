//! Prometheus as a child process, configured by `logging/config/prometheus.yml`: it scrapes its
//! own `/metrics` every second and remote-writes the samples to our
//! [`crate::remote_write_receiver`] (`POST /api/v1/write`), which produces them to
//! `application_metrics` keyed `prometheus/<its address>`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::child::{self, Child};
use crate::events::log_key;

/// The configuration template (`logging/config/prometheus.yml`).
pub const TEMPLATE: &str = include_str!("../../config/prometheus.yml");
pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PACKAGE: &str = "prometheus";

/// The template filled in.
pub fn render(listen: SocketAddr, remote_write_url: &str) -> anyhow::Result<String> {
    child::render(
        TEMPLATE,
        &[
            ("LISTEN", &listen.to_string()),
            ("REMOTE_WRITE_URL", remote_write_url),
        ],
    )
}

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    listen: SocketAddr,
}

impl Prometheus {
    /// Writes the configuration to `work_dir` and starts Prometheus on a free loopback port,
    /// its data in `work_dir/data`; returns once it serves HTTP.
    pub async fn start(work_dir: &Path, remote_write_url: &str) -> anyhow::Result<Prometheus> {
        let program = child::program(PROMETHEUS, PACKAGE)?;
        std::fs::create_dir_all(work_dir)?;
        let work_dir = std::fs::canonicalize(work_dir)?;
        let listen = SocketAddr::from(([127, 0, 0, 1], child::free_port()?));
        let conf = work_dir.join("prometheus.yml");
        std::fs::write(&conf, render(listen, remote_write_url)?)?;
        let mut command = Command::new(program);
        command
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--log.level=warn");
        let mut child = Child::spawn("prometheus", command)?;
        child
            .wait_until_listening(listen, Duration::from_secs(60))
            .await?;
        Ok(Prometheus { child, listen })
    }

    /// The key of its records on `application_metrics`: `prometheus/<host:port>` (job/instance
    /// of its self-scrape).
    pub fn key(&self) -> String {
        log_key("prometheus", &self.listen.to_string())
    }

    pub fn address(&self) -> SocketAddr {
        self.listen
    }

    /// SIGTERM: Prometheus flushes its remote-write queue (briefly) and exits.
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
            "127.0.0.1:9090".parse().unwrap(),
            "http://127.0.0.1:8080/api/v1/write",
        )
        .unwrap();
        assert!(text.contains(r#"targets: ["127.0.0.1:9090"]"#));
        assert!(text.contains(r#"url: "http://127.0.0.1:8080/api/v1/write""#));
    }
}
