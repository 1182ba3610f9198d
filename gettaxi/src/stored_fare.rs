//! A finished ride's fare, recomputed from the analytics store alone (`gettaxi fare --ride
//! <id>`): the ride's `on_ride` positions from the `taxi_position` table in the order they were
//! on the topic (`kafka_partition`, `kafka_offset`), added up with [`fare::trace`], priced with
//! the multiplier the ride was charged from the `ride_fares` table (its quote's, or the one in
//! force at the start when the quote had expired) — and compared with the final fare the taxi
//! cost service published live.

use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use serde::Serialize;

use crate::analytics_sink::table_dir;
use crate::fare;
use crate::geo::Point;
use crate::topics::{RIDE_FARES, TAXI_POSITION};

/// What the store says about a ride.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredFare {
    pub ride_id: String,
    /// `on_ride` positions of the ride in the store.
    pub positions: usize,
    pub km: f64,
    pub minutes: f64,
    /// The quote's (1.0 when the store has no quote).
    pub multiplier: f64,
    /// Recomputed from the positions.
    pub amount_cents: i64,
    /// The last final fare the taxi cost service published, if stored.
    pub live_final_cents: Option<i64>,
}

fn field<'r>(row: &'r Row, name: &str) -> Option<&'r Field> {
    row.get_column_iter()
        .find(|(column, _)| column.as_str() == name)
        .map(|(_, value)| value)
}

fn string(row: &Row, name: &str) -> Option<String> {
    match field(row, name) {
        Some(Field::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

fn float(row: &Row, name: &str) -> Option<f64> {
    match field(row, name) {
        Some(Field::Double(v)) => Some(*v),
        _ => None,
    }
}

fn long(row: &Row, name: &str) -> Option<i64> {
    match field(row, name) {
        Some(Field::Long(v)) => Some(*v),
        Some(Field::Int(v)) => Some(i64::from(*v)),
        Some(Field::TimestampMillis(v)) => Some(*v),
        _ => None,
    }
}

/// Every row of a table whose `ride_id` is `ride`.
fn rows_of(dir: &Path, ride: &str) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    if !dir.exists() {
        return Ok(rows);
    }
    for path in shared::analytics::files_under(dir)? {
        if path.extension().and_then(|e| e.to_str()) != Some("parquet") {
            continue;
        }
        let reader = SerializedFileReader::new(std::fs::File::open(&path)?)?;
        for row in reader.get_row_iter(None)? {
            let row = row?;
            if string(&row, "ride_id").as_deref() == Some(ride) {
                rows.push(row);
            }
        }
    }
    rows.sort_by_key(|row| {
        (
            long(row, "kafka_partition").unwrap_or(0),
            long(row, "kafka_offset").unwrap_or(0),
        )
    });
    Ok(rows)
}

/// Recomputes `ride`'s fare from the analytics store under `root`; `None` when the store has no
/// position of it.
pub fn recompute(root: &Path, ride: &str) -> anyhow::Result<Option<StoredFare>> {
    let positions: Vec<(Point, i64)> = rows_of(&table_dir(root, &TAXI_POSITION), ride)?
        .iter()
        .filter(|row| string(row, "status").as_deref() == Some("on_ride"))
        .filter_map(|row| {
            Some((
                Point {
                    lat: float(row, "lat")?,
                    lon: float(row, "lon")?,
                },
                long(row, "at")?,
            ))
        })
        .collect();
    let count = positions.len();
    let Some(trace) = fare::trace(positions) else {
        return Ok(None);
    };
    let fares = rows_of(&table_dir(root, &RIDE_FARES), ride)?;
    // The multiplier applied: the quote's, or the one in force when the ride started if the
    // quote had expired — every running and final fare row carries it.
    let multiplier = fares
        .iter()
        .rev()
        .find(|row| matches!(string(row, "stage").as_deref(), Some("final" | "running")))
        .or_else(|| {
            fares
                .iter()
                .find(|row| string(row, "stage").as_deref() == Some("quote"))
        })
        .and_then(|row| float(row, "multiplier"))
        .unwrap_or(1.0);
    let live_final_cents = fares
        .iter()
        .rev()
        .find(|row| string(row, "stage").as_deref() == Some("final"))
        .and_then(|row| long(row, "amount_cents"));
    Ok(Some(StoredFare {
        ride_id: ride.to_owned(),
        positions: count,
        km: trace.km(),
        minutes: trace.minutes(),
        multiplier,
        amount_cents: trace.amount_cents(multiplier),
        live_final_cents,
    }))
}
