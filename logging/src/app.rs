//! Logging on the service scaffold ([`shared::service`]): its services in start order, its own
//! commands, and the API every Logging process serves (`/openapi.json`). `main.rs` is
//! `cli::main::<Logging>()`; tests start services with [`shared::service::cli::start`], the same
//! way. The forwarder is a command (`logging forward`), not a service: it runs next to the
//! applications whose logs it reads. A service joins by one line in `services` below.

use axum::Router;
use shared::service::CaseStudy;
use shared::service::cli::{CaseStudyCli, Dirs, NoOptions};
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::{log_aggregation, log_parser, metrics_aggregation, remote_write_receiver, topics};

/// Logging, as the scaffold runs it.
pub struct Logging;

impl CaseStudyCli for Logging {
    type Resources = ();
    type Options = NoOptions;
    type Command = crate::commands::Command;
    const ABOUT: &'static str = "Logging: log forwarders and metric collectors into Kafka; parsing, rollups, search, alerts";

    fn case_study() -> CaseStudy<()> {
        CaseStudy {
            name: topics::CASE_STUDY,
            topics: topics::ALL,
            services: vec![
                Box::new(log_parser::Service),
                Box::new(log_aggregation::Service),
                Box::new(metrics_aggregation::Service),
                Box::new(remote_write_receiver::Service),
            ],
            routes: |_| Router::new(),
            openapi: ApiDoc::openapi,
        }
    }

    async fn resources(_: &Kafka, _: &Dirs, _: &NoOptions) -> anyhow::Result<()> {
        Ok(())
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
    paths(remote_write_receiver::write),
    info(
        title = "Logging",
        description = "Logs and metrics from real forwarders into Kafka; parsed, rolled up, searchable, alerting."
    )
)]
pub struct ApiDoc;
