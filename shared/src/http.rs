//! HTTP plumbing every service uses (axum):
//!
//! * `GET /healthz` — the process is up;
//! * `GET /readyz` — the broker answers a metadata request within 2 s, and every service's own
//!   readiness check passes (else 503 naming what is not ready);
//! * `GET /metrics` — the Prometheus registry in text format;
//! * errors as `{"error": "...", "detail": ...}` with the right status ([`ApiError`]);
//! * a JSON body extractor ([`Json`]) whose rejections are such errors (400/413/415, never a
//!   plain-text 422);
//! * request tracing, a JSON 404 fallback, and graceful shutdown ([`serve`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::kafka::Kafka;
use crate::metrics;
use crate::streams::{Applied, Route, StoreReader, StreamsHandle};

/// How long `/readyz` waits for the broker.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// An error answered as `{"error": "...", "detail": ...}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub detail: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            detail: None,
        }
    }
    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }
    pub fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error)
    }
    pub fn unavailable(error: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, error)
    }
    /// A 500 whose cause is logged, not shown: internals stay out of responses.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
    pub fn with_detail(mut self, detail: impl Serialize) -> Self {
        self.detail = serde_json::to_value(detail).ok();
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.error)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "detail": self.detail });
        (self.status, axum::Json(body)).into_response()
    }
}

/// `axum::Json`, but a bad body is an [`ApiError`] with the parser's message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = match &rejection {
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
        // Wrong shape or bad syntax: the client sent a bad request, whatever axum's default.
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, "invalid request body").with_detail(rejection.body_text())
}

/// The answer of a producer behind HTTP (`202 Accepted`): the event's id and where the broker
/// stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    pub event_id: String,
    pub partition: i32,
    pub offset: i64,
}

impl Accepted {
    /// Publishes `event` to `topic` under `key` (a producer behind HTTP): `202` with where it
    /// went, or `503` when the broker did not acknowledge it.
    pub async fn publish<E: crate::event::Event>(
        producer: &crate::producer::EventProducer,
        topic: &str,
        key: &str,
        event: &E,
    ) -> Result<(StatusCode, Json<Accepted>), ApiError> {
        let delivery = producer
            .publish(topic, key, event)
            .await
            .map_err(|err| ApiError::unavailable(err.to_string()))?;
        Ok(Accepted::response(event.event_id(), delivery))
    }

    /// `202` with the event's id and its [`crate::producer::Delivery`].
    pub fn response(
        event_id: String,
        delivery: crate::producer::Delivery,
    ) -> (StatusCode, Json<Accepted>) {
        (
            StatusCode::ACCEPTED,
            Json(Accepted {
                event_id,
                partition: delivery.partition,
                offset: delivery.offset,
            }),
        )
    }
}

/// A `307 Temporary Redirect` to the same path and query at another instance's `endpoint`
/// (interactive queries for a key another instance owns).
pub fn redirect_to(endpoint: &str, uri: &axum::http::Uri) -> Response {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("{}{path}", endpoint.trim_end_matches('/'));
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, location)],
    )
        .into_response()
}

/// The prologue every keyed interactive query shares: if this instance runs the task that
/// holds `key`, the partition to read ([`Owned`]); else the answer that sends the client on — a
/// 307 to the owner, or a 503 while nobody owns it (starting up, rebalancing).
///
/// ```ignore
/// validate_id("user", &user).map_err(ApiError::bad_request)?;
/// let owned = shared::http::owned(&service.streams, user.as_bytes(), &uri)?;
/// match owned.get::<Profile>(STORE, user.as_bytes())? { … }
/// ```
pub fn owned<'a>(
    streams: &'a StreamsHandle,
    key: &[u8],
    uri: &axum::http::Uri,
) -> Result<Owned<'a>, QueryError> {
    match streams.route(key) {
        Route::Local => Ok(Owned {
            stores: &streams.stores,
            partition: streams.partition_of(key),
        }),
        Route::Remote(endpoint) => Err(QueryError(Box::new(redirect_to(&endpoint, uri)))),
        Route::Unavailable => Err(ApiError::unavailable(
            "the key's partition is being assigned; retry shortly",
        )
        .into()),
    }
}

/// The answers of [`owned`] besides the value, for a query's OpenAPI `responses(…)`:
/// `responses((status = 200, body = Profile), Routed, (status = 404, …))`.
#[derive(utoipa::IntoResponses)]
pub enum Routed {
    /// Another instance holds this key: the same request there (`Location`).
    #[response(status = 307)]
    Elsewhere,
    /// Nobody holds the key's partition yet (starting, rebalancing): retry shortly.
    #[response(status = 503)]
    Rebalancing,
}

/// The committed state of one task that runs here: the one [`owned`] routed a key to.
#[derive(Clone, Copy)]
pub struct Owned<'a> {
    stores: &'a StoreReader,
    pub partition: i32,
}

impl Owned<'_> {
    /// One key of `store` in this task (it need not be the routing key: `user/show` under
    /// `user`); a failed read is a 500 whose cause is logged.
    pub fn get<V: DeserializeOwned>(&self, store: &str, key: &[u8]) -> Result<Option<V>, ApiError> {
        self.stores
            .get_in(self.partition, store, key)
            .map_err(ApiError::internal)
    }

    /// How far this task's committed state goes on input `topic`; a 503 if the task has
    /// closed since [`owned`] routed here (a rebalance).
    pub fn applied(&self, topic: &str) -> Result<Applied, ApiError> {
        match self.stores.applied(self.partition, topic) {
            Ok(Some(applied)) => Ok(applied),
            Ok(None) => Err(ApiError::unavailable(
                "the key's partition is being reassigned; retry shortly",
            )),
            Err(err) => Err(ApiError::internal(err)),
        }
    }

    /// Waits until this task's committed state holds every record of `topic` below `offset`
    /// (see [`StoreReader::wait_applied`]); a 503 with the reason if it does not within
    /// `timeout` or the task closes meanwhile.
    pub async fn wait_applied(
        &self,
        topic: &str,
        offset: i64,
        timeout: Duration,
    ) -> Result<Applied, ApiError> {
        self.stores
            .wait_applied(self.partition, topic, offset, timeout)
            .await
            .map_err(|err| ApiError::unavailable(format!("{err:#}; retry shortly")))
    }

    /// The entries of `store` under `prefix` in this task, in key order.
    pub fn prefix<V: DeserializeOwned>(
        &self,
        store: &str,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, V)>, ApiError> {
        self.stores
            .prefix_in(self.partition, store, prefix)
            .map_err(ApiError::internal)
    }
}

/// A keyed query's answer other than the value: the redirect or 503 of [`owned`], or any
/// [`ApiError`] — so a query handler returns `Result<_, QueryError>` and uses `?` on both.
#[derive(Debug)]
pub struct QueryError(Box<Response>);

impl From<ApiError> for QueryError {
    fn from(err: ApiError) -> Self {
        QueryError(Box::new(err.into_response()))
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// A service's own readiness condition: `Err(reason)` while it cannot do its job (e.g. its
/// mail server keeps failing).
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Answers `/readyz` from cluster metadata and the services' [`ReadyCheck`]s.
#[derive(Clone)]
pub struct Readiness {
    admin: Arc<AdminClient<DefaultClientContext>>,
    checks: Arc<std::sync::RwLock<Vec<(&'static str, ReadyCheck)>>>,
}

impl Readiness {
    pub fn new(kafka: &Kafka) -> anyhow::Result<Self> {
        Ok(Readiness {
            admin: Arc::new(kafka.client_config().create()?),
            checks: Arc::default(),
        })
    }

    /// Adds a service's check (`name` appears in the 503 when it fails).
    pub fn add(&self, name: &'static str, check: ReadyCheck) {
        self.checks
            .write()
            .expect("readiness checks lock")
            .push((name, check));
    }

    /// Number of brokers, if the cluster answers within [`READINESS_TIMEOUT`].
    pub async fn check(&self) -> Result<usize, String> {
        let admin = Arc::clone(&self.admin);
        tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, READINESS_TIMEOUT))
            .await
            .map_err(|e| e.to_string())?
            .map(|m| m.brokers().len())
            .map_err(|e| e.to_string())
    }

    /// The services' checks that fail: (name, reason).
    pub fn failing(&self) -> Vec<(&'static str, String)> {
        self.checks
            .read()
            .expect("readiness checks lock")
            .iter()
            .filter_map(|(name, check)| check().err().map(|reason| (*name, reason)))
            .collect()
    }
}

/// `/healthz`, `/readyz` and `/metrics`, to merge into a service's router.
pub fn ops_router(readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(readiness)
}

async fn readyz(State(readiness): State<Readiness>) -> Result<Json<Value>, ApiError> {
    let brokers = readiness
        .check()
        .await
        .map_err(|err| ApiError::unavailable("broker unreachable").with_detail(err))?;
    let failing = readiness.failing();
    if !failing.is_empty() {
        let names: Vec<&str> = failing.iter().map(|(name, _)| *name).collect();
        let detail: serde_json::Map<String, Value> = failing
            .into_iter()
            .map(|(name, reason)| (name.to_owned(), Value::String(reason)))
            .collect();
        return Err(
            ApiError::unavailable(format!("not ready: {}", names.join(", "))).with_detail(detail),
        );
    }
    Ok(Json(json!({ "status": "ready", "brokers": brokers })))
}

async fn metrics_text() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::encode(),
    )
}

/// Adds what every service router gets: a JSON 404, every other error as JSON too (axum's own
/// rejections — a bad query string, a wrong method — are plain text or empty), and request
/// tracing.
pub fn finish(router: Router) -> Router {
    router
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::map_response(close_after_413))
        .layer(TraceLayer::new_for_http())
}

/// A 413 is answered before the request's body was read to its end, and the server then closes
/// the connection: `Connection: close` says so, so a client does not send its next request on
/// that connection (it would fail with an incomplete message) but opens a new one.
async fn close_after_413(mut response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// The largest non-JSON error body turned into a JSON `detail` (axum's rejections are short).
const ERROR_TEXT_LIMIT: usize = 16 * 1024;

/// A 4xx/5xx that is not JSON becomes `{"error": "<reason phrase>", "detail": "<its text>"}`,
/// keeping the headers a client acts on (`Allow`, `Retry-After`, `Location`).
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, ERROR_TEXT_LIMIT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let reason = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    let mut error = ApiError::new(status, reason);
    if !text.is_empty() {
        error = error.with_detail(text);
    }
    let mut json = error.into_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::LOCATION] {
        if let Some(value) = parts.headers.get(&name) {
            json.headers_mut().insert(name, value.clone());
        }
    }
    json
}

/// Serves `router` on `listener` until `shutdown` is cancelled, letting requests in flight end.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "http listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    struct Body1 {
        #[allow(dead_code)]
        n: u32,
    }

    #[derive(serde::Deserialize)]
    struct Limit {
        #[allow(dead_code)]
        limit: Option<usize>,
    }

    fn app() -> Router {
        finish(
            Router::new()
                .route("/n", post(|Json(_b): Json<Body1>| async { "ok" }))
                .route(
                    "/q",
                    get(|axum::extract::Query(_q): axum::extract::Query<Limit>| async { "ok" }),
                ),
        )
    }

    async fn call(req: axum::http::Request<Body>) -> (StatusCode, Value) {
        let response = app().oneshot(req).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn post_json(body: &str) -> axum::http::Request<Body> {
        axum::http::Request::post("/n")
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    #[tokio::test]
    async fn bad_json_is_a_400_with_a_message() {
        let (status, body) = call(post_json("{not json")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid request body");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("parse the request body"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn wrong_shape_is_a_400_not_a_422() {
        let (status, body) = call(post_json(r#"{"n": -1}"#)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["detail"].as_str().unwrap().contains("n"), "{body}");
    }

    #[tokio::test]
    async fn missing_content_type_is_a_415() {
        let req = axum::http::Request::post("/n")
            .body(Body::from("{}"))
            .unwrap();
        let (status, body) = call(req).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(body["error"], "invalid request body");
    }

    #[tokio::test]
    async fn unknown_route_is_a_json_404() {
        let req = axum::http::Request::get("/nope")
            .body(Body::empty())
            .unwrap();
        let (status, body) = call(req).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "no such route");
    }

    #[tokio::test]
    async fn a_bad_query_string_is_a_json_400() {
        let req = axum::http::Request::get("/q?limit=-1")
            .body(Body::empty())
            .unwrap();
        let (status, body) = call(req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "bad request");
        assert!(body["detail"].as_str().unwrap().contains("limit"), "{body}");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_a_json_413_that_closes_the_connection() {
        let body = format!(r#"{{"n": 1, "pad": "{}"}}"#, "x".repeat(3 << 20));
        let response = app().oneshot(post_json(&body)).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(body["error"].is_string(), "{body}");
    }

    #[tokio::test]
    async fn a_wrong_method_is_a_json_405_that_says_what_is_allowed() {
        let req = axum::http::Request::put("/n").body(Body::empty()).unwrap();
        let response = app().oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "POST");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"], "method not allowed");
    }
}
