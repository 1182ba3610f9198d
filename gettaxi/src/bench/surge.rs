//! `gettaxi bench surge`: how long after a window advance its surge changes are on
//! `surge_pricing`. Surge pricing runs in this process; taxis and riders report to
//! `taxi_position` and `user_position` with their event time = now, so stream time passes an
//! advance (a multiple of 30 s) with the first positions sent after it, on the wall clock. The
//! latency of a `surge_pricing` record is from its window's end (`at`, the advance) to the moment
//! it is polled: the two hops through the repartition topic, the window computation of every
//! region of the task, and the output.
//!
//! The load: `--taxis` available taxis cruising Manhattan and `--riders` riders looking at the
//! app from home (about one rider per taxi: multiplier 1.0), both reporting every `--interval`;
//! at each advance, a quarter of the regions (chosen at random) gets a crowd of `--crowd` more
//! riders for 30 s. Crowds enter and leave the 5-minute windows, so multipliers rise and fall
//! and most advances change many regions. The first `--warmup-advances` advances are not
//! measured (the application joins its group, the windows fill).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use h3o::{CellIndex, LatLng};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rdkafka::Message;
use shared::{EventProducer, KafkaArgs};
use tokio_util::sync::CancellationToken;

use super::fleet::{self, Fleet, Sent};
use super::{NORTH_EAST, SOUTH_WEST, random_point};
use crate::events::{SurgePrice, UserPosition};
use crate::geo::{self, Point};
use crate::surge_pricing::Model;
use crate::topics::{SURGE_PRICING, TAXI_POSITION, USER_POSITION};

#[derive(Debug, Clone, clap::Args)]
pub struct SurgeBench {
    /// Available taxis cruising Manhattan.
    #[arg(long, default_value_t = 10_000)]
    pub taxis: usize,
    /// Riders looking at the app from home.
    #[arg(long, default_value_t = 10_000)]
    pub riders: usize,
    /// Riders of the crowd a region gets for one advance.
    #[arg(long, default_value_t = 150)]
    pub crowd: usize,
    /// How often each taxi and rider reports.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Advances measured (30 s each).
    #[arg(long, default_value_t = 6)]
    pub advances: u32,
    /// Advances run first and not measured.
    #[arg(long, default_value_t = 2)]
    pub warmup_advances: u32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The surge regions that cover the bench's box.
fn regions() -> Vec<CellIndex> {
    let mut cells = BTreeSet::new();
    for i in 0..=60 {
        for j in 0..=60 {
            let lat = SOUTH_WEST.lat + (NORTH_EAST.lat - SOUTH_WEST.lat) * f64::from(i) / 60.0;
            let lon = SOUTH_WEST.lon + (NORTH_EAST.lon - SOUTH_WEST.lon) * f64::from(j) / 60.0;
            cells.insert(geo::region(Point { lat, lon }));
        }
    }
    cells.into_iter().collect()
}

/// The regions that get a crowd during the advance `epoch` (a quarter of them).
fn crowded(regions: &[CellIndex], epoch: i64, seed: u64) -> Vec<CellIndex> {
    let mut rng = StdRng::seed_from_u64(seed ^ epoch as u64);
    regions
        .choose_multiple(&mut rng, regions.len().div_ceil(4))
        .copied()
        .collect()
}

pub async fn surge(kafka: &KafkaArgs, bench: &SurgeBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        bench.taxis > 0 && bench.advances > 0,
        "--taxis and --advances must be positive"
    );
    let model = Model::default();
    let kafka = super::fresh_prefix(&shared::Kafka::connect(kafka)?);
    let dir = tempfile::tempdir()?;
    let process = super::start(
        &kafka,
        &["surge-pricing"],
        dir.path(),
        crate::app::Options::default(),
    )
    .await?;
    let regions = regions();
    let crowd_members = regions.len().div_ceil(4) * bench.crowd;
    println!(
        "gettaxi bench surge: broker {}; {} taxis and {} riders reporting every {:?}, a crowd of {} riders in each of {} of the {} regions per advance ({:.0} positions/s); {} advances of {} s measured after {} not",
        super::broker(&kafka),
        bench.taxis,
        bench.riders,
        bench.interval,
        bench.crowd,
        regions.len().div_ceil(4),
        regions.len(),
        (bench.taxis + bench.riders + crowd_members) as f64 / bench.interval.as_secs_f64(),
        bench.advances,
        model.advance_ms / 1000,
        bench.warmup_advances
    );

    let stop = CancellationToken::new();
    let producer = EventProducer::new(&kafka)?;
    let sent = Arc::new(Sent::default());
    let taxis = {
        let fleet = Arc::new(Fleet::new(bench.taxis, bench.interval, bench.seed));
        let (producer, sent) = (producer.clone(), Arc::clone(&sent));
        let topic: Arc<str> = kafka.topic(&TAXI_POSITION).into();
        tokio::spawn(fleet::every(
            bench.taxis,
            bench.interval,
            stop.clone(),
            move |i| {
                let report = fleet.report(i);
                fleet::publish(&producer, &topic, report.taxi_id.clone(), report, &sent);
            },
        ))
    };
    let riders = {
        let mut rng = StdRng::seed_from_u64(bench.seed + 1);
        let homes: Vec<Point> = (0..bench.riders).map(|_| random_point(&mut rng)).collect();
        let (producer, sent, seed) = (producer.clone(), Arc::clone(&sent), bench.seed);
        let (regions, crowd) = (regions.clone(), bench.crowd.max(1));
        let topic: Arc<str> = kafka.topic(&USER_POSITION).into();
        let mut today: Option<(i64, Vec<CellIndex>)> = None;
        tokio::spawn(fleet::every(
            bench.riders + crowd_members,
            bench.interval,
            stop.clone(),
            move |i| {
                let (user_id, point) = if let Some(home) = homes.get(i) {
                    (format!("rider-{i:06}"), *home)
                } else {
                    let epoch = now_ms().div_euclid(model.advance_ms);
                    if today.as_ref().is_none_or(|(e, _)| *e != epoch) {
                        today = Some((epoch, crowded(&regions, epoch, seed)));
                    }
                    let j = i - homes.len();
                    let cells = &today.as_ref().expect("set above").1;
                    let Some(cell) = cells.get(j / crowd) else {
                        return;
                    };
                    let centre = LatLng::from(*cell);
                    let point = Point {
                        lat: centre.lat() + rng.random_range(-0.004..0.004),
                        lon: centre.lng() + rng.random_range(-0.004..0.004),
                    };
                    (format!("crowd-{epoch}-{j:05}"), point)
                };
                let report = UserPosition {
                    event_id: shared::event::new_event_id(),
                    user_id: user_id.clone(),
                    lat: point.lat,
                    lon: point.lon,
                    at: Utc::now(),
                };
                fleet::publish(&producer, &topic, user_id, report, &sent);
            },
        ))
    };

    // The advances measured, and the records polled for them.
    let advance = model.advance_ms;
    let first = (now_ms().div_euclid(advance) + 1 + i64::from(bench.warmup_advances)) * advance;
    let last = first + i64::from(bench.advances - 1) * advance;
    let polled: Arc<Mutex<Vec<(i64, Duration)>>> = Arc::default();
    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let consumer = shared::bench::reader(
            &kafka,
            &kafka.topic(&SURGE_PRICING),
            SURGE_PRICING.partitions,
            rdkafka::Offset::End,
        )?;
        let (polled, reading) = (Arc::clone(&polled), Arc::clone(&reading));
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            while reading.load(Ordering::Relaxed) {
                let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let message = message?;
                let now = now_ms();
                let Some(price) = message
                    .payload()
                    .and_then(|p| serde_json::from_slice::<SurgePrice>(p).ok())
                else {
                    continue;
                };
                let end = price.at.timestamp_millis();
                if (first..=last).contains(&end) {
                    let latency = Duration::from_millis((now - end).max(0) as u64);
                    polled.lock().expect("polled").push((end, latency));
                }
            }
            Ok(())
        })
    };

    // Until 15 s after the last advance measured.
    let until = last + 15_000 - now_ms();
    tokio::time::sleep(Duration::from_millis(until.max(0) as u64)).await;
    reading.store(false, Ordering::Relaxed);
    reader.await??;
    stop.cancel();
    taxis.await?;
    riders.await?;
    process.stop().await?;

    let polled = std::mem::take(&mut *polled.lock().expect("polled"));
    println!(
        "positions: {} sent, {} refused by the broker",
        sent.ok.load(Ordering::Relaxed),
        sent.failed.load(Ordering::Relaxed)
    );
    println!("| advance | regions changed | slowest ms |");
    println!("|---|---|---|");
    let mut end = first;
    while end <= last {
        let of: Vec<Duration> = polled
            .iter()
            .filter(|(e, _)| *e == end)
            .map(|(_, l)| *l)
            .collect();
        let at = chrono::DateTime::from_timestamp_millis(end).unwrap_or_default();
        println!(
            "| {} | {} | {} |",
            at.format("%H:%M:%S"),
            of.len(),
            of.iter()
                .max()
                .map_or("—".into(), |l| l.as_millis().to_string())
        );
        end += advance;
    }
    println!(
        "window advance → surge_pricing record polled: {} [target: p99 < 2 s]",
        super::summary(polled.into_iter().map(|(_, l)| l).collect())
    );
    Ok(())
}
