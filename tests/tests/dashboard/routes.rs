//! Every dashboard route over HTTP: what it answers, and a JSON 4xx for every bad input.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::testkit::eventually;
use shared::testkit::http::{client, get, post, send};

use crate::{snapshot_until, up};

const SHOW_POSITION: &str = "movieflix.show_position";

fn topic_now<'a>(snapshot: &'a Value, case_study: &str, topic: &str) -> &'a Value {
    &snapshot["case_studies"][case_study]["topics"][topic]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_running_case_study_is_listed_with_its_graph() {
    let up = up().await;
    let http = client();
    let (status, list) = get(&http, &format!("{}/api/case-studies", up.url)).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "movieflix",
            "gettaxi",
            "mysocialmedia",
            "mybank",
            "ingestion",
            "logging"
        ]
    );
    assert_eq!(
        list[0]["stores"]["resuming-service"],
        json!(["resume_points"]),
        "a stateful service's stores"
    );
    for name in names {
        let (status, cs) = get(&http, &format!("{}/api/case-studies/{name}", up.url)).await;
        assert_eq!(status, StatusCode::OK);
        let nodes = cs["graph"]["nodes"].as_array().unwrap();
        for topic in cs["topics"].as_array().unwrap() {
            let id = format!("topic:{}", topic["name"].as_str().unwrap());
            assert!(nodes.iter().any(|n| n["id"] == id.as_str()), "{id} drawn");
        }
        for edge in cs["graph"]["edges"].as_array().unwrap() {
            for end in [&edge["from"], &edge["to"]] {
                assert!(nodes.iter().any(|n| n["id"] == *end), "{end} is a node");
            }
        }
        let (status, health) = get(&http, &format!("{}/readyz", cs["api"].as_str().unwrap())).await;
        assert_eq!(status, StatusCode::OK, "{name}'s own API runs: {health}");
    }
    // The page and its assets are served from the binary.
    for (path, kind) in [
        ("/", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/style.css", "text/css"),
    ] {
        let response = http.get(format!("{}{path}", up.url)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_names_are_404s_with_a_json_reason() {
    let up = up().await;
    let http = client();
    let u = &up.url;
    for path in [
        "/api/case-studies/nope".to_owned(),
        format!("/api/case-studies/nope/topics/{SHOW_POSITION}/records"),
        "/api/case-studies/movieflix/topics/nope/records".into(),
        "/api/case-studies/movieflix/topics/mybank.user_alerts/records".into(),
        "/api/case-studies/movieflix/services/nope/metrics".into(),
        "/api/case-studies/movieflix/services/notification-service/metrics".into(),
        "/api/nothing-here".into(),
    ] {
        let (status, body) = get(&http, &format!("{u}{path}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    for path in [
        "/api/case-studies/nope/knob".to_owned(),
        "/api/case-studies/movieflix/spare/explode".into(),
        "/api/case-studies/movieflix/topics/nope/malformed".into(),
    ] {
        let (status, body) = post(&http, &format!("{u}{path}"), &json!({"value": 1})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_filters_queries_and_knob_values_are_400s_with_a_json_reason() {
    let up = up().await;
    let http = client();
    let records = format!(
        "{}/api/case-studies/movieflix/topics/{SHOW_POSITION}/records",
        up.url
    );
    let long = "x".repeat(300);
    for query in [
        "limit=0",
        "limit=201",
        "limit=ten",
        "limit=-1",
        "partition=-1",
        "partition=32",
        "partition=one",
        "key=",
        "contains=",
        &format!("contains={long}"),
        "key=a%01b",
    ] {
        let (status, body) = get(&http, &format!("{records}?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body["error"].is_string(), "{query}: {body}");
    }
    let query = format!("{}/api/case-studies/movieflix/query", up.url);
    for path in [
        "",
        "?path=",
        "?path=/healthz",
        "?path=/v1/users/../resume/m003",
        "?path=/v1/users/a/b/resume/m003",
        "?path=http://example.invalid/v1/users/a/recommendations",
        "?path=/v1/users/viewer-00001/recommendations/extra",
    ] {
        let (status, body) = get(&http, &format!("{query}{path}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let knob = format!("{}/api/case-studies/movieflix/knob", up.url);
    for body in [
        json!({"value": 100000}),
        json!({"value": -1}),
        json!({"value": "ten"}),
        json!({}),
        json!(null),
    ] {
        let (status, answer) = post(&http, &knob, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer["error"].is_string(), "{body}: {answer}");
    }
    let (status, answer) = send(http.post(&knob).body("{\"value\": 1")).await;
    assert!(status.is_client_error(), "{status}: {answer}");
    let (status, answer) = send(
        http.post(&knob)
            .header("content-type", "application/json")
            .body("{\"value\": 1"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_produced_to_a_topic_appears_in_its_tail_decoded() {
    let up = up().await;
    let http = client();
    let producer: FutureProducer = up.kafka.producer_config().create().unwrap();
    let key = format!("dashboard-test-{}", uuid::Uuid::new_v4());
    let topic = format!("{}{SHOW_POSITION}", up.kafka.prefix());
    let value = json!({"produced by": "the dashboard test", "key": key});
    let delivery = producer
        .send(
            FutureRecord::to(&topic)
                .key(&key)
                .payload(&value.to_string()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let (partition, offset) = (delivery.partition, delivery.offset);
    let url = format!(
        "{}/api/case-studies/movieflix/topics/{SHOW_POSITION}/records?key={key}&partition={partition}",
        up.url
    );
    let records = eventually(Duration::from_secs(30), "the record in the tail", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let (status, body) = get(&http, &url).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let records = body["records"].as_array()?.clone();
            (!records.is_empty()).then_some(records)
        }
    })
    .await;
    assert_eq!(
        records.len(),
        1,
        "only the record with that key: {records:?}"
    );
    assert_eq!(records[0]["key"], key.as_str());
    assert_eq!(records[0]["partition"], partition);
    assert_eq!(records[0]["offset"], offset);
    assert_eq!(records[0]["value"], value, "the value decoded as JSON");
    // `contains` finds it by a piece of its value; `limit` bounds the answer.
    let (_, body) = get(
        &http,
        &format!(
            "{}/api/case-studies/movieflix/topics/{SHOW_POSITION}/records?contains={}",
            up.url,
            &key[15..]
        ),
    )
    .await;
    assert!(
        body["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["key"] == key.as_str()),
        "{body}"
    );
    let (_, body) = get(
        &http,
        &format!(
            "{}/api/case-studies/movieflix/topics/{SHOW_POSITION}/records?limit=3",
            up.url
        ),
    )
    .await;
    assert!(body["records"].as_array().unwrap().len() <= 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_record_is_dead_lettered_and_counted() {
    let up = up().await;
    let http = client();
    let before = snapshot_until(up, Duration::from_secs(30), "a DLQ count", |s| {
        topic_now(s, "movieflix", SHOW_POSITION)["dlq_records"].as_u64()
    })
    .await;
    let (status, sent) = post(
        &http,
        &format!(
            "{}/api/case-studies/movieflix/topics/{SHOW_POSITION}/malformed",
            up.url
        ),
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let (partition, offset) = (sent["partition"].clone(), sent["offset"].clone());
    // Three services consume the topic: each dead-letters it, with its name and the reason.
    let after = snapshot_until(up, Duration::from_secs(60), "the DLQ count up by 3", |s| {
        topic_now(s, "movieflix", SHOW_POSITION)["dlq_records"]
            .as_u64()
            .filter(|n| *n >= before + 3)
    })
    .await;
    assert!(after >= before + 3);
    // The count also moves with other letters (the browser test sends malformed records too):
    // wait for this record's own three, each application once (a rebalance may re-deliver it,
    // and at-least-once may dead-letter it twice).
    let expected = [
        "movieflix-analytics-sink",
        "movieflix-recommendation-engine",
        "movieflix-resuming",
    ];
    let url = format!(
        "{}/api/case-studies/movieflix/topics/{SHOW_POSITION}.dlq/records?key=dashboard",
        up.url
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let letters: Vec<Value> = loop {
        let (_, body) = get(&http, &url).await;
        let letters: Vec<Value> = body["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r["headers"]["source.offset"] == offset.to_string().as_str()
                    && r["headers"]["source.partition"] == partition.to_string().as_str()
            })
            .cloned()
            .collect();
        let mut rejecters: Vec<String> = letters
            .iter()
            .filter_map(|r| r["headers"]["dead_lettered_by"].as_str())
            .map(|app| {
                app.strip_prefix(up.kafka.prefix())
                    .unwrap_or(app)
                    .to_owned()
            })
            .collect();
        rejecters.sort();
        rejecters.dedup();
        if rejecters == expected {
            break letters;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "letters of {partition}/{offset} by {rejecters:?}, not {expected:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(letters.iter().all(|r| r["headers"]["error"].is_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn rates_lags_and_health_are_live() {
    let up = up().await;
    let mut seen = Vec::new();
    snapshot_until(
        up,
        Duration::from_secs(60),
        "two different record counts, rate > 0",
        |s| {
            let now = topic_now(s, "movieflix", SHOW_POSITION);
            let (rate, records) = (now["rate"].as_f64()?, now["records"].as_u64()?);
            seen.push(records);
            (rate > 0.0 && seen.first() != seen.last()).then_some(())
        },
    )
    .await;
    let snapshot = snapshot_until(up, Duration::from_secs(30), "a snapshot", |s| {
        Some(s.clone())
    })
    .await;
    for case_study in ["movieflix", "mybank", "ingestion", "logging"] {
        let now = &snapshot["case_studies"][case_study];
        let services = now["services"].as_object().unwrap();
        assert!(!services.is_empty());
        assert!(
            services.values().all(|s| s["healthy"] == true),
            "{case_study}: {services:?}"
        );
        let groups = now["groups"].as_array().unwrap();
        assert!(!groups.is_empty(), "{case_study} has consumer groups");
        for group in groups {
            assert!(group["lag"].as_i64().unwrap() >= 0, "{group}");
            assert!(group["lag_seconds"].as_f64().unwrap() >= 0.0, "{group}");
        }
        assert!(now["view"].as_array().is_some_and(|v| !v.is_empty()));
    }
    // Ingestion's view: the speed layer's minutes, counted from what its simulator sent.
    snapshot_until(
        up,
        Duration::from_secs(60),
        "ingestion's per-minute counts in its view",
        |s| {
            let rows = s["case_studies"]["ingestion"]["view"][0]["rows"].as_array()?;
            (!rows.is_empty()).then_some(())
        },
    )
    .await;
    // Logging's view: an error rate per minute for each simulated service, from log_rollups.
    snapshot_until(
        up,
        Duration::from_secs(90),
        "logging's error rates in its view",
        |s| {
            let rows = s["case_studies"]["logging"]["view"][0]["rows"].as_array()?;
            let services: Vec<&str> = rows.iter().filter_map(|r| r[0].as_str()).collect();
            (services == ["auth", "checkout", "payments", "search"]
                && rows
                    .iter()
                    .all(|r| r[1].as_str().is_some_and(|c| c.contains(" % of "))))
            .then_some(())
        },
    )
    .await;
}

/// Logging's search box goes through the dashboard to the Logging process: whatever it answers
/// (hits, a 400 for a bad query, a 404 while no log sink serves `/v1/search`), the page gets
/// the status and a JSON body.
#[tokio::test(flavor = "multi_thread")]
async fn logging_search_answers_json_through_the_dashboard() {
    let up = up().await;
    let http = client();
    let (status, logging) = get(&http, &format!("{}/api/case-studies/logging", up.url)).await;
    assert_eq!(status, StatusCode::OK, "{logging}");
    assert_eq!(logging["queries"][0]["name"], "search logs");
    let path =
        "/v1/search?q=declined&from=2026-01-01T00%3A00%3A00Z&to=2100-01-01T00%3A00%3A00Z&limit=5";
    let (status, through) = get(
        &http,
        &format!(
            "{}/api/case-studies/logging/query?path={}",
            up.url,
            url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{through}");
    let answered = through["status"].as_u64().unwrap();
    match answered {
        200 => assert!(through["body"]["hits"].is_array(), "{through}"),
        400 | 404 => assert!(through["body"]["error"].is_string(), "{through}"),
        other => panic!("the search answered {other}: {through}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_through_the_dashboard_answers_what_the_service_answers() {
    let up = up().await;
    let http = client();
    let (_, mybank) = get(&http, &format!("{}/api/case-studies/mybank", up.url)).await;
    let api = mybank["api"].as_str().unwrap().to_owned();
    let path = "/v1/users/user-001/alert-threshold";
    // The simulator sets the threshold once, at start: a stable answer.
    let direct = eventually(Duration::from_secs(60), "the threshold set", || {
        let (http, url) = (http.clone(), format!("{api}{path}"));
        async move {
            let (status, body) = get(&http, &url).await;
            (status == StatusCode::OK).then_some(body)
        }
    })
    .await;
    let (status, through) = get(
        &http,
        &format!("{}/api/case-studies/mybank/query?path={path}", up.url),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{through}");
    assert_eq!(through["status"], 200);
    assert_eq!(through["body"], direct);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_knob_pauses_and_resumes_a_simulator() {
    let up = up().await;
    let http = client();
    let knob = format!("{}/api/case-studies/mybank/knob", up.url);
    let (status, body) = post(&http, &knob, &json!({"value": 0})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["value"], 0.0);
    snapshot_until(up, Duration::from_secs(60), "no more transactions", |s| {
        let now = &s["case_studies"]["mybank"];
        (now["knob"] == 0.0 && topic_now(s, "mybank", "mybank.bank_transactions")["rate"] == 0.0)
            .then_some(())
    })
    .await;
    let (status, _) = post(&http, &knob, &json!({"value": 20})).await;
    assert_eq!(status, StatusCode::OK);
    snapshot_until(up, Duration::from_secs(60), "transactions again", |s| {
        (topic_now(s, "mybank", "mybank.bank_transactions")["rate"].as_f64()? > 0.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_the_spare_hands_its_partitions_over_and_starting_it_takes_some_back() {
    let up = up().await;
    let http = client();
    let spare = |action: &str| format!("{}/api/case-studies/movieflix/spare/{action}", up.url);
    let partitions = |s: &Value, which: &str| {
        s["case_studies"]["movieflix"]["spare"][which]
            .as_array()
            .map_or(0, Vec::len)
    };
    snapshot_until(
        up,
        Duration::from_secs(60),
        "both instances own partitions",
        |s| (partitions(s, "partitions") > 0 && partitions(s, "main_partitions") > 0).then_some(()),
    )
    .await;
    let (status, body) = post(&http, &spare("stop"), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["running"], false);
    let (status, body) = post(&http, &spare("stop"), &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    snapshot_until(
        up,
        Duration::from_secs(90),
        "the first instance owns all 32",
        |s| {
            (partitions(s, "main_partitions") == 32
                && s["case_studies"]["movieflix"]["spare"]["running"] == false)
                .then_some(())
        },
    )
    .await;
    let (status, body) = post(&http, &spare("start"), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["running"], true);
    let (status, _) = post(&http, &spare("start"), &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    snapshot_until(
        up,
        Duration::from_secs(90),
        "the spare owns some again",
        |s| {
            (partitions(s, "partitions") > 0 && partitions(s, "main_partitions") < 32).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_services_metrics_are_series_over_time() {
    let up = up().await;
    let http = client();
    let url = format!(
        "{}/api/case-studies/movieflix/services/resuming-service/metrics",
        up.url
    );
    let series = eventually(Duration::from_secs(60), "processed/s with 3 points", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let (status, body) = get(&http, &url).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let series = body["series"].as_array()?.clone();
            series
                .iter()
                .any(|s| {
                    s["name"] == "streams records processed/s"
                        && s["points"].as_array().is_some_and(|p| p.len() >= 3)
                })
                .then_some(series)
        }
    })
    .await;
    assert!(series.iter().any(|s| s["name"] == "lag (records)"));
    // A latency histogram the service names as its own: p50/p99 of each second.
    let url = format!(
        "{}/api/case-studies/movieflix/services/recommendations-service/metrics",
        up.url
    );
    eventually(
        Duration::from_secs(60),
        "position → recommendation p99",
        || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let (_, body) = get(&http, &url).await;
                body["series"]
                    .as_array()?
                    .iter()
                    .any(|s| s["name"] == "movieflix position to recommendation seconds p99")
                    .then_some(())
            }
        },
    )
    .await;
    for s in &series {
        for point in s["points"].as_array().unwrap() {
            assert!(
                point[0].as_i64().unwrap() > 0 && point[1].is_number(),
                "{s}"
            );
        }
    }
}
