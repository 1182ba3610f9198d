//! **Simulator**: the applications of the slide, on their hosts, writing logs the way real ones
//! do, shipped by **our forwarder** ([`crate::forwarder`], in this process, one per host), and
//! their request latencies as metric samples on `application_metrics`.
//!
//! | application | hosts | writes | how it reaches `application_logs` |
//! |---|---|---|---|
//! | `checkout` | web-1, web-2, web-3 | JSON lines (`time`, `level`, `service`, `host`, `msg`, …) | `<dir>/<host>/checkout.log`, tailed by the host's forwarder |
//! | `search` | web-1, web-2, web-3 | nginx access log (combined format; 5xx is an error) | `<dir>/<host>/search.log`, tailed by the host's forwarder |
//! | `auth` | auth-1, auth-2 | RFC 5424 syslog lines | `<dir>/<host>/auth.log`, tailed by the host's forwarder |
//! | `payments` | pay-1, pay-2 | RFC 5424 syslog | over TCP (one message per line) to a syslog forwarder |
//!
//! * **Lines**: every [`TICK`] at the rate of the moment (`--rate`, or `casestudies up`'s knob,
//!   read every tick; 0 pauses), each to an application by its [`App::share`] and a host of it at
//!   random. A line is an error with the application's [`App::error_rate`] (1–2 %), a warning
//!   with [`WARNING_RATE`], else info. A log file is rotated (renamed to `.1`, recreated, as
//!   logrotate's `create` does) past [`ROTATE_BYTES`]: the forwarder follows.
//! * **Metrics**: every line is a request with a latency; each second, each application/host
//!   sends its latencies as one record of [`MetricSample`]s named [`LATENCY_METRIC`] (label
//!   `service`), keyed `application/host`: the metrics aggregation gives p50/p99 per minute.
//! * **Incident** ([`Incident`]): from `--incident-after`, for `--incident-for`, again every
//!   `--incident-every`, one application (`--incident-service`, payments) fails
//!   `--incident-error-rate` (30 %) of its requests, three times slower — enough minutes over
//!   the alert rule's threshold (5 % for 3 minutes) for an alert to fire, and then resolve.
//!
//! Every choice comes from one generator seeded by `--seed`; only the times are the clock's.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use shared::{EventProducer, Kafka};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::events::{Level, MetricSample, log_key};
use crate::forwarder::{ForwardArgs, Forwarder};
use crate::topics::APPLICATION_METRICS;

/// How often lines are generated.
pub const TICK: Duration = Duration::from_millis(100);
/// How often each application/host sends its latencies.
pub const METRICS_EVERY: Duration = Duration::from_secs(1);
/// The metric every request is a sample of (seconds).
pub const LATENCY_METRIC: &str = "http_request_duration_seconds";
/// The share of lines that are warnings.
pub const WARNING_RATE: f64 = 0.03;
/// At stop, how long the forwarders may take to read the last lines written.
pub const DRAIN: Duration = Duration::from_secs(10);
/// A log file is rotated past this size.
pub const ROTATE_BYTES: u64 = 16 * 1024 * 1024;

/// How an application's lines are written and shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// JSON lines to a file.
    JsonFile,
    /// nginx access log (combined format) to a file.
    AccessLogFile,
    /// RFC 5424 lines to a file.
    SyslogFile,
    /// RFC 5424 over syslog TCP.
    SyslogTcp,
}

/// What `writes` writes, for people.
pub fn describe(writes: Writes) -> &'static str {
    match writes {
        Writes::JsonFile => "JSON lines to a file",
        Writes::AccessLogFile => "nginx access log to a file",
        Writes::SyslogFile => "RFC 5424 lines to a file",
        Writes::SyslogTcp => "RFC 5424 over syslog TCP",
    }
}

/// A simulated application.
#[derive(Debug, Clone, Copy)]
pub struct App {
    pub service: &'static str,
    pub hosts: &'static [&'static str],
    pub writes: Writes,
    /// Its share of the lines.
    pub share: f64,
    /// The share of its requests that fail, outside an incident.
    pub error_rate: f64,
    /// Its typical latency, in milliseconds.
    pub latency_ms: f64,
}

pub const APPS: &[App] = &[
    App {
        service: "checkout",
        hosts: &["web-1", "web-2", "web-3"],
        writes: Writes::JsonFile,
        share: 0.30,
        error_rate: 0.01,
        latency_ms: 120.0,
    },
    App {
        service: "search",
        hosts: &["web-1", "web-2", "web-3"],
        writes: Writes::AccessLogFile,
        share: 0.40,
        error_rate: 0.01,
        latency_ms: 40.0,
    },
    App {
        service: "auth",
        hosts: &["auth-1", "auth-2"],
        writes: Writes::SyslogFile,
        share: 0.15,
        error_rate: 0.02,
        latency_ms: 25.0,
    },
    App {
        service: "payments",
        hosts: &["pay-1", "pay-2"],
        writes: Writes::SyslogTcp,
        share: 0.15,
        error_rate: 0.01,
        latency_ms: 250.0,
    },
];

/// One application's bad spell: from `after`, for `lasting`, again every `every`.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub service: String,
    pub after: Duration,
    pub lasting: Duration,
    pub every: Duration,
    pub error_rate: f64,
}

impl Incident {
    /// Whether `elapsed` into the run is inside the incident.
    pub fn active(&self, elapsed: Duration) -> bool {
        let Some(into) = elapsed.checked_sub(self.after) else {
            return false;
        };
        let every = self.every.as_millis().max(1);
        into.as_millis() % every < self.lasting.as_millis()
    }

    /// The error rate of `app` `elapsed` into the run.
    pub fn error_rate(&self, app: &App, elapsed: Duration) -> f64 {
        if app.service == self.service && self.active(elapsed) {
            self.error_rate
        } else {
            app.error_rate
        }
    }

    /// How slow `app` is `elapsed` into the run (3× during its incident).
    pub fn slowdown(&self, app: &App, elapsed: Duration) -> f64 {
        if app.service == self.service && self.active(elapsed) {
            3.0
        } else {
            1.0
        }
    }

    /// One line for people: what happens when.
    pub fn describe(&self) -> String {
        format!(
            "{} fails {:.0} % of its requests from {} for {}, again every {}",
            self.service,
            self.error_rate * 100.0,
            humantime::format_duration(self.after),
            humantime::format_duration(self.lasting),
            humantime::format_duration(self.every)
        )
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct SimulationArgs {
    /// Log lines per second, all applications together.
    #[arg(long, default_value_t = 40.0)]
    pub rate: f64,
    /// The application that has an incident.
    #[arg(long, default_value = "payments")]
    pub incident_service: String,
    /// When its first incident starts…
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub incident_after: Duration,
    /// …how long it lasts…
    #[arg(long, default_value = "4m", value_parser = humantime::parse_duration)]
    pub incident_for: Duration,
    /// …how often it comes back…
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub incident_every: Duration,
    /// …and the share of its requests that fail meanwhile.
    #[arg(long, default_value_t = 0.3)]
    pub incident_error_rate: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl Default for SimulationArgs {
    /// The command line's defaults.
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let matches = SimulationArgs::augment_args(clap::Command::new("simulate"))
            .try_get_matches_from(["simulate"])
            .expect("the defaults parse");
        SimulationArgs::from_arg_matches(&matches).expect("the defaults parse")
    }
}

impl SimulationArgs {
    /// The options, writing log files under `dir`.
    pub fn options(&self, dir: PathBuf) -> anyhow::Result<SimulatorOptions> {
        anyhow::ensure!(
            self.rate.is_finite() && self.rate >= 0.0,
            "--rate must be a number, 0 or more"
        );
        anyhow::ensure!(
            APPS.iter().any(|a| a.service == self.incident_service),
            "--incident-service must be one of {}",
            APPS.iter()
                .map(|a| a.service)
                .collect::<Vec<_>>()
                .join(", ")
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.incident_error_rate),
            "--incident-error-rate must be 0 to 1"
        );
        anyhow::ensure!(
            !self.incident_every.is_zero() && self.incident_for <= self.incident_every,
            "--incident-every must be positive and at least --incident-for"
        );
        Ok(SimulatorOptions {
            dir,
            rate: self.rate,
            knob: None,
            incident: Incident {
                service: self.incident_service.clone(),
                after: self.incident_after,
                lasting: self.incident_for,
                every: self.incident_every,
                error_rate: self.incident_error_rate,
            },
            seed: self.seed,
        })
    }
}

/// What the simulator does.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// Where the hosts' log files and the forwarders' positions are.
    pub dir: PathBuf,
    /// Lines per second, unless [`SimulatorOptions::knob`] is set.
    pub rate: f64,
    /// Lines per second, read as it goes (`casestudies up`'s knob; 0 pauses).
    pub knob: Option<shared::live::Knob>,
    pub incident: Incident,
    pub seed: u64,
}

impl SimulatorOptions {
    pub fn rate_now(&self) -> f64 {
        self.knob.as_ref().map_or(self.rate, |k| k.get())
    }
}

/// What the simulator wrote, per application.
#[derive(Debug, Default)]
pub struct AppStats {
    pub lines: AtomicU64,
    pub errors: AtomicU64,
}

/// What happened so far.
#[derive(Debug)]
pub struct SimulatorStats {
    /// Per application, in [`APPS`]' order.
    pub apps: Vec<(&'static str, AppStats)>,
    /// Metric samples acknowledged by the broker.
    pub samples: AtomicU64,
    /// Metric records the broker refused.
    pub samples_failed: AtomicU64,
    /// Whether the incident is on now.
    pub incident_active: std::sync::atomic::AtomicBool,
}

impl Default for SimulatorStats {
    fn default() -> Self {
        SimulatorStats {
            apps: APPS
                .iter()
                .map(|a| (a.service, AppStats::default()))
                .collect(),
            samples: AtomicU64::new(0),
            samples_failed: AtomicU64::new(0),
            incident_active: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl SimulatorStats {
    /// Lines written, every application together.
    pub fn lines(&self) -> u64 {
        self.apps
            .iter()
            .map(|(_, s)| s.lines.load(Ordering::Relaxed))
            .sum()
    }

    pub fn incident_active(&self) -> bool {
        self.incident_active.load(Ordering::Relaxed)
    }

    /// One line: lines and errors per application, samples.
    pub fn totals(&self) -> String {
        let apps: Vec<String> = self
            .apps
            .iter()
            .map(|(name, s)| {
                format!(
                    "{name} {} ({} errors)",
                    s.lines.load(Ordering::Relaxed),
                    s.errors.load(Ordering::Relaxed)
                )
            })
            .collect();
        format!(
            "{} lines written: {}; {} latency samples sent",
            self.lines(),
            apps.join(", "),
            self.samples.load(Ordering::Relaxed)
        )
    }
}

/// One simulated request's log line.
#[derive(Debug, Clone)]
pub struct SimLine {
    pub app: &'static App,
    pub host: &'static str,
    pub level: Level,
    /// Seconds.
    pub latency: f64,
    /// The line as the application writes it (no newline).
    pub text: String,
}

/// One of `APPS` by share.
fn pick_app(rng: &mut impl Rng) -> &'static App {
    let mut roll = rng.random::<f64>() * APPS.iter().map(|a| a.share).sum::<f64>();
    for app in APPS {
        if roll < app.share {
            return app;
        }
        roll -= app.share;
    }
    &APPS[APPS.len() - 1]
}

/// A line of one request at `now`, `elapsed` into the run.
pub fn line(
    rng: &mut impl Rng,
    incident: &Incident,
    elapsed: Duration,
    now: DateTime<Utc>,
) -> SimLine {
    let app = pick_app(rng);
    let host = app.hosts[rng.random_range(0..app.hosts.len())];
    let roll = rng.random::<f64>();
    let error_rate = incident.error_rate(app, elapsed);
    let level = if roll < error_rate {
        Level::Error
    } else if roll < error_rate + WARNING_RATE {
        Level::Warning
    } else {
        Level::Info
    };
    // Mostly around the typical latency, one in twenty four times slower.
    let tail = if rng.random_bool(0.05) { 4.0 } else { 1.0 };
    let latency = app.latency_ms * (0.5 + rng.random::<f64>()) * tail / 1000.0
        * incident.slowdown(app, elapsed);
    let text = match app.writes {
        Writes::JsonFile => json_line(rng, app, host, level, latency, now),
        Writes::AccessLogFile => access_line(rng, level, latency, now),
        Writes::SyslogFile | Writes::SyslogTcp => syslog_line(rng, app, host, level, latency, now),
    };
    SimLine {
        app,
        host,
        level,
        latency,
        text,
    }
}

fn json_line(
    rng: &mut impl Rng,
    app: &App,
    host: &str,
    level: Level,
    latency: f64,
    now: DateTime<Utc>,
) -> String {
    let order = format!("o-{:06}", rng.random_range(0..1_000_000));
    let msg = match level {
        Level::Error => "payment authorization failed: upstream timeout",
        Level::Warning => "cart total recomputed: price changed",
        _ => "order placed",
    };
    json!({
        "time": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "level": level.as_str(),
        "service": app.service,
        "host": host,
        "msg": msg,
        "order_id": order,
        "latency_ms": (latency * 1000.0).round(),
        "trace_id": format!("{:016x}", rng.random::<u64>()),
    })
    .to_string()
}

fn access_line(rng: &mut impl Rng, level: Level, latency: f64, now: DateTime<Utc>) -> String {
    const TERMS: &[&str] = &["shoes", "jacket", "kafka", "tent", "lamp", "socks"];
    let status = match level {
        Level::Error => [500, 502, 503][rng.random_range(0..3)],
        Level::Warning => [404, 429][rng.random_range(0..2)],
        _ => 200,
    };
    format!(
        "10.0.{}.{} - - [{}] \"GET /search?q={} HTTP/1.1\" {status} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" {:.3}",
        rng.random_range(0..8),
        rng.random_range(1..255),
        now.format("%d/%b/%Y:%H:%M:%S +0000"),
        TERMS[rng.random_range(0..TERMS.len())],
        rng.random_range(200..20_000),
        latency
    )
}

fn syslog_line(
    rng: &mut impl Rng,
    app: &App,
    host: &str,
    level: Level,
    latency: f64,
    now: DateTime<Utc>,
) -> String {
    // Facility: auth (4) for auth, local0 (16) for the others.
    let facility = if app.service == "auth" { 4 } else { 16 };
    let severity = match level {
        Level::Error => 3,
        Level::Warning => 4,
        _ => 6,
    };
    let user = format!("u{:05}", rng.random_range(0..50_000));
    let (msgid, msg) = match (app.service, level) {
        ("auth", Level::Error) => ("login", format!("login failed for {user}: backend error")),
        ("auth", Level::Warning) => ("login", format!("wrong password for {user}")),
        ("auth", _) => ("login", format!("{user} logged in")),
        (_, Level::Error) => (
            "charge",
            format!("charge declined for {user}: acquirer unavailable"),
        ),
        (_, Level::Warning) => ("charge", format!("charge retried for {user}")),
        _ => ("charge", format!("charged {user}")),
    };
    format!(
        "<{}>1 {} {host} {} {} {msgid} [req latency_ms=\"{}\"] {msg}",
        facility * 8 + severity,
        now.to_rfc3339_opts(SecondsFormat::Millis, true),
        app.service,
        1000 + rng.random_range(0..9000),
        (latency * 1000.0).round(),
    )
}

/// An application's log file on a host, rotated past [`ROTATE_BYTES`].
struct LogFile {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    written: u64,
}

impl LogFile {
    fn open(path: PathBuf) -> anyhow::Result<LogFile> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|err| anyhow::anyhow!("cannot open {}: {err}", path.display()))?;
        let written = file.metadata()?.len();
        Ok(LogFile {
            path,
            file: std::io::BufWriter::new(file),
            written,
        })
    }

    fn write(&mut self, line: &str) -> anyhow::Result<()> {
        if self.written >= ROTATE_BYTES {
            self.file.flush()?;
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, &rotated)?;
            *self = LogFile::open(self.path.clone())?;
        }
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.written += line.len() as u64 + 1;
        Ok(())
    }
}

/// The log file of `service` on `host` under `dir`.
pub fn log_path(dir: &Path, host: &str, service: &str) -> PathBuf {
    dir.join(host).join(format!("{service}.log"))
}

/// The forwarders: one per host that has log files (tailing them, keyed `<service>/<host>`),
/// and one syslog collector on a free TCP port.
async fn forwarders(
    kafka: &Kafka,
    dir: &Path,
    stop: &CancellationToken,
) -> anyhow::Result<(Vec<Forwarder>, std::net::SocketAddr)> {
    let mut hosts: BTreeMap<&str, Vec<PathBuf>> = BTreeMap::new();
    for app in APPS.iter().filter(|a| a.writes != Writes::SyslogTcp) {
        for host in app.hosts {
            let path = log_path(dir, host, app.service);
            std::fs::create_dir_all(dir.join(host))?;
            LogFile::open(path.clone())?;
            hosts.entry(host).or_default().push(path);
        }
    }
    let mut running = Vec::new();
    for (host, files) in hosts {
        let args = ForwardArgs {
            files,
            host: Some(host.to_owned()),
            ..ForwardArgs::new(dir.join(host))
        };
        running.push(Forwarder::start(kafka, &args, stop.clone()).await?);
    }
    let args = ForwardArgs {
        syslog_tcp: Some("127.0.0.1:0".parse()?),
        ..ForwardArgs::new(dir.join("syslog-collector"))
    };
    let collector = Forwarder::start(kafka, &args, stop.clone()).await?;
    let tcp = collector
        .syslog_tcp()
        .ok_or_else(|| anyhow::anyhow!("the syslog collector has no TCP address"))?;
    running.push(collector);
    Ok((running, tcp))
}

/// Writes lines and sends latencies until `stop`, then stops the forwarders once they read
/// every line written (at most [`DRAIN`]): they ship what they read before they stop.
pub async fn simulate(
    kafka: Kafka,
    options: SimulatorOptions,
    stats: Arc<SimulatorStats>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.dir)
        .map_err(|err| anyhow::anyhow!("cannot create {}: {err}", options.dir.display()))?;
    shared::provision(&kafka, &[APPLICATION_METRICS]).await?;
    let forwarders_stop = CancellationToken::new();
    let (forwarders, syslog) = forwarders(&kafka, &options.dir, &forwarders_stop).await?;
    let result = run(&kafka, &options, &stats, syslog, &stop).await;
    // A forwarder that stops leaves what it has not read yet for its next start: the lines
    // written are read first (for at most DRAIN), then shipped as the forwarders stop.
    let deadline = Instant::now() + DRAIN;
    while forwarders.iter().map(|f| f.stats().accepted()).sum::<u64>() < stats.lines()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    forwarders_stop.cancel();
    for forwarder in forwarders {
        if let Err(err) = forwarder.join().await {
            tracing::warn!(err = format!("{err:#}"), "simulator: forwarder");
        }
    }
    result
}

async fn run(
    kafka: &Kafka,
    options: &SimulatorOptions,
    stats: &Arc<SimulatorStats>,
    syslog: std::net::SocketAddr,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let mut tcp = tokio::net::TcpStream::connect(syslog).await?;
    let producer = EventProducer::new(kafka)?;
    let metrics = kafka.topic(&APPLICATION_METRICS);
    let mut files: BTreeMap<PathBuf, LogFile> = BTreeMap::new();
    let mut samples: BTreeMap<(&'static str, &'static str), Vec<MetricSample>> = BTreeMap::new();
    let mut rng = StdRng::seed_from_u64(options.seed);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut owed, mut last, mut last_metrics) = (0.0f64, Instant::now(), Instant::now());
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        owed += options.rate_now() * (now - last).as_secs_f64();
        last = now;
        let n = owed.floor() as usize;
        owed -= n as f64;
        let elapsed = started.elapsed();
        stats
            .incident_active
            .store(options.incident.active(elapsed), Ordering::Relaxed);
        let at = Utc::now();
        let mut to_syslog = String::new();
        // Lines sent over TCP count once written: a stop may cut the write short.
        let mut over_tcp = Vec::new();
        for _ in 0..n {
            let line = line(&mut rng, &options.incident, elapsed, at);
            if line.app.writes == Writes::SyslogTcp {
                to_syslog.push_str(&line.text);
                to_syslog.push('\n');
                over_tcp.push(line);
                continue;
            }
            let path = log_path(&options.dir, line.host, line.app.service);
            let file = match files.entry(path) {
                std::collections::btree_map::Entry::Occupied(file) => file.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => {
                    let file = LogFile::open(entry.key().clone())?;
                    entry.insert(file)
                }
            };
            file.write(&line.text)?;
            written(stats, &mut samples, &line, at);
        }
        for file in files.values_mut() {
            file.file.flush()?;
        }
        if !to_syslog.is_empty() {
            // Blocks while the forwarder has --max-in-flight lines unacknowledged: back-pressure.
            tokio::select! {
                () = stop.cancelled() => break,
                result = tcp.write_all(to_syslog.as_bytes()) => result?,
            }
            for line in &over_tcp {
                written(stats, &mut samples, line, at);
            }
        }
        if last_metrics.elapsed() >= METRICS_EVERY {
            last_metrics = Instant::now();
            send_samples(&producer, &metrics, std::mem::take(&mut samples), stats)?;
        }
    }
    // The latencies of the last second too.
    send_samples(&producer, &metrics, samples, stats)?;
    tcp.shutdown().await.ok();
    let flush = producer.clone();
    tokio::task::spawn_blocking(move || flush.flush(Duration::from_secs(10))).await??;
    Ok(())
}

/// Counts a line written, and its latency as a sample to send.
fn written(
    stats: &SimulatorStats,
    samples: &mut BTreeMap<(&'static str, &'static str), Vec<MetricSample>>,
    line: &SimLine,
    at: DateTime<Utc>,
) {
    let index = APPS
        .iter()
        .position(|a| a.service == line.app.service)
        .unwrap_or(0);
    let app_stats = &stats.apps[index].1;
    app_stats.lines.fetch_add(1, Ordering::Relaxed);
    app_stats
        .errors
        .fetch_add(u64::from(line.level.is_error()), Ordering::Relaxed);
    samples
        .entry((line.app.service, line.host))
        .or_default()
        .push(MetricSample {
            name: LATENCY_METRIC.to_owned(),
            labels: [("service".to_owned(), line.app.service.to_owned())].into(),
            value: line.latency,
            time: at,
        });
}

/// One record per application/host: its requests' latencies, keyed `application/host`.
fn send_samples(
    producer: &EventProducer,
    topic: &str,
    samples: BTreeMap<(&'static str, &'static str), Vec<MetricSample>>,
    stats: &Arc<SimulatorStats>,
) -> anyhow::Result<()> {
    for ((service, host), batch) in samples {
        let payload = serde_json::to_vec(&batch)?;
        let count = batch.len() as u64;
        let time = batch.last().map(|s| s.time.timestamp_millis());
        let delivery = producer.enqueue(
            topic,
            Some(log_key(service, host).as_bytes()),
            Some(&payload),
            time,
        );
        let stats = Arc::clone(stats);
        tokio::spawn(async move {
            let delivered = match delivery {
                Ok(delivery) => delivery.await.is_ok(),
                Err(_) => false,
            };
            if delivered {
                stats.samples.fetch_add(count, Ordering::Relaxed);
            } else {
                stats.samples_failed.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Format;
    use crate::log_parser::{Origin, parse_line};

    fn incident() -> Incident {
        SimulationArgs::default()
            .options("data".into())
            .unwrap()
            .incident
    }

    #[test]
    fn the_incident_comes_after_a_while_lasts_and_comes_back() {
        let incident = incident();
        assert_eq!(incident.service, "payments");
        let minutes = |m: u64| Duration::from_secs(60 * m);
        assert!(!incident.active(Duration::ZERO));
        assert!(!incident.active(minutes(1) - Duration::from_millis(1)));
        assert!(incident.active(minutes(1)));
        assert!(incident.active(minutes(5) - Duration::from_millis(1)));
        assert!(!incident.active(minutes(5)));
        assert!(!incident.active(minutes(15)));
        assert!(incident.active(minutes(16)));
    }

    /// Simulated lines through the real parser: each application's format, its service and host,
    /// and its level; then the error share per application, outside and inside the incident.
    #[test]
    fn the_incident_raises_one_services_error_rate_and_the_others_stay_low() {
        let incident = incident();
        let mut rng = StdRng::seed_from_u64(7);
        let now = Utc::now();
        let mut error_share = |elapsed: Duration| {
            let mut counts: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            for i in 0..20_000 {
                let line = line(&mut rng, &incident, elapsed, now);
                let key = log_key(line.app.service, line.host);
                let record = parse_line(
                    line.text.as_bytes(),
                    &Origin {
                        key: Some(&key),
                        topic: "logging.application_logs",
                        partition: 0,
                        offset: i,
                        timestamp_ms: Some(now.timestamp_millis()),
                    },
                );
                let format = match line.app.writes {
                    Writes::JsonFile => Format::Json,
                    Writes::AccessLogFile => Format::AccessLog,
                    Writes::SyslogFile | Writes::SyslogTcp => Format::Rfc5424,
                };
                assert_eq!(record.format, format, "{}: {record:?}", line.text);
                assert_eq!(
                    (record.service.as_str(), record.host.as_str(), record.level),
                    (line.app.service, line.host, line.level),
                    "{}",
                    line.text
                );
                assert!(
                    (record.time - now).num_seconds().abs() <= 1,
                    "{}",
                    line.text
                );
                let count = counts.entry(line.app.service).or_default();
                count.0 += 1;
                count.1 += u64::from(record.level.is_error());
            }
            assert_eq!(counts.len(), APPS.len(), "every application logs");
            counts
                .into_iter()
                .map(|(service, (lines, errors))| (service, errors as f64 / lines as f64))
                .collect::<BTreeMap<_, _>>()
        };
        let calm = error_share(Duration::from_secs(10));
        for (service, share) in &calm {
            assert!(*share < 0.04, "{service}: {share}");
        }
        let incident_on = error_share(Duration::from_secs(120));
        for (service, share) in &incident_on {
            if *service == "payments" {
                assert!((0.26..0.34).contains(share), "{service}: {share}");
            } else {
                assert!(*share < 0.04, "{service}: {share}");
            }
        }
    }

    #[test]
    fn the_same_seed_writes_the_same_lines() {
        let incident = incident();
        let now = Utc::now();
        let lines = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|_| line(&mut rng, &incident, Duration::ZERO, now).text)
                .collect::<Vec<_>>()
        };
        assert_eq!(lines(1), lines(1));
        assert_ne!(lines(1), lines(2));
    }

    #[test]
    fn options_are_checked() {
        let args = SimulationArgs::default();
        assert_eq!(args.rate, 40.0);
        let bad = [
            SimulationArgs {
                rate: -1.0,
                ..args.clone()
            },
            SimulationArgs {
                incident_service: "nope".into(),
                ..args.clone()
            },
            SimulationArgs {
                incident_error_rate: 1.5,
                ..args.clone()
            },
            SimulationArgs {
                incident_every: Duration::from_secs(60),
                ..args.clone()
            },
        ];
        for args in bad {
            assert!(args.options("d".into()).is_err(), "{args:?}");
        }
        let knob = shared::live::Knob::new("lines/s", 10.0, 0.0, 100.0);
        let options = SimulatorOptions {
            knob: Some(knob.clone()),
            ..args.options("d".into()).unwrap()
        };
        assert_eq!(options.rate_now(), 10.0);
        knob.set(0.0).unwrap();
        assert_eq!(options.rate_now(), 0.0, "0 pauses");
    }
}
