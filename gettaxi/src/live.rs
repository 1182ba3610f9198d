//! GetTaxi in `casestudies up`: ride requests per minute as the knob (taxis and riders keep
//! driving and looking whatever it says), driver matching run twice (stop one, the other restores
//! the taxi ledger and the area index from their changelogs and keeps matching), and a view of
//! the regions with the highest surge and the latest rides: their taxi, ETA, quote and fare.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::Kafka;
use shared::live::{Knob, LiveCaseStudy, Panel, QueryParam, QuerySpec};
use shared::service::Process;
use shared::service::cli::Dirs;
use tokio_util::sync::CancellationToken;

use crate::app::{GetTaxi, Options};
use crate::demo::{describe, dollars};
use crate::ride_service::RideView;
use crate::simulator::{self, Hotspot, SimulatorOptions, SimulatorStats};
use crate::surge_pricing::RegionSurge;

/// How many regions and rides the view shows.
const SHOWN: usize = 6;

/// The running simulator's counters (the dashboard runs it in this process): the view reads the
/// latest ride ids from them — no API lists rides.
static STATS: Mutex<Option<Arc<SimulatorStats>>> = Mutex::new(None);

impl LiveCaseStudy for GetTaxi {
    const TITLE: &'static str = "GetTaxi";
    const SUMMARY: &'static str = "Taxis and riders report positions; the nearest available taxi for every ride request, surge per H3 region from supply, demand and rain, fares from each ride's trace.";
    const SPARE: Option<&'static str> = Some("driver-matching");

    fn knob() -> Knob {
        Knob::new("ride requests/min", 30.0, 0.0, 600.0)
    }

    fn queries() -> Vec<QuerySpec> {
        vec![
            QuerySpec {
                name: "taxi assignment",
                path: "/v1/taxis/{taxi}/assignment",
                params: vec![QueryParam {
                    name: "taxi",
                    example: simulator::taxi_id(1),
                }],
            },
            QuerySpec {
                name: "surge in a region",
                path: "/v1/regions/{region}/surge",
                params: vec![QueryParam {
                    name: "region",
                    example: Hotspot::Midtown.region(),
                }],
            },
            QuerySpec {
                name: "surge everywhere",
                path: "/v1/surge",
                params: Vec::new(),
            },
        ]
    }

    async fn simulate(
        _kafka: &Kafka,
        process: &Process,
        _dirs: &Dirs,
        _options: &Options,
        knob: Knob,
        stop: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
        let stats = Arc::new(SimulatorStats::default());
        *STATS.lock().expect("simulator stats") = Some(Arc::clone(&stats));
        let options = SimulatorOptions {
            url: process.url(),
            rate: Some(knob),
            ..SimulatorOptions::default()
        };
        Ok(tokio::spawn(simulator::run(options, stats, stop)))
    }

    async fn view(api: String, http: reqwest::Client) -> Vec<Panel> {
        let get = |path: String| {
            let request = http
                .get(format!("{api}{path}"))
                .timeout(Duration::from_secs(2));
            async move { request.send().await.ok()?.error_for_status().ok() }
        };
        let surge: Vec<RegionSurge> = match get("/v1/surge".into()).await {
            Some(response) => response.json().await.unwrap_or_default(),
            None => Vec::new(),
        };
        let regions = surge
            .iter()
            .take(SHOWN)
            .map(|s| {
                vec![
                    describe(&s.region),
                    format!("×{:.1}", s.multiplier),
                    format!("{:.0}", s.demand),
                    s.supply.to_string(),
                    if s.rain_mm_h > 0.0 {
                        format!("{:.0} mm/h", s.rain_mm_h)
                    } else {
                        "dry".into()
                    },
                ]
            })
            .collect();
        let stats = STATS.lock().expect("simulator stats").clone();
        let (requested, completed) = stats
            .map(|s| (s.recent_rides(), s.completed_rides()))
            .unwrap_or_default();
        // The newest requests (a taxi on its way, or none), then the newest drop-offs (fares).
        let mut shown: Vec<String> = requested.into_iter().take(SHOWN / 2).collect();
        for ride in completed {
            if shown.len() >= SHOWN {
                break;
            }
            if !shown.contains(&ride) {
                shown.push(ride);
            }
        }
        let mut rides = Vec::new();
        for ride in shown {
            let view = match get(format!("/v1/rides/{ride}")).await {
                Some(response) => response.json::<RideView>().await.ok(),
                None => None,
            };
            rides.push(match view {
                Some(v) => vec![
                    ride,
                    serde_json::to_value(v.status)
                        .ok()
                        .and_then(|s| s.as_str().map(|s| s.replace('_', " ")))
                        .unwrap_or_default(),
                    v.taxi_id.unwrap_or_default(),
                    v.eta_s
                        .map_or(String::new(), |s| format!("{}:{:02}", s / 60, s % 60)),
                    v.quote.map_or(String::new(), |q| {
                        format!("{} ×{:.1}", dollars(q.amount_cents), q.multiplier)
                    }),
                    v.fare.map_or(String::new(), |f| {
                        format!("{} {:?}", dollars(f.amount_cents), f.stage).to_lowercase()
                    }),
                ],
                None => vec![
                    ride,
                    "—".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            });
        }
        vec![
            Panel {
                title: "Surge: the highest regions".into(),
                columns: vec!["region", "multiplier", "demand", "supply", "rain"],
                rows: regions,
            },
            Panel {
                title: "Rides: the latest requested, the latest dropped off".into(),
                columns: vec!["ride", "status", "taxi", "eta", "quote", "fare"],
                rows: rides,
            },
        ]
    }
}
