//! What a processor sees while handling one record: the record's coordinates, the task's state
//! stores (reads see this batch's uncommitted writes), and a way to emit records.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::state::{Overlay, StateDb};

/// A record to produce once the batch commits.
#[derive(Debug, Clone)]
pub struct Output {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: Option<i64>,
    /// Set when this output is a dead letter: counted once the batch is acknowledged.
    pub dead_letter: Option<crate::dlq::Letter>,
}

/// Coordinates of the record being processed (`offset = -1` during punctuation).
#[derive(Debug, Clone)]
pub struct RecordMeta {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
}

/// Undo information for one write, so a failed record leaves no trace in the batch.
pub(crate) struct Undo {
    store: usize,
    key: Vec<u8>,
    previous: Option<Option<Vec<u8>>>,
}

/// The processor's view of its task while handling one record.
pub struct ProcessorContext<'a> {
    pub(crate) application_id: &'a str,
    pub(crate) stores: &'a [String],
    pub(crate) db: &'a StateDb,
    pub(crate) global: Option<&'a super::global::GlobalTables>,
    pub(crate) overlay: &'a mut Overlay,
    pub(crate) outputs: &'a mut Vec<Output>,
    pub(crate) undo: Vec<Undo>,
    pub(crate) meta: RecordMeta,
    pub(crate) stream_time: i64,
    pub(crate) emitted: u32,
    pub(crate) late_dropped: u64,
}

impl<'a> ProcessorContext<'a> {
    pub fn topic(&self) -> &str {
        &self.meta.topic
    }
    pub fn partition(&self) -> i32 {
        self.meta.partition
    }
    pub fn offset(&self) -> i64 {
        self.meta.offset
    }
    /// The record's timestamp (its event time when produced by `EventProducer::publish`).
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.meta.timestamp_ms
    }
    /// The largest event time this task has seen, including the current record.
    pub fn stream_time_ms(&self) -> i64 {
        self.stream_time
    }

    fn store_index(&self, store: &str) -> anyhow::Result<usize> {
        self.stores.iter().position(|s| s == store).ok_or_else(|| {
            anyhow::anyhow!("no store named {store:?} (declared: {:?})", self.stores)
        })
    }

    /// Raw read: this batch's writes first, then RocksDB.
    pub fn get_raw(&self, store: &str, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        let index = self.store_index(store)?;
        match self.overlay[index].get(key) {
            Some(value) => Ok(value.clone()),
            None => self.db.get(index, key),
        }
    }

    /// Raw write (`None` deletes). Keys may not start with a NUL byte (reserved).
    pub fn put_raw(
        &mut self,
        store: &str,
        key: &[u8],
        value: Option<Vec<u8>>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            key.first() != Some(&0),
            "store keys may not start with a NUL byte"
        );
        let index = self.store_index(store)?;
        let previous = self.overlay[index].insert(key.to_vec(), value);
        self.undo.push(Undo {
            store: index,
            key: key.to_vec(),
            previous,
        });
        Ok(())
    }

    /// Typed read (JSON values).
    pub fn get<V: DeserializeOwned>(&self, store: &str, key: &[u8]) -> anyhow::Result<Option<V>> {
        match self.get_raw(store, key)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Looks `key` up in a global table (every partition of its topic, on every instance).
    pub fn global_get<V: DeserializeOwned>(
        &self,
        store: &str,
        key: &[u8],
    ) -> anyhow::Result<Option<V>> {
        let global = self
            .global
            .ok_or_else(|| anyhow::anyhow!("no global tables configured"))?;
        let index = global
            .index(store)
            .ok_or_else(|| anyhow::anyhow!("no global table named {store:?}"))?;
        match global.db.get(index, key)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Typed write (JSON values).
    pub fn put<V: Serialize>(&mut self, store: &str, key: &[u8], value: &V) -> anyhow::Result<()> {
        self.put_raw(store, key, Some(serde_json::to_vec(value)?))
    }

    pub fn delete(&mut self, store: &str, key: &[u8]) -> anyhow::Result<()> {
        self.put_raw(store, key, None)
    }

    /// Entries with `from <= key < to` (`to = None`: to the end), merged with this batch's
    /// writes, in key order.
    pub fn range<V: DeserializeOwned>(
        &self,
        store: &str,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> anyhow::Result<Vec<(Vec<u8>, V)>> {
        let index = self.store_index(store)?;
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = self
            .db
            .range(index, from, to)?
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        let upper = to.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        for (key, value) in
            self.overlay[index].range::<[u8], _>((std::ops::Bound::Included(from), upper))
        {
            merged.insert(key.clone(), value.clone());
        }
        merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .map(|(k, v)| Ok((k, serde_json::from_slice(&v)?)))
            .collect()
    }

    /// Entries whose key starts with `prefix`.
    pub fn prefix<V: DeserializeOwned>(
        &self,
        store: &str,
        prefix: &[u8],
    ) -> anyhow::Result<Vec<(Vec<u8>, V)>> {
        let end = prefix_end(prefix);
        self.range(store, prefix, end.as_deref())
    }

    /// Emits `value` to `topic` under `key` when the batch commits. The record's `event_id`
    /// header is derived from the input record (`<app>:<topic>/<partition>/<offset>/<n>`), so a
    /// re-delivery after a crash carries the same id and consumers can drop the duplicate.
    pub fn emit<V: Serialize>(&mut self, topic: &str, key: &str, value: &V) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(value)?;
        let id = format!(
            "{}:{}/{}/{}/{}",
            self.application_id,
            self.meta.topic,
            self.meta.partition,
            self.meta.offset,
            self.emitted
        );
        self.emitted += 1;
        self.outputs.push(Output {
            topic: topic.to_owned(),
            key: Some(key.as_bytes().to_vec()),
            payload: Some(payload),
            headers: vec![("event_id".to_owned(), id.into_bytes())],
            timestamp_ms: self.meta.timestamp_ms.or(Some(self.stream_time)),
            dead_letter: None,
        });
        Ok(())
    }

    /// Counts records dropped because their window had closed (reported in metrics).
    pub fn record_late_drop(&mut self, count: u64) {
        self.late_dropped += count;
    }

    /// Undoes this record's writes and outputs (the handler failed).
    pub(crate) fn rollback(mut self, outputs_before: usize) {
        while let Some(undo) = self.undo.pop() {
            match undo.previous {
                Some(previous) => {
                    self.overlay[undo.store].insert(undo.key, previous);
                }
                None => {
                    self.overlay[undo.store].remove(&undo.key);
                }
            }
        }
        self.outputs.truncate(outputs_before);
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(super::prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(super::prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(super::prefix_end(b"\xff\xff"), None);
    }
}
