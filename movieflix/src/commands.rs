//! MovieFlix's own subcommands, besides the scaffold's (`all`, `run`, one per service):
//! `simulate` (viewers against a running MovieFlix) and `demo` (everything in one process, with
//! a live summary).

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use shared::service::cli::{self, ServeArgs};
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;

use crate::app::{MovieFlix, Options};
use crate::catalog::Catalog;
use crate::simulator::{self, SimulatorOptions, SimulatorStats};

#[derive(Subcommand)]
pub enum Command {
    /// Viewers that play shows and report positions to a running MovieFlix over HTTP.
    Simulate(SimulateArgs),
    /// Every service and the simulator in one process, with a live summary.
    Demo(DemoArgs),
}

#[derive(Args, Clone)]
pub struct SimulateArgs {
    #[arg(long, default_value_t = 50)]
    viewers: usize,
    /// The MovieFlix API.
    #[arg(long, env = "MOVIEFLIX_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// How often a playing viewer reports its position.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Show-seconds per wall-clock second.
    #[arg(long, default_value_t = 60.0)]
    speed: f64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
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
    #[arg(long, default_value_t = 50)]
    viewers: usize,
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    #[arg(long, default_value_t = 60.0)]
    speed: f64,
    /// Print a summary this often.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    every: Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

pub async fn run(
    command: Command,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    match command {
        Command::Simulate(args) => simulate(args, stop).await,
        Command::Demo(args) => demo(kafka, args, stop).await,
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
    let stats = Arc::new(SimulatorStats::default());
    stop_after(args.duration, &stop);
    let started = std::time::Instant::now();
    let options = SimulatorOptions {
        viewers: args.viewers,
        url: args.url,
        interval: args.interval,
        speed: args.speed,
        seed: args.seed,
        active: None,
    };
    simulator::run(options, Catalog::shared(), Arc::clone(&stats), stop).await?;
    let sent = stats.sent.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "simulated {} viewers for {:.1} s: {sent} positions accepted ({:.1}/s), {} rejected, {} failed",
        args.viewers,
        started.elapsed().as_secs_f64(),
        sent as f64 / started.elapsed().as_secs_f64(),
        stats.rejected.load(std::sync::atomic::Ordering::Relaxed),
        stats.failed.load(std::sync::atomic::Ordering::Relaxed),
    );
    Ok(())
}

async fn demo(
    kafka_args: &KafkaArgs,
    args: DemoArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let kafka = Kafka::connect(kafka_args)?;
    let (process, dirs) = cli::start::<MovieFlix>(&kafka, &[], &args.serve, &args.options).await?;
    let analytics = args.options.analytics.resolve(&dirs.data)?.store;
    println!(
        "movieflix demo: API {} (try {}/v1/users/{}/recommendations), broker {} (kcat -b {} -L), analytics {}",
        process.url(),
        process.url(),
        simulator::viewer_id(0),
        kafka.bootstrap_servers(),
        kafka.bootstrap_servers(),
        analytics
    );
    stop_after(args.duration, &stop);
    let stats = Arc::new(SimulatorStats::default());
    let options = SimulatorOptions {
        viewers: args.viewers,
        url: process.url(),
        interval: args.interval,
        speed: args.speed,
        seed: 7,
        active: None,
    };
    let simulation = tokio::spawn(simulator::run(
        options,
        Catalog::shared(),
        Arc::clone(&stats),
        stop.clone(),
    ));
    let sink = process.get::<shared::analytics::SinkStats>();
    crate::demo::report(
        &process,
        Arc::clone(&stats),
        args.viewers,
        args.every,
        stop.clone(),
    )
    .await;
    simulation.await??;
    // Stopping flushes the sink: the totals below are final.
    process.stop().await?;
    println!("{}", crate::demo::totals(&stats, sink.as_deref()));
    println!("movieflix demo stopped; Parquet files are in {analytics}");
    Ok(())
}
