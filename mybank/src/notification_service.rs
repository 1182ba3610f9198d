//! **Notification service** (consumer): `user_alerts` → in-app notifications and e-mail.
//!
//! Each alert is recorded in the service's own database (`notifications`, primary key alert id;
//! SQLite by default, PostgreSQL when `NOTIFICATIONS_DATABASE_URL=postgres://…` so several
//! instances share it), then e-mailed, then marked as e-mailed. A re-delivered alert (a restart
//! before the offset commit, a rebalance, a re-emitted alert) finds its row: no second
//! notification, no second e-mail. Offsets are committed after all of that (at-least-once in,
//! exactly one notification and e-mail per alert id out).
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
use serde::{Deserialize, Serialize};
use shared::consumer::HandlerError;
use shared::http::{ApiError, Json};
use shared::{ConsumerLoop, ConsumerOptions, ConsumerStats, Kafka, Record};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::database::Database;
use crate::events::{Alert, validate_user};
use crate::mailer::Mailer;
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

/// Runs the same SQL on either pool (the SQL here is portable: `$n` placeholders, TEXT columns).
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Database::Sqlite($pool) => $body,
            Database::Postgres($pool) => $body,
        }
    };
}

/// An in-app notification.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub alert: Alert,
    pub title: String,
    pub received_at: DateTime<Utc>,
    pub email_sent_at: Option<DateTime<Utc>>,
}

/// The service's counters (`mybank_notification_*_total{group}` on `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct NotificationStats {
    pub notifications: Counter,
    pub emails: Counter,
    /// Alerts delivered again (re-delivery or re-emission) and recognized by their id.
    pub duplicates: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

impl NotificationStats {
    /// The counters of consumer group `group` (registered once per process).
    fn new(group: &str) -> NotificationStats {
        static FAMILIES: OnceLock<[Family<GroupLabels, Counter>; 3]> = OnceLock::new();
        let families = FAMILIES.get_or_init(|| {
            let families: [Family<GroupLabels, Counter>; 3] = Default::default();
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
        }
    }
}

pub struct NotificationService {
    db: Database,
    mailer: Mailer,
    live: broadcast::Sender<Notification>,
    /// Ends the live streams on shutdown (an open SSE connection would hold the server).
    shutdown: CancellationToken,
    pub stats: NotificationStats,
    pub consumer: Arc<ConsumerStats>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<anyhow::Result<()>>>>,
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
        let group = format!("{}{GROUP_ID}", kafka.prefix());
        let stats = NotificationStats::new(&group);
        let consumer = ConsumerLoop::new(
            kafka,
            ConsumerOptions::new(group, [kafka.topic(&USER_ALERTS)])
                .batch_size(100)
                // An alert should not wait for an idle fetch to expire.
                .properties(shared::kafka::LOW_LATENCY_CONSUMER),
        )?;
        tracing::info!(database = db.kind(), mail = %mailer.describe(), "notification service started");
        let service = Arc::new(NotificationService {
            db,
            mailer,
            live: broadcast::channel(1024).0,
            shutdown: shutdown.clone(),
            stats,
            consumer: consumer.stats(),
            task: std::sync::Mutex::new(None),
        });
        let handler_service = Arc::clone(&service);
        let task = tokio::spawn(async move {
            consumer
                .run(
                    move |record: Record<Alert>| {
                        let service = Arc::clone(&handler_service);
                        async move { service.handle(record.value).await }
                    },
                    shutdown,
                )
                .await
        });
        *service.task.lock().expect("task lock") = Some(task);
        Ok(service)
    }

    /// Waits for the consumer to commit and leave the group, then closes the database.
    pub async fn join(&self) -> anyhow::Result<()> {
        let task = self.task.lock().expect("task lock").take();
        if let Some(task) = task {
            task.await??;
        }
        self.db.close().await;
        Ok(())
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

    /// Record, e-mail, mark as e-mailed — each step skipped if already done for this alert id.
    async fn handle(&self, alert: Alert) -> Result<(), HandlerError> {
        validate_user(&alert.user_id).map_err(HandlerError::Permanent)?;
        if alert.alert_id.is_empty() {
            return Err(HandlerError::Permanent("alert without an alert_id".into()));
        }
        let now = Utc::now();
        let json = serde_json::to_string(&alert).map_err(anyhow::Error::from)?;
        let insert =
            "INSERT INTO notifications (alert_id, user_id, transaction_at, alert, received_at)
                      VALUES ($1, $2, $3, $4, $5) ON CONFLICT (alert_id) DO NOTHING";
        let transaction_at = alert
            .transaction_at
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let received_at = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        let inserted = on_db!(&self.db, |pool| sqlx::query(insert)
            .bind(&alert.alert_id)
            .bind(&alert.user_id)
            .bind(&transaction_at)
            .bind(&json)
            .bind(&received_at)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))
        .map_err(anyhow::Error::from)?
            == 1;
        if inserted {
            self.stats.notifications.inc();
            let _ = self.live.send(Notification {
                title: alert.headline(),
                alert: alert.clone(),
                received_at: now,
                email_sent_at: None,
            });
        } else {
            self.stats.duplicates.inc();
        }
        // A row this call just inserted has not been e-mailed: ask only about older rows.
        let sent: Option<String> = if inserted {
            None
        } else {
            let select = "SELECT email_sent_at FROM notifications WHERE alert_id = $1";
            on_db!(&self.db, |pool| sqlx::query_scalar(select)
                .bind(&alert.alert_id)
                .fetch_one(pool)
                .await)
            .map_err(anyhow::Error::from)?
        };
        if sent.is_none() {
            // A mail server that is down is worth retrying (the partition waits, nothing lost).
            self.mailer.send(&alert).await?;
            let update = "UPDATE notifications SET email_sent_at = $1 WHERE alert_id = $2";
            let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
            on_db!(&self.db, |pool| sqlx::query(update)
                .bind(&at)
                .bind(&alert.alert_id)
                .execute(pool)
                .await
                .map(|_| ()))
            .map_err(anyhow::Error::from)?;
            self.stats.emails.inc();
        }
        Ok(())
    }

    /// The user's notifications, newest transaction first.
    pub async fn list(&self, user: &str, limit: i64) -> anyhow::Result<Vec<Notification>> {
        let sql = "SELECT alert, received_at, email_sent_at FROM notifications
                   WHERE user_id = $1 ORDER BY transaction_at DESC, alert_id DESC LIMIT $2";
        let rows: Vec<(String, String, Option<String>)> =
            on_db!(&self.db, |pool| sqlx::query_as(sql)
                .bind(user)
                .bind(limit)
                .fetch_all(pool)
                .await)?;
        rows.into_iter()
            .map(|(alert, received_at, email_sent_at)| {
                let alert: Alert = serde_json::from_str(&alert)?;
                Ok(Notification {
                    title: alert.headline(),
                    alert,
                    received_at: received_at.parse()?,
                    email_sent_at: email_sent_at.map(|t| t.parse()).transpose()?,
                })
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    limit: Option<String>,
}

/// The user's notifications, newest first.
#[utoipa::path(
    get,
    path = "/v1/users/{user}/notifications",
    tag = "notification service",
    params(
        ("user" = String, Path),
        ("limit" = Option<u32>, Query, description = "at most this many (default 50, max 500)"),
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
    service
        .list(&user, limit)
        .await
        .map(Json)
        .map_err(ApiError::internal)
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
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&service).router())
            .on_stop(async move { joined.join().await })
            .handle(service))
    }
}
