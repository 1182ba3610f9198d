//! Logging and metrics: log forwarders and metric collectors → `application_logs` /
//! `application_metrics` → parsing, sinks and aggregation.
//!
//! [`topics`] lists the topics (the slide in code), [`events`] the records and the rules every
//! reader applies; one file per box of the architecture slide (`README.md`): our log
//! [`forwarder`] (the `forward` command, [`commands`]), the [`log_parser`], the
//! [`log_aggregation`] (per service per minute, with the [`alerting`] rule evaluated on its final
//! minutes) and the [`metrics_aggregation`] (streams, all of them), the [`log_sink`] (a tantivy
//! index, `GET /v1/search`) and the [`analytics_sink`] (Parquet). [`app`] is the case study on
//! the service scaffold. The [`simulator`] plays the applications, the [`board`] reads the
//! rollups and alerts back for the [`demo`] and for `casestudies up` ([`live`]).
//!
//! The real forwarders and collectors nobody here wrote — rsyslog (`omkafka`), collectd
//! (`write_kafka`), Prometheus (remote write to our [`remote_write_receiver`]) — run as child
//! processes from [`collectors`], with the configuration in `logging/config/`. [`bench`] holds
//! the measurements (`logging bench forwarder`: ours against rsyslog; `logging bench index`).

pub mod alerting;
pub mod analytics_sink;
pub mod app;
pub mod bench;
pub mod board;
pub mod collectors;
pub mod commands;
pub mod demo;
pub mod events;
pub mod forwarder;
pub mod live;
pub mod log_aggregation;
pub mod log_parser;
pub mod log_sink;
pub mod metrics_aggregation;
pub mod remote_write_receiver;
pub mod simulator;
pub mod topics;
