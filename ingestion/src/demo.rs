//! `ingestion demo`: every service plus the simulator in one process, and a short summary every
//! few seconds — what a workshop projects on the wall: the rate of events accepted (bursts
//! show), the lines rejected, the speed layer's newest minute per source (`GET
//! /v1/realtime/latest`), the newest final minute, and the late events it dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::service::cli::{self, ServeArgs};
use shared::streams::StreamsHandle;
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;

use crate::app::{Ingestion, Options};
use crate::realtime_api::{Latest, MinuteCounts};
use crate::simulator::{self, SimulationArgs, SimulatorStats, stop_after};

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
    let (process, _) = cli::start::<Ingestion>(&kafka, &[], &args.serve, &args.options).await?;
    let url = process.url();
    println!(
        "ingestion demo: API {url} (try {url}/v1/realtime/latest or {url}/v1/realtime/counts?source=iot), broker {} (kcat -b {} -L)",
        kafka.bootstrap_servers(),
        kafka.bootstrap_servers(),
    );
    let options = args.simulation.options(url.clone())?;
    stop_after(args.duration, &stop);
    let stats = Arc::new(SimulatorStats::default());
    let simulation = tokio::spawn(simulator::simulate(
        options,
        Arc::clone(&stats),
        stop.clone(),
    ));
    let speed = process.get::<StreamsHandle>();
    report(url, Arc::clone(&stats), speed, args.every, stop.clone()).await;
    simulation.await??;
    process.stop().await?;
    println!("final: {}", stats.totals());
    Ok(())
}

/// Prints a summary every `every` until `stop`.
async fn report(
    api: String,
    stats: Arc<SimulatorStats>,
    speed: Option<Arc<StreamsHandle>>,
    every: Duration,
    stop: CancellationToken,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let started = Instant::now();
    let (mut last, mut last_at) = (0, Instant::now());
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let accepted = stats.accepted();
        let rate = (accepted - last) as f64 / last_at.elapsed().as_secs_f64();
        (last, last_at) = (accepted, Instant::now());
        let mut lines = vec![format!(
            "[t+{:>4}s] {rate:.0} events/s · {}",
            started.elapsed().as_secs(),
            stats.totals()
        )];
        if let Some(speed) = &speed {
            lines.push(format!(
                "  speed layer: {} records processed, {} late dropped, {} dead-lettered",
                speed.stats.processed.get(),
                speed.stats.late_dropped.get(),
                speed.stats.dead_lettered.get()
            ));
        }
        let latest = async {
            let response = http
                .get(format!("{api}/v1/realtime/latest"))
                .send()
                .await
                .ok()?;
            response.json::<Latest>().await.ok()
        };
        if let Some(latest) = latest.await {
            lines.push(format!(
                "  newest minute: {}",
                minute_line(latest.newest.as_ref())
            ));
            lines.push(format!(
                "  newest final:  {}",
                minute_line(latest.newest_final.as_ref())
            ));
        }
        println!("{}", lines.join("\n"));
    }
}

/// A minute's events per source and its top event types, on one line.
pub fn minute_line(minute: Option<&MinuteCounts>) -> String {
    let Some(minute) = minute else {
        return "—".into();
    };
    let mut per_source: BTreeMap<String, u64> = BTreeMap::new();
    for row in &minute.counts {
        *per_source.entry(row.source.to_string()).or_default() += row.count;
    }
    let mut top: Vec<_> = minute.counts.iter().collect();
    top.sort_by(|a, b| b.count.cmp(&a.count).then(a.event_type.cmp(&b.event_type)));
    let sources: Vec<String> = per_source.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let types: Vec<String> = top
        .iter()
        .take(3)
        .map(|r| {
            format!(
                "{}/{} {} ({} users)",
                r.source, r.event_type, r.count, r.distinct_users
            )
        })
        .collect();
    format!(
        "{} · {} events ({}) · top: {}",
        minute.minute.format("%H:%M"),
        minute.events,
        sources.join(", "),
        types.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{RealtimeCount, Source};
    use chrono::DateTime;

    #[test]
    fn a_minute_in_one_line() {
        let at = DateTime::from_timestamp(3_600 * 15 + 120, 0).unwrap();
        let row = |source, event_type: &str, count| RealtimeCount {
            minute: at,
            source,
            event_type: event_type.into(),
            count,
            distinct_users: count / 2,
            partitions: 1,
            is_final: false,
        };
        let minute = MinuteCounts {
            minute: at,
            events: 16,
            counts: vec![
                row(Source::Web, "click", 10),
                row(Source::Iot, "reading", 4),
                row(Source::Web, "purchase", 2),
            ],
        };
        assert_eq!(
            minute_line(Some(&minute)),
            "15:02 · 16 events (iot 4, web 12) · top: web/click 10 (5 users), iot/reading 4 (2 users), web/purchase 2 (1 users)"
        );
        assert_eq!(minute_line(None), "—");
    }
}
