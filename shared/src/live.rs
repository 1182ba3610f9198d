//! What `casestudies up` needs from a case study besides its services: a title, the simulator
//! that drives it (with one knob a workshop can turn), the interactive queries its page offers,
//! the stateful service that runs a second instance (to kill and restart), and its own view (a
//! few small tables). A case study implements [`LiveCaseStudy`] in its `live.rs`; the umbrella
//! crate lists it in one line.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::kafka::Kafka;
use crate::service::Process;
use crate::service::cli::{CaseStudyCli, Dirs};

/// A simulator's one setting a workshop turns live (viewers, transactions per second), shared by
/// the simulator (which reads it as it goes) and the dashboard (which sets it).
#[derive(Clone, Debug)]
pub struct Knob {
    pub label: &'static str,
    pub min: f64,
    pub max: f64,
    value: Arc<AtomicU64>,
}

impl Knob {
    pub fn new(label: &'static str, value: f64, min: f64, max: f64) -> Knob {
        Knob {
            label,
            min,
            max,
            value: Arc::new(AtomicU64::new(value.clamp(min, max).to_bits())),
        }
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.value.load(Ordering::Relaxed))
    }

    /// Sets the knob; the reason if `value` is outside `[min, max]` or not a number.
    pub fn set(&self, value: f64) -> Result<(), String> {
        if !value.is_finite() || value < self.min || value > self.max {
            return Err(format!(
                "{} must be a number from {} to {}",
                self.label, self.min, self.max
            ));
        }
        self.value.store(value.to_bits(), Ordering::Relaxed);
        Ok(())
    }
}

/// An interactive query the case study's page offers: one of its own GET routes.
#[derive(Clone, Debug, Serialize)]
pub struct QuerySpec {
    pub name: &'static str,
    /// The route, with `{param}` placeholders: `/v1/users/{user}/resume/{show}`; it may end in a
    /// query string with placeholders too (`/v1/counts?from={from}`), which the page fills in.
    pub path: &'static str,
    pub params: Vec<QueryParam>,
}

#[derive(Clone, Debug, Serialize)]
pub struct QueryParam {
    pub name: &'static str,
    pub example: String,
}

impl QuerySpec {
    /// Whether `path` is this route with its placeholders filled by one safe segment each (a
    /// query string, the route's or another, is the service's to check).
    pub fn matches(&self, path: &str) -> bool {
        let (path, _query) = path.split_once('?').unwrap_or((path, ""));
        let route = self
            .path
            .split_once('?')
            .map_or(self.path, |(route, _)| route);
        let (want, got): (Vec<&str>, Vec<&str>) =
            (route.split('/').collect(), path.split('/').collect());
        want.len() == got.len()
            && want.iter().zip(&got).all(|(w, g)| {
                if w.starts_with('{') && w.ends_with('}') {
                    !g.is_empty()
                        && g.len() <= 128
                        && g.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'%')
                        })
                        && *g != "."
                        && *g != ".."
                } else {
                    w == g
                }
            })
    }
}

/// A small table of the case study's own view ("Viewers", "Latest alerts"), or a map above it.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Panel {
    pub title: String,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// Drawn as SVG above the table (which may be empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<Map>,
}

/// A map of the case study's world, in WGS84 degrees (`[lat, lon]`): areas shaded by a level,
/// dots and lines. The page fits the drawing to what it contains (an equirectangular
/// projection, scaled by the cosine of the middle latitude: right for a city).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Map {
    /// Shaded from the legend's first colour (level 0) to its last (level 1).
    pub areas: Vec<MapArea>,
    pub lines: Vec<MapLine>,
    pub dots: Vec<MapDot>,
    /// What levels 0 and 1 mean ("×1.0", "×3.0").
    pub legend: [String; 2],
    /// The dot and line kinds shown, with what they mean (`("on_ride", "taxi with a rider")`),
    /// for the key under the map.
    pub kinds: Vec<(&'static str, &'static str)>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MapArea {
    pub boundary: Vec<[f64; 2]>,
    /// In [0, 1].
    pub level: f64,
    /// Shown when the area is pointed at.
    pub label: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MapDot {
    pub at: [f64; 2],
    /// One of [`Map::kinds`]: the page colours by it.
    pub kind: &'static str,
    pub label: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MapLine {
    pub from: [f64; 2],
    pub to: [f64; 2],
    /// One of [`Map::kinds`].
    pub kind: &'static str,
}

/// A case study as `casestudies up` runs it: every service in one process, a second instance of
/// [`LiveCaseStudy::SPARE`] in another, its simulator, its page.
pub trait LiveCaseStudy: CaseStudyCli {
    const TITLE: &'static str;
    /// One line under the title: what the architecture does.
    const SUMMARY: &'static str;
    /// A stateful service that also runs as a second instance: the page can stop it (the first
    /// takes its partitions over) and start it again (a rebalance gives some back, restored).
    const SPARE: Option<&'static str>;

    /// The simulator's knob, at its gentle default.
    fn knob() -> Knob;

    fn queries() -> Vec<QuerySpec>;

    /// Prepares what the simulator needs once every service runs (thresholds, databases) and
    /// returns the simulator itself, which runs until `stop`.
    fn simulate(
        kafka: &Kafka,
        process: &Process,
        dirs: &Dirs,
        options: &Self::Options,
        knob: Knob,
        stop: CancellationToken,
    ) -> impl Future<Output = anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>>>;

    /// The case study's own view, read through its API at `api` (a few requests at most: the
    /// dashboard asks every couple of seconds).
    fn view(api: String, http: reqwest::Client) -> impl Future<Output = Vec<Panel>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_knob_refuses_values_outside_its_range() {
        let knob = Knob::new("viewers", 20.0, 0.0, 500.0);
        assert_eq!(knob.get(), 20.0);
        assert!(knob.set(501.0).is_err());
        assert!(knob.set(-1.0).is_err());
        assert!(knob.set(f64::NAN).is_err());
        assert_eq!(knob.get(), 20.0);
        knob.set(0.0).unwrap();
        assert_eq!(knob.get(), 0.0);
    }

    #[test]
    fn a_query_path_must_be_the_route_with_one_plain_segment_per_placeholder() {
        let query = QuerySpec {
            name: "resume point",
            path: "/v1/users/{user}/resume/{show}",
            params: Vec::new(),
        };
        assert!(query.matches("/v1/users/viewer-00001/resume/m003"));
        assert!(query.matches("/v1/users/a%20b/resume/m003"));
        assert!(!query.matches("/v1/users//resume/m003"));
        assert!(!query.matches("/v1/users/../resume/m003"));
        assert!(!query.matches("/v1/users/a/b/resume/m003"));
        assert!(!query.matches("/healthz"));
        assert!(!query.matches("http://elsewhere/v1/users/a/resume/b"));
        assert!(!query.matches("/v1/users/a/resume/b#x"));
        let counts = QuerySpec {
            name: "counts from a time",
            path: "/v1/counts?from={from}",
            params: Vec::new(),
        };
        assert!(counts.matches("/v1/counts?from=2026-03-01T12%3A00%3A00Z"));
        assert!(counts.matches("/v1/counts"));
        assert!(!counts.matches("/v1/counts/x?from=a"));
    }
}
