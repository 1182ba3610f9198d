//! The benches' load: members (taxis, riders) reporting at a steady rate, and the taxis' own
//! state — where each is, and the ride it drives when driver matching assigned it one.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shared::{Event, EventProducer};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{NORTH_EAST, SOUTH_WEST, random_point};
use crate::events::{TaxiPosition, TaxiStatus};
use crate::geo::Point;

/// Records the load produced, and those the broker refused.
#[derive(Debug, Default)]
pub struct Sent {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// Publishes `event` under `key` without waiting for the acknowledgement (counted in `sent`).
pub fn publish<E: Event + Send + Sync + 'static>(
    producer: &EventProducer,
    topic: &Arc<str>,
    key: String,
    event: E,
    sent: &Arc<Sent>,
) {
    let (producer, topic, sent) = (producer.clone(), Arc::clone(topic), Arc::clone(sent));
    tokio::spawn(async move {
        let counter = match producer.publish(&topic, &key, &event).await {
            Ok(_) => &sent.ok,
            Err(_) => &sent.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    });
}

/// Calls `report(member)` for `members` members, each once per `interval`, evenly spread over
/// it (report m is member m % members's, at m × interval / members), until `stop`.
pub async fn every(
    members: usize,
    interval: Duration,
    stop: CancellationToken,
    mut report: impl FnMut(usize),
) {
    if members == 0 {
        return;
    }
    let spacing = interval.as_secs_f64() / members as f64;
    let started = Instant::now();
    let mut m: u64 = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let due = (started.elapsed().as_secs_f64() / spacing) as u64;
        while m <= due {
            report((m % members as u64) as usize);
            m += 1;
        }
    }
}

/// How far a taxi moves between two reports: city speed, 25 km/h.
const SPEED_M_PER_S: f64 = 25.0 / 3.6;

/// A taxi of the bench's fleet.
#[derive(Debug, Clone)]
struct Taxi {
    point: Point,
    heading: f64,
    /// The ride driver matching assigned, until when it lasts, and whether a report has
    /// carried it (the taxi ledger ends a ride at the first report without it after one with it).
    ride: Option<(String, Instant, bool)>,
}

/// Taxis cruising the box in straight lines, turning at its edges; a taxi with a ride reports
/// `en_route` for it until the ride's time is up, then `available` again.
pub struct Fleet {
    taxis: Mutex<(Vec<Taxi>, StdRng)>,
    interval: Duration,
}

/// The id of the fleet's taxi `i`.
pub fn taxi_id(i: usize) -> String {
    format!("taxi-{i:05}")
}

impl Fleet {
    pub fn new(taxis: usize, interval: Duration, seed: u64) -> Fleet {
        let mut rng = StdRng::seed_from_u64(seed);
        let fleet = (0..taxis)
            .map(|_| Taxi {
                point: random_point(&mut rng),
                heading: rng.random_range(0.0..std::f64::consts::TAU),
                ride: None,
            })
            .collect();
        Fleet {
            taxis: Mutex::new((fleet, rng)),
            interval,
        }
    }

    /// Taxi `i`'s next report: it has moved on, and says whether it drives a ride.
    pub fn report(&self, i: usize) -> TaxiPosition {
        let mut guard = self.taxis.lock().expect("fleet");
        let (taxis, rng) = &mut *guard;
        let taxi = &mut taxis[i];
        taxi.heading += rng.random_range(-0.3..0.3);
        let step = SPEED_M_PER_S * self.interval.as_secs_f64();
        let mut lat = taxi.point.lat + step * taxi.heading.cos() / 111_320.0;
        let mut lon =
            taxi.point.lon + step * taxi.heading.sin() / (111_320.0 * lat.to_radians().cos());
        if !(SOUTH_WEST.lat..NORTH_EAST.lat).contains(&lat) {
            taxi.heading = std::f64::consts::PI - taxi.heading;
            lat = taxi.point.lat;
        }
        if !(SOUTH_WEST.lon..NORTH_EAST.lon).contains(&lon) {
            taxi.heading = -taxi.heading;
            lon = taxi.point.lon;
        }
        taxi.point = Point { lat, lon };
        if taxi
            .ride
            .as_ref()
            .is_some_and(|(_, until, reported)| *reported && *until <= Instant::now())
        {
            taxi.ride = None;
        }
        let ride_id = taxi.ride.as_mut().map(|(ride, _, reported)| {
            *reported = true;
            ride.clone()
        });
        TaxiPosition {
            event_id: shared::event::new_event_id(),
            taxi_id: taxi_id(i),
            lat,
            lon,
            status: if ride_id.is_some() {
                TaxiStatus::EnRoute
            } else {
                TaxiStatus::Available
            },
            ride_id,
            at: Utc::now(),
        }
    }

    /// Driver matching assigned `ride` to the taxi `taxi_id`: it drives it for `duration`.
    /// False when the id is not one of the fleet's, or the taxi already drives another ride (which
    /// the taxi ledger must never allow).
    pub fn assign(&self, taxi_id: &str, ride: &str, duration: Duration) -> bool {
        let Some(i) = taxi_id
            .strip_prefix("taxi-")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            return false;
        };
        let mut guard = self.taxis.lock().expect("fleet");
        let Some(taxi) = guard.0.get_mut(i) else {
            return false;
        };
        match &taxi.ride {
            Some((current, _, _)) => current == ride,
            None => {
                taxi.ride = Some((ride.to_owned(), Instant::now() + duration, false));
                true
            }
        }
    }
}
