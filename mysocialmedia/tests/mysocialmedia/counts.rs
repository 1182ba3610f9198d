//! The counts are exact: after a run of likes, duplicate likes, unlikes and comments — during
//! which the counting application is SIGKILLed twice, and restarted once with its state
//! directory deleted — every post's counts equal the ground truth, on the query side and as the
//! last record per post on `posts_with_counts`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::Message;
use reqwest::StatusCode;
use serde_json::json;
use shared::testkit::TestKafka;

use crate::{client, create_post, get, set_like, spawn, visible};

/// `mysocialmedia post-counts` in a process of its own; SIGKILLed when dropped.
struct Counter(Child);

impl Counter {
    fn start(kafka: &TestKafka, state: &std::path::Path, data: &std::path::Path) -> Counter {
        let child = Command::new(env!("CARGO_BIN_EXE_mysocialmedia"))
            .arg("post-counts")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(state)
            .arg("--data-dir")
            .arg(data)
            .env("KAFKA_BOOTSTRAP_SERVERS", kafka.kafka().bootstrap_servers())
            .env("TOPIC_PREFIX", kafka.kafka().prefix())
            // The killed member stays in the group until its session times out: keep it short.
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("KAFKA_HEARTBEAT_INTERVAL_MS", "500")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Counter(child)
    }

    fn kill(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
        self.0.wait().unwrap();
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One reaction of the scripted run.
#[derive(Debug, Clone, Copy)]
enum Reaction {
    Like(usize),
    Unlike(usize),
    Comment(usize),
}

/// A deterministic script per post: likes by 40 users with repeats, unlikes (some of users who
/// never liked), comments.
fn script(post: usize, len: usize) -> Vec<Reaction> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ post as u64;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let user = (seed >> 8) as usize % 40;
            match seed % 10 {
                0..=5 => Reaction::Like(user),
                6 | 7 => Reaction::Unlike(user),
                _ => Reaction::Comment(user),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_equal_the_ground_truth_across_sigkills_and_a_lost_state_directory() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    kafka.provision(mysocialmedia::topics::ALL).await.unwrap();
    // The child cannot create topics on an embedded broker: its internal topics are made here.
    let (counts, _) = mysocialmedia::post_counts::config(kafka.kafka());
    shared::streams::app::provision_internal_topics(kafka.kafka(), &counts)
        .await
        .unwrap();
    let services = [
        "posting-service",
        "like-comment-service",
        "refresh-feed-service",
    ];
    let app = spawn(&kafka, &services, dir.path()).await;
    let (url, http) = (app.url(), client());
    let (state, data) = (
        dir.path().join("counter-state"),
        dir.path().join("counter-data"),
    );
    let mut counter = Counter::start(&kafka, &state, &data);

    let mut posts = Vec::new();
    for i in 0..4u8 {
        posts.push(create_post(&http, &url, &format!("author{i}"), "launch", [i, 0, 0]).await);
    }
    for post in &posts {
        visible(&http, &url, post).await;
    }

    // Each post's script in order on one task (a like and its unlike must not swap), the four
    // posts concurrently; the ground truth alongside.
    const LEN: usize = 150;
    let sent = Arc::new(AtomicUsize::new(0));
    let runs = posts.iter().enumerate().map(|(i, post)| {
        let (http, url, post, sent) = (http.clone(), url.clone(), post.clone(), Arc::clone(&sent));
        async move {
            let (mut likers, mut comments) = (BTreeSet::new(), 0u64);
            for reaction in script(i, LEN) {
                match reaction {
                    Reaction::Like(u) | Reaction::Unlike(u) => {
                        let liked = matches!(reaction, Reaction::Like(_));
                        let status = set_like(&http, &url, &post, &format!("user{u}"), liked).await;
                        assert_eq!(status, StatusCode::ACCEPTED);
                        if liked {
                            likers.insert(u);
                        } else {
                            likers.remove(&u);
                        }
                    }
                    Reaction::Comment(u) => {
                        let body = json!({"user_id": format!("user{u}"), "text": "🔥"});
                        let (status, answer) =
                            crate::post(&http, &format!("{url}/v1/posts/{post}/comments"), &body)
                                .await;
                        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
                        comments += 1;
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
                // Spread the run over the kills.
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            (post, likers.len() as u64, comments)
        }
    });
    let truth = tokio::spawn(futures::future::join_all(runs));
    let total = LEN * posts.len();
    let at = |share: usize| {
        let sent = Arc::clone(&sent);
        async move {
            crate::eventually(Duration::from_secs(120), "reactions sent", || async {
                (sent.load(Ordering::Relaxed) >= total * share / 3).then_some(())
            })
            .await
        }
    };
    at(1).await;
    counter.kill();
    counter = Counter::start(&kafka, &state, &data);
    at(2).await;
    counter.kill();
    std::fs::remove_dir_all(&state).unwrap();
    let _counter = Counter::start(&kafka, &state, &data);
    drop(counter);
    let truth: BTreeMap<String, (u64, u64)> = truth
        .await
        .unwrap()
        .into_iter()
        .map(|(post, likes, comments)| (post, (likes, comments)))
        .collect();

    for (post, (likes, comments)) in &truth {
        crate::eventually(
            Duration::from_secs(180),
            &format!("{post}: {likes} likes, {comments} comments"),
            || async {
                let (_, view) = get(&http, &format!("{url}/v1/posts/{post}")).await;
                (view["likes"] == *likes && view["comments"] == *comments).then_some(())
            },
        )
        .await;
    }
    // The compacted topic's last word on each post is the truth too.
    let topic = kafka
        .kafka()
        .topic(&mysocialmedia::topics::POSTS_WITH_COUNTS);
    let records = kafka
        .read_all(&topic, Duration::from_secs(3))
        .await
        .unwrap();
    let mut last: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for record in &records {
        let row: mysocialmedia::events::PostWithCounts =
            serde_json::from_slice(record.payload().unwrap()).unwrap();
        last.insert(row.post_id, (row.likes, row.comments));
    }
    assert_eq!(last, truth);
    app.stop().await.unwrap();
}
