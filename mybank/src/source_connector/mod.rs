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
//!
//! | file          | concept                                                                  |
//! |---------------|--------------------------------------------------------------------------|
//! | `mod.rs`      | [`SourceConnector`]: start, retry, the copy loop (poll, produce, commit) |
//! | `config.rs`   | [`ConnectorConfig`], [`Mode`]: the properties file and its validation    |
//! | `query.rs`    | the SQL per database and mode; a row as a JSON object                    |
//! | `offsets.rs`  | [`SourceOffset`], `connect_offsets`, reconciliation with the topic       |
//! | `metrics.rs`  | [`ConnectorStats`]                                                       |

mod config;
mod metrics;
mod offsets;
mod query;

use std::time::Duration;

use anyhow::bail;
use futures::future::try_join_all;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use shared::Kafka;
use shared::producer::partition_for_key;
use tokio_util::sync::CancellationToken;

use crate::database::Database;
use crate::topics::{BANK_TRANSACTIONS, CONNECT_OFFSETS};

pub use config::{ConnectorConfig, Mode};
pub use metrics::ConnectorStats;
pub use offsets::{OFFSET_HEADER, SourceOffset, StoredOffset};

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
}

/// The source connector on the scaffold: creates the bank's schema if missing (the bank's own
/// system would have), then copies rows until the process stops.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "source-connector"
    }
    fn about(&self) -> &'static str {
        "The bank's database → bank_transactions (JDBC-source style, properties file)."
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        crate::database::Database::connect(&resources.bank_url())
            .await?
            .create_schema()
            .await?;
        let connector = SourceConnector::new(
            &ctx.kafka,
            resources.connector.clone(),
            resources.database_url.clone(),
        )
        .await?;
        let stats = std::sync::Arc::new(connector.stats.clone());
        let task = tokio::spawn(connector.run(ctx.shutdown.clone()));
        Ok(shared::service::Running::new()
            .handle(stats)
            .on_stop(async move { task.await? }))
    }
}
