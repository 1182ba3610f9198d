//! **Simulator**: MySocialMedia's users over the HTTP API, like the app — they post photos with
//! captions, scroll the feed, like what they see (double-tapping now and then), take some likes
//! back and comment; now and then one post goes viral.
//!
//! **Users see the query side.** The simulator reacts only to posts it has seen in the feed
//! (`GET /v1/feed?limit=100`, read every [`SCROLL_EVERY`]), as a person can only like what the
//! app shows them. The feed is a hop behind the command side (posts → the counting application →
//! `posts_with_counts` → the read model), so a post just published is not liked before the
//! query side knows it. A like or comment the like/comment service still answers 404 for (a
//! read model of another instance, further behind) is counted as "not yet visible", not as an
//! error.
//!
//! **Who gets the likes.** Popularity follows Zipf's law: the posts seen are ranked — by recency
//! half the time (scrolling the feed: its top gets the most taps), by likes the other half (the
//! popular get more popular, [`Ranking`]) — and the post of rank k is picked with a probability
//! ∝ 1/k^[`ZIPF_EXPONENT`] ([`zipf_index`], [`like_target`]). Comments follow the same law.
//!
//! **A post goes viral** ([`Viral`]): [`Viral::after`] into the run, then every
//! [`Viral::every`], the newest post seen goes viral for [`Viral::lasting`] and takes
//! [`Viral::share`] (30 %) of all likes — a hot key: every like of it is on one partition of
//! `likes`, in one task of the counting application.
//!
//! **Actions** arrive as a Poisson process at the rate of the moment (actions per second; the
//! knob of `casestudies up`), each by a user drawn from [`SimulatorOptions::users`]; [`MIX`] is
//! the share of each kind ([`Action`]): a post (a 1×1 GIF of a random colour and a caption), a
//! like, a double tap (the same like sent twice: the second changes no count), an unlike (of a
//! like this simulator sent recently), a comment. A reaction drawn while the feed shows no post
//! yet is skipped: posts keep their share, whatever the start-up delay of the query side.
//!
//! Every choice comes from one generator seeded by [`SimulatorOptions::seed`] (what the feed
//! shows when — and so which posts are picked — is not). HTTP outcomes are counted in
//! [`SimulatorStats`]; a 503 (starting up, rebalancing) is retried quietly a few times; at most
//! [`MAX_IN_FLIGHT`] actions wait for an answer at once. Everything stops as soon as `stop` is
//! cancelled.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use shared::KafkaArgs;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::events::PostWithCounts;
use crate::like_comment_service::NewComment;
use crate::refresh_feed_service::{FeedPage, MAX_PAGE};

/// How often users scroll the feed (the simulator reads `GET /v1/feed`).
pub const SCROLL_EVERY: Duration = Duration::from_secs(1);
/// Zipf's exponent s: with 100 posts seen, the first gets about 23 % of the picks, the
/// tenth about 1.9 %.
pub const ZIPF_EXPONENT: f64 = 1.1;
/// Actions waiting for an answer at most; past it, the rate drops (the API is the bottleneck).
pub const MAX_IN_FLIGHT: usize = 64;
/// How many recent likes an unlike is drawn from.
const RECENT_LIKES: usize = 256;

/// What a user does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Post,
    Like,
    /// The same like twice in a row (idempotent: the count changes once).
    DoubleTap,
    Unlike,
    Comment,
}

/// The share of each action.
pub const MIX: &[(Action, f64)] = &[
    (Action::Post, 0.05),
    (Action::Like, 0.60),
    (Action::DoubleTap, 0.06),
    (Action::Unlike, 0.07),
    (Action::Comment, 0.22),
];

/// An action drawn from [`MIX`]; a like instead of an unlike when no like is recent.
pub fn draw_action(rng: &mut impl Rng, recent_likes: bool) -> Action {
    let mut roll = rng.random::<f64>() * MIX.iter().map(|(_, w)| w).sum::<f64>();
    let mut action = MIX[MIX.len() - 1].0;
    for (a, weight) in MIX {
        if roll < *weight {
            action = *a;
            break;
        }
        roll -= weight;
    }
    match action {
        Action::Unlike if !recent_likes => Action::Like,
        action => action,
    }
}

/// How users order the posts they choose from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    /// The feed's order: newest first.
    Newest,
    /// Most likes first (ties: newest first).
    Popular,
}

/// The posts of `feed` (newest first, as `GET /v1/feed` answers) in `ranking`'s order.
pub fn ranked(feed: &[PostWithCounts], ranking: Ranking) -> Vec<&PostWithCounts> {
    let mut posts: Vec<&PostWithCounts> = feed.iter().collect();
    if ranking == Ranking::Popular {
        // Stable: equal likes keep the feed's order.
        posts.sort_by_key(|p| std::cmp::Reverse(p.likes));
    }
    posts
}

/// An index in `0..n` by Zipf's law with exponent `s`: 0 the most likely (`n` ≥ 1).
pub fn zipf_index(rng: &mut impl Rng, n: usize, s: f64) -> usize {
    match Zipf::new(n.max(1) as f64, s) {
        Ok(zipf) => (zipf.sample(rng) as usize).clamp(1, n.max(1)) - 1,
        Err(_) => 0,
    }
}

/// The post a like goes to: the viral post with probability `share` while one is viral, else a
/// post of `feed` by Zipf's law over a [`Ranking`] drawn half and half. `None` if the feed is
/// empty and nothing is viral.
pub fn like_target(
    rng: &mut impl Rng,
    feed: &[PostWithCounts],
    viral: Option<&str>,
    share: f64,
) -> Option<String> {
    if let Some(viral) = viral
        && rng.random_bool(share.clamp(0.0, 1.0))
    {
        return Some(viral.to_owned());
    }
    pick(rng, feed)
}

/// A post of `feed` by Zipf's law over a [`Ranking`] drawn half and half.
pub fn pick(rng: &mut impl Rng, feed: &[PostWithCounts]) -> Option<String> {
    if feed.is_empty() {
        return None;
    }
    let ranking = if rng.random_bool(0.5) {
        Ranking::Newest
    } else {
        Ranking::Popular
    };
    let posts = ranked(feed, ranking);
    Some(
        posts[zipf_index(rng, posts.len(), ZIPF_EXPONENT)]
            .post_id
            .clone(),
    )
}

/// When a post is viral, and how much.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viral {
    /// The first episode starts this long into the run…
    pub after: Duration,
    /// …the next ones this long after the previous one started…
    pub every: Duration,
    /// …and each lasts this long.
    pub lasting: Duration,
    /// The share of all likes the viral post takes.
    pub share: f64,
}

impl Default for Viral {
    fn default() -> Self {
        Viral {
            after: Duration::from_secs(10),
            every: Duration::from_secs(120),
            lasting: Duration::from_secs(60),
            share: 0.3,
        }
    }
}

impl Viral {
    /// The viral episode `elapsed` into the run is in (0, 1, …), if any.
    pub fn episode_at(&self, elapsed: Duration) -> Option<u64> {
        let since = elapsed.checked_sub(self.after)?;
        let every = self.every.as_millis().max(1);
        let episode = since.as_millis() / every;
        let into = since.as_millis() % every;
        (into < self.lasting.as_millis()).then_some(episode as u64)
    }
}

/// The post that is viral now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViralPost {
    pub post_id: String,
    pub user_id: String,
    pub caption: String,
}

#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// The MySocialMedia API (`mysocialmedia all` or a load balancer in front of the services).
    pub url: String,
    /// Actions per second, read as it goes (`casestudies up`'s knob); when `None`,
    /// [`SimulatorOptions::actions_per_second`].
    pub rate: Option<shared::live::Knob>,
    pub actions_per_second: f64,
    pub users: usize,
    pub viral: Viral,
    pub seed: u64,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            url: "http://127.0.0.1:8080".into(),
            rate: None,
            actions_per_second: 20.0,
            users: 5000,
            viral: Viral::default(),
            seed: 7,
        }
    }
}

impl SimulatorOptions {
    fn actions_per_second(&self) -> f64 {
        self.rate
            .as_ref()
            .map_or(self.actions_per_second, |k| k.get())
    }
}

/// What the simulator did so far.
#[derive(Debug, Default)]
pub struct SimulatorStats {
    /// Posts accepted (202).
    pub posts: AtomicU64,
    /// Likes accepted (a double tap's first like included).
    pub likes: AtomicU64,
    /// Second likes of a double tap accepted (they change no count).
    pub double_taps: AtomicU64,
    pub unlikes: AtomicU64,
    pub comments: AtomicU64,
    /// Likes, unlikes and comments answered 404: the post is not in that instance's read model
    /// yet (eventual consistency).
    pub not_yet: AtomicU64,
    /// Requests refused otherwise (4xx): a simulator bug or a validation change.
    pub rejected: AtomicU64,
    /// Requests that failed (connection, 5xx, 503 after retries).
    pub failed: AtomicU64,
    /// Posts in the feed the simulator last read.
    pub seen: AtomicU64,
    viral: Mutex<Option<ViralPost>>,
}

impl SimulatorStats {
    /// Records accepted by the command side: posts, likes (double taps twice), unlikes,
    /// comments.
    pub fn events(&self) -> u64 {
        [
            &self.posts,
            &self.likes,
            &self.double_taps,
            &self.unlikes,
            &self.comments,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    /// The post that is viral now, if one is.
    pub fn viral(&self) -> Option<ViralPost> {
        self.viral.lock().expect("viral post").clone()
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A user id of the simulation.
pub fn user_id(i: usize) -> String {
    format!("user_{i:05}")
}

/// What captions say.
const CAPTIONS: &[&str] = &[
    "Golden hour at the harbour",
    "Sunday brunch with the crew",
    "First snow of the year",
    "New haircut, who dis",
    "Homemade ramen, day 3 of trying",
    "The view from the top was worth every step",
    "My cat judging my life choices",
    "Launch day! So proud of the team",
    "Rainy streets, neon lights",
    "Tried the new coffee place downtown",
    "Throwback to the summer",
    "Finished my first marathon",
];
const TAGS: &[&str] = &[
    "#nofilter",
    "#tbt",
    "#foodie",
    "#travel",
    "#catsofinstagram",
    "#weekend",
    "",
];
/// What comments say.
const COMMENTS: &[&str] = &[
    "Love this!",
    "Where is this?",
    "🔥🔥🔥",
    "So good",
    "Need this in my life",
    "Wow, the colours",
    "Take me with you next time",
    "This made my day",
    "Iconic",
    "👏👏",
];

/// A caption drawn at random.
pub fn caption(rng: &mut impl Rng) -> String {
    let text = CAPTIONS[rng.random_range(0..CAPTIONS.len())];
    match TAGS[rng.random_range(0..TAGS.len())] {
        "" => text.to_owned(),
        tag => format!("{text} {tag}"),
    }
}

/// The form of `POST /v1/posts`: `author`, `caption`, and a 1×1 GIF of `colour` as `image`.
pub fn post_form(author: &str, caption: &str, colour: [u8; 3]) -> Form {
    let image = Part::bytes(crate::images::tiny_gif(colour))
        .file_name("photo.gif")
        .mime_str("image/gif")
        .expect("a valid MIME type");
    Form::new()
        .text("author", author.to_owned())
        .text("caption", caption.to_owned())
        .part("image", image)
}

/// An action with every choice made.
#[derive(Debug, Clone, PartialEq)]
enum Planned {
    Post {
        author: String,
        caption: String,
        colour: [u8; 3],
    },
    Like {
        post: String,
        user: String,
        twice: bool,
    },
    Unlike {
        post: String,
        user: String,
    },
    Comment {
        post: String,
        user: String,
        text: String,
    },
}

/// What every task shares.
struct World {
    options: SimulatorOptions,
    http: reqwest::Client,
    stats: Arc<SimulatorStats>,
    /// The feed as last read, newest first.
    feed: RwLock<Vec<PostWithCounts>>,
}

/// How an HTTP call went.
enum Sent {
    Ok,
    /// 404: the post is not in the read model (yet).
    NotFound,
    /// Another 4xx: what the server said.
    Rejected(String),
    Failed,
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.options.url.trim_end_matches('/'))
    }

    /// Sends a request, retrying a 503 (starting up, rebalancing) quietly a few times.
    async fn send(&self, request: impl Fn() -> reqwest::RequestBuilder) -> Sent {
        for attempt in 0..4 {
            match request().send().await {
                Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE && attempt < 3 => {
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                }
                Ok(r) if r.status().is_success() => return Sent::Ok,
                Ok(r) if r.status() == StatusCode::NOT_FOUND => return Sent::NotFound,
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status();
                    return Sent::Rejected(format!(
                        "{status}: {}",
                        r.text().await.unwrap_or_default()
                    ));
                }
                Ok(_) | Err(_) => return Sent::Failed,
            }
        }
        Sent::Failed
    }

    /// Counts how a request went, in `accepted` if it was.
    fn tally(&self, sent: &Sent, accepted: &AtomicU64, what: &str) {
        let stats = &self.stats;
        match sent {
            Sent::Ok => SimulatorStats::count(accepted),
            Sent::NotFound => SimulatorStats::count(&stats.not_yet),
            Sent::Rejected(reason) => {
                if stats.rejected.fetch_add(1, Ordering::Relaxed) < 10 {
                    tracing::warn!(%reason, "{what} rejected");
                }
            }
            Sent::Failed => SimulatorStats::count(&stats.failed),
        }
    }

    async fn act(&self, planned: Planned) {
        match planned {
            Planned::Post {
                author,
                caption,
                colour,
            } => {
                let url = self.url("/v1/posts");
                let form = || post_form(&author, &caption, colour);
                let sent = self.send(|| self.http.post(&url).multipart(form())).await;
                // The answer names the post; users react once the feed shows it.
                self.tally(&sent, &self.stats.posts, "post");
            }
            Planned::Like { post, user, twice } => {
                let url = self.url(&format!("/v1/posts/{post}/likes/{user}"));
                let sent = self.send(|| self.http.put(&url)).await;
                self.tally(&sent, &self.stats.likes, "like");
                if twice && matches!(sent, Sent::Ok) {
                    let again = self.send(|| self.http.put(&url)).await;
                    self.tally(&again, &self.stats.double_taps, "double tap");
                }
            }
            Planned::Unlike { post, user } => {
                let url = self.url(&format!("/v1/posts/{post}/likes/{user}"));
                let sent = self.send(|| self.http.delete(&url)).await;
                self.tally(&sent, &self.stats.unlikes, "unlike");
            }
            Planned::Comment { post, user, text } => {
                let url = self.url(&format!("/v1/posts/{post}/comments"));
                let body = NewComment {
                    user_id: user,
                    text,
                };
                let sent = self.send(|| self.http.post(&url).json(&body)).await;
                self.tally(&sent, &self.stats.comments, "comment");
            }
        }
    }
}

/// Runs the simulation until `stop`.
pub async fn simulate(
    options: SimulatorOptions,
    stats: Arc<SimulatorStats>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(options.users > 0, "users must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&options.viral.share),
        "the viral share must be in [0, 1]"
    );
    anyhow::ensure!(
        !options.viral.every.is_zero() && options.viral.lasting <= options.viral.every,
        "a viral episode must last at most as long as the time between two"
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .build()?;
    let world = Arc::new(World {
        options,
        http,
        stats,
        feed: RwLock::new(Vec::new()),
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(until(stop.clone(), scroll(Arc::clone(&world))));
    tasks.spawn(until(stop.clone(), act(Arc::clone(&world))));
    while let Some(done) = tasks.join_next().await {
        done?;
    }
    Ok(())
}

/// Runs `work` until `stop`.
async fn until(stop: CancellationToken, work: impl Future<Output = ()>) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = work => {}
    }
}

/// Reads the feed every [`SCROLL_EVERY`].
async fn scroll(world: Arc<World>) {
    let url = world.url(&format!("/v1/feed?limit={MAX_PAGE}"));
    let mut ticker = tokio::time::interval(SCROLL_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let page = match world.http.get(&url).send().await {
            Ok(response) if response.status().is_success() => {
                response.json::<FeedPage>().await.ok()
            }
            // Starting up (503) or unreachable: the feed stays as it was.
            _ => None,
        };
        if let Some(page) = page {
            world
                .stats
                .seen
                .store(page.posts.len() as u64, Ordering::Relaxed);
            *world.feed.write().expect("feed") = page.posts;
        }
    }
}

/// Actions, a Poisson process at the rate of the moment.
async fn act(world: Arc<World>) {
    let options = &world.options;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut running = JoinSet::new();
    let mut recent_likes: VecDeque<(String, String)> = VecDeque::new();
    let mut viral: Option<(u64, ViralPost)> = None;
    let started = Instant::now();
    let mut next = Instant::now();
    loop {
        while running.try_join_next().is_some() {}
        let per_s = options.actions_per_second().max(0.0);
        let wait = if per_s > 0.0 {
            -(1.0 - rng.random::<f64>()).ln() / per_s
        } else {
            f64::INFINITY
        };
        if wait > 1.0 {
            // Nothing this second; draw again then (memoryless: still Poisson, at the rate the
            // knob has by then).
            tokio::time::sleep(Duration::from_secs(1)).await;
            next = Instant::now();
            continue;
        }
        // From the previous action's time, so the sleeps' rounding does not slow the rate; never
        // more than a second's backlog at once.
        next = (next + Duration::from_secs_f64(wait)).max(Instant::now() - Duration::from_secs(1));
        tokio::time::sleep_until(next).await;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        viral = match options.viral.episode_at(started.elapsed()) {
            None => None,
            Some(episode) if viral.as_ref().is_some_and(|(e, _)| *e == episode) => viral,
            // A new episode: the newest post seen takes off.
            Some(episode) => world.feed.read().expect("feed").first().map(|p| {
                (
                    episode,
                    ViralPost {
                        post_id: p.post_id.clone(),
                        user_id: p.user_id.clone(),
                        caption: p.caption.clone(),
                    },
                )
            }),
        };
        *world.stats.viral.lock().expect("viral post") = viral.as_ref().map(|(_, p)| p.clone());
        let planned = plan(
            &mut rng,
            options,
            &world.feed.read().expect("feed"),
            viral.as_ref().map(|(_, p)| p.post_id.as_str()),
            &mut recent_likes,
        );
        let Some(planned) = planned else {
            continue;
        };
        let world = Arc::clone(&world);
        running.spawn(async move {
            world.act(planned).await;
            drop(permit);
        });
    }
}

/// Makes every choice of the next action; `None` for a reaction while no post is seen.
fn plan(
    rng: &mut StdRng,
    options: &SimulatorOptions,
    feed: &[PostWithCounts],
    viral: Option<&str>,
    recent_likes: &mut VecDeque<(String, String)>,
) -> Option<Planned> {
    let user = user_id(rng.random_range(0..options.users));
    let action = draw_action(rng, !recent_likes.is_empty());
    Some(match action {
        Action::Post => Planned::Post {
            author: user,
            caption: caption(rng),
            colour: rng.random(),
        },
        Action::Like | Action::DoubleTap => {
            let post = like_target(rng, feed, viral, options.viral.share)?;
            recent_likes.push_back((post.clone(), user.clone()));
            if recent_likes.len() > RECENT_LIKES {
                recent_likes.pop_front();
            }
            Planned::Like {
                post,
                user,
                twice: action == Action::DoubleTap,
            }
        }
        Action::Unlike => {
            let i = rng.random_range(0..recent_likes.len());
            let (post, user) = recent_likes.remove(i)?;
            Planned::Unlike { post, user }
        }
        Action::Comment => Planned::Comment {
            post: pick(rng, feed)?,
            user,
            text: COMMENTS[rng.random_range(0..COMMENTS.len())].to_owned(),
        },
    })
}

/// The simulation's settings, shared by `simulate` and `demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulationArgs {
    /// Actions (posts, likes, unlikes, comments) per second, a Poisson process.
    #[arg(long, default_value_t = 20.0)]
    pub actions_per_second: f64,
    /// Users; each action is by one of them, drawn at random.
    #[arg(long, default_value_t = 5000)]
    pub users: usize,
    /// The first viral post takes off this long into the run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub viral_after: Duration,
    /// A new post goes viral this often.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub viral_every: Duration,
    /// A post stays viral this long.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub viral_for: Duration,
    /// The share of all likes the viral post takes.
    #[arg(long, default_value_t = 0.3)]
    pub viral_share: f64,
    /// Seed of every random choice of the simulation.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

impl SimulationArgs {
    pub fn options(&self, url: String) -> anyhow::Result<SimulatorOptions> {
        anyhow::ensure!(
            self.actions_per_second.is_finite() && self.actions_per_second >= 0.0,
            "--actions-per-second must be a number ≥ 0"
        );
        anyhow::ensure!(self.users > 0, "--users must be at least 1");
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.viral_share),
            "--viral-share must be in [0, 1]"
        );
        anyhow::ensure!(
            !self.viral_every.is_zero() && self.viral_for <= self.viral_every,
            "--viral-for must be at most --viral-every (and --viral-every not zero)"
        );
        Ok(SimulatorOptions {
            url,
            rate: None,
            actions_per_second: self.actions_per_second,
            users: self.users,
            viral: Viral {
                after: self.viral_after,
                every: self.viral_every,
                lasting: self.viral_for,
                share: self.viral_share,
            },
            seed: self.seed,
        })
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// The MySocialMedia API.
    #[arg(
        long,
        env = "MYSOCIALMEDIA_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    #[command(flatten)]
    pub simulation: SimulationArgs,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

/// Cancels `stop` after `duration`, if one is given.
pub fn stop_after(duration: Option<Duration>, stop: &CancellationToken) {
    if let Some(duration) = duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.cancel();
        });
    }
}

/// `mysocialmedia simulate`: users against a running MySocialMedia, then the totals.
pub async fn run(args: SimulateArgs, _: &KafkaArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let options = args.simulation.options(args.url)?;
    let stats = Arc::new(SimulatorStats::default());
    stop_after(args.duration, &stop);
    let started = Instant::now();
    simulate(options, Arc::clone(&stats), stop).await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "simulated {} users for {elapsed:.1} s: {} events accepted ({:.1}/s) · {}",
        args.simulation.users,
        stats.events(),
        stats.events() as f64 / elapsed,
        totals(&stats)
    );
    Ok(())
}

/// The counts of a run, on one line.
pub fn totals(stats: &SimulatorStats) -> String {
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    format!(
        "{} posts, {} likes (+{} double taps), {} unlikes, {} comments · {} not yet visible (404), {} rejected, {} failed",
        n(&stats.posts),
        n(&stats.likes),
        n(&stats.double_taps),
        n(&stats.unlikes),
        n(&stats.comments),
        n(&stats.not_yet),
        n(&stats.rejected),
        n(&stats.failed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn post(n: usize, likes: u64) -> PostWithCounts {
        PostWithCounts {
            post_id: format!("p{n:02}"),
            user_id: user_id(n),
            caption: "c".into(),
            image: crate::events::ImageRef {
                key: String::new(),
                sha256: String::new(),
                content_type: "image/gif".into(),
                bytes: 1,
            },
            created_at: Utc::now(),
            likes,
            comments: 0,
            updated_at: Utc::now(),
        }
    }

    /// How often each post id is drawn in `draws` likes.
    fn shares(
        feed: &[PostWithCounts],
        viral: Option<&str>,
        share: f64,
        draws: usize,
    ) -> std::collections::HashMap<String, f64> {
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..draws {
            let post = like_target(&mut rng, feed, viral, share).unwrap();
            *counts.entry(post).or_insert(0.0) += 1.0 / draws as f64;
        }
        counts
    }

    #[test]
    fn zipf_favours_the_first_ranks() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut counts = [0usize; 20];
        for _ in 0..20_000 {
            counts[zipf_index(&mut rng, 20, ZIPF_EXPONENT)] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[4] && counts[4] > counts[19]);
        // 1/H(20, 1.1) ≈ 0.31 for the first rank.
        let first = counts[0] as f64 / 20_000.0;
        assert!((0.26..0.34).contains(&first), "{first}");
        assert_eq!(zipf_index(&mut rng, 1, ZIPF_EXPONENT), 0);
    }

    #[test]
    fn likes_go_to_the_newest_and_the_most_liked_posts() {
        // Newest first; the oldest post (p09) has the most likes.
        let mut feed: Vec<PostWithCounts> = (0..10).map(|n| post(n, 0)).collect();
        feed[9].likes = 500;
        let shares = shares(&feed, None, 0.3, 20_000);
        let (newest, oldest, middle) = (shares["p00"], shares["p09"], shares["p05"]);
        assert!(newest > 0.2 && oldest > 0.2, "{shares:?}");
        assert!(middle < 0.1, "{shares:?}");
    }

    #[test]
    fn the_viral_post_takes_its_share_of_the_likes() {
        let feed: Vec<PostWithCounts> = (0..10).map(|n| post(n, n as u64)).collect();
        let shares = shares(&feed, Some("viral"), 0.3, 20_000);
        assert!((0.28..0.32).contains(&shares["viral"]), "{shares:?}");
        assert!(shares.values().all(|s| *s <= shares["viral"]));
        // Even before the feed shows anything, the viral post (seen earlier) gets likes.
        let mut rng = StdRng::seed_from_u64(2);
        assert_eq!(
            like_target(&mut rng, &[], Some("viral"), 1.0).as_deref(),
            Some("viral")
        );
        assert_eq!(like_target(&mut rng, &[], None, 0.3), None);
    }

    #[test]
    fn popular_ranking_sorts_by_likes_and_keeps_the_feed_order_on_ties() {
        let feed = vec![post(0, 1), post(1, 5), post(2, 1), post(3, 7)];
        let ids = |r: Vec<&PostWithCounts>| r.iter().map(|p| p.post_id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(ranked(&feed, Ranking::Popular)),
            ["p03", "p01", "p00", "p02"]
        );
        assert_eq!(
            ids(ranked(&feed, Ranking::Newest)),
            ["p00", "p01", "p02", "p03"]
        );
    }

    #[test]
    fn viral_episodes_start_after_a_while_and_repeat() {
        let viral = Viral::default();
        let at = |s| viral.episode_at(Duration::from_secs(s));
        assert_eq!(at(0), None);
        assert_eq!(at(9), None);
        assert_eq!(at(10), Some(0));
        assert_eq!(at(69), Some(0));
        assert_eq!(at(70), None);
        assert_eq!(at(130), Some(1));
        assert_eq!(at(190), None);
    }

    #[test]
    fn the_mix_has_its_shares_and_unlikes_only_what_was_liked() {
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..100 {
            assert_ne!(draw_action(&mut rng, false), Action::Unlike);
        }
        let mut counts = std::collections::HashMap::new();
        for _ in 0..20_000 {
            *counts.entry(draw_action(&mut rng, true)).or_insert(0) += 1;
        }
        for (action, weight) in MIX {
            let share = counts[action] as f64 / 20_000.0;
            assert!((share - weight).abs() < 0.015, "{action:?}: {share}");
        }
    }

    #[test]
    fn a_plan_unlikes_a_recent_like_and_users_are_valid_handles() {
        let options = SimulatorOptions::default();
        let feed: Vec<PostWithCounts> = (0..5).map(|n| post(n, 0)).collect();
        let mut rng = StdRng::seed_from_u64(9);
        let mut recent = VecDeque::new();
        let mut liked = Vec::new();
        for _ in 0..2_000 {
            match plan(&mut rng, &options, &feed, None, &mut recent).unwrap() {
                Planned::Like { post, user, .. } => liked.push((post, user)),
                Planned::Unlike { post, user } => {
                    assert!(liked.contains(&(post, user.clone())));
                    crate::events::validate_user_id("user", &user).unwrap();
                }
                Planned::Post {
                    author, caption, ..
                } => {
                    crate::events::validate_user_id("author", &author).unwrap();
                    crate::events::validate_text(
                        "caption",
                        &caption,
                        crate::events::MAX_CAPTION_CHARS,
                    )
                    .unwrap();
                }
                Planned::Comment { post, .. } => assert!(post.starts_with('p')),
            }
        }
        assert!(recent.len() <= RECENT_LIKES);
        // Nothing seen yet: only posts happen, at their share; reactions are skipped.
        let mut recent = VecDeque::new();
        let planned: Vec<Option<Planned>> = (0..2_000)
            .map(|_| plan(&mut rng, &options, &[], None, &mut recent))
            .collect();
        let posts = planned.iter().flatten().count() as f64 / 2_000.0;
        assert!(
            planned
                .iter()
                .flatten()
                .all(|p| matches!(p, Planned::Post { .. }))
        );
        assert!((0.03..0.07).contains(&posts), "{posts}");
    }
}
