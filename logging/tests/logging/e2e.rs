//! End to end, as the issue puts it: an application writes syslog lines to the real rsyslog
//! (omkafka), collectd sends this host's values, and `logging all` — parser, aggregations, log
//! sink, … in a child process — is SIGKILLed twice while the lines flow and restarted on the
//! same directories. Afterwards every line is found by search exactly once and counted in the
//! rollups exactly once, and collectd's series are rolled up.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use logging::collectors::collectd::Collectd;
use logging::collectors::rsyslog::Rsyslog;
use logging::events::{Level, LogRollup, MetricRollup, minute_of, rollup_key};
use logging::topics::{LOG_ROLLUPS, METRIC_ROLLUPS};
use rdkafka::Message;
use serde_json::Value;
use shared::testkit::TestKafka;
use tokio::io::AsyncWriteExt;

use crate::{WAIT, eventually, key};

const MIN: i64 = 60_000;
/// The lines of the application.
const LINES: usize = 1500;

/// `logging all` in a process of its own, on a fixed loopback port; SIGKILLed when dropped.
struct Pipeline(Child);

impl Pipeline {
    fn start(kafka: &TestKafka, dir: &Path, port: u16) -> Pipeline {
        let child = Command::new(env!("CARGO_BIN_EXE_logging"))
            .arg("all")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("KAFKA_BOOTSTRAP_SERVERS", kafka.kafka().bootstrap_servers())
            .env("TOPIC_PREFIX", kafka.kafka().prefix())
            // The killed members stay in their groups until their sessions time out.
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("KAFKA_HEARTBEAT_INTERVAL_MS", "500")
            .env("LOG_SINK_BATCH", "100")
            // 5 minutes: no minute closes while the lines (3 minutes of event time) flow, so
            // none can be late; the closing line at the end closes them all.
            .env("LOG_AGGREGATION_GRACE", "5m")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Pipeline(child)
    }

    fn kill(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
        self.0.wait().unwrap();
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /v1/search?<query>` on the pipeline; `None` while it is down or not ready.
async fn search(client: &reqwest::Client, port: u16, query: &str) -> Option<Value> {
    let response = client
        .get(format!("http://127.0.0.1:{port}/v1/search?{query}"))
        .send()
        .await
        .ok()?;
    if response.status() != reqwest::StatusCode::OK {
        return None;
    }
    response.json().await.ok()
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The last rollup of every key of `service` on `log_rollups`.
async fn rollups_of(kafka: &TestKafka, service: &str) -> Option<BTreeMap<String, LogRollup>> {
    let topic = kafka.kafka().topic(&LOG_ROLLUPS);
    let mut last = BTreeMap::new();
    for m in kafka.read_all(&topic, Duration::from_secs(1)).await.ok()? {
        let rollup: LogRollup = serde_json::from_slice(m.payload().unwrap()).unwrap();
        if rollup.service == service {
            assert_eq!(key(&m).unwrap(), rollup.key());
            last.insert(rollup.key(), rollup);
        }
    }
    Some(last)
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_rsyslog_and_collectd_lines_found_and_counted_exactly_once_across_sigkills() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The children cannot create topics on an embedded broker: every topic is made here, before
    // rsyslog, collectd or the pipeline write.
    kafka.provision(logging::topics::ALL).await.unwrap();
    for config in [
        logging::log_parser::config(kafka.kafka()).0,
        logging::log_aggregation::config(kafka.kafka()).0,
        logging::metrics_aggregation::config(kafka.kafka()).0,
    ] {
        shared::streams::app::provision_internal_topics(kafka.kafka(), &config)
            .await
            .unwrap();
    }
    let port = logging::collectors::child::free_port().unwrap();
    let pipeline_dir = dir.path().join("pipeline");
    let mut pipeline = Pipeline::start(&kafka, &pipeline_dir, port);
    let rsyslog = Rsyslog::start(kafka.kafka(), &dir.path().join("rsyslog"), &[])
        .await
        .unwrap();
    let run = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let collectd_host = format!("e2e-collectd-{run}");
    let collectd = Collectd::start(kafka.kafka(), &dir.path().join("collectd"), &collectd_host)
        .await
        .unwrap();

    // The application: its own name per run, one host (one key, one partition: its lines stay
    // in order), a token per line, every 10th line an error, event times spread over three
    // minutes 20 minutes ago.
    let app = format!("e2e{run}");
    let m0 = minute_of(Utc::now().timestamp_millis()) - 20 * MIN;
    let token = |seq: usize| format!("e2e{run}n{seq}");
    let mut sent: Vec<String> = Vec::with_capacity(LINES + 1);
    let mut truth: BTreeMap<String, BTreeMap<Level, u64>> = BTreeMap::new();
    let mut line = |seq: usize, time: i64, level: Level| {
        let pri = match level {
            Level::Error => 8 + 3,
            _ => 8 + 6,
        };
        let message = format!("request {} done", token(seq));
        sent.push(message.clone());
        *truth
            .entry(rollup_key(&app, minute_of(time)))
            .or_default()
            .entry(level)
            .or_default() += 1;
        format!(
            "<{pri}>1 {} web-1 {app} 4242 - - {message}\n",
            rfc3339(time)
        )
    };
    let client = shared::testkit::http::client();
    let total = |query: String| {
        let client = client.clone();
        async move {
            search(&client, port, &query)
                .await
                .and_then(|body| body["total"].as_u64())
        }
    };
    let mut tcp = tokio::net::TcpStream::connect(rsyslog.syslog_address())
        .await
        .unwrap();
    let mut after_restart = 0;
    for seq in 0..LINES {
        let time = m0 + (seq as i64 * 3 * MIN) / LINES as i64;
        let level = if seq % 10 == 0 {
            Level::Error
        } else {
            Level::Info
        };
        tcp.write_all(line(seq, time, level).as_bytes())
            .await
            .unwrap();
        if seq == LINES / 3 {
            // Killed mid-stream: once it has indexed some of the lines.
            eventually(WAIT, "lines indexed before the first kill", || {
                total(format!("q=service:{app}"))
            })
            .await;
            pipeline.kill();
            pipeline = Pipeline::start(&kafka, &pipeline_dir, port);
            after_restart = eventually(WAIT, "the restarted pipeline searching", || {
                total(format!("q=service:{app}"))
            })
            .await;
        } else if seq == 2 * LINES / 3 {
            // And again, once the restarted one has indexed lines sent after it started.
            eventually(WAIT, "lines indexed after the restart", || async {
                total(format!("q=service:{app}"))
                    .await
                    .filter(|n| *n > after_restart)
            })
            .await;
            pipeline.kill();
            pipeline = Pipeline::start(&kafka, &pipeline_dir, port);
        } else if seq % 50 == 0 {
            tcp.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // A line 9 minutes on closes the three minutes (grace 5 min); it is one more line to find.
    let closing = m0 + 9 * MIN;
    tcp.write_all(line(LINES, closing, Level::Info).as_bytes())
        .await
        .unwrap();
    tcp.shutdown().await.unwrap();

    // (b) The rollups: every line in its minute once, the errors of each minute exact, nothing
    // late, the three minutes final. A line lost or counted twice (the parser re-reads what it
    // had not committed when it was killed; the aggregation drops repeats by event_id) makes a
    // count differ, and the counts are compared exactly.
    let rollups = eventually(
        Duration::from_secs(180),
        "the final rollups of the application",
        || async {
            let rollups = rollups_of(&kafka, &app).await?;
            let done = (0..3).all(|m| {
                rollups
                    .get(&rollup_key(&app, m0 + m * MIN))
                    .is_some_and(|r| r.is_final)
            }) && rollups.contains_key(&rollup_key(&app, closing));
            done.then_some(rollups)
        },
    )
    .await;
    let counted: BTreeMap<String, BTreeMap<Level, u64>> = rollups
        .iter()
        .map(|(k, r)| (k.clone(), r.levels.clone()))
        .collect();
    assert_eq!(counted, truth, "{rollups:#?}");
    let mut lines = 0;
    for m in 0..3 {
        let r = &rollups[&rollup_key(&app, m0 + m * MIN)];
        let errors = truth[&r.key()].get(&Level::Error).copied().unwrap_or(0);
        assert!(r.is_final && r.late == 0, "{r:#?}");
        assert_eq!((r.errors, r.lines), (errors, r.levels.values().sum()));
        assert!(errors > 0, "{r:#?}");
        lines += r.lines;
    }
    assert_eq!(lines, LINES as u64);

    // (a) Search: every line exactly once. The log sink upserts by event_id (the parser gives a
    // re-parsed line the event_id it had), so the index holds each line once although the
    // killed pipeline re-read some; without the upsert those lines would be there twice, their
    // tokens would find 2 hits and the minute's messages would not equal what was sent.
    eventually(
        Duration::from_secs(120),
        "every line searchable",
        || async {
            total(format!("q=service:{app}"))
                .await
                .filter(|n| *n >= sent.len() as u64)
        },
    )
    .await;
    let mut found: Vec<String> = Vec::new();
    for m in 0..10 {
        let (from, to) = (m0 + m * MIN, m0 + (m + 1) * MIN - 1);
        let query = format!(
            "q=service:{app}&from={}&to={}&limit=1000",
            rfc3339(from),
            rfc3339(to)
        );
        let body = search(&client, port, &query).await.unwrap();
        let hits = body["hits"].as_array().unwrap();
        assert_eq!(body["total"].as_u64(), Some(hits.len() as u64), "{query}");
        found.extend(
            hits.iter()
                .map(|h| h["message"].as_str().unwrap().to_owned()),
        );
    }
    found.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(found.len(), expected.len());
    assert!(found == expected, "the lines found are not the lines sent");
    for seq in 0..=LINES {
        let body = search(&client, port, &format!("q={}", token(seq)))
            .await
            .unwrap();
        assert_eq!(body["total"], 1, "{}: {body}", token(seq));
        assert_eq!(body["hits"][0]["service"], app.as_str());
    }

    // (c) collectd's values: rolled up under its key (its own samples have no exact count).
    let topic = kafka.kafka().topic(&METRIC_ROLLUPS);
    let source = collectd.key().to_owned();
    let load = eventually(WAIT, "a rollup of collectd's load", || async {
        kafka
            .read_all(&topic, Duration::from_millis(500))
            .await
            .ok()?
            .iter()
            .map(|m| serde_json::from_slice::<MetricRollup>(m.payload().unwrap()).unwrap())
            .find(|r| {
                r.name == "collectd_load_load_shortterm" && r.labels.get("source") == Some(&source)
            })
    })
    .await;
    assert_eq!(load.labels["host"], collectd_host);
    assert!(load.count >= 1 && load.min <= load.max, "{load:?}");

    collectd.stop().await.unwrap();
    rsyslog.stop().await.unwrap();
    drop(pipeline);
}
