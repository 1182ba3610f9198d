//! The sinks: the log sink's index holds every line exactly once across SIGKILLs (one exactly
//! between the index commit and the offset commit) and the parser's repeats; a failing index is
//! retried, then a batch that never goes in is dead-lettered, nothing lost or repeated; records
//! that are no valid log record are dead-lettered and the ones behind them indexed; 1 MB and
//! non-UTF-8 lines reach the index; bad searches are 400 with a JSON reason; the analytics sink
//! writes parsed_logs rows to Parquet.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use logging::app::{Logging, Options};
use logging::events::{Format, Level, LogRecord};
use logging::log_sink::index::{LogReader, Search, SearchResult};
use logging::log_sink::{self, SinkConfig};
use logging::topics::{APPLICATION_LOGS, APPLICATION_METRICS, PARSED_LOGS};
use rdkafka::Message;
use reqwest::StatusCode;
use serde_json::Map;
use shared::EventProducer;
use shared::service::cli::ServeArgs;
use shared::testkit::TestKafka;
use tokio_util::sync::CancellationToken;

use crate::{WAIT, eventually, send, send_record};

/// 2026-03-01T12:00:00Z.
const T0: i64 = 1_772_366_400_000;

fn record(id: &str, i: i64, message: &str) -> LogRecord {
    let time = DateTime::<Utc>::from_timestamp_millis(T0 + i * 1_000).unwrap();
    LogRecord {
        event_id: id.to_owned(),
        time,
        received_at: time,
        host: "web-1".into(),
        service: "checkout".into(),
        level: Level::Info,
        message: message.to_owned(),
        fields: Map::new(),
        format: Format::Json,
        reason: None,
        notes: Vec::new(),
    }
}

fn search(reader: &LogReader, query: &str) -> SearchResult {
    reader.reload().unwrap();
    reader
        .search(&Search {
            query: query.to_owned(),
            limit: 1000,
            ..Search::default()
        })
        .unwrap()
}

/// Waits until the index holds `n` documents.
async fn wait_for_documents(reader: &LogReader, n: u64, timeout: Duration) {
    eventually(timeout, &format!("{n} documents in the index"), || async {
        reader.reload().unwrap();
        (reader.documents() >= n).then_some(())
    })
    .await;
    assert_eq!(reader.documents(), n, "more documents than records");
}

/// `logging log-sink` in a process of its own; SIGKILLed when dropped.
struct SinkProcess(Child);

impl SinkProcess {
    fn start(kafka: &TestKafka, state: &Path, env: &[(&str, &str)]) -> SinkProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_logging"))
            .arg("log-sink")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(state)
            .arg("--data-dir")
            .arg(state.join("data"))
            .env("KAFKA_BOOTSTRAP_SERVERS", kafka.kafka().bootstrap_servers())
            .env("TOPIC_PREFIX", kafka.kafka().prefix())
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("KAFKA_HEARTBEAT_INTERVAL_MS", "500")
            .env("LOG_SINK_BATCH", "100")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        SinkProcess(child)
    }

    fn kill(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
        self.0.wait().unwrap();
    }

    /// Waits until it exits on its own (the crash knob).
    async fn exited(&mut self) -> std::process::ExitStatus {
        eventually(WAIT, "the sink to crash", || {
            let status = self.0.try_wait().unwrap();
            async move { status }
        })
        .await
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_line_is_found_once_across_sigkills_of_the_sink_and_repeats_of_the_parser() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The parser in this process, the sink in a child that is killed.
    let (parser, _) = shared::service::cli::start::<Logging>(
        kafka.kafka(),
        &["log-parser".to_owned()],
        &ServeArgs::for_tests(&dir.path().join("parser")),
        &Options::default(),
    )
    .await
    .unwrap();
    let state = dir.path().join("sink");
    // The first sink aborts right after its 3rd index commit, before its offsets: that
    // batch is delivered again to the next one.
    let mut sink = SinkProcess::start(&kafka, &state, &[("LOG_SINK_CRASH_AFTER_COMMITS", "3")]);
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let raw = kafka.kafka().topic(&APPLICATION_LOGS);
    const LINES: usize = 1200;
    for i in 0..LINES {
        let line = format!(
            "<14>1 2026-03-01T12:00:00.000Z web-{} checkout - - - order tok{i} paid",
            i % 4
        );
        send(
            &producer,
            &raw,
            &format!("checkout/web-{}", i % 4),
            line.as_bytes(),
        )
        .await;
        if i == 400 {
            let status = sink.exited().await;
            assert!(!status.success(), "{status:?}");
            sink = SinkProcess::start(&kafka, &state, &[]);
        } else if i == 800 {
            sink.kill();
            sink = SinkProcess::start(&kafka, &state, &[]);
        } else if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // The parser is at-least-once: every seventh record of parsed_logs comes again (the same
    // event_id, another offset), as a re-parse after its crash would send it.
    let parsed = kafka.kafka().topic(&PARSED_LOGS);
    let records = kafka.wait_for_records(&parsed, LINES, WAIT).await.unwrap();
    for m in records.iter().step_by(7) {
        send(
            &producer,
            &parsed,
            std::str::from_utf8(m.key().unwrap()).unwrap(),
            m.payload().unwrap(),
        )
        .await;
    }

    // The sink's index is read here as `logging search` reads it: read-only, next to the sink.
    let index = log_sink::index_dir(&state);
    let reader = eventually(WAIT, "the index", || {
        let index = index.clone();
        async move { LogReader::open(&index).ok() }
    })
    .await;
    wait_for_documents(&reader, LINES as u64, Duration::from_secs(120)).await;
    // Each line once: its own token finds exactly one hit.
    for i in 0..LINES {
        let found = search(&reader, &format!("tok{i}"));
        assert_eq!(found.total, 1, "tok{i}: {found:?}");
        assert_eq!(found.hits[0].message, format!("order tok{i} paid"));
    }
    let all = search(&reader, "paid AND service:checkout");
    assert_eq!(all.total, LINES as u64);
    drop(sink);
    parser.stop().await.unwrap();
}

fn config(kafka: &TestKafka, dir: &Path) -> SinkConfig {
    let mut config = SinkConfig::new(kafka.kafka(), dir.to_path_buf());
    config.retry_initial = Duration::from_millis(20);
    config.retry_max = Duration::from_millis(200);
    config.linger = Duration::from_millis(200);
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_index_is_retried_then_a_batch_that_never_goes_in_is_dead_lettered() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(logging::topics::ALL).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let topic = kafka.kafka().topic(&PARSED_LOGS);

    // The index refuses the first three commits, then takes them: nothing lost, nothing twice,
    // nothing dead-lettered.
    let stop = CancellationToken::new();
    let mut failing = config(&kafka, dir.path());
    failing.fail_commits = 3;
    let sink = log_sink::start(kafka.kafka(), failing, None, stop.clone())
        .await
        .unwrap();
    for i in 0..50 {
        send_record(
            &producer,
            &topic,
            &record(&format!("a{i}"), i, &format!("first tok{i}")),
        )
        .await;
    }
    wait_for_documents(&sink.reader, 50, WAIT).await;
    assert_eq!(sink.stats.failures.get(), 3);
    for i in 0..50 {
        assert_eq!(search(&sink.reader, &format!("tok{i}")).total, 1, "tok{i}");
    }
    stop.cancel();
    sink.join().await.unwrap();

    // Then an index that keeps failing: after 2 attempts the batch's records are dead-lettered
    // with the reason, offsets move on, and the records behind them are indexed.
    let stop = CancellationToken::new();
    let mut doomed = config(&kafka, dir.path());
    doomed.fail_commits = 2;
    doomed.max_attempts = 2;
    let sink = log_sink::start(kafka.kafka(), doomed, None, stop.clone())
        .await
        .unwrap();
    send_record(&producer, &topic, &record("d0", 0, "doomed")).await;
    let letters = kafka.read_dlq(&topic, 1, WAIT).await.unwrap();
    assert!(
        letters[0].error.contains("not indexed after 2 attempts")
            && letters[0].error.contains("LOG_SINK_FAIL_COMMITS"),
        "{letters:#?}"
    );
    let group = log_sink::group(kafka.kafka());
    assert_eq!(letters[0].application.as_deref(), Some(group.as_str()));
    send_record(&producer, &topic, &record("b0", 0, "behind")).await;
    wait_for_documents(&sink.reader, 51, WAIT).await;
    assert_eq!(search(&sink.reader, "behind").total, 1);
    assert_eq!(search(&sink.reader, "doomed").total, 0);
    stop.cancel();
    sink.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_records_are_dead_lettered_odd_lines_indexed_and_bad_searches_are_400() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = shared::service::cli::start::<Logging>(
        kafka.kafka(),
        &["log-parser".to_owned(), "log-sink".to_owned()],
        &ServeArgs::for_tests(dir.path()),
        &Options::default(),
    )
    .await
    .unwrap();
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let parsed = kafka.kafka().topic(&PARSED_LOGS);
    // Straight onto parsed_logs: not JSON, no LogRecord, a LogRecord breaking the rules (a
    // message of 900 kB), then a good one behind them.
    send(&producer, &parsed, "checkout/web-1", b"not json").await;
    send(&producer, &parsed, "checkout/web-1", br#"{"event_id":"x"}"#).await;
    let huge = record("h0", 0, &"y".repeat(900_000));
    send_record(&producer, &parsed, &huge).await;
    send_record(&producer, &parsed, &record("g0", 1, "good behind")).await;
    // Through the parser: a 1 MB line (cut to 64 KiB, noted) and bytes that are not UTF-8.
    let raw = kafka.kafka().topic(&APPLICATION_LOGS);
    let big = format!(
        "<11>1 2026-03-01T12:00:02Z web-1 checkout - - - bigline {}",
        "x".repeat(logging::forwarder::MAX_LINE_BYTES - 60)
    );
    send(&producer, &raw, "checkout/web-1", big.as_bytes()).await;
    let mut latin1 = b"<14>1 2026-03-01T12:00:03Z web-1 checkout - - - latin caf".to_vec();
    latin1.push(0xE9);
    send(&producer, &raw, "checkout/web-1", &latin1).await;

    let group = log_sink::group(kafka.kafka());
    let letters = crate::letters_of(&kafka, &parsed, &group, 3).await;
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.error.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons.len(), 3, "{letters:#?}");
    assert!(
        reasons[0].contains("invalid LogRecord: message is 900000 bytes"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("not a valid LogRecord: expected ident"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("not a valid LogRecord: missing field `time`"),
        "{reasons:?}"
    );

    let client = shared::testkit::http::client();
    let url = app.url();
    let get = |query: &str| {
        let (client, url) = (client.clone(), url.clone());
        let query = query.to_owned();
        async move { shared::testkit::http::get(&client, &format!("{url}/v1/search?{query}")).await }
    };
    let found = eventually(WAIT, "three records searchable", || async {
        let (status, body) = get("q=good%20OR%20bigline%20OR%20latin").await;
        (status == StatusCode::OK && body["total"] == 3).then_some(body)
    })
    .await;
    let hits = found["hits"].as_array().unwrap();
    // Newest first.
    let messages: Vec<&str> = hits
        .iter()
        .map(|h| h["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages[0], "latin caf\u{FFFD}");
    assert!(messages[1].starts_with("bigline xxx"));
    assert_eq!(messages[1].len(), logging::events::MAX_MESSAGE_BYTES);
    assert_eq!(messages[2], "good behind");
    assert_eq!(hits[2]["level"], "info");
    assert_eq!(hits[2]["service"], "checkout");
    assert_eq!(hits[0]["format"], "rfc5424");
    assert!(hits[2]["offset"].as_i64().is_some() && hits[2]["partition"].as_i64().is_some());
    // A time range and a limit.
    let (status, body) = get("q=good%20OR%20bigline%20OR%20latin&from=2026-03-01T12:00:02Z&to=2026-03-01T12:00:02Z&limit=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 1);
    assert!(
        body["hits"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("bigline")
    );

    for (query, reason) in [
        ("q=message:(", "q is not a valid query"),
        ("q=nosuchfield:x", "q is not a valid query"),
        ("q=x&from=yesterday", "from \"yesterday\""),
        ("q=x&to=2026-03-01", "to \"2026-03-01\""),
        (
            "q=x&from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z",
            "is after to",
        ),
        ("q=x&limit=0", "limit \"0\""),
        ("q=x&limit=1001", "limit \"1001\""),
        ("q=x&limit=-3", "limit \"-3\""),
        ("q=x&sort=asc", "unknown parameter \"sort\""),
    ] {
        let (status, body) = get(query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{query}: {body}");
    }
    app.stop().await.unwrap();
}

/// Every row of the Parquet files under `table`: the `columns` named, as text (an Int64 column
/// printed).
fn parquet_rows(table: &Path, columns: &[&str]) -> Vec<Vec<String>> {
    use parquet::basic::Type;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;

    let mut rows = Vec::new();
    for path in shared::analytics::files_under(table).unwrap() {
        if path.extension().and_then(|e| e.to_str()) != Some("parquet") {
            continue;
        }
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let wanted: Vec<(usize, Type)> = columns
            .iter()
            .map(|name| {
                let i = schema
                    .columns()
                    .iter()
                    .position(|c| c.name() == *name)
                    .unwrap_or_else(|| panic!("no column {name} in {}", path.display()));
                (i, schema.column(i).physical_type())
            })
            .collect();
        for row in reader.get_row_iter(None).unwrap() {
            let row = row.unwrap();
            rows.push(
                wanted
                    .iter()
                    .map(|(i, kind)| match kind {
                        Type::INT64 => row.get_long(*i).unwrap().to_string(),
                        _ => row.get_string(*i).unwrap().clone(),
                    })
                    .collect(),
            );
        }
    }
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn the_analytics_sink_writes_parsed_logs_and_metrics_rows_to_parquet() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, dirs) = shared::service::cli::start::<Logging>(
        kafka.kafka(),
        &["analytics-sink".to_owned()],
        &ServeArgs::for_tests(dir.path()),
        &Options {
            analytics: shared::analytics::AnalyticsArgs {
                sink_max_age: Duration::from_secs(1),
                ..shared::analytics::AnalyticsArgs::in_dir(dir.path().join("analytics"))
            },
        },
    )
    .await
    .unwrap();
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let parsed = kafka.kafka().topic(&PARSED_LOGS);
    for i in 0..20 {
        send_record(
            &producer,
            &parsed,
            &record(&format!("p{i}"), i, &format!("row {i}")),
        )
        .await;
    }
    send(&producer, &parsed, "checkout/web-1", b"not json").await;
    // application_metrics: our samples (two in one record), a collectd value list (a null
    // skipped), and a record with no samples.
    let metrics = kafka.kafka().topic(&APPLICATION_METRICS);
    send(
        &producer,
        &metrics,
        "api/web-1",
        br#"[{"name":"http_requests_total","labels":{"code":"200"},"value":7,"time":"2026-03-01T12:00:00Z"},{"name":"http_seconds","value":0.25,"time":"2026-03-01T12:00:01Z"}]"#,
    )
    .await;
    send(
        &producer,
        &metrics,
        "collectd/web-2",
        br#"[{"values":[0.5,null,0.7],"dstypes":["gauge","gauge","gauge"],"dsnames":["shortterm","midterm","longterm"],"time":1772366400,"interval":10,"host":"web-2","plugin":"load","plugin_instance":"","type":"load","type_instance":""}]"#,
    )
    .await;
    send(&producer, &metrics, "api/web-1", b"[]").await;

    let logs_table = dir.path().join("analytics").join("parsed_logs");
    let rows = eventually(WAIT, "20 rows of parsed_logs in Parquet", || {
        let table = logs_table.clone();
        async move {
            let rows = parquet_rows(&table, &["event_id", "message", "level"]);
            (rows.len() >= 20).then_some(rows)
        }
    })
    .await;
    let mut expected: Vec<Vec<String>> = (0..20)
        .map(|i| vec![format!("p{i}"), format!("row {i}"), "info".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(rows, expected);
    let letters = kafka.read_dlq(&parsed, 1, WAIT).await.unwrap();
    assert!(
        letters[0].error.contains("not a valid LogRecord"),
        "{letters:#?}"
    );

    let metrics_table = dir.path().join("analytics").join("application_metrics");
    let rows = eventually(WAIT, "2 rows of application_metrics in Parquet", || {
        let table = metrics_table.clone();
        async move {
            let rows = parquet_rows(&table, &["samples", "names", "json"]);
            (rows.len() >= 2).then_some(rows)
        }
    })
    .await;
    // Sorted: collectd's row first.
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(
        rows[0][..2],
        [
            "2",
            "collectd_load_load_longterm,collectd_load_load_shortterm"
        ]
    );
    let collectd: serde_json::Value = serde_json::from_str(&rows[0][2]).unwrap();
    assert_eq!(collectd[0]["labels"]["host"], "web-2");
    assert_eq!(collectd[0]["value"], 0.5);
    assert_eq!(rows[1][..2], ["2", "http_requests_total,http_seconds"]);
    let ours: serde_json::Value = serde_json::from_str(&rows[1][2]).unwrap();
    assert_eq!(ours[0]["labels"]["code"], "200");
    assert_eq!(ours[0]["value"], 7.0);
    let letters = kafka.read_dlq(&metrics, 1, WAIT).await.unwrap();
    assert!(letters[0].error.contains("no samples"), "{letters:#?}");
    drop(dirs);
    app.stop().await.unwrap();
}
