//! `casestudies bench latency`: what one stateful hop costs in time. A count-per-key streams
//! application (RocksDB store, changelog, output topic: [`CountByKey`]) at its default settings
//! reads an input produced at a steady rate; a consumer reads its output. The latency of a
//! record is from just before the input record is handed to the producer to the moment the
//! count it caused is polled from the output — what a downstream consumer sees.
//!
//! Keys are uniform; the n-th record of key k causes the output `{key: k, count: n}`, which is
//! how an output is matched to the instant its input was sent. Measuring starts once the
//! application owns every partition and the output consumer is at the output's end, so group
//! formation is not counted; `--warmup` seconds more are sent and not counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use shared::streams::count::{CountByKey, KeyCount};
use shared::streams::{self, StreamsConfig};
use shared::{Cleanup, Kafka, Retention, TopicSpec};
use tokio_util::sync::CancellationToken;

use super::{cpu_between, cpu_per_record, stream_thread_cpu};

#[derive(Debug, Clone, clap::Args)]
pub struct LatencyBench {
    /// Input records per second, evenly spaced.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Seconds sent before measuring (caches, first commits).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// The application's `batch_linger` in ms (default: the runtime's default): how long a
    /// batch waits for more records after its first one — the latency/throughput knob.
    #[arg(long)]
    pub batch_linger_ms: Option<u64>,
}

const fn topic(name: &'static str) -> TopicSpec {
    TopicSpec {
        case_study: "bench",
        name,
        key: "key",
        partitions: 8,
        retention: Retention::hours(1),
        cleanup: Cleanup::Delete,
        purpose: "latency benchmark",
        producers: &["bench"],
        consumers: &["bench"],
    }
}
const INPUT: TopicSpec = topic("latency-input");
const OUTPUT: TopicSpec = topic("latency-output");

/// When each (key, n-th record) was handed to the producer.
type Sent = Arc<Mutex<HashMap<(u64, u64), Instant>>>;

pub async fn latency(kafka: &Kafka, bench: &LatencyBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        bench.rate > 0 && bench.keys > 0,
        "--rate and --keys must be positive"
    );
    let kafka = super::fresh_prefix(kafka);
    shared::provision(&kafka, &[INPUT, OUTPUT]).await?;
    let (input, output) = (kafka.topic(&INPUT), kafka.topic(&OUTPUT));

    let state = tempfile::tempdir()?;
    let mut config = StreamsConfig::new(&kafka, "bench-latency", vec![input.clone()], &["counts"]);
    config.state_dir = state.path().to_path_buf();
    if let Some(ms) = bench.batch_linger_ms {
        config.batch_linger = Duration::from_millis(ms);
    }
    println!(
        "broker: {}; {} records/s over {} keys, {} partitions; batch_linger {:?}",
        super::broker(&kafka),
        bench.rate,
        bench.keys,
        INPUT.partitions,
        config.batch_linger,
    );
    let stop = CancellationToken::new();
    let app = streams::start(
        &kafka,
        config,
        CountByKey {
            store: "counts",
            output: Some(output.clone()),
        },
        stop.clone(),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while app.stores.partitions().len() < INPUT.partitions as usize {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the application did not get its partitions"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The output consumer: every partition assigned at its end, fetches answered at once.
    let mut consumer_config = kafka.consumer_config();
    kafka.apply_defaults(&mut consumer_config, shared::kafka::LOW_LATENCY_CONSUMER);
    let consumer: BaseConsumer = consumer_config
        .set(
            "group.id",
            format!("{}bench-latency-reader", kafka.prefix()),
        )
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..OUTPUT.partitions {
        tpl.add_partition_offset(&output, p, rdkafka::Offset::End)?;
    }
    consumer.assign(&tpl)?;
    let _ = consumer.poll(Duration::from_millis(500)); // connect, resolve the end offsets

    let sent: Sent = Arc::default();
    let total = bench.rate * (bench.warmup + bench.seconds);
    let measured_from = bench.rate * bench.warmup;
    let reader = {
        let (sent, keys) = (Arc::clone(&sent), bench.keys);
        tokio::task::spawn_blocking(move || {
            read_latencies(&consumer, &sent, keys, total, measured_from)
        })
    };
    let cpu_at_start = stream_thread_cpu();
    let processed_at_start = app.stats.processed.get();
    let producer = {
        let (kafka, input, sent, bench) = (
            kafka.clone(),
            input.clone(),
            Arc::clone(&sent),
            bench.clone(),
        );
        tokio::task::spawn_blocking(move || produce_steadily(&kafka, &input, &sent, &bench))
    };
    producer.await??;
    let mut latencies = reader.await??;
    let cpu = cpu_between(cpu_at_start, stream_thread_cpu());
    let processed = app.stats.processed.get() - processed_at_start;
    let batches = app.stats.batches.get();
    stop.cancel();
    app.join().await?;

    anyhow::ensure!(!latencies.is_empty(), "no output record was measured");
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "one hop (produce -> count-per-key -> output polled): {} records measured",
        latencies.len()
    );
    println!(
        "  p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms   [target: p99 < 10 ms on the embedded broker]",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(*latencies.last().expect("not empty"))
    );
    println!(
        "  {processed} records in {batches} batches   {}",
        cpu_per_record("stream thread", cpu, processed)
    );
    Ok(())
}

/// Sends `rate` records/s for `warmup + seconds`, each at its slot (no burst to catch up).
fn produce_steadily(
    kafka: &Kafka,
    topic: &str,
    sent: &Sent,
    bench: &LatencyBench,
) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka.producer_config().set("linger.ms", "0").create()?;
    let total = bench.rate * (bench.warmup + bench.seconds);
    let every = Duration::from_secs(1) / bench.rate as u32;
    let started = Instant::now();
    for seq in 0..total {
        let slot = started + every * seq as u32;
        if let Some(wait) = slot.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (key, n) = (seq % bench.keys, seq / bench.keys + 1);
        let key_text = format!("key-{key}");
        let payload = format!(r#"{{"seq":{seq}}}"#);
        sent.lock()
            .expect("sent lock")
            .insert((key, n), Instant::now());
        let mut record = BaseRecord::to(topic).key(&key_text).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30))
        .context("flushing the input")?;
    Ok(())
}

/// Polls the output until the count of the last record sent arrives (or 30 s of silence);
/// returns the latency of every output caused by a record sent after the warm-up.
fn read_latencies(
    consumer: &BaseConsumer,
    sent: &Sent,
    keys: u64,
    total: u64,
    measured_from: u64,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    let mut seen = 0u64;
    let mut last_output = Instant::now();
    while seen < total {
        anyhow::ensure!(
            last_output.elapsed() < Duration::from_secs(30),
            "no output for 30 s ({seen} of {total} records seen)"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message?;
        let received = Instant::now();
        last_output = received;
        let Some(payload) = message.payload() else {
            continue;
        };
        let count: KeyCount = serde_json::from_slice(payload)?;
        let key: u64 = count
            .key
            .strip_prefix("key-")
            .and_then(|k| k.parse().ok())
            .context("an output key the bench did not send")?;
        // A re-delivered count (at-least-once) is measured once, at its first arrival.
        let Some(sent_at) = sent.lock().expect("sent lock").remove(&(key, count.count)) else {
            continue;
        };
        seen += 1;
        let seq = (count.count - 1) * keys + key;
        if seq >= measured_from {
            latencies.push(received - sent_at);
        }
    }
    Ok(latencies)
}
