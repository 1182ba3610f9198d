//! `ingestion bench rotate`: with `rotate.schedule.interval.ms` set, how long after a
//! partition's last record its file is in the store. The sink (a child process) is first left
//! to commit everything; then one record at a time goes to a quiet partition, and the store's
//! `analytics_sink_rows_total` is watched for the file holding it (a first record, not
//! measured, waits for the group join). Target: within the interval + 1 s.

use std::time::{Duration, Instant};

use rdkafka::message::OwnedHeaders;
use shared::bench::{broker, fresh_prefix, percentile};
use shared::{EventProducer, Kafka, KafkaArgs};

use crate::ingest_api::IncomingEvent;
use crate::s3_sink::DEFAULT_PROPERTIES;
use crate::topics::RAW_EVENTS;

#[derive(clap::Args, Debug, Clone)]
pub struct RotateBench {
    /// The sink's `rotate.schedule.interval.ms`.
    #[arg(long, default_value_t = 2_000)]
    pub interval_ms: u64,
    /// Records sent, one at a time, each to another quiet partition.
    #[arg(long, default_value_t = 10)]
    pub records: u64,
}

pub async fn run(args: RotateBench, kafka: &KafkaArgs) -> anyhow::Result<()> {
    let kafka = fresh_prefix(&Kafka::connect(kafka)?);
    super::provision(&kafka, RAW_EVENTS.partitions).await?;
    let topic = kafka.topic(&RAW_EVENTS);
    println!(
        "ingestion bench rotate: broker {}, rotate.schedule.interval.ms={}, {} records",
        broker(&kafka),
        args.interval_ms,
        args.records
    );
    let dir = tempfile::tempdir()?;
    let port = super::free_port()?;
    let properties = DEFAULT_PROPERTIES
        .replace(
            "rotate.schedule.interval.ms=30000",
            &format!("rotate.schedule.interval.ms={}", args.interval_ms),
        )
        .replace("rotate.interval.ms=600000", "rotate.interval.ms=0");
    let mut child = super::spawn_sink(&kafka, dir.path(), &properties, port)?;
    let http = reqwest::Client::new();
    let producer = EventProducer::new(&kafka)?;
    let result = async {
        super::wait_for(Duration::from_secs(120), "the sink's /metrics", || async {
            super::sink_rows(&http, port).await
        })
        .await?;
        // Record 0 warms up (the group join, the first fetch) and is not measured.
        let mut latencies = Vec::new();
        for n in 0..=args.records {
            let incoming: IncomingEvent = serde_json::from_str(&super::line(n))?;
            let event = incoming
                .into_raw(chrono::Utc::now())
                .map_err(anyhow::Error::msg)?;
            let payload = serde_json::to_vec(&event)?;
            let sent = Instant::now();
            producer
                .send(
                    &topic,
                    Some(event.actor.as_bytes()),
                    Some(&payload),
                    OwnedHeaders::new(),
                    Some(event.timestamp.timestamp_millis()),
                )
                .await?;
            super::wait_for(Duration::from_secs(120), "the record's file", || async {
                let rows = super::sink_rows(&http, port).await?;
                (rows > n).then_some(())
            })
            .await?;
            if n > 0 {
                latencies.push(sent.elapsed());
            }
            // The next record goes after this file is committed: its partition's file is new.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::Ok(latencies)
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let mut latencies = result?;
    latencies.sort_unstable();
    let limit = Duration::from_millis(args.interval_ms) + Duration::from_secs(1);
    let max = percentile(&latencies, 1.0);
    println!(
        "record produced → its file committed: p50 {:.0} ms · max {:.0} ms ({} records) [target: ≤ interval + 1 s = {} ms: {}]",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        latencies.len(),
        limit.as_millis(),
        if max <= limit { "met" } else { "missed" }
    );
    Ok(())
}
