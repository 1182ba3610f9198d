//! The reader of `posts_with_counts`: what the website's feed would see. It keeps each post's
//! latest counts (compared with the ground truth at the end) and measures two latencies:
//!
//! * **event → visible**: for every reaction that changes a count, from its event time to the
//!   moment the first `posts_with_counts` record that includes it is polled. A record includes
//!   every reaction of its post up to its `updated_at` (the event time, in ms, of the latest
//!   reaction counted; a post's reactions are sent and applied in event-time order). This is
//!   the latency a user sees: the counting application emits a post once per batch, so a like
//!   early in a batch waits for the batch's end;
//! * **per record**: poll time − `updated_at` of each record, i.e. that of the batch's newest
//!   reaction of the post only (the smaller figure).
//!
//! Reactions in the same millisecond as a record's `updated_at` but processed in the next
//! batch are taken as included (at most one batch early, for a handful of events).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::Message;
use rdkafka::consumer::BaseConsumer;
use serde::Deserialize;
use shared::Kafka;

/// Latencies are grouped by the 10-s window of the event time they are measured from.
pub const WINDOW_US: i64 = 10_000_000;

/// What the reader shares while it runs.
#[derive(Debug)]
pub struct Shared {
    /// Each post's latest (likes, comments), by post index.
    pub latest: Mutex<Vec<Option<(u64, u64)>>>,
    /// Posts with at least one record.
    pub posts_seen: AtomicUsize,
    /// Records polled.
    pub records: AtomicU64,
    /// Event times (µs since the epoch) from this one on are measured; none until it is set.
    pub measure_from_us: AtomicI64,
    pub stop: AtomicBool,
}

/// Latencies measured, each as (window index, µs).
#[derive(Debug, Default)]
pub struct Samples {
    pub events: Vec<(u32, u32)>,
    pub records: Vec<(u32, u32)>,
    /// Count-changing reactions no record ever included.
    pub never_visible: u64,
    /// Records that were not a post with counts of the bench's posts.
    pub foreign: u64,
}

/// The fields of a [`crate::events::PostWithCounts`] the reader needs.
#[derive(Deserialize)]
struct Row {
    post_id: String,
    likes: u64,
    comments: u64,
    updated_at: DateTime<Utc>,
}

fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// Starts reading every partition of `topic` from its beginning on a thread of its own.
/// `posts` maps each post id to its index; `changed` brings the count-changing reactions (post
/// index, event time in µs) as they are sent.
pub fn start(
    kafka: &Kafka,
    topic: &str,
    partitions: i32,
    posts: Arc<HashMap<String, u32>>,
    changed: mpsc::Receiver<(u32, i64)>,
) -> anyhow::Result<(Arc<Shared>, std::thread::JoinHandle<Samples>)> {
    let consumer = shared::bench::reader(kafka, topic, partitions, rdkafka::Offset::Beginning)?;
    let shared = Arc::new(Shared {
        latest: Mutex::new(vec![None; posts.len()]),
        posts_seen: AtomicUsize::new(0),
        records: AtomicU64::new(0),
        measure_from_us: AtomicI64::new(i64::MAX),
        stop: AtomicBool::new(false),
    });
    let thread = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("bench-reader".into())
            .spawn(move || read(&consumer, &posts, &changed, &shared))?
    };
    Ok((shared, thread))
}

fn read(
    consumer: &BaseConsumer,
    posts: &HashMap<String, u32>,
    changed: &mpsc::Receiver<(u32, i64)>,
    shared: &Shared,
) -> Samples {
    let mut samples = Samples::default();
    // Per post, the event times (µs) of its count-changing reactions no record included yet.
    let mut pending: Vec<VecDeque<i64>> = vec![VecDeque::new(); posts.len()];
    let window = |from: i64, at_us: i64| ((at_us - from) / WINDOW_US) as u32;
    let micros = |us: i64| us.clamp(0, i64::from(u32::MAX)) as u32;
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let polled_us = now_us();
        let message = match message {
            Ok(message) => message,
            Err(err) => {
                tracing::warn!(%err, "bench reader");
                continue;
            }
        };
        // Every reaction this record may include was reported before it was sent.
        while let Ok((post, at_us)) = changed.try_recv() {
            pending[post as usize].push_back(at_us);
        }
        let row = message
            .payload()
            .and_then(|p| serde_json::from_slice::<Row>(p).ok());
        let Some((row, &post)) = row.and_then(|row| {
            let post = posts.get(&row.post_id)?;
            Some((row, post))
        }) else {
            samples.foreign += 1;
            continue;
        };
        let from = shared.measure_from_us.load(Ordering::Relaxed);
        let updated_us = row.updated_at.timestamp_micros();
        let updated_ms = updated_us.div_euclid(1000);
        let queue = &mut pending[post as usize];
        while let Some(&at_us) = queue.front()
            && at_us.div_euclid(1000) <= updated_ms
        {
            queue.pop_front();
            if at_us >= from {
                samples
                    .events
                    .push((window(from, at_us), micros(polled_us - at_us)));
            }
        }
        if updated_us >= from {
            samples
                .records
                .push((window(from, updated_us), micros(polled_us - updated_us)));
        }
        let first = shared.latest.lock().expect("latest")[post as usize]
            .replace((row.likes, row.comments))
            .is_none();
        if first {
            shared.posts_seen.fetch_add(1, Ordering::Relaxed);
        }
        shared.records.fetch_add(1, Ordering::Relaxed);
    }
    while let Ok((post, at_us)) = changed.try_recv() {
        pending[post as usize].push_back(at_us);
    }
    samples.never_visible = pending.iter().map(|q| q.len() as u64).sum();
    samples
}
