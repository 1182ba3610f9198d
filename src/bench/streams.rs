//! `casestudies bench streams`: what the streams runtime costs, measured on one broker in one run.
//!
//! * (a) raw consume-and-discard: a plain consumer reading the input, no decoding;
//! * (b) count-per-key: the streams runtime decoding JSON, counting in RocksDB, writing the
//!   changelog with batch markers and committing — at-least-once with exact state;
//! * (c) restore: a new instance with an empty state directory rebuilding (b)'s state from the
//!   changelog.
//!
//! Rates are taken from the first record to the last, so group joins and topic creation are
//! not counted. Keys are spread evenly (`--distribution uniform`) or skewed (`zipf`: a few hot
//! keys, a long tail; `both` runs one then the other and prints a table). Run it in release
//! mode: `cargo run --release -- bench streams`.

use std::time::{Duration, Instant};

use anyhow::Context;
use rand::SeedableRng;
use rand_distr::Distribution as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use shared::streams::{self, count::CountByKey};
use shared::{Cleanup, Kafka, Retention, TopicSpec};
use tokio_util::sync::CancellationToken;

use super::{cpu_between, cpu_per_record, stream_thread_cpu, this_thread_cpu};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Distribution {
    Uniform,
    Zipf,
    Both,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StreamsBench {
    /// Input records.
    #[arg(long, default_value_t = 300_000)]
    pub records: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// How keys are drawn: `uniform` (every key as often), `zipf` (the k-th most frequent key
    /// k^s times less often than the first: a few hot keys, a long tail) or `both`, one after
    /// the other on the same broker, printed side by side.
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    pub distribution: Distribution,
    /// Zipf's exponent s (1.0: the top 1 % of 100,000 keys get about 40 % of the records).
    #[arg(long, default_value_t = 1.0)]
    pub zipf_s: f64,
    /// Also run the peers (Kafka Streams, Quix Streams: `bench/peers/`) on the same input, after
    /// (b), and print them in the table. Needs an external broker (`KAFKA_BOOTSTRAP_SERVERS`;
    /// `bench/peers/run` starts Apache Kafka and runs this).
    #[arg(long)]
    pub peers: bool,
    /// (b)'s `batch_linger` in ms (default: the runtime's default).
    #[arg(long)]
    pub batch_linger_ms: Option<u64>,
}

const INPUT: TopicSpec = TopicSpec {
    case_study: "bench",
    name: "input",
    key: "key",
    partitions: 8,
    retention: Retention::hours(1),
    cleanup: Cleanup::Delete,
    purpose: "benchmark input",
    producers: &["bench"],
    consumers: &["bench"],
};

/// One run's figures, for the side-by-side table.
struct Figures {
    raw: f64,
    raw_cpu: Option<f64>,
    count: f64,
    count_cpu: Option<f64>,
    changelog_per_record: f64,
    restore: f64,
    peers: Vec<super::peers::Peer>,
}

pub async fn streams(kafka: &Kafka, bench: &StreamsBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        !(bench.peers && kafka.is_embedded()),
        "--peers needs an external broker (the peers are other processes, and the embedded \
         broker ignores their CreateTopics): set KAFKA_BOOTSTRAP_SERVERS, or run bench/peers/run, \
         which starts Apache Kafka"
    );
    println!("broker: {}", super::broker(kafka));
    let distributions = match bench.distribution {
        Distribution::Both => vec![Distribution::Uniform, Distribution::Zipf],
        one => vec![one],
    };
    let mut figures = Vec::new();
    for distribution in distributions {
        println!();
        figures.push((distribution, run(kafka, bench, distribution).await?));
    }
    let micros = |cpu: Option<f64>| cpu.map_or("-".to_owned(), |c| format!("{c:.2}"));
    if figures.len() > 1 || bench.peers {
        println!(
            "\n| keys | (a) records/s | (a) µs CPU/record | (b) records/s | (b) µs CPU/record | changelog records/input record | (c) keys/s |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (distribution, f) in &figures {
            println!(
                "| {} | {:.0} | {} | {:.0} | {} | {:.3} | {:.0} |",
                label(*distribution, bench.zipf_s),
                f.raw,
                micros(f.raw_cpu),
                f.count,
                micros(f.count_cpu),
                f.changelog_per_record,
                f.restore
            );
        }
    }
    if bench.peers {
        println!("\n| keys | system | records/s | µs CPU/record | (b)'s records/s ÷ this |");
        println!("|---|---|---:|---:|---:|");
        for (distribution, f) in &figures {
            let keys = label(*distribution, bench.zipf_s);
            println!(
                "| {keys} | (b) this runtime | {:.0} | {} | 1.00 |",
                f.count,
                micros(f.count_cpu)
            );
            for peer in &f.peers {
                println!(
                    "| {keys} | {} | {:.0} | {} | {:.2} |",
                    peer.system,
                    peer.records_per_s,
                    micros(peer.cpu_us_per_record),
                    f.count / peer.records_per_s
                );
            }
        }
    }
    Ok(())
}

fn label(distribution: Distribution, s: f64) -> String {
    match distribution {
        Distribution::Zipf => format!("zipf s={s}"),
        _ => "uniform".to_owned(),
    }
}

/// (a), (b) and (c) on a fresh input topic with keys drawn from `distribution`.
async fn run(
    kafka: &Kafka,
    bench: &StreamsBench,
    distribution: Distribution,
) -> anyhow::Result<Figures> {
    let kafka = super::fresh_prefix(kafka);
    shared::provision(&kafka, &[INPUT]).await?;
    let topic = kafka.topic(&INPUT);
    println!(
        "records: {}, keys: {} ({}), partitions: {}",
        bench.records,
        bench.keys,
        label(distribution, bench.zipf_s),
        INPUT.partitions
    );

    let produce_rate = produce(&kafka, &topic, bench, distribution).await?;
    println!(
        "produce (acks=all, idempotent):            {:>10.0} records/s",
        produce_rate
    );

    let (raw_rate, raw_cpu) = raw_consume(&kafka, &topic, bench.records).await?;
    println!(
        "(a) raw consume-and-discard:               {:>10.0} records/s   {}",
        raw_rate,
        cpu_per_record("consuming thread", raw_cpu, bench.records)
    );

    let state = tempfile::tempdir()?;
    let mut config =
        streams::StreamsConfig::new(&kafka, "bench-count", vec![topic.clone()], &["counts"]);
    config.state_dir = state.path().join("first");
    if let Some(ms) = bench.batch_linger_ms {
        config.batch_linger = Duration::from_millis(ms);
    }
    // (c)'s instance joins the group (b)'s instance left. The mock cluster answers the leave
    // (`KAFKA_DEBUG=cgrp`: "LeaveGroup response received") yet holds the next join for up to the
    // session timeout — librdkafka's default of 45 s made every run wait that long.
    config
        .consumer_properties
        .push(("session.timeout.ms".to_owned(), "6000".to_owned()));
    let (count_rate, count_cpu, counted, changelog, batches) = {
        let stop = CancellationToken::new();
        let app = streams::start(
            &kafka,
            config.clone(),
            CountByKey {
                store: "counts",
                output: None,
            },
            stop.clone(),
        )
        .await?;
        let (rate, cpu, counted) = rate_until(bench.records, || app.stats.processed.get()).await?;
        stop.cancel();
        app.join().await?;
        (
            rate,
            cpu,
            counted,
            app.stats.changelog_records.get(),
            app.stats.batches.get(),
        )
    };
    let changelog_per_record = changelog as f64 / bench.records as f64;
    println!(
        "(b) count-per-key, RocksDB + changelog:    {:>10.0} records/s   {}",
        count_rate,
        cpu_per_record("stream thread", count_cpu, counted)
    );
    println!(
        "    (b)/(a) = {:.0}%; {changelog} changelog records ({changelog_per_record:.3} per input record)",
        100.0 * count_rate / raw_rate,
    );

    config.state_dir = state.path().join("second");
    let stop = CancellationToken::new();
    let app = streams::start(
        &kafka,
        config,
        CountByKey {
            store: "counts",
            output: None,
        },
        stop.clone(),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    // The stream thread's CPU when the restore starts (it first waits for the group to form).
    while app.stats.restore_remaining.get() == 0 && app.stores.partitions().is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "restore did not start");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let cpu_at_start = stream_thread_cpu();
    while app.stores.partitions().len() < INPUT.partitions as usize {
        anyhow::ensure!(Instant::now() < deadline, "restore did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restore_cpu = cpu_between(cpu_at_start, stream_thread_cpu());
    let restored = app.stats.restored.get();
    let seconds = app.stats.restore_micros.get() as f64 / 1e6;
    let keys = app.stores.prefix::<u64>("counts", b"")?.len();
    stop.cancel();
    app.join().await?;
    let restore_rate = keys as f64 / seconds;
    println!(
        "(c) restore from changelog:                {:>10.0} keys/s      [target >= 200k keys/s]",
        restore_rate
    );
    println!(
        "    {keys} keys from {restored} changelog records in {seconds:.2} s = {:.0} changelog records/s   {}",
        restored as f64 / seconds,
        cpu_per_record("stream thread", restore_cpu, restored)
    );
    let mut peers = Vec::new();
    if bench.peers {
        // (b)'s mean time between commits, for the peer run at an equal commit interval.
        let commit_interval =
            Duration::from_secs_f64(counted as f64 / count_rate / batches.max(1) as f64);
        for peer in super::peers::runs(commit_interval) {
            let result = super::peers::run(&kafka, &peer, &topic, bench.records).await?;
            println!(
                "{}: {:>10.0} records/s   {}",
                peer.system,
                result.records_per_s,
                result
                    .cpu_us_per_record
                    .map_or(String::new(), |c| format!("({c:.2} µs CPU/record)"))
            );
            peers.push(result);
        }
    }
    let micros = |cpu: Option<Duration>, records: u64| {
        cpu.map(|cpu| cpu.as_secs_f64() * 1e6 / records.max(1) as f64)
    };
    Ok(Figures {
        raw: raw_rate,
        raw_cpu: micros(raw_cpu, bench.records),
        count: count_rate,
        count_cpu: micros(count_cpu, counted),
        changelog_per_record,
        restore: restore_rate,
        peers,
    })
}

async fn produce(
    kafka: &Kafka,
    topic: &str,
    bench: &StreamsBench,
    distribution: Distribution,
) -> anyhow::Result<f64> {
    let producer: ThreadedProducer<DefaultProducerContext> = kafka
        .producer_config()
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let (topic, records, keys) = (topic.to_owned(), bench.records, bench.keys);
    // Key ranks 1..=keys; the same seed every run, so runs draw the same keys.
    let zipf = rand_distr::Zipf::new(keys as f64, bench.zipf_s).context("--zipf-s")?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let started = Instant::now();
        for seq in 0..records {
            let rank = match distribution {
                Distribution::Zipf => zipf.sample(&mut rng) as u64 - 1,
                _ => seq % keys,
            };
            let key = format!("key-{rank}");
            let payload = format!(r#"{{"seq":{seq},"at":"2026-11-22T00:00:00Z"}}"#);
            let mut record = BaseRecord::to(&topic).key(&key).payload(&payload);
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
        producer
            .flush(Duration::from_secs(120))
            .context("flushing the input")?;
        Ok(records as f64 / started.elapsed().as_secs_f64())
    })
    .await?
}

/// Records/s from the first record to the last, and the consuming thread's CPU meanwhile.
async fn raw_consume(
    kafka: &Kafka,
    topic: &str,
    records: u64,
) -> anyhow::Result<(f64, Option<Duration>)> {
    // The stream thread's fetch tuning, so (a) and (b) differ only in what the runtime does.
    let mut config = kafka.consumer_config();
    kafka.apply_defaults(&mut config, streams::app::CONSUMER_TUNING);
    let consumer: BaseConsumer = config
        .set("group.id", format!("{}bench-raw", kafka.prefix()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<(f64, Option<Duration>)> {
        let mut seen = 0u64;
        let mut first: Option<(Instant, Option<Duration>)> = None;
        let deadline = Instant::now() + Duration::from_secs(600);
        while seen < records {
            anyhow::ensure!(
                Instant::now() < deadline,
                "raw consumer read only {seen} records"
            );
            if let Some(Ok(_message)) = consumer.poll(Duration::from_millis(100)) {
                first.get_or_insert_with(|| (Instant::now(), this_thread_cpu()));
                seen += 1;
            }
        }
        let (started, cpu_at_start) = first.context("no record")?;
        let cpu = cpu_between(cpu_at_start, this_thread_cpu());
        Ok((records as f64 / started.elapsed().as_secs_f64(), cpu))
    })
    .await?
}

/// Records/s between the first and the `total`-th record counted by `processed`, the stream
/// thread's CPU meanwhile, and the records counted in that span.
async fn rate_until(
    total: u64,
    processed: impl Fn() -> u64,
) -> anyhow::Result<(f64, Option<Duration>, u64)> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while processed() == 0 {
        anyhow::ensure!(Instant::now() < deadline, "nothing processed");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (started, at_start, cpu_at_start) = (Instant::now(), processed(), stream_thread_cpu());
    while processed() < total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "processed only {} of {total}",
            processed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu = cpu_between(cpu_at_start, stream_thread_cpu());
    let records = total - at_start;
    Ok((
        records as f64 / started.elapsed().as_secs_f64(),
        cpu,
        records,
    ))
}
