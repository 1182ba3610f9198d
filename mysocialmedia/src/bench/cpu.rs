//! CPU time of this process and of its threads, from Linux's `/proc` (nothing elsewhere: the
//! figures are then left out of the report).

use std::collections::HashMap;
use std::time::Duration;

/// The process's CPU time so far: user + system, every thread, finished ones included.
pub fn process() -> Option<Duration> {
    shared::bench::process_cpu()
}

/// Each live thread's name and CPU time (`schedstat`: nanoseconds on a CPU), by thread id.
pub type Threads = HashMap<u32, (String, Duration)>;

pub fn threads() -> Threads {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Threads::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            let schedstat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            let nanos = schedstat.split_whitespace().next()?.parse().ok()?;
            Some((tid, (name.trim().to_owned(), Duration::from_nanos(nanos))))
        })
        .collect()
}

/// What a thread is, from its name (Linux keeps 15 bytes of it).
pub fn role(name: &str) -> String {
    if name.starts_with("stream-") {
        return "stream thread (counting app)".into();
    }
    let known = [
        ("bench-load", "load generator"),
        ("bench-reader", "posts_with_counts reader"),
        ("streams-lag", "lag refresher"),
        ("producer pollin", "load producer's polling thread"),
        ("tokio-runtime", "tokio workers"),
        ("rdk:mock", "embedded broker (librdkafka mock)"),
    ];
    if let Some((_, role)) = known.iter().find(|(prefix, _)| name.starts_with(prefix)) {
        return (*role).into();
    }
    // `rdk:broker1`, `rdk:broker-1`, `rdk:main`, …: one line per kind of librdkafka thread.
    let kind = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '#');
    format!("librdkafka {kind}")
}

/// CPU per role between two snapshots, most first (threads born meanwhile count from zero;
/// threads that ended meanwhile are missing).
pub fn by_role(start: &Threads, end: &Threads) -> Vec<(String, Duration)> {
    let mut roles: HashMap<String, Duration> = HashMap::new();
    for (tid, (name, cpu)) in end {
        let before = start.get(tid).map_or(Duration::ZERO, |(_, cpu)| *cpu);
        *roles.entry(role(name)).or_default() += cpu.saturating_sub(before);
    }
    let mut roles: Vec<(String, Duration)> = roles.into_iter().collect();
    roles.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_grouped_by_role() {
        assert_eq!(role("stream-bench1a2"), "stream thread (counting app)");
        assert_eq!(role("rdk:broker1001"), "librdkafka rdk:broker");
        assert_eq!(role("rdk:main"), "librdkafka rdk:main");
        assert_eq!(role("tokio-runtime-w"), "tokio workers");
    }

    #[test]
    fn this_process_has_cpu_time_and_threads() {
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(process().is_some());
            assert!(!threads().is_empty());
        }
    }
}
