//! `casestudies up` and its dashboard: every route over HTTP, with bad input, and the page in a
//! real browser (Debian's chromium and chromium-driver). One `up` runs for the whole binary, on
//! the broker `CASESTUDIES_TEST_KAFKA` chooses, started by the same `up::run` the binary calls.

mod browser;
mod routes;

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use shared::Kafka;
use shared::testkit::TestKafka;
use tokio_util::sync::CancellationToken;

/// The running `up`: the dashboard's URL and the broker it runs on.
pub struct Up {
    pub url: String,
    pub kafka: Kafka,
}

/// Starts `up` once (every case study it runs, with their simulators) on a thread of its own, and
/// waits until the dashboard answers.
pub async fn up() -> &'static Up {
    static UP: OnceLock<Up> = OnceLock::new();
    let up = UP.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let kafka = TestKafka::start().await.expect("a broker");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let url = format!("http://{}", listener.local_addr().unwrap());
                // Lives as long as the test binary (the thread never returns), so it is not
                // removed on exit: the next run removes it.
                let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-up");
                let _ = std::fs::remove_dir_all(&dir);
                sender
                    .send(Up {
                        url,
                        kafka: kafka.kafka().clone(),
                    })
                    .unwrap();
                let options = casestudies::up::UpOptions {
                    data_dir: Some(dir),
                    ..Default::default()
                };
                let result = casestudies::up::run(
                    kafka.kafka(),
                    &options,
                    listener,
                    CancellationToken::new(),
                )
                .await;
                panic!("up stopped: {result:?}");
            });
        });
        receiver.recv().expect("up started")
    });
    // The listener is bound at once; the dashboard answers once every case study runs.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let list = format!("{}/api/case-studies", up.url);
    shared::testkit::eventually(Duration::from_secs(180), "the dashboard answers", || {
        let request = http.get(&list).send();
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    up
}

/// The first snapshot of the event stream for which `check` says `Some`.
pub async fn snapshot_until<T>(
    up: &Up,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut(&Value) -> Option<T>,
) -> T {
    let mut response = reqwest::get(format!("{}/api/events", up.url))
        .await
        .expect("the event stream");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("timed out after {timeout:?} waiting for: {what}"))
            .expect("a chunk")
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|line| line.strip_prefix("data:")) else {
                continue;
            };
            let snapshot: Value = serde_json::from_str(data.trim()).expect("JSON data");
            if let Some(found) = check(&snapshot) {
                return found;
            }
        }
    }
}
