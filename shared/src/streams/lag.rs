//! Consumer lag: the stream thread publishes each open task's next input offsets, and a thread
//! of its own turns them into the lag gauge.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;

use super::app::Runtime;
use super::metrics::StreamsStats;

impl Runtime {
    /// Updates the lag gauge: log end minus next offset, over this instance's partitions.
    ///
    /// From the end offsets librdkafka caches from fetch responses, not a ListOffsets request
    /// per partition: those block the stream thread (on tansu 0.6 for up to the timeout each,
    /// i.e. a minute per refresh for 64 partitions).
    pub(super) fn refresh_lag(&self) {
        let mut positions = Vec::new();
        for task in self.tasks.values() {
            for topic in &self.config.inputs {
                let next = task.next_offsets.get(topic).copied().unwrap_or(0);
                positions.push((topic.clone(), task.partition, next));
            }
        }
        *self.positions.lock().expect("positions lock") = positions;
    }
}

/// Every 5 s: log end offset minus next offset over the published positions (the lag gauge).
/// On its own thread because every ListOffsets request blocks for a round trip — on tansu 0.6
/// for up to the timeout — which would stall processing.
pub(super) fn lag_loop(
    client: &BaseConsumer,
    positions: &Mutex<Vec<(String, i32, i64)>>,
    stats: &StreamsStats,
    shutdown: &CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let snapshot = positions.lock().expect("positions lock").clone();
        let mut lag = 0i64;
        for (topic, partition, next) in snapshot {
            if shutdown.is_cancelled() {
                return;
            }
            if let Ok((_, high)) =
                client.fetch_watermarks(&topic, partition, Duration::from_secs(1))
            {
                lag += (high - next).max(0); // clamped: tansu under-reports the end
            }
        }
        stats.lag.set(lag);
        for _ in 0..50 {
            if shutdown.is_cancelled() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
