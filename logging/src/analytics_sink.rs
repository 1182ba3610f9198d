//! **Analytics sink** (Parquet): `parsed_logs` and `application_metrics` → Parquet tables in the
//! analytics store (`ANALYTICS_DIR`, default `<data dir>/analytics`, or an S3 bucket with
//! `ANALYTICS_URL`), through [`shared::analytics`]: one table per topic, partitioned by event
//! date and hour, exactly once (files named after their offset ranges, created if absent,
//! offsets committed after).
//!
//! * `parsed_logs/` — one row per [`LogRecord`]: `event_id`, `time`, `received_at`, `host`,
//!   `service`, `level`, `message`, `format`, `reason`, and `fields`/`notes` as JSON text.
//! * `application_metrics/` — one row per record (a record may hold many samples, in our or
//!   collectd's shape, [`decode_samples`]): `time` (its first sample's), `samples` (how many),
//!   `names` (the distinct names, comma-separated) and `json` (every sample in our shape, a JSON
//!   array: `unnest(from_json(json, '[{"name":"VARCHAR","labels":"MAP(VARCHAR,VARCHAR)","value":"DOUBLE","time":"TIMESTAMP"}]'))`
//!   in DuckDB).
//!
//! Every row also has `kafka_partition` and `kafka_offset`. A record that is not valid (not a
//! `LogRecord`, no samples) is dead-lettered by the shared sink with the reason
//! (`dead_lettered_by: <prefix>logging-analytics-sink-<topic>`). **On store failures** the
//! shared sink retries a file's upload forever with backoff (100 ms doubling to 5 s), committing
//! nothing meanwhile: nothing is lost, and the partition waits; it never dead-letters a batch
//! the store refuses.
//!
//! ```sql
//! SELECT service, level, count(*) FROM read_parquet('analytics/parsed_logs/**/*.parquet', hive_partitioning = true)
//! GROUP BY ALL ORDER BY 3 DESC;
//! ```

use chrono::{DateTime, Utc};
use serde::Deserialize;
use shared::Kafka;
use shared::analytics::{self, Analytics, AnalyticsRow, Column, ColumnType, SinkHandle, Value};
use shared::service::GroupSpec;
use shared::topics::TopicSpec;
use tokio_util::sync::CancellationToken;

use crate::events::{LogRecord, MetricSample, decode_samples};
use crate::topics::{APPLICATION_METRICS, PARSED_LOGS};

pub const GROUP_ID: &str = "logging-analytics-sink";

/// The tables, one per topic.
pub const TABLES: &[TopicSpec] = &[PARSED_LOGS, APPLICATION_METRICS];

impl AnalyticsRow for LogRecord {
    fn columns() -> Vec<Column> {
        vec![
            Column::required("event_id", ColumnType::Utf8),
            Column::required("time", ColumnType::TimestampMillis),
            Column::required("received_at", ColumnType::TimestampMillis),
            Column::required("host", ColumnType::Utf8),
            Column::required("service", ColumnType::Utf8),
            Column::required("level", ColumnType::Utf8),
            Column::required("message", ColumnType::Utf8),
            Column::required("format", ColumnType::Utf8),
            Column::optional("reason", ColumnType::Utf8),
            Column::required("fields", ColumnType::Utf8),
            Column::required("notes", ColumnType::Utf8),
        ]
    }
    fn values(&self) -> Vec<Value> {
        vec![
            Value::Utf8(self.event_id.clone()),
            Value::TimestampMillis(self.time.timestamp_millis()),
            Value::TimestampMillis(self.received_at.timestamp_millis()),
            Value::Utf8(self.host.clone()),
            Value::Utf8(self.service.clone()),
            Value::Utf8(self.level.as_str().to_owned()),
            Value::Utf8(self.message.clone()),
            Value::Utf8(self.format.as_str().to_owned()),
            self.reason.clone().map_or(Value::Null, Value::Utf8),
            Value::Utf8(serde_json::to_string(&self.fields).unwrap_or_default()),
            Value::Utf8(serde_json::to_string(&self.notes).unwrap_or_default()),
        ]
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.time
    }
}

/// A record of `application_metrics`, decoded by [`decode_samples`] (either shape).
#[derive(Debug, Clone)]
pub struct MetricsRecord {
    pub samples: Vec<MetricSample>,
}

impl<'de> Deserialize<'de> for MetricsRecord {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let bytes = serde_json::to_vec(&value).map_err(serde::de::Error::custom)?;
        decode_samples(&bytes)
            .map(|samples| MetricsRecord { samples })
            .map_err(serde::de::Error::custom)
    }
}

impl AnalyticsRow for MetricsRecord {
    fn columns() -> Vec<Column> {
        vec![
            Column::required("time", ColumnType::TimestampMillis),
            Column::required("samples", ColumnType::Int64),
            Column::required("names", ColumnType::Utf8),
            Column::required("json", ColumnType::Utf8),
        ]
    }
    fn values(&self) -> Vec<Value> {
        let mut names: Vec<&str> = self.samples.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        vec![
            Value::TimestampMillis(self.event_time().timestamp_millis()),
            Value::Int64(self.samples.len() as i64),
            Value::Utf8(names.join(",")),
            Value::Utf8(serde_json::to_string(&self.samples).unwrap_or_default()),
        ]
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.samples.first().map_or_else(Utc::now, |s| s.time)
    }
}

/// The sink group of one table (prefixed): `logging-analytics-sink-<topic>`.
pub fn group(kafka: &Kafka, topic: &TopicSpec) -> String {
    format!("{}{GROUP_ID}-{}", kafka.prefix(), topic.name)
}

/// Starts both sinks.
pub async fn start(
    kafka: &Kafka,
    analytics: &Analytics,
    shutdown: CancellationToken,
) -> anyhow::Result<Vec<SinkHandle>> {
    let config = |topic: &TopicSpec| {
        analytics.sink_config(group(kafka, topic), kafka.topic(topic), topic.name)
    };
    let logs = analytics::start::<LogRecord>(
        kafka,
        config(&PARSED_LOGS),
        |r: &LogRecord| r.validate().map_err(|e| format!("invalid LogRecord: {e}")),
        shutdown.clone(),
    )
    .await?;
    let metrics = analytics::start::<MetricsRecord>(
        kafka,
        config(&APPLICATION_METRICS),
        |_: &MetricsRecord| Ok(()),
        shutdown,
    )
    .await?;
    Ok(vec![logs, metrics])
}

/// The analytics sink on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "analytics-sink"
    }
    fn about(&self) -> &'static str {
        "parsed_logs, application_metrics → Parquet tables under ANALYTICS_DIR."
    }
    fn groups(&self, kafka: &Kafka) -> Vec<GroupSpec> {
        TABLES
            .iter()
            .map(|topic| GroupSpec {
                group: group(kafka, topic),
                topics: vec![kafka.topic(topic)],
            })
            .collect()
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let sinks = start(&ctx.kafka, &resources.analytics, ctx.shutdown.clone()).await?;
        let mut running = shared::service::Running::new();
        for sink in sinks {
            running = running
                .handle(std::sync::Arc::new(sink.stats.clone()))
                .on_stop(sink.join());
        }
        Ok(running)
    }
}
