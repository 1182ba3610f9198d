//! **Prometheus remote-write receiver** (producer): `POST /api/v1/write`, Prometheus' remote
//! write 1.0 — a snappy-compressed (block format) protobuf `WriteRequest` — turned into records
//! of `application_metrics` in our [`MetricSample`] JSON, which the metrics aggregation reads.
//!
//! * **One record per series** of the request (a JSON array of its samples, at most
//!   [`SAMPLES_PER_RECORD`] a record), keyed `application/host` = `job/instance` of its labels
//!   (`prometheus/unknown` without them): one target's series stay on one partition, in order.
//!   `__name__` is the sample's `name`; every other label, `job` and `instance` included, stays
//!   a label.
//! * **Acknowledged before answered**: every record is produced (`acks=all`, idempotent) and
//!   acknowledged by the broker before `204 No Content`. When the broker does not acknowledge,
//!   `503`: Prometheus keeps the samples and sends them again (it retries 5xx, with backoff).
//!   A retried request may repeat records that were acknowledged the first time.
//! * **Bad requests** get a `4xx` with a JSON reason, and Prometheus drops them (it does not
//!   retry a 4xx): a content type other than `application/x-protobuf` or a content encoding other
//!   than `snappy` (`415`); a body over [`MAX_BODY_BYTES`], or that would decompress to over
//!   [`MAX_DECOMPRESSED_BYTES`] (`413`); a body that is not snappy, not a protobuf
//!   `WriteRequest`, a series without `__name__`, a name or labels our samples refuse, a
//!   timestamp out of range (`400`). Nothing of a refused request is produced.
//! * **Staleness markers** (the NaN Prometheus writes when a series disappears) and other
//!   values that are not finite are skipped and counted
//!   (`logging_remote_write_samples_skipped_total`): a rollup takes finite values. A request
//!   with no series (Prometheus' metadata-only requests) is answered `204`, nothing produced.
//!
//! The protobuf messages are the subset of `prometheus/prompb` (`types.proto`, `remote.proto`)
//! this receiver reads, declared with `prost`'s derive; the fields it does not read (metadata,
//! exemplars, native histograms) are skipped by the decoder.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use chrono::DateTime;
use futures::future::join_all;
use prometheus_client::metrics::counter::Counter;
use rdkafka::message::OwnedHeaders;
use shared::http::ApiError;
use shared::{EventProducer, Kafka};

use crate::events::{MetricSample, log_key};
use crate::topics::APPLICATION_METRICS;

/// The largest (compressed) body: 10 MiB. Prometheus sends at most 2,000 samples a request by
/// default (`max_samples_per_send`), a few hundred kB.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// The largest body once decompressed (snappy says the length first: checked before).
pub const MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;
/// At most this many samples in one record (a record stays far under Kafka's 1 MB).
pub const SAMPLES_PER_RECORD: usize = 1_000;
/// The content type of a remote-write request.
pub const PROTOBUF: &str = "application/x-protobuf";

/// `prometheus.WriteRequest`: the series (field 1); metadata (field 3) is not read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels and samples; exemplars and histograms are not read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: a value at a time (milliseconds since the epoch).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// One record to produce: its key and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRecord {
    pub key: String,
    pub samples: Vec<MetricSample>,
}

/// What a request turned into: the records, and the samples skipped (not finite).
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    pub records: Vec<SeriesRecord>,
    pub skipped: u64,
}

/// Decompresses and decodes a request body; `Err` is the answer to give.
pub fn decode(body: &[u8]) -> Result<Decoded, ApiError> {
    let length = snap::raw::decompress_len(body).map_err(|err| {
        ApiError::bad_request(format!(
            "the body is not snappy-compressed (block format): {err}"
        ))
    })?;
    if length > MAX_DECOMPRESSED_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body decompresses to {length} bytes, over {MAX_DECOMPRESSED_BYTES}"),
        ));
    }
    let bytes = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|err| {
            ApiError::bad_request(format!(
                "the body is not snappy-compressed (block format): {err}"
            ))
        })?;
    let request = <WriteRequest as prost::Message>::decode(bytes.as_slice()).map_err(|err| {
        ApiError::bad_request(format!("the body is not a protobuf WriteRequest: {err}"))
    })?;
    let mut decoded = Decoded::default();
    for (index, series) in request.timeseries.into_iter().enumerate() {
        series_records(index, series, &mut decoded)?;
    }
    Ok(decoded)
}

fn series_records(index: usize, series: TimeSeries, out: &mut Decoded) -> Result<(), ApiError> {
    let mut name = None;
    let mut labels = BTreeMap::new();
    for label in series.labels {
        if label.name == "__name__" {
            name = Some(label.value);
        } else {
            labels.insert(label.name, label.value);
        }
    }
    let Some(name) = name else {
        return Err(ApiError::bad_request(format!(
            "series {index} has no __name__ label"
        )));
    };
    let key = log_key(
        labels.get("job").map_or("prometheus", String::as_str),
        labels.get("instance").map_or("unknown", String::as_str),
    );
    let mut samples = Vec::with_capacity(series.samples.len());
    for sample in series.samples {
        if !sample.value.is_finite() {
            out.skipped += 1;
            continue;
        }
        let time = DateTime::from_timestamp_millis(sample.timestamp).ok_or_else(|| {
            ApiError::bad_request(format!(
                "series {index} ({name}): timestamp {} ms is out of range",
                sample.timestamp
            ))
        })?;
        let sample = MetricSample {
            name: name.clone(),
            labels: labels.clone(),
            value: sample.value,
            time,
        };
        sample
            .validate()
            .map_err(|reason| ApiError::bad_request(format!("series {index}: {reason}")))?;
        samples.push(sample);
    }
    for chunk in samples.chunks(SAMPLES_PER_RECORD) {
        out.records.push(SeriesRecord {
            key: key.clone(),
            samples: chunk.to_vec(),
        });
    }
    Ok(())
}

/// The receiver: a producer to `application_metrics`.
pub struct RemoteWriteReceiver {
    producer: EventProducer,
    topic: String,
}

impl RemoteWriteReceiver {
    pub fn new(kafka: &Kafka) -> anyhow::Result<RemoteWriteReceiver> {
        Ok(RemoteWriteReceiver {
            // A request waits for its acknowledgements: give up (503, Prometheus retries)
            // before Prometheus' own 30 s remote timeout.
            producer: EventProducer::with_properties(kafka, &[("message.timeout.ms", "20000")])?,
            topic: kafka.topic(&APPLICATION_METRICS),
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(
                "/api/v1/write",
                post(write).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
            )
            .with_state(self)
    }

    /// Produces every record at once, then awaits every acknowledgement; the number not
    /// acknowledged and the first reason.
    async fn publish(&self, records: &[SeriesRecord]) -> Result<(), (usize, String)> {
        let sends = records.iter().map(|record| async move {
            let payload = serde_json::to_vec(&record.samples).map_err(|err| err.to_string())?;
            self.producer
                .send(
                    &self.topic,
                    Some(record.key.as_bytes()),
                    Some(&payload),
                    OwnedHeaders::new(),
                    None,
                )
                .await
                .map(|_| ())
                .map_err(|err| err.to_string())
        });
        let failures: Vec<String> = join_all(sends)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        match failures.first() {
            None => Ok(()),
            Some(first) => Err((failures.len(), first.clone())),
        }
    }

    pub fn flush(&self) {
        if let Err(err) = self.producer.flush(std::time::Duration::from_secs(10)) {
            tracing::warn!(%err, "remote-write receiver: flush on shutdown");
        }
    }
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, expected: &str) -> Result<(), String> {
    let given = headers
        .get(&name)
        .map(|v| v.to_str().unwrap_or("(not text)"))
        .unwrap_or("none");
    let matches = given
        .split(';')
        .next()
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected));
    if matches {
        Ok(())
    } else {
        Err(format!("expected {name}: {expected}, not {given}"))
    }
}

fn skipped_samples() -> &'static Counter {
    static SKIPPED: OnceLock<Counter> = OnceLock::new();
    SKIPPED.get_or_init(|| {
        let counter = Counter::default();
        shared::metrics::register(
            "logging_remote_write_samples_skipped",
            "Remote-write samples skipped: not finite (staleness markers)",
            counter.clone(),
        );
        counter
    })
}

/// Receives a remote-write request.
#[utoipa::path(
    post,
    path = "/api/v1/write",
    tag = "remote-write receiver",
    request_body(content = Vec<u8>, content_type = "application/x-protobuf",
        description = "Prometheus remote write 1.0: a snappy-compressed (block format) protobuf \
                       WriteRequest, with Content-Encoding: snappy"),
    responses(
        (status = 204, description = "Every series was produced to application_metrics and acknowledged"),
        (status = 400, description = "Not snappy, not a WriteRequest, a series without __name__, an invalid name, label or timestamp: nothing produced"),
        (status = 413, description = "Over 10 MiB, or over 64 MiB decompressed"),
        (status = 415, description = "Not application/x-protobuf, or not Content-Encoding: snappy"),
        (status = 503, description = "The broker did not acknowledge some records: send it again"),
    )
)]
pub async fn write(
    State(receiver): State<Arc<RemoteWriteReceiver>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    header_is(&headers, header::CONTENT_TYPE, PROTOBUF)
        .and_then(|()| header_is(&headers, header::CONTENT_ENCODING, "snappy"))
        .map_err(|reason| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, reason))?;
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the body is over {MAX_BODY_BYTES} bytes")
        } else {
            "the body could not be read".to_owned()
        };
        ApiError::new(status, message).with_detail(rejection.body_text())
    })?;
    let decoded = decode(&body)?;
    skipped_samples().inc_by(decoded.skipped);
    if let Err((failed, reason)) = receiver.publish(&decoded.records).await {
        tracing::warn!(failed, %reason, "remote-write receiver: records not acknowledged");
        return Err(ApiError::unavailable(format!(
            "the broker did not acknowledge {failed} of {} records; send the request again",
            decoded.records.len()
        ))
        .with_detail(reason));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The remote-write receiver on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "remote-write-receiver"
    }
    fn about(&self) -> &'static str {
        "POST /api/v1/write (Prometheus remote write) → application_metrics, one record per series, keyed job/instance."
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        _resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        skipped_samples();
        let receiver = Arc::new(RemoteWriteReceiver::new(&ctx.kafka)?);
        let flushed = Arc::clone(&receiver);
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&receiver).router())
            .handle(receiver)
            .on_stop(async move {
                flushed.flush();
                Ok(())
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn compressed(request: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap()
    }

    #[test]
    fn a_series_is_one_record_keyed_job_instance_without_stale_markers() {
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    label("__name__", "up"),
                    label("job", "node"),
                    label("instance", "web-1:9100"),
                ],
                samples: vec![
                    Sample {
                        value: 1.0,
                        timestamp: 1_772_366_400_000,
                    },
                    Sample {
                        value: f64::from_bits(0x7ff0_0000_0000_0002),
                        timestamp: 1_772_366_401_000,
                    },
                ],
            }],
        };
        let decoded = decode(&compressed(&request)).unwrap();
        assert_eq!(decoded.skipped, 1);
        assert_eq!(decoded.records.len(), 1);
        let record = &decoded.records[0];
        assert_eq!(record.key, "node/web-1:9100");
        assert_eq!(record.samples.len(), 1);
        assert_eq!(record.samples[0].name, "up");
        assert_eq!(record.samples[0].labels["job"], "node");
        assert_eq!(
            record.samples[0].time.to_rfc3339(),
            "2026-03-01T12:00:00+00:00"
        );
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let reason = |body: &[u8]| decode(body).unwrap_err();
        let not_snappy = reason(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff");
        assert_eq!(not_snappy.status, StatusCode::BAD_REQUEST);
        assert!(not_snappy.error.contains("snappy"), "{not_snappy}");
        let garbage = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff\xff")
            .unwrap();
        assert!(reason(&garbage).error.contains("WriteRequest"));
        let nameless = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![label("job", "x")],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 0,
                }],
            }],
        };
        assert!(reason(&compressed(&nameless)).error.contains("__name__"));
        // A snappy header announcing 100 MiB: refused before decompressing.
        let mut huge = Vec::new();
        let mut n = 100u64 * 1024 * 1024;
        while n >= 0x80 {
            huge.push((n as u8) | 0x80);
            n >>= 7;
        }
        huge.push(n as u8);
        assert_eq!(reason(&huge).status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
