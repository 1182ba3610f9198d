//! `ingestion bench ingest`: the ingest API → Kafka. The ingest API runs in this process (the
//! scaffold's `cli::start`, as `ingestion run ingest-api` does); `--connections` clients post
//! NDJSON batches of `--batch` events as fast as the API answers, each batch answered only
//! once the broker acknowledged every event (acks=all). Reported: events/s accepted, the
//! requests' latency, and the process's CPU per event (the API, the load generator and, on the
//! embedded broker, the broker itself: all in this process).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shared::bench::{broker, fresh_prefix, percentile};
use shared::service::cli::{self, ServeArgs};
use shared::{Kafka, KafkaArgs};

use crate::app::{Ingestion, Options};
use crate::ingest_api::NDJSON;

#[derive(clap::Args, Debug, Clone)]
pub struct IngestBench {
    /// Events per request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Load sent first and not measured.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// How long the load is measured.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
}

pub async fn run(args: IngestBench, kafka: &KafkaArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=crate::ingest_api::MAX_EVENTS).contains(&args.batch),
        "--batch must be 1 to {}",
        crate::ingest_api::MAX_EVENTS
    );
    let kafka = fresh_prefix(&Kafka::connect(kafka)?);
    let dir = tempfile::tempdir()?;
    let (process, _) = cli::start::<Ingestion>(
        &kafka,
        &["ingest-api".to_owned()],
        &ServeArgs::for_tests(dir.path()),
        &Options::default(),
    )
    .await?;
    println!(
        "ingestion bench ingest: broker {}, topic prefix {}; {} connections posting batches of {} for {:?} after {:?}",
        broker(&kafka),
        kafka.prefix(),
        args.connections,
        args.batch,
        args.duration,
        args.warmup
    );
    // Bodies made in advance (64 of them, used in turn): the load generator's work is posting.
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..64u64)
            .map(|b| {
                let mut body = String::new();
                for i in 0..args.batch as u64 {
                    body.push_str(&super::line(b * args.batch as u64 + i));
                    body.push('\n');
                }
                body
            })
            .collect(),
    );
    let url = format!("{}/v1/events", process.url());
    let http = reqwest::Client::new();
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let (http, url, bodies) = (http.clone(), url.clone(), Arc::clone(&bodies));
        let (accepted, failed) = (Arc::clone(&accepted), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = c;
            while Instant::now() < end {
                let body = bodies[n % bodies.len()].clone();
                n += 1;
                let sent = Instant::now();
                let answer = http
                    .post(&url)
                    .header("content-type", NDJSON)
                    .body(body)
                    .send()
                    .await;
                let ok = match answer {
                    Ok(r) if r.status().is_success() => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v["accepted"].as_u64()),
                    _ => None,
                };
                if sent >= measure_from {
                    match ok {
                        Some(events) => {
                            accepted.fetch_add(events, Ordering::Relaxed);
                            latencies.push(sent.elapsed());
                        }
                        None => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_from = shared::bench::process_cpu();
    let measured_from = Instant::now();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    let elapsed = measured_from.elapsed();
    let cpu = shared::bench::process_cpu()
        .zip(cpu_from)
        .map(|(to, from)| to.saturating_sub(from));
    latencies.sort_unstable();
    let events = accepted.load(Ordering::Relaxed);
    let rate = events as f64 / elapsed.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "accepted {events} events in {:.1} s: {rate:.0} events/s [target: ≥ 100,000/s: {}]; {} requests failed",
        elapsed.as_secs_f64(),
        if rate >= 100_000.0 { "met" } else { "missed" },
        failed.load(Ordering::Relaxed)
    );
    println!(
        "request (batch of {}) latency: p50 {:.1} ms · p99 {:.1} ms · max {:.1} ms ({} requests)",
        args.batch,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
        latencies.len()
    );
    if let (Some(cpu), true) = (cpu, events > 0) {
        println!(
            "CPU: {:.2} µs per event for the whole process ({:.2} cores: the API, the load generator{})",
            cpu.as_secs_f64() * 1e6 / events as f64,
            cpu.as_secs_f64() / elapsed.as_secs_f64(),
            if kafka.is_embedded() {
                " and the embedded broker"
            } else {
                ""
            }
        );
    }
    process.stop().await?;
    Ok(())
}
