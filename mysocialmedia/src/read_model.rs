//! The query side's local state: `posts_with_counts` — a compacted topic, i.e. a table —
//! materialized in memory by every process that answers queries, then kept current
//! ([`shared::follow`]).
//!
//! Every instance reads **every** partition (no consumer group), because the feed is a global
//! view: "the newest posts" spans all partitions, and any instance answers any query from its
//! own memory, with no fan-out. A restart reads the topic again from the beginning; compaction
//! keeps that to about one record per post. (Memory grows with the number of posts, ~0.5 KB
//! each: the limit of this design. Past a few million posts, partition the table over
//! instances, as MovieFlix's recommendations service does with the streams runtime, and fan
//! out the feed query.)
//!
//! Post ids are UUIDv7, so the map's key order is creation order and the feed is a reverse
//! range scan. Changes are broadcast to server-sent-event subscribers.
//!
//! A record that is not a valid [`PostWithCounts`], or whose key is not its `post_id`, goes to
//! `posts_with_counts.dlq` (application `mysocialmedia-refresh-feed`) and is counted.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use shared::Kafka;
use shared::consumer::PayloadKey;
use shared::follow::{Progress, follow};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::events::PostWithCounts;
use crate::topics::POSTS_WITH_COUNTS;

/// The name on its dead letters and its (never committed) consumer group.
pub const APPLICATION: &str = "mysocialmedia-refresh-feed";

/// `posts_with_counts`, in memory.
pub struct ReadModel {
    posts: RwLock<BTreeMap<String, PostWithCounts>>,
    updates: broadcast::Sender<PostWithCounts>,
    pub progress: Arc<Progress>,
}

impl ReadModel {
    /// An empty model (tests of the query logic; [`ReadModel::start`] fills one from Kafka).
    pub fn empty() -> Arc<Self> {
        Arc::new(ReadModel {
            posts: RwLock::new(BTreeMap::new()),
            updates: broadcast::channel(4096).0,
            progress: Arc::default(),
        })
    }

    /// Starts reading `posts_with_counts` from the beginning, until `shutdown`.
    pub async fn start(kafka: &Kafka, shutdown: CancellationToken) -> anyhow::Result<Arc<Self>> {
        let model = ReadModel::empty();
        let reader = Arc::clone(&model);
        follow(
            kafka,
            &kafka.topic(&POSTS_WITH_COUNTS),
            APPLICATION,
            shutdown,
            Arc::clone(&model.progress),
            move |message| reader.apply(message),
        )
        .await?;
        Ok(model)
    }

    /// Applies one record of `posts_with_counts` (a tombstone removes the post).
    fn apply(&self, message: &OwnedMessage) -> Result<(), String> {
        let key = message
            .key()
            .map(std::str::from_utf8)
            .transpose()
            .map_err(|err| format!("key is not UTF-8: {err}"))?;
        let Some(payload) = message.payload() else {
            let key = key.ok_or("a tombstone needs a key")?;
            self.posts.write().expect("read model lock").remove(key);
            return Ok(());
        };
        let post: PostWithCounts = shared::consumer::json(payload)?;
        shared::consumer::check_key(key, PayloadKey::new("post_id", &post.post_id))?;
        crate::events::validate_post_id("post_id", &post.post_id)?;
        self.insert(post);
        Ok(())
    }

    /// Puts `post` in the model and tells subscribers.
    pub fn insert(&self, post: PostWithCounts) {
        self.posts
            .write()
            .expect("read model lock")
            .insert(post.post_id.clone(), post.clone());
        let _ = self.updates.send(post);
    }

    pub fn get(&self, post_id: &str) -> Option<PostWithCounts> {
        self.posts
            .read()
            .expect("read model lock")
            .get(post_id)
            .cloned()
    }

    /// The newest posts created before `before` (a post id; `None`: the newest of all), at most
    /// `limit`, newest first.
    pub fn feed(&self, before: Option<&str>, limit: usize) -> Vec<PostWithCounts> {
        let posts = self.posts.read().expect("read model lock");
        let upper = before.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        posts
            .range::<str, _>((std::ops::Bound::Unbounded, upper))
            .rev()
            .take(limit)
            .map(|(_, p)| p.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.posts.read().expect("read model lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PostWithCounts> {
        self.updates.subscribe()
    }

    /// Whether the model has read what the topic held when it started.
    pub fn is_caught_up(&self) -> bool {
        self.progress.is_caught_up()
    }
}

/// The read model of a process, started by the first service that needs it and shared by the
/// others (the like/comment service validates against it; the refresh feed service serves it).
#[derive(Default)]
pub struct Shared {
    model: tokio::sync::OnceCell<Arc<ReadModel>>,
}

impl Shared {
    pub async fn get(
        &self,
        kafka: &Kafka,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Arc<ReadModel>> {
        self.model
            .get_or_try_init(|| ReadModel::start(kafka, shutdown.clone()))
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn post(id: &str) -> PostWithCounts {
        PostWithCounts::sample(id, "ann", 0, 0, Utc::now())
    }

    #[test]
    fn the_feed_is_newest_first_and_pages_by_post_id() {
        let model = ReadModel::empty();
        let ids: Vec<String> = (0..5).map(|_| shared::event::new_event_id()).collect();
        for id in &ids {
            model.insert(post(id));
        }
        let first: Vec<String> = model.feed(None, 2).into_iter().map(|p| p.post_id).collect();
        assert_eq!(first, vec![ids[4].clone(), ids[3].clone()]);
        let next: Vec<String> = model
            .feed(Some(&ids[3]), 10)
            .into_iter()
            .map(|p| p.post_id)
            .collect();
        assert_eq!(next, vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    }
}
