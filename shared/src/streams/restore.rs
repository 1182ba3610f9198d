//! Restore: opening tasks and bringing their RocksDBs up to date with their changelogs, following
//! the changelog protocol of [`super::changelog`] (markers, unmarked tails, repairs).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use rocksdb::WriteBatch;

use super::changelog::{self, BATCH_HEADER, Change, Entry, MARKER_KEY, Marker, StoreReplay};
use super::metrics::StreamsStats;
use super::processor::StreamsConfig;
use super::state::{Overlay, StateDb};
use super::task::Task;

/// Opens the tasks of `partitions`, brings their RocksDBs up to date with their changelogs
/// and returns them. One restore for all of them (every task's changelog partitions are
/// assigned at once), so fetching one task's changelog overlaps with applying another's.
pub(super) fn restore_tasks(
    config: &StreamsConfig,
    restorer: &BaseConsumer,
    stats: &StreamsStats,
    partitions: &[i32],
) -> anyhow::Result<Vec<Task>> {
    let started = Instant::now();
    let stores = config.stores.len();
    // Opening a RocksDB writes and syncs a few files (~7 ms here): open them side by side.
    let dbs: Vec<anyhow::Result<StateDb>> = std::thread::scope(|scope| {
        let opening: Vec<_> = partitions
            .iter()
            .map(|partition| {
                let path = config.state_dir.join(partition.to_string());
                let stores = &config.stores;
                scope.spawn(move || StateDb::open(&path, stores))
            })
            .collect();
        opening
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| bail!("opening a state store panicked"))
            })
            .collect()
    });
    let mut opening = Vec::with_capacity(partitions.len());
    let mut sources = Vec::with_capacity(partitions.len() * stores);
    for (&partition, db) in partitions.iter().zip(dbs) {
        let db = db?;
        let local = db.checkpoint()?.unwrap_or_default();
        for store in &config.stores {
            sources.push(ChangelogSource {
                topic: config.changelog(store),
                partition,
                start: local.positions.get(store).map_or(0, |p| p + 1),
            });
        }
        opening.push((partition, db, local));
    }
    // Source `i` is store `i % stores` of task `i / stores`.
    let mut replays: Vec<StoreReplay> = sources.iter().map(|_| StoreReplay::default()).collect();
    let mut latest: Vec<LatestValues> = sources.iter().map(|_| LatestValues::default()).collect();
    let mut restored = vec![0u64; partitions.len()];
    let mut held = 0usize;
    let ends = read_changelogs(
        restorer,
        &sources,
        &stats.restore_remaining,
        |source, entry| {
            for change in replays[source].push(entry) {
                held += latest[source].insert(change);
                restored[source / stores] += 1;
            }
            if held >= LatestValues::CHUNK_BYTES {
                for (index, values) in latest.iter_mut().enumerate() {
                    values.write(&opening[index / stores].1, index % stores)?;
                }
                held = 0;
            }
            Ok(())
        },
    )?;

    let mut replays = replays.into_iter();
    let mut tasks = Vec::with_capacity(partitions.len());
    for (task, (partition, db, local)) in opening.into_iter().enumerate() {
        let mut markers: Vec<Marker> = Vec::new();
        let mut tails = Vec::with_capacity(stores);
        for index in 0..stores {
            let source = task * stores + index;
            latest[source].write(&db, index)?;
            let replay = replays.next().expect("one replay per source");
            markers.extend(replay.markers.iter().cloned());
            tails.push(replay.into_tail());
        }
        let (apply, repair) = changelog::resolve_tails(tails, &markers);
        let mut batch = WriteBatch::default();
        for (index, changes) in apply.iter().enumerate() {
            for change in changes {
                db.stage_one(&mut batch, index, &change.key, change.value.as_deref());
                restored[task] += 1;
            }
        }
        let mut checkpoint = local.clone();
        if let Some(latest) = changelog::latest(&markers).filter(|m| m.seq > local.seq) {
            checkpoint.batch = latest.batch.clone();
            checkpoint.seq = latest.seq;
            checkpoint.offsets = latest.offsets.clone();
            checkpoint.stream_time = latest.stream_time;
        }
        for (index, store) in config.stores.iter().enumerate() {
            let end = ends[task * stores + index];
            if end > 0 {
                checkpoint.positions.insert(store.clone(), end - 1);
            }
        }
        db.commit(batch, &checkpoint)?;

        // Keys whose last changelog record belongs to a batch that never completed: write
        // their real value again in the next batch, so compaction keeps the right one.
        let mut overlay: Overlay = vec![BTreeMap::new(); stores];
        let mut repairs = 0;
        for (index, keys) in repair.into_iter().enumerate() {
            for key in keys {
                let value = db.get(index, &key)?;
                overlay[index].insert(key, value);
                repairs += 1;
            }
        }
        stats.restored.fetch_add(restored[task], Ordering::Relaxed);
        tracing::info!(
            app = %config.application_id, partition, restored = restored[task], repairs,
            seq = checkpoint.seq, elapsed = ?started.elapsed(), "task opened"
        );
        tasks.push(Task {
            partition,
            db: Arc::new(db),
            overlay,
            outputs: Vec::new(),
            next_offsets: checkpoint.offsets.clone(),
            stream_time: checkpoint.stream_time,
            checkpoint,
            epoch: format!("{:016x}", rand::random::<u64>()),
            dirty: repairs > 0,
            buffers: super::order::Buffers::new(config.inputs.len()),
        });
    }
    stats
        .restore_micros
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    Ok(tasks)
}

/// The latest restored value per key of one store, written to RocksDB in chunks. Until
/// compaction catches up, a changelog holds every update of a key, and only the last one is
/// state: keeping just that one saves RocksDB most of a restore's writes.
#[derive(Default)]
struct LatestValues {
    values: foldhash::HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl LatestValues {
    /// Bounds the memory a restore holds before writing (keys and values as read, over all
    /// the changelogs it reads).
    const CHUNK_BYTES: usize = 32 << 20;

    /// Holds `change`; returns the bytes it added.
    fn insert(&mut self, change: Change) -> usize {
        let bytes = change.key.len() + change.value.as_ref().map_or(0, Vec::len);
        self.values.insert(change.key, change.value);
        bytes
    }

    /// Writes what is held (order between keys does not matter: each key appears once).
    fn write(&mut self, db: &StateDb, store: usize) -> anyhow::Result<()> {
        if self.values.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (key, value) in self.values.drain() {
            db.stage_one(&mut batch, store, &key, value.as_deref());
        }
        db.write(batch)
    }
}

/// One changelog partition a restore reads, from `start`.
struct ChangelogSource {
    topic: String,
    partition: i32,
    start: i64,
}

/// Where the restore of one [`ChangelogSource`] stands.
struct SourceProgress {
    /// The end offset (high watermark) when the restore began: it reads up to there.
    high: i64,
    expected: i64,
    seen: i64,
    /// The record at `high - 1` was read: what follows is only what is already queued.
    draining: bool,
    done: bool,
}

/// Reads every source from its start to its current end with one assignment, calling
/// `on_entry(source index, entry)` for each record (in offset order within a source). Returns
/// each source's end offset (high watermark) read up to.
fn read_changelogs(
    restorer: &BaseConsumer,
    sources: &[ChangelogSource],
    remaining: &prometheus_client::metrics::gauge::Gauge,
    mut on_entry: impl FnMut(usize, Entry) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<i64>> {
    let mut progress = Vec::with_capacity(sources.len());
    let mut tpl = TopicPartitionList::new();
    let mut index: HashMap<(&str, i32), usize> = HashMap::new();
    for (i, source) in sources.iter().enumerate() {
        let (topic, partition) = (source.topic.as_str(), source.partition);
        let (low, high) =
            crate::kafka::watermarks(restorer, topic, partition, Duration::from_secs(30))
                .with_context(|| format!("offsets of changelog {topic}[{partition}]"))?;
        let start = source.start.max(low);
        let done = start >= high;
        if !done {
            tracing::debug!(topic, partition, records = high - start, "restoring");
            remaining.inc_by(high - start);
            tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
            index.insert((topic, partition), i);
        }
        progress.push(SourceProgress {
            high,
            expected: (high - start).max(0),
            seen: 0,
            draining: false,
            done,
        });
    }
    let ends = progress.iter().map(|p| p.high).collect();
    if index.is_empty() {
        return Ok(ends);
    }
    restorer.assign(&tpl)?;
    let mut last_progress = Instant::now();
    let mut last_batch = None;
    let mut last: Option<usize> = None; // the source of the previous record
    let mut undrained = index.len(); // sources still short of their end
    loop {
        // Past the reported end, keep taking what is already queued: some brokers (tansu 0.6)
        // report the end of a multi-record batch as its base offset + 1. The rest of that batch
        // came in the same fetch response as the record at the reported end, so it is queued
        // already: a short wait finds it (waiting 10 ms per task and store was ~15 % of a
        // whole restore).
        let wait = if undrained == 0 {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(500)
        };
        match restorer.poll(wait) {
            Some(Ok(message)) => {
                // Consecutive records mostly come from one partition: skip the lookup then.
                let source = match last {
                    Some(source)
                        if sources[source].partition == message.partition()
                            && sources[source].topic == message.topic() =>
                    {
                        source
                    }
                    _ => match index.get(&(message.topic(), message.partition())) {
                        Some(&source) => source,
                        None => continue, // left over from a previous assignment
                    },
                };
                last = Some(source);
                let p = &mut progress[source];
                last_progress = Instant::now();
                if p.seen < p.expected {
                    remaining.dec();
                }
                p.seen += 1;
                if !p.draining && message.offset() >= p.high - 1 {
                    p.draining = true;
                    undrained -= 1;
                }
                on_entry(source, parse_entry(&message, &mut last_batch)?)?;
            }
            Some(Err(err)) => tracing::warn!(%err, "restore consumer error"),
            None => {
                let positions = restorer.position()?;
                for (source, p) in sources.iter().zip(&mut progress) {
                    if p.done {
                        continue;
                    }
                    let position = positions
                        .find_partition(&source.topic, source.partition)
                        .and_then(|e| e.offset().to_raw())
                        .unwrap_or(-1);
                    if p.draining || position >= p.high {
                        undrained -= usize::from(!p.draining);
                        p.done = true;
                    }
                }
                if progress.iter().all(|p| p.done) {
                    break;
                }
                if last_progress.elapsed() > Duration::from_secs(60) {
                    let (source, p) = sources
                        .iter()
                        .zip(&progress)
                        .find(|(_, p)| !p.done)
                        .expect("a source is not done");
                    bail!(
                        "restore of {}[{}] stalled after {} of {} records",
                        source.topic,
                        source.partition,
                        p.seen,
                        p.expected
                    );
                }
            }
        }
    }
    for p in &progress {
        remaining.dec_by((p.expected - p.seen).max(0)); // compacted-away offsets
    }
    restorer.unassign()?;
    Ok(ends)
}

/// One changelog record as an [`Entry`]. `last_batch` is the batch id of the previous change:
/// consecutive records almost always share it, so it is allocated once per batch, not per record.
fn parse_entry(
    message: &BorrowedMessage<'_>,
    last_batch: &mut Option<Arc<str>>,
) -> anyhow::Result<Entry> {
    let key = message.key().unwrap_or_default();
    if key == MARKER_KEY {
        let marker = serde_json::from_slice(message.payload().unwrap_or_default())
            .context("corrupt marker")?;
        return Ok(Entry::Marker(marker));
    }
    let header = message.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == BATCH_HEADER)
            .and_then(|h| h.value)
    });
    let header = header.map_or(std::borrow::Cow::Borrowed(""), String::from_utf8_lossy);
    let batch = match last_batch {
        Some(batch) if **batch == *header => Arc::clone(batch),
        _ => Arc::clone(last_batch.insert(Arc::from(&*header))),
    };
    Ok(Entry::Change(Change {
        key: key.to_vec(),
        value: message.payload().map(<[u8]>::to_vec),
        batch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, value: Option<&str>) -> Change {
        Change {
            key: key.into(),
            value: value.map(Into::into),
            batch: Arc::from("e:1"),
        }
    }

    #[test]
    fn restore_writes_the_last_value_of_each_key_deletions_included() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path(), &["s".to_owned()]).unwrap();
        db.write({
            let mut batch = WriteBatch::default();
            db.stage_one(&mut batch, 0, b"gone", Some(b"old"));
            batch
        })
        .unwrap();
        let mut latest = LatestValues::default();
        let mut held = 0;
        for c in [
            change("a", Some("1")),
            change("b", Some("1")),
            change("a", Some("2")),
            change("gone", None),
            change("b", Some("3")),
        ] {
            held += latest.insert(c);
        }
        // Key + value bytes of each change read ("gone" has no value).
        assert_eq!(held, 2 + 2 + 2 + 4 + 2);
        latest.write(&db, 0).unwrap();
        assert_eq!(db.get(0, b"a").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(db.get(0, b"b").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(db.get(0, b"gone").unwrap(), None);
        assert!(latest.values.is_empty(), "written and emptied");
    }
}
