//! `CASESTUDIES_TEST_KAFKA=apache`: Apache Kafka itself, a single-node KRaft cluster (broker and
//! controller in one JVM) as a child process on free loopback ports.
//!
//! The broker's jars come from Maven Central through `.ci/apache-kafka.sh`, which caches them in
//! `~/.cache/casestudies/apache-kafka-<version>` (or `APACHE_KAFKA_HOME`). Formatting the storage
//! and starting the JVM take about 6 s, so by default one broker serves every test of a test
//! binary (tests already isolate themselves by topic prefix and group ids);
//! `CASESTUDIES_APACHE_KAFKA=per-test` gives each test its own.
//!
//! The JVM runs under a small shell wrapper that reads the test process's end of a pipe: when the
//! test process exits — normally, by panic or by SIGKILL — the pipe closes, the wrapper kills
//! the broker and deletes its data directory. A shared broker therefore needs no destructor.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};

use super::guarded::Guarded;

/// The Apache Kafka version `.ci/apache-kafka.sh` fetches by default.
pub const VERSION: &str = "4.4.0";

/// Where `.ci/apache-kafka.sh` put the broker: `APACHE_KAFKA_HOME`, else its default directory.
pub fn apache_kafka_home() -> PathBuf {
    if let Some(home) = std::env::var_os("APACHE_KAFKA_HOME") {
        return home.into();
    }
    let user_home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(user_home).join(format!(".cache/casestudies/apache-kafka-{VERSION}"))
}

/// One Apache Kafka process. Dropping it stops the broker and removes its data.
pub struct ApacheKafka {
    bootstrap: String,
    /// The broker under its wrapper: dropping it stops the broker.
    process: Guarded,
}

impl ApacheKafka {
    /// The broker every test of this process shares, started by the first caller.
    pub fn shared() -> anyhow::Result<&'static ApacheKafka> {
        static SHARED: OnceLock<Result<ApacheKafka, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| ApacheKafka::start().map_err(|err| format!("{err:#}")))
            .as_ref()
            .map_err(|err| anyhow::anyhow!("{err}"))
    }

    /// Formats a fresh data directory and starts a broker on it; returns once it answers
    /// metadata requests. Blocking (about 6 s).
    pub fn start() -> anyhow::Result<ApacheKafka> {
        let home = apache_kafka_home();
        let run_class = home.join("bin/kafka-run-class");
        if !run_class.is_file() {
            bail!(
                "Apache Kafka is not at {}: fetch it with `.ci/apache-kafka.sh` (Maven and Java 17 \
                 needed) or set APACHE_KAFKA_HOME",
                home.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("casestudies-apache-kafka-")
            .tempdir()?
            .keep();
        let port = super::free_port()?;
        let controller_port = super::free_port()?;
        let properties = dir.join("server.properties");
        std::fs::write(
            &properties,
            server_properties(port, controller_port, &dir.join("data")),
        )?;

        let format = Command::new(&run_class)
            .args(["kafka.tools.StorageTool", "format", "--standalone"])
            .args(["--cluster-id", &cluster_id(), "--config"])
            .arg(&properties)
            .env("KAFKA_HEAP_OPTS", "-Xmx256m")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", run_class.display()))?;
        if !format.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            bail!(
                "formatting Apache Kafka's storage failed ({}): {}",
                format.status,
                String::from_utf8_lossy(&format.stderr).trim()
            );
        }

        let process = Guarded::spawn(
            "Apache Kafka",
            WRAPPER,
            &[run_class.as_os_str(), dir.as_os_str()],
            &[
                ("KAFKA_HEAP_OPTS", "-Xms256m -Xmx768m".to_owned()),
                (
                    "KAFKA_LOG_LEVEL",
                    std::env::var("APACHE_KAFKA_LOG").unwrap_or_else(|_| "INFO".into()),
                ),
            ],
        )?;
        let broker = ApacheKafka {
            bootstrap: format!("127.0.0.1:{port}"),
            process,
        };
        broker
            .process
            .wait_until_listening(broker.bootstrap.parse()?, Duration::from_secs(90))?;
        tracing::info!(bootstrap = %broker.bootstrap, data = %dir.display(), "Apache Kafka {VERSION} started");
        Ok(broker)
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }
}

/// Runs the broker in the background; stops it (SIGKILL: the data is thrown away anyway) when a
/// line or end-of-file arrives on stdin, then deletes the data directory. If the broker exits
/// by itself, the end of its log goes to stderr. `$1` is `kafka-run-class`, `$2` the directory.
const WRAPPER: &str = r#"
run_class=$1 dir=$2
exec 3<&0
"$run_class" kafka.Kafka "$dir/server.properties" >"$dir/server.log" 2>&1 &
pid=$!
( read -r _ <&3; kill -9 "$pid" 2>/dev/null ) &
watcher=$!
wait "$pid" 2>/dev/null
status=$?
kill "$watcher" 2>/dev/null
if [ "$status" -ne 137 ]; then
  echo "Apache Kafka exited with status $status; the end of $dir/server.log:" >&2
  tail -n 40 "$dir/server.log" >&2
fi
rm -rf "$dir"
exit "$status"
"#;

/// A single-node KRaft cluster tuned for tests: no initial rebalance delay, internal topics with
/// one replica and few partitions, no automatic topic creation (provisioning must create every
/// topic through the Admin API), and transactions abandoned by a killed producer aborted within
/// 2 s of their timeout (the broker checks every 10 s by default).
fn server_properties(port: u16, controller_port: u16, data: &Path) -> String {
    format!(
        "process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
transaction.abort.timed.out.transaction.cleanup.interval.ms=2000
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
",
        data = data.display()
    )
}

/// A KRaft cluster id: 16 random bytes, base64url without padding (what `random-uuid` prints).
///
/// Like Kafka's `Uuid.randomUuid`, it never starts with `-`: one id in 64 would, and
/// `kafka-storage format --cluster-id -…` reads such an id as an option and fails.
pub(crate) fn cluster_id() -> String {
    use base64::Engine;
    loop {
        let id =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        if !id.starts_with('-') {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_ids_are_16_bytes_and_never_look_like_an_option() {
        use base64::Engine;
        let ids: Vec<String> = (0..10_000).map(|_| super::cluster_id()).collect();
        for id in &ids {
            assert!(!id.starts_with('-'), "{id}");
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(id)
                .unwrap();
            assert_eq!(bytes.len(), 16, "{id}");
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
