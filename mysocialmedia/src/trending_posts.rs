//! **Trending posts in the past hour** (streams, requirement 4): hopping windows of one hour
//! advancing every minute, on event time, ranked by an engagement score, top 10, computed in two
//! stages, to `trending_posts` (key: the window's end).
//!
//! ```text
//! likes, comments (key post_id) ─▶ [stage 1, per partition: minute slices ─▶ top 10 of the partition]
//!        ─▶ …-partials-repartition (one key: every partial meets in one task)
//!        ─▶ [stage 2: merge the partitions' top 10s ─▶ the global top 10] ─▶ trending_posts
//! ```
//!
//! **Score** = likes + 3 × comments in the window ([`score`]; likes are net: an unlike in the
//! window takes one back, and a post's likes never count below zero). A like is a tap; a comment
//! is someone stopping to write, and it starts a conversation that brings others back — so a
//! comment weighs three likes (about the ratio of likes to comments on a typical post, so
//! neither drowns the other). Ties: the smaller post id first — ids are time-ordered, so the
//! older post wins a tie (deterministic: a replay ranks the same way).
//!
//! **Windows** ([`shared::streams::Windows`]): `[k·1 min, k·1 min + 1 h)`. A record counts in
//! every window that contains its event time and is not closed yet; a window closes when the
//! partition's stream time (the largest event time of its likes and comments) reaches its end + the grace period
//! (`TRENDING_GRACE`, default 2 min). A record for a closed window is late for it: the window's
//! ranking does not change, the record still counts in the later windows that contain it; a
//! record whose every window has closed (older than 1 h + grace behind stream time) is dropped
//! and counted (`streams_late_records_dropped_total`).
//!
//! Sixty windows per record would be sixty store updates; instead each record updates one
//! **minute slice** (`<minute><post>` → likes, comments), and a window is the sum of its sixty
//! slices, computed when it is ranked.
//!
//! **Two stages.** Stage 1 runs in every task (a partition of `likes` and `comments`): when a
//! window closes it ranks the partition's posts and sends its top 10 — a partial — to the
//! repartition topic under the single key `all`. The global top 10 is among the union of the
//! partitions' top 10s (a post's reactions are all on one partition), so stage 2 — the one task
//! that owns `all` — merges at most 32 × 10 candidates. Stage 2 has its own stream time (the
//! partials' timestamps) and finalizes a window once it is an advance past the window's close
//! (`end + grace + 1 min`): a partition whose stream time lags the fastest one by more than a
//! minute delivers its partial late, and it is dropped and counted (stream time is per
//! partition, as in Kafka Streams; a partition without traffic closes no window and sends
//! nothing, which is right: it has no engagement to rank).
//!
//! **Emit** (`TRENDING_EMIT`): `update` (default) — stage 1 also sends, after each batch, the
//! partition's top 10 of the open window (the hour up to the next minute boundary) when it
//! changed, and stage 2 publishes the merged board each time it changes (`final: false`), then
//! the final one when the window is finalized (`final: true`); `close` — only the final board,
//! once per window.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::Kafka;
use shared::consumer::{HandlerError, PayloadKey};
use shared::streams::topn::TopN;
use shared::streams::windowed::{Emit, window_key};
use shared::streams::{self, ProcessorContext, StreamsConfig, Windows};

use crate::events::{CommentAdded, LikeChanged, Ranked, TrendingPosts};
use crate::topics::{COMMENTS, LIKES, TRENDING_POSTS};

pub const APPLICATION_ID: &str = "mysocialmedia-trending";
/// `<post id>/<user id>` → 1 for every user who likes the post now (stage 1).
pub const LIKED: &str = "liked";
/// `<minute start (8 bytes)><post id>` → [`Engagement`] (stage 1).
pub const SLICES: &str = "slices";
/// `closed` (stage 1: the last window end ranked by this task), `merged` (stage 2: the last
/// window end finalized).
pub const PROGRESS: &str = "progress";
/// Stage 1's stream time in [`PROGRESS`]: the largest event time of this partition's likes
/// and comments. Kept in the store, not taken from the runtime's stream time, which also
/// advances with the partials' records: the task that owns the merge key would otherwise judge
/// its own reactions late against other partitions' progress.
const CLOCK: &[u8] = b"clock";
/// Stage 2's stream time in [`PROGRESS`]: the largest timestamp of the partials merged.
const MERGE_CLOCK: &[u8] = b"merge_clock";

/// A clock of [`PROGRESS`] (`i64::MIN` before its first record).
fn clock(ctx: &ProcessorContext<'_>, which: &[u8]) -> anyhow::Result<i64> {
    Ok(ctx.get::<i64>(PROGRESS, which)?.unwrap_or(i64::MIN))
}

/// Moves a clock of [`PROGRESS`] forward to `at` (never back).
fn advance_clock(ctx: &mut ProcessorContext<'_>, which: &[u8], at: i64) -> anyhow::Result<()> {
    if clock(ctx, which)? < at {
        ctx.put(PROGRESS, which, &at)?;
    }
    Ok(())
}
/// `<window end (8 bytes)><partition>` → [`Partial`] (stage 2).
pub const PARTIALS: &str = "partials";
/// The key every partial is sent under.
pub const MERGE_KEY: &str = "all";
/// How many posts a board holds.
pub const TOP: usize = 10;

/// A comment weighs this many likes.
pub const COMMENT_WEIGHT: i64 = 3;

/// The engagement score of `likes` (net) and `comments` in a window.
pub fn score(likes: i64, comments: i64) -> i64 {
    likes.max(0) + COMMENT_WEIGHT * comments
}

/// The trending model's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    pub windows: Windows,
    pub top: usize,
    pub emit: Emit,
}

impl Model {
    /// One hour advancing every minute, `grace_ms` of grace.
    pub fn new(grace_ms: i64, emit: Emit) -> Self {
        Model {
            windows: Windows::hopping(3_600_000, 60_000).grace(grace_ms),
            top: TOP,
            emit,
        }
    }
}

impl Default for Model {
    fn default() -> Self {
        Model::new(120_000, Emit::OnUpdate)
    }
}

/// Likes and comments of one post in one minute (a slice) or one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engagement {
    #[serde(rename = "l")]
    pub likes: i64,
    #[serde(rename = "c")]
    pub comments: i64,
}

/// One partition's top posts of one window (on the repartition topic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partial {
    pub window_end: i64,
    pub partition: i32,
    #[serde(rename = "final")]
    pub is_final: bool,
    pub posts: Vec<Ranked>,
}

/// One input record, decoded by topic.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Like(LikeChanged),
    Comment(CommentAdded),
    Partial(Partial),
}

#[derive(Debug, Clone)]
pub struct Topics {
    pub likes: String,
    pub comments: String,
    pub partials: String,
    pub trending_posts: String,
}

pub fn config(kafka: &Kafka) -> (StreamsConfig, Topics) {
    let likes = kafka.topic(&LIKES);
    let comments = kafka.topic(&COMMENTS);
    let mut config = StreamsConfig::new(
        kafka,
        APPLICATION_ID,
        vec![likes.clone(), comments.clone()],
        &[LIKED, SLICES, PROGRESS, PARTIALS],
    );
    config.task_idle = streams::TaskIdle::Never;
    // Ranking an hour of slices per batch is the cost of "update" boards: at most five a
    // second per instance.
    config.batch_linger = std::time::Duration::from_millis(200);
    let partials = config.repartition("partials");
    let topics = Topics {
        likes,
        comments,
        partials,
        trending_posts: kafka.topic(&TRENDING_POSTS),
    };
    (config, topics)
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The processor (both stages).
pub struct Trending {
    pub topics: Topics,
    pub model: Model,
    /// Tasks that counted a reaction in the current batch (stage 1, "update").
    dirty: HashMap<i32, bool>,
    /// The last update partial sent per task, and the last board published (stage 2): sent
    /// again only when different.
    sent: HashMap<i32, Partial>,
    board: Option<TrendingPosts>,
}

impl Trending {
    pub fn new(topics: Topics, model: Model) -> Self {
        Trending {
            topics,
            model,
            dirty: HashMap::new(),
            sent: HashMap::new(),
            board: None,
        }
    }

    fn size(&self) -> i64 {
        self.model.windows.size_ms
    }

    fn advance(&self) -> i64 {
        self.model.windows.advance_ms
    }

    /// Stage 1: a like, an unlike or a comment of `post` at `at_ms`.
    fn react(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        post: &str,
        at_ms: i64,
        delta: Engagement,
    ) -> anyhow::Result<()> {
        // Windows this record's stream time closes are ranked without it.
        self.close_windows(ctx)?;
        let minute = at_ms.div_euclid(self.advance()) * self.advance();
        let latest = streams::Window {
            start: minute,
            end: minute + self.size(),
        };
        if self.model.windows.is_closed(&latest, clock(ctx, CLOCK)?) {
            ctx.record_late_drop(1);
            return Ok(());
        }
        let key = window_key(minute, post);
        let mut slice: Engagement = ctx.get(SLICES, &key)?.unwrap_or_default();
        slice.likes += delta.likes;
        slice.comments += delta.comments;
        ctx.put(SLICES, &key, &slice)?;
        self.dirty.insert(ctx.partition(), true);
        Ok(())
    }

    /// The top posts of this task in the window ending at `end`.
    fn rank(&self, ctx: &ProcessorContext<'_>, end: i64) -> anyhow::Result<Vec<Ranked>> {
        let slices: Vec<(Vec<u8>, Engagement)> = ctx.range(
            SLICES,
            &window_key(end - self.size(), ""),
            Some(&window_key(end, "")),
        )?;
        let mut sums: BTreeMap<String, Engagement> = BTreeMap::new();
        for (key, slice) in slices {
            let post = String::from_utf8_lossy(&key[8..]).into_owned();
            let sum = sums.entry(post).or_default();
            sum.likes += slice.likes;
            sum.comments += slice.comments;
        }
        Ok(top(
            self.model.top,
            sums.into_iter().map(|(post_id, e)| Ranked {
                score: score(e.likes, e.comments),
                post_id,
                likes: e.likes,
                comments: e.comments,
            }),
        ))
    }

    /// Stage 1: ranks every window of this task that stream time closed since the last call
    /// and sends the partials; deletes slices no open window needs.
    fn close_windows(&mut self, ctx: &mut ProcessorContext<'_>) -> anyhow::Result<()> {
        let advance = self.advance();
        let closable = (clock(ctx, CLOCK)?.saturating_sub(self.model.windows.grace_ms))
            .div_euclid(advance)
            * advance;
        let Some(closed) = ctx.get::<i64>(PROGRESS, b"closed")? else {
            // The task's first record: no window before it has anything to rank.
            ctx.put(PROGRESS, b"closed", &closable)?;
            return Ok(());
        };
        if closable <= closed {
            return Ok(());
        }
        let mut end = closed + advance;
        while end <= closable {
            let posts = self.rank(ctx, end)?;
            if !posts.is_empty() {
                let partial = Partial {
                    window_end: end,
                    partition: ctx.partition(),
                    is_final: true,
                    posts,
                };
                ctx.emit(&self.topics.partials, MERGE_KEY, &partial)?;
            }
            end += advance;
        }
        ctx.put(PROGRESS, b"closed", &closable)?;
        // A slice at minute m is in the windows ending in (m, m + size]: all closed now.
        let dead: Vec<(Vec<u8>, Engagement)> = ctx.range(
            SLICES,
            &window_key(i64::MIN / 2, ""),
            Some(&window_key(closable - self.size() + 1, "")),
        )?;
        for (key, _) in dead {
            ctx.delete(SLICES, &key)?;
        }
        Ok(())
    }

    /// Stage 2: a partition's partial.
    fn merge(&mut self, ctx: &mut ProcessorContext<'_>, partial: Partial) -> anyhow::Result<()> {
        let merged = ctx.get::<i64>(PROGRESS, b"merged")?;
        if merged.is_some_and(|m| partial.window_end <= m) {
            // The window's final board is out: this partition's stream time lagged too far.
            ctx.record_late_drop(1);
            return self.finalize(ctx);
        }
        let end = partial.window_end;
        let key = window_key(end, &format!("{:05}", partial.partition));
        ctx.put(PARTIALS, &key, &partial)?;
        if self.model.emit == Emit::OnUpdate {
            let board = self.board(ctx, end, false)?;
            let newer = self.board.as_ref().is_none_or(|b| {
                b.window_end < board.window_end
                    || (b.window_end == board.window_end && b.posts != board.posts)
            });
            if newer {
                self.publish(ctx, board)?;
            }
        }
        self.finalize(ctx)
    }

    /// The merged board of the window ending at `end` from the partials stored.
    fn board(
        &self,
        ctx: &ProcessorContext<'_>,
        end: i64,
        is_final: bool,
    ) -> anyhow::Result<TrendingPosts> {
        let partials: Vec<(Vec<u8>, Partial)> = ctx.prefix(PARTIALS, &window_key(end, ""))?;
        Ok(TrendingPosts {
            window_start: at(end - self.size()),
            window_end: at(end),
            is_final,
            posts: top(
                self.model.top,
                partials.into_iter().flat_map(|(_, p)| p.posts),
            ),
        })
    }

    fn publish(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        board: TrendingPosts,
    ) -> anyhow::Result<()> {
        ctx.emit(
            &self.topics.trending_posts,
            &board.window_end.to_rfc3339(),
            &board,
        )?;
        self.board = Some(board);
        Ok(())
    }

    /// Stage 2: publishes the final board of every window an advance past its close.
    fn finalize(&mut self, ctx: &mut ProcessorContext<'_>) -> anyhow::Result<()> {
        let horizon = clock(ctx, MERGE_CLOCK)?
            .saturating_sub(self.model.windows.grace_ms)
            .saturating_sub(self.advance());
        let due: Vec<(Vec<u8>, Partial)> = ctx.range(
            PARTIALS,
            &window_key(i64::MIN / 2, ""),
            Some(&window_key(horizon + 1, "")),
        )?;
        let mut ends: Vec<i64> = due.iter().map(|(_, p)| p.window_end).collect();
        ends.dedup();
        for end in ends {
            let board = self.board(ctx, end, true)?;
            self.publish(ctx, board)?;
            ctx.put(PROGRESS, b"merged", &end)?;
        }
        for (key, _) in due {
            ctx.delete(PARTIALS, &key)?;
        }
        Ok(())
    }
}

/// The best `n` of `candidates` by score (those with a positive score), ties by post id.
pub fn top(n: usize, candidates: impl IntoIterator<Item = Ranked>) -> Vec<Ranked> {
    let mut best = TopN::new(n);
    let mut by_id = HashMap::new();
    for ranked in candidates {
        if ranked.score > 0 {
            best.offer(ranked.post_id.clone(), ranked.score);
            by_id.insert(ranked.post_id.clone(), ranked);
        }
    }
    best.into_sorted()
        .into_iter()
        .filter_map(|(id, _)| by_id.remove(&id))
        .collect()
}

impl streams::Processor for Trending {
    type Input = Input;

    fn decode(&self, topic: &str, payload: &[u8]) -> Result<Input, String> {
        let t = &self.topics;
        if topic == t.likes {
            shared::consumer::json(payload).map(Input::Like)
        } else if topic == t.comments {
            shared::consumer::json(payload).map(Input::Comment)
        } else if topic == t.partials {
            shared::consumer::json(payload).map(Input::Partial)
        } else {
            Err(format!("not an input of {APPLICATION_ID}: {topic}"))
        }
    }

    fn key_of<'v>(&self, _topic: &str, input: &'v Input) -> Option<PayloadKey<'v>> {
        match input {
            Input::Like(l) => Some(PayloadKey::new("post_id", &l.post_id)),
            Input::Comment(c) => Some(PayloadKey::new("post_id", &c.post_id)),
            Input::Partial(_) => Some(PayloadKey::new("the merge key", MERGE_KEY)),
        }
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        _key: Option<&str>,
        input: Input,
    ) -> Result<(), HandlerError> {
        match input {
            Input::Like(like) => {
                like.validate().map_err(HandlerError::Permanent)?;
                advance_clock(ctx, CLOCK, like.at.timestamp_millis())?;
                let key = format!("{}/{}", like.post_id, like.user_id);
                let likes_now = ctx.get_raw(LIKED, key.as_bytes())?.is_some();
                if likes_now == like.liked {
                    return Ok(()); // changes nothing (see post_counts)
                }
                let delta = if like.liked {
                    ctx.put_raw(LIKED, key.as_bytes(), Some(b"1".to_vec()))?;
                    1
                } else {
                    ctx.delete(LIKED, key.as_bytes())?;
                    -1
                };
                let engagement = Engagement {
                    likes: delta,
                    comments: 0,
                };
                self.react(ctx, &like.post_id, like.at.timestamp_millis(), engagement)?;
            }
            Input::Comment(comment) => {
                comment.validate().map_err(HandlerError::Permanent)?;
                advance_clock(ctx, CLOCK, comment.at.timestamp_millis())?;
                let engagement = Engagement {
                    likes: 0,
                    comments: 1,
                };
                self.react(
                    ctx,
                    &comment.post_id,
                    comment.at.timestamp_millis(),
                    engagement,
                )?;
            }
            Input::Partial(partial) => {
                let at = ctx.timestamp_ms().unwrap_or(partial.window_end);
                advance_clock(ctx, MERGE_CLOCK, at)?;
                self.merge(ctx, partial)?;
            }
        }
        Ok(())
    }

    /// "update": this task's top posts of the open window, when they changed.
    fn end_batch(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), HandlerError> {
        if self.dirty.remove(&ctx.partition()).is_none() || self.model.emit != Emit::OnUpdate {
            return Ok(());
        }
        let end = clock(ctx, CLOCK)?.div_euclid(self.advance()) * self.advance() + self.advance();
        let partial = Partial {
            window_end: end,
            partition: ctx.partition(),
            is_final: false,
            posts: self.rank(ctx, end)?,
        };
        if self.sent.get(&ctx.partition()) != Some(&partial) {
            ctx.emit(&self.topics.partials, MERGE_KEY, &partial)?;
            self.sent.insert(ctx.partition(), partial);
        }
        Ok(())
    }
}

/// Trending posts on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "trending-posts"
    }
    fn about(&self) -> &'static str {
        "Streams: likes + comments → 1-hour windows every minute → top 10 per partition → merged → trending_posts."
    }
    fn streams(&self, kafka: &Kafka) -> Vec<StreamsConfig> {
        vec![config(kafka).0]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let (config, topics) = config(&ctx.kafka);
        let trending = Trending::new(topics, resources.trending);
        let handle = streams::start(
            &ctx.kafka,
            ctx.state(config),
            trending,
            ctx.shutdown.clone(),
        )
        .await?;
        Ok(shared::service::Running::new().streams(Arc::new(handle)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(id: &str, likes: i64, comments: i64) -> Ranked {
        Ranked {
            post_id: id.into(),
            score: score(likes, comments),
            likes,
            comments,
        }
    }

    #[test]
    fn a_comment_weighs_three_likes_and_likes_never_count_below_zero() {
        assert_eq!(score(2, 1), 5);
        assert_eq!(score(-4, 1), 3);
        assert_eq!(score(0, 0), 0);
    }

    #[test]
    fn the_top_is_by_score_then_post_id_and_drops_zero_scores() {
        let board = top(
            2,
            [
                ranked("b", 3, 0),
                ranked("a", 0, 1),
                ranked("c", 9, 0),
                ranked("d", 0, 0),
            ],
        );
        let ids: Vec<&str> = board.iter().map(|r| r.post_id.as_str()).collect();
        assert_eq!(ids, ["c", "a"], "a and b tie at 3: the smaller id wins");
        assert!(top(10, [ranked("x", -1, 0)]).is_empty());
    }

    #[test]
    fn merging_partition_tops_equals_the_top_of_everything() {
        // 32 partitions × 40 posts each with pseudo-random engagement.
        let mut all = Vec::new();
        let mut partials = Vec::new();
        let mut seed = 7u64;
        for p in 0..32 {
            let mut posts = Vec::new();
            for i in 0..40 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let (l, c) = ((seed >> 33) % 50, (seed >> 45) % 7);
                posts.push(ranked(&format!("p{p:02}-{i:02}"), l as i64, c as i64));
            }
            all.extend(posts.clone());
            partials.extend(top(TOP, posts));
        }
        assert_eq!(top(TOP, partials), top(TOP, all));
    }
}
