//! **App threshold service** (producer): users set, change or remove their alert threshold in
//! the app; the service validates the request and publishes what the user did — an event with
//! its time — to `user_settings`, keyed by user_id.
//!
//! To tell `ThresholdEnabled` from `ThresholdChanged` (and to answer `GET`), it materializes the
//! current threshold per user from `user_settings` itself (a small streams application, store
//! `thresholds`). That view follows the topic, so a `GET` right after a `PUT` may still show the
//! previous value for a few milliseconds; the detector does not depend on the event's type.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SubsecRound, Utc};
use rdkafka::message::{Header, OwnedHeaders};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use shared::consumer::{HandlerError, PayloadKey};
use shared::http::{ApiError, Json, QueryError};
use shared::streams::{self, ProcessorContext, StreamsConfig, StreamsHandle};
use shared::{EventProducer, Kafka};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::events::{SettingsEvent, validate_user};
use crate::money::Money;
use crate::topics::USER_SETTINGS;

pub const APPLICATION_ID: &str = "mybank-thresholds";
pub const STORE: &str = "thresholds";

/// A user's threshold now (the store's value, and the `GET` answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CurrentThreshold {
    pub user_id: String,
    pub threshold: Money,
    pub since: DateTime<Utc>,
}

/// Folds `user_settings` into the current threshold per user.
pub struct ThresholdTable;

impl streams::Processor for ThresholdTable {
    type Input = SettingsEvent;

    fn key_of<'v>(&self, _topic: &str, event: &'v SettingsEvent) -> Option<PayloadKey<'v>> {
        Some(PayloadKey::new("user_id", event.user_id()))
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        _key: Option<&str>,
        event: SettingsEvent,
    ) -> Result<(), HandlerError> {
        event.validate().map_err(HandlerError::Permanent)?;
        let key = event.user_id().as_bytes().to_vec();
        let current: Option<CurrentThreshold> = ctx.get(STORE, &key)?;
        if current.as_ref().is_some_and(|c| c.since > event.at()) {
            return Ok(()); // an older event arriving late does not undo a newer one
        }
        match event.threshold() {
            Some(threshold) => ctx.put(
                STORE,
                &key,
                &CurrentThreshold {
                    user_id: event.user_id().to_owned(),
                    threshold: threshold.clone(),
                    since: event.at(),
                },
            )?,
            None => ctx.delete(STORE, &key)?,
        }
        Ok(())
    }
}

/// The streams application: `user_settings` in, each user's current threshold in its store.
pub fn config(kafka: &Kafka) -> StreamsConfig {
    let mut config = StreamsConfig::new(
        kafka,
        APPLICATION_ID,
        vec![kafka.topic(&USER_SETTINGS)],
        &[STORE],
    );
    // A user waits for this view on every PUT: small batches, short linger.
    config.batch_linger = std::time::Duration::from_millis(2);
    config
}

/// `PUT` body: the amount as decimal text (`"1000.50"`) or a plain JSON number (`1000.5`; no
/// exponent: it is read as written, never through a float).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ThresholdRequest {
    #[schema(value_type = String, example = "1000.00")]
    pub amount: Box<RawValue>,
    #[schema(example = "EUR")]
    pub currency: String,
}

/// What the service published.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Published {
    pub event: SettingsEvent,
    pub partition: i32,
    pub offset: i64,
}

pub struct AppThresholdService {
    producer: EventProducer,
    topic: String,
    pub streams: Arc<StreamsHandle>,
}

impl AppThresholdService {
    pub async fn start(
        kafka: &Kafka,
        config: StreamsConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let streams = streams::start(kafka, config, ThresholdTable, shutdown).await?;
        Ok(AppThresholdService {
            producer: EventProducer::new(kafka)?,
            topic: kafka.topic(&USER_SETTINGS),
            streams: Arc::new(streams),
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(
                "/v1/users/{user}/alert-threshold",
                get(get_threshold)
                    .put(put_threshold)
                    .delete(delete_threshold),
            )
            .with_state(self)
    }

    pub fn flush(&self) {
        if let Err(err) = self.producer.flush(std::time::Duration::from_secs(10)) {
            tracing::warn!(%err, "app threshold service: flush on shutdown");
        }
    }

    /// The user's threshold, if this instance holds the user (else the redirect or 503).
    fn current(&self, user: &str, uri: &Uri) -> Result<Option<CurrentThreshold>, QueryError> {
        let owned = shared::http::owned(&self.streams, user.as_bytes(), uri)?;
        Ok(owned.get(STORE, user.as_bytes())?)
    }

    async fn publish(&self, event: SettingsEvent) -> Result<Response, ApiError> {
        let payload = serde_json::to_vec(&event).map_err(ApiError::internal)?;
        let produced_at = Utc::now().to_rfc3339();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "event_id",
                value: Some(event.event_id()),
            })
            .insert(Header {
                key: "event_type",
                value: Some(event.event_type()),
            })
            .insert(Header {
                key: "produced_at",
                value: Some(produced_at.as_str()),
            });
        let delivery = self
            .producer
            .send(
                &self.topic,
                Some(event.user_id().as_bytes()),
                Some(&payload),
                headers,
                Some(event.at().timestamp_millis()),
            )
            .await
            .map_err(|err| ApiError::unavailable(err.to_string()))?;
        Ok((
            StatusCode::ACCEPTED,
            Json(Published {
                event,
                partition: delivery.partition,
                offset: delivery.offset,
            }),
        )
            .into_response())
    }
}

fn parse_request(request: &ThresholdRequest) -> Result<Money, ApiError> {
    let raw = request.amount.get();
    let amount = match serde_json::from_str::<Value>(raw) {
        Ok(Value::String(text)) => text,
        // The number's text as sent: `1e9` or `1000.0000001` are refused, not rounded.
        Ok(Value::Number(_)) => raw.to_owned(),
        _ => {
            return Err(ApiError::bad_request(format!(
                "amount must be a decimal number or a string like \"1000.00\", got {raw}"
            )));
        }
    };
    Money::parse(&amount, &request.currency).map_err(ApiError::bad_request)
}

/// The user's current alert threshold.
#[utoipa::path(
    get,
    path = "/v1/users/{user}/alert-threshold",
    tag = "app threshold service",
    params(("user" = String, Path)),
    responses(
        (status = 200, body = CurrentThreshold),
        shared::http::Routed,
        (status = 404, description = "No threshold set"),
    )
)]
pub async fn get_threshold(
    State(service): State<Arc<AppThresholdService>>,
    Path(user): Path<String>,
    uri: Uri,
) -> Result<Response, QueryError> {
    validate_user(&user).map_err(ApiError::bad_request)?;
    match service.current(&user, &uri)? {
        Some(current) => Ok(Json(current).into_response()),
        None => Err(ApiError::not_found(format!("{user} has no alert threshold")).into()),
    }
}

/// Sets (or changes) the threshold: alerts for transactions over it, from now on.
#[utoipa::path(
    put,
    path = "/v1/users/{user}/alert-threshold",
    tag = "app threshold service",
    params(("user" = String, Path)),
    request_body = ThresholdRequest,
    responses(
        (status = 202, description = "ThresholdEnabled or ThresholdChanged published", body = Published),
        shared::http::Routed,
        (status = 200, description = "Already the threshold: nothing published", body = CurrentThreshold),
        (status = 400, description = "Not a positive amount, or an unknown currency"),
    )
)]
pub async fn put_threshold(
    State(service): State<Arc<AppThresholdService>>,
    Path(user): Path<String>,
    uri: Uri,
    Json(request): Json<ThresholdRequest>,
) -> Result<Response, QueryError> {
    validate_user(&user).map_err(ApiError::bad_request)?;
    let threshold = parse_request(&request)?;
    let current = service.current(&user, &uri)?;
    let event_id = shared::event::new_event_id();
    // Milliseconds, like record timestamps and the bank's created_at: a transaction inserted
    // right after this request is never judged to predate it.
    let at = Utc::now().trunc_subsecs(3);
    let event = match current {
        Some(current) if current.threshold == threshold => {
            return Ok(Json(current).into_response());
        }
        Some(current) => SettingsEvent::ThresholdChanged {
            event_id,
            user_id: user,
            threshold,
            previous: current.threshold,
            at,
        },
        None => SettingsEvent::ThresholdEnabled {
            event_id,
            user_id: user,
            threshold,
            at,
        },
    };
    Ok(service.publish(event).await?)
}

/// Turns alerts off, from now on.
#[utoipa::path(
    delete,
    path = "/v1/users/{user}/alert-threshold",
    tag = "app threshold service",
    params(("user" = String, Path)),
    responses(
        (status = 202, description = "ThresholdDisabled published", body = Published),
        shared::http::Routed,
        (status = 204, description = "No threshold was set: nothing published"),
    )
)]
pub async fn delete_threshold(
    State(service): State<Arc<AppThresholdService>>,
    Path(user): Path<String>,
    uri: Uri,
) -> Result<Response, QueryError> {
    validate_user(&user).map_err(ApiError::bad_request)?;
    if service.current(&user, &uri)?.is_none() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(service
        .publish(SettingsEvent::ThresholdDisabled {
            event_id: shared::event::new_event_id(),
            user_id: user,
            at: Utc::now().trunc_subsecs(3),
        })
        .await?)
}

/// The app threshold service on the scaffold: its routes and its threshold table; flushes what
/// it published, then joins its stream thread, when the process stops.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "app-threshold-service"
    }
    fn about(&self) -> &'static str {
        "PUT/DELETE /v1/users/{user}/alert-threshold → user_settings."
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
        let service =
            Arc::new(AppThresholdService::start(&ctx.kafka, config, ctx.shutdown.clone()).await?);
        let flushed = Arc::clone(&service);
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&service).router())
            .on_stop(async move {
                flushed.flush();
                Ok(())
            })
            .streams(Arc::clone(&service.streams))
            .handle(service))
    }
}
