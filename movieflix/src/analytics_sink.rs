//! **Analytics sink** ("Kafka Connect" on the slide): every `show_position` record to the
//! analytics store — Parquet files under `ANALYTICS_DIR`, partitioned by event date and hour,
//! exactly once (see [`shared::analytics`] for how).
//!
//! ```sql
//! -- DuckDB
//! SELECT show_id, count(DISTINCT user_id) AS viewers
//! FROM read_parquet('analytics/**/*.parquet', hive_partitioning = true,
//!                   hive_types = {'date': DATE, 'hour': INTEGER})
//! GROUP BY ALL ORDER BY viewers DESC LIMIT 10;
//! ```

use chrono::{DateTime, Utc};
use shared::Kafka;
use shared::analytics::{
    self, Analytics, AnalyticsRow, Column, ColumnType, SinkConfig, SinkHandle, Value,
};
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::events::ShowPosition;
use crate::topics::SHOW_POSITION;

pub const GROUP_ID: &str = "movieflix-analytics-sink";

impl AnalyticsRow for ShowPosition {
    fn columns() -> Vec<Column> {
        vec![
            Column::required("event_id", ColumnType::Utf8),
            Column::required("user_id", ColumnType::Utf8),
            Column::required("show_id", ColumnType::Utf8),
            Column::optional("episode", ColumnType::Int32),
            Column::required("position_s", ColumnType::Int64),
            Column::required("duration_s", ColumnType::Int64),
            Column::required("at", ColumnType::TimestampMillis),
        ]
    }

    fn values(&self) -> Vec<Value> {
        vec![
            Value::Utf8(self.event_id.clone()),
            Value::Utf8(self.user_id.clone()),
            Value::Utf8(self.show_id.clone()),
            self.episode.map_or(Value::Null, |e| Value::Int32(e as i32)),
            Value::Int64(i64::from(self.position_s)),
            Value::Int64(i64::from(self.duration_s)),
            Value::TimestampMillis(self.at.timestamp_millis()),
        ]
    }

    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }

    fn key(&self) -> Option<shared::consumer::PayloadKey<'_>> {
        Some(shared::consumer::PayloadKey::new("user_id", &self.user_id))
    }
}

/// The sink's configuration: group `movieflix-analytics-sink` (prefixed), `show_position`,
/// into `analytics`.
pub fn config(kafka: &Kafka, analytics: &Analytics) -> SinkConfig {
    analytics.sink_config(
        format!("{}{GROUP_ID}", kafka.prefix()),
        kafka.topic(&SHOW_POSITION),
        SHOW_POSITION.name,
    )
}

/// How far outside the API's window an event time may be when the sink reads it: a day either
/// way, for a sink that runs behind (the API refused anything older than 7 days when it was
/// produced; records older than the topic's retention are gone anyway). A record written around
/// the API (a raw producer) with a time beyond it — year 1, 1970 — is dead-lettered, so it never
/// makes a `date=0001-01-01` folder.
pub const STORE_GRACE: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// The sink's check of an event time, relative to `now`.
pub fn stored_event_time(
    at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), String> {
    let (oldest, newest) = (
        now - crate::events::MAX_EVENT_AGE - STORE_GRACE,
        now + crate::events::MAX_EVENT_AHEAD + STORE_GRACE,
    );
    if at < oldest || at > newest {
        return Err(format!(
            "at ({}) is outside what the analytics store accepts ({} to {})",
            at.to_rfc3339(),
            oldest.to_rfc3339(),
            newest.to_rfc3339()
        ));
    }
    Ok(())
}

/// Starts the sink. A position the services reject (`ShowPosition::validate` against the
/// catalog: unknown show, position beyond the duration, …) is dead-lettered, not stored.
pub async fn start(
    kafka: &Kafka,
    config: SinkConfig,
    catalog: Arc<Catalog>,
    shutdown: CancellationToken,
) -> anyhow::Result<SinkHandle> {
    let validate = move |position: &ShowPosition| {
        position.validate(&catalog)?;
        stored_event_time(position.at, chrono::Utc::now())
    };
    analytics::start::<ShowPosition>(kafka, config, validate, shutdown).await
}

/// The analytics sink on the scaffold: Parquet files under `<analytics dir>`; its stats can be
/// looked up as `SinkStats`.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "analytics-sink"
    }
    fn about(&self) -> &'static str {
        "show_position → Parquet files in the analytics store (ANALYTICS_DIR or ANALYTICS_URL)."
    }
    fn groups(&self, kafka: &shared::Kafka) -> Vec<shared::service::GroupSpec> {
        vec![shared::service::GroupSpec {
            group: format!("{}{GROUP_ID}", kafka.prefix()),
            topics: vec![kafka.topic(&crate::topics::SHOW_POSITION)],
        }]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let config = config(&ctx.kafka, &resources.analytics);
        let sink = start(
            &ctx.kafka,
            config,
            Arc::clone(&resources.catalog),
            ctx.shutdown.clone(),
        )
        .await?;
        Ok(shared::service::Running::new()
            .handle(std::sync::Arc::new(sink.stats.clone()))
            .on_stop(sink.join()))
    }
}
