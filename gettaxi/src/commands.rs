//! GetTaxi's own subcommands, besides the scaffold's (`all`, `run`, one per service): `simulate`
//! (drivers and riders against a running GetTaxi), `demo` (everything in one process, with a
//! live summary) and `fare` (a finished ride's fare recomputed from the analytics store).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use shared::service::cli::{self, ServeArgs};
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;

use crate::app::{GetTaxi, Options};
use crate::simulator::{self, SimulatorOptions, SimulatorStats};
use crate::stored_fare;

#[derive(Subcommand)]
pub enum Command {
    /// Taxis and riders in Manhattan, against a running GetTaxi over HTTP.
    Simulate(SimulateArgs),
    /// Every service and the simulator in one process, with a live summary.
    Demo(DemoArgs),
    /// A finished ride's fare, recomputed from the analytics store alone, next to the final fare
    /// the taxi cost service published (JSON).
    Fare(FareArgs),
    /// Benchmarks (run with --release).
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Subcommand)]
pub enum Bench {
    /// The nearest taxi among a moving fleet: the H3 index against a scan of every taxi.
    Index(crate::bench::IndexBench),
    /// Ride requests over HTTP while 10,000 taxis report: request → assignment, end to end.
    Matching(crate::bench::MatchingBench),
    /// Taxis and riders reporting, crowds moving: a window advance → its surge changes.
    Surge(crate::bench::SurgeBench),
}

/// The simulation's settings, shared by `simulate` and `demo`.
#[derive(Args, Clone, Debug)]
pub struct SimulationArgs {
    /// Taxis cruising Manhattan.
    #[arg(long, default_value_t = 120)]
    taxis: usize,
    /// Riders, of whom a share looks at the app depending on the hour.
    #[arg(long, default_value_t = 300)]
    riders: usize,
    /// Ride requests per minute (a Poisson process).
    #[arg(long, default_value_t = 30.0)]
    requests_per_minute: f64,
    /// How often a taxi reports its position.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// How many times faster than real driving taxis move.
    #[arg(long, default_value_t = 6.0)]
    speed: f64,
    /// A city day in wall time (the schedule of rushes, the game, the night).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    day: Duration,
    /// The city's hour at the start.
    #[arg(long, default_value_t = 7.0)]
    start_hour: f64,
    /// Seed of every random choice of the simulation.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

impl SimulationArgs {
    fn options(&self, url: String) -> anyhow::Result<SimulatorOptions> {
        anyhow::ensure!(
            self.requests_per_minute.is_finite() && self.requests_per_minute >= 0.0,
            "--requests-per-minute must be a number ≥ 0"
        );
        anyhow::ensure!(
            (0.0..24.0).contains(&self.start_hour),
            "--start-hour must be in [0, 24)"
        );
        anyhow::ensure!(!self.day.is_zero(), "--day must not be zero");
        Ok(SimulatorOptions {
            url,
            taxis: self.taxis,
            riders: self.riders,
            interval: self.interval,
            speed: self.speed,
            seed: self.seed,
            rate: None,
            requests_per_minute: self.requests_per_minute,
            day: self.day,
            start_hour: self.start_hour,
        })
    }
}

#[derive(Args, Clone)]
pub struct SimulateArgs {
    /// The GetTaxi API.
    #[arg(long, env = "GETTAXI_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    #[command(flatten)]
    simulation: SimulationArgs,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

#[derive(Args, Clone)]
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

#[derive(Args, Clone)]
pub struct FareArgs {
    /// The ride id (from `POST /v1/rides`).
    #[arg(long)]
    ride: String,
    /// The analytics store (the sink's `ANALYTICS_DIR`).
    #[arg(long, env = "ANALYTICS_DIR", default_value = "data/gettaxi/analytics")]
    analytics_dir: PathBuf,
}

pub async fn run(
    command: Command,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    match command {
        Command::Simulate(args) => simulate(args, stop).await,
        Command::Demo(args) => demo(kafka, args, stop).await,
        Command::Fare(args) => fare(args),
        Command::Bench(Bench::Index(bench)) => crate::bench::index(&bench),
        Command::Bench(Bench::Matching(bench)) => crate::bench::matching(kafka, &bench).await,
        Command::Bench(Bench::Surge(bench)) => crate::bench::surge(kafka, &bench).await,
    }
}

/// Cancels `stop` after `duration`, if one is given.
fn stop_after(duration: Option<Duration>, stop: &CancellationToken) {
    if let Some(duration) = duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.cancel();
        });
    }
}

async fn simulate(args: SimulateArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let options = args.simulation.options(args.url)?;
    let stats = Arc::new(SimulatorStats::default());
    stop_after(args.duration, &stop);
    let started = Instant::now();
    simulator::run(options, Arc::clone(&stats), stop).await?;
    let sent = stats.sent.load(Ordering::Relaxed);
    println!(
        "simulated {} taxis and {} riders for {:.1} s: {sent} positions accepted ({:.1}/s), {} rejected, {} failed · {} rides requested, {} assigned, {} no driver, {} completed",
        args.simulation.taxis,
        args.simulation.riders,
        started.elapsed().as_secs_f64(),
        sent as f64 / started.elapsed().as_secs_f64(),
        stats.rejected.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
        stats.requested.load(Ordering::Relaxed),
        stats.assigned.load(Ordering::Relaxed),
        stats.no_driver.load(Ordering::Relaxed),
        stats.completed.load(Ordering::Relaxed),
    );
    Ok(())
}

async fn demo(
    kafka_args: &KafkaArgs,
    args: DemoArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let kafka = Kafka::connect(kafka_args)?;
    let (process, dirs) = cli::start::<GetTaxi>(&kafka, &[], &args.serve, &args.options).await?;
    let analytics = args.options.analytics.resolve(&dirs.data)?.store;
    let url = process.url();
    println!(
        "gettaxi demo: API {url} (try {url}/v1/surge or {url}/v1/taxis/{}/assignment), broker {} (kcat -b {} -L), analytics {}",
        simulator::taxi_id(1),
        kafka.bootstrap_servers(),
        kafka.bootstrap_servers(),
        analytics
    );
    let options = args.simulation.options(url.clone())?;
    stop_after(args.duration, &stop);
    let stats = Arc::new(SimulatorStats::default());
    let simulation = tokio::spawn(simulator::run(options, Arc::clone(&stats), stop.clone()));
    let highest = crate::demo::report(url, Arc::clone(&stats), args.every, stop.clone()).await;
    simulation.await??;
    process.stop().await?;
    println!("{}", crate::demo::totals(&stats, &highest));
    println!(
        "gettaxi demo stopped; Parquet files are in {analytics}{}",
        analytics.local_dir().map_or(String::new(), |dir| format!(
            " (gettaxi fare --ride <id> --analytics-dir {} recomputes a fare)",
            dir.display()
        ))
    );
    Ok(())
}

fn fare(args: FareArgs) -> anyhow::Result<()> {
    crate::events::validate_id("ride", &args.ride).map_err(anyhow::Error::msg)?;
    match stored_fare::recompute(&args.analytics_dir, &args.ride)? {
        Some(fare) => {
            println!("{}", serde_json::to_string_pretty(&fare)?);
            Ok(())
        }
        None => anyhow::bail!(
            "no on_ride position of {} under {}",
            args.ride,
            args.analytics_dir.join("taxi_position").display()
        ),
    }
}
