//! **Driver matching** (streams, requirement 1): a ride request gets the nearest *available*
//! taxi, and a taxi never gets two rides — with many concurrent requests, and across a kill -9.
//!
//! Positions are keyed by taxi and requests by ride, so the two meet through repartition
//! topics, in three kinds of task (one streams application, `gettaxi-matching`, five
//! co-partitioned inputs):
//!
//! ```text
//! taxi_position ─▶ [taxi ledger, key taxi] ─ Taxi{available} ─▶ by-area ─▶ [area index, key area]
//! ride_requests ─────────────── Request{attempt 0} ──────────▶ by-area ─┘   │ nearest by H3 rings
//!                 [taxi ledger] ◀── Claim ── by-taxi ◀──────────────────────┘ (or NoDriver)
//!                      │ free? ── yes: Matched ─▶ by-ride ─▶ [ride ledger, key ride] ─▶ rides
//!                      └─ no: Request{attempt + 1, exclude taxi} ─▶ by-area (the next nearest)
//! ```
//!
//! * **Area** (key: the pickup's H3 cell at [`geo::MATCH_RES`], ~250 km²): an index of the
//!   available taxis that could serve a pickup in the area — a taxi is indexed in every area
//!   within the match radius of it ([`geo::match_areas_within`]), so a taxi just across the
//!   border is found. The search walks the index's H3 cells ring by ring ([`index::nearest`]).
//! * **Taxi ledger** (key: taxi): the one writer of "which ride is this taxi on". A claim is
//!   accepted only if the taxi is available and on no ride, so no taxi gets two rides, however
//!   many areas offer it at once; a refused claim sends the request back to its area for the next
//!   nearest taxi (at most [`MAX_ATTEMPTS`]).
//! * **Ride ledger** (key: ride): the one writer of a ride's outcome. The first taxi matched
//!   wins; another (a replayed batch that chose differently after a crash) is released.
//!
//! State is exact under at-least-once: a batch's store writes, outputs and input offsets commit
//! together, and a replayed batch starts from the state of the last commit. Duplicated outputs
//! are idempotent (a second claim of the same ride is re-confirmed; a request attempt the area
//! has handled is dropped). A taxi's ride ends when it reports itself neither `en_route` nor
//! `on_ride` after having reported the ride (the drop-off).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::Kafka;
use shared::consumer::{HandlerError, PayloadKey};
use shared::http::{ApiError, Json, QueryError};
use shared::streams::{self, ProcessorContext, StreamsConfig, StreamsHandle};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::events::{Outcome, RideRequest, RideUpdate, TaxiPosition, TaxiStatus, validate_id};
use crate::fare;
use crate::geo::{self, Point};
use crate::index::{self, Candidate, CellLookup};
use crate::topics::{RIDE_REQUESTS, RIDES, TAXI_POSITION};

pub const APPLICATION_ID: &str = "gettaxi-matching";
/// Taxi ledger: taxi id → [`Ledger`].
pub const TAXIS: &str = "taxis";
/// Area index: `<area>/<index cell>/<taxi>` → [`Candidate`].
pub const INDEX: &str = "area_index";
/// Where a taxi is in an area's index: `<area>/<taxi>` → index cell.
pub const WHERE: &str = "area_where";
/// Request attempts an area has handled: `<request time ms>/<ride>` → attempt.
pub const ATTEMPTS: &str = "area_attempts";
/// Ride ledger: ride id → [`RideOutcome`].
pub const RIDE_LEDGER: &str = "ride_ledger";

/// A taxi that has not reported for this long is not matched.
pub const STALE_MS: i64 = 30_000;
/// A request tries this many taxis (each refused claim: the next nearest) before "no driver".
pub const MAX_ATTEMPTS: u32 = 8;
/// The default match radius.
pub const DEFAULT_RADIUS_M: f64 = 5_000.0;
/// Handled attempts are remembered this long (request time), for de-duplication.
const ATTEMPTS_KEPT_MS: i64 = 3_600_000;

/// What a taxi is doing, as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub point: Point,
    pub status: TaxiStatus,
    pub at_ms: i64,
    /// The ride the taxi is reserved for.
    pub ride: Option<Assignment>,
    /// The areas whose index lists the taxi (empty unless available).
    pub areas: Vec<String>,
}

impl Ledger {
    fn free(&self) -> bool {
        self.status == TaxiStatus::Available && self.ride.is_none()
    }
}

/// A taxi's ride, as its driver app reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Assignment {
    pub ride_id: String,
    pub rider_id: String,
    pub pickup: Point,
    pub dropoff: Point,
    pub assigned_at: DateTime<Utc>,
    /// The driver app has reported the ride (en route or on ride).
    pub started: bool,
}

/// A ride's outcome, as the ride ledger knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RideOutcome {
    Taxi(String),
    NoDriver,
}

/// Records on `…-by-area-repartition` (key: area).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AreaMsg {
    Taxi {
        taxi_id: String,
        point: Point,
        at_ms: i64,
        available: bool,
    },
    Request {
        request: RideRequest,
        attempt: u32,
        exclude: Vec<String>,
    },
}

/// Records on `…-by-taxi-repartition` (key: taxi).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaxiMsg {
    Claim {
        request: RideRequest,
        attempt: u32,
        exclude: Vec<String>,
        distance_m: f64,
    },
    Release {
        ride_id: String,
    },
}

/// Records on `…-by-ride-repartition` (key: ride).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RideMsg {
    Matched {
        request: RideRequest,
        taxi_id: String,
        taxi: Point,
        distance_m: f64,
    },
    NoDriver {
        request: RideRequest,
        reason: String,
    },
}

/// One input record, decoded by topic ([`streams::Processor::decode`]; the derived
/// `Deserialize` only meets the trait's bound).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Taxi(TaxiPosition),
    Request(RideRequest),
    Area(AreaMsg),
    ToTaxi(TaxiMsg),
    ToRide(RideMsg),
}

/// The topics of the application (full names).
#[derive(Debug, Clone)]
pub struct Topics {
    pub taxi_position: String,
    pub ride_requests: String,
    pub rides: String,
    pub by_area: String,
    pub by_taxi: String,
    pub by_ride: String,
}

/// The streams application: its inputs, repartitions and stores.
pub fn config(kafka: &Kafka) -> (StreamsConfig, Topics) {
    let taxi_position = kafka.topic(&TAXI_POSITION);
    let ride_requests = kafka.topic(&RIDE_REQUESTS);
    let mut config = StreamsConfig::new(
        kafka,
        APPLICATION_ID,
        vec![taxi_position.clone(), ride_requests.clone()],
        &[TAXIS, INDEX, WHERE, ATTEMPTS, RIDE_LEDGER],
    );
    let by_area = config.repartition("by-area");
    let by_taxi = config.repartition("by-taxi");
    let by_ride = config.repartition("by-ride");
    let topics = Topics {
        taxi_position,
        ride_requests,
        rides: kafka.topic(&RIDES),
        by_area,
        by_taxi,
        by_ride,
    };
    (config, topics)
}

/// The processor.
pub struct Matcher {
    pub topics: Topics,
    pub radius_m: f64,
}

/// The area index of one task, as the search reads it.
struct AreaLookup<'c, 'a> {
    ctx: &'c ProcessorContext<'a>,
    area: &'c str,
}

impl CellLookup for AreaLookup<'_, '_> {
    fn taxis_in(&mut self, cell: h3o::CellIndex) -> anyhow::Result<Vec<Candidate>> {
        let prefix = format!("{}/{cell}/", self.area);
        Ok(self
            .ctx
            .prefix::<Candidate>(INDEX, prefix.as_bytes())?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }
}

fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    shared::consumer::json(payload)
}

impl streams::Processor for Matcher {
    type Input = Input;

    fn decode(&self, topic: &str, payload: &[u8]) -> Result<Input, String> {
        let t = &self.topics;
        if topic == t.taxi_position {
            decode(payload).map(Input::Taxi)
        } else if topic == t.ride_requests {
            decode(payload).map(Input::Request)
        } else if topic == t.by_area {
            decode(payload).map(Input::Area)
        } else if topic == t.by_taxi {
            decode(payload).map(Input::ToTaxi)
        } else if topic == t.by_ride {
            decode(payload).map(Input::ToRide)
        } else {
            Err(format!("not an input of {APPLICATION_ID}: {topic}"))
        }
    }

    fn key_of<'v>(&self, _topic: &str, value: &'v Input) -> Option<PayloadKey<'v>> {
        match value {
            Input::Taxi(p) => Some(PayloadKey::new("taxi_id", &p.taxi_id)),
            Input::Request(r) => Some(PayloadKey::new("ride_id", &r.ride_id)),
            Input::ToRide(RideMsg::Matched { request, .. } | RideMsg::NoDriver { request, .. }) => {
                Some(PayloadKey::new("ride_id", &request.ride_id))
            }
            Input::Area(_) | Input::ToTaxi(_) => None,
        }
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: Option<&str>,
        input: Input,
    ) -> Result<(), HandlerError> {
        match input {
            Input::Taxi(position) => self.on_position(ctx, position),
            Input::Request(request) => {
                request.validate().map_err(HandlerError::Permanent)?;
                let area = geo::match_area(request.pickup).to_string();
                let message = AreaMsg::Request {
                    request,
                    attempt: 0,
                    exclude: Vec::new(),
                };
                ctx.emit(&self.topics.by_area, &area, &message)?;
                Ok(())
            }
            Input::Area(message) => {
                let area = key
                    .ok_or_else(|| HandlerError::Permanent("an area record needs a key".into()))?;
                self.on_area(ctx, area, message)
            }
            Input::ToTaxi(message) => {
                let taxi =
                    key.ok_or_else(|| HandlerError::Permanent("a taxi record needs a key".into()))?;
                self.on_taxi_message(ctx, taxi, message)
            }
            Input::ToRide(message) => self.on_ride_message(ctx, message),
        }
    }
}

impl Matcher {
    /// Sends a taxi's index entries where they belong: `available` in `areas`, removed from the
    /// other areas it was in.
    fn reindex(
        &self,
        ctx: &mut ProcessorContext<'_>,
        taxi_id: &str,
        ledger: &mut Ledger,
    ) -> anyhow::Result<()> {
        let areas: Vec<String> = if ledger.free() {
            geo::match_areas_within(ledger.point, self.radius_m)
                .map_err(anyhow::Error::msg)?
                .into_iter()
                .map(|a| a.to_string())
                .collect()
        } else {
            Vec::new()
        };
        for area in ledger.areas.iter().filter(|a| !areas.contains(a)) {
            let message = AreaMsg::Taxi {
                taxi_id: taxi_id.to_owned(),
                point: ledger.point,
                at_ms: ledger.at_ms,
                available: false,
            };
            ctx.emit(&self.topics.by_area, area, &message)?;
        }
        for area in &areas {
            let message = AreaMsg::Taxi {
                taxi_id: taxi_id.to_owned(),
                point: ledger.point,
                at_ms: ledger.at_ms,
                available: true,
            };
            ctx.emit(&self.topics.by_area, area, &message)?;
        }
        ledger.areas = areas;
        Ok(())
    }

    fn on_position(
        &self,
        ctx: &mut ProcessorContext<'_>,
        position: TaxiPosition,
    ) -> Result<(), HandlerError> {
        position.validate().map_err(HandlerError::Permanent)?;
        let taxi = position.taxi_id.as_bytes();
        let at_ms = position.at.timestamp_millis();
        let mut ledger: Ledger = match ctx.get::<Ledger>(TAXIS, taxi)? {
            // A report older than what the ledger has (a retry, a reorder) changes nothing.
            Some(ledger) if ledger.at_ms >= at_ms => return Ok(()),
            Some(ledger) => ledger,
            None => Ledger {
                point: position.point(),
                status: position.status,
                at_ms,
                ride: None,
                areas: Vec::new(),
            },
        };
        ledger.point = position.point();
        ledger.status = position.status;
        ledger.at_ms = at_ms;
        if let Some(assignment) = &mut ledger.ride {
            match position.ride() {
                Some(ride) if ride == assignment.ride_id => assignment.started = true,
                // Reports of another ride, or stale ones from before the driver app saw the
                // assignment: the reservation stands.
                Some(_) => {}
                None if assignment.started => ledger.ride = None, // dropped off
                None => {}
            }
        }
        self.reindex(ctx, &position.taxi_id, &mut ledger)?;
        ctx.put(TAXIS, taxi, &ledger)?;
        Ok(())
    }

    fn on_area(
        &self,
        ctx: &mut ProcessorContext<'_>,
        area: &str,
        message: AreaMsg,
    ) -> Result<(), HandlerError> {
        match message {
            AreaMsg::Taxi {
                taxi_id,
                point,
                at_ms,
                available,
            } => {
                let where_key = format!("{area}/{taxi_id}");
                let was = ctx.get::<String>(WHERE, where_key.as_bytes())?;
                let cell = available.then(|| geo::cell(point, geo::INDEX_RES).to_string());
                // A taxi moves tens of metres between reports: mostly within its cell, where
                // its entry is overwritten in place (one store write, one changelog record).
                if let Some(was) = was.as_ref().filter(|was| cell.as_ref() != Some(*was)) {
                    ctx.delete(INDEX, format!("{area}/{was}/{taxi_id}").as_bytes())?;
                }
                match cell {
                    Some(cell) => {
                        let candidate = Candidate {
                            taxi_id: taxi_id.clone(),
                            point,
                            at_ms,
                        };
                        ctx.put(
                            INDEX,
                            format!("{area}/{cell}/{taxi_id}").as_bytes(),
                            &candidate,
                        )?;
                        if was.as_ref() != Some(&cell) {
                            ctx.put(WHERE, where_key.as_bytes(), &cell)?;
                        }
                    }
                    None if was.is_some() => ctx.delete(WHERE, where_key.as_bytes())?,
                    None => {}
                }
                Ok(())
            }
            AreaMsg::Request {
                request,
                attempt,
                exclude,
            } => self.search(ctx, area, request, attempt, exclude),
        }
    }

    /// Removes `taxi_id` from this area's index (it is being claimed).
    fn unindex(ctx: &mut ProcessorContext<'_>, area: &str, taxi_id: &str) -> anyhow::Result<()> {
        let where_key = format!("{area}/{taxi_id}");
        if let Some(cell) = ctx.get::<String>(WHERE, where_key.as_bytes())? {
            ctx.delete(INDEX, format!("{area}/{cell}/{taxi_id}").as_bytes())?;
            ctx.delete(WHERE, where_key.as_bytes())?;
        }
        Ok(())
    }

    fn search(
        &self,
        ctx: &mut ProcessorContext<'_>,
        area: &str,
        request: RideRequest,
        attempt: u32,
        exclude: Vec<String>,
    ) -> Result<(), HandlerError> {
        let at_ms = request.at.timestamp_millis();
        let attempt_key = format!("{:020}/{}", at_ms.max(0), request.ride_id);
        match ctx.get::<u32>(ATTEMPTS, attempt_key.as_bytes())? {
            Some(done) if done >= attempt => return Ok(()), // a duplicate
            _ => ctx.put(ATTEMPTS, attempt_key.as_bytes(), &attempt)?,
        }
        self.forget_old_attempts(ctx)?;
        if attempt >= MAX_ATTEMPTS {
            return self.no_driver(
                ctx,
                request,
                format!("{MAX_ATTEMPTS} nearby taxis were taken meanwhile"),
            );
        }
        let started = std::time::Instant::now();
        let nearest = {
            let mut lookup = AreaLookup { ctx, area };
            index::nearest(&mut lookup, request.pickup, self.radius_m, |c| {
                c.at_ms >= at_ms - STALE_MS && !exclude.contains(&c.taxi_id)
            })?
        };
        metrics()
            .lookup_seconds
            .observe(started.elapsed().as_secs_f64());
        match nearest {
            None => self.no_driver(
                ctx,
                request,
                format!(
                    "no available taxi within {} m",
                    self.radius_m.round() as i64
                ),
            ),
            Some(nearest) => {
                Self::unindex(ctx, area, &nearest.taxi_id)?;
                let claim = TaxiMsg::Claim {
                    request,
                    attempt,
                    exclude,
                    distance_m: nearest.distance_m,
                };
                ctx.emit(&self.topics.by_taxi, &nearest.taxi_id, &claim)?;
                Ok(())
            }
        }
    }

    fn forget_old_attempts(&self, ctx: &mut ProcessorContext<'_>) -> anyhow::Result<()> {
        let horizon = (ctx.stream_time_ms() - ATTEMPTS_KEPT_MS).max(0);
        let to = format!("{horizon:020}");
        for (key, _) in ctx.range::<u32>(ATTEMPTS, b"0", Some(to.as_bytes()))? {
            ctx.delete(ATTEMPTS, &key)?;
        }
        Ok(())
    }

    fn no_driver(
        &self,
        ctx: &mut ProcessorContext<'_>,
        request: RideRequest,
        reason: String,
    ) -> Result<(), HandlerError> {
        let ride = request.ride_id.clone();
        ctx.emit(
            &self.topics.by_ride,
            &ride,
            &RideMsg::NoDriver { request, reason },
        )?;
        Ok(())
    }

    fn on_taxi_message(
        &self,
        ctx: &mut ProcessorContext<'_>,
        taxi_id: &str,
        message: TaxiMsg,
    ) -> Result<(), HandlerError> {
        let mut ledger: Option<Ledger> = ctx.get(TAXIS, taxi_id.as_bytes())?;
        match message {
            TaxiMsg::Claim {
                request,
                attempt,
                mut exclude,
                distance_m,
            } => {
                let Some(ledger) = ledger.as_mut() else {
                    return Err(HandlerError::Permanent(format!(
                        "a claim for {taxi_id}, a taxi that never reported"
                    )));
                };
                let ride = request.ride_id.clone();
                let matched = match &ledger.ride {
                    // Claimed again (a duplicate): confirm again, the ride ledger decides once.
                    Some(a) if a.ride_id == ride => true,
                    Some(_) => false,
                    None if ledger.free() => {
                        ledger.ride = Some(Assignment {
                            ride_id: ride.clone(),
                            rider_id: request.rider_id.clone(),
                            pickup: request.pickup,
                            dropoff: request.dropoff,
                            assigned_at: request.at,
                            started: false,
                        });
                        self.reindex(ctx, taxi_id, ledger)?;
                        ctx.put(TAXIS, taxi_id.as_bytes(), &*ledger)?;
                        true
                    }
                    None => false,
                };
                if matched {
                    let message = RideMsg::Matched {
                        request,
                        taxi_id: taxi_id.to_owned(),
                        taxi: ledger.point,
                        distance_m,
                    };
                    ctx.emit(&self.topics.by_ride, &ride, &message)?;
                } else {
                    metrics().refused_claims.inc();
                    exclude.push(taxi_id.to_owned());
                    let area = geo::match_area(request.pickup).to_string();
                    let message = AreaMsg::Request {
                        request,
                        attempt: attempt + 1,
                        exclude,
                    };
                    ctx.emit(&self.topics.by_area, &area, &message)?;
                }
                Ok(())
            }
            TaxiMsg::Release { ride_id } => {
                if let Some(ledger) = ledger.as_mut()
                    && ledger.ride.as_ref().is_some_and(|a| a.ride_id == ride_id)
                {
                    ledger.ride = None;
                    self.reindex(ctx, taxi_id, ledger)?;
                    ctx.put(TAXIS, taxi_id.as_bytes(), &*ledger)?;
                }
                Ok(())
            }
        }
    }

    fn on_ride_message(
        &self,
        ctx: &mut ProcessorContext<'_>,
        message: RideMsg,
    ) -> Result<(), HandlerError> {
        let (request, outcome) = match &message {
            RideMsg::Matched {
                request, taxi_id, ..
            } => (request, RideOutcome::Taxi(taxi_id.clone())),
            RideMsg::NoDriver { request, .. } => (request, RideOutcome::NoDriver),
        };
        let ride = request.ride_id.as_bytes();
        let decided: Option<RideOutcome> = ctx.get(RIDE_LEDGER, ride)?;
        match (&decided, &message) {
            // The first outcome stands; a second taxi (a replay that chose another) is freed.
            (Some(d), _) if *d != outcome => {
                if let RideMsg::Matched { taxi_id, .. } = &message {
                    let release = TaxiMsg::Release {
                        ride_id: request.ride_id.clone(),
                    };
                    ctx.emit(&self.topics.by_taxi, taxi_id, &release)?;
                }
                return Ok(());
            }
            (None, _) => ctx.put(RIDE_LEDGER, ride, &outcome)?,
            (Some(_), _) => {} // the same outcome again: publish it again (idempotent)
        }
        let update = match message {
            RideMsg::Matched {
                request,
                taxi_id,
                taxi,
                distance_m,
            } => {
                metrics().matched.inc();
                RideUpdate {
                    event_id: format!("{}-assigned", request.ride_id),
                    ride_id: request.ride_id,
                    at: request.at,
                    outcome: Outcome::Assigned {
                        taxi_id,
                        rider_id: request.rider_id,
                        taxi,
                        pickup: request.pickup,
                        dropoff: request.dropoff,
                        distance_m,
                        eta_s: fare::eta_s(distance_m),
                    },
                }
            }
            RideMsg::NoDriver { request, reason } => {
                metrics().no_driver.inc();
                RideUpdate {
                    event_id: format!("{}-no-driver", request.ride_id),
                    ride_id: request.ride_id,
                    at: request.at,
                    outcome: Outcome::NoDriver {
                        rider_id: request.rider_id,
                        reason,
                    },
                }
            }
        };
        ctx.emit(&self.topics.rides, &update.ride_id, &update)?;
        Ok(())
    }
}

/// Matching's own counters (the runtime counts records, dead letters and lag).
pub struct Metrics {
    pub matched: prometheus_client::metrics::counter::Counter,
    pub no_driver: prometheus_client::metrics::counter::Counter,
    pub refused_claims: prometheus_client::metrics::counter::Counter,
    pub lookup_seconds: prometheus_client::metrics::histogram::Histogram,
}

pub fn metrics() -> &'static Metrics {
    static METRICS: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| {
        let metrics = Metrics {
            matched: Default::default(),
            no_driver: Default::default(),
            refused_claims: Default::default(),
            lookup_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.00001, 1.25, 40),
            ),
        };
        shared::metrics::register(
            "gettaxi_rides_matched",
            "Rides given a taxi",
            metrics.matched.clone(),
        );
        shared::metrics::register(
            "gettaxi_rides_no_driver",
            "Ride requests answered 'no driver'",
            metrics.no_driver.clone(),
        );
        shared::metrics::register(
            "gettaxi_claims_refused",
            "Claims the taxi ledger refused (the taxi was taken meanwhile): the request tried the next nearest",
            metrics.refused_claims.clone(),
        );
        shared::metrics::register(
            "gettaxi_nearest_lookup_seconds",
            "The H3 index search of one request",
            metrics.lookup_seconds.clone(),
        );
        metrics
    })
}

/// Driver matching's queries: the driver app's assignment.
pub struct DriverMatching {
    pub streams: Arc<StreamsHandle>,
}

impl DriverMatching {
    pub async fn start(
        kafka: &Kafka,
        config: StreamsConfig,
        topics: Topics,
        radius_m: f64,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let _ = metrics();
        let matcher = Matcher { topics, radius_m };
        let streams = streams::start(kafka, config, matcher, shutdown).await?;
        Ok(DriverMatching {
            streams: Arc::new(streams),
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/taxis/{taxi}/assignment", get(assignment))
            .with_state(self)
    }
}

/// A taxi's current ride, for its driver app.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaxiAssignment {
    pub taxi_id: String,
    pub status: TaxiStatus,
    pub at: DateTime<Utc>,
    /// The ride the taxi is reserved for; absent when it is free.
    pub ride: Option<Assignment>,
}

/// The ride a taxi is assigned to (the driver application polls it).
#[utoipa::path(
    get,
    path = "/v1/taxis/{taxi}/assignment",
    tag = "driver matching",
    params(("taxi" = String, Path)),
    responses(
        (status = 200, body = TaxiAssignment),
        shared::http::Routed,
        (status = 400, description = "Invalid id"),
        (status = 404, description = "The taxi never reported"),
    )
)]
pub async fn assignment(
    State(service): State<Arc<DriverMatching>>,
    Path(taxi): Path<String>,
    uri: Uri,
) -> Result<Json<TaxiAssignment>, QueryError> {
    validate_id("taxi", &taxi).map_err(ApiError::bad_request)?;
    let owned = shared::http::owned(&service.streams, taxi.as_bytes(), &uri)?;
    match owned.get::<Ledger>(TAXIS, taxi.as_bytes())? {
        Some(ledger) => Ok(Json(TaxiAssignment {
            taxi_id: taxi,
            status: ledger.status,
            at: DateTime::from_timestamp_millis(ledger.at_ms).unwrap_or_default(),
            ride: ledger.ride,
        })),
        None => Err(ApiError::not_found(format!("{taxi} never reported a position")).into()),
    }
}

/// Driver matching on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "driver-matching"
    }
    fn about(&self) -> &'static str {
        "taxi_position + ride_requests → rides: the nearest available taxi (H3 index per area); GET /v1/taxis/{taxi}/assignment."
    }
    fn streams(&self, kafka: &Kafka) -> Vec<StreamsConfig> {
        vec![config(kafka).0]
    }
    fn metrics(&self) -> &'static [&'static str] {
        &[
            "gettaxi_nearest_lookup_seconds",
            "gettaxi_rides_matched",
            "gettaxi_rides_no_driver",
            "gettaxi_claims_refused",
        ]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let (config, topics) = config(&ctx.kafka);
        let config = ctx.queryable(config);
        let service = Arc::new(
            DriverMatching::start(
                &ctx.kafka,
                config,
                topics,
                resources.radius_m,
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
