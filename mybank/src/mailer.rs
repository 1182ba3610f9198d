//! E-mail for alerts, with lettre: over SMTP when `SMTP_URL` is set (`smtp://host:port`,
//! `smtps://user:password@host`), otherwise as `.eml` files in an outbox directory.
//!
//! Every message carries `Message-ID: <alert id@mybank.example>`: the notification service
//! sends one message per alert id, and the id also lets a mail system drop a duplicate should a
//! crash fall exactly between the SMTP server's acceptance and the service recording it.

use std::path::PathBuf;

use anyhow::Context;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::events::Alert;

pub const FROM: &str = "MyBank Alerts <alerts@mybank.example>";
/// The header naming the alert (tests and mail filters read it).
pub const ALERT_HEADER: &str = "X-MyBank-Alert-Id";

/// Where alert e-mails go.
#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        url: String,
    },
    Outbox(PathBuf),
}

impl Mailer {
    /// SMTP if `smtp_url` is given, else the outbox directory (created if missing).
    pub fn new(smtp_url: Option<&str>, outbox: PathBuf) -> anyhow::Result<Mailer> {
        match smtp_url {
            Some(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .with_context(|| format!("bad SMTP_URL {:?}", crate::database::redact(url)))?
                    .build();
                Ok(Mailer::Smtp {
                    transport,
                    url: crate::database::redact(url),
                })
            }
            None => {
                std::fs::create_dir_all(&outbox)
                    .with_context(|| format!("cannot create outbox {}", outbox.display()))?;
                Ok(Mailer::Outbox(outbox))
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Mailer::Smtp { url, .. } => format!("SMTP {url}"),
            Mailer::Outbox(dir) => format!("outbox {}", dir.display()),
        }
    }

    /// Delivers the alert's e-mail: accepted by the SMTP server, or written to the outbox.
    pub async fn send(&self, alert: &Alert) -> anyhow::Result<()> {
        let message = compose(alert)?;
        match self {
            Mailer::Smtp { transport, .. } => {
                transport
                    .send(message)
                    .await
                    .context("SMTP server did not accept the message")?;
            }
            Mailer::Outbox(dir) => {
                // One file per alert id, written whole (temp + rename): idempotent by name.
                let path = dir.join(format!("{}.eml", alert.alert_id));
                let temp = dir.join(format!(".{}.eml.tmp", alert.alert_id));
                tokio::fs::write(&temp, message.formatted()).await?;
                tokio::fs::rename(&temp, &path).await?;
            }
        }
        Ok(())
    }
}

/// The customer's address (a real bank would look it up in its customer records).
pub fn address_of(user_id: &str) -> String {
    format!("{user_id}@customers.mybank.example")
}

/// The alert e-mail.
pub fn compose(alert: &Alert) -> anyhow::Result<Message> {
    let body = format!(
        "Hello {user},\n\n\
         a transaction of {amount} at {merchant} on account {account} exceeded your alert \
         threshold of {threshold}.\n\n\
         Transaction {id} at {at} (UTC).\n\n\
         If this was not you, call us at once.\n\n\
         -- MyBank (alert {alert_id})\n",
        user = alert.user_id,
        amount = alert.amount,
        merchant = alert.merchant,
        account = alert.account_id,
        threshold = alert.threshold,
        id = alert.transaction_id,
        at = alert.transaction_at.format("%Y-%m-%d %H:%M:%S%.3f"),
        alert_id = alert.alert_id,
    );
    Message::builder()
        .from(FROM.parse()?)
        .to(address_of(&alert.user_id).parse()?)
        .subject(alert.headline())
        .message_id(Some(format!("<{}@mybank.example>", alert.alert_id)))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(ALERT_HEADER),
            alert.alert_id.clone(),
        ))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .context("composing the alert e-mail")
}
