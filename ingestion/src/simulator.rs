//! **Simulator**: the data producers of the slide, over the ingest API's HTTP — a web
//! clickstream, a mobile app and IoT devices — sending NDJSON batches.
//!
//! * **Sources** ([`SOURCES`]): each event's source is drawn by its share, then its event type by
//!   the source's mix (web: page views, clicks, add-to-carts, purchases; mobile: app opens,
//!   screen views, taps, purchases; IoT: readings, alarms), its actor from
//!   [`SimulatorOptions::users`] users (web and mobile) or [`SimulatorOptions::devices`]
//!   devices (iot).
//! * **Event time** is now, minus up to 2 s of client delay; [`BACKLOG_SHARE`] of IoT events
//!   come from a device that was offline and sends 1–4 minutes old readings: with the default
//!   2 min grace, some count and some are dropped as late by the speed layer.
//! * **Bursts**: for [`Burst::lasting`] at the end of every [`Burst::every`], the rate is
//!   multiplied by [`Burst::factor`] — Kafka absorbs it, the speed layer catches up.
//! * **Bad lines**: a [`SimulatorOptions::bad_share`] of lines is broken (an event type with
//!   spaces, a missing actor, not JSON): the API rejects those lines and publishes the rest.
//!
//! Events are generated every [`TICK`] at the rate of the moment (`--rate`, or `casestudies up`'s
//! knob, read every tick; 0 pauses) and sent in batches of at most
//! [`SimulatorOptions::batch`] lines, at most [`MAX_IN_FLIGHT`] batches awaiting an answer.
//! Every choice comes from one generator seeded by [`SimulatorOptions::seed`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::json;
use shared::KafkaArgs;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::events::Source;
use crate::ingest_api::{BatchResult, NDJSON};

/// How often events are generated.
pub const TICK: Duration = Duration::from_millis(100);
/// Batches awaiting an answer at most; past it, the rate drops (the API is the bottleneck).
pub const MAX_IN_FLIGHT: usize = 8;
/// The share of IoT events sent late by a device that was offline.
pub const BACKLOG_SHARE: f64 = 0.005;

/// Event types with their shares.
pub type Mix = &'static [(&'static str, f64)];

/// Each source's share of events, and its event types with theirs.
pub const SOURCES: &[(Source, f64, Mix)] = &[
    (
        Source::Web,
        0.45,
        &[
            ("page_view", 0.60),
            ("click", 0.30),
            ("add_to_cart", 0.08),
            ("purchase", 0.02),
        ],
    ),
    (
        Source::Mobile,
        0.35,
        &[
            ("app_open", 0.10),
            ("screen_view", 0.50),
            ("tap", 0.37),
            ("purchase", 0.03),
        ],
    ),
    (Source::Iot, 0.20, &[("reading", 0.97), ("alarm", 0.03)]),
];

/// One of `items` by weight.
fn weighted<T: Copy>(rng: &mut impl Rng, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random::<f64>() * total;
    for (item, weight) in items {
        if roll < *weight {
            return *item;
        }
        roll -= weight;
    }
    items[items.len() - 1].0
}

/// When the rate bursts, and how much.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    pub every: Duration,
    pub lasting: Duration,
    pub factor: f64,
}

impl Burst {
    /// The rate multiplier `elapsed` into the run: [`Burst::factor`] during the last
    /// [`Burst::lasting`] of every [`Burst::every`], else 1.
    pub fn multiplier(&self, elapsed: Duration) -> f64 {
        let every = self.every.as_millis().max(1);
        let into = elapsed.as_millis() % every;
        if into >= every.saturating_sub(self.lasting.as_millis()) {
            self.factor
        } else {
            1.0
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct SimulationArgs {
    /// Events per second outside bursts.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Lines per request at most.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// A burst at the end of every period this long…
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub burst_every: Duration,
    /// …lasting this long…
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub burst_for: Duration,
    /// …multiplying the rate by this.
    #[arg(long, default_value_t = 5.0)]
    pub burst_factor: f64,
    /// The share of lines sent broken.
    #[arg(long, default_value_t = 0.002)]
    pub bad_share: f64,
    /// Web and mobile users.
    #[arg(long, default_value_t = 2000)]
    pub users: usize,
    /// IoT devices.
    #[arg(long, default_value_t = 300)]
    pub devices: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl SimulationArgs {
    /// The options, sending to `api`.
    pub fn options(&self, api: String) -> anyhow::Result<SimulatorOptions> {
        anyhow::ensure!(
            self.rate.is_finite() && self.rate > 0.0,
            "--rate must be positive"
        );
        anyhow::ensure!(
            (1..=crate::ingest_api::MAX_EVENTS).contains(&self.batch),
            "--batch must be 1 to {}",
            crate::ingest_api::MAX_EVENTS
        );
        anyhow::ensure!(
            self.burst_factor.is_finite() && self.burst_factor >= 1.0,
            "--burst-factor must be at least 1"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.bad_share),
            "--bad-share must be 0 to 1"
        );
        anyhow::ensure!(
            self.users > 0 && self.devices > 0,
            "--users and --devices must be positive"
        );
        Ok(SimulatorOptions {
            api,
            rate: self.rate,
            knob: None,
            batch: self.batch,
            burst: Burst {
                every: self.burst_every,
                lasting: self.burst_for,
                factor: self.burst_factor,
            },
            bad_share: self.bad_share,
            users: self.users,
            devices: self.devices,
            seed: self.seed,
        })
    }
}

impl Default for SimulationArgs {
    /// The command line's defaults.
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let matches = SimulationArgs::augment_args(clap::Command::new("simulate"))
            .try_get_matches_from(["simulate"])
            .expect("the defaults parse");
        SimulationArgs::from_arg_matches(&matches).expect("the defaults parse")
    }
}

/// What the simulator does.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// The ingest API's base URL.
    pub api: String,
    /// Events per second outside bursts, unless [`SimulatorOptions::knob`] is set.
    pub rate: f64,
    /// Events per second outside bursts, read as it goes (`casestudies up`'s knob; 0 pauses);
    /// when `None`, [`SimulatorOptions::rate`].
    pub knob: Option<shared::live::Knob>,
    pub batch: usize,
    pub burst: Burst,
    pub bad_share: f64,
    pub users: usize,
    pub devices: usize,
    pub seed: u64,
}

impl SimulatorOptions {
    /// Events per second outside bursts, now.
    pub fn base_rate(&self) -> f64 {
        self.knob.as_ref().map_or(self.rate, |k| k.get())
    }
}

/// What happened so far.
#[derive(Debug, Default)]
pub struct SimulatorStats {
    /// Lines sent (good and bad).
    pub sent: AtomicU64,
    /// Lines sent broken on purpose.
    pub bad_sent: AtomicU64,
    /// Events the API published.
    pub accepted: AtomicU64,
    /// Lines the API rejected.
    pub rejected: AtomicU64,
    /// Requests that failed whole (not answered, or not 202/400).
    pub failed_requests: AtomicU64,
    /// Late IoT readings sent (a device back online).
    pub backlog_sent: AtomicU64,
}

impl SimulatorStats {
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// One line: accepted, rejected, failed.
    pub fn totals(&self) -> String {
        format!(
            "{} accepted, {} rejected ({} sent broken), {} failed requests, {} late readings",
            self.accepted(),
            self.rejected.load(Ordering::Relaxed),
            self.bad_sent.load(Ordering::Relaxed),
            self.failed_requests.load(Ordering::Relaxed),
            self.backlog_sent.load(Ordering::Relaxed),
        )
    }
}

/// One NDJSON line: a good event, or (with probability `bad_share`) a broken one; `true` if
/// broken, and whether it is a late reading.
pub fn line(rng: &mut impl Rng, options: &SimulatorOptions) -> (String, bool, bool) {
    let sources: Vec<(usize, f64)> = SOURCES
        .iter()
        .enumerate()
        .map(|(i, (_, share, _))| (i, *share))
        .collect();
    let (source, _, types) = SOURCES[weighted(rng, &sources)];
    let event_type = weighted(rng, types);
    let mut at = Utc::now() - TimeDelta::milliseconds(rng.random_range(0..2_000));
    let mut late = false;
    let (actor, properties) = match source {
        Source::Iot => {
            if rng.random_bool(BACKLOG_SHARE) {
                at -= TimeDelta::seconds(rng.random_range(60..240));
                late = true;
            }
            let value = (rng.random_range(150..300) as f64) / 10.0;
            (
                format!("dev-{:05}", rng.random_range(0..options.devices)),
                json!({"value": value}),
            )
        }
        Source::Web => (
            format!("u{:06}", rng.random_range(0..options.users)),
            json!({"path": format!("/p/{}", rng.random_range(0..500))}),
        ),
        Source::Mobile => {
            let screen = ["home", "search", "cart", "profile"][rng.random_range(0..4)];
            (
                format!("u{:06}", rng.random_range(0..options.users)),
                json!({ "screen": screen }),
            )
        }
    };
    let event = json!({
        "source": source,
        "event_type": event_type,
        "actor": actor,
        "timestamp": crate::events::rfc3339(at),
        "properties": properties,
    });
    if rng.random_bool(options.bad_share) {
        let broken = match rng.random_range(0..3) {
            0 => {
                let mut e = event;
                e["event_type"] = json!("Add To Cart");
                e.to_string()
            }
            1 => {
                let mut e = event;
                if let Some(fields) = e.as_object_mut() {
                    fields.remove("actor");
                }
                e.to_string()
            }
            _ => format!("{{\"source\": \"{source}\", oops"),
        };
        return (broken, true, false);
    }
    (event.to_string(), false, late)
}

/// Sends events until `stop`.
pub async fn simulate(
    options: SimulatorOptions,
    stats: Arc<SimulatorStats>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}/v1/events", options.api.trim_end_matches('/'));
    let mut rng = StdRng::seed_from_u64(options.seed);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let started = Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut owed = 0.0f64;
    let mut last = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        let rate = options.base_rate() * options.burst.multiplier(started.elapsed());
        owed += rate * (now - last).as_secs_f64();
        last = now;
        let n = owed.floor() as usize;
        owed -= n as f64;
        let mut body = String::new();
        let mut lines = 0;
        for i in 0..n {
            let (text, bad, late) = line(&mut rng, &options);
            stats.bad_sent.fetch_add(u64::from(bad), Ordering::Relaxed);
            stats
                .backlog_sent
                .fetch_add(u64::from(late), Ordering::Relaxed);
            body.push_str(&text);
            body.push('\n');
            lines += 1;
            if lines == options.batch || i + 1 == n {
                let permit = tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    permit = Arc::clone(&in_flight).acquire_owned() => permit?,
                };
                stats.sent.fetch_add(lines as u64, Ordering::Relaxed);
                let request = http
                    .post(&url)
                    .header("content-type", NDJSON)
                    .body(std::mem::take(&mut body));
                let stats = Arc::clone(&stats);
                tokio::spawn(async move {
                    send(request, &stats).await;
                    drop(permit);
                });
                lines = 0;
            }
        }
    }
    // Let the batches in flight finish.
    let _ = in_flight.acquire_many(MAX_IN_FLIGHT as u32).await;
    Ok(())
}

async fn send(request: reqwest::RequestBuilder, stats: &SimulatorStats) {
    let outcome = match request.send().await {
        Ok(response) => {
            let status = response.status();
            match response.json::<serde_json::Value>().await {
                Ok(body) if status == StatusCode::ACCEPTED => {
                    serde_json::from_value::<BatchResult>(body).ok()
                }
                // Every line rejected: the result is the detail.
                Ok(body) if status == StatusCode::BAD_REQUEST => {
                    serde_json::from_value::<BatchResult>(body["detail"].clone()).ok()
                }
                _ => None,
            }
        }
        Err(err) => {
            tracing::debug!(%err, "simulator: batch not answered");
            None
        }
    };
    match outcome {
        Some(result) => {
            stats
                .accepted
                .fetch_add(result.accepted as u64, Ordering::Relaxed);
            stats
                .rejected
                .fetch_add(result.rejected.len() as u64, Ordering::Relaxed);
        }
        None => {
            stats.failed_requests.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `ingestion simulate`: against a running ingest API.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// The ingest API's base URL.
    #[arg(long, env = "INGEST_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    #[command(flatten)]
    pub simulation: SimulationArgs,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

/// Cancels `stop` after `duration`, if any.
pub fn stop_after(duration: Option<Duration>, stop: &CancellationToken) {
    if let Some(duration) = duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.cancel();
        });
    }
}

pub async fn run(args: SimulateArgs, _: &KafkaArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let options = args.simulation.options(args.api.clone())?;
    stop_after(args.duration, &stop);
    let stats = Arc::new(SimulatorStats::default());
    let reporter = {
        let (stats, stop) = (Arc::clone(&stats), stop.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            ticker.tick().await;
            let (mut last, mut at) = (0, Instant::now());
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let accepted = stats.accepted();
                let rate = (accepted - last) as f64 / at.elapsed().as_secs_f64();
                (last, at) = (accepted, Instant::now());
                println!("{rate:.0} events/s accepted · {}", stats.totals());
            }
        })
    };
    simulate(options, Arc::clone(&stats), stop).await?;
    reporter.await?;
    println!("simulator stopped: {}", stats.totals());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> SimulatorOptions {
        SimulationArgs {
            rate: 10.0,
            batch: 10,
            burst_every: Duration::from_secs(60),
            burst_for: Duration::from_secs(10),
            burst_factor: 5.0,
            bad_share: 0.0,
            users: 10,
            devices: 5,
            seed: 1,
        }
        .options("http://x".into())
        .unwrap()
    }

    #[test]
    fn bursts_come_at_the_end_of_every_period() {
        let burst = options().burst;
        assert_eq!(burst.multiplier(Duration::from_secs(0)), 1.0);
        assert_eq!(burst.multiplier(Duration::from_secs(49)), 1.0);
        assert_eq!(burst.multiplier(Duration::from_secs(50)), 5.0);
        assert_eq!(burst.multiplier(Duration::from_secs(59)), 5.0);
        assert_eq!(burst.multiplier(Duration::from_secs(60)), 1.0);
    }

    #[test]
    fn good_lines_are_events_the_api_accepts() {
        let options = options();
        let mut rng = StdRng::seed_from_u64(7);
        let body: String = (0..500)
            .map(|_| line(&mut rng, &options).0 + "\n")
            .collect();
        let (events, rejected) =
            crate::ingest_api::parse_batch(body.as_bytes(), Utc::now()).unwrap();
        assert!(rejected.is_empty(), "{rejected:?}");
        assert_eq!(events.len(), 500);
        for source in Source::ALL {
            assert!(events.iter().any(|(_, e)| e.source == source), "{source}");
        }
    }

    #[test]
    fn bad_lines_are_rejected() {
        let options = SimulatorOptions {
            bad_share: 1.0,
            ..options()
        };
        let mut rng = StdRng::seed_from_u64(7);
        let body: String = (0..30).map(|_| line(&mut rng, &options).0 + "\n").collect();
        let (events, rejected) =
            crate::ingest_api::parse_batch(body.as_bytes(), Utc::now()).unwrap();
        assert!(events.is_empty());
        assert_eq!(rejected.len(), 30);
    }

    #[test]
    fn the_knob_sets_the_rate_as_it_goes() {
        let defaults = SimulationArgs::default();
        assert_eq!((defaults.rate, defaults.batch), (200.0, 500));
        let knob = shared::live::Knob::new("events/s", 50.0, 0.0, 5000.0);
        let live = SimulatorOptions {
            knob: Some(knob.clone()),
            ..defaults.options("http://x".into()).unwrap()
        };
        assert_eq!(live.base_rate(), 50.0);
        knob.set(0.0).unwrap();
        assert_eq!(live.base_rate(), 0.0, "0 pauses");
        assert_eq!(options().base_rate(), 10.0, "no knob: --rate");
    }

    #[test]
    fn options_are_checked() {
        let args = |rate: f64, batch: usize| SimulationArgs {
            rate,
            batch,
            burst_every: Duration::from_secs(60),
            burst_for: Duration::from_secs(10),
            burst_factor: 1.0,
            bad_share: 0.0,
            users: 1,
            devices: 1,
            seed: 0,
        };
        assert!(args(0.0, 10).options("x".into()).is_err());
        assert!(args(1.0, 0).options("x".into()).is_err());
        assert!(args(1.0, 10_001).options("x".into()).is_err());
        assert!(args(1.0, 500).options("x".into()).is_ok());
    }
}
