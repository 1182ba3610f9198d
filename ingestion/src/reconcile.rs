//! `ingestion reconcile`: the batch layer's counts against the speed layer's, for every minute
//! the speed layer has closed (`final`). They must be equal once the events the speed layer
//! dropped as late are taken out — [`crate::batch::late_events`] replays each partition with
//! its rule — and the late events are reported, per minute.
//!
//! The speed side is `realtime_counts` as the realtime API holds it (the last day behind its
//! newest minute, [`crate::realtime_model::KEEP_MINUTES`]); the batch side is every file of the
//! topic in the store (lateness depends on each partition's whole history).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;

use crate::batch::{self, MinuteCount, MinuteKey, StoreArgs};
use crate::events::{RealtimeCount, minute_label};
use crate::realtime_model::RealtimeModel;

#[derive(clap::Args, Debug, Clone)]
pub struct ReconcileArgs {
    /// Only this day's minutes (UTC; default: every minute both sides have).
    #[arg(long)]
    pub date: Option<NaiveDate>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The speed layer's grace period (its `SPEED_GRACE`).
    #[arg(long, env = "SPEED_GRACE", default_value = "2m", value_parser = humantime::parse_duration)]
    pub grace: Duration,
}

/// What reconciling found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// Closed minutes compared.
    pub minutes: usize,
    /// (minute, source, event type) rows compared.
    pub rows: usize,
    /// Rows where batch (minus late events) and speed differ: (key, batch, speed).
    pub differences: Vec<(MinuteKey, MinuteCount, MinuteCount)>,
    /// Events the speed layer dropped as late, per minute of their event time.
    pub late: BTreeMap<i64, u64>,
    /// Minutes the speed layer has not closed yet (not compared).
    pub open_minutes: usize,
}

/// Compares `batch` (all events, late ones included, and which are late) with the speed
/// layer's `speed` rows, over the minutes the speed layer closed, within `range` if given.
pub fn reconcile(
    events: &[batch::StoredEvent],
    late: &std::collections::HashSet<(i32, i64)>,
    speed: &[RealtimeCount],
    range: Option<(i64, i64)>,
) -> Reconciliation {
    let within = |minute: i64| range.is_none_or(|(from, to)| (from..to).contains(&minute));
    let on_time = batch::per_minute(
        events
            .iter()
            .filter(|e| !late.contains(&(e.partition, e.offset))),
    );
    let mut late_per_minute: BTreeMap<i64, u64> = BTreeMap::new();
    for event in events
        .iter()
        .filter(|e| late.contains(&(e.partition, e.offset)))
    {
        let minute = crate::speed_layer::minute_of(event.timestamp_ms);
        if within(minute) {
            *late_per_minute.entry(minute).or_default() += 1;
        }
    }
    let mut speed_rows: BTreeMap<MinuteKey, (MinuteCount, bool)> = BTreeMap::new();
    for row in speed {
        speed_rows.insert(
            (
                row.minute.timestamp_millis(),
                row.source,
                row.event_type.clone(),
            ),
            (
                MinuteCount {
                    count: row.count,
                    distinct_users: row.distinct_users,
                },
                row.is_final,
            ),
        );
    }
    // A minute is closed when the speed layer published it final (all its rows finalize
    // together: the horizons are the partitions', not the rows').
    let closed: BTreeSet<i64> = speed_rows
        .iter()
        .filter(|(_, (_, is_final))| *is_final)
        .map(|((minute, _, _), _)| *minute)
        .filter(|m| within(*m))
        .collect();
    let open: BTreeSet<i64> = speed_rows
        .keys()
        .map(|(m, _, _)| *m)
        .chain(on_time.keys().map(|(m, _, _)| *m))
        .filter(|m| within(*m) && !closed.contains(m))
        .collect();
    let keys: BTreeSet<&MinuteKey> = speed_rows
        .keys()
        .chain(on_time.keys())
        .filter(|(m, _, _)| closed.contains(m))
        .collect();
    let mut result = Reconciliation {
        minutes: closed.len(),
        rows: keys.len(),
        late: late_per_minute,
        open_minutes: open.len(),
        ..Reconciliation::default()
    };
    for key in keys {
        let b = on_time.get(key).copied().unwrap_or_default();
        let s = speed_rows.get(key).map(|(c, _)| *c).unwrap_or_default();
        if b != s {
            result.differences.push((key.clone(), b, s));
        }
    }
    result
}

/// `ingestion reconcile`.
pub async fn run(
    args: ReconcileArgs,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let config = args.store.sink_config()?;
    let kafka = Kafka::connect(kafka)?;
    let shutdown = stop.child_token();
    let model = RealtimeModel::start(&kafka, shutdown.clone()).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !model.is_caught_up() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "realtime_counts not read within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let speed = model.range(i64::MIN, i64::MAX, None, None);
    shutdown.cancel();
    let root = config.layout.topic_prefix(&config.topic);
    let read = batch::read_events(&config.store, &config.topic, &[root])
        .await
        .context("reading the batch layer's files")?;
    let late = batch::late_events(&read.events, &batch::model(args.grace));
    let range = args.date.map(|date| {
        let start = date
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis();
        (start, start + 86_400_000)
    });
    let result = reconcile(&read.events, &late, &speed, range);
    println!(
        "ingestion reconcile: {} closed minutes, {} rows compared ({} events in {} files of {}; {} speed rows); {} minutes still open",
        result.minutes,
        result.rows,
        read.events.len(),
        read.files,
        config.store,
        speed.len(),
        result.open_minutes
    );
    let late_total: u64 = result.late.values().sum();
    println!(
        "late events (dropped by the speed layer, counted by the batch layer): {late_total}{}",
        if result.late.is_empty() {
            String::new()
        } else {
            format!(
                " — {}",
                result
                    .late
                    .iter()
                    .map(|(m, n)| format!("{} {n}", minute_label(*m)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    if result.differences.is_empty() {
        println!("equal: batch (minus late events) = speed for every closed minute");
        Ok(())
    } else {
        for ((minute, source, event_type), b, s) in &result.differences {
            println!(
                "DIFFERENT {} {source} {event_type}: batch {} events / {} actors, speed {} / {}",
                minute_label(*minute),
                b.count,
                b.distinct_users,
                s.count,
                s.distinct_users
            );
        }
        anyhow::bail!("{} rows differ", result.differences.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::batch::StoredEvent;
    use crate::events::Source;

    fn at(text: &str) -> i64 {
        text.parse::<DateTime<Utc>>().unwrap().timestamp_millis()
    }

    fn event(partition: i32, offset: i64, actor: &str, time: &str) -> StoredEvent {
        StoredEvent {
            partition,
            offset,
            source: Source::Iot,
            event_type: "reading".into(),
            actor: actor.into(),
            timestamp_ms: at(time),
        }
    }

    fn speed(minute: &str, count: u64, distinct: u64, is_final: bool) -> RealtimeCount {
        RealtimeCount {
            minute: minute.parse().unwrap(),
            source: Source::Iot,
            event_type: "reading".into(),
            count,
            distinct_users: distinct,
            partitions: 1,
            is_final,
        }
    }

    #[test]
    fn closed_minutes_must_match_without_the_late_events() {
        let events = [
            event(0, 0, "d1", "2026-12-04T10:00:10Z"),
            event(0, 1, "d2", "2026-12-04T10:00:20Z"),
            event(0, 2, "d1", "2026-12-04T10:05:00Z"),
            event(0, 3, "d3", "2026-12-04T10:00:30Z"), // late
        ];
        let late = HashSet::from([(0, 3)]);
        let speed_rows = [
            speed("2026-12-04T10:00:00Z", 2, 2, true),
            speed("2026-12-04T10:05:00Z", 1, 1, false),
        ];
        let result = reconcile(&events, &late, &speed_rows, None);
        assert_eq!(result.minutes, 1);
        assert_eq!(result.rows, 1);
        assert!(result.differences.is_empty(), "{result:?}");
        assert_eq!(
            result.late,
            BTreeMap::from([(at("2026-12-04T10:00:00Z"), 1)])
        );
        assert_eq!(result.open_minutes, 1);

        // The speed layer missing an event of a closed minute is a difference.
        let short = [speed("2026-12-04T10:00:00Z", 1, 1, true)];
        let result = reconcile(&events, &late, &short, None);
        assert_eq!(result.differences.len(), 1, "{result:?}");
        // …and so is a row only the batch has in a closed minute.
        let other = RealtimeCount {
            event_type: "alarm".into(),
            ..speed("2026-12-04T10:00:00Z", 1, 1, true)
        };
        let result = reconcile(&events, &late, &[speed_rows[0].clone(), other], None);
        assert_eq!(result.differences.len(), 1, "{result:?}");
    }
}
