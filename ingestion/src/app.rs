//! Ingestion on the service scaffold ([`shared::service`]): its services in start order, what
//! they share, its own commands, and the API every Ingestion process serves (`/openapi.json`).
//! `main.rs` is `cli::main::<Ingestion>()`; tests and the demo start services with
//! [`shared::service::cli::start`], the same way. The batch job and `reconcile` are commands,
//! not services: they run over the store's files and end.

use std::time::Duration;

use axum::Router;
use shared::service::CaseStudy;
use shared::service::cli::{CaseStudyCli, Dirs};
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::{ingest_api, realtime_api, s3_sink, speed_layer, topics};

/// Ingestion, as the scaffold runs it.
pub struct Ingestion;

/// What Ingestion's services share in one process.
pub struct Resources {
    pub speed: speed_layer::Model,
    /// The S3 sink's properties (its file, the overrides, the default store).
    pub sink_properties: shared::properties::Properties,
}

/// Ingestion's options of every serving subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How long after a minute's end (in event time) its events still count in the speed layer.
    #[arg(long, env = "SPEED_GRACE", default_value = "2m", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    #[command(flatten)]
    pub sink: s3_sink::SinkArgs,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            grace: Duration::from_secs(120),
            sink: s3_sink::SinkArgs::default(),
        }
    }
}

impl CaseStudyCli for Ingestion {
    type Resources = Resources;
    type Options = Options;
    type Command = crate::commands::Command;
    const ABOUT: &'static str =
        "Ingestion: Kafka as the buffer before a speed layer and a batch layer (S3 files)";

    fn case_study() -> CaseStudy<Resources> {
        CaseStudy {
            name: topics::CASE_STUDY,
            topics: topics::ALL,
            services: vec![
                Box::new(ingest_api::Service),
                Box::new(speed_layer::Service),
                Box::new(realtime_api::Service),
                Box::new(s3_sink::Service),
            ],
            routes: |_| Router::new(),
            openapi: ApiDoc::openapi,
        }
    }

    async fn resources(_: &Kafka, dirs: &Dirs, options: &Options) -> anyhow::Result<Resources> {
        let grace = options.grace.as_millis();
        // Late events beyond a day are the batch layer's business; a longer grace would keep
        // a day of actors per minute in the speed layer's state.
        anyhow::ensure!(
            grace <= 86_400_000,
            "--grace {:?} must be at most 24h",
            options.grace
        );
        Ok(Resources {
            speed: speed_layer::Model::new(grace as i64),
            sink_properties: options.sink.properties(&dirs.data)?,
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

/// The HTTP API of every Ingestion service, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ingestion",
        description = "Kafka as the buffer in front of a speed layer (real-time analytics) and a batch layer (files in S3)."
    ),
    paths(ingest_api::ingest, realtime_api::counts, realtime_api::latest)
)]
pub struct ApiDoc;
