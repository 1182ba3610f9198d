//! `mybank bench`: the whole pipeline at a fixed insert rate, measuring
//!
//! 1. `bank_transactions` record → `user_alerts` record (the detector: consume, join, produce,
//!    commit): both observed by one consumer, so its own fetch delay cancels out;
//! 2. database insert → e-mail accepted by a real SMTP server (aiosmtpd; the Maildir file's time),
//!    i.e. connector poll + detector + notification service + SMTP.
//!
//! Everything runs in this process on the configured broker (embedded by default) with a fresh
//! SQLite database (or `DATABASE_URL`). The e-mail goes to [`smtp_server`], which MyBank's
//! tests start too.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use shared::Kafka;

use crate::app::Resources;
use crate::core_banking;
use crate::database::Database;
use crate::events::Alert;
use crate::source_connector::ConnectorConfig;
use crate::topics::{BANK_TRANSACTIONS, USER_ALERTS};
use shared::service::ProcessOptions;

pub mod smtp_server;
use smtp_server::SmtpServer;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub rate: f64,
    pub duration: Duration,
    pub users: usize,
    /// Every user's threshold, in EUR.
    pub threshold_eur: u32,
    pub connector: ConnectorConfig,
    pub database_url: Option<String>,
}

/// p50 / p99 / max of a sample, in milliseconds.
pub fn summary(mut samples: Vec<f64>) -> String {
    if samples.is_empty() {
        return "no samples".to_owned();
    }
    samples.sort_by(f64::total_cmp);
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    format!(
        "n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        at(0.50),
        at(0.99),
        samples[samples.len() - 1]
    )
}

pub async fn run(kafka: &Kafka, options: BenchOptions) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("mybank-bench-").tempdir()?;
    let database_url = options
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("bank.db").display()));
    let db = Database::connect(&database_url).await?;
    db.create_schema().await?;
    let smtp = match SmtpServer::start().await {
        Ok(server) => Some(server),
        Err(err) => {
            println!(
                "no SMTP server ({err:#}): e-mails go to an outbox, insert → SMTP is not measured"
            );
            None
        }
    };
    let app = crate::app::start(
        kafka,
        &[],
        Resources {
            connector: options.connector.clone(),
            database_url: Some(database_url.clone()),
            notifications_database_url: format!(
                "sqlite:{}",
                dir.path().join("notifications.db").display()
            ),
            smtp_url: smtp.as_ref().map(SmtpServer::url),
            outbox: dir.path().join("outbox"),
        },
        ProcessOptions {
            listener: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
            advertised_url: None,
            state_dir: dir.path().join("state"),
            data_dir: dir.path().to_path_buf(),
        },
    )
    .await?;

    // Every user gets a threshold through the app threshold service.
    crate::app::set_simulated_thresholds(&app, options.users, options.threshold_eur).await?;
    // Let the detector read the settings before the first transaction (not required for
    // correctness — late settings re-evaluate recent transactions — but it keeps the
    // measurement about the steady state).
    tokio::time::sleep(Duration::from_secs(2)).await;

    // One consumer sees both topics from their current end.
    let watcher = Watcher::start(kafka)?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    println!(
        "inserting {} transactions/s for {:?} ({} users, threshold {} EUR, {}, connector mode {:?}, poll {:?})",
        options.rate,
        options.duration,
        options.users,
        options.threshold_eur,
        db.kind(),
        options.connector.mode,
        options.connector.poll_interval
    );
    let mut rng = StdRng::seed_from_u64(42);
    let mut inserted_at: HashMap<i64, SystemTime> = HashMap::new();
    let period = Duration::from_secs_f64(1.0 / options.rate);
    let start = Instant::now();
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while start.elapsed() < options.duration {
        ticker.tick().await;
        let row = db
            .insert(&core_banking::random_transaction(&mut rng, options.users))
            .await?;
        inserted_at.insert(row.id, SystemTime::now());
    }
    let elapsed = start.elapsed();
    println!(
        "inserted {} rows in {:.1} s ({:.0}/s)",
        inserted_at.len(),
        elapsed.as_secs_f64(),
        inserted_at.len() as f64 / elapsed.as_secs_f64()
    );
    // Drain.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let seen = watcher.stop();

    let detector: Vec<f64> = seen
        .alerts
        .iter()
        .filter_map(|(id, at)| {
            let txn = seen.transactions.get(id)?;
            Some(at.duration_since(*txn).as_secs_f64() * 1e3)
        })
        .collect();
    println!(
        "bank_transactions: {} records seen, user_alerts: {} alerts",
        seen.transactions.len(),
        seen.alerts.len()
    );
    println!(
        "bank_transactions record → user_alerts record: {}",
        summary(detector)
    );
    if let Some(smtp) = &smtp {
        let mut email = Vec::new();
        for message in smtp.messages()? {
            let Some(id) = message
                .header(crate::mailer::ALERT_HEADER)
                .and_then(|a| a.strip_prefix("txn-"))
                .and_then(|id| id.parse::<i64>().ok())
            else {
                continue;
            };
            if let Some(inserted) = inserted_at.get(&id) {
                let latency = message
                    .accepted_at
                    .duration_since(*inserted)
                    .unwrap_or_default();
                email.push(latency.as_secs_f64() * 1e3);
            }
        }
        println!(
            "database insert → e-mail accepted by SMTP: {}",
            summary(email)
        );
    }
    app.stop().await?;
    if let Some(smtp) = smtp {
        smtp.stop().await;
    }
    db.close().await;
    Ok(())
}

/// What the watcher saw: receive times per transaction id.
struct Seen {
    transactions: HashMap<i64, Instant>,
    alerts: HashMap<i64, Instant>,
}

struct Watcher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Seen>,
}

impl Watcher {
    fn start(kafka: &Kafka) -> anyhow::Result<Watcher> {
        let consumer: BaseConsumer = kafka
            .client_config()
            .set("group.id", "mybank-bench-watcher")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "1")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for spec in [&BANK_TRANSACTIONS, &USER_ALERTS] {
            for p in 0..spec.partitions {
                tpl.add_partition_offset(&kafka.topic(spec), p, Offset::End)?;
            }
        }
        consumer.assign(&tpl)?;
        let alerts_topic = kafka.topic(&USER_ALERTS);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut seen = Seen {
                transactions: HashMap::new(),
                alerts: HashMap::new(),
            };
            while !flag.load(Ordering::Relaxed) {
                let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let now = Instant::now();
                let Some(payload) = message.payload() else {
                    continue;
                };
                if message.topic() == alerts_topic {
                    if let Ok(alert) = serde_json::from_slice::<Alert>(payload) {
                        seen.alerts.entry(alert.transaction_id).or_insert(now);
                    }
                } else if let Ok(row) = serde_json::from_slice::<serde_json::Value>(payload)
                    && let Some(id) = row.get("id").and_then(serde_json::Value::as_i64)
                {
                    seen.transactions.entry(id).or_insert(now);
                }
            }
            seen
        });
        Ok(Watcher { stop, thread })
    }

    fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("watcher thread")
    }
}
