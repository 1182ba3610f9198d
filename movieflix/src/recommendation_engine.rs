//! **Recommendation engine** (streams, real time): builds every viewer's profile from
//! `show_position` and publishes the next shows to watch to `recommendations` whenever they
//! change.
//!
//! ```text
//! show_position ──▶ profile (store "profiles", per viewer) ──────────────▶ recommendations
//!        │                  ▲ reads                                           (key user_id)
//!        │ started B after A│
//!        ▼                  │
//! …-transitions-repartition (key A) ─▶ counts (store "transitions", per show) ─▶ watched_after
//!                                                                  (compacted, key A; read back
//!                                                                   whole as a global table)
//! ```
//!
//! * **Profile** — genre affinity weighted by watch time, with a bonus for finishing an episode or
//!   a movie, decaying with a 7-day half-life of event time; what was started, finished, completed.
//! * **"Watched after"** (item-to-item, across all viewers) — when a viewer starts show B right
//!   after show A, the transition is re-keyed by A through an internal repartition topic, so one
//!   task counts every transition out of A; the counts go to the compacted `watched_after` topic,
//!   which every instance reads in full (a global table), because a viewer's task needs the
//!   counts of shows owned by other tasks.
//! * **Recommendations** — next episodes first, then "because you finished X" from the
//!   watched-after counts, then the most popular unseen shows of the viewer's top genres;
//!   finished shows are excluded. Emitted only when the list changes.
//!
//! The notes allow the engine to use history from the analytics store; this one learns from the
//! stream alone (replaying `show_position` from the beginning rebuilds it).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::Kafka;
use shared::consumer::{HandlerError, PayloadKey};
use shared::streams::{self, ProcessorContext, StreamsConfig, StreamsHandle};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::events::{Recommendation, Recommendations, ShowPosition, Transition, WatchedAfter};
use crate::topics::{RECOMMENDATIONS, SHOW_POSITION, WATCHED_AFTER};

pub const APPLICATION_ID: &str = "movieflix-recommendation-engine";
pub const PROFILES: &str = "profiles";
pub const TRANSITIONS: &str = "transitions";
/// The global table over `watched_after`.
pub const WATCHED_AFTER_TABLE: &str = "watched_after";
/// How many shows a viewer is offered.
pub const TOP_N: usize = 5;

const HALF_LIFE_S: f64 = 7.0 * 24.0 * 3600.0;
/// A jump longer than this between two reports is a seek, not watching.
const MAX_WATCH_STEP_S: u32 = 900;
/// Finishing an episode or a movie says more than minutes watched.
const FINISH_BONUS_S: f64 = 600.0;

/// What the engine knows about one show a viewer played.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Watched {
    pub episode: Option<u32>,
    pub position_s: u32,
    /// The latest episode (or the movie) was watched to the end.
    pub finished_latest: bool,
    /// The movie or the series' last episode was finished.
    pub completed: bool,
    pub last_at: Option<DateTime<Utc>>,
}

/// A viewer's profile (store `profiles`, key `user_id`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Genre → affinity (hours watched, decayed to `decayed_to`).
    pub genres: BTreeMap<String, f64>,
    pub decayed_to: Option<DateTime<Utc>>,
    pub shows: BTreeMap<String, Watched>,
    pub last_show: Option<String>,
    /// Shows with something finished in them, most recent first (at most 5).
    pub finished_recent: Vec<String>,
    /// What was last published, to publish only changes.
    pub published: Vec<(String, Option<u32>)>,
}

impl Profile {
    /// Folds one position in; returns the transition to count if this starts a new show.
    pub fn apply(&mut self, position: &ShowPosition, catalog: &Catalog) -> Option<Transition> {
        let show = catalog.get(&position.show_id)?;
        // Decay everything to the event's time (late events don't un-decay).
        if let Some(since) = self.decayed_to {
            let elapsed = (position.at - since).num_milliseconds() as f64 / 1000.0;
            if elapsed > 0.0 {
                let factor = 0.5f64.powf(elapsed / HALF_LIFE_S);
                for affinity in self.genres.values_mut() {
                    *affinity *= factor;
                }
            }
        }
        if self.decayed_to.is_none_or(|d| position.at > d) {
            self.decayed_to = Some(position.at);
        }

        let started = !self.shows.contains_key(&show.id);
        let watched = self.shows.entry(show.id.clone()).or_default();
        let same_episode = !started && watched.episode == position.episode;
        let mut weight_s = if same_episode && position.position_s >= watched.position_s {
            f64::from((position.position_s - watched.position_s).min(MAX_WATCH_STEP_S))
        } else {
            // A new episode, a seek back, or the first report: count a little.
            f64::from(position.position_s.min(30))
        };
        let finished = position.finished();
        if finished && !(same_episode && watched.finished_latest) {
            weight_s += FINISH_BONUS_S;
            self.finished_recent.retain(|s| s != &show.id);
            self.finished_recent.insert(0, show.id.clone());
            self.finished_recent.truncate(5);
        }
        watched.episode = position.episode;
        watched.position_s = position.position_s;
        watched.finished_latest = finished;
        watched.completed = finished && show.next_episode(position.episode).is_none();
        watched.last_at = Some(position.at);
        let share = weight_s / 3600.0 / show.genres.len() as f64;
        for genre in &show.genres {
            *self.genres.entry(genre.clone()).or_default() += share;
        }

        let previous = self.last_show.replace(show.id.clone());
        match previous {
            Some(from) if started && from != show.id => Some(Transition {
                from,
                to: show.id.clone(),
            }),
            _ => None,
        }
    }
}

/// The next shows for `profile`: next episodes, then "because you finished X", then top genres.
pub fn recommend(
    profile: &Profile,
    catalog: &Catalog,
    watched_after: &dyn Fn(&str) -> Option<WatchedAfter>,
    n: usize,
) -> Vec<Recommendation> {
    let mut out: Vec<Recommendation> = Vec::new();
    let listed = |out: &Vec<Recommendation>, id: &str| out.iter().any(|r| r.show_id == id);
    let completed = |id: &str| profile.shows.get(id).is_some_and(|w| w.completed);

    // 1. Next episodes of series the viewer is following, most recent first.
    let mut following: Vec<(&String, &Watched)> = profile
        .shows
        .iter()
        .filter(|(_, w)| w.finished_latest && !w.completed)
        .collect();
    following.sort_by_key(|w| std::cmp::Reverse(w.1.last_at));
    for (id, watched) in following {
        let Some(show) = catalog.get(id) else {
            continue;
        };
        if let Some(next) = show.next_episode(watched.episode) {
            out.push(Recommendation {
                show_id: show.id.clone(),
                title: show.title.clone(),
                episode: Some(next),
                reason: format!(
                    "next episode: {} of {}",
                    show.episode_label(Some(next)).unwrap_or_default(),
                    show.title
                ),
                score: 3.0,
            });
        }
    }

    // 2. What other viewers watched after the shows this viewer finished.
    for finished in &profile.finished_recent {
        let Some(after) = watched_after(finished) else {
            continue;
        };
        let Some(source) = catalog.get(finished) else {
            continue;
        };
        let total: u64 = after.next.iter().map(|(_, c)| c).sum();
        let mut taken = 0;
        for (id, count) in &after.next {
            if taken == 2 || out.len() >= n {
                break;
            }
            let Some(show) = catalog.get(id) else {
                continue;
            };
            if completed(id) || listed(&out, id) || profile.shows.contains_key(id) {
                continue;
            }
            out.push(Recommendation {
                show_id: show.id.clone(),
                title: show.title.clone(),
                episode: show.is_series().then_some(1),
                reason: format!("because you finished {}", source.title),
                score: 2.0 + *count as f64 / total.max(1) as f64,
            });
            taken += 1;
        }
    }

    // 3. The most popular unseen shows of the viewer's favourite genres.
    let mut genres: Vec<(&String, &f64)> = profile.genres.iter().collect();
    genres.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
    let total: f64 = genres.iter().map(|(_, a)| **a).sum();
    let top: Vec<(&String, &f64)> = genres.into_iter().take(2).collect();
    for (rank, (genre, affinity)) in top.iter().enumerate() {
        // The favourite genre gets up to 3 places, the second the rest.
        let cap = if rank + 1 == top.len() { n } else { 3 };
        let mut taken = 0;
        for show in catalog.by_genre(genre) {
            if out.len() >= n || taken == cap {
                break;
            }
            if profile.shows.contains_key(&show.id) || listed(&out, &show.id) {
                continue;
            }
            out.push(Recommendation {
                show_id: show.id.clone(),
                title: show.title.clone(),
                episode: show.is_series().then_some(1),
                reason: format!("you watch a lot of {genre}"),
                score: **affinity / total.max(f64::EPSILON),
            });
            taken += 1;
        }
    }
    out.truncate(n);
    out
}

/// Records on the engine's two inputs. Decoded per topic ([`streams::Processor::decode`]), so
/// a bad record's dead letter names the type its topic carries and what is wrong with it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum EngineInput {
    Position(ShowPosition),
    Transition(Transition),
}

pub struct RecommendationEngine {
    catalog: Arc<Catalog>,
    show_position: String,
    transitions: String,
    watched_after: String,
    recommendations: String,
}

impl streams::Processor for RecommendationEngine {
    type Input = EngineInput;

    fn decode(&self, topic: &str, payload: &[u8]) -> Result<EngineInput, String> {
        if topic == self.show_position {
            shared::consumer::json::<ShowPosition>(payload).map(EngineInput::Position)
        } else if topic == self.transitions {
            shared::consumer::json::<Transition>(payload).map(EngineInput::Transition)
        } else {
            Err(format!("the recommendation engine does not read {topic}"))
        }
    }

    fn key_of<'v>(&self, _topic: &str, input: &'v EngineInput) -> Option<PayloadKey<'v>> {
        Some(match input {
            EngineInput::Position(position) => PayloadKey::new("user_id", &position.user_id),
            EngineInput::Transition(transition) => PayloadKey::new("from", &transition.from),
        })
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        _key: Option<&str>,
        input: EngineInput,
    ) -> Result<(), HandlerError> {
        match input {
            EngineInput::Position(position) if ctx.topic() == self.show_position => {
                self.position(ctx, position)
            }
            EngineInput::Transition(transition) if ctx.topic() == self.transitions => {
                self.transition(ctx, transition)
            }
            _ => Err(HandlerError::Permanent(format!(
                "unexpected record shape on {}",
                ctx.topic()
            ))),
        }
    }
}

impl RecommendationEngine {
    fn position(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        position: ShowPosition,
    ) -> Result<(), HandlerError> {
        position
            .validate(&self.catalog)
            .map_err(HandlerError::Permanent)?;
        let user = position.user_id.as_bytes();
        let mut profile: Profile = ctx.get(PROFILES, user)?.unwrap_or_default();
        if let Some(transition) = profile.apply(&position, &self.catalog) {
            ctx.emit(&self.transitions, &transition.from.clone(), &transition)?;
        }
        let items = {
            let lookup = |show: &str| -> Option<WatchedAfter> {
                ctx.global_get(WATCHED_AFTER_TABLE, show.as_bytes())
                    .ok()
                    .flatten()
            };
            recommend(&profile, &self.catalog, &lookup, TOP_N)
        };
        let published: Vec<(String, Option<u32>)> = items
            .iter()
            .map(|r| (r.show_id.clone(), r.episode))
            .collect();
        if published != profile.published {
            profile.published = published;
            let recommendations = Recommendations {
                user_id: position.user_id.clone(),
                items,
                based_on_event: position.event_id.clone(),
                based_on_at: position.at,
                generated_at: Utc::now(),
            };
            ctx.emit(&self.recommendations, &position.user_id, &recommendations)?;
        }
        ctx.put(PROFILES, user, &profile)?;
        Ok(())
    }

    fn transition(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        transition: Transition,
    ) -> Result<(), HandlerError> {
        let key = transition.from.as_bytes();
        let mut counts: BTreeMap<String, u64> = ctx.get(TRANSITIONS, key)?.unwrap_or_default();
        *counts.entry(transition.to).or_default() += 1;
        ctx.put(TRANSITIONS, key, &counts)?;
        let mut next: Vec<(String, u64)> = counts.into_iter().collect();
        next.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        next.truncate(10);
        let after = WatchedAfter {
            show_id: transition.from.clone(),
            next,
        };
        ctx.emit(&self.watched_after, &transition.from, &after)?;
        Ok(())
    }
}

/// The engine's streams configuration: `show_position` plus its repartition topic in, the
/// `watched_after` global table.
pub fn config(kafka: &Kafka) -> StreamsConfig {
    let mut config = StreamsConfig::new(
        kafka,
        APPLICATION_ID,
        vec![kafka.topic(&SHOW_POSITION)],
        &[PROFILES, TRANSITIONS],
    );
    config.repartition("transitions");
    config.global_tables = vec![(kafka.topic(&WATCHED_AFTER), WATCHED_AFTER_TABLE.to_owned())];
    config
}

/// Starts the engine.
pub async fn start(
    kafka: &Kafka,
    config: StreamsConfig,
    catalog: Arc<Catalog>,
    shutdown: CancellationToken,
) -> anyhow::Result<StreamsHandle> {
    let transitions = config
        .repartitions
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the engine needs its transitions repartition topic"))?;
    let engine = RecommendationEngine {
        catalog,
        show_position: kafka.topic(&SHOW_POSITION),
        transitions,
        watched_after: kafka.topic(&WATCHED_AFTER),
        recommendations: kafka.topic(&RECOMMENDATIONS),
    };
    streams::start(kafka, config, engine, shutdown).await
}

/// The recommendation engine on the scaffold: a streams application without routes.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "recommendation-engine"
    }
    fn about(&self) -> &'static str {
        "show_position → profiles → recommendations (streams)."
    }
    fn streams(&self, kafka: &Kafka) -> Vec<StreamsConfig> {
        vec![config(kafka)]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let config = ctx.state(config(&ctx.kafka));
        let engine = start(
            &ctx.kafka,
            config,
            Arc::clone(&resources.catalog),
            ctx.shutdown.clone(),
        )
        .await?;
        Ok(shared::service::Running::new().streams(Arc::new(engine)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minutes * 60, 0).unwrap()
    }

    fn watch(
        profile: &mut Profile,
        catalog: &Catalog,
        show: &str,
        episode: Option<u32>,
        minute: i64,
    ) {
        let s = catalog.get(show).unwrap();
        let duration_s = s.duration_of(episode).unwrap();
        for step in 0..=10 {
            profile.apply(
                &ShowPosition {
                    event_id: format!("{show}-{step}"),
                    user_id: "u".into(),
                    show_id: show.into(),
                    episode,
                    position_s: duration_s * step / 10,
                    duration_s,
                    at: at(minute + i64::from(step)),
                },
                catalog,
            );
        }
    }

    #[test]
    fn a_finished_episode_recommends_the_next_one_first() {
        let catalog = Catalog::shared();
        let mut profile = Profile::default();
        watch(&mut profile, &catalog, "s001", Some(1), 0);
        let recs = recommend(&profile, &catalog, &|_| None, TOP_N);
        assert_eq!(recs[0].show_id, "s001");
        assert_eq!(recs[0].episode, Some(2));
        assert!(recs[0].reason.starts_with("next episode"), "{recs:?}");
        assert_eq!(recs.len(), TOP_N);
        let genre = &catalog.get("s001").unwrap().genres[0];
        assert!(
            recs[1..].iter().any(|r| r.reason.contains(genre.as_str())),
            "{recs:?}"
        );
    }

    #[test]
    fn finished_shows_are_excluded_and_watched_after_is_used() {
        let catalog = Catalog::shared();
        let mut profile = Profile::default();
        watch(&mut profile, &catalog, "m001", None, 0);
        let after = |show: &str| {
            (show == "m001").then(|| WatchedAfter {
                show_id: "m001".into(),
                next: vec![("m001".into(), 9), ("m002".into(), 5), ("m003".into(), 1)],
            })
        };
        let recs = recommend(&profile, &catalog, &after, TOP_N);
        assert!(recs.iter().all(|r| r.show_id != "m001"), "{recs:?}");
        assert_eq!(recs[0].show_id, "m002");
        assert!(recs[0].reason.contains("because you finished"));
        assert_eq!(recs[1].show_id, "m003");
    }

    #[test]
    fn taste_follows_watch_time_and_decays() {
        let catalog = Catalog::shared();
        let sci_fi = catalog.by_genre("sci-fi");
        let comedy: Vec<_> = catalog
            .by_genre("comedy")
            .into_iter()
            .filter(|s| !s.genres.iter().any(|g| g == "sci-fi") && !s.is_series())
            .collect();
        let sci_fi_movie = sci_fi
            .iter()
            .find(|s| !s.is_series() && !s.genres.iter().any(|g| g == "comedy"))
            .unwrap();
        let mut profile = Profile::default();
        watch(&mut profile, &catalog, &sci_fi_movie.id, None, 0);
        assert!(profile.genres["sci-fi"] > 0.5);
        // Weeks later, two comedies: the older taste has decayed below the new one.
        watch(&mut profile, &catalog, &comedy[0].id, None, 60 * 24 * 21);
        watch(
            &mut profile,
            &catalog,
            &comedy[1].id,
            None,
            60 * 24 * 21 + 200,
        );
        assert!(
            profile.genres["comedy"] > profile.genres["sci-fi"],
            "{profile:?}"
        );
    }

    #[test]
    fn starting_a_new_show_is_a_transition_once() {
        let catalog = Catalog::shared();
        let mut profile = Profile::default();
        watch(&mut profile, &catalog, "m001", None, 0);
        let position = |show: &str, minute| ShowPosition {
            event_id: "x".into(),
            user_id: "u".into(),
            show_id: show.into(),
            episode: None,
            position_s: 10,
            duration_s: catalog.get(show).unwrap().duration_s,
            at: at(minute),
        };
        assert_eq!(
            profile.apply(&position("m002", 100), &catalog),
            Some(Transition {
                from: "m001".into(),
                to: "m002".into()
            })
        );
        assert_eq!(profile.apply(&position("m002", 101), &catalog), None);
        assert_eq!(
            profile.apply(&position("m001", 102), &catalog),
            None,
            "not new"
        );
    }
}
