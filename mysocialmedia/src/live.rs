//! MySocialMedia in `casestudies up`: actions per second as the knob (users post, like by Zipf's
//! law, double-tap, unlike and comment; a post goes viral every couple of minutes), the
//! counting application run twice (stop one, the other restores the likers and the counts from
//! their changelogs and keeps counting exactly), and a view of the feed with its live counts,
//! the most liked posts and the trending board as it changes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::Kafka;
use shared::live::{Knob, LiveCaseStudy, Panel, QueryParam, QuerySpec};
use shared::service::Process;
use shared::service::cli::Dirs;
use tokio_util::sync::CancellationToken;

use crate::app::{MySocialMedia, Options};
use crate::demo::ellipsis;
use crate::events::{PostWithCounts, TrendingPosts};
use crate::posting_service::PostAccepted;
use crate::refresh_feed_service::{FeedPage, MAX_PAGE};
use crate::simulator::{self, SimulatorOptions, SimulatorStats};

/// How many posts each table shows.
const SHOWN: usize = 8;
/// How many characters of a caption the tables show.
const CAPTION: usize = 40;
/// Who posts the first post, before the simulator starts.
const WELCOME_AUTHOR: &str = "mysocialmedia";

/// The running simulator's counters (the dashboard runs it in this process): the view marks the
/// viral post from them.
static STATS: Mutex<Option<Arc<SimulatorStats>>> = Mutex::new(None);
/// The first post's id: the example of the "a post" query (no other post exists when the page is
/// described).
static WELCOME_POST: Mutex<Option<String>> = Mutex::new(None);

impl LiveCaseStudy for MySocialMedia {
    const TITLE: &'static str = "MySocialMedia";
    const SUMMARY: &'static str = "CQRS: posts, likes and comments are events; exact live counts per post and the trending posts of the past hour from streams applications; the feed and the trending board read their own copies.";
    const SPARE: Option<&'static str> = Some("post-counts");

    fn knob() -> Knob {
        Knob::new("actions/s", 10.0, 0.0, 500.0)
    }

    fn queries() -> Vec<QuerySpec> {
        let welcome = WELCOME_POST.lock().expect("welcome post").clone();
        vec![
            QuerySpec {
                name: "a post with its counts",
                path: "/v1/posts/{post}",
                params: vec![QueryParam {
                    name: "post",
                    // Any post id of the feed; a valid id no post has answers 404.
                    example: welcome.unwrap_or_else(|| uuid::Uuid::nil().to_string()),
                }],
            },
            QuerySpec {
                name: "the feed",
                path: "/v1/feed",
                params: Vec::new(),
            },
            QuerySpec {
                name: "trending posts",
                path: "/v1/trending",
                params: Vec::new(),
            },
        ]
    }

    async fn simulate(
        _kafka: &Kafka,
        process: &Process,
        _dirs: &Dirs,
        _options: &Options,
        knob: Knob,
        stop: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
        let url = process.url();
        match welcome(&url).await {
            Ok(post) => *WELCOME_POST.lock().expect("welcome post") = Some(post),
            // Only the query's example is missing: the simulator posts anyway.
            Err(err) => tracing::warn!(err = format!("{err:#}"), "welcome post"),
        }
        let stats = Arc::new(SimulatorStats::default());
        *STATS.lock().expect("simulator stats") = Some(Arc::clone(&stats));
        let options = SimulatorOptions {
            url,
            rate: Some(knob),
            ..SimulatorOptions::default()
        };
        Ok(tokio::spawn(simulator::simulate(options, stats, stop)))
    }

    async fn view(api: String, http: reqwest::Client) -> Vec<Panel> {
        let get = |path: &str| {
            let request = http
                .get(format!("{api}{path}"))
                .timeout(Duration::from_secs(2));
            async move { request.send().await.ok()?.error_for_status().ok() }
        };
        let feed = match get(&format!("/v1/feed?limit={MAX_PAGE}")).await {
            Some(response) => response.json::<FeedPage>().await.ok(),
            None => None,
        };
        let board = match get("/v1/trending").await {
            Some(response) => response.json::<TrendingPosts>().await.ok(),
            None => None,
        };
        let viral = STATS
            .lock()
            .expect("simulator stats")
            .as_ref()
            .and_then(|s| s.viral())
            .map(|v| v.post_id);
        panels(
            feed.map(|f| f.posts).unwrap_or_default().as_slice(),
            board.as_ref(),
            viral.as_deref(),
        )
    }
}

/// Posts the first post (the query's example), retrying while the services start.
async fn welcome(api: &str) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut last = String::new();
    for attempt in 0..10 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let form = simulator::post_form(
            WELCOME_AUTHOR,
            "Welcome to MySocialMedia! Like, comment, go viral.",
            [255, 64, 129],
        );
        match http
            .post(format!("{api}/v1/posts"))
            .multipart(form)
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => {
                return Ok(response.json::<PostAccepted>().await?.post_id);
            }
            Ok(response) => last = format!("{}", response.status()),
            Err(err) => last = err.to_string(),
        }
    }
    anyhow::bail!("POST /v1/posts: {last}")
}

/// The page's tables from what the API answered: `feed` (newest first), the trending `board`,
/// and the post that is `viral` now (marked 🔥).
pub fn panels(
    feed: &[PostWithCounts],
    board: Option<&TrendingPosts>,
    viral: Option<&str>,
) -> Vec<Panel> {
    let caption = |p: &PostWithCounts| {
        let text = ellipsis(&p.caption, CAPTION);
        if viral == Some(p.post_id.as_str()) {
            format!("🔥 {text}")
        } else {
            text
        }
    };
    let row = |p: &PostWithCounts| {
        vec![
            p.post_id.clone(),
            p.user_id.clone(),
            caption(p),
            p.likes.to_string(),
            p.comments.to_string(),
            p.updated_at.format("%H:%M:%S").to_string(),
        ]
    };
    let columns = vec!["post", "author", "caption", "likes", "comments", "updated"];
    let newest = feed.iter().take(SHOWN).map(row).collect();
    let mut popular: Vec<&PostWithCounts> = feed.iter().collect();
    // Stable: equal counts keep the feed's order (newest first).
    popular.sort_by_key(|p| std::cmp::Reverse((p.likes, p.comments)));
    let popular = popular.into_iter().take(SHOWN).map(row).collect();
    let trending = match board {
        Some(board) => Panel {
            title: format!(
                "Trending: the top posts of {}–{} UTC ({})",
                board.window_start.format("%H:%M"),
                board.window_end.format("%H:%M"),
                if board.is_final {
                    "final: the window closed"
                } else {
                    "open window, updated as reactions come"
                }
            ),
            columns: vec![
                "rank", "post", "author", "caption", "score", "likes", "comments",
            ],
            rows: board
                .posts
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let post = feed.iter().find(|p| p.post_id == r.post_id);
                    vec![
                        (i + 1).to_string(),
                        r.post_id.clone(),
                        post.map_or_else(String::new, |p| p.user_id.clone()),
                        post.map_or_else(String::new, caption),
                        r.score.to_string(),
                        r.likes.to_string(),
                        r.comments.to_string(),
                    ]
                })
                .collect(),
            map: None,
        },
        None => Panel {
            title: "Trending: no board yet (the first comes once likes flow)".into(),
            columns: vec!["rank", "post", "score"],
            ..Panel::default()
        },
    };
    vec![
        Panel {
            title: "Feed: the newest posts with their live counts".into(),
            columns: columns.clone(),
            rows: newest,
            map: None,
        },
        Panel {
            title: format!("Most liked of the newest {MAX_PAGE} posts (🔥 viral now)"),
            columns,
            rows: popular,
            map: None,
        },
        trending,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Ranked;
    use chrono::DateTime;

    fn post(id: &str, likes: u64, comments: u64) -> PostWithCounts {
        let at = DateTime::from_timestamp(3_600 * 15 + 125, 0).unwrap();
        PostWithCounts::sample(id, &format!("user_{id}"), likes, comments, at)
    }

    #[test]
    fn the_view_shows_the_feed_the_most_liked_and_the_board() {
        let feed = vec![post("c", 1, 0), post("b", 40, 2), post("a", 7, 9)];
        let end = DateTime::from_timestamp(3_600 * 15 + 180, 0).unwrap();
        let board = TrendingPosts {
            window_start: end - chrono::TimeDelta::hours(1),
            window_end: end,
            is_final: false,
            posts: vec![
                Ranked {
                    post_id: "b".into(),
                    score: 46,
                    likes: 40,
                    comments: 2,
                },
                Ranked {
                    post_id: "gone".into(),
                    score: 3,
                    likes: 3,
                    comments: 0,
                },
            ],
        };
        let panels = panels(&feed, Some(&board), Some("b"));
        assert_eq!(panels.len(), 3);
        let ids = |p: &Panel| p.rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>();
        assert_eq!(ids(&panels[0]), ["c", "b", "a"], "newest first");
        assert_eq!(ids(&panels[1]), ["b", "a", "c"], "most liked first");
        assert_eq!(
            panels[0].rows[1],
            ["b", "user_b", "🔥 caption of b", "40", "2", "15:02:05"]
        );
        assert!(
            panels[2].title.contains("14:03–15:03 UTC (open"),
            "{}",
            panels[2].title
        );
        assert_eq!(
            panels[2].rows,
            [
                vec!["1", "b", "user_b", "🔥 caption of b", "46", "40", "2"],
                vec!["2", "gone", "", "", "3", "3", "0"],
            ]
        );
        let columns = panels[2].columns.len();
        assert!(
            panels
                .iter()
                .all(|p| p.rows.iter().all(|r| r.len() == p.columns.len()))
        );
        assert_eq!(columns, 7);
    }

    #[test]
    fn before_any_post_or_board_the_tables_are_empty() {
        let panels = panels(&[], None, None);
        assert!(panels.iter().all(|p| p.rows.is_empty()));
        assert!(panels[2].title.contains("no board yet"));
    }
}
