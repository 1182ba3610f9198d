//! `casestudies bench dashboard`: what the dashboard costs. `up` runs in this process (every
//! case study, its simulator, the dashboard, on the embedded broker unless
//! `KAFKA_BOOTSTRAP_SERVERS` says otherwise); the process's CPU per second is measured with no
//! page open, then with one page open, alternately, and the bytes per second that page receives.
//!
//! "One page open" is MovieFlix's page with a topic's panel open, as the browser makes it: the
//! page and its assets once, the case study's description once, the event stream (one snapshot
//! a second) and the topic's last 50 records every two seconds. It is emulated with an HTTP
//! client (a browser's own CPU is not the dashboard's), which makes the same requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use shared::Kafka;

use crate::up::UpOptions;

#[derive(Debug, Clone, clap::Args)]
pub struct DashboardBench {
    /// How long each phase (page closed, page open) lasts.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub phase: Duration,
    /// Closed/open pairs, alternated.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Running time before the first phase (restores, first recommendations, JIT of nothing).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
}

/// The process's CPU time so far (user + system, every thread, finished ones included).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (in parentheses, which may hold spaces): utime is the 14th field
    // of the line, stime the 15th; the text after ')' starts at the 3rd.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// One phase: share of one core the process used, and the bytes/s the page got (if open).
async fn phase(length: Duration, page: Option<&str>) -> (f64, Option<f64>) {
    let stop = CancellationToken::new();
    let bytes = Arc::new(AtomicU64::new(0));
    let page_task =
        page.map(|url| tokio::spawn(open_page(url.to_owned(), Arc::clone(&bytes), stop.clone())));
    // Let the page load before measuring the steady state.
    if page.is_some() {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (cpu0, bytes0, t0) = (process_cpu(), bytes.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(length).await;
    let (cpu1, bytes1, elapsed) = (process_cpu(), bytes.load(Ordering::Relaxed), t0.elapsed());
    stop.cancel();
    if let Some(task) = page_task {
        let _ = task.await;
    }
    let share = match (cpu0, cpu1) {
        (Some(a), Some(b)) => (b - a).as_secs_f64() / elapsed.as_secs_f64(),
        _ => f64::NAN,
    };
    let rate = page.map(|_| (bytes1 - bytes0) as f64 / elapsed.as_secs_f64());
    (share, rate)
}

/// MovieFlix's page with the `show_position` panel open, counting the bytes it receives.
async fn open_page(url: String, bytes: Arc<AtomicU64>, stop: CancellationToken) {
    let http = reqwest::Client::new();
    let get = |path: String| {
        let (http, bytes) = (http.clone(), Arc::clone(&bytes));
        let url = format!("{url}{path}");
        async move {
            if let Ok(response) = http.get(url).send().await
                && let Ok(body) = response.bytes().await
            {
                bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            }
        }
    };
    for path in [
        "/",
        "/assets/app.js",
        "/assets/style.css",
        "/api/case-studies/movieflix",
    ] {
        get(path.to_owned()).await;
    }
    let events = {
        let (http, bytes, stop) = (http.clone(), Arc::clone(&bytes), stop.clone());
        let url = format!("{url}/api/events");
        tokio::spawn(async move {
            let Ok(mut response) = http.get(url).send().await else {
                return;
            };
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    chunk = response.chunk() => match chunk {
                        Ok(Some(chunk)) => { bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed); }
                        _ => return,
                    },
                }
            }
        })
    };
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {
                get("/api/case-studies/movieflix/topics/movieflix.show_position/records?limit=50".into()).await;
            }
        }
    }
    let _ = events.await;
}

pub async fn dashboard(kafka: &Kafka, bench: &DashboardBench) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let dir = tempfile::tempdir()?;
    let options = UpOptions {
        data_dir: Some(dir.path().to_path_buf()),
        ..UpOptions::default()
    };
    let shutdown = CancellationToken::new();
    let measure = async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let list = format!("{url}/api/case-studies");
        let deadline = Instant::now() + Duration::from_secs(300);
        while !http
            .get(&list)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "up did not start within 5 minutes"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "bench dashboard: up on {} ({} rounds of {:?} closed, {:?} open, after {:?})",
            super::broker(kafka),
            bench.rounds,
            bench.phase,
            bench.phase,
            bench.warmup
        );
        tokio::time::sleep(bench.warmup).await;
        let mut rows = Vec::new();
        for round in 1..=bench.rounds {
            let (closed, _) = phase(bench.phase, None).await;
            let (open, bytes) = phase(bench.phase, Some(&url)).await;
            println!(
                "round {round}: page closed {:.1} % of a core, open {:.1} % ({:+.1}), {:.1} KB/s to the page",
                closed * 100.0,
                open * 100.0,
                (open - closed) * 100.0,
                bytes.unwrap_or(0.0) / 1000.0
            );
            rows.push((closed, open, bytes.unwrap_or(0.0)));
        }
        println!();
        println!("| round | page closed (% of a core) | page open | extra | to the page |");
        println!("|---|---|---|---|---|");
        for (i, (closed, open, bytes)) in rows.iter().enumerate() {
            println!(
                "| {} | {:.1} | {:.1} | {:+.1} | {:.1} KB/s |",
                i + 1,
                closed * 100.0,
                open * 100.0,
                (open - closed) * 100.0,
                bytes / 1000.0
            );
        }
        anyhow::Ok(())
    };
    let run = crate::up::run(kafka, &options, listener, shutdown.clone());
    tokio::pin!(run);
    let result = tokio::select! {
        result = measure => result,
        result = &mut run => return result.and(Err(anyhow::anyhow!("up stopped during the bench"))),
    };
    shutdown.cancel();
    run.await?;
    result
}
