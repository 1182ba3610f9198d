//! Big-data ingestion: producers → an ingest API → Kafka as a buffer (`raw_events`) → a speed
//! layer (real-time analytics) and a batch layer (analytics store files).
//!
//! [`topics`] lists the topics (the slide in code), [`events`] the records and the rules every
//! reader applies; one file per box of the architecture slide (`README.md`): the
//! [`ingest_api`], the [`speed_layer`] (streams) and the [`realtime_api`] (its query side, over
//! [`realtime_model`]). [`app`] is the case study on the service scaffold; the [`simulator`]
//! drives it over HTTP, [`demo`] runs it all in one process and [`live`] is its page in
//! `casestudies up`.

pub mod app;
pub mod batch;
pub mod bench;
pub mod commands;
pub mod demo;
pub mod events;
pub mod ingest_api;
pub mod live;
pub mod realtime_api;
pub mod realtime_model;
pub mod reconcile;
pub mod s3_sink;
pub mod simulator;
pub mod speed_layer;
pub mod topics;
