//! The commit of a batch, with the changelog protocol of [`super::changelog`]: outputs and
//! changelog records, then markers, then state and checkpoint, then input offsets — or all of it
//! in one Kafka transaction under exactly_once_v2 (see [`super::guarantee`]). The producer's
//! delivery reports ([`AckContext`]) and how records are sent live here too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use rocksdb::WriteBatch;

use super::app::{FLUSH_TIMEOUT, Runtime};
use super::changelog::{BATCH_HEADER, MARKER_KEY, Marker};
use super::context::Output;
use super::guarantee::Guarantee;
use super::state::Checkpoint;
use crate::dlq;

/// Delivery reports: errors, and the offsets of marker records (opaque = marker slot + 1).
#[derive(Default)]
pub(super) struct AckContext {
    errors: Mutex<Vec<String>>,
    markers: Mutex<HashMap<usize, i64>>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        match result {
            Ok(message) => {
                if slot > 0 {
                    self.markers
                        .lock()
                        .expect("markers lock")
                        .insert(slot - 1, message.offset());
                }
            }
            Err((err, message)) => {
                self.errors
                    .lock()
                    .expect("errors lock")
                    .push(format!("{}: {err}", message.topic()));
            }
        }
    }
}

impl Runtime {
    /// Commits every dirty task: outputs + changelog → markers → RocksDB → input offsets.
    pub(super) fn commit(&mut self) -> anyhow::Result<()> {
        let dirty: Vec<i32> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.dirty)
            .map(|(p, _)| *p)
            .collect();
        if dirty.is_empty() {
            return Ok(());
        }
        let transactional = self.config.guarantee == Guarantee::ExactlyOnce;
        if transactional {
            self.producer
                .begin_transaction()
                .context("cannot begin a transaction")?;
        }
        let started = Instant::now();
        let marker_offsets = match self.produce_batch(&dirty) {
            Ok(offsets) => offsets,
            Err(err) if transactional => return self.abort_batch(&dirty, err),
            Err(err) => return Err(err),
        };
        if transactional {
            // 4 before 3: the input offsets commit with the outputs; state is written locally only
            // once the transaction committed (a crash in between: restore replays the markers).
            let committed = self
                .consumer
                .group_metadata()
                .context("no consumer group metadata")
                .and_then(|group| {
                    self.producer
                        .send_offsets_to_transaction(
                            &self.input_offsets(&dirty)?,
                            &group,
                            FLUSH_TIMEOUT,
                        )
                        .context("cannot add the input offsets to the transaction")
                })
                .and_then(|()| {
                    self.producer
                        .commit_transaction(FLUSH_TIMEOUT)
                        .context("cannot commit the transaction")
                });
            if let Err(err) = committed {
                return self.abort_batch(&dirty, err);
            }
        }

        // 3. State and checkpoint, atomically.
        let produced = started.elapsed();
        let offsets = self.input_offsets(&dirty)?;
        self.write_state(&dirty, &marker_offsets.0, &marker_offsets.1)?;
        tracing::trace!(app = %self.config.application_id, tasks = dirty.len(), ?produced, state = ?(started.elapsed() - produced), "commit");
        self.reader.changed.notify_waiters();
        self.stats.batches.fetch_add(1, Ordering::Relaxed);

        // 4. Input offsets (async: a lost commit only means records are skipped on reprocessing).
        if !transactional && let Err(err) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::warn!(app = %self.config.application_id, %err, "offset commit failed");
        }
        Ok(())
    }

    /// The next input offset of every dirty task, to commit.
    fn input_offsets(&self, dirty: &[i32]) -> anyhow::Result<TopicPartitionList> {
        let mut offsets = TopicPartitionList::new();
        for partition in dirty {
            for (topic, offset) in &self.tasks[partition].next_offsets {
                offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
            }
        }
        Ok(offsets)
    }

    /// Steps 1 and 2 of the commit: every dirty task's outputs and changelog records, all
    /// acknowledged, then a marker to every store's changelog. Returns the marker slots
    /// `(partition, store)` and the offset each marker got.
    #[allow(clippy::type_complexity)]
    fn produce_batch(
        &mut self,
        dirty: &[i32],
    ) -> anyhow::Result<(Vec<(i32, String)>, HashMap<usize, i64>)> {
        // 1. Outputs and changelog records, all acknowledged.
        let started = Instant::now();
        for partition in dirty {
            let task = &self.tasks[partition];
            let batch = format!("{}:{}", task.epoch, task.checkpoint.seq + 1);
            for output in &task.outputs {
                let mut headers = OwnedHeaders::new();
                for (k, v) in &output.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v.as_slice()),
                    });
                }
                let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&output.topic, 0)
                    .headers(headers);
                if let Some(key) = &output.key {
                    record = record.key(key);
                }
                if let Some(payload) = &output.payload {
                    record = record.payload(payload);
                }
                if let Some(ts) = output.timestamp_ms {
                    record = record.timestamp(ts);
                }
                send(&self.producer, record)?;
            }
            for (index, writes) in task.overlay.iter().enumerate() {
                let topic = self.config.changelog(&self.config.stores[index]);
                for (key, value) in writes {
                    let headers = OwnedHeaders::new().insert(Header {
                        key: BATCH_HEADER,
                        value: Some(batch.as_str()),
                    });
                    let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&topic, 0)
                        .partition(task.partition)
                        .key(key.as_slice())
                        .headers(headers);
                    if let Some(value) = value {
                        record = record.payload(value.as_slice());
                    }
                    send(&self.producer, record)?;
                }
            }
        }
        self.flush_acknowledged()?;
        tracing::trace!(app = %self.config.application_id, acknowledged = ?started.elapsed(), "outputs and changelog");

        // 2. Markers, to every store's changelog; their offsets become the new positions.
        self.producer
            .context()
            .markers
            .lock()
            .expect("markers lock")
            .clear();
        let mut slots = Vec::new();
        for partition in dirty {
            let task = &self.tasks[partition];
            let marker = Marker {
                batch: format!("{}:{}", task.epoch, task.checkpoint.seq + 1),
                seq: task.checkpoint.seq + 1,
                offsets: task.next_offsets.clone(),
                stream_time: task.stream_time,
            };
            let value = serde_json::to_vec(&marker)?;
            for store in &self.config.stores {
                let topic = self.config.changelog(store);
                let slot = slots.len();
                slots.push((*partition, store.clone()));
                let record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&topic, slot + 1)
                    .partition(task.partition)
                    .key(MARKER_KEY)
                    .payload(value.as_slice());
                send(&self.producer, record)?;
            }
        }
        self.flush_acknowledged()?;
        let marker_offsets = std::mem::take(
            &mut *self
                .producer
                .context()
                .markers
                .lock()
                .expect("markers lock"),
        );
        Ok((slots, marker_offsets))
    }

    /// Step 3 of the commit: each dirty task's state and checkpoint in one RocksDB write batch.
    fn write_state(
        &mut self,
        dirty: &[i32],
        slots: &[(i32, String)],
        marker_offsets: &HashMap<usize, i64>,
    ) -> anyhow::Result<()> {
        for partition in dirty {
            let task = self.tasks.get_mut(partition).expect("dirty task");
            let mut checkpoint = Checkpoint {
                batch: format!("{}:{}", task.epoch, task.checkpoint.seq + 1),
                seq: task.checkpoint.seq + 1,
                offsets: task.next_offsets.clone(),
                stream_time: task.stream_time,
                positions: task.checkpoint.positions.clone(),
            };
            for (slot, (p, store)) in slots.iter().enumerate() {
                if p == partition {
                    let offset = marker_offsets
                        .get(&slot)
                        .copied()
                        .context("marker delivered without an offset")?;
                    checkpoint.positions.insert(store.clone(), offset);
                }
            }
            let mut batch = WriteBatch::default();
            task.db.stage(&mut batch, &task.overlay);
            task.db.commit(batch, &checkpoint)?;
            let written = task.overlay.iter().map(|writes| writes.len() as u64).sum();
            self.stats
                .changelog_records
                .fetch_add(written, Ordering::Relaxed);
            for writes in &mut task.overlay {
                writes.clear();
            }
            for letter in task.outputs.iter().filter_map(|o| o.dead_letter.as_ref()) {
                letter.acknowledged();
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            task.outputs.clear();
            task.checkpoint = checkpoint;
            task.dirty = false;
        }
        Ok(())
    }

    /// A transaction failed: abort it and forget the batch. The dirty tasks close without
    /// writing their state; the consumer goes back to their checkpoints, and the tasks reopen
    /// (and catch up from their changelogs, which never show aborted records) in the next loop.
    /// A fatal error — this instance was fenced by a newer one with its transactional id —
    /// stops the stream thread.
    fn abort_batch(&mut self, dirty: &[i32], err: anyhow::Error) -> anyhow::Result<()> {
        let fatal = err.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<KafkaError>(),
                Some(KafkaError::Transaction(e)) if e.is_fatal()
            )
        });
        if fatal {
            return Err(err.context("the transactional producer failed for good (fenced?)"));
        }
        tracing::warn!(app = %self.config.application_id, err = format!("{err:#}"), "transaction failed: aborting it and re-processing the batch");
        self.producer
            .abort_transaction(FLUSH_TIMEOUT)
            .context("cannot abort the transaction")?;
        let _ = std::mem::take(&mut *self.producer.context().errors.lock().expect("errors lock"));
        let mut rewind = TopicPartitionList::new();
        for partition in dirty {
            let Some(task) = self.tasks.remove(partition) else {
                continue;
            };
            self.reader.close(*partition);
            for topic in &self.config.inputs {
                let offset = task
                    .checkpoint
                    .offsets
                    .get(topic)
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                rewind.add_partition_offset(topic, *partition, offset)?;
            }
        }
        self.consumer
            .seek_partitions(rewind, Duration::from_secs(10))
            .context("cannot rewind the consumer after an aborted transaction")?;
        Ok(())
    }

    fn flush_acknowledged(&self) -> anyhow::Result<()> {
        // Not `Producer::flush`: rust-rdkafka's flush polls in 100 ms steps that always run to
        // the end, which would put 200 ms into every commit. Trigger sending, then sleep until
        // delivery reports arrive ([`super::delivery`]) and serve them, until none is missing.
        let _ = self.producer.flush(Duration::ZERO);
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        loop {
            // Serve what has arrived: a zero-timeout poll serves one event (one delivery report
            // covers many records), and the count falls as reports are served.
            let mut in_flight = self.producer.in_flight_count();
            while in_flight > 0 {
                self.producer.poll(Duration::ZERO);
                let now = self.producer.in_flight_count();
                if now >= in_flight {
                    break;
                }
                in_flight = now;
            }
            if in_flight == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("records not acknowledged within {FLUSH_TIMEOUT:?}");
            }
            // Sleep until librdkafka queues an event (the 1 ms bound covers an event that
            // arrived behind one that was not a delivery report: no new wake-up for it).
            self.delivery.wait(Duration::from_millis(1));
        }
        let errors =
            std::mem::take(&mut *self.producer.context().errors.lock().expect("errors lock"));
        if !errors.is_empty() {
            // Nothing of this batch is committed: restarting re-processes it (at-least-once).
            bail!(
                "{} records were not delivered, e.g. {}",
                errors.len(),
                errors[0]
            );
        }
        Ok(())
    }
}

/// Sends a record, waiting for room when the local queue is full.
pub(super) fn send(
    producer: &BaseProducer<AckContext>,
    mut record: BaseRecord<'_, [u8], [u8], usize>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                // Serve delivery reports to make room (this thread is the producer's poller).
                producer.poll(Duration::from_millis(5));
            }
            Err((err, _)) => return Err(err.into()),
        }
    }
}

/// A dead letter as an output of the batch: acknowledged before the input offset is committed,
/// and counted ([`dlq::Letter::acknowledged`]) when the batch's state is written.
pub(super) fn dead_letter(
    message: &OwnedMessage,
    application: &str,
    kind: dlq::DeadLetterKind,
    reason: &str,
) -> Output {
    let letter = dlq::Letter::new(message, application, kind, reason);
    Output {
        topic: letter.topic.clone(),
        key: letter.key.clone(),
        payload: letter.payload.clone(),
        headers: letter.headers.clone(),
        timestamp_ms: letter.timestamp_ms,
        dead_letter: Some(letter),
    }
}
