//! **Resuming service**: the latest position per (viewer, show), so a player can resume where
//! the viewer left off — on any device, after any restart.
//!
//! A streams application (`movieflix-resuming`): its RocksDB store `resume_points` (key
//! `<user>/<show>`) lives with the viewer's `show_position` partition and is backed by a
//! changelog, so it survives restarts and follows partitions when instances come and go. Queries
//! for a viewer another instance owns are redirected there (interactive queries).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::consumer::{HandlerError, PayloadKey};
use shared::http::{ApiError, Json, QueryError};
use shared::streams::{self, ProcessorContext, StreamsConfig, StreamsHandle};
use shared::{Kafka, TopicSpec};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::catalog::Catalog;
use crate::events::{ShowPosition, validate_id};
use crate::topics::SHOW_POSITION;

pub const APPLICATION_ID: &str = "movieflix-resuming";
pub const STORE: &str = "resume_points";

/// Where a viewer was in a show (the store's value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumePoint {
    pub show_id: String,
    pub episode: Option<u32>,
    pub position_s: u32,
    pub duration_s: u32,
    pub at: DateTime<Utc>,
    pub finished: bool,
}

fn key(user: &str, show: &str) -> String {
    format!("{user}/{show}")
}

/// Keeps the newest position (by event time) per viewer and show.
pub struct Resumer {
    catalog: Arc<Catalog>,
}

impl streams::Processor for Resumer {
    type Input = ShowPosition;

    fn key_of<'v>(&self, _topic: &str, position: &'v ShowPosition) -> Option<PayloadKey<'v>> {
        Some(PayloadKey::new("user_id", &position.user_id))
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        _key: Option<&str>,
        position: ShowPosition,
    ) -> Result<(), HandlerError> {
        position
            .validate(&self.catalog)
            .map_err(HandlerError::Permanent)?;
        let key = key(&position.user_id, &position.show_id);
        let current: Option<ResumePoint> = ctx.get(STORE, key.as_bytes())?;
        // Players retry and networks reorder: an older report must not move the viewer back.
        if current.is_some_and(|c| c.at > position.at) {
            return Ok(());
        }
        let point = ResumePoint {
            finished: position.finished(),
            show_id: position.show_id,
            episode: position.episode,
            position_s: position.position_s,
            duration_s: position.duration_s,
            at: position.at,
        };
        ctx.put(STORE, key.as_bytes(), &point)?;
        Ok(())
    }
}

/// The streams application: `show_position` in, the `resume_points` store.
pub fn config(kafka: &Kafka) -> StreamsConfig {
    StreamsConfig::new(
        kafka,
        APPLICATION_ID,
        vec![kafka.topic(&SHOW_POSITION)],
        &[STORE],
    )
}

pub const TOPICS: &[TopicSpec] = &[SHOW_POSITION];

pub struct ResumingService {
    pub streams: Arc<StreamsHandle>,
    catalog: Arc<Catalog>,
}

impl ResumingService {
    pub async fn start(
        kafka: &Kafka,
        config: StreamsConfig,
        catalog: Arc<Catalog>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let resumer = Resumer {
            catalog: Arc::clone(&catalog),
        };
        let streams = streams::start(kafka, config, resumer, shutdown).await?;
        Ok(ResumingService {
            streams: Arc::new(streams),
            catalog,
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/users/{user}/resume/{show}", get(resume))
            .route("/v1/users/{user}/continue-watching", get(continue_watching))
            .with_state(self)
    }

    /// The answer for one stored point: resume it, or start the next episode.
    fn answer(&self, user: &str, point: &ResumePoint) -> Resume {
        let show = self.catalog.get(&point.show_id);
        let title = show.map_or_else(|| point.show_id.clone(), |s| s.title.clone());
        let next = show.and_then(|s| s.next_episode(point.episode));
        let (episode, position_s, state) = match (point.finished, next) {
            (false, _) => (point.episode, point.position_s, ResumeState::Resume),
            (true, Some(next)) => (Some(next), 0, ResumeState::NextEpisode),
            (true, None) => (point.episode, 0, ResumeState::Finished),
        };
        Resume {
            user_id: user.to_owned(),
            show_id: point.show_id.clone(),
            episode_label: show.and_then(|s| s.episode_label(episode)),
            title,
            episode,
            position_s,
            state,
            last_watched_at: point.at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResumeState {
    /// Continue the same episode at `position_s`.
    Resume,
    /// The last episode watched was finished: start the next one.
    NextEpisode,
    /// The movie or the series' last episode was finished: start over if wanted.
    Finished,
}

/// Where to resume a show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Resume {
    pub user_id: String,
    pub show_id: String,
    pub title: String,
    pub episode: Option<u32>,
    pub episode_label: Option<String>,
    pub position_s: u32,
    pub state: ResumeState,
    pub last_watched_at: DateTime<Utc>,
}

/// Shows in progress, most recent first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContinueWatching {
    pub user_id: String,
    pub shows: Vec<Resume>,
}

/// Where to resume a show.
#[utoipa::path(
    get,
    path = "/v1/users/{user}/resume/{show}",
    tag = "resuming service",
    params(("user" = String, Path), ("show" = String, Path)),
    responses(
        (status = 200, body = Resume),
        shared::http::Routed,
        (status = 400, description = "Invalid id"),
        (status = 404, description = "The viewer never played this show"),
    )
)]
pub async fn resume(
    State(service): State<Arc<ResumingService>>,
    Path((user, show)): Path<(String, String)>,
    uri: Uri,
) -> Result<Json<Resume>, QueryError> {
    validate_id("user", &user)
        .and_then(|()| validate_id("show", &show))
        .map_err(ApiError::bad_request)?;
    let owned = shared::http::owned(&service.streams, user.as_bytes(), &uri)?;
    match owned.get::<ResumePoint>(STORE, key(&user, &show).as_bytes())? {
        Some(point) => Ok(Json(service.answer(&user, &point))),
        None => Err(ApiError::not_found(format!("{user} has not played {show}")).into()),
    }
}

/// Shows the viewer has not finished, most recently watched first.
#[utoipa::path(
    get,
    path = "/v1/users/{user}/continue-watching",
    tag = "resuming service",
    params(("user" = String, Path)),
    responses(
        (status = 200, body = ContinueWatching),
        shared::http::Routed,
        (status = 400, description = "Invalid id"),
    )
)]
pub async fn continue_watching(
    State(service): State<Arc<ResumingService>>,
    Path(user): Path<String>,
    uri: Uri,
) -> Result<Json<ContinueWatching>, QueryError> {
    validate_id("user", &user).map_err(ApiError::bad_request)?;
    let owned = shared::http::owned(&service.streams, user.as_bytes(), &uri)?;
    let points = owned.prefix::<ResumePoint>(STORE, format!("{user}/").as_bytes())?;
    let mut shows: Vec<Resume> = points
        .iter()
        .map(|(_, point)| service.answer(&user, point))
        .filter(|r| r.state != ResumeState::Finished)
        .collect();
    shows.sort_by_key(|r| std::cmp::Reverse(r.last_watched_at));
    shows.truncate(20);
    Ok(Json(ContinueWatching {
        user_id: user,
        shows,
    }))
}

/// The resuming service on the scaffold: a streams application plus its query routes.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "resuming-service"
    }
    fn about(&self) -> &'static str {
        "show_position → latest position per viewer and show; GET …/resume/{show}."
    }
    fn streams(&self, kafka: &Kafka) -> Vec<StreamsConfig> {
        vec![config(kafka)]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let config = ctx.queryable(config(&ctx.kafka));
        let service = Arc::new(
            ResumingService::start(
                &ctx.kafka,
                config,
                Arc::clone(&resources.catalog),
                ctx.shutdown.clone(),
            )
            .await?,
        );
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&service).router())
            .streams(Arc::clone(&service.streams))
            .handle(service))
    }
}
