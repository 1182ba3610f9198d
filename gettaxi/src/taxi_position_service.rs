//! **Taxi position service** (producer): the driver app reports where the taxi is, every few
//! seconds, with its status (`available`, `en_route` to a pickup, `on_ride`, `off_duty`) and,
//! when busy, the ride. The service validates the report and publishes it to `taxi_position`,
//! keyed by `taxi_id`: a taxi's positions stay in order on one partition, which is what the
//! matcher's ledger and the fare's trace rely on.

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

use crate::events::{TaxiPosition, TaxiStatus, validate_event_time, validate_id};
use crate::topics::TAXI_POSITION;

/// A driver app's report.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaxiPositionReport {
    /// Degrees, [-90, 90].
    pub lat: f64,
    /// Degrees, [-180, 180].
    pub lon: f64,
    pub status: TaxiStatus,
    /// Required with `en_route` and `on_ride`, absent otherwise.
    #[serde(default)]
    pub ride_id: Option<String>,
    /// When the taxi was there; defaults to the time the report arrives. At most an hour ago
    /// and 30 seconds ahead (else 400).
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

pub struct TaxiPositionService {
    producer: EventProducer,
    topic: String,
}

impl TaxiPositionService {
    pub fn new(kafka: &Kafka) -> anyhow::Result<Self> {
        Ok(TaxiPositionService {
            producer: EventProducer::new(kafka)?,
            topic: kafka.topic(&TAXI_POSITION),
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/taxis/{taxi}/position", post(report_taxi_position))
            .with_state(self)
    }

    pub fn flush(&self) {
        if let Err(err) = self.producer.flush(std::time::Duration::from_secs(10)) {
            tracing::warn!(%err, "taxi position service: flush on shutdown");
        }
    }
}

/// Reports where a taxi is and what it is doing.
#[utoipa::path(
    post,
    path = "/v1/taxis/{taxi}/position",
    tag = "taxi position service",
    params(("taxi" = String, Path)),
    request_body = TaxiPositionReport,
    responses(
        (status = 202, description = "Published to taxi_position", body = Accepted),
        (status = 400, description = "Invalid report (the message says why); nothing published"),
        (status = 503, description = "The broker did not acknowledge the record"),
    )
)]
pub async fn report_taxi_position(
    State(service): State<Arc<TaxiPositionService>>,
    Path(taxi): Path<String>,
    Json(report): Json<TaxiPositionReport>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    validate_id("taxi", &taxi).map_err(ApiError::bad_request)?;
    let now = Utc::now();
    let at = report.at.unwrap_or(now);
    validate_event_time(at, now).map_err(ApiError::bad_request)?;
    let position = TaxiPosition {
        event_id: shared::event::new_event_id(),
        taxi_id: taxi,
        lat: report.lat,
        lon: report.lon,
        status: report.status,
        ride_id: report.ride_id,
        at,
    };
    position.validate().map_err(ApiError::bad_request)?;
    Accepted::publish(
        &service.producer,
        &service.topic,
        &position.taxi_id,
        &position,
    )
    .await
}

/// The taxi position service on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "taxi-position-service"
    }
    fn about(&self) -> &'static str {
        "POST /v1/taxis/{taxi}/position → taxi_position."
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        _: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let service = Arc::new(TaxiPositionService::new(&ctx.kafka)?);
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
