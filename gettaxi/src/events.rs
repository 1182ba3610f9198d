//! The records on GetTaxi's topics (JSON), and the rules every service applies to them: the
//! HTTP services check them before publishing, the processors and the sink check them again
//! (anything may be written to a topic) and dead-letter what fails.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use shared::Event;
use utoipa::ToSchema;

use crate::geo::Point;

/// How far in the future an event time may be (clocks of phones drift).
pub const MAX_EVENT_AHEAD: TimeDelta = TimeDelta::seconds(30);
/// How old an event may be when it is reported (a phone that was offline catches up). The
/// position topics keep 6 hours; windows and fares are computed on event time.
pub const MAX_EVENT_AGE: TimeDelta = TimeDelta::hours(1);

/// Ids of riders, taxis and rides: 1–64 characters of `A–Z a–z 0–9 _ -`.
pub fn validate_id(field: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err(format!(
            "{field} must be 1 to 64 characters, not {}",
            id.len()
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{field} {id:?} has {bad:?}: only A-Z, a-z, 0-9, '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// An event time reported now: not more than [`MAX_EVENT_AHEAD`] ahead, nor
/// [`MAX_EVENT_AGE`] old.
pub fn validate_event_time(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    if at > now + MAX_EVENT_AHEAD {
        return Err(format!(
            "at ({}) is more than {} s in the future",
            at.to_rfc3339(),
            MAX_EVENT_AHEAD.num_seconds()
        ));
    }
    if at < now - MAX_EVENT_AGE {
        return Err(format!(
            "at ({}) is more than {} minutes old",
            at.to_rfc3339(),
            MAX_EVENT_AGE.num_minutes()
        ));
    }
    Ok(())
}

/// "Rider `user_id` is at (`lat`, `lon`) at `at`" — on `user_position`, key `user_id`. The user
/// app reports while it is open: a rider looking at the map is demand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserPosition {
    pub event_id: String,
    pub user_id: String,
    pub lat: f64,
    pub lon: f64,
    pub at: DateTime<Utc>,
}

impl Event for UserPosition {
    const TYPE: &'static str = "UserPosition";
    fn event_id(&self) -> String {
        self.event_id.clone()
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
}

impl UserPosition {
    pub fn point(&self) -> Point {
        Point {
            lat: self.lat,
            lon: self.lon,
        }
    }
    pub fn validate(&self) -> Result<(), String> {
        validate_id("user_id", &self.user_id)?;
        self.point().validate()
    }
}

/// What a driver is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaxiStatus {
    /// Free: may be matched.
    Available,
    /// Driving to a rider's pickup (`ride_id` says which).
    EnRoute,
    /// Driving a rider (`ride_id` says which): the positions are the fare's trace.
    OnRide,
    /// Not working.
    OffDuty,
}

/// "Taxi `taxi_id` is at (`lat`, `lon`), `status`, at `at`" — on `taxi_position`, key
/// `taxi_id`. A ride's fare is computed from the positions its taxi reports `on_ride` with its
/// `ride_id`, from pickup to the first report without it (the drop-off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaxiPosition {
    pub event_id: String,
    pub taxi_id: String,
    pub lat: f64,
    pub lon: f64,
    pub status: TaxiStatus,
    /// The ride, when `en_route` or `on_ride` (required then, absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ride_id: Option<String>,
    pub at: DateTime<Utc>,
}

impl Event for TaxiPosition {
    const TYPE: &'static str = "TaxiPosition";
    fn event_id(&self) -> String {
        self.event_id.clone()
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
}

impl TaxiPosition {
    pub fn point(&self) -> Point {
        Point {
            lat: self.lat,
            lon: self.lon,
        }
    }
    pub fn validate(&self) -> Result<(), String> {
        validate_id("taxi_id", &self.taxi_id)?;
        self.point().validate()?;
        match (self.status, &self.ride_id) {
            (TaxiStatus::EnRoute | TaxiStatus::OnRide, None) => {
                Err("status en_route and on_ride need ride_id".into())
            }
            (TaxiStatus::EnRoute | TaxiStatus::OnRide, Some(ride)) => validate_id("ride_id", ride),
            (_, Some(_)) => Err("ride_id is only sent with status en_route or on_ride".into()),
            (_, None) => Ok(()),
        }
    }
    /// The ride this taxi is busy with (driving to its pickup, or with its rider).
    pub fn ride(&self) -> Option<&str> {
        match self.status {
            TaxiStatus::EnRoute | TaxiStatus::OnRide => self.ride_id.as_deref(),
            _ => None,
        }
    }

    /// The ride this position is part of the trace of.
    pub fn trip(&self) -> Option<&str> {
        match self.status {
            TaxiStatus::OnRide => self.ride_id.as_deref(),
            _ => None,
        }
    }
}

/// "Rider `rider_id` asks for a taxi from `pickup` to `dropoff`" — on `ride_requests`, key
/// `ride_id` (the ride service makes the id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RideRequest {
    pub event_id: String,
    pub ride_id: String,
    pub rider_id: String,
    pub pickup: Point,
    pub dropoff: Point,
    pub at: DateTime<Utc>,
}

impl Event for RideRequest {
    const TYPE: &'static str = "RideRequest";
    fn event_id(&self) -> String {
        self.event_id.clone()
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
}

impl RideRequest {
    pub fn validate(&self) -> Result<(), String> {
        validate_id("ride_id", &self.ride_id)?;
        validate_id("rider_id", &self.rider_id)?;
        self.pickup
            .validate()
            .map_err(|err| format!("pickup: {err}"))?;
        self.dropoff
            .validate()
            .map_err(|err| format!("dropoff: {err}"))
    }
}

/// What driver matching decided — on `rides`, key `ride_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RideUpdate {
    pub event_id: String,
    pub ride_id: String,
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
}

/// A ride request's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The nearest available taxi, reserved for this ride until its trip ends.
    Assigned {
        taxi_id: String,
        rider_id: String,
        /// Where the taxi was when it was matched.
        taxi: Point,
        pickup: Point,
        dropoff: Point,
        /// Great-circle distance from the taxi to the pickup.
        distance_m: f64,
        /// Estimated time to the pickup, at [`crate::fare::CITY_SPEED_KMH`] on a road
        /// [`crate::fare::ROAD_FACTOR`] times longer than the straight line.
        eta_s: u32,
    },
    /// No available taxi within the radius (or every one was taken meanwhile).
    NoDriver { rider_id: String, reason: String },
}

impl Event for RideUpdate {
    const TYPE: &'static str = "RideUpdate";
    fn event_id(&self) -> String {
        self.event_id.clone()
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
}

/// What the taxi cost service says about a ride's price — on `ride_fares`, key `ride_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RideFare {
    pub event_id: String,
    pub ride_id: String,
    pub at: DateTime<Utc>,
    pub stage: FareStage,
    /// The surge multiplier locked in by the quote.
    pub multiplier: f64,
    /// Kilometres driven with the rider (the estimate, for a quote).
    pub km: f64,
    /// Minutes with the rider (the estimate, for a quote).
    pub minutes: f64,
    /// The price in cents: `round((base + per km·km + per minute·minutes) × multiplier)`.
    pub amount_cents: i64,
    /// A quote's multiplier is honoured for rides that start before this (quotes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
}

/// Which price it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FareStage {
    /// At request time, from the straight-line distance; locks the surge multiplier.
    Quote,
    /// During the ride, from the positions so far.
    Running,
    /// At the drop-off, from every position of the ride.
    Final,
}

impl Event for RideFare {
    const TYPE: &'static str = "RideFare";
    fn event_id(&self) -> String {
        self.event_id.clone()
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
}

/// The multiplier in force in `region` — on `surge_pricing`, key `region` (an H3 cell at
/// [`crate::geo::REGION_RES`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SurgePrice {
    pub region: String,
    pub multiplier: f64,
    /// Riders looking and ride requests in the window (weighted by rain).
    pub demand: f64,
    /// Distinct available taxis in the window.
    pub supply: u32,
    pub rain_mm_h: f64,
    /// The window it was computed from: `[window_start, at)`.
    pub window_start: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

impl Event for SurgePrice {
    const TYPE: &'static str = "SurgePrice";
    fn event_id(&self) -> String {
        format!("{}@{}", self.region, self.at.timestamp_millis())
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
}

/// "It rains `rain_mm_h` in `region`" — on `weather`, key `region` (compacted: a table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Weather {
    pub event_id: String,
    pub region: String,
    /// Rain in millimetres per hour (0 = dry; ≥ 4 is heavy rain).
    pub rain_mm_h: f64,
    pub at: DateTime<Utc>,
}

impl Event for Weather {
    const TYPE: &'static str = "Weather";
    fn event_id(&self) -> String {
        self.event_id.clone()
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
}

impl Weather {
    pub fn validate(&self) -> Result<(), String> {
        crate::geo::parse_region(&self.region)?;
        if !self.rain_mm_h.is_finite() || !(0.0..=500.0).contains(&self.rain_mm_h) {
            return Err(format!("rain_mm_h {} is outside [0, 500]", self.rain_mm_h));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_plain() {
        assert!(validate_id("taxi_id", "taxi-0042").is_ok());
        assert!(validate_id("taxi_id", "").unwrap_err().contains("1 to 64"));
        assert!(validate_id("taxi_id", &"x".repeat(65)).is_err());
        let err = validate_id("user_id", "a/b").unwrap_err();
        assert!(err.contains("user_id") && err.contains("'/'"), "{err}");
    }

    #[test]
    fn event_times_are_recent_with_a_small_skew() {
        let now = Utc::now();
        assert!(validate_event_time(now, now).is_ok());
        assert!(validate_event_time(now + TimeDelta::seconds(29), now).is_ok());
        assert!(
            validate_event_time(now + TimeDelta::seconds(31), now)
                .unwrap_err()
                .contains("future")
        );
        assert!(
            validate_event_time(now - TimeDelta::minutes(61), now)
                .unwrap_err()
                .contains("old")
        );
    }

    #[test]
    fn a_ride_id_goes_with_on_ride_only() {
        let mut p = TaxiPosition {
            event_id: "e".into(),
            taxi_id: "taxi-1".into(),
            lat: 40.75,
            lon: -73.98,
            status: TaxiStatus::OnRide,
            ride_id: None,
            at: Utc::now(),
        };
        assert!(p.validate().unwrap_err().contains("need ride_id"));
        p.ride_id = Some("r1".into());
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(p.trip(), Some("r1"));
        p.status = TaxiStatus::Available;
        assert!(p.validate().unwrap_err().contains("only sent with"));
        p.ride_id = None;
        assert_eq!(p.trip(), None);
        p.lat = f64::NAN;
        assert!(p.validate().unwrap_err().contains("lat"));
    }
}
