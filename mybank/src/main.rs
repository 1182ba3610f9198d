//! `mybank`: run MyBank's services (all, or one to scale it alone), the simulated core-banking
//! system, the demo, or the bench. See `mybank/README.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mybank::app::{App, Options, Service};
use mybank::core_banking::{self, CoreBankingOptions};
use mybank::database::Database;
use mybank::source_connector::ConnectorConfig;
use shared::{Kafka, KafkaArgs};

#[derive(Parser)]
#[command(
    name = "mybank",
    version,
    about = "MyBank: a database source connector, thresholds as events, real-time alerts"
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
    /// The bank's database → bank_transactions (JDBC-source style, properties file).
    SourceConnector(ServeArgs),
    /// PUT/DELETE /v1/users/{user}/alert-threshold → user_settings.
    AppThresholdService(ServeArgs),
    /// bank_transactions ⋈ threshold history → user_alerts (streams).
    BigTransactionDetector(ServeArgs),
    /// user_alerts → in-app notifications (GET, SSE) and e-mail.
    NotificationService(ServeArgs),
    /// The bank's existing system: inserts transactions into the database (never into Kafka).
    CoreBanking(CoreBankingArgs),
    /// Every service and the core-banking simulator in one process, with thresholds set for the
    /// simulated users and a live summary.
    Demo(DemoArgs),
    /// Latency at a fixed insert rate: bank_transactions → user_alerts, and insert → SMTP.
    Bench(BenchArgs),
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// HTTP address of this process.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// How other instances reach this one (interactive-query redirects); default http://<listen>.
    #[arg(long, env = "ADVERTISED_URL")]
    advertised_url: Option<String>,
    /// The source connector's properties file.
    #[arg(
        long,
        env = "CONNECTOR_CONFIG",
        default_value = "mybank/config/transactions-source.properties"
    )]
    config: PathBuf,
    /// Where MyBank keeps its files (bank.db, notifications.db, outbox/, state/). Default:
    /// ./data/mybank, or a new run-stamped directory on the embedded broker (its topics start
    /// empty every run).
    #[arg(long, env = "DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The bank's database (overrides the connector's connection.url): sqlite:<file> or
    /// postgres://…
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// The notification service's database (default: sqlite:<data dir>/notifications.db).
    #[arg(long, env = "NOTIFICATIONS_DATABASE_URL")]
    notifications_database_url: Option<String>,
    /// SMTP server for alert e-mails (smtp://host:port, smtps://user:pass@host); default: .eml
    /// files in <data dir>/outbox.
    #[arg(long, env = "SMTP_URL")]
    smtp_url: Option<String>,
}

#[derive(Args, Clone)]
struct CoreBankingArgs {
    /// The bank's database (default: the connector's connection.url, i.e. sqlite:bank.db).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    #[arg(
        long,
        env = "CONNECTOR_CONFIG",
        default_value = "mybank/config/transactions-source.properties"
    )]
    config: PathBuf,
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Transactions per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Stop after this many.
    #[arg(long)]
    limit: Option<u64>,
}

#[derive(Args, Clone)]
struct DemoArgs {
    #[command(flatten)]
    serve: ServeArgs,
    #[arg(long, default_value_t = 50)]
    users: usize,
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Every simulated user's alert threshold, in EUR.
    #[arg(long, default_value_t = 2000)]
    threshold_eur: u32,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    every: Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

#[derive(Args, Clone)]
struct BenchArgs {
    #[arg(
        long,
        env = "CONNECTOR_CONFIG",
        default_value = "mybank/config/transactions-source.properties"
    )]
    config: PathBuf,
    /// Default: a fresh SQLite file.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Transactions inserted per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 1000)]
    users: usize,
    #[arg(long, default_value_t = 8000)]
    threshold_eur: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let cli = Cli::parse();
    let stop = shared::shutdown::on_signal();
    let serve_one = |service: Service| [service];
    match cli.command {
        Command::CoreBanking(args) => core_banking_command(args, stop).await,
        Command::Bench(args) => {
            let kafka = Kafka::connect(&cli.kafka)?;
            mybank::bench::run(
                &kafka,
                mybank::bench::BenchOptions {
                    rate: args.rate,
                    duration: args.duration,
                    users: args.users,
                    threshold_eur: args.threshold_eur,
                    connector: read_config(&args.config)?,
                    database_url: args.database_url,
                },
            )
            .await
        }
        Command::Demo(args) => demo(&cli.kafka, args, stop).await,
        Command::All(args) => serve(&cli.kafka, Service::ALL, args, stop).await,
        Command::SourceConnector(args) => {
            serve(&cli.kafka, &serve_one(Service::SourceConnector), args, stop).await
        }
        Command::AppThresholdService(args) => {
            serve(
                &cli.kafka,
                &serve_one(Service::AppThresholdService),
                args,
                stop,
            )
            .await
        }
        Command::BigTransactionDetector(args) => {
            serve(
                &cli.kafka,
                &serve_one(Service::BigTransactionDetector),
                args,
                stop,
            )
            .await
        }
        Command::NotificationService(args) => {
            serve(
                &cli.kafka,
                &serve_one(Service::NotificationService),
                args,
                stop,
            )
            .await
        }
    }
}

fn read_config(path: &PathBuf) -> anyhow::Result<ConnectorConfig> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        anyhow::anyhow!(
            "cannot read the connector properties {}: {err} (run from the repository root, or pass --config)",
            path.display()
        )
    })?;
    ConnectorConfig::parse(&text).map_err(|err| anyhow::anyhow!("{}: {err:#}", path.display()))
}

fn data_dir(kafka: &Kafka, args: &ServeArgs) -> anyhow::Result<PathBuf> {
    let dir = match (&args.data_dir, kafka.is_embedded()) {
        (Some(dir), _) => dir.clone(),
        (None, false) => PathBuf::from("data/mybank"),
        (None, true) => PathBuf::from(format!(
            "data/mybank-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )),
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn start(
    kafka: &Kafka,
    services: &[Service],
    args: &ServeArgs,
) -> anyhow::Result<(App, Resolved)> {
    let dir = data_dir(kafka, args)?;
    let connector = read_config(&args.config)?;
    // On the embedded broker the bank database lives in the run's directory too, unless given.
    let database_url = args.database_url.clone().or_else(|| {
        (kafka.is_embedded() || args.data_dir.is_some())
            .then(|| format!("sqlite:{}", dir.join("bank.db").display()))
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|err| {
            anyhow::anyhow!(
                "cannot listen on {}: {err} (try --listen 127.0.0.1:0)",
                args.listen
            )
        })?;
    let bank_url = database_url
        .clone()
        .unwrap_or_else(|| connector.connection_url.clone());
    if services.contains(&Service::SourceConnector) {
        // The bank's schema exists in real life; here the first process creates it.
        Database::connect(&bank_url).await?.create_schema().await?;
    }
    let app = App::spawn(
        kafka,
        services,
        Options {
            listener,
            advertised_url: args.advertised_url.clone(),
            state_dir: dir.join("state"),
            connector,
            database_url,
            notifications_database_url: args
                .notifications_database_url
                .clone()
                .unwrap_or_else(|| format!("sqlite:{}", dir.join("notifications.db").display())),
            smtp_url: args.smtp_url.clone(),
            outbox: dir.join("outbox"),
        },
    )
    .await?;
    println!(
        "mybank on {} (broker {}), data in {}, bank database {}",
        app.url(),
        kafka.bootstrap_servers(),
        dir.display(),
        mybank::database::redact(&bank_url)
    );
    Ok((app, Resolved { bank_url, dir }))
}

/// What `start` resolved.
struct Resolved {
    bank_url: String,
    dir: PathBuf,
}

async fn serve(
    kafka_args: &KafkaArgs,
    services: &[Service],
    args: ServeArgs,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let kafka = Kafka::connect(kafka_args)?;
    let (app, _) = start(&kafka, services, &args).await?;
    stop.cancelled().await;
    app.stop().await
}

async fn core_banking_command(
    args: CoreBankingArgs,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let url = match args.database_url {
        Some(url) => url,
        None => read_config(&args.config)?.connection_url,
    };
    let db = Database::connect(&url).await?;
    db.create_schema().await?;
    let inserted = core_banking::run(
        &db,
        &CoreBankingOptions {
            users: args.users,
            rate: args.rate,
            seed: args.seed,
            limit: args.limit,
        },
        stop,
    )
    .await?;
    println!("core banking inserted {inserted} transactions");
    db.close().await;
    Ok(())
}

async fn demo(
    kafka_args: &KafkaArgs,
    args: DemoArgs,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let kafka = Kafka::connect(kafka_args)?;
    let (app, resolved) = start(&kafka, Service::ALL, &args.serve).await?;
    app.owns_all_partitions(std::time::Duration::from_secs(60))
        .await?;
    let http = reqwest::Client::new();
    for i in 0..args.users {
        let (user, _) = core_banking::user(i);
        mybank::app::set_threshold(
            &http,
            &app.url(),
            &user,
            &args.threshold_eur.to_string(),
            "EUR",
        )
        .await?;
    }
    println!(
        "thresholds of {} EUR set for user-000 … user-{:03}; try: curl {}/v1/users/user-001/notifications",
        args.threshold_eur,
        args.users.saturating_sub(1),
        app.url()
    );
    let db = Database::connect(&resolved.bank_url).await?;
    let bank = tokio::spawn({
        let db = db.clone();
        let stop = stop.clone();
        let options = CoreBankingOptions {
            users: args.users,
            rate: args.rate,
            seed: 7,
            limit: None,
        };
        async move { core_banking::run(&db, &options, stop).await }
    });
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(args.every);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let rows = db.count().await?;
        let produced = app.connector.as_ref().map_or(0, |s| s.produced.get());
        let (notifications, emails, duplicates) =
            app.notifications.as_ref().map_or((0, 0, 0), |n| {
                (
                    n.stats.notifications.get(),
                    n.stats.emails.get(),
                    n.stats.duplicates.get(),
                )
            });
        println!(
            "t+{:>3}s  rows in the bank {rows:>6} | bank_transactions {produced:>6} | alerts notified {notifications:>4}, e-mailed {emails:>4}, duplicates dropped {duplicates}",
            started.elapsed().as_secs()
        );
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            stop.cancel();
            break;
        }
    }
    let inserted = bank.await??;
    app.stop().await?;
    println!(
        "core banking inserted {inserted} transactions; e-mails in {}",
        resolved.dir.join("outbox").display()
    );
    db.close().await;
    Ok(())
}
