//! **Trending feed service** (consumer, query side): the trending board for the website, from
//! `trending_posts`, followed in this process ([`shared::follow`]).
//!
//! `GET /v1/trending` answers the board of the newest window — while it is open, the latest
//! update (`final: false`); `GET /v1/trending?final=true` the newest final board. A record for
//! an older window than the newest one known changes nothing (updates of a window can only be
//! followed by its final board and by newer windows).

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use rdkafka::Message;
use serde::Deserialize;
use shared::consumer::PayloadKey;
use shared::follow::{Progress, follow};
use shared::http::{ApiError, Json};
use utoipa::IntoParams;

use crate::events::TrendingPosts;
use crate::topics::TRENDING_POSTS;

/// The name on its dead letters.
pub const APPLICATION: &str = "mysocialmedia-trending-feed";

/// The boards known.
#[derive(Default)]
pub struct Boards {
    latest: Option<TrendingPosts>,
    latest_final: Option<TrendingPosts>,
}

impl Boards {
    /// Takes `board` in if it is news.
    pub fn apply(&mut self, board: TrendingPosts) {
        if board.is_final
            && self
                .latest_final
                .as_ref()
                .is_none_or(|b| b.window_end <= board.window_end)
        {
            self.latest_final = Some(board.clone());
        }
        let newer = self.latest.as_ref().is_none_or(|b| {
            b.window_end < board.window_end || (b.window_end == board.window_end && !b.is_final)
        });
        if newer {
            self.latest = Some(board);
        }
    }
}

pub struct TrendingFeedService {
    boards: RwLock<Boards>,
    pub progress: Arc<Progress>,
}

/// `GET /v1/trending`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TrendingQuery {
    /// `true`: the newest final board (a closed window) instead of the newest board.
    #[serde(default)]
    pub r#final: bool,
}

impl TrendingFeedService {
    pub fn new() -> Arc<Self> {
        Arc::new(TrendingFeedService {
            boards: RwLock::new(Boards::default()),
            progress: Arc::default(),
        })
    }

    fn apply(&self, message: &rdkafka::message::OwnedMessage) -> Result<(), String> {
        let payload = message.payload().ok_or("record has no payload")?;
        let board: TrendingPosts = shared::consumer::json(payload)?;
        let key = message
            .key()
            .map(std::str::from_utf8)
            .transpose()
            .map_err(|err| format!("key is not UTF-8: {err}"))?;
        let expected = board.window_end.to_rfc3339();
        shared::consumer::check_key(key, PayloadKey::new("window_end", &expected))?;
        self.boards.write().expect("boards lock").apply(board);
        Ok(())
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/trending", get(trending))
            .with_state(self)
    }
}

/// The trending posts of the past hour.
#[utoipa::path(
    get,
    path = "/v1/trending",
    tag = "trending feed service",
    params(TrendingQuery),
    responses(
        (status = 200, body = TrendingPosts),
        (status = 404, description = "No board yet"),
    )
)]
pub async fn trending(
    State(service): State<Arc<TrendingFeedService>>,
    Query(query): Query<TrendingQuery>,
) -> Result<Json<TrendingPosts>, ApiError> {
    let boards = service.boards.read().expect("boards lock");
    let board = if query.r#final {
        boards.latest_final.clone()
    } else {
        boards.latest.clone()
    };
    board
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no trending board yet"))
}

/// The trending feed service on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "trending-feed-service"
    }
    fn about(&self) -> &'static str {
        "trending_posts → GET /v1/trending."
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        _: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let service = TrendingFeedService::new();
        let reader = Arc::clone(&service);
        follow(
            &ctx.kafka,
            &ctx.kafka.topic(&TRENDING_POSTS),
            APPLICATION,
            ctx.shutdown.clone(),
            Arc::clone(&service.progress),
            move |message| reader.apply(message),
        )
        .await?;
        let progress = Arc::clone(&service.progress);
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&service).router())
            .handle(service)
            .ready_check("trending boards", move || {
                if progress.is_caught_up() {
                    Ok(())
                } else {
                    Err("still reading trending_posts".into())
                }
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn board(end_min: i64, is_final: bool) -> TrendingPosts {
        let end = DateTime::<Utc>::from_timestamp(end_min * 60, 0).unwrap();
        TrendingPosts {
            window_start: end - chrono::TimeDelta::hours(1),
            window_end: end,
            is_final,
            posts: vec![],
        }
    }

    #[test]
    fn the_newest_window_wins_and_a_final_board_replaces_its_updates() {
        let mut boards = Boards::default();
        boards.apply(board(10, false));
        boards.apply(board(11, false));
        boards.apply(board(10, true));
        assert_eq!(boards.latest, Some(board(11, false)));
        assert_eq!(boards.latest_final, Some(board(10, true)));
        boards.apply(board(11, true));
        boards.apply(board(11, false)); // an update after the final (a replay): ignored
        assert_eq!(boards.latest, Some(board(11, true)));
    }
}
