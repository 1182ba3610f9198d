//! Interactive queries: [`StoreReader`] reads the committed state of the tasks this instance
//! runs, and [`StreamsHandle`] — the running application — routes a key to the instance that
//! owns it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::de::DeserializeOwned;

use super::instances::{Directory, Route};
use super::metrics::StreamsStats;
use super::state::StateDb;

/// Read access to the committed state of the tasks this instance runs (interactive queries).
#[derive(Clone, Default)]
pub struct StoreReader {
    pub(super) stores: Arc<Vec<String>>,
    pub(super) tasks: Arc<RwLock<BTreeMap<i32, Arc<StateDb>>>>,
}

impl StoreReader {
    /// A key's committed value in the task of `partition` (`None` if that task is not here):
    /// one lookup, for stores whose key is not the record key (e.g. `user/show` under `user`).
    pub fn get_in<V: DeserializeOwned>(
        &self,
        partition: i32,
        store: &str,
        key: &[u8],
    ) -> anyhow::Result<Option<V>> {
        let index = self.index(store)?;
        let db = self
            .tasks
            .read()
            .expect("tasks lock")
            .get(&partition)
            .cloned();
        match db {
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
        let db = self
            .tasks
            .read()
            .expect("tasks lock")
            .get(&partition)
            .cloned();
        let Some(db) = db else {
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
        for db in self.tasks.read().expect("tasks lock").values() {
            if let Some(bytes) = db.get(index, key)? {
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
        for db in self.tasks.read().expect("tasks lock").values() {
            for (k, v) in db.range(index, prefix, end.as_deref())? {
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
