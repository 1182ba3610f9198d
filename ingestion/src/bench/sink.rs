//! `ingestion bench sink`: the S3 sink against a raw consume-and-discard of the same topic, in
//! the same run, and the sink's peak memory at two partition counts.
//!
//! For each partition count: `raw_events` is created with that many partitions under a prefix
//! of its own and filled with the same events (`--mb` of JSON); then a consumer reads it all
//! and throws it away (the ceiling: what the broker and librdkafka deliver), then the sink
//! (`ingestion run s3-sink`, a child process, so its memory is its own) turns it into Parquet
//! files in a local directory. Both rates run from the first record read to the last record
//! consumed (raw) or committed in a file (sink), so start-up and group joins are not counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedHeaders;
use shared::bench::{broker, fresh_prefix};
use shared::{EventProducer, Kafka, KafkaArgs};

use crate::ingest_api::IncomingEvent;
use crate::s3_sink::DEFAULT_PROPERTIES;
use crate::topics::RAW_EVENTS;

#[derive(clap::Args, Debug, Clone)]
pub struct SinkBench {
    /// Input size, MB of JSON events.
    #[arg(long, default_value_t = 100)]
    pub mb: u64,
    /// The partition counts to compare.
    #[arg(long, value_delimiter = ',', default_value = "8,128")]
    pub partitions: Vec<i32>,
    /// The sink's `flush.size`.
    #[arg(long, default_value_t = 10_000)]
    pub flush_size: usize,
}

pub async fn run(args: SinkBench, kafka: &KafkaArgs) -> anyhow::Result<()> {
    let base = Kafka::connect(kafka)?;
    println!(
        "ingestion bench sink: broker {}; {} MB of events per run, flush.size {}",
        broker(&base),
        args.mb,
        args.flush_size
    );
    let mut rows = Vec::new();
    for &partitions in &args.partitions {
        rows.push(one(&base, partitions, &args).await?);
    }
    println!(
        "\n| partitions | events | MB | raw consume MB/s | sink MB/s | sink / raw | sink files | sink peak RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {} | {} |",
            r.partitions,
            r.events,
            r.mb,
            r.raw_mb_s,
            r.sink_mb_s,
            r.sink_mb_s / r.raw_mb_s,
            r.files,
            r.peak_rss_mib.map_or("?".to_owned(), |m| format!("{m:.0}"))
        );
    }
    Ok(())
}

struct Row {
    partitions: i32,
    events: u64,
    mb: f64,
    raw_mb_s: f64,
    sink_mb_s: f64,
    files: usize,
    peak_rss_mib: Option<f64>,
}

async fn one(base: &Kafka, partitions: i32, args: &SinkBench) -> anyhow::Result<Row> {
    let kafka = fresh_prefix(base);
    super::provision(&kafka, partitions).await?;
    let topic = kafka.topic(&RAW_EVENTS);

    // The input: valid raw events keyed by actor, record timestamp = event time.
    let producer = EventProducer::new(&kafka)?;
    let target = args.mb * 1_000_000;
    let (mut bytes, mut events) = (0u64, 0u64);
    let received_at = chrono::Utc::now();
    while bytes < target {
        let chunk: Vec<(String, Vec<u8>, i64)> = (events..events + 10_000)
            .map(|n| {
                let incoming: IncomingEvent =
                    serde_json::from_str(&super::line(n)).expect("a valid line");
                let event = incoming.into_raw(received_at).expect("a valid event");
                let payload = serde_json::to_vec(&event).expect("JSON");
                (
                    event.actor.clone(),
                    payload,
                    event.timestamp.timestamp_millis(),
                )
            })
            .collect();
        events += chunk.len() as u64;
        bytes += chunk
            .iter()
            .map(|(k, p, _)| (k.len() + p.len()) as u64)
            .sum::<u64>();
        let sends = futures::stream::iter(chunk)
            .map(|(key, payload, ts)| {
                let (producer, topic) = (producer.clone(), topic.clone());
                async move {
                    producer
                        .send(
                            &topic,
                            Some(key.as_bytes()),
                            Some(&payload),
                            OwnedHeaders::new(),
                            Some(ts),
                        )
                        .await
                }
            })
            .buffer_unordered(2_000);
        let results: Vec<_> = sends.collect().await;
        for result in results {
            result?;
        }
    }
    let mb = bytes as f64 / 1e6;
    println!("{partitions} partitions: {events} events, {mb:.1} MB produced to {topic}");

    // Raw consume-and-discard.
    let raw_mb_s = {
        let kafka = kafka.clone();
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || raw_consume(&kafka, &topic, events)).await??
    };
    println!("  raw consume: {raw_mb_s:.1} MB/s");

    // The sink, in a child process.
    let dir = tempfile::tempdir()?;
    let port = super::free_port()?;
    let properties = DEFAULT_PROPERTIES
        .replace(
            "flush.size=10000",
            &format!("flush.size={}", args.flush_size),
        )
        .replace(
            "rotate.schedule.interval.ms=30000",
            "rotate.schedule.interval.ms=2000",
        );
    let mut child = super::spawn_sink(&kafka, dir.path(), &properties, port)?;
    let http = reqwest::Client::new();
    let result = async {
        let first_at = super::wait_for(
            Duration::from_secs(300),
            "the sink's first record",
            || async {
                let read =
                    super::sink_metric(&http, port, "analytics_sink_records_read_total").await?;
                (read > 0).then(Instant::now)
            },
        )
        .await?;
        let done_at = super::wait_for(Duration::from_secs(900), "the sink's last file", || async {
            let rows = super::sink_rows(&http, port).await?;
            (rows >= events).then(Instant::now)
        })
        .await?;
        let peak = super::peak_rss_mib(child.id());
        let sink_mb_s = mb / (done_at - first_at).as_secs_f64();
        anyhow::Ok((sink_mb_s, peak))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let (sink_mb_s, peak_rss_mib) = result?;
    let files = shared::analytics::files_under(dir.path())?
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count();
    println!(
        "  sink: {sink_mb_s:.1} MB/s, {files} files, peak RSS {}",
        peak_rss_mib.map_or("?".to_owned(), |m| format!("{m:.0} MiB"))
    );
    Ok(Row {
        partitions,
        events,
        mb,
        raw_mb_s,
        sink_mb_s,
        files,
        peak_rss_mib,
    })
}

/// Reads `events` records of `topic` in a fresh group and throws them away: MB/s from the
/// first record to the last.
fn raw_consume(kafka: &Kafka, topic: &str, events: u64) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = kafka
        .group_consumer_config(&format!("{}bench-raw", kafka.prefix()), &[])
        .create()?;
    consumer.subscribe(&[topic])?;
    let (mut seen, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut per_partition: HashMap<i32, u64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    while seen < events {
        anyhow::ensure!(Instant::now() < deadline, "raw consume: {seen} of {events}");
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message?;
        first.get_or_insert_with(Instant::now);
        seen += 1;
        bytes += (message.key().map_or(0, <[u8]>::len) + message.payload().map_or(0, <[u8]>::len))
            as u64;
        *per_partition.entry(message.partition()).or_default() += 1;
    }
    let elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
    Ok(bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9))
}
