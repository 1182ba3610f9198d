//! The local state of one task (one input partition): a RocksDB database with a column family
//! per store plus `__meta`, which holds the task's [`Checkpoint`].
//!
//! State and checkpoint are written in **one RocksDB write batch**, so after a crash the store
//! contents and "the last input offset applied" always agree — the basis of exact counts without
//! broker transactions.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch,
};
use serde::{Deserialize, Serialize};

const META_CF: &str = "__meta";
const CHECKPOINT_KEY: &[u8] = b"checkpoint";

/// Where a task stands: what it applied, and where its changelogs were when it did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The batch that produced this state: `<epoch>:<seq>`.
    pub batch: String,
    /// Batches applied so far along this task's history (increases across owners).
    pub seq: u64,
    /// Next input offset to process, per input topic (everything below is in the state).
    pub offsets: BTreeMap<String, i64>,
    /// Largest event time seen (drives windows).
    pub stream_time: i64,
    /// Per store: the changelog offset up to which the state is known to match the changelog.
    #[serde(default)]
    pub positions: BTreeMap<String, i64>,
}

/// Writes of one batch: per store, key → new value (`None` = delete). Later writes win.
pub type Overlay = Vec<BTreeMap<Vec<u8>, Option<Vec<u8>>>>;

/// The memtable budget of one task's RocksDB (all its stores), and so the most its write-ahead
/// log preallocates on disk.
pub const TASK_WRITE_BUFFER: usize = 8 << 20;

/// A task's RocksDB.
pub struct StateDb {
    db: DB,
    stores: Vec<String>,
    /// Reused by every `get` (rust-rocksdb's `get_cf` allocates a new one per call).
    read_options: ReadOptions,
}

impl StateDb {
    pub fn open(path: &Path, stores: &[String]) -> anyhow::Result<StateDb> {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // One memtable budget for the task's stores together. It also caps what RocksDB
        // preallocates for each write-ahead log (else 1.1 × the 64 MB default write buffer: a
        // 32-partition application reserved 2.4 GB of disk for a few MB of state).
        options.set_db_write_buffer_size(TASK_WRITE_BUFFER);
        let cfs = stores
            .iter()
            .map(String::as_str)
            .chain([META_CF])
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&options, path, cfs)
            .with_context(|| format!("opening state store {}", path.display()))?;
        Ok(StateDb {
            db,
            stores: stores.to_vec(),
            read_options: ReadOptions::default(),
        })
    }

    pub fn stores(&self) -> &[String] {
        &self.stores
    }

    fn cf(&self, store: usize) -> &ColumnFamily {
        self.db
            .cf_handle(&self.stores[store])
            .expect("column family opened with the db")
    }

    pub fn get(&self, store: usize, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        let value = self
            .db
            .get_pinned_cf_opt(self.cf(store), key, &self.read_options)?;
        Ok(value.map(|value| value.to_vec()))
    }

    /// Entries with `from <= key < to` (`to = None`: to the end), in key order.
    pub fn range(
        &self,
        store: usize,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(store), IteratorMode::From(from, Direction::Forward))
        {
            let (key, value) = item?;
            if to.is_some_and(|to| &*key >= to) {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
        }
        Ok(out)
    }

    pub fn checkpoint(&self) -> anyhow::Result<Option<Checkpoint>> {
        let meta = self.db.cf_handle(META_CF).expect("meta column family");
        match self.db.get_cf(meta, CHECKPOINT_KEY)? {
            Some(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).context("corrupt checkpoint")?,
            )),
            None => Ok(None),
        }
    }

    /// Adds `overlay` to `batch` (the caller writes it with [`StateDb::commit`]).
    pub fn stage(&self, batch: &mut WriteBatch, overlay: &Overlay) {
        for (store, writes) in overlay.iter().enumerate() {
            let cf = self.cf(store);
            for (key, value) in writes {
                match value {
                    Some(value) => batch.put_cf(cf, key, value),
                    None => batch.delete_cf(cf, key),
                }
            }
        }
    }

    /// Stages one write.
    pub fn stage_one(
        &self,
        batch: &mut WriteBatch,
        store: usize,
        key: &[u8],
        value: Option<&[u8]>,
    ) {
        let cf = self.cf(store);
        match value {
            Some(value) => batch.put_cf(cf, key, value),
            None => batch.delete_cf(cf, key),
        }
    }

    /// Writes `batch` and `checkpoint` atomically.
    pub fn commit(&self, mut batch: WriteBatch, checkpoint: &Checkpoint) -> anyhow::Result<()> {
        let meta = self.db.cf_handle(META_CF).expect("meta column family");
        batch.put_cf(meta, CHECKPOINT_KEY, serde_json::to_vec(checkpoint)?);
        self.db.write(batch)?;
        Ok(())
    }

    /// Writes `batch` without touching the checkpoint (restore progress: re-applying it is
    /// harmless, because the changelog is replayed in order from the last checkpoint).
    pub fn write(&self, batch: WriteBatch) -> anyhow::Result<()> {
        self.db.write(batch)?;
        Ok(())
    }
}
