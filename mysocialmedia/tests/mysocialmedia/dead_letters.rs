//! Undecodable, invalid and mis-keyed records are dead-lettered by every application that reads
//! them — naming itself and the reason — and the services go on.

use std::time::Duration;

use chrono::Utc;
use rdkafka::message::OwnedHeaders;
use reqwest::StatusCode;
use serde_json::json;
use shared::EventProducer;
use shared::testkit::TestKafka;

use crate::{client, create_post, get, set_like, spawn, visible};
use mysocialmedia::topics::{COMMENTS, LIKES, POSTS, POSTS_WITH_COUNTS};

#[tokio::test(flavor = "multi_thread")]
async fn bad_records_are_dead_lettered_by_every_reader_and_counting_goes_on() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, &[], dir.path()).await;
    let (url, http) = (app.url(), client());
    let post_id = create_post(&http, &url, "ann", "before", [5, 5, 5]).await;
    visible(&http, &url, &post_id).await;

    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let send = |spec: &'static shared::TopicSpec, key: String, payload: String| {
        let (producer, topic) = (producer.clone(), kafka.kafka().topic(spec));
        async move {
            producer
                .send(
                    &topic,
                    Some(key.as_bytes()),
                    Some(payload.as_bytes()),
                    OwnedHeaders::new(),
                    None,
                )
                .await
                .unwrap();
        }
    };
    send(&POSTS, "ann".into(), "{not json".into()).await;
    send(&LIKES, post_id.clone(), "{not json".into()).await;
    send(&COMMENTS, post_id.clone(), "[1,2]".into()).await;
    send(
        &POSTS_WITH_COUNTS,
        post_id.clone(),
        "{\"post_id\": 7}".into(),
    )
    .await;
    // A valid like under another post's key: it would be counted where nobody looks.
    let other = shared::event::new_event_id();
    let miskeyed = json!({"event_id": "m1", "post_id": post_id, "user_id": "eve", "liked": true,
        "at": Utc::now()});
    send(&LIKES, other, miskeyed.to_string()).await;
    // Valid JSON, invalid content: a comment with an empty text.
    let empty = json!({"event_id": "m2", "comment_id": shared::event::new_event_id(),
        "post_id": post_id, "user_id": "eve", "text": " ", "at": Utc::now()});
    send(&COMMENTS, post_id.clone(), empty.to_string()).await;

    // Counting goes on behind them.
    assert_eq!(
        set_like(&http, &url, &post_id, "bob", true).await,
        StatusCode::ACCEPTED
    );
    crate::eventually(Duration::from_secs(60), "bob's like counted", || async {
        let (_, view) = get(&http, &format!("{url}/v1/posts/{post_id}")).await;
        (view["likes"] == 1 && view["comments"] == 0).then_some(())
    })
    .await;

    let prefix = kafka.kafka().prefix();
    let app_name = |name: &str| format!("{prefix}{name}");
    let readers = |letters: &[shared::dlq::DeadLetter]| {
        let mut names: Vec<String> = letters
            .iter()
            .map(|l| format!("{} {}", l.application.clone().unwrap(), l.kind))
            .collect();
        names.sort();
        names
    };
    let topic = |spec| kafka.kafka().topic(spec);
    let wait = Duration::from_secs(60);
    let posts = kafka.read_dlq(&topic(&POSTS), 1, wait).await.unwrap();
    assert_eq!(
        readers(&posts),
        [format!("{} decode", app_name("mysocialmedia-counts"))]
    );
    // likes: the counting and the trending applications, each the bad JSON and the mis-keyed like.
    let likes = kafka.read_dlq(&topic(&LIKES), 4, wait).await.unwrap();
    let mut expected = vec![
        format!("{} decode", app_name("mysocialmedia-counts")),
        format!("{} decode", app_name("mysocialmedia-trending")),
        format!("{} rejected", app_name("mysocialmedia-counts")),
        format!("{} rejected", app_name("mysocialmedia-trending")),
    ];
    expected.sort();
    assert_eq!(readers(&likes), expected, "{likes:#?}");
    assert!(
        likes
            .iter()
            .filter(|l| l.kind == "rejected")
            .all(|l| l.error.contains("post_id")),
        "{likes:#?}"
    );
    let comments = kafka.read_dlq(&topic(&COMMENTS), 4, wait).await.unwrap();
    assert_eq!(readers(&comments), expected, "{comments:#?}");
    assert!(
        comments.iter().any(|l| l.error.contains("text is empty")),
        "{comments:#?}"
    );
    let rows = kafka
        .read_dlq(&topic(&POSTS_WITH_COUNTS), 1, wait)
        .await
        .unwrap();
    assert_eq!(
        rows[0].application,
        Some(app_name("mysocialmedia-refresh-feed"))
    );
    assert!(rows[0].error.contains("PostWithCounts"), "{rows:#?}");
    app.stop().await.unwrap();
}
