//! Ingestion in `casestudies up`: events per second as the knob (web, mobile and IoT producers,
//! a burst every minute, a few broken lines, some late IoT readings; 0 pauses), the speed layer
//! run twice (stop one, the other restores its windows and actor sets from the changelogs and the
//! counts stay exact), and a view of the speed layer's newest minutes — per source, then per
//! event type with distinct actors and whether the minute is final — beside what the batch
//! layer's S3 sink has written to files.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use shared::Kafka;
use shared::analytics::SinkStats;
use shared::live::{Knob, LiveCaseStudy, Panel, QueryParam, QuerySpec};
use shared::service::Process;
use shared::service::cli::Dirs;
use tokio_util::sync::CancellationToken;

use crate::app::{Ingestion, Options};
use crate::events::{RealtimeCount, Source};
use crate::realtime_api::Counts;
use crate::simulator::{self, SimulationArgs, SimulatorOptions, SimulatorStats};

/// How many minutes the per-minute table shows (newest first).
const MINUTES: usize = 6;
/// How far back the view asks for counts: the minutes shown, the grace period (2 min) and late
/// IoT readings (up to 4 min old).
const LOOK_BACK_MINUTES: i64 = 10;

/// The running simulator's counters and the S3 sink's (the dashboard runs both in this
/// process): the view's ingest and batch-layer table.
static STATS: Mutex<Option<Running>> = Mutex::new(None);

/// The simulator's counters, and the S3 sink's if it runs in this process.
type Running = (Arc<SimulatorStats>, Option<Arc<SinkStats>>);

impl LiveCaseStudy for Ingestion {
    const TITLE: &'static str = "Ingestion";
    const SUMMARY: &'static str = "Web, mobile and IoT producers send NDJSON batches; Kafka buffers them for a speed layer (per-minute counts and distinct actors, exact across partitions, final after the grace period) and a batch layer (an S3 sink writing Parquet files).";
    const SPARE: Option<&'static str> = Some("speed-layer");

    fn knob() -> Knob {
        Knob::new("events/s", 50.0, 0.0, 5000.0)
    }

    fn queries() -> Vec<QuerySpec> {
        vec![
            QuerySpec {
                name: "the newest minute and the newest final one",
                path: "/v1/realtime/latest",
                params: Vec::new(),
            },
            QuerySpec {
                name: "counts per minute from a time",
                path: "/v1/realtime/counts?from={from}",
                params: vec![QueryParam {
                    name: "from",
                    example: minute_start(Utc::now() - TimeDelta::minutes(5))
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                }],
            },
            QuerySpec {
                name: "one source's counts (the past hour)",
                path: "/v1/realtime/counts?source={source}",
                params: vec![QueryParam {
                    name: "source",
                    example: Source::Iot.to_string(),
                }],
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
        *STATS.lock().expect("simulator stats") =
            Some((Arc::clone(&stats), process.get::<SinkStats>()));
        let options = SimulatorOptions {
            knob: Some(knob),
            ..SimulationArgs::default().options(process.url())?
        };
        Ok(tokio::spawn(simulator::simulate(options, stats, stop)))
    }

    async fn view(api: String, http: reqwest::Client) -> Vec<Panel> {
        let from = minute_start(Utc::now() - TimeDelta::minutes(LOOK_BACK_MINUTES))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let counts = async {
            let response = http
                // `2026-03-01T12:24:00Z`: nothing to escape in a query string.
                .get(format!("{api}/v1/realtime/counts?from={from}"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()?
                .error_for_status()
                .ok()?;
            response.json::<Counts>().await.ok()
        };
        let counts = counts.await.map(|c| c.counts).unwrap_or_default();
        let totals = STATS
            .lock()
            .expect("simulator stats")
            .as_ref()
            .map(|(simulator, sink)| Totals::of(simulator, sink.as_deref()));
        panels(&counts, totals)
    }
}

/// The start of `at`'s minute.
fn minute_start(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(at)
}

/// What went in (the simulator's answers from the ingest API) and what the batch layer wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub accepted: u64,
    pub rejected: u64,
    pub failed_requests: u64,
    /// The S3 sink's counters, if it runs in this process.
    pub sink: Option<SinkTotals>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkTotals {
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    pub skipped: u64,
    pub dead_lettered: u64,
}

impl Totals {
    fn of(simulator: &SimulatorStats, sink: Option<&SinkStats>) -> Totals {
        use std::sync::atomic::Ordering::Relaxed;
        Totals {
            accepted: simulator.accepted(),
            rejected: simulator.rejected.load(Relaxed),
            failed_requests: simulator.failed_requests.load(Relaxed),
            sink: sink.map(|s| SinkTotals {
                rows: s.rows.get(),
                files: s.files.get(),
                bytes: s.bytes.get(),
                skipped: s.skipped.get(),
                dead_lettered: s.dead_lettered.get(),
            }),
        }
    }
}

/// The page's tables from the speed layer's `counts` (the latest minutes, in (minute, source,
/// event type) order, as `GET /v1/realtime/counts` answers) and the ingest and sink `totals`.
pub fn panels(counts: &[RealtimeCount], totals: Option<Totals>) -> Vec<Panel> {
    // Per minute: events per source, and whether every row is final.
    let mut minutes: BTreeMap<DateTime<Utc>, ([u64; 3], bool)> = BTreeMap::new();
    for row in counts {
        let (per_source, is_final) = minutes.entry(row.minute).or_insert(([0; 3], true));
        let i = Source::ALL
            .iter()
            .position(|s| *s == row.source)
            .unwrap_or(0);
        per_source[i] += row.count;
        *is_final &= row.is_final;
    }
    let per_minute = minutes
        .iter()
        .rev()
        .take(MINUTES)
        .map(|(minute, (per_source, is_final))| {
            let mut row = vec![minute.format("%H:%M").to_string()];
            row.extend(per_source.iter().map(u64::to_string));
            row.push(per_source.iter().sum::<u64>().to_string());
            row.push(final_cell(*is_final));
            row
        })
        .collect();
    let newest = minutes.keys().next_back().copied();
    let by_type = match newest {
        Some(newest) => Panel {
            title: format!(
                "The newest minute, {} UTC: per source and event type",
                newest.format("%H:%M")
            ),
            columns: vec![
                "source",
                "event type",
                "events",
                "distinct actors",
                "partitions",
                "final",
            ],
            rows: counts
                .iter()
                .filter(|r| r.minute == newest)
                .map(|r| {
                    vec![
                        r.source.to_string(),
                        r.event_type.clone(),
                        r.count.to_string(),
                        r.distinct_users.to_string(),
                        r.partitions.to_string(),
                        final_cell(r.is_final),
                    ]
                })
                .collect(),
            map: None,
        },
        None => Panel {
            title: "The newest minute: no counts yet (they come once events flow)".into(),
            columns: vec!["source", "event type", "events", "distinct actors"],
            ..Panel::default()
        },
    };
    let mut columns = vec!["events accepted", "lines rejected", "failed requests"];
    let mut row = Vec::new();
    if let Some(totals) = &totals {
        row.extend(
            [totals.accepted, totals.rejected, totals.failed_requests].map(|n| n.to_string()),
        );
        if let Some(sink) = &totals.sink {
            columns.extend([
                "rows in files",
                "files",
                "MiB written",
                "skipped (already in a file)",
                "dead letters",
            ]);
            row.extend([
                sink.rows.to_string(),
                sink.files.to_string(),
                format!("{:.1}", sink.bytes as f64 / (1024.0 * 1024.0)),
                sink.skipped.to_string(),
                sink.dead_lettered.to_string(),
            ]);
        }
    }
    vec![
        Panel {
            title: "Speed layer: events per minute of event time (final once every partition of raw_events closed it, after the grace period)".into(),
            columns: vec!["minute", "web", "mobile", "iot", "events", "final"],
            rows: per_minute,
            map: None,
        },
        by_type,
        Panel {
            title: "In through the ingest API; out to files through the batch layer's S3 sink (a file per partition every 30 s, rotate.schedule.interval.ms, or 10,000 rows, flush.size)".into(),
            columns,
            rows: if row.is_empty() { Vec::new() } else { vec![row] },
            map: None,
        },
    ]
}

fn final_cell(is_final: bool) -> String {
    if is_final { "final" } else { "open" }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(minute: i64, source: Source, event_type: &str, count: u64, f: bool) -> RealtimeCount {
        RealtimeCount {
            minute: DateTime::from_timestamp(3_600 * 15 + 60 * minute, 0).unwrap(),
            source,
            event_type: event_type.into(),
            count,
            distinct_users: count / 2,
            partitions: 3,
            is_final: f,
        }
    }

    #[test]
    fn the_view_shows_minutes_per_source_the_newest_per_event_type_and_the_sink() {
        let counts = vec![
            row(1, Source::Web, "click", 10, true),
            row(1, Source::Iot, "reading", 4, true),
            row(2, Source::Web, "click", 7, true),
            row(2, Source::Mobile, "tap", 5, false),
            row(2, Source::Iot, "reading", 1, false),
        ];
        let totals = Totals {
            accepted: 27,
            rejected: 1,
            failed_requests: 0,
            sink: Some(SinkTotals {
                rows: 20,
                files: 2,
                bytes: 3 * 1024 * 1024 / 2,
                skipped: 0,
                dead_lettered: 0,
            }),
        };
        let panels = panels(&counts, Some(totals));
        assert_eq!(panels.len(), 3);
        assert_eq!(
            panels[0].rows,
            [
                vec!["15:02", "7", "5", "1", "13", "open"],
                vec!["15:01", "10", "0", "4", "14", "final"],
            ],
            "newest first; a minute is final when all its rows are"
        );
        assert!(panels[1].title.contains("15:02 UTC"), "{}", panels[1].title);
        assert_eq!(
            panels[1].rows,
            [
                vec!["web", "click", "7", "3", "3", "final"],
                vec!["mobile", "tap", "5", "2", "3", "open"],
                vec!["iot", "reading", "1", "0", "3", "open"],
            ]
        );
        assert_eq!(
            panels[2].rows,
            [vec!["27", "1", "0", "20", "2", "1.5", "0", "0"]]
        );
        assert!(
            panels
                .iter()
                .all(|p| p.rows.iter().all(|r| r.len() == p.columns.len()))
        );
    }

    #[test]
    fn only_the_newest_minutes_are_shown() {
        let counts: Vec<RealtimeCount> = (0..10)
            .map(|m| row(m, Source::Web, "click", 1, false))
            .collect();
        let panels = panels(&counts, None);
        assert_eq!(panels[0].rows.len(), MINUTES);
        assert_eq!(panels[0].rows[0][0], "15:09");
        assert_eq!(panels[1].rows.len(), 1);
    }

    #[test]
    fn before_any_event_the_tables_are_empty() {
        let panels = panels(&[], None);
        assert!(panels.iter().all(|p| p.rows.is_empty()));
        assert!(panels[1].title.contains("no counts yet"));
        let without_sink = super::panels(
            &[],
            Some(Totals {
                accepted: 3,
                ..Totals::default()
            }),
        );
        assert_eq!(without_sink[2].rows, [vec!["3", "0", "0"]]);
        assert_eq!(without_sink[2].columns.len(), 3);
    }

    #[test]
    fn minutes_start_on_the_minute() {
        let at = DateTime::parse_from_rfc3339("2026-03-01T12:34:56.789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            minute_start(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "2026-03-01T12:34:00Z"
        );
    }
}
