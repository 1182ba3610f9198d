//! **Our log forwarder** (`logging forward`): tails log files and accepts syslog over TCP and
//! UDP, and produces every line to `application_logs`, keyed `application/host`.
//!
//! ```text
//! files (--file, rotation-safe) ─┐
//! syslog TCP (--syslog-tcp)     ─┼─▶ [at most --max-in-flight lines unacknowledged] ─▶ application_logs
//! syslog UDP (--syslog-udp)     ─┘                                         positions ◀─ acknowledgements
//! ```
//!
//! | concern | file |
//! |---|---|
//! | tailing a path: new lines, rename/recreate, truncation, long lines | [`files`] |
//! | read positions, saved atomically | [`positions`] |
//! | syslog TCP (octet counting or newlines) and UDP | [`syslog`] |
//! | the in-flight bound, shipping in order, acknowledgements | [`shipper`] |
//!
//! **Keys.** A file's lines are keyed `--app/--host`: `--app` defaults to the file's name
//! without its extension (`checkout.log` → `checkout`), `--host` to this machine's hostname. A
//! syslog message is keyed by its own APP-NAME and HOSTNAME ([`syslog::syslog_key`]). One
//! key is one partition: a file's lines, and an application's messages from one host, stay in
//! order.
//!
//! **Back-pressure, not a queue.** At most `--max-in-flight` lines (10,000) are accepted and not
//! yet acknowledged by the broker. With all of them taken, files are not read and TCP
//! connections not read (their senders block); UDP datagrams are dropped and counted — the one
//! place a line can be lost, because UDP cannot wait. The producer retries a line until the
//! broker takes it (`message.timeout.ms=0`): a broker away for an hour stalls the forwarder, it
//! loses nothing.
//!
//! **Shutdown** (SIGTERM, Ctrl-C): the sources stop reading, every line accepted is awaited
//! until the broker acknowledged it (at most `--flush-timeout`, 30 s), then the positions are
//! saved.
//!
//! **What holds for files** (no line lost, none repeated):
//!
//! * a position is stored only once the broker acknowledged every line up to it, and saved every
//!   second and at shutdown; so after a clean stop, the next start reads exactly the lines after
//!   the last one delivered;
//! * after a crash or `kill -9`, the lines acknowledged since the last save (at most a second's)
//!   are sent again: the only repeats. Nothing is lost;
//! * a file rotated while the forwarder was stopped is found by its inode and read to its end
//!   before the new one;
//! * not covered: lines that `copytruncate` truncates before they were read (inherent to
//!   `copytruncate`), a file truncated and regrown past its old size within one poll, a file
//!   deleted before it was read, and a deleted file's inode reused by a new file at the same path
//!   (read from the old offset).

pub mod files;
pub mod positions;
pub mod shipper;
pub mod syslog;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use shared::{Kafka, KafkaArgs};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::events::log_key;
use crate::topics::APPLICATION_LOGS;
use positions::{POSITIONS_FILE, Positions};
use shipper::{Ack, Failure, PRODUCER_QUEUE, Shipper};

/// The longest line shipped: 900 kB, so a record stays under the 1 MB Kafka accepts by default
/// (librdkafka's `message.max.bytes`, the broker's `message.max.bytes`).
pub const MAX_LINE_BYTES: usize = 900_000;

/// `logging forward`.
#[derive(Debug, Clone, clap::Args)]
pub struct ForwardArgs {
    /// A log file to tail (repeat for more); rotation-safe, resumed where it was left.
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// The application of the files' lines (the key's first part). Default: each file's name
    /// without its extension.
    #[arg(long)]
    pub app: Option<String>,
    /// The host of the files' lines (the key's second part). Default: this machine's hostname.
    #[arg(long)]
    pub host: Option<String>,
    /// Accept syslog over TCP on this address (octet counting or one message per line).
    #[arg(long, value_name = "ADDR")]
    pub syslog_tcp: Option<SocketAddr>,
    /// Accept syslog over UDP on this address (one message per datagram).
    #[arg(long, value_name = "ADDR")]
    pub syslog_udp: Option<SocketAddr>,
    /// Where the read positions are kept (forwarder-positions.json).
    #[arg(long, env = "DATA_DIR", default_value = "data/logging")]
    pub data_dir: PathBuf,
    /// Lines accepted and not yet acknowledged by the broker, at most (then files and TCP wait,
    /// UDP drops).
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// How often files are looked at for new lines, rotation and truncation.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    pub poll: Duration,
    /// How long a rotated file is still read after it last grew.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub rotate_wait: Duration,
    /// On shutdown, how long to wait for the broker to acknowledge the lines accepted.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub flush_timeout: Duration,
    /// The longest line shipped; the rest of a longer one is skipped (and counted).
    #[arg(long, default_value_t = MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
    /// Serve /healthz, /readyz and /metrics (the forwarder's counters) on this address.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

impl ForwardArgs {
    /// The defaults, positions under `data_dir`, no source yet.
    pub fn new(data_dir: impl Into<PathBuf>) -> ForwardArgs {
        ForwardArgs {
            files: Vec::new(),
            app: None,
            host: None,
            syslog_tcp: None,
            syslog_udp: None,
            data_dir: data_dir.into(),
            max_in_flight: 10_000,
            poll: Duration::from_millis(200),
            rotate_wait: Duration::from_secs(1),
            flush_timeout: Duration::from_secs(30),
            max_line_bytes: MAX_LINE_BYTES,
            listen: None,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.files.is_empty() || self.syslog_tcp.is_some() || self.syslog_udp.is_some(),
            "nothing to forward: give --file, --syslog-tcp or --syslog-udp"
        );
        anyhow::ensure!(
            (1..PRODUCER_QUEUE).contains(&self.max_in_flight),
            "--max-in-flight must be 1 to {}",
            PRODUCER_QUEUE - 1
        );
        anyhow::ensure!(
            (1..=MAX_LINE_BYTES).contains(&self.max_line_bytes),
            "--max-line-bytes must be 1 to {MAX_LINE_BYTES}"
        );
        Ok(())
    }
}

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    File,
    Tcp,
    Udp,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Tcp => "tcp",
            Source::Udp => "udp",
        }
    }
}

/// The forwarder's counters (also exported as Prometheus counters, see [`metrics`]).
#[derive(Debug, Default)]
pub struct Stats {
    pub file_lines: AtomicU64,
    pub tcp_messages: AtomicU64,
    pub udp_messages: AtomicU64,
    /// Lines the broker acknowledged.
    pub acknowledged: AtomicU64,
    /// Lines the broker refused for good (the forwarder stopped).
    pub failed: AtomicU64,
    /// UDP datagrams dropped: every permit was taken.
    pub udp_dropped: AtomicU64,
    /// Lines longer than `--max-line-bytes`, cut.
    pub truncated: AtomicU64,
}

impl Stats {
    fn record_line(&self, source: Source) {
        let counter = match source {
            Source::File => &self.file_lines,
            Source::Tcp => &self.tcp_messages,
            Source::Udp => &self.udp_messages,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics()
            .lines
            .get_or_create(&SourceLabels {
                source: source.as_str(),
            })
            .inc();
    }

    pub fn accepted(&self) -> u64 {
        self.file_lines.load(Ordering::Relaxed)
            + self.tcp_messages.load(Ordering::Relaxed)
            + self.udp_messages.load(Ordering::Relaxed)
    }

    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    pub fn udp_dropped(&self) -> u64 {
        self.udp_dropped.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

/// The process's forwarder counters, registered once.
pub struct Metrics {
    lines: Family<SourceLabels, Counter>,
    acknowledged: Counter,
    udp_dropped: Counter,
    truncated: Counter,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let metrics = Metrics {
            lines: Family::default(),
            acknowledged: Counter::default(),
            udp_dropped: Counter::default(),
            truncated: Counter::default(),
        };
        shared::metrics::register(
            "logging_forwarder_lines",
            "Lines accepted by the forwarder, by source (file, tcp, udp)",
            metrics.lines.clone(),
        );
        shared::metrics::register(
            "logging_forwarder_lines_acknowledged",
            "Lines the broker acknowledged",
            metrics.acknowledged.clone(),
        );
        shared::metrics::register(
            "logging_forwarder_udp_dropped",
            "Syslog UDP datagrams dropped because --max-in-flight lines were unacknowledged",
            metrics.udp_dropped.clone(),
        );
        shared::metrics::register(
            "logging_forwarder_lines_truncated",
            "Lines longer than --max-line-bytes, cut",
            metrics.truncated.clone(),
        );
        metrics
    })
}

/// This machine's hostname (`localhost` if it has none).
pub fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and we read up to the first NUL only.
    let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    match std::str::from_utf8(&buffer[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_owned(),
        _ => "localhost".to_owned(),
    }
}

/// The application of a file's lines when `--app` is not given: its name without extension.
pub fn app_of(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A running forwarder.
pub struct Forwarder {
    stats: Arc<Stats>,
    shipper: Shipper,
    positions: Arc<Positions>,
    failure: Failure,
    stop: CancellationToken,
    tailers: Vec<std::thread::JoinHandle<()>>,
    listeners: Vec<JoinHandle<()>>,
    ackers: Vec<JoinHandle<()>>,
    persister: JoinHandle<()>,
    tcp: Option<SocketAddr>,
    udp: Option<SocketAddr>,
    flush_timeout: Duration,
}

/// What a forwarder did, when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub accepted: u64,
    pub acknowledged: u64,
    pub udp_dropped: u64,
}

impl Forwarder {
    /// Provisions `application_logs`, loads the positions and starts every source; runs until
    /// `stop` is cancelled (or a line cannot be delivered), then [`Forwarder::join`] drains it.
    pub async fn start(
        kafka: &Kafka,
        args: &ForwardArgs,
        stop: CancellationToken,
    ) -> anyhow::Result<Forwarder> {
        args.check()?;
        shared::provision(kafka, &[APPLICATION_LOGS]).await?;
        std::fs::create_dir_all(&args.data_dir)
            .map_err(|err| anyhow::anyhow!("cannot create {}: {err}", args.data_dir.display()))?;
        let positions = Arc::new(Positions::load(args.data_dir.join(POSITIONS_FILE))?);
        // Every address is taken before anything starts: a failure here leaves nothing running.
        let tcp_listener =
            match args.syslog_tcp {
                Some(address) => Some(tokio::net::TcpListener::bind(address).await.map_err(
                    |err| anyhow::anyhow!("cannot listen for syslog on tcp {address}: {err}"),
                )?),
                None => None,
            };
        let udp_socket = match args.syslog_udp {
            Some(address) => Some(tokio::net::UdpSocket::bind(address).await.map_err(|err| {
                anyhow::anyhow!("cannot listen for syslog on udp {address}: {err}")
            })?),
            None => None,
        };
        let http_listener = match args.listen {
            Some(address) => Some(
                tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|err| anyhow::anyhow!("cannot listen on {address}: {err}"))?,
            ),
            None => None,
        };
        let stop = stop.child_token();
        let stats = Arc::<Stats>::default();
        metrics();
        let shipper = Shipper::new(
            kafka,
            kafka.topic(&APPLICATION_LOGS),
            args.max_in_flight,
            Arc::clone(&stats),
        )?;
        let failure = Failure::default();
        // Room for every line in flight plus the marks between them: a send never waits long.
        let channel = || mpsc::channel::<Ack>(args.max_in_flight + 1024);
        let mut ackers = Vec::new();
        let mut acker = |rx: mpsc::Receiver<Ack>| {
            ackers.push(tokio::spawn(shipper::acker(
                rx,
                Arc::clone(&positions),
                Arc::clone(&stats),
                failure.clone(),
                stop.clone(),
            )))
        };

        let host = args.host.clone().unwrap_or_else(hostname);
        let mut tailers = Vec::new();
        for path in &args.files {
            let app = args.app.clone().unwrap_or_else(|| app_of(path));
            let (tx, rx) = channel();
            acker(rx);
            let config = files::TailConfig {
                path: path.clone(),
                key: log_key(&app, &host),
                poll: args.poll,
                rotate_wait: args.rotate_wait,
                max_line_bytes: args.max_line_bytes,
            };
            tailers.push(files::spawn(
                config,
                shipper.clone(),
                tx,
                &positions,
                failure.clone(),
                stop.clone(),
            )?);
        }

        let mut listeners = Vec::new();
        let (mut tcp, mut udp) = (None, None);
        if tcp_listener.is_some() || udp_socket.is_some() {
            let (tx, rx) = channel();
            acker(rx);
            if let Some(listener) = tcp_listener {
                tcp = Some(listener.local_addr()?);
                listeners.push(tokio::spawn(syslog::serve_tcp(
                    listener,
                    shipper.clone(),
                    tx.clone(),
                    args.max_line_bytes,
                    failure.clone(),
                    stop.clone(),
                )));
            }
            if let Some(socket) = udp_socket {
                udp = Some(socket.local_addr()?);
                listeners.push(tokio::spawn(syslog::serve_udp(
                    socket,
                    shipper.clone(),
                    tx,
                    args.max_line_bytes,
                    failure.clone(),
                    stop.clone(),
                )));
            }
        }

        if let Some(listener) = http_listener {
            let router = shared::http::finish(shared::http::ops_router(
                shared::http::Readiness::new(kafka)?,
            ));
            let http_stop = stop.clone();
            listeners.push(tokio::spawn(async move {
                if let Err(err) = shared::http::serve(listener, router, http_stop).await {
                    tracing::warn!(%err, "forwarder http");
                }
            }));
        }

        let saved = Arc::clone(&positions);
        let persist_stop = stop.clone();
        let persister = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = persist_stop.cancelled() => return,
                    _ = every.tick() => {
                        let saved = Arc::clone(&saved);
                        match tokio::task::spawn_blocking(move || saved.save_if_changed()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(err)) => tracing::warn!(%err, "forwarder positions"),
                            Err(err) => tracing::warn!(%err, "forwarder positions"),
                        }
                    }
                }
            }
        });
        tracing::info!(
            files = args.files.len(),
            syslog_tcp = ?tcp,
            syslog_udp = ?udp,
            positions = %positions.file().display(),
            max_in_flight = args.max_in_flight,
            "forwarder started"
        );
        Ok(Forwarder {
            stats,
            shipper,
            positions,
            failure,
            stop,
            tailers,
            listeners,
            ackers,
            persister,
            tcp,
            udp,
            flush_timeout: args.flush_timeout,
        })
    }

    /// The address syslog TCP is accepted on (the port chosen when `--syslog-tcp` said 0).
    pub fn syslog_tcp(&self) -> Option<SocketAddr> {
        self.tcp
    }

    pub fn syslog_udp(&self) -> Option<SocketAddr> {
        self.udp
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Lines accepted and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.shipper.in_flight()
    }

    /// Waits for the stop (or a failure), then drains: the sources stop, every line accepted is
    /// awaited until acknowledged (at most the flush timeout), the positions are saved.
    pub async fn join(self) -> anyhow::Result<Report> {
        self.stop.cancelled().await;
        tracing::info!("forwarder stopping: flushing what it accepted");
        for tailer in self.tailers {
            let _ = tokio::task::spawn_blocking(move || tailer.join()).await;
        }
        for listener in self.listeners {
            let _ = listener.await;
        }
        // Every sender is gone now: the ackers end once the last acknowledgement is in.
        let ackers = futures::future::join_all(self.ackers);
        let drained = tokio::time::timeout(self.flush_timeout, ackers).await;
        let unacknowledged = self.shipper.in_flight();
        let _ = self.persister.await;
        let positions = Arc::clone(&self.positions);
        tokio::task::spawn_blocking(move || positions.save()).await??;
        let report = Report {
            accepted: self.stats.accepted(),
            acknowledged: self.stats.acknowledged(),
            udp_dropped: self.stats.udp_dropped(),
        };
        tracing::info!(?report, "forwarder stopped");
        if let Some(reason) = self.failure.get() {
            anyhow::bail!(reason);
        }
        if drained.is_err() {
            anyhow::bail!(
                "{unacknowledged} lines were not acknowledged within {:?}: file lines will be read \
                 again at the next start, syslog messages are lost",
                self.flush_timeout
            );
        }
        Ok(report)
    }
}

/// `logging forward`: until SIGTERM/Ctrl-C.
pub async fn run(
    args: ForwardArgs,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let kafka = Kafka::connect(kafka)?;
    if kafka.is_embedded() {
        tracing::warn!(
            "no KAFKA_BOOTSTRAP_SERVERS: forwarding to a private embedded broker that ends with \
             this process; start `cargo run --release -- broker` and point the forwarder at it"
        );
    }
    let forwarder = Forwarder::start(&kafka, &args, stop).await?;
    println!(
        "logging forward: {} file(s){}{} -> {} (broker {}, positions {})",
        args.files.len(),
        forwarder
            .syslog_tcp()
            .map_or_else(String::new, |a| format!(", syslog tcp {a}")),
        forwarder
            .syslog_udp()
            .map_or_else(String::new, |a| format!(", syslog udp {a}")),
        kafka.topic(&APPLICATION_LOGS),
        kafka.bootstrap_servers(),
        args.data_dir.join(POSITIONS_FILE).display()
    );
    let report = forwarder.join().await?;
    println!(
        "logging forward: {} lines accepted, {} acknowledged, {} UDP datagrams dropped",
        report.accepted, report.acknowledged, report.udp_dropped
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_keyed_by_their_name_and_this_host() {
        assert_eq!(
            app_of(std::path::Path::new("/var/log/checkout.log")),
            "checkout"
        );
        assert_eq!(
            app_of(std::path::Path::new("nginx-access.log.1")),
            "nginx-access.log"
        );
        assert!(!hostname().is_empty());
    }

    #[test]
    fn a_forwarder_needs_a_source_and_sane_bounds() {
        let args = ForwardArgs::new("data");
        assert!(
            args.check()
                .unwrap_err()
                .to_string()
                .contains("nothing to forward")
        );
        let mut args = ForwardArgs {
            files: vec!["a.log".into()],
            ..args
        };
        assert!(args.check().is_ok());
        args.max_in_flight = 0;
        assert!(args.check().is_err());
        args.max_in_flight = 10;
        args.max_line_bytes = MAX_LINE_BYTES + 1;
        assert!(args.check().is_err());
    }
}
