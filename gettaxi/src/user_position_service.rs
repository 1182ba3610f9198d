//! **User position service** (producer): the user app reports where the rider is while the app
//! is open; the service validates the report and publishes it to `user_position`, keyed by
//! `user_id` (one rider's positions stay in order on one partition).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::http::{Accepted, ApiError, Json};
use shared::{EventProducer, Kafka};
use utoipa::ToSchema;

use crate::events::{UserPosition, validate_event_time, validate_id};
use crate::topics::USER_POSITION;

/// A rider app's report.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPositionReport {
    /// Degrees, [-90, 90].
    pub lat: f64,
    /// Degrees, [-180, 180].
    pub lon: f64,
    /// When the rider was there; defaults to the time the report arrives. At most an hour ago
    /// and 30 seconds ahead (else 400).
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

pub struct UserPositionService {
    producer: EventProducer,
    topic: String,
}

impl UserPositionService {
    pub fn new(kafka: &Kafka) -> anyhow::Result<Self> {
        Ok(UserPositionService {
            producer: EventProducer::new(kafka)?,
            topic: kafka.topic(&USER_POSITION),
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/users/{user}/position", post(report_user_position))
            .with_state(self)
    }

    pub fn flush(&self) {
        if let Err(err) = self.producer.flush(std::time::Duration::from_secs(10)) {
            tracing::warn!(%err, "user position service: flush on shutdown");
        }
    }
}

/// Reports where a rider is.
#[utoipa::path(
    post,
    path = "/v1/users/{user}/position",
    tag = "user position service",
    params(("user" = String, Path)),
    request_body = UserPositionReport,
    responses(
        (status = 202, description = "Published to user_position", body = Accepted),
        (status = 400, description = "Invalid report (the message says why); nothing published"),
        (status = 503, description = "The broker did not acknowledge the record"),
    )
)]
pub async fn report_user_position(
    State(service): State<Arc<UserPositionService>>,
    Path(user): Path<String>,
    Json(report): Json<UserPositionReport>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    validate_id("user", &user).map_err(ApiError::bad_request)?;
    let now = Utc::now();
    let at = report.at.unwrap_or(now);
    validate_event_time(at, now).map_err(ApiError::bad_request)?;
    let position = UserPosition {
        event_id: shared::event::new_event_id(),
        user_id: user,
        lat: report.lat,
        lon: report.lon,
        at,
    };
    position.validate().map_err(ApiError::bad_request)?;
    Accepted::publish(
        &service.producer,
        &service.topic,
        &position.user_id,
        &position,
    )
    .await
}

/// The user position service on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "user-position-service"
    }
    fn about(&self) -> &'static str {
        "POST /v1/users/{user}/position → user_position."
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        _: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let service = Arc::new(UserPositionService::new(&ctx.kafka)?);
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
