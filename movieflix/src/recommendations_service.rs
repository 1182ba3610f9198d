//! **Recommendations service** (consumer): the latest recommendations per viewer, for the
//! movies and TV shows portal.
//!
//! `recommendations` is a compacted topic keyed by viewer, i.e. a table; the service
//! materializes it with the streams runtime (store `latest`) rather than a plain consumer so
//! the table survives restarts (changelog) and can be split over instances (interactive
//! queries redirect to the owner). It also measures freshness: position event time →
//! recommendation applied here.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::routing::get;
use chrono::Utc;
use prometheus_client::metrics::histogram::Histogram;
use shared::Kafka;
use shared::consumer::{HandlerError, PayloadKey};
use shared::http::{ApiError, Json, QueryError};
use shared::streams::{self, ProcessorContext, StreamsConfig, StreamsHandle};
use tokio_util::sync::CancellationToken;

use crate::events::{Recommendations, validate_id};
use crate::topics::RECOMMENDATIONS;

pub const APPLICATION_ID: &str = "movieflix-recommendations";
pub const STORE: &str = "latest";

/// Position → recommendation latency: a Prometheus histogram plus the last samples (for the
/// demo's summary and the bench).
pub struct Freshness {
    histogram: Histogram,
    recent: Mutex<VecDeque<f64>>,
}

impl Freshness {
    fn new() -> Arc<Self> {
        // One series per process, however many services it runs.
        static HISTOGRAM: OnceLock<Histogram> = OnceLock::new();
        let histogram = HISTOGRAM
            .get_or_init(|| {
                let histogram = Histogram::new([
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]);
                shared::metrics::register(
                    "movieflix_position_to_recommendation_seconds",
                    "Position event time to the recommendation it caused being served",
                    histogram.clone(),
                );
                histogram
            })
            .clone();
        Arc::new(Freshness {
            histogram,
            recent: Mutex::new(VecDeque::new()),
        })
    }

    fn observe(&self, seconds: f64) {
        self.histogram.observe(seconds);
        let mut recent = self.recent.lock().expect("freshness lock");
        if recent.len() == 10_000 {
            recent.pop_front();
        }
        recent.push_back(seconds);
    }

    /// (p50, p99, samples) of the latencies observed since the previous call, in seconds.
    pub fn take_quantiles(&self) -> Option<(f64, f64, usize)> {
        let mut samples: Vec<f64> =
            std::mem::take(&mut *self.recent.lock().expect("freshness lock")).into();
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99), samples.len()))
    }
}

struct Latest {
    freshness: Arc<Freshness>,
}

impl streams::Processor for Latest {
    type Input = Recommendations;

    fn key_of<'v>(&self, _topic: &str, value: &'v Recommendations) -> Option<PayloadKey<'v>> {
        Some(PayloadKey::new("user_id", &value.user_id))
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        _key: Option<&str>,
        recommendations: Recommendations,
    ) -> Result<(), HandlerError> {
        validate_id("user_id", &recommendations.user_id).map_err(HandlerError::Permanent)?;
        let latency = (Utc::now() - recommendations.based_on_at).num_microseconds();
        if let Some(micros) = latency.filter(|m| *m >= 0) {
            self.freshness.observe(micros as f64 / 1e6);
        }
        ctx.put(STORE, recommendations.user_id.as_bytes(), &recommendations)?;
        Ok(())
    }
}

/// The streams application: `recommendations` in, the latest per viewer in its store.
pub fn config(kafka: &Kafka) -> StreamsConfig {
    StreamsConfig::new(
        kafka,
        APPLICATION_ID,
        vec![kafka.topic(&RECOMMENDATIONS)],
        &[STORE],
    )
}

pub struct RecommendationsService {
    pub streams: Arc<StreamsHandle>,
    pub freshness: Arc<Freshness>,
}

impl RecommendationsService {
    pub async fn start(
        kafka: &Kafka,
        config: StreamsConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let freshness = Freshness::new();
        let latest = Latest {
            freshness: Arc::clone(&freshness),
        };
        let streams = streams::start(kafka, config, latest, shutdown).await?;
        Ok(RecommendationsService {
            streams: Arc::new(streams),
            freshness,
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/users/{user}/recommendations", get(recommendations))
            .with_state(self)
    }

    /// The latest recommendations of `user` if this instance holds them.
    pub fn local(&self, user: &str) -> anyhow::Result<Option<Recommendations>> {
        let partition = self.streams.partition_of(user.as_bytes());
        self.streams
            .stores
            .get_in(partition, STORE, user.as_bytes())
    }
}

/// The viewer's current recommendations.
#[utoipa::path(
    get,
    path = "/v1/users/{user}/recommendations",
    tag = "recommendations service",
    params(("user" = String, Path)),
    responses(
        (status = 200, body = Recommendations),
        shared::http::Routed,
        (status = 400, description = "Invalid id"),
        (status = 404, description = "No recommendations yet"),
    )
)]
pub async fn recommendations(
    State(service): State<Arc<RecommendationsService>>,
    Path(user): Path<String>,
    uri: Uri,
) -> Result<Json<Recommendations>, QueryError> {
    validate_id("user", &user).map_err(ApiError::bad_request)?;
    let owned = shared::http::owned(&service.streams, user.as_bytes(), &uri)?;
    match owned.get::<Recommendations>(STORE, user.as_bytes())? {
        Some(recommendations) => Ok(Json(recommendations)),
        None => Err(ApiError::not_found(format!("no recommendations for {user} yet")).into()),
    }
}

/// The recommendations service on the scaffold: a streams table plus its query route.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "recommendations-service"
    }
    fn metrics(&self) -> &'static [&'static str] {
        &["movieflix_position_to_recommendation_seconds"]
    }
    fn about(&self) -> &'static str {
        "recommendations → GET /v1/users/{user}/recommendations."
    }
    fn streams(&self, kafka: &Kafka) -> Vec<StreamsConfig> {
        vec![config(kafka)]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        _: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let config = ctx.queryable(config(&ctx.kafka));
        let service = Arc::new(
            RecommendationsService::start(&ctx.kafka, config, ctx.shutdown.clone()).await?,
        );
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&service).router())
            .streams(Arc::clone(&service.streams))
            .handle(service))
    }
}
