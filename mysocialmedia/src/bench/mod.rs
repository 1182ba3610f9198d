//! `mysocialmedia bench`: the counting application ([`crate::post_counts`]) under launch-day
//! load, end to end on a broker (run it with `--release`).
//!
//! 1. **Setup**: MySocialMedia's topics under a topic prefix of the run's own (a run never
//!    meets an earlier run's records), `--posts` posts produced to `posts`, the counting
//!    application started in this process (state in a temporary directory), and a reader of
//!    `posts_with_counts` from its beginning; the load starts once every post is on
//!    `posts_with_counts`.
//! 2. **Load** ([`load`]): `--rate` reactions/s for `--warmup` + `--duration`, produced to
//!    `likes` and `comments` keyed by post, event time = now: one viral post gets
//!    `--viral-share` of them, the others are drawn by Zipf (`--zipf-s`); 80 % likes by a user
//!    drawn from `--users`, 5 % unlikes by a liker, 5 % likes again by a liker, 10 % comments.
//!    The bench keeps the ground truth itself: each post's likers and comment count.
//! 3. **Measure**: every second, events sent, acknowledged and processed (the application's
//!    own counter) and the process's CPU time; the latencies of [`reader`] (event → the
//!    `posts_with_counts` record that includes it). The first `--warmup` is not measured.
//! 4. **Exactness**: after the load, until the application has processed everything and the
//!    reader holds every post's last record: each post's likes and comments on
//!    `posts_with_counts` must equal the ground truth — duplicate likes and unlikes included.
//!    The command fails when one does not.
//!
//! On the embedded broker by default; `KAFKA_BOOTSTRAP_SERVERS` (or `bench/with-apache-kafka`)
//! runs it against any Kafka. The process's CPU includes the embedded broker and the load: the
//! stream thread's line is the application's own cost.

mod cpu;
mod load;
mod reader;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use futures::StreamExt as _;
use sha2::{Digest, Sha256};
use shared::bench::{broker, fresh_prefix, percentile};
use shared::{EventProducer, Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;

use crate::events::{ImageRef, PostCreated};
use crate::post_counts::{self, PostCounts};
use crate::topics::{self, COMMENTS, LIKES, POSTS, POSTS_WITH_COUNTS};
use load::{Plan, Sent, Truth};
use reader::WINDOW_US;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Posts created before the load.
    #[arg(long, default_value_t = 10_000)]
    pub posts: usize,
    /// Reactions per second (likes, unlikes, duplicate likes, comments), evenly spaced.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// How long the load is measured (whole seconds).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Load sent first and not measured (whole seconds).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// The viral post's share of the reactions.
    #[arg(long, default_value_t = 0.30)]
    pub viral_share: f64,
    /// Zipf exponent of the other posts' popularity (the k-th post k^s times less popular than
    /// the first).
    #[arg(long, default_value_t = 1.1)]
    pub zipf_s: f64,
    /// Users who react, drawn at random.
    #[arg(long, default_value_t = 1_000_000)]
    pub users: u32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// The load producer's `linger.ms` (5: that of every producer here, the like/comment
    /// service's included). Part of the latency measured: event time is set before it.
    #[arg(long, default_value_t = 5)]
    pub load_linger_ms: u64,
    /// The counting application's `batch_linger` in ms (default: its own).
    #[arg(long)]
    pub batch_linger_ms: Option<u64>,
}

/// The counters read every second of the load.
#[derive(Debug, Clone, Copy)]
struct Tick {
    /// Whole seconds since the load started.
    second: u64,
    /// Since the load started, exactly.
    at: Duration,
    queued: u64,
    /// Input records the application processed since the load started.
    processed: u64,
    batches: u64,
    changelog: u64,
    /// `posts_with_counts` records polled since the load started.
    records: u64,
    cpu: Option<Duration>,
}

impl Tick {
    /// Per second between `self` and a later tick.
    fn rates(&self, later: &Tick) -> Rates {
        let seconds = (later.at - self.at).as_secs_f64().max(1e-9);
        let per_s = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
        Rates {
            sent: per_s(self.queued, later.queued),
            processed: per_s(self.processed, later.processed),
            records: per_s(self.records, later.records),
            cores: match (self.cpu, later.cpu) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64() / seconds),
                _ => None,
            },
            backlog: later.queued.saturating_sub(later.processed),
        }
    }
}

struct Rates {
    sent: f64,
    processed: f64,
    records: f64,
    cores: Option<f64>,
    /// Sent but not processed yet, at the later tick.
    backlog: u64,
}

/// The state directory of a run, removed when dropped.
struct StateDir(PathBuf);

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn run(
    args: BenchArgs,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.posts > 0 && args.rate > 0 && args.users > 0,
        "--posts, --rate and --users must be positive"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.viral_share),
        "--viral-share is a share: 0 to 1"
    );
    let warmup_s = args.warmup.as_secs_f64().ceil() as u64;
    let duration_s = (args.duration.as_secs_f64().ceil() as u64).max(1);
    let kafka = fresh_prefix(&Kafka::connect(kafka)?);
    shared::provision(&kafka, topics::ALL).await?;
    println!(
        "mysocialmedia bench: broker {}, topic prefix {}",
        broker(&kafka),
        kafka.prefix()
    );
    println!(
        "load: {} reactions/s for {} s after {} s of warm-up, on {} posts: one viral post {:.0} %, the others Zipf s={} | {:.0} % likes by any of {} users, {:.0} % unlikes, {:.0} % likes again, {:.0} % comments",
        args.rate,
        duration_s,
        warmup_s,
        args.posts,
        args.viral_share * 100.0,
        args.zipf_s,
        (1.0 - load::COMMENTS - load::UNLIKES - load::DUPLICATES) * 100.0,
        args.users,
        load::UNLIKES * 100.0,
        load::DUPLICATES * 100.0,
        load::COMMENTS * 100.0,
    );

    // Setup: the reader, the application, the posts.
    let post_ids: Vec<String> = (0..args.posts)
        .map(|_| shared::event::new_event_id())
        .collect();
    let index: Arc<HashMap<String, u32>> = Arc::new(
        post_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect(),
    );
    let (changed_tx, changed_rx) = std::sync::mpsc::channel();
    let (reading, reader) = reader::start(
        &kafka,
        &kafka.topic(&POSTS_WITH_COUNTS),
        POSTS_WITH_COUNTS.partitions,
        index,
        changed_rx,
    )?;
    let state = StateDir(std::env::temp_dir().join(format!(
        "mysocialmedia-bench-{}-{}",
        std::process::id(),
        kafka.prefix().trim_end_matches('.')
    )));
    let (mut config, app_topics) = post_counts::config(&kafka);
    config.state_dir = state.0.join("counts");
    if let Some(ms) = args.batch_linger_ms {
        config.batch_linger = Duration::from_millis(ms);
    }
    let batch_linger = config.batch_linger;
    let app_stop = CancellationToken::new();
    let app = shared::streams::start(
        &kafka,
        config,
        PostCounts::new(app_topics),
        app_stop.clone(),
    )
    .await?;
    let setup = Instant::now();
    create_posts(&kafka, &post_ids).await?;
    let deadline = Instant::now() + Duration::from_secs(180);
    while reading.posts_seen.load(Ordering::Relaxed) < args.posts {
        anyhow::ensure!(!stop.is_cancelled(), "stopped during the setup");
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} posts reached posts_with_counts in 180 s",
            reading.posts_seen.load(Ordering::Relaxed),
            args.posts
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "setup: {} posts produced and on posts_with_counts in {:.1} s; the application's batch_linger {:?}, the load producer's linger.ms {}",
        args.posts,
        setup.elapsed().as_secs_f64(),
        batch_linger,
        args.load_linger_ms
    );

    // The load, and a tick every second.
    let plan_length = Duration::from_secs(warmup_s + duration_s);
    let plan = Plan {
        rate: args.rate,
        length: plan_length,
        viral_share: args.viral_share,
        zipf_s: args.zipf_s,
        users: args.users,
        linger_ms: args.load_linger_ms,
        seed: args.seed,
    };
    let sent = Arc::new(Sent::default());
    let started = Instant::now();
    let measure_from_us = Utc::now().timestamp_micros() + warmup_s as i64 * 1_000_000;
    reading
        .measure_from_us
        .store(measure_from_us, Ordering::Relaxed);
    // Cancelled with `stop` (Ctrl-C): the load ends early and what was sent is reported.
    let load_stop = stop.child_token();
    let loader = {
        let (kafka, sent, load_stop) = (kafka.clone(), Arc::clone(&sent), load_stop.clone());
        let (likes, comments) = (kafka.topic(&LIKES), kafka.topic(&COMMENTS));
        let post_ids = post_ids.clone();
        std::thread::Builder::new()
            .name("bench-load".into())
            .spawn(move || {
                load::run(
                    &kafka,
                    (&likes, &comments),
                    &post_ids,
                    &plan,
                    &sent,
                    &changed_tx,
                    &load_stop,
                    started,
                )
            })?
    };
    let base = (
        app.stats.processed.get() + app.stats.dead_lettered.get(),
        app.stats.batches.get(),
        app.stats.changelog_records.get(),
        reading.records.load(Ordering::Relaxed),
    );
    let tick = |second: u64| Tick {
        second,
        at: started.elapsed(),
        queued: sent.queued.load(Ordering::Relaxed),
        processed: (app.stats.processed.get() + app.stats.dead_lettered.get()) - base.0,
        batches: app.stats.batches.get() - base.1,
        changelog: app.stats.changelog_records.get() - base.2,
        records: reading.records.load(Ordering::Relaxed) - base.3,
        cpu: cpu::process(),
    };
    let mut ticks: Vec<Tick> = Vec::new();
    let (mut threads_from, mut threads_to) = (cpu::Threads::new(), cpu::Threads::new());
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::from_std(started),
        Duration::from_secs(1),
    );
    for second in 0..=warmup_s + duration_s {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => break,
        }
        ticks.push(tick(second));
        if second == warmup_s {
            threads_from = cpu::threads();
        }
        threads_to = cpu::threads();
        if second > 0 && second % 10 == 0 {
            let now = ticks[ticks.len() - 1];
            let rates = ticks[ticks.len() - 11].rates(&now);
            println!(
                "  t={second:>3} s: sent {:>6.0}/s, processed {:>6.0}/s, backlog {:>6}, posts_with_counts {:>6.0} records/s{}",
                rates.sent,
                rates.processed,
                rates.backlog,
                rates.records,
                rates
                    .cores
                    .map_or(String::new(), |c| format!(", CPU {c:.2} cores"))
            );
        }
    }
    // The load's end: its last event, then the application catching up with it.
    while !loader.is_finished() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last = tick(ticks.last().map_or(0, |t| t.second));
    // Its last event was sent on schedule (the sender is never far behind), then flushed.
    let load_end = plan_length.min(started.elapsed());
    let total = sent.queued.load(Ordering::Relaxed);
    let truth = loader
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))??;

    // Until the application has processed everything and the reader holds the final counts.
    let settle = Instant::now();
    let mut caught_up: Option<Duration> = None;
    let (mut quiet_since, mut records_before) = (Instant::now(), u64::MAX);
    let mut checked = Instant::now() - Duration::from_secs(1);
    let mismatches = loop {
        let now = tick(0);
        if caught_up.is_none() && now.processed >= total {
            caught_up = Some(started.elapsed().saturating_sub(load_end));
        }
        // Every 10 ms until everything is processed (the catch-up time), then every 100 ms.
        tokio::time::sleep(Duration::from_millis(10)).await;
        if caught_up.is_none() && settle.elapsed() < Duration::from_secs(300) {
            continue;
        }
        if checked.elapsed() < Duration::from_millis(100) {
            continue;
        }
        checked = Instant::now();
        let mismatches = compare(&truth, &reading.latest.lock().expect("latest"));
        if caught_up.is_some() && mismatches.is_empty() {
            break mismatches;
        }
        if now.records != records_before {
            (quiet_since, records_before) = (Instant::now(), now.records);
        }
        // Nothing new for 15 s (after the application processed it all), or 5 minutes.
        if (caught_up.is_some() && quiet_since.elapsed() > Duration::from_secs(15))
            || settle.elapsed() > Duration::from_secs(300)
            || stop.is_cancelled()
        {
            break mismatches;
        }
    };
    reading.stop.store(true, Ordering::Relaxed);
    let samples = tokio::task::spawn_blocking(move || reader.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?;
    app_stop.cancel();
    app.join().await?;

    // The report.
    let measured: Vec<Tick> = ticks
        .iter()
        .copied()
        .filter(|t| t.second >= warmup_s)
        .collect();
    anyhow::ensure!(measured.len() >= 2, "stopped before anything was measured");
    let (from, to) = (measured[0], measured[measured.len() - 1]);
    println!();
    println!(
        "| window | sent/s | processed/s | backlog at end | posts_with_counts records/s | event → visible p50 / p99 / max ms | per record p50 / p99 ms | CPU cores |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    // One row per 10 s (the reader's windows of event time).
    let per_row = (WINDOW_US / 1_000_000) as usize;
    for w in 0..(measured.len() - 1).div_ceil(per_row) {
        let start = measured[w * per_row];
        let end = measured[((w + 1) * per_row).min(measured.len() - 1)];
        let rates = start.rates(&end);
        let events = window_of(&samples.events, w as u32);
        let records = window_of(&samples.records, w as u32);
        println!(
            "| {}–{} s | {:.0} | {:.0} | {} | {:.0} | {} / {} / {} | {} / {} | {} |",
            start.second - warmup_s,
            end.second - warmup_s,
            rates.sent,
            rates.processed,
            rates.backlog,
            rates.records,
            ms(percentile(&events, 0.5)),
            ms(percentile(&events, 0.99)),
            ms(percentile(&events, 1.0)),
            ms(percentile(&records, 0.5)),
            ms(percentile(&records, 0.99)),
            rates.cores.map_or("—".into(), |c| format!("{c:.2}")),
        );
    }
    let rates = from.rates(&to);
    let acked = sent.acked.load(Ordering::Relaxed);
    let refused = sent.refused.load(Ordering::Relaxed);
    let events = sorted(samples.events.iter().map(|(_, us)| *us));
    let records = sorted(samples.records.iter().map(|(_, us)| *us));
    let processed = to.processed - from.processed;
    println!();
    println!(
        "throughput over the {} s measured: sent {:.0}/s, processed {:.0}/s [target: 20,000/s held]; the load's sender was at most {} events behind its schedule",
        (to.at - from.at).as_secs_f64().round(),
        rates.sent,
        rates.processed,
        sent.behind_max.load(Ordering::Relaxed),
    );
    println!(
        "  {total} events sent in all, {acked} acknowledged, {refused} refused; backlog when the load's last event was acknowledged {}, {}",
        last.queued.saturating_sub(last.processed),
        caught_up.map_or("never all processed".to_owned(), |d| format!(
            "all processed {:.3} s after the last was sent",
            d.as_secs_f64()
        )),
    );
    println!(
        "event → posts_with_counts (each count-changing reaction → the first record including it polled): {} [target: p99 < 1 s{}]",
        summary(&events),
        if events.is_empty() {
            String::new()
        } else if percentile(&events, 0.99) < 1_000_000 {
            ": met".to_owned()
        } else {
            ": MISSED".to_owned()
        }
    );
    println!(
        "  per record (poll − updated_at, the newest reaction of the batch only): {}; {} count-changing reactions never visible",
        summary(&records),
        samples.never_visible
    );
    let batches = to.batches - from.batches;
    println!(
        "  counting application: {processed} records in {batches} batches ({:.0} per batch, {:.1} batches/s), {:.3} changelog and {:.3} posts_with_counts records per input record",
        processed as f64 / batches.max(1) as f64,
        batches as f64 / (to.at - from.at).as_secs_f64(),
        (to.changelog - from.changelog) as f64 / processed.max(1) as f64,
        (to.records - from.records) as f64 / processed.max(1) as f64,
    );
    if let (Some(a), Some(b)) = (from.cpu, to.cpu) {
        let cpu = b.saturating_sub(a);
        let per_event = |cpu: Duration| cpu.as_secs_f64() * 1e6 / processed.max(1) as f64;
        let seconds = (to.at - from.at).as_secs_f64();
        println!(
            "CPU per event processed: {:.1} µs for the whole process ({:.2} cores: the application, {}the load and the reader), of which:",
            per_event(cpu),
            cpu.as_secs_f64() / seconds,
            if kafka.is_embedded() {
                "the embedded broker, "
            } else {
                ""
            }
        );
        for (role, cpu) in cpu::by_role(&threads_from, &threads_to) {
            if cpu.as_secs_f64() / seconds >= 0.005 {
                println!(
                    "  {role:<36} {:>6.1} µs/event  {:.2} cores",
                    per_event(cpu),
                    cpu.as_secs_f64() / seconds
                );
            }
        }
    }
    let t = &truth.tally;
    let likes: u64 = truth.likers.iter().map(load::Likers::len).sum();
    let comments: u64 = truth.comments.iter().sum();
    println!(
        "exactness: {} of {} posts' likes and comments on posts_with_counts equal the bench's ground truth ({likes} likes, {comments} comments; the viral post {} likes, {} comments) — from {} new likes, {} likes by a liker drawn again, {} duplicate likes, {} unlikes, {} comments; {} dead letters",
        args.posts - mismatches.len(),
        args.posts,
        truth.likers[0].len(),
        truth.comments[0],
        t.new_likes,
        t.repeated_likes,
        t.duplicate_likes,
        t.unlikes,
        t.comments,
        app.stats.dead_lettered.get(),
    );
    if samples.foreign > 0 {
        println!(
            "  {} posts_with_counts records were not of the bench's posts",
            samples.foreign
        );
    }
    anyhow::ensure!(
        refused == 0,
        "{refused} events were refused by the broker: the ground truth does not hold"
    );
    if !mismatches.is_empty() {
        anyhow::ensure!(
            !stop.is_cancelled(),
            "stopped before the counts settled: {} posts not compared",
            mismatches.len()
        );
        for (post, want, got) in mismatches.iter().take(10) {
            println!(
                "  post {post} ({}): truth {} likes, {} comments; posts_with_counts {}",
                post_ids[*post],
                want.0,
                want.1,
                got.map_or("nothing".to_owned(), |(l, c)| format!(
                    "{l} likes, {c} comments"
                ))
            );
        }
        anyhow::bail!(
            "{} of {} posts have inexact counts on posts_with_counts",
            mismatches.len(),
            args.posts
        );
    }
    Ok(())
}

/// Produces the posts to `posts`, keyed by author (as the posting service does), many at once.
async fn create_posts(kafka: &Kafka, post_ids: &[String]) -> anyhow::Result<()> {
    let producer = EventProducer::new(kafka)?;
    let topic = kafka.topic(&POSTS);
    let results: Vec<_> = futures::stream::iter(post_ids.iter().enumerate())
        .map(|(i, post_id)| {
            let sha256 = format!("{:x}", Sha256::digest(format!("bench image {i}")));
            let post = PostCreated {
                event_id: shared::event::new_event_id(),
                post_id: post_id.clone(),
                user_id: format!("author_{}", i % 1000),
                caption: format!("launch day post {i}"),
                image: ImageRef {
                    key: format!("images/{sha256}.gif"),
                    sha256,
                    content_type: "image/gif".into(),
                    bytes: 43,
                },
                at: Utc::now(),
            };
            let (producer, topic) = (producer.clone(), topic.clone());
            async move { producer.publish(&topic, &post.user_id, &post).await }
        })
        .buffer_unordered(1000)
        .collect()
        .await;
    for result in results {
        result.context("producing the posts")?;
    }
    Ok(())
}

/// Posts whose last record differs from the truth: (index, (likes, comments), last record's).
#[allow(clippy::type_complexity)]
fn compare(
    truth: &Truth,
    latest: &[Option<(u64, u64)>],
) -> Vec<(usize, (u64, u64), Option<(u64, u64)>)> {
    (0..truth.likers.len())
        .filter_map(|i| {
            let want = (truth.likers[i].len(), truth.comments[i]);
            let got = latest.get(i).copied().flatten();
            (got != Some(want)).then_some((i, want, got))
        })
        .collect()
}

fn sorted(values: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut values: Vec<u32> = values.collect();
    values.sort_unstable();
    values
}

/// The latencies of window `w`, sorted.
fn window_of(samples: &[(u32, u32)], w: u32) -> Vec<u32> {
    sorted(
        samples
            .iter()
            .filter(|(window, _)| *window == w)
            .map(|(_, us)| *us),
    )
}

/// Microseconds as milliseconds, one decimal.
fn ms(us: u32) -> String {
    format!("{:.1}", f64::from(us) / 1e3)
}

/// "p50 x ms · p99 y ms · max z ms (n measured)" of sorted latencies in µs.
fn summary(sorted: &[u32]) -> String {
    format!(
        "p50 {} ms · p99 {} ms · max {} ms ({} measured)",
        ms(percentile(sorted, 0.5)),
        ms(percentile(sorted, 0.99)),
        ms(percentile(sorted, 1.0)),
        sorted.len()
    )
}
