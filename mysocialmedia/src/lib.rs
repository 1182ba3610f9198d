//! MySocialMedia: CQRS. Post/like/comment commands are events; a streams app keeps live
//! like/comment counts per post and the trending posts of the past hour. Built for a
//! high-volume launch.
//!
//! [`topics`] lists the topics; [`app`] is the case study on the service scaffold; the services
//! come one file per box of the architecture slide (`README.md`).

pub mod app;
pub mod topics;
