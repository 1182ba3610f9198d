//! Logging on the service scaffold ([`shared::service`]). It has no services yet (issue #23
//! builds them, one file per box of the slide in `README.md`), yet its command line is whole:
//! `logging all` provisions [`topics::ALL`] and serves `/healthz`, `/readyz`, `/metrics` and
//! `/openapi.json`. A service joins by one line in `services` below.

use axum::Router;
use shared::service::CaseStudy;
use shared::service::cli::{CaseStudyCli, Dirs, NoCommand, NoOptions};
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::topics;

/// Logging, as the scaffold runs it.
pub struct Logging;

impl CaseStudyCli for Logging {
    type Resources = ();
    type Options = NoOptions;
    type Command = NoCommand;
    const ABOUT: &'static str = "Logging: log forwarders and metric collectors into Kafka; parsing, rollups, search, alerts";

    fn case_study() -> CaseStudy<()> {
        CaseStudy {
            name: topics::CASE_STUDY,
            topics: topics::ALL,
            services: vec![],
            routes: |_| Router::new(),
            openapi: ApiDoc::openapi,
        }
    }

    async fn resources(_: &Kafka, _: &Dirs, _: &NoOptions) -> anyhow::Result<()> {
        Ok(())
    }

    async fn command(
        command: NoCommand,
        _: &KafkaArgs,
        _: CancellationToken,
    ) -> anyhow::Result<()> {
        match command {}
    }
}

/// The HTTP API of every Logging service, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(info(
    title = "Logging",
    description = "Logs and metrics from real forwarders into Kafka; parsed, rolled up, searchable, alerting."
))]
pub struct ApiDoc;
