//! A task: one input partition's state (its RocksDB and the batch in progress), and the
//! consumer's rebalance listener that tells the stream thread which tasks it owns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use tokio_util::sync::CancellationToken;

use super::commit::dead_letter;
use super::context::{Output, ProcessorContext, RecordMeta};
use super::metrics::StreamsStats;
use super::processor::{Processor, StreamsConfig};
use super::state::{Checkpoint, Overlay, StateDb};
use crate::consumer::HandlerError;
use crate::dlq;

pub(super) struct Task {
    pub(super) partition: i32,
    pub(super) db: Arc<StateDb>,
    pub(super) overlay: Overlay,
    pub(super) outputs: Vec<Output>,
    pub(super) checkpoint: Checkpoint,
    pub(super) next_offsets: BTreeMap<String, i64>,
    pub(super) stream_time: i64,
    pub(super) epoch: String,
    pub(super) dirty: bool,
    /// Records polled but not processed yet, per input, taken in time order.
    pub(super) buffers: super::order::Buffers,
}

impl Task {
    /// The processor's view of this task for one record (or one punctuation).
    pub(super) fn context<'a>(
        &'a mut self,
        config: &'a StreamsConfig,
        global: Option<&'a super::global::GlobalTables>,
        meta: RecordMeta,
    ) -> ProcessorContext<'a> {
        ProcessorContext {
            application_id: &config.application_id,
            stores: &config.stores,
            db: &self.db,
            global,
            overlay: &mut self.overlay,
            outputs: &mut self.outputs,
            undo: Vec::new(),
            meta,
            stream_time: self.stream_time,
            emitted: 0,
            late_dropped: 0,
        }
    }
}

/// Tracks which input partitions this member owns (updated inside `poll`).
pub(super) struct GroupContext {
    pub(super) assigned: Arc<Mutex<BTreeSet<i32>>>,
    /// Partitions revoked since the stream thread last looked: their tasks must be reopened
    /// (and caught up from the changelog) even if they were assigned back meanwhile.
    pub(super) revoked: Arc<Mutex<BTreeSet<i32>>>,
    pub(super) application_id: String,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    /// The assignment is tracked from the events themselves (assigned partitions added, revoked
    /// ones removed: right for eager and cooperative protocols alike), not read back with
    /// `consumer.assignment()`: that call waits for the consumer's main thread, which never
    /// answers while the consumer is being dropped — and dropping it serves the final revoke
    /// through this very callback (a stream thread hung on shutdown that way).
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut assigned = self.assigned.lock().expect("assigned lock");
        match rebalance {
            Rebalance::Assign(tpl) => {
                assigned.extend(tpl.elements().iter().map(|e| e.partition()));
            }
            Rebalance::Revoke(tpl) => {
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                for partition in &revoked {
                    assigned.remove(partition);
                }
                self.revoked.lock().expect("revoked lock").extend(revoked);
            }
            Rebalance::Error(err) => {
                tracing::warn!(app = %self.application_id, %err, "rebalance error")
            }
        }
        tracing::info!(app = %self.application_id, partitions = ?*assigned, "assignment changed");
    }
}

/// Processes one record in its task: decode, check its key, hand it to the processor, retry a
/// transient failure with backoff, dead-letter a permanent one. Returns `true` if shutdown
/// interrupted a retry (the record is left unprocessed).
pub(super) fn process_record<P: Processor>(
    config: &StreamsConfig,
    stats: &StreamsStats,
    global: Option<&super::global::GlobalTables>,
    processor: &mut P,
    task: &mut Task,
    message: &OwnedMessage,
    shutdown: &CancellationToken,
) -> bool {
    let partition = message.partition();
    let timestamp = message.timestamp().to_millis();
    task.stream_time = task.stream_time.max(timestamp.unwrap_or(i64::MIN));
    let mut backoff = Duration::from_millis(100);
    // The record's dead letter, if it has one: its kind and reason.
    let rejected = loop {
        let decoded = crate::consumer::decode_with(message, |payload| {
            processor.decode(message.topic(), payload)
        });
        let record = match decoded {
            Ok(record) => record,
            Err(reason) => break Some((dlq::DeadLetterKind::Decode, reason)),
        };
        let key_check = processor
            .key_of(message.topic(), &record.value)
            .map_or(Ok(()), |expected| {
                crate::consumer::check_key(record.key.as_deref(), expected)
            });
        if let Err(reason) = key_check {
            break Some((dlq::DeadLetterKind::Rejected, reason));
        }
        let outputs_before = task.outputs.len();
        let meta = RecordMeta {
            topic: message.topic().to_owned(),
            partition,
            offset: message.offset(),
            timestamp_ms: timestamp,
        };
        let mut ctx = task.context(config, global, meta);
        match processor.process(&mut ctx, record.key.as_deref(), record.value) {
            Ok(()) => {
                stats
                    .late_dropped
                    .fetch_add(ctx.late_dropped, Ordering::Relaxed);
                stats.processed.fetch_add(1, Ordering::Relaxed);
                break None;
            }
            Err(HandlerError::Permanent(reason)) => {
                ctx.rollback(outputs_before);
                break Some((dlq::DeadLetterKind::Rejected, reason));
            }
            Err(HandlerError::Transient(err)) => {
                ctx.rollback(outputs_before);
                tracing::warn!(app = %config.application_id, error = %format!("{err:#}"), retry_in = ?backoff, "processor failed; retrying");
                if shutdown.is_cancelled() {
                    return true;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    if let Some((kind, reason)) = rejected {
        task.outputs
            .push(dead_letter(message, &config.application_id, kind, &reason));
    }
    match task.next_offsets.get_mut(message.topic()) {
        Some(next) => *next = message.offset() + 1,
        None => {
            task.next_offsets
                .insert(message.topic().to_owned(), message.offset() + 1);
        }
    }
    task.dirty = true;
    false
}

/// Calls [`Processor::end_batch`] for a task that processed records in this round, in the
/// coordinates of its last record (its emits are numbered from [`END_BATCH_EMIT_BASE`], so
/// their `event_id`s differ from the record's own and repeat on a re-delivery). A failure undoes
/// the hook's writes and emits; the records themselves stay processed.
pub(super) fn end_batch<P: Processor>(
    config: &StreamsConfig,
    global: Option<&super::global::GlobalTables>,
    processor: &mut P,
    task: &mut Task,
    meta: RecordMeta,
) {
    let outputs_before = task.outputs.len();
    let mut ctx = task.context(config, global, meta);
    ctx.emitted = END_BATCH_EMIT_BASE;
    if let Err(err) = processor.end_batch(&mut ctx) {
        let partition = ctx.partition();
        ctx.rollback(outputs_before);
        tracing::warn!(app = %config.application_id, partition, error = ?err, "end of batch failed");
    }
}

/// The first emit number of [`Processor::end_batch`] (a record's own emits count from 0).
pub const END_BATCH_EMIT_BASE: u32 = 1 << 20;
