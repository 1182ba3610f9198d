//! GetTaxi in `casestudies up`: ride requests per minute as the knob (taxis and riders keep
//! driving and looking whatever it says), driver matching run twice (stop one, the other restores
//! the taxi ledger and the area index from their changelogs and keeps matching), and a view of
//! the regions with the highest surge and the latest rides: their taxi, ETA, quote and fare.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::Kafka;
use shared::live::{
    Knob, LiveCaseStudy, Map, MapArea, MapDot, MapLine, Panel, QueryParam, QuerySpec,
};
use shared::service::Process;
use shared::service::cli::Dirs;
use tokio_util::sync::CancellationToken;

use crate::app::{GetTaxi, Options};
use crate::demo::{describe, dollars};
use crate::events::TaxiStatus;
use crate::geo::{self, Point};
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
        let map = city_map(&surge, stats.as_deref().map(SimulatorStats::fleet));
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
                title: "Manhattan: surge per region, taxis, rides".into(),
                map: Some(map),
                ..Panel::default()
            },
            Panel {
                title: "Surge: the highest regions".into(),
                columns: vec!["region", "multiplier", "demand", "supply", "rain"],
                rows: regions,
                map: None,
            },
            Panel {
                title: "Rides: the latest requested, the latest dropped off".into(),
                columns: vec!["ride", "status", "taxi", "eta", "quote", "fare"],
                rows: rides,
                map: None,
            },
        ]
    }
}

fn lat_lon(p: Point) -> [f64; 2] {
    [p.lat, p.lon]
}

/// The map of the GetTaxi page: every region surge pricing knows, shaded by its multiplier
/// (from `GET /v1/surge`), the taxis where their driver apps last reported them, coloured by
/// status, and a line from each busy taxi to where its ride takes it (the pickup, or the
/// drop-off).
pub fn city_map(
    surge: &[RegionSurge],
    fleet: Option<Vec<(String, crate::simulator::SeenTaxi)>>,
) -> Map {
    let model = crate::surge_pricing::Model::default();
    let areas = surge
        .iter()
        .filter_map(|s| {
            let cell = geo::parse_region(&s.region).ok()?;
            Some(MapArea {
                boundary: geo::boundary(cell).into_iter().map(lat_lon).collect(),
                level: ((s.multiplier - model.min) / (model.max - model.min)).clamp(0.0, 1.0),
                label: format!(
                    "{} ×{:.1}: demand {:.0}, supply {}",
                    describe(&s.region),
                    s.multiplier,
                    s.demand,
                    s.supply
                ),
            })
        })
        .collect();
    let (mut dots, mut lines) = (Vec::new(), Vec::new());
    for (id, taxi) in fleet.unwrap_or_default() {
        let kind = match taxi.status {
            TaxiStatus::Available => "available",
            TaxiStatus::EnRoute => "en_route",
            TaxiStatus::OnRide => "on_ride",
            TaxiStatus::OffDuty => "off_duty",
        };
        if let Some(towards) = taxi.towards {
            lines.push(MapLine {
                from: lat_lon(taxi.at),
                to: lat_lon(towards),
                kind,
            });
        }
        dots.push(MapDot {
            at: lat_lon(taxi.at),
            kind,
            label: format!("{id}: {}", kind.replace('_', " ")),
        });
    }
    Map {
        areas,
        lines,
        dots,
        legend: [format!("×{:.1}", model.min), format!("×{:.1}", model.max)],
        kinds: vec![
            ("available", "available taxi"),
            ("en_route", "taxi driving to a pickup"),
            ("on_ride", "taxi with a rider, to the drop-off"),
            ("off_duty", "driver on a break"),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::SeenTaxi;

    #[test]
    fn the_map_shades_regions_by_surge_and_draws_busy_taxis_towards_their_ride() {
        let midtown = Point {
            lat: 40.7549,
            lon: -73.9840,
        };
        let region = geo::region(midtown).to_string();
        let surge = RegionSurge {
            region: region.clone(),
            smoothed: 2.0,
            multiplier: 2.0,
            riders: 10,
            requests: 2,
            supply: 3,
            demand: 14.0,
            rain_mm_h: 0.0,
            window_end: chrono::DateTime::from_timestamp_millis(0).unwrap_or_default(),
        };
        let pickup = Point {
            lat: 40.76,
            lon: -73.98,
        };
        let fleet = vec![
            (
                "taxi-0001".to_owned(),
                SeenTaxi {
                    at: midtown,
                    status: TaxiStatus::EnRoute,
                    towards: Some(pickup),
                },
            ),
            (
                "taxi-0002".to_owned(),
                SeenTaxi {
                    at: midtown,
                    status: TaxiStatus::Available,
                    towards: None,
                },
            ),
        ];
        let map = city_map(std::slice::from_ref(&surge), Some(fleet));
        assert_eq!(map.areas.len(), 1);
        assert_eq!(map.areas[0].level, 0.5, "×2.0 is halfway from ×1.0 to ×3.0");
        assert_eq!(map.areas[0].boundary.len(), 6);
        assert_eq!(map.dots.len(), 2);
        assert_eq!(map.lines.len(), 1);
        assert_eq!(map.lines[0].to, [pickup.lat, pickup.lon]);
        assert_eq!(map.lines[0].kind, "en_route");
        let json = serde_json::to_value(&map).unwrap();
        assert_eq!(json["kinds"][0][0], "available");
        let unknown = RegionSurge {
            region: "not-a-cell".into(),
            ..surge
        };
        assert!(city_map(&[unknown], None).areas.is_empty());
    }
}
