//! The batch layer's first box: `raw_events` → Parquet files in an object store (a local
//! directory by default, any S3-compatible store by configuration), a Kafka Connect S3 sink
//! redone on [`shared::analytics`] and configured the same way, from a `.properties` file in
//! Connect's vocabulary (`config/s3-sink.properties` is the built-in default).
//!
//! Every file is one contiguous offset range of one partition, named
//! `<topic>+<partition>+<start offset>+<end offset>.parquet` and written create-if-absent, then
//! its offset is committed: every (partition, offset) of the topic lands in exactly one file
//! across crashes and restarts (the module documentation of [`shared::analytics`] has the
//! argument; `tests/sink` kills the sink at every awkward point).
//!
//! The table: `event_id`, `source`, `event_type`, `actor`, `timestamp` and `received_at`
//! (timestamps, ms, UTC), `properties` (the JSON object as text), then `kafka_partition` and
//! `kafka_offset`. A record is stored only if [`check_record`] accepts it — the speed layer's
//! rule — so both layers count the same records; anything else is dead-lettered.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use shared::Kafka;
use shared::analytics::config::{KNOWN_PREFIXES, KNOWN_PROPERTIES};
use shared::analytics::{self, AnalyticsRow, Column, ColumnType, SinkConfig, SinkHandle, Value};
use shared::consumer::PayloadKey;
use shared::properties::Properties;
use shared::service::GroupSpec;
use tokio_util::sync::CancellationToken;

use crate::events::{RawEvent, check_record};

/// The built-in properties (`ingestion/config/s3-sink.properties`).
pub const DEFAULT_PROPERTIES: &str = include_str!("../config/s3-sink.properties");

/// The sink's settings, from the command line and the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SinkArgs {
    /// The S3 sink's properties file (default: the built-in
    /// `ingestion/config/s3-sink.properties`).
    #[arg(long, env = "S3_SINK_CONFIG")]
    pub sink_config: Option<PathBuf>,
    /// Overrides the file's `store.url`: a directory (file:///…), or with a bucket the S3
    /// endpoint. Default when neither says: <data dir>/store.
    #[arg(long, env = "STORE_URL")]
    pub store_url: Option<String>,
    /// Overrides the file's `s3.bucket.name`.
    #[arg(long, env = "S3_BUCKET")]
    pub s3_bucket: Option<String>,
}

impl SinkArgs {
    /// The sink's properties: the file (or the built-in one), the overrides, and the default
    /// store `<data>/store`. Errors name the file and the key.
    pub fn properties(&self, data: &Path) -> anyhow::Result<Properties> {
        let mut properties = match &self.sink_config {
            Some(path) => Properties::read(path, KNOWN_PROPERTIES, KNOWN_PREFIXES)?,
            None => Properties::parse(DEFAULT_PROPERTIES, KNOWN_PROPERTIES, KNOWN_PREFIXES)
                .context("the built-in s3-sink.properties")?,
        };
        if let Some(url) = &self.store_url {
            properties.set("store.url", url);
        }
        if let Some(bucket) = &self.s3_bucket {
            properties.set("s3.bucket.name", bucket);
        }
        if properties.get("store.url").is_none() && properties.get("s3.bucket.name").is_none() {
            properties.set("store.url", data.join("store").display().to_string());
        }
        Ok(properties)
    }
}

/// The sink's configuration on `kafka` (its topic and group get the environment's prefix).
pub fn config(kafka: &Kafka, properties: &Properties) -> anyhow::Result<SinkConfig> {
    let config = SinkConfig::from_properties(properties, kafka)?;
    let expected = kafka.topic(&crate::topics::RAW_EVENTS);
    anyhow::ensure!(
        config.topic == expected,
        "topics{}: this sink stores raw events ({}), not {}",
        properties.line("topics"),
        crate::topics::RAW_EVENTS.full_name(""),
        config.topic
    );
    Ok(config)
}

impl AnalyticsRow for RawEvent {
    fn columns() -> Vec<Column> {
        vec![
            Column::required("event_id", ColumnType::Utf8),
            Column::required("source", ColumnType::Utf8),
            Column::required("event_type", ColumnType::Utf8),
            Column::required("actor", ColumnType::Utf8),
            Column::required("timestamp", ColumnType::TimestampMillis),
            Column::required("received_at", ColumnType::TimestampMillis),
            Column::required("properties", ColumnType::Utf8),
        ]
    }

    fn values(&self) -> Vec<Value> {
        vec![
            Value::Utf8(self.event_id.clone()),
            Value::Utf8(self.source.as_str().to_owned()),
            Value::Utf8(self.event_type.clone()),
            Value::Utf8(self.actor.clone()),
            Value::TimestampMillis(self.timestamp.timestamp_millis()),
            Value::TimestampMillis(self.received_at.timestamp_millis()),
            Value::Utf8(serde_json::Value::Object(self.properties.clone()).to_string()),
        ]
    }

    fn event_time(&self) -> DateTime<Utc> {
        self.timestamp
    }

    fn key(&self) -> Option<PayloadKey<'_>> {
        Some(PayloadKey::new("actor", &self.actor))
    }

    fn check_timestamp(&self, record_timestamp_ms: Option<i64>) -> Result<(), String> {
        // The key was checked by the sink already; this adds the event's own rules and the
        // record timestamp rule, exactly the speed layer's.
        check_record(Some(&self.actor), record_timestamp_ms, self)
    }
}

/// Starts the sink.
pub async fn start(
    kafka: &Kafka,
    config: SinkConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<SinkHandle> {
    analytics::start::<RawEvent>(kafka, config, |_: &RawEvent| Ok(()), shutdown).await
}

/// The S3 sink on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "s3-sink"
    }
    fn about(&self) -> &'static str {
        "raw_events → Parquet files in an object store (Kafka Connect S3 sink style, .properties)."
    }
    fn groups(&self, kafka: &Kafka) -> Vec<GroupSpec> {
        // The group is the connector's: `connect-<name>`, from the properties.
        let name = Properties::parse(DEFAULT_PROPERTIES, KNOWN_PROPERTIES, KNOWN_PREFIXES)
            .ok()
            .and_then(|p| p.get("name").map(str::to_owned))
            .unwrap_or_default();
        vec![GroupSpec {
            group: format!("{}connect-{name}", kafka.prefix()),
            topics: vec![kafka.topic(&crate::topics::RAW_EVENTS)],
        }]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let config = config(&ctx.kafka, &resources.sink_properties)?;
        tracing::info!(store = %config.store, topic = %config.topic, "s3 sink");
        let sink = start(&ctx.kafka, config, ctx.shutdown.clone()).await?;
        Ok(shared::service::Running::new()
            .handle(std::sync::Arc::new(sink.stats.clone()))
            .on_stop(sink.join()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_properties_are_valid_and_overrides_apply() {
        let dir = tempfile::tempdir().unwrap();
        let kafka = Kafka::external("127.0.0.1:9", "ws1.", Vec::new());
        let properties = SinkArgs::default().properties(dir.path()).unwrap();
        let config = config(&kafka, &properties).unwrap();
        assert_eq!(config.topic, "ws1.ingestion.raw_events");
        assert_eq!(config.group_id, "ws1.connect-raw-events-s3-sink");
        assert_eq!(config.flush_size, 10_000);
        assert_eq!(
            config.store.local_dir().unwrap(),
            dir.path().join("store").canonicalize().unwrap()
        );
        let elsewhere = tempfile::tempdir().unwrap();
        let args = SinkArgs {
            store_url: Some(format!("file://{}", elsewhere.path().display())),
            ..SinkArgs::default()
        };
        let config = super::config(&kafka, &args.properties(dir.path()).unwrap()).unwrap();
        assert_eq!(
            config.store.local_dir().unwrap(),
            elsewhere.path().canonicalize().unwrap()
        );
    }

    #[test]
    fn a_bad_file_is_an_error_naming_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.properties");
        std::fs::write(
            &file,
            DEFAULT_PROPERTIES.replace("flush.size=10000", "flush.size=ten thousand"),
        )
        .unwrap();
        let args = SinkArgs {
            sink_config: Some(file.clone()),
            ..SinkArgs::default()
        };
        let kafka = Kafka::external("127.0.0.1:9", "", Vec::new());
        let err = format!(
            "{:#}",
            args.properties(dir.path())
                .and_then(|p| config(&kafka, &p))
                .unwrap_err()
        );
        assert!(err.contains("flush.size"), "{err}");
        std::fs::write(&file, "name=x\nflush.sise=3\n").unwrap();
        let err = format!("{:#}", args.properties(dir.path()).unwrap_err());
        assert!(
            err.contains("bad.properties") && err.contains("flush.sise"),
            "{err}"
        );
        std::fs::write(
            &file,
            DEFAULT_PROPERTIES.replace("topics=ingestion.raw_events", "topics=other"),
        )
        .unwrap();
        let err = format!(
            "{:#}",
            args.properties(dir.path())
                .and_then(|p| config(&kafka, &p))
                .unwrap_err()
        );
        assert!(err.contains("topics"), "{err}");
    }
}
