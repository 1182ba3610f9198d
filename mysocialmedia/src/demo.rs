//! `mysocialmedia demo`: every service plus the simulator in one process, and a short live
//! summary every few seconds — what a workshop projects on the wall: the events per second, the
//! most liked posts with their live counts (`GET /v1/feed`), the viral post, the trending board
//! (`GET /v1/trending`) and how far the read model is behind the events: each change the feed
//! pushes (`GET /v1/feed/events`) carries the event time of the reaction it counts
//! (`updated_at`), so now − `updated_at` is the event → `posts_with_counts` → read model latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use shared::bench::percentile;
use shared::service::cli::{self, ServeArgs};
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;

use crate::app::{MySocialMedia, Options};
use crate::events::{PostWithCounts, TrendingPosts};
use crate::refresh_feed_service::{FeedPage, MAX_PAGE};
use crate::simulator::{self, SimulationArgs, SimulatorStats, stop_after};

/// How many posts a summary line shows.
const TOP: usize = 3;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    options: Options,
    #[command(flatten)]
    simulation: SimulationArgs,
    /// Print a summary this often.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    every: Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

/// Every service, the simulator and the summary, until `stop` (or `--duration`).
pub async fn run(args: DemoArgs, kafka: &KafkaArgs, stop: CancellationToken) -> anyhow::Result<()> {
    anyhow::ensure!(!args.every.is_zero(), "--every must not be zero");
    let kafka = Kafka::connect(kafka)?;
    let (process, dirs) =
        cli::start::<MySocialMedia>(&kafka, &[], &args.serve, &args.options).await?;
    let images = args
        .options
        .images_dir
        .clone()
        .unwrap_or_else(|| dirs.data.join("images"));
    let url = process.url();
    println!(
        "mysocialmedia demo: API {url} (try {url}/v1/feed?limit=5, {url}/v1/trending or curl -N {url}/v1/feed/events), broker {} (kcat -b {} -L), images {}",
        kafka.bootstrap_servers(),
        kafka.bootstrap_servers(),
        images.display()
    );
    let options = args.simulation.options(url.clone())?;
    stop_after(args.duration, &stop);
    let latencies = Arc::new(Latencies::default());
    let watching = tokio::spawn(watch(url.clone(), Arc::clone(&latencies), stop.clone()));
    let stats = Arc::new(SimulatorStats::default());
    let simulation = tokio::spawn(simulator::simulate(
        options,
        Arc::clone(&stats),
        stop.clone(),
    ));
    report(
        url,
        Arc::clone(&stats),
        Arc::clone(&latencies),
        args.every,
        stop.clone(),
    )
    .await;
    simulation.await??;
    watching.await?;
    process.stop().await?;
    println!(
        "final: {} events accepted · {} · read model: {}",
        stats.events(),
        simulator::totals(&stats),
        latencies.overall()
    );
    println!(
        "mysocialmedia demo stopped; images are in {}",
        images.display()
    );
    Ok(())
}

/// Event → read model latencies, from the feed's server-sent events.
#[derive(Debug, Default)]
pub struct Latencies {
    /// Since the last summary, in milliseconds.
    recent: Mutex<Vec<u64>>,
    updates: AtomicU64,
    sum_ms: AtomicU64,
    max_ms: AtomicU64,
}

impl Latencies {
    pub fn record(&self, ms: u64) {
        self.recent.lock().expect("latencies").push(ms);
        self.updates.fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.max_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The updates since the last call, summarized: count, p50, p99, max.
    pub fn take_recent(&self) -> String {
        let mut recent = std::mem::take(&mut *self.recent.lock().expect("latencies"));
        if recent.is_empty() {
            return "no updates".into();
        }
        recent.sort_unstable();
        format!(
            "{} updates, p50 {} ms, p99 {} ms, max {} ms",
            recent.len(),
            percentile(&recent, 0.50),
            percentile(&recent, 0.99),
            recent[recent.len() - 1]
        )
    }

    /// Every update so far: count, mean, max.
    pub fn overall(&self) -> String {
        let updates = self.updates.load(Ordering::Relaxed);
        if updates == 0 {
            return "no updates seen".into();
        }
        format!(
            "{updates} updates, mean {} ms, max {} ms after their event",
            self.sum_ms.load(Ordering::Relaxed) / updates,
            self.max_ms.load(Ordering::Relaxed)
        )
    }
}

/// Takes the complete events out of `buffer` (server-sent events: blocks ending in a blank
/// line) and returns their data; an incomplete last block stays for the next chunk.
pub fn take_events(buffer: &mut String) -> Vec<String> {
    let mut events = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let data: Vec<&str> = block
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|data| data.strip_prefix(' ').unwrap_or(data))
            .collect();
        if !data.is_empty() {
            events.push(data.join("\n"));
        }
    }
    events
}

/// Follows `GET /v1/feed/events` until `stop`, recording each change's latency; reconnects if
/// the stream ends.
async fn watch(api: String, latencies: Arc<Latencies>, stop: CancellationToken) {
    let http = reqwest::Client::new();
    let url = format!("{api}/v1/feed/events");
    while !stop.is_cancelled() {
        let follow = async {
            let Ok(mut response) = http.get(&url).send().await else {
                return;
            };
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                for data in take_events(&mut buffer) {
                    if let Ok(post) = serde_json::from_str::<PostWithCounts>(&data) {
                        let ms = (Utc::now() - post.updated_at).num_milliseconds().max(0);
                        latencies.record(ms as u64);
                    }
                }
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = follow => {}
        }
        // Not answering yet (starting up) or closed: try again in a moment.
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Prints a summary every `every` until `stop`.
pub async fn report(
    api: String,
    stats: Arc<SimulatorStats>,
    latencies: Arc<Latencies>,
    every: Duration,
    stop: CancellationToken,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let started = Instant::now();
    let (mut last_events, mut last_at) = (0, Instant::now());
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let events = stats.events();
        let rate = (events - last_events) as f64 / last_at.elapsed().as_secs_f64();
        (last_events, last_at) = (events, Instant::now());
        let mut lines = vec![format!(
            "[t+{:>4}s] {rate:.1} events/s · {} · {} posts in the feed",
            started.elapsed().as_secs(),
            simulator::totals(&stats),
            stats.seen.load(Ordering::Relaxed),
        )];
        if let Some(viral) = stats.viral() {
            lines.push(format!(
                "  viral: {} by {} \"{}\"",
                short_id(&viral.post_id),
                viral.user_id,
                ellipsis(&viral.caption, 40)
            ));
        }
        if let Some(feed) = get::<FeedPage>(&http, &format!("{api}/v1/feed?limit={MAX_PAGE}")).await
        {
            lines.push(format!("  most liked: {}", most_liked(&feed.posts, TOP)));
        }
        if let Some(board) = get::<TrendingPosts>(&http, &format!("{api}/v1/trending")).await {
            lines.push(format!("  trending {}", board_line(&board, TOP)));
        }
        lines.push(format!(
            "  event → posts_with_counts → feed: {}",
            latencies.take_recent()
        ));
        println!("{}", lines.join("\n"));
    }
}

async fn get<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> Option<T> {
    let response = http.get(url).send().await.ok()?.error_for_status().ok()?;
    response.json().await.ok()
}

/// The end of a post id (its random part): enough to tell posts apart on a terminal.
pub fn short_id(id: &str) -> String {
    let tail: String = id
        .chars()
        .rev()
        .take(6)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// "1 like", "2 likes".
pub fn plural(n: i64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `text` cut to `max` characters.
pub fn ellipsis(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// The `top` posts of `posts` with the most likes, on one line.
pub fn most_liked(posts: &[PostWithCounts], top: usize) -> String {
    let mut posts: Vec<&PostWithCounts> = posts.iter().collect();
    posts.sort_by(|a, b| {
        (b.likes, b.comments)
            .cmp(&(a.likes, a.comments))
            .then_with(|| b.post_id.cmp(&a.post_id))
    });
    let shown: Vec<String> = posts
        .iter()
        .take(top)
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{}) {} by {}: {}, {}",
                i + 1,
                short_id(&p.post_id),
                p.user_id,
                plural(p.likes as i64, "like"),
                plural(p.comments as i64, "comment")
            )
        })
        .collect();
    if shown.is_empty() {
        "—".into()
    } else {
        shown.join(" · ")
    }
}

/// A trending board's window and its `top` posts, on one line.
pub fn board_line(board: &TrendingPosts, top: usize) -> String {
    let posts: Vec<String> = board
        .posts
        .iter()
        .take(top)
        .enumerate()
        .map(|(i, r)| {
            format!(
                "{}) {} score {} ({}, {})",
                i + 1,
                short_id(&r.post_id),
                r.score,
                plural(r.likes, "like"),
                plural(r.comments, "comment")
            )
        })
        .collect();
    format!(
        "{}–{} ({}): {}",
        board.window_start.format("%H:%M"),
        board.window_end.format("%H:%M"),
        if board.is_final { "final" } else { "open" },
        if posts.is_empty() {
            "—".into()
        } else {
            posts.join(" · ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Ranked;
    use chrono::DateTime;

    #[test]
    fn server_sent_events_are_taken_whole() {
        let mut buffer = String::from(
            "event: post\ndata: {\"a\":1}\n\n: keep-alive\n\nevent: post\ndata: {\"a\"",
        );
        assert_eq!(take_events(&mut buffer), vec!["{\"a\":1}".to_owned()]);
        assert_eq!(buffer, "event: post\ndata: {\"a\"");
        buffer.push_str(":2}\n\n");
        assert_eq!(take_events(&mut buffer), vec!["{\"a\":2}".to_owned()]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn latencies_summarize_by_rank() {
        let latencies = Latencies::default();
        assert_eq!(latencies.take_recent(), "no updates");
        for ms in (1..=100).rev() {
            latencies.record(ms);
        }
        assert_eq!(
            latencies.take_recent(),
            "100 updates, p50 50 ms, p99 99 ms, max 100 ms"
        );
        assert_eq!(latencies.take_recent(), "no updates");
        assert_eq!(
            latencies.overall(),
            "100 updates, mean 50 ms, max 100 ms after their event"
        );
    }

    #[test]
    fn summary_lines() {
        let at = DateTime::from_timestamp(3_600 * 15 + 120, 0).unwrap();
        let post =
            |id: &str, likes, comments| PostWithCounts::sample(id, "ann", likes, comments, at);
        let posts = vec![
            post("0000-aaaaaa", 3, 0),
            post("0000-bbbbbb", 9, 1),
            post("0000-cccccc", 3, 2),
        ];
        assert_eq!(
            most_liked(&posts, 2),
            "1) …bbbbbb by ann: 9 likes, 1 comment · 2) …cccccc by ann: 3 likes, 2 comments"
        );
        assert_eq!(most_liked(&[], 2), "—");
        let board = TrendingPosts {
            window_start: at - chrono::TimeDelta::hours(1),
            window_end: at,
            is_final: false,
            posts: vec![Ranked {
                post_id: "0000-bbbbbb".into(),
                score: 12,
                likes: 9,
                comments: 1,
            }],
        };
        assert_eq!(
            board_line(&board, 3),
            "14:02–15:02 (open): 1) …bbbbbb score 12 (9 likes, 1 comment)"
        );
        assert_eq!(ellipsis("Golden hour", 6), "Golde…");
        assert_eq!(ellipsis("Golden", 6), "Golden");
    }
}
