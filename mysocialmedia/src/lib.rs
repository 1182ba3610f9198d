//! MySocialMedia: CQRS. Post/like/comment commands are events; a streams application keeps
//! exact live like/comment counts per post, another the trending posts of the past hour; the
//! query side serves both from its own copy. Built for a high-volume launch.
//!
//! [`topics`] lists the topics (the slide in code), [`events`] the records; one file per box of
//! the architecture slide (`README.md`): the posting service, the like/comment service, the
//! counting application ([`post_counts`]), trending posts, the refresh feed service and the
//! trending feed service. [`images`] is the blob store, [`read_model`] the query side's copy of
//! `posts_with_counts`; [`app`] is the case study on the service scaffold. The [`simulator`]
//! drives it over HTTP, [`demo`] runs it all in one process, [`live`] is its page in
//! `casestudies up`.

pub mod app;
pub mod bench;
pub mod commands;
pub mod demo;
pub mod events;
pub mod images;
pub mod like_comment_service;
pub mod live;
pub mod post_counts;
pub mod posting_service;
pub mod read_model;
pub mod refresh_feed_service;
pub mod simulator;
pub mod topics;
pub mod trending_feed_service;
pub mod trending_posts;
