//! The nearest available taxi to a pickup, found by walking H3 cells outward in rings.
//!
//! Taxis are stored by their [`INDEX_RES`] cell behind [`CellLookup`] (a RocksDB state store in
//! the streams app, [`MemoryIndex`] here). [`nearest`] looks up ring `k = 0` (the pickup's cell),
//! then ring 1 (its neighbours), ring 2, …, keeping the best candidate: the smallest distance,
//! ties to the smallest `taxi_id`, so the answer is exactly [`brute_force`]'s.
//!
//! **When to stop.** After rings `0..=k`, every taxi not yet seen lies in a cell at grid distance
//! `≥ k + 1`. The great-circle path from the pickup to such a taxi starts inside the searched disk
//! and ends outside it, so it crosses the disk's border, and on the other side of that border is
//! a cell touching the disk: a cell of ring `k + 1` (grid distance is breadth-first distance over
//! cell adjacency, see `geo::Rings`). Hence
//!
//! ```text
//! unseen(k) = min over cells c of ring k+1 of  dist(pickup, boundary of c)  − 1 m
//! ```
//!
//! is a lower bound on the distance to every taxi not yet seen. The search stops as soon as
//! `unseen(k) > best distance` (strictly: an equal distance could still hide a smaller id) or
//! `unseen(k) > radius_m` (then no taxi is in the radius at all, `Ok(None)`). The distance to a
//! cell is exact on the sphere (H3 edges are great-circle arcs between the vertices of
//! `CellIndex::boundary`, and the region H3 assigns to a cell is that polygon: both are tested in
//! `geo`); the 1 m only absorbs floating-point rounding (about 1e-9 m). The argument needs no
//! particular cell shape, so it holds around pentagons and across icosahedron faces too. The
//! boundaries of ring `k + 1` are computed once: that ring is the one searched next.
//!
//! This bound is derived from the actual cells, not from a regular-hexagon formula such as
//! `g · 1.5 e − 2 e` (cell edge `e`, grid distance `g`), which holds for a regular planar grid
//! but assumes a shape H3 only approximates (cells vary in size and shape across the sphere, and
//! around its 12 pentagons a ring is a pentagon); it is also tighter, so fewer rings are read.
//!
//! **Cost.** With 10,000 taxis over Manhattan, three pickups in four are answered from their own
//! cell and the rest from it and its 6 neighbours (1,000 random pickups: mean 2.6 cells, at most
//! 7). Where taxis are sparse the walk goes on until the bound passes `radius_m`: in Manhattan's
//! latitudes 19 cells for 1 km, 37 for 2 km, 169 for 5 km (0.2 ms in memory), 2,107 for 20 km,
//! hence the cap [`MAX_SEARCH_RADIUS_M`].

use std::collections::HashMap;

use anyhow::ensure;
use h3o::CellIndex;
use serde::{Deserialize, Serialize};

use crate::geo::{INDEX_RES, Point, Rings, cell, distance_m, distance_to_cell_m, unit};

/// A taxi that can be matched, as stored in the index: where it was last seen, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub taxi_id: String,
    pub point: Point,
    /// When the position was reported, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// The answer of [`nearest`] and [`brute_force`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nearest {
    pub taxi_id: String,
    pub point: Point,
    /// Great-circle distance from the pickup ([`distance_m`]).
    pub distance_m: f64,
    /// How many cells [`nearest`] looked up (0 for [`brute_force`]).
    pub cells_searched: u32,
}

/// The storage behind the search: the candidates whose position is in an [`INDEX_RES`] cell,
/// i.e. stored under `geo::cell(candidate.point, INDEX_RES)` (the search finds a taxi only in
/// that cell).
pub trait CellLookup {
    /// The candidates in `cell` (any order; empty if none).
    ///
    /// # Errors
    /// Whatever the storage fails with; [`nearest`] passes it on.
    fn taxis_in(&mut self, cell: CellIndex) -> anyhow::Result<Vec<Candidate>>;
}

/// The largest radius [`nearest`] accepts: beyond it a search over an empty area would read
/// thousands of cells.
pub const MAX_SEARCH_RADIUS_M: f64 = 20_000.0;

/// Absorbs floating-point rounding between the distance to a cell and the distance to a taxi.
const BOUND_SLACK_M: f64 = 1.0;

/// The nearest candidate with `accept(c)` true and within `radius_m` of `pickup` (inclusive),
/// ties to the smallest `taxi_id`: the same answer as [`brute_force`] over the same candidates.
/// `None` when there is no such candidate. See the module doc for the search and when it stops.
///
/// # Errors
/// If `pickup` is invalid, `radius_m` is not in `[0, MAX_SEARCH_RADIUS_M]`, or `lookup` fails.
pub fn nearest(
    lookup: &mut impl CellLookup,
    pickup: Point,
    radius_m: f64,
    accept: impl Fn(&Candidate) -> bool,
) -> anyhow::Result<Option<Nearest>> {
    pickup.validate().map_err(anyhow::Error::msg)?;
    ensure!(
        (0.0..=MAX_SEARCH_RADIUS_M).contains(&radius_m),
        "radius {radius_m} m is outside [0, {MAX_SEARCH_RADIUS_M}] m"
    );
    let here = unit(pickup);
    let mut rings = Rings::new(cell(pickup, INDEX_RES));
    let mut ring = rings.next_ring();
    let mut best: Option<Nearest> = None;
    let mut cells_searched = 0;
    loop {
        for &c in &ring {
            cells_searched += 1;
            for candidate in lookup.taxis_in(c)? {
                consider(&mut best, &candidate, pickup, radius_m, &accept);
            }
        }
        let next = rings.next_ring();
        let unseen = next
            .iter()
            .map(|&c| distance_to_cell_m(here, c))
            .fold(f64::INFINITY, f64::min)
            - BOUND_SLACK_M;
        if unseen > best.as_ref().map_or(radius_m, |b| b.distance_m) {
            break;
        }
        ring = next;
    }
    Ok(best.map(|b| Nearest {
        cells_searched,
        ..b
    }))
}

/// The nearest candidate by checking every one: the reference [`nearest`] is tested against.
/// Same rules (`accept`, `distance_m <= radius_m`, ties to the smallest `taxi_id`);
/// `cells_searched` is 0.
pub fn brute_force<'a>(
    taxis: impl IntoIterator<Item = &'a Candidate>,
    pickup: Point,
    radius_m: f64,
    accept: impl Fn(&Candidate) -> bool,
) -> Option<Nearest> {
    let mut best = None;
    for candidate in taxis {
        consider(&mut best, candidate, pickup, radius_m, &accept);
    }
    best
}

fn consider(
    best: &mut Option<Nearest>,
    candidate: &Candidate,
    pickup: Point,
    radius_m: f64,
    accept: &impl Fn(&Candidate) -> bool,
) {
    if !accept(candidate) {
        return;
    }
    let d = distance_m(pickup, candidate.point);
    if d <= radius_m
        && best
            .as_ref()
            .is_none_or(|b| (d, &candidate.taxi_id) < (b.distance_m, &b.taxi_id))
    {
        *best = Some(Nearest {
            taxi_id: candidate.taxi_id.clone(),
            point: candidate.point,
            distance_m: d,
            cells_searched: 0,
        });
    }
}

/// An in-memory [`CellLookup`]: the candidates by [`INDEX_RES`] cell, and the cell of each taxi.
/// For benchmarks and tests.
#[derive(Debug, Default)]
pub struct MemoryIndex {
    cells: HashMap<CellIndex, Vec<Candidate>>,
    cell_of: HashMap<String, CellIndex>,
}

impl MemoryIndex {
    /// Stores `c`, replacing (and so moving) any earlier position of the same taxi. The last call
    /// wins, whatever the `at_ms`.
    ///
    /// # Errors
    /// If `c.point` is invalid; the index is then unchanged.
    pub fn upsert(&mut self, c: Candidate) -> Result<(), String> {
        c.point.validate()?;
        self.remove(&c.taxi_id);
        let at = cell(c.point, INDEX_RES);
        self.cell_of.insert(c.taxi_id.clone(), at);
        self.cells.entry(at).or_default().push(c);
        Ok(())
    }

    /// Removes the taxi, returning its last candidate if it was there.
    pub fn remove(&mut self, taxi_id: &str) -> Option<Candidate> {
        let at = self.cell_of.remove(taxi_id)?;
        let in_cell = self.cells.get_mut(&at)?;
        let i = in_cell.iter().position(|c| c.taxi_id == taxi_id)?;
        let removed = in_cell.swap_remove(i);
        if in_cell.is_empty() {
            self.cells.remove(&at);
        }
        Some(removed)
    }

    /// How many taxis are stored.
    pub fn len(&self) -> usize {
        self.cell_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cell_of.is_empty()
    }

    /// Every stored candidate, in no particular order.
    pub fn candidates(&self) -> impl Iterator<Item = &Candidate> {
        self.cells.values().flatten()
    }
}

impl CellLookup for MemoryIndex {
    fn taxis_in(&mut self, cell: CellIndex) -> anyhow::Result<Vec<Candidate>> {
        Ok(self.cells.get(&cell).cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use h3o::LatLng;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::geo::{MATCH_RES, boundary, destination, on_arc};

    fn candidate(taxi_id: &str, lat: f64, lon: f64) -> Candidate {
        Candidate {
            taxi_id: taxi_id.to_string(),
            point: Point::new(lat, lon).unwrap(),
            at_ms: 0,
        }
    }

    fn random_point(rng: &mut StdRng) -> Point {
        Point {
            lat: rng.random_range(-1.0f64..=1.0).asin().to_degrees(),
            lon: rng.random_range(-180.0..=180.0),
        }
    }

    fn manhattan(rng: &mut StdRng) -> Point {
        Point::new(
            rng.random_range(40.70..=40.88),
            rng.random_range(-74.02..=-73.91),
        )
        .unwrap()
    }

    /// A centre for a random fleet, of one of several kinds (named in failure messages).
    fn centre(rng: &mut StdRng, kind: u64) -> (&'static str, Point) {
        match kind {
            0 => ("manhattan", manhattan(rng)),
            1 => {
                let lon = if rng.random_bool(0.5) {
                    179.99
                } else {
                    -179.99
                };
                let lat = rng.random_range(-60.0..60.0);
                ("antimeridian", Point::new(lat, lon).unwrap())
            }
            2 => {
                let lat = if rng.random_bool(0.5) { 89.9 } else { -89.9 };
                let lon = rng.random_range(-180.0..180.0);
                ("pole", Point::new(lat, lon).unwrap())
            }
            3 | 4 => {
                // A vertex of an INDEX_RES or MATCH_RES cell: the pickup on a border.
                let res = if kind == 3 { INDEX_RES } else { MATCH_RES };
                let vertices = boundary(cell(random_point(rng), res));
                let v = vertices[rng.random_range(0..vertices.len())];
                (
                    if kind == 3 {
                        "index vertex"
                    } else {
                        "match vertex"
                    },
                    v,
                )
            }
            5 => {
                // Around an INDEX_RES pentagon, where rings are not hexagonal.
                let pentagons: Vec<_> = INDEX_RES.pentagons().collect();
                let ll = LatLng::from(pentagons[rng.random_range(0..pentagons.len())]);
                let p = Point::new(ll.lat(), ll.lng()).unwrap();
                let at = destination(
                    p,
                    rng.random_range(0.0..360.0),
                    rng.random_range(0.0..3_000.0),
                );
                ("pentagon", at)
            }
            _ => ("anywhere", random_point(rng)),
        }
    }

    /// `nearest` equals `brute_force` on random fleets, pickups, radii and exclusions, seeded so
    /// that any failure is reproducible from the seed in its message.
    #[test]
    fn nearest_equals_brute_force() {
        for seed in 0..500u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (kind, centre) = centre(&mut rng, seed % 7);
            let spread = rng.random_range(100.0..8_000.0);
            let taxis = rng.random_range(1..=300);
            let mut index = MemoryIndex::default();
            let mut placed: Vec<Point> = Vec::new();
            for i in 0..taxis {
                let point = if !placed.is_empty() && rng.random_bool(0.05) {
                    // Another taxi at exactly the same place: a tie on distance.
                    placed[rng.random_range(0..placed.len())]
                } else if rng.random_bool(0.2) {
                    // On the border between two cells (or at a corner of three).
                    let d = spread * rng.random_range(0.0f64..1.0).sqrt();
                    let near = destination(centre, rng.random_range(0.0..360.0), d);
                    let vertices = boundary(cell(near, INDEX_RES));
                    let i = rng.random_range(0..vertices.len());
                    let t = if rng.random_bool(0.2) {
                        0.0
                    } else {
                        rng.random_range(0.0..1.0)
                    };
                    on_arc(vertices[i], vertices[(i + 1) % vertices.len()], t)
                } else {
                    let d = spread * rng.random_range(0.0f64..1.0).sqrt();
                    destination(centre, rng.random_range(0.0..360.0), d)
                };
                placed.push(point);
                index
                    .upsert(Candidate {
                        // Colliding ids move a taxi.
                        taxi_id: format!("taxi-{}", rng.random_range(0..400)),
                        point,
                        at_ms: i,
                    })
                    .unwrap();
            }
            let exclude_p = [0.0, 0.3, 0.9][rng.random_range(0..3)];
            let excluded: HashSet<String> = index
                .candidates()
                .filter(|_| rng.random_bool(exclude_p))
                .map(|c| c.taxi_id.clone())
                .collect();
            let accept = |c: &Candidate| !excluded.contains(&c.taxi_id);
            for pickup_no in 0..6 {
                let pickup = match pickup_no {
                    0 => centre,
                    1 => placed[rng.random_range(0..placed.len())],
                    _ => destination(
                        centre,
                        rng.random_range(0.0..360.0),
                        rng.random_range(0.0..spread),
                    ),
                };
                let radius = rng.random_range(200.0..=5_000.0);
                let case = format!(
                    "seed {seed} ({kind} {centre:?}, {} taxis over {spread:.0} m, {} excluded), \
                     pickup {pickup_no} {pickup:?}, radius {radius:.1} m",
                    index.len(),
                    excluded.len()
                );
                let got = nearest(&mut index, pickup, radius, accept)
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
                let want = brute_force(index.candidates(), pickup, radius, accept);
                let strip = |n: Option<Nearest>| n.map(|n| (n.taxi_id, n.point, n.distance_m));
                assert_eq!(strip(got), strip(want), "{case}");
            }
        }
    }

    #[test]
    fn ties_go_to_the_smallest_taxi_id() {
        // Symmetric about the pickup on the equator: bit-for-bit the same distance, other cells.
        for (east, west) in [("a", "b"), ("b", "a")] {
            let mut index = MemoryIndex::default();
            index.upsert(candidate(east, 0.0, 0.004)).unwrap();
            index.upsert(candidate(west, 0.0, -0.004)).unwrap();
            index.upsert(candidate("c", 0.0, 0.004)).unwrap();
            let pickup = Point::new(0.0, 0.0).unwrap();
            let got = nearest(&mut index, pickup, 1_000.0, |_| true)
                .unwrap()
                .unwrap();
            assert_eq!(got.taxi_id, "a");
            assert_eq!(
                Some(got.distance_m),
                brute_force(index.candidates(), pickup, 1_000.0, |_| true).map(|n| n.distance_m)
            );
            let got = nearest(&mut index, pickup, 1_000.0, |c| c.taxi_id != "a")
                .unwrap()
                .unwrap();
            assert_eq!(got.taxi_id, "b");
        }
    }

    #[test]
    fn radius_accept_and_input() {
        let mut index = MemoryIndex::default();
        let pickup = Point::new(40.758, -73.9855).unwrap();
        assert_eq!(
            nearest(&mut index, pickup, 5_000.0, |_| true).unwrap(),
            None
        );
        index.upsert(candidate("here", 40.758, -73.9855)).unwrap();
        let far = destination(pickup, 90.0, 1_500.0);
        index
            .upsert(Candidate {
                taxi_id: "far".into(),
                point: far,
                at_ms: 0,
            })
            .unwrap();
        let got = nearest(&mut index, pickup, 0.0, |_| true).unwrap().unwrap();
        assert_eq!((got.taxi_id.as_str(), got.distance_m), ("here", 0.0));
        assert_eq!(got.cells_searched, 1);
        let not_here = |c: &Candidate| c.taxi_id != "here";
        assert_eq!(
            nearest(&mut index, pickup, 1_400.0, not_here).unwrap(),
            None
        );
        let got = nearest(&mut index, pickup, 1_500.5, not_here)
            .unwrap()
            .unwrap();
        assert_eq!(got.taxi_id, "far");
        assert!((got.distance_m - 1_500.0).abs() < 1e-3);

        assert!(
            nearest(
                &mut index,
                Point {
                    lat: f64::NAN,
                    lon: 0.0
                },
                100.0,
                |_| true
            )
            .is_err()
        );
        assert!(nearest(&mut index, pickup, -1.0, |_| true).is_err());
        assert!(nearest(&mut index, pickup, f64::INFINITY, |_| true).is_err());
        assert!(nearest(&mut index, pickup, MAX_SEARCH_RADIUS_M + 1.0, |_| true).is_err());
    }

    #[test]
    fn lookup_errors_are_passed_on() {
        struct Broken;
        impl CellLookup for Broken {
            fn taxis_in(&mut self, cell: CellIndex) -> anyhow::Result<Vec<Candidate>> {
                anyhow::bail!("store closed at {cell}")
            }
        }
        let pickup = Point::new(40.758, -73.9855).unwrap();
        let err = nearest(&mut Broken, pickup, 1_000.0, |_| true).unwrap_err();
        assert!(err.to_string().starts_with("store closed"), "{err}");
    }

    #[test]
    fn memory_index_moves_and_removes() {
        let mut index = MemoryIndex::default();
        assert!(index.is_empty());
        index.upsert(candidate("t1", 40.75, -73.99)).unwrap();
        index.upsert(candidate("t2", 40.76, -73.98)).unwrap();
        // Moved 10 km north: one entry, in the new cell only.
        index.upsert(candidate("t1", 40.84, -73.99)).unwrap();
        assert_eq!(index.len(), 2);
        assert_eq!(index.candidates().count(), 2);
        let old = cell(Point::new(40.75, -73.99).unwrap(), INDEX_RES);
        assert!(index.taxis_in(old).unwrap().is_empty());
        let new = cell(Point::new(40.84, -73.99).unwrap(), INDEX_RES);
        assert_eq!(
            index.taxis_in(new).unwrap(),
            vec![candidate("t1", 40.84, -73.99)]
        );
        assert!(
            index
                .upsert(Candidate {
                    taxi_id: "t3".into(),
                    point: Point {
                        lat: 91.0,
                        lon: 0.0
                    },
                    at_ms: 0
                })
                .is_err()
        );
        assert_eq!(index.len(), 2);
        assert_eq!(index.remove("t1"), Some(candidate("t1", 40.84, -73.99)));
        assert_eq!(index.remove("t1"), None);
        assert!(index.taxis_in(new).unwrap().is_empty());
        assert_eq!(index.len(), 1);
    }

    /// 10,000 taxis over Manhattan: the search reads a handful of cells, not the island.
    #[test]
    fn manhattan_search_reads_few_cells() {
        let mut rng = StdRng::seed_from_u64(42);
        let mut index = MemoryIndex::default();
        for i in 0..10_000 {
            index
                .upsert(Candidate {
                    taxi_id: format!("taxi-{i:05}"),
                    point: manhattan(&mut rng),
                    at_ms: 0,
                })
                .unwrap();
        }
        let mut searched = Vec::new();
        for i in 0..1_000 {
            let pickup = manhattan(&mut rng);
            let got = nearest(&mut index, pickup, 2_000.0, |_| true)
                .unwrap()
                .unwrap();
            if i < 100 {
                let want = brute_force(index.candidates(), pickup, 2_000.0, |_| true).unwrap();
                assert_eq!(
                    (&got.taxi_id, got.distance_m),
                    (&want.taxi_id, want.distance_m)
                );
            }
            searched.push(got.cells_searched);
        }
        searched.sort_unstable();
        let max = searched[searched.len() - 1];
        let mean = f64::from(searched.iter().sum::<u32>()) / searched.len() as f64;
        assert!(
            max <= 19,
            "cells searched: max {max}, mean {mean:.1}, {searched:?}"
        );
        assert!(mean < 10.0, "cells searched: max {max}, mean {mean:.1}");
    }

    /// Checks the regular-hexagon bound suggested for this search against the exact distances:
    /// with `e` = 0.8 × the shortest edge of the pickup's cell, every cell at grid distance `g`
    /// is at least `g · 1.5 e − 2 e` away. Not used by `nearest` (see the module doc); kept as
    /// evidence that the exact bound is the tighter one.
    #[test]
    fn regular_hexagon_bound_is_below_the_exact_one() {
        let mut rng = StdRng::seed_from_u64(9);
        for case in 0..300u64 {
            let (kind, pickup) = centre(&mut rng, case % 7);
            let origin = cell(pickup, INDEX_RES);
            let e = 0.8
                * origin
                    .edges()
                    .map(|edge| edge.length_m())
                    .fold(f64::INFINITY, f64::min);
            let here = unit(pickup);
            let mut rings = Rings::new(origin);
            rings.next_ring();
            for g in 1..=12 {
                let exact = rings
                    .next_ring()
                    .iter()
                    .map(|&c| distance_to_cell_m(here, c))
                    .fold(f64::INFINITY, f64::min);
                let formula = f64::from(g) * 1.5 * e - 2.0 * e;
                assert!(
                    formula <= exact,
                    "case {case} ({kind} {pickup:?}) ring {g}: formula {formula} m > exact {exact} m"
                );
            }
        }
    }
}
