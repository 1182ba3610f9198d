//! Ingestion end to end, on the broker the testkit picks (`CASESTUDIES_TEST_KAFKA`): every test
//! drives the services through their HTTP API or their topics, and reads the results back the
//! way a dashboard would.

mod batch;
mod counts;
mod dead_letters;
mod ingest;
mod windows;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ingestion::app::{Ingestion, Options};
use ingestion::events::RealtimeCount;
use rdkafka::Message;
use reqwest::StatusCode;
use serde_json::Value;
use shared::service::Process;
use shared::service::cli::ServeArgs;
use shared::testkit::TestKafka;

pub use shared::testkit::eventually;
pub use shared::testkit::http::{client, get, send};

/// Starts the services named (every one when `services` is empty) on `kafka`, on a free port:
/// through the same entry point as the binary.
pub async fn spawn(kafka: &TestKafka, services: &[&str], dir: &Path, options: Options) -> Process {
    let names: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    let serve = ServeArgs {
        state_dir: Some(dir.join("state")),
        ..ServeArgs::for_tests(dir)
    };
    shared::service::cli::start::<Ingestion>(kafka.kafka(), &names, &serve, &options)
        .await
        .unwrap()
        .0
}

/// `POST /v1/events` with `body` as NDJSON: the status and the JSON answer.
pub async fn post_events(http: &reqwest::Client, app: &str, body: String) -> (StatusCode, Value) {
    send(
        http.post(format!("{app}/v1/events"))
            .header("content-type", "application/x-ndjson")
            .body(body),
    )
    .await
}

/// The last record of every key of `realtime_counts`, and every record in order.
pub async fn realtime_counts(
    kafka: &TestKafka,
) -> (
    BTreeMap<String, RealtimeCount>,
    Vec<(String, RealtimeCount)>,
) {
    let topic = kafka.kafka().topic(&ingestion::topics::REALTIME_COUNTS);
    let records = kafka
        .read_all(&topic, Duration::from_secs(2))
        .await
        .unwrap();
    let all: Vec<(String, RealtimeCount)> = records
        .iter()
        .map(|r| {
            let key = String::from_utf8(r.key().unwrap().to_vec()).unwrap();
            (key, serde_json::from_slice(r.payload().unwrap()).unwrap())
        })
        .collect();
    let last = all.iter().cloned().collect();
    (last, all)
}
