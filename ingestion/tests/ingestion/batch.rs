//! The batch layer against the speed layer: a simulated day of events goes through the ingest
//! API to both; the S3 sink's files hold every event exactly once, the batch job's per-minute
//! counts are the truth, and for every minute the speed layer closed, batch minus the late
//! events equals speed — the late events being exactly the ones sent late.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use ingestion::app::Options;
use ingestion::batch::{self, MinuteCount, MinuteKey};
use ingestion::events::Source;
use ingestion::s3_sink::{DEFAULT_PROPERTIES, SinkArgs};
use reqwest::StatusCode;
use serde_json::json;
use shared::testkit::TestKafka;

use crate::{client, post_events, realtime_counts, spawn};

/// Minutes of the simulated day: 20 hours, ending 10 minutes before now (so they close).
const MINUTES: i64 = 20 * 60 - 10;

const TYPES: &[(Source, &str)] = &[
    (Source::Web, "page_view"),
    (Source::Mobile, "tap"),
    (Source::Iot, "reading"),
];

#[tokio::test(flavor = "multi_thread")]
async fn batch_equals_speed_for_every_closed_minute_and_the_difference_is_the_late_events() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    kafka.provision(ingestion::topics::ALL).await.unwrap();
    let properties = dir.path().join("s3-sink.properties");
    std::fs::write(
        &properties,
        DEFAULT_PROPERTIES
            .replace("flush.size=10000", "flush.size=500")
            .replace(
                "rotate.schedule.interval.ms=30000",
                "rotate.schedule.interval.ms=500",
            ),
    )
    .unwrap();
    let store_dir = dir.path().join("store");
    let options = Options {
        sink: SinkArgs {
            sink_config: Some(properties.clone()),
            store_url: Some(format!("file://{}", store_dir.display())),
            s3_bucket: None,
        },
        ..Options::default()
    };
    let app = spawn(
        &kafka,
        &["ingest-api", "speed-layer", "s3-sink"],
        dir.path(),
        options.clone(),
    )
    .await;
    let (url, http) = (app.url(), client());

    // A day, compressed: 20 hours of event time (to 10 minutes ago), 4 events a minute over 400 actors (so every
    // one of the 32 partitions sees events), sent in order. Every 50th minute, one event 30
    // minutes old by an actor that just sent a current one: late on its partition.
    let start = (Utc::now() - TimeDelta::hours(20))
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap();
    let mut truth: BTreeMap<MinuteKey, (u64, BTreeSet<String>)> = BTreeMap::new();
    let mut late_sent = 0u64;
    let mut body = String::new();
    let mut lines = 0;
    let mut n = 0u64;
    let add = |body: &mut String,
               truth: &mut BTreeMap<MinuteKey, (u64, BTreeSet<String>)>,
               source: Source,
               event_type: &str,
               actor: &str,
               at: chrono::DateTime<Utc>| {
        body.push_str(
            &json!({"source": source, "event_type": event_type, "actor": actor, "timestamp": at})
                .to_string(),
        );
        body.push('\n');
        let minute = ingestion::speed_layer::minute_of(at.timestamp_millis());
        let entry = truth
            .entry((minute, source, event_type.to_owned()))
            .or_default();
        entry.0 += 1;
        entry.1.insert(actor.to_owned());
    };
    for minute in 0..MINUTES {
        let base = start + TimeDelta::minutes(minute);
        for i in 0..4 {
            n += 1;
            let (source, event_type) = TYPES[(n % 3) as usize];
            let actor = format!("a{}", (n * 7919) % 400);
            let at = base + TimeDelta::seconds(i * 15);
            add(&mut body, &mut truth, source, event_type, &actor, at);
            lines += 1;
            if minute % 50 == 49 && i == 3 {
                add(
                    &mut body,
                    &mut truth,
                    source,
                    event_type,
                    &actor,
                    at - TimeDelta::minutes(30),
                );
                lines += 1;
                late_sent += 1;
            }
        }
        if lines >= 400 {
            let (status, answer) = post_events(&http, &url, std::mem::take(&mut body)).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
            assert_eq!(answer["accepted"], lines, "{answer}");
            lines = 0;
        }
    }
    // Now: one event for each of the 400 actors, so every partition's stream time passes the
    // day's minutes and the speed layer closes them all.
    for a in 0..400 {
        add(
            &mut body,
            &mut truth,
            Source::Web,
            "page_view",
            &format!("a{a}"),
            Utc::now(),
        );
        lines += 1;
    }
    let (status, answer) = post_events(&http, &url, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], lines, "{answer}");
    let truth: BTreeMap<MinuteKey, MinuteCount> = truth
        .into_iter()
        .map(|(key, (count, actors))| {
            (
                key,
                MinuteCount {
                    count,
                    distinct_users: actors.len() as u64,
                },
            )
        })
        .collect();
    let total: u64 = truth.values().map(|c| c.count).sum();

    // The sink's files: every event once; the batch job's counts are the truth.
    let config =
        ingestion::s3_sink::config(kafka.kafka(), &options.sink.properties(dir.path()).unwrap())
            .unwrap();
    let root = config.layout.topic_prefix(&config.topic);
    let read = shared::testkit::eventually(
        Duration::from_secs(180),
        "every event in a file",
        || async {
            let read =
                batch::read_events(&config.store, &config.topic, std::slice::from_ref(&root))
                    .await
                    .unwrap();
            (read.events.len() as u64 >= total).then_some(read)
        },
    )
    .await;
    assert_eq!(read.events.len() as u64, total);
    assert_eq!(batch::per_minute(read.events.iter()), truth);
    let late = batch::late_events(&read.events, &ingestion::speed_layer::Model::default());
    assert_eq!(late.len() as u64, late_sent, "exactly the events sent late");

    // The speed layer closed the day's minutes; batch minus late = speed for each.
    let day_end = (start + TimeDelta::minutes(MINUTES)).timestamp_millis();
    let speed = shared::testkit::eventually(
        Duration::from_secs(180),
        "the day's minutes final",
        || async {
            let (last, _) = realtime_counts(&kafka).await;
            let rows: Vec<_> = last.into_values().collect();
            let day: Vec<_> = rows
                .iter()
                .filter(|r| r.minute.timestamp_millis() < day_end)
                .collect();
            (day.len() as i64 >= MINUTES && day.iter().all(|r| r.is_final)).then_some(rows)
        },
    )
    .await;
    let result = ingestion::reconcile::reconcile(
        &read.events,
        &late,
        &speed,
        Some((start.timestamp_millis(), day_end)),
    );
    assert!(result.differences.is_empty(), "{:?}", result.differences);
    assert_eq!(
        result.minutes as i64, MINUTES,
        "every minute of the day compared"
    );
    assert_eq!(result.open_minutes, 0);
    assert_eq!(result.late.values().sum::<u64>(), late_sent);
    app.stop().await.unwrap();
}
