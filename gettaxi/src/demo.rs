//! `gettaxi demo`: every service plus the simulator in one process, and a short live summary
//! every few seconds — what a workshop projects on the wall: the city's hour, the rides, the
//! positions per second, the regions with the highest surge, and the fare of a finished ride.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::ride_service::{RideStatus, RideView};
use crate::simulator::{self, SimulatorStats};
use crate::surge_pricing::RegionSurge;

/// How many surge regions a summary shows.
const TOP: usize = 3;

/// The highest multiplier a run saw.
#[derive(Debug, Default, Clone)]
pub struct Highest {
    pub multiplier: f64,
    pub region: String,
}

/// Prints a summary every `every` until `stop`; the highest surge seen.
pub async fn report(
    api: String,
    stats: Arc<SimulatorStats>,
    every: Duration,
    stop: CancellationToken,
) -> Highest {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let started = Instant::now();
    let mut highest = Highest::default();
    let (mut last_sent, mut last_at) = (0, Instant::now());
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return highest,
            _ = ticker.tick() => {}
        }
        let sent = stats.sent.load(Ordering::Relaxed);
        let rate = (sent - last_sent) as f64 / last_at.elapsed().as_secs_f64();
        (last_sent, last_at) = (sent, Instant::now());
        let scene = stats.scene();
        let mut lines = vec![format!(
            "[t+{:>4}s] {:02}:{:02} {}{} · rides {} requested, {} assigned, {} no driver, {} completed · {rate:.1} positions/s ({} rejected, {} failed) · taxis {} en route, {} on ride, {} off duty",
            started.elapsed().as_secs(),
            scene.hour as u32,
            (scene.hour.fract() * 60.0) as u32,
            scene.phase,
            scene
                .raining
                .map_or(String::new(), |h| format!(", rain over {}", h.name())),
            stats.requested.load(Ordering::Relaxed),
            stats.assigned.load(Ordering::Relaxed),
            stats.no_driver.load(Ordering::Relaxed),
            stats.completed.load(Ordering::Relaxed),
            stats.rejected.load(Ordering::Relaxed),
            stats.failed.load(Ordering::Relaxed),
            stats.en_route.load(Ordering::Relaxed),
            stats.on_ride.load(Ordering::Relaxed),
            stats.off_duty.load(Ordering::Relaxed),
        )];
        if let Some(surge) = get::<Vec<RegionSurge>>(&http, &format!("{api}/v1/surge")).await {
            if let Some(top) = surge.first()
                && top.multiplier > highest.multiplier
            {
                highest = Highest {
                    multiplier: top.multiplier,
                    region: describe(&top.region),
                };
            }
            let top: Vec<String> = surge.iter().take(TOP).map(surge_line).collect();
            lines.push(format!(
                "  surge ({} regions) {}",
                surge.len(),
                if top.is_empty() {
                    "—".into()
                } else {
                    top.join(" · ")
                }
            ));
        }
        if let Some(line) = finished_ride(&http, &api, &stats).await {
            lines.push(line);
        }
        println!("{}", lines.join("\n"));
    }
}

async fn get<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> Option<T> {
    let response = http.get(url).send().await.ok()?.error_for_status().ok()?;
    response.json().await.ok()
}

/// A region, with the hotspots in it.
pub fn describe(region: &str) -> String {
    format!("{} ({region})", simulator::region_label(region))
}

fn surge_line(s: &RegionSurge) -> String {
    format!(
        "×{:.1} {}: demand {:.0}, supply {}{}",
        s.multiplier,
        describe(&s.region),
        s.demand,
        s.supply,
        if s.rain_mm_h > 0.0 {
            format!(", rain {:.0} mm/h", s.rain_mm_h)
        } else {
            String::new()
        }
    )
}

/// Dollars from cents.
pub fn dollars(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// The newest ride dropped off whose final fare is known, with its quote.
async fn finished_ride(
    http: &reqwest::Client,
    api: &str,
    stats: &SimulatorStats,
) -> Option<String> {
    // The final fare follows the drop-off within moments: look at the last few drop-offs.
    for ride in stats.completed_rides().iter().take(3) {
        let Some(view) = get::<RideView>(http, &format!("{api}/v1/rides/{ride}")).await else {
            continue;
        };
        if view.status != RideStatus::Completed {
            continue;
        }
        let (Some(quote), Some(fare)) = (&view.quote, &view.fare) else {
            continue;
        };
        return Some(format!(
            "  ride {ride} completed by {}: quoted {} (×{:.1}), fare {} for {:.1} km in {:.1} min",
            view.taxi_id.as_deref().unwrap_or("?"),
            dollars(quote.amount_cents),
            quote.multiplier,
            dollars(fare.amount_cents),
            fare.km,
            fare.minutes,
        ));
    }
    None
}

/// The run's final counts.
pub fn totals(stats: &SimulatorStats, highest: &Highest) -> String {
    format!(
        "final: {} rides requested, {} assigned, {} no driver, {} unanswered, {} completed · {} positions accepted, {} rejected, {} failed · {} weather reports · highest surge {}",
        stats.requested.load(Ordering::Relaxed),
        stats.assigned.load(Ordering::Relaxed),
        stats.no_driver.load(Ordering::Relaxed),
        stats.unanswered.load(Ordering::Relaxed),
        stats.completed.load(Ordering::Relaxed),
        stats.sent.load(Ordering::Relaxed),
        stats.rejected.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
        stats.weather.load(Ordering::Relaxed),
        if highest.multiplier > 0.0 {
            format!("×{:.1} in {}", highest.multiplier, highest.region)
        } else {
            "none seen".into()
        }
    )
}
