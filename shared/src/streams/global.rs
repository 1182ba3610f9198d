//! Global tables: every partition of a small topic (reference data: regions, currencies,
//! catalogs) materialized on *every* instance, so any task can look any key up without
//! co-partitioning. The topic itself is the changelog: the local RocksDB remembers the next
//! offset of each partition and resumes from there.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use rocksdb::WriteBatch;

use super::state::{Checkpoint, StateDb};
use crate::kafka::Kafka;

/// The global tables of an instance: one RocksDB, a column family per table.
pub struct GlobalTables {
    pub(crate) db: StateDb,
    /// (topic, store) per table, in column-family order.
    tables: Vec<(String, String)>,
    consumer: BaseConsumer,
    checkpoint: Checkpoint,
}

impl GlobalTables {
    /// Opens the local copy and catches up with every partition of every table topic.
    pub fn open(
        kafka: &Kafka,
        dir: &Path,
        tables: &[(String, String)],
        group: &str,
    ) -> anyhow::Result<Self> {
        let stores: Vec<String> = tables.iter().map(|(_, store)| store.clone()).collect();
        let db = StateDb::open(dir, &stores)?;
        let checkpoint = db.checkpoint()?.unwrap_or_default();
        let consumer: BaseConsumer = kafka
            .consumer_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for (topic, _) in tables {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            let partitions = metadata
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len());
            if partitions == 0 {
                bail!("global table topic {topic} does not exist");
            }
            for p in 0..partitions as i32 {
                let next = checkpoint.offsets.get(&format!("{topic}/{p}")).copied();
                tpl.add_partition_offset(topic, p, next.map_or(Offset::Beginning, Offset::Offset))?;
                let (_, high) =
                    crate::kafka::watermarks(&consumer, topic, p, Duration::from_secs(30))?;
                ends.insert((topic.clone(), p), high);
            }
        }
        consumer.assign(&tpl)?;
        let mut tables = GlobalTables {
            db,
            tables: tables.to_vec(),
            consumer,
            checkpoint,
        };
        tables.catch_up(&ends)?;
        Ok(tables)
    }

    /// Reads until every partition reached `ends` (as reported at open).
    fn catch_up(&mut self, ends: &BTreeMap<(String, i32), i64>) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let behind = ends.iter().any(|((topic, p), end)| {
                self.checkpoint
                    .offsets
                    .get(&format!("{topic}/{p}"))
                    .copied()
                    .unwrap_or(0)
                    < *end
            });
            if !behind {
                return Ok(());
            }
            if self.poll(Duration::from_millis(200))? == 0
                && started.elapsed() > Duration::from_secs(120)
            {
                bail!("global tables did not catch up in 120 s");
            }
        }
    }

    /// Applies what arrived (waiting at most `wait` for the first record); returns how many.
    pub fn poll(&mut self, wait: Duration) -> anyhow::Result<usize> {
        let mut batch = WriteBatch::default();
        let mut applied = 0;
        let mut timeout = wait;
        while let Some(result) = self.consumer.poll(timeout) {
            timeout = Duration::ZERO;
            let message = match result {
                Ok(message) => message,
                Err(err) => {
                    tracing::debug!(%err, "global table consumer");
                    continue;
                }
            };
            let Some(index) = self
                .tables
                .iter()
                .position(|(topic, _)| topic == message.topic())
            else {
                continue;
            };
            if let Some(key) = message.key() {
                self.db.stage_one(&mut batch, index, key, message.payload());
            }
            self.checkpoint.offsets.insert(
                format!("{}/{}", message.topic(), message.partition()),
                message.offset() + 1,
            );
            applied += 1;
            if applied >= 10_000 {
                break;
            }
        }
        if applied > 0 {
            self.db
                .commit(batch, &self.checkpoint)
                .context("writing global tables")?;
        }
        Ok(applied)
    }

    /// The index of a global store, for lookups.
    pub(crate) fn index(&self, store: &str) -> Option<usize> {
        self.tables.iter().position(|(_, s)| s == store)
    }
}
