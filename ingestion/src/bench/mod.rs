//! `ingestion bench …`: Ingestion's performance figures, each measured in one run (run them
//! with `--release`):
//!
//! * [`ingest`] — the ingest API → Kafka: events/s with NDJSON batches of 500 (acks=all), CPU
//!   per event;
//! * [`sink`] — the S3 sink against a raw consume-and-discard of the same topic in the same run
//!   (MB/s and their ratio), and the sink's peak memory with 8 and with 128 partitions;
//! * [`rotate`] — with `rotate.schedule.interval.ms`, how long after a partition's last record
//!   its file is committed.
//!
//! Each run uses a topic prefix of its own ([`shared::bench::fresh_prefix`]) on the embedded
//! broker, or on any Kafka with `KAFKA_BOOTSTRAP_SERVERS`.

pub mod ingest;
pub mod rotate;
pub mod sink;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use serde_json::json;
use shared::Kafka;
use shared::topics::PhysicalTopic;

use crate::events::Source;
use crate::topics::RAW_EVENTS;

#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// The ingest API → Kafka: events/s with batches of 500, CPU per event.
    Ingest(ingest::IngestBench),
    /// The S3 sink's MB/s against a raw consume of the same topic; its memory at 8 and 128
    /// partitions.
    Sink(sink::SinkBench),
    /// How soon a quiet partition's file is committed with `rotate.schedule.interval.ms`.
    Rotate(rotate::RotateBench),
}

pub async fn run(command: BenchCommand, kafka: &shared::KafkaArgs) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest::run(args, kafka).await,
        BenchCommand::Sink(args) => sink::run(args, kafka).await,
        BenchCommand::Rotate(args) => rotate::run(args, kafka).await,
    }
}

/// One NDJSON line of the benches' load: event `n` of a rotating set of actors.
pub fn line(n: u64) -> String {
    let (source, event_type) = match n % 4 {
        0 => (Source::Web, "page_view"),
        1 => (Source::Web, "click"),
        2 => (Source::Mobile, "screen_view"),
        _ => (Source::Iot, "reading"),
    };
    json!({
        "source": source,
        "event_type": event_type,
        "actor": format!("actor-{}", (n * 2_654_435_761) % 100_000),
        "timestamp": Utc::now(),
        "properties": {"page": "/products/42", "value": n % 1000},
    })
    .to_string()
}

/// Creates `raw_events` (with `partitions`) and the case study's other topics under `kafka`'s
/// prefix.
pub async fn provision(kafka: &Kafka, partitions: i32) -> anyhow::Result<()> {
    let mut topics: Vec<PhysicalTopic> = crate::topics::ALL
        .iter()
        .flat_map(|spec| spec.physical(kafka.prefix()))
        .collect();
    for topic in &mut topics {
        if topic.name == kafka.topic(&RAW_EVENTS) {
            topic.partitions = partitions;
        }
    }
    shared::provision::provision_physical(kafka, &topics).await?;
    Ok(())
}

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A child `ingestion run s3-sink` on `kafka` with `properties`, serving `/metrics` on `port`.
pub fn spawn_sink(
    kafka: &Kafka,
    dir: &Path,
    properties: &str,
    port: u16,
) -> anyhow::Result<std::process::Child> {
    let config = dir.join("s3-sink.properties");
    std::fs::write(&config, properties)?;
    std::process::Command::new(std::env::current_exe()?)
        .args(["run", "s3-sink", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        .env("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers())
        .env("TOPIC_PREFIX", kafka.prefix())
        .env("S3_SINK_CONFIG", &config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting the sink process")
}

/// The rows the sink at `port` has written (`analytics_sink_rows_total`), or `None` while it
/// does not answer.
pub async fn sink_rows(http: &reqwest::Client, port: u16) -> Option<u64> {
    sink_metric(http, port, "analytics_sink_rows_total").await
}

/// A counter of the sink at `port` (summed over its labels), or `None` while it does not
/// answer.
pub async fn sink_metric(http: &reqwest::Client, port: u16, name: &str) -> Option<u64> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let rows = text
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>();
    Some(rows as u64)
}

/// The peak resident memory of process `pid` (`VmHWM`), in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Polls `check` every 20 ms until it answers or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        anyhow::ensure!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
