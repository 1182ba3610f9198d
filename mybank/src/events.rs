//! The records on MyBank's topics.
//!
//! * `bank_transactions`: [`Transaction`], a row of the bank's `transactions` table as the source
//!   connector copies it (column name → value, like Kafka Connect's JSON converter without
//!   schemas).
//! * `user_settings`: [`SettingsEvent`], what a user *did* in the app (enabled, changed or
//!   disabled a threshold, and when), not the user's current settings: the history decides which
//!   threshold applied to a transaction at its time.
//! * `user_alerts`: [`Alert`], one per transaction over the threshold in force at its time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::money::{Money, exponent};

/// A row of the `transactions` table (the bank's existing schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Transaction {
    pub id: i64,
    pub account_id: String,
    pub user_id: String,
    /// Minor units; the size of the transaction is its absolute value.
    pub amount: i64,
    pub currency: String,
    pub merchant: String,
    pub created_at: DateTime<Utc>,
}

impl Transaction {
    /// What the detector requires of a row (anything else is dead-lettered with the reason).
    pub fn validate(&self) -> Result<(), String> {
        validate_user(&self.user_id)?;
        if exponent(&self.currency).is_none() {
            return Err(format!("unknown currency {:?}", self.currency));
        }
        if self.amount == i64::MIN {
            return Err("amount out of range".to_owned());
        }
        Ok(())
    }

    /// The alert id for this transaction: the same however often the row is re-delivered or
    /// re-evaluated, so downstream can drop duplicates.
    pub fn alert_id(&self) -> String {
        format!("txn-{}", self.id)
    }
}

/// User ids as the apps and the bank use them.
pub fn validate_user(user: &str) -> Result<(), String> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "user id {user:?} must be 1-64 characters of letters, digits, '_', '-' or '.'"
        ))
    }
}

/// A user's alert-threshold change, as it happened (topic `user_settings`, key user_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type")]
pub enum SettingsEvent {
    /// "user 123 enabled a threshold of 1000.00 USD at 12:00 on July 12th".
    ThresholdEnabled {
        event_id: String,
        user_id: String,
        threshold: Money,
        at: DateTime<Utc>,
    },
    ThresholdChanged {
        event_id: String,
        user_id: String,
        threshold: Money,
        previous: Money,
        at: DateTime<Utc>,
    },
    ThresholdDisabled {
        event_id: String,
        user_id: String,
        at: DateTime<Utc>,
    },
}

impl SettingsEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            SettingsEvent::ThresholdEnabled { .. } => "ThresholdEnabled",
            SettingsEvent::ThresholdChanged { .. } => "ThresholdChanged",
            SettingsEvent::ThresholdDisabled { .. } => "ThresholdDisabled",
        }
    }
    pub fn event_id(&self) -> &str {
        match self {
            SettingsEvent::ThresholdEnabled { event_id, .. }
            | SettingsEvent::ThresholdChanged { event_id, .. }
            | SettingsEvent::ThresholdDisabled { event_id, .. } => event_id,
        }
    }
    pub fn user_id(&self) -> &str {
        match self {
            SettingsEvent::ThresholdEnabled { user_id, .. }
            | SettingsEvent::ThresholdChanged { user_id, .. }
            | SettingsEvent::ThresholdDisabled { user_id, .. } => user_id,
        }
    }
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            SettingsEvent::ThresholdEnabled { at, .. }
            | SettingsEvent::ThresholdChanged { at, .. }
            | SettingsEvent::ThresholdDisabled { at, .. } => *at,
        }
    }
    /// The threshold in force from [`SettingsEvent::at`] on (`None`: alerts off).
    pub fn threshold(&self) -> Option<&Money> {
        match self {
            SettingsEvent::ThresholdEnabled { threshold, .. }
            | SettingsEvent::ThresholdChanged { threshold, .. } => Some(threshold),
            SettingsEvent::ThresholdDisabled { .. } => None,
        }
    }

    /// What a consumer requires of an event written by anyone (not only our service).
    pub fn validate(&self) -> Result<(), String> {
        validate_user(self.user_id())?;
        if let Some(threshold) = self.threshold() {
            if exponent(&threshold.currency).is_none() {
                return Err(format!("unknown currency {:?}", threshold.currency));
            }
            if threshold.amount_minor <= 0 {
                return Err(format!(
                    "threshold must be greater than 0, got {}",
                    threshold.amount_minor
                ));
            }
        }
        Ok(())
    }
}

/// A transaction over its user's threshold (topic `user_alerts`, key user_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    /// `txn-<transaction id>`: one alert per transaction, whatever the re-deliveries.
    pub alert_id: String,
    pub user_id: String,
    pub transaction_id: i64,
    pub account_id: String,
    pub merchant: String,
    pub amount: Money,
    pub threshold: Money,
    /// When the threshold that fired was set (the settings event's time).
    pub threshold_set_at: DateTime<Utc>,
    pub transaction_at: DateTime<Utc>,
    pub detected_at: DateTime<Utc>,
}

impl Alert {
    /// One line for humans (notification title, e-mail subject), the merchant cut to
    /// [`crate::mailer::SUBJECT_MERCHANT_CHARS`].
    pub fn headline(&self) -> String {
        format!(
            "Large transaction: {} at {}",
            self.amount.to_string().trim(),
            truncate(&self.merchant, crate::mailer::SUBJECT_MERCHANT_CHARS)
        )
    }
}

/// `text` cut to at most `max` characters, ending in "..." when cut (ASCII, so a cut subject
/// stays a plain header).
pub fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => text.into(),
        Some(_) => {
            let keep = max.saturating_sub(3);
            let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
            format!("{}...", &text[..end]).into()
        }
    }
}
