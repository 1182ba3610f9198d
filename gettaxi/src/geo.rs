//! Positions on the Earth and the H3 cells that GetTaxi keys its streams and stores by.
//!
//! A [`Point`] is WGS84 latitude/longitude in degrees. Distances are great-circle distances on a
//! sphere of geo's [`Haversine`](::geo::Haversine) radius ([`EARTH_RADIUS_M`]). They differ from
//! ellipsoidal (WGS84) distances by at most 0.5 %, a few metres at dispatch range: within GPS
//! noise, and one yardstick for every taxi.
//!
//! Three H3 resolutions are used ([`INDEX_RES`], [`REGION_RES`], [`MATCH_RES`]); [`h3o`] is a pure
//! Rust H3. A taxi reports its position to every matching area it could serve
//! ([`match_areas_within`]), a ride request goes to the one area of its pickup ([`match_area`]),
//! so both meet in one stream task, which then finds the nearest taxi cell by cell
//! ([`crate::index`]).
//!
//! **Antimeridian and poles.** Nothing here uses planar latitude/longitude arithmetic: H3 indexes
//! the whole sphere (its cells straddle the antimeridian and cover the poles), the haversine
//! formula is global, and the distance from a point to a cell is computed on the unit sphere
//! with 3-D vectors. So `(0, 179.99)` and `(0, -179.99)` are 2.2 km
//! apart, and `(90, 0)` (the pole, where every longitude is the same point) is a valid position.
//! Only [`boundary`] returns longitudes as H3 gives them, each in [-180, 180]: a cell that
//! straddles the antimeridian has vertices near both +180 and -180, which a map must unwrap.

use ::geo::Distance as _;
use h3o::{CellIndex, LatLng, Resolution};
use serde::{Deserialize, Serialize};

/// A position in WGS84 degrees. Fields are public (and [`Deserialize`] does not check them):
/// call [`Point::validate`] on anything that came from outside, or build with [`Point::new`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Point {
    /// Latitude in degrees, in [-90, 90].
    pub lat: f64,
    /// Longitude in degrees, in [-180, 180].
    pub lon: f64,
}

impl Point {
    /// A validated point.
    ///
    /// # Errors
    /// A message naming the field and the value, e.g. `lat 91 is outside [-90, 90]`, when a
    /// coordinate is not finite or out of range.
    pub fn new(lat: f64, lon: f64) -> Result<Point, String> {
        let p = Point { lat, lon };
        p.validate()?;
        Ok(p)
    }

    /// Checks that both coordinates are finite and in range.
    ///
    /// # Errors
    /// As [`Point::new`].
    pub fn validate(&self) -> Result<(), String> {
        check("lat", self.lat, 90.0)?;
        check("lon", self.lon, 180.0)
    }
}

fn check(field: &str, value: f64, limit: f64) -> Result<(), String> {
    if !value.is_finite() {
        return Err(format!("{field} {value} is not a finite number"));
    }
    if !(-limit..=limit).contains(&value) {
        return Err(format!("{field} {value} is outside [-{limit}, {limit}]"));
    }
    Ok(())
}

/// The radius of the sphere distances are measured on: geo's [`Haversine`](::geo::Haversine)
/// (the GRS80 mean radius, 6,371,008.8 m).
pub const EARTH_RADIUS_M: f64 = ::geo::Haversine.radius();

/// Great-circle distance in metres (haversine, [`EARTH_RADIUS_M`]). Works across the
/// antimeridian and at the poles.
pub fn distance_m(a: Point, b: Point) -> f64 {
    ::geo::Haversine.distance(
        ::geo::Point::new(a.lon, a.lat),
        ::geo::Point::new(b.lon, b.lat),
    )
}

/// The cells the nearest-taxi search walks ring by ring (H3 resolution 8: hexagons of about
/// 0.74 km², edges of about 0.46 km, neighbouring centres about 0.8 km apart).
pub const INDEX_RES: Resolution = Resolution::Eight;

/// Surge-pricing regions (H3 resolution 7: about 5.2 km², edges of about 1.2 km), where supply
/// and demand are counted.
pub const REGION_RES: Resolution = Resolution::Seven;

/// The coarse matching area (H3 resolution 5: about 250 km², edges of about 8.5 km) whose taxis
/// and requests meet in one stream task: the key of the repartitioned positions and requests.
pub const MATCH_RES: Resolution = Resolution::Five;

/// The largest radius [`match_areas_within`] accepts: less than the inradius of the smallest
/// MATCH_RES cell (6.05 km, measured over all 2,016,842 of them; the test
/// `match_cells_are_wider_than_the_max_radius` checks the smallest ones), so a taxi is published
/// to its own area and at most its ring of neighbours, never to a second ring. Dispatch radii are
/// far smaller; the limit keeps the fan-out of positions bounded.
pub const MAX_MATCH_RADIUS_M: f64 = 5_000.0;

/// The H3 cell at `res` that contains `p`.
///
/// # Panics
/// If a coordinate is not finite (a [`Point::validate`]d point never panics; finite values out of
/// range are wrapped by H3).
pub fn cell(p: Point, res: Resolution) -> CellIndex {
    LatLng::new(p.lat, p.lon)
        .unwrap_or_else(|e| panic!("cell of {p:?}: {e}; validate points first"))
        .to_cell(res)
}

/// The surge-pricing region of `p` ([`REGION_RES`]). Panics as [`cell`].
pub fn region(p: Point) -> CellIndex {
    cell(p, REGION_RES)
}

/// The matching area of `p` ([`MATCH_RES`]). Panics as [`cell`].
pub fn match_area(p: Point) -> CellIndex {
    cell(p, MATCH_RES)
}

/// A region key (an H3 cell at [`REGION_RES`], as hex) from text: a topic key or a path.
pub fn parse_region(text: &str) -> Result<CellIndex, String> {
    let cell: CellIndex = text
        .parse()
        .map_err(|_| format!("region {text:?} is not an H3 cell index"))?;
    if cell.resolution() != REGION_RES {
        return Err(format!(
            "region {text:?} is an H3 cell at resolution {}, not {}",
            u8::from(cell.resolution()),
            u8::from(REGION_RES)
        ));
    }
    Ok(cell)
}

/// Every matching area ([`MATCH_RES`] cell) that contains some point within `radius_m` of `p`:
/// the area of `p` first, then the others in ascending [`CellIndex`] order, without duplicates.
///
/// It never misses an area: a pickup within `radius_m` of `p` lies in one of the returned areas.
/// It may include an area whose nearest point is up to `radius_m × 1.1 + 50 m` away (harmless: a
/// few more taxis in a task). The distance from `p` to a cell is exact on the sphere (see
/// `distance_to_cell_m`); the neighbours are walked ring by ring until a whole ring is beyond
/// that margin (a point of a cell farther out is reached from `p` only by crossing that ring).
///
/// # Errors
/// If `p` is invalid, or `radius_m` is not in `[0, MAX_MATCH_RADIUS_M]`.
pub fn match_areas_within(p: Point, radius_m: f64) -> Result<Vec<CellIndex>, String> {
    p.validate()?;
    if !(0.0..=MAX_MATCH_RADIUS_M).contains(&radius_m) {
        return Err(format!(
            "radius {radius_m} m is outside [0, {MAX_MATCH_RADIUS_M}] m"
        ));
    }
    let reach_m = radius_m * 1.1 + 50.0;
    let here = unit(p);
    let own = match_area(p);
    let mut rings = Rings::new(own);
    rings.next_ring(); // ring 0: `own`
    let mut others = Vec::new();
    loop {
        let ring = rings.next_ring();
        let before = others.len();
        others.extend(
            ring.into_iter()
                .filter(|&c| distance_to_cell_m(here, c) <= reach_m),
        );
        if others.len() == before {
            break;
        }
    }
    others.sort_unstable();
    others.dedup();
    let mut areas = Vec::with_capacity(others.len() + 1);
    areas.push(own);
    areas.extend(others);
    Ok(areas)
}

/// The vertices of `cell`, in H3's order (counter-clockwise), not closed (the first vertex is not
/// repeated). Usually 6; 5 for a pentagon; up to 10 where a cell of an odd resolution crosses an
/// icosahedron edge. Longitudes are in [-180, 180] (see the module doc on the antimeridian).
pub fn boundary(cell: CellIndex) -> Vec<Point> {
    cell.boundary()
        .iter()
        .map(|ll| Point {
            lat: ll.lat(),
            lon: ll.lng(),
        })
        .collect()
}

// --- Spherical geometry -------------------------------------------------------------------------

/// A point on the unit sphere (x towards (0, 0), z towards the north pole).
pub(crate) type Vec3 = [f64; 3];

/// `p` on the unit sphere.
pub(crate) fn unit(p: Point) -> Vec3 {
    from_radians(p.lat.to_radians(), p.lon.to_radians())
}

fn from_radians(lat: f64, lon: f64) -> Vec3 {
    let (sin_lat, cos_lat) = lat.sin_cos();
    let (sin_lon, cos_lon) = lon.sin_cos();
    [cos_lat * cos_lon, cos_lat * sin_lon, sin_lat]
}

fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn norm(a: Vec3) -> f64 {
    dot(a, a).sqrt()
}

/// The angle between two unit vectors, well conditioned at small and large angles.
fn angle(a: Vec3, b: Vec3) -> f64 {
    norm(cross(a, b)).atan2(dot(a, b))
}

/// The angle from `p` to the nearest point of the minor great-circle arc from `a` to `b`.
fn angle_to_arc(p: Vec3, a: Vec3, b: Vec3) -> f64 {
    let n = cross(a, b);
    let len = norm(n);
    let to_ends = angle(p, a).min(angle(p, b));
    if len < 1e-15 {
        return to_ends;
    }
    let n = [n[0] / len, n[1] / len, n[2] / len];
    // `p · n` computed as `(p − a) · n` (`a · n` is 0): for a short arc, `n` is only known to
    // about 1e-16 / |a × b| and its error along `a` would otherwise land in the result.
    let off = dot([p[0] - a[0], p[1] - a[1], p[2] - a[2]], n);
    // `p` projected onto the plane of the great circle.
    let c = [p[0] - off * n[0], p[1] - off * n[1], p[2] - off * n[2]];
    if dot(cross(a, c), n) >= 0.0 && dot(cross(c, b), n) >= 0.0 {
        // The foot of the perpendicular lies on the arc.
        off.abs().atan2(norm(c)).min(to_ends)
    } else {
        to_ends
    }
}

/// The great-circle distance in metres from `p` (a [`unit`] vector) to the nearest point of the
/// boundary of `cell`: exact on the sphere, because H3 cell edges are great-circle arcs between
/// the vertices of [`CellIndex::boundary`] (which includes the extra vertices where an edge is
/// bent by an icosahedron edge). For a cell that does not contain `p` this is the distance from
/// `p` to the nearest point of the cell.
pub(crate) fn distance_to_cell_m(p: Vec3, cell: CellIndex) -> f64 {
    let vertices: Vec<Vec3> = cell
        .boundary()
        .iter()
        .map(|ll| from_radians(ll.lat_radians(), ll.lng_radians()))
        .collect();
    let mut min = f64::INFINITY;
    for (i, &a) in vertices.iter().enumerate() {
        let b = vertices[(i + 1) % vertices.len()];
        min = min.min(angle_to_arc(p, a, b));
    }
    min * EARTH_RADIUS_M
}

/// The cells of an H3 grid, ring by ring outward from an origin: ring `k` is the cells at grid
/// distance exactly `k` (k = 0 is the origin). Uses h3o's `grid_ring_fast`; from the first ring
/// where that fails (a pentagon or its distortion on or inside the ring) on, every ring comes
/// from the breadth-first `grid_disk_distances_safe`, so the rings are always exactly the
/// breadth-first distances over cell adjacency (the fast rings before the switch, having met no
/// pentagon, are the same cells).
pub(crate) struct Rings {
    origin: CellIndex,
    k: u32,
    safe: bool,
}

impl Rings {
    pub(crate) fn new(origin: CellIndex) -> Self {
        Rings {
            origin,
            k: 0,
            // `grid_ring_fast(0)` succeeds even on a pentagon; start safe there.
            safe: origin.is_pentagon(),
        }
    }

    /// The next ring (the first call returns ring 0, the origin).
    pub(crate) fn next_ring(&mut self) -> Vec<CellIndex> {
        let k = self.k;
        self.k += 1;
        if !self.safe {
            if let Some(ring) = self.origin.grid_ring_fast(k).collect::<Option<Vec<_>>>() {
                return ring;
            }
            self.safe = true;
        }
        self.origin
            .grid_disk_distances_safe(k)
            .filter_map(|(cell, distance)| (distance == k).then_some(cell))
            .collect()
    }
}

/// The point `distance_m` from `p` along the initial `bearing_deg` (clockwise from north), on the
/// sphere; longitude normalised into [-180, 180).
#[cfg(test)]
pub(crate) fn destination(p: Point, bearing_deg: f64, distance_m: f64) -> Point {
    let d = distance_m / EARTH_RADIUS_M;
    let (lat1, lon1, brg) = (
        p.lat.to_radians(),
        p.lon.to_radians(),
        bearing_deg.to_radians(),
    );
    let lat2 = (lat1.sin() * d.cos() + lat1.cos() * d.sin() * brg.cos())
        .clamp(-1.0, 1.0)
        .asin();
    let lon2 = lon1 + (brg.sin() * d.sin() * lat1.cos()).atan2(d.cos() - lat1.sin() * lat2.sin());
    let lon = (lon2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
    Point {
        lat: lat2.to_degrees().clamp(-90.0, 90.0),
        lon: lon.clamp(-180.0, 180.0),
    }
}

/// A point on the great-circle arc from `a` to `b` (`t` = 0 at `a`, 1 at `b`; not uniform in
/// between).
#[cfg(test)]
pub(crate) fn on_arc(a: Point, b: Point, t: f64) -> Point {
    let (a, b) = (unit(a), unit(b));
    let v = [0, 1, 2].map(|i| (1.0 - t) * a[i] + t * b[i]);
    let len = norm(v);
    Point {
        lat: (v[2] / len).clamp(-1.0, 1.0).asin().to_degrees(),
        lon: v[1].atan2(v[0]).to_degrees(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn point_validation_names_the_field() {
        for (lat, lon, field) in [
            (f64::NAN, 0.0, "lat"),
            (0.0, f64::NAN, "lon"),
            (f64::INFINITY, 0.0, "lat"),
            (f64::NEG_INFINITY, 0.0, "lat"),
            (0.0, f64::INFINITY, "lon"),
            (0.0, f64::NEG_INFINITY, "lon"),
            (90.0001, 0.0, "lat"),
            (-90.0001, 0.0, "lat"),
            (0.0, -180.5, "lon"),
            (0.0, 180.0001, "lon"),
        ] {
            let err = Point::new(lat, lon).expect_err(&format!("({lat}, {lon}) accepted"));
            assert!(
                err.starts_with(&format!("{field} ")),
                "({lat}, {lon}): {err:?} does not name {field}"
            );
            assert_eq!(Point { lat, lon }.validate(), Err(err));
        }
        assert_eq!(
            Point::new(91.0, 0.0),
            Err("lat 91 is outside [-90, 90]".to_string())
        );
        for (lat, lon) in [(90.0, 180.0), (-90.0, -180.0), (0.0, 0.0), (40.7, -74.0)] {
            assert_eq!(Point::new(lat, lon), Ok(Point { lat, lon }));
        }
    }

    #[test]
    fn distances() {
        let jfk = Point::new(40.6413, -73.7781).unwrap();
        let lhr = Point::new(51.4700, -0.4543).unwrap();
        let d = distance_m(jfk, lhr);
        assert!((d / 5_540_000.0 - 1.0).abs() < 0.005, "JFK-LHR {d} m");
        assert_eq!(distance_m(lhr, jfk), d);
        assert_eq!(distance_m(jfk, jfk), 0.0);

        // Across the antimeridian: 0.02° of the equator, not 359.98°.
        let east = Point::new(0.0, 179.99).unwrap();
        let west = Point::new(0.0, -179.99).unwrap();
        let d = distance_m(east, west);
        assert!((d - 2_223.9).abs() < 1.0, "antimeridian {d} m");

        // Over the pole: 0.2° of a meridian.
        let d = distance_m(
            Point::new(89.9, 0.0).unwrap(),
            Point::new(89.9, 180.0).unwrap(),
        );
        assert!((d - 22_239.0).abs() < 10.0, "over the pole {d} m");
        // Every longitude at the pole is the same point.
        let d = distance_m(
            Point::new(90.0, 0.0).unwrap(),
            Point::new(90.0, 123.0).unwrap(),
        );
        assert!(d < 1e-6, "pole {d} m");
    }

    #[test]
    fn cells_at_the_antimeridian_and_the_poles() {
        let east = Point::new(0.0, 179.9999).unwrap();
        let west = Point::new(0.0, -179.9999).unwrap();
        // 22 m apart across the antimeridian: the same or adjacent cells, not the far side.
        let (a, b) = (cell(east, INDEX_RES), cell(west, INDEX_RES));
        assert!(a == b || a.grid_distance(b) == Ok(1), "{a} {b}");
        let north = Point::new(90.0, 0.0).unwrap();
        assert_eq!(
            cell(north, INDEX_RES),
            cell(Point::new(90.0, 77.0).unwrap(), INDEX_RES)
        );
        assert_eq!(region(north).resolution(), REGION_RES);
        assert_eq!(match_area(north).resolution(), MATCH_RES);
        let areas = match_areas_within(north, MAX_MATCH_RADIUS_M).unwrap();
        assert_eq!(areas[0], match_area(north));
    }

    #[test]
    fn boundary_surrounds_the_cell_centre() {
        let p = Point::new(40.758, -73.9855).unwrap();
        for res in [INDEX_RES, REGION_RES, MATCH_RES] {
            let c = cell(p, res);
            let vertices = boundary(c);
            assert!((6..=10).contains(&vertices.len()), "{c}: {vertices:?}");
            let centre = LatLng::from(c);
            let centre = Point::new(centre.lat(), centre.lng()).unwrap();
            let edge = res.edge_length_m();
            for v in &vertices {
                v.validate().unwrap();
                let d = distance_m(centre, *v);
                assert!(
                    d > 0.5 * edge && d < 2.0 * edge,
                    "{c}: vertex {v:?} at {d} m"
                );
            }
            // A vertex is on the boundary (up to its round trip through degrees).
            let d = distance_to_cell_m(unit(vertices[0]), c);
            assert!(d < 1e-6, "{c}: vertex {d} m from the boundary");
            // The centre is an inradius away from it.
            let d = distance_to_cell_m(unit(centre), c);
            assert!(
                d > 0.8 * edge && d < edge,
                "{c}: centre {d} m from the boundary"
            );
        }
    }

    /// The premise of every "a point farther out must cross this ring" argument: the region H3
    /// assigns to a cell is its [`boundary`] polygon. Random points, all over the sphere, lie
    /// inside (or within a micrometre of) the polygon of their cell, at the three resolutions.
    #[test]
    fn points_lie_inside_their_cell_polygon() {
        let mut rng = StdRng::seed_from_u64(7);
        for i in 0..20_000 {
            let p = Point {
                lat: (rng.random_range(-1.0f64..=1.0)).asin().to_degrees(),
                lon: rng.random_range(-180.0..=180.0),
            };
            let res = [INDEX_RES, REGION_RES, MATCH_RES][i % 3];
            let c = cell(p, res);
            let q = unit(p);
            let vertices: Vec<Vec3> = c
                .boundary()
                .iter()
                .map(|ll| from_radians(ll.lat_radians(), ll.lng_radians()))
                .collect();
            let sides: Vec<f64> = (0..vertices.len())
                .map(|j| dot(cross(vertices[j], vertices[(j + 1) % vertices.len()]), q))
                .collect();
            let inside = sides.iter().all(|&s| s >= 0.0) || sides.iter().all(|&s| s <= 0.0);
            if !inside {
                let d = distance_to_cell_m(q, c);
                assert!(d < 1e-6, "{p:?} is {d} m outside its cell {c}");
            }
        }
    }

    #[test]
    fn match_cells_are_wider_than_the_max_radius() {
        // The smallest MATCH_RES cells are the pentagons and their neighbours; and a sample of
        // the rest.
        let mut rng = StdRng::seed_from_u64(5);
        let random = (0..2_000).map(|_| {
            match_area(Point {
                lat: rng.random_range(-1.0f64..=1.0).asin().to_degrees(),
                lon: rng.random_range(-180.0..=180.0),
            })
        });
        let cells: Vec<CellIndex> = MATCH_RES
            .pentagons()
            .flat_map(|p| p.grid_disk::<Vec<_>>(2))
            .chain(random)
            .collect();
        for c in cells {
            let centre = unit(Point::from_latlng(LatLng::from(c)));
            let inradius = distance_to_cell_m(centre, c);
            assert!(inradius > MAX_MATCH_RADIUS_M, "{c}: inradius {inradius} m");
        }
    }

    fn sample_centre(rng: &mut StdRng, case: usize) -> Point {
        match case % 6 {
            0 => Point::new(
                rng.random_range(40.70..40.88),
                rng.random_range(-74.02..-73.91),
            )
            .unwrap(),
            1 => Point::new(rng.random_range(-10.0..10.0), 179.99).unwrap(),
            2 => Point::new(89.9, rng.random_range(-180.0..180.0)).unwrap(),
            3 => {
                // A vertex of the matching area of a random point: on a border.
                let p = Point {
                    lat: rng.random_range(-1.0f64..=1.0).asin().to_degrees(),
                    lon: rng.random_range(-180.0..=180.0),
                };
                let vertices = boundary(match_area(p));
                vertices[rng.random_range(0..vertices.len())]
            }
            4 => {
                // Next to a pentagon.
                let pentagons: Vec<_> = MATCH_RES.pentagons().collect();
                let c = pentagons[rng.random_range(0..pentagons.len())];
                let p = Point::from_latlng(LatLng::from(c));
                destination(
                    p,
                    rng.random_range(0.0..360.0),
                    rng.random_range(0.0..20_000.0),
                )
            }
            _ => Point {
                lat: rng.random_range(-1.0f64..=1.0).asin().to_degrees(),
                lon: rng.random_range(-180.0..=180.0),
            },
        }
    }

    #[test]
    fn match_areas_within_never_misses_an_area() {
        let mut rng = StdRng::seed_from_u64(11);
        for case in 0..600 {
            let p = sample_centre(&mut rng, case);
            let radius = if case % 5 == 0 {
                MAX_MATCH_RADIUS_M
            } else {
                rng.random_range(0.0..=MAX_MATCH_RADIUS_M)
            };
            let areas = match_areas_within(p, radius).unwrap();
            assert_eq!(areas[0], match_area(p), "case {case}: {p:?}");
            assert!(areas[1..].is_sorted(), "case {case}: {areas:?}");
            assert!(!areas[1..].contains(&areas[0]), "case {case}: {areas:?}");
            assert!(areas.len() <= 7, "case {case}: {p:?} r {radius}: {areas:?}");
            let steps = 360;
            for i in 0..steps {
                let bearing = f64::from(i) * 360.0 / f64::from(steps);
                for q in [
                    destination(p, bearing, radius * 0.999),
                    destination(p, bearing, radius * rng.random_range(0.0..1.0)),
                ] {
                    assert!(
                        areas.contains(&match_area(q)),
                        "case {case}: p {p:?} r {radius}: {q:?} in {} not in {areas:?}",
                        match_area(q)
                    );
                }
            }
        }
    }

    #[test]
    fn match_areas_within_rejects_bad_input() {
        let p = Point::new(40.75, -73.99).unwrap();
        assert!(match_areas_within(p, -1.0).is_err());
        assert!(match_areas_within(p, f64::NAN).is_err());
        assert!(match_areas_within(p, MAX_MATCH_RADIUS_M + 1.0).is_err());
        assert!(
            match_areas_within(
                Point {
                    lat: 95.0,
                    lon: 0.0
                },
                100.0
            )
            .is_err()
        );
        assert_eq!(match_areas_within(p, 0.0).unwrap()[0], match_area(p));
    }

    #[test]
    fn distance_to_cell_is_exact_on_a_meridian_edge() {
        // A point on the equator and an arc along the meridian at lon 1°: 1° of the equator away.
        let p = unit(Point::new(0.0, 0.0).unwrap());
        let a = unit(Point::new(-0.5, 1.0).unwrap());
        let b = unit(Point::new(0.5, 1.0).unwrap());
        let expected = 1f64.to_radians();
        assert!((angle_to_arc(p, a, b) - expected).abs() < 1e-12);
        // Beyond an end of the arc: the distance to that end.
        let c = unit(Point::new(2.0, 1.0).unwrap());
        let d = unit(Point::new(3.0, 1.0).unwrap());
        assert!((angle_to_arc(p, c, d) - angle(p, c)).abs() < 1e-15);
    }

    impl Point {
        fn from_latlng(ll: LatLng) -> Point {
            Point::new(ll.lat(), ll.lng()).unwrap()
        }
    }

    /// `distance_to_cell_m` against the closest of many points sampled along the cell's edges.
    #[test]
    fn distance_to_cell_matches_sampled_edges() {
        let mut rng = StdRng::seed_from_u64(17);
        for case in 0..300 {
            let p = sample_centre(&mut rng, case);
            let res = [INDEX_RES, REGION_RES, MATCH_RES][case % 3];
            let ring: Vec<CellIndex> = cell(p, res).grid_disk(2);
            let c = ring[rng.random_range(0..ring.len())];
            let computed = distance_to_cell_m(unit(p), c);
            let vertices = boundary(c);
            let steps = 400;
            let mut sampled = f64::INFINITY;
            for (i, &a) in vertices.iter().enumerate() {
                let b = vertices[(i + 1) % vertices.len()];
                for j in 0..=steps {
                    let q = on_arc(a, b, f64::from(j) / f64::from(steps));
                    sampled = sampled.min(distance_m(p, q));
                }
            }
            let step = res.edge_length_m() * 2.0 / f64::from(steps);
            assert!(
                computed <= sampled + 1e-6 && sampled <= computed + step,
                "case {case}: {p:?} to {c}: computed {computed} m, sampled {sampled} m"
            );
        }
    }

    /// `Rings` yields exactly the breadth-first rings, also where `grid_ring_fast` fails: around
    /// every INDEX_RES and MATCH_RES pentagon, and at random places.
    #[test]
    fn rings_are_breadth_first_distances() {
        let mut rng = StdRng::seed_from_u64(13);
        let random = (0..100).map(|_| {
            cell(
                Point {
                    lat: rng.random_range(-1.0f64..=1.0).asin().to_degrees(),
                    lon: rng.random_range(-180.0..=180.0),
                },
                INDEX_RES,
            )
        });
        let origins: Vec<CellIndex> = INDEX_RES
            .pentagons()
            .chain(MATCH_RES.pentagons())
            .flat_map(|p| p.grid_disk::<Vec<_>>(3))
            .chain(random)
            .collect();
        const K: u32 = 6;
        for origin in origins {
            let mut want = vec![Vec::new(); K as usize + 1];
            for (c, k) in origin.grid_disk_distances_safe(K) {
                want[k as usize].push(c);
            }
            let mut rings = Rings::new(origin);
            for (k, want) in want.iter_mut().enumerate() {
                let mut got = rings.next_ring();
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(&got, want, "{origin} ring {k}");
            }
        }
    }

    #[test]
    fn destination_round_trips() {
        let mut rng = StdRng::seed_from_u64(3);
        for case in 0..1_000 {
            let p = sample_centre(&mut rng, case);
            let d = rng.random_range(0.0..10_000.0);
            let q = destination(p, rng.random_range(0.0..360.0), d);
            q.validate().unwrap();
            assert!((distance_m(p, q) - d).abs() < 1e-3, "case {case}");
        }
    }
}
