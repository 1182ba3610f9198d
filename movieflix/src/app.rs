//! MovieFlix on the service scaffold ([`shared::service`]): its services in start order, what
//! they share, its own commands (`simulate`, `demo`), and the routes and API every MovieFlix
//! process serves (the catalog, `/openapi.json`). `main.rs` is `cli::main::<MovieFlix>()`;
//! tests and the demo start services with [`shared::service::cli::start`], the same way.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde::Deserialize;
use shared::analytics::{Analytics, AnalyticsArgs};
use shared::http::{ApiError, Json};
use shared::service::CaseStudy;
use shared::service::cli::{CaseStudyCli, Dirs};
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::catalog::{Catalog, Show};
use crate::{
    analytics_sink, recommendation_engine, recommendations_service, resuming_service, topics,
    video_position_service,
};

/// MovieFlix, as the scaffold runs it.
pub struct MovieFlix;

/// What MovieFlix's services share in one process.
pub struct Resources {
    pub catalog: Arc<Catalog>,
    /// The analytics store (Parquet files).
    pub analytics: Analytics,
}

/// MovieFlix's options of every serving subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub analytics: AnalyticsArgs,
}

impl CaseStudyCli for MovieFlix {
    type Resources = Resources;
    type Options = Options;
    type Command = crate::commands::Command;
    const ABOUT: &'static str =
        "MovieFlix: resume playback, real-time recommendations, an analytics store";

    fn case_study() -> CaseStudy<Resources> {
        CaseStudy {
            name: "movieflix",
            topics: topics::ALL,
            services: vec![
                Box::new(video_position_service::Service),
                Box::new(resuming_service::Service),
                Box::new(recommendation_engine::Service),
                Box::new(recommendations_service::Service),
                Box::new(analytics_sink::Service),
            ],
            routes: catalog_routes,
            openapi: ApiDoc::openapi,
        }
    }

    async fn resources(_: &Kafka, dirs: &Dirs, options: &Options) -> anyhow::Result<Resources> {
        Ok(Resources {
            catalog: Catalog::shared(),
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

/// The catalog, served by every MovieFlix process.
fn catalog_routes(resources: &Resources) -> Router {
    Router::new()
        .route("/v1/shows", get(list_shows))
        .route("/v1/shows/{show}", get(get_show))
        .with_state(Arc::clone(&resources.catalog))
}

#[derive(Debug, Deserialize)]
struct ShowFilter {
    genre: Option<String>,
    limit: Option<usize>,
}

/// The catalog (optionally one genre, most popular first).
#[utoipa::path(
    get,
    path = "/v1/shows",
    tag = "catalog",
    params(
        ("genre" = Option<String>, Query, description = "e.g. sci-fi"),
        ("limit" = Option<usize>, Query, description = "at most this many (default 50)"),
    ),
    responses((status = 200, body = [Show]))
)]
async fn list_shows(
    State(catalog): State<Arc<Catalog>>,
    Query(filter): Query<ShowFilter>,
) -> Result<Json<Vec<Show>>, ApiError> {
    let limit = filter.limit.unwrap_or(50).min(500);
    let shows: Vec<Show> = match &filter.genre {
        Some(genre) if !crate::catalog::GENRES.contains(&genre.as_str()) => {
            return Err(ApiError::bad_request(format!(
                "unknown genre {genre:?} (one of {:?})",
                crate::catalog::GENRES
            )));
        }
        Some(genre) => catalog.by_genre(genre).into_iter().cloned().collect(),
        None => catalog.shows().to_vec(),
    };
    Ok(Json(shows.into_iter().take(limit).collect()))
}

/// One show with its episodes.
#[utoipa::path(
    get,
    path = "/v1/shows/{show}",
    tag = "catalog",
    params(("show" = String, Path)),
    responses((status = 200, body = Show), (status = 404, description = "No such show"))
)]
async fn get_show(
    State(catalog): State<Arc<Catalog>>,
    Path(show): Path<String>,
) -> Result<Json<Show>, ApiError> {
    catalog
        .get(&show)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no show {show:?}")))
}

/// The HTTP API of every MovieFlix service, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "MovieFlix",
        description = "Resume playback, real-time recommendations and an analytics store on Kafka."
    ),
    paths(
        video_position_service::report_position,
        resuming_service::resume,
        resuming_service::continue_watching,
        recommendations_service::recommendations,
        list_shows,
        get_show,
    )
)]
pub struct ApiDoc;
