//! `logging bench index`: the log parser and the log sink on one broker, in this process.
//!
//! 1. **Throughput**: `--lines` RFC 5424 lines are produced to `application_logs` first; then the
//!    parser (as `logging log-parser` starts it) and the sink (its index in a temporary
//!    directory) start, and the clock runs until every line is committed to the index. Reported:
//!    lines/s of wall time, and lines per CPU second of this process (`/proc/self/stat`: the
//!    parser, the sink, and the embedded broker when there is one — an upper bound of the
//!    pipeline's own cost).
//! 2. **Write → searchable**: `--latency-lines` more lines at `--rate` lines/s, each produced
//!    with its send time; the sink's commit callback (called once the commit is durable and the
//!    reader reloaded, when a search finds the line) takes the time of each. p50/p99/max.
//!
//! Under a topic prefix of its own (a run never meets an earlier run's records).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt as _;
use rdkafka::message::OwnedHeaders;
use shared::bench::{broker, fresh_prefix, percentile, process_cpu};
use shared::service::cli::ServeArgs;
use shared::{EventProducer, Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;

use crate::app::{Logging, Options};
use crate::log_sink::{self, OnCommit, SinkConfig};
use crate::topics::{self, APPLICATION_LOGS};

#[derive(clap::Args, Debug, Clone)]
pub struct IndexBenchArgs {
    /// Lines pre-loaded for the throughput run.
    #[arg(long, default_value_t = 100_000)]
    pub lines: u64,
    /// Lines written at a steady rate for the latency run.
    #[arg(long, default_value_t = 3_000)]
    pub latency_lines: u64,
    /// Lines per second of the latency run.
    #[arg(long, default_value_t = 500)]
    pub rate: u64,
}

fn line(kind: &str, i: u64) -> Vec<u8> {
    format!(
        "<14>1 {} web-{} checkout 4711 - - bench {kind} {i} order paid user=u{} amount={}",
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        i % 16,
        i % 1000,
        i % 997
    )
    .into_bytes()
}

async fn produce(producer: &EventProducer, topic: &str, kind: &str, i: u64) -> anyhow::Result<()> {
    let key = format!("checkout/web-{}", i % 16);
    producer
        .send(
            topic,
            Some(key.as_bytes()),
            Some(&line(kind, i)),
            OwnedHeaders::new(),
            None,
        )
        .await?;
    Ok(())
}

/// The line number in a `bench <kind> <i> …` message.
fn number(message: &str, kind: &str) -> Option<u64> {
    let rest = message.strip_prefix("bench ")?.strip_prefix(kind)?;
    rest.split_whitespace().next()?.parse().ok()
}

pub async fn run(
    args: &IndexBenchArgs,
    kafka_args: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let kafka: Kafka = fresh_prefix(&Kafka::connect(kafka_args)?);
    println!(
        "logging bench index: broker {}, {} lines, then {} at {}/s",
        broker(&kafka),
        args.lines,
        args.latency_lines,
        args.rate
    );
    shared::provision(&kafka, topics::ALL).await?;
    let producer = EventProducer::new(&kafka)?;
    let raw = kafka.topic(&APPLICATION_LOGS);
    futures::stream::iter(0..args.lines)
        .map(|i| produce(&producer, &raw, "tp", i))
        .buffer_unordered(2_000)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    println!("{} lines on application_logs", args.lines);

    let dir = tempfile::tempdir()?;
    let indexed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let on_commit: OnCommit = {
        let (indexed, sent, latencies) = (
            Arc::clone(&indexed),
            Arc::clone(&sent),
            Arc::clone(&latencies),
        );
        Box::new(move |docs| {
            let now = Instant::now();
            let mut sent = sent.lock().expect("sent lock");
            let mut latencies = latencies.lock().expect("latencies lock");
            for doc in docs {
                if let Some(i) = number(&doc.record.message, "lat")
                    && let Some(at) = sent.remove(&i)
                {
                    latencies.push(now - at);
                }
            }
            indexed.fetch_add(docs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let cpu0 = process_cpu();
    let started = Instant::now();
    let shutdown = stop.child_token();
    let sink = log_sink::start(
        &kafka,
        SinkConfig::from_env(&kafka, dir.path().join("index"))?,
        Some(on_commit),
        shutdown.clone(),
    )
    .await?;
    let (parser, _) = shared::service::cli::start::<Logging>(
        &kafka,
        &["log-parser".to_owned()],
        &ServeArgs::for_tests(dir.path()),
        &Options::default(),
    )
    .await?;
    let count = || indexed.load(std::sync::atomic::Ordering::Relaxed);
    while count() < args.lines {
        if stop.is_cancelled() {
            anyhow::bail!("stopped");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed();
    let cpu = match (cpu0, process_cpu()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    println!(
        "throughput: {} lines parsed and indexed in {:.2} s = {:.0} lines/s; {}",
        args.lines,
        wall.as_secs_f64(),
        args.lines as f64 / wall.as_secs_f64(),
        cpu.map_or("CPU time not known".to_owned(), |cpu| format!(
            "{:.2} CPU s = {:.0} lines per CPU second ({:.1} µs CPU a line; {:.2} cores busy)",
            cpu.as_secs_f64(),
            args.lines as f64 / cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / args.lines as f64,
            cpu.as_secs_f64() / wall.as_secs_f64()
        ))
    );

    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let start = tokio::time::Instant::now();
    for i in 0..args.latency_lines {
        tokio::time::sleep_until(start + interval * i as u32).await;
        sent.lock().expect("sent lock").insert(i, Instant::now());
        let (producer, raw) = (producer.clone(), raw.clone());
        tokio::spawn(async move { produce(&producer, &raw, "lat", i).await });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while latencies.lock().expect("latencies lock").len() < args.latency_lines as usize {
        anyhow::ensure!(
            Instant::now() < deadline && !stop.is_cancelled(),
            "lines not searchable within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = latencies.lock().expect("latencies lock").clone();
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "write → searchable: p50 {:.1} ms · p99 {:.1} ms · max {:.1} ms ({} lines at {}/s)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
        latencies.len(),
        args.rate
    );
    println!(
        "index: {} documents, {} commits",
        sink.reader.documents(),
        sink.stats.commits.get()
    );
    shutdown.cancel();
    parser.stop().await?;
    sink.join().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_line_number_is_read_back_from_its_message() {
        assert_eq!(super::number("bench lat 17 order paid", "lat"), Some(17));
        assert_eq!(super::number("bench tp 17 order paid", "lat"), None);
    }
}
