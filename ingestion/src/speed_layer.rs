//! **Speed layer** (streams): per minute of event time, per source and event type, how many
//! events and how many distinct actors — exact, in two stages, to `realtime_counts`.
//!
//! ```text
//! raw_events (key actor, 32 partitions) ─▶ [stage 1, per partition: minute slices + the actors seen]
//!     ─▶ …-partials-repartition (key minute|source|event_type; plus horizon ticks to every partition)
//!     ─▶ [stage 2: the sum of the partitions' partials] ─▶ realtime_counts (key minute|source|event_type)
//! ```
//!
//! **A minute** is the tumbling window `[hh:mm:00.000, hh:mm+1:00.000)` of the event's
//! `timestamp` (UTC, milliseconds; the record timestamp must equal it: [`check_record`]).
//! `count` is the number of valid events in it, `distinct_users` the number of distinct actors
//! among them (users for web and mobile, devices for iot; per source and event type).
//!
//! **Grace.** Stream time is, per partition of `raw_events`, the largest event time seen. A
//! partition *closes* a minute when its stream time reaches the minute's end + the grace period
//! (`--grace` / `SPEED_GRACE`, default 2 min). An event for a closed minute is **late**: dropped
//! and counted (`streams_late_records_dropped_total`). Lateness is per partition, like Kafka
//! Streams' stream time: an event is late when its own partition has seen events more than grace
//! newer — so a record's fate depends only on the records before it on its partition, and a
//! replay decides the same way.
//!
//! **Stage 1** (each task, one partition of `raw_events`): a slice per (minute, source, event
//! type) with `count` and `distinct` (an actor counts once: the set of actors seen is kept in
//! the `seen` store), both in RocksDB with changelogs. After each batch it sends the slices the
//! batch changed to stage 2 as partials (cumulative values, not deltas: a replayed partial
//! changes nothing). When the partition closes a minute it sends the minute's slices once more,
//! deletes them and their actors, and sends a **horizon tick** — "every minute before H is
//! closed on partition p" — to every partition of the repartition topic.
//!
//! **Why summing is exact.** `raw_events` is keyed by actor, so all of an actor's events are on
//! one partition: the actors of a minute on different partitions are disjoint sets, and the
//! distinct actors of the minute are the *sum* of the partitions' distinct counts. (A record
//! under another key than its actor is dead-lettered, never counted where the actor is not.)
//!
//! **Stage 2** (the task that owns `minute|source|event_type` on the repartition topic) keeps the
//! latest partial of each partition and publishes their sum after each batch (`final: false`).
//! It knows when all partials have arrived from the ticks: the partials of a partition precede
//! its tick on every repartition partition (one producer, one order), so once **all 32**
//! partitions' horizons are past a minute, no partial for it can come. It then publishes the
//! minute's counts with `final: true`, once, and forgets them. `realtime_counts` is compacted:
//! the latest record per key is the answer.
//!
//! **Limits.** A partition of `raw_events` with no traffic closes nothing, so no minute becomes
//! final until it gets events (the counts are published and exact meanwhile; only the flag
//! waits) — as with Kafka Streams' suppression, time advances only with records. The partition
//! count comes from `raw_events`' spec ([`Model::partitions`]): a topic with more partitions
//! would finalize too early, one with fewer never.
//!
//! **Exactness under kill -9** is the runtime's ([`shared::streams`], `docs/STREAMS.md`): state
//! is exactly the fold of the inputs; outputs may repeat after a crash, with the same values
//! (cumulative partials; stage 2 keeps the larger of a partition's repeated partials).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shared::Kafka;
use shared::consumer::{HandlerError, PayloadKey};
use shared::streams::windowed::window_key;
use shared::streams::{self, ProcessorContext, StreamsConfig};

use crate::events::{RawEvent, RealtimeCount, Source, check_record, count_key};
use crate::topics::{RAW_EVENTS, REALTIME_COUNTS};

pub const APPLICATION_ID: &str = "ingestion-speed-layer";
/// Stage 1: `<minute (8 bytes)><source>|<event type>` → [`Slice`].
pub const SLICES: &str = "slices";
/// Stage 1: `<minute><source>|<event type>|<actor>` → 1, for each actor seen in the minute.
pub const SEEN: &str = "seen";
/// [`CLOCK`] (stage 1), `finalized` (stage 2: every minute before it was published final).
pub const PROGRESS: &str = "progress";
/// Stage 1's [`Clock`] in [`PROGRESS`].
const CLOCK: &[u8] = b"clock";
/// Stage 2: `<minute><source>|<event type>/<partition, 5 digits>` → [`Slice`].
pub const PARTIALS: &str = "partials";
/// Stage 2: `<partition, 5 digits>` → the horizon that partition of `raw_events` reported.
pub const HORIZONS: &str = "horizons";

/// One minute, in milliseconds.
pub const MINUTE_MS: i64 = 60_000;

/// The start of the minute `at_ms` is in.
pub fn minute_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// The speed layer's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    /// How long after a minute's end (in stream time) its events still count.
    pub grace_ms: i64,
    /// Partitions of `raw_events`: how many horizons stage 2 waits for.
    pub partitions: i32,
}

impl Model {
    pub fn new(grace_ms: i64) -> Self {
        Model {
            grace_ms,
            partitions: RAW_EVENTS.partitions,
        }
    }

    /// Every minute before this one is closed at `stream_time_ms`: minute m is closed when
    /// `stream time ≥ m + 1 min + grace`.
    pub fn horizon(&self, stream_time_ms: i64) -> i64 {
        minute_of(stream_time_ms - self.grace_ms)
    }
}

impl Default for Model {
    fn default() -> Self {
        Model::new(120_000)
    }
}

/// Stage 1's time on one partition of `raw_events`: the largest event time seen there, and the
/// horizon it implies (every minute before it is closed). Kept in the store rather than taken
/// from the runtime's stream time, which also advances with the repartition topic's records —
/// partials and ticks stamped with *other* partitions' event times — and would make lateness
/// depend on other partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    #[serde(rename = "t")]
    pub stream_time: i64,
    #[serde(rename = "h")]
    pub horizon: i64,
}

/// Events and distinct actors of one (minute, source, event type) on one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    #[serde(rename = "c")]
    pub count: u64,
    #[serde(rename = "d")]
    pub distinct: u64,
}

/// What stage 1 sends to stage 2 (on the repartition topic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToStage2 {
    /// A partition's slice of one (minute, source, event type), under `key` =
    /// `minute|source|event_type`.
    Partial {
        key: String,
        minute: i64,
        source: Source,
        event_type: String,
        partition: i32,
        count: u64,
        distinct: u64,
    },
    /// Every minute before `horizon` is closed on `partition`; sent under `key`, one of
    /// [`tick_keys`], to reach every partition.
    Horizon {
        key: String,
        partition: i32,
        horizon: i64,
    },
}

/// One input record, decoded by topic ([`streams::Processor::decode`]; the derive only
/// satisfies the runtime's bound).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Raw(RawEvent),
    Stage2(ToStage2),
}

/// One key per partition of a topic with `partitions` partitions (`tick-<n>`, the first n that
/// lands there): a tick sent under each reaches every partition.
pub fn tick_keys(partitions: i32) -> Vec<String> {
    let mut keys: Vec<Option<String>> = vec![None; partitions.max(1) as usize];
    let mut n = 0u64;
    while keys.iter().any(Option::is_none) {
        let key = format!("tick-{n}");
        let p = shared::producer::partition_for_key(key.as_bytes(), partitions) as usize;
        keys[p].get_or_insert(key);
        n += 1;
    }
    keys.into_iter().flatten().collect()
}

#[derive(Debug, Clone)]
pub struct Topics {
    pub raw_events: String,
    pub partials: String,
    pub realtime_counts: String,
}

pub fn config(kafka: &Kafka) -> (StreamsConfig, Topics) {
    let raw_events = kafka.topic(&RAW_EVENTS);
    let mut config = StreamsConfig::new(
        kafka,
        APPLICATION_ID,
        vec![raw_events.clone()],
        &[SLICES, SEEN, PROGRESS, PARTIALS, HORIZONS],
    );
    // The two inputs are independent (no join): neither waits for the other.
    config.task_idle = streams::TaskIdle::Never;
    // Partials and counts go out once per changed key per batch: a short linger makes a
    // batch, and so the updates, ten a second at most per task.
    config.batch_linger = std::time::Duration::from_millis(100);
    let partials = config.repartition("partials");
    let topics = Topics {
        raw_events,
        partials,
        realtime_counts: kafka.topic(&REALTIME_COUNTS),
    };
    (config, topics)
}

/// `source|event_type` of a store key's group, split back.
fn split_group(group: &str) -> Option<(Source, &str)> {
    let (source, event_type) = group.split_once('|')?;
    Some((source.parse().ok()?, event_type))
}

fn partition_label(partition: i32) -> String {
    format!("{partition:05}")
}

/// The sum of a (minute, source, event type)'s partials: count, distinct actors, partitions.
pub fn sum(partials: impl IntoIterator<Item = Slice>) -> (u64, u64, u32) {
    partials.into_iter().fold((0, 0, 0), |(c, d, n), s| {
        (c + s.count, d + s.distinct, n + 1)
    })
}

/// The processor (both stages).
pub struct SpeedLayer {
    pub topics: Topics,
    pub model: Model,
    ticks: Vec<String>,
    /// Per task: the (minute, `source|event_type`) slices this batch changed (stage 1)…
    changed_slices: HashMap<i32, BTreeSet<(i64, String)>>,
    /// …and the counts whose partials changed (stage 2).
    changed_counts: HashMap<i32, BTreeSet<(i64, String)>>,
}

impl SpeedLayer {
    pub fn new(topics: Topics, model: Model) -> Self {
        SpeedLayer {
            topics,
            ticks: tick_keys(model.partitions),
            model,
            changed_slices: HashMap::new(),
            changed_counts: HashMap::new(),
        }
    }

    /// Stage 1: one event.
    fn count(&mut self, ctx: &mut ProcessorContext<'_>, event: RawEvent) -> anyhow::Result<()> {
        let at = event.timestamp.timestamp_millis();
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
            // Minutes this event's stream time closes are sent without it.
            self.close_minutes(ctx, horizon)?;
        }
        let minute = minute_of(at);
        if minute < horizon {
            ctx.record_late_drop(1);
            return Ok(());
        }
        let group = format!("{}|{}", event.source, event.event_type);
        let seen = window_key(minute, &format!("{group}|{}", event.actor));
        let new_actor = ctx.get_raw(SEEN, &seen)?.is_none();
        if new_actor {
            ctx.put_raw(SEEN, &seen, Some(b"1".to_vec()))?;
        }
        let key = window_key(minute, &group);
        let mut slice: Slice = ctx.get(SLICES, &key)?.unwrap_or_default();
        slice.count += 1;
        slice.distinct += u64::from(new_actor);
        ctx.put(SLICES, &key, &slice)?;
        self.changed_slices
            .entry(ctx.partition())
            .or_default()
            .insert((minute, group));
        Ok(())
    }

    fn send_partial(
        &self,
        ctx: &mut ProcessorContext<'_>,
        minute: i64,
        group: &str,
        slice: Slice,
    ) -> anyhow::Result<()> {
        let Some((source, event_type)) = split_group(group) else {
            anyhow::bail!("malformed slice key {group:?}");
        };
        let key = count_key(minute, source, event_type);
        let partial = ToStage2::Partial {
            key: key.clone(),
            minute,
            source,
            event_type: event_type.to_owned(),
            partition: ctx.partition(),
            count: slice.count,
            distinct: slice.distinct,
        };
        ctx.emit(&self.topics.partials, &key, &partial)
    }

    /// Stage 1: sends and forgets every minute before `horizon` (closed now), then tells every
    /// stage-2 partition the new horizon.
    fn close_minutes(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        horizon: i64,
    ) -> anyhow::Result<()> {
        let (from, to) = (window_key(i64::MIN / 2, ""), window_key(horizon, ""));
        let closing: Vec<(Vec<u8>, Slice)> = ctx.range(SLICES, &from, Some(&to))?;
        for (key, slice) in closing {
            let minute = decode_minute(&key);
            let group = String::from_utf8_lossy(&key[8..]).into_owned();
            self.send_partial(ctx, minute, &group, slice)?;
            ctx.delete(SLICES, &key)?;
        }
        let seen: Vec<(Vec<u8>, serde::de::IgnoredAny)> = ctx.range(SEEN, &from, Some(&to))?;
        for (key, _) in seen {
            ctx.delete(SEEN, &key)?;
        }
        for key in &self.ticks {
            let tick = ToStage2::Horizon {
                key: key.clone(),
                partition: ctx.partition(),
                horizon,
            };
            ctx.emit(&self.topics.partials, key, &tick)?;
        }
        Ok(())
    }

    /// Stage 2: a partition's partial or horizon.
    fn merge(&mut self, ctx: &mut ProcessorContext<'_>, message: ToStage2) -> anyhow::Result<()> {
        let finalized: Option<i64> = ctx.get(PROGRESS, b"finalized")?;
        match message {
            ToStage2::Partial {
                minute,
                source,
                event_type,
                partition,
                count,
                distinct,
                ..
            } => {
                if finalized.is_some_and(|f| minute < f) {
                    // A repeat (the partition re-sent a batch after a crash): its final value
                    // is already in the published count.
                    tracing::debug!(minute, partition, "partial after its minute was final");
                    return Ok(());
                }
                let group = format!("{source}|{event_type}");
                let key = window_key(minute, &format!("{group}/{}", partition_label(partition)));
                let previous: Option<Slice> = ctx.get(PARTIALS, &key)?;
                // Partials are cumulative: a smaller one is an older one, re-sent.
                if previous.is_some_and(|p| p.count > count) {
                    return Ok(());
                }
                ctx.put(PARTIALS, &key, &Slice { count, distinct })?;
                self.changed_counts
                    .entry(ctx.partition())
                    .or_default()
                    .insert((minute, group));
            }
            ToStage2::Horizon {
                partition, horizon, ..
            } => {
                let key = partition_label(partition);
                let stored: Option<i64> = ctx.get(HORIZONS, key.as_bytes())?;
                if stored.is_some_and(|h| h >= horizon) {
                    return Ok(());
                }
                ctx.put(HORIZONS, key.as_bytes(), &horizon)?;
                let horizons: Vec<(Vec<u8>, i64)> = ctx.range(HORIZONS, b"0", None)?;
                if horizons.len() >= self.model.partitions as usize {
                    let everywhere = horizons.iter().map(|(_, h)| *h).min().unwrap_or(i64::MIN);
                    self.finalize(ctx, finalized, everywhere)?;
                }
            }
        }
        Ok(())
    }

    /// Stage 2: publishes, final, every count of a minute before `horizon` (closed on every
    /// partition), and forgets them.
    fn finalize(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        finalized: Option<i64>,
        horizon: i64,
    ) -> anyhow::Result<()> {
        if finalized.is_some_and(|f| f >= horizon) {
            return Ok(());
        }
        let due: Vec<(Vec<u8>, Slice)> = ctx.range(
            PARTIALS,
            &window_key(i64::MIN / 2, ""),
            Some(&window_key(horizon, "")),
        )?;
        let mut counts: BTreeMap<(i64, String), Vec<Slice>> = BTreeMap::new();
        for (key, slice) in &due {
            let minute = decode_minute(key);
            let rest = String::from_utf8_lossy(&key[8..]).into_owned();
            let group = rest
                .rsplit_once('/')
                .map_or(rest.clone(), |(g, _)| g.to_owned());
            counts.entry((minute, group)).or_default().push(*slice);
        }
        for ((minute, group), slices) in counts {
            self.publish(ctx, minute, &group, slices, true)?;
            if let Some(changed) = self.changed_counts.get_mut(&ctx.partition()) {
                changed.remove(&(minute, group));
            }
        }
        for (key, _) in due {
            ctx.delete(PARTIALS, &key)?;
        }
        ctx.put(PROGRESS, b"finalized", &horizon)?;
        Ok(())
    }

    fn publish(
        &self,
        ctx: &mut ProcessorContext<'_>,
        minute: i64,
        group: &str,
        slices: Vec<Slice>,
        is_final: bool,
    ) -> anyhow::Result<()> {
        let Some((source, event_type)) = split_group(group) else {
            anyhow::bail!("malformed count key {group:?}");
        };
        let (count, distinct_users, partitions) = sum(slices);
        let row = RealtimeCount {
            minute: chrono::DateTime::from_timestamp_millis(minute).unwrap_or_default(),
            source,
            event_type: event_type.to_owned(),
            count,
            distinct_users,
            partitions,
            is_final,
        };
        ctx.emit(
            &self.topics.realtime_counts,
            &count_key(minute, source, event_type),
            &row,
        )
    }
}

/// The minute of a store key ([`window_key`]'s first 8 bytes).
fn decode_minute(key: &[u8]) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&key[..8]);
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

impl streams::Processor for SpeedLayer {
    type Input = Input;

    fn decode(&self, topic: &str, payload: &[u8]) -> Result<Input, String> {
        if topic == self.topics.raw_events {
            shared::consumer::json(payload).map(Input::Raw)
        } else if topic == self.topics.partials {
            shared::consumer::json(payload).map(Input::Stage2)
        } else {
            Err(format!("not an input of {APPLICATION_ID}: {topic}"))
        }
    }

    fn key_of<'v>(&self, _topic: &str, input: &'v Input) -> Option<PayloadKey<'v>> {
        Some(match input {
            Input::Raw(event) => PayloadKey::new("actor", &event.actor),
            Input::Stage2(ToStage2::Partial { key, .. }) => {
                PayloadKey::new("minute|source|event_type", key)
            }
            Input::Stage2(ToStage2::Horizon { key, .. }) => PayloadKey::new("the tick key", key),
        })
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: Option<&str>,
        input: Input,
    ) -> Result<(), HandlerError> {
        match input {
            Input::Raw(event) => {
                check_record(key, ctx.timestamp_ms(), &event).map_err(HandlerError::Permanent)?;
                self.count(ctx, event)?;
            }
            Input::Stage2(message) => self.merge(ctx, message)?,
        }
        Ok(())
    }

    /// Sends the partials of the slices this batch changed (stage 1) and publishes the counts
    /// whose partials changed (stage 2): once per key per batch, however many events.
    fn end_batch(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), HandlerError> {
        let partition = ctx.partition();
        if let Some(changed) = self.changed_slices.remove(&partition) {
            let clock: Option<Clock> = ctx.get(PROGRESS, CLOCK)?;
            for (minute, group) in changed {
                if clock.is_some_and(|c| minute < c.horizon) {
                    continue; // closed meanwhile: sent when it closed
                }
                if let Some(slice) = ctx.get::<Slice>(SLICES, &window_key(minute, &group))? {
                    self.send_partial(ctx, minute, &group, slice)?;
                }
            }
        }
        if let Some(changed) = self.changed_counts.remove(&partition) {
            let finalized: Option<i64> = ctx.get(PROGRESS, b"finalized")?;
            for (minute, group) in changed {
                if finalized.is_some_and(|f| minute < f) {
                    continue;
                }
                let partials: Vec<(Vec<u8>, Slice)> =
                    ctx.prefix(PARTIALS, &window_key(minute, &format!("{group}/")))?;
                let slices: Vec<Slice> = partials.into_iter().map(|(_, s)| s).collect();
                if !slices.is_empty() {
                    self.publish(ctx, minute, &group, slices, false)?;
                }
            }
        }
        Ok(())
    }
}

/// The speed layer on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "speed-layer"
    }
    fn about(&self) -> &'static str {
        "Streams: raw_events → per-minute counts and distinct actors per partition → summed → realtime_counts."
    }
    fn streams(&self, kafka: &Kafka) -> Vec<StreamsConfig> {
        vec![config(kafka).0]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let (config, topics) = config(&ctx.kafka);
        let layer = SpeedLayer::new(topics, resources.speed);
        let handle =
            streams::start(&ctx.kafka, ctx.state(config), layer, ctx.shutdown.clone()).await?;
        Ok(shared::service::Running::new().streams(Arc::new(handle)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn minutes_are_tumbling_and_start_inclusive() {
        assert_eq!(minute_of(T0), T0);
        assert_eq!(minute_of(T0 + 59_999), T0);
        assert_eq!(minute_of(T0 + 60_000), T0 + 60_000);
        assert_eq!(minute_of(-1), -60_000);
    }

    #[test]
    fn a_minute_closes_at_its_end_plus_grace() {
        let model = Model::new(120_000);
        // Minute [0:00, 1:00) closes when stream time reaches 3:00.
        assert_eq!(model.horizon(T0 + 179_999), T0);
        assert_eq!(model.horizon(T0 + 180_000), T0 + 60_000);
        let none = Model::new(0);
        assert_eq!(none.horizon(T0 + 60_000), T0 + 60_000);
    }

    #[test]
    fn tick_keys_reach_every_partition_once() {
        let keys = tick_keys(32);
        assert_eq!(keys.len(), 32);
        let mut partitions: Vec<i32> = keys
            .iter()
            .map(|k| shared::producer::partition_for_key(k.as_bytes(), 32))
            .collect();
        partitions.sort_unstable();
        assert_eq!(partitions, (0..32).collect::<Vec<_>>());
    }

    #[test]
    fn distinct_actors_add_up_across_partitions() {
        // Actors a, b on one partition; c on another (disjoint, as keying by actor makes them).
        let p0 = Slice {
            count: 5,
            distinct: 2,
        };
        let p1 = Slice {
            count: 1,
            distinct: 1,
        };
        assert_eq!(sum([p0, p1]), (6, 3, 2));
        assert_eq!(sum([]), (0, 0, 0));
    }

    #[test]
    fn store_keys_decode_to_their_minute() {
        let key = window_key(T0 + 60_000, "web|click");
        assert_eq!(decode_minute(&key), T0 + 60_000);
        assert_eq!(split_group("web|click"), Some((Source::Web, "click")));
        assert_eq!(split_group("tv|click"), None);
    }

    #[test]
    fn stage_two_messages_carry_their_kind() {
        let tick = ToStage2::Horizon {
            key: "tick-0".into(),
            partition: 3,
            horizon: T0,
        };
        let json = serde_json::to_string(&tick).unwrap();
        assert!(json.contains(r#""kind":"horizon""#), "{json}");
        assert_eq!(serde_json::from_str::<ToStage2>(&json).unwrap(), tick);
    }
}
