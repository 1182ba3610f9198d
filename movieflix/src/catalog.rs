//! The catalog: 300 titles (180 series, 120 movies) generated deterministically, so every
//! process — services, simulator, tests — agrees on ids, genres and durations without a
//! database. Reference data like this is small and rarely changes; a real deployment would load
//! it from the content system (or read it as a global table).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use utoipa::ToSchema;

pub const GENRES: &[&str] = &[
    "sci-fi",
    "drama",
    "comedy",
    "thriller",
    "documentary",
    "animation",
    "crime",
    "romance",
    "horror",
    "fantasy",
];

const ADJECTIVES: &[&str] = &[
    "Silent", "Crimson", "Hidden", "Last", "Broken", "Golden", "Distant", "Electric", "Frozen",
    "Wild", "Midnight", "Hollow", "Lost", "Burning", "Quiet", "Iron", "Velvet", "Northern",
    "Secret", "Final",
];

const NOUNS: &[&str] = &[
    "Harbor",
    "Signal",
    "Garden",
    "Empire",
    "Orbit",
    "Witness",
    "Kingdom",
    "Protocol",
    "Summer",
    "Frontier",
    "Archive",
    "River",
    "Machine",
    "Verdict",
    "Lighthouse",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Movie,
    Series,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Episode {
    /// 1-based across the whole series.
    pub number: u32,
    pub season: u32,
    pub episode_in_season: u32,
    pub duration_s: u32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Show {
    /// `s001`…`s180` (series), `m001`…`m120` (movies).
    pub id: String,
    pub title: String,
    pub kind: Kind,
    pub genres: Vec<String>,
    /// 0–1: how often the show is picked; ranks genre recommendations.
    pub popularity: f64,
    /// Episodes of a series; empty for a movie.
    pub episodes: Vec<Episode>,
    /// A movie's running time; a series' total.
    pub duration_s: u32,
}

impl Show {
    pub fn is_series(&self) -> bool {
        self.kind == Kind::Series
    }

    /// The duration of `episode` (a series) or of the movie (`None`).
    pub fn duration_of(&self, episode: Option<u32>) -> Option<u32> {
        match (self.kind, episode) {
            (Kind::Movie, None) => Some(self.duration_s),
            (Kind::Series, Some(n)) => self
                .episodes
                .get(n.checked_sub(1)? as usize)
                .map(|e| e.duration_s),
            _ => None,
        }
    }

    /// The episode after `episode`, if the series has one.
    pub fn next_episode(&self, episode: Option<u32>) -> Option<u32> {
        let n = episode?;
        (self.is_series() && (n as usize) < self.episodes.len()).then_some(n + 1)
    }

    /// "S2E3" for a series episode.
    pub fn episode_label(&self, episode: Option<u32>) -> Option<String> {
        let e = self.episodes.get(episode?.checked_sub(1)? as usize)?;
        Some(format!("S{}E{}", e.season, e.episode_in_season))
    }
}

/// Every show, by id and in catalog order.
#[derive(Debug)]
pub struct Catalog {
    shows: Vec<Show>,
    by_id: HashMap<String, usize>,
}

impl Catalog {
    /// The catalog every process uses (built once).
    pub fn shared() -> Arc<Catalog> {
        static CATALOG: OnceLock<Arc<Catalog>> = OnceLock::new();
        Arc::clone(CATALOG.get_or_init(|| Arc::new(Catalog::generate(180, 120))))
    }

    /// `series` series and `movies` movies from a fixed seed: the same catalog every time.
    pub fn generate(series: usize, movies: usize) -> Catalog {
        let mut rng = SplitMix64(0x6d6f_7669_6566_6c78); // "moviefl x"
        let mut shows = Vec::with_capacity(series + movies);
        for (kind, count) in [(Kind::Series, series), (Kind::Movie, movies)] {
            for i in 1..=count {
                let prefix = if kind == Kind::Series { 's' } else { 'm' };
                let adjective = ADJECTIVES[rng.below(ADJECTIVES.len() as u64) as usize];
                let noun = NOUNS[rng.below(NOUNS.len() as u64) as usize];
                let first = GENRES[rng.below(GENRES.len() as u64) as usize];
                let mut genres = vec![first.to_owned()];
                if rng.below(2) == 0 {
                    let second = GENRES[rng.below(GENRES.len() as u64) as usize];
                    if second != first {
                        genres.push(second.to_owned());
                    }
                }
                // Skewed popularity: a few hits, a long tail.
                let popularity = (rng.unit() * rng.unit() * 1000.0).round() / 1000.0;
                let mut episodes = Vec::new();
                let duration_s = if kind == Kind::Series {
                    let seasons = 1 + rng.below(4) as u32;
                    let per_season = 6 + rng.below(5) as u32;
                    let minutes = [22, 30, 45, 55][rng.below(4) as usize];
                    for season in 1..=seasons {
                        for e in 1..=per_season {
                            episodes.push(Episode {
                                number: episodes.len() as u32 + 1,
                                season,
                                episode_in_season: e,
                                duration_s: (minutes + rng.below(6) as u32) * 60,
                            });
                        }
                    }
                    episodes.iter().map(|e| e.duration_s).sum()
                } else {
                    (85 + rng.below(66) as u32) * 60
                };
                shows.push(Show {
                    id: format!("{prefix}{i:03}"),
                    title: format!("The {adjective} {noun}{}", roman(i / 15)),
                    kind,
                    genres,
                    popularity,
                    episodes,
                    duration_s,
                });
            }
        }
        let by_id = shows
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        Catalog { shows, by_id }
    }

    pub fn get(&self, id: &str) -> Option<&Show> {
        self.by_id.get(id).map(|&i| &self.shows[i])
    }

    pub fn shows(&self) -> &[Show] {
        &self.shows
    }

    /// Shows of `genre`, most popular first.
    pub fn by_genre(&self, genre: &str) -> Vec<&Show> {
        let mut shows: Vec<&Show> = self
            .shows
            .iter()
            .filter(|s| s.genres.iter().any(|g| g == genre))
            .collect();
        shows.sort_by(|a, b| b.popularity.total_cmp(&a.popularity).then(a.id.cmp(&b.id)));
        shows
    }
}

/// " II", " III"… so generated titles stay unique enough to read.
fn roman(n: usize) -> &'static str {
    [
        "", " II", " III", " IV", " V", " VI", " VII", " VIII", " IX",
    ][n.min(8)]
}

/// A tiny fixed PRNG (SplitMix64): the catalog must not change when a dependency's RNG does.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_is_deterministic_and_well_formed() {
        let a = Catalog::generate(180, 120);
        let b = Catalog::generate(180, 120);
        assert_eq!(a.shows().len(), 300);
        for (x, y) in a.shows().iter().zip(b.shows()) {
            assert_eq!((&x.id, &x.title, &x.genres), (&y.id, &y.title, &y.genres));
        }
        for show in a.shows() {
            assert!(!show.genres.is_empty());
            match show.kind {
                Kind::Series => {
                    assert!(show.episodes.len() >= 6, "{}", show.id);
                    assert_eq!(show.duration_of(None), None);
                    assert!(show.duration_of(Some(1)).unwrap() >= 22 * 60);
                }
                Kind::Movie => {
                    assert!(show.episodes.is_empty());
                    assert!(show.duration_of(None).unwrap() >= 85 * 60);
                    assert_eq!(show.duration_of(Some(1)), None);
                }
            }
        }
        for genre in GENRES {
            assert!(!a.by_genre(genre).is_empty(), "{genre}");
        }
    }

    #[test]
    fn next_episode_stops_at_the_last_one() {
        let catalog = Catalog::shared();
        let series = catalog.get("s001").unwrap();
        let last = series.episodes.len() as u32;
        assert_eq!(series.next_episode(Some(1)), Some(2));
        assert_eq!(series.next_episode(Some(last)), None);
        assert_eq!(series.episode_label(Some(1)).as_deref(), Some("S1E1"));
        assert_eq!(catalog.get("m001").unwrap().next_episode(None), None);
    }
}
