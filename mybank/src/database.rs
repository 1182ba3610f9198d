//! The bank's existing database: a `transactions` table, in SQLite (a file, nothing to install)
//! or PostgreSQL (`DATABASE_URL=postgres://…`), through sqlx for both.
//!
//! Only the core-banking simulator writes here, and only the source connector reads it: MyBank's
//! Kafka services never touch the database, which is the point of the case study.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::events::Transaction;

/// How SQLite stores `created_at`: fixed-width UTC text, so text order is time order.
pub const SQLITE_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// The PostgreSQL channel the `transactions` trigger notifies on each insert (the connector can
/// LISTEN to it instead of waiting for its next poll).
pub const NOTIFY_CHANNEL: &str = "transactions_inserted";

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS transactions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    amount      INTEGER NOT NULL,
    currency    TEXT    NOT NULL,
    merchant    TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS transactions_created_at_id ON transactions (created_at, id);
";

const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS transactions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  TEXT        NOT NULL,
    user_id     TEXT        NOT NULL,
    amount      BIGINT      NOT NULL,
    currency    TEXT        NOT NULL,
    merchant    TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS transactions_created_at_id ON transactions (created_at, id);
CREATE OR REPLACE FUNCTION transactions_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('transactions_inserted', '');
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER transactions_notify AFTER INSERT ON transactions
    FOR EACH STATEMENT EXECUTE FUNCTION transactions_notify();
";

/// A connection pool to either database.
#[derive(Clone, Debug)]
pub enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Database {
    /// `sqlite:bank.db` (created if missing; WAL, so the connector reads while the bank writes)
    /// or `postgres://user:password@host/db`.
    pub async fn connect(url: &str) -> anyhow::Result<Database> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
            Ok(Database::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("bad SQLite URL {url:?}"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL + NORMAL: a commit survives a crash of the process (what at-least-once
                // redelivery is about) without an fsync per commit; only an OS crash or power
                // loss can lose the last commits. FULL would cap the notification service at a
                // few hundred commits per second on an ordinary disk.
                .synchronous(SqliteSynchronous::Normal)
                // Two processes (bank and connector) share the file: wait for the lock.
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await
                .with_context(|| format!("cannot open SQLite database {url:?}"))?;
            Ok(Database::Sqlite(pool))
        } else {
            anyhow::bail!(
                "unsupported database URL {:?}: use sqlite:<file> or postgres://…",
                redact(url)
            )
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    /// Creates the bank's schema if it is not there (the "existing" system's own migration).
    pub async fn create_schema(&self) -> anyhow::Result<()> {
        match self {
            Database::Sqlite(pool) => {
                sqlx::raw_sql(SQLITE_SCHEMA).execute(pool).await?;
            }
            Database::Postgres(pool) => {
                // Concurrent `CREATE … IF NOT EXISTS` can still collide in PostgreSQL's
                // catalog: serialize schema creation across processes.
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7242)")
                    .execute(&mut *tx)
                    .await?;
                sqlx::raw_sql(POSTGRES_SCHEMA).execute(&mut *tx).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Inserts one transaction (the bank's own write path) and returns it with its id.
    /// `created_at` is kept to the millisecond in both databases.
    pub async fn insert(&self, new: &NewTransaction) -> anyhow::Result<Transaction> {
        let created_at = new.created_at.unwrap_or_else(Utc::now).trunc_subsecs(3);
        let id: i64 = match self {
            Database::Sqlite(pool) => {
                sqlx::query_scalar(
                    "INSERT INTO transactions (account_id, user_id, amount, currency, merchant, created_at)
                     VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                )
                .bind(&new.account_id)
                .bind(&new.user_id)
                .bind(new.amount)
                .bind(&new.currency)
                .bind(&new.merchant)
                .bind(created_at.format(SQLITE_TIME_FORMAT).to_string())
                .fetch_one(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_scalar(
                    "INSERT INTO transactions (account_id, user_id, amount, currency, merchant, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(&new.account_id)
                .bind(&new.user_id)
                .bind(new.amount)
                .bind(&new.currency)
                .bind(&new.merchant)
                .bind(created_at)
                .fetch_one(pool)
                .await?
            }
        };
        Ok(Transaction {
            id,
            account_id: new.account_id.clone(),
            user_id: new.user_id.clone(),
            amount: new.amount,
            currency: new.currency.clone(),
            merchant: new.merchant.clone(),
            created_at,
        })
    }

    /// Number of rows in `transactions`.
    pub async fn count(&self) -> anyhow::Result<i64> {
        let sql = "SELECT COUNT(*) FROM transactions";
        Ok(match self {
            Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        })
    }

    pub async fn close(&self) {
        match self {
            Database::Sqlite(pool) => pool.close().await,
            Database::Postgres(pool) => pool.close().await,
        }
    }
}

/// A transaction as the bank's systems create it (the database assigns the id).
#[derive(Debug, Clone)]
pub struct NewTransaction {
    pub account_id: String,
    pub user_id: String,
    pub amount: i64,
    pub currency: String,
    pub merchant: String,
    /// Default: now.
    pub created_at: Option<DateTime<Utc>>,
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_the_password_only() {
        assert_eq!(
            super::redact("postgres://bank:secret@db:5432/bank"),
            "postgres://bank:***@db:5432/bank"
        );
        assert_eq!(super::redact("sqlite:bank.db"), "sqlite:bank.db");
    }
}
