//! GetTaxi on the service scaffold ([`shared::service`]). It has no services yet (issue #20
//! builds them, one file per box of the slide in `README.md`), yet its command line is whole:
//! `gettaxi all` provisions [`topics::ALL`] and serves `/healthz`, `/readyz`, `/metrics` and
//! `/openapi.json`. A service joins by one line in `services` below.

use axum::Router;
use shared::service::CaseStudy;
use shared::service::cli::{CaseStudyCli, Dirs, NoCommand, NoOptions};
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::topics;

/// GetTaxi, as the scaffold runs it.
pub struct GetTaxi;

impl CaseStudyCli for GetTaxi {
    type Resources = ();
    type Options = NoOptions;
    type Command = NoCommand;
    const ABOUT: &'static str = "GetTaxi: the nearest available driver, surge pricing per region, fares from the stored trace";

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

/// The HTTP API of every GetTaxi service, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(info(
    title = "GetTaxi",
    description = "Match riders with the nearest available driver, price rides by regional supply and demand, and compute fares from every position of a ride."
))]
pub struct ApiDoc;
