//! The Prometheus remote-write receiver: the real `prometheus` (configured by
//! `logging/config/prometheus.yml`) scraping itself and remote-writing to the receiver → its
//! samples on `application_metrics`, keyed job/instance, rolled up per series per minute;
//! bad requests answered 4xx with a JSON reason, nothing produced.

use std::time::Duration;

use logging::collectors::prometheus::Prometheus;
use logging::events::decode_samples;
use logging::remote_write_receiver::{Label, MAX_BODY_BYTES, Sample, TimeSeries, WriteRequest};
use logging::topics::APPLICATION_METRICS;
use prost::Message as _;
use rdkafka::Message;
use reqwest::StatusCode;
use shared::testkit::{TestKafka, http};

use crate::{WAIT, eventually, key, metric_rollups, spawn_only};

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.into(),
        value: value.into(),
    }
}

fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(bytes).unwrap()
}

/// POSTs `body` to the receiver with the given content type and encoding.
async fn post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let mut request = client
        .post(format!("{url}/api/v1/write"))
        .header("content-type", content_type)
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    http::send(request).await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_remote_write_requests_are_4xx_with_a_reason_and_produce_nothing() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_only(&kafka, dir.path(), &["remote-write-receiver"]).await;
    let url = app.url();
    let client = http::client();
    let protobuf = "application/x-protobuf";
    let good = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                label("__name__", "queue_depth"),
                label("job", "worker"),
                label("instance", "w-1:9100"),
            ],
            samples: vec![
                Sample {
                    value: 3.0,
                    timestamp: 1_772_366_400_000,
                },
                Sample {
                    value: 5.0,
                    timestamp: 1_772_366_401_000,
                },
            ],
        }],
    }
    .encode_to_vec();
    let nameless = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![label("job", "worker")],
            samples: vec![Sample {
                value: 1.0,
                timestamp: 1_772_366_400_000,
            }],
        }],
    }
    .encode_to_vec();

    // What, content type, content encoding, body; the status and a word of the reason.
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "JSON",
            "application/json",
            Some("snappy"),
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/x-protobuf",
        ),
        (
            "gzip",
            protobuf,
            Some("gzip"),
            snappy(&good),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "snappy",
        ),
        (
            "not snappy",
            protobuf,
            Some("snappy"),
            good.clone(),
            StatusCode::BAD_REQUEST,
            "snappy",
        ),
        (
            "not protobuf",
            protobuf,
            Some("snappy"),
            snappy(b"\x0a\xff\xff\xff\xff"),
            StatusCode::BAD_REQUEST,
            "WriteRequest",
        ),
        (
            "no __name__",
            protobuf,
            Some("snappy"),
            snappy(&nameless),
            StatusCode::BAD_REQUEST,
            "__name__",
        ),
        (
            "too large",
            protobuf,
            Some("snappy"),
            vec![0u8; MAX_BODY_BYTES + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
            "bytes",
        ),
    ];
    for (what, content_type, encoding, body, status, reason) in cases {
        let (got, answer) = post(&client, &url, content_type, encoding, body).await;
        assert_eq!(got, status, "{what}: {answer}");
        let error = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {answer}"));
        assert!(error.contains(reason), "{what}: {answer}");
    }

    // A good one after them: 204 once on the topic, keyed job/instance; the only record.
    let (status, _) = post(&client, &url, protobuf, Some("snappy"), snappy(&good)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let topic = kafka.kafka().topic(&APPLICATION_METRICS);
    let records = kafka
        .read_all(&topic, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(key(&records[0]).as_deref(), Some("worker/w-1:9100"));
    let samples = decode_samples(records[0].payload().unwrap()).unwrap();
    let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
    assert_eq!(values, [3.0, 5.0]);
    assert_eq!(samples[0].name, "queue_depth");
    assert_eq!(samples[0].labels["instance"], "w-1:9100");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_remote_write_reaches_metric_rollups() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_only(
        &kafka,
        dir.path(),
        &["remote-write-receiver", "metrics-aggregation"],
    )
    .await;
    let prometheus = Prometheus::start(
        &dir.path().join("prometheus"),
        &format!("{}/api/v1/write", app.url()),
    )
    .await
    .unwrap();
    let source = prometheus.key();

    // Its own `up` and build info, remote-written, rolled up under its job/instance.
    let (up, build) = eventually(WAIT, "rollups of prometheus' up and build info", || async {
        let all = metric_rollups(&kafka).await?;
        let of = |name: &str| all.iter().rfind(|r| r.name == name).cloned();
        Some((of("up")?, of("prometheus_build_info")?))
    })
    .await;
    for rollup in [&up, &build] {
        assert_eq!(rollup.labels["source"], source, "{rollup:?}");
        assert_eq!(rollup.labels["job"], "prometheus");
        assert_eq!(rollup.labels["instance"], prometheus.address().to_string());
        assert!(rollup.count >= 1);
    }
    // The scrape succeeded: up is 1, and so is build info.
    assert_eq!((up.min, up.max), (1.0, 1.0), "{up:?}");
    assert_eq!(build.max, 1.0);
    assert!(build.labels.contains_key("version"), "{build:?}");

    // Every record on application_metrics came from it, keyed by its job/instance.
    let topic = kafka.kafka().topic(&APPLICATION_METRICS);
    let records = kafka
        .read_all(&topic, Duration::from_millis(500))
        .await
        .unwrap();
    assert!(!records.is_empty());
    for record in &records {
        assert_eq!(key(record).as_deref(), Some(source.as_str()));
        decode_samples(record.payload().unwrap()).unwrap();
    }
    prometheus.stop().await.unwrap();
    app.stop().await.unwrap();
}
