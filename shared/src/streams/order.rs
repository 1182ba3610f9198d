//! Time order across a task's inputs, the way Kafka Streams' `PartitionGroup` keeps it: a task
//! buffers what the consumer returned per input partition, and the next record it processes is
//! the buffered one with the smallest timestamp (a tie goes to the input listed first in
//! `StreamsConfig::inputs`). The consumer returns records in fetch order, not time order: a
//! task that handled records as they came would judge a transaction before the threshold change
//! that preceded it, just because that topic's fetch answered first.
//!
//! While one input has nothing buffered, "the earliest" is a guess, so the task waits
//! ([`TaskIdle`]):
//!
//! * for records the broker already has and this consumer has not fetched yet (its position is
//!   behind the partition's end — the last stable offset under `read_committed` — as the last
//!   fetch response reported it): always, up to [`FETCH_WAIT_LIMIT`];
//! * for records not written yet: `TaskIdle::Wait(d)` waits up to `d` from the moment the input
//!   ran dry (Kafka Streams' `max.task.idle.ms`; `Wait(ZERO)`, the default, does not wait).
//!
//! `TaskIdle::Never` processes what is buffered, earliest first, and never waits. Stream time is
//! the largest timestamp processed so far: it never goes back. A record that arrives later than
//! the wait (a producer that sends an earlier event after a later one reached the task) is
//! processed when it arrives, after records with later timestamps: the application sees it as a
//! late record (`ProcessorContext::stream_time` is ahead of its timestamp).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset};

use super::task::GroupContext;

/// How long a task whose other inputs have records waits for an input with none buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskIdle {
    /// Never wait: process what is buffered, earliest first (`max.task.idle.ms = -1`).
    Never,
    /// Wait for records the broker has but this consumer has not fetched yet, and then up to
    /// this long for records not yet written (`max.task.idle.ms`).
    Wait(Duration),
}

impl Default for TaskIdle {
    /// `Wait(0)`, Kafka Streams' default: order what the broker has, never delay a record for
    /// what has not been written. Inputs written with a delay between them (a connector that
    /// polls a database every 50 ms against a service that produces at once) may want the
    /// delay here, paid by every record that arrives while the other input is quiet.
    fn default() -> Self {
        TaskIdle::Wait(Duration::ZERO)
    }
}

/// The longest a task waits for records its consumer has not fetched yet. A fetch answers
/// within `fetch.wait.max.ms` (10 ms for stream threads), so this bounds only a broker that does
/// not answer, or a position that never reaches the reported end.
pub const FETCH_WAIT_LIMIT: Duration = Duration::from_secs(1);

/// What the stream thread knows of an input partition that has nothing buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Not an input of this task (the topic has fewer partitions, or it is not assigned here).
    Absent,
    /// This consumer has read everything the last fetch response reported.
    CaughtUp,
    /// The broker has records this consumer has not fetched yet, or it cannot tell yet.
    Behind,
}

/// The next step for a task.
#[derive(Debug)]
pub enum Next {
    /// Process this record; `enforced` when an input of the task was empty (the order is then
    /// only as good as the wait).
    Record {
        message: OwnedMessage,
        enforced: bool,
    },
    /// Records are buffered, but an empty input is waited for until this instant.
    WaitUntil(Instant),
    /// Nothing buffered.
    Empty,
}

/// One task's buffered input records, per input (in `StreamsConfig::inputs` order).
#[derive(Debug)]
pub struct Buffers {
    queues: Vec<VecDeque<OwnedMessage>>,
    /// Since when each input has had nothing buffered while others had records.
    empty_since: Vec<Option<Instant>>,
    /// Since when each input has been seen `Behind` with nothing buffered.
    behind_since: Vec<Option<Instant>>,
    waiting_since: Option<Instant>,
    /// Time spent waiting, not yet reported to the metrics.
    pub idle: Duration,
}

impl Buffers {
    pub fn new(inputs: usize) -> Self {
        Buffers {
            queues: (0..inputs).map(|_| VecDeque::new()).collect(),
            empty_since: vec![None; inputs],
            behind_since: vec![None; inputs],
            waiting_since: None,
            idle: Duration::ZERO,
        }
    }

    /// Buffers a record of input `input`.
    pub fn push(&mut self, input: usize, message: OwnedMessage) {
        self.queues[input].push_back(message);
        self.empty_since[input] = None;
        self.behind_since[input] = None;
    }

    /// Records buffered over all inputs.
    pub fn len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
    }

    /// The next record to process at `now`, or how long to wait. `input` tells what is known of
    /// an input that has nothing buffered.
    pub fn next(
        &mut self,
        idle: TaskIdle,
        now: Instant,
        mut input: impl FnMut(usize) -> Input,
    ) -> Next {
        let mut earliest: Option<(i64, usize)> = None;
        for (i, queue) in self.queues.iter().enumerate() {
            if let Some(message) = queue.front() {
                let ts = message.timestamp().to_millis().unwrap_or(i64::MIN);
                if earliest.is_none_or(|(t, _)| ts < t) {
                    earliest = Some((ts, i));
                }
            }
        }
        let Some((_, chosen)) = earliest else {
            self.stop_waiting(now);
            return Next::Empty;
        };
        let mut enforced = false;
        let mut wait_until: Option<Instant> = None;
        for i in 0..self.queues.len() {
            if !self.queues[i].is_empty() {
                continue;
            }
            let state = input(i);
            if state == Input::Absent {
                continue;
            }
            enforced = true;
            let TaskIdle::Wait(idle) = idle else {
                continue;
            };
            let empty_since = *self.empty_since[i].get_or_insert(now);
            let deadline = if state == Input::Behind {
                let behind_since = *self.behind_since[i].get_or_insert(now);
                (behind_since + FETCH_WAIT_LIMIT).max(empty_since + idle)
            } else {
                self.behind_since[i] = None;
                empty_since + idle
            };
            if deadline > now {
                wait_until = Some(wait_until.map_or(deadline, |w| w.max(deadline)));
            }
        }
        if let Some(at) = wait_until {
            self.waiting_since.get_or_insert(now);
            return Next::WaitUntil(at);
        }
        self.stop_waiting(now);
        let message = self.queues[chosen]
            .pop_front()
            .expect("chosen queue has a record");
        Next::Record { message, enforced }
    }

    fn stop_waiting(&mut self, now: Instant) {
        if let Some(since) = self.waiting_since.take() {
            self.idle += now.saturating_duration_since(since);
        }
    }
}

/// The stream thread's view of its input partitions, for a task deciding whether to wait for
/// an input with nothing buffered: the assignment, the consumer's positions, and the end each
/// partition had in the last fetch response (librdkafka's cached watermark: the last stable
/// offset under `read_committed`; no request to the broker).
pub(super) struct InputStates<'c> {
    consumer: &'c BaseConsumer<GroupContext>,
    /// (input index, partition) → position (next offset to be returned; `None`: none yet).
    positions: BTreeMap<(usize, i32), Option<i64>>,
    /// What `state` found, per (input index, partition): nothing is polled in between.
    known: BTreeMap<(usize, i32), Input>,
}

impl<'c> InputStates<'c> {
    pub(super) fn read(consumer: &'c BaseConsumer<GroupContext>, inputs: &[String]) -> Self {
        let mut positions = BTreeMap::new();
        if let Ok(tpl) = consumer.position() {
            for element in tpl.elements() {
                if let Some(input) = inputs.iter().position(|t| t == element.topic()) {
                    let offset = match element.offset() {
                        Offset::Offset(offset) => Some(offset),
                        _ => None,
                    };
                    positions.insert((input, element.partition()), offset);
                }
            }
        }
        InputStates {
            consumer,
            positions,
            known: BTreeMap::new(),
        }
    }

    pub(super) fn state(
        &mut self,
        input: usize,
        partition: i32,
        inputs: &[String],
        next_offsets: &BTreeMap<String, i64>,
    ) -> Input {
        if let Some(known) = self.known.get(&(input, partition)) {
            return *known;
        }
        let state = self.find(input, partition, inputs, next_offsets);
        self.known.insert((input, partition), state);
        state
    }

    fn find(
        &self,
        input: usize,
        partition: i32,
        inputs: &[String],
        next_offsets: &BTreeMap<String, i64>,
    ) -> Input {
        let Some(position) = self.positions.get(&(input, partition)) else {
            return Input::Absent;
        };
        let topic = &inputs[input];
        let Some((low, end)) = cached_watermarks(self.consumer, topic, partition) else {
            return Input::Behind;
        };
        if end < 0 {
            return Input::Behind; // no fetch response yet
        }
        match position.or_else(|| next_offsets.get(topic).copied()) {
            Some(position) if position >= end => Input::CaughtUp,
            Some(_) => Input::Behind,
            None if low == end => Input::CaughtUp, // an empty partition
            None => Input::Behind,
        }
    }
}

/// A partition's watermarks as librdkafka last saw them in a fetch response
/// (`rd_kafka_get_watermark_offsets`: no request to the broker; the high one is the last stable
/// offset under `read_committed`), or `None` if librdkafka does not know the partition.
/// rust-rdkafka only wraps `fetch_watermarks`, which asks the broker and blocks.
fn cached_watermarks(
    consumer: &BaseConsumer<GroupContext>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    use rdkafka::bindings::{rd_kafka_get_watermark_offsets, rd_kafka_resp_err_t};
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` is borrowed; `topic` is a
    // NUL-terminated string that outlives the call; librdkafka only writes the two integers.
    let err = unsafe {
        rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then_some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn record(topic: &str, offset: i64, ts: i64) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            topic.to_owned(),
            Timestamp::CreateTime(ts),
            0,
            offset,
            None,
        )
    }

    fn next_record(buffers: &mut Buffers, now: Instant, state: Input) -> Option<(String, i64)> {
        match buffers.next(TaskIdle::default(), now, |_| state) {
            Next::Record { message, .. } => Some((
                message.topic().to_owned(),
                message.timestamp().to_millis().unwrap(),
            )),
            _ => None,
        }
    }

    #[test]
    fn the_earliest_buffered_record_goes_first_and_ties_go_to_the_first_input() {
        let mut buffers = Buffers::new(2);
        for (offset, ts) in [(0, 20), (1, 40), (2, 60)] {
            buffers.push(0, record("a", offset, ts));
        }
        for (offset, ts) in [(0, 10), (1, 40), (2, 50)] {
            buffers.push(1, record("b", offset, ts));
        }
        let now = Instant::now();
        let mut order = Vec::new();
        while let Some(next) = next_record(&mut buffers, now, Input::CaughtUp) {
            order.push(next);
        }
        let order: Vec<(&str, i64)> = order.iter().map(|(t, ts)| (t.as_str(), *ts)).collect();
        assert_eq!(
            order,
            [
                ("b", 10),
                ("a", 20),
                ("a", 40),
                ("b", 40),
                ("b", 50),
                ("a", 60)
            ]
        );
        assert!(buffers.is_empty());
    }

    #[test]
    fn an_input_behind_is_waited_for_up_to_the_fetch_limit() {
        let mut buffers = Buffers::new(2);
        buffers.push(0, record("a", 0, 20));
        let t0 = Instant::now();
        assert!(matches!(
            buffers.next(TaskIdle::default(), t0, |_| Input::Behind),
            Next::WaitUntil(at) if at == t0 + FETCH_WAIT_LIMIT
        ));
        // The record of the other input arrives: it is earlier, so it goes first.
        buffers.push(1, record("b", 0, 10));
        let t1 = t0 + Duration::from_millis(5);
        assert_eq!(
            next_record(&mut buffers, t1, Input::Behind),
            Some(("b".into(), 10))
        );
        assert_eq!(buffers.idle, Duration::from_millis(5));
        // Behind past the limit: processed, marked as enforced.
        let t2 = t1 + Duration::from_millis(1);
        assert!(matches!(
            buffers.next(TaskIdle::default(), t2, |_| Input::Behind),
            Next::WaitUntil(_)
        ));
        match buffers.next(TaskIdle::default(), t2 + FETCH_WAIT_LIMIT, |_| {
            Input::Behind
        }) {
            Next::Record { message, enforced } => {
                assert_eq!(message.topic(), "a");
                assert!(enforced);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_caught_up_input_is_waited_for_the_idle_time_only() {
        let idle = TaskIdle::Wait(Duration::from_millis(50));
        let mut buffers = Buffers::new(2);
        buffers.push(0, record("a", 0, 20));
        let t0 = Instant::now();
        assert!(
            matches!(buffers.next(idle, t0, |_| Input::CaughtUp), Next::WaitUntil(at) if at == t0 + Duration::from_millis(50))
        );
        assert!(matches!(
            buffers.next(idle, t0 + Duration::from_millis(50), |_| Input::CaughtUp),
            Next::Record { enforced: true, .. }
        ));
        // The input stays dry: the wait is not paid again by the next record.
        buffers.push(0, record("a", 1, 30));
        assert!(matches!(
            buffers.next(idle, t0 + Duration::from_millis(60), |_| Input::CaughtUp),
            Next::Record { enforced: true, .. }
        ));
        // Wait(0) and Never do not wait for a caught-up input; Never not even for one behind.
        buffers.push(0, record("a", 2, 40));
        assert!(matches!(
            buffers.next(TaskIdle::default(), Instant::now(), |_| Input::CaughtUp),
            Next::Record { .. }
        ));
        buffers.push(0, record("a", 3, 50));
        assert!(matches!(
            buffers.next(TaskIdle::Never, Instant::now(), |_| Input::Behind),
            Next::Record { enforced: true, .. }
        ));
    }

    #[test]
    fn an_input_that_is_not_the_tasks_is_not_waited_for() {
        let mut buffers = Buffers::new(3);
        buffers.push(1, record("b", 0, 20));
        let state = |i| {
            if i == 1 {
                Input::CaughtUp
            } else {
                Input::Absent
            }
        };
        match buffers.next(
            TaskIdle::Wait(Duration::from_secs(60)),
            Instant::now(),
            state,
        ) {
            Next::Record { enforced, .. } => assert!(!enforced),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            buffers.next(TaskIdle::default(), Instant::now(), state),
            Next::Empty
        ));
    }
}
