//! MovieFlix end to end, on the broker the testkit picks (`CASESTUDIES_TEST_KAFKA`: embedded by
//! default, tansu, testcontainers): every test drives the services through their HTTP API or
//! their topics, and reads results back the same way a user would.

mod analytics;
mod end_to_end;
mod invalid_input;
mod recommendations;
mod restore;

use std::path::Path;
use std::time::Duration;

use movieflix::app::{MovieFlix, Options};
use reqwest::StatusCode;
use serde_json::Value;
use shared::analytics::AnalyticsArgs;
use shared::service::Process;
use shared::service::cli::ServeArgs;
use shared::testkit::TestKafka;

/// Starts the services named (every one when `services` is empty) on `kafka`, on a free port,
/// with the given directories: through the same entry point as the binary.
pub async fn spawn(
    kafka: &TestKafka,
    services: &[&str],
    state: &Path,
    analytics: &Path,
) -> Process {
    let names: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    let serve = ServeArgs {
        state_dir: Some(state.to_path_buf()),
        ..ServeArgs::for_tests(state)
    };
    let options = Options {
        analytics: AnalyticsArgs {
            sink_max_rows: 10_000,
            sink_max_age: Duration::from_millis(500),
            ..AnalyticsArgs::in_dir(analytics)
        },
    };
    shared::service::cli::start::<MovieFlix>(kafka.kafka(), &names, &serve, &options)
        .await
        .unwrap()
        .0
}

pub use shared::testkit::http::{client, get, post};

/// Posts a position and insists it is accepted.
pub async fn report(client: &reqwest::Client, app: &Process, body: Value) -> Value {
    let (status, answer) = post(client, &format!("{}/v1/positions", app.url()), &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body} → {answer}");
    answer
}

pub use shared::testkit::eventually;

/// Every row of every Parquet file under `dir`: (event_id, kafka_partition, kafka_offset).
pub fn parquet_rows(dir: &Path) -> Vec<(String, i32, i64)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    let mut rows = Vec::new();
    for path in shared::analytics::files_under(dir).unwrap() {
        if path.extension().and_then(|e| e.to_str()) != Some("parquet") {
            continue;
        }
        let file = std::fs::File::open(&path).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let index = |name: &str| {
            schema
                .columns()
                .iter()
                .position(|c| c.name() == name)
                .unwrap_or_else(|| panic!("no column {name} in {}", path.display()))
        };
        let (id, partition, offset) = (
            index("event_id"),
            index("kafka_partition"),
            index("kafka_offset"),
        );
        for row in reader.get_row_iter(None).unwrap() {
            let row = row.unwrap();
            rows.push((
                row.get_string(id).unwrap().clone(),
                row.get_int(partition).unwrap(),
                row.get_long(offset).unwrap(),
            ));
        }
    }
    rows
}
