//! **Total likes & comments computation** (streams, requirement 2): exact counts per post,
//! joined with the post, to `posts_with_counts` (compacted, key `post_id`), emitted when they
//! change.
//!
//! ```text
//! posts (key user_id) ─▶ re-key by post ─▶ …-posts-by-post-repartition ─┐
//! likes (key post_id) ──────────────────────────────────────────────────┼─▶ [key post_id] ─▶ posts_with_counts
//! comments (key post_id) ───────────────────────────────────────────────┘
//! ```
//!
//! * **Exact likes**: the store `likers` holds one entry per (post, user) who likes it now. A
//!   like of a liker or an unlike of a non-liker changes nothing — likes are a set, so the
//!   command side can publish retries and double taps freely.
//! * **Exact under crashes**: the counts are state of the streams runtime, whose commit protocol
//!   ([`shared::streams`], `docs/STREAMS.md`) applies every input record to the state exactly
//!   once across SIGKILLs and restores (a record re-delivered after a crash is skipped by its
//!   offset). No comment or like is counted twice and none is lost.
//! * **Join**: `posts` is keyed by author; it is re-keyed by post id through a repartition topic
//!   so a post and its reactions meet in one task. Reactions that arrive before their post are
//!   counted; the post is emitted with them when it arrives.
//! * **Hot keys (launch day)**: a viral post's reactions all land on one partition, in one task.
//!   Within a batch, the runtime already writes each store key once (its write overlay), so the
//!   post's counter costs one RocksDB write and one changelog record per batch, however many
//!   likes it got; and this processor emits each changed post once per batch
//!   ([`shared::streams::Processor::end_batch`]), not once per like. A batch of 5,000 likes of
//!   one post is one output record. What remains per like is the likers-set entry (distinct
//!   users need one each). The README's "Launch day" explains the limit.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::Kafka;
use shared::consumer::{HandlerError, PayloadKey};
use shared::streams::{self, ProcessorContext, StreamsConfig};

use crate::events::{CommentAdded, LikeChanged, PostCreated, PostWithCounts};
use crate::topics::{COMMENTS, LIKES, POSTS, POSTS_WITH_COUNTS};

pub const APPLICATION_ID: &str = "mysocialmedia-counts";
/// Post id → [`PostCreated`].
pub const POSTS_STORE: &str = "posts";
/// `<post id>/<user id>` → 1, for every user who likes the post now.
pub const LIKERS: &str = "likers";
/// Post id → [`Counts`].
pub const COUNTS: &str = "counts";

/// A post's counts (the store's value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub likes: u64,
    pub comments: u64,
    /// Event time (ms) of the latest reaction that changed a count.
    pub updated_ms: i64,
}

/// One input record, decoded by topic.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Post(PostCreated),
    Like(LikeChanged),
    Comment(CommentAdded),
}

#[derive(Debug, Clone)]
pub struct Topics {
    pub posts: String,
    pub likes: String,
    pub comments: String,
    pub by_post: String,
    pub posts_with_counts: String,
}

pub fn config(kafka: &Kafka) -> (StreamsConfig, Topics) {
    let posts = kafka.topic(&POSTS);
    let likes = kafka.topic(&LIKES);
    let comments = kafka.topic(&COMMENTS);
    let mut config = StreamsConfig::new(
        kafka,
        APPLICATION_ID,
        vec![posts.clone(), likes.clone(), comments.clone()],
        &[POSTS_STORE, LIKERS, COUNTS],
    );
    // Reactions are not worth waiting for each other: process what is there.
    config.task_idle = streams::TaskIdle::Never;
    let by_post = config.repartition("posts-by-post");
    let topics = Topics {
        posts,
        likes,
        comments,
        by_post,
        posts_with_counts: kafka.topic(&POSTS_WITH_COUNTS),
    };
    (config, topics)
}

/// The processor.
pub struct PostCounts {
    pub topics: Topics,
    /// Posts whose counts (or the post itself) changed in the current batch, per task.
    dirty: HashMap<i32, BTreeSet<String>>,
}

impl PostCounts {
    pub fn new(topics: Topics) -> Self {
        PostCounts {
            topics,
            dirty: HashMap::new(),
        }
    }
}

fn liker_key(post: &str, user: &str) -> Vec<u8> {
    format!("{post}/{user}").into_bytes()
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl streams::Processor for PostCounts {
    type Input = Input;

    fn decode(&self, topic: &str, payload: &[u8]) -> Result<Input, String> {
        let t = &self.topics;
        if topic == t.posts || topic == t.by_post {
            shared::consumer::json(payload).map(Input::Post)
        } else if topic == t.likes {
            shared::consumer::json(payload).map(Input::Like)
        } else if topic == t.comments {
            shared::consumer::json(payload).map(Input::Comment)
        } else {
            Err(format!("not an input of {APPLICATION_ID}: {topic}"))
        }
    }

    fn key_of<'v>(&self, topic: &str, input: &'v Input) -> Option<PayloadKey<'v>> {
        match input {
            Input::Post(p) if topic == self.topics.posts => {
                Some(PayloadKey::new("user_id", &p.user_id))
            }
            Input::Post(p) => Some(PayloadKey::new("post_id", &p.post_id)),
            Input::Like(l) => Some(PayloadKey::new("post_id", &l.post_id)),
            Input::Comment(c) => Some(PayloadKey::new("post_id", &c.post_id)),
        }
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        _key: Option<&str>,
        input: Input,
    ) -> Result<(), HandlerError> {
        let changed = match input {
            Input::Post(post) => {
                post.validate().map_err(HandlerError::Permanent)?;
                if ctx.topic() == self.topics.posts {
                    // Re-key by post: it comes back through the repartition topic.
                    ctx.emit(&self.topics.by_post, &post.post_id, &post)?;
                    return Ok(());
                }
                if ctx.get_raw(POSTS_STORE, post.post_id.as_bytes())?.is_some() {
                    return Ok(()); // the same post again (a producer retry): nothing new
                }
                ctx.put(POSTS_STORE, post.post_id.as_bytes(), &post)?;
                post.post_id
            }
            Input::Like(like) => {
                like.validate().map_err(HandlerError::Permanent)?;
                let key = liker_key(&like.post_id, &like.user_id);
                let likes_now = ctx.get_raw(LIKERS, &key)?.is_some();
                if likes_now == like.liked {
                    return Ok(()); // a like by a liker, an unlike by a non-liker
                }
                let mut counts: Counts = ctx
                    .get(COUNTS, like.post_id.as_bytes())?
                    .unwrap_or_default();
                if like.liked {
                    ctx.put_raw(LIKERS, &key, Some(b"1".to_vec()))?;
                    counts.likes += 1;
                } else {
                    ctx.delete(LIKERS, &key)?;
                    counts.likes = counts.likes.saturating_sub(1);
                }
                counts.updated_ms = like.at.timestamp_millis();
                ctx.put(COUNTS, like.post_id.as_bytes(), &counts)?;
                like.post_id
            }
            Input::Comment(comment) => {
                comment.validate().map_err(HandlerError::Permanent)?;
                let mut counts: Counts = ctx
                    .get(COUNTS, comment.post_id.as_bytes())?
                    .unwrap_or_default();
                counts.comments += 1;
                counts.updated_ms = comment.at.timestamp_millis();
                ctx.put(COUNTS, comment.post_id.as_bytes(), &counts)?;
                comment.post_id
            }
        };
        self.dirty
            .entry(ctx.partition())
            .or_default()
            .insert(changed);
        Ok(())
    }

    /// Emits each post changed in this batch once, with its counts now.
    fn end_batch(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), HandlerError> {
        let Some(dirty) = self.dirty.remove(&ctx.partition()) else {
            return Ok(());
        };
        let emitted = (|| -> anyhow::Result<()> {
            for post_id in &dirty {
                let Some(post) = ctx.get::<PostCreated>(POSTS_STORE, post_id.as_bytes())? else {
                    continue; // reactions before their post: emitted when it arrives
                };
                let counts: Counts = ctx.get(COUNTS, post_id.as_bytes())?.unwrap_or_default();
                let updated_at = if counts.updated_ms > post.at.timestamp_millis() {
                    at(counts.updated_ms)
                } else {
                    post.at
                };
                let row = PostWithCounts {
                    post_id: post.post_id,
                    user_id: post.user_id,
                    caption: post.caption,
                    image: post.image,
                    created_at: post.at,
                    likes: counts.likes,
                    comments: counts.comments,
                    updated_at,
                };
                ctx.emit(&self.topics.posts_with_counts, post_id, &row)?;
            }
            Ok(())
        })();
        if let Err(err) = emitted {
            // Undone by the runtime: emitted with the next batch of this task.
            self.dirty.insert(ctx.partition(), dirty);
            return Err(err.into());
        }
        Ok(())
    }
}

/// The counting application on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "post-counts"
    }
    fn about(&self) -> &'static str {
        "Streams: posts + likes + comments → exact counts per post → posts_with_counts."
    }
    fn streams(&self, kafka: &Kafka) -> Vec<StreamsConfig> {
        vec![config(kafka).0]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        _: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let (config, topics) = config(&ctx.kafka);
        let counts = PostCounts::new(topics);
        let handle =
            streams::start(&ctx.kafka, ctx.state(config), counts, ctx.shutdown.clone()).await?;
        Ok(shared::service::Running::new().streams(Arc::new(handle)))
    }
}
