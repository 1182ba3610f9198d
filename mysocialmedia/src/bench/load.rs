//! The launch-day load and its ground truth: likes, unlikes, duplicate likes and comments at a
//! steady rate, one viral post taking a fixed share and the rest Zipf-distributed, produced to
//! `likes` and `comments` keyed by post — and, for every post, the set of users who like it and
//! its comment count as the bench itself computes them.
//!
//! One thread sends everything through one producer, in the order it decides the events: with
//! the idempotent producer, each partition (so each post) keeps that order, which is the order
//! the counting application applies them in. That is what makes the ground truth exact: an
//! unlike sent after a like is applied after it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::Distribution as _;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use shared::{Event, Kafka};
use tokio_util::sync::CancellationToken;

use crate::events::{CommentAdded, LikeChanged};

/// The mix of reactions (the rest, 80 %, are likes by a user drawn at random).
pub const COMMENTS: f64 = 0.10;
/// Unlikes by a user who likes the post now.
pub const UNLIKES: f64 = 0.05;
/// Likes again by a user who likes the post now (a retry, a double tap): they change nothing.
pub const DUPLICATES: f64 = 0.05;

/// What to send.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rate: u64,
    /// Sent for this long in all (warm-up and measured).
    pub length: Duration,
    pub viral_share: f64,
    pub zipf_s: f64,
    pub users: u32,
    pub seed: u64,
    /// The producer's `linger.ms`.
    pub linger_ms: u64,
}

/// Counters of the load, read while it runs.
#[derive(Debug, Default)]
pub struct Sent {
    /// Handed to the producer.
    pub queued: AtomicU64,
    /// Acknowledged by the broker.
    pub acked: AtomicU64,
    /// Refused by the broker (after the producer's retries): the ground truth is then wrong.
    pub refused: AtomicU64,
    /// The most events the sender was ever behind its schedule (it catches up at once).
    pub behind_max: AtomicU64,
}

/// The users who like one post now.
#[derive(Debug, Default, Clone)]
pub struct Likers {
    users: Vec<u32>,
    /// User → index in `users`.
    index: HashMap<u32, u32>,
}

impl Likers {
    /// A like by `user`; whether it changed the set.
    fn like(&mut self, user: u32) -> bool {
        if self.index.contains_key(&user) {
            return false;
        }
        self.index.insert(user, self.users.len() as u32);
        self.users.push(user);
        true
    }

    /// One of the likers, at random.
    fn any(&self, rng: &mut impl Rng) -> Option<u32> {
        (!self.users.is_empty()).then(|| self.users[rng.random_range(0..self.users.len())])
    }

    /// An unlike by `user`, a liker.
    fn unlike(&mut self, user: u32) {
        let Some(i) = self.index.remove(&user) else {
            return;
        };
        self.users.swap_remove(i as usize);
        if let Some(&moved) = self.users.get(i as usize) {
            self.index.insert(moved, i);
        }
    }

    pub fn len(&self) -> u64 {
        self.users.len() as u64
    }
}

/// What the events sent add up to.
#[derive(Debug, Default)]
pub struct Truth {
    pub likers: Vec<Likers>,
    pub comments: Vec<u64>,
    pub tally: Tally,
}

/// The events sent, by kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Likes by a user who did not like the post yet.
    pub new_likes: u64,
    /// Likes by a user drawn at random who already liked the post (they change nothing).
    pub repeated_likes: u64,
    /// Likes sent again on purpose by a liker (they change nothing).
    pub duplicate_likes: u64,
    pub unlikes: u64,
    pub comments: u64,
}

/// Counts deliveries into [`Sent`].
struct Acks(Arc<Sent>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.acked.fetch_add(1, Ordering::Relaxed),
            Err((err, _)) => {
                tracing::warn!(%err, "a bench event was refused");
                self.0.refused.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// One event of the load.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Comment,
    /// By a user who likes the post now.
    Unlike(u32),
    /// Again, by a user who likes the post now.
    Duplicate(u32),
    /// By a user drawn at random (who may like the post already).
    Like(u32),
}

/// An event on its way: its topic, key and serialized form.
struct Outgoing<'a> {
    topic: &'a str,
    key: &'a str,
    event_id: String,
    event_type: &'static str,
    payload: Vec<u8>,
    at_ms: i64,
}

impl<'a> Outgoing<'a> {
    fn of<E: Event>(topic: &'a str, key: &'a str, event: &E) -> anyhow::Result<Self> {
        Ok(Outgoing {
            topic,
            key,
            event_id: event.event_id(),
            event_type: E::TYPE,
            payload: serde_json::to_vec(event)?,
            at_ms: event.event_time().timestamp_millis(),
        })
    }
}

/// Sends the load for `plan.length` from `started` (or until `stop`), reporting each event that
/// changes a count (post index, event time in µs) on `changed` before it is sent; flushes and
/// returns the ground truth.
#[allow(clippy::too_many_arguments)]
pub fn run(
    kafka: &Kafka,
    (likes, comments): (&str, &str),
    posts: &[String],
    plan: &Plan,
    sent: &Arc<Sent>,
    changed: &mpsc::Sender<(u32, i64)>,
    stop: &CancellationToken,
    started: Instant,
) -> anyhow::Result<Truth> {
    anyhow::ensure!(!posts.is_empty(), "no post to react to");
    let producer: ThreadedProducer<Acks> = kafka
        .producer_config()
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("linger.ms", plan.linger_ms.to_string())
        .create_with_context(Acks(Arc::clone(sent)))
        .context("creating the load's producer")?;
    let mut rng = StdRng::seed_from_u64(plan.seed);
    // Ranks 1..=posts-1 over every post but the viral one (index 0).
    let zipf = (posts.len() > 1)
        .then(|| rand_distr::Zipf::new((posts.len() - 1) as f64, plan.zipf_s))
        .transpose()
        .context("--zipf-s")?;
    let mut truth = Truth {
        likers: vec![Likers::default(); posts.len()],
        comments: vec![0; posts.len()],
        tally: Tally::default(),
    };
    let total = (plan.rate as f64 * plan.length.as_secs_f64()) as u64;
    let mut n = 0u64;
    while n < total && !stop.is_cancelled() {
        let due = ((started.elapsed().as_secs_f64() * plan.rate as f64) as u64).min(total);
        sent.behind_max
            .fetch_max(due.saturating_sub(n), Ordering::Relaxed);
        while n < due {
            let post = match &zipf {
                Some(zipf) if !rng.random_bool(plan.viral_share) => zipf.sample(&mut rng) as usize,
                _ => 0,
            };
            let post_id = posts[post].as_str();
            let at = Utc::now();
            let roll: f64 = rng.random();
            let likers = &mut truth.likers[post];
            // What the event is: a comment, or a like/unlike by a user.
            let kind = if roll < COMMENTS {
                Kind::Comment
            } else if roll < COMMENTS + UNLIKES
                && let Some(user) = likers.any(&mut rng)
            {
                Kind::Unlike(user)
            } else if roll < COMMENTS + UNLIKES + DUPLICATES
                && let Some(user) = likers.any(&mut rng)
            {
                Kind::Duplicate(user)
            } else {
                Kind::Like(rng.random_range(0..plan.users))
            };
            let changes = match kind {
                Kind::Comment => {
                    truth.comments[post] += 1;
                    truth.tally.comments += 1;
                    true
                }
                Kind::Unlike(user) => {
                    likers.unlike(user);
                    truth.tally.unlikes += 1;
                    true
                }
                Kind::Duplicate(_) => {
                    truth.tally.duplicate_likes += 1;
                    false
                }
                Kind::Like(user) => {
                    let new = likers.like(user);
                    if new {
                        truth.tally.new_likes += 1;
                    } else {
                        truth.tally.repeated_likes += 1;
                    }
                    new
                }
            };
            if changes {
                let _ = changed.send((post as u32, at.timestamp_micros()));
            }
            let outgoing = match kind {
                Kind::Comment => {
                    let event = CommentAdded {
                        event_id: shared::event::new_event_id(),
                        comment_id: shared::event::new_event_id(),
                        post_id: post_id.to_owned(),
                        user_id: user_id(rng.random_range(0..plan.users)),
                        text: format!("launch day comment {n}"),
                        at,
                    };
                    Outgoing::of(comments, post_id, &event)?
                }
                Kind::Unlike(user) | Kind::Duplicate(user) | Kind::Like(user) => {
                    let event = LikeChanged {
                        event_id: shared::event::new_event_id(),
                        post_id: post_id.to_owned(),
                        user_id: user_id(user),
                        liked: !matches!(kind, Kind::Unlike(_)),
                        at,
                    };
                    Outgoing::of(likes, post_id, &event)?
                }
            };
            send(&producer, &outgoing)?;
            sent.queued.fetch_add(1, Ordering::Relaxed);
            n += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    producer
        .flush(Duration::from_secs(120))
        .context("flushing the load")?;
    Ok(truth)
}

pub fn user_id(user: u32) -> String {
    format!("user_{user}")
}

/// Hands `event` to the producer, waiting while its queue is full; the headers are those of
/// [`shared::EventProducer::publish`] but `produced_at`.
fn send(producer: &ThreadedProducer<Acks>, event: &Outgoing<'_>) -> anyhow::Result<()> {
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "event_id",
            value: Some(event.event_id.as_str()),
        })
        .insert(Header {
            key: "event_type",
            value: Some(event.event_type),
        });
    let mut record = BaseRecord::to(event.topic)
        .key(event.key)
        .payload(&event.payload)
        .timestamp(event.at_ms)
        .headers(headers);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((err, _)) => return Err(err).context("the producer refused an event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn likers_are_a_set() {
        let mut likers = Likers::default();
        assert!(likers.like(1));
        assert!(likers.like(2));
        assert!(!likers.like(1));
        assert!(likers.like(3));
        likers.unlike(1);
        assert_eq!(likers.len(), 2);
        assert!(likers.like(1), "a former liker likes again");
        likers.unlike(3);
        likers.unlike(3);
        assert_eq!(likers.len(), 2);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..20 {
            let user = likers.any(&mut rng).expect("likers");
            assert!(user == 1 || user == 2);
        }
    }
}
