//! `gettaxi bench matching`: ride requests at a steady rate over HTTP (`POST /v1/rides`) while a
//! fleet of taxis moves and reports; the latency of a request is from just before its POST is
//! sent to the moment the `rides` record answering it (a taxi, or no driver) is polled — what
//! the rider application waits for. The ride service and driver matching run in this process.
//!
//! The fleet drives its rides: a taxi assigned a ride reports `en_route` with it for
//! `--ride-time`, then `available` again (the taxi ledger then frees it), so the index keeps
//! changing and the fleet does not run dry. A taxi assigned a second ride while it drives one
//! fails the run. Requests start once the fleet has reported twice; the first `--warmup`
//! seconds of requests are not measured. The index lookup inside driver matching is read from
//! its histogram, `gettaxi_nearest_lookup_seconds` (bucket bounds: 10 µs × 1.25ⁿ).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rdkafka::Message;
use serde::Deserialize;
use shared::{EventProducer, KafkaArgs};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fleet::{self, Fleet, Sent};
use super::random_point;
use crate::events::{Outcome, RideUpdate};
use crate::geo::Point;
use crate::topics::{RIDES, TAXI_POSITION};

#[derive(Debug, Clone, clap::Args)]
pub struct MatchingBench {
    /// Taxis moving over Manhattan.
    #[arg(long, default_value_t = 10_000)]
    pub taxis: usize,
    /// How often each taxi reports.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Ride requests per second, evenly spaced.
    #[arg(long, default_value_t = 500)]
    pub requests_per_s: u32,
    /// Seconds of requests measured.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Seconds of requests sent first and not measured.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Driver matching's radius, metres (`--match-radius-m` of the services; `bench index`'s
    /// default too: a taxi is indexed in every matching area within it of its position).
    #[arg(long, default_value_t = 2_000.0)]
    pub match_radius_m: f64,
    /// How long a taxi drives a ride it was assigned.
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    pub ride_time: Duration,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Requests sent and the answers read, matched by ride id (an answer may be read before the
/// POST's own answer names the ride).
#[derive(Default)]
struct Book {
    /// Ride → when its POST was sent, and whether it is measured.
    sent: HashMap<String, (Instant, bool)>,
    /// Ride → when its answer was read (the POST's answer not yet read).
    early: HashMap<String, (Instant, bool)>,
    assigned: Vec<Duration>,
    no_driver: Vec<Duration>,
    answered: u64,
}

impl Book {
    fn sent(&mut self, ride: String, at: Instant, measured: bool) {
        match self.early.remove(&ride) {
            Some((read, assigned)) => self.answered(read - at, measured, assigned),
            None => {
                self.sent.insert(ride, (at, measured));
            }
        }
    }

    fn read(&mut self, ride: &str, at: Instant, assigned: bool) {
        match self.sent.remove(ride) {
            Some((sent, measured)) => self.answered(at - sent, measured, assigned),
            // A re-delivered answer (at-least-once) is not measured twice.
            None => {
                self.early.entry(ride.to_owned()).or_insert((at, assigned));
            }
        }
    }

    fn answered(&mut self, latency: Duration, measured: bool, assigned: bool) {
        self.answered += 1;
        if measured {
            if assigned {
                self.assigned.push(latency);
            } else {
                self.no_driver.push(latency);
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct Accepted {
    ride_id: String,
}

pub async fn matching(kafka: &KafkaArgs, bench: &MatchingBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        bench.taxis > 0 && bench.requests_per_s > 0 && bench.seconds > 0,
        "--taxis, --requests-per-s and --seconds must be positive"
    );
    anyhow::ensure!(
        bench.ride_time >= bench.interval,
        "--ride-time must be at least --interval (a taxi reports its ride at least once)"
    );
    let kafka = super::fresh_prefix(&shared::Kafka::connect(kafka)?);
    let dir = tempfile::tempdir()?;
    let options = crate::app::Options {
        match_radius_m: bench.match_radius_m,
        ..crate::app::Options::default()
    };
    let process = super::start(
        &kafka,
        &["ride-service", "driver-matching"],
        dir.path(),
        options,
    )
    .await?;
    let api = process.url();
    println!(
        "gettaxi bench matching: broker {}; {} taxis reporting every {:?} ({:.0} positions/s), {} ride requests/s for {} s after a {} s warm-up, rides of {:?}, match radius {} m",
        super::broker(&kafka),
        bench.taxis,
        bench.interval,
        bench.taxis as f64 / bench.interval.as_secs_f64(),
        bench.requests_per_s,
        bench.seconds,
        bench.warmup,
        bench.ride_time,
        bench.match_radius_m
    );

    let stop = CancellationToken::new();
    let fleet = Arc::new(Fleet::new(bench.taxis, bench.interval, bench.seed));
    let positions = Arc::new(Sent::default());
    let producer = EventProducer::new(&kafka)?;
    let reporting = {
        let (fleet, positions, stop) = (Arc::clone(&fleet), Arc::clone(&positions), stop.clone());
        let topic: Arc<str> = kafka.topic(&TAXI_POSITION).into();
        tokio::spawn(fleet::every(bench.taxis, bench.interval, stop, move |i| {
            let report = fleet.report(i);
            fleet::publish(
                &producer,
                &topic,
                report.taxi_id.clone(),
                report,
                &positions,
            );
        }))
    };

    // The answers, read as the rider application would.
    let book = Arc::new(Mutex::new(Book::default()));
    let double = Arc::new(AtomicU64::new(0));
    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let consumer = shared::bench::reader(
            &kafka,
            &kafka.topic(&RIDES),
            RIDES.partitions,
            rdkafka::Offset::End,
        )?;
        let (book, fleet, double, reading) = (
            Arc::clone(&book),
            Arc::clone(&fleet),
            Arc::clone(&double),
            Arc::clone(&reading),
        );
        let ride_time = bench.ride_time;
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            while reading.load(Ordering::Relaxed) {
                let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let message = message?;
                let now = Instant::now();
                let Some(update) = message
                    .payload()
                    .and_then(|p| serde_json::from_slice::<RideUpdate>(p).ok())
                else {
                    continue;
                };
                let assigned = match &update.outcome {
                    Outcome::Assigned { taxi_id, .. } => {
                        if !fleet.assign(taxi_id, &update.ride_id, ride_time) {
                            double.fetch_add(1, Ordering::Relaxed);
                        }
                        true
                    }
                    _ => false,
                };
                book.lock()
                    .expect("book")
                    .read(&update.ride_id, now, assigned);
            }
            Ok(())
        })
    };

    // Two reports of every taxi: the area indexes hold the fleet.
    tokio::time::sleep(bench.interval * 2).await;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(256)
        .build()?;
    let refused = Arc::new(AtomicU64::new(0));
    let total = u64::from(bench.requests_per_s) * (bench.warmup + bench.seconds);
    let measured_from = u64::from(bench.requests_per_s) * bench.warmup;
    let every = Duration::from_secs(1) / bench.requests_per_s;
    let mut rng = StdRng::seed_from_u64(bench.seed);
    let started = Instant::now();
    let mut posts = Vec::with_capacity(total as usize);
    for seq in 0..total {
        tokio::time::sleep_until(started + every * seq as u32).await;
        let pickup = random_point(&mut rng);
        let dropoff = random_point(&mut rng);
        let body = serde_json::json!({
            "rider_id": format!("rider-{seq:07}"),
            "pickup": pickup,
            "dropoff": nearer(pickup, dropoff),
        });
        let (http, book, refused) = (http.clone(), Arc::clone(&book), Arc::clone(&refused));
        let url = format!("{api}/v1/rides");
        posts.push(tokio::spawn(async move {
            let at = Instant::now();
            let accepted = match http.post(&url).json(&body).send().await {
                Ok(response) if response.status() == reqwest::StatusCode::ACCEPTED => {
                    response.json::<Accepted>().await.ok()
                }
                _ => None,
            };
            match accepted {
                Some(accepted) => {
                    book.lock()
                        .expect("book")
                        .sent(accepted.ride_id, at, seq >= measured_from)
                }
                None => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let sending = started.elapsed();
    for post in posts {
        post.await?;
    }
    // Every answer, or 15 s of waiting.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && !book.lock().expect("book").sent.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reading.store(false, Ordering::Relaxed);
    reader.await??;
    stop.cancel();
    reporting.await?;
    let metrics = shared::metrics::encode();
    let lookups = super::bucket_quantile(&metrics, "gettaxi_nearest_lookup_seconds", 0.99);
    let lookups_p50 = super::bucket_quantile(&metrics, "gettaxi_nearest_lookup_seconds", 0.5);
    let streams = super::streams_line(crate::driver_matching::APPLICATION_ID);
    process.stop().await?;

    let book = std::mem::take(&mut *book.lock().expect("book"));
    println!(
        "requests: {total} sent in {:.1} s, {} refused, {} answered ({} measured: {} assigned, {} no driver), {} unanswered after 15 s",
        sending.as_secs_f64(),
        refused.load(Ordering::Relaxed),
        book.answered,
        book.assigned.len() + book.no_driver.len(),
        book.assigned.len(),
        book.no_driver.len(),
        book.sent.len(),
    );
    println!(
        "positions: {} sent, {} refused by the broker; a taxi assigned while on another ride: {} times",
        positions.ok.load(Ordering::Relaxed),
        positions.failed.load(Ordering::Relaxed),
        double.load(Ordering::Relaxed)
    );
    println!(
        "request → assignment (POST sent → `rides` record polled): {}",
        super::summary(book.assigned)
    );
    println!(
        "request → no driver:                                      {}",
        super::summary(book.no_driver)
    );
    println!("{streams}");
    if let (Some((p50, n)), Some((p99, _))) = (lookups_p50, lookups) {
        println!(
            "index lookup in driver matching ({n} lookups, histogram bucket bounds): p50 ≤ {:.0} µs · p99 ≤ {:.0} µs [target: p99 < 1 ms]",
            p50 * 1e6,
            p99 * 1e6
        );
    }
    anyhow::ensure!(
        double.load(Ordering::Relaxed) == 0,
        "a taxi was assigned a second ride while it drove one"
    );
    Ok(())
}

/// `dropoff`, pulled towards `pickup` so the ride is at most a few kilometres (the fleet's rides
/// last `--ride-time` whatever their length; a short ride keeps the quote realistic).
fn nearer(pickup: Point, dropoff: Point) -> Point {
    let f = 0.3;
    Point {
        lat: pickup.lat + (dropoff.lat - pickup.lat) * f,
        lon: pickup.lon + (dropoff.lon - pickup.lon) * f,
    }
}
