//! MyBank end to end, on the broker the testkit picks (`CASESTUDIES_TEST_KAFKA`: embedded by
//! default, tansu, testcontainers), a real database (SQLite file; PostgreSQL when
//! `MYBANK_TEST_POSTGRES_URL` names a server, as in CI) and, where e-mail is asserted, a real
//! SMTP server (aiosmtpd). Tests write rows into the bank's database and call the HTTP API, and
//! read results back from topics, the API, the outbox or the SMTP server's mailbox.

mod connector;
mod email;
mod end_to_end;
mod invalid_input;
mod threshold_history;
mod time_order;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mybank::app::Resources;
use mybank::database::{Database, NewTransaction};
use mybank::events::Transaction;
use mybank::source_connector::ConnectorConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::service::{Process as App, ProcessOptions};
use shared::testkit::TestKafka;

/// The shipped connector properties, polling every 20 ms.
pub fn connector_config() -> ConnectorConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/transactions-source.properties");
    let mut config = ConnectorConfig::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    config.poll_interval = Duration::from_millis(20);
    config
}

/// A broker, a bank database and a directory for one test.
pub struct Bank {
    pub kafka: TestKafka,
    pub dir: tempfile::TempDir,
    pub db_url: String,
    pub db: Database,
}

impl Bank {
    /// A fresh SQLite bank database.
    pub async fn sqlite() -> Bank {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("bank.db").display());
        Bank::with_database(dir, url).await
    }

    /// A fresh database on the PostgreSQL server of `MYBANK_TEST_POSTGRES_URL`, or `None` (the
    /// test says it was skipped) when the variable is unset. CI sets it.
    pub async fn postgres() -> Option<Bank> {
        let Ok(admin_url) = std::env::var("MYBANK_TEST_POSTGRES_URL") else {
            eprintln!("MYBANK_TEST_POSTGRES_URL is not set: PostgreSQL test skipped (CI sets it)");
            return None;
        };
        let name = format!("mybank_test_{:08x}", rand::random::<u32>());
        let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Some(Bank::with_database(tempfile::tempdir().unwrap(), url).await)
    }

    async fn with_database(dir: tempfile::TempDir, db_url: String) -> Bank {
        let kafka = TestKafka::start().await.unwrap();
        let db = Database::connect(&db_url).await.unwrap();
        db.create_schema().await.unwrap();
        Bank {
            kafka,
            dir,
            db_url,
            db,
        }
    }

    /// Starts the services named (every one when `services` is empty) on a free port; e-mail to
    /// `smtp_url`, or the outbox in the test dir. Returns once the threshold service (if started)
    /// owns its partitions: until then it answers 503, as it would to a user during a rebalance.
    pub async fn spawn(&self, services: &[&str], smtp_url: Option<String>) -> App {
        let app = mybank::app::start(
            self.kafka.kafka(),
            services,
            Resources {
                connector: connector_config(),
                database_url: Some(self.db_url.clone()),
                notifications_database_url: format!(
                    "sqlite:{}",
                    self.dir.path().join("notifications.db").display()
                ),
                smtp_url,
                outbox: self.outbox(),
            },
            ProcessOptions {
                listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
                advertised_url: None,
                state_dir: self.dir.path().join("state"),
                data_dir: self.dir.path().to_path_buf(),
            },
        )
        .await
        .unwrap();
        if services.is_empty() || services.contains(&"app-threshold-service") {
            let url = format!("{}/v1/users/probe/alert-threshold", app.url());
            shared::testkit::http::until_served(&url, Duration::from_secs(30)).await;
        }
        app
    }

    pub fn outbox(&self) -> std::path::PathBuf {
        self.dir.path().join("outbox")
    }

    /// Inserts a EUR transaction (the bank's own write path); `at` defaults to now.
    pub async fn insert(&self, user: &str, euros: f64, at: Option<DateTime<Utc>>) -> Transaction {
        self.insert_at_merchant(user, euros, at, "Test Merchant")
            .await
    }

    /// [`Bank::insert`] with the merchant's name.
    pub async fn insert_at_merchant(
        &self,
        user: &str,
        euros: f64,
        at: Option<DateTime<Utc>>,
        merchant: &str,
    ) -> Transaction {
        self.db
            .insert(&NewTransaction {
                account_id: format!("acct-{user}"),
                user_id: user.to_owned(),
                amount: (euros * 100.0).round() as i64,
                currency: "EUR".to_owned(),
                merchant: merchant.to_owned(),
                created_at: at,
            })
            .await
            .unwrap()
    }

    pub fn topic(&self, spec: &shared::TopicSpec) -> String {
        self.kafka.kafka().topic(spec)
    }
}

pub use shared::testkit::http::{client, send};

/// Sets a EUR threshold and waits until the service's view shows it; returns the event.
pub async fn set_threshold(app: &App, user: &str, amount: &str) -> Value {
    let url = format!("{}/v1/users/{user}/alert-threshold", app.url());
    let body = eventually(Duration::from_secs(30), "PUT accepted", || async {
        let (status, body) = send(
            client()
                .put(&url)
                .json(&json!({"amount": amount, "currency": "EUR"})),
        )
        .await;
        // 503: the user's partition is still being assigned; a client retries.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return None;
        }
        assert_eq!(status, StatusCode::ACCEPTED, "PUT {amount} → {body}");
        Some(body)
    })
    .await;
    let expected = body["event"]["threshold"]["amount_minor"].clone();
    eventually(Duration::from_secs(20), "the threshold view", || async {
        let (status, current) = send(client().get(&url)).await;
        (status == StatusCode::OK && current["threshold"]["amount_minor"] == expected).then_some(())
    })
    .await;
    body
}

/// Removes the threshold and waits until the service's view has no threshold.
pub async fn remove_threshold(app: &App, user: &str) -> Value {
    let url = format!("{}/v1/users/{user}/alert-threshold", app.url());
    let body = eventually(Duration::from_secs(30), "DELETE accepted", || async {
        let (status, body) = send(client().delete(&url)).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return None;
        }
        assert_eq!(status, StatusCode::ACCEPTED, "DELETE → {body}");
        Some(body)
    })
    .await;
    eventually(Duration::from_secs(20), "the threshold removed", || async {
        let (status, _) = send(client().get(&url)).await;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    body
}

/// The transaction ids of a user's notifications.
/// Waits until the big-transaction detector has processed `records` input records.
pub async fn detector_processed(app: &App, records: u64) {
    let detector = app
        .get::<mybank::big_transaction_detector::DetectorHandle>()
        .expect("the detector runs");
    let detector = &detector.0;
    eventually(
        Duration::from_secs(30),
        "the detector's processed records",
        || {
            let processed = detector.stats.processed.get();
            async move { (processed >= records).then_some(()) }
        },
    )
    .await;
}

pub async fn notified(app: &App, user: &str) -> Vec<i64> {
    let (status, body) = send(client().get(format!(
        "{}/v1/users/{user}/notifications?limit=500",
        app.url()
    )))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut ids: Vec<i64> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["alert"]["transaction_id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

pub use shared::testkit::eventually;

/// Every alert on `user_alerts`: (transaction id, alert id).
pub async fn alerts_on_topic(bank: &Bank) -> Vec<(i64, String)> {
    let topic = bank.topic(&mybank::topics::USER_ALERTS);
    bank.kafka
        .read_all(&topic, Duration::from_secs(2))
        .await
        .unwrap()
        .iter()
        .map(|m| {
            use rdkafka::Message;
            let alert: mybank::events::Alert =
                serde_json::from_slice(m.payload().unwrap()).unwrap();
            (alert.transaction_id, alert.alert_id)
        })
        .collect()
}
