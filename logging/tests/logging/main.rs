//! Logging end to end, on the broker the testkit picks (`CASESTUDIES_TEST_KAFKA`): the log
//! parser started as the binary starts it, the forwarder as `logging forward` starts it, and
//! their results read back from the topics; rsyslog, collectd and Prometheus — the real
//! programs — as child processes with the configuration in `logging/config/`.

mod aggregation;
mod collectd;
mod e2e;
mod forwarder;
mod metrics;
mod parser;
mod remote_write;
mod rsyslog;
mod simulator;
mod sink;

use std::path::Path;
use std::time::Duration;

use logging::app::{Logging, Options};
use logging::events::{LogRecord, MetricRollup};
use logging::topics::METRIC_ROLLUPS;
use rdkafka::Message;
use rdkafka::message::OwnedHeaders;
use rdkafka::message::OwnedMessage;
use shared::EventProducer;
use shared::service::Process;
use shared::service::cli::ServeArgs;
use shared::testkit::TestKafka;

pub use shared::testkit::eventually;

/// How long a test waits for records: generous, the machine may be busy.
pub const WAIT: Duration = Duration::from_secs(60);

/// Starts every Logging service on `kafka`, on a free port: through the same entry
/// point as the binary.
pub async fn spawn(kafka: &TestKafka, dir: &Path) -> Process {
    let serve = ServeArgs::for_tests(dir);
    shared::service::cli::start::<Logging>(kafka.kafka(), &[], &serve, &Options::default())
        .await
        .unwrap()
        .0
}

/// Starts only the services named (`log-parser`, `metrics-aggregation`, …) on `kafka`: a test
/// of one path starts what that path needs.
pub async fn spawn_only(kafka: &TestKafka, dir: &Path, services: &[&str]) -> Process {
    let serve = ServeArgs::for_tests(dir);
    let names: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    shared::service::cli::start::<Logging>(kafka.kafka(), &names, &serve, &Options::default())
        .await
        .unwrap()
        .0
}

/// Sends `payload` under `key` to `topic`, acknowledged.
pub async fn send(producer: &EventProducer, topic: &str, key: &str, payload: &[u8]) {
    producer
        .send(
            topic,
            Some(key.as_bytes()),
            Some(payload),
            OwnedHeaders::new(),
            None,
        )
        .await
        .unwrap();
}

/// Sends `r` as JSON under its `service/host`.
pub async fn send_record(producer: &EventProducer, topic: &str, r: &LogRecord) {
    let key = format!("{}/{}", r.service, r.host);
    send(producer, topic, &key, &serde_json::to_vec(r).unwrap()).await;
}

/// Every rollup on `metric_rollups` now; `None` when it cannot be read (yet).
pub async fn metric_rollups(kafka: &TestKafka) -> Option<Vec<MetricRollup>> {
    let records = kafka
        .read_all(
            &kafka.kafka().topic(&METRIC_ROLLUPS),
            Duration::from_millis(500),
        )
        .await
        .ok()?;
    Some(
        records
            .iter()
            .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
            .collect(),
    )
}

/// A record's key as text.
pub fn key(message: &OwnedMessage) -> Option<String> {
    message
        .key()
        .map(|k| String::from_utf8(k.to_vec()).expect("a UTF-8 key"))
}

/// A record of `parsed_logs`, decoded and checked against the rules.
pub fn parsed(message: &OwnedMessage) -> LogRecord {
    let record: LogRecord =
        serde_json::from_slice(message.payload().expect("a payload")).expect("a LogRecord");
    assert_eq!(record.validate(), Ok(()), "{record:#?}");
    record
}

/// The dead letters of `topic` written by `application` (full name), once there are `n`: every
/// Logging service that reads a topic (an aggregation, both sinks) dead-letters a bad record
/// with its own name.
pub async fn letters_of(
    kafka: &TestKafka,
    topic: &str,
    application: &str,
    n: usize,
) -> Vec<shared::dlq::DeadLetter> {
    let dlq = shared::topics::dlq_name(topic);
    let letters = eventually(
        WAIT,
        &format!("{n} dead letters of {application}"),
        || async {
            let letters: Vec<shared::dlq::DeadLetter> = kafka
                .read_all(&dlq, Duration::from_secs(1))
                .await
                .unwrap_or_default()
                .iter()
                .filter_map(shared::dlq::DeadLetter::from_message)
                .filter(|l| l.application.as_deref() == Some(application))
                .collect();
            (letters.len() >= n).then_some(letters)
        },
    )
    .await;
    assert_eq!(letters.len(), n, "{letters:#?}");
    letters
}
