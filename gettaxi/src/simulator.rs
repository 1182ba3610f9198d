//! **Simulator**: GetTaxi's riders and drivers in Manhattan, over the HTTP API like the real
//! apps — taxis cruise, take the rides driver matching gives them, drive to the pickup and on to
//! the drop-off; riders look at the app near the busy places of the hour and ask for rides; a
//! weather feed makes it rain over one region now and then.
//!
//! **The city.** Every point stays in the bounding box lat 40.700 – 40.880, lon −74.020 –
//! −73.910 ([`SOUTH`], [`NORTH`], [`WEST`], [`EAST`]). Points the simulator picks (starting
//! positions, cruising targets, riders, pickups, drop-offs) are on land ([`on_land`]): inside
//! Manhattan's shore simplified to a polygon of 26 vertices ([`MANHATTAN`], at most a few hundred
//! metres off the real shore), or in a box of the South Bronx around Yankee Stadium
//! ([`STADIUM_AREA`], across the Harlem River). Taxis drive straight lines between such points
//! (the island is nearly convex; a line from the Bronx box crosses the Harlem River as a bridge
//! would), so what they report in between stays in the bounding box but may clip a pier.
//!
//! **Time.** A compressed clock ([`Clock`]): one city day is [`SimulatorOptions::day`] of wall
//! time (10 minutes by default), starting at [`SimulatorOptions::start_hour`] (7:00, the morning
//! rush). The [`SCHEDULE`] says, hour by hour, which share of the riders look at the app and near
//! which [`Hotspot`]s, and where rides go: Upper East Side → Midtown in the morning, the
//! Financial District and Times Square by day, home in the evening, an evening game at Yankee
//! Stadium, Times Square and the Village at night. Every [`RAIN_EVERY`] a rain episode of
//! [`RAIN_FOR`] falls on one region ([`rain_at`], `PUT /v1/regions/{region}/weather`), then it
//! is dry again — demand there doubles, surge follows.
//!
//! **Taxis** drive at [`fare::CITY_SPEED_KMH`] × [`SimulatorOptions::speed`] (6 by default: a
//! 2 km ride takes about a minute) and report every [`SimulatorOptions::interval`]: `available`
//! while cruising (polling `GET /v1/taxis/{taxi}/assignment`), `en_route` with the ride to the
//! pickup, `on_ride` with the ride to the drop-off (the fare's trace, its last point at the
//! drop-off), then `available` without a ride (the drop-off: the final fare). Now and then a
//! driver takes a break (`off_duty`). **Riders** who are looking report where they are every
//! [`RIDER_EVERY`]; ride requests arrive as a Poisson process at the knob's rate, from a rider
//! looking, to a drop-off 1–6 km away ([`dropoff`]); each request's rider polls `GET
//! /v1/rides/{id}` until a taxi is assigned or there is none.
//!
//! Everything runs in a few tasks with ticking loops (the taxis in [`SHARDS`] of them, the
//! requests' polls bounded by [`MAX_POLLING`]) on one `reqwest::Client`, and stops as soon as
//! `stop` is cancelled. HTTP errors are counted ([`SimulatorStats`]); `503` (starting up,
//! rebalancing) is retried quietly. Given the seed, every choice is the same from run to run
//! (what the services answer, and so which taxi gets which ride, is not).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::driver_matching::TaxiAssignment;
use crate::events::TaxiStatus;
use crate::fare;
use crate::geo::{self, Point, distance_m};
use crate::ride_service::{RideAccepted, RideRequestBody, RideStatus, RideView};
use crate::taxi_position_service::TaxiPositionReport;
use crate::user_position_service::UserPositionReport;
use crate::weather_service::WeatherReport;

/// The bounding box of the simulation (degrees).
pub const SOUTH: f64 = 40.700;
pub const NORTH: f64 = 40.880;
pub const WEST: f64 = -74.020;
pub const EAST: f64 = -73.910;

/// Manhattan's shore, simplified: (lat, lon) clockwise from the Battery, up the Hudson, down the
/// Harlem and East Rivers.
pub const MANHATTAN: &[(f64, f64)] = &[
    (40.7005, -74.0145), // the Battery
    (40.7090, -74.0175), // Battery Park City
    (40.7200, -74.0130), // Tribeca
    (40.7400, -74.0105), // West Village
    (40.7550, -74.0060), // Hudson Yards
    (40.7720, -73.9940), // Riverside South
    (40.7900, -73.9810), // Riverside Park, W 86th St
    (40.8050, -73.9720), // W 110th St
    (40.8250, -73.9570), // W 145th St
    (40.8517, -73.9535), // George Washington Bridge
    (40.8700, -73.9310), // Inwood Hill Park
    (40.8770, -73.9225), // Spuyten Duyvil
    (40.8720, -73.9110), // Broadway Bridge
    (40.8550, -73.9210), // Harlem River, Dyckman St
    (40.8350, -73.9330), // Harlem River, W 155th St
    (40.8150, -73.9340), // Harlem River, 145th St Bridge
    (40.8000, -73.9290), // E 125th St
    (40.7850, -73.9410), // E 100th St
    (40.7720, -73.9470), // Carl Schurz Park
    (40.7600, -73.9570), // Queensboro Bridge
    (40.7480, -73.9680), // United Nations
    (40.7340, -73.9720), // Stuyvesant Cove
    (40.7200, -73.9730), // East River Park
    (40.7100, -73.9790), // Corlears Hook
    (40.7070, -73.9990), // Brooklyn Bridge
    (40.7030, -74.0080), // South Street, Whitehall
];

/// The South Bronx around Yankee Stadium: (south, north, west, east).
pub const STADIUM_AREA: (f64, f64, f64, f64) = (40.820, 40.838, -73.930, -73.915);

/// Whether `p` is in the bounding box.
pub fn in_box(p: Point) -> bool {
    (SOUTH..=NORTH).contains(&p.lat) && (WEST..=EAST).contains(&p.lon)
}

/// Whether `p` is on land: in Manhattan or in the stadium's part of the Bronx.
pub fn on_land(p: Point) -> bool {
    let (s, n, w, e) = STADIUM_AREA;
    in_box(p)
        && (in_polygon(p, MANHATTAN) || ((s..=n).contains(&p.lat) && (w..=e).contains(&p.lon)))
}

/// Even-odd ray casting on (lat, lon) as planar coordinates (fine at city scale).
fn in_polygon(p: Point, polygon: &[(f64, f64)]) -> bool {
    let mut inside = false;
    let mut j = polygon.len() - 1;
    for i in 0..polygon.len() {
        let (yi, xi) = polygon[i];
        let (yj, xj) = polygon[j];
        if (yi > p.lat) != (yj > p.lat) && p.lon < (xj - xi) * (p.lat - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

const METRES_PER_DEGREE: f64 = 111_320.0;

/// `p` moved `north_m` metres north and `east_m` metres east (flat Earth: city scale).
fn offset(p: Point, north_m: f64, east_m: f64) -> Point {
    Point {
        lat: p.lat + north_m / METRES_PER_DEGREE,
        lon: p.lon + east_m / (METRES_PER_DEGREE * p.lat.to_radians().cos()),
    }
}

/// `p` moved `metres` towards `bearing_deg` (clockwise from north; flat Earth: city scale).
fn toward(p: Point, bearing_deg: f64, metres: f64) -> Point {
    let b = bearing_deg.to_radians();
    offset(p, metres * b.cos(), metres * b.sin())
}

/// Two independent standard normal numbers (Box–Muller).
fn gaussian_pair(rng: &mut StdRng) -> (f64, f64) {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    let r = (-2.0 * u1.ln()).sqrt();
    let theta = std::f64::consts::TAU * u2;
    (r * theta.cos(), r * theta.sin())
}

/// A point on land about `sigma_m` around `centre` (normal in both directions); `centre` itself
/// when none of a few draws is on land.
pub fn near(rng: &mut StdRng, centre: Point, sigma_m: f64) -> Point {
    for _ in 0..32 {
        let (dn, de) = gaussian_pair(rng);
        let p = offset(centre, dn * sigma_m, de * sigma_m);
        if on_land(p) {
            return p;
        }
    }
    centre
}

/// A point on land anywhere in the city (uniform in the box, rejected off land).
pub fn anywhere(rng: &mut StdRng) -> Point {
    for _ in 0..1000 {
        let p = Point {
            lat: rng.random_range(SOUTH..NORTH),
            lon: rng.random_range(WEST..EAST),
        };
        if on_land(p) {
            return p;
        }
    }
    Hotspot::Midtown.point()
}

/// The point `metres` along the straight line from `from` to `to`, and whether that is `to`.
pub fn step_towards(from: Point, to: Point, metres: f64) -> (Point, bool) {
    let d = distance_m(from, to);
    if d <= metres.max(0.0) {
        return (to, true);
    }
    let f = metres.max(0.0) / d;
    (
        Point {
            lat: from.lat + f * (to.lat - from.lat),
            lon: from.lon + f * (to.lon - from.lon),
        },
        false,
    )
}

/// The places where riders gather (the [`SCHEDULE`] says when), and a few more that name the
/// regions ([`region_label`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hotspot {
    Midtown,
    TimesSquare,
    FinancialDistrict,
    UpperEastSide,
    UpperWestSide,
    Harlem,
    GreenwichVillage,
    YankeeStadium,
    WashingtonHeights,
    Inwood,
    Chelsea,
    LowerEastSide,
}

impl Hotspot {
    pub const ALL: [Hotspot; 12] = [
        Hotspot::Midtown,
        Hotspot::TimesSquare,
        Hotspot::FinancialDistrict,
        Hotspot::UpperEastSide,
        Hotspot::UpperWestSide,
        Hotspot::Harlem,
        Hotspot::GreenwichVillage,
        Hotspot::YankeeStadium,
        Hotspot::WashingtonHeights,
        Hotspot::Inwood,
        Hotspot::Chelsea,
        Hotspot::LowerEastSide,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Hotspot::Midtown => "Midtown",
            Hotspot::TimesSquare => "Times Square",
            Hotspot::FinancialDistrict => "Financial District",
            Hotspot::UpperEastSide => "Upper East Side",
            Hotspot::UpperWestSide => "Upper West Side",
            Hotspot::Harlem => "Harlem",
            Hotspot::GreenwichVillage => "Greenwich Village",
            Hotspot::YankeeStadium => "Yankee Stadium",
            Hotspot::WashingtonHeights => "Washington Heights",
            Hotspot::Inwood => "Inwood",
            Hotspot::Chelsea => "Chelsea",
            Hotspot::LowerEastSide => "Lower East Side",
        }
    }

    pub fn point(self) -> Point {
        let (lat, lon) = match self {
            Hotspot::Midtown => (40.7527, -73.9772), // Grand Central
            Hotspot::TimesSquare => (40.7580, -73.9855),
            Hotspot::FinancialDistrict => (40.7074, -74.0104), // Wall Street
            Hotspot::UpperEastSide => (40.7736, -73.9566),
            Hotspot::UpperWestSide => (40.7870, -73.9754),
            Hotspot::Harlem => (40.8116, -73.9465),
            Hotspot::GreenwichVillage => (40.7336, -74.0027),
            Hotspot::YankeeStadium => (40.8296, -73.9262),
            Hotspot::WashingtonHeights => (40.8417, -73.9394),
            Hotspot::Inwood => (40.8677, -73.9212),
            Hotspot::Chelsea => (40.7465, -74.0014),
            Hotspot::LowerEastSide => (40.7150, -73.9843),
        };
        Point { lat, lon }
    }

    /// Its surge-pricing region (an H3 cell at [`geo::REGION_RES`], hex).
    pub fn region(self) -> String {
        geo::region(self.point()).to_string()
    }
}

/// The hotspots whose region is `region` ("Midtown / Times Square" when both are in it).
pub fn region_name(region: &str) -> Option<String> {
    let names: Vec<&str> = Hotspot::ALL
        .iter()
        .filter(|h| h.region() == region)
        .map(|h| h.name())
        .collect();
    (!names.is_empty()).then(|| names.join(" / "))
}

/// A region for people: the hotspots in it, else "near" the nearest one.
pub fn region_label(region: &str) -> String {
    if let Some(name) = region_name(region) {
        return name;
    }
    let Ok(cell) = geo::parse_region(region) else {
        return region.to_owned();
    };
    let centre = h3o::LatLng::from(cell);
    let centre = Point {
        lat: centre.lat(),
        lon: centre.lng(),
    };
    let nearest = Hotspot::ALL
        .iter()
        .min_by(|a, b| distance_m(centre, a.point()).total_cmp(&distance_m(centre, b.point())))
        .unwrap_or(&Hotspot::Midtown);
    format!("near {}", nearest.name())
}

/// A part of the city's day.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub name: &'static str,
    /// It starts at this hour (and ends where the next starts).
    pub from_hour: f64,
    /// The share of the riders looking at the app.
    pub looking: f64,
    /// Where riders look and rides start, weighted.
    pub pickups: &'static [(Hotspot, f64)],
    /// Where rides go, weighted (when 1–6 km from the pickup).
    pub dropoffs: &'static [(Hotspot, f64)],
}

use Hotspot::{
    FinancialDistrict, GreenwichVillage, Harlem, Midtown, TimesSquare, UpperEastSide,
    UpperWestSide, YankeeStadium,
};

/// The city's day, in order of [`Phase::from_hour`], from 0:00.
pub const SCHEDULE: &[Phase] = &[
    Phase {
        name: "night",
        from_hour: 0.0,
        looking: 0.15,
        pickups: &[(TimesSquare, 0.4), (GreenwichVillage, 0.4), (Midtown, 0.2)],
        dropoffs: &[
            (UpperEastSide, 0.3),
            (UpperWestSide, 0.3),
            (Harlem, 0.2),
            (GreenwichVillage, 0.2),
        ],
    },
    Phase {
        name: "morning rush",
        from_hour: 6.0,
        looking: 0.6,
        pickups: &[(UpperEastSide, 0.65), (UpperWestSide, 0.2), (Harlem, 0.15)],
        dropoffs: &[(Midtown, 0.7), (TimesSquare, 0.3)],
    },
    Phase {
        name: "daytime",
        from_hour: 10.0,
        looking: 0.35,
        pickups: &[
            (Midtown, 0.35),
            (FinancialDistrict, 0.35),
            (TimesSquare, 0.3),
        ],
        dropoffs: &[
            (Midtown, 0.3),
            (FinancialDistrict, 0.2),
            (GreenwichVillage, 0.2),
            (TimesSquare, 0.3),
        ],
    },
    Phase {
        name: "evening rush",
        from_hour: 16.0,
        looking: 0.55,
        pickups: &[(Midtown, 0.5), (FinancialDistrict, 0.3), (TimesSquare, 0.2)],
        dropoffs: &[
            (UpperEastSide, 0.5),
            (UpperWestSide, 0.3),
            (GreenwichVillage, 0.2),
        ],
    },
    Phase {
        name: "game night at Yankee Stadium",
        from_hour: 19.0,
        looking: 0.5,
        pickups: &[(YankeeStadium, 0.6), (TimesSquare, 0.4)],
        dropoffs: &[(Harlem, 0.4), (UpperWestSide, 0.3), (UpperEastSide, 0.3)],
    },
    Phase {
        name: "night",
        from_hour: 23.0,
        looking: 0.15,
        pickups: &[(TimesSquare, 0.4), (GreenwichVillage, 0.4), (Midtown, 0.2)],
        dropoffs: &[
            (UpperEastSide, 0.3),
            (UpperWestSide, 0.3),
            (Harlem, 0.2),
            (GreenwichVillage, 0.2),
        ],
    },
];

/// The phase at `hour` (in [0, 24)) and its index in [`SCHEDULE`].
pub fn phase_at(hour: f64) -> (usize, &'static Phase) {
    let i = SCHEDULE
        .iter()
        .rposition(|p| p.from_hour <= hour)
        .unwrap_or(0);
    (i, &SCHEDULE[i])
}

/// One of `weights`, drawn by weight.
fn pick(rng: &mut StdRng, weights: &[(Hotspot, f64)]) -> Hotspot {
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let mut target = rng.random_range(0.0..total);
    for (hotspot, weight) in weights {
        target -= weight;
        if target < 0.0 {
            return *hotspot;
        }
    }
    weights[weights.len() - 1].0
}

/// The compressed clock: a city day of `day` wall time, starting at `start_hour`.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub started: Instant,
    pub day: Duration,
    pub start_hour: f64,
}

impl Clock {
    /// Hours since the city's midnight before the start.
    pub fn hours(&self, elapsed: Duration) -> f64 {
        self.start_hour + 24.0 * elapsed.as_secs_f64() / self.day.as_secs_f64().max(1e-3)
    }

    /// The hour of the day, in [0, 24).
    pub fn hour(&self, elapsed: Duration) -> f64 {
        self.hours(elapsed).rem_euclid(24.0)
    }

    /// A number that changes when the phase does (day × phases + phase): riders move then.
    pub fn period(&self, elapsed: Duration) -> u64 {
        let hours = self.hours(elapsed);
        let day = (hours / 24.0).floor() as u64;
        day * SCHEDULE.len() as u64 + phase_at(hours.rem_euclid(24.0)).0 as u64
    }

    pub fn now(&self) -> (Duration, f64) {
        let elapsed = self.started.elapsed();
        (elapsed, self.hour(elapsed))
    }
}

/// How often a rain episode starts (wall time)…
pub const RAIN_EVERY: Duration = Duration::from_secs(180);
/// …how long after the start of each period…
pub const RAIN_AFTER: Duration = Duration::from_secs(30);
/// …for how long…
pub const RAIN_FOR: Duration = Duration::from_secs(75);
/// …how hard (10 mm/h and more double the demand).
pub const RAIN_MM_H: f64 = 12.0;
/// Where it rains `elapsed` after the start, if anywhere. Episode `k` falls on pickup hotspot
/// `k + 1` (modulo their number) of the phase at the episode's start: where riders are, but first
/// not the busiest place, whose surge is likely at the cap already.
pub fn rain_at(clock: &Clock, elapsed: Duration) -> Option<Hotspot> {
    let every = RAIN_EVERY.as_millis();
    let (episode, into) = (elapsed.as_millis() / every, elapsed.as_millis() % every);
    if !(RAIN_AFTER.as_millis()..(RAIN_AFTER + RAIN_FOR).as_millis()).contains(&into) {
        return None;
    }
    let start = Duration::from_millis((episode * every) as u64) + RAIN_AFTER;
    let pickups = phase_at(clock.hour(start)).1.pickups;
    Some(pickups[(episode as usize + 1) % pickups.len()].0)
}

/// A drop-off on land 1–6 km from `pickup`: near one of the phase's destinations when one is
/// that far, else in a random direction.
pub fn dropoff(rng: &mut StdRng, pickup: Point, phase: &Phase) -> Point {
    let fits = |p: Point| on_land(p) && (MIN_RIDE_M..=MAX_RIDE_M).contains(&distance_m(pickup, p));
    for _ in 0..10 {
        let hotspot = pick(rng, phase.dropoffs);
        let p = near(rng, hotspot.point(), 500.0);
        if fits(p) {
            return p;
        }
    }
    for _ in 0..200 {
        let bearing = rng.random_range(0.0..360.0);
        let d = rng.random_range(MIN_RIDE_M..MAX_RIDE_M);
        let p = toward(pickup, bearing, d);
        if fits(p) {
            return p;
        }
    }
    // A pickup this far from everything does not happen on land; keep the promise anyway.
    Hotspot::ALL
        .iter()
        .map(|h| h.point())
        .find(|p| fits(*p))
        .unwrap_or(Hotspot::Midtown.point())
}

/// The shortest and longest ride asked for (straight line).
pub const MIN_RIDE_M: f64 = 1_000.0;
pub const MAX_RIDE_M: f64 = 6_000.0;

/// How often a rider who looks at the app reports.
pub const RIDER_EVERY: Duration = Duration::from_secs(5);
/// Tasks the taxis are spread over.
pub const SHARDS: usize = 8;
/// Ride requests in flight at most (posted, their rider polling for a taxi).
pub const MAX_POLLING: usize = 64;
/// How long a rider waits for "a taxi" or "no driver" before giving up.
const POLL_FOR: Duration = Duration::from_secs(60);
/// A cruising driver takes a break with this probability at each report…
const BREAK_CHANCE: f64 = 0.002;
/// …for this long (wall time).
const BREAK_S: std::ops::Range<f64> = 30.0..90.0;
/// Cruising drivers head for a busy place this often (else anywhere).
const TO_HOTSPOT: f64 = 0.3;

#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// The GetTaxi API (`gettaxi all` or a load balancer in front of the services).
    pub url: String,
    pub taxis: usize,
    pub riders: usize,
    /// How often a taxi reports.
    pub interval: Duration,
    /// How many times faster than real driving taxis move.
    pub speed: f64,
    pub seed: u64,
    /// Ride requests per minute, read as it goes (`casestudies up`'s knob); when `None`,
    /// [`SimulatorOptions::requests_per_minute`].
    pub rate: Option<shared::live::Knob>,
    pub requests_per_minute: f64,
    /// A city day in wall time.
    pub day: Duration,
    /// The city's hour at the start.
    pub start_hour: f64,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            url: "http://127.0.0.1:8080".into(),
            taxis: 120,
            riders: 300,
            interval: Duration::from_secs(4),
            speed: 6.0,
            seed: 7,
            rate: None,
            requests_per_minute: 30.0,
            day: Duration::from_secs(600),
            start_hour: 7.0,
        }
    }
}

impl SimulatorOptions {
    fn requests_per_minute(&self) -> f64 {
        self.rate
            .as_ref()
            .map_or(self.requests_per_minute, |k| k.get())
    }
}

/// What the simulation looks like now.
#[derive(Debug, Clone, Default)]
pub struct Scene {
    /// The city's hour, in [0, 24).
    pub hour: f64,
    pub phase: &'static str,
    /// Where it rains, if anywhere.
    pub raining: Option<Hotspot>,
}

/// What the simulator did so far.
#[derive(Debug, Default)]
pub struct SimulatorStats {
    /// Positions (taxis' and riders') accepted (202).
    pub sent: AtomicU64,
    /// Positions refused (4xx): a simulator bug or a validation change.
    pub rejected: AtomicU64,
    /// Positions that failed (connection, 5xx, 503 after retries).
    pub failed: AtomicU64,
    /// Ride requests accepted (202).
    pub requested: AtomicU64,
    /// Ride requests refused or failed.
    pub requests_failed: AtomicU64,
    /// Requests whose rider saw a taxi assigned…
    pub assigned: AtomicU64,
    /// …or "no driver"…
    pub no_driver: AtomicU64,
    /// …or nothing within a minute.
    pub unanswered: AtomicU64,
    /// Rides a taxi dropped off.
    pub completed: AtomicU64,
    /// Taxis driving to a pickup, now.
    pub en_route: AtomicU64,
    /// Taxis with a rider, now.
    pub on_ride: AtomicU64,
    /// Drivers on a break, now.
    pub off_duty: AtomicU64,
    /// Weather reports accepted.
    pub weather: AtomicU64,
    recent: Mutex<VecDeque<String>>,
    dropped_off: Mutex<VecDeque<String>>,
    scene: Mutex<Scene>,
    fleet: Mutex<BTreeMap<String, SeenTaxi>>,
}

/// A taxi as its driver app last reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenTaxi {
    pub at: Point,
    pub status: TaxiStatus,
    /// Where it drives for its ride: the pickup (en route) or the drop-off (on ride).
    pub towards: Option<Point>,
}

/// How many ride ids [`SimulatorStats::recent_rides`] and [`SimulatorStats::completed_rides`]
/// keep.
const RECENT: usize = 32;

impl SimulatorStats {
    /// The latest ride ids requested, newest first.
    pub fn recent_rides(&self) -> Vec<String> {
        let recent = self.recent.lock().expect("recent rides");
        recent.iter().rev().cloned().collect()
    }

    /// The latest rides a taxi dropped off, newest first.
    pub fn completed_rides(&self) -> Vec<String> {
        let done = self.dropped_off.lock().expect("completed rides");
        done.iter().rev().cloned().collect()
    }

    fn remember(list: &Mutex<VecDeque<String>>, ride: String) {
        let mut list = list.lock().expect("rides");
        list.push_back(ride);
        if list.len() > RECENT {
            list.pop_front();
        }
    }

    pub fn scene(&self) -> Scene {
        self.scene.lock().expect("scene").clone()
    }

    /// Every taxi as its driver app last reported it, by id.
    pub fn fleet(&self) -> Vec<(String, SeenTaxi)> {
        let fleet = self.fleet.lock().expect("fleet");
        fleet
            .iter()
            .map(|(id, t)| (id.clone(), t.clone()))
            .collect()
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A taxi id of the simulation.
pub fn taxi_id(i: usize) -> String {
    format!("taxi-{i:04}")
}

/// A rider id of the simulation.
pub fn rider_id(i: usize) -> String {
    format!("rider-{i:05}")
}

/// SplitMix64: a well-mixed hash of one word.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn seed_of(seed: u64, what: u64, i: u64, period: u64) -> u64 {
    mix(mix(mix(seed ^ what) ^ i) ^ period)
}

/// Whether rider `i` looks at the app during `period`, when `share` of the riders do.
pub fn is_looking(seed: u64, i: usize, period: u64, share: f64) -> bool {
    (seed_of(seed, 1, i as u64, period) >> 11) as f64 / (1u64 << 53) as f64 <= share
}

/// Where rider `i` spends `period` (near one of the phase's pickup hotspots).
pub fn rider_spot(seed: u64, i: usize, period: u64, phase: &Phase) -> Point {
    let mut rng = StdRng::seed_from_u64(seed_of(seed, 2, i as u64, period));
    let hotspot = pick(&mut rng, phase.pickups);
    near(&mut rng, hotspot.point(), 450.0)
}

/// What every task shares.
struct World {
    options: SimulatorOptions,
    clock: Clock,
    http: reqwest::Client,
    stats: Arc<SimulatorStats>,
}

/// How an HTTP call went.
enum Sent {
    Ok(reqwest::Response),
    /// 4xx (not 404 on a GET, which callers handle): what the server said.
    Rejected(String),
    Failed,
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.options.url.trim_end_matches('/'))
    }

    fn phase(&self) -> (u64, &'static Phase) {
        let (elapsed, hour) = self.clock.now();
        (self.clock.period(elapsed), phase_at(hour).1)
    }

    /// Sends a request, retrying a 503 (starting up, rebalancing) quietly a few times.
    async fn send(&self, request: impl Fn() -> reqwest::RequestBuilder) -> Sent {
        for attempt in 0..4 {
            match request().send().await {
                Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE && attempt < 3 => {
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                }
                Ok(r) if r.status().is_success() => return Sent::Ok(r),
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status();
                    return Sent::Rejected(format!(
                        "{status}: {}",
                        r.text().await.unwrap_or_default()
                    ));
                }
                Ok(_) | Err(_) => return Sent::Failed,
            }
        }
        Sent::Failed
    }

    /// Posts a position and counts how it went.
    async fn post_position(&self, path: String, body: &impl Serialize) {
        let url = self.url(&path);
        match self.send(|| self.http.post(&url).json(body)).await {
            Sent::Ok(_) => SimulatorStats::count(&self.stats.sent),
            Sent::Rejected(reason) => {
                let n = self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                if n < 10 {
                    tracing::warn!(%path, %reason, "position rejected");
                }
            }
            Sent::Failed => SimulatorStats::count(&self.stats.failed),
        }
    }

    /// A GET's JSON answer, or `None` (404, 503, an error: nothing to act on now).
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Option<T> {
        let response = self.http.get(self.url(path)).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }
}

/// Runs the simulation until `stop`.
pub async fn run(
    options: SimulatorOptions,
    stats: Arc<SimulatorStats>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        options.speed.is_finite() && options.speed > 0.0,
        "speed must be positive"
    );
    anyhow::ensure!(!options.interval.is_zero(), "interval must not be zero");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .build()?;
    let clock = Clock {
        started: Instant::now(),
        day: options.day,
        start_hour: options.start_hour,
    };
    let world = Arc::new(World {
        options,
        clock,
        http,
        stats,
    });
    let mut tasks = JoinSet::new();
    let shards = SHARDS.min(world.options.taxis);
    for shard in 0..shards {
        let taxis: Vec<Taxi> = (shard..world.options.taxis)
            .step_by(shards)
            .map(|i| Taxi::new(i, &world))
            .collect();
        let delay = world.options.interval.mul_f64(shard as f64 / shards as f64);
        tasks.spawn(until(stop.clone(), drive(Arc::clone(&world), taxis, delay)));
    }
    tasks.spawn(until(stop.clone(), look(Arc::clone(&world))));
    tasks.spawn(until(stop.clone(), request(Arc::clone(&world))));
    tasks.spawn(weather(Arc::clone(&world), stop.clone()));
    while let Some(done) = tasks.join_next().await {
        done?;
    }
    Ok(())
}

/// Runs `work` until `stop`.
async fn until(stop: CancellationToken, work: impl Future<Output = ()>) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = work => {}
    }
}

/// What a driver is doing.
#[derive(Debug, Clone, PartialEq)]
enum Driving {
    Cruising {
        target: Point,
    },
    EnRoute {
        ride: String,
        pickup: Point,
        dropoff: Point,
    },
    OnRide {
        ride: String,
        dropoff: Point,
    },
    /// At the drop-off (the last `on_ride` position sent): the next report ends the ride.
    Arrived {
        ride: String,
    },
    OffDuty {
        until: Instant,
    },
}

struct Taxi {
    id: String,
    rng: StdRng,
    at: Point,
    driving: Driving,
    last_step: Option<Instant>,
    /// The ride last dropped off: the assignment may still show it for a moment.
    last_ride: Option<String>,
    /// It reported at least once (else driver matching answers 404).
    reported: bool,
}

impl Taxi {
    fn new(i: usize, world: &World) -> Taxi {
        let mut rng = StdRng::seed_from_u64(seed_of(world.options.seed, 3, i as u64, 0));
        let at = anywhere(&mut rng);
        let target = anywhere(&mut rng);
        Taxi {
            id: taxi_id(i),
            rng,
            at,
            driving: Driving::Cruising { target },
            last_step: None,
            last_ride: None,
            reported: false,
        }
    }

    fn cruise_target(&mut self, phase: &Phase) -> Point {
        if self.rng.random_bool(TO_HOTSPOT) {
            let hotspot = pick(&mut self.rng, phase.pickups);
            near(&mut self.rng, hotspot.point(), 800.0)
        } else {
            anywhere(&mut self.rng)
        }
    }

    /// One report's worth of driving.
    async fn step(&mut self, world: &World, now: Instant) {
        let dt = self
            .last_step
            .map_or(0.0, |last| now.duration_since(last).as_secs_f64());
        self.last_step = Some(now);
        let metres = fare::CITY_SPEED_KMH / 3.6 * world.options.speed * dt;
        let stats = &world.stats;
        match self.driving.clone() {
            Driving::OffDuty { until } => {
                if now < until {
                    return;
                }
                stats.off_duty.fetch_sub(1, Ordering::Relaxed);
                let target = self.cruise_target(world.phase().1);
                self.driving = Driving::Cruising { target };
                self.report(world, TaxiStatus::Available, None).await;
            }
            Driving::Cruising { mut target } => {
                if self.reported
                    && let Some(ride) = self.assignment(world).await
                {
                    stats.en_route.fetch_add(1, Ordering::Relaxed);
                    let (at, _) = step_towards(self.at, ride.pickup, metres);
                    self.at = at;
                    self.driving = Driving::EnRoute {
                        ride: ride.ride_id.clone(),
                        pickup: ride.pickup,
                        dropoff: ride.dropoff,
                    };
                    self.report(world, TaxiStatus::EnRoute, Some(ride.ride_id))
                        .await;
                    return;
                }
                if self.reported && self.rng.random_bool(BREAK_CHANCE) {
                    stats.off_duty.fetch_add(1, Ordering::Relaxed);
                    let pause = Duration::from_secs_f64(self.rng.random_range(BREAK_S));
                    self.driving = Driving::OffDuty { until: now + pause };
                    self.report(world, TaxiStatus::OffDuty, None).await;
                    return;
                }
                let (at, arrived) = step_towards(self.at, target, metres);
                self.at = at;
                if arrived {
                    target = self.cruise_target(world.phase().1);
                }
                self.driving = Driving::Cruising { target };
                self.report(world, TaxiStatus::Available, None).await;
            }
            Driving::EnRoute {
                ride,
                pickup,
                dropoff,
            } => {
                let (at, arrived) = step_towards(self.at, pickup, metres);
                self.at = at;
                if arrived {
                    // The rider gets in: the first position of the fare's trace.
                    stats.en_route.fetch_sub(1, Ordering::Relaxed);
                    stats.on_ride.fetch_add(1, Ordering::Relaxed);
                    self.driving = Driving::OnRide {
                        ride: ride.clone(),
                        dropoff,
                    };
                    self.report(world, TaxiStatus::OnRide, Some(ride)).await;
                } else {
                    self.report(world, TaxiStatus::EnRoute, Some(ride)).await;
                }
            }
            Driving::OnRide { ride, dropoff } => {
                let (at, arrived) = step_towards(self.at, dropoff, metres);
                self.at = at;
                if arrived {
                    self.driving = Driving::Arrived { ride: ride.clone() };
                }
                self.report(world, TaxiStatus::OnRide, Some(ride)).await;
            }
            Driving::Arrived { ride } => {
                // The drop-off: available again, without the ride (the final fare).
                stats.on_ride.fetch_sub(1, Ordering::Relaxed);
                self.last_ride = Some(ride.clone());
                let target = self.cruise_target(world.phase().1);
                self.driving = Driving::Cruising { target };
                self.report(world, TaxiStatus::Available, None).await;
                SimulatorStats::count(&stats.completed);
                SimulatorStats::remember(&stats.dropped_off, ride);
            }
        }
    }

    /// A new ride for this taxi, if driver matching has one.
    async fn assignment(&self, world: &World) -> Option<crate::driver_matching::Assignment> {
        let path = format!("/v1/taxis/{}/assignment", self.id);
        let answer: TaxiAssignment = world.get(&path).await?;
        answer
            .ride
            .filter(|ride| self.last_ride.as_deref() != Some(ride.ride_id.as_str()))
    }

    async fn report(&mut self, world: &World, status: TaxiStatus, ride_id: Option<String>) {
        let body = TaxiPositionReport {
            lat: self.at.lat,
            lon: self.at.lon,
            status,
            ride_id,
            at: Some(Utc::now()),
        };
        world
            .post_position(format!("/v1/taxis/{}/position", self.id), &body)
            .await;
        self.reported = true;
        let towards = match &self.driving {
            Driving::EnRoute { pickup, .. } => Some(*pickup),
            Driving::OnRide { dropoff, .. } => Some(*dropoff),
            _ => None,
        };
        let seen = SeenTaxi {
            at: self.at,
            status,
            towards,
        };
        let mut fleet = world.stats.fleet.lock().expect("fleet");
        fleet.insert(self.id.clone(), seen);
    }
}

/// Drives `taxis`, one report each every interval, after `delay` (shards take turns).
async fn drive(world: Arc<World>, mut taxis: Vec<Taxi>, delay: Duration) {
    tokio::time::sleep(delay).await;
    let mut ticker = tokio::time::interval(world.options.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        futures::future::join_all(taxis.iter_mut().map(|taxi| taxi.step(&world, now))).await;
    }
}

/// The riders looking at the app report where they are every [`RIDER_EVERY`].
async fn look(world: Arc<World>) {
    let mut rng = StdRng::seed_from_u64(seed_of(world.options.seed, 4, 0, 0));
    let mut ticker = tokio::time::interval(RIDER_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (period, phase) = world.phase();
        let seed = world.options.seed;
        let reports: Vec<(usize, Point)> = (0..world.options.riders)
            .filter(|&i| is_looking(seed, i, period, phase.looking))
            .map(|i| (i, near(&mut rng, rider_spot(seed, i, period, phase), 20.0)))
            .collect();
        futures::stream::iter(reports)
            .for_each_concurrent(16, |(i, p)| {
                let world = &world;
                async move {
                    let body = UserPositionReport {
                        lat: p.lat,
                        lon: p.lon,
                        at: Some(Utc::now()),
                    };
                    world
                        .post_position(format!("/v1/users/{}/position", rider_id(i)), &body)
                        .await;
                }
            })
            .await;
    }
}

/// Ride requests, a Poisson process at the rate of the moment.
async fn request(world: Arc<World>) {
    let mut rng = StdRng::seed_from_u64(seed_of(world.options.seed, 5, 0, 0));
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_POLLING));
    let mut riders = JoinSet::new();
    loop {
        while riders.try_join_next().is_some() {}
        let per_s = world.options.requests_per_minute().max(0.0) / 60.0;
        let wait = if per_s > 0.0 {
            -(1.0 - rng.random::<f64>()).ln() / per_s
        } else {
            f64::INFINITY
        };
        if wait > 1.0 {
            // Nothing this second; draw again then (memoryless: still Poisson, at the rate
            // the knob has by then).
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (period, phase) = world.phase();
        let seed = world.options.seed;
        let looking: Vec<usize> = (0..world.options.riders)
            .filter(|&i| is_looking(seed, i, period, phase.looking))
            .collect();
        let (rider, pickup) = if looking.is_empty() {
            let rider = rng.random_range(0..world.options.riders.max(1));
            (rider, {
                let hotspot = pick(&mut rng, phase.pickups);
                near(&mut rng, hotspot.point(), 450.0)
            })
        } else {
            let rider = looking[rng.random_range(0..looking.len())];
            (
                rider,
                near(&mut rng, rider_spot(seed, rider, period, phase), 20.0),
            )
        };
        let body = RideRequestBody {
            rider_id: rider_id(rider),
            pickup,
            dropoff: dropoff(&mut rng, pickup, phase),
        };
        let world = Arc::clone(&world);
        riders.spawn(async move {
            ride(&world, body).await;
            drop(permit);
        });
    }
}

/// Asks for a ride, then waits for a taxi (or "no driver").
async fn ride(world: &World, body: RideRequestBody) {
    let stats = &world.stats;
    let url = world.url("/v1/rides");
    let accepted = match world.send(|| world.http.post(&url).json(&body)).await {
        Sent::Ok(response) => response.json::<RideAccepted>().await.ok(),
        Sent::Rejected(reason) => {
            if stats.requests_failed.load(Ordering::Relaxed) < 10 {
                tracing::warn!(%reason, "ride request rejected");
            }
            None
        }
        Sent::Failed => None,
    };
    let Some(accepted) = accepted else {
        SimulatorStats::count(&stats.requests_failed);
        return;
    };
    SimulatorStats::count(&stats.requested);
    SimulatorStats::remember(&stats.recent, accepted.ride_id.clone());
    let path = format!("/v1/rides/{}", accepted.ride_id);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while started.elapsed() < POLL_FOR {
        tick.tick().await;
        // 404 for a moment after the POST (the view follows the topic), 503 while starting.
        let Some(view) = world.get::<RideView>(&path).await else {
            continue;
        };
        match view.status {
            RideStatus::Requested => {}
            RideStatus::NoDriver => return SimulatorStats::count(&stats.no_driver),
            RideStatus::Assigned | RideStatus::OnRide | RideStatus::Completed => {
                return SimulatorStats::count(&stats.assigned);
            }
        }
    }
    SimulatorStats::count(&stats.unanswered);
}

/// Keeps the scene up to date and makes it rain on schedule; dries the last rain at `stop`.
async fn weather(world: Arc<World>, stop: CancellationToken) {
    let mut raining: Option<Hotspot> = None;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let (elapsed, hour) = world.clock.now();
        let want = rain_at(&world.clock, elapsed);
        if want != raining {
            let work = async {
                if let Some(old) = raining {
                    set_rain(&world, old, 0.0).await;
                }
                if let Some(new) = want {
                    set_rain(&world, new, RAIN_MM_H).await;
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = work => {}
            }
            raining = want;
        }
        *world.stats.scene.lock().expect("scene") = Scene {
            hour,
            phase: phase_at(hour).1.name,
            raining,
        };
    }
    if let Some(old) = raining {
        // Leave the city dry; quickly, stopping must not wait.
        let _ = tokio::time::timeout(Duration::from_secs(1), set_rain(&world, old, 0.0)).await;
    }
}

async fn set_rain(world: &World, hotspot: Hotspot, rain_mm_h: f64) {
    let url = world.url(&format!("/v1/regions/{}/weather", hotspot.region()));
    let body = WeatherReport { rain_mm_h };
    match world.send(|| world.http.put(&url).json(&body)).await {
        Sent::Ok(_) => SimulatorStats::count(&world.stats.weather),
        Sent::Rejected(reason) => tracing::warn!(%reason, "weather rejected"),
        Sent::Failed => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hotspots_and_the_shore_are_on_land_in_the_box() {
        for hotspot in Hotspot::ALL {
            assert!(on_land(hotspot.point()), "{} is off land", hotspot.name());
        }
        for &(lat, lon) in MANHATTAN {
            assert!(in_box(Point { lat, lon }), "{lat}, {lon}");
        }
        // Water and New Jersey are not land.
        for (lat, lon, what) in [
            (40.7580, -74.0150, "the Hudson off Midtown"),
            (40.7450, -73.9600, "the East River off the UN"),
            (40.7300, -74.0300, "Jersey City"),
            (40.7800, -73.9350, "Roosevelt Island channel / Queens"),
            (40.7000, -73.9900, "Brooklyn"),
        ] {
            assert!(!on_land(Point { lat, lon }), "{what} counted as land");
        }
        // The hotspots are where they should be.
        assert_eq!(
            Hotspot::YankeeStadium.point(),
            Point::new(40.8296, -73.9262).unwrap()
        );
        assert_eq!(
            region_name(&Hotspot::UpperEastSide.region()).as_deref(),
            Some("Upper East Side")
        );
    }

    #[test]
    fn random_points_stay_on_land() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..2_000 {
            let p = anywhere(&mut rng);
            assert!(on_land(p), "{p:?}");
            p.validate().unwrap();
            for hotspot in Hotspot::ALL {
                let q = near(&mut rng, hotspot.point(), 800.0);
                assert!(on_land(q), "{q:?} near {}", hotspot.name());
            }
        }
    }

    #[test]
    fn dropoffs_are_on_land_one_to_six_km_away() {
        let mut rng = StdRng::seed_from_u64(2);
        for case in 0..2_000 {
            let phase = &SCHEDULE[case % SCHEDULE.len()];
            let pickup = if case % 2 == 0 {
                anywhere(&mut rng)
            } else {
                let hotspot = pick(&mut rng, phase.pickups);
                near(&mut rng, hotspot.point(), 450.0)
            };
            let p = dropoff(&mut rng, pickup, phase);
            let d = distance_m(pickup, p);
            assert!(on_land(p), "case {case}: {p:?}");
            assert!((MIN_RIDE_M..=MAX_RIDE_M).contains(&d), "case {case}: {d} m");
        }
        // In the morning most rides go to Midtown or Times Square.
        let morning = phase_at(8.0).1;
        let ues = Hotspot::UpperEastSide.point();
        let to_midtown = (0..500)
            .filter(|_| {
                let p = dropoff(&mut rng, ues, morning);
                distance_m(p, Midtown.point()).min(distance_m(p, TimesSquare.point())) < 1_500.0
            })
            .count();
        assert!(to_midtown > 400, "{to_midtown} of 500");
    }

    #[test]
    fn a_taxi_reaches_its_target_at_its_speed_and_stays_in_the_box() {
        let from = Hotspot::FinancialDistrict.point();
        let to = Hotspot::YankeeStadium.point();
        let total = distance_m(from, to);
        let options = SimulatorOptions::default();
        let per_report =
            fare::CITY_SPEED_KMH / 3.6 * options.speed * options.interval.as_secs_f64();
        let (mut at, mut reports) = (from, 0);
        loop {
            let (next, arrived) = step_towards(at, to, per_report);
            let moved = distance_m(at, next);
            assert!(moved <= per_report * 1.01, "moved {moved} m in one report");
            assert!(in_box(next), "{next:?}");
            at = next;
            reports += 1;
            if arrived {
                break;
            }
            assert!(reports < 1_000, "never arrived");
        }
        assert_eq!(at, to);
        let expected = (total / per_report).ceil() as i32;
        assert!(
            (reports - expected).abs() <= 2,
            "{reports} reports, expected {expected}"
        );
        // A 2 km ride at the default speed is about a minute of wall time.
        let wall = 2_000.0 / (fare::CITY_SPEED_KMH / 3.6 * options.speed);
        assert!((40.0..=70.0).contains(&wall), "{wall} s");
        // A step of zero stays put; a step past the target stops at it.
        assert_eq!(step_towards(from, to, 0.0), (from, false));
        assert_eq!(step_towards(from, to, total + 1.0), (to, true));
    }

    #[test]
    fn the_clock_runs_the_schedule() {
        let clock = Clock {
            started: Instant::now(),
            day: Duration::from_secs(600),
            start_hour: 7.0,
        };
        let at = |s: u64| clock.hour(Duration::from_secs(s));
        assert_eq!(at(0), 7.0);
        assert_eq!(at(25), 8.0); // an hour is 25 s
        assert_eq!(phase_at(at(0)).1.name, "morning rush");
        assert_eq!(phase_at(at(75)).1.name, "daytime"); // 10:00
        assert_eq!(phase_at(at(225)).1.name, "evening rush"); // 16:00
        assert_eq!(phase_at(at(300)).1.name, "game night at Yankee Stadium"); // 19:00
        assert_eq!(phase_at(at(400)).1.name, "night"); // 23:00
        assert_eq!(phase_at(at(500)).1.name, "night"); // 3:00 the next day
        assert_eq!(at(600), 7.0);
        // The morning rush starts on the Upper East Side, game night at the stadium.
        assert_eq!(phase_at(8.0).1.pickups[0].0, UpperEastSide);
        assert_eq!(phase_at(20.0).1.pickups[0].0, YankeeStadium);
        // The period changes with the phase, and again the next day.
        let period = |s: u64| clock.period(Duration::from_secs(s));
        assert_eq!(period(0), period(70));
        assert_ne!(period(70), period(80));
        assert_ne!(period(0), period(600));
        // Phases are in order and cover the day.
        assert_eq!(SCHEDULE[0].from_hour, 0.0);
        assert!(SCHEDULE.windows(2).all(|w| w[0].from_hour < w[1].from_hour));
    }

    #[test]
    fn it_rains_now_and_then_over_one_region() {
        let clock = Clock {
            started: Instant::now(),
            day: Duration::from_secs(600),
            start_hour: 7.0,
        };
        let rain = |s: u64| rain_at(&clock, Duration::from_secs(s));
        assert_eq!(rain(0), None);
        // 8:12, the morning rush: not on the Upper East Side (the busiest) but the next.
        assert_eq!(rain(RAIN_AFTER.as_secs()), Some(UpperWestSide));
        assert_eq!(rain((RAIN_AFTER + RAIN_FOR).as_secs()), None);
        // 15:24, daytime: the third pickup hotspot.
        assert_eq!(rain((RAIN_EVERY + RAIN_AFTER).as_secs()), Some(TimesSquare));
        // One region for the whole episode, even when the phase changes meanwhile.
        let episode: Vec<Option<Hotspot>> = (RAIN_AFTER.as_secs()
            ..(RAIN_AFTER + RAIN_FOR).as_secs())
            .map(|s| rain(RAIN_EVERY.as_secs() * 2 + s))
            .collect();
        assert!(episode.iter().all(|r| r.is_some() && *r == episode[0]));
        let raining = (0..RAIN_EVERY.as_secs() * 10)
            .filter(|s| rain(*s).is_some())
            .count() as u64;
        assert_eq!(raining, RAIN_FOR.as_secs() * 10);
        for hotspot in Hotspot::ALL {
            geo::parse_region(&hotspot.region()).unwrap();
        }
        assert_eq!(region_label(&Hotspot::Harlem.region()), "Harlem");
        // A region with no named place: the nearest one names it.
        let east_harlem = geo::region(Point::new(40.7986, -73.9448).unwrap()).to_string();
        assert!(region_name(&east_harlem).is_none());
        assert_eq!(region_label(&east_harlem), "near Harlem");
        assert_eq!(region_label("not-a-cell"), "not-a-cell");
    }

    #[test]
    fn riders_look_by_share_and_stay_put_within_a_period() {
        let morning = phase_at(8.0).1;
        let looking = (0..10_000)
            .filter(|&i| is_looking(7, i, 3, morning.looking))
            .count();
        assert!((5_600..6_400).contains(&looking), "{looking} of 10000");
        assert_eq!(rider_spot(7, 42, 3, morning), rider_spot(7, 42, 3, morning));
        assert_ne!(rider_spot(7, 42, 3, morning), rider_spot(7, 42, 4, morning));
        // Most morning riders are near the Upper East Side.
        let near_ues = (0..1_000)
            .filter(|&i| distance_m(rider_spot(7, i, 3, morning), UpperEastSide.point()) < 1_500.0)
            .count();
        assert!(near_ues > 550, "{near_ues} of 1000");
    }
}
