//! Ingestion on the service scaffold ([`shared::service`]). It has no services yet (issue #22
//! builds them, one file per box of the slide in `README.md`), yet its command line is whole:
//! `ingestion all` provisions [`topics::ALL`] and serves `/healthz`, `/readyz`, `/metrics` and
//! `/openapi.json`. A service joins by one line in `services` below.

use axum::Router;
use shared::service::CaseStudy;
use shared::service::cli::{CaseStudyCli, Dirs, NoCommand, NoOptions};
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::topics;

/// Ingestion, as the scaffold runs it.
pub struct Ingestion;

impl CaseStudyCli for Ingestion {
    type Resources = ();
    type Options = NoOptions;
    type Command = NoCommand;
    const ABOUT: &'static str =
        "Ingestion: Kafka as the buffer before a speed layer and a batch layer (S3 files)";

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

/// The HTTP API of every Ingestion service, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(info(
    title = "Ingestion",
    description = "Kafka as the buffer in front of a speed layer (real-time analytics) and a batch layer (files in S3)."
))]
pub struct ApiDoc;
