//! **Posting service** (producer, command side): `POST /v1/posts`, a `multipart/form-data` form
//! with `author`, `caption` and `image`. The image goes to the blob store ([`crate::images`]:
//! content-addressed, type judged by its bytes); the post — with the image's key and hash, never
//! its bytes — is published to `posts`, keyed by `user_id` (one author's posts stay in order).
//! The post id is minted here (UUIDv7: time-ordered), so the answer names it at once.
//!
//! Refused with a JSON reason, nothing stored or published: a body that is not multipart (415),
//! a missing, repeated or unknown field (400), a bad author or caption (400), an image over
//! [`MAX_IMAGE_BYTES`] (413) or not a PNG, JPEG, GIF or WebP (415).

use std::sync::Arc;

use axum::Router;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use shared::http::{ApiError, Json};
use shared::{EventProducer, Kafka};
use utoipa::ToSchema;

use crate::events::{ImageRef, MAX_CAPTION_CHARS, PostCreated, validate_text, validate_user_id};
use crate::images::{ImageError, ImageStore, MAX_IMAGE_BYTES};
use crate::topics::POSTS;

/// The form's fields besides the image are short; the whole body may be this much larger.
const FORM_OVERHEAD: usize = 64 * 1024;

pub struct PostingService {
    producer: EventProducer,
    topic: String,
    images: ImageStore,
}

/// The answer to a new post (`202 Accepted`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PostAccepted {
    pub post_id: String,
    pub event_id: String,
    pub partition: i32,
    pub offset: i64,
    pub image: ImageRef,
}

/// The form of `POST /v1/posts` (for the API description).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NewPostForm {
    /// The author's user id (`a–z 0–9 _ .`, 1–32, starting with a letter).
    author: String,
    /// 1 to 2200 characters, not blank.
    caption: String,
    /// PNG, JPEG, GIF or WebP, at most 5 MiB.
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
}

impl PostingService {
    pub fn new(kafka: &Kafka, images: ImageStore) -> anyhow::Result<Self> {
        Ok(PostingService {
            producer: EventProducer::new(kafka)?,
            topic: kafka.topic(&POSTS),
            images,
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(
                "/v1/posts",
                post(create_post).layer(DefaultBodyLimit::max(MAX_IMAGE_BYTES + FORM_OVERHEAD)),
            )
            .route("/v1/images/{name}", get(image))
            .with_state(self)
    }

    pub fn flush(&self) {
        if let Err(err) = self.producer.flush(std::time::Duration::from_secs(10)) {
            tracing::warn!(%err, "posting service: flush on shutdown");
        }
    }
}

fn multipart_error(err: axum::extract::multipart::MultipartError) -> ApiError {
    let status = err.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("the form is larger than the {MAX_IMAGE_BYTES}-byte image limit allows")
    } else {
        "malformed multipart/form-data body".to_owned()
    };
    ApiError::new(status, message).with_detail(err.body_text())
}

/// Publishes a post with an image.
#[utoipa::path(
    post,
    path = "/v1/posts",
    tag = "posting service",
    request_body(content = NewPostForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "Image stored, post published to posts", body = PostAccepted),
        (status = 400, description = "Bad or missing field (the message says which)"),
        (status = 413, description = "Image over 5 MiB"),
        (status = 415, description = "Not multipart/form-data, or the image is not PNG, JPEG, GIF or WebP"),
        (status = 503, description = "The broker did not acknowledge the post"),
    )
)]
pub async fn create_post(
    State(service): State<Arc<PostingService>>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<PostAccepted>), ApiError> {
    let mut form = form.map_err(|rejection| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected a multipart/form-data body with author, caption and image",
        )
        .with_detail(rejection.body_text())
    })?;
    let (mut author, mut caption, mut image) = (None::<String>, None::<String>, None::<Bytes>);
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        let slot_taken = match name.as_str() {
            "author" => author.is_some(),
            "caption" => caption.is_some(),
            "image" => image.is_some(),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown field {other:?}: the form has author, caption and image"
                )));
            }
        };
        if slot_taken {
            return Err(ApiError::bad_request(format!("field {name:?} given twice")));
        }
        match name.as_str() {
            "image" => image = Some(field.bytes().await.map_err(multipart_error)?),
            _ => {
                let text = field.text().await.map_err(|err| {
                    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        multipart_error(err)
                    } else {
                        ApiError::bad_request(format!("field {name:?} is not UTF-8 text"))
                    }
                })?;
                if name == "author" {
                    author = Some(text);
                } else {
                    caption = Some(text);
                }
            }
        }
    }
    let author = author.ok_or_else(|| ApiError::bad_request("missing field \"author\""))?;
    let caption = caption.ok_or_else(|| ApiError::bad_request("missing field \"caption\""))?;
    let image = image.ok_or_else(|| ApiError::bad_request("missing field \"image\""))?;
    validate_user_id("author", &author).map_err(ApiError::bad_request)?;
    validate_text("caption", &caption, MAX_CAPTION_CHARS).map_err(ApiError::bad_request)?;
    let image = service.images.put(image).await.map_err(|err| match err {
        ImageError::TooLarge(_) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, err.to_string()),
        ImageError::UnsupportedType => {
            ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, err.to_string())
        }
        ImageError::Empty => ApiError::bad_request(err.to_string()),
        ImageError::Store(_) => ApiError::unavailable("the image could not be stored"),
    })?;
    let post = PostCreated {
        event_id: shared::event::new_event_id(),
        post_id: shared::event::new_event_id(),
        user_id: author,
        caption,
        image,
        at: Utc::now(),
    };
    post.validate().map_err(ApiError::bad_request)?;
    let delivery = service
        .producer
        .publish(&service.topic, &post.user_id, &post)
        .await
        .map_err(|err| ApiError::unavailable(err.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(PostAccepted {
            post_id: post.post_id,
            event_id: post.event_id,
            partition: delivery.partition,
            offset: delivery.offset,
            image: post.image,
        }),
    ))
}

/// A post's image from the blob store.
#[utoipa::path(
    get,
    path = "/v1/images/{name}",
    tag = "posting service",
    params(("name" = String, Path, description = "<sha256>.<ext>, as in the post's image key")),
    responses(
        (status = 200, description = "The image bytes"),
        (status = 404, description = "No such image"),
    )
)]
pub async fn image(
    State(service): State<Arc<PostingService>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match service.images.get(&name).await {
        Ok(Some((bytes, content_type))) => Ok((
            [
                (header::CONTENT_TYPE, content_type),
                // Content-addressed: the bytes under a name never change.
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response()),
        Ok(None) => Err(ApiError::not_found("no such image")),
        Err(err) => Err(ApiError::internal(err)),
    }
}

/// The posting service on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "posting-service"
    }
    fn about(&self) -> &'static str {
        "POST /v1/posts (image → blob store) → posts; GET /v1/images/{name}."
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let service = Arc::new(PostingService::new(&ctx.kafka, resources.images.clone())?);
        let flushed = Arc::clone(&service);
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&service).router())
            .handle(service)
            .on_stop(async move {
                flushed.flush();
                Ok(())
            }))
    }
}
