//! Waiting for the producer's delivery reports without spinning. A commit waits for every record
//! it produced to be acknowledged; rust-rdkafka's `BaseProducer::poll(d)` always runs until `d`
//! has passed, and once less than a millisecond is left it asks librdkafka for events with a
//! timeout of 0 ms, in a loop: a 1 ms poll is a 1 ms busy loop. Waiting for acknowledgements
//! that way kept the stream thread on a core for the whole round trip of every commit (at
//! 1,000 records/s: 550 µs of CPU per record, three quarters of it in `clock_gettime`).
//!
//! Instead librdkafka writes a byte to a pipe whenever an event lands in the producer's empty
//! event queue (`rd_kafka_queue_io_event_enable`, its way into an IO polling loop); the stream
//! thread sleeps in `poll(2)` on the pipe, then serves what arrived with a zero-timeout poll.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use rdkafka::bindings::{
    rd_kafka_queue_destroy, rd_kafka_queue_get_main, rd_kafka_queue_io_event_enable,
    rd_kafka_queue_t,
};
use rdkafka::producer::ProducerContext;
use rdkafka::producer::{BaseProducer, Producer};

/// A pipe librdkafka writes to when the producer's event queue goes from empty to not empty.
pub(super) struct DeliveryWaker {
    read: OwnedFd,
    // Kept open for librdkafka, which writes to it.
    _write: OwnedFd,
    queue: *mut rd_kafka_queue_t,
}

// SAFETY: the queue handle is only passed to librdkafka, whose queue functions are thread-safe;
// the stream thread owns the waker.
unsafe impl Send for DeliveryWaker {}

impl DeliveryWaker {
    pub(super) fn new<C: ProducerContext>(producer: &BaseProducer<C>) -> anyhow::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the client pointer is valid while `producer` lives; the queue handle returned
        // is a new reference (released in Drop); the payload is copied by librdkafka.
        let queue = unsafe { rd_kafka_queue_get_main(producer.client().native_ptr()) };
        anyhow::ensure!(!queue.is_null(), "the producer has no main queue");
        let payload = [1u8];
        // SAFETY: `queue` is valid; `write` stays open as long as the queue handle (both dropped
        // together, and Drop disables the event first).
        unsafe {
            rd_kafka_queue_io_event_enable(queue, write.as_raw_fd(), payload.as_ptr().cast(), 1);
        }
        Ok(DeliveryWaker {
            read,
            _write: write,
            queue,
        })
    }

    /// Sleeps until an event may be waiting in the producer's queue, or `timeout` has passed.
    pub(super) fn wait(&self, timeout: Duration) {
        let mut fd = libc::pollfd {
            fd: self.read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut fd, 1, millis) };
        if ready > 0 {
            let mut buffer = [0u8; 64];
            // Drain the wake-ups (non-blocking read; what is left is harmless either way).
            // SAFETY: reading into a local buffer of the size given.
            while unsafe {
                libc::read(
                    self.read.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                )
            } > 0
            {}
        }
    }
}

impl Drop for DeliveryWaker {
    fn drop(&mut self) {
        // SAFETY: `queue` is the handle taken in `new`; fd -1 disables the IO event, so
        // librdkafka never writes to the pipe after it is closed.
        unsafe {
            rd_kafka_queue_io_event_enable(self.queue, -1, std::ptr::null(), 0);
            rd_kafka_queue_destroy(self.queue);
        }
    }
}
