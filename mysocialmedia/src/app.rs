//! MySocialMedia on the service scaffold ([`shared::service`]): its services in start order,
//! what they share, its own commands, and the API every MySocialMedia process serves
//! (`/openapi.json`). `main.rs` is `cli::main::<MySocialMedia>()`; tests and the demo start
//! services with [`shared::service::cli::start`], the same way.

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use shared::service::CaseStudy;
use shared::service::cli::{CaseStudyCli, Dirs};
use shared::streams::windowed::Emit;
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::images::ImageStore;
use crate::{
    like_comment_service, post_counts, posting_service, read_model, refresh_feed_service, topics,
    trending_feed_service, trending_posts,
};

/// MySocialMedia, as the scaffold runs it.
pub struct MySocialMedia;

/// What MySocialMedia's services share in one process.
pub struct Resources {
    /// The blob store of post images.
    pub images: ImageStore,
    /// `posts_with_counts` in memory, started by the first service that needs it.
    pub read_model: read_model::Shared,
    pub trending: trending_posts::Model,
}

/// When trending boards are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrendingEmit {
    /// Every change of the open window's board, then the final board.
    Update,
    /// Only the final board, once per window.
    Close,
}

/// MySocialMedia's options of every serving subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The blob store's directory (post images). Default: <data dir>/images.
    #[arg(long, env = "IMAGES_DIR")]
    pub images_dir: Option<PathBuf>,
    /// Trending boards on every update of the open window, or only when a window closes.
    #[arg(long, env = "TRENDING_EMIT", value_enum, default_value = "update")]
    pub trending_emit: TrendingEmit,
    /// How long after a trending window's end records still count in it.
    #[arg(long, env = "TRENDING_GRACE", default_value = "2m", value_parser = humantime::parse_duration)]
    pub trending_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            images_dir: None,
            trending_emit: TrendingEmit::Update,
            trending_grace: Duration::from_secs(120),
        }
    }
}

impl CaseStudyCli for MySocialMedia {
    type Resources = Resources;
    type Options = Options;
    type Command = crate::commands::Command;
    const ABOUT: &'static str =
        "MySocialMedia: CQRS posts, likes and comments, live counts, trending posts";

    fn case_study() -> CaseStudy<Resources> {
        CaseStudy {
            name: topics::CASE_STUDY,
            topics: topics::ALL,
            services: vec![
                Box::new(posting_service::Service),
                Box::new(post_counts::Service),
                Box::new(trending_posts::Service),
                Box::new(refresh_feed_service::Service),
                Box::new(trending_feed_service::Service),
                Box::new(like_comment_service::Service),
            ],
            routes: |_| Router::new(),
            openapi: ApiDoc::openapi,
        }
    }

    async fn resources(_: &Kafka, dirs: &Dirs, options: &Options) -> anyhow::Result<Resources> {
        let images_dir = options
            .images_dir
            .clone()
            .unwrap_or_else(|| dirs.data.join("images"));
        let emit = match options.trending_emit {
            TrendingEmit::Update => Emit::OnUpdate,
            TrendingEmit::Close => Emit::OnClose,
        };
        let grace = options.trending_grace.as_millis();
        anyhow::ensure!(
            grace <= 3_600_000,
            "--trending-grace {:?} must be at most 1h",
            options.trending_grace
        );
        Ok(Resources {
            images: ImageStore::local(&images_dir)?,
            read_model: read_model::Shared::default(),
            trending: trending_posts::Model::new(grace as i64, emit),
        })
    }

    async fn command(
        command: crate::commands::Command,
        kafka: &KafkaArgs,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        crate::commands::run(command, kafka, stop).await
    }
}

/// The HTTP API of every MySocialMedia service, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "MySocialMedia",
        description = "Posts, likes and comments as events (CQRS); exact live counts and trending posts from streams applications."
    ),
    paths(
        posting_service::create_post,
        posting_service::image,
        like_comment_service::like,
        like_comment_service::unlike,
        like_comment_service::comment,
        refresh_feed_service::get_post,
        refresh_feed_service::feed,
        refresh_feed_service::feed_events,
        trending_feed_service::trending,
    )
)]
pub struct ApiDoc;
