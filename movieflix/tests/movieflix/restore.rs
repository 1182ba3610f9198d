//! The resuming service restarted with its state directory deleted answers exactly as before:
//! its store is rebuilt from the changelog.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;

use movieflix::catalog::Catalog;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::testkit::TestKafka;

use crate::{client, eventually, get, report, spawn};

#[tokio::test(flavor = "multi_thread")]
async fn the_resuming_service_restores_its_answers_from_the_changelog() {
    let kafka = TestKafka::start().await.unwrap();
    let analytics = tempfile::tempdir().unwrap();
    let services = ["video-position-service", "resuming-service"];
    let catalog = Catalog::shared();
    let http = client();
    let now = Utc::now();

    let state = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, &services, state.path(), analytics.path()).await;
    // 20 viewers × 3 shows, a few reports each: the last one per show wins.
    let mut queries = Vec::new();
    let mut expected = BTreeMap::new();
    for viewer in 0..20 {
        for (i, show) in ["m003", "m004", "s002"].iter().enumerate() {
            let show = catalog.get(show).unwrap();
            let episode = show.is_series().then_some(1 + viewer % 3);
            let duration = show.duration_of(episode).unwrap();
            let position = |step: u32| duration * step * (viewer + i as u32 + 1) / 100;
            for step in 1..=3u32 {
                report(
                    &http,
                    &app,
                    json!({"user_id": format!("v{viewer}"), "show_id": show.id,
                    "episode": episode, "position_s": position(step),
                    "duration_s": duration,
                    "at": (now - chrono::Duration::seconds(i64::from(100 - step))).to_rfc3339()}),
                )
                .await;
            }
            let query = format!("/v1/users/v{viewer}/resume/{}", show.id);
            expected.insert(query.clone(), u64::from(position(3)));
            queries.push(query);
        }
    }
    let answers = |url: String| {
        let http = http.clone();
        let queries = queries.clone();
        async move {
            let mut answers = BTreeMap::new();
            for query in &queries {
                let (status, body) = get(&http, &format!("{url}{query}")).await;
                if status != StatusCode::OK {
                    return None;
                }
                answers.insert(query.clone(), body);
            }
            Some(answers)
        }
    };
    let before: BTreeMap<String, Value> =
        eventually(Duration::from_secs(30), "all 60 answers", || {
            let answers = answers(app.url());
            let expected = &expected;
            async move {
                let answers = answers.await?;
                // Wait for the third (last) report of every show.
                answers
                    .iter()
                    .all(|(query, a)| a["position_s"].as_u64() == Some(expected[query]))
                    .then_some(answers)
            }
        })
        .await;
    // Settle: let the final batch commit before stopping.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = answers(app.url()).await.unwrap();
    assert_eq!(before, again);
    app.stop().await.unwrap();

    drop(state); // the local RocksDB is gone
    let fresh = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, &services, fresh.path(), analytics.path()).await;
    let after = eventually(Duration::from_secs(60), "answers after the restore", || {
        answers(app.url())
    })
    .await;
    assert_eq!(before, after);
    app.stop().await.unwrap();
}
