//! Big-data ingestion: producers → Kafka as a buffer → a speed layer (real-time analytics) and a
//! batch layer (analytics store files).
//!
//! [`topics`] lists the topics; the services come one file per box of the architecture slide.

pub mod topics;
