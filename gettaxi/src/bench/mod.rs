//! `gettaxi bench …`: GetTaxi's performance figures, each measured in one run (run them with
//! `--release`).
//!
//! * [`index`] — the nearest-taxi search alone: the H3 index against a scan of every taxi;
//! * [`matching`] — end to end on a broker: ride requests over HTTP while a fleet of 10,000 taxis
//!   reports, request → the `rides` record that answers it, and the index lookup inside driver
//!   matching;
//! * [`surge`] — end to end on a broker: a window advance → the `surge_pricing` records it
//!   changes.
//!
//! The end-to-end benches start the services they measure in this process (the scaffold's
//! [`shared::service::cli::start`], as `gettaxi run` does) under a topic prefix of their own, so
//! a run never meets an earlier run's records. The fleet's positions are produced straight to
//! their topics (the position services are one validated `produce` each, measured by the tests;
//! 2,500 HTTP requests/s would measure this machine's HTTP client instead).

mod fleet;
pub mod index;
pub mod matching;
pub mod surge;

use std::path::Path;
use std::time::Duration;

use rand::Rng;
use shared::Kafka;
use shared::bench::{broker, fresh_prefix};
pub use shared::bench::{percentile, percentile_us};
use shared::service::Process;
use shared::service::cli::ServeArgs;

pub use index::{IndexBench, index};
pub use matching::{MatchingBench, matching};
pub use surge::{SurgeBench, surge};

use crate::app::{GetTaxi, Options};
use crate::geo::Point;

/// Manhattan, roughly: the benches' fleets stay in this box.
pub const SOUTH_WEST: Point = Point {
    lat: 40.70,
    lon: -74.02,
};
pub const NORTH_EAST: Point = Point {
    lat: 40.88,
    lon: -73.91,
};

pub fn random_point(rng: &mut impl Rng) -> Point {
    Point {
        lat: rng.random_range(SOUTH_WEST.lat..NORTH_EAST.lat),
        lon: rng.random_range(SOUTH_WEST.lon..NORTH_EAST.lon),
    }
}

/// "p50 x ms · p99 y ms · max z ms (n)" of unsorted latencies.
fn summary(mut latencies: Vec<Duration>) -> String {
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "p50 {:.1} ms · p99 {:.1} ms · max {:.1} ms ({} measured)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
        latencies.len()
    )
}

/// Starts the services named with `options`, on a free port, with their files under `dir`.
async fn start(
    kafka: &Kafka,
    services: &[&str],
    dir: &Path,
    options: Options,
) -> anyhow::Result<Process> {
    let names: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    let options = Options {
        analytics: shared::analytics::AnalyticsArgs::in_dir(dir.join("analytics")),
        ..options
    };
    let (process, _dirs) =
        shared::service::cli::start::<GetTaxi>(kafka, &names, &ServeArgs::for_tests(dir), &options)
            .await?;
    Ok(process)
}

/// The upper bound of the bucket holding the `q` quantile of a Prometheus histogram in the text
/// exposition format `text` (`<name>_bucket{le="…"} count` lines), and the histogram's count.
fn bucket_quantile(text: &str, name: &str, q: f64) -> Option<(f64, u64)> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, u64)> = text
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| {
            let le = line.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = line.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = (total as f64 * q).ceil() as u64;
    buckets
        .iter()
        .find(|(_, count)| *count >= rank)
        .map(|(le, _)| (*le, total))
}

/// The value of the counter `<name>` (`<name>_total`) labelled with an application whose id ends
/// with `application`, in the text exposition format `text`.
fn app_counter(text: &str, name: &str, application: &str) -> u64 {
    let label = format!("{application}\"");
    text.lines()
        .filter(|line| {
            (line.starts_with(&format!("{name}_total{{")) || line.starts_with(&format!("{name}{{")))
                && line.contains(&label)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// What a streams application did during a run: records, batches, changelog records, and the
/// time its tasks waited to keep inputs in time order.
fn streams_line(application: &str) -> String {
    let text = shared::metrics::encode();
    let count = |name| app_counter(&text, name, application);
    let (processed, batches) = (
        count("streams_records_processed"),
        count("streams_batches_committed"),
    );
    format!(
        "{application}: {processed} records in {batches} batches ({:.0} per batch), {} changelog records, tasks idle {:.1} s to keep time order",
        processed as f64 / batches.max(1) as f64,
        count("streams_changelog_records"),
        count("streams_task_idle_microseconds") as f64 / 1e6,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantile_is_the_bound_of_the_bucket_that_reaches_its_rank() {
        let text = "# TYPE x histogram\n\
            x_sum 1.0\nx_count 100\n\
            x_bucket{le=\"0.001\"} 90\n\
            x_bucket{le=\"0.002\"} 98\n\
            x_bucket{le=\"0.004\"} 100\n\
            x_bucket{le=\"+Inf\"} 100\n";
        assert_eq!(bucket_quantile(text, "x", 0.5), Some((0.001, 100)));
        assert_eq!(bucket_quantile(text, "x", 0.98), Some((0.002, 100)));
        assert_eq!(bucket_quantile(text, "x", 0.99), Some((0.004, 100)));
        assert_eq!(bucket_quantile(text, "y", 0.99), None);
    }

    #[test]
    fn an_application_counter_is_read_by_the_end_of_its_id() {
        let text = "streams_records_processed_total{application=\"bench1.gettaxi-matching\"} 42\n\
            streams_records_processed_total{application=\"bench1.gettaxi-rides\"} 7\n";
        assert_eq!(
            app_counter(text, "streams_records_processed", "gettaxi-matching"),
            42
        );
        assert_eq!(
            app_counter(text, "streams_batches_committed", "gettaxi-matching"),
            0
        );
    }
}
