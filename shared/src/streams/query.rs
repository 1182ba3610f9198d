//! Interactive queries: [`StoreReader`] reads the committed state of the tasks this instance
//! runs, and [`StreamsHandle`] — the running application — routes a key to the instance that
//! owns it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::instances::{Directory, Route};
use super::metrics::StreamsStats;
use super::state::StateDb;

/// Read access to the committed state of the tasks this instance runs (interactive queries).
#[derive(Clone, Default)]
pub struct StoreReader {
    pub(super) stores: Arc<Vec<String>>,
    pub(super) tasks: Arc<RwLock<BTreeMap<i32, OpenTask>>>,
    /// Tasks opened so far: numbers each opening ([`Applied::opened`]).
    pub(super) openings: Arc<AtomicU64>,
    /// Woken when committed state changes (a batch committed, tasks opened or closed).
    pub(super) changed: Arc<tokio::sync::Notify>,
}

/// A task queries can read: its RocksDB and which opening of the task it is.
#[derive(Clone)]
pub(super) struct OpenTask {
    pub(super) db: Arc<StateDb>,
    pub(super) opened: u64,
}

/// How far a task's committed state goes on one input topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The next input offset to apply: every record below it is in the committed state.
    pub next_offset: i64,
    /// Which opening of the task this is (different after the partition was revoked and
    /// assigned back, or moved away and back): offsets learnt about another opening may be
    /// stale, other instances may have written meanwhile.
    pub opened: u64,
}

impl StoreReader {
    /// Registers a newly opened (restored) task: queryable from now on.
    pub(super) fn open(&self, partition: i32, db: Arc<StateDb>) {
        let opened = self.openings.fetch_add(1, Ordering::Relaxed) + 1;
        self.tasks
            .write()
            .expect("tasks lock")
            .insert(partition, OpenTask { db, opened });
        self.changed.notify_waiters();
    }

    /// Unregisters a closed task.
    pub(super) fn close(&self, partition: i32) {
        self.tasks.write().expect("tasks lock").remove(&partition);
        self.changed.notify_waiters();
    }

    fn db(&self, partition: i32) -> Option<Arc<StateDb>> {
        self.tasks
            .read()
            .expect("tasks lock")
            .get(&partition)
            .map(|task| Arc::clone(&task.db))
    }

    /// How far the committed state of the task of `partition` goes on input `topic` (`None`
    /// if that task is not here). Read from the task's checkpoint, which is written with the
    /// state in one RocksDB batch: a read after this one sees at least this much.
    pub fn applied(&self, partition: i32, topic: &str) -> anyhow::Result<Option<Applied>> {
        let task = self
            .tasks
            .read()
            .expect("tasks lock")
            .get(&partition)
            .cloned();
        let Some(task) = task else {
            return Ok(None);
        };
        let next_offset = task
            .db
            .checkpoint()?
            .and_then(|checkpoint| checkpoint.offsets.get(topic).copied())
            .unwrap_or(0);
        Ok(Some(Applied {
            next_offset,
            opened: task.opened,
        }))
    }

    /// Waits until the task of `partition` has applied every record of `topic` below `offset`
    /// (read-your-writes for a command side that decides from this state). Fails if the task
    /// is not here or closes, or after `timeout`.
    pub async fn wait_applied(
        &self,
        partition: i32,
        topic: &str,
        offset: i64,
        timeout: Duration,
    ) -> anyhow::Result<Applied> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable(); // registered before the check: no commit is missed
            let Some(applied) = self.applied(partition, topic)? else {
                anyhow::bail!("partition {partition} is no longer assigned here");
            };
            if applied.next_offset >= offset {
                return Ok(applied);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                anyhow::bail!(
                    "the state of partition {partition} reached offset {} of {topic}, not {offset}, within {timeout:?}",
                    applied.next_offset
                );
            }
        }
    }

    /// A key's committed value in the task of `partition` (`None` if that task is not here):
    /// one lookup, for stores whose key is not the record key (e.g. `user/show` under `user`).
    pub fn get_in<V: DeserializeOwned>(
        &self,
        partition: i32,
        store: &str,
        key: &[u8],
    ) -> anyhow::Result<Option<V>> {
        let index = self.index(store)?;
        match self.db(partition) {
            Some(db) => match db.get(index, key)? {
                Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Entries of `store` with the key prefix, in the task of `partition` only.
    pub fn prefix_in<V: DeserializeOwned>(
        &self,
        partition: i32,
        store: &str,
        prefix: &[u8],
    ) -> anyhow::Result<Vec<(Vec<u8>, V)>> {
        let index = self.index(store)?;
        let end = super::context::prefix_end(prefix);
        let Some(db) = self.db(partition) else {
            return Ok(Vec::new());
        };
        db.range(index, prefix, end.as_deref())?
            .into_iter()
            .map(|(k, v)| Ok((k, serde_json::from_slice(&v)?)))
            .collect()
    }

    /// A key's committed value, from whichever local task holds it.
    pub fn get<V: DeserializeOwned>(&self, store: &str, key: &[u8]) -> anyhow::Result<Option<V>> {
        let index = self.index(store)?;
        for task in self.tasks.read().expect("tasks lock").values() {
            if let Some(bytes) = task.db.get(index, key)? {
                return Ok(Some(serde_json::from_slice(&bytes)?));
            }
        }
        Ok(None)
    }

    /// Every committed entry of `store` with the given key prefix, over all local tasks.
    pub fn prefix<V: DeserializeOwned>(
        &self,
        store: &str,
        prefix: &[u8],
    ) -> anyhow::Result<Vec<(Vec<u8>, V)>> {
        let index = self.index(store)?;
        let end = super::context::prefix_end(prefix);
        let mut out = Vec::new();
        for task in self.tasks.read().expect("tasks lock").values() {
            for (k, v) in task.db.range(index, prefix, end.as_deref())? {
                out.push((k, serde_json::from_slice(&v)?));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Partitions whose tasks run here.
    pub fn partitions(&self) -> Vec<i32> {
        self.tasks
            .read()
            .expect("tasks lock")
            .keys()
            .copied()
            .collect()
    }

    fn index(&self, store: &str) -> anyhow::Result<usize> {
        self.stores
            .iter()
            .position(|s| s == store)
            .ok_or_else(|| anyhow::anyhow!("no store named {store:?}"))
    }
}

/// A running streams application.
pub struct StreamsHandle {
    /// The application id (prefixed): its consumer group.
    pub application_id: String,
    /// Taken by the first [`StreamsHandle::join`].
    pub(super) thread: Mutex<Option<std::thread::JoinHandle<anyhow::Result<()>>>>,
    pub stats: Arc<StreamsStats>,
    pub stores: StoreReader,
    /// The other instances and the partitions they own.
    pub directory: Directory,
    pub(super) endpoint: Option<String>,
    pub(super) input_partitions: i32,
}

impl StreamsHandle {
    /// Where a query for `key` must be answered: here, at another instance, or nowhere yet.
    pub fn route(&self, key: &[u8]) -> Route {
        let partition = crate::producer::partition_for_key(key, self.input_partitions);
        if self.stores.partitions().contains(&partition) {
            return Route::Local;
        }
        match self.directory.owner(partition) {
            Some(endpoint) if Some(&endpoint) != self.endpoint.as_ref() => Route::Remote(endpoint),
            _ => Route::Unavailable,
        }
    }

    /// The input partition of a record key (the task whose stores hold its state).
    pub fn partition_of(&self, key: &[u8]) -> i32 {
        crate::producer::partition_for_key(key, self.input_partitions)
    }

    /// Waits for the stream thread (it stops when the shutdown token is cancelled). Through a
    /// shared reference, so a handle that queries also hold can be joined; a second call
    /// returns at once.
    pub async fn join(&self) -> anyhow::Result<()> {
        let Some(thread) = self.thread.lock().expect("thread lock").take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("stream thread panicked"))?
    }
}
