//! The forwarder's way into Kafka: a bounded number of lines in flight, each enqueued in the
//! order it was read and acknowledged before anything that depends on it (a read position)
//! moves.
//!
//! A source takes a **permit** ([`Shipper::acquire`]) before it ships a line; the permit
//! travels with the line's acknowledgement and is released when the broker acknowledged it.
//! With every permit taken, a file tailer or a TCP connection waits — stops reading, so the
//! sender's socket buffer fills and TCP pushes back — and a UDP datagram is dropped and counted
//! ([`Shipper::try_acquire`]): there is no other queue.
//!
//! **Acknowledgements** go, in the order the lines were shipped, to an [`acker`] task: one per
//! file (its read position follows them) and one for the network sources. A line's delivery is
//! awaited in that order — they arrive in that order anyway: one source's lines share a key, so a
//! partition, and the idempotent producer keeps their order.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use shared::producer::{Delivery, ProduceError};
use shared::{EventProducer, Kafka};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::Stats;
use super::positions::{Checkpoint, FileId, Positions};

/// librdkafka's local queue (`queue.buffering.max.messages`); the in-flight bound must stay
/// below it, so the queue itself never overflows.
pub const PRODUCER_QUEUE: usize = 100_000;

type DeliveryFuture = Pin<Box<dyn Future<Output = Result<Delivery, ProduceError>> + Send>>;

/// A shipped line: its acknowledgement to await and the permit it holds until then.
pub struct InFlight {
    delivery: DeliveryFuture,
    _permit: OwnedSemaphorePermit,
}

/// What an [`acker`] gets, in shipping order.
pub enum Ack {
    /// A line; for a file, the position after it (stored once it is acknowledged).
    Line {
        in_flight: InFlight,
        checkpoint: Option<Checkpoint>,
    },
    /// A position to store once every line before it is acknowledged (a file opened at 0, a
    /// truncation).
    Mark(Checkpoint),
    /// A rotated file closed after its last line: forget its position once that line is
    /// acknowledged.
    Forget(FileId),
}

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// librdkafka's queue is full (by bytes): wait a moment and ship again.
    #[error("the producer's queue is full")]
    Full,
    #[error(transparent)]
    Fatal(ProduceError),
}

/// Ships lines to `application_logs`.
#[derive(Clone)]
pub struct Shipper {
    producer: EventProducer,
    topic: Arc<str>,
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    stats: Arc<Stats>,
}

impl Shipper {
    pub fn new(
        kafka: &Kafka,
        topic: String,
        max_in_flight: usize,
        stats: Arc<Stats>,
    ) -> anyhow::Result<Shipper> {
        let queue = PRODUCER_QUEUE.to_string();
        let producer = EventProducer::with_properties(
            kafka,
            &[
                // Retry until the broker takes it: while it is away, lines wait here (bounded
                // by the permits), not dropped after librdkafka's default 5 minutes.
                ("message.timeout.ms", "0"),
                ("queue.buffering.max.messages", &queue),
                // Larger batches than the services' 5 ms: a forwarder is about throughput.
                ("linger.ms", "20"),
            ],
        )?;
        Ok(Shipper {
            producer,
            topic: topic.into(),
            permits: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            stats,
        })
    }

    /// A permit to ship one line: waits while `max_in_flight` lines are unacknowledged; `None`
    /// once `stop` is cancelled.
    pub async fn acquire(&self, stop: &CancellationToken) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            permit = Arc::clone(&self.permits).acquire_owned() => permit.ok(),
        }
    }

    /// A permit if one is free now (UDP: a datagram cannot wait).
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }

    /// Lines shipped and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.permits.available_permits()
    }

    /// Enqueues `line` under `key` now (so lines keep the order of the calls).
    pub fn ship(
        &self,
        key: &str,
        line: &[u8],
        permit: OwnedSemaphorePermit,
    ) -> Result<InFlight, (ShipError, OwnedSemaphorePermit)> {
        let now = chrono::Utc::now().timestamp_millis();
        match self
            .producer
            .enqueue(&self.topic, Some(key.as_bytes()), Some(line), Some(now))
        {
            Ok(delivery) => Ok(InFlight {
                delivery: Box::pin(delivery),
                _permit: permit,
            }),
            Err(ProduceError::Kafka { source, .. })
                if source.rdkafka_error_code()
                    == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
            {
                Err((ShipError::Full, permit))
            }
            Err(err) => Err((ShipError::Fatal(err), permit)),
        }
    }

    /// [`Shipper::ship`], waiting (asynchronously) while librdkafka's queue is full.
    pub async fn ship_async(
        &self,
        key: &str,
        line: &[u8],
        mut permit: OwnedSemaphorePermit,
    ) -> Result<InFlight, ProduceError> {
        loop {
            match self.ship(key, line, permit) {
                Ok(in_flight) => return Ok(in_flight),
                Err((ShipError::Full, back)) => {
                    permit = back;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err((ShipError::Fatal(err), _)) => return Err(err),
            }
        }
    }

    /// [`Shipper::ship`], waiting (blocking the thread) while librdkafka's queue is full.
    pub fn ship_blocking(
        &self,
        key: &str,
        line: &[u8],
        mut permit: OwnedSemaphorePermit,
    ) -> Result<InFlight, ProduceError> {
        loop {
            match self.ship(key, line, permit) {
                Ok(in_flight) => return Ok(in_flight),
                Err((ShipError::Full, back)) => {
                    permit = back;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err((ShipError::Fatal(err), _)) => return Err(err),
            }
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// The first failure of the forwarder: it stops everything, and `join` returns it.
#[derive(Clone, Default)]
pub struct Failure(Arc<Mutex<Option<String>>>);

impl Failure {
    /// Records `reason` (the first one wins) and stops the forwarder.
    pub fn set(&self, reason: String, stop: &CancellationToken) {
        tracing::error!(%reason, "forwarder failed: stopping");
        self.0.lock().expect("failure lock").get_or_insert(reason);
        stop.cancel();
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().expect("failure lock").clone()
    }
}

/// Awaits every acknowledgement of `acks` in order; stores a file's position once every line up
/// to it is acknowledged. After a delivery failure (the producer retries forever, so only a
/// permanent error: the topic is gone, the record refused) it stops the forwarder and moves no
/// position past the failed line; it still awaits the rest, to release their permits.
pub async fn acker(
    mut acks: mpsc::Receiver<Ack>,
    positions: Arc<Positions>,
    stats: Arc<Stats>,
    failure: Failure,
    stop: CancellationToken,
) {
    let mut failed = false;
    while let Some(ack) = acks.recv().await {
        match ack {
            Ack::Line {
                in_flight,
                checkpoint,
            } => match in_flight.delivery.await {
                Ok(_) => {
                    stats.acknowledged.fetch_add(1, Ordering::Relaxed);
                    super::metrics().acknowledged.inc();
                    if let Some(checkpoint) = checkpoint
                        && !failed
                    {
                        positions.set(checkpoint);
                    }
                }
                Err(err) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    if !failed {
                        failed = true;
                        let at = checkpoint.map_or_else(String::new, |c| {
                            format!(" (the line ending at byte {} of {})", c.offset, c.path)
                        });
                        failure.set(format!("a line was not delivered{at}: {err}"), &stop);
                    }
                }
            },
            Ack::Mark(checkpoint) if !failed => positions.set(checkpoint),
            Ack::Forget(id) if !failed => positions.forget(id),
            Ack::Mark(_) | Ack::Forget(_) => {}
        }
    }
}
