//! **Analytics sink** ("Kafka Connect" on the slide, requirement 3, stored side): every
//! `user_position`, `taxi_position` and `ride_fares` record to the analytics store — Parquet
//! files, one table per topic under `ANALYTICS_DIR/<topic>/`, partitioned by event date and hour,
//! exactly once ([`shared::analytics`]). Each row also has `kafka_partition` and
//! `kafka_offset`, the order the live services read the records in: `gettaxi fare` recomputes a
//! ride's fare from these files alone, the way the taxi cost service computed it.
//!
//! ```sql
//! -- DuckDB: a ride's trace
//! SELECT at, lat, lon FROM read_parquet('analytics/taxi_position/**/*.parquet')
//! WHERE ride_id = 'ride-…' AND status = 'on_ride' ORDER BY kafka_partition, kafka_offset;
//! ```

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use shared::Kafka;
use shared::analytics::{self, Analytics, AnalyticsRow, Column, ColumnType, SinkHandle, Value};
use shared::consumer::PayloadKey;
use shared::service::GroupSpec;
use shared::topics::TopicSpec;
use tokio_util::sync::CancellationToken;

use crate::events::{
    FareStage, MAX_EVENT_AGE, MAX_EVENT_AHEAD, RideFare, TaxiPosition, TaxiStatus, UserPosition,
    validate_id,
};
use crate::topics::{RIDE_FARES, TAXI_POSITION, USER_POSITION};

pub const GROUP_ID: &str = "gettaxi-analytics-sink";

/// The tables, one per topic.
pub const TABLES: &[TopicSpec] = &[USER_POSITION, TAXI_POSITION, RIDE_FARES];

/// Where a topic's table lives.
pub fn table_dir(root: &Path, topic: &TopicSpec) -> PathBuf {
    root.join(topic.name)
}

impl AnalyticsRow for UserPosition {
    fn columns() -> Vec<Column> {
        vec![
            Column::required("event_id", ColumnType::Utf8),
            Column::required("user_id", ColumnType::Utf8),
            Column::required("lat", ColumnType::Double),
            Column::required("lon", ColumnType::Double),
            Column::required("at", ColumnType::TimestampMillis),
        ]
    }
    fn values(&self) -> Vec<Value> {
        vec![
            Value::Utf8(self.event_id.clone()),
            Value::Utf8(self.user_id.clone()),
            Value::Double(self.lat),
            Value::Double(self.lon),
            Value::TimestampMillis(self.at.timestamp_millis()),
        ]
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
    fn key(&self) -> Option<PayloadKey<'_>> {
        Some(PayloadKey::new("user_id", &self.user_id))
    }
}

pub fn status_name(status: TaxiStatus) -> &'static str {
    match status {
        TaxiStatus::Available => "available",
        TaxiStatus::EnRoute => "en_route",
        TaxiStatus::OnRide => "on_ride",
        TaxiStatus::OffDuty => "off_duty",
    }
}

impl AnalyticsRow for TaxiPosition {
    fn columns() -> Vec<Column> {
        vec![
            Column::required("event_id", ColumnType::Utf8),
            Column::required("taxi_id", ColumnType::Utf8),
            Column::required("lat", ColumnType::Double),
            Column::required("lon", ColumnType::Double),
            Column::required("status", ColumnType::Utf8),
            Column::optional("ride_id", ColumnType::Utf8),
            Column::required("at", ColumnType::TimestampMillis),
        ]
    }
    fn values(&self) -> Vec<Value> {
        vec![
            Value::Utf8(self.event_id.clone()),
            Value::Utf8(self.taxi_id.clone()),
            Value::Double(self.lat),
            Value::Double(self.lon),
            Value::Utf8(status_name(self.status).to_owned()),
            self.ride_id.clone().map_or(Value::Null, Value::Utf8),
            Value::TimestampMillis(self.at.timestamp_millis()),
        ]
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
    fn key(&self) -> Option<PayloadKey<'_>> {
        Some(PayloadKey::new("taxi_id", &self.taxi_id))
    }
}

pub fn stage_name(stage: FareStage) -> &'static str {
    match stage {
        FareStage::Quote => "quote",
        FareStage::Running => "running",
        FareStage::Final => "final",
    }
}

impl AnalyticsRow for RideFare {
    fn columns() -> Vec<Column> {
        vec![
            Column::required("event_id", ColumnType::Utf8),
            Column::required("ride_id", ColumnType::Utf8),
            Column::required("stage", ColumnType::Utf8),
            Column::required("multiplier", ColumnType::Double),
            Column::required("km", ColumnType::Double),
            Column::required("minutes", ColumnType::Double),
            Column::required("amount_cents", ColumnType::Int64),
            Column::required("at", ColumnType::TimestampMillis),
        ]
    }
    fn values(&self) -> Vec<Value> {
        vec![
            Value::Utf8(self.event_id.clone()),
            Value::Utf8(self.ride_id.clone()),
            Value::Utf8(stage_name(self.stage).to_owned()),
            Value::Double(self.multiplier),
            Value::Double(self.km),
            Value::Double(self.minutes),
            Value::Int64(self.amount_cents),
            Value::TimestampMillis(self.at.timestamp_millis()),
        ]
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
    fn key(&self) -> Option<PayloadKey<'_>> {
        Some(PayloadKey::new("ride_id", &self.ride_id))
    }
}

/// The sink's check of an event time: the API's window, a day wider either way (a sink that
/// runs behind; a record written around the API with a time beyond it is dead-lettered).
pub fn stored_event_time(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    let grace = chrono::TimeDelta::days(1);
    let (oldest, newest) = (now - MAX_EVENT_AGE - grace, now + MAX_EVENT_AHEAD + grace);
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

/// The sink group of one table (prefixed): `gettaxi-analytics-sink-<topic>`.
pub fn group(kafka: &Kafka, topic: &TopicSpec) -> String {
    format!("{}{GROUP_ID}-{}", kafka.prefix(), topic.name)
}

/// Starts the three sinks.
pub async fn start(
    kafka: &Kafka,
    analytics: &Analytics,
    shutdown: CancellationToken,
) -> anyhow::Result<Vec<SinkHandle>> {
    let config = |topic: &TopicSpec| {
        analytics.sink_config(group(kafka, topic), kafka.topic(topic), topic.name)
    };
    let now = Utc::now;
    let users = analytics::start::<UserPosition>(
        kafka,
        config(&USER_POSITION),
        move |p: &UserPosition| {
            p.validate()?;
            stored_event_time(p.at, now())
        },
        shutdown.clone(),
    )
    .await?;
    let taxis = analytics::start::<TaxiPosition>(
        kafka,
        config(&TAXI_POSITION),
        move |p: &TaxiPosition| {
            p.validate()?;
            stored_event_time(p.at, now())
        },
        shutdown.clone(),
    )
    .await?;
    let fares = analytics::start::<RideFare>(
        kafka,
        config(&RIDE_FARES),
        move |f: &RideFare| {
            validate_id("ride_id", &f.ride_id)?;
            stored_event_time(f.at, now())
        },
        shutdown,
    )
    .await?;
    Ok(vec![users, taxis, fares])
}

/// The analytics sink on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "analytics-sink"
    }
    fn about(&self) -> &'static str {
        "user_position, taxi_position, ride_fares → Parquet tables under ANALYTICS_DIR."
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
