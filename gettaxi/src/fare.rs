//! The tariff, and a ride's trace: the one piece of arithmetic the taxi cost service (live) and
//! `gettaxi fare` (from the analytics store) share, so the two agree to the cent.
//!
//! ```text
//! amount = round((BASE + PER_KM · km + PER_MINUTE · minutes) × multiplier)     (cents)
//! ```
//!
//! * **Quote** (at request time): `km` is the straight line from pickup to drop-off times
//!   [`ROAD_FACTOR`], `minutes` that distance at [`CITY_SPEED_KMH`]; `multiplier` is the surge in
//!   force in the pickup's region. The quote locks the multiplier for the ride.
//! * **Running / final fare**: `km` is the sum of great-circle distances between the taxi's
//!   consecutive `on_ride` positions of the ride, `minutes` the time from the first to the last
//!   of them, `multiplier` the quote's. A position whose event time is not after the previous
//!   one's (a re-sent or reordered report) is skipped, in the order the positions are on the
//!   topic — the order the live service reads them, and the order `(kafka_partition,
//!   kafka_offset)` of the analytics store.

use serde::{Deserialize, Serialize};

use crate::geo::{Point, distance_m};

/// Flag fall, in cents.
pub const BASE_CENTS: f64 = 300.0;
/// Per kilometre, in cents.
pub const PER_KM_CENTS: f64 = 175.0;
/// Per minute, in cents.
pub const PER_MINUTE_CENTS: f64 = 50.0;
/// Roads are this much longer than the straight line (estimates: quotes, ETAs).
pub const ROAD_FACTOR: f64 = 1.3;
/// Average speed in town (estimates: quotes, ETAs).
pub const CITY_SPEED_KMH: f64 = 25.0;
/// How long a quote's surge multiplier is honoured: a ride that starts (its first `on_ride`
/// position) later is charged at the multiplier in force when it starts.
pub const QUOTE_VALID: std::time::Duration = std::time::Duration::from_secs(600);

/// The price in cents.
pub fn amount_cents(km: f64, minutes: f64, multiplier: f64) -> i64 {
    ((BASE_CENTS + PER_KM_CENTS * km + PER_MINUTE_CENTS * minutes) * multiplier).round() as i64
}

/// Estimated road kilometres and minutes for a straight-line distance.
pub fn estimate(straight_m: f64) -> (f64, f64) {
    let km = straight_m / 1000.0 * ROAD_FACTOR;
    (km, km / CITY_SPEED_KMH * 60.0)
}

/// Estimated seconds to drive a straight-line distance.
pub fn eta_s(straight_m: f64) -> u32 {
    (estimate(straight_m).1 * 60.0).round() as u32
}

/// The quote for a ride: `(km, minutes, cents)`.
pub fn quote(pickup: Point, dropoff: Point, multiplier: f64) -> (f64, f64, i64) {
    let (km, minutes) = estimate(distance_m(pickup, dropoff));
    (km, minutes, amount_cents(km, minutes, multiplier))
}

/// A ride's trace so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub first_at_ms: i64,
    pub last_at_ms: i64,
    pub last: Point,
    pub meters: f64,
    pub points: u32,
}

impl Trace {
    pub fn start(point: Point, at_ms: i64) -> Trace {
        Trace {
            first_at_ms: at_ms,
            last_at_ms: at_ms,
            last: point,
            meters: 0.0,
            points: 1,
        }
    }

    /// Adds the next position; `false` (skipped) when it is not after the last one.
    pub fn add(&mut self, point: Point, at_ms: i64) -> bool {
        if at_ms <= self.last_at_ms {
            return false;
        }
        self.meters += distance_m(self.last, point);
        self.last = point;
        self.last_at_ms = at_ms;
        self.points += 1;
        true
    }

    pub fn km(&self) -> f64 {
        self.meters / 1000.0
    }

    pub fn minutes(&self) -> f64 {
        (self.last_at_ms - self.first_at_ms) as f64 / 60_000.0
    }

    pub fn amount_cents(&self, multiplier: f64) -> i64 {
        amount_cents(self.km(), self.minutes(), multiplier)
    }
}

/// The trace of a sequence of positions (in topic order), as [`Trace::add`] builds it.
pub fn trace(positions: impl IntoIterator<Item = (Point, i64)>) -> Option<Trace> {
    let mut trace: Option<Trace> = None;
    for (point, at_ms) in positions {
        match &mut trace {
            None => trace = Some(Trace::start(point, at_ms)),
            Some(t) => {
                t.add(point, at_ms);
            }
        }
    }
    trace
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tariff_in_cents() {
        // 10 km in 20 minutes at 1.5×: (300 + 1750 + 1000) × 1.5 = 4575.
        assert_eq!(amount_cents(10.0, 20.0, 1.5), 4575);
        assert_eq!(amount_cents(0.0, 0.0, 1.0), 300);
    }

    #[test]
    fn a_trace_skips_positions_that_are_not_later() {
        let a = Point {
            lat: 40.75,
            lon: -73.99,
        };
        let b = Point {
            lat: 40.76,
            lon: -73.99,
        };
        let t = trace([(a, 0), (b, 60_000), (a, 60_000), (a, 30_000)]).unwrap();
        assert_eq!(t.points, 2);
        assert!((t.meters - distance_m(a, b)).abs() < 1e-9);
        assert_eq!(t.minutes(), 1.0);
    }
}
