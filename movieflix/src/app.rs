//! Running a selection of MovieFlix's services in one process: `movieflix all` runs them all,
//! `movieflix <service>` one (to scale it out alone), tests and the demo spawn them here.
//!
//! One HTTP listener serves every selected service's routes, the catalog, `/openapi.json` and
//! the ops endpoints (`/healthz`, `/readyz`, `/metrics`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde::Deserialize;
use shared::Kafka;
use shared::analytics::SinkHandle;
use shared::http::{ApiError, Json, Readiness};
use shared::streams::StreamsHandle;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::catalog::{Catalog, Show};
use crate::{
    analytics_sink, recommendation_engine, recommendations_service, resuming_service, topics,
    video_position_service,
};

/// The boxes of the architecture slide that run as services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    VideoPositionService,
    ResumingService,
    RecommendationEngine,
    RecommendationsService,
    AnalyticsSink,
}

impl Service {
    pub const ALL: &[Service] = &[
        Service::VideoPositionService,
        Service::ResumingService,
        Service::RecommendationEngine,
        Service::RecommendationsService,
        Service::AnalyticsSink,
    ];
}

/// Where services keep things and listen.
pub struct Options {
    pub listener: tokio::net::TcpListener,
    /// This process's URL as other instances reach it (interactive-query redirects).
    pub advertised_url: Option<String>,
    /// Streams state: `<state_dir>/<application id>/`.
    pub state_dir: PathBuf,
    /// The analytics store (Parquet files).
    pub analytics_dir: PathBuf,
    pub sink_max_rows: usize,
    pub sink_max_age: Duration,
}

/// Running services; [`App::stop`] shuts them down in order.
pub struct App {
    pub address: SocketAddr,
    pub shutdown: CancellationToken,
    pub catalog: Arc<Catalog>,
    pub video: Option<Arc<video_position_service::VideoPositionService>>,
    pub resuming: Option<Arc<resuming_service::ResumingService>>,
    pub engine: Option<StreamsHandle>,
    pub recommendations: Option<Arc<recommendations_service::RecommendationsService>>,
    pub sink: Option<SinkHandle>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl App {
    /// Provisions MovieFlix's topics (idempotent), starts `services`, serves HTTP.
    pub async fn spawn(
        kafka: &Kafka,
        services: &[Service],
        options: Options,
    ) -> anyhow::Result<App> {
        shared::provision(kafka, topics::ALL).await?;
        let shutdown = CancellationToken::new();
        let catalog = Catalog::shared();
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
            .route("/v1/shows", get(list_shows))
            .route("/v1/shows/{show}", get(get_show))
            .with_state(Arc::clone(&catalog))
            .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
            .merge(shared::http::ops_router(Readiness::new(kafka)?));

        let video = if services.contains(&Service::VideoPositionService) {
            let service = Arc::new(video_position_service::VideoPositionService::new(
                kafka,
                Arc::clone(&catalog),
            )?);
            router = router.merge(Arc::clone(&service).router());
            Some(service)
        } else {
            None
        };
        let resuming = if services.contains(&Service::ResumingService) {
            let mut config = resuming_service::config(kafka, endpoint.clone());
            state_dir(&mut config);
            let service = Arc::new(
                resuming_service::ResumingService::start(
                    kafka,
                    config,
                    Arc::clone(&catalog),
                    shutdown.clone(),
                )
                .await?,
            );
            router = router.merge(Arc::clone(&service).router());
            Some(service)
        } else {
            None
        };
        let engine = if services.contains(&Service::RecommendationEngine) {
            let mut config = recommendation_engine::config(kafka);
            state_dir(&mut config);
            Some(
                recommendation_engine::start(kafka, config, Arc::clone(&catalog), shutdown.clone())
                    .await?,
            )
        } else {
            None
        };
        let recommendations = if services.contains(&Service::RecommendationsService) {
            let mut config = recommendations_service::config(kafka, endpoint.clone());
            state_dir(&mut config);
            let service = Arc::new(
                recommendations_service::RecommendationsService::start(
                    kafka,
                    config,
                    shutdown.clone(),
                )
                .await?,
            );
            router = router.merge(Arc::clone(&service).router());
            Some(service)
        } else {
            None
        };
        let sink = if services.contains(&Service::AnalyticsSink) {
            let mut config = analytics_sink::config(kafka, options.analytics_dir.clone());
            config.max_rows = options.sink_max_rows;
            config.max_age = options.sink_max_age;
            Some(analytics_sink::start(kafka, config, shutdown.clone())?)
        } else {
            None
        };

        let server = tokio::spawn(shared::http::serve(
            options.listener,
            shared::http::finish(router),
            shutdown.clone(),
        ));
        tracing::info!(%address, ?services, "movieflix running");
        Ok(App {
            address,
            shutdown,
            catalog,
            video,
            resuming,
            engine,
            recommendations,
            sink,
            server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops accepting requests, flushes accepted positions, stops every processor (each
    /// commits what it processed), and waits for all of them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server.await??;
        if let Some(video) = &self.video {
            video.flush();
        }
        let mut handles = Vec::new();
        if let Some(service) = self.resuming {
            handles.push(unwrap_handle(Arc::into_inner(service).map(|s| s.streams)));
        }
        if let Some(service) = self.recommendations {
            handles.push(unwrap_handle(Arc::into_inner(service).map(|s| s.streams)));
        }
        for handle in handles.into_iter().flatten() {
            handle.join().await?;
        }
        if let Some(engine) = self.engine {
            engine.join().await?;
        }
        if let Some(sink) = self.sink {
            sink.join().await?;
        }
        Ok(())
    }
}

/// The stream thread stops on the token either way; join it when no request holds it.
fn unwrap_handle(streams: Option<Arc<StreamsHandle>>) -> Option<StreamsHandle> {
    streams.and_then(Arc::into_inner)
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
