//! `movieflix`: run MovieFlix's services (all, or one to scale it alone), the simulator, or the
//! demo. See `movieflix/README.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use movieflix::app::{App, Options, Service};
use movieflix::catalog::Catalog;
use movieflix::simulator::{self, SimulatorOptions, SimulatorStats};
use shared::{Kafka, KafkaArgs};

#[derive(Parser)]
#[command(
    name = "movieflix",
    version,
    about = "MovieFlix: resume playback, real-time recommendations, an analytics store"
)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every service in one process (one HTTP port).
    All(ServeArgs),
    /// POST /v1/positions → show_position.
    VideoPositionService(ServeArgs),
    /// show_position → latest position per viewer and show; GET …/resume/{show}.
    ResumingService(ServeArgs),
    /// show_position → profiles → recommendations (streams).
    RecommendationEngine(ServeArgs),
    /// recommendations → GET /v1/users/{user}/recommendations.
    RecommendationsService(ServeArgs),
    /// show_position → Parquet files under ANALYTICS_DIR.
    AnalyticsSink(ServeArgs),
    /// Viewers that play shows and report positions to a running MovieFlix over HTTP.
    Simulate(SimulateArgs),
    /// Every service and the simulator in one process, with a live summary.
    Demo(DemoArgs),
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// HTTP address of this process.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// How other instances reach this one (interactive-query redirects); default http://<listen>.
    #[arg(long, env = "ADVERTISED_URL")]
    advertised_url: Option<String>,
    /// Streams state (RocksDB). Default: ./state, or a fresh temporary directory on the
    /// embedded broker (its topics start empty every run, so old state would not match).
    #[arg(long, env = "STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The analytics store. Default: ./analytics/movieflix (a new run-stamped subdirectory on
    /// the embedded broker).
    #[arg(long, env = "ANALYTICS_DIR")]
    analytics_dir: Option<PathBuf>,
    /// Close a Parquet file at this many rows…
    #[arg(long, env = "SINK_MAX_ROWS", default_value_t = 50_000)]
    sink_max_rows: usize,
    /// …or at this age.
    #[arg(long, env = "SINK_MAX_AGE", default_value = "10s", value_parser = humantime::parse_duration)]
    sink_max_age: Duration,
}

#[derive(Args, Clone)]
struct SimulateArgs {
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
struct DemoArgs {
    #[command(flatten)]
    serve: ServeArgs,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let cli = Cli::parse();
    let stop = shared::shutdown::on_signal();
    match cli.command {
        Command::Simulate(args) => simulate(args, stop).await,
        Command::Demo(args) => demo(&cli.kafka, args, stop).await,
        Command::All(args) => serve(&cli.kafka, Service::ALL, args, stop).await,
        Command::VideoPositionService(args) => {
            serve(&cli.kafka, &[Service::VideoPositionService], args, stop).await
        }
        Command::ResumingService(args) => {
            serve(&cli.kafka, &[Service::ResumingService], args, stop).await
        }
        Command::RecommendationEngine(args) => {
            serve(&cli.kafka, &[Service::RecommendationEngine], args, stop).await
        }
        Command::RecommendationsService(args) => {
            serve(&cli.kafka, &[Service::RecommendationsService], args, stop).await
        }
        Command::AnalyticsSink(args) => {
            serve(&cli.kafka, &[Service::AnalyticsSink], args, stop).await
        }
    }
}

/// Resolved directories; holds the temporary state directory until exit.
struct Dirs {
    state: PathBuf,
    analytics: PathBuf,
    _temporary: Option<tempfile::TempDir>,
}

fn dirs(kafka: &Kafka, args: &ServeArgs) -> anyhow::Result<Dirs> {
    let mut temporary = None;
    let state = match (&args.state_dir, kafka.is_embedded()) {
        (Some(dir), _) => dir.clone(),
        (None, false) => PathBuf::from("state"),
        (None, true) => {
            let dir = tempfile::Builder::new()
                .prefix("movieflix-state-")
                .tempdir()?;
            let path = dir.path().to_path_buf();
            temporary = Some(dir);
            path
        }
    };
    let analytics = match (&args.analytics_dir, kafka.is_embedded()) {
        (Some(dir), _) => dir.clone(),
        (None, false) => PathBuf::from("analytics/movieflix"),
        (None, true) => PathBuf::from(format!(
            "analytics/movieflix-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )),
    };
    Ok(Dirs {
        state,
        analytics,
        _temporary: temporary,
    })
}

async fn start(
    kafka: &Kafka,
    services: &[Service],
    args: &ServeArgs,
    dirs: &Dirs,
) -> anyhow::Result<App> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|err| {
            anyhow::anyhow!(
                "cannot listen on {}: {err} (try --listen 127.0.0.1:0)",
                args.listen
            )
        })?;
    App::spawn(
        kafka,
        services,
        Options {
            listener,
            advertised_url: args.advertised_url.clone(),
            state_dir: dirs.state.clone(),
            analytics_dir: dirs.analytics.clone(),
            sink_max_rows: args.sink_max_rows,
            sink_max_age: args.sink_max_age,
        },
    )
    .await
}

async fn serve(
    kafka_args: &KafkaArgs,
    services: &[Service],
    args: ServeArgs,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let kafka = Kafka::connect(kafka_args)?;
    if kafka.is_embedded() && services.len() == 1 {
        tracing::warn!(
            "no KAFKA_BOOTSTRAP_SERVERS: this service runs on its own private embedded broker; \
             start `cargo run --release -- broker` and point every service at it to run them apart"
        );
    }
    let dirs = dirs(&kafka, &args)?;
    let app = start(&kafka, services, &args, &dirs).await?;
    println!(
        "movieflix: {} on {} (broker {}, state {}, analytics {})",
        if services.len() == 1 {
            "one service"
        } else {
            "all services"
        },
        app.url(),
        kafka.bootstrap_servers(),
        dirs.state.display(),
        dirs.analytics.display()
    );
    stop.cancelled().await;
    app.stop().await
}

async fn simulate(
    args: SimulateArgs,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let stats = Arc::new(SimulatorStats::default());
    if let Some(duration) = args.duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.cancel();
        });
    }
    let started = std::time::Instant::now();
    let options = SimulatorOptions {
        viewers: args.viewers,
        url: args.url,
        interval: args.interval,
        speed: args.speed,
        seed: args.seed,
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
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let kafka = Kafka::connect(kafka_args)?;
    let dirs = dirs(&kafka, &args.serve)?;
    let app = start(&kafka, Service::ALL, &args.serve, &dirs).await?;
    println!(
        "movieflix demo: API {} (try {}/v1/users/{}/recommendations), broker {} (kcat -b {} -L), analytics {}",
        app.url(),
        app.url(),
        simulator::viewer_id(0),
        kafka.bootstrap_servers(),
        kafka.bootstrap_servers(),
        dirs.analytics.display()
    );
    if let Some(duration) = args.duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.cancel();
        });
    }
    let stats = Arc::new(SimulatorStats::default());
    let options = SimulatorOptions {
        viewers: args.viewers,
        url: app.url(),
        interval: args.interval,
        speed: args.speed,
        seed: 7,
    };
    let simulation = tokio::spawn(simulator::run(
        options,
        Catalog::shared(),
        Arc::clone(&stats),
        stop.clone(),
    ));
    movieflix::demo::report(&app, stats, args.viewers, args.every, stop.clone()).await;
    simulation.await??;
    app.stop().await?;
    println!(
        "movieflix demo stopped; Parquet files are in {}",
        dirs.analytics.display()
    );
    Ok(())
}
