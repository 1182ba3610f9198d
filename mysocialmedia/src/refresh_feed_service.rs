//! **Refresh feed service** (consumer, query side): the website's feed from `posts_with_counts`,
//! materialized in this process ([`crate::read_model`]) — never from the command side.
//!
//! * `GET /v1/posts/{post}` — a post with its counts;
//! * `GET /v1/feed?limit=20&before=<post id>` — the newest posts with counts, newest first; the
//!   answer's `next` is the `before` of the next page;
//! * `GET /v1/feed/events?post=<post id>` — server-sent events (`event: post`, a
//!   [`PostWithCounts`]) each time a post's counts change: every post's, or one post's.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use shared::http::{ApiError, Json};
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use crate::events::{PostWithCounts, validate_post_id};
use crate::read_model::ReadModel;

/// The largest page.
pub const MAX_PAGE: usize = 100;

pub struct RefreshFeedService {
    posts: Arc<ReadModel>,
    shutdown: CancellationToken,
}

/// `GET /v1/feed`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// Posts per page, 1 to 100 (default 20).
    pub limit: Option<usize>,
    /// Only posts older than this one (the previous page's `next`).
    pub before: Option<String>,
}

/// A page of the feed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedPage {
    pub posts: Vec<PostWithCounts>,
    /// The `before` of the next page; absent on the last page.
    pub next: Option<String>,
}

/// `GET /v1/feed/events`' query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only this post's changes.
    pub post: Option<String>,
}

impl RefreshFeedService {
    pub fn new(posts: Arc<ReadModel>, shutdown: CancellationToken) -> Self {
        RefreshFeedService { posts, shutdown }
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/posts/{post}", get(get_post))
            .route("/v1/feed", get(feed))
            .route("/v1/feed/events", get(feed_events))
            .with_state(self)
    }
}

/// A post with its live counts.
#[utoipa::path(
    get,
    path = "/v1/posts/{post}",
    tag = "refresh feed service",
    params(("post" = String, Path)),
    responses(
        (status = 200, body = PostWithCounts),
        (status = 400, description = "Not a post id"),
        (status = 404, description = "No such post (yet)"),
    )
)]
pub async fn get_post(
    State(service): State<Arc<RefreshFeedService>>,
    Path(post): Path<String>,
) -> Result<Json<PostWithCounts>, ApiError> {
    validate_post_id("post", &post).map_err(ApiError::bad_request)?;
    service
        .posts
        .get(&post)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such post"))
}

/// The newest posts with their counts.
#[utoipa::path(
    get,
    path = "/v1/feed",
    tag = "refresh feed service",
    params(FeedQuery),
    responses(
        (status = 200, body = FeedPage),
        (status = 400, description = "Bad limit or before"),
    )
)]
pub async fn feed(
    State(service): State<Arc<RefreshFeedService>>,
    Query(query): Query<FeedQuery>,
) -> Result<Json<FeedPage>, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}, not {limit}"
        )));
    }
    if let Some(before) = &query.before {
        validate_post_id("before", before).map_err(ApiError::bad_request)?;
    }
    // One more than asked: whether there is a next page.
    let mut posts = service.posts.feed(query.before.as_deref(), limit + 1);
    let next = (posts.len() > limit).then(|| {
        posts.truncate(limit);
        posts.last().map(|p| p.post_id.clone())
    });
    Ok(Json(FeedPage {
        posts,
        next: next.flatten(),
    }))
}

/// Live counts: a server-sent event per change.
#[utoipa::path(
    get,
    path = "/v1/feed/events",
    tag = "refresh feed service",
    params(EventsQuery),
    responses(
        (status = 200, description = "text/event-stream of PostWithCounts (event: post)", content_type = "text/event-stream"),
        (status = 400, description = "Not a post id"),
    )
)]
pub async fn feed_events(
    State(service): State<Arc<RefreshFeedService>>,
    Query(query): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    if let Some(post) = &query.post {
        validate_post_id("post", post).map_err(ApiError::bad_request)?;
    }
    let only = query.post;
    let stream = BroadcastStream::new(service.posts.subscribe())
        .filter_map(move |update| {
            // A subscriber too slow for the rate of changes skips some: the next change of a
            // post carries its counts whole.
            let event = update
                .ok()
                .filter(|post| only.as_ref().is_none_or(|only| *only == post.post_id));
            async move {
                event.map(|post| {
                    Ok(SseEvent::default()
                        .event("post")
                        .json_data(&post)
                        .unwrap_or_else(|_| SseEvent::default().comment("unserializable")))
                })
            }
        })
        .take_until(service.shutdown.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The refresh feed service on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "refresh-feed-service"
    }
    fn about(&self) -> &'static str {
        "posts_with_counts → GET /v1/posts/{post}, GET /v1/feed, GET /v1/feed/events (live counts)."
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let posts = resources.read_model.get(&ctx.kafka, &ctx.shutdown).await?;
        let service = Arc::new(RefreshFeedService::new(
            Arc::clone(&posts),
            ctx.shutdown.clone(),
        ));
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&service).router())
            .handle(Arc::clone(&posts))
            .handle(service)
            .ready_check("feed read model", move || {
                if posts.is_caught_up() {
                    Ok(())
                } else {
                    Err("still reading posts_with_counts".into())
                }
            }))
    }
}
