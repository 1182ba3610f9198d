//! Per-minute windows, golden cases computed by hand (tumbling minutes of event time, grace
//! 2 min). Events are written straight to `raw_events` with chosen event times, one at a time
//! (each waits until the speed layer has applied it, so the order is the one written here), by
//! actors on two partitions P and Q; at the end one event on every partition moves all 32
//! stream times on, so every minute before it becomes final.
//!
//! Times are minutes:seconds after T0 (50 minutes ago, on a minute boundary).
//!
//! | written | partition: stream time | effect |
//! |---|---|---|
//! | a1 web/click 0:10, a1 0:20, a2 0:30 | P: 0:30 | P 0:00 web/click: 3 events, 2 actors |
//! | b1 web/click 0:40 | Q: 0:40 | Q 0:00 web/click: 1, 1 |
//! | a1 mobile/tap 0:50 | P: 0:50 | P 0:00 mobile/tap: 1, 1 |
//! | a2 web/click 2:30 | P: 2:30 | P 2:00 web/click: 1, 1 |
//! | a1 web/click 0:55 — late, within grace (0:00 closes on P at 3:00) | P: 2:30 | P 0:00 web/click: 4, 2 |
//! | a2 web/click 3:00 | P: 3:00 | closes 0:00 on P; P 3:00 web/click: 1, 1 |
//! | a1 web/click 0:58 — after 0:00 closed on P | P: 3:00 | dropped, counted late |
//! | b1 web/click 0:59 — Q's stream time is 0:40: in time | Q: 0:59 | Q 0:00 web/click: 2, 1 |
//! | one iot/reading at 10:00 on each of the 32 partitions | all: 10:00 | every minute before 8:00 closes everywhere |
//!
//! Final: 0:00 web/click = 6 events, 3 actors (P 4/2 + Q 2/1, two partitions); 0:00 mobile/tap
//! = 1/1; 2:00 web/click = 1/1; 3:00 web/click = 1/1. 10:00 iot/reading = 32/32, not final.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use ingestion::app::Options;
use ingestion::events::{RawEvent, RealtimeCount, Source, count_key};
use ingestion::topics::RAW_EVENTS;
use shared::EventProducer;
use shared::streams::StreamsHandle;
use shared::testkit::TestKafka;

use crate::{realtime_counts, spawn};

/// An actor whose events go to `partition`: `<prefix><n>` for the first n that does.
fn actor_on(prefix: &str, partition: i32, skip: usize) -> String {
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .filter(|a| {
            shared::producer::partition_for_key(a.as_bytes(), RAW_EVENTS.partitions) == partition
        })
        .nth(skip)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn minutes_close_per_partition_after_grace_and_sum_exactly_across_partitions() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, &["speed-layer"], dir.path(), Options::default()).await;
    let handle = app.get::<StreamsHandle>().unwrap();
    let (p, q) = (3, 17);
    let (a1, a2, b1) = (
        actor_on("a", p, 0),
        actor_on("a", p, 1),
        actor_on("b", q, 0),
    );
    let t0 = (Utc::now() - TimeDelta::minutes(50))
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap();
    let at = |seconds: i64| -> DateTime<Utc> { t0 + TimeDelta::seconds(seconds) };
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let topic = kafka.kafka().topic(&RAW_EVENTS);
    let event = |actor: &str, source: Source, event_type: &str, seconds: i64| RawEvent {
        event_id: shared::event::new_event_id(),
        source,
        event_type: event_type.to_owned(),
        actor: actor.to_owned(),
        timestamp: at(seconds),
        received_at: Utc::now(),
        properties: Default::default(),
    };
    let (web, click) = (Source::Web, "click");
    let steps = [
        event(&a1, web, click, 10),
        event(&a1, web, click, 20),
        event(&a2, web, click, 30),
        event(&b1, web, click, 40),
        event(&a1, Source::Mobile, "tap", 50),
        event(&a2, web, click, 150),
        event(&a1, web, click, 55),
        event(&a2, web, click, 180),
        event(&a1, web, click, 58),
        event(&b1, web, click, 59),
    ];
    for step in steps {
        let delivery = producer.publish(&topic, &step.actor, &step).await.unwrap();
        crate::eventually(Duration::from_secs(60), "the event applied", || async {
            handle
                .stores
                .applied(delivery.partition, &topic)
                .unwrap()
                .is_some_and(|a| a.next_offset > delivery.offset)
                .then_some(())
        })
        .await;
    }
    assert_eq!(handle.stats.late_dropped.get(), 1, "the 0:58 click on P");
    for partition in 0..RAW_EVENTS.partitions {
        let clock = event(
            &actor_on("clock", partition, 0),
            Source::Iot,
            "reading",
            600,
        );
        producer
            .publish(&topic, &clock.actor, &clock)
            .await
            .unwrap();
    }

    let minute = |seconds: i64| at(seconds).timestamp_millis();
    let row = |m: i64, source, event_type: &str, count, distinct_users, partitions, is_final| {
        (
            count_key(minute(m), source, event_type),
            RealtimeCount {
                minute: at(m),
                source,
                event_type: event_type.to_owned(),
                count,
                distinct_users,
                partitions,
                is_final,
            },
        )
    };
    let golden = [
        row(0, web, click, 6, 3, 2, true),
        row(0, Source::Mobile, "tap", 1, 1, 1, true),
        row(120, web, click, 1, 1, 1, true),
        row(180, web, click, 1, 1, 1, true),
        row(600, Source::Iot, "reading", 32, 32, 32, false),
    ];
    let (last, all) = crate::eventually(Duration::from_secs(90), "the golden rows", || async {
        let (last, all) = realtime_counts(&kafka).await;
        let done = golden.iter().all(|(key, row)| last.get(key) == Some(row));
        done.then_some((last, all))
    })
    .await;
    assert_eq!(last.len(), golden.len(), "{last:#?}");
    // Each final row once, after every update of its key, none of which exceeds it.
    for (key, row) in golden.iter().filter(|(_, r)| r.is_final) {
        let history: Vec<&RealtimeCount> = all
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, r)| r)
            .collect();
        assert_eq!(
            history.iter().filter(|r| r.is_final).count(),
            1,
            "{history:#?}"
        );
        assert!(history.last().unwrap().is_final, "{history:#?}");
        assert!(
            history
                .iter()
                .all(|r| r.count <= row.count && r.distinct_users <= row.distinct_users),
            "{history:#?}"
        );
    }
    app.stop().await.unwrap();
}
