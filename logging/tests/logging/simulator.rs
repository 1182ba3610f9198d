//! The simulator through the real path: its applications' lines — files tailed by our forwarder
//! (one per host, in process) and syslog over TCP to a forwarder — reach `application_logs`
//! once each, and the log parser reads every one back in its application's format, keyed
//! `application/host`, with the level it was written with; every latency reaches
//! `application_metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use logging::events::{Format, decode_samples};
use logging::simulator::{
    APPS, LATENCY_METRIC, SimulationArgs, SimulatorOptions, SimulatorStats, Writes, simulate,
};
use logging::topics::{APPLICATION_LOGS, APPLICATION_METRICS, PARSED_LOGS};
use rdkafka::Message;
use rdkafka::consumer::BaseConsumer;
use shared::testkit::TestKafka;
use tokio_util::sync::CancellationToken;

use crate::{WAIT, eventually, key, parsed, spawn};

/// Records on `topic`: the sum of its partitions' end offsets.
fn records_on(kafka: &shared::Kafka, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = kafka.consumer_config().create().unwrap();
    (0..partitions)
        .map(|p| {
            shared::kafka::watermarks(&consumer, topic, p, Duration::from_secs(30))
                .unwrap()
                .1
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn simulated_lines_reach_parsed_logs_once_each_in_their_format_and_level() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, dir.path()).await;
    let stats = Arc::new(SimulatorStats::default());
    let options = SimulatorOptions {
        rate: 300.0,
        ..SimulationArgs::default()
            .options(dir.path().join("hosts"))
            .unwrap()
    };
    let stop = CancellationToken::new();
    let simulator = tokio::spawn(simulate(
        kafka.kafka().clone(),
        options,
        Arc::clone(&stats),
        stop.clone(),
    ));
    eventually(WAIT, "every application wrote 50 lines", || {
        let stats = Arc::clone(&stats);
        async move {
            stats
                .apps
                .iter()
                .all(|(_, s)| s.lines.load(std::sync::atomic::Ordering::Relaxed) >= 50)
                .then_some(())
        }
    })
    .await;
    // The simulator stops its forwarders once they read every line written; they ship it all.
    stop.cancel();
    simulator.await.unwrap().unwrap();
    let written = stats.lines();
    let raw = kafka.kafka().topic(&APPLICATION_LOGS);
    assert_eq!(
        records_on(kafka.kafka(), &raw, APPLICATION_LOGS.partitions),
        written as i64,
        "every line written forwarded once: {}",
        stats.totals()
    );

    let topic = kafka.kafka().topic(&PARSED_LOGS);
    let out = kafka
        .wait_for_records(&topic, written as usize, WAIT)
        .await
        .unwrap();
    let mut per_service: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for message in &out {
        let record = parsed(message);
        let app = APPS
            .iter()
            .find(|a| a.service == record.service)
            .unwrap_or_else(|| panic!("a simulated service: {record:?}"));
        assert!(app.hosts.contains(&record.host.as_str()), "{record:?}");
        assert_eq!(
            key(message).unwrap(),
            format!("{}/{}", record.service, record.host)
        );
        let format = match app.writes {
            Writes::JsonFile => Format::Json,
            Writes::AccessLogFile => Format::AccessLog,
            Writes::SyslogFile | Writes::SyslogTcp => Format::Rfc5424,
        };
        assert_eq!(record.format, format, "{record:?}");
        let counts = per_service.entry(record.service.clone()).or_default();
        counts.0 += 1;
        counts.1 += u64::from(record.level.is_error());
    }
    let expected: BTreeMap<String, (u64, u64)> = stats
        .apps
        .iter()
        .map(|(service, s)| {
            use std::sync::atomic::Ordering::Relaxed;
            (
                (*service).to_owned(),
                (s.lines.load(Relaxed), s.errors.load(Relaxed)),
            )
        })
        .collect();
    assert_eq!(
        per_service, expected,
        "lines and errors per service, as written"
    );

    let metrics = kafka.kafka().topic(&APPLICATION_METRICS);
    let records = records_on(kafka.kafka(), &metrics, APPLICATION_METRICS.partitions);
    let samples: usize = kafka
        .wait_for_records(&metrics, records as usize, WAIT)
        .await
        .unwrap()
        .iter()
        .map(|m| {
            let samples = decode_samples(m.payload().unwrap()).unwrap();
            assert!(samples.iter().all(|s| s.name == LATENCY_METRIC));
            samples.len()
        })
        .sum();
    assert_eq!(samples as u64, written, "a latency per line");
    app.stop().await.unwrap();
}
