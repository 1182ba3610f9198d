//! A task: one input partition's state (its RocksDB and the batch in progress), and the
//! consumer's rebalance listener that tells the stream thread which tasks it owns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};

use super::context::{Output, ProcessorContext, RecordMeta};
use super::processor::StreamsConfig;
use super::state::{Checkpoint, Overlay, StateDb};

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
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions: BTreeSet<i32> = consumer
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        match rebalance {
            Rebalance::Revoke(tpl) => self
                .revoked
                .lock()
                .expect("revoked lock")
                .extend(tpl.elements().iter().map(|e| e.partition())),
            Rebalance::Error(err) => {
                tracing::warn!(app = %self.application_id, %err, "rebalance error")
            }
            Rebalance::Assign(_) => {}
        }
        tracing::info!(app = %self.application_id, ?partitions, "assignment changed");
        *self.assigned.lock().expect("assigned lock") = partitions;
    }
}
