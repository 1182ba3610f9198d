//! The dashboard's routes: the page and its assets (compiled into the binary), and the JSON API
//! described in `API.md` beside this file. Every error is JSON with a 4xx status.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use futures::StreamExt;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::wrappers::WatchStream;

use shared::http::{ApiError, Json};

use super::case_study::{Control, Live, SpareError};
use super::sampler::Sampled;
use super::tail::{RECENT, Tail};

/// What every handler reads.
pub struct Dashboard {
    pub lives: Vec<Arc<Live>>,
    pub tail: Tail,
    pub sampled: Sampled,
    pub control: tokio::sync::mpsc::Sender<Control>,
    pub producer: FutureProducer,
    pub http: reqwest::Client,
    /// Ends the event streams when the dashboard stops (the server waits for open ones).
    pub stop: tokio_util::sync::CancellationToken,
}

type AppState = State<Arc<Dashboard>>;

pub fn router(dashboard: Arc<Dashboard>) -> Router {
    let api = Router::new()
        .route("/api/case-studies", get(list))
        .route("/api/case-studies/{cs}", get(describe))
        .route("/api/events", get(events))
        .route(
            "/api/case-studies/{cs}/topics/{topic}/records",
            get(records),
        )
        .route(
            "/api/case-studies/{cs}/topics/{topic}/malformed",
            post(malformed),
        )
        .route(
            "/api/case-studies/{cs}/services/{service}/metrics",
            get(metrics),
        )
        .route("/api/case-studies/{cs}/query", get(query))
        .route("/api/case-studies/{cs}/knob", post(knob))
        .route("/api/case-studies/{cs}/spare/{action}", post(spare))
        .with_state(dashboard);
    let page = Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX)))
        .route(
            "/assets/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/assets/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        );
    shared::http::finish(api.merge(page))
}

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

impl Dashboard {
    fn live(&self, name: &str) -> Result<&Arc<Live>, ApiError> {
        self.lives.iter().find(|l| l.name() == name).ok_or_else(|| {
            let names: Vec<&str> = self.lives.iter().map(|l| l.name()).collect();
            ApiError::not_found(format!("no case study {name:?} runs here"))
                .with_detail(json!({ "running": names }))
        })
    }
}

fn topic_of(live: &Live, topic: &str) -> Result<String, ApiError> {
    live.topic(topic).ok_or_else(|| {
        ApiError::not_found(format!("{} has no topic {topic:?}", live.name())).with_detail(
            json!({ "topics": live.description.topics.iter().map(|t| &t.name).collect::<Vec<_>>() }),
        )
    })
}

async fn list(State(d): AppState) -> Json<Vec<Value>> {
    Json(
        d.lives
            .iter()
            .map(|l| serde_json::to_value(&l.description).unwrap_or(Value::Null))
            .collect(),
    )
}

async fn describe(State(d): AppState, Path(cs): Path<String>) -> Result<Json<Value>, ApiError> {
    let live = d.live(&cs)?;
    serde_json::to_value(&live.description)
        .map(Json)
        .map_err(ApiError::internal)
}

async fn events(State(d): AppState) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = WatchStream::new(d.sampled.snapshot.clone())
        .map(|json| Ok(Event::default().event("snapshot").data(json.as_str())))
        .take_until(d.stop.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[derive(Deserialize)]
struct RecordsParams {
    limit: Option<String>,
    key: Option<String>,
    contains: Option<String>,
    partition: Option<String>,
}

/// The longest `key` or `contains` filter.
const FILTER_LIMIT: usize = 256;

async fn records(
    State(d): AppState,
    Path((cs, topic)): Path<(String, String)>,
    Query(params): Query<RecordsParams>,
) -> Result<Json<Value>, ApiError> {
    let live = d.live(&cs)?;
    let full = topic_of(live, &topic)?;
    let limit = match params.limit.as_deref() {
        None => 50,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=RECENT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit must be a number from 1 to {RECENT}, got {text:?}"
                )));
            }
        },
    };
    let partitions = d.tail.partitions(&full).unwrap_or(0);
    let partition = match params.partition.as_deref() {
        None => None,
        Some(text) => match text.parse::<i32>() {
            Ok(p) if p >= 0 && (p as usize) < partitions => Some(p),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "partition must be a number from 0 to {}, got {text:?}",
                    partitions.saturating_sub(1)
                )));
            }
        },
    };
    for (name, value) in [("key", &params.key), ("contains", &params.contains)] {
        if let Some(value) = value
            && (value.is_empty()
                || value.len() > FILTER_LIMIT
                || value.chars().any(char::is_control))
        {
            return Err(ApiError::bad_request(format!(
                "{name} must be 1 to {FILTER_LIMIT} characters without control characters"
            )));
        }
    }
    let records = d.tail.recent(&full, limit, |r| {
        partition.is_none_or(|p| r.partition == p)
            && params
                .key
                .as_deref()
                .is_none_or(|k| r.key.as_deref() == Some(k))
            && params.contains.as_deref().is_none_or(|c| {
                r.key.as_deref().is_some_and(|k| k.contains(c)) || r.value_text().contains(c)
            })
    });
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut value = serde_json::to_value(r).unwrap_or(Value::Null);
            value["value"] = r.value_json();
            value
        })
        .collect();
    Ok(Json(json!({ "topic": topic, "records": records })))
}

async fn malformed(
    State(d): AppState,
    Path((cs, topic)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let live = d.live(&cs)?;
    let full = topic_of(live, &topic)?;
    let consumed = live
        .description
        .topics
        .iter()
        .any(|t| t.name == topic && t.dlq.is_some());
    if !consumed {
        return Err(ApiError::bad_request(format!(
            "{topic} is not a topic anybody consumes: a malformed record would reach no dead-letter topic"
        )));
    }
    let record = FutureRecord::to(&full)
        .key("dashboard")
        .payload("{\"sent by\": \"the dashboard\", this is not JSON");
    match d.producer.send(record, Duration::from_secs(10)).await {
        Ok(delivery) => Ok(Json(json!({
            "topic": topic,
            "partition": delivery.partition,
            "offset": delivery.offset,
        }))),
        Err((err, _)) => Err(ApiError::unavailable(format!("cannot produce: {err}"))),
    }
}

async fn metrics(
    State(d): AppState,
    Path((cs, service)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let live = d.live(&cs)?;
    if !live.description.services.contains(&service.as_str()) {
        return Err(
            ApiError::not_found(format!("{cs} has no service {service:?}"))
                .with_detail(json!({ "services": live.description.services })),
        );
    }
    let series = d.sampled.history.lock().expect("history lock").of(&service);
    Ok(Json(json!({ "service": service, "series": series })))
}

#[derive(Deserialize)]
struct QueryParams {
    path: Option<String>,
}

async fn query(
    State(d): AppState,
    Path(cs): Path<String>,
    Query(params): Query<QueryParams>,
) -> Result<Json<Value>, ApiError> {
    let live = d.live(&cs)?;
    let path = params.path.unwrap_or_default();
    if !live.description.queries.iter().any(|q| q.matches(&path)) {
        return Err(ApiError::bad_request(format!(
            "path must be one of {cs}'s query routes with its parameters filled in, got {path:?}"
        ))
        .with_detail(json!({
            "routes": live.description.queries.iter().map(|q| q.path).collect::<Vec<_>>()
        })));
    }
    let response = d
        .http
        .get(format!("{}{path}", live.description.api))
        .send()
        .await
        .map_err(|err| ApiError::unavailable(format!("{cs} did not answer: {err}")))?;
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    Ok(Json(json!({ "status": status, "body": body })))
}

#[derive(Deserialize)]
struct KnobBody {
    value: f64,
}

async fn knob(
    State(d): AppState,
    Path(cs): Path<String>,
    Json(body): Json<KnobBody>,
) -> Result<Json<Value>, ApiError> {
    let live = d.live(&cs)?;
    live.knob.set(body.value).map_err(ApiError::bad_request)?;
    Ok(Json(json!({ "value": live.knob.get() })))
}

async fn spare(
    State(d): AppState,
    Path((cs, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let live = d.live(&cs)?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let control = match action.as_str() {
        "stop" => Control::StopSpare(cs.clone(), reply),
        "start" => Control::StartSpare(cs.clone(), reply),
        _ => {
            return Err(ApiError::not_found(format!(
                "no action {action:?}: stop or start"
            )));
        }
    };
    d.control
        .send(control)
        .await
        .map_err(|_| ApiError::unavailable("the dashboard is stopping"))?;
    match answer.await {
        Ok(Ok(())) => Ok(Json(json!({
            "service": live.description.spare.as_ref().map(|s| s.service),
            "running": live.spare.lock().expect("spare lock").running,
        }))),
        Ok(Err(err @ SpareError::None(_))) => Err(ApiError::not_found(err.to_string())),
        Ok(Err(err @ SpareError::Already(..))) => {
            Err(ApiError::new(StatusCode::CONFLICT, err.to_string()))
        }
        Ok(Err(SpareError::Failed(err))) => Err(ApiError::internal(format!("{err:#}"))),
        Err(_) => Err(ApiError::unavailable("the dashboard is stopping")),
    }
}
