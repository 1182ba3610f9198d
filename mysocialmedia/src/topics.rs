//! Every topic of MySocialMedia (the architecture slide, in code). CQRS: commands are events on
//! `posts`, `likes` and `comments`; the read side is `posts_with_counts` and `trending_posts`.
//!
//! ```text
//! user posts ─▶ posting service ─▶ posts ──────┐
//! user likes ─▶ like/comment service ─▶ likes ─┼─▶ post counts (streams) ─▶ posts_with_counts ─▶ refresh feed service ─▶ website
//!                             └─▶ comments ────┘                                 └─▶ trending posts (streams) ─▶ trending_posts ─▶ trending feed service
//! ```

use shared::{Cleanup, Retention, TopicSpec};

pub const CASE_STUDY: &str = "mysocialmedia";

/// A user published a post.
pub const POSTS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "posts",
    key: "user_id",
    // Many producers; > 30 partitions for the launch.
    partitions: 32,
    // Long retention: the posts themselves are the record of truth.
    retention: Retention::Forever,
    cleanup: Cleanup::Delete,
    purpose: "PostCreated events: what users posted",
    producers: &["posting service"],
    consumers: &["post counts (streams: total likes & comments)"],
};

/// A user liked (or unliked) a post.
pub const LIKES: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "likes",
    key: "post_id",
    // Highly distributed: a viral post's likes all go to one partition, the rest spread.
    partitions: 32,
    retention: Retention::days(30),
    cleanup: Cleanup::Delete,
    purpose: "PostLiked / PostUnliked events, keyed by post so counting needs no repartition",
    producers: &["like/comment service"],
    consumers: &[
        "post counts (streams: total likes & comments)",
        "trending posts (streams)",
    ],
};

/// A user commented on a post.
pub const COMMENTS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "comments",
    key: "post_id",
    partitions: 32,
    retention: Retention::Forever,
    cleanup: Cleanup::Delete,
    purpose: "CommentAdded events, keyed by post",
    producers: &["like/comment service"],
    consumers: &[
        "post counts (streams: total likes & comments)",
        "trending posts (streams)",
    ],
};

/// Each post with its live like and comment counts.
pub const POSTS_WITH_COUNTS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "posts_with_counts",
    key: "post_id",
    partitions: 32,
    retention: Retention::Forever,
    // Aggregated counts: only the latest per post matters.
    cleanup: Cleanup::Compact,
    purpose: "the read model: each post with its current like/comment counts",
    producers: &["post counts (streams: total likes & comments)"],
    consumers: &["refresh feed service"],
};

/// The top posts of the past hour.
pub const TRENDING_POSTS: TopicSpec = TopicSpec {
    case_study: CASE_STUDY,
    name: "trending_posts",
    key: "window (single key)",
    // One ranking per window: one partition keeps them in order.
    partitions: 1,
    retention: Retention::days(1),
    cleanup: Cleanup::CompactDelete,
    purpose: "top-N posts by likes and comments in the past hour",
    producers: &["trending posts (streams)"],
    consumers: &["trending feed service"],
};

pub const ALL: &[TopicSpec] = &[POSTS, LIKES, COMMENTS, POSTS_WITH_COUNTS, TRENDING_POSTS];
