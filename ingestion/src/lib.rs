//! Big-data ingestion: producers → Kafka as a buffer → a speed layer (real-time analytics) and a
//! batch layer (analytics store files).
//!
//! [`topics`] lists the topics; [`app`] is the case study on the service scaffold; the services
//! come one file per box of the architecture slide (`README.md`).

pub mod app;
pub mod topics;
