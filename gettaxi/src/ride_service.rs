//! **Ride service**: the rider's side of a ride. `POST /v1/rides` validates the request and
//! publishes it to `ride_requests` (key: a new ride id); the service also materializes what the
//! other services decided about each ride — `rides` (driver matching: the taxi, its distance and
//! ETA, or no driver) and `ride_fares` (taxi cost service: the quote, the running and the final
//! fare) — into one view per ride (a streams application, `gettaxi-rides`, store `rides`, the
//! three topics co-partitioned by ride id). `GET /v1/rides/{id}` reads it; `GET
//! /v1/rides/{id}/events` streams it (server-sent events) until the ride is over.
//!
//! The view is a query side (CQRS): it follows the topics, so right after `POST` it may not know
//! the ride yet (404 for a few milliseconds). A record may arrive before another it follows (a
//! fare before the request): every field is filled in whichever order they come.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};
use shared::consumer::{HandlerError, PayloadKey};
use shared::http::{Accepted, ApiError, Json, QueryError};
use shared::streams::{self, ProcessorContext, Route, StreamsConfig, StreamsHandle};
use shared::{EventProducer, Kafka};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::events::{FareStage, Outcome, RideFare, RideRequest, RideUpdate, validate_id};
use crate::geo::{Point, distance_m};
use crate::topics::{RIDE_FARES, RIDE_REQUESTS, RIDES};

pub const APPLICATION_ID: &str = "gettaxi-rides";
pub const STORE: &str = "rides";

/// The longest ride accepted (straight line, pickup to drop-off).
pub const MAX_RIDE_M: f64 = 200_000.0;
/// How long `GET /v1/rides/{id}/events` streams at most.
const EVENTS_FOR: Duration = Duration::from_secs(3600);

/// Where a ride is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RideStatus {
    /// Waiting for a taxi.
    Requested,
    /// A taxi is on its way.
    Assigned,
    /// No taxi was found.
    NoDriver,
    /// The rider is in the taxi (a running fare exists).
    OnRide,
    /// Dropped off (the final fare exists).
    Completed,
}

/// A price, as the view shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Price {
    pub stage: FareStage,
    pub km: f64,
    pub minutes: f64,
    pub multiplier: f64,
    pub amount_cents: i64,
    pub at: DateTime<Utc>,
    /// A quote's multiplier is honoured for rides that start before this (quotes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
}

impl From<&RideFare> for Price {
    fn from(fare: &RideFare) -> Price {
        Price {
            stage: fare.stage,
            km: fare.km,
            minutes: fare.minutes,
            multiplier: fare.multiplier,
            amount_cents: fare.amount_cents,
            at: fare.at,
            valid_until: fare.valid_until,
        }
    }
}

/// One ride, as the rider sees it (the store's value and the `GET` answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RideView {
    pub ride_id: String,
    pub status: RideStatus,
    pub rider_id: Option<String>,
    pub pickup: Option<Point>,
    pub dropoff: Option<Point>,
    pub requested_at: Option<DateTime<Utc>>,
    pub taxi_id: Option<String>,
    /// Where the taxi was when it was matched.
    pub taxi: Option<Point>,
    /// From the taxi to the pickup, great circle.
    pub distance_m: Option<f64>,
    pub eta_s: Option<u32>,
    /// Why no taxi was found.
    pub no_driver: Option<String>,
    /// The price at request time (locks the surge multiplier).
    pub quote: Option<Price>,
    /// The running fare during the ride, the final fare after it.
    pub fare: Option<Price>,
}

impl RideView {
    fn new(ride_id: &str) -> RideView {
        RideView {
            ride_id: ride_id.to_owned(),
            status: RideStatus::Requested,
            rider_id: None,
            pickup: None,
            dropoff: None,
            requested_at: None,
            taxi_id: None,
            taxi: None,
            distance_m: None,
            eta_s: None,
            no_driver: None,
            quote: None,
            fare: None,
        }
    }

    fn settle_status(&mut self) {
        self.status = match (&self.fare, &self.taxi_id, &self.no_driver) {
            (Some(fare), _, _) if fare.stage == FareStage::Final => RideStatus::Completed,
            (Some(_), _, _) => RideStatus::OnRide,
            (None, Some(_), _) => RideStatus::Assigned,
            (None, None, Some(_)) => RideStatus::NoDriver,
            (None, None, None) => RideStatus::Requested,
        };
    }

    /// Whether nothing more will happen to the ride.
    pub fn is_over(&self) -> bool {
        matches!(self.status, RideStatus::Completed | RideStatus::NoDriver)
    }
}

/// One input record, decoded by topic ([`streams::Processor::decode`]; the derived
/// `Deserialize` only meets the trait's bound).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Request(RideRequest),
    Update(RideUpdate),
    Fare(RideFare),
}

/// Folds requests, outcomes and fares into the view.
pub struct RideViews {
    requests: String,
    rides: String,
    fares: String,
}

impl streams::Processor for RideViews {
    type Input = Input;

    fn decode(&self, topic: &str, payload: &[u8]) -> Result<Input, String> {
        if topic == self.requests {
            shared::consumer::json(payload).map(Input::Request)
        } else if topic == self.rides {
            shared::consumer::json(payload).map(Input::Update)
        } else if topic == self.fares {
            shared::consumer::json(payload).map(Input::Fare)
        } else {
            Err(format!("not an input of {APPLICATION_ID}: {topic}"))
        }
    }

    fn key_of<'v>(&self, _topic: &str, input: &'v Input) -> Option<PayloadKey<'v>> {
        let ride = match input {
            Input::Request(r) => &r.ride_id,
            Input::Update(u) => &u.ride_id,
            Input::Fare(f) => &f.ride_id,
        };
        Some(PayloadKey::new("ride_id", ride))
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        _key: Option<&str>,
        input: Input,
    ) -> Result<(), HandlerError> {
        let ride_id = match &input {
            Input::Request(r) => r.ride_id.clone(),
            Input::Update(u) => u.ride_id.clone(),
            Input::Fare(f) => f.ride_id.clone(),
        };
        validate_id("ride_id", &ride_id).map_err(HandlerError::Permanent)?;
        let mut view: RideView = ctx
            .get(STORE, ride_id.as_bytes())?
            .unwrap_or_else(|| RideView::new(&ride_id));
        match input {
            Input::Request(request) => {
                request.validate().map_err(HandlerError::Permanent)?;
                view.rider_id = Some(request.rider_id);
                view.pickup = Some(request.pickup);
                view.dropoff = Some(request.dropoff);
                view.requested_at = Some(request.at);
            }
            Input::Update(update) => match update.outcome {
                Outcome::Assigned {
                    taxi_id,
                    taxi,
                    distance_m,
                    eta_s,
                    ..
                } => {
                    view.taxi_id = Some(taxi_id);
                    view.taxi = Some(taxi);
                    view.distance_m = Some(distance_m);
                    view.eta_s = Some(eta_s);
                }
                Outcome::NoDriver { reason, .. } => view.no_driver = Some(reason),
            },
            Input::Fare(fare) => match fare.stage {
                FareStage::Quote => view.quote = Some(Price::from(&fare)),
                // A final fare stays final; a running fare replaces an older one.
                _ if view
                    .fare
                    .as_ref()
                    .is_some_and(|f| f.stage == FareStage::Final) => {}
                FareStage::Running if view.fare.as_ref().is_some_and(|f| f.at > fare.at) => {}
                _ => view.fare = Some(Price::from(&fare)),
            },
        }
        view.settle_status();
        ctx.put(STORE, ride_id.as_bytes(), &view)?;
        Ok(())
    }
}

/// The view's streams application.
pub fn config(kafka: &Kafka) -> StreamsConfig {
    StreamsConfig::new(
        kafka,
        APPLICATION_ID,
        vec![
            kafka.topic(&RIDE_REQUESTS),
            kafka.topic(&RIDES),
            kafka.topic(&RIDE_FARES),
        ],
        &[STORE],
    )
}

/// What the rider app sends.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RideRequestBody {
    pub rider_id: String,
    pub pickup: Point,
    pub dropoff: Point,
}

/// The answer to a ride request: where to follow it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RideAccepted {
    pub ride_id: String,
    /// `GET` it for the taxi, the ETA and the quote.
    pub ride: String,
    /// Server-sent events of the ride until it is over.
    pub events: String,
    #[serde(flatten)]
    pub accepted: Accepted,
}

pub struct RideService {
    pub streams: Arc<StreamsHandle>,
    producer: EventProducer,
    topic: String,
    shutdown: CancellationToken,
}

impl RideService {
    pub async fn start(
        kafka: &Kafka,
        config: StreamsConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let views = RideViews {
            requests: kafka.topic(&RIDE_REQUESTS),
            rides: kafka.topic(&RIDES),
            fares: kafka.topic(&RIDE_FARES),
        };
        let streams = streams::start(kafka, config, views, shutdown.clone()).await?;
        Ok(RideService {
            streams: Arc::new(streams),
            producer: EventProducer::new(kafka)?,
            topic: kafka.topic(&RIDE_REQUESTS),
            shutdown,
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/rides", post(request_ride))
            .route("/v1/rides/{ride}", get(get_ride))
            .route("/v1/rides/{ride}/events", get(ride_events))
            .with_state(self)
    }

    pub fn flush(&self) {
        if let Err(err) = self.producer.flush(Duration::from_secs(10)) {
            tracing::warn!(%err, "ride service: flush on shutdown");
        }
    }
}

/// Asks for a taxi. The answer names the ride; the taxi (or "no driver"), the ETA and the quote
/// follow in `GET /v1/rides/{id}` within moments.
#[utoipa::path(
    post,
    path = "/v1/rides",
    tag = "ride service",
    request_body = RideRequestBody,
    responses(
        (status = 202, description = "Published to ride_requests", body = RideAccepted),
        (status = 400, description = "Invalid request (the message says why); nothing published"),
        (status = 503, description = "The broker did not acknowledge the record"),
    )
)]
pub async fn request_ride(
    State(service): State<Arc<RideService>>,
    Json(body): Json<RideRequestBody>,
) -> Result<(StatusCode, Json<RideAccepted>), ApiError> {
    let request = RideRequest {
        event_id: shared::event::new_event_id(),
        ride_id: format!("ride-{}", uuid::Uuid::now_v7().simple()),
        rider_id: body.rider_id,
        pickup: body.pickup,
        dropoff: body.dropoff,
        at: Utc::now(),
    };
    request.validate().map_err(ApiError::bad_request)?;
    let straight = distance_m(request.pickup, request.dropoff);
    if straight > MAX_RIDE_M {
        return Err(ApiError::bad_request(format!(
            "pickup and dropoff are {:.0} km apart: at most {:.0} km",
            straight / 1000.0,
            MAX_RIDE_M / 1000.0
        )));
    }
    let (status, Json(accepted)) = Accepted::publish(
        &service.producer,
        &service.topic,
        &request.ride_id,
        &request,
    )
    .await?;
    Ok((
        status,
        Json(RideAccepted {
            ride: format!("/v1/rides/{}", request.ride_id),
            events: format!("/v1/rides/{}/events", request.ride_id),
            ride_id: request.ride_id,
            accepted,
        }),
    ))
}

/// A ride: its taxi, distance and ETA, quote and fare.
#[utoipa::path(
    get,
    path = "/v1/rides/{ride}",
    tag = "ride service",
    params(("ride" = String, Path)),
    responses(
        (status = 200, body = RideView),
        shared::http::Routed,
        (status = 400, description = "Invalid id"),
        (status = 404, description = "No such ride (yet: the view follows ride_requests)"),
    )
)]
pub async fn get_ride(
    State(service): State<Arc<RideService>>,
    Path(ride): Path<String>,
    uri: Uri,
) -> Result<Json<RideView>, QueryError> {
    validate_id("ride", &ride).map_err(ApiError::bad_request)?;
    let owned = shared::http::owned(&service.streams, ride.as_bytes(), &uri)?;
    match owned.get::<RideView>(STORE, ride.as_bytes())? {
        Some(view) => Ok(Json(view)),
        None => Err(ApiError::not_found(format!("no ride {ride}")).into()),
    }
}

/// The ride as server-sent events (`event: ride`, the view as JSON) on every change, until it is
/// completed or found no driver (then the stream ends), for at most an hour.
#[utoipa::path(
    get,
    path = "/v1/rides/{ride}/events",
    tag = "ride service",
    params(("ride" = String, Path)),
    responses(
        (status = 200, description = "text/event-stream of RideView", content_type = "text/event-stream"),
        shared::http::Routed,
        (status = 400, description = "Invalid id"),
    )
)]
pub async fn ride_events(
    State(service): State<Arc<RideService>>,
    Path(ride): Path<String>,
    uri: Uri,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, QueryError> {
    validate_id("ride", &ride).map_err(ApiError::bad_request)?;
    shared::http::owned(&service.streams, ride.as_bytes(), &uri)?;
    let started = tokio::time::Instant::now();
    let stream = futures::stream::unfold(
        (service, ride, None::<RideView>, false),
        move |(service, ride, last, done)| async move {
            if done {
                return None;
            }
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = service.shutdown.cancelled() => return None,
                }
                if started.elapsed() > EVENTS_FOR
                    || service.streams.route(ride.as_bytes()) != Route::Local
                {
                    return None; // moved to another instance: the client reconnects there
                }
                let partition = service.streams.partition_of(ride.as_bytes());
                let view: Option<RideView> = service
                    .streams
                    .stores
                    .get_in(partition, STORE, ride.as_bytes())
                    .ok()
                    .flatten();
                if let Some(view) = view
                    && last.as_ref() != Some(&view)
                {
                    let over = view.is_over();
                    let event = SseEvent::default()
                        .event("ride")
                        .json_data(&view)
                        .unwrap_or_else(|_| SseEvent::default().comment("unserializable"));
                    return Some((Ok(event), (service, ride, Some(view), over)));
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The ride service on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "ride-service"
    }
    fn about(&self) -> &'static str {
        "POST /v1/rides → ride_requests; ride_requests + rides + ride_fares → the ride view; GET /v1/rides/{ride} (and /events)."
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
        let service = Arc::new(RideService::start(&ctx.kafka, config, ctx.shutdown.clone()).await?);
        let flushed = Arc::clone(&service);
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&service).router())
            .streams(Arc::clone(&service.streams))
            .handle(service)
            .on_stop(async move {
                flushed.flush();
                Ok(())
            }))
    }
}
