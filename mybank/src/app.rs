//! Running a selection of MyBank's services in one process: `mybank all` runs them all,
//! `mybank <service>` one (to scale it out alone); tests, the demo and the bench spawn them here.
//!
//! One HTTP listener serves every selected service's routes, `/openapi.json` and the ops
//! endpoints (`/healthz`, `/readyz`, `/metrics`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use shared::Kafka;
use shared::http::{Json, Readiness};
use shared::streams::StreamsHandle;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::mailer::Mailer;
use crate::source_connector::{ConnectorConfig, ConnectorStats, SourceConnector};
use crate::{app_threshold_service, big_transaction_detector, notification_service, topics};

/// The boxes of the architecture slide that run as services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    SourceConnector,
    AppThresholdService,
    BigTransactionDetector,
    NotificationService,
}

impl Service {
    pub const ALL: &[Service] = &[
        Service::SourceConnector,
        Service::AppThresholdService,
        Service::BigTransactionDetector,
        Service::NotificationService,
    ];
}

/// Where services keep things and listen.
pub struct Options {
    pub listener: tokio::net::TcpListener,
    /// This process's URL as other instances reach it (interactive-query redirects).
    pub advertised_url: Option<String>,
    /// Streams state: `<state_dir>/<application id>/`.
    pub state_dir: PathBuf,
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

/// Running services; [`App::stop`] shuts them down in order.
pub struct App {
    pub address: SocketAddr,
    pub shutdown: CancellationToken,
    pub connector: Option<ConnectorStats>,
    pub thresholds: Option<Arc<app_threshold_service::AppThresholdService>>,
    pub detector: Option<StreamsHandle>,
    pub notifications: Option<Arc<notification_service::NotificationService>>,
    connector_task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl App {
    /// Provisions MyBank's topics (idempotent), starts `services`, serves HTTP.
    pub async fn spawn(
        kafka: &Kafka,
        services: &[Service],
        options: Options,
    ) -> anyhow::Result<App> {
        shared::provision(kafka, topics::ALL).await?;
        let shutdown = CancellationToken::new();
        let address = options.listener.local_addr()?;
        let endpoint = Some(
            options
                .advertised_url
                .clone()
                .unwrap_or_else(|| format!("http://{address}")),
        );
        let state_dir = |config: &mut shared::streams::StreamsConfig| {
            config.state_dir = options.state_dir.join(&config.application_id);
        };
        let mut router = Router::new()
            .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
            .merge(shared::http::ops_router(Readiness::new(kafka)?));

        let (connector, connector_task) = if services.contains(&Service::SourceConnector) {
            let connector = SourceConnector::new(
                kafka,
                options.connector.clone(),
                options.database_url.clone(),
            )
            .await?;
            let stats = connector.stats.clone();
            let task = tokio::spawn(connector.run(shutdown.clone()));
            (Some(stats), Some(task))
        } else {
            (None, None)
        };
        let thresholds = if services.contains(&Service::AppThresholdService) {
            let mut config = app_threshold_service::config(kafka, endpoint.clone());
            state_dir(&mut config);
            let service = Arc::new(
                app_threshold_service::AppThresholdService::start(kafka, config, shutdown.clone())
                    .await?,
            );
            router = router.merge(Arc::clone(&service).router());
            Some(service)
        } else {
            None
        };
        let detector = if services.contains(&Service::BigTransactionDetector) {
            let mut config = big_transaction_detector::config(kafka);
            state_dir(&mut config);
            Some(big_transaction_detector::start(kafka, config, shutdown.clone()).await?)
        } else {
            None
        };
        let notifications = if services.contains(&Service::NotificationService) {
            let mailer = Mailer::new(options.smtp_url.as_deref(), options.outbox.clone())?;
            let service = notification_service::NotificationService::start(
                kafka,
                &options.notifications_database_url,
                mailer,
                shutdown.clone(),
            )
            .await?;
            router = router.merge(Arc::clone(&service).router());
            Some(service)
        } else {
            None
        };

        let server = tokio::spawn(shared::http::serve(
            options.listener,
            shared::http::finish(router),
            shutdown.clone(),
        ));
        tracing::info!(%address, ?services, "mybank running");
        Ok(App {
            address,
            shutdown,
            connector,
            thresholds,
            detector,
            notifications,
            connector_task,
            server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Waits until this process's streams applications own every partition: for a process
    /// that is the only instance (the demo, the bench), so its first requests are not answered
    /// `503` while the consumer groups form.
    pub async fn owns_all_partitions(&self, timeout: std::time::Duration) -> anyhow::Result<()> {
        let expected = topics::USER_SETTINGS.partitions as usize;
        let deadline = tokio::time::Instant::now() + timeout;
        let owned = |streams: &StreamsHandle| streams.stores.partitions().len() >= expected;
        while !(self.thresholds.as_ref().is_none_or(|t| owned(&t.streams))
            && self.detector.as_ref().is_none_or(owned))
        {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the streams applications did not get their partitions within {timeout:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Stops accepting requests, flushes published events, stops every processor (each commits
    /// what it processed), and waits for all of them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server.await??;
        if let Some(task) = self.connector_task {
            task.await??;
        }
        if let Some(service) = self.thresholds {
            service.flush();
            if let Some(handle) = Arc::into_inner(service).and_then(|s| Arc::into_inner(s.streams))
            {
                handle.join().await?;
            }
        }
        if let Some(detector) = self.detector {
            detector.join().await?;
        }
        if let Some(service) = self.notifications {
            service.join().await?;
        }
        Ok(())
    }
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
