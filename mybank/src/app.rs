//! MyBank on the service scaffold ([`shared::service`]): its services in start order, what
//! they share (the connector's properties, the databases, where e-mail goes), and its own
//! commands (`core-banking`, `demo`, `bench`). `main.rs` is `cli::main::<MyBank>()`; tests, the
//! demo and the bench start services through the same [`start`].

use std::path::PathBuf;
use std::sync::Arc;

use shared::service::cli::{CaseStudyCli, Dirs};
use shared::service::{CaseStudy, Process, ProcessOptions};
use shared::streams::StreamsHandle;
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::source_connector::ConnectorConfig;
use crate::{
    app_threshold_service, big_transaction_detector, notification_service, source_connector, topics,
};

/// MyBank, as the scaffold runs it.
pub struct MyBank;

/// What MyBank's services share in one process.
#[derive(Clone)]
pub struct Resources {
    /// The source connector's properties.
    pub connector: ConnectorConfig,
    /// Overrides the connector's `connection.url` (the bank's database).
    pub database_url: Option<String>,
    /// The notification service's own database.
    pub notifications_database_url: String,
    /// SMTP server for alert e-mails; `None`: `.eml` files in `outbox`.
    pub smtp_url: Option<String>,
    pub outbox: PathBuf,
}

impl Resources {
    /// The bank's database: `database_url`, else the connector's `connection.url`.
    pub fn bank_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| self.connector.connection_url.clone())
    }
}

/// MyBank's options of every serving subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The source connector's properties file (default: the built-in
    /// `mybank/config/transactions-source.properties`).
    #[arg(long, env = "CONNECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// The bank's database (overrides the connector's connection.url): sqlite:<file> or
    /// postgres://…; default on the embedded broker or with --data-dir: sqlite:<data dir>/bank.db.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// The notification service's database (default: sqlite:<data dir>/notifications.db).
    #[arg(long, env = "NOTIFICATIONS_DATABASE_URL")]
    pub notifications_database_url: Option<String>,
    /// SMTP server for alert e-mails (smtp://host:port, smtps://user:pass@host); default: .eml
    /// files in <data dir>/outbox.
    #[arg(long, env = "SMTP_URL")]
    pub smtp_url: Option<String>,
}

impl CaseStudyCli for MyBank {
    type Resources = Resources;
    type Options = Options;
    type Command = crate::commands::Command;
    const ABOUT: &'static str =
        "MyBank: a database source connector, thresholds as events, real-time alerts";

    fn case_study() -> CaseStudy<Resources> {
        CaseStudy {
            name: "mybank",
            topics: topics::ALL,
            services: vec![
                Box::new(source_connector::Service),
                Box::new(app_threshold_service::Service),
                Box::new(big_transaction_detector::Service),
                Box::new(notification_service::Service),
            ],
            routes: |_| axum::Router::new(),
            openapi: ApiDoc::openapi,
        }
    }

    async fn resources(kafka: &Kafka, dirs: &Dirs, options: &Options) -> anyhow::Result<Resources> {
        let connector = crate::commands::read_config(options.config.as_deref())?;
        // On the embedded broker, or with a data directory, the bank database lives there too.
        let database_url = options.database_url.clone().or_else(|| {
            (kafka.is_embedded() || dirs.data_given)
                .then(|| format!("sqlite:{}", dirs.data.join("bank.db").display()))
        });
        Ok(Resources {
            connector,
            database_url,
            notifications_database_url: options.notifications_database_url.clone().unwrap_or_else(
                || format!("sqlite:{}", dirs.data.join("notifications.db").display()),
            ),
            smtp_url: options.smtp_url.clone(),
            outbox: dirs.data.join("outbox"),
        })
    }

    async fn command(
        command: crate::commands::Command,
        kafka: &KafkaArgs,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        crate::commands::run(command, kafka, stop).await
    }
}

/// Starts the services named (every one when `names` is empty) with `resources`: what tests,
/// the demo and the bench call, and what the scaffold's CLI runs.
pub async fn start(
    kafka: &Kafka,
    names: &[&str],
    resources: Resources,
    options: ProcessOptions,
) -> anyhow::Result<Process> {
    let case_study = MyBank::case_study();
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let services = case_study.select(&names)?;
    Process::start(kafka, &case_study, &services, Arc::new(resources), options).await
}

/// Waits until `process`'s streams applications own every partition: for a process that is the
/// only instance (the demo, the bench), so its first requests are not answered `503` while the
/// consumer groups form.
pub async fn owns_all_partitions(
    process: &Process,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let expected = topics::USER_SETTINGS.partitions as usize;
    let deadline = tokio::time::Instant::now() + timeout;
    let streams: Vec<Arc<StreamsHandle>> = process.all::<StreamsHandle>();
    while !streams
        .iter()
        .all(|s| s.stores.partitions().len() >= expected)
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the streams applications did not get their partitions within {timeout:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Waits until `process` owns every partition, then gives each of the first `users` simulated
/// users (`core_banking::user`) a EUR threshold through the app threshold service: the set-up
/// of the demo and the bench.
pub async fn set_simulated_thresholds(
    process: &Process,
    users: usize,
    threshold_eur: u32,
) -> anyhow::Result<()> {
    owns_all_partitions(process, std::time::Duration::from_secs(60)).await?;
    let http = reqwest::Client::new();
    for i in 0..users {
        let (user, _) = crate::core_banking::user(i);
        set_threshold(
            &http,
            &process.url(),
            &user,
            &threshold_eur.to_string(),
            "EUR",
        )
        .await?;
    }
    Ok(())
}

/// Sets `user`'s alert threshold through the app threshold service at `base_url`, as the app
/// would: a `503` (the user's partition is being assigned — right after start-up, or during a
/// rebalance) is retried for up to a minute; any other failure is an error with the reason.
pub async fn set_threshold(
    http: &reqwest::Client,
    base_url: &str,
    user: &str,
    amount: &str,
    currency: &str,
) -> anyhow::Result<()> {
    let url = format!("{base_url}/v1/users/{user}/alert-threshold");
    let body = serde_json::json!({ "amount": amount, "currency": currency });
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let response = http.put(&url).json(&body).send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status != reqwest::StatusCode::SERVICE_UNAVAILABLE
            || tokio::time::Instant::now() > deadline
        {
            let reason = response.text().await.unwrap_or_default();
            anyhow::bail!("PUT {url}: {status} {reason}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The HTTP API of every MyBank service, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "MyBank",
        description = "Alert thresholds as events, real-time big-transaction alerts, notifications."
    ),
    paths(
        app_threshold_service::get_threshold,
        app_threshold_service::put_threshold,
        app_threshold_service::delete_threshold,
        notification_service::list_notifications,
        notification_service::stream_notifications,
    )
)]
pub struct ApiDoc;
