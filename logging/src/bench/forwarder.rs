//! `logging bench forwarder`: one file of realistic log lines (RFC 5424 syslog and combined
//! access-log lines, half each, ~140 bytes) shipped to `application_logs` by our forwarder
//! (in this process, as `logging forward --file` runs it), then by rsyslog (`imfile` →
//! `omkafka`, a child process with `logging/config/rsyslog.conf`), to the same broker, each on
//! a topic of its own.
//!
//! **What is timed**: from the moment the file appears at the path the forwarder (or rsyslog)
//! was told to follow — both already running, connected and waiting — until the topic's high
//! watermarks add up to every line (the broker has them all, acknowledged: both producers run
//! `acks=all`, idempotent, so there are no duplicates to count). Start-up is not timed.
//!
//! **Fair settings**: both producers use the same librdkafka settings (`acks=all`,
//! idempotence, lz4, `linger.ms=20`; rsyslog's are in its configuration); both read the file
//! from its start, one key (`bench/<host>`), so one partition, for both. rsyslog's queue is
//! its shipped one (in memory, disk-assisted past 80,000 messages, batches of 1,024 to omkafka).
//!
//! **Also reported**: when the first lines reached the broker (rsyslog sees the file appear
//! through inotify; ours looks every `--poll`, 200 ms, so it starts 0-200 ms later), and the
//! steady rate from then to the last line (the lines after the first count over the time after
//! it, at the 20 ms the watermarks are read), and the CPU time of this process and of rsyslogd
//! meanwhile.
//!
//! **Fair order**: the runs go in rounds, ours first in odd rounds and rsyslog first in even
//! ones (ABBA), so neither always meets the broker cold (a JVM broker's JIT warms up during
//! the first run). The ratios are of the totals over every round.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;

use crate::collectors::rsyslog::{FileInput, Rsyslog};
use crate::forwarder::{ForwardArgs, Forwarder};
use crate::topics::APPLICATION_LOGS;

/// `logging bench forwarder`.
#[derive(Debug, Clone, clap::Args)]
pub struct ForwarderBenchArgs {
    /// Lines in the file.
    #[arg(long, default_value_t = 1_000_000)]
    pub lines: u64,
    /// Where the file, the forwarder's positions and rsyslog's work directory go (a temporary
    /// directory, removed afterwards, when not given).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// How long one shipper may take before the run fails.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Our forwarder's `--max-in-flight` (lines unacknowledged, at most).
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Only our forwarder (no rsyslog).
    #[arg(long)]
    pub without_rsyslog: bool,
    /// Rounds of one run each; ours goes first in odd rounds, rsyslog in even ones.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
}

/// `lines` over `after`; `None` when either is zero.
fn steady_rate(after: Duration, lines: u64) -> Option<f64> {
    (lines > 0 && !after.is_zero()).then(|| lines as f64 / after.as_secs_f64())
}

/// A rate as a whole number, or `-` when there is none.
fn rate_text(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_owned(), |rate| format!("{rate:.0}"))
}

/// The application of the file's lines (the key's first part, for both shippers).
const APP: &str = "bench";

/// Line `n` of the file: even lines RFC 5424, odd lines combined access-log lines.
pub fn line(n: u64) -> String {
    let second = n / 1000 % 60;
    let millis = n % 1000;
    if n.is_multiple_of(2) {
        let severity = [6, 6, 6, 5, 4, 3][(n / 2 % 6) as usize];
        format!(
            "<{}>1 2026-03-01T12:00:{second:02}.{millis:03}Z web-{} checkout {} - - order {n} \
             paid in {} ms by card ending {:04}",
            16 * 8 + severity,
            n % 7,
            4000 + n % 13,
            n % 900 + 10,
            n % 10_000
        )
    } else {
        let status = [200, 200, 200, 304, 404, 502][(n / 2 % 6) as usize];
        format!(
            "203.0.113.{} - - [01/Mar/2026:12:00:{second:02} +0000] \"GET /api/items/{n} HTTP/1.1\" \
             {status} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"",
            n % 250 + 1,
            n % 5000 + 100
        )
    }
}

/// Writes `lines` lines to `path`; its size in bytes.
fn generate(path: &Path, lines: u64) -> anyhow::Result<u64> {
    let mut file = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut bytes = 0;
    for n in 0..lines {
        let line = line(n);
        bytes += line.len() as u64 + 1;
        writeln!(file, "{line}")?;
    }
    file.into_inner()?.sync_all()?;
    Ok(bytes)
}

/// The sum of the topic's high watermarks: the records the broker has.
fn records_on(consumer: &BaseConsumer, topic: &str, partitions: i32) -> anyhow::Result<i64> {
    let mut total = 0;
    for partition in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        total += high;
    }
    Ok(total)
}

/// One shipper's run: how long until the broker had every line, and the CPU time spent
/// meanwhile.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured {
    pub elapsed: Duration,
    /// When the broker first had some lines (after the start)…
    pub first: Duration,
    /// …and how many.
    pub first_lines: u64,
    /// This process: our forwarder in its run, and an embedded broker (if any) in both.
    pub cpu_self: Option<Duration>,
    /// rsyslogd, in its run.
    pub cpu_rsyslogd: Option<Duration>,
}

impl Measured {
    pub fn lines_per_second(&self, lines: u64) -> f64 {
        lines as f64 / self.elapsed.as_secs_f64()
    }
    pub fn megabytes_per_second(&self, bytes: u64) -> f64 {
        bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
    /// Lines per second from the first lines seen on the broker to the last; `None` when they
    /// were all there at once (a file too small to tell).
    pub fn steady_lines_per_second(&self, lines: u64) -> Option<f64> {
        steady_rate(
            self.elapsed.saturating_sub(self.first),
            lines.saturating_sub(self.first_lines),
        )
    }
}

/// Moves the prepared file to `target` (the path the shipper follows), then waits until the
/// topic holds `lines` records.
async fn measure(
    kafka: &Kafka,
    source: &Path,
    target: &Path,
    lines: u64,
    timeout: Duration,
    rsyslogd: Option<u32>,
    stop: &CancellationToken,
) -> anyhow::Result<Measured> {
    let topic = kafka.topic(&APPLICATION_LOGS);
    let partitions = APPLICATION_LOGS.partitions;
    let consumer: BaseConsumer = kafka
        .consumer_config()
        .set("group.id", format!("{}bench-watermarks", kafka.prefix()))
        .create()?;
    let consumer = std::sync::Arc::new(consumer);
    let count = || {
        let counting = std::sync::Arc::clone(&consumer);
        let counted = topic.clone();
        async move {
            tokio::task::spawn_blocking(move || records_on(&counting, &counted, partitions)).await?
        }
    };
    // A topic just created has no leaders for a moment (a real broker): counting works first.
    let ready = Instant::now();
    while let Err(err) = count().await {
        if ready.elapsed() > Duration::from_secs(60) {
            bail!("cannot read the high watermarks of {topic}: {err}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = || {
        (
            shared::bench::process_cpu(),
            rsyslogd.and_then(shared::bench::pid_cpu),
        )
    };
    let (self_before, rsyslogd_before) = cpu();
    let started = Instant::now();
    std::fs::rename(source, target)?;
    let mut first = None;
    loop {
        let have = match count().await {
            Ok(have) => have,
            Err(err) => {
                tracing::warn!(%err, "high watermarks");
                0
            }
        };
        if have > 0 && first.is_none() {
            first = Some((started.elapsed(), have as u64));
        }
        if have >= lines as i64 {
            if have > lines as i64 {
                bail!("{have} records for {lines} lines: some were sent twice");
            }
            let elapsed = started.elapsed();
            let (self_after, rsyslogd_after) = cpu();
            let spent = |before: Option<Duration>, after: Option<Duration>| {
                Some(after?.saturating_sub(before?))
            };
            let (first, first_lines) = first.unwrap_or((elapsed, lines));
            return Ok(Measured {
                elapsed,
                first,
                first_lines,
                cpu_self: spent(self_before, self_after),
                cpu_rsyslogd: spent(rsyslogd_before, rsyslogd_after),
            });
        }
        if started.elapsed() > timeout || stop.is_cancelled() {
            bail!(
                "{have} of {lines} lines on {topic} after {:?}",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ours(
    kafka: &Kafka,
    dir: &Path,
    source: &Path,
    lines: u64,
    args: &ForwarderBenchArgs,
    stop: &CancellationToken,
) -> anyhow::Result<Measured> {
    let target = dir.join("input/bench.log");
    std::fs::create_dir_all(target.parent().unwrap())?;
    let forward = ForwardArgs {
        files: vec![target.clone()],
        app: Some(APP.into()),
        host: Some(crate::forwarder::hostname()),
        max_in_flight: args.max_in_flight,
        ..ForwardArgs::new(dir.join("data"))
    };
    let forwarder_stop = stop.child_token();
    let forwarder = Forwarder::start(kafka, &forward, forwarder_stop.clone()).await?;
    let measured = measure(kafka, source, &target, lines, args.timeout, None, stop).await;
    forwarder_stop.cancel();
    let report = forwarder.join().await?;
    let measured = measured?;
    anyhow::ensure!(
        report.acknowledged == lines,
        "our forwarder acknowledged {} of {lines} lines",
        report.acknowledged
    );
    Ok(measured)
}

async fn rsyslog(
    kafka: &Kafka,
    dir: &Path,
    source: &Path,
    lines: u64,
    args: &ForwarderBenchArgs,
    stop: &CancellationToken,
) -> anyhow::Result<Measured> {
    let target = dir.join("input/bench.log");
    std::fs::create_dir_all(target.parent().unwrap())?;
    let files = [FileInput {
        path: target.clone(),
        tag: APP.into(),
    }];
    let rsyslog = Rsyslog::start(kafka, &dir.join("work"), &files).await?;
    let pid = rsyslog.pid();
    let measured = measure(kafka, source, &target, lines, args.timeout, Some(pid), stop).await;
    rsyslog.stop().await?;
    measured
}

/// `logging bench forwarder`.
pub async fn run(
    args: ForwarderBenchArgs,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(args.lines > 0, "--lines must be at least 1");
    let kafka = Kafka::connect(kafka)?;
    let temporary;
    let dir = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            temporary = tempfile::tempdir()?;
            temporary.path().to_owned()
        }
    };
    println!(
        "logging bench forwarder: {} lines, broker {}",
        args.lines,
        shared::bench::broker(&kafka)
    );
    let file = dir.join("bench.log");
    let bytes = generate(&file, args.lines)?;
    println!(
        "  input: {} ({:.1} MB, {:.0} bytes a line)",
        file.display(),
        bytes as f64 / 1e6,
        bytes as f64 / args.lines as f64
    );
    let cpu = |cpu: Option<Duration>| {
        cpu.map_or_else(|| "-".to_owned(), |cpu| format!("{:.2}", cpu.as_secs_f64()))
    };
    let report = |who: &str, measured: &Measured| {
        println!(
            "  {who:<36} {:>6.2} s  {:>7.0} lines/s  {:>5.1} MB/s  first lines after {:>4} ms, then {:>7} lines/s  CPU s: this process {}, rsyslogd {}",
            measured.elapsed.as_secs_f64(),
            measured.lines_per_second(args.lines),
            measured.megabytes_per_second(bytes),
            measured.first.as_millis(),
            rate_text(measured.steady_lines_per_second(args.lines)),
            cpu(measured.cpu_self),
            cpu(measured.cpu_rsyslogd),
        );
    };

    // Per shipper: the total time, the total time after the first lines, the lines after them.
    let mut totals = [(Duration::ZERO, Duration::ZERO, 0u64); 2];
    for round in 1..=args.rounds {
        let order: &[Shipper] = match (args.without_rsyslog, round % 2) {
            (true, _) => &[Shipper::Ours],
            (false, 1) => &[Shipper::Ours, Shipper::Rsyslog],
            (false, _) => &[Shipper::Rsyslog, Shipper::Ours],
        };
        for shipper in order {
            let run_dir = dir.join(format!("round-{round}/{}", shipper.dir()));
            let copy = dir.join("bench.log.copy");
            std::fs::copy(&file, &copy)?;
            let fresh = shared::bench::fresh_prefix(&kafka);
            let measured = match shipper {
                Shipper::Ours => ours(&fresh, &run_dir, &copy, args.lines, &args, &stop).await?,
                Shipper::Rsyslog => {
                    rsyslog(&fresh, &run_dir, &copy, args.lines, &args, &stop).await?
                }
            };
            let total = &mut totals[*shipper as usize];
            total.0 += measured.elapsed;
            total.1 += measured.elapsed.saturating_sub(measured.first);
            total.2 += args.lines.saturating_sub(measured.first_lines);
            report(&format!("round {round}: {}", shipper.name()), &measured);
        }
    }
    if args.without_rsyslog {
        return Ok(());
    }
    let lines = args.lines * u64::from(args.rounds);
    let rate = |(elapsed, _, _): (Duration, Duration, u64)| lines as f64 / elapsed.as_secs_f64();
    let steady = |(_, after, lines): (Duration, Duration, u64)| steady_rate(after, lines);
    let [ours, theirs] = totals;
    let steady_ratio = match (steady(ours), steady(theirs)) {
        (Some(a), Some(b)) => format!("{:.2}×", a / b),
        _ => "-".to_owned(),
    };
    println!(
        "  ours / rsyslog over {} rounds: {:.2}× from the start ({:.0} against {:.0} lines/s), \
         {steady_ratio} from the first lines ({} against {} lines/s)",
        args.rounds,
        rate(ours) / rate(theirs),
        rate(ours),
        rate(theirs),
        rate_text(steady(ours)),
        rate_text(steady(theirs))
    );
    Ok(())
}

/// Who ships the file in a run.
#[derive(Debug, Clone, Copy)]
enum Shipper {
    Ours = 0,
    Rsyslog = 1,
}

impl Shipper {
    fn name(self) -> &'static str {
        match self {
            Shipper::Ours => "our forwarder",
            Shipper::Rsyslog => "rsyslog imfile → omkafka",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Shipper::Ours => "ours",
            Shipper::Rsyslog => "rsyslog",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Format;

    #[test]
    fn the_generated_lines_are_syslog_and_access_logs_the_parser_reads() {
        let origin = crate::log_parser::Origin {
            key: Some("bench/host"),
            topic: "logging.application_logs",
            partition: 0,
            offset: 0,
            timestamp_ms: None,
        };
        let parse = |n: u64| crate::log_parser::parse_line(line(n).as_bytes(), &origin).format;
        assert_eq!(parse(0), Format::Rfc5424);
        assert_eq!(parse(1), Format::AccessLog);
        assert_eq!(parse(999_998), Format::Rfc5424);
        assert_eq!(parse(999_999), Format::AccessLog);
    }
}
