//! The command side refuses bad commands with a 4xx that says why, stores nothing and
//! publishes nothing; good ones are answered 202 and reach the query side.

use reqwest::StatusCode;
use serde_json::json;
use shared::testkit::TestKafka;

use crate::{client, create_post, form, get, post, post_form, send, set_like, spawn, visible};

#[tokio::test(flavor = "multi_thread")]
async fn bad_commands_are_4xx_with_the_reason_and_good_ones_reach_the_feed() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, &[], dir.path()).await;
    let (url, http) = (app.url(), client());
    let gif = || Some(mysocialmedia::images::tiny_gif([1, 2, 3]));

    // The post form.
    let long_caption = "x".repeat(2201);
    let too_big = {
        let mut image = mysocialmedia::images::tiny_gif([0, 0, 0]);
        image.resize(mysocialmedia::images::MAX_IMAGE_BYTES + 1, 0);
        image
    };
    let cases = [
        (
            form(None, Some("hi"), gif()),
            StatusCode::BAD_REQUEST,
            "author",
        ),
        (
            form(Some("ann"), None, gif()),
            StatusCode::BAD_REQUEST,
            "caption",
        ),
        (
            form(Some("ann"), Some("hi"), None),
            StatusCode::BAD_REQUEST,
            "image",
        ),
        (
            form(Some("Ann Lee"), Some("hi"), gif()),
            StatusCode::BAD_REQUEST,
            "author",
        ),
        (
            form(Some("9ann"), Some("hi"), gif()),
            StatusCode::BAD_REQUEST,
            "letter",
        ),
        (
            form(Some("ann"), Some("  \n "), gif()),
            StatusCode::BAD_REQUEST,
            "caption is empty",
        ),
        (
            form(Some("ann"), Some(&long_caption), gif()),
            StatusCode::BAD_REQUEST,
            "2201",
        ),
        (
            form(Some("ann"), Some("a\u{0}b"), gif()),
            StatusCode::BAD_REQUEST,
            "control",
        ),
        (
            form(
                Some("ann"),
                Some("hi"),
                Some(b"<svg onload=alert(1)>".to_vec()),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "PNG, JPEG, GIF or WebP",
        ),
        (
            form(Some("ann"), Some("hi"), Some(vec![])),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            form(Some("ann"), Some("hi"), Some(too_big)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "5242880",
        ),
        (
            form(Some("ann"), Some("hi"), gif()).text("mood", "happy"),
            StatusCode::BAD_REQUEST,
            "mood",
        ),
        (
            form(Some("ann"), Some("hi"), gif()).text("author", "bob"),
            StatusCode::BAD_REQUEST,
            "twice",
        ),
    ];
    for (i, (form, status, why)) in cases.into_iter().enumerate() {
        let (got, answer) = post_form(&http, &url, form).await;
        assert_eq!(got, status, "case {i}: {answer}");
        assert!(
            answer.to_string().contains(why),
            "case {i}: {answer} should name {why:?}"
        );
    }
    // A body over the limit is cut off, not buffered: 413 as JSON. The server may close the
    // connection while the client still writes, so the client can miss the answer: it tries a
    // few times and must see the 413 once.
    let mut answered = None;
    for _ in 0..5 {
        let huge = form(Some("ann"), Some("hi"), Some(vec![b'x'; 6 * 1024 * 1024]));
        match http
            .post(format!("{url}/v1/posts"))
            .multipart(huge)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status();
                answered = Some((status, response.json::<serde_json::Value>().await.unwrap()));
                break;
            }
            Err(err) => eprintln!("oversized body: {err}"),
        }
    }
    let (status, answer) = answered.expect("no answer to an oversized body in five tries");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(answer["error"].is_string(), "{answer}");
    // Not a form at all.
    let (status, answer) = post(&http, &format!("{url}/v1/posts"), &json!({"author": "ann"})).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("multipart"),
        "{answer}"
    );
    let (status, answer) = send(
        http.post(format!("{url}/v1/posts"))
            .header("content-type", "multipart/form-data; boundary=xyz")
            .body("--xyz\r\ngarbage"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    // Nothing was stored for the refused images.
    let stored = std::fs::read_dir(dir.path().join("images/images"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(stored, 0, "refused uploads left files behind");

    // A good post; its image is served back as stored.
    let image = mysocialmedia::images::tiny_gif([9, 8, 7]);
    let post_id = create_post(&http, &url, "ann", "sunset 🌅", [9, 8, 7]).await;
    let view = visible(&http, &url, &post_id).await;
    assert_eq!(
        (
            view["user_id"].as_str(),
            view["caption"].as_str(),
            &view["likes"],
            &view["comments"]
        ),
        (Some("ann"), Some("sunset 🌅"), &json!(0), &json!(0)),
        "{view}"
    );
    let key = view["image"]["key"].as_str().unwrap();
    let response = http.get(format!("{url}/v1/{key}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/gif");
    assert_eq!(response.bytes().await.unwrap().to_vec(), image);
    let (status, _) = get(&http, &format!("{url}/v1/images/..%2F..%2Fetc%2Fpasswd")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Likes and comments.
    let unknown = shared::event::new_event_id();
    let like = |post: String, user: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let url = format!("{url}/v1/posts/{post}/likes/{user}");
            send(http.put(url)).await
        }
    };
    let (status, answer) = like("post_456".into(), "bob").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer.to_string().contains("UUID"), "{answer}");
    let (status, answer) = like(post_id.clone(), "Bob!").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer.to_string().contains("user_id"), "{answer}");
    let (status, answer) = like(unknown.clone(), "bob").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("unknown post"),
        "{answer}"
    );
    let comments = format!("{url}/v1/posts/{post_id}/comments");
    let long_comment = "y".repeat(1001);
    for (body, why) in [
        (json!({"user_id": "bob", "text": ""}), "text is empty"),
        (json!({"user_id": "bob", "text": long_comment}), "1001"),
        (json!({"user_id": "bob"}), "text"),
        (
            json!({"user_id": "bob", "text": "hi", "rating": 5}),
            "rating",
        ),
        (json!({"user_id": "BOB", "text": "hi"}), "user_id"),
        (json!("hi"), ""),
    ] {
        let (status, answer) = post(&http, &comments, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        assert!(
            answer.to_string().contains(why),
            "{body}: {answer} should name {why:?}"
        );
    }
    let (status, answer) = post(
        &http,
        &format!("{url}/v1/posts/{unknown}/comments"),
        &json!({"user_id": "bob", "text": "hi"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");

    // Idempotent likes: two likes by bob, one by cid, an unlike by dan who never liked.
    for (user, liked) in [("bob", true), ("bob", true), ("cid", true), ("dan", false)] {
        assert_eq!(
            set_like(&http, &url, &post_id, user, liked).await,
            StatusCode::ACCEPTED
        );
    }
    let (status, answer) = post(
        &http,
        &comments,
        &json!({"user_id": "bob", "text": "nice!"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert!(answer["comment_id"].is_string(), "{answer}");
    crate::eventually(
        std::time::Duration::from_secs(60),
        "2 likes, 1 comment",
        || async {
            let (_, view) = get(&http, &format!("{url}/v1/posts/{post_id}")).await;
            (view["likes"] == 2 && view["comments"] == 1).then_some(())
        },
    )
    .await;

    // Queries.
    for (path, status) in [
        ("/v1/feed?limit=0", StatusCode::BAD_REQUEST),
        ("/v1/feed?limit=101", StatusCode::BAD_REQUEST),
        ("/v1/feed?limit=ten", StatusCode::BAD_REQUEST),
        ("/v1/feed?before=yesterday", StatusCode::BAD_REQUEST),
        ("/v1/feed?colour=red", StatusCode::BAD_REQUEST),
        ("/v1/posts/not-a-post", StatusCode::BAD_REQUEST),
        ("/v1/feed/events?post=x", StatusCode::BAD_REQUEST),
    ] {
        let (got, answer) = get(&http, &format!("{url}{path}")).await;
        assert_eq!(got, status, "{path}: {answer}");
        assert!(answer["error"].is_string(), "{path}: {answer}");
    }
    let (status, _) = get(&http, &format!("{url}/v1/posts/{unknown}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_pages_newest_first_and_streams_live_counts() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, &[], dir.path()).await;
    let (url, http) = (app.url(), client());
    let mut posts = Vec::new();
    for i in 0..5u8 {
        posts.push(create_post(&http, &url, "ann", &format!("post {i}"), [i, i, i]).await);
    }
    for post in &posts {
        visible(&http, &url, post).await;
    }
    let (status, page) = get(&http, &format!("{url}/v1/feed?limit=3")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["posts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["post_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&page),
        vec![posts[4].clone(), posts[3].clone(), posts[2].clone()]
    );
    let next = page["next"].as_str().unwrap();
    let (_, rest) = get(&http, &format!("{url}/v1/feed?limit=3&before={next}")).await;
    assert_eq!(ids(&rest), vec![posts[1].clone(), posts[0].clone()]);
    assert!(rest["next"].is_null(), "{rest}");

    // Live counts over server-sent events, for one post.
    let mut events = http
        .get(format!("{url}/v1/feed/events?post={}", posts[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(
        set_like(&http, &url, &posts[1], "bob", true).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        set_like(&http, &url, &posts[0], "bob", true).await,
        StatusCode::ACCEPTED
    );
    let mut seen = String::new();
    let found = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(chunk) = events.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("\"likes\":1") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{seen}");
    assert!(
        seen.contains("event: post") && seen.contains(&posts[0]),
        "{seen}"
    );
    assert!(
        !seen.contains(&posts[1]),
        "another post's change in a filtered stream: {seen}"
    );
    app.stop().await.unwrap();
}
