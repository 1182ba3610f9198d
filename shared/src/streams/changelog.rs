//! Changelog topics: every store write is also a record of `<prefix><app id>-<store>-changelog`
//! (compacted, partitioned like the input), so a task's state can be rebuilt anywhere.
//!
//! ## Protocol (why counts stay exact without transactions)
//!
//! At the end of every batch a task:
//!
//! 1. produces its output records and its changelog records (each changelog record carries the
//!    header `batch = <epoch>:<seq>`), and waits until the broker acknowledged all of them;
//! 2. produces a **marker** (reserved key [`MARKER_KEY`], value: batch id, seq, input offsets,
//!    stream time) to *every* store's changelog, and waits for those acknowledgements;
//! 3. writes state + [`Checkpoint`](super::state::Checkpoint) in one RocksDB write batch;
//! 4. commits the input offsets.
//!
//! A crash anywhere leaves one of these situations, and restore handles each:
//!
//! * before 2 completes for any store: the batch's changelog records are an *unmarked tail*;
//!   restore discards them and re-writes the current value of each of their keys (a *repair*),
//!   so compaction can never keep a discarded value as a key's latest; the inputs are then
//!   reprocessed, because neither the local checkpoint nor any marker covers them;
//! * after a marker reached any store: the whole batch is durable (markers go out only after
//!   every changelog record was acknowledged), so restore applies it and skips its inputs;
//! * after 3: the local checkpoint covers the batch; the inputs are skipped.
//!
//! Records before a store's last marker are either valid or superseded by a later repair, so a
//! restore from the beginning (after compaction removed old markers) is correct too.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Key of marker records: user keys may not start with a NUL byte.
pub const MARKER_KEY: &[u8] = b"\0streams.marker";

/// Header naming the batch a changelog record belongs to.
pub const BATCH_HEADER: &str = "batch";

/// The changelog topic of `store` in application `application_id` (already prefixed).
pub fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

/// "This batch is complete": written to every store's changelog after all its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub batch: String,
    pub seq: u64,
    pub offsets: BTreeMap<String, i64>,
    pub stream_time: i64,
}

/// A store write as read back from a changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    /// Shared by the records of one batch (a restore reads thousands in a row).
    pub batch: Arc<str>,
}

/// One changelog record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Change(Change),
    Marker(Marker),
}

/// Replays one store's changelog: changes are released when a marker follows them; what is left
/// after the last marker is the tail, decided by [`resolve_tails`].
#[derive(Debug, Default)]
pub struct StoreReplay {
    pending: Vec<Change>,
    pub markers: Vec<Marker>,
}

impl StoreReplay {
    /// Feeds the next record; returns the changes that are now safe to apply, in order.
    pub fn push(&mut self, entry: Entry) -> Vec<Change> {
        match entry {
            Entry::Change(change) => {
                self.pending.push(change);
                Vec::new()
            }
            Entry::Marker(marker) => {
                self.markers.push(marker);
                std::mem::take(&mut self.pending)
            }
        }
    }

    /// The changes after the last marker.
    pub fn into_tail(self) -> Vec<Change> {
        self.pending
    }
}

/// Splits each store's tail into changes to apply (their batch has a marker in *some* store's
/// changelog: the batch is complete) and keys to repair (their batch never completed).
pub fn resolve_tails(
    tails: Vec<Vec<Change>>,
    markers: &[Marker],
) -> (Vec<Vec<Change>>, Vec<Vec<Vec<u8>>>) {
    let complete: HashSet<&str> = markers.iter().map(|m| m.batch.as_str()).collect();
    let mut apply = Vec::with_capacity(tails.len());
    let mut repair = Vec::with_capacity(tails.len());
    for tail in tails {
        let (ok, stale): (Vec<Change>, Vec<Change>) =
            tail.into_iter().partition(|c| complete.contains(&*c.batch));
        apply.push(ok);
        let mut keys: Vec<Vec<u8>> = stale.into_iter().map(|c| c.key).collect();
        keys.sort();
        keys.dedup();
        repair.push(keys);
    }
    (apply, repair)
}

/// The marker of the latest batch (markers' seq grows along a task's history).
pub fn latest(markers: &[Marker]) -> Option<&Marker> {
    markers.iter().max_by_key(|m| m.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, value: &str, batch: &str) -> Entry {
        Entry::Change(Change {
            key: key.into(),
            value: Some(value.into()),
            batch: batch.into(),
        })
    }

    fn marker(batch: &str, seq: u64) -> Entry {
        Entry::Marker(Marker {
            batch: batch.into(),
            seq,
            offsets: BTreeMap::new(),
            stream_time: 0,
        })
    }

    fn keys(changes: &[Change]) -> Vec<&[u8]> {
        changes.iter().map(|c| c.key.as_slice()).collect()
    }

    #[test]
    fn changes_are_released_by_the_marker_that_follows_them() {
        let mut replay = StoreReplay::default();
        assert!(replay.push(change("a", "1", "e:1")).is_empty());
        assert!(replay.push(change("b", "1", "e:1")).is_empty());
        let released = replay.push(marker("e:1", 1));
        assert_eq!(keys(&released), vec![b"a", b"b"]);
        assert!(replay.into_tail().is_empty());
    }

    #[test]
    fn an_unmarked_tail_is_repaired_not_applied() {
        // The owner crashed after writing a's change of batch e:2, before any marker.
        let mut replay = StoreReplay::default();
        replay.push(change("a", "1", "e:1"));
        replay.push(marker("e:1", 1));
        replay.push(change("a", "2", "e:2"));
        let markers = replay.markers.clone();
        let (apply, repair) = resolve_tails(vec![replay.into_tail()], &markers);
        assert!(apply[0].is_empty());
        assert_eq!(repair[0], vec![b"a".to_vec()]);
    }

    #[test]
    fn a_tail_is_applied_when_another_store_has_its_marker() {
        // Crash between the markers of two stores: store 0 got e:2's marker, store 1 did not.
        let mut counts = StoreReplay::default();
        counts.push(change("a", "2", "e:2"));
        counts.push(marker("e:2", 2));
        let mut totals = StoreReplay::default();
        totals.push(change("t", "9", "e:2"));
        let markers: Vec<Marker> = counts
            .markers
            .iter()
            .chain(&totals.markers)
            .cloned()
            .collect();
        let (apply, repair) = resolve_tails(vec![counts.into_tail(), totals.into_tail()], &markers);
        assert_eq!(keys(&apply[1]), vec![b"t"]);
        assert!(repair.iter().all(Vec::is_empty));
        assert_eq!(latest(&markers).unwrap().batch, "e:2");
    }

    #[test]
    fn a_stale_batch_before_a_later_marker_is_released_and_superseded_by_its_repair() {
        // Owner 1 crashed in batch x:5; owner 2 restored, repaired `a` in its first batch y:5.
        let mut replay = StoreReplay::default();
        replay.push(change("a", "stale", "x:5"));
        replay.push(change("a", "repaired", "y:5"));
        let released = replay.push(marker("y:5", 5));
        // Applied in order: the repair wins.
        assert_eq!(
            released.last().unwrap().value.as_deref(),
            Some(&b"repaired"[..])
        );
    }
}
