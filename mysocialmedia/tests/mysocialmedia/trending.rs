//! Trending windows, golden cases computed by hand (one hour advancing every minute, grace
//! 2 min, score = likes + 3 × comments, ties by post id). Reactions are written straight to
//! `likes` and `comments` with chosen event times, all for posts on one partition, one at a time
//! (each waits until the application has applied it, so the order is the one written here).
//!
//! Times are minutes:seconds after T0 (50 minutes ago, on a minute boundary). The window
//! "ending 1:00" is [T0 − 59 min, T0 + 1 min).
//!
//! | written | stream time | effect |
//! |---|---|---|
//! | A: like u1 0:10, like u2 0:20, like u1 0:25 (again), comment 0:30 | 0:30 | A: 2 likes, 1 comment |
//! | B: comment 0:40, like u3 0:45, like u4 0:50 | 0:50 | B: 2 likes, 1 comment |
//! | C: like u5 0:55, unlike u5 0:58 | 0:58 | C: nothing net |
//! | E: like 2:30 | 2:30 | closes windows ending ≤ 0:00 (empty) |
//! | B: comment 0:50 — late, but within grace for "1:00" (open until 3:00) | 2:30 | B: 2 comments |
//! | tick: like 3:00 | 3:00 | closes "1:00": partial [B 8, A 5] |
//! | A: comment 0:40 — after "1:00" closed: not in it, in later windows | 3:00 | A: 2 comments |
//! | tick: like 4:00 | 4:00 | closes "2:00": [A 8, B 8] (tie: A's id is smaller); stage 2 finalizes "1:00" (4:00 ≥ 1:00 + 2 + 1) |
//! | tick: like 5:00 | 5:00 | closes "3:00"; stage 2 finalizes "2:00" |
//! | C: comment at −58:00 — every window of it closed | 5:00 | dropped, counted late |
//!
//! Final boards: "1:00" = [B 8 (2 likes, 2 comments), A 5 (2, 1)]; "2:00" = [A 8, B 8].

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use mysocialmedia::app::{Options, TrendingEmit};
use mysocialmedia::events::{CommentAdded, LikeChanged, Ranked, TrendingPosts};
use mysocialmedia::topics::{COMMENTS, LIKES, TRENDING_POSTS};
use rdkafka::Message;
use shared::EventProducer;
use shared::streams::StreamsHandle;
use shared::testkit::TestKafka;

use crate::spawn_with;

/// `n` post ids, in creation order, whose records all go to one partition — not the one that
/// merges the partials.
fn posts_on_one_partition(n: usize) -> (i32, Vec<String>) {
    let partitions = LIKES.partitions;
    let merge = shared::producer::partition_for_key(b"all", partitions);
    let target = (merge + 1) % partitions;
    let mut ids = Vec::new();
    while ids.len() < n {
        let id = shared::event::new_event_id();
        if shared::producer::partition_for_key(id.as_bytes(), partitions) == target {
            ids.push(id);
        }
    }
    (target, ids)
}

enum Step {
    Like(usize, &'static str, bool, i64),
    Comment(usize, i64),
}

fn ranked(post: &str, likes: i64, comments: i64) -> Ranked {
    Ranked {
        post_id: post.to_owned(),
        score: likes + 3 * comments,
        likes,
        comments,
    }
}

/// Runs the table above; every record of `trending_posts` and the late drops counted.
async fn scenario(emit: TrendingEmit) -> (Vec<TrendingPosts>, Vec<String>, u64) {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        trending_emit: emit,
        ..Options::default()
    };
    let app = spawn_with(&kafka, &["trending-posts"], dir.path(), options).await;
    let handle = app.get::<StreamsHandle>().unwrap();
    let (partition, posts) = posts_on_one_partition(7);
    let [a, b, c, e, t3, t4, t5] = [0, 1, 2, 3, 4, 5, 6];
    let t0 = (Utc::now() - TimeDelta::minutes(50))
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap();
    let steps = [
        Step::Like(a, "u1", true, 10),
        Step::Like(a, "u2", true, 20),
        Step::Like(a, "u1", true, 25),
        Step::Comment(a, 30),
        Step::Comment(b, 40),
        Step::Like(b, "u3", true, 45),
        Step::Like(b, "u4", true, 50),
        Step::Like(c, "u5", true, 55),
        Step::Like(c, "u5", false, 58),
        Step::Like(e, "u9", true, 150),
        Step::Comment(b, 50),
        Step::Like(t3, "u9", true, 180),
        Step::Comment(a, 40),
        Step::Like(t4, "u9", true, 240),
        Step::Like(t5, "u9", true, 300),
        Step::Comment(c, -58 * 60),
    ];
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let (likes, comments) = (kafka.kafka().topic(&LIKES), kafka.kafka().topic(&COMMENTS));
    let at = |seconds: i64| -> DateTime<Utc> { t0 + TimeDelta::seconds(seconds) };
    for step in steps {
        let (topic, delivery) = match step {
            Step::Like(post, user, liked, seconds) => {
                let like = LikeChanged {
                    event_id: shared::event::new_event_id(),
                    post_id: posts[post].clone(),
                    user_id: user.to_owned(),
                    liked,
                    at: at(seconds),
                };
                (&likes, producer.publish(&likes, &like.post_id, &like).await)
            }
            Step::Comment(post, seconds) => {
                let comment = CommentAdded {
                    event_id: shared::event::new_event_id(),
                    comment_id: shared::event::new_event_id(),
                    post_id: posts[post].clone(),
                    user_id: "cid".to_owned(),
                    text: "wow".to_owned(),
                    at: at(seconds),
                };
                (
                    &comments,
                    producer
                        .publish(&comments, &comment.post_id, &comment)
                        .await,
                )
            }
        };
        let delivery = delivery.unwrap();
        assert_eq!(delivery.partition, partition);
        crate::eventually(Duration::from_secs(60), "the record applied", || async {
            handle
                .stores
                .applied(partition, topic)
                .unwrap()
                .is_some_and(|a| a.next_offset > delivery.offset)
                .then_some(())
        })
        .await;
    }
    // Both final boards, then anything else that comes.
    let topic = kafka.kafka().topic(&TRENDING_POSTS);
    let boards = crate::eventually(Duration::from_secs(60), "two final boards", || async {
        let records = kafka
            .read_all(&topic, Duration::from_secs(2))
            .await
            .unwrap();
        let boards: Vec<(String, TrendingPosts)> = records
            .iter()
            .map(|r| {
                let key = String::from_utf8(r.key().unwrap().to_vec()).unwrap();
                (key, serde_json::from_slice(r.payload().unwrap()).unwrap())
            })
            .collect();
        (boards.iter().filter(|(_, b)| b.is_final).count() >= 2).then_some(boards)
    })
    .await;
    let late = handle.stats.late_dropped.get();
    app.stop().await.unwrap();
    let (keys, boards): (Vec<String>, Vec<TrendingPosts>) = boards.into_iter().unzip();
    for (key, board) in keys.iter().zip(&boards) {
        assert_eq!(
            *key,
            board.window_end.to_rfc3339(),
            "the key is the window's end"
        );
    }
    let golden = [
        (
            at(60),
            vec![ranked(&posts[b], 2, 2), ranked(&posts[a], 2, 1)],
        ),
        (
            at(120),
            vec![ranked(&posts[a], 2, 2), ranked(&posts[b], 2, 2)],
        ),
    ];
    let finals: Vec<(DateTime<Utc>, Vec<Ranked>)> = boards
        .iter()
        .filter(|b| b.is_final)
        .map(|b| (b.window_end, b.posts.clone()))
        .collect();
    assert_eq!(finals, golden, "final boards");
    for board in &boards {
        assert_eq!(board.window_start, board.window_end - TimeDelta::hours(1));
    }
    (boards, posts, late)
}

#[tokio::test(flavor = "multi_thread")]
async fn emit_on_close_publishes_each_window_once_with_the_hand_computed_ranking() {
    let (boards, _, late) = scenario(TrendingEmit::Close).await;
    assert!(
        boards.iter().all(|b| b.is_final),
        "only final boards: {boards:#?}"
    );
    assert_eq!(boards.len(), 2, "once per window: {boards:#?}");
    assert_eq!(late, 1, "the comment an hour old, dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn emit_on_update_publishes_the_open_window_as_it_changes_then_the_same_finals() {
    let (boards, posts, late) = scenario(TrendingEmit::Update).await;
    let updates: Vec<&TrendingPosts> = boards.iter().filter(|b| !b.is_final).collect();
    assert!(!updates.is_empty(), "{boards:#?}");
    // The first update: the open window ending 1:00 after A's first like.
    let first = &updates[0];
    assert_eq!(
        first.posts.first().map(|r| r.post_id.as_str()),
        Some(posts[0].as_str())
    );
    // C's like showed while it stood; after its unlike, the window's last update drops C.
    let shown = |b: &&&TrendingPosts| b.posts.iter().any(|r| r.post_id == posts[2]);
    assert!(updates.iter().any(|b| shown(&b)), "{updates:#?}");
    let last_of_first_window = updates
        .iter()
        .rfind(|b| b.window_end == first.window_end)
        .unwrap();
    assert!(!shown(&last_of_first_window), "{last_of_first_window:#?}");
    assert!(
        updates.iter().all(|b| b.posts.iter().all(|r| r.likes <= 2)),
        "a repeated like counted: {updates:#?}"
    );
    assert_eq!(late, 1);
}
