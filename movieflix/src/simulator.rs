//! **Simulator**: viewers with tastes who pick shows, resume them through the resuming service,
//! play, pause, skip, finish episodes and move on — reporting positions to the video position
//! service over HTTP like real players.
//!
//! Time is compressed: `speed` show-seconds pass per wall-clock second (60 by default, so a
//! 45-minute episode plays in 45 s) and a player reports every `interval`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, GENRES, Show};
use crate::resuming_service::{Resume, ResumeState};
use crate::video_position_service::PositionReport;

#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    pub viewers: usize,
    /// The MovieFlix API (`movieflix all` or a load balancer in front of the services).
    pub url: String,
    /// How often a playing viewer reports.
    pub interval: Duration,
    /// Show-seconds per wall-clock second.
    pub speed: f64,
    pub seed: u64,
    /// How many of the `viewers` watch (the others wait): a knob turned while it runs
    /// (`casestudies up`); all of them when `None`.
    pub active: Option<shared::live::Knob>,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            viewers: 50,
            url: "http://127.0.0.1:8080".into(),
            interval: Duration::from_secs(1),
            speed: 60.0,
            seed: 7,
            active: None,
        }
    }
}

/// What the simulator did so far.
#[derive(Debug, Default)]
pub struct SimulatorStats {
    /// Positions accepted (202).
    pub sent: AtomicU64,
    /// Positions refused (4xx): a simulator bug or a validation change.
    pub rejected: AtomicU64,
    /// Requests that failed (connection, 5xx).
    pub failed: AtomicU64,
    /// Viewers currently playing (not paused, not browsing).
    pub playing: AtomicU64,
    /// Shows resumed at a position or the next episode, as the resuming service said.
    pub resumed: AtomicU64,
    pub episodes_finished: AtomicU64,
}

/// A viewer id of the simulation.
pub fn viewer_id(i: usize) -> String {
    format!("viewer-{i:05}")
}

/// Runs `viewers` viewers until `shutdown`.
pub async fn run(
    options: SimulatorOptions,
    catalog: Arc<Catalog>,
    stats: Arc<SimulatorStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(options.viewers.max(1))
        .build()?;
    let mut viewers = tokio::task::JoinSet::new();
    for i in 0..options.viewers {
        let viewer = Viewer {
            n: i,
            id: viewer_id(i),
            rng: StdRng::seed_from_u64(options.seed.wrapping_mul(1_000_003) + i as u64),
            client: client.clone(),
            options: options.clone(),
            catalog: Arc::clone(&catalog),
            stats: Arc::clone(&stats),
            taste: Vec::new(),
            unfinished: Vec::new(),
        };
        let shutdown = shutdown.clone();
        viewers.spawn(async move {
            // Stagger the start so requests don't arrive in lockstep.
            let delay = Duration::from_millis((i as u64 * 37) % 1000);
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = async { tokio::time::sleep(delay).await; viewer.live().await } => {}
            }
        });
    }
    while viewers.join_next().await.is_some() {}
    Ok(())
}

struct Viewer {
    /// Its number: it watches while the `active` knob is above it.
    n: usize,
    id: String,
    rng: StdRng,
    client: reqwest::Client,
    options: SimulatorOptions,
    catalog: Arc<Catalog>,
    stats: Arc<SimulatorStats>,
    taste: Vec<&'static str>,
    /// Shows the viewer stopped before the end, most recent last: half the time they come back
    /// to one, and the resuming service says where they were.
    unfinished: Vec<String>,
}

/// How many unfinished shows a viewer remembers.
const UNFINISHED: usize = 3;

impl Viewer {
    async fn live(mut self) {
        let first = self.rng.random_range(0..GENRES.len());
        let second = (first + self.rng.random_range(1..GENRES.len())) % GENRES.len();
        self.taste = vec![GENRES[first], GENRES[second]];
        loop {
            if let Some(active) = &self.options.active
                && self.n as f64 >= active.get()
            {
                tokio::time::sleep(self.options.interval).await;
                continue;
            }
            let show = self.pick_show();
            let (mut episode, mut position) = self.where_to_start(&show).await;
            // Watch episodes of this show until the viewer moves on.
            let done = loop {
                let finished = self.play(&show, episode, position).await;
                position = 0;
                match show.next_episode(episode) {
                    Some(next) if finished && self.rng.random_bool(0.8) => episode = Some(next),
                    None if finished => break true,
                    _ => break false,
                }
            };
            self.unfinished.retain(|id| *id != show.id);
            if !done {
                self.unfinished.push(show.id.clone());
                if self.unfinished.len() > UNFINISHED {
                    self.unfinished.remove(0);
                }
            }
            // Browse a little before the next show.
            let n = self.rng.random_range(1..4);
            let browse = self.ticks(n);
            tokio::time::sleep(browse).await;
        }
    }

    fn ticks(&self, n: u32) -> Duration {
        self.options.interval * n
    }

    /// Half the time a show the viewer left unfinished; else, 80 % of the time, a show of the
    /// viewer's two favourite genres (popular ones more often).
    fn pick_show(&mut self) -> Show {
        if !self.unfinished.is_empty() && self.rng.random_bool(0.5) {
            let id = &self.unfinished[self.rng.random_range(0..self.unfinished.len())];
            if let Some(show) = self.catalog.get(id) {
                return show.clone();
            }
        }
        let pool: Vec<&Show> = if self.rng.random_bool(0.8) {
            let genre = self.taste[self.rng.random_range(0..self.taste.len())];
            self.catalog.by_genre(genre).into_iter().take(25).collect()
        } else {
            self.catalog.shows().iter().collect()
        };
        let weights: f64 = pool.iter().map(|s| 0.05 + s.popularity).sum();
        let mut target = self.rng.random_range(0.0..weights);
        for show in &pool {
            target -= 0.05 + show.popularity;
            if target <= 0.0 {
                return (*show).clone();
            }
        }
        pool[pool.len() - 1].clone()
    }

    /// Asks the resuming service where to start (like a player opening a show).
    async fn where_to_start(&mut self, show: &Show) -> (Option<u32>, u32) {
        let first = show.is_series().then_some(1);
        let url = format!(
            "{}/v1/users/{}/resume/{}",
            self.options.url, self.id, show.id
        );
        let Ok(response) = self.client.get(&url).send().await else {
            return (first, 0);
        };
        if !response.status().is_success() {
            return (first, 0); // never watched (404) or not answerable right now
        }
        match response.json::<Resume>().await {
            Ok(resume) if resume.state != ResumeState::Finished => {
                self.stats.resumed.fetch_add(1, Ordering::Relaxed);
                (resume.episode, resume.position_s)
            }
            _ => (first, 0),
        }
    }

    /// Plays one episode (or the movie) from `position`; true if watched to the end.
    async fn play(&mut self, show: &Show, episode: Option<u32>, mut position: u32) -> bool {
        let duration = show.duration_of(episode).unwrap_or(show.duration_s);
        let step = (self.options.speed * self.options.interval.as_secs_f64()) as u32;
        self.stats.playing.fetch_add(1, Ordering::Relaxed);
        let finished = loop {
            tokio::time::sleep(self.options.interval).await;
            let roll: f64 = self.rng.random();
            if roll < 0.03 {
                // Pause for a few reports' worth of time.
                self.stats.playing.fetch_sub(1, Ordering::Relaxed);
                let n = self.rng.random_range(3..8);
                tokio::time::sleep(self.ticks(n)).await;
                self.stats.playing.fetch_add(1, Ordering::Relaxed);
                continue;
            } else if roll < 0.045 {
                position = position.saturating_add(300); // skip ahead
            } else if roll < 0.06 {
                break false; // bored: stop watching
            }
            position = position.saturating_add(step).min(duration);
            self.report(show, episode, position, duration).await;
            if position >= duration {
                self.stats.episodes_finished.fetch_add(1, Ordering::Relaxed);
                break true;
            }
        };
        self.stats.playing.fetch_sub(1, Ordering::Relaxed);
        finished
    }

    async fn report(&mut self, show: &Show, episode: Option<u32>, position: u32, duration: u32) {
        let report = PositionReport {
            user_id: self.id.clone(),
            show_id: show.id.clone(),
            episode,
            position_s: position,
            duration_s: duration,
            at: None,
        };
        let url = format!("{}/v1/positions", self.options.url);
        match self.client.post(&url).json(&report).send().await {
            Ok(response) if response.status().is_success() => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(response) if response.status().is_client_error() => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                let body = response.text().await.unwrap_or_default();
                tracing::warn!(viewer = %self.id, %body, "position rejected");
            }
            Ok(_) | Err(_) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
