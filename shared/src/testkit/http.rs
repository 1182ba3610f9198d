//! HTTP helpers for end-to-end tests: a client with a timeout, requests that answer the status
//! and the JSON body (`null` when there is none), a service's metrics, and waiting until it
//! serves.

use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

/// A client whose requests give up after 10 s (a hung service fails the test, not the suite).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// Sends `request`; the status and the JSON body.
pub async fn send(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request
        .send()
        .await
        .expect("the request reaches the service");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn get(client: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    send(client.get(url)).await
}

pub async fn post(client: &reqwest::Client, url: &str, body: &Value) -> (StatusCode, Value) {
    send(client.post(url).json(body)).await
}

/// The Prometheus text a service serves at `<url>/metrics`.
pub async fn metrics(client: &reqwest::Client, url: &str) -> String {
    let response = client
        .get(format!("{}/metrics", url.trim_end_matches('/')))
        .send()
        .await
        .expect("the request reaches the service");
    assert!(
        response.status().is_success(),
        "/metrics: {}",
        response.status()
    );
    response.text().await.expect("a text body")
}

/// Waits until `GET url` answers something other than 503 — an interactive-query route answers
/// 503 until its service owns the key's partition — as a client retrying would.
pub async fn until_served(url: &str, timeout: Duration) {
    let client = client();
    super::eventually(timeout, &format!("{url} served (not 503)"), || async {
        let (status, _) = send(client.get(url)).await;
        (status != StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
}
