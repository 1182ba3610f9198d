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
