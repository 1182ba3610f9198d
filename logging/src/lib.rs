//! Logging and metrics: log forwarders and metric collectors → `application_logs` /
//! `application_metrics` → sinks and aggregation.
//!
//! [`topics`] lists the topics; the services come one file per box of the architecture slide.

pub mod topics;
