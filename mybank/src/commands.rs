//! MyBank's own subcommands, besides the scaffold's (`all`, `run`, one per service):
//! `core-banking` (the bank's existing system, inserting into the database), `demo` (everything
//! in one process with a live summary) and `bench` (latency at a fixed insert rate).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use shared::service::cli::{self, CaseStudyCli, ServeArgs};
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;

use crate::app::{MyBank, Options};
use crate::core_banking::{self, CoreBankingOptions};
use crate::database::Database;
use crate::notification_service::NotificationService;
use crate::source_connector::{ConnectorConfig, ConnectorStats};

#[derive(Subcommand)]
pub enum Command {
    /// The bank's existing system: inserts transactions into the database (never into Kafka).
    CoreBanking(CoreBankingArgs),
    /// Every service and the core-banking simulator in one process, with thresholds set for the
    /// simulated users and a live summary.
    Demo(DemoArgs),
    /// Latency at a fixed insert rate: bank_transactions → user_alerts, and insert → SMTP.
    Bench(BenchArgs),
}

#[derive(Args, Clone)]
pub struct CoreBankingArgs {
    /// The bank's database (default: the connector's connection.url, i.e. sqlite:bank.db).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// The source connector's properties file (default: the built-in
    /// `mybank/config/transactions-source.properties`).
    #[arg(long, env = "CONNECTOR_CONFIG")]
    config: Option<PathBuf>,
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
pub struct DemoArgs {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    options: Options,
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
pub struct BenchArgs {
    /// The source connector's properties file (default: the built-in
    /// `mybank/config/transactions-source.properties`).
    #[arg(long, env = "CONNECTOR_CONFIG")]
    config: Option<PathBuf>,
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

pub async fn run(
    command: Command,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    match command {
        Command::CoreBanking(args) => core_banking_command(args, stop).await,
        Command::Demo(args) => demo(kafka, args, stop).await,
        Command::Bench(args) => {
            let kafka = Kafka::connect(kafka)?;
            crate::bench::run(
                &kafka,
                crate::bench::BenchOptions {
                    rate: args.rate,
                    duration: args.duration,
                    users: args.users,
                    threshold_eur: args.threshold_eur,
                    connector: read_config(args.config.as_deref())?,
                    database_url: args.database_url,
                },
            )
            .await
        }
    }
}

/// The connector's properties as the binary carries them (`--config` overrides them), so
/// `mybank` runs from any directory.
pub const DEFAULT_CONNECTOR_CONFIG: &str = include_str!("../config/transactions-source.properties");

/// The connector's properties: the file `path`, else the built-in ones; the error names the
/// file and the key.
pub fn read_config(path: Option<&Path>) -> anyhow::Result<ConnectorConfig> {
    let Some(path) = path else {
        return ConnectorConfig::parse(DEFAULT_CONNECTOR_CONFIG)
            .map_err(|err| anyhow::anyhow!("the built-in connector properties: {err:#}"));
    };
    let text = std::fs::read_to_string(path).map_err(|err| {
        anyhow::anyhow!(
            "cannot read the connector properties {}: {err}",
            path.display()
        )
    })?;
    ConnectorConfig::parse(&text).map_err(|err| anyhow::anyhow!("{}: {err:#}", path.display()))
}

async fn core_banking_command(
    args: CoreBankingArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let url = match args.database_url {
        Some(url) => url,
        None => read_config(args.config.as_deref())?.connection_url,
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
            live_rate: None,
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
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let kafka = Kafka::connect(kafka_args)?;
    let (app, dirs) = cli::start::<MyBank>(&kafka, &[], &args.serve, &args.options).await?;
    let bank_url = MyBank::resources(&kafka, &dirs, &args.options)
        .await?
        .bank_url();
    println!(
        "mybank on {} (broker {}), data in {}, bank database {}",
        app.url(),
        kafka.bootstrap_servers(),
        dirs.data.display(),
        crate::database::redact(&bank_url)
    );
    crate::app::set_simulated_thresholds(&app, args.users, args.threshold_eur).await?;
    println!(
        "thresholds of {} EUR set for user-000 … user-{:03}; try: curl {}/v1/users/user-001/notifications",
        args.threshold_eur,
        args.users.saturating_sub(1),
        app.url()
    );
    let db = Database::connect(&bank_url).await?;
    let bank = tokio::spawn({
        let db = db.clone();
        let stop = stop.clone();
        let options = CoreBankingOptions {
            users: args.users,
            rate: args.rate,
            seed: 7,
            limit: None,
            live_rate: None,
        };
        async move { core_banking::run(&db, &options, stop).await }
    });
    let connector = app.get::<ConnectorStats>();
    let notifications = app.get::<NotificationService>();
    // The counters outlive the services (prometheus counters are shared handles): the last
    // line is read after everything stopped, so it is the final count.
    let produced = connector.as_ref().map(|c| c.produced.clone());
    let counts = notifications.as_ref().map(|n| {
        (
            n.stats.notifications.clone(),
            n.stats.emails.clone(),
            n.stats.duplicates.clone(),
        )
    });
    drop((connector, notifications));
    let summary = |rows: i64| {
        let (notified, emails, duplicates) = counts
            .as_ref()
            .map_or((0, 0, 0), |(n, e, d)| (n.get(), e.get(), d.get()));
        format!(
            "rows in the bank {rows:>6} | bank_transactions {:>6} | alerts notified {notified:>4}, e-mailed {emails:>4}, duplicates dropped {duplicates}",
            produced.as_ref().map_or(0, |p| p.get()),
        )
    };
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(args.every);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        println!(
            "t+{:>3}s  {}",
            started.elapsed().as_secs(),
            summary(db.count().await?)
        );
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            stop.cancel();
            break;
        }
    }
    let inserted = bank.await??;
    // The bank has stopped inserting; let the connector copy its last rows before stopping.
    let rows = db.count().await?;
    let caught_up = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while produced.as_ref().is_some_and(|p| (p.get() as i64) < rows)
        && tokio::time::Instant::now() < caught_up
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.stop().await?;
    println!("final   {}", summary(rows));
    println!(
        "core banking inserted {inserted} transactions; e-mails in {}",
        dirs.data.join("outbox").display()
    );
    db.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mybank` run from any directory uses the same properties as the file in the repository.
    #[test]
    fn the_built_in_connector_properties_are_the_repository_file() {
        let file =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/transactions-source.properties");
        let built_in = read_config(None).unwrap();
        assert_eq!(
            format!("{built_in:?}"),
            format!("{:?}", read_config(Some(&file)).unwrap())
        );
        let missing = read_config(Some(Path::new("/nonexistent.properties"))).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent.properties"),
            "{missing}"
        );
    }
}
