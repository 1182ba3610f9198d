//! The log aggregation: golden per-service-per-minute rollups (a late line inside the grace
//! period counted, one after it counted as late, a repeated line counted once), records that
//! are no log record dead-lettered with the reason; the alert rule firing once and resolving;
//! and rollups exact after the aggregation is SIGKILLed twice (once losing its state directory),
//! with every seventh line repeated as the at-least-once parser may repeat it.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use logging::events::{Alert, AlertState, Format, Level, LogRecord, LogRollup, rollup_key};
use logging::topics::{ALERTS, LOG_ROLLUPS, PARSED_LOGS};
use rdkafka::Message;
use serde_json::Map;
use shared::EventProducer;
use shared::testkit::TestKafka;

use crate::{WAIT, eventually, key, send, send_record, spawn};

/// 2026-03-01T12:00:00Z.
const T0: i64 = 1_772_366_400_000;
const MIN: i64 = 60_000;
const SEC: i64 = 1_000;

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

fn record(id: &str, service: &str, host: &str, time_ms: i64, level: Level) -> LogRecord {
    LogRecord {
        event_id: id.to_owned(),
        time: at(time_ms),
        received_at: at(time_ms),
        host: host.to_owned(),
        service: service.to_owned(),
        level,
        message: format!("{level} line {id}"),
        fields: Map::new(),
        format: Format::Json,
        reason: None,
        notes: Vec::new(),
    }
}

/// The last rollup of every key on `log_rollups`.
async fn last_rollups(kafka: &TestKafka) -> BTreeMap<String, LogRollup> {
    let topic = kafka.kafka().topic(&LOG_ROLLUPS);
    let mut last = BTreeMap::new();
    for m in kafka
        .read_all(&topic, Duration::from_secs(2))
        .await
        .unwrap()
    {
        let rollup: LogRollup = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let k = key(&m).unwrap();
        assert_eq!(k, rollup.key());
        last.insert(k, rollup);
    }
    last
}

fn levels(pairs: &[(Level, u64)]) -> BTreeMap<Level, u64> {
    pairs.iter().copied().collect()
}

fn rollup(minute: i64, pairs: &[(Level, u64)], late: u64, is_final: bool) -> LogRollup {
    let levels = levels(pairs);
    let lines: u64 = levels.values().sum();
    let errors: u64 = levels
        .iter()
        .filter(|(l, _)| l.is_error())
        .map(|(_, n)| n)
        .sum();
    LogRollup {
        service: "checkout".into(),
        minute: at(minute),
        lines,
        errors,
        error_rate: errors as f64 / lines as f64,
        levels,
        late,
        is_final,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rollups_per_service_per_minute_golden_with_late_lines_and_dead_letters() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, dir.path()).await;
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let topic = kafka.kafka().topic(&PARSED_LOGS);
    let s = |id: &str, t: i64, level: Level| record(id, "checkout", "web-1", T0 + t, level);
    // One key (one partition, one order). Grace is 2 min: a minute m closes when a line at
    // m + 3 min or later has been seen.
    let lines = [
        s("a1", 5 * SEC, Level::Info),
        s("a2", 10 * SEC, Level::Error),
        s("a3", 20 * SEC, Level::Warning),
        s("a4", 50 * SEC, Level::Critical),
        s("b1", MIN + 30 * SEC, Level::Info),
        s("b2", MIN + 40 * SEC, Level::Info),
        // Stream time 12:03:10: 12:00 closes (12:00 + 1 min + 2 min ≤ 12:03:10), 12:01 not.
        s("c1", 3 * MIN + 10 * SEC, Level::Info),
        // 12:01 is open still: counted.
        s("b3", MIN + 50 * SEC, Level::Error),
        // 12:00 is closed: late, not counted.
        s("a5", 30 * SEC, Level::Error),
        // Stream time 12:04:30: 12:01 closes.
        s("d1", 4 * MIN + 30 * SEC, Level::Info),
        // A repeat of b1 (the same event_id: stage 1 re-sent it after a crash): nothing.
        s("b1", MIN + 30 * SEC, Level::Info),
    ];
    for (i, line) in lines.iter().enumerate() {
        if i == 5 {
            // Not log records: dead-lettered with the reason, and the rest goes on.
            send(&producer, &topic, "checkout/web-1", b"not json").await;
            let mut nameless = s("zz", 0, Level::Info);
            nameless.service = String::new();
            send(
                &producer,
                &topic,
                "checkout/web-1",
                &serde_json::to_vec(&nameless).unwrap(),
            )
            .await;
        }
        send_record(&producer, &topic, line).await;
    }

    let expected: BTreeMap<String, LogRollup> = [
        rollup(
            T0,
            &[
                (Level::Info, 1),
                (Level::Warning, 1),
                (Level::Error, 1),
                (Level::Critical, 1),
            ],
            1,
            true,
        ),
        rollup(T0 + MIN, &[(Level::Info, 2), (Level::Error, 1)], 0, true),
        rollup(T0 + 3 * MIN, &[(Level::Info, 1)], 0, false),
        rollup(T0 + 4 * MIN, &[(Level::Info, 1)], 0, false),
    ]
    .into_iter()
    .map(|r| (r.key(), r))
    .collect();
    assert_eq!(expected[&rollup_key("checkout", T0)].error_rate, 0.5);
    let last = eventually(WAIT, "the golden rollups", || async {
        let last = last_rollups(&kafka).await;
        (last == expected).then_some(last)
    })
    .await;
    assert_eq!(last, expected);

    let application = format!(
        "{}{}",
        kafka.kafka().prefix(),
        logging::log_aggregation::APPLICATION_ID
    );
    let letters = crate::letters_of(&kafka, &topic, &application, 2).await;
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.error.as_str()).collect();
    reasons.sort_unstable();
    assert!(
        reasons[0].contains("invalid LogRecord: service"),
        "{letters:#?}"
    );
    assert!(reasons[1].contains("not a valid LogRecord"), "{letters:#?}");
    for letter in &letters {
        assert_eq!(letter.application.as_deref(), Some(application.as_str()));
    }
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_rate_over_the_threshold_for_three_minutes_fires_once_then_resolves() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, dir.path()).await;
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let topic = kafka.kafka().topic(&PARSED_LOGS);
    // The default rule: above 5 % errors, at least 20 lines, 3 consecutive minutes.
    // Minutes 0..=6, 20 lines each; errors 0, 10, 10, 10, 10, 1 (5 %: not above), 0.
    let errors = [0, 10, 10, 10, 10, 1, 0];
    let mut n = 0;
    for (minute, errors) in errors.iter().enumerate() {
        for i in 0..20 {
            let level = if i < *errors {
                Level::Error
            } else {
                Level::Info
            };
            let t = T0 + minute as i64 * MIN + i as i64 * SEC;
            send_record(
                &producer,
                &topic,
                &record(&format!("p{n}"), "payments", "pay-1", t, level),
            )
            .await;
            n += 1;
        }
    }
    // A line at 12:09 closes every minute before 12:07.
    let closing = record("close", "payments", "pay-1", T0 + 9 * MIN, Level::Info);
    send_record(&producer, &topic, &closing).await;

    let alerts_topic = kafka.kafka().topic(&ALERTS);
    kafka
        .wait_for_records(&alerts_topic, 2, WAIT)
        .await
        .unwrap();
    // Every minute is judged by now (the rollup of 12:06 is final): nothing more comes.
    eventually(WAIT, "12:06 final", || async {
        let last = last_rollups(&kafka).await;
        last.get(&rollup_key("payments", T0 + 6 * MIN))
            .is_some_and(|r| r.is_final)
            .then_some(())
    })
    .await;
    let records = kafka
        .read_all(&alerts_topic, Duration::from_secs(3))
        .await
        .unwrap();
    let alerts: Vec<Alert> = records
        .iter()
        .map(|m| {
            assert_eq!(key(m).as_deref(), Some("payments"));
            serde_json::from_slice(m.payload().unwrap()).unwrap()
        })
        .collect();
    let seen: Vec<(AlertState, DateTime<Utc>, DateTime<Utc>)> = alerts
        .iter()
        .map(|a| (a.state, a.since, a.minute))
        .collect();
    assert_eq!(
        seen,
        [
            (AlertState::Firing, at(T0 + MIN), at(T0 + 3 * MIN)),
            (AlertState::Resolved, at(T0 + MIN), at(T0 + 5 * MIN)),
        ]
    );
    assert_eq!(alerts[0].alert_id, alerts[1].alert_id);
    assert_eq!(alerts[0].alert_id, "payments|2026-03-01T12:01Z");
    assert_eq!((alerts[0].lines, alerts[0].error_rate), (20, 0.5));
    assert_eq!((alerts[1].lines, alerts[1].error_rate), (20, 0.05));
    app.stop().await.unwrap();
}

/// `logging log-aggregation` in a process of its own; SIGKILLed when dropped.
struct Aggregation(Child);

impl Aggregation {
    fn start(kafka: &TestKafka, state: &std::path::Path, data: &std::path::Path) -> Aggregation {
        let child = Command::new(env!("CARGO_BIN_EXE_logging"))
            .arg("log-aggregation")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(state)
            .arg("--data-dir")
            .arg(data)
            .env("KAFKA_BOOTSTRAP_SERVERS", kafka.kafka().bootstrap_servers())
            .env("TOPIC_PREFIX", kafka.kafka().prefix())
            // The killed member stays in the group until its session times out: keep it short.
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("KAFKA_HEARTBEAT_INTERVAL_MS", "500")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Aggregation(child)
    }

    fn kill(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
        self.0.wait().unwrap();
    }
}

impl Drop for Aggregation {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rollups_are_exact_across_sigkills_and_a_lost_state_directory() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    kafka.provision(logging::topics::ALL).await.unwrap();
    // The child cannot create topics on an embedded broker: its internal topics are made here.
    let (config, _) = logging::log_aggregation::config(kafka.kafka());
    shared::streams::app::provision_internal_topics(kafka.kafka(), &config)
        .await
        .unwrap();
    let (state, data) = (dir.path().join("state"), dir.path().join("data"));
    let mut aggregation = Aggregation::start(&kafka, &state, &data);
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let topic = kafka.kafka().topic(&PARSED_LOGS);

    // 6 services × 3 hosts, 2,400 lines over 12:00–12:03 (nothing closes, nothing is late:
    // every line counts once), levels from a fixed sequence; the ground truth alongside.
    const LINES: usize = 2400;
    let all = [
        Level::Debug,
        Level::Info,
        Level::Info,
        Level::Notice,
        Level::Warning,
        Level::Error,
        Level::Critical,
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut truth: BTreeMap<String, BTreeMap<Level, u64>> = BTreeMap::new();
    let mut script = Vec::with_capacity(LINES);
    for i in 0..LINES {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let service = format!("svc{}", seed % 6);
        let host = format!("host{}", (seed >> 8) % 3);
        let level = all[((seed >> 16) % all.len() as u64) as usize];
        let t = T0 + (i as i64 * 3 * MIN) / LINES as i64;
        *truth
            .entry(rollup_key(&service, logging::events::minute_of(t)))
            .or_default()
            .entry(level)
            .or_default() += 1;
        script.push(record(&format!("l{i}"), &service, &host, t, level));
    }
    for (i, line) in script.iter().enumerate() {
        send_record(&producer, &topic, line).await;
        if i % 7 == 0 {
            // The parser is at-least-once: a line it re-parsed after a crash comes again with
            // its event_id, and counts once.
            send_record(&producer, &topic, line).await;
        }
        if i == LINES / 3 {
            // Let it count some, then kill it mid-stream.
            eventually(WAIT, "rollups before the first kill", || async {
                (!last_rollups(&kafka).await.is_empty()).then_some(())
            })
            .await;
            aggregation.kill();
            aggregation = Aggregation::start(&kafka, &state, &data);
        } else if i == 2 * LINES / 3 {
            aggregation.kill();
            std::fs::remove_dir_all(&state).unwrap();
            aggregation = Aggregation::start(&kafka, &state, &data);
        } else if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let counted = eventually(Duration::from_secs(180), "rollups equal the truth", || {
        let truth = &truth;
        let kafka = &kafka;
        async move {
            let counted: BTreeMap<String, BTreeMap<Level, u64>> = last_rollups(kafka)
                .await
                .into_iter()
                .map(|(k, r)| (k, r.levels))
                .collect();
            (counted == *truth).then_some(counted)
        }
    })
    .await;
    assert_eq!(counted, truth);
    assert_eq!(
        counted.values().flat_map(|l| l.values()).sum::<u64>(),
        LINES as u64
    );
    drop(aggregation);
}
