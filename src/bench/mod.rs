//! `casestudies bench …`: measurements of the streams runtime, each on one broker in one run.
//! Run them in release mode (`cargo run --release -- bench <name>`).
//!
//! * [`streams`] — throughput: raw consume vs count-per-key with RocksDB + changelog, and the
//!   restore rate;
//! * [`latency`] — one stateful hop at a steady rate: input produced → output readable;
//! * [`peers`] — Kafka Streams and Quix Streams on (b)'s job and input (`bench streams --peers`);
//! * [`dashboard`] — what `up`'s dashboard costs: CPU with a page open vs closed, bytes/s to it.

pub mod dashboard;
pub mod latency;
pub mod peers;
pub mod streams;

use std::time::Duration;

pub use dashboard::{DashboardBench, dashboard};
pub use latency::{LatencyBench, latency};
pub use streams::{StreamsBench, streams};

use shared::bench::{broker, fresh_prefix};

/// "(<thread>: x.xx µs CPU/record)", or nothing where per-thread CPU time is not readable.
pub fn cpu_per_record(thread: &str, cpu: Option<Duration>, records: u64) -> String {
    match cpu {
        Some(cpu) if records > 0 => format!(
            "({thread}: {:.2} µs CPU/record)",
            cpu.as_secs_f64() * 1e6 / records as f64
        ),
        _ => String::new(),
    }
}

/// CPU time of a thread from Linux's `/proc/<pid>/task/<tid>/schedstat` (nanoseconds on CPU).
fn thread_cpu(task: &std::path::Path) -> Option<Duration> {
    let schedstat = std::fs::read_to_string(task.join("schedstat")).ok()?;
    let nanos = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// CPU spent between two readings of one thread's CPU time (`None` if either is missing).
pub fn cpu_between(start: Option<Duration>, end: Option<Duration>) -> Option<Duration> {
    Some(end? - start?)
}

/// CPU time of the calling thread.
pub fn this_thread_cpu() -> Option<Duration> {
    thread_cpu(std::path::Path::new("/proc/thread-self"))
}

/// CPU time of the streams runtime's stream thread (named `stream-<application id>`): the
/// thread that polls, processes, commits and restores — the one (b) and (c) are bound by.
pub fn stream_thread_cpu() -> Option<Duration> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with("stream-"))
        })
        .and_then(|task| thread_cpu(&task.path()))
}
