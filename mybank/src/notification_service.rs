//! **Notification service** (consumer): `user_alerts` → in-app notifications and e-mail.
//!
//! Each alert is recorded in the service's own database (`notifications`, primary key alert id;
//! SQLite by default, PostgreSQL when `NOTIFICATIONS_DATABASE_URL=postgres://…` so several
//! instances share it) and is then an in-app notification; its offset is committed after that.
//! A re-delivered alert (a restart before the offset commit, a rebalance, a re-emitted alert)
//! finds its row: no second notification, no second e-mail.
//!
//! E-mail never holds up the partition: the table is also the e-mail outbox. A mailer task
//! sends each row not yet e-mailed (claimed with a lease, so instances sharing PostgreSQL do not
//! send one twice) and marks it sent. A permanent failure (SMTP 5xx, a message that cannot be
//! composed) marks the notification's e-mail failed with the reason, counts it and dead-letters
//! the alert to `user_alerts.dlq`; a transient one (4xx, no connection, timeout) is retried with
//! growing delays, [`MAX_EMAIL_ATTEMPTS`] times at most, then treated as permanent. While the
//! last attempt failed transiently, `/readyz` answers 503.
//!
//! Users read notifications with `GET /v1/users/{user}/notifications`, or follow them live with
//! server-sent events on `…/notifications/stream` (alerts this instance records).

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::Stream;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rdkafka::Timestamp;
use rdkafka::message::OwnedMessage;
use serde::{Deserialize, Serialize};
use shared::consumer::HandlerError;
use shared::dlq::DeadLetterKind;
use shared::http::{ApiError, Json};
use shared::{ConsumerLoop, ConsumerOptions, ConsumerStats, EventProducer, Kafka, Record};
use tokio::sync::{Notify, broadcast};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::database::Database;
use crate::events::{Alert, validate_user};
use crate::mailer::{MailError, Mailer};
use crate::topics::USER_ALERTS;

pub const GROUP_ID: &str = "mybank-notifications";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notifications (
    alert_id       TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    transaction_at TEXT NOT NULL,
    alert          TEXT NOT NULL,
    received_at    TEXT NOT NULL,
    email_sent_at  TEXT
);
CREATE INDEX IF NOT EXISTS notifications_user ON notifications (user_id, transaction_at);
";

/// The e-mail outbox columns (added to a table that lacks them).
const EMAIL_COLUMNS: [&str; 6] = [
    "email_attempts INTEGER NOT NULL DEFAULT 0",
    "email_next_at TEXT",
    "email_failed_at TEXT",
    "email_error TEXT",
    "source_partition INTEGER",
    "source_offset BIGINT",
];

/// Attempts at an e-mail that keeps failing transiently before it counts as failed.
pub const MAX_EMAIL_ATTEMPTS: i32 = 8;
/// How long a claimed e-mail is reserved for the instance sending it.
const CLAIM_LEASE: Duration = Duration::from_secs(2 * crate::mailer::SEND_TIMEOUT.as_secs());
/// How often the mailer looks for e-mails due (besides being woken by each new notification).
const MAIL_POLL: Duration = Duration::from_secs(1);

/// Delay before attempt `attempts + 1`: 1 s, 2 s, 4 s … at most 60 s.
fn retry_delay(attempts: i32) -> Duration {
    Duration::from_secs(1u64 << (attempts.clamp(1, 7) - 1)).min(Duration::from_secs(60))
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Runs the same SQL on either pool (the SQL here is portable: `$n` placeholders, TEXT columns).
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Database::Sqlite($pool) => $body,
            Database::Postgres($pool) => $body,
        }
    };
}

/// Where a notification's e-mail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EmailState {
    /// Not sent yet (or being retried).
    Pending,
    Sent,
    /// Given up: `email_error` says why; the alert is on `user_alerts.dlq`.
    Failed,
}

/// An in-app notification.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub alert: Alert,
    pub title: String,
    pub received_at: DateTime<Utc>,
    pub email: EmailState,
    pub email_sent_at: Option<DateTime<Utc>>,
    pub email_failed_at: Option<DateTime<Utc>>,
    pub email_error: Option<String>,
}

/// The service's counters (`mybank_notification_*_total{group}` on `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct NotificationStats {
    pub notifications: Counter,
    pub emails: Counter,
    /// Alerts delivered again (re-delivery or re-emission) and recognized by their id.
    pub duplicates: Counter,
    /// E-mails given up on (permanent failure, or transient ones [`MAX_EMAIL_ATTEMPTS`] times).
    pub email_failures: Counter,
    /// Transient e-mail failures, each retried later.
    pub email_retries: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

impl NotificationStats {
    /// The counters of consumer group `group` (registered once per process).
    fn new(group: &str) -> NotificationStats {
        static FAMILIES: OnceLock<[Family<GroupLabels, Counter>; 5]> = OnceLock::new();
        let families = FAMILIES.get_or_init(|| {
            let families: [Family<GroupLabels, Counter>; 5] = Default::default();
            for (family, (name, help)) in families.iter().zip([
                (
                    "mybank_notifications",
                    "In-app notifications recorded (one per alert id)",
                ),
                (
                    "mybank_notification_emails",
                    "Alert e-mails accepted by SMTP or written to the outbox",
                ),
                (
                    "mybank_notification_duplicates",
                    "Alerts received again and recognized by their id",
                ),
                (
                    "mybank_notification_email_failures",
                    "Alert e-mails given up on (recorded as failed, alert dead-lettered)",
                ),
                (
                    "mybank_notification_email_retries",
                    "Transient alert e-mail failures, retried later",
                ),
            ]) {
                shared::metrics::register(name, help, family.clone());
            }
            families
        });
        let labels = GroupLabels {
            group: group.to_owned(),
        };
        NotificationStats {
            notifications: families[0].get_or_create(&labels).clone(),
            emails: families[1].get_or_create(&labels).clone(),
            duplicates: families[2].get_or_create(&labels).clone(),
            email_failures: families[3].get_or_create(&labels).clone(),
            email_retries: families[4].get_or_create(&labels).clone(),
        }
    }
}

pub struct NotificationService {
    db: Database,
    mailer: Mailer,
    /// Dead letters of alerts whose e-mail failed.
    producer: EventProducer,
    alerts_topic: String,
    /// The consumer group: it names the notification service on its dead letters.
    group: String,
    /// Wakes the mailer task when a notification is recorded.
    wake: Notify,
    /// The last e-mail attempt's transient error, until an e-mail goes out (`/readyz`).
    mail_problem: std::sync::Mutex<Option<String>>,
    live: broadcast::Sender<Notification>,
    /// Ends the live streams on shutdown (an open SSE connection would hold the server).
    shutdown: CancellationToken,
    pub stats: NotificationStats,
    pub consumer: Arc<ConsumerStats>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<anyhow::Result<()>>>>,
}

impl NotificationService {
    /// Opens the notifications database, then consumes `user_alerts` until `shutdown`.
    pub async fn start(
        kafka: &Kafka,
        database_url: &str,
        mailer: Mailer,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<NotificationService>> {
        let db = Database::connect(database_url).await?;
        on_db!(&db, |pool| sqlx::raw_sql(SCHEMA)
            .execute(pool)
            .await
            .map(|_| ()))?;
        for column in EMAIL_COLUMNS {
            let name = column.split(' ').next().expect("column name");
            let probe = format!("SELECT {name} FROM notifications LIMIT 1");
            if on_db!(&db, |pool| sqlx::query(&probe)
                .fetch_optional(pool)
                .await
                .map(|_| ()))
            .is_err()
            {
                let add = format!("ALTER TABLE notifications ADD COLUMN {column}");
                on_db!(&db, |pool| sqlx::query(&add)
                    .execute(pool)
                    .await
                    .map(|_| ()))?;
            }
        }
        let pending = "CREATE INDEX IF NOT EXISTS notifications_email_due ON notifications \
                       (received_at) WHERE email_sent_at IS NULL AND email_failed_at IS NULL";
        on_db!(&db, |pool| sqlx::query(pending)
            .execute(pool)
            .await
            .map(|_| ()))?;
        let group = format!("{}{GROUP_ID}", kafka.prefix());
        let stats = NotificationStats::new(&group);
        let consumer = ConsumerLoop::new(
            kafka,
            ConsumerOptions::new(group.clone(), [kafka.topic(&USER_ALERTS)])
                .batch_size(100)
                // An alert should not wait for an idle fetch to expire.
                .properties(shared::kafka::LOW_LATENCY_CONSUMER),
        )?;
        tracing::info!(database = db.kind(), mail = %mailer.describe(), "notification service started");
        let service = Arc::new(NotificationService {
            db,
            mailer,
            producer: EventProducer::new(kafka)?,
            alerts_topic: kafka.topic(&USER_ALERTS),
            group,
            wake: Notify::new(),
            mail_problem: std::sync::Mutex::new(None),
            live: broadcast::channel(1024).0,
            shutdown: shutdown.clone(),
            stats,
            consumer: consumer.stats(),
            tasks: std::sync::Mutex::new(Vec::new()),
        });
        let handler_service = Arc::clone(&service);
        let task = tokio::spawn(async move {
            consumer
                .run(
                    move |record: Record<Alert>| {
                        let service = Arc::clone(&handler_service);
                        async move { service.handle(record).await }
                    },
                    shutdown,
                )
                .await
        });
        let mailer_task = tokio::spawn(Arc::clone(&service).mail_loop());
        service
            .tasks
            .lock()
            .expect("tasks lock")
            .extend([task, mailer_task]);
        Ok(service)
    }

    /// Waits for the consumer to commit and leave the group, then closes the database.
    pub async fn join(&self) -> anyhow::Result<()> {
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
        for task in tasks {
            task.await??;
        }
        if let Err(err) = self.producer.flush(Duration::from_secs(10)) {
            tracing::warn!(%err, "notification service: flush on shutdown");
        }
        self.db.close().await;
        Ok(())
    }

    /// `Err(reason)` while the last e-mail attempt failed transiently (for `/readyz`).
    pub fn mail_health(&self) -> Result<(), String> {
        match &*self.mail_problem.lock().expect("mail problem lock") {
            Some(problem) => Err(format!("e-mail is failing, retrying: {problem}")),
            None => Ok(()),
        }
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/users/{user}/notifications", get(list_notifications))
            .route(
                "/v1/users/{user}/notifications/stream",
                get(stream_notifications),
            )
            .with_state(self)
    }

    /// Records the notification (skipped if this alert id is already recorded); the mailer
    /// task e-mails it.
    async fn handle(&self, record: Record<Alert>) -> Result<(), HandlerError> {
        let alert = record.value;
        validate_user(&alert.user_id).map_err(HandlerError::Permanent)?;
        if alert.alert_id.is_empty() {
            return Err(HandlerError::Permanent("alert without an alert_id".into()));
        }
        let now = Utc::now();
        let json = serde_json::to_string(&alert).map_err(anyhow::Error::from)?;
        let insert = "INSERT INTO notifications (alert_id, user_id, transaction_at, alert,
                          received_at, source_partition, source_offset)
                      VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (alert_id) DO NOTHING";
        let inserted = on_db!(&self.db, |pool| sqlx::query(insert)
            .bind(&alert.alert_id)
            .bind(&alert.user_id)
            .bind(stamp(alert.transaction_at))
            .bind(&json)
            .bind(stamp(now))
            .bind(record.partition)
            .bind(record.offset)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))
        .map_err(anyhow::Error::from)?
            == 1;
        if inserted {
            self.stats.notifications.inc();
            self.wake.notify_one();
            let _ = self.live.send(Notification {
                title: alert.headline(),
                alert,
                received_at: now,
                email: EmailState::Pending,
                email_sent_at: None,
                email_failed_at: None,
                email_error: None,
            });
        } else {
            self.stats.duplicates.inc();
        }
        Ok(())
    }

    /// The mailer task: sends the e-mails due, then waits for a new notification or
    /// [`MAIL_POLL`], until shutdown.
    async fn mail_loop(self: Arc<Self>) -> anyhow::Result<()> {
        while !self.shutdown.is_cancelled() {
            match self.mail_due().await {
                Ok(claimed) if claimed > 0 => continue,
                Ok(_) => {}
                Err(err) => tracing::warn!(err = format!("{err:#}"), "notification mailer"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(MAIL_POLL) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
        Ok(())
    }

    /// Claims and sends the e-mails due now, oldest notification first; how many it claimed.
    async fn mail_due(&self) -> anyhow::Result<usize> {
        let now = Utc::now();
        let select = "SELECT alert_id, alert, email_attempts, source_partition, source_offset
                      FROM notifications
                      WHERE email_sent_at IS NULL AND email_failed_at IS NULL
                        AND (email_next_at IS NULL OR email_next_at <= $1)
                      ORDER BY received_at LIMIT 100";
        type Due = (String, String, i32, Option<i32>, Option<i64>);
        let rows: Vec<Due> = on_db!(&self.db, |pool| sqlx::query_as(select)
            .bind(stamp(now))
            .fetch_all(pool)
            .await)?;
        let claim = "UPDATE notifications SET email_next_at = $1
                     WHERE alert_id = $2 AND email_sent_at IS NULL AND email_failed_at IS NULL
                       AND (email_next_at IS NULL OR email_next_at <= $3)";
        let lease = stamp(now + CLAIM_LEASE);
        let mut claimed = 0;
        for (alert_id, json, attempts, partition, offset) in rows {
            if self.shutdown.is_cancelled() {
                break;
            }
            let mine = on_db!(&self.db, |pool| sqlx::query(claim)
                .bind(&lease)
                .bind(&alert_id)
                .bind(stamp(now))
                .execute(pool)
                .await
                .map(|done| done.rows_affected()))?
                == 1;
            if !mine {
                continue; // another instance is sending it
            }
            claimed += 1;
            let source = (partition.unwrap_or(-1), offset.unwrap_or(-1));
            let alert = match serde_json::from_str::<Alert>(&json) {
                Ok(alert) => alert,
                Err(err) => {
                    let reason = format!("stored alert is not readable: {err}");
                    self.email_failed(&alert_id, &json, source, attempts, &reason)
                        .await?;
                    continue;
                }
            };
            match self.mailer.send(&alert).await {
                Ok(()) => {
                    let sent = "UPDATE notifications SET email_sent_at = $1, email_next_at = NULL
                                WHERE alert_id = $2";
                    on_db!(&self.db, |pool| sqlx::query(sent)
                        .bind(stamp(Utc::now()))
                        .bind(&alert_id)
                        .execute(pool)
                        .await
                        .map(|_| ()))?;
                    self.stats.emails.inc();
                    *self.mail_problem.lock().expect("mail problem lock") = None;
                }
                Err(MailError::Permanent(reason)) => {
                    self.email_failed(&alert_id, &json, source, attempts + 1, &reason)
                        .await?;
                }
                Err(MailError::Transient(err)) => {
                    let attempts = attempts + 1;
                    let reason = format!("{err:#}");
                    *self.mail_problem.lock().expect("mail problem lock") = Some(reason.clone());
                    if attempts >= MAX_EMAIL_ATTEMPTS {
                        let reason = format!("gave up after {attempts} attempts: {reason}");
                        self.email_failed(&alert_id, &json, source, attempts, &reason)
                            .await?;
                        continue;
                    }
                    let delay = retry_delay(attempts);
                    tracing::warn!(%alert_id, attempts, ?delay, reason, "alert e-mail: retrying later");
                    let retry = "UPDATE notifications SET email_attempts = $1, email_next_at = $2
                                 WHERE alert_id = $3";
                    on_db!(&self.db, |pool| sqlx::query(retry)
                        .bind(attempts)
                        .bind(stamp(Utc::now() + delay))
                        .bind(&alert_id)
                        .execute(pool)
                        .await
                        .map(|_| ()))?;
                    self.stats.email_retries.inc();
                }
            }
        }
        Ok(claimed)
    }

    /// Gives up on an alert's e-mail: the alert to `user_alerts.dlq` with the reason, then the
    /// notification marked failed (a crash in between dead-letters it again, never loses it).
    async fn email_failed(
        &self,
        alert_id: &str,
        json: &str,
        (partition, offset): (i32, i64),
        attempts: i32,
        reason: &str,
    ) -> anyhow::Result<()> {
        let reason: String = crate::events::truncate(reason, 1000).into_owned();
        tracing::warn!(
            alert_id,
            reason,
            "alert e-mail failed: dead-lettering the alert"
        );
        let user = serde_json::from_str::<Alert>(json)
            .map(|alert| alert.user_id)
            .ok();
        let message = OwnedMessage::new(
            Some(json.as_bytes().to_vec()),
            user.map(String::into_bytes),
            self.alerts_topic.clone(),
            Timestamp::now(),
            partition,
            offset,
            None,
        );
        let letter =
            shared::dlq::Letter::new(&message, &self.group, DeadLetterKind::Rejected, &reason);
        shared::dlq::send(&self.producer, &letter)
            .await
            .map_err(|err| anyhow::anyhow!("dead-lettering alert {alert_id}: {err}"))?;
        letter.acknowledged();
        let failed = "UPDATE notifications SET email_failed_at = $1, email_error = $2,
                          email_attempts = $3, email_next_at = NULL
                      WHERE alert_id = $4";
        on_db!(&self.db, |pool| sqlx::query(failed)
            .bind(stamp(Utc::now()))
            .bind(&reason)
            .bind(attempts)
            .bind(alert_id)
            .execute(pool)
            .await
            .map(|_| ()))?;
        self.stats.email_failures.inc();
        Ok(())
    }

    /// The user's notifications, newest transaction first; with `before` (an alert id), the
    /// page after that notification (keyset paging: stable while new alerts arrive).
    pub async fn list(
        &self,
        user: &str,
        limit: i64,
        before: Option<&str>,
    ) -> anyhow::Result<Vec<Notification>> {
        // Without a cursor, a key greater than every (transaction_at, alert_id): RFC 3339 times
        // and alert ids are ASCII, which sorts below '~'.
        let (cursor_at, cursor_id) = match before {
            None => ("~".to_owned(), "~".to_owned()),
            Some(alert_id) => {
                let sql = "SELECT transaction_at FROM notifications
                           WHERE user_id = $1 AND alert_id = $2";
                let at: Option<String> = on_db!(&self.db, |pool| sqlx::query_scalar(sql)
                    .bind(user)
                    .bind(alert_id)
                    .fetch_optional(pool)
                    .await)?;
                let at = at.ok_or_else(|| UnknownCursor(alert_id.to_owned()))?;
                (at, alert_id.to_owned())
            }
        };
        let sql = "SELECT alert, received_at, email_sent_at, email_failed_at, email_error
                   FROM notifications
                   WHERE user_id = $1 AND (transaction_at < $2 OR (transaction_at = $2 AND alert_id < $3))
                   ORDER BY transaction_at DESC, alert_id DESC LIMIT $4";
        type Row = (
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(user)
            .bind(&cursor_at)
            .bind(&cursor_id)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        rows.into_iter()
            .map(
                |(alert, received_at, email_sent_at, email_failed_at, email_error)| {
                    let alert: Alert = serde_json::from_str(&alert)?;
                    let email = match (&email_sent_at, &email_failed_at) {
                        (Some(_), _) => EmailState::Sent,
                        (None, Some(_)) => EmailState::Failed,
                        (None, None) => EmailState::Pending,
                    };
                    Ok(Notification {
                        title: alert.headline(),
                        alert,
                        received_at: received_at.parse()?,
                        email,
                        email_sent_at: email_sent_at.map(|t| t.parse()).transpose()?,
                        email_failed_at: email_failed_at.map(|t| t.parse()).transpose()?,
                        email_error,
                    })
                },
            )
            .collect()
    }
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    limit: Option<String>,
    before: Option<String>,
}

/// `before` names no notification of the user.
#[derive(Debug, thiserror::Error)]
#[error("before={0:?} is not one of the user's notifications (use an alert_id from a page)")]
pub struct UnknownCursor(String);

/// The user's notifications, newest first.
#[utoipa::path(
    get,
    path = "/v1/users/{user}/notifications",
    tag = "notification service",
    params(
        ("user" = String, Path),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "at most this many (default 50)"),
        ("before" = Option<String>, Query, description = "the next page: notifications older than this alert_id (the last of the previous page)"),
    ),
    responses((status = 200, body = [Notification]), (status = 400, description = "Bad user id or limit"))
)]
pub async fn list_notifications(
    State(service): State<Arc<NotificationService>>,
    Path(user): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<Notification>>, ApiError> {
    validate_user(&user).map_err(ApiError::bad_request)?;
    let limit = match params.limit.as_deref() {
        None => 50,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=500).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit must be a number from 1 to 500, got {text:?}"
                )));
            }
        },
    };
    if let Some(before) = &params.before {
        validate_alert_id(before).map_err(ApiError::bad_request)?;
    }
    service
        .list(&user, limit, params.before.as_deref())
        .await
        .map(Json)
        .map_err(|err| match err.downcast_ref::<UnknownCursor>() {
            Some(unknown) => ApiError::bad_request(unknown.to_string()),
            None => ApiError::internal(err),
        })
}

/// A paging cursor is an alert id: `txn-` and a row id, nothing a query could trip on.
fn validate_alert_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
    {
        return Err(format!("before={id:?} is not an alert id"));
    }
    Ok(())
}

/// New notifications for the user as server-sent events (`event: alert`, JSON data).
#[utoipa::path(
    get,
    path = "/v1/users/{user}/notifications/stream",
    tag = "notification service",
    params(("user" = String, Path)),
    responses((status = 200, description = "text/event-stream of Notification", content_type = "text/event-stream"))
)]
pub async fn stream_notifications(
    State(service): State<Arc<NotificationService>>,
    Path(user): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    validate_user(&user).map_err(ApiError::bad_request)?;
    let stream = BroadcastStream::new(service.live.subscribe()).filter_map(move |item| {
        // A slow client that lagged behind skips what it missed (it can GET the list).
        let notification = item.ok().filter(|n| n.alert.user_id == user)?;
        let event = Event::default()
            .event("alert")
            .id(notification.alert.alert_id.clone())
            .json_data(&notification)
            .ok()?;
        Some(Ok(event))
    });
    let stream = futures::StreamExt::take_until(stream, service.shutdown.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The notification service on the scaffold: its routes; commits and stops its consumer loop
/// when the process stops.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "notification-service"
    }
    fn about(&self) -> &'static str {
        "user_alerts → in-app notifications (GET, SSE) and e-mail."
    }
    fn groups(&self, kafka: &Kafka) -> Vec<shared::service::GroupSpec> {
        vec![shared::service::GroupSpec {
            group: format!("{}{GROUP_ID}", kafka.prefix()),
            topics: vec![kafka.topic(&USER_ALERTS)],
        }]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let mailer = Mailer::new(resources.smtp_url.as_deref(), resources.outbox.clone())?;
        let service = NotificationService::start(
            &ctx.kafka,
            &resources.notifications_database_url,
            mailer,
            ctx.shutdown.clone(),
        )
        .await?;
        let joined = Arc::clone(&service);
        let health = Arc::clone(&service);
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&service).router())
            .on_stop(async move { joined.join().await })
            .ready_check("notification-service e-mail", move || health.mail_health())
            .handle(service))
    }
}
