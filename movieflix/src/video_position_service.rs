//! **Video position service** (producer): players report where the viewer is every few
//! seconds; the service validates the report and publishes it to `show_position`, keyed by
//! `user_id` so one viewer's positions stay in order on one partition.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::http::{Accepted, ApiError, Json};
use shared::{EventProducer, Kafka};
use utoipa::ToSchema;

use crate::catalog::Catalog;
use crate::events::{ShowPosition, validate_event_time};
use crate::topics::SHOW_POSITION;

/// A player's report.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct PositionReport {
    pub user_id: String,
    pub show_id: String,
    /// Required for a series (1-based across seasons), absent for a movie.
    #[serde(default)]
    pub episode: Option<u32>,
    /// Seconds into the episode or movie: 0..=`duration_s`.
    #[schema(minimum = 0, maximum = 86_400)]
    pub position_s: u32,
    /// Its length in seconds: 1..=86400 (a day).
    #[schema(minimum = 1, maximum = 86_400)]
    pub duration_s: u32,
    /// When the player was there; defaults to the time the report arrives. At most 7 days ago
    /// and 5 minutes ahead (else 400).
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

pub struct VideoPositionService {
    producer: EventProducer,
    topic: String,
    catalog: Arc<Catalog>,
}

impl VideoPositionService {
    pub fn new(kafka: &Kafka, catalog: Arc<Catalog>) -> anyhow::Result<Self> {
        Ok(VideoPositionService {
            producer: EventProducer::new(kafka)?,
            topic: kafka.topic(&SHOW_POSITION),
            catalog,
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/positions", post(report_position))
            .with_state(self)
    }

    /// Waits until every accepted position is acknowledged (on shutdown).
    pub fn flush(&self) {
        if let Err(err) = self.producer.flush(std::time::Duration::from_secs(10)) {
            tracing::warn!(%err, "video position service: flush on shutdown");
        }
    }
}

/// Reports a playback position.
#[utoipa::path(
    post,
    path = "/v1/positions",
    tag = "video position service",
    request_body = PositionReport,
    responses(
        (status = 202, description = "Published to show_position", body = Accepted),
        (status = 400, description = "Invalid report (the message says why); nothing published"),
        (status = 503, description = "The broker did not acknowledge the record"),
    )
)]
pub async fn report_position(
    State(service): State<Arc<VideoPositionService>>,
    Json(report): Json<PositionReport>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let now = Utc::now();
    let at = report.at.unwrap_or(now);
    validate_event_time(at, now).map_err(ApiError::bad_request)?;
    let position = ShowPosition {
        event_id: shared::event::new_event_id(),
        user_id: report.user_id,
        show_id: report.show_id,
        episode: report.episode,
        position_s: report.position_s,
        duration_s: report.duration_s,
        at,
    };
    position
        .validate(&service.catalog)
        .map_err(ApiError::bad_request)?;
    Accepted::publish(
        &service.producer,
        &service.topic,
        &position.user_id,
        &position,
    )
    .await
}

/// The video position service on the scaffold: `POST /v1/positions`; flushes what it accepted
/// when the process stops.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "video-position-service"
    }
    fn about(&self) -> &'static str {
        "POST /v1/positions → show_position."
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let service = Arc::new(VideoPositionService::new(
            &ctx.kafka,
            Arc::clone(&resources.catalog),
        )?);
        let flushed = Arc::clone(&service);
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&service).router())
            .handle(service)
            .on_stop(async move {
                flushed.flush();
                Ok(())
            }))
    }
}
