//! The records on MovieFlix's topics (JSON), and the rules every service applies to them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::Event;
use utoipa::ToSchema;

use crate::catalog::{Catalog, Kind};

/// A position at or beyond this share of the duration counts as finished (credits roll).
pub const FINISHED_AT: f64 = 0.95;

/// "Viewer `user_id` is at `position_s` of `show_id` (episode `episode`) at `at`" — on
/// `show_position`, key `user_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShowPosition {
    pub event_id: String,
    pub user_id: String,
    pub show_id: String,
    /// Episode number (1-based across seasons) for a series; absent for a movie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episode: Option<u32>,
    pub position_s: u32,
    pub duration_s: u32,
    /// When the player was at this position (event time).
    pub at: DateTime<Utc>,
}

impl Event for ShowPosition {
    const TYPE: &'static str = "ShowPosition";
    fn event_id(&self) -> String {
        self.event_id.clone()
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
}

impl ShowPosition {
    pub fn progress(&self) -> f64 {
        if self.duration_s == 0 {
            return 0.0;
        }
        f64::from(self.position_s) / f64::from(self.duration_s)
    }

    pub fn finished(&self) -> bool {
        self.progress() >= FINISHED_AT
    }

    /// The checks the video position service applies before publishing; consumers apply them
    /// again (anything may be written to a topic) and dead-letter what fails.
    pub fn validate(&self, catalog: &Catalog) -> Result<(), String> {
        validate_id("user_id", &self.user_id)?;
        validate_id("show_id", &self.show_id)?;
        let show = catalog
            .get(&self.show_id)
            .ok_or_else(|| format!("unknown show_id {:?}", self.show_id))?;
        match (show.kind, self.episode) {
            (Kind::Movie, Some(_)) => {
                return Err(format!("{} is a movie: it has no episodes", show.id));
            }
            (Kind::Series, None) => {
                return Err(format!(
                    "{} is a series: episode is required (1..={})",
                    show.id,
                    show.episodes.len()
                ));
            }
            (Kind::Series, Some(n)) if n == 0 || n as usize > show.episodes.len() => {
                return Err(format!(
                    "{} has episodes 1..={}, not {n}",
                    show.id,
                    show.episodes.len()
                ));
            }
            _ => {}
        }
        if self.duration_s == 0 {
            return Err("duration_s must be positive".into());
        }
        if self.duration_s > MAX_DURATION_S {
            return Err(format!(
                "duration_s ({}) is over {MAX_DURATION_S} (a day): not a show's length",
                self.duration_s
            ));
        }
        if self.position_s > self.duration_s {
            return Err(format!(
                "position_s ({}) is beyond duration_s ({})",
                self.position_s, self.duration_s
            ));
        }
        Ok(())
    }
}

/// The longest a movie or an episode may be, in seconds (a day): `duration_s` and `position_s`
/// stay within it, as the OpenAPI schema says.
pub const MAX_DURATION_S: u32 = 86_400;

/// How far in the past a reported event time may be: the retention of `show_position` (a
/// report older than the topic keeps would be a fact no processor could ever re-read).
pub const MAX_EVENT_AGE: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// How far in the future a reported event time may be (players' clocks drift).
pub const MAX_EVENT_AHEAD: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// The event-time window the video position service accepts, relative to `now`: not more than
/// [`MAX_EVENT_AGE`] ago, not more than [`MAX_EVENT_AHEAD`] ahead.
pub fn validate_event_time(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    if at > now + MAX_EVENT_AHEAD {
        return Err(format!(
            "at ({}) is more than 5 minutes in the future (now {})",
            at.to_rfc3339(),
            now.to_rfc3339()
        ));
    }
    if at < now - MAX_EVENT_AGE {
        return Err(format!(
            "at ({}) is more than 7 days in the past (now {})",
            at.to_rfc3339(),
            now.to_rfc3339()
        ));
    }
    Ok(())
}

/// Ids are path segments and store-key parts: 1–64 characters of `[A-Za-z0-9_.:-]`.
pub fn validate_id(field: &str, id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if id.len() > 64 {
        return Err(format!("{field} is longer than 64 characters"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(format!(
            "{field} may only contain letters, digits and _ . : - (found {c:?})"
        ));
    }
    Ok(())
}

/// One suggested next show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Recommendation {
    pub show_id: String,
    pub title: String,
    /// The episode to play (next episode of a series).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episode: Option<u32>,
    /// Why, in words: "next episode", "because you finished X", "you watch a lot of sci-fi".
    pub reason: String,
    pub score: f64,
}

/// A viewer's current recommendations — on `recommendations`, key `user_id` (compacted: only
/// the latest matters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Recommendations {
    pub user_id: String,
    pub items: Vec<Recommendation>,
    /// The position event that changed the profile, and when it happened.
    pub based_on_event: String,
    pub based_on_at: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
}

/// "Someone who watched `from` started `to` next" — the engine's internal repartition topic,
/// key `from`, so one task counts every transition out of a show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub from: String,
    pub to: String,
}

/// What viewers of `show_id` watch next, most often first — `watched_after`, key `show_id`,
/// compacted; every engine instance reads it whole (a global table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchedAfter {
    pub show_id: String,
    pub next: Vec<(String, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(show_id: &str, episode: Option<u32>, position_s: u32) -> ShowPosition {
        ShowPosition {
            event_id: "e".into(),
            user_id: "u1".into(),
            show_id: show_id.into(),
            episode,
            position_s,
            duration_s: 1000,
            at: Utc::now(),
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let catalog = Catalog::shared();
        assert_eq!(position("s001", Some(1), 10).validate(&catalog), Ok(()));
        assert_eq!(position("m001", None, 1000).validate(&catalog), Ok(()));
        let errors = [
            position("s001", None, 10),
            position("s001", Some(0), 10),
            position("s001", Some(999), 10),
            position("m001", Some(1), 10),
            position("nope", None, 10),
            position("m001", None, 1001),
            // As large as a u32 goes, and within its duration: still not a show's length.
            ShowPosition {
                duration_s: u32::MAX,
                ..position("m001", None, u32::MAX)
            },
            ShowPosition {
                user_id: "a/b".into(),
                ..position("m001", None, 1)
            },
            ShowPosition {
                user_id: String::new(),
                ..position("m001", None, 1)
            },
        ];
        for bad in errors {
            assert!(bad.validate(&catalog).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn event_times_outside_the_window_are_refused() {
        let now = Utc::now();
        let ok = [
            now,
            now - MAX_EVENT_AGE + chrono::TimeDelta::seconds(1),
            now + MAX_EVENT_AHEAD,
        ];
        for at in ok {
            assert_eq!(validate_event_time(at, now), Ok(()), "{at}");
        }
        let year_one = "0001-01-01T00:00:00Z".parse().unwrap();
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let old = now - MAX_EVENT_AGE - chrono::TimeDelta::seconds(1);
        for at in [year_one, epoch, old] {
            let err = validate_event_time(at, now).unwrap_err();
            assert!(err.contains("more than 7 days in the past"), "{err}");
        }
        let ahead = validate_event_time(now + chrono::TimeDelta::minutes(6), now).unwrap_err();
        assert!(
            ahead.contains("more than 5 minutes in the future"),
            "{ahead}"
        );
    }

    #[test]
    fn finished_means_95_percent() {
        assert!(!position("m001", None, 949).finished());
        assert!(position("m001", None, 950).finished());
    }
}
