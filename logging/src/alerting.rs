//! **Alerting**: a service's error rate above a threshold over N consecutive minutes → an alert
//! firing on `alerts` (keyed by service); the first minute after that is not over the threshold
//! → the same alert resolved. While it stays firing nothing more is sent.
//!
//! **The rule** ([`Rule`], defaults in [`Rule::default`]): a minute is *over* when the service
//! logged at least `min_lines` lines in it (default 20: three errors among five lines are not
//! an incident) and its error rate ([`crate::events::LogRollup`]: lines of level `error` or
//! worse over all lines) is **above** `threshold` (default 0.05, 5 %). The alert fires when
//! `minutes` (default 3) consecutive minutes are over, and resolves at the first minute that is
//! not. A minute in which the service logged nothing is not over: it breaks a run and resolves a
//! firing alert (a service that stops logging entirely resolves when it logs again: no minute
//! is judged without a line after it).
//!
//! **Where it runs.** On the *final* log rollups, in the log aggregation's stage 2
//! ([`crate::log_aggregation`]): the task that owns a service closes its minutes in order, so
//! the rule sees each service's minutes once, in order, with the counts that will never change,
//! and its state ([`ServiceState`], one per service) is a store of that task — exact across
//! crashes like the rollups (an alert may be sent twice after a crash, with the same
//! `alert_id`). A separate reader of `log_rollups` (keyed `service|minute`, spread over
//! partitions) would have to re-key by service and re-order the minutes; this gets both for
//! free. Settings: `ALERT_ERROR_RATE`, `ALERT_MINUTES`, `ALERT_MIN_LINES`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::{Alert, AlertState, LogRollup};

const MINUTE_MS: i64 = 60_000;

/// The alert rule's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// A minute is over when its error rate is above this (0..1).
    pub threshold: f64,
    /// Consecutive minutes over the threshold that fire the alert.
    pub minutes: u32,
    /// Fewer lines than this in a minute: not over, whatever the rate.
    pub min_lines: u64,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            threshold: 0.05,
            minutes: 3,
            min_lines: 20,
        }
    }
}

impl Rule {
    /// The defaults, overridden by `ALERT_ERROR_RATE`, `ALERT_MINUTES`, `ALERT_MIN_LINES`.
    pub fn from_env() -> anyhow::Result<Rule> {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
        where
            T::Err: std::fmt::Display,
        {
            match std::env::var(name) {
                Ok(v) => v.parse().map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}")),
                Err(_) => Ok(default),
            }
        }
        let d = Rule::default();
        let rule = Rule {
            threshold: var("ALERT_ERROR_RATE", d.threshold)?,
            minutes: var("ALERT_MINUTES", d.minutes)?,
            min_lines: var("ALERT_MIN_LINES", d.min_lines)?,
        };
        anyhow::ensure!(rule.minutes >= 1, "ALERT_MINUTES must be at least 1");
        Ok(rule)
    }

    fn is_over(&self, lines: u64, error_rate: f64) -> bool {
        lines >= self.min_lines && error_rate > self.threshold
    }
}

/// What the rule remembers of a service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    /// The last minute judged.
    pub last_minute: Option<i64>,
    /// The first minute of the current run of minutes over the threshold, and its length.
    pub run_since: Option<i64>,
    pub run: u32,
    /// The run that fired, while the alert is firing.
    pub firing_since: Option<i64>,
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Rule {
    fn alert(
        &self,
        service: &str,
        state: AlertState,
        since: i64,
        minute: i64,
        lines: u64,
        error_rate: f64,
    ) -> Alert {
        Alert {
            alert_id: format!("{service}|{}", crate::events::minute_label(since)),
            service: service.to_owned(),
            state,
            rule: "error_rate".into(),
            since: at(since),
            minute: at(minute),
            error_rate,
            lines,
            threshold: self.threshold,
            minutes: self.minutes,
            min_lines: self.min_lines,
        }
    }

    /// Judges one minute of a service: its final rollup (minutes must come in order; an older
    /// or repeated minute changes nothing). Returns the alerts it sends (at most two: a
    /// resolution for a quiet gap before it and a firing).
    pub fn judge(&self, state: &mut ServiceState, rollup: &LogRollup) -> Vec<Alert> {
        let minute = rollup.minute.timestamp_millis();
        let service = rollup.service.as_str();
        let mut alerts = Vec::new();
        if state.last_minute.is_some_and(|last| minute <= last) {
            return alerts;
        }
        // Minutes without a line between the last one and this: not over.
        if let Some(last) = state.last_minute
            && minute > last + MINUTE_MS
        {
            let quiet = last + MINUTE_MS;
            state.run = 0;
            state.run_since = None;
            if let Some(since) = state.firing_since.take() {
                alerts.push(self.alert(service, AlertState::Resolved, since, quiet, 0, 0.0));
            }
        }
        state.last_minute = Some(minute);
        if self.is_over(rollup.lines, rollup.error_rate) {
            state.run += 1;
            let since = *state.run_since.get_or_insert(minute);
            if state.run >= self.minutes && state.firing_since.is_none() {
                state.firing_since = Some(since);
                alerts.push(self.alert(
                    service,
                    AlertState::Firing,
                    since,
                    minute,
                    rollup.lines,
                    rollup.error_rate,
                ));
            }
        } else {
            state.run = 0;
            state.run_since = None;
            if let Some(since) = state.firing_since.take() {
                alerts.push(self.alert(
                    service,
                    AlertState::Resolved,
                    since,
                    minute,
                    rollup.lines,
                    rollup.error_rate,
                ));
            }
        }
        alerts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_772_366_400_000; // 2026-03-01T12:00:00Z

    fn minute(n: i64, lines: u64, errors: u64) -> LogRollup {
        LogRollup {
            service: "checkout".into(),
            minute: at(T0 + n * MINUTE_MS),
            lines,
            errors,
            error_rate: if lines == 0 {
                0.0
            } else {
                errors as f64 / lines as f64
            },
            is_final: true,
            ..LogRollup::default()
        }
    }

    fn run(rule: &Rule, minutes: &[LogRollup]) -> Vec<(AlertState, i64, i64)> {
        let mut state = ServiceState::default();
        minutes
            .iter()
            .flat_map(|m| rule.judge(&mut state, m))
            .map(|a| {
                (
                    a.state,
                    (a.since.timestamp_millis() - T0) / MINUTE_MS,
                    (a.minute.timestamp_millis() - T0) / MINUTE_MS,
                )
            })
            .collect()
    }

    #[test]
    fn fires_once_after_n_minutes_over_and_resolves_at_the_first_minute_under() {
        let rule = Rule::default();
        let minutes = [
            minute(0, 100, 1),
            minute(1, 100, 10),
            minute(2, 100, 6),
            minute(3, 100, 50),
            minute(4, 100, 90),
            minute(5, 100, 5), // exactly 5 %: not above
            minute(6, 100, 0),
        ];
        assert_eq!(
            run(&rule, &minutes),
            [(AlertState::Firing, 1, 3), (AlertState::Resolved, 1, 5)]
        );
    }

    #[test]
    fn two_minutes_over_do_not_fire_and_few_lines_are_not_over() {
        let rule = Rule::default();
        let minutes = [
            minute(0, 100, 50),
            minute(1, 100, 50),
            minute(2, 19, 19), // under min_lines
            minute(3, 100, 50),
            minute(4, 100, 50),
        ];
        assert!(run(&rule, &minutes).is_empty());
    }

    #[test]
    fn a_quiet_minute_breaks_the_run_and_resolves() {
        let rule = Rule::default();
        let minutes = [
            minute(0, 100, 50),
            minute(1, 100, 50),
            minute(2, 100, 50),
            minute(5, 100, 50), // 3 and 4 logged nothing
            minute(5, 100, 50), // a repeat: nothing
        ];
        assert_eq!(
            run(&rule, &minutes),
            [(AlertState::Firing, 0, 2), (AlertState::Resolved, 0, 3)]
        );
    }
}
