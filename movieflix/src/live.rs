//! MovieFlix in `casestudies up`: viewers as the knob, the resuming service run twice (stop one,
//! the other restores its partitions from the changelog), and a view of a few viewers: where
//! they are and what they are recommended next, and why.

use std::sync::Arc;
use std::time::Duration;

use shared::Kafka;
use shared::live::{Knob, LiveCaseStudy, Panel, QueryParam, QuerySpec};
use shared::service::Process;
use shared::service::cli::Dirs;
use tokio_util::sync::CancellationToken;

use crate::app::{MovieFlix, Options};
use crate::catalog::Catalog;
use crate::events::Recommendations;
use crate::resuming_service::ContinueWatching;
use crate::simulator::{self, SimulatorOptions, SimulatorStats};

/// The most viewers the knob allows (each is a task that mostly sleeps).
const MAX_VIEWERS: usize = 500;
/// How many viewers the view follows.
const FOLLOWED: usize = 6;

impl LiveCaseStudy for MovieFlix {
    const TITLE: &'static str = "MovieFlix";
    const SUMMARY: &'static str = "Players report positions; resume where you left off, a profile and recommendations updated as you watch, every position in the analytics store.";
    const SPARE: Option<&'static str> = Some("resuming-service");

    fn knob() -> Knob {
        Knob::new("viewers", 20.0, 0.0, MAX_VIEWERS as f64)
    }

    fn queries() -> Vec<QuerySpec> {
        let user = || QueryParam {
            name: "user",
            example: simulator::viewer_id(1),
        };
        vec![
            QuerySpec {
                name: "continue watching",
                path: "/v1/users/{user}/continue-watching",
                params: vec![user()],
            },
            QuerySpec {
                name: "resume point",
                path: "/v1/users/{user}/resume/{show}",
                params: vec![
                    user(),
                    QueryParam {
                        name: "show",
                        example: "m003".into(),
                    },
                ],
            },
            QuerySpec {
                name: "recommendations",
                path: "/v1/users/{user}/recommendations",
                params: vec![user()],
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
        let options = SimulatorOptions {
            viewers: MAX_VIEWERS,
            url: process.url(),
            active: Some(knob),
            ..SimulatorOptions::default()
        };
        Ok(tokio::spawn(simulator::run(
            options,
            Catalog::shared(),
            Arc::new(SimulatorStats::default()),
            stop,
        )))
    }

    async fn view(api: String, http: reqwest::Client) -> Vec<Panel> {
        let mut rows = Vec::new();
        for i in 0..FOLLOWED {
            let viewer = simulator::viewer_id(i);
            let get = |path: String| {
                let request = http
                    .get(format!("{api}/v1/users/{viewer}/{path}"))
                    .timeout(Duration::from_secs(2));
                async move { request.send().await.ok()?.error_for_status().ok() }
            };
            let watching = match get("continue-watching".into()).await {
                Some(response) => response.json::<ContinueWatching>().await.ok(),
                None => None,
            };
            let recommended = match get("recommendations".into()).await {
                Some(response) => response.json::<Recommendations>().await.ok(),
                None => None,
            };
            let (show, at) = watching
                .and_then(|w| w.shows.into_iter().next())
                .map_or_else(
                    || ("—".to_owned(), String::new()),
                    |r| {
                        let title = match r.episode_label {
                            Some(label) => format!("{} {label}", r.title),
                            None => r.title,
                        };
                        (
                            title,
                            format!("{}:{:02}", r.position_s / 60, r.position_s % 60),
                        )
                    },
                );
            let next = recommended
                .and_then(|r| r.items.into_iter().next())
                .map_or_else(|| ("—".to_owned(), String::new()), |r| (r.title, r.reason));
            rows.push(vec![viewer.clone(), show, at, next.0, next.1]);
        }
        vec![Panel {
            title: "Viewers: where they are, what comes next".into(),
            columns: vec!["viewer", "watching", "at", "recommended next", "why"],
            rows,
            map: None,
        }]
    }
}
