//! **Log aggregation** (streams): per service per minute of event time, lines by level and the
//! error rate → `log_rollups` (compacted, key `service|minute`); the alert rule
//! ([`crate::alerting`]) on each final minute → `alerts`.
//!
//! ```text
//! parsed_logs (key application/host) ─▶ [stage 1: re-key by service] ─▶ …-by-service-repartition (key service)
//!     ─▶ [stage 2: per service per minute, dedup by event_id] ─▶ log_rollups (key service|minute)
//!                                                               └─▶ alerts (key service)
//! ```
//!
//! **A minute** is the tumbling window `[hh:mm:00, hh:mm+1:00)` of a line's `time` (UTC; the
//! time the line says, [`crate::events::LogRecord`]). The rollup ([`LogRollup`]) counts its
//! lines by level; *errors* are lines of level `error` or worse (error, critical, alert,
//! emergency), and the *error rate* is errors / lines.
//!
//! **Stage 1** re-keys: `parsed_logs` is keyed by application/host, so one service's hosts are
//! on different partitions; each line goes (slimmed to [`Line`]) to the repartition topic under
//! its service, so one task sees all of a service's lines.
//!
//! **Stage 2**, per task (partition of the repartition topic): its *stream time* is the largest
//! line time it has seen (kept in a store: the runtime's own stream time also moves with
//! `parsed_logs`' records). A minute **closes** when stream time reaches its end + the grace
//! period (`LOG_AGGREGATION_GRACE`, default 2 min). Closing sends the minute's rollups with
//! `final: true` and judges them with the alert rule. A line whose minute is closed is **late**:
//! not in the counts; it raises `late` of its minute's final rollup (sent again) for
//! [`LATE_RETENTION_MS`] after the close, and is only counted by the runtime's
//! `streams_late_records_dropped_total` after that. Lateness is per task, like Kafka Streams':
//! a line is late when its task has seen lines more than grace newer.
//!
//! **Emitted on change**: after each batch ([`streams::Processor::end_batch`]) every rollup the
//! batch changed is sent once with its counts now (`final: false` while open), then once more
//! `final: true` when its minute closes. `log_rollups` is compacted: the latest record per key
//! is the answer.
//!
//! **Exact across kill -9**: the rollups are state of the streams runtime (`docs/STREAMS.md`),
//! every input applied once. Stage 1's outputs are at-least-once — a batch re-run after a crash
//! sends its lines to the repartition topic again — so stage 2 remembers the `event_id`s of the
//! lines it counted (store `seen`, per minute, forgotten [`LATE_RETENTION_MS`] after the minute
//! closed) and skips a repeat. A rollup may be sent twice after a crash, with the same values.
//!
//! **Limits.** A task without new lines closes nothing: the last minutes of a service stay
//! `final: false` until some service on its task logs again (the counts are exact meanwhile).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::Kafka;
use shared::consumer::{HandlerError, PayloadKey};
use shared::streams::windowed::window_key;
use shared::streams::{self, ProcessorContext, StreamsConfig};

use crate::alerting::{Rule, ServiceState};
use crate::events::{Level, LogRecord, LogRollup, minute_of, rollup_key};
use crate::topics::{ALERTS, LOG_ROLLUPS, PARSED_LOGS};

pub const APPLICATION_ID: &str = "logging-log-aggregation";
/// `<minute (8 bytes)><service>` → [`Counts`] of a minute still open.
pub const OPEN: &str = "open";
/// `<minute><service>` → [`Counts`] of a closed minute, kept [`LATE_RETENTION_MS`] for late lines.
pub const CLOSED: &str = "closed";
/// `<minute><service>|<event_id>` → 1: lines counted (or counted late), for dropping repeats.
pub const SEEN: &str = "seen";
/// `clock` → [`Clock`]; `alert/<service>` → [`ServiceState`].
pub const PROGRESS: &str = "progress";
const CLOCK: &[u8] = b"clock";

pub const MINUTE_MS: i64 = 60_000;
/// The default grace period: 2 minutes.
pub const DEFAULT_GRACE_MS: i64 = 120_000;
/// How long after it closed a minute still takes late lines into its `late` count: 10 minutes.
pub const LATE_RETENTION_MS: i64 = 600_000;

/// A line as stage 1 sends it to stage 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub event_id: String,
    pub service: String,
    pub level: Level,
    pub time: DateTime<Utc>,
}

/// One input record, decoded by topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Line(Line),
    Record(Box<LogRecord>),
}

/// A task's time: the largest line time seen, and the horizon (every minute before it closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    pub stream_time: i64,
    pub horizon: i64,
}

/// A (service, minute)'s counts (the stores' value).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub levels: std::collections::BTreeMap<Level, u64>,
    pub late: u64,
}

impl Counts {
    pub fn rollup(&self, service: &str, minute: i64, is_final: bool) -> LogRollup {
        let lines: u64 = self.levels.values().sum();
        let errors: u64 = self
            .levels
            .iter()
            .filter(|(l, _)| l.is_error())
            .map(|(_, n)| n)
            .sum();
        LogRollup {
            service: service.to_owned(),
            minute: DateTime::from_timestamp_millis(minute).unwrap_or_default(),
            lines,
            errors,
            error_rate: if lines == 0 {
                0.0
            } else {
                errors as f64 / lines as f64
            },
            levels: self.levels.clone(),
            late: self.late,
            is_final,
        }
    }
}

/// The aggregation's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    pub grace_ms: i64,
    pub rule: Rule,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            grace_ms: DEFAULT_GRACE_MS,
            rule: Rule::default(),
        }
    }
}

impl Model {
    /// The defaults, overridden by `LOG_AGGREGATION_GRACE` (`90s`, `5m`) and the rule's settings.
    pub fn from_env() -> anyhow::Result<Model> {
        let grace_ms = match std::env::var("LOG_AGGREGATION_GRACE") {
            Ok(v) => humantime::parse_duration(&v)
                .map_err(|e| anyhow::anyhow!("LOG_AGGREGATION_GRACE={v:?}: {e}"))?
                .as_millis() as i64,
            Err(_) => DEFAULT_GRACE_MS,
        };
        Ok(Model {
            grace_ms,
            rule: Rule::from_env()?,
        })
    }

    /// Every minute before this one is closed at `stream_time`.
    pub fn horizon(&self, stream_time: i64) -> i64 {
        minute_of(stream_time - self.grace_ms)
    }
}

#[derive(Debug, Clone)]
pub struct Topics {
    pub parsed_logs: String,
    pub by_service: String,
    pub log_rollups: String,
    pub alerts: String,
}

pub fn config(kafka: &Kafka) -> (StreamsConfig, Topics) {
    let parsed_logs = kafka.topic(&PARSED_LOGS);
    let mut config = StreamsConfig::new(
        kafka,
        APPLICATION_ID,
        vec![parsed_logs.clone()],
        &[OPEN, CLOSED, SEEN, PROGRESS],
    );
    // The two inputs are independent: neither waits for the other.
    config.task_idle = streams::TaskIdle::Never;
    // Rollups go out once per changed key per batch: ten batches a second at most per task.
    config.batch_linger = Duration::from_millis(100);
    let by_service = config.repartition("by-service");
    let topics = Topics {
        parsed_logs,
        by_service,
        log_rollups: kafka.topic(&LOG_ROLLUPS),
        alerts: kafka.topic(&ALERTS),
    };
    (config, topics)
}

fn decode_minute(key: &[u8]) -> i64 {
    (u64::from_be_bytes(key[..8].try_into().expect("8-byte window start")) ^ (1 << 63)) as i64
}

/// The processor (both stages).
pub struct LogAggregation {
    pub topics: Topics,
    pub model: Model,
    /// Per task: (minute, service) rollups this batch changed.
    dirty: HashMap<i32, BTreeSet<(i64, String)>>,
}

impl LogAggregation {
    pub fn new(topics: Topics, model: Model) -> Self {
        LogAggregation {
            topics,
            model,
            dirty: HashMap::new(),
        }
    }

    fn count(&mut self, ctx: &mut ProcessorContext<'_>, line: Line) -> anyhow::Result<()> {
        let at = line.time.timestamp_millis();
        let minute = minute_of(at);
        let seen = window_key(minute, &format!("{}|{}", line.service, line.event_id));
        if ctx.get_raw(SEEN, &seen)?.is_some() {
            return Ok(()); // a repeat from stage 1 after a crash
        }
        let clock: Option<Clock> = ctx.get(PROGRESS, CLOCK)?;
        let stream_time = clock.map_or(at, |c| c.stream_time.max(at));
        let horizon = self.model.horizon(stream_time);
        if clock.is_none_or(|c| c.stream_time < stream_time) {
            ctx.put(
                PROGRESS,
                CLOCK,
                &Clock {
                    stream_time,
                    horizon,
                },
            )?;
        }
        if clock.is_none_or(|c| c.horizon < horizon) {
            // Minutes this line's time closes are closed without it.
            self.close(ctx, horizon)?;
        }
        let key = window_key(minute, &line.service);
        if minute < horizon {
            ctx.record_late_drop(1);
            if minute < horizon - LATE_RETENTION_MS {
                return Ok(()); // too late even for the late count: the metric only
            }
            let mut counts: Counts = ctx.get(CLOSED, &key)?.unwrap_or_default();
            counts.late += 1;
            ctx.put(CLOSED, &key, &counts)?;
        } else {
            let mut counts: Counts = ctx.get(OPEN, &key)?.unwrap_or_default();
            *counts.levels.entry(line.level).or_default() += 1;
            ctx.put(OPEN, &key, &counts)?;
        }
        ctx.put_raw(SEEN, &seen, Some(b"1".to_vec()))?;
        self.dirty
            .entry(ctx.partition())
            .or_default()
            .insert((minute, line.service));
        Ok(())
    }

    /// Closes every open minute before `horizon`: final rollups (sent by `end_batch`), judged by
    /// the alert rule in minute order; forgets what is past the late retention.
    fn close(&mut self, ctx: &mut ProcessorContext<'_>, horizon: i64) -> anyhow::Result<()> {
        let (from, to) = (window_key(0, ""), window_key(horizon, ""));
        let closing: Vec<(Vec<u8>, Counts)> = ctx.range(OPEN, &from, Some(&to))?;
        for (key, counts) in closing {
            let minute = decode_minute(&key);
            let service = String::from_utf8_lossy(&key[8..]).into_owned();
            ctx.delete(OPEN, &key)?;
            ctx.put(CLOSED, &key, &counts)?;
            let rollup = counts.rollup(&service, minute, true);
            let state_key = format!("alert/{service}");
            let mut state: ServiceState =
                ctx.get(PROGRESS, state_key.as_bytes())?.unwrap_or_default();
            for alert in self.model.rule.judge(&mut state, &rollup) {
                ctx.emit(&self.topics.alerts, &service, &alert)?;
            }
            ctx.put(PROGRESS, state_key.as_bytes(), &state)?;
            self.dirty
                .entry(ctx.partition())
                .or_default()
                .insert((minute, service));
        }
        let expired = window_key(horizon - LATE_RETENTION_MS, "");
        for store in [CLOSED, SEEN] {
            let old: Vec<(Vec<u8>, serde::de::IgnoredAny)> =
                ctx.range(store, &from, Some(&expired))?;
            for (key, _) in old {
                ctx.delete(store, &key)?;
            }
        }
        Ok(())
    }
}

impl streams::Processor for LogAggregation {
    type Input = Input;

    fn decode(&self, topic: &str, payload: &[u8]) -> Result<Input, String> {
        if topic == self.topics.parsed_logs {
            let record: LogRecord = shared::consumer::json(payload)?;
            record
                .validate()
                .map_err(|e| format!("invalid LogRecord: {e}"))?;
            Ok(Input::Record(Box::new(record)))
        } else if topic == self.topics.by_service {
            shared::consumer::json(payload).map(Input::Line)
        } else {
            Err(format!("not an input of {APPLICATION_ID}: {topic}"))
        }
    }

    fn key_of<'v>(&self, _topic: &str, input: &'v Input) -> Option<PayloadKey<'v>> {
        match input {
            Input::Line(line) => Some(PayloadKey::new("service", &line.service)),
            // Keyed by application/host; the line may name another service: re-keyed.
            Input::Record(_) => None,
        }
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        _key: Option<&str>,
        input: Input,
    ) -> Result<(), HandlerError> {
        match input {
            Input::Record(record) => {
                let line = Line {
                    event_id: record.event_id,
                    service: record.service,
                    level: record.level,
                    time: record.time,
                };
                ctx.emit(&self.topics.by_service, &line.service.clone(), &line)?;
            }
            Input::Line(line) => self.count(ctx, line)?,
        }
        Ok(())
    }

    /// Sends each rollup changed in this batch once, with its counts now.
    fn end_batch(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), HandlerError> {
        let Some(dirty) = self.dirty.remove(&ctx.partition()) else {
            return Ok(());
        };
        let emitted = (|| -> anyhow::Result<()> {
            for (minute, service) in &dirty {
                let key = window_key(*minute, service);
                let rollup = if let Some(counts) = ctx.get::<Counts>(OPEN, &key)? {
                    counts.rollup(service, *minute, false)
                } else if let Some(counts) = ctx.get::<Counts>(CLOSED, &key)? {
                    counts.rollup(service, *minute, true)
                } else {
                    continue;
                };
                ctx.emit(
                    &self.topics.log_rollups,
                    &rollup_key(service, *minute),
                    &rollup,
                )?;
            }
            Ok(())
        })();
        if let Err(err) = emitted {
            // Undone by the runtime: emitted with the next batch of this task.
            self.dirty.insert(ctx.partition(), dirty);
            return Err(err.into());
        }
        Ok(())
    }
}

/// The log aggregation on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "log-aggregation"
    }
    fn about(&self) -> &'static str {
        "Streams: parsed_logs → per service per minute: lines by level, error rate → log_rollups; the error-rate rule → alerts."
    }
    fn streams(&self, kafka: &Kafka) -> Vec<StreamsConfig> {
        vec![config(kafka).0]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        _resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let (config, topics) = config(&ctx.kafka);
        let processor = LogAggregation::new(topics, Model::from_env()?);
        let handle = streams::start(
            &ctx.kafka,
            ctx.state(config),
            processor,
            ctx.shutdown.clone(),
        )
        .await?;
        Ok(shared::service::Running::new().streams(Arc::new(handle)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_closes_at_its_end_plus_grace() {
        let model = Model::default();
        let t0 = 1_772_366_400_000; // 12:00:00
        assert_eq!(model.horizon(t0 + 3 * MINUTE_MS - 1), t0);
        assert_eq!(model.horizon(t0 + 3 * MINUTE_MS), t0 + MINUTE_MS);
    }

    #[test]
    fn errors_are_error_and_worse() {
        let mut counts = Counts::default();
        for (level, n) in [
            (Level::Info, 5),
            (Level::Warning, 2),
            (Level::Error, 2),
            (Level::Emergency, 1),
        ] {
            counts.levels.insert(level, n);
        }
        let rollup = counts.rollup("checkout", 0, false);
        assert_eq!((rollup.lines, rollup.errors), (10, 3));
        assert!((rollup.error_rate - 0.3).abs() < 1e-12);
        let json = serde_json::to_value(&rollup).unwrap();
        assert_eq!(json["levels"]["warning"], 2);
        assert_eq!(json["final"], false);
        let back: LogRollup = serde_json::from_value(json).unwrap();
        assert_eq!(back, rollup);
    }
}
