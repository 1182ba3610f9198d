//! GetTaxi end to end, on the broker the testkit picks (`CASESTUDIES_TEST_KAFKA`): every test
//! drives the services through their HTTP API or their topics, and reads results back the way
//! the rider and driver apps would.

mod fares;
mod invalid_input;
mod matching;
mod surge;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gettaxi::app::{GetTaxi, Options};
use gettaxi::geo::Point;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::analytics::AnalyticsArgs;
use shared::service::Process;
use shared::service::cli::ServeArgs;
use shared::testkit::TestKafka;

pub use shared::testkit::eventually;
pub use shared::testkit::http::{client, get, post};

/// Starts the services named (every one when `services` is empty) on `kafka`, on a free port:
/// through the same entry point as the binary.
pub async fn spawn(kafka: &TestKafka, services: &[&str], dir: &Path) -> Process {
    spawn_with(kafka, services, dir, Options::default()).await
}

/// [`spawn`] with GetTaxi's `options` (the analytics store under `dir`, flushed often).
pub async fn spawn_with(
    kafka: &TestKafka,
    services: &[&str],
    dir: &Path,
    options: Options,
) -> Process {
    let names: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    let serve = ServeArgs {
        state_dir: Some(dir.join("state")),
        ..ServeArgs::for_tests(dir)
    };
    let options = Options {
        analytics: AnalyticsArgs {
            sink_max_rows: 10_000,
            sink_max_age: Duration::from_millis(500),
            ..AnalyticsArgs::in_dir(dir.join("analytics"))
        },
        ..options
    };
    shared::service::cli::start::<GetTaxi>(kafka.kafka(), &names, &serve, &options)
        .await
        .unwrap()
        .0
}

/// `PUT url` with a JSON body: the status and the JSON answer.
pub async fn put(http: &reqwest::Client, url: &str, body: &Value) -> (StatusCode, Value) {
    shared::testkit::http::send(http.put(url).json(body)).await
}

/// Midtown Manhattan.
pub const MIDTOWN: Point = Point {
    lat: 40.7549,
    lon: -73.9840,
};

/// `p` moved `north_m` north and `east_m` east (small distances).
pub fn offset(p: Point, north_m: f64, east_m: f64) -> Point {
    let lat = p.lat + north_m / 111_320.0;
    let lon = p.lon + east_m / (111_320.0 * p.lat.to_radians().cos());
    Point { lat, lon }
}

/// Reports a taxi's position and insists it is accepted.
pub async fn taxi(
    http: &reqwest::Client,
    app: &str,
    id: &str,
    at: Point,
    status: &str,
    ride: Option<&str>,
    when: DateTime<Utc>,
) {
    let mut body = json!({"lat": at.lat, "lon": at.lon, "status": status, "at": when.to_rfc3339()});
    if let Some(ride) = ride {
        body["ride_id"] = json!(ride);
    }
    let (status, answer) = post(http, &format!("{app}/v1/taxis/{id}/position"), &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body} → {answer}");
}

/// Asks for a ride; its id.
pub async fn request_ride(
    http: &reqwest::Client,
    app: &str,
    rider: &str,
    pickup: Point,
    dropoff: Point,
) -> String {
    let body = json!({"rider_id": rider, "pickup": pickup, "dropoff": dropoff});
    let (status, answer) = post(http, &format!("{app}/v1/rides"), &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body} → {answer}");
    answer["ride_id"].as_str().unwrap().to_owned()
}

/// Waits until the ride view shows an outcome (a taxi or no driver); the view.
pub async fn outcome(http: &reqwest::Client, app: &str, ride: &str, timeout: Duration) -> Value {
    eventually(timeout, &format!("an outcome for {ride}"), || async {
        let (status, view) = get(http, &format!("{app}/v1/rides/{ride}")).await;
        (status == StatusCode::OK && view["status"] != "requested").then_some(view)
    })
    .await
}

/// Waits until every taxi is known to driver matching (its assignment answers 200).
pub async fn known(http: &reqwest::Client, app: &str, taxis: &[String]) {
    for id in taxis {
        eventually(
            Duration::from_secs(60),
            &format!("{id} known to matching"),
            || async {
                let (status, _) = get(http, &format!("{app}/v1/taxis/{id}/assignment")).await;
                (status == StatusCode::OK).then_some(())
            },
        )
        .await;
    }
}
