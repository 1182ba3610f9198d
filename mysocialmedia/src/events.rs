//! The records on MySocialMedia's topics (JSON), and the rules every service applies to them:
//! the command side checks them before publishing, the streams applications check them again
//! (anything may be written to a topic) and dead-letter what fails.
//!
//! Commands become facts: "user_123 liked post_456 at 15:00" is a [`LikeChanged`] on `likes`,
//! keyed by the post.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::Event;
use utoipa::ToSchema;

/// The longest caption, in characters (Instagram's limit).
pub const MAX_CAPTION_CHARS: usize = 2200;
/// The longest comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 1000;

/// User ids are handles: 1–32 characters of `a–z 0–9 _ .`, starting with a letter
/// (`user_123`, `ann.lee`).
pub fn validate_user_id(field: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 32 {
        return Err(format!(
            "{field} must be 1 to 32 characters, not {}",
            id.chars().count()
        ));
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("{field} {id:?} must start with a lowercase letter"));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '.'))
    {
        return Err(format!(
            "{field} {id:?} has {bad:?}: only a-z, 0-9, '_' and '.' are allowed"
        ));
    }
    Ok(())
}

/// Post (and comment) ids are UUIDs, minted by the command side: version 7, so they sort by
/// creation time — the feed's order is the post store's key order.
pub fn validate_post_id(field: &str, id: &str) -> Result<(), String> {
    match uuid::Uuid::try_parse(id) {
        Ok(uuid) if uuid.hyphenated().to_string() == id => Ok(()),
        Ok(_) => Err(format!(
            "{field} {id:?} must be a lowercase hyphenated UUID"
        )),
        Err(err) => Err(format!("{field} {id:?} is not a UUID: {err}")),
    }
}

/// Text a person typed: trimmed non-empty, at most `max` characters, no control characters but
/// line breaks and tabs.
pub fn validate_text(field: &str, text: &str, max: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("{field} is empty"));
    }
    let chars = text.chars().count();
    if chars > max {
        return Err(format!("{field} has {chars} characters, at most {max}"));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(format!("{field} contains the control character {bad:?}"));
    }
    Ok(())
}

/// Where a post's image is: its key in the blob store and what was checked on upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageRef {
    /// The blob store key: `images/<sha256>.<ext>` (content-addressed: the same bytes are
    /// stored once). Served at `GET /v1/images/<sha256>.<ext>`.
    pub key: String,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// Detected from the bytes (not the client's claim): `image/png`, `image/jpeg`,
    /// `image/gif` or `image/webp`.
    pub content_type: String,
    pub bytes: u64,
}

impl ImageRef {
    pub fn validate(&self) -> Result<(), String> {
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "image sha256 {:?} is not 64 hex digits",
                self.sha256
            ));
        }
        if !self.key.starts_with("images/") || !self.key.contains(&self.sha256) {
            return Err(format!(
                "image key {:?} is not images/<sha256>.<ext>",
                self.key
            ));
        }
        if crate::images::extension(&self.content_type).is_none() {
            return Err(format!("image type {:?} is not allowed", self.content_type));
        }
        Ok(())
    }
}

/// "`user_id` posted `post_id` at `at`" — on `posts`, key `user_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PostCreated {
    pub event_id: String,
    pub post_id: String,
    pub user_id: String,
    pub caption: String,
    pub image: ImageRef,
    pub at: DateTime<Utc>,
}

impl Event for PostCreated {
    const TYPE: &'static str = "PostCreated";
    fn event_id(&self) -> String {
        self.event_id.clone()
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
}

impl PostCreated {
    pub fn validate(&self) -> Result<(), String> {
        validate_post_id("post_id", &self.post_id)?;
        validate_user_id("user_id", &self.user_id)?;
        validate_text("caption", &self.caption, MAX_CAPTION_CHARS)?;
        self.image.validate()
    }
}

/// "`user_id` liked (or unliked) `post_id` at `at`" — on `likes`, key `post_id`. A second like by
/// the same user is a fact too; the counts treat likes as a set of users, so it changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LikeChanged {
    pub event_id: String,
    pub post_id: String,
    pub user_id: String,
    /// `true`: liked; `false`: unliked.
    pub liked: bool,
    pub at: DateTime<Utc>,
}

impl Event for LikeChanged {
    const TYPE: &'static str = "LikeChanged";
    fn event_id(&self) -> String {
        self.event_id.clone()
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
}

impl LikeChanged {
    pub fn validate(&self) -> Result<(), String> {
        validate_post_id("post_id", &self.post_id)?;
        validate_user_id("user_id", &self.user_id)
    }
}

/// "`user_id` commented `text` on `post_id` at `at`" — on `comments`, key `post_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommentAdded {
    pub event_id: String,
    pub comment_id: String,
    pub post_id: String,
    pub user_id: String,
    pub text: String,
    pub at: DateTime<Utc>,
}

impl Event for CommentAdded {
    const TYPE: &'static str = "CommentAdded";
    fn event_id(&self) -> String {
        self.event_id.clone()
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
}

impl CommentAdded {
    pub fn validate(&self) -> Result<(), String> {
        validate_post_id("post_id", &self.post_id)?;
        validate_post_id("comment_id", &self.comment_id)?;
        validate_user_id("user_id", &self.user_id)?;
        validate_text("text", &self.text, MAX_COMMENT_CHARS)
    }
}

/// A post with its live counts — on `posts_with_counts` (compacted), key `post_id`: the read
/// model, emitted when the post or its counts change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PostWithCounts {
    pub post_id: String,
    pub user_id: String,
    pub caption: String,
    pub image: ImageRef,
    pub created_at: DateTime<Utc>,
    /// Distinct users who like the post now.
    pub likes: u64,
    pub comments: u64,
    /// The event time of the latest like, unlike or comment counted (or the post's own time):
    /// event → read model latency is measured from it.
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
impl PostWithCounts {
    /// A post by `user_id` with a 1-byte GIF, created and updated `at`: for unit tests.
    pub fn sample(
        post_id: &str,
        user_id: &str,
        likes: u64,
        comments: u64,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            post_id: post_id.to_owned(),
            user_id: user_id.to_owned(),
            caption: format!("caption of {post_id}"),
            image: ImageRef {
                key: String::new(),
                sha256: String::new(),
                content_type: "image/gif".into(),
                bytes: 1,
            },
            created_at: at,
            likes,
            comments,
            updated_at: at,
        }
    }
}

/// One post on a trending board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ranked {
    pub post_id: String,
    /// [`crate::trending::score`]: likes + 3 × comments in the window.
    pub score: i64,
    /// Net new likes in the window (unlikes subtract).
    pub likes: i64,
    pub comments: i64,
}

/// The top posts of one window — on `trending_posts`, key = the window's end (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrendingPosts {
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// `true` once the window closed (its end + grace passed in stream time): this ranking is
    /// the window's last. `false`: an update while the window is open.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Best first; ties by post id, ascending (the older post first: ids are time-ordered).
    pub posts: Vec<Ranked>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_handles() {
        assert!(validate_user_id("user_id", "user_123").is_ok());
        assert!(validate_user_id("user_id", "ann.lee").is_ok());
        assert!(
            validate_user_id("user_id", "")
                .unwrap_err()
                .contains("1 to 32")
        );
        assert!(validate_user_id("user_id", &"a".repeat(33)).is_err());
        assert!(
            validate_user_id("user_id", "9lives")
                .unwrap_err()
                .contains("letter")
        );
        assert!(
            validate_user_id("user_id", "Ann")
                .unwrap_err()
                .contains("letter")
        );
        let err = validate_user_id("user_id", "ann/../x").unwrap_err();
        assert!(err.contains("'/'"), "{err}");
    }

    #[test]
    fn post_ids_are_lowercase_uuids() {
        let id = shared::event::new_event_id();
        assert!(validate_post_id("post_id", &id).is_ok());
        assert!(validate_post_id("post_id", &id.to_uppercase()).is_err());
        assert!(
            validate_post_id("post_id", "post_456")
                .unwrap_err()
                .contains("UUID")
        );
    }

    #[test]
    fn text_rules() {
        assert!(validate_text("caption", "sunset 🌅", 10).is_ok());
        assert_eq!(
            validate_text("caption", " \n ", 10),
            Err("caption is empty".into())
        );
        assert!(
            validate_text("caption", &"é".repeat(11), 10)
                .unwrap_err()
                .contains("11")
        );
        assert!(
            validate_text("caption", "a\u{7}b", 10)
                .unwrap_err()
                .contains("control")
        );
        assert!(validate_text("caption", "line\nbreak", 10).is_ok());
    }
}
