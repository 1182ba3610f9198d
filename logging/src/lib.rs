//! Logging and metrics: log forwarders and metric collectors → `application_logs` /
//! `application_metrics` → sinks and aggregation.
//!
//! [`topics`] lists the topics; [`app`] is the case study on the service scaffold; the services
//! come one file per box of the architecture slide (`README.md`).

pub mod app;
pub mod topics;
