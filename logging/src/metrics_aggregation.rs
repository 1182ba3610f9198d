//! **Metrics aggregation** (streams): per series per minute of the samples' time — count, sum,
//! min, max, mean exact, p50/p99 from a mergeable log-bucketed [`Sketch`] — with a cap on label
//! cardinality per metric name → `metric_rollups` (compacted, key `series|minute`).
//!
//! ```text
//! application_metrics (key application/host; ours or collectd JSON) ─▶ [per partition: per series per minute] ─▶ metric_rollups
//! ```
//!
//! **A series** is a metric name and its labels sorted by name ([`crate::events::series_id`]),
//! with one label added: `source`, the record's key (application/host). A series thus comes
//! from one key, so from one partition and one task, in order — the rollups need no re-keying
//! and stay exact (a sample's own labels keep whatever the collector put there; a `source`
//! label of its own is overwritten). A record without a key is dead-lettered.
//!
//! **Minutes and grace** as for the log rollups ([`crate::log_aggregation`]): tumbling minutes
//! of the sample's `time`; a task's stream time is the largest sample time it has seen; a minute
//! closes at its end + grace (`METRICS_AGGREGATION_GRACE`, default 2 min) and its rollups are
//! sent once more with `final: true`, then forgotten. A late sample (its minute closed) is
//! dropped and counted (`streams_late_records_dropped_total`). Rollups are sent after each batch
//! that changed them (`final: false`).
//!
//! **Cardinality cap** (`METRICS_SERIES_CAP`, default 1,000): per metric name, per partition,
//! per minute, at most that many series are kept. A sample of a further series is not stored as
//! its series: it is folded into the synthetic series `name{overflow="true",partition="<p>"}` of that minute (rollup `overflow: true`; count, min, max… of
//! every such sample together) and counted by `logging_metric_samples_over_cap_total`.
//!
//! **The sketch** ([`Sketch`]): DDSketch's log-bucketed histogram, hand-rolled. A value `v` with
//! `|v| ≥ 1e-9` goes to bucket `ceil(log_γ |v|)` (positive and negative values apart), γ =
//! (1 + α)/(1 − α), α = 1 %; smaller magnitudes count as 0. A bucket's estimate `2γ^i/(γ+1)` is
//! within α of every value in it, so **p50 and p99 are within 1 % (relative) of the sample of
//! rank ⌊q·(count − 1)⌋** (the lower of the two middle samples for p50 of an even count), and
//! clamped to [min, max]. Sketches merge by adding buckets. A series whose values span 1e-3 to
//! 1e6 uses at most ~1,040 buckets; a minute's sketch stores only the buckets it used.
//!
//! **Exact across kill -9**: the rollups are state of the streams runtime (`docs/STREAMS.md`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use shared::Kafka;
use shared::consumer::HandlerError;
use shared::streams::windowed::window_key;
use shared::streams::{self, ProcessorContext, StreamsConfig};

use crate::events::{MetricRollup, MetricSample, decode_samples, minute_label, minute_of};
use crate::topics::{APPLICATION_METRICS, METRIC_ROLLUPS};

pub const APPLICATION_ID: &str = "logging-metrics-aggregation";
/// `<minute (8 bytes)><series>` → [`Aggregate`].
pub const ROLLUPS: &str = "rollups";
/// `<minute><name>` → the number of series of that name kept in the minute.
pub const NAMES: &str = "names";
/// `clock` → [`Clock`].
pub const PROGRESS: &str = "progress";
const CLOCK: &[u8] = b"clock";

pub const DEFAULT_GRACE_MS: i64 = 120_000;
pub const DEFAULT_SERIES_CAP: u64 = 1_000;
/// The sketch's relative accuracy.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// Magnitudes below this count as 0.
pub const MIN_MAGNITUDE: f64 = 1e-9;

/// A mergeable log-bucketed quantile sketch (DDSketch, relative accuracy [`RELATIVE_ACCURACY`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    #[serde(rename = "p", default)]
    pub positive: BTreeMap<i32, u64>,
    #[serde(rename = "n", default)]
    pub negative: BTreeMap<i32, u64>,
    #[serde(rename = "z", default)]
    pub zero: u64,
}

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

impl Sketch {
    fn index(magnitude: f64) -> i32 {
        (magnitude.ln() / gamma().ln()).ceil() as i32
    }

    fn estimate(index: i32) -> f64 {
        let g = gamma();
        2.0 * g.powi(index) / (g + 1.0)
    }

    pub fn add(&mut self, value: f64) {
        let magnitude = value.abs();
        if magnitude < MIN_MAGNITUDE {
            self.zero += 1;
        } else if value > 0.0 {
            *self.positive.entry(Self::index(magnitude)).or_default() += 1;
        } else {
            *self.negative.entry(Self::index(magnitude)).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &Sketch) {
        for (i, n) in &other.positive {
            *self.positive.entry(*i).or_default() += n;
        }
        for (i, n) in &other.negative {
            *self.negative.entry(*i).or_default() += n;
        }
        self.zero += other.zero;
    }

    pub fn count(&self) -> u64 {
        self.zero + self.positive.values().sum::<u64>() + self.negative.values().sum::<u64>()
    }

    /// The value of rank ⌊q·(count − 1)⌋, within [`RELATIVE_ACCURACY`]; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        // Most negative first: the largest magnitudes of the negative side.
        for (i, n) in self.negative.iter().rev() {
            seen += n;
            if seen > rank {
                return Some(-Self::estimate(*i));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0);
        }
        for (i, n) in &self.positive {
            seen += n;
            if seen > rank {
                return Some(Self::estimate(*i));
            }
        }
        None
    }
}

/// One series' minute so far (the store's value).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub sketch: Sketch,
    #[serde(default)]
    pub overflow: bool,
}

impl Aggregate {
    pub fn add(&mut self, value: f64) {
        if self.count == 0 {
            (self.min, self.max) = (value, value);
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        self.sum += value;
        self.sketch.add(value);
    }

    pub fn rollup(&self, series: &str, minute: i64, is_final: bool) -> MetricRollup {
        let clamp = |v: Option<f64>| v.unwrap_or(0.0).clamp(self.min, self.max);
        MetricRollup {
            series: series.to_owned(),
            name: self.name.clone(),
            labels: self.labels.clone(),
            minute: DateTime::from_timestamp_millis(minute).unwrap_or_default(),
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
            mean: if self.count == 0 {
                0.0
            } else {
                self.sum / self.count as f64
            },
            p50: clamp(self.sketch.quantile(0.5)),
            p99: clamp(self.sketch.quantile(0.99)),
            overflow: self.overflow,
            is_final,
        }
    }
}

/// `series|minute`: the key of a rollup on `metric_rollups`.
pub fn metric_rollup_key(series: &str, minute: i64) -> String {
    format!("{series}|{}", minute_label(minute))
}

/// The aggregation's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    pub grace_ms: i64,
    /// Series per metric name per partition per minute.
    pub series_cap: u64,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            grace_ms: DEFAULT_GRACE_MS,
            series_cap: DEFAULT_SERIES_CAP,
        }
    }
}

impl Model {
    /// The defaults, overridden by `METRICS_AGGREGATION_GRACE` (`90s`) and `METRICS_SERIES_CAP`.
    pub fn from_env() -> anyhow::Result<Model> {
        let mut model = Model::default();
        if let Ok(v) = std::env::var("METRICS_AGGREGATION_GRACE") {
            model.grace_ms = humantime::parse_duration(&v)
                .map_err(|e| anyhow::anyhow!("METRICS_AGGREGATION_GRACE={v:?}: {e}"))?
                .as_millis() as i64;
        }
        if let Ok(v) = std::env::var("METRICS_SERIES_CAP") {
            model.series_cap = v
                .parse()
                .map_err(|e| anyhow::anyhow!("METRICS_SERIES_CAP={v:?}: {e}"))?;
        }
        Ok(model)
    }

    pub fn horizon(&self, stream_time: i64) -> i64 {
        minute_of(stream_time - self.grace_ms)
    }
}

/// A task's time: the largest sample time seen, and the horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    pub stream_time: i64,
    pub horizon: i64,
}

/// The samples of one record ([`decode_samples`]).
#[derive(Debug, Clone, Deserialize)]
pub struct Samples(pub Vec<MetricSample>);

#[derive(Debug, Clone)]
pub struct Topics {
    pub application_metrics: String,
    pub metric_rollups: String,
}

pub fn config(kafka: &Kafka) -> (StreamsConfig, Topics) {
    let application_metrics = kafka.topic(&APPLICATION_METRICS);
    let mut config = StreamsConfig::new(
        kafka,
        APPLICATION_ID,
        vec![application_metrics.clone()],
        &[ROLLUPS, NAMES, PROGRESS],
    );
    config.batch_linger = Duration::from_millis(100);
    let topics = Topics {
        application_metrics,
        metric_rollups: kafka.topic(&METRIC_ROLLUPS),
    };
    (config, topics)
}

/// `logging_metric_samples_over_cap_total`.
pub fn over_cap_counter() -> &'static prometheus_client::metrics::counter::Counter {
    static COUNTER: std::sync::OnceLock<prometheus_client::metrics::counter::Counter> =
        std::sync::OnceLock::new();
    COUNTER.get_or_init(|| {
        let counter = prometheus_client::metrics::counter::Counter::default();
        shared::metrics::register(
            "logging_metric_samples_over_cap",
            "Metric samples of series over the cardinality cap (folded into the name's overflow series)",
            counter.clone(),
        );
        counter
    })
}

fn decode_minute(key: &[u8]) -> i64 {
    (u64::from_be_bytes(key[..8].try_into().expect("8-byte window start")) ^ (1 << 63)) as i64
}

/// The processor.
pub struct MetricsAggregation {
    pub topics: Topics,
    pub model: Model,
    /// Per task: (minute, series) rollups this batch changed.
    dirty: HashMap<i32, BTreeSet<(i64, String)>>,
}

impl MetricsAggregation {
    pub fn new(topics: Topics, model: Model) -> Self {
        over_cap_counter();
        MetricsAggregation {
            topics,
            model,
            dirty: HashMap::new(),
        }
    }

    fn fold(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        source: &str,
        mut sample: MetricSample,
    ) -> anyhow::Result<()> {
        let at = sample.time.timestamp_millis();
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
            self.close(ctx, horizon)?;
        }
        let minute = minute_of(at);
        if minute < horizon {
            ctx.record_late_drop(1);
            return Ok(());
        }
        sample.labels.insert("source".to_owned(), source.to_owned());
        let mut series = sample.series();
        let key = window_key(minute, &series);
        let mut aggregate: Option<Aggregate> = ctx.get(ROLLUPS, &key)?;
        if aggregate.is_none() {
            let name_key = window_key(minute, &sample.name);
            let kept: u64 = ctx.get(NAMES, &name_key)?.unwrap_or(0);
            if kept >= self.model.series_cap {
                over_cap_counter().inc();
                let labels: BTreeMap<String, String> = [
                    ("overflow".to_owned(), "true".to_owned()),
                    ("partition".to_owned(), ctx.partition().to_string()),
                ]
                .into();
                series = crate::events::series_id(&sample.name, &labels);
                let key = window_key(minute, &series);
                let mut overflow: Aggregate =
                    ctx.get(ROLLUPS, &key)?.unwrap_or_else(|| Aggregate {
                        name: sample.name.clone(),
                        labels,
                        overflow: true,
                        ..Aggregate::default()
                    });
                overflow.add(sample.value);
                ctx.put(ROLLUPS, &key, &overflow)?;
                self.dirty
                    .entry(ctx.partition())
                    .or_default()
                    .insert((minute, series));
                return Ok(());
            }
            ctx.put(NAMES, &name_key, &(kept + 1))?;
            aggregate = Some(Aggregate {
                name: sample.name.clone(),
                labels: sample.labels.clone(),
                ..Aggregate::default()
            });
        }
        let mut aggregate = aggregate.expect("set above");
        aggregate.add(sample.value);
        ctx.put(ROLLUPS, &key, &aggregate)?;
        self.dirty
            .entry(ctx.partition())
            .or_default()
            .insert((minute, series));
        Ok(())
    }

    /// Sends every rollup of a minute before `horizon` as final, and forgets it.
    fn close(&mut self, ctx: &mut ProcessorContext<'_>, horizon: i64) -> anyhow::Result<()> {
        let (from, to) = (window_key(0, ""), window_key(horizon, ""));
        let closing: Vec<(Vec<u8>, Aggregate)> = ctx.range(ROLLUPS, &from, Some(&to))?;
        for (key, aggregate) in closing {
            let minute = decode_minute(&key);
            let series = String::from_utf8_lossy(&key[8..]).into_owned();
            let rollup = aggregate.rollup(&series, minute, true);
            ctx.emit(
                &self.topics.metric_rollups,
                &metric_rollup_key(&series, minute),
                &rollup,
            )?;
            ctx.delete(ROLLUPS, &key)?;
            if let Some(dirty) = self.dirty.get_mut(&ctx.partition()) {
                dirty.remove(&(minute, series));
            }
        }
        let names: Vec<(Vec<u8>, serde::de::IgnoredAny)> = ctx.range(NAMES, &from, Some(&to))?;
        for (key, _) in names {
            ctx.delete(NAMES, &key)?;
        }
        Ok(())
    }
}

impl streams::Processor for MetricsAggregation {
    type Input = Samples;

    fn decode(&self, _topic: &str, payload: &[u8]) -> Result<Samples, String> {
        decode_samples(payload).map(Samples)
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: Option<&str>,
        samples: Samples,
    ) -> Result<(), HandlerError> {
        let Some(source) = key else {
            return Err(HandlerError::Permanent(
                "a metric record needs its application/host key".into(),
            ));
        };
        let source = source.to_owned();
        for sample in samples.0 {
            self.fold(ctx, &source, sample)?;
        }
        Ok(())
    }

    /// Sends each open rollup changed in this batch once, with its values now.
    fn end_batch(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), HandlerError> {
        let Some(dirty) = self.dirty.remove(&ctx.partition()) else {
            return Ok(());
        };
        let emitted = (|| -> anyhow::Result<()> {
            for (minute, series) in &dirty {
                let Some(aggregate) =
                    ctx.get::<Aggregate>(ROLLUPS, &window_key(*minute, series))?
                else {
                    continue; // closed meanwhile: sent final
                };
                ctx.emit(
                    &self.topics.metric_rollups,
                    &metric_rollup_key(series, *minute),
                    &aggregate.rollup(series, *minute, false),
                )?;
            }
            Ok(())
        })();
        if let Err(err) = emitted {
            self.dirty.insert(ctx.partition(), dirty);
            return Err(err.into());
        }
        Ok(())
    }
}

/// The metrics aggregation on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "metrics-aggregation"
    }
    fn about(&self) -> &'static str {
        "Streams: application_metrics (ours or collectd JSON) → per series per minute: count, min, max, mean, p50/p99, label cardinality capped → metric_rollups."
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
        let processor = MetricsAggregation::new(topics, Model::from_env()?);
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
    fn quantiles_are_within_the_relative_accuracy() {
        let mut sketch = Sketch::default();
        let mut values: Vec<f64> = (1..=10_000).map(|i| (i as f64).powf(1.7) / 13.0).collect();
        values.push(-5.0);
        values.push(0.0);
        for v in &values {
            sketch.add(*v);
        }
        values.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0] {
            let truth = values[(q * (values.len() - 1) as f64).floor() as usize];
            let got = sketch.quantile(q).unwrap();
            assert!(
                (got - truth).abs() <= RELATIVE_ACCURACY * truth.abs() + 1e-12,
                "q {q}: {got} against {truth}"
            );
        }
    }

    #[test]
    fn sketches_merge_like_one() {
        let (mut a, mut b, mut all) = (Sketch::default(), Sketch::default(), Sketch::default());
        for i in 0..1000 {
            let v = i as f64 * 0.37;
            if i % 3 == 0 { &mut a } else { &mut b }.add(v);
            all.add(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
    }

    #[test]
    fn aggregates_are_exact_and_quantiles_clamped() {
        let mut aggregate = Aggregate::default();
        for v in [3.0, 1.0, 2.0, 10.0] {
            aggregate.add(v);
        }
        let r = aggregate.rollup("m", 0, false);
        assert_eq!(
            (r.count, r.sum, r.min, r.max, r.mean),
            (4, 16.0, 1.0, 10.0, 4.0)
        );
        assert!((r.p50 - 2.0).abs() <= 0.02, "{r:?}");
        assert!(r.p99 <= 10.0 && (r.p99 - 3.0).abs() <= 0.03, "{r:?}");
    }
}
