//! `logging demo`: the pipeline (`all`: the log parser, the log and metrics aggregations), the
//! simulated applications with our forwarder on each host ([`crate::simulator`]) and, every few
//! seconds, the [`Board`] in the terminal — what a workshop projects on the wall: the lines per
//! second written, whether the incident is on, each service's error rate and p99 latency for
//! its newest minutes (`log_rollups`, `metric_rollups`), and the alerts as they fire and resolve
//! (`alerts`). With the defaults the incident starts after 1 minute and the alert fires about
//! 6 minutes in (3 minutes over the threshold, then the 2-minute grace period closes the third).

use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::service::cli::{self, ServeArgs};
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;

use crate::app::{Logging, Options};
use crate::board::{Board, Snapshot, alert_line, ms_cell, rate_cell};
use crate::simulator::{self, SimulationArgs, SimulatorStats};

/// Minutes a summary shows per service.
const MINUTES: usize = 3;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    options: Options,
    #[command(flatten)]
    simulation: SimulationArgs,
    /// Print a summary this often.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    every: Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

/// Every service, the simulator and the summary, until `stop` (or `--duration`).
pub async fn run(args: DemoArgs, kafka: &KafkaArgs, stop: CancellationToken) -> anyhow::Result<()> {
    anyhow::ensure!(!args.every.is_zero(), "--every must not be zero");
    let kafka = Kafka::connect(kafka)?;
    let (process, dirs) = cli::start::<Logging>(&kafka, &[], &args.serve, &args.options).await?;
    let logs = dirs.data.join("simulated-hosts");
    let options = args.simulation.options(logs.clone())?;
    println!(
        "logging demo: API {} (/metrics, /openapi.json), broker {} (kcat -b {} -L), log files under {}\n  incident: {}",
        process.url(),
        kafka.bootstrap_servers(),
        kafka.bootstrap_servers(),
        logs.display(),
        options.incident.describe()
    );
    if let Some(duration) = args.duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.cancel();
        });
    }
    let board = Board::follow(&kafka, stop.clone()).await?;
    let stats = Arc::new(SimulatorStats::default());
    let simulation = tokio::spawn(simulator::simulate(
        kafka.clone(),
        options,
        Arc::clone(&stats),
        stop.clone(),
    ));
    report(&board, &stats, args.every, &stop).await;
    simulation.await??;
    process.stop().await?;
    println!("final: {}", stats.totals());
    Ok(())
}

/// Prints a summary every `every` until `stop`.
async fn report(board: &Board, stats: &SimulatorStats, every: Duration, stop: &CancellationToken) {
    let started = Instant::now();
    let (mut last, mut last_at) = (0, Instant::now());
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let lines = stats.lines();
        let rate = (lines - last) as f64 / last_at.elapsed().as_secs_f64();
        (last, last_at) = (lines, Instant::now());
        println!(
            "[t+{:>4}s] {rate:.0} lines/s written ({lines} in all){}\n{}",
            started.elapsed().as_secs(),
            if stats.incident_active() {
                " · INCIDENT ON"
            } else {
                ""
            },
            summary(&board.snapshot(MINUTES))
        );
    }
}

/// The board in a few lines: per service its newest minutes' error rates and its latest p99,
/// then the newest alerts.
pub fn summary(snapshot: &Snapshot) -> String {
    if snapshot.services.is_empty() {
        return "  no rollups yet (the first come a few seconds after the first lines)".into();
    }
    let minutes = snapshot.minute_labels();
    let mut out = vec![format!(
        "  error rate per minute ({}), p99 latency of the newest:",
        minutes.join(", ")
    )];
    for row in &snapshot.services {
        let rates: Vec<String> = row.rollups.iter().map(|r| rate_cell(r.as_ref())).collect();
        out.push(format!(
            "  {:<9} {}  p99 {}{}",
            row.service,
            rates.join(" · "),
            ms_cell(row.p99.iter().flatten().next().copied()),
            if row.firing.is_some() {
                "  ALERT FIRING"
            } else {
                ""
            }
        ));
    }
    for alert in snapshot.alerts.iter().take(3) {
        out.push(format!("  alert: {}", alert_line(alert)));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::LogRollup;
    use chrono::DateTime;

    #[test]
    fn the_summary_shows_each_service_and_says_when_there_is_nothing_yet() {
        assert!(summary(&Snapshot::default()).contains("no rollups yet"));
        let minute = DateTime::from_timestamp(3_600 * 12, 0).unwrap();
        let board = Board::default();
        board
            .apply_rollup(LogRollup {
                service: "payments".into(),
                minute,
                lines: 200,
                errors: 60,
                error_rate: 0.3,
                is_final: true,
                ..LogRollup::default()
            })
            .unwrap();
        let text = summary(&board.snapshot(MINUTES));
        assert!(text.contains("(12:00)"), "{text}");
        assert!(text.contains("payments  30.0 % of 200  p99 –"), "{text}");
    }
}
