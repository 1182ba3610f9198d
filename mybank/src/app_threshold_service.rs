//! **App threshold service** (producer): users set, change or remove their alert threshold in
//! the app; the service validates the request and publishes what the user did — an event with
//! its time — to `user_settings`, keyed by user_id.
//!
//! To tell `ThresholdEnabled` from `ThresholdChanged` (and to answer `GET`), it materializes the
//! current threshold per user from `user_settings` itself (a small streams application, store
//! `thresholds`). That view follows the topic, so a `GET` right after a `PUT` may still show the
//! previous value for a few milliseconds; the detector does not depend on the event's type.
//!
//! A command (`PUT`, `DELETE`) must not decide from a view that lags: two concurrent `PUT`s would
//! both read "no threshold" and publish two `ThresholdEnabled`. So a user's commands run one at
//! a time on the instance that owns the user's partition (every other instance redirects there),
//! and each first waits until the view has applied everything published on that partition before
//! it: everything this instance had acknowledged, or — the first command after the partition's
//! task opened here — the partition's log end, which covers what a previous owner published.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SubsecRound, Utc};
use rdkafka::consumer::BaseConsumer;
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

/// How long a command waits for the view to catch up before answering 503.
const VIEW_WAIT: Duration = Duration::from_secs(5);
/// Users' commands are serialized by stripe: a user always maps to the same stripe.
const STRIPES: usize = 256;

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
    /// A user's commands hold the user's stripe from reading the view to the acknowledgement.
    stripes: Vec<tokio::sync::Mutex<()>>,
    /// Per partition: the offset the view must reach before the next command decides, for the
    /// task opening it was learnt under ([`shared::streams::Applied::opened`]).
    floors: Mutex<HashMap<i32, Floor>>,
    /// For the log end of a partition whose task just opened here.
    watermarks: Arc<BaseConsumer>,
}

#[derive(Clone, Copy)]
struct Floor {
    opened: u64,
    next_offset: i64,
}

/// What a command does, given the user's current threshold.
enum Decision {
    Publish(SettingsEvent),
    Answer(Response),
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
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            floors: Mutex::default(),
            watermarks: Arc::new(kafka.client_config().create()?),
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

    /// Runs one command of `user`: with the user's stripe held, waits until the view holds
    /// every event published on the user's partition so far, reads the current threshold,
    /// decides, and publishes — acknowledged before the next command of the user reads.
    async fn command(
        &self,
        user: &str,
        uri: &Uri,
        decide: impl FnOnce(Option<CurrentThreshold>) -> Decision,
    ) -> Result<Response, QueryError> {
        let stripe = BuildHasherDefault::<DefaultHasher>::default().hash_one(user) as usize;
        let _turn = self.stripes[stripe % STRIPES].lock().await;
        let owned = shared::http::owned(&self.streams, user.as_bytes(), uri)?;
        let applied = owned.applied(&self.topic)?;
        let floor = self.floor(owned.partition, applied.opened).await?;
        let applied = owned.wait_applied(&self.topic, floor, VIEW_WAIT).await?;
        let current = owned.get(STORE, user.as_bytes())?;
        match decide(current) {
            Decision::Answer(response) => Ok(response),
            Decision::Publish(event) => {
                let (response, published) = match self.publish(event).await {
                    Ok(published) => published,
                    Err(err) => {
                        // The record may be written all the same (a timeout): the next command
                        // waits for the log end rather than for what this instance knows.
                        self.floors
                            .lock()
                            .expect("floors lock")
                            .remove(&owned.partition);
                        return Err(err.into());
                    }
                };
                let mut floors = self.floors.lock().expect("floors lock");
                let floor = floors.entry(published.partition).or_insert(Floor {
                    opened: applied.opened,
                    next_offset: 0,
                });
                if floor.opened == applied.opened {
                    floor.next_offset = floor.next_offset.max(published.offset + 1);
                }
                Ok(response)
            }
        }
    }

    /// The offset the view of `partition` must reach before a command decides: past every
    /// record this instance published there, or, first after the task opened here (`opened`),
    /// the partition's log end.
    async fn floor(&self, partition: i32, opened: u64) -> Result<i64, ApiError> {
        if let Some(floor) = self.floors.lock().expect("floors lock").get(&partition)
            && floor.opened == opened
        {
            return Ok(floor.next_offset);
        }
        let (client, topic) = (Arc::clone(&self.watermarks), self.topic.clone());
        let (_, end) = tokio::task::spawn_blocking(move || {
            shared::kafka::watermarks(client.as_ref(), &topic, partition, VIEW_WAIT)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(|err| {
            ApiError::unavailable(format!(
                "cannot read the end of {}[{partition}]: {err}; retry shortly",
                self.topic
            ))
        })?;
        let mut floors = self.floors.lock().expect("floors lock");
        let floor = floors.entry(partition).or_insert(Floor {
            opened,
            next_offset: end,
        });
        if floor.opened != opened {
            *floor = Floor {
                opened,
                next_offset: end,
            };
        }
        floor.next_offset = floor.next_offset.max(end);
        Ok(floor.next_offset)
    }

    async fn publish(&self, event: SettingsEvent) -> Result<(Response, Published), ApiError> {
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
        let published = Published {
            event,
            partition: delivery.partition,
            offset: delivery.offset,
        };
        let response = (StatusCode::ACCEPTED, Json(published.clone())).into_response();
        Ok((response, published))
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
    let decide = |current: Option<CurrentThreshold>| {
        let event_id = shared::event::new_event_id();
        let at = event_time(current.as_ref());
        Decision::Publish(match current {
            Some(current) if current.threshold == threshold => {
                return Decision::Answer(Json(current).into_response());
            }
            Some(current) => SettingsEvent::ThresholdChanged {
                event_id,
                user_id: user.clone(),
                threshold,
                previous: current.threshold,
                at,
            },
            None => SettingsEvent::ThresholdEnabled {
                event_id,
                user_id: user.clone(),
                threshold,
                at,
            },
        })
    };
    service.command(&user, &uri, decide).await
}

/// A command's event time: now, in milliseconds like record timestamps and the bank's
/// created_at (a transaction inserted right after this request is never judged to predate it);
/// never before the current threshold's, or the view would take the event for a late one and
/// ignore it (another instance's clock may be ahead).
fn event_time(current: Option<&CurrentThreshold>) -> DateTime<Utc> {
    let now = Utc::now().trunc_subsecs(3);
    current.map_or(now, |current| now.max(current.since))
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
    let decide = |current: Option<CurrentThreshold>| match current {
        None => Decision::Answer(StatusCode::NO_CONTENT.into_response()),
        Some(current) => Decision::Publish(SettingsEvent::ThresholdDisabled {
            event_id: shared::event::new_event_id(),
            user_id: user.clone(),
            at: event_time(Some(&current)),
        }),
    };
    service.command(&user, &uri, decide).await
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
