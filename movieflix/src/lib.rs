//! MovieFlix: resume playback where the viewer left off, a real-time user profile, next-show
//! recommendations, and every position in an analytics store.
//!
//! One file per box of the architecture slide (see `README.md` in this crate):
//!
//! | file                           | box                        | kind                          |
//! |--------------------------------|----------------------------|-------------------------------|
//! | [`video_position_service`]     | video position service     | HTTP → producer               |
//! | [`resuming_service`]           | resuming service           | streams (store + queries)     |
//! | [`recommendation_engine`]      | recommendation engine      | streams (profiles, global table) |
//! | [`recommendations_service`]    | recommendations service    | table + queries               |
//! | [`analytics_sink`]             | analytics consumer ("Connect") | sink → Parquet           |
//! | [`simulator`]                  | video players              | HTTP client                   |
//!
//! and around them: [`topics`] (every topic), [`events`] (the records), [`catalog`] (the
//! shows), [`app`] (MovieFlix on the service scaffold: the list of services, what they share,
//! the catalog routes), [`commands`] (`simulate`, `demo`), [`demo`] (the demo's summary) and
//! [`live`] (its tile and page in `casestudies up`).
//!
//! Data flows one way: player → `POST /v1/positions` → `show_position` → processors →
//! `recommendations` / stores / files → query APIs.

pub mod analytics_sink;
pub mod app;
pub mod catalog;
pub mod commands;
pub mod demo;
pub mod events;
pub mod live;
pub mod recommendation_engine;
pub mod recommendations_service;
pub mod resuming_service;
pub mod simulator;
pub mod topics;
pub mod video_position_service;
