//! Positions in through the video position service → the resuming service answers the latest
//! position, the next episode after a finished one; an undecodable record is dead-lettered by
//! every consumer and the services keep going.

use std::time::Duration;

use chrono::Utc;

use movieflix::topics::SHOW_POSITION;
use rdkafka::message::OwnedHeaders;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::EventProducer;
use shared::testkit::TestKafka;

use crate::{client, eventually, get, report, spawn};

#[tokio::test(flavor = "multi_thread")]
async fn resume_answers_the_latest_position_and_then_the_next_episode() {
    let kafka = TestKafka::start().await.unwrap();
    let (state, analytics) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let app = spawn(&kafka, &[], state.path(), analytics.path()).await;
    let http = client();
    let catalog = movieflix::catalog::Catalog::shared();
    let series = catalog.get("s001").unwrap();
    let ep1 = series.duration_of(Some(1)).unwrap();
    let now = Utc::now();
    let at = |seconds_ago: i64| (now - chrono::Duration::seconds(seconds_ago)).to_rfc3339();

    for (position, ago) in [(100, 60), (300, 50)] {
        report(
            &http,
            &app,
            json!({"user_id": "ann", "show_id": "s001", "episode": 1,
            "position_s": position, "duration_s": ep1, "at": at(ago)}),
        )
        .await;
    }
    // A late, older report (a retry from a flaky network) must not move her back.
    report(
        &http,
        &app,
        json!({"user_id": "ann", "show_id": "s001", "episode": 1,
        "position_s": 50, "duration_s": ep1, "at": at(55)}),
    )
    .await;
    // A movie after it: same viewer, same partition, so once this is visible the late report
    // was processed too.
    let movie = catalog.get("m001").unwrap();
    report(
        &http,
        &app,
        json!({"user_id": "ann", "show_id": "m001",
        "position_s": 600, "duration_s": movie.duration_s, "at": at(40)}),
    )
    .await;

    let resume_url = |show: &str| format!("{}/v1/users/ann/resume/{show}", app.url());
    eventually(Duration::from_secs(30), "the movie's position", || async {
        let (status, body) = get(&http, &resume_url("m001")).await;
        (status == StatusCode::OK).then_some(body)
    })
    .await;
    let (status, body) = get(&http, &resume_url("s001")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["episode"], 1);
    assert_eq!(body["position_s"], 300, "the latest by event time: {body}");
    assert_eq!(body["state"], "resume");

    // She finishes episode 1: the player should offer episode 2 from the start.
    report(
        &http,
        &app,
        json!({"user_id": "ann", "show_id": "s001", "episode": 1,
        "position_s": ep1, "duration_s": ep1, "at": at(30)}),
    )
    .await;
    let body = eventually(Duration::from_secs(30), "the next episode", || async {
        let (_, body) = get(&http, &resume_url("s001")).await;
        (body["state"] == "next_episode").then_some(body)
    })
    .await;
    assert_eq!(body["episode"], 2);
    assert_eq!(body["position_s"], 0);
    assert_eq!(body["episode_label"], "S1E2");

    // Continue watching: the series (most recent) then the movie.
    let (status, body) = get(
        &http,
        &format!("{}/v1/users/ann/continue-watching", app.url()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let shows: Vec<&str> = body["shows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["show_id"].as_str().unwrap())
        .collect();
    assert_eq!(shows, ["s001", "m001"], "{body}");

    // Unknown combinations are a 404 with a message, bad ids a 400.
    let (status, body) = get(&http, &resume_url("m002")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("has not played"));
    let (status, _) = get(&http, &format!("{}/v1/users/a%20b/resume/m001", app.url())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The OpenAPI description lists every route.
    let (status, spec) = get(&http, &format!("{}/openapi.json", app.url())).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v1/positions",
        "/v1/users/{user}/resume/{show}",
        "/v1/users/{user}/continue-watching",
        "/v1/users/{user}/recommendations",
        "/v1/shows",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from /openapi.json"
        );
    }
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undecodable_position_is_dead_lettered_and_the_services_keep_going() {
    let kafka = TestKafka::start().await.unwrap();
    let (state, analytics) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let app = spawn(&kafka, &[], state.path(), analytics.path()).await;
    let http = client();
    let topic = kafka.kafka().topic(&SHOW_POSITION);
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    producer
        .send(
            &topic,
            Some(b"bob"),
            Some(b"{not json"),
            OwnedHeaders::new(),
            None,
        )
        .await
        .unwrap();
    // Valid JSON, but a show that does not exist: rejected by the processors' validation.
    let unknown = json!({"event_id": "x", "user_id": "bob", "show_id": "nope", "position_s": 1,
        "duration_s": 2, "at": Utc::now()});
    producer
        .send(
            &topic,
            Some(b"bob"),
            Some(unknown.to_string().as_bytes()),
            OwnedHeaders::new(),
            None,
        )
        .await
        .unwrap();
    let movie = movieflix::catalog::Catalog::shared()
        .get("m002")
        .unwrap()
        .duration_s;
    report(
        &http,
        &app,
        json!({"user_id": "bob", "show_id": "m002", "position_s": 42,
        "duration_s": movie}),
    )
    .await;

    let body: Value = eventually(
        Duration::from_secs(30),
        "bob's position after the bad records",
        || async {
            let (status, body) =
                get(&http, &format!("{}/v1/users/bob/resume/m002", app.url())).await;
            (status == StatusCode::OK).then_some(body)
        },
    )
    .await;
    assert_eq!(body["position_s"], 42);

    // Three consumers read show_position: the resuming service, the engine, the sink. Each
    // dead-letters the garbage (a decode failure) and rejects the unknown show (one validation
    // for the services and the sink).
    let letters = kafka
        .read_dlq(&topic, 6, Duration::from_secs(30))
        .await
        .unwrap();
    let decode = letters.iter().filter(|l| l.kind == "decode").count();
    let rejected = letters.iter().filter(|l| l.kind == "rejected").count();
    assert_eq!((decode, rejected), (3, 3), "{letters:#?}");
    assert!(
        letters
            .iter()
            .all(|l| l.source_topic == topic && !l.error.is_empty())
    );
    let rejected_reason = &letters.iter().find(|l| l.kind == "rejected").unwrap().error;
    assert!(
        rejected_reason.contains("unknown show_id"),
        "{rejected_reason}"
    );

    // One letter per application, each saying which application rejected it and why in terms
    // a person can act on: the type the topic carries and serde's reason, from every runtime
    // (the engine reads two topics of two types and decodes per topic).
    let prefix = kafka.kafka().prefix().to_owned();
    let (resuming, engine, sink) = (
        format!("{prefix}movieflix-resuming"),
        format!("{prefix}movieflix-recommendation-engine"),
        format!("{prefix}movieflix-analytics-sink"),
    );
    let mut decoders: Vec<String> = letters
        .iter()
        .filter(|l| l.kind == "decode")
        .map(|l| l.application.clone().expect("dead_lettered_by header"))
        .collect();
    decoders.sort();
    let mut expected = vec![resuming.clone(), engine.clone(), sink.clone()];
    expected.sort();
    assert_eq!(decoders, expected, "{letters:#?}");
    let mut rejecters: Vec<String> = letters
        .iter()
        .filter(|l| l.kind == "rejected")
        .map(|l| l.application.clone().expect("dead_lettered_by header"))
        .collect();
    rejecters.sort();
    let mut expected = vec![resuming.clone(), engine.clone(), sink.clone()];
    expected.sort();
    assert_eq!(rejecters, expected, "{letters:#?}");
    for letter in letters.iter().filter(|l| l.kind == "decode") {
        assert!(
            letter
                .error
                .starts_with("payload is not a valid ShowPosition: ")
                && letter.error.contains("at line 1 column"),
            "{letter:#?}"
        );
    }

    // The one metric adds up: every letter is counted once, under its application and topic.
    let series = |metrics: &str| -> Vec<(String, String, u64)> {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("kafka_records_dead_lettered_total{")
                    && l.contains(&format!("topic=\"{topic}\""))
            })
            .map(|l| {
                let label = |name: &str| {
                    let start = l.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                    l[start..].split('"').next().unwrap().to_owned()
                };
                let n = l.rsplit(' ').next().unwrap().parse().unwrap();
                (label("application"), label("kind"), n)
            })
            .collect()
    };
    let counted = eventually(
        Duration::from_secs(30),
        "six dead letters counted",
        || async {
            let metrics = shared::testkit::http::metrics(&http, &app.url()).await;
            let series = series(&metrics);
            (series.iter().map(|s| s.2).sum::<u64>() >= 6).then_some(series)
        },
    )
    .await;
    let count = |application: &str, kind: &str| {
        counted
            .iter()
            .filter(|s| s.0 == application && s.1 == kind)
            .map(|s| s.2)
            .sum::<u64>()
    };
    assert_eq!(counted.iter().map(|s| s.2).sum::<u64>(), 6, "{counted:?}");
    for application in [&resuming, &engine, &sink] {
        assert_eq!(
            count(application, "decode"),
            1,
            "{application}: {counted:?}"
        );
    }
    for application in [&resuming, &engine] {
        assert_eq!(
            count(application, "rejected"),
            1,
            "{application}: {counted:?}"
        );
    }
    app.stop().await.unwrap();
}

/// A well-formed position under a key that is not its `user_id` (or no key) would be folded into
/// another viewer's task, where no query ever looks: every consumer of `show_position` (the two
/// streams apps and the sink) dead-letters it with the reason, and a correctly keyed position
/// of the same viewer behind them is processed.
#[tokio::test(flavor = "multi_thread")]
async fn a_position_under_the_wrong_key_is_dead_lettered_with_the_reason() {
    let kafka = TestKafka::start().await.unwrap();
    let (state, analytics) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let app = spawn(&kafka, &[], state.path(), analytics.path()).await;
    let http = client();
    let topic = kafka.kafka().topic(&SHOW_POSITION);
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let movie = movieflix::catalog::Catalog::shared()
        .get("m002")
        .unwrap()
        .duration_s;
    let position = |position_s: u32| movieflix::events::ShowPosition {
        event_id: shared::event::new_event_id(),
        user_id: "carl".into(),
        show_id: "m002".into(),
        episode: None,
        position_s,
        duration_s: movie,
        at: Utc::now(),
    };
    producer
        .publish(&topic, "dave", &position(500))
        .await
        .unwrap();
    let null_keyed = position(600);
    producer
        .send(
            &topic,
            None,
            Some(&serde_json::to_vec(&null_keyed).unwrap()),
            OwnedHeaders::new(),
            None,
        )
        .await
        .unwrap();
    producer
        .publish(&topic, "carl", &position(42))
        .await
        .unwrap();

    let body: Value = eventually(
        Duration::from_secs(30),
        "carl's correctly keyed position",
        || async {
            let (status, body) =
                get(&http, &format!("{}/v1/users/carl/resume/m002", app.url())).await;
            (status == StatusCode::OK).then_some(body)
        },
    )
    .await;
    assert_eq!(body["position_s"], 42);

    let letters = kafka
        .read_dlq(&topic, 6, Duration::from_secs(30))
        .await
        .unwrap();
    let prefix = kafka.kafka().prefix().to_owned();
    for application in [
        "movieflix-resuming",
        "movieflix-recommendation-engine",
        "movieflix-analytics-sink",
    ] {
        let application = format!("{prefix}{application}");
        let mut reasons: Vec<&str> = letters
            .iter()
            .filter(|l| l.application.as_deref() == Some(application.as_str()))
            .map(|l| {
                assert_eq!(l.kind, "rejected", "{l:#?}");
                l.error.as_str()
            })
            .collect();
        reasons.sort();
        assert_eq!(
            reasons,
            vec![
                r#"key "dave" does not match user_id "carl""#,
                r#"key null does not match user_id "carl""#,
            ],
            "{application}: {letters:#?}"
        );
    }
    app.stop().await.unwrap();
}
