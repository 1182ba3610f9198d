//! Requirement 3: the fare recomputed from the analytics store alone equals the final fare the
//! taxi cost service published live, for every ride — with a re-sent and a reordered position
//! in the trace, skipped the same way on both sides; and for every ride of a simulated run.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use gettaxi::geo::Point;
use gettaxi::simulator::{self, SimulatorOptions, SimulatorStats};
use gettaxi::stored_fare;
use shared::testkit::TestKafka;
use tokio_util::sync::CancellationToken;

use crate::{MIDTOWN, client, get, known, offset, outcome, request_ride, spawn, taxi};

#[tokio::test(flavor = "multi_thread")]
async fn fares_recomputed_from_the_store_equal_the_live_fares() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, &[], dir.path()).await;
    let (url, http) = (app.url(), client());
    let taxis: Vec<String> = (0..3).map(|i| format!("fare-taxi-{i}")).collect();
    let starts: Vec<Point> = (0..3)
        .map(|i| offset(MIDTOWN, 0.0, 700.0 * i as f64))
        .collect();
    for (id, at) in taxis.iter().zip(&starts) {
        taxi(&http, &url, id, *at, "available", None, Utc::now()).await;
    }
    known(&http, &url, &taxis).await;

    let mut rides = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let dropoff = offset(*start, 1500.0 + 500.0 * i as f64, 300.0);
        let ride = request_ride(&http, &url, &format!("fare-rider-{i}"), *start, dropoff).await;
        let view = outcome(&http, &url, &ride, Duration::from_secs(60)).await;
        assert_eq!(view["status"], "assigned", "{view}");
        let taxi_id = view["taxi_id"].as_str().unwrap().to_owned();
        rides.push((ride, taxi_id, *start, dropoff));
    }
    for (ride, taxi_id, pickup, dropoff) in &rides {
        let t0 = Utc::now();
        let when = |s: i64| t0 + TimeDelta::milliseconds(1500 * s);
        taxi(
            &http,
            &url,
            taxi_id,
            *pickup,
            "en_route",
            Some(ride),
            when(0),
        )
        .await;
        // Twelve positions from the pickup to the drop-off, one re-sent and one out of order.
        for k in 0..=12 {
            let f = f64::from(k) / 12.0;
            let p = Point {
                lat: pickup.lat + f * (dropoff.lat - pickup.lat),
                lon: pickup.lon + f * (dropoff.lon - pickup.lon) + 0.0004 * (f * 9.0).sin(),
            };
            taxi(
                &http,
                &url,
                taxi_id,
                p,
                "on_ride",
                Some(ride),
                when(i64::from(k) + 1),
            )
            .await;
            if k == 5 {
                taxi(
                    &http,
                    &url,
                    taxi_id,
                    p,
                    "on_ride",
                    Some(ride),
                    when(i64::from(k) + 1),
                )
                .await;
            }
            if k == 8 {
                let back = offset(p, -300.0, 0.0);
                taxi(&http, &url, taxi_id, back, "on_ride", Some(ride), when(3)).await;
            }
        }
        taxi(&http, &url, taxi_id, *dropoff, "available", None, when(14)).await;
    }

    let analytics = dir.path().join("analytics");
    for (ride, taxi_id, _, _) in &rides {
        let live = crate::eventually(Duration::from_secs(60), "the final fare", || async {
            let (_, view) = get(&http, &format!("{url}/v1/rides/{ride}")).await;
            (view["status"] == "completed").then_some(view)
        })
        .await;
        let live_cents = live["fare"]["amount_cents"].as_i64().unwrap();
        assert!(live["fare"]["km"].as_f64().unwrap() > 1.0, "{live}");
        let stored = crate::eventually(Duration::from_secs(60), "the ride in the store", || {
            let analytics = analytics.clone();
            async move {
                let fare = stored_fare::recompute(&analytics, ride).ok().flatten()?;
                // Every position and the final fare are in the files.
                (fare.positions == 15 && fare.live_final_cents.is_some()).then_some(fare)
            }
        })
        .await;
        assert_eq!(
            stored.amount_cents, live_cents,
            "{ride}: {stored:?} vs {live}"
        );
        assert_eq!(stored.live_final_cents, Some(live_cents));
        assert_eq!(
            stored.multiplier,
            live["quote"]["multiplier"].as_f64().unwrap()
        );
        // The taxi is free again once it dropped the rider off.
        let (_, assignment) = get(&http, &format!("{url}/v1/taxis/{taxi_id}/assignment")).await;
        assert!(assignment["ride"].is_null(), "{assignment}");
    }
    app.stop().await.unwrap();
}

/// The fare of every ride the simulator drove to its drop-off, recomputed from the Parquet files,
/// equals the final fare published live.
#[tokio::test(flavor = "multi_thread")]
async fn every_ride_of_a_simulated_run_is_recomputed_to_the_cent() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, &[], dir.path()).await;
    let (url, http) = (app.url(), client());
    let stats = Arc::new(SimulatorStats::default());
    let stop = CancellationToken::new();
    let options = SimulatorOptions {
        url: url.clone(),
        taxis: 12,
        riders: 30,
        interval: Duration::from_secs(1),
        speed: 25.0,
        requests_per_minute: 40.0,
        ..SimulatorOptions::default()
    };
    let run = tokio::spawn(simulator::run(options, Arc::clone(&stats), stop.clone()));
    crate::eventually(Duration::from_secs(180), "four rides dropped off", || {
        let done = stats.completed.load(Ordering::Relaxed);
        async move { (done >= 4).then_some(()) }
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();

    let rides = stats.completed_rides();
    assert_eq!(
        rides.len() as u64,
        stats.completed.load(Ordering::Relaxed),
        "the simulator remembers every ride it dropped off (a shorter run is needed otherwise)"
    );
    let analytics = dir.path().join("analytics");
    for ride in &rides {
        let live = crate::eventually(Duration::from_secs(60), "the final fare", || async {
            let (_, view) = get(&http, &format!("{url}/v1/rides/{ride}")).await;
            (view["status"] == "completed").then_some(view)
        })
        .await;
        let live_cents = live["fare"]["amount_cents"].as_i64().unwrap();
        // The sink closes each topic's files on its own clock: the trace is complete once the
        // recomputed fare stops changing — it must then be the live one to the cent.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let stored = stored_fare::recompute(&analytics, ride).unwrap();
            if let Some(fare) = &stored
                && fare.live_final_cents == Some(live_cents)
                && fare.amount_cents == live_cents
            {
                assert!(fare.positions >= 2, "{ride}: {fare:?}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{ride}: recomputed {stored:?}, live {live}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    app.stop().await.unwrap();
}

/// Publishes `multiplier` as the surge in force in `at`'s region (as surge pricing would).
async fn set_surge(kafka: &TestKafka, at: Point, multiplier: f64) {
    let region = gettaxi::geo::region(at).to_string();
    let price = gettaxi::events::SurgePrice {
        region: region.clone(),
        multiplier,
        demand: 0.0,
        supply: 0,
        rain_mm_h: 0.0,
        window_start: Utc::now() - TimeDelta::minutes(5),
        at: Utc::now(),
    };
    let producer = shared::EventProducer::new(kafka.kafka()).unwrap();
    let topic = kafka.kafka().topic(&gettaxi::topics::SURGE_PRICING);
    producer.publish(&topic, &region, &price).await.unwrap();
}

/// Asks for rides from `pickup` until one is quoted at `multiplier` (the taxi cost service's
/// surge table has caught up); that ride and its quote.
async fn quoted_at(
    http: &reqwest::Client,
    url: &str,
    pickup: Point,
    multiplier: f64,
) -> (String, serde_json::Value) {
    crate::eventually(
        Duration::from_secs(60),
        &format!("a quote at ×{multiplier}"),
        || async {
            let ride = request_ride(
                http,
                url,
                "quote-rider",
                pickup,
                offset(pickup, 2000.0, 0.0),
            )
            .await;
            let view = crate::eventually(Duration::from_secs(30), "the quote", || async {
                let (_, view) = get(http, &format!("{url}/v1/rides/{ride}")).await;
                (!view["quote"].is_null()).then_some(view)
            })
            .await;
            (view["quote"]["multiplier"].as_f64() == Some(multiplier))
                .then(|| (ride, view["quote"].clone()))
        },
    )
    .await
}

/// Drives `ride` from `pickup` (three positions with the rider, then the drop-off); the final fare.
async fn drive(
    http: &reqwest::Client,
    url: &str,
    taxi_id: &str,
    ride: &str,
    pickup: Point,
) -> serde_json::Value {
    for k in 0..3 {
        let p = offset(pickup, 400.0 * f64::from(k), 0.0);
        taxi(http, url, taxi_id, p, "on_ride", Some(ride), Utc::now()).await;
    }
    let dropoff = offset(pickup, 1200.0, 0.0);
    taxi(http, url, taxi_id, dropoff, "available", None, Utc::now()).await;
    crate::eventually(Duration::from_secs(60), "the final fare", || async {
        let (_, view) = get(http, &format!("{url}/v1/rides/{ride}")).await;
        (view["fare"]["stage"] == "final").then(|| view["fare"].clone())
    })
    .await
}

/// A quote's multiplier holds for rides that start within its stated time, even after the surge
/// fell; a ride that starts after it pays the multiplier in force when it starts.
#[tokio::test(flavor = "multi_thread")]
async fn a_quote_is_honoured_for_its_stated_time_then_the_surge_in_force_applies() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = gettaxi::app::Options {
        quote_valid_for: Duration::from_secs(20),
        ..gettaxi::app::Options::default()
    };
    let services = ["taxi-position-service", "ride-service", "taxi-cost-service"];
    let app = crate::spawn_with(&kafka, &services, dir.path(), options).await;
    let (url, http) = (app.url(), client());

    set_surge(&kafka, MIDTOWN, 2.0).await;
    let (honoured, quote) = quoted_at(&http, &url, MIDTOWN, 2.0).await;
    let (expiring, _) = quoted_at(&http, &url, MIDTOWN, 2.0).await;
    let valid_until: chrono::DateTime<Utc> =
        serde_json::from_value(quote["valid_until"].clone()).unwrap();
    let requested: chrono::DateTime<Utc> = serde_json::from_value(quote["at"].clone()).unwrap();
    let stated = valid_until - requested;
    assert!(
        (stated - TimeDelta::seconds(20)).abs() < TimeDelta::milliseconds(1),
        "{quote}"
    );

    // The surge falls back; the first ride starts within its quote's time: still ×2.0.
    set_surge(&kafka, MIDTOWN, 1.0).await;
    quoted_at(&http, &url, MIDTOWN, 1.0).await;
    assert!(
        Utc::now() < valid_until,
        "the test ran too slowly to start within the quote"
    );
    let fare = drive(&http, &url, "quote-taxi-1", &honoured, MIDTOWN).await;
    assert_eq!(fare["multiplier"], 2.0, "{fare}");

    // The second starts after its quote expired: ×1.0, the surge in force at its start.
    let (_, view) = get(&http, &format!("{url}/v1/rides/{expiring}")).await;
    let until: chrono::DateTime<Utc> =
        serde_json::from_value(view["quote"]["valid_until"].clone()).unwrap();
    let wait = (until - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(1);
    tokio::time::sleep(wait).await;
    let fare = drive(&http, &url, "quote-taxi-2", &expiring, MIDTOWN).await;
    assert_eq!(fare["multiplier"], 1.0, "{fare}");
    app.stop().await.unwrap();
}
