//! Logging on the service scaffold ([`shared::service`]): its services in start order, its own
//! commands, and the API every Logging process serves (`/openapi.json`). `main.rs` is
//! `cli::main::<Logging>()`; tests start services with [`shared::service::cli::start`], the same
//! way. The forwarder is a command (`logging forward`), not a service: it runs next to the
//! applications whose logs it reads. A service joins by one line in `services` below.

use axum::Router;
use shared::analytics::{Analytics, AnalyticsArgs};
use shared::service::CaseStudy;
use shared::service::cli::{CaseStudyCli, Dirs};
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::{
    analytics_sink, log_aggregation, log_parser, log_sink, metrics_aggregation,
    remote_write_receiver, topics,
};

/// Logging, as the scaffold runs it.
pub struct Logging;

/// What Logging's services share in one process.
pub struct Resources {
    /// The analytics store (a Parquet table per topic).
    pub analytics: Analytics,
}

/// Logging's options of every serving subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub analytics: AnalyticsArgs,
}

impl CaseStudyCli for Logging {
    type Resources = Resources;
    type Options = Options;
    type Command = crate::commands::Command;
    const ABOUT: &'static str = "Logging: log forwarders and metric collectors into Kafka; parsing, rollups, search, alerts";

    fn case_study() -> CaseStudy<Resources> {
        CaseStudy {
            name: topics::CASE_STUDY,
            topics: topics::ALL,
            services: vec![
                Box::new(log_parser::Service),
                Box::new(log_aggregation::Service),
                Box::new(metrics_aggregation::Service),
                Box::new(log_sink::Service),
                Box::new(analytics_sink::Service),
                Box::new(remote_write_receiver::Service),
            ],
            routes: |_| Router::new(),
            openapi: ApiDoc::openapi,
        }
    }

    async fn resources(_: &Kafka, dirs: &Dirs, options: &Options) -> anyhow::Result<Resources> {
        Ok(Resources {
            analytics: options.analytics.resolve(&dirs.data)?,
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

/// The HTTP API of every Logging service, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Logging",
        description = "Logs and metrics from real forwarders into Kafka; parsed, rolled up, searchable, alerting."
    ),
    paths(log_sink::api::search, remote_write_receiver::write)
)]
pub struct ApiDoc;
