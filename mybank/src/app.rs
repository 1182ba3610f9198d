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
