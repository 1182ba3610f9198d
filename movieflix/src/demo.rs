//! `movieflix demo`: every service plus the simulator in one process, and a short live summary
//! every few seconds — what a workshop projects on the wall.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use shared::analytics::SinkStats;
use shared::service::Process;

use crate::catalog::Catalog;
use crate::recommendations_service::RecommendationsService;
use crate::resuming_service::{ResumePoint, ResumingService};
use crate::simulator::{self, SimulatorStats};

/// Prints a summary every `every` until `shutdown`.
pub async fn report(
    app: &Process,
    stats: Arc<SimulatorStats>,
    viewers: usize,
    every: Duration,
    shutdown: CancellationToken,
) {
    let catalog = Catalog::shared();
    let resuming = app.get::<ResumingService>();
    let recommendations = app.get::<RecommendationsService>();
    let sink = app.get::<SinkStats>();
    let started = Instant::now();
    let mut last_sent = 0;
    let mut last_at = Instant::now();
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let sent = stats.sent.load(Ordering::Relaxed);
        let rate = (sent - last_sent) as f64 / last_at.elapsed().as_secs_f64();
        (last_sent, last_at) = (sent, Instant::now());
        let mut lines = vec![format!(
            "[t+{:>4}s] {rate:>6.1} positions/s · {viewers} viewers, {} playing · {} accepted, {} rejected, {} failed · {} resumed, {} episodes finished",
            started.elapsed().as_secs(),
            stats.playing.load(Ordering::Relaxed),
            sent,
            stats.rejected.load(Ordering::Relaxed),
            stats.failed.load(Ordering::Relaxed),
            stats.resumed.load(Ordering::Relaxed),
            stats.episodes_finished.load(Ordering::Relaxed),
        )];
        let viewer = simulator::viewer_id(rand::rng().random_range(0..viewers.max(1)));
        if let Some(resuming) = &resuming {
            let partition = resuming.streams.partition_of(viewer.as_bytes());
            let points: Vec<(Vec<u8>, ResumePoint)> = resuming
                .streams
                .stores
                .prefix_in(
                    partition,
                    crate::resuming_service::STORE,
                    format!("{viewer}/").as_bytes(),
                )
                .unwrap_or_default();
            if let Some((_, point)) = points.iter().max_by_key(|(_, p)| p.at) {
                let show = catalog.get(&point.show_id);
                lines.push(format!(
                    "  resume    {viewer} → {} \"{}\" {} at {}:{:02} of {}:{:02}{}",
                    point.show_id,
                    show.map_or("?", |s| s.title.as_str()),
                    show.and_then(|s| s.episode_label(point.episode))
                        .unwrap_or_else(|| "movie".into()),
                    point.position_s / 60,
                    point.position_s % 60,
                    point.duration_s / 60,
                    point.duration_s % 60,
                    if point.finished { " (finished)" } else { "" },
                ));
            }
        }
        if let Some(recommendations) = &recommendations {
            if let Ok(Some(recs)) = recommendations.local(&viewer) {
                let items: Vec<String> = recs
                    .items
                    .iter()
                    .take(3)
                    .map(|r| format!("{} ({})", r.show_id, r.reason))
                    .collect();
                lines.push(format!("  recommend {viewer} → {}", items.join("; ")));
            }
            if let Some((p50, p99, n)) = recommendations.freshness.take_quantiles() {
                lines.push(format!(
                    "  position → recommendation: p50 {:.0} ms, p99 {:.0} ms ({n} since the last summary)",
                    p50 * 1e3,
                    p99 * 1e3
                ));
            }
        }
        if let Some(sink) = &sink {
            lines.push(format!(
                "  analytics {} rows in {} Parquet files",
                sink.rows.get(),
                sink.files.get()
            ));
        }
        println!("{}", lines.join("\n"));
    }
}

/// The run's final counts, printed once everything has stopped (the sink has flushed).
pub fn totals(stats: &SimulatorStats, sink: Option<&SinkStats>) -> String {
    let mut line = format!(
        "final: {} positions accepted, {} rejected, {} failed · {} shows resumed, {} episodes finished",
        stats.sent.load(Ordering::Relaxed),
        stats.rejected.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
        stats.resumed.load(Ordering::Relaxed),
        stats.episodes_finished.load(Ordering::Relaxed),
    );
    if let Some(sink) = sink {
        line.push_str(&format!(
            " · analytics {} rows in {} Parquet files",
            sink.rows.get(),
            sink.files.get()
        ));
    }
    line
}
