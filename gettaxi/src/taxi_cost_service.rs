//! **Taxi cost service** (streams, requirement 3, live side): the quote at request time, the
//! running fare during the ride, the final fare at the drop-off — to `ride_fares`, key ride id.
//!
//! One streams application (`gettaxi-taxi-cost`):
//!
//! ```text
//! ride_requests ─▶ quote: (base + per km + per minute) × surge in force (global table surge_pricing)
//! taxi_position ─▶ [key taxi: the ride it is on] ─ Point / End ─▶ by-ride ─▶ [key ride: the trace] ─▶ ride_fares
//! ```
//!
//! A ride's positions come from its taxi, keyed by taxi; the fare is per ride. The taxi's task
//! knows which ride the taxi is on (`on_ride` with a `ride_id`) and forwards each such position
//! to the ride's task through the repartition topic `…-by-ride-repartition`; the first report of
//! the taxi without that ride ends the trip (the drop-off): the final fare. The ride's task adds
//! the positions up with [`fare::Trace`] — the same arithmetic `gettaxi fare` applies to the
//! analytics store. The quote locks the surge multiplier for [`fare::QUOTE_VALID`] (10 minutes,
//! `--quote-valid-for`): a ride that starts later — its first position with a rider after the
//! quote's `valid_until` — is charged at the multiplier in force in its pickup region when it
//! starts, and its running and final fares say so. A position of the ride that arrives
//! after the drop-off (a phone that was offline) corrects the final fare, so the last final fare
//! is always the fare of every position of the ride.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::Kafka;
use shared::consumer::{HandlerError, PayloadKey};
use shared::streams::{self, ProcessorContext, StreamsConfig, StreamsHandle};

use crate::events::{FareStage, RideFare, RideRequest, SurgePrice, TaxiPosition};
use crate::fare::{self, Trace};
use crate::geo::{self, Point};
use crate::topics::{RIDE_FARES, RIDE_REQUESTS, SURGE_PRICING, TAXI_POSITION};

pub const APPLICATION_ID: &str = "gettaxi-taxi-cost";
/// Taxi → the ride it is on.
pub const TAXI_RIDES: &str = "taxi_rides";
/// Ride → [`FareState`].
pub const FARES: &str = "fares";
/// The global table of `surge_pricing`: region → [`SurgePrice`].
pub const SURGE: &str = "surge";

/// A ride's pricing state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FareState {
    /// Locked by the quote (or, the quote expired, at the start); 1.0 until the quote is known.
    pub multiplier: Option<f64>,
    /// Until when the quote's multiplier is honoured (ms).
    #[serde(default)]
    pub valid_until_ms: Option<i64>,
    pub trace: Option<Trace>,
    /// The drop-off was seen.
    pub ended: bool,
}

/// Records on `…-by-ride-repartition` (key: ride).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TripMsg {
    Point {
        taxi_id: String,
        point: Point,
        at_ms: i64,
    },
    End {
        taxi_id: String,
        at_ms: i64,
    },
}

/// One input record, decoded by topic ([`streams::Processor::decode`]; the derived
/// `Deserialize` only meets the trait's bound).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Taxi(TaxiPosition),
    Request(RideRequest),
    Trip(TripMsg),
}

/// The topics of the application (full names).
#[derive(Debug, Clone)]
pub struct Topics {
    pub taxi_position: String,
    pub ride_requests: String,
    pub ride_fares: String,
    pub by_ride: String,
}

pub fn config(kafka: &Kafka) -> (StreamsConfig, Topics) {
    let taxi_position = kafka.topic(&TAXI_POSITION);
    let ride_requests = kafka.topic(&RIDE_REQUESTS);
    let mut config = StreamsConfig::new(
        kafka,
        APPLICATION_ID,
        vec![taxi_position.clone(), ride_requests.clone()],
        &[TAXI_RIDES, FARES],
    );
    config.global_tables = vec![(kafka.topic(&SURGE_PRICING), SURGE.to_owned())];
    let by_ride = config.repartition("by-ride");
    let topics = Topics {
        taxi_position,
        ride_requests,
        ride_fares: kafka.topic(&RIDE_FARES),
        by_ride,
    };
    (config, topics)
}

pub struct Pricer {
    pub topics: Topics,
    /// How long a quote's multiplier is honoured.
    pub quote_valid_ms: i64,
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl streams::Processor for Pricer {
    type Input = Input;

    fn decode(&self, topic: &str, payload: &[u8]) -> Result<Input, String> {
        if topic == self.topics.taxi_position {
            shared::consumer::json(payload).map(Input::Taxi)
        } else if topic == self.topics.ride_requests {
            shared::consumer::json(payload).map(Input::Request)
        } else if topic == self.topics.by_ride {
            shared::consumer::json(payload).map(Input::Trip)
        } else {
            Err(format!("not an input of {APPLICATION_ID}: {topic}"))
        }
    }

    fn key_of<'v>(&self, _topic: &str, input: &'v Input) -> Option<PayloadKey<'v>> {
        match input {
            Input::Taxi(p) => Some(PayloadKey::new("taxi_id", &p.taxi_id)),
            Input::Request(r) => Some(PayloadKey::new("ride_id", &r.ride_id)),
            Input::Trip(_) => None,
        }
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: Option<&str>,
        input: Input,
    ) -> Result<(), HandlerError> {
        match input {
            Input::Request(request) => self.quote(ctx, request),
            Input::Taxi(position) => self.forward(ctx, position),
            Input::Trip(message) => {
                let ride =
                    key.ok_or_else(|| HandlerError::Permanent("a trip record needs a key".into()))?;
                self.add(ctx, ride, message)
            }
        }
    }
}

impl Pricer {
    fn quote(
        &self,
        ctx: &mut ProcessorContext<'_>,
        request: RideRequest,
    ) -> Result<(), HandlerError> {
        request.validate().map_err(HandlerError::Permanent)?;
        let ride = request.ride_id.as_bytes();
        let mut state: FareState = ctx.get(FARES, ride)?.unwrap_or_default();
        let multiplier = match state.multiplier {
            Some(locked) => locked, // a duplicate request: the same quote
            None => {
                let region = geo::region(request.pickup).to_string();
                let surge: Option<SurgePrice> = ctx.global_get(SURGE, region.as_bytes())?;
                surge.map_or(1.0, |s| s.multiplier)
            }
        };
        state.multiplier = Some(multiplier);
        let valid_until_ms = *state
            .valid_until_ms
            .get_or_insert(request.at.timestamp_millis() + self.quote_valid_ms);
        ctx.put(FARES, ride, &state)?;
        let (km, minutes, amount_cents) = fare::quote(request.pickup, request.dropoff, multiplier);
        let quote = RideFare {
            event_id: format!("{}-quote", request.ride_id),
            ride_id: request.ride_id.clone(),
            at: request.at,
            stage: FareStage::Quote,
            multiplier,
            km,
            minutes,
            amount_cents,
            valid_until: Some(at(valid_until_ms)),
        };
        ctx.emit(&self.topics.ride_fares, &request.ride_id, &quote)?;
        Ok(())
    }

    /// In the taxi's task: which ride the position belongs to, and whether a trip ended.
    fn forward(
        &self,
        ctx: &mut ProcessorContext<'_>,
        position: TaxiPosition,
    ) -> Result<(), HandlerError> {
        position.validate().map_err(HandlerError::Permanent)?;
        let taxi = position.taxi_id.as_bytes();
        let current: Option<String> = ctx.get(TAXI_RIDES, taxi)?;
        let trip = position.trip();
        let at_ms = position.at.timestamp_millis();
        if let Some(current) = &current
            && Some(current.as_str()) != trip
        {
            let end = TripMsg::End {
                taxi_id: position.taxi_id.clone(),
                at_ms,
            };
            ctx.emit(&self.topics.by_ride, current, &end)?;
            ctx.delete(TAXI_RIDES, taxi)?;
        }
        if let Some(ride) = trip {
            let point = TripMsg::Point {
                taxi_id: position.taxi_id.clone(),
                point: position.point(),
                at_ms,
            };
            ctx.emit(&self.topics.by_ride, ride, &point)?;
            if current.as_deref() != Some(ride) {
                ctx.put(TAXI_RIDES, taxi, &ride)?;
            }
        }
        Ok(())
    }

    /// In the ride's task: the trace, and the fare it makes.
    fn add(
        &self,
        ctx: &mut ProcessorContext<'_>,
        ride: &str,
        message: TripMsg,
    ) -> Result<(), HandlerError> {
        let mut state: FareState = ctx.get(FARES, ride.as_bytes())?.unwrap_or_default();
        let (changed, at_ms) = match message {
            TripMsg::Point { point, at_ms, .. } => match &mut state.trace {
                None => {
                    state.trace = Some(Trace::start(point, at_ms));
                    // The ride starts after its quote expired: the surge in force now.
                    if state.valid_until_ms.is_some_and(|until| at_ms > until) {
                        let region = geo::region(point).to_string();
                        let surge: Option<SurgePrice> = ctx.global_get(SURGE, region.as_bytes())?;
                        state.multiplier = Some(surge.map_or(1.0, |s| s.multiplier));
                    }
                    (true, at_ms)
                }
                Some(trace) => (trace.add(point, at_ms), at_ms),
            },
            TripMsg::End { at_ms, .. } => (!state.ended, at_ms),
        };
        if let TripMsg::End { .. } = message {
            state.ended = true;
        }
        if !changed {
            return Ok(());
        }
        ctx.put(FARES, ride.as_bytes(), &state)?;
        let Some(trace) = &state.trace else {
            return Ok(());
        };
        let multiplier = state.multiplier.unwrap_or(1.0);
        let fare = RideFare {
            event_id: format!("{ride}-{}-{}", trace.points, state.ended),
            ride_id: ride.to_owned(),
            at: at(at_ms),
            stage: if state.ended {
                FareStage::Final
            } else {
                FareStage::Running
            },
            multiplier,
            km: trace.km(),
            minutes: trace.minutes(),
            amount_cents: trace.amount_cents(multiplier),
            valid_until: None,
        };
        ctx.emit(&self.topics.ride_fares, ride, &fare)?;
        Ok(())
    }
}

/// The taxi cost service on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "taxi-cost-service"
    }
    fn about(&self) -> &'static str {
        "ride_requests + taxi_position + surge_pricing (table) → ride_fares: quote, running and final fare."
    }
    fn streams(&self, kafka: &Kafka) -> Vec<StreamsConfig> {
        vec![config(kafka).0]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let (config, topics) = config(&ctx.kafka);
        let config = ctx.state(config);
        let pricer = Pricer {
            topics,
            quote_valid_ms: i64::try_from(resources.quote_valid.as_millis()).unwrap_or(i64::MAX),
        };
        let streams: StreamsHandle =
            streams::start(&ctx.kafka, config, pricer, ctx.shutdown.clone()).await?;
        let streams = std::sync::Arc::new(streams);
        Ok(shared::service::Running::new().streams(streams))
    }
}
