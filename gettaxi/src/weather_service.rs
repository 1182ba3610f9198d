//! **Weather service** (producer): a weather feed reports rain per region; the service validates
//! the report and publishes it to `weather` (key: region, compacted — the latest per region is
//! the table surge pricing joins).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::put;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use shared::http::{Accepted, ApiError, Json};
use shared::{EventProducer, Kafka};
use utoipa::ToSchema;

use crate::events::Weather;
use crate::topics::WEATHER;

/// A weather feed's report.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeatherReport {
    /// Rain in millimetres per hour, [0, 500] (0: dry; 10 or more doubles demand).
    pub rain_mm_h: f64,
}

pub struct WeatherService {
    producer: EventProducer,
    topic: String,
}

impl WeatherService {
    pub fn new(kafka: &Kafka) -> anyhow::Result<Self> {
        Ok(WeatherService {
            producer: EventProducer::new(kafka)?,
            topic: kafka.topic(&WEATHER),
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/regions/{region}/weather", put(report_weather))
            .with_state(self)
    }
}

/// Sets the rain in a region (an H3 cell at resolution 7).
#[utoipa::path(
    put,
    path = "/v1/regions/{region}/weather",
    tag = "weather service",
    params(("region" = String, Path, description = "H3 cell at resolution 7 (hex)")),
    request_body = WeatherReport,
    responses(
        (status = 202, description = "Published to weather", body = Accepted),
        (status = 400, description = "Invalid region or rain (the message says why)"),
        (status = 503, description = "The broker did not acknowledge the record"),
    )
)]
pub async fn report_weather(
    State(service): State<Arc<WeatherService>>,
    Path(region): Path<String>,
    Json(report): Json<WeatherReport>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let weather = Weather {
        event_id: shared::event::new_event_id(),
        region,
        rain_mm_h: report.rain_mm_h,
        at: Utc::now(),
    };
    weather.validate().map_err(ApiError::bad_request)?;
    Accepted::publish(&service.producer, &service.topic, &weather.region, &weather).await
}

/// The weather service on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "weather-service"
    }
    fn about(&self) -> &'static str {
        "PUT /v1/regions/{region}/weather → weather."
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        _: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let service = Arc::new(WeatherService::new(&ctx.kafka)?);
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&service).router())
            .handle(service))
    }
}
