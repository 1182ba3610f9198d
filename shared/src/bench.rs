//! What every `bench` subcommand needs: a topic prefix of its own per run, a line naming the
//! broker, a reader of a whole topic, and percentiles of sorted samples.

use std::time::Duration;

use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::Kafka;

/// `kafka` with a topic prefix of its own, so a run never meets an earlier run's topics.
pub fn fresh_prefix(kafka: &Kafka) -> Kafka {
    kafka.with_prefix(&format!(
        "{}bench{:06x}.",
        kafka.prefix(),
        rand::random::<u32>() & 0xff_ffff
    ))
}

/// "embedded mock cluster (<address>)" or "external (<address>)", for the first line of a run.
pub fn broker(kafka: &Kafka) -> String {
    let kind = if kafka.is_embedded() {
        "embedded mock cluster"
    } else {
        "external"
    };
    format!("{kind} ({})", kafka.bootstrap_servers())
}

/// A consumer assigned every partition of `topic` from `offset` (no consumer group
/// membership, nothing committed), with fetches answered at once: what a downstream
/// application sees. [`Offset::End`] is resolved to each partition's end offset here, so
/// every record produced after this returns is read.
pub fn reader(
    kafka: &Kafka,
    topic: &str,
    partitions: i32,
    offset: Offset,
) -> anyhow::Result<BaseConsumer> {
    let mut config = kafka.consumer_config();
    kafka.apply_defaults(&mut config, crate::kafka::LOW_LATENCY_CONSUMER);
    let consumer: BaseConsumer = config
        .set("group.id", format!("{}bench-reader", kafka.prefix()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        let offset = match offset {
            Offset::End => {
                let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
                Offset::Offset(high)
            }
            offset => offset,
        };
        assignment.add_partition_offset(topic, p, offset)?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// This process's CPU time so far (user + system, every thread, finished ones included), from
/// Linux's `/proc/self/stat`; `None` elsewhere.
pub fn process_cpu() -> Option<Duration> {
    cpu_from_stat("/proc/self/stat")
}

/// The CPU time so far of process `pid` (a child: rsyslogd in a benchmark), as
/// [`process_cpu`]; `None` when it is gone or not on Linux.
pub fn pid_cpu(pid: u32) -> Option<Duration> {
    cpu_from_stat(&format!("/proc/{pid}/stat"))
}

fn cpu_from_stat(path: &str) -> Option<Duration> {
    /// Ticks per second of `/proc/<pid>/stat`'s times: the kernel's `USER_HZ`, 100 on every
    /// architecture Linux exports to user space (what `sysconf(_SC_CLK_TCK)` answers).
    const USER_HZ: u64 = 100;
    let stat = std::fs::read_to_string(path).ok()?;
    // After the command (in parentheses, which may hold spaces): the state is field 3 of the
    // line, utime field 14 and stime field 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// The `p` quantile of `sorted` by nearest rank: the smallest value with at least `p` of the
/// samples at or below it (the default, zero, when there are none).
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The `p` quantile of sorted durations, in microseconds.
pub fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    percentile(sorted, p).as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_ranks() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.5), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&values, 1.0), 100);
        assert_eq!(percentile(&values, 0.0), 1);
        assert_eq!(percentile(&[7u64], 0.99), 7);
    }

    #[test]
    fn percentiles_of_nothing_are_zero() {
        assert_eq!(percentile::<u64>(&[], 0.99), 0);
        assert_eq!(percentile::<Duration>(&[], 0.5), Duration::ZERO);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }
}
