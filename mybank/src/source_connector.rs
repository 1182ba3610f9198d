//! **Source connector**: the bank's `transactions` table → `bank_transactions`, the JDBC source
//! connector of Kafka Connect redone in Rust, configured by a properties file like Connect's
//! (see `mybank/config/transactions-source.properties`).
//!
//! Each poll reads the rows after the last source offset (`mode=incrementing`: `id > last id`;
//! `mode=timestamp+incrementing`: `(created_at, id) > (last created_at, last id)`), turns every
//! row into a JSON object (column → value, Connect's JSON converter without schemas), keys it by
//! `key.column.name` and produces it to `<topic.prefix><table>`.
//!
//! **No gap, no duplicate across restarts, without broker transactions.** After a batch is
//! acknowledged, the connector writes its source offset to the compacted `connect_offsets` topic
//! (Connect's offset storage), together with the next Kafka offset of every output partition.
//! A crash between the two leaves records in Kafka past the stored offset. On start the
//! connector therefore reads each output partition from the stored Kafka offset to its end: the
//! last source offset found there is where that partition already is (records of one partition
//! are written in source order by the idempotent producer, and the connector chooses partitions
//! itself with librdkafka's partitioner). Re-read rows that a partition already holds are skipped;
//! the others are produced. The same reconciliation runs after any produce error.
//!
//! On PostgreSQL, `listen.channel` makes the poller wake up on the table trigger's NOTIFY instead
//! of waiting for `poll.interval.ms` (which stays the fallback).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use futures::future::try_join_all;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shared::Kafka;
use shared::streams::instances::partition_for_key;
use sqlx::{Column, Row, TypeInfo, ValueRef};
use tokio_util::sync::CancellationToken;

use crate::database::{Database, SQLITE_TIME_FORMAT};
use crate::topics::{BANK_TRANSACTIONS, CONNECT_OFFSETS};

/// The header carrying a record's source offset (JSON), read back on restart.
pub const OFFSET_HEADER: &str = "connect.source.offset";

/// How rows are found after the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `id > last id`: for append-only tables with an increasing id.
    Incrementing,
    /// `(created_at, id) > (last created_at, last id)`, skipping rows newer than
    /// `now - timestamp.delay.interval.ms` (let slow transactions commit first).
    TimestampIncrementing,
}

/// A connector's properties (Kafka Connect's names; unknown keys are an error, to catch typos).
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub name: String,
    pub connection_url: String,
    pub mode: Mode,
    pub table: String,
    pub incrementing_column: String,
    pub timestamp_column: Option<String>,
    pub topic_prefix: String,
    /// The column whose value becomes the record key (Connect: `ValueToKey` + `ExtractField`).
    pub key_column: String,
    pub poll_interval: Duration,
    pub batch_max_rows: i64,
    pub timestamp_delay: Duration,
    /// PostgreSQL only: LISTEN on this channel and poll as soon as it is notified.
    pub listen_channel: Option<String>,
}

const KNOWN_KEYS: &[&str] = &[
    "name",
    "connector.class",
    "tasks.max",
    "connection.url",
    "mode",
    "table.whitelist",
    "incrementing.column.name",
    "timestamp.column.name",
    "topic.prefix",
    "key.column.name",
    "poll.interval.ms",
    "batch.max.rows",
    "timestamp.delay.interval.ms",
    "listen.channel",
];

impl ConnectorConfig {
    /// Parses a Java-style properties file (`key=value`, `#`/`!` comments; a ` # …` after a
    /// value is a comment too, as in the course's examples).
    pub fn parse(text: &str) -> anyhow::Result<ConnectorConfig> {
        let mut props = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let line = match line.find(" #") {
                Some(at) => line[..at].trim_end(),
                None => line,
            };
            let (key, value) = line.split_once(['=', ':']).with_context(|| {
                format!("line {}: expected key=value, got {line:?}", number + 1)
            })?;
            let key = key.trim();
            if !KNOWN_KEYS.contains(&key) {
                bail!(
                    "line {}: unknown property {key:?} (known: {})",
                    number + 1,
                    KNOWN_KEYS.join(", ")
                );
            }
            props.insert(key.to_owned(), value.trim().to_owned());
        }
        let get = |key: &str| props.get(key).cloned();
        let require = |key: &str| get(key).with_context(|| format!("missing property {key}"));
        let millis = |key: &str, default: u64| -> anyhow::Result<Duration> {
            match get(key) {
                Some(v) => {
                    Ok(Duration::from_millis(v.parse().with_context(|| {
                        format!("{key}={v:?} is not a number of ms")
                    })?))
                }
                None => Ok(Duration::from_millis(default)),
            }
        };
        let mode = match require("mode")?.as_str() {
            "incrementing" => Mode::Incrementing,
            "timestamp+incrementing" => Mode::TimestampIncrementing,
            other => bail!(
                "mode={other:?} is not supported (incrementing or timestamp+incrementing; bulk and timestamp alone cannot promise no duplicates)"
            ),
        };
        let table = require("table.whitelist")?;
        if table.contains(',') {
            bail!("table.whitelist={table:?}: one table per connector here");
        }
        let config = ConnectorConfig {
            name: require("name")?,
            connection_url: require("connection.url")?,
            mode,
            incrementing_column: get("incrementing.column.name").unwrap_or_else(|| "id".into()),
            timestamp_column: get("timestamp.column.name"),
            topic_prefix: get("topic.prefix").unwrap_or_default(),
            key_column: require("key.column.name")?,
            poll_interval: millis("poll.interval.ms", 5000)?,
            batch_max_rows: get("batch.max.rows")
                .map(|v| v.parse::<i64>())
                .transpose()
                .context("batch.max.rows is not a number")?
                .unwrap_or(100)
                .max(1),
            timestamp_delay: millis("timestamp.delay.interval.ms", 0)?,
            listen_channel: get("listen.channel").filter(|c| !c.is_empty()),
            table,
        };
        for identifier in [
            Some(&config.table),
            Some(&config.incrementing_column),
            config.timestamp_column.as_ref(),
            Some(&config.key_column),
            config.listen_channel.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            // Names end up in SQL: plain identifiers only.
            let ok = identifier
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && identifier
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                bail!("{identifier:?} is not a plain SQL identifier");
            }
        }
        if config.mode == Mode::TimestampIncrementing && config.timestamp_column.is_none() {
            bail!("mode=timestamp+incrementing needs timestamp.column.name");
        }
        Ok(config)
    }

    /// `<topic.prefix><table>`: Connect's naming (`bank_` + `transactions` here).
    pub fn topic_name(&self) -> String {
        format!("{}{}", self.topic_prefix, self.table)
    }

    /// The key of this connector's entry in `connect_offsets` (Connect's format).
    pub fn offset_key(&self) -> String {
        serde_json::json!([self.name, { "table": self.table }]).to_string()
    }
}

/// Where the connector is in the table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOffset {
    /// The last row's incrementing column.
    pub incrementing: i64,
    /// The last row's timestamp column, as the database returned it (mode
    /// `timestamp+incrementing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// The value stored in `connect_offsets`: the source offset and, beyond what Connect stores, the
/// next Kafka offset of each output partition when it was written (where to look on restart).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredOffset {
    #[serde(flatten)]
    pub source: SourceOffset,
    #[serde(default)]
    pub kafka_next: BTreeMap<i32, i64>,
}

impl SourceOffset {
    /// The order rows are read in: `(timestamp, id)` or `id`.
    fn position(&self, mode: Mode) -> (Option<DateTime<Utc>>, i64) {
        let ts = match mode {
            Mode::Incrementing => None,
            Mode::TimestampIncrementing => self
                .timestamp
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
        };
        (ts, self.incrementing)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    connector: String,
    topic: String,
}

/// The connector's counters (also on `/metrics` as `source_connector_*_total`).
#[derive(Clone, Debug)]
pub struct ConnectorStats {
    /// Rows produced to Kafka.
    pub produced: Counter,
    /// Rows read again after a restart that Kafka already had (not produced twice).
    pub skipped_already_in_kafka: Counter,
    /// Offsets written to `connect_offsets`.
    pub offset_commits: Counter,
    /// Failed polls or produce batches (retried).
    pub errors: Counter,
}

impl ConnectorStats {
    fn new(name: &str, topic: &str) -> ConnectorStats {
        static FAMILIES: OnceLock<[Family<ConnectorLabels, Counter>; 4]> = OnceLock::new();
        let families = FAMILIES.get_or_init(|| {
            let families: [Family<ConnectorLabels, Counter>; 4] = Default::default();
            for (family, (name, help)) in families.iter().zip([
                ("source_connector_records", "Rows produced to Kafka"),
                (
                    "source_connector_skipped",
                    "Rows re-read after a restart that Kafka already had",
                ),
                (
                    "source_connector_offset_commits",
                    "Source offsets written to connect_offsets",
                ),
                (
                    "source_connector_errors",
                    "Failed polls or batches (retried)",
                ),
            ]) {
                shared::metrics::register(name, help, family.clone());
            }
            families
        });
        let labels = ConnectorLabels {
            connector: name.to_owned(),
            topic: topic.to_owned(),
        };
        ConnectorStats {
            produced: families[0].get_or_create(&labels).clone(),
            skipped_already_in_kafka: families[1].get_or_create(&labels).clone(),
            offset_commits: families[2].get_or_create(&labels).clone(),
            errors: families[3].get_or_create(&labels).clone(),
        }
    }
}

/// One row read from the table.
struct SourceRecord {
    offset: SourceOffset,
    key: String,
    value: Map<String, Value>,
    timestamp_ms: Option<i64>,
}

pub struct SourceConnector {
    config: ConnectorConfig,
    db: Database,
    kafka: Kafka,
    topic: String,
    offsets_topic: String,
    producer: FutureProducer,
    pub stats: ConnectorStats,
}

impl SourceConnector {
    /// Connects to the database (`database_url` overrides `connection.url`) and to Kafka.
    pub async fn new(
        kafka: &Kafka,
        mut config: ConnectorConfig,
        database_url: Option<String>,
    ) -> anyhow::Result<SourceConnector> {
        if let Some(url) = database_url {
            config.connection_url = url;
        }
        let db = Database::connect(&config.connection_url).await?;
        let expected = BANK_TRANSACTIONS.name;
        if config.topic_name() != expected {
            bail!(
                "topic.prefix + table = {:?}, but MyBank's topic is {expected:?}",
                config.topic_name()
            );
        }
        Ok(SourceConnector {
            topic: kafka.topic(&BANK_TRANSACTIONS),
            offsets_topic: kafka.topic(&CONNECT_OFFSETS),
            producer: kafka.producer_config().create()?,
            stats: ConnectorStats::new(&config.name, &kafka.topic(&BANK_TRANSACTIONS)),
            kafka: kafka.clone(),
            db,
            config,
        })
    }

    /// Copies rows until `shutdown`; errors are logged and retried from the stored offset.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            connector = %self.config.name,
            database = self.db.kind(),
            table = %self.config.table,
            topic = %self.topic,
            mode = ?self.config.mode,
            "source connector started"
        );
        let mut listener = self.listener().await;
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            match self.copy(&shutdown, listener.as_mut()).await {
                Ok(()) => break,
                Err(err) => {
                    self.stats.errors.inc();
                    tracing::warn!(error = %format!("{err:#}"), ?backoff, "source connector failed; resuming from the stored offset");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        self.db.close().await;
        tracing::info!(connector = %self.config.name, "source connector stopped");
        Ok(())
    }

    async fn listener(&self) -> Option<sqlx::postgres::PgListener> {
        let (Database::Postgres(pool), Some(channel)) = (&self.db, &self.config.listen_channel)
        else {
            return None;
        };
        match sqlx::postgres::PgListener::connect_with(pool).await {
            Ok(mut listener) => match listener.listen(channel).await {
                Ok(()) => Some(listener),
                Err(err) => {
                    tracing::warn!(%err, "LISTEN failed; polling only");
                    None
                }
            },
            Err(err) => {
                tracing::warn!(%err, "cannot open a LISTEN connection; polling only");
                None
            }
        }
    }

    /// Reconciles with Kafka, then polls and produces until shutdown or an error.
    async fn copy(
        &self,
        shutdown: &CancellationToken,
        mut listener: Option<&mut sqlx::postgres::PgListener>,
    ) -> anyhow::Result<()> {
        let stored = self.read_stored_offset().await?;
        let mut kafka_next = stored.kafka_next.clone();
        let mut already = self.already_in_kafka(&stored).await?;
        let mut position = stored.source.clone();
        tracing::info!(offset = ?position, partitions_ahead = already.len(), "source connector resuming");
        let partitions = self.partition_count().await?;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let rows = self.poll(&position).await?;
            if rows.is_empty() {
                // Wait for the next poll, a NOTIFY, or shutdown.
                let wait = self.config.poll_interval;
                match listener.as_deref_mut() {
                    Some(listener) => tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(wait) => {}
                        notified = listener.recv() => { notified?; }
                    },
                    None => tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(wait) => {}
                    },
                }
                continue;
            }
            let last = rows.last().map(|r| r.offset.clone()).expect("non-empty");
            let mut payloads = Vec::with_capacity(rows.len());
            for row in &rows {
                let partition = partition_for_key(row.key.as_bytes(), partitions);
                if let Some(have) = already.get(&partition)
                    && row.offset.position(self.config.mode) <= have.position(self.config.mode)
                {
                    self.stats.skipped_already_in_kafka.inc();
                    continue;
                }
                payloads.push((
                    partition,
                    row,
                    serde_json::to_vec(&row.value)?,
                    serde_json::to_string(&row.offset)?,
                ));
            }
            let mut sends = Vec::with_capacity(payloads.len());
            for (partition, row, payload, offset) in &payloads {
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: OFFSET_HEADER,
                        value: Some(offset.as_str()),
                    })
                    .insert(Header {
                        key: "connect.source.table",
                        value: Some(self.config.table.as_str()),
                    });
                let mut record = FutureRecord::to(&self.topic)
                    .partition(*partition)
                    .key(row.key.as_str())
                    .payload(payload.as_slice())
                    .headers(headers);
                if let Some(ts) = row.timestamp_ms {
                    record = record.timestamp(ts);
                }
                sends.push(self.producer.send(record, Duration::from_secs(10)));
            }
            let deliveries = try_join_all(sends)
                .await
                .map_err(|(err, _)| anyhow::anyhow!("producing to {}: {err}", self.topic))?;
            for delivery in &deliveries {
                let next = kafka_next.entry(delivery.partition).or_insert(0);
                *next = (*next).max(delivery.offset + 1);
            }
            self.stats.produced.inc_by(deliveries.len() as u64);
            shared::metrics::client()
                .produced
                .get_or_create(&shared::metrics::TopicLabels {
                    topic: self.topic.clone(),
                })
                .inc_by(deliveries.len() as u64);
            // Kafka has the rows: now move the stored offset past them.
            self.write_offset(&StoredOffset {
                source: last.clone(),
                kafka_next: kafka_next.clone(),
            })
            .await?;
            position = last;
            already.retain(|_, have| {
                have.position(self.config.mode) > position.position(self.config.mode)
            });
            // Poll again at once: a full batch means more rows are waiting.
        }
    }

    async fn partition_count(&self) -> anyhow::Result<i32> {
        let consumer: BaseConsumer = self.kafka.client_config().create()?;
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            let count = metadata
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len() as i32);
            anyhow::ensure!(count > 0, "topic {topic} does not exist");
            Ok(count)
        })
        .await?
    }

    /// The rows after `position`, oldest first, at most `batch.max.rows`.
    async fn poll(&self, position: &SourceOffset) -> anyhow::Result<Vec<SourceRecord>> {
        let c = &self.config;
        let (table, inc) = (&c.table, &c.incrementing_column);
        let limit = c.batch_max_rows;
        match (&self.db, c.mode) {
            (Database::Sqlite(pool), Mode::Incrementing) => {
                let sql = format!(
                    r#"SELECT * FROM "{table}" WHERE "{inc}" > ? ORDER BY "{inc}" LIMIT ?"#
                );
                let rows = sqlx::query(&sql)
                    .bind(position.incrementing)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|r| self.record(r, sqlite_value)).collect()
            }
            (Database::Sqlite(pool), Mode::TimestampIncrementing) => {
                let ts = c.timestamp_column.as_deref().expect("validated");
                let until = (Utc::now() - c.timestamp_delay)
                    .format(SQLITE_TIME_FORMAT)
                    .to_string();
                let since = position.timestamp.clone().unwrap_or_default();
                let sql = format!(
                    r#"SELECT * FROM "{table}" WHERE "{ts}" < ? AND (("{ts}" = ? AND "{inc}" > ?) OR "{ts}" > ?) ORDER BY "{ts}", "{inc}" LIMIT ?"#
                );
                let rows = sqlx::query(&sql)
                    .bind(until)
                    .bind(&since)
                    .bind(position.incrementing)
                    .bind(&since)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|r| self.record(r, sqlite_value)).collect()
            }
            (Database::Postgres(pool), Mode::Incrementing) => {
                let sql = format!(
                    r#"SELECT * FROM "{table}" WHERE "{inc}" > $1 ORDER BY "{inc}" LIMIT $2"#
                );
                let rows = sqlx::query(&sql)
                    .bind(position.incrementing)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter()
                    .map(|r| self.record(r, postgres_value))
                    .collect()
            }
            (Database::Postgres(pool), Mode::TimestampIncrementing) => {
                let ts = c.timestamp_column.as_deref().expect("validated");
                let until = Utc::now() - c.timestamp_delay;
                let since = position
                    .position(Mode::TimestampIncrementing)
                    .0
                    .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
                let sql = format!(
                    r#"SELECT * FROM "{table}" WHERE "{ts}" < $1 AND (("{ts}" = $2 AND "{inc}" > $3) OR "{ts}" > $2) ORDER BY "{ts}", "{inc}" LIMIT $4"#
                );
                let rows = sqlx::query(&sql)
                    .bind(until)
                    .bind(since)
                    .bind(position.incrementing)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter()
                    .map(|r| self.record(r, postgres_value))
                    .collect()
            }
        }
    }

    /// A row as a JSON object, its key, source offset and record timestamp.
    fn record<R: Row>(
        &self,
        row: &R,
        value_of: fn(&R, usize) -> anyhow::Result<Value>,
    ) -> anyhow::Result<SourceRecord> {
        let mut value = Map::new();
        for (index, column) in row.columns().iter().enumerate() {
            value.insert(column.name().to_owned(), value_of(row, index)?);
        }
        let c = &self.config;
        let incrementing = value
            .get(&c.incrementing_column)
            .and_then(Value::as_i64)
            .with_context(|| format!("column {} is not an integer", c.incrementing_column))?;
        let timestamp = c
            .timestamp_column
            .as_ref()
            .and_then(|column| value.get(column))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let key = match value.get(&c.key_column) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => bail!("no column {} for the key", c.key_column),
        };
        let timestamp_ms = timestamp
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        Ok(SourceRecord {
            offset: SourceOffset {
                incrementing,
                timestamp: match c.mode {
                    Mode::Incrementing => None,
                    Mode::TimestampIncrementing => timestamp,
                },
            },
            key,
            value,
            timestamp_ms,
        })
    }

    /// The last offset written to `connect_offsets` for this connector and table.
    async fn read_stored_offset(&self) -> anyhow::Result<StoredOffset> {
        let key = self.config.offset_key();
        let records = read_partitions(
            &self.kafka,
            &self.offsets_topic,
            [(0, Offset::Beginning)].into(),
        )
        .await?;
        let mut stored = StoredOffset::default();
        for (_, record_key, payload, _) in records {
            if record_key.as_deref() == Some(key.as_bytes()) {
                stored = match payload {
                    Some(bytes) => serde_json::from_slice(&bytes)
                        .with_context(|| format!("bad offset record in {}", self.offsets_topic))?,
                    // A tombstone resets the connector (as in Connect).
                    None => StoredOffset::default(),
                };
            }
        }
        Ok(stored)
    }

    /// Per output partition, the last source offset written past the stored offset (the rows a
    /// crashed run produced but did not record).
    async fn already_in_kafka(
        &self,
        stored: &StoredOffset,
    ) -> anyhow::Result<BTreeMap<i32, SourceOffset>> {
        let partitions = self.partition_count().await?;
        let from = (0..partitions)
            .map(|p| {
                let offset = stored
                    .kafka_next
                    .get(&p)
                    .map_or(Offset::Beginning, |next| Offset::Offset(*next));
                (p, offset)
            })
            .collect();
        let mut ahead: BTreeMap<i32, SourceOffset> = BTreeMap::new();
        let mode = self.config.mode;
        for (partition, _, _, offset) in read_partitions(&self.kafka, &self.topic, from).await? {
            let Some(offset) = offset else { continue };
            if offset.position(mode) <= stored.source.position(mode) {
                continue;
            }
            let entry = ahead.entry(partition).or_default();
            if offset.position(mode) > entry.position(mode) {
                *entry = offset;
            }
        }
        Ok(ahead)
    }

    async fn write_offset(&self, stored: &StoredOffset) -> anyhow::Result<()> {
        let key = self.config.offset_key();
        let payload = serde_json::to_vec(stored)?;
        self.producer
            .send(
                FutureRecord::to(&self.offsets_topic)
                    .partition(0)
                    .key(key.as_str())
                    .payload(payload.as_slice()),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(err, _)| anyhow::anyhow!("writing the offset: {err}"))?;
        self.stats.offset_commits.inc();
        Ok(())
    }
}

type ReadRecord = (i32, Option<Vec<u8>>, Option<Vec<u8>>, Option<SourceOffset>);

/// Reads the given partitions from the given offsets to their end: until each has reached its
/// high watermark and nothing more arrived for a moment (tansu 0.6 under-reports watermarks).
async fn read_partitions(
    kafka: &Kafka,
    topic: &str,
    from: BTreeMap<i32, Offset>,
) -> anyhow::Result<Vec<ReadRecord>> {
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", "mybank-source-connector-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        let mut remaining = BTreeMap::new();
        for (partition, offset) in &from {
            let (_, high) =
                shared::kafka::watermarks(&consumer, &topic, *partition, Duration::from_secs(30))?;
            let start = match offset {
                Offset::Offset(o) => *o,
                _ => 0,
            };
            if high > start {
                remaining.insert(*partition, high);
            }
            tpl.add_partition_offset(&topic, *partition, *offset)?;
        }
        consumer.assign(&tpl)?;
        let mut records = Vec::new();
        let idle = Duration::from_millis(300);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match consumer.poll(idle) {
                Some(Ok(message)) => {
                    if let Some(high) = remaining.get(&message.partition())
                        && message.offset() + 1 >= *high
                    {
                        remaining.remove(&message.partition());
                    }
                    let offset = message.headers().and_then(|headers| {
                        headers
                            .iter()
                            .find(|h| h.key == OFFSET_HEADER)
                            .and_then(|h| h.value)
                            .and_then(|v| serde_json::from_slice(v).ok())
                    });
                    records.push((
                        message.partition(),
                        message.key().map(<[u8]>::to_vec),
                        message.payload().map(<[u8]>::to_vec),
                        offset,
                    ));
                }
                Some(Err(err)) => tracing::debug!(%err, "reader"),
                None if remaining.is_empty() => break,
                None => {}
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "reading {topic}: partitions {:?} did not reach their end",
                    remaining.keys()
                );
            }
        }
        Ok(records)
    })
    .await?
}

/// SQLite values by their storage class.
fn sqlite_value(row: &sqlx::sqlite::SqliteRow, index: usize) -> anyhow::Result<Value> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = raw.type_info().name().to_ascii_uppercase();
    Ok(match kind.as_str() {
        "INTEGER" | "INT" | "BIGINT" | "BOOLEAN" => Value::from(row.try_get::<i64, _>(index)?),
        "REAL" | "FLOAT" | "DOUBLE" => Value::from(row.try_get::<f64, _>(index)?),
        "BLOB" => bail!("BLOB columns are not supported"),
        _ => Value::from(row.try_get::<String, _>(index)?),
    })
}

/// PostgreSQL values by column type; timestamps as RFC 3339 (UTC).
fn postgres_value(row: &sqlx::postgres::PgRow, index: usize) -> anyhow::Result<Value> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = raw.type_info().name().to_owned();
    Ok(match kind.as_str() {
        "INT8" => Value::from(row.try_get::<i64, _>(index)?),
        "INT4" => Value::from(row.try_get::<i32, _>(index)?),
        "INT2" => Value::from(row.try_get::<i16, _>(index)?),
        "BOOL" => Value::from(row.try_get::<bool, _>(index)?),
        "FLOAT8" => Value::from(row.try_get::<f64, _>(index)?),
        "FLOAT4" => Value::from(row.try_get::<f32, _>(index)?),
        "TIMESTAMPTZ" => Value::from(
            row.try_get::<DateTime<Utc>, _>(index)?
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        ),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => Value::from(row.try_get::<String, _>(index)?),
        other => bail!("column type {other} is not supported"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "
# the course's example, with our table and topic
name=transactions-source
connection.url=sqlite:bank.db
mode=timestamp+incrementing            # or incrementing
incrementing.column.name=id
timestamp.column.name=created_at
table.whitelist=transactions
topic.prefix=bank_
key.column.name=user_id
poll.interval.ms=50
batch.max.rows=500
";

    #[test]
    fn parses_a_connect_style_properties_file() {
        let config = ConnectorConfig::parse(EXAMPLE).unwrap();
        assert_eq!(config.mode, Mode::TimestampIncrementing);
        assert_eq!(config.topic_name(), "bank_transactions");
        assert_eq!(config.poll_interval, Duration::from_millis(50));
        assert_eq!(config.batch_max_rows, 500);
        assert_eq!(
            config.offset_key(),
            r#"["transactions-source",{"table":"transactions"}]"#
        );
    }

    #[test]
    fn rejects_typos_bad_modes_and_sql_in_names() {
        let with = |extra: &str| ConnectorConfig::parse(&format!("{EXAMPLE}\n{extra}"));
        assert!(with("poll.intervall.ms=5").is_err());
        assert!(with("mode=bulk").is_err());
        assert!(with("table.whitelist=transactions; DROP TABLE x").is_err());
        assert!(ConnectorConfig::parse("name=x").is_err());
    }

    #[test]
    fn offsets_order_by_timestamp_then_id() {
        let at = |ts: &str, id| SourceOffset {
            incrementing: id,
            timestamp: Some(ts.to_owned()),
        };
        let mode = Mode::TimestampIncrementing;
        assert!(
            at("2026-01-01T00:00:00.001Z", 1).position(mode)
                > at("2026-01-01T00:00:00.000Z", 9).position(mode)
        );
        assert!(
            at("2026-01-01T00:00:00.000Z", 2).position(mode)
                > at("2026-01-01T00:00:00.000Z", 1).position(mode)
        );
        assert!(
            SourceOffset::default().position(mode) < at("1970-01-01T00:00:00Z", 0).position(mode)
        );
    }
}
