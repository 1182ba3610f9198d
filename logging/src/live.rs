//! Logging in `casestudies up`: log lines per second as the knob (checkout, search, auth and
//! payments on their hosts, shipped by our forwarder; payments has an incident — 30 % errors
//! for 4 minutes, 1 minute in and every 15 minutes — so the alert fires, then resolves), the log
//! aggregation run twice (stop one, the other restores the counts and the alert rule's state and
//! stays exact), a search box (`GET /v1/search`, the log sink's), and the [`Board`]: each
//! service's error rate and p99 latency for the newest minutes, and the alerts.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, TimeDelta, Utc};
use shared::Kafka;
use shared::live::{Knob, LiveCaseStudy, Panel, QueryParam, QuerySpec};
use shared::service::Process;
use shared::service::cli::Dirs;
use tokio_util::sync::CancellationToken;

use crate::app::Logging;
use crate::board::{Board, Snapshot, ms_cell, rate_cell};
use crate::events::AlertState;
use crate::simulator::{self, APPS, Incident, SimulationArgs, SimulatorOptions, SimulatorStats};

/// Minutes the tables show per service, newest first.
pub const MINUTES: usize = 5;
const MINUTE_COLUMNS: [&str; MINUTES] = ["newest", "−1 min", "−2 min", "−3 min", "−4 min"];

/// The board and the simulator's counters (the dashboard runs both in this process).
static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

struct Running {
    board: Arc<Board>,
    stats: Arc<SimulatorStats>,
    incident: Incident,
}

impl LiveCaseStudy for Logging {
    const TITLE: &'static str = "Logging";
    const SUMMARY: &'static str = "Applications on their hosts log as JSON, access logs and syslog; our forwarder ships the lines into Kafka; a parser normalizes them, streams applications roll logs and metrics up per minute, and an alert fires when a service's error rate stays above 5 % for 3 minutes.";
    const SPARE: Option<&'static str> = Some("log-aggregation");

    fn knob() -> Knob {
        Knob::new("lines/s", 40.0, 0.0, 5000.0)
    }

    fn queries() -> Vec<QuerySpec> {
        let now = Utc::now();
        let time = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        vec![QuerySpec {
            name: "search logs",
            path: "/v1/search?q={q}&from={from}&to={to}&limit={limit}",
            params: vec![
                QueryParam {
                    name: "q",
                    example: "declined".into(),
                },
                QueryParam {
                    name: "from",
                    example: time(now - TimeDelta::hours(1)),
                },
                QueryParam {
                    name: "to",
                    example: time(now + TimeDelta::days(1)),
                },
                QueryParam {
                    name: "limit",
                    example: "20".into(),
                },
            ],
        }]
    }

    async fn simulate(
        kafka: &Kafka,
        _process: &Process,
        dirs: &Dirs,
        _options: &crate::app::Options,
        knob: Knob,
        stop: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
        let board = Board::follow(kafka, stop.clone()).await?;
        let stats = Arc::new(SimulatorStats::default());
        let options = SimulatorOptions {
            knob: Some(knob),
            ..SimulationArgs::default().options(dirs.data.join("simulated-hosts"))?
        };
        *RUNNING.lock().expect("logging's board") = Some(Running {
            board,
            stats: Arc::clone(&stats),
            incident: options.incident.clone(),
        });
        Ok(tokio::spawn(simulator::simulate(
            kafka.clone(),
            options,
            stats,
            stop,
        )))
    }

    async fn view(_api: String, _http: reqwest::Client) -> Vec<Panel> {
        let running = RUNNING.lock().expect("logging's board");
        match running.as_ref() {
            Some(r) => panels(&r.board.snapshot(MINUTES), Some((&r.stats, &r.incident))),
            None => panels(&Snapshot::default(), None),
        }
    }
}

/// The page's tables: the board's `snapshot` and what the simulator wrote.
pub fn panels(snapshot: &Snapshot, simulator: Option<(&SimulatorStats, &Incident)>) -> Vec<Panel> {
    let minutes = snapshot.minute_labels();
    let span = if minutes.is_empty() {
        "no rollups yet".to_owned()
    } else {
        format!("newest first: {}", minutes.join(", "))
    };
    let padded = |cells: Vec<String>| {
        let mut cells = cells;
        cells.resize(MINUTES, "–".into());
        cells
    };
    let rates = snapshot
        .services
        .iter()
        .map(|row| {
            let mut cells = vec![row.service.clone()];
            cells.extend(padded(
                row.rollups.iter().map(|r| rate_cell(r.as_ref())).collect(),
            ));
            cells.push(match &row.firing {
                Some(alert) => format!("🔥 firing since {}", alert.since.format("%H:%M")),
                None => "ok".into(),
            });
            cells
        })
        .collect();
    let latencies = snapshot
        .services
        .iter()
        .map(|row| {
            let mut cells = vec![row.service.clone()];
            cells.extend(padded(row.p99.iter().map(|p| ms_cell(*p)).collect()));
            cells
        })
        .collect();
    let alerts = snapshot
        .alerts
        .iter()
        .map(|a| {
            vec![
                match a.state {
                    AlertState::Firing => "🔥 firing".to_owned(),
                    AlertState::Resolved => "resolved".to_owned(),
                },
                a.service.clone(),
                a.since.format("%H:%M").to_string(),
                a.minute.format("%H:%M").to_string(),
                format!("{:.1} %", a.error_rate * 100.0),
                a.lines.to_string(),
            ]
        })
        .collect();
    let with_minutes = |first: &'static str, last: Option<&'static str>| {
        let mut columns = vec![first];
        columns.extend(MINUTE_COLUMNS);
        columns.extend(last);
        columns
    };
    let mut out = vec![
        Panel {
            title: format!(
                "Error rate per service per minute (log_rollups; “open” until the minute closes, 2 min after its end) — {span}"
            ),
            columns: with_minutes("service", Some("alert")),
            rows: rates,
            map: None,
        },
        Panel {
            title: format!(
                "p99 latency per service per minute, its slowest host (metric_rollups, {}) — {span}",
                simulator::LATENCY_METRIC
            ),
            columns: with_minutes("service", None),
            rows: latencies,
            map: None,
        },
        Panel {
            title: "Alerts (alerts topic, newest first): error rate above 5 % with at least 20 lines for 3 minutes in a row fires; the first minute below resolves".into(),
            columns: vec!["state", "service", "since", "decided by", "error rate", "lines"],
            rows: alerts,
            map: None,
        },
    ];
    if let Some((stats, incident)) = simulator {
        out.push(Panel {
            title: format!(
                "Simulated applications — incident: {}{}",
                incident.describe(),
                if stats.incident_active() {
                    " (ON NOW)"
                } else {
                    ""
                }
            ),
            columns: vec![
                "application",
                "hosts",
                "writes",
                "lines written",
                "errors written",
            ],
            rows: APPS
                .iter()
                .zip(&stats.apps)
                .map(|(app, (_, s))| {
                    vec![
                        app.service.to_owned(),
                        app.hosts.join(", "),
                        simulator::describe(app.writes).to_owned(),
                        s.lines.load(Ordering::Relaxed).to_string(),
                        s.errors.load(Ordering::Relaxed).to_string(),
                    ]
                })
                .collect(),
            map: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Alert, LogRollup};
    use chrono::DateTime;

    #[test]
    fn the_view_shows_error_rates_latencies_alerts_and_the_simulator() {
        let at = |m: i64| DateTime::from_timestamp(3_600 * 12 + 60 * m, 0).unwrap();
        let board = Board::default();
        for (minute, errors) in [(0, 2), (1, 90)] {
            board
                .apply_rollup(LogRollup {
                    service: "payments".into(),
                    minute: at(minute),
                    lines: 300,
                    errors,
                    error_rate: errors as f64 / 300.0,
                    is_final: minute == 0,
                    ..LogRollup::default()
                })
                .unwrap();
        }
        board.apply_alert(Alert {
            alert_id: "payments|x".into(),
            service: "payments".into(),
            state: AlertState::Firing,
            rule: "error_rate".into(),
            since: at(-2),
            minute: at(0),
            error_rate: 0.3,
            lines: 300,
            threshold: 0.05,
            minutes: 3,
            min_lines: 20,
        });
        let stats = SimulatorStats::default();
        stats.apps[3].1.lines.store(7, Ordering::Relaxed);
        let incident = SimulationArgs::default()
            .options("d".into())
            .unwrap()
            .incident;
        let panels = panels(&board.snapshot(MINUTES), Some((&stats, &incident)));
        assert_eq!(panels.len(), 4);
        assert!(
            panels[0].title.contains("12:01, 12:00"),
            "{}",
            panels[0].title
        );
        assert_eq!(
            panels[0].rows,
            [vec![
                "payments",
                "30.0 % of 300 (open)",
                "0.7 % of 300",
                "–",
                "–",
                "–",
                "🔥 firing since 11:58"
            ]]
        );
        assert_eq!(panels[1].rows, [vec!["payments", "–", "–", "–", "–", "–"]]);
        assert_eq!(
            panels[2].rows,
            [vec![
                "🔥 firing",
                "payments",
                "11:58",
                "12:00",
                "30.0 %",
                "300"
            ]]
        );
        assert_eq!(
            panels[3].rows[3][..4],
            ["payments", "pay-1, pay-2", "RFC 5424 over syslog TCP", "7"]
        );
        assert!(
            panels
                .iter()
                .all(|p| p.rows.iter().all(|r| r.len() == p.columns.len()))
        );
    }

    #[test]
    fn before_anything_flows_the_tables_are_empty() {
        let panels = panels(&Snapshot::default(), None);
        assert_eq!(panels.len(), 3);
        assert!(panels.iter().all(|p| p.rows.is_empty()));
        assert!(panels[0].title.contains("no rollups yet"));
    }

    #[test]
    fn the_search_box_is_a_query_of_the_log_sink() {
        let queries = Logging::queries();
        assert_eq!(queries.len(), 1);
        assert!(queries[0].matches("/v1/search?q=declined&from=2026-03-01T12%3A00%3A00Z"));
        assert!(!queries[0].matches("/v1/other"));
    }
}
