//! **Like/comment service** (producer, command side): `PUT` / `DELETE
//! /v1/posts/{post}/likes/{user}` (like, unlike) → `likes`; `POST /v1/posts/{post}/comments` →
//! `comments`. Both topics are keyed by post id, so everything about a post is on one
//! partition and the counting needs no repartition.
//!
//! **Validation against an eventually consistent read model.** A command on a post the query
//! side does not know answers 404. The query side learns of a new post a hop later (posts →
//! the counting application → `posts_with_counts` → [`crate::read_model`]; tens of
//! milliseconds on an idle broker, longer under load), so a like sent right after its post
//! was created can be refused although the post exists: the 404 says so, and a client retries
//! (the simulator only reacts to posts it has seen in the feed). The other way round cannot
//! happen here — posts are never deleted. A command that passes is a fact for the counting
//! application, which counts a post's reactions even if they arrive before the post does.
//!
//! **Idempotence.** A like is "user U likes post P": the counting application keeps the set of
//! likers, so a second `PUT` (a retry, a double tap) is published but changes no count, and a
//! `DELETE` of a like that does not exist changes nothing either. The service does not read the
//! likers itself: the counts are the streams application's state, not the command side's.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{post, put};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use shared::http::{Accepted, ApiError, Json};
use shared::{EventProducer, Kafka};
use utoipa::ToSchema;

use crate::events::{
    CommentAdded, LikeChanged, MAX_COMMENT_CHARS, validate_post_id, validate_text, validate_user_id,
};
use crate::read_model::ReadModel;
use crate::topics::{COMMENTS, LIKES};

pub struct LikeCommentService {
    producer: EventProducer,
    likes: String,
    comments: String,
    posts: Arc<ReadModel>,
}

/// A new comment.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    pub user_id: String,
    /// 1 to 1000 characters, not blank.
    pub text: String,
}

/// The answer to a comment (`202 Accepted`).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct CommentAccepted {
    pub comment_id: String,
    pub event_id: String,
    pub partition: i32,
    pub offset: i64,
}

impl LikeCommentService {
    pub fn new(kafka: &Kafka, posts: Arc<ReadModel>) -> anyhow::Result<Self> {
        Ok(LikeCommentService {
            producer: EventProducer::new(kafka)?,
            likes: kafka.topic(&LIKES),
            comments: kafka.topic(&COMMENTS),
            posts,
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/posts/{post}/likes/{user}", put(like).delete(unlike))
            .route("/v1/posts/{post}/comments", post(comment))
            .with_state(self)
    }

    /// The post must be known to the query side (see the module documentation).
    fn known(&self, post: &str) -> Result<(), ApiError> {
        validate_post_id("post_id", post).map_err(ApiError::bad_request)?;
        if self.posts.get(post).is_none() {
            return Err(ApiError::not_found("unknown post").with_detail(
                "no such post in the read model; a post created a moment ago may not be there yet: retry shortly",
            ));
        }
        Ok(())
    }

    async fn set_like(
        &self,
        post: String,
        user: String,
        liked: bool,
    ) -> Result<(StatusCode, Json<Accepted>), ApiError> {
        validate_user_id("user_id", &user).map_err(ApiError::bad_request)?;
        self.known(&post)?;
        let event = LikeChanged {
            event_id: shared::event::new_event_id(),
            post_id: post,
            user_id: user,
            liked,
            at: Utc::now(),
        };
        Accepted::publish(&self.producer, &self.likes, &event.post_id, &event).await
    }

    pub fn flush(&self) {
        if let Err(err) = self.producer.flush(std::time::Duration::from_secs(10)) {
            tracing::warn!(%err, "like/comment service: flush on shutdown");
        }
    }
}

/// `user` likes `post` (idempotent).
#[utoipa::path(
    put,
    path = "/v1/posts/{post}/likes/{user}",
    tag = "like/comment service",
    params(("post" = String, Path), ("user" = String, Path)),
    responses(
        (status = 202, description = "Published to likes", body = Accepted),
        (status = 400, description = "Bad post or user id"),
        (status = 404, description = "Unknown post (or too new for the read model: retry)"),
        (status = 503, description = "The broker did not acknowledge the record"),
    )
)]
pub async fn like(
    State(service): State<Arc<LikeCommentService>>,
    Path((post, user)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    service.set_like(post, user, true).await
}

/// `user` no longer likes `post` (idempotent).
#[utoipa::path(
    delete,
    path = "/v1/posts/{post}/likes/{user}",
    tag = "like/comment service",
    params(("post" = String, Path), ("user" = String, Path)),
    responses(
        (status = 202, description = "Published to likes", body = Accepted),
        (status = 400, description = "Bad post or user id"),
        (status = 404, description = "Unknown post (or too new for the read model: retry)"),
        (status = 503, description = "The broker did not acknowledge the record"),
    )
)]
pub async fn unlike(
    State(service): State<Arc<LikeCommentService>>,
    Path((post, user)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    service.set_like(post, user, false).await
}

/// Comments on `post`.
#[utoipa::path(
    post,
    path = "/v1/posts/{post}/comments",
    tag = "like/comment service",
    params(("post" = String, Path)),
    request_body = NewComment,
    responses(
        (status = 202, description = "Published to comments", body = CommentAccepted),
        (status = 400, description = "Bad post id, user id or text"),
        (status = 404, description = "Unknown post (or too new for the read model: retry)"),
        (status = 503, description = "The broker did not acknowledge the record"),
    )
)]
pub async fn comment(
    State(service): State<Arc<LikeCommentService>>,
    Path(post): Path<String>,
    Json(comment): Json<NewComment>,
) -> Result<(StatusCode, Json<CommentAccepted>), ApiError> {
    validate_user_id("user_id", &comment.user_id).map_err(ApiError::bad_request)?;
    validate_text("text", &comment.text, MAX_COMMENT_CHARS).map_err(ApiError::bad_request)?;
    service.known(&post)?;
    let event = CommentAdded {
        event_id: shared::event::new_event_id(),
        comment_id: shared::event::new_event_id(),
        post_id: post,
        user_id: comment.user_id,
        text: comment.text,
        at: Utc::now(),
    };
    let (status, Json(accepted)) =
        Accepted::publish(&service.producer, &service.comments, &event.post_id, &event).await?;
    Ok((
        status,
        Json(CommentAccepted {
            comment_id: event.comment_id,
            event_id: accepted.event_id,
            partition: accepted.partition,
            offset: accepted.offset,
        }),
    ))
}

/// The like/comment service on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "like-comment-service"
    }
    fn about(&self) -> &'static str {
        "PUT/DELETE /v1/posts/{post}/likes/{user} → likes; POST /v1/posts/{post}/comments → comments (validated against posts_with_counts)."
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let posts = resources.read_model.get(&ctx.kafka, &ctx.shutdown).await?;
        let service = Arc::new(LikeCommentService::new(&ctx.kafka, Arc::clone(&posts))?);
        let flushed = Arc::clone(&service);
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&service).router())
            .handle(service)
            .ready_check("posts read model", move || {
                if posts.is_caught_up() {
                    Ok(())
                } else {
                    Err("still reading posts_with_counts".into())
                }
            })
            .on_stop(async move {
                flushed.flush();
                Ok(())
            }))
    }
}
