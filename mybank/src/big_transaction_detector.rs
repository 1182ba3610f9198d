//! **Real-time big-transaction detection** (streams): `bank_transactions` joined with the
//! thresholds built from `user_settings` → `user_alerts`.
//!
//! Both topics are keyed by user_id with the same partition count, so one task sees a user's
//! transactions and settings (co-partitioned join). The table side is not "the latest
//! threshold" but its **history** (store `history`): a transaction is compared with the
//! threshold in force at its `created_at` — so a change never fires for past transactions, and a
//! transaction arriving late is judged by the rules of its time.
//!
//! The streams runtime processes the two inputs in time order (record timestamps: a settings
//! event's `at`, a transaction's `created_at`; on a tie the settings event first), so a change
//! is in the history before any later transaction is judged. What the runtime cannot order is a
//! settings event that reaches Kafka after a later transaction was processed (a producer slower
//! than the task's idle wait, see `shared::streams::order`): the task keeps the last [`RECENT`]
//! of each user's transactions (store `recent`) and re-evaluates them when such an event
//! arrives; an alert already sent is not withdrawn. Alert ids are derived from the transaction id (`txn-<id>`), so an alert that
//! is emitted twice (a re-delivery, a re-evaluation) is one alert downstream.
//!
//! A record keyed by something other than its user_id (a connector configured with another key)
//! is re-keyed through the internal repartition topic `…-by-user-repartition` first.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::Kafka;
use shared::consumer::{HandlerError, PayloadKey};
use shared::streams::context::prefix_end;
use shared::streams::{self, ProcessorContext, StreamsConfig, StreamsHandle};
use tokio_util::sync::CancellationToken;

use crate::events::{Alert, SettingsEvent, Transaction};
use crate::money::Money;
use crate::topics::{BANK_TRANSACTIONS, USER_ALERTS, USER_SETTINGS};

pub const APPLICATION_ID: &str = "mybank-big-transactions";
pub const HISTORY: &str = "history";
pub const RECENT: &str = "recent";

/// How long a user's transactions are kept for re-evaluation by a late settings event.
pub const RECENT_WINDOW: Duration = Duration::from_secs(60);
/// How far back thresholds are kept for late transactions (`bank_transactions` retention).
pub const HISTORY_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// One settings change in a user's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    /// `None`: alerts off from `at`.
    pub threshold: Option<Money>,
    pub event_id: String,
}

/// The threshold in force at `t`: the last change at or before `t`.
pub fn threshold_at(history: &[HistoryEntry], t: DateTime<Utc>) -> Option<&HistoryEntry> {
    history
        .iter()
        .rev()
        .find(|entry| entry.at <= t)
        .filter(|entry| entry.threshold.is_some())
}

/// Whether `transaction` exceeds `threshold` (same currency; the size is the absolute amount).
pub fn exceeds(transaction: &Transaction, threshold: &Money) -> bool {
    transaction.currency == threshold.currency && transaction.amount.abs() > threshold.amount_minor
}

/// A transaction kept for re-evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recent {
    transaction: Transaction,
    alerted: bool,
}

fn recent_key(t: &Transaction) -> String {
    format!(
        "{}/{:020}/{:020}",
        t.user_id,
        t.created_at.timestamp_millis().max(0),
        t.id
    )
}

pub struct Detector {
    transactions: String,
    settings: String,
    alerts: String,
    repartition: String,
}

impl Detector {
    /// The alert for `transaction` if it exceeds the threshold in force at its time.
    fn judge(history: &[HistoryEntry], transaction: &Transaction) -> Option<Alert> {
        let entry = threshold_at(history, transaction.created_at)?;
        let threshold = entry.threshold.as_ref()?;
        exceeds(transaction, threshold).then(|| Alert {
            alert_id: transaction.alert_id(),
            user_id: transaction.user_id.clone(),
            transaction_id: transaction.id,
            account_id: transaction.account_id.clone(),
            merchant: transaction.merchant.clone(),
            amount: Money {
                amount_minor: transaction.amount,
                currency: transaction.currency.clone(),
            },
            threshold: threshold.clone(),
            threshold_set_at: entry.at,
            transaction_at: transaction.created_at,
            detected_at: Utc::now(),
        })
    }

    fn on_transaction(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: Option<&str>,
        value: Value,
    ) -> Result<(), HandlerError> {
        let transaction: Transaction = serde_json::from_value(value.clone())
            .map_err(|err| HandlerError::Permanent(format!("not a transaction row: {err}")))?;
        transaction.validate().map_err(HandlerError::Permanent)?;
        if ctx.topic() == self.transactions && key != Some(transaction.user_id.as_str()) {
            // Not keyed by user: its settings live in another task. Re-key, judge it there.
            ctx.emit(&self.repartition, &transaction.user_id, &value)?;
            return Ok(());
        }
        let user = transaction.user_id.as_bytes();
        let history: Vec<HistoryEntry> = ctx.get(HISTORY, user)?.unwrap_or_default();
        let alert = Self::judge(&history, &transaction);
        if let Some(alert) = &alert {
            ctx.emit(&self.alerts, &alert.user_id, alert)?;
        }
        let horizon = ctx.stream_time_ms() - RECENT_WINDOW.as_millis() as i64;
        if transaction.created_at.timestamp_millis() >= horizon {
            ctx.put(
                RECENT,
                recent_key(&transaction).as_bytes(),
                &Recent {
                    alerted: alert.is_some(),
                    transaction: transaction.clone(),
                },
            )?;
        }
        // Forget this user's transactions that left the window (usually none or one).
        let from = format!("{}/", transaction.user_id);
        let to = format!("{}/{:020}", transaction.user_id, horizon.max(0));
        for (expired, _) in ctx.range::<Value>(RECENT, from.as_bytes(), Some(to.as_bytes()))? {
            ctx.delete(RECENT, &expired)?;
        }
        Ok(())
    }

    fn on_settings(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        value: Value,
    ) -> Result<(), HandlerError> {
        let event: SettingsEvent = serde_json::from_value(value)
            .map_err(|err| HandlerError::Permanent(format!("not a settings event: {err}")))?;
        event.validate().map_err(HandlerError::Permanent)?;
        let user = event.user_id().to_owned();
        let mut history: Vec<HistoryEntry> = ctx.get(HISTORY, user.as_bytes())?.unwrap_or_default();
        if history.iter().any(|e| e.event_id == event.event_id()) {
            return Ok(());
        }
        let entry = HistoryEntry {
            at: event.at(),
            threshold: event.threshold().cloned(),
            event_id: event.event_id().to_owned(),
        };
        let at = history.partition_point(|e| e.at <= entry.at);
        history.insert(at, entry);
        // Keep what a late transaction could still need: the changes within the retention,
        // plus the one in force when it starts.
        let horizon = ctx.stream_time_ms() - HISTORY_RETENTION.as_millis() as i64;
        let old = history.partition_point(|e| e.at.timestamp_millis() < horizon);
        if old > 1 {
            history.drain(..old - 1);
        }
        ctx.put(HISTORY, user.as_bytes(), &history)?;

        // Transactions at or after this change that were judged before it arrived.
        let from = format!("{user}/{:020}", event.at().timestamp_millis().max(0));
        let end = prefix_end(format!("{user}/").as_bytes());
        for (key, mut recent) in ctx.range::<Recent>(RECENT, from.as_bytes(), end.as_deref())? {
            if recent.alerted {
                continue;
            }
            if let Some(alert) = Self::judge(&history, &recent.transaction) {
                ctx.emit(&self.alerts, &alert.user_id, &alert)?;
                recent.alerted = true;
                ctx.put(RECENT, &key, &recent)?;
            }
        }
        Ok(())
    }
}

impl streams::Processor for Detector {
    type Input = Value;

    /// Settings and re-keyed transactions must be under their `user_id` (else dead-lettered by
    /// the runtime); `bank_transactions` is keyed by the connector's configuration, so a
    /// transaction under another key is re-keyed through the repartition topic instead.
    fn key_of<'v>(&self, topic: &str, value: &'v Value) -> Option<PayloadKey<'v>> {
        if topic == self.transactions {
            return None;
        }
        value
            .get("user_id")
            .and_then(Value::as_str)
            .map(|user| PayloadKey::new("user_id", user))
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: Option<&str>,
        value: Value,
    ) -> Result<(), HandlerError> {
        if ctx.topic() == self.settings {
            self.on_settings(ctx, value)
        } else {
            self.on_transaction(ctx, key, value)
        }
    }
}

/// The streams configuration: inputs `user_settings` (first: it wins a timestamp tie, so a
/// change applies to a transaction of the same millisecond), `bank_transactions` and the
/// repartition topic; tuned for latency (an alert should not wait for a batch to fill).
pub fn config(kafka: &Kafka) -> StreamsConfig {
    let mut config = StreamsConfig::new(
        kafka,
        APPLICATION_ID,
        vec![kafka.topic(&USER_SETTINGS), kafka.topic(&BANK_TRANSACTIONS)],
        &[HISTORY, RECENT],
    );
    config.repartition("by-user");
    config.batch_linger = Duration::from_millis(1);
    config.batch_size = 500;
    // An alert should not wait for an idle fetch to expire.
    config.consumer_properties.extend(
        shared::kafka::LOW_LATENCY_CONSUMER
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    config
}

/// Starts the detector.
pub async fn start(
    kafka: &Kafka,
    config: StreamsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<StreamsHandle> {
    let repartition = config
        .repartitions
        .first()
        .cloned()
        .expect("config() declares the repartition topic");
    let detector = Detector {
        transactions: kafka.topic(&BANK_TRANSACTIONS),
        settings: kafka.topic(&USER_SETTINGS),
        alerts: kafka.topic(&USER_ALERTS),
        repartition,
    };
    streams::start(kafka, config, detector, shutdown).await
}

/// The detector's streams handle, as `Process::get::<DetectorHandle>()` finds it.
pub struct DetectorHandle(pub Arc<StreamsHandle>);

/// The big-transaction detector on the scaffold: a streams application without routes.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "big-transaction-detector"
    }
    fn about(&self) -> &'static str {
        "bank_transactions ⋈ threshold history → user_alerts (streams)."
    }
    fn streams(&self, kafka: &Kafka) -> Vec<StreamsConfig> {
        vec![config(kafka)]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        _: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let config = ctx.state(config(&ctx.kafka));
        let handle = Arc::new(start(&ctx.kafka, config, ctx.shutdown.clone()).await?);
        Ok(shared::service::Running::new()
            .streams(Arc::clone(&handle))
            .handle(Arc::new(DetectorHandle(handle))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }
    fn entry(t: &str, amount: Option<i64>) -> HistoryEntry {
        HistoryEntry {
            at: at(t),
            threshold: amount.map(|a| Money {
                amount_minor: a,
                currency: "EUR".into(),
            }),
            event_id: t.into(),
        }
    }

    #[test]
    fn the_threshold_in_force_is_the_last_change_at_or_before() {
        let history = vec![
            entry("2026-07-12T12:00:00Z", Some(100_000)),
            entry("2026-07-13T12:00:00Z", Some(50_000)),
            entry("2026-07-14T12:00:00Z", None),
        ];
        assert!(threshold_at(&history, at("2026-07-12T11:59:59Z")).is_none());
        let on = |t| {
            threshold_at(&history, at(t)).and_then(|e| e.threshold.as_ref().map(|m| m.amount_minor))
        };
        assert_eq!(on("2026-07-12T12:00:00Z"), Some(100_000));
        assert_eq!(on("2026-07-13T11:00:00Z"), Some(100_000));
        assert_eq!(on("2026-07-13T12:00:00Z"), Some(50_000));
        assert_eq!(on("2026-07-14T12:00:00Z"), None);
    }

    #[test]
    fn only_the_same_currency_strictly_over_the_threshold_alerts() {
        let threshold = Money {
            amount_minor: 100_000,
            currency: "EUR".into(),
        };
        let t = |amount, currency: &str| Transaction {
            id: 1,
            account_id: "a".into(),
            user_id: "u".into(),
            amount,
            currency: currency.into(),
            merchant: "m".into(),
            created_at: at("2026-07-12T12:00:00Z"),
        };
        assert!(exceeds(&t(100_001, "EUR"), &threshold));
        assert!(exceeds(&t(-250_000, "EUR"), &threshold));
        assert!(!exceeds(&t(100_000, "EUR"), &threshold));
        assert!(!exceeds(&t(900_000, "USD"), &threshold));
    }
}
