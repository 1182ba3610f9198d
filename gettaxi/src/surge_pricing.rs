//! **Surge pricing** (streams, requirement 2): a multiplier per H3 region
//! ([`geo::REGION_RES`], ~5 km²) from demand and supply in a hopping window, smoothed and capped,
//! published to `surge_pricing` (key: region) when it changes. Rain in the region (the `weather`
//! table) raises demand.
//!
//! ```text
//! user_position, taxi_position (available), ride_requests ─▶ by-region ─▶ [key region: 30 s slices]
//!                                        every 30 s of stream time ─▶ 5-minute window ─▶ surge_pricing
//!                                                                     weather (global table) ─┘
//! ```
//!
//! The model, per region, for the window of [`Model::size_ms`] (5 min) ending at each advance
//! ([`Model::advance_ms`], 30 s):
//!
//! ```text
//! demand     = (riders looking + 2 × ride requests) × (1 + min(rain mm/h, 10) / 10)
//! supply     = distinct available taxis
//! raw        = clamp(1 + 0.5 × (demand / max(supply, 1) − 1), 1.0, 3.0)
//! multiplier = previous + 0.5 × (raw − previous)     (smoothed; published rounded to 0.1)
//! ```
//!
//! Demand equal to supply costs nothing extra; three riders per taxi double the price; five or
//! more triple it (the cap). Heavy rain (10 mm/h) doubles demand. Smoothing halves the distance
//! to the raw value at every advance, so a spike shows within one advance (a ratio of 5: 2.0) and
//! fades over a few after it ends.
//!
//! Hopping windows are computed from **slices** (tumbling 30-s buckets, one store write per
//! record: `<region>/<slice start>/<kind>/<id>`): a window is the union of its ten slices, so
//! distinct riders and taxis are counted once per window, not once per report. When the task's
//! stream time passes an advance, every region of the task is computed — also a region where
//! nothing happened, so a multiplier falls back when its spike ends.

use std::collections::BTreeSet;
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
use utoipa::ToSchema;

use crate::events::{RideRequest, SurgePrice, TaxiPosition, TaxiStatus, UserPosition, Weather};
use crate::geo;
use crate::topics::{RIDE_REQUESTS, SURGE_PRICING, TAXI_POSITION, USER_POSITION, WEATHER};

pub const APPLICATION_ID: &str = "gettaxi-surge";
/// `<region>/<slice start>/<kind>/<id>` → 1.
pub const SLICES: &str = "slices";
/// Region → [`RegionSurge`]; plus [`ADVANCED`], the last advance computed by the task.
pub const REGIONS: &str = "regions";
/// The global table of `weather`: region → [`Weather`].
pub const WEATHER_TABLE: &str = "weather";
const ADVANCED: &[u8] = b"~advanced";

/// The pricing model's parameters (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    pub size_ms: i64,
    pub advance_ms: i64,
    /// How much a ride request weighs against a rider looking.
    pub request_weight: f64,
    /// Rain at or above this doubles demand.
    pub heavy_rain_mm_h: f64,
    /// Multiplier per unit of demand/supply above 1.
    pub sensitivity: f64,
    pub min: f64,
    pub max: f64,
    /// Share of the way to the raw multiplier taken at each advance.
    pub smoothing: f64,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            size_ms: 5 * 60_000,
            advance_ms: 30_000,
            request_weight: 2.0,
            heavy_rain_mm_h: 10.0,
            sensitivity: 0.5,
            min: 1.0,
            max: 3.0,
            smoothing: 0.5,
        }
    }
}

impl Model {
    /// Demand, weighted by rain.
    pub fn demand(&self, riders: usize, requests: usize, rain_mm_h: f64) -> f64 {
        let rain = rain_mm_h.clamp(0.0, self.heavy_rain_mm_h) / self.heavy_rain_mm_h;
        (riders as f64 + self.request_weight * requests as f64) * (1.0 + rain)
    }

    /// The multiplier the window alone asks for.
    pub fn raw(&self, demand: f64, supply: usize) -> f64 {
        let ratio = demand / supply.max(1) as f64;
        (1.0 + self.sensitivity * (ratio - 1.0)).clamp(self.min, self.max)
    }

    /// The next smoothed multiplier.
    pub fn smooth(&self, previous: f64, raw: f64) -> f64 {
        let next = previous + self.smoothing * (raw - previous);
        if (next - raw).abs() < 0.01 { raw } else { next }
    }

    /// What is published: one decimal.
    pub fn published(multiplier: f64) -> f64 {
        (multiplier * 10.0).round() / 10.0
    }
}

/// A region's pricing state (the store's value and the `GET` answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegionSurge {
    pub region: String,
    /// The smoothed multiplier (unrounded).
    pub smoothed: f64,
    /// The multiplier last published to `surge_pricing`.
    pub multiplier: f64,
    pub riders: u32,
    pub requests: u32,
    pub supply: u32,
    pub demand: f64,
    pub rain_mm_h: f64,
    /// The end of the window last computed.
    pub window_end: DateTime<Utc>,
}

/// Records on `…-by-region-repartition` (key: region).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Signal {
    pub kind: SignalKind,
    pub id: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    Rider,
    Taxi,
    Request,
}

impl SignalKind {
    fn tag(self) -> &'static str {
        match self {
            SignalKind::Rider => "rider",
            SignalKind::Taxi => "taxi",
            SignalKind::Request => "request",
        }
    }
}

/// One input record, decoded by topic ([`streams::Processor::decode`]; the derived
/// `Deserialize` only meets the trait's bound).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    User(UserPosition),
    Taxi(TaxiPosition),
    Request(RideRequest),
    Signal(Signal),
}

#[derive(Debug, Clone)]
pub struct Topics {
    pub user_position: String,
    pub taxi_position: String,
    pub ride_requests: String,
    pub surge_pricing: String,
    pub by_region: String,
}

pub fn config(kafka: &Kafka) -> (StreamsConfig, Topics) {
    let user_position = kafka.topic(&USER_POSITION);
    let taxi_position = kafka.topic(&TAXI_POSITION);
    let ride_requests = kafka.topic(&RIDE_REQUESTS);
    let mut config = StreamsConfig::new(
        kafka,
        APPLICATION_ID,
        vec![
            user_position.clone(),
            taxi_position.clone(),
            ride_requests.clone(),
        ],
        &[SLICES, REGIONS],
    );
    config.global_tables = vec![(kafka.topic(&WEATHER), WEATHER_TABLE.to_owned())];
    let by_region = config.repartition("by-region");
    let topics = Topics {
        user_position,
        taxi_position,
        ride_requests,
        surge_pricing: kafka.topic(&SURGE_PRICING),
        by_region,
    };
    (config, topics)
}

pub struct Surge {
    pub topics: Topics,
    pub model: Model,
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl streams::Processor for Surge {
    type Input = Input;

    fn decode(&self, topic: &str, payload: &[u8]) -> Result<Input, String> {
        let t = &self.topics;
        if topic == t.user_position {
            shared::consumer::json(payload).map(Input::User)
        } else if topic == t.taxi_position {
            shared::consumer::json(payload).map(Input::Taxi)
        } else if topic == t.ride_requests {
            shared::consumer::json(payload).map(Input::Request)
        } else if topic == t.by_region {
            shared::consumer::json(payload).map(Input::Signal)
        } else {
            Err(format!("not an input of {APPLICATION_ID}: {topic}"))
        }
    }

    fn key_of<'v>(&self, _topic: &str, input: &'v Input) -> Option<PayloadKey<'v>> {
        match input {
            Input::User(p) => Some(PayloadKey::new("user_id", &p.user_id)),
            Input::Taxi(p) => Some(PayloadKey::new("taxi_id", &p.taxi_id)),
            Input::Request(r) => Some(PayloadKey::new("ride_id", &r.ride_id)),
            Input::Signal(_) => None,
        }
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: Option<&str>,
        input: Input,
    ) -> Result<(), HandlerError> {
        let (region, signal) = match input {
            Input::User(p) => {
                p.validate().map_err(HandlerError::Permanent)?;
                let signal = Signal {
                    kind: SignalKind::Rider,
                    at_ms: p.at.timestamp_millis(),
                    id: p.user_id.clone(),
                };
                (geo::region(p.point()), signal)
            }
            Input::Taxi(p) => {
                p.validate().map_err(HandlerError::Permanent)?;
                if p.status != TaxiStatus::Available {
                    return Ok(());
                }
                let signal = Signal {
                    kind: SignalKind::Taxi,
                    at_ms: p.at.timestamp_millis(),
                    id: p.taxi_id.clone(),
                };
                (geo::region(p.point()), signal)
            }
            Input::Request(r) => {
                r.validate().map_err(HandlerError::Permanent)?;
                let signal = Signal {
                    kind: SignalKind::Request,
                    at_ms: r.at.timestamp_millis(),
                    id: r.ride_id.clone(),
                };
                (geo::region(r.pickup), signal)
            }
            Input::Signal(signal) => {
                let region =
                    key.ok_or_else(|| HandlerError::Permanent("a signal needs a key".into()))?;
                geo::parse_region(region).map_err(HandlerError::Permanent)?;
                return self.on_signal(ctx, region, signal);
            }
        };
        ctx.emit(&self.topics.by_region, &region.to_string(), &signal)?;
        Ok(())
    }
}

fn slice_key(region: &str, slice: i64) -> String {
    format!("{region}/{:020}/", slice.max(0))
}

impl Surge {
    fn on_signal(
        &self,
        ctx: &mut ProcessorContext<'_>,
        region: &str,
        signal: Signal,
    ) -> Result<(), HandlerError> {
        let advance = self.model.advance_ms;
        let advanced: Option<i64> = ctx.get(REGIONS, ADVANCED)?;
        let slice = signal.at_ms.div_euclid(advance) * advance;
        // A slice no window to come will include is late: dropped (and counted).
        if advanced.is_some_and(|a| slice < a - self.model.size_ms + advance) {
            ctx.record_late_drop(1);
        } else {
            let key = format!(
                "{}{}/{}",
                slice_key(region, slice),
                signal.kind.tag(),
                signal.id
            );
            ctx.put(SLICES, key.as_bytes(), &1u8)?;
            if ctx
                .get::<RegionSurge>(REGIONS, region.as_bytes())?
                .is_none()
            {
                ctx.put(REGIONS, region.as_bytes(), &self.fresh(region))?;
            }
        }
        // Every advance stream time has passed since the last one computed: compute each.
        let boundary = ctx.stream_time_ms().div_euclid(advance) * advance;
        let mut next = advanced.map_or(boundary, |a| a + advance);
        // After a long silence, only the last window matters (the ones before are empty).
        next = next.max(boundary - self.model.size_ms);
        while next <= boundary {
            self.advance(ctx, next)?;
            next += advance;
        }
        if advanced.is_none_or(|a| a < boundary) {
            ctx.put(REGIONS, ADVANCED, &boundary)?;
        }
        Ok(())
    }

    fn fresh(&self, region: &str) -> RegionSurge {
        RegionSurge {
            region: region.to_owned(),
            smoothed: self.model.min,
            multiplier: self.model.min,
            riders: 0,
            requests: 0,
            supply: 0,
            demand: 0.0,
            rain_mm_h: 0.0,
            window_end: at(0),
        }
    }

    /// Computes the window `[end − size, end)` of every region of the task.
    fn advance(&self, ctx: &mut ProcessorContext<'_>, end: i64) -> anyhow::Result<()> {
        let start = end - self.model.size_ms;
        let regions: Vec<(Vec<u8>, RegionSurge)> = ctx.range(REGIONS, b"0", Some(b"~"))?;
        for (key, mut surge) in regions {
            let region = surge.region.clone();
            let (mut riders, mut taxis, mut requests) = (BTreeSet::new(), BTreeSet::new(), 0usize);
            let entries: Vec<(Vec<u8>, u8)> = ctx.range(
                SLICES,
                slice_key(&region, start).as_bytes(),
                Some(slice_key(&region, end).as_bytes()),
            )?;
            for (entry, _) in &entries {
                let entry = String::from_utf8_lossy(entry);
                let mut parts = entry.splitn(4, '/');
                let (_, _, kind, id) = (parts.next(), parts.next(), parts.next(), parts.next());
                match (kind, id) {
                    (Some("rider"), Some(id)) => {
                        riders.insert(id.to_owned());
                    }
                    (Some("taxi"), Some(id)) => {
                        taxis.insert(id.to_owned());
                    }
                    (Some("request"), Some(_)) => requests += 1,
                    _ => {}
                }
            }
            // Slices no later window includes.
            let expired: Vec<(Vec<u8>, u8)> = ctx.range(
                SLICES,
                slice_key(&region, 0).as_bytes(),
                Some(slice_key(&region, start + self.model.advance_ms).as_bytes()),
            )?;
            for (old, _) in expired {
                ctx.delete(SLICES, &old)?;
            }
            let rain = ctx
                .global_get::<Weather>(WEATHER_TABLE, region.as_bytes())?
                .map_or(0.0, |w| w.rain_mm_h);
            let demand = self.model.demand(riders.len(), requests, rain);
            let raw = self.model.raw(demand, taxis.len());
            surge.smoothed = self.model.smooth(surge.smoothed, raw);
            surge.riders = riders.len() as u32;
            surge.requests = requests as u32;
            surge.supply = taxis.len() as u32;
            surge.demand = demand;
            surge.rain_mm_h = rain;
            surge.window_end = at(end);
            let published = Model::published(surge.smoothed);
            if published != surge.multiplier {
                surge.multiplier = published;
                let price = SurgePrice {
                    region: region.clone(),
                    multiplier: published,
                    demand,
                    supply: surge.supply,
                    rain_mm_h: rain,
                    window_start: at(start),
                    at: at(end),
                };
                ctx.emit(&self.topics.surge_pricing, &region, &price)?;
            }
            // A quiet region at the base price is forgotten; it comes back with its next record.
            if entries.is_empty() && surge.multiplier == self.model.min {
                ctx.delete(REGIONS, &key)?;
            } else {
                ctx.put(REGIONS, &key, &surge)?;
            }
        }
        Ok(())
    }
}

/// Surge pricing's queries.
pub struct SurgePricing {
    pub streams: Arc<StreamsHandle>,
}

impl SurgePricing {
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/regions/{region}/surge", get(region_surge))
            .route("/v1/surge", get(all_surge))
            .with_state(self)
    }
}

/// A region's multiplier and the window it came from.
#[utoipa::path(
    get,
    path = "/v1/regions/{region}/surge",
    tag = "surge pricing",
    params(("region" = String, Path, description = "H3 cell at resolution 7 (hex), e.g. 872a1072bffffff")),
    responses(
        (status = 200, body = RegionSurge),
        shared::http::Routed,
        (status = 400, description = "Not an H3 cell at resolution 7"),
        (status = 404, description = "Nothing happened there lately: the base price"),
    )
)]
pub async fn region_surge(
    State(service): State<Arc<SurgePricing>>,
    Path(region): Path<String>,
    uri: Uri,
) -> Result<Json<RegionSurge>, QueryError> {
    geo::parse_region(&region).map_err(ApiError::bad_request)?;
    let owned = shared::http::owned(&service.streams, region.as_bytes(), &uri)?;
    match owned.get::<RegionSurge>(REGIONS, region.as_bytes())? {
        Some(surge) => Ok(Json(surge)),
        None => Err(ApiError::not_found(format!(
            "nothing happened in {region} lately: the base price applies"
        ))
        .into()),
    }
}

/// Every region this instance prices (all of them when one instance runs), highest first.
#[utoipa::path(
    get,
    path = "/v1/surge",
    tag = "surge pricing",
    responses((status = 200, body = [RegionSurge]))
)]
pub async fn all_surge(
    State(service): State<Arc<SurgePricing>>,
) -> Result<Json<Vec<RegionSurge>>, ApiError> {
    let mut all: Vec<RegionSurge> = service
        .streams
        .stores
        .prefix::<RegionSurge>(REGIONS, b"8")
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    all.sort_by(|a, b| {
        b.multiplier
            .total_cmp(&a.multiplier)
            .then(a.region.cmp(&b.region))
    });
    Ok(Json(all))
}

/// Surge pricing on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "surge-pricing"
    }
    fn about(&self) -> &'static str {
        "user_position + taxi_position + ride_requests + weather (table) → surge_pricing per H3 region; GET /v1/regions/{region}/surge."
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
        let config = ctx.queryable(config);
        let surge = Surge {
            topics,
            model: resources.surge_model,
        };
        let streams = streams::start(&ctx.kafka, config, surge, ctx.shutdown.clone()).await?;
        let service = Arc::new(SurgePricing {
            streams: Arc::new(streams),
        });
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&service).router())
            .streams(Arc::clone(&service.streams))
            .handle(service))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_prices_demand_against_supply() {
        let model = Model::default();
        // As many riders as taxis: the base price.
        assert_eq!(model.raw(model.demand(10, 0, 0.0), 10), 1.0);
        // Three per taxi: double; five or more: the cap.
        assert_eq!(model.raw(model.demand(30, 0, 0.0), 10), 2.0);
        assert_eq!(model.raw(model.demand(500, 0, 0.0), 10), 3.0);
        // Heavy rain doubles demand; a request weighs two riders.
        assert_eq!(model.demand(10, 0, 10.0), 20.0);
        assert_eq!(model.demand(10, 0, 50.0), 20.0);
        assert_eq!(model.demand(0, 5, 0.0), 10.0);
        // No taxi at all counts as one.
        assert_eq!(model.raw(2.0, 0), 1.5);
    }

    #[test]
    fn smoothing_shows_a_spike_at_once_and_fades_it() {
        let model = Model::default();
        let first = model.smooth(1.0, 3.0);
        assert_eq!(Model::published(first), 2.0);
        let second = model.smooth(first, 3.0);
        assert_eq!(Model::published(second), 2.5);
        let mut m = second;
        let mut advances = 0;
        while Model::published(m) > 1.0 {
            m = model.smooth(m, 1.0);
            advances += 1;
        }
        assert!((3..=6).contains(&advances), "faded in {advances} advances");
    }
}
