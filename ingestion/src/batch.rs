//! The batch layer's second box: `ingestion batch --date YYYY-MM-DD` reads the day's Parquet
//! files that the S3 sink wrote and computes what the speed layer computes — events and
//! distinct actors per minute, per source and event type — plus a daily report.
//!
//! The files are the truth: every record of `raw_events` that [`crate::events::check_record`]
//! accepts is in exactly one of them, in its event time's hour folder. The batch counts *every*
//! event of a minute, the late ones included; [`late_events`] replays each partition in offset
//! order with the speed layer's rule to say which ones the speed layer dropped
//! ([`crate::reconcile`] compares the two).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, TimeDelta};
use object_store::path::Path as ObjectPath;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use shared::analytics::layout::{Layout, Partitioner, parse_file_name};
use shared::analytics::{SinkConfig, Store};
use shared::{Kafka, KafkaArgs};

use crate::events::{Source, minute_label};
use crate::s3_sink::SinkArgs;
use crate::speed_layer::{Model, minute_of};

/// One event as the batch layer reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub partition: i32,
    pub offset: i64,
    pub source: Source,
    pub event_type: String,
    pub actor: String,
    pub timestamp_ms: i64,
}

/// A minute's key: its start (ms), the source, the event type.
pub type MinuteKey = (i64, Source, String);

/// What the batch layer counts for a minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteCount {
    pub count: u64,
    pub distinct_users: u64,
}

/// Where the files are, as the sink wrote them (the same properties).
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    #[command(flatten)]
    pub sink: SinkArgs,
    /// The data directory whose `store/` the sink wrote to when the properties name no store.
    #[arg(long, env = "DATA_DIR", default_value = "data/ingestion")]
    pub data_dir: PathBuf,
    /// The topic prefix the sink ran with.
    #[arg(long, env = "TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
}

impl StoreArgs {
    /// The sink's configuration (store, layout, topic), without connecting to Kafka.
    pub fn sink_config(&self) -> anyhow::Result<SinkConfig> {
        let kafka = Kafka::external("unused:0", &self.topic_prefix, Vec::new());
        crate::s3_sink::config(&kafka, &self.sink.properties(&self.data_dir)?)
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct BatchArgs {
    /// The day (UTC) to compute.
    #[arg(long)]
    pub date: NaiveDate,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Also write the per-minute counts to this file, one JSON object per line.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// `ingestion batch`.
pub async fn run(args: BatchArgs, _kafka: &KafkaArgs) -> anyhow::Result<()> {
    let config = args.store.sink_config()?;
    let start = args
        .date
        .and_hms_opt(0, 0, 0)
        .context("a date")?
        .and_utc()
        .timestamp_millis();
    let end = start + TimeDelta::days(1).num_milliseconds();
    let prefixes = day_prefixes(&config.layout, &config.topic, start, end);
    let (events, files) = read_events(&config.store, &config.topic, &prefixes)
        .await?
        .into_parts();
    let day: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| (start..end).contains(&e.timestamp_ms))
        .collect();
    let minutes = per_minute(day.iter().copied());
    println!(
        "ingestion batch {}: {} events of the day in {files} files of {} ({})",
        args.date,
        day.len(),
        config.topic,
        config.store
    );
    println!("{}", report(&day, &minutes));
    if let Some(path) = &args.output {
        let mut out = String::new();
        for ((minute, source, event_type), c) in &minutes {
            out.push_str(&serde_json::to_string(&serde_json::json!({
                "minute": minute_label(*minute),
                "source": source,
                "event_type": event_type,
                "count": c.count,
                "distinct_users": c.distinct_users,
            }))?);
            out.push('\n');
        }
        std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{} per-minute rows written to {}",
            minutes.len(),
            path.display()
        );
    }
    Ok(())
}

/// The folders that can hold events of `[start, end)`: the partitioner's folder of every
/// `partition.duration.ms` step in the range (all of the topic for the default partitioner).
pub fn day_prefixes(layout: &Layout, topic: &str, start: i64, end: i64) -> Vec<ObjectPath> {
    let root = layout.topic_prefix(topic);
    match &layout.partitioner {
        Partitioner::Default => vec![root],
        Partitioner::TimeBased { duration, .. } => {
            let step = (duration.as_millis() as i64).clamp(60_000, 86_400_000);
            let mut folders = BTreeSet::new();
            let mut at = start.div_euclid(step) * step;
            while at < end {
                let time = DateTime::from_timestamp_millis(at).unwrap_or_default();
                folders.insert(layout.encode_partition(0, time));
                at += step;
            }
            folders
                .into_iter()
                .map(|folder| ObjectPath::from(format!("{root}/{folder}")))
                .collect()
        }
    }
}

/// Events and the number of files they came from.
pub struct Read {
    pub events: Vec<StoredEvent>,
    pub files: usize,
}

impl Read {
    pub fn into_parts(self) -> (Vec<StoredEvent>, usize) {
        (self.events, self.files)
    }
}

/// Every event in the files below `prefixes`. Fails on a (partition, offset) found twice: the
/// sink promises each once, and a count over duplicates would be wrong without saying so.
pub async fn read_events(
    store: &Store,
    topic: &str,
    prefixes: &[ObjectPath],
) -> anyhow::Result<Read> {
    let mut events = Vec::new();
    let mut files = 0;
    let mut seen: HashSet<(i32, i64)> = HashSet::new();
    for prefix in prefixes {
        for path in store.list(prefix).await? {
            let Some(range) = path.filename().and_then(|n| parse_file_name(topic, n)) else {
                continue;
            };
            let bytes = store
                .read(&path)
                .await?
                .with_context(|| format!("{path} vanished while reading"))?;
            let reader = SerializedFileReader::new(bytes)
                .with_context(|| format!("{store}/{path} is not a Parquet file"))?;
            files += 1;
            for row in reader.get_row_iter(None)? {
                let event = stored_event(&row?).with_context(|| format!("a row of {path}"))?;
                if event.partition != range.partition {
                    bail!("{path}: a row of partition {}", event.partition);
                }
                if !seen.insert((event.partition, event.offset)) {
                    bail!(
                        "partition {} offset {} is in two files (the second: {path})",
                        event.partition,
                        event.offset
                    );
                }
                events.push(event);
            }
        }
    }
    Ok(Read { events, files })
}

fn stored_event(row: &Row) -> anyhow::Result<StoredEvent> {
    let mut fields: HashMap<&str, &Field> = HashMap::new();
    for (name, field) in row.get_column_iter() {
        fields.insert(name.as_str(), field);
    }
    let text = |name: &str| match fields.get(name) {
        Some(Field::Str(s)) => Ok(s.clone()),
        other => bail!("column {name}: {other:?}"),
    };
    let long = |name: &str| match fields.get(name) {
        Some(Field::Long(v) | Field::TimestampMillis(v)) => Ok(*v),
        Some(Field::Int(v)) => Ok(i64::from(*v)),
        other => bail!("column {name}: {other:?}"),
    };
    let source = text("source")?;
    Ok(StoredEvent {
        partition: i32::try_from(long("kafka_partition")?)?,
        offset: long("kafka_offset")?,
        source: serde_json::from_value(serde_json::Value::String(source.clone()))
            .with_context(|| format!("source {source:?}"))?,
        event_type: text("event_type")?,
        actor: text("actor")?,
        timestamp_ms: long("timestamp")?,
    })
}

/// Events and distinct actors per minute, source and event type.
pub fn per_minute<'a>(
    events: impl Iterator<Item = &'a StoredEvent>,
) -> BTreeMap<MinuteKey, MinuteCount> {
    let mut counts: BTreeMap<MinuteKey, MinuteCount> = BTreeMap::new();
    let mut actors: HashSet<(i64, Source, &'a str, &'a str)> = HashSet::new();
    for event in events {
        let minute = minute_of(event.timestamp_ms);
        let count = counts
            .entry((minute, event.source, event.event_type.clone()))
            .or_default();
        count.count += 1;
        if actors.insert((minute, event.source, &event.event_type, &event.actor)) {
            count.distinct_users += 1;
        }
    }
    counts
}

/// The events the speed layer dropped as late: each partition replayed in offset order with
/// its rule (stream time = the largest event time seen on the partition, this event's
/// included; an event is late when its minute ends before stream time − grace).
pub fn late_events(events: &[StoredEvent], model: &Model) -> HashSet<(i32, i64)> {
    let mut by_partition: BTreeMap<i32, Vec<&StoredEvent>> = BTreeMap::new();
    for event in events {
        by_partition.entry(event.partition).or_default().push(event);
    }
    let mut late = HashSet::new();
    for (_, mut events) in by_partition {
        events.sort_by_key(|e| e.offset);
        let mut stream_time = i64::MIN;
        for event in events {
            stream_time = stream_time.max(event.timestamp_ms);
            if minute_of(event.timestamp_ms) < model.horizon(stream_time) {
                late.insert((event.partition, event.offset));
            }
        }
    }
    late
}

/// The daily report: per source and event type, events and distinct actors of the day; the
/// busiest minute.
fn report(day: &[&StoredEvent], minutes: &BTreeMap<MinuteKey, MinuteCount>) -> String {
    let mut per_type: BTreeMap<(Source, &str), (u64, HashSet<&str>)> = BTreeMap::new();
    for event in day {
        let entry = per_type
            .entry((event.source, &event.event_type))
            .or_default();
        entry.0 += 1;
        entry.1.insert(&event.actor);
    }
    let mut out = String::from("source   event type            events   distinct actors\n");
    for ((source, event_type), (count, actors)) in &per_type {
        out.push_str(&format!(
            "{:<8} {:<20} {:>8} {:>17}\n",
            source.as_str(),
            event_type,
            count,
            actors.len()
        ));
    }
    let mut per_minute: BTreeMap<i64, u64> = BTreeMap::new();
    for ((minute, _, _), count) in minutes {
        *per_minute.entry(*minute).or_default() += count.count;
    }
    if let Some((minute, count)) = per_minute.iter().max_by_key(|(m, c)| (**c, -**m)) {
        out.push_str(&format!(
            "busiest minute: {} with {count} events; {} minutes with events",
            minute_label(*minute),
            per_minute.len()
        ));
    }
    out
}

/// How long the speed layer's grace is, for the replay (its `SPEED_GRACE`).
pub fn model(grace: Duration) -> Model {
    Model::new(grace.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn event(partition: i32, offset: i64, actor: &str, at: &str) -> StoredEvent {
        StoredEvent {
            partition,
            offset,
            source: Source::Web,
            event_type: "click".into(),
            actor: actor.into(),
            timestamp_ms: at.parse::<DateTime<Utc>>().unwrap().timestamp_millis(),
        }
    }

    #[test]
    fn minutes_count_events_and_distinct_actors() {
        let events = [
            event(0, 0, "ann", "2026-12-04T10:00:05Z"),
            event(0, 1, "ann", "2026-12-04T10:00:59Z"),
            event(1, 0, "bob", "2026-12-04T10:00:30Z"),
            event(1, 1, "bob", "2026-12-04T10:01:00Z"),
        ];
        let counts = per_minute(events.iter());
        let minute = |at: &str| at.parse::<DateTime<Utc>>().unwrap().timestamp_millis();
        assert_eq!(
            counts[&(minute("2026-12-04T10:00:00Z"), Source::Web, "click".into())],
            MinuteCount {
                count: 3,
                distinct_users: 2
            }
        );
        assert_eq!(
            counts[&(minute("2026-12-04T10:01:00Z"), Source::Web, "click".into())],
            MinuteCount {
                count: 1,
                distinct_users: 1
            }
        );
    }

    #[test]
    fn lateness_is_replayed_per_partition_in_offset_order() {
        let model = Model::new(120_000);
        let events = [
            // Partition 0: 10:05 moves its stream time; 10:02:59 is then late (10:03 + 2 min
            // ≤ 10:05), 10:03:00 is not (10:04 + 2 min > 10:05).
            event(0, 0, "a", "2026-12-04T10:05:00Z"),
            event(0, 1, "a", "2026-12-04T10:02:59Z"),
            event(0, 2, "a", "2026-12-04T10:03:00Z"),
            // Partition 1 never saw 10:05: the same times are on time there.
            event(1, 0, "b", "2026-12-04T10:02:59Z"),
            // Offset order, not file order: offset 1 came after offset 0's 10:10.
            event(2, 1, "c", "2026-12-04T10:00:00Z"),
            event(2, 0, "c", "2026-12-04T10:10:00Z"),
        ];
        let late = late_events(&events, &model);
        assert_eq!(late, HashSet::from([(0, 1), (2, 1)]));
    }

    #[test]
    fn a_day_is_its_hour_folders() {
        let layout = Layout {
            topics_dir: "topics".into(),
            ..Layout::default()
        };
        let start = "2026-12-04T00:00:00Z"
            .parse::<DateTime<Utc>>()
            .unwrap()
            .timestamp_millis();
        let prefixes = day_prefixes(&layout, "t", start, start + 86_400_000);
        assert_eq!(prefixes.len(), 24);
        assert_eq!(prefixes[0].as_ref(), "topics/t/date=2026-12-04/hour=0");
    }
}
