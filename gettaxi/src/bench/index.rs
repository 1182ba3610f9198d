//! `gettaxi bench index`: the nearest available taxi among a moving fleet, by the H3 index
//! ([`index::nearest`]) and by a plain scan of every taxi ([`index::brute_force`]), side by side
//! in one run on the same fleet and pickups.
//!
//! The fleet: `taxis` taxis spread over Manhattan, each reporting a new position every
//! `report_every` (4 s); ride requests at `requests_per_s` (500). The loop replays that mix in
//! simulated time — per request, the position updates that arrive meanwhile, then one lookup
//! timed — so the index is measured while it changes, as driver matching uses it. Both searches
//! must answer the same taxi every time (the run fails otherwise).

use std::time::{Duration, Instant};

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{percentile_us as percentile, random_point};
use crate::index::{self, Candidate, MemoryIndex};

#[derive(Debug, Clone, Args)]
pub struct IndexBench {
    #[arg(long, default_value_t = 10_000)]
    pub taxis: usize,
    /// Ride requests per second (simulated time).
    #[arg(long, default_value_t = 500.0)]
    pub requests_per_s: f64,
    /// How often each taxi reports (simulated time).
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    pub report_every: Duration,
    /// Lookups measured.
    #[arg(long, default_value_t = 20_000)]
    pub lookups: usize,
    /// The match radius, metres.
    #[arg(long, default_value_t = 2_000.0)]
    pub radius_m: f64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

pub fn index(bench: &IndexBench) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(bench.seed);
    let mut fleet = MemoryIndex::default();
    for i in 0..bench.taxis {
        fleet
            .upsert(Candidate {
                taxi_id: format!("taxi-{i:05}"),
                point: random_point(&mut rng),
                at_ms: 0,
            })
            .map_err(anyhow::Error::msg)?;
    }
    // Position reports per request, in simulated time.
    let reports_per_request =
        bench.taxis as f64 / bench.report_every.as_secs_f64() / bench.requests_per_s;
    let (mut h3, mut scan) = (Vec::new(), Vec::new());
    let (mut cells, mut carry, mut found) = (0u64, 0.0, 0u64);
    let started = Instant::now();
    for n in 0..bench.lookups {
        carry += reports_per_request;
        while carry >= 1.0 {
            carry -= 1.0;
            let taxi = rng.random_range(0..bench.taxis);
            fleet
                .upsert(Candidate {
                    taxi_id: format!("taxi-{taxi:05}"),
                    point: random_point(&mut rng),
                    at_ms: n as i64,
                })
                .map_err(anyhow::Error::msg)?;
        }
        let pickup = random_point(&mut rng);
        let t = Instant::now();
        let nearest = index::nearest(&mut fleet, pickup, bench.radius_m, |_| true)?;
        h3.push(t.elapsed());
        let t = Instant::now();
        let scanned = index::brute_force(fleet.candidates(), pickup, bench.radius_m, |_| true);
        scan.push(t.elapsed());
        anyhow::ensure!(
            nearest.as_ref().map(|n| &n.taxi_id) == scanned.as_ref().map(|n| &n.taxi_id),
            "the index answered {nearest:?}, the scan {scanned:?}"
        );
        if let Some(nearest) = nearest {
            cells += u64::from(nearest.cells_searched);
            found += 1;
        }
    }
    h3.sort();
    scan.sort();
    println!(
        "gettaxi bench index: {} taxis in Manhattan, each reporting every {:?}, {} requests/s: {} lookups ({} found a taxi within {} m), {:.1} s",
        bench.taxis,
        bench.report_every,
        bench.requests_per_s,
        bench.lookups,
        found,
        bench.radius_m,
        started.elapsed().as_secs_f64()
    );
    println!("| search | p50 µs | p99 µs | max µs |");
    println!("|---|---|---|---|");
    for (name, times) in [
        ("H3 rings (index::nearest)", &h3),
        ("scan of every taxi", &scan),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            percentile(times, 0.5),
            percentile(times, 0.99),
            percentile(times, 1.0)
        );
    }
    println!(
        "scan / H3: {:.0}× at p50, {:.0}× at p99; the index read {:.1} cells per lookup on average",
        percentile(&scan, 0.5) / percentile(&h3, 0.5),
        percentile(&scan, 0.99) / percentile(&h3, 0.99),
        cells as f64 / found.max(1) as f64
    );
    Ok(())
}
