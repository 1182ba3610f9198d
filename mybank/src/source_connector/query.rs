//! The SQL per database (SQLite, PostgreSQL) and mode, and a row as a JSON object.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::{Column, Row, TypeInfo, ValueRef};

use super::{Mode, SourceConnector, SourceOffset};
use crate::database::{Database, SQLITE_TIME_FORMAT};

/// One row read from the table.
pub(super) struct SourceRecord {
    pub(super) offset: SourceOffset,
    pub(super) key: String,
    pub(super) value: Map<String, Value>,
    pub(super) timestamp_ms: Option<i64>,
}

impl SourceConnector {
    /// The rows after `position`, oldest first, at most `batch.max.rows`.
    pub(super) async fn poll(&self, position: &SourceOffset) -> anyhow::Result<Vec<SourceRecord>> {
        let c = &self.config;
        let (table, inc) = (&c.table, &c.incrementing_column);
        let limit = c.batch_max_rows;
        match (&self.db, c.mode) {
            (Database::Sqlite(pool), Mode::Incrementing) => {
                let sql = format!(
                    r#"SELECT * FROM "{table}" WHERE "{inc}" > ? ORDER BY "{inc}" LIMIT ?"#
                );
                let rows = sqlx::query(&sql)
                    .bind(position.incrementing)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|r| self.record(r, sqlite_value)).collect()
            }
            (Database::Sqlite(pool), Mode::TimestampIncrementing) => {
                let ts = c.timestamp_column.as_deref().expect("validated");
                let until = (Utc::now() - c.timestamp_delay)
                    .format(SQLITE_TIME_FORMAT)
                    .to_string();
                let since = position.timestamp.clone().unwrap_or_default();
                let sql = format!(
                    r#"SELECT * FROM "{table}" WHERE "{ts}" < ? AND (("{ts}" = ? AND "{inc}" > ?) OR "{ts}" > ?) ORDER BY "{ts}", "{inc}" LIMIT ?"#
                );
                let rows = sqlx::query(&sql)
                    .bind(until)
                    .bind(&since)
                    .bind(position.incrementing)
                    .bind(&since)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|r| self.record(r, sqlite_value)).collect()
            }
            (Database::Postgres(pool), Mode::Incrementing) => {
                let sql = format!(
                    r#"SELECT * FROM "{table}" WHERE "{inc}" > $1 ORDER BY "{inc}" LIMIT $2"#
                );
                let rows = sqlx::query(&sql)
                    .bind(position.incrementing)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter()
                    .map(|r| self.record(r, postgres_value))
                    .collect()
            }
            (Database::Postgres(pool), Mode::TimestampIncrementing) => {
                let ts = c.timestamp_column.as_deref().expect("validated");
                let until = Utc::now() - c.timestamp_delay;
                let since = position
                    .position(Mode::TimestampIncrementing)
                    .0
                    .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
                let sql = format!(
                    r#"SELECT * FROM "{table}" WHERE "{ts}" < $1 AND (("{ts}" = $2 AND "{inc}" > $3) OR "{ts}" > $2) ORDER BY "{ts}", "{inc}" LIMIT $4"#
                );
                let rows = sqlx::query(&sql)
                    .bind(until)
                    .bind(since)
                    .bind(position.incrementing)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter()
                    .map(|r| self.record(r, postgres_value))
                    .collect()
            }
        }
    }

    /// A row as a JSON object, its key, source offset and record timestamp.
    fn record<R: Row>(
        &self,
        row: &R,
        value_of: fn(&R, usize) -> anyhow::Result<Value>,
    ) -> anyhow::Result<SourceRecord> {
        let mut value = Map::new();
        for (index, column) in row.columns().iter().enumerate() {
            value.insert(column.name().to_owned(), value_of(row, index)?);
        }
        let c = &self.config;
        let incrementing = value
            .get(&c.incrementing_column)
            .and_then(Value::as_i64)
            .with_context(|| format!("column {} is not an integer", c.incrementing_column))?;
        let timestamp = c
            .timestamp_column
            .as_ref()
            .and_then(|column| value.get(column))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let key = match value.get(&c.key_column) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => bail!("no column {} for the key", c.key_column),
        };
        let timestamp_ms = timestamp
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        Ok(SourceRecord {
            offset: SourceOffset {
                incrementing,
                timestamp: match c.mode {
                    Mode::Incrementing => None,
                    Mode::TimestampIncrementing => timestamp,
                },
            },
            key,
            value,
            timestamp_ms,
        })
    }
}

/// SQLite values by their storage class.
fn sqlite_value(row: &sqlx::sqlite::SqliteRow, index: usize) -> anyhow::Result<Value> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = raw.type_info().name().to_ascii_uppercase();
    Ok(match kind.as_str() {
        "INTEGER" | "INT" | "BIGINT" | "BOOLEAN" => Value::from(row.try_get::<i64, _>(index)?),
        "REAL" | "FLOAT" | "DOUBLE" => Value::from(row.try_get::<f64, _>(index)?),
        "BLOB" => bail!("BLOB columns are not supported"),
        _ => Value::from(row.try_get::<String, _>(index)?),
    })
}

/// PostgreSQL values by column type; timestamps as RFC 3339 (UTC).
fn postgres_value(row: &sqlx::postgres::PgRow, index: usize) -> anyhow::Result<Value> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = raw.type_info().name().to_owned();
    Ok(match kind.as_str() {
        "INT8" => Value::from(row.try_get::<i64, _>(index)?),
        "INT4" => Value::from(row.try_get::<i32, _>(index)?),
        "INT2" => Value::from(row.try_get::<i16, _>(index)?),
        "BOOL" => Value::from(row.try_get::<bool, _>(index)?),
        "FLOAT8" => Value::from(row.try_get::<f64, _>(index)?),
        "FLOAT4" => Value::from(row.try_get::<f32, _>(index)?),
        "TIMESTAMPTZ" => Value::from(
            row.try_get::<DateTime<Utc>, _>(index)?
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        ),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => Value::from(row.try_get::<String, _>(index)?),
        other => bail!("column type {other} is not supported"),
    })
}
