//! rsyslog with `omkafka` as a child process, configured by `logging/config/rsyslog.conf`:
//! syslog over UDP and TCP on one loopback port (and, for the benchmark, files through
//! `imfile`) → `application_logs`, keyed `app-name/hostname`, syslog messages re-written as
//! RFC 5424, file lines as they are. The configuration's comments explain every setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shared::Kafka;

use super::child::{self, Child};
use crate::topics::APPLICATION_LOGS;

/// The configuration template (`logging/config/rsyslog.conf`).
pub const TEMPLATE: &str = include_str!("../../config/rsyslog.conf");
pub const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
pub const PACKAGE: &str = "rsyslog-kafka";

/// A file rsyslog follows (`imfile`): its lines are keyed `<tag>/<this host>`.
#[derive(Debug, Clone)]
pub struct FileInput {
    pub path: PathBuf,
    pub tag: String,
}

/// What the template needs.
#[derive(Debug, Clone)]
pub struct RsyslogConfig {
    pub work_dir: PathBuf,
    pub listen: SocketAddr,
    pub bootstrap: String,
    pub topic: String,
    pub files: Vec<FileInput>,
}

impl RsyslogConfig {
    /// The template filled in.
    pub fn render(&self) -> anyhow::Result<String> {
        let inputs: String = self
            .files
            .iter()
            .map(|file| {
                format!(
                    "input(type=\"imfile\" file=\"{}\" tag=\"{}\" ruleset=\"files_to_kafka\" \
                     addMetadata=\"off\" reopenOnTruncate=\"on\")\n",
                    file.path.display(),
                    file.tag
                )
            })
            .collect();
        child::render(
            TEMPLATE,
            &[
                ("WORK_DIR", &self.work_dir.display().to_string()),
                ("ADDRESS", &self.listen.ip().to_string()),
                ("PORT", &self.listen.port().to_string()),
                ("BOOTSTRAP", &self.bootstrap),
                ("TOPIC", &self.topic),
                ("FILE_INPUTS", &inputs),
            ],
        )
    }
}

/// The directory rsyslog's module `omkafka.so` is in, if the package is installed.
fn omkafka_installed() -> bool {
    let Ok(entries) = std::fs::read_dir("/usr/lib") else {
        return false;
    };
    entries
        .flatten()
        .map(|entry| entry.path().join("rsyslog/omkafka.so"))
        .chain([PathBuf::from("/usr/lib/rsyslog/omkafka.so")])
        .any(|path| path.is_file())
}

/// A running rsyslogd.
pub struct Rsyslog {
    child: Child,
    listen: SocketAddr,
}

impl Rsyslog {
    /// Provisions `application_logs` (rsyslog does not create topics), writes the
    /// configuration to `work_dir` and starts `rsyslogd -n` on a free loopback port; returns
    /// once it accepts TCP connections.
    pub async fn start(
        kafka: &Kafka,
        work_dir: &Path,
        files: &[FileInput],
    ) -> anyhow::Result<Rsyslog> {
        let program = child::program(RSYSLOGD, PACKAGE)?;
        if !omkafka_installed() {
            anyhow::bail!(
                "rsyslog's omkafka module is not installed: install the Debian package {PACKAGE} \
                 (apt-get install {PACKAGE})"
            );
        }
        shared::provision(kafka, &[APPLICATION_LOGS]).await?;
        std::fs::create_dir_all(work_dir)?;
        let work_dir = std::fs::canonicalize(work_dir)?;
        let listen = SocketAddr::from(([127, 0, 0, 1], child::free_port()?));
        let config = RsyslogConfig {
            work_dir: work_dir.clone(),
            listen,
            bootstrap: kafka.bootstrap_servers().to_owned(),
            topic: kafka.topic(&APPLICATION_LOGS),
            files: files.to_vec(),
        };
        let conf = work_dir.join("rsyslog.conf");
        std::fs::write(&conf, config.render()?)?;
        let mut command = Command::new(program);
        command
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(work_dir.join("rsyslogd.pid"));
        let mut child = Child::spawn("rsyslogd", command)?;
        child
            .wait_until_listening(listen, Duration::from_secs(30))
            .await?;
        Ok(Rsyslog { child, listen })
    }

    /// Where it accepts syslog, over UDP and TCP alike.
    pub fn syslog_address(&self) -> SocketAddr {
        self.listen
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM: rsyslog drains its queues (up to omkafka's closeTimeout) and exits.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.child.stop_cleanly().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configuration_fills_in_completely() {
        let config = RsyslogConfig {
            work_dir: "/tmp/rsyslog".into(),
            listen: "127.0.0.1:5514".parse().unwrap(),
            bootstrap: "127.0.0.1:9092".into(),
            topic: "logging.application_logs".into(),
            files: vec![FileInput {
                path: "/var/log/app.log".into(),
                tag: "app".into(),
            }],
        };
        let text = config.render().unwrap();
        assert!(text.contains(r#"broker=["127.0.0.1:9092"] topic="logging.application_logs""#));
        assert!(text.contains(r#"input(type="imudp" address="127.0.0.1" port="5514""#));
        assert!(text.contains(r#"file="/var/log/app.log" tag="app""#));
        assert!(text.contains(r#"string="%app-name%/%hostname%""#));
    }
}
