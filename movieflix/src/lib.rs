//! MovieFlix: resume playback where the viewer left off, a real-time user profile, next-show
//! recommendations, and every position in an analytics store.
//!
//! [`topics`] lists the topics; the services come one file per box of the architecture slide.

pub mod topics;
