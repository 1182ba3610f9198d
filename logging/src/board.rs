//! **The operators' board**: what an on-call screen shows, read from the pipeline's outputs —
//! the error rate of each service per minute (`log_rollups`), its p99 latency per minute
//! (`metric_rollups`, [`LATENCY_METRIC`]) and the alerts (`alerts`). The `dashboard` consumer
//! of those topics' slide: `logging demo` prints it, `casestudies up` draws it (`live.rs`).
//!
//! [`Board::follow`] reads every partition of the three topics from the beginning
//! ([`shared::follow`]: no consumer group, nothing committed) and keeps the newest
//! [`KEEP_MINUTES`] minutes: the latest rollup of a key is the answer (the final one once its
//! minute closed). A record that is not what its topic carries goes to the topic's `.dlq`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use shared::Kafka;
use shared::follow::{Progress, follow};
use tokio_util::sync::CancellationToken;

use crate::events::{Alert, AlertState, LogRollup, MetricRollup};
use crate::simulator::LATENCY_METRIC;
use crate::topics::{ALERTS, LOG_ROLLUPS, METRIC_ROLLUPS};

/// Minutes kept, counted back from the newest.
pub const KEEP_MINUTES: i64 = 30;
/// Alert events kept, the newest.
pub const KEEP_ALERTS: usize = 50;
/// The follower's name (its `group.id`, never joined; `dead_lettered_by`).
pub const APPLICATION: &str = "logging-board";

#[derive(Debug, Default)]
struct State {
    /// (minute ms, service) → its latest rollup.
    rollups: BTreeMap<(i64, String), LogRollup>,
    /// (minute ms, service) → series (one per host) → its latest latency rollup.
    latency: BTreeMap<(i64, String), BTreeMap<String, MetricRollup>>,
    /// Alert events, in the order read.
    alerts: Vec<Alert>,
}

/// One service's row: its newest minutes, newest first (as [`Snapshot::minutes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRow {
    pub service: String,
    pub rollups: Vec<Option<LogRollup>>,
    /// The largest p99 of its hosts, in seconds.
    pub p99: Vec<Option<f64>>,
    /// Its alert, while it fires.
    pub firing: Option<Alert>,
}

/// What the board shows now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The newest minutes (ms), newest first.
    pub minutes: Vec<i64>,
    pub services: Vec<ServiceRow>,
    /// Alert events, newest first.
    pub alerts: Vec<Alert>,
}

impl Snapshot {
    /// [`Snapshot::minutes`] as `HH:MM` (UTC), newest first.
    pub fn minute_labels(&self) -> Vec<String> {
        self.minutes
            .iter()
            .filter_map(|m| chrono::DateTime::from_timestamp_millis(*m))
            .map(|m| m.format("%H:%M").to_string())
            .collect()
    }
}

/// The board, kept current by [`Board::follow`].
#[derive(Debug, Default)]
pub struct Board {
    state: Mutex<State>,
    pub progress: [Arc<Progress>; 3],
}

impl Board {
    /// Follows `log_rollups`, `metric_rollups` and `alerts` until `stop`.
    pub async fn follow(kafka: &Kafka, stop: CancellationToken) -> anyhow::Result<Arc<Board>> {
        let board = Arc::new(Board::default());
        let b = Arc::clone(&board);
        follow(
            kafka,
            &kafka.topic(&LOG_ROLLUPS),
            APPLICATION,
            stop.clone(),
            Arc::clone(&board.progress[0]),
            move |m| b.apply_rollup(decode(m)?),
        )
        .await?;
        let b = Arc::clone(&board);
        follow(
            kafka,
            &kafka.topic(&METRIC_ROLLUPS),
            APPLICATION,
            stop.clone(),
            Arc::clone(&board.progress[1]),
            move |m| {
                b.apply_metric(decode(m)?);
                Ok(())
            },
        )
        .await?;
        let b = Arc::clone(&board);
        follow(
            kafka,
            &kafka.topic(&ALERTS),
            APPLICATION,
            stop,
            Arc::clone(&board.progress[2]),
            move |m| {
                b.apply_alert(decode(m)?);
                Ok(())
            },
        )
        .await?;
        Ok(board)
    }

    pub fn apply_rollup(&self, rollup: LogRollup) -> Result<(), String> {
        let minute = rollup.minute.timestamp_millis();
        let mut state = self.state.lock().expect("board");
        state
            .rollups
            .insert((minute, rollup.service.clone()), rollup);
        let newest = state.rollups.keys().next_back().map_or(minute, |k| k.0);
        state
            .rollups
            .retain(|k, _| k.0 > newest - KEEP_MINUTES * 60_000);
        Ok(())
    }

    /// Keeps the latency rollups ([`LATENCY_METRIC`] with a `service` label); ignores the rest.
    pub fn apply_metric(&self, rollup: MetricRollup) {
        if rollup.name != LATENCY_METRIC {
            return;
        }
        let Some(service) = rollup.labels.get("service").cloned() else {
            return;
        };
        let minute = rollup.minute.timestamp_millis();
        let mut state = self.state.lock().expect("board");
        state
            .latency
            .entry((minute, service))
            .or_default()
            .insert(rollup.series.clone(), rollup);
        let newest = state.latency.keys().next_back().map_or(minute, |k| k.0);
        state
            .latency
            .retain(|k, _| k.0 > newest - KEEP_MINUTES * 60_000);
    }

    pub fn apply_alert(&self, alert: Alert) {
        let mut state = self.state.lock().expect("board");
        // A crash may send an alert twice: the same id and state once.
        if state
            .alerts
            .iter()
            .any(|a| a.alert_id == alert.alert_id && a.state == alert.state)
        {
            return;
        }
        state.alerts.push(alert);
        let over = state.alerts.len().saturating_sub(KEEP_ALERTS);
        state.alerts.drain(..over);
    }

    /// The newest `minutes` minutes of every service, and the alerts.
    pub fn snapshot(&self, minutes: usize) -> Snapshot {
        let state = self.state.lock().expect("board");
        let mut all: Vec<i64> = state.rollups.keys().map(|k| k.0).collect();
        all.dedup();
        let shown: Vec<i64> = all.into_iter().rev().take(minutes).collect();
        let mut services: Vec<String> = state.rollups.keys().map(|k| k.1.clone()).collect();
        services.extend(state.latency.keys().map(|k| k.1.clone()));
        services.sort();
        services.dedup();
        // Firing: a firing alert not followed by its resolution.
        let mut firing: BTreeMap<&str, &Alert> = BTreeMap::new();
        for alert in &state.alerts {
            match alert.state {
                AlertState::Firing => {
                    firing.insert(&alert.service, alert);
                }
                AlertState::Resolved => {
                    if firing
                        .get(alert.service.as_str())
                        .is_some_and(|f| f.alert_id == alert.alert_id)
                    {
                        firing.remove(alert.service.as_str());
                    }
                }
            }
        }
        let services = services
            .into_iter()
            .map(|service| ServiceRow {
                rollups: shown
                    .iter()
                    .map(|m| state.rollups.get(&(*m, service.clone())).cloned())
                    .collect(),
                p99: shown
                    .iter()
                    .map(|m| {
                        state
                            .latency
                            .get(&(*m, service.clone()))
                            .and_then(|hosts| hosts.values().map(|r| r.p99).reduce(f64::max))
                    })
                    .collect(),
                firing: firing.get(service.as_str()).map(|a| (*a).clone()),
                service,
            })
            .collect();
        Snapshot {
            minutes: shown,
            services,
            alerts: state.alerts.iter().rev().cloned().collect(),
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    message: &rdkafka::message::OwnedMessage,
) -> Result<T, String> {
    use rdkafka::Message;
    let payload = message
        .payload()
        .ok_or_else(|| "a record without a value".to_owned())?;
    serde_json::from_slice(payload).map_err(|err| format!("not a {}: {err}", type_name::<T>()))
}

fn type_name<T>() -> &'static str {
    std::any::type_name::<T>()
        .rsplit("::")
        .next()
        .unwrap_or("record")
}

/// An error rate and its lines, `12.5 % of 812`, marked `(open)` while the minute is open.
pub fn rate_cell(rollup: Option<&LogRollup>) -> String {
    match rollup {
        None => "–".into(),
        Some(r) => format!(
            "{:.1} % of {}{}",
            r.error_rate * 100.0,
            r.lines,
            if r.is_final { "" } else { " (open)" }
        ),
    }
}

/// Seconds as milliseconds, `245 ms`.
pub fn ms_cell(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "–".into(), |s| format!("{:.0} ms", s * 1000.0))
}

/// An alert on one line: `FIRING payments: error rate 29.0 % (300 lines) at 12:03, over 5 % since 12:01`.
pub fn alert_line(alert: &Alert) -> String {
    match alert.state {
        AlertState::Firing => format!(
            "FIRING {}: error rate {:.1} % ({} lines) in {}, over {:.0} % for {} minutes since {}",
            alert.service,
            alert.error_rate * 100.0,
            alert.lines,
            alert.minute.format("%H:%M"),
            alert.threshold * 100.0,
            alert.minutes,
            alert.since.format("%H:%M")
        ),
        AlertState::Resolved => format!(
            "resolved {}: {:.1} % ({} lines) in {}; it fired for the run since {}",
            alert.service,
            alert.error_rate * 100.0,
            alert.lines,
            alert.minute.format("%H:%M"),
            alert.since.format("%H:%M")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(3_600 * 12 + 60 * minute, 0).unwrap()
    }

    fn rollup(service: &str, minute: i64, lines: u64, errors: u64, f: bool) -> LogRollup {
        LogRollup {
            service: service.into(),
            minute: at(minute),
            lines,
            errors,
            error_rate: errors as f64 / lines as f64,
            is_final: f,
            ..LogRollup::default()
        }
    }

    fn latency(service: &str, host: &str, minute: i64, p99: f64) -> MetricRollup {
        let labels: BTreeMap<String, String> = [
            ("service".to_owned(), service.to_owned()),
            ("source".to_owned(), format!("{service}/{host}")),
        ]
        .into();
        MetricRollup {
            series: crate::events::series_id(LATENCY_METRIC, &labels),
            name: LATENCY_METRIC.into(),
            labels,
            minute: at(minute),
            count: 10,
            sum: 1.0,
            min: 0.01,
            max: p99,
            mean: 0.1,
            p50: 0.1,
            p99,
            overflow: false,
            is_final: true,
        }
    }

    fn alert(service: &str, state: AlertState, since: i64, minute: i64) -> Alert {
        Alert {
            alert_id: format!("{service}|{since}"),
            service: service.into(),
            state,
            rule: "error_rate".into(),
            since: at(since),
            minute: at(minute),
            error_rate: 0.3,
            lines: 300,
            threshold: 0.05,
            minutes: 3,
            min_lines: 20,
        }
    }

    #[test]
    fn the_newest_minutes_per_service_the_slowest_host_and_what_fires() {
        let board = Board::default();
        for minute in 0..5 {
            board
                .apply_rollup(rollup("checkout", minute, 100, 1, minute < 4))
                .unwrap();
        }
        board
            .apply_rollup(rollup("payments", 3, 200, 60, true))
            .unwrap();
        // The open minute, then its final rollup: the latest wins.
        board
            .apply_rollup(rollup("payments", 4, 10, 5, false))
            .unwrap();
        board
            .apply_rollup(rollup("payments", 4, 100, 30, true))
            .unwrap();
        board.apply_metric(latency("payments", "pay-1", 4, 0.9));
        board.apply_metric(latency("payments", "pay-2", 4, 1.2));
        board.apply_metric(MetricRollup {
            name: "other".into(),
            ..latency("payments", "pay-1", 4, 9.0)
        });
        board.apply_alert(alert("payments", AlertState::Firing, 1, 3));
        board.apply_alert(alert("payments", AlertState::Firing, 1, 3));
        board.apply_alert(alert("checkout", AlertState::Firing, 0, 2));
        board.apply_alert(alert("checkout", AlertState::Resolved, 0, 3));

        let snapshot = board.snapshot(3);
        assert_eq!(
            snapshot.minutes,
            [at(4), at(3), at(2)].map(|t| t.timestamp_millis())
        );
        let [checkout, payments] = &snapshot.services[..] else {
            panic!("{snapshot:?}");
        };
        assert_eq!(checkout.service, "checkout");
        assert_eq!(
            checkout
                .rollups
                .iter()
                .map(|r| rate_cell(r.as_ref()))
                .collect::<Vec<_>>(),
            ["1.0 % of 100 (open)", "1.0 % of 100", "1.0 % of 100"]
        );
        assert_eq!(checkout.firing, None, "resolved");
        assert_eq!(rate_cell(payments.rollups[0].as_ref()), "30.0 % of 100");
        assert_eq!(payments.rollups[2], None);
        assert_eq!(payments.p99, [Some(1.2), None, None], "the slowest host");
        assert_eq!(ms_cell(payments.p99[0]), "1200 ms");
        assert_eq!(
            payments.firing.as_ref().map(|a| a.state),
            Some(AlertState::Firing)
        );
        assert_eq!(snapshot.alerts.len(), 3, "the repeat is shown once");
        assert_eq!(
            snapshot.alerts[0].state,
            AlertState::Resolved,
            "newest first"
        );
        assert!(
            alert_line(&snapshot.alerts[2]).starts_with("FIRING payments: error rate 30.0 %"),
            "{}",
            alert_line(&snapshot.alerts[2])
        );
    }

    #[test]
    fn old_minutes_and_alerts_are_forgotten() {
        let board = Board::default();
        board.apply_rollup(rollup("a", 0, 1, 0, true)).unwrap();
        board
            .apply_rollup(rollup("a", KEEP_MINUTES + 1, 1, 0, true))
            .unwrap();
        assert_eq!(board.snapshot(100).minutes.len(), 1);
        for i in 0..(KEEP_ALERTS as i64 + 5) {
            board.apply_alert(alert("a", AlertState::Firing, i, i));
        }
        assert_eq!(board.snapshot(1).alerts.len(), KEEP_ALERTS);
        assert_eq!(Board::default().snapshot(5), Snapshot::default());
    }
}
