//! MySocialMedia: CQRS. Post/like/comment commands are events; a streams app keeps live
//! like/comment counts per post and the trending posts of the past hour. Built for a
//! high-volume launch.
//!
//! [`topics`] lists the topics; the services come one file per box of the architecture slide.

pub mod topics;
