//! Interactive queries with two instances: every key can be asked of either instance; the one
//! that owns it answers, the other redirects to it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::routing::get;
use shared::http::{ApiError, Json, QueryError};
use shared::streams::{self, StreamsHandle};
use shared::testkit::TestKafka;
use tests::{COUNT_STORE, COUNTS, WORDS, counter_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

async fn count(
    State(app): State<Arc<StreamsHandle>>,
    Path(key): Path<String>,
    uri: Uri,
) -> Result<Json<serde_json::Value>, QueryError> {
    let owned = shared::http::owned(&app, key.as_bytes(), &uri)?;
    match owned.get::<u64>(COUNT_STORE, key.as_bytes())? {
        Some(count) => Ok(Json(serde_json::json!({ "key": key, "count": count }))),
        None => Err(ApiError::not_found(format!("no count for {key}")).into()),
    }
}

/// A minimal HTTP/1.1 GET: (status, Location header, body).
async fn http_get(address: &str, path: &str) -> (u16, Option<String>, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let location = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .map(str::to_owned);
    (status, location, body.to_owned())
}

struct Instance {
    app: Arc<StreamsHandle>,
    address: String,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn instance(kafka: &TestKafka) -> Instance {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut config = counter_config(kafka.kafka(), dir.path());
    config.endpoint = Some(format!("http://{address}"));
    let stop = CancellationToken::new();
    let app = Arc::new(
        streams::start(
            kafka.kafka(),
            config,
            tests::counter(kafka.kafka()),
            stop.clone(),
        )
        .await
        .unwrap(),
    );
    let router = Router::new()
        .route("/counts/{key}", get(count))
        .with_state(Arc::clone(&app));
    let server = tokio::spawn(shared::http::serve(listener, router, stop.clone()));
    Instance {
        app,
        address,
        stop,
        server,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_can_be_queried_at_either_instance() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[WORDS, COUNTS]).await.unwrap();
    let expected = crate::produce(&kafka, 0, 400, 23).await;
    let a = instance(&kafka).await;
    let b = instance(&kafka).await;

    crate::eventually(
        Duration::from_secs(60),
        "both instances own partitions and know each other",
        || {
            let ready = !a.app.stores.partitions().is_empty()
                && !b.app.stores.partitions().is_empty()
                && a.app.stores.partitions().len() + b.app.stores.partitions().len() == 4
                && a.app.directory.all().len() == 2
                && b.app.directory.all().len() == 2;
            async move { ready }
        },
    )
    .await;
    crate::wait_for_counts(
        &[&a.app.stores, &b.app.stores],
        &expected,
        Duration::from_secs(60),
    )
    .await;

    for (key, count) in &expected {
        let mut answered_directly = 0;
        for asked in [&a, &b] {
            let path = format!("/counts/{key}");
            let (mut status, location, mut body) = http_get(&asked.address, &path).await;
            if status == 307 {
                let location = location.expect("a redirect names the owner");
                let rest = location.strip_prefix("http://").unwrap();
                let (address, path) = rest.split_at(rest.find('/').unwrap());
                assert_ne!(address, asked.address, "redirects go to the other instance");
                (status, _, body) = http_get(address, path).await;
            } else {
                answered_directly += 1;
            }
            assert_eq!(status, 200, "{key} asked at {}: {body}", asked.address);
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(answer["count"], *count, "{key}");
        }
        assert_eq!(answered_directly, 1, "{key}: exactly one instance owns it");
    }

    for instance in [a, b] {
        instance.stop.cancel();
        instance.server.await.unwrap().unwrap(); // releases the router's handle
        Arc::try_unwrap(instance.app)
            .ok()
            .expect("no other handle")
            .join()
            .await
            .unwrap();
    }
}
