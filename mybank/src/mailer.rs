//! E-mail for alerts, with lettre: over SMTP when `SMTP_URL` is set (`smtp://host:port`, a
//! local relay, over one persistent connection; `smtps://user:password@host` and anything with
//! credentials or options through lettre's pooled transport), otherwise as `.eml` files in an
//! outbox directory.
//!
//! Every message carries `Message-ID: <alert id@mybank.example>`: the notification service
//! sends one message per alert id, and the id also lets a mail system drop a duplicate should a
//! crash fall exactly between the SMTP server's acceptance and the service recording it.
//!
//! A failure is [`MailError::Permanent`] (an SMTP 5xx reply, a message that cannot be composed:
//! sending it again cannot help) or [`MailError::Transient`] (a 4xx reply, no connection, a
//! timeout, a full disk: worth retrying). What goes into a message is bounded: the merchant,
//! which comes from the bank's data, is cut to [`SUBJECT_MERCHANT_CHARS`] in the subject and
//! [`BODY_MERCHANT_CHARS`] in the body, and lettre encodes the body (quoted-printable or base64
//! when it is not short ASCII lines), so no line exceeds SMTP's limit.

use std::path::PathBuf;

use anyhow::Context;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::events::Alert;

pub const FROM: &str = "MyBank Alerts <alerts@mybank.example>";
/// The header naming the alert (tests and mail filters read it).
pub const ALERT_HEADER: &str = "X-MyBank-Alert-Id";
/// At most this many characters of the merchant in the subject (and the in-app title).
pub const SUBJECT_MERCHANT_CHARS: usize = 40;
/// At most this many characters of the merchant in the body.
pub const BODY_MERCHANT_CHARS: usize = 200;
/// How long one delivery may take before it counts as a transient failure.
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a message was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Sending the same message again cannot succeed (SMTP 5xx, a message that cannot be
    /// composed): record it as failed and move on.
    #[error("{0}")]
    Permanent(String),
    /// Worth trying again later (SMTP 4xx, connection refused or lost, timeout, I/O).
    #[error("{0:#}")]
    Transient(anyhow::Error),
}

impl MailError {
    fn from_smtp(err: lettre::transport::smtp::Error) -> MailError {
        if err.is_permanent() {
            MailError::Permanent(format!("SMTP server rejected the message: {err}"))
        } else {
            MailError::Transient(
                anyhow::Error::new(err).context("SMTP server did not accept the message"),
            )
        }
    }
}

/// Where alert e-mails go.
pub enum Mailer {
    /// `smtps://…`, credentials or STARTTLS options: lettre's pooled transport.
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        url: String,
    },
    /// Plain `smtp://host:port` (a local relay): one persistent connection with `TCP_NODELAY`.
    ///
    /// Why not the transport: lettre writes a message's body and its final `\r\n.\r\n` as two
    /// small writes without `TCP_NODELAY`, so Nagle's algorithm holds the second until the
    /// server's delayed ACK (~40 ms on Linux): 20 messages per second at most, whatever the server.
    Relay {
        address: String,
        connection: tokio::sync::Mutex<Option<AsyncSmtpConnection>>,
        url: String,
    },
    Outbox(PathBuf),
}

impl Mailer {
    /// SMTP if `smtp_url` is given, else the outbox directory (created if missing).
    pub fn new(smtp_url: Option<&str>, outbox: PathBuf) -> anyhow::Result<Mailer> {
        match smtp_url {
            Some(url) if relay_address(url).is_some() => Ok(Mailer::Relay {
                address: relay_address(url).expect("checked").to_owned(),
                connection: tokio::sync::Mutex::new(None),
                url: url.to_owned(),
            }),
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
            Mailer::Smtp { url, .. } | Mailer::Relay { url, .. } => format!("SMTP {url}"),
            Mailer::Outbox(dir) => format!("outbox {}", dir.display()),
        }
    }

    /// Delivers the alert's e-mail: accepted by the SMTP server, or written to the outbox.
    pub async fn send(&self, alert: &Alert) -> Result<(), MailError> {
        let message = compose(alert).map_err(|err| MailError::Permanent(format!("{err:#}")))?;
        match tokio::time::timeout(SEND_TIMEOUT, self.deliver(alert, message)).await {
            Ok(result) => result,
            Err(_) => Err(MailError::Transient(anyhow::anyhow!(
                "no answer from {} within {SEND_TIMEOUT:?}",
                self.describe()
            ))),
        }
    }

    async fn deliver(&self, alert: &Alert, message: Message) -> Result<(), MailError> {
        match self {
            Mailer::Smtp { transport, .. } => {
                transport
                    .send(message)
                    .await
                    .map_err(MailError::from_smtp)?;
            }
            Mailer::Relay {
                address,
                connection,
                ..
            } => {
                let mut connection = connection.lock().await;
                let envelope = message.envelope().clone();
                let bytes = message.formatted();
                // A connection the server closed meanwhile (idle timeout) fails the send:
                // reconnect once and try again; a second failure is the caller's to retry. A
                // permanent rejection is final at once.
                for attempt in 0..2 {
                    if connection.is_none() {
                        *connection =
                            Some(connect_relay(address).await.map_err(MailError::Transient)?);
                    }
                    let open = connection.as_mut().expect("connected above");
                    match open.send(&envelope, &bytes).await {
                        Ok(_) => return Ok(()),
                        Err(err) => {
                            *connection = None;
                            if attempt == 1 || err.is_permanent() || err.is_transient() {
                                return Err(MailError::from_smtp(err));
                            }
                        }
                    }
                }
            }
            Mailer::Outbox(dir) => {
                // One file per alert id, written whole (temp + rename): idempotent by name.
                let path = dir.join(format!("{}.eml", alert.alert_id));
                let temp = dir.join(format!(".{}.eml.tmp", alert.alert_id));
                let written = async {
                    tokio::fs::write(&temp, message.formatted()).await?;
                    tokio::fs::rename(&temp, &path).await
                };
                written.await.map_err(|err| {
                    MailError::Transient(
                        anyhow::Error::new(err).context(format!("cannot write {}", path.display())),
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// `host:port` of a plain `smtp://host[:port]` URL without credentials or options.
fn relay_address(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("smtp://")?.trim_end_matches('/');
    let plain = !rest.is_empty() && !rest.contains(['@', '?', '/']);
    plain.then_some(rest)
}

async fn connect_relay(address: &str) -> anyhow::Result<AsyncSmtpConnection> {
    let address = if address.contains(':') {
        address.to_owned()
    } else {
        format!("{address}:25")
    };
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .with_context(|| format!("cannot connect to the SMTP server at {address}"))?;
    stream.set_nodelay(true)?;
    AsyncSmtpConnection::connect_with_transport(Box::new(stream), &ClientId::default())
        .await
        .with_context(|| format!("SMTP greeting from {address}"))
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
        merchant = crate::events::truncate(&alert.merchant, BODY_MERCHANT_CHARS),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_smtp_urls_take_the_relay_path() {
        assert_eq!(
            relay_address("smtp://127.0.0.1:2525"),
            Some("127.0.0.1:2525")
        );
        assert_eq!(relay_address("smtp://mail.local/"), Some("mail.local"));
        assert_eq!(relay_address("smtp://user:secret@mail.example:587"), None);
        assert_eq!(relay_address("smtp://mail.example?tls=required"), None);
        assert_eq!(relay_address("smtps://mail.example"), None);
        assert_eq!(relay_address("smtp://"), None);
    }

    #[test]
    fn a_huge_merchant_makes_a_message_with_short_lines() {
        let alert: Alert = serde_json::from_value(serde_json::json!({
            "alert_id": "txn-1", "user_id": "u002", "account_id": "acct-u002",
            "transaction_id": 1, "amount": {"amount_minor": 90000, "currency": "EUR"},
            "threshold": {"amount_minor": 50000, "currency": "EUR"},
            "merchant": "é".repeat(100_000), "threshold_set_at": "2025-01-01T00:00:00Z",
            "transaction_at": "2025-01-01T00:00:00Z",
            "detected_at": "2025-01-01T00:00:00Z"
        }))
        .unwrap();
        let text = String::from_utf8(compose(&alert).unwrap().formatted()).unwrap();
        let longest = text.split("\r\n").map(str::len).max().unwrap();
        assert!(
            longest <= 998,
            "a line of {longest} characters (SMTP allows 998)"
        );
        assert!(text.len() < 10_000, "{} bytes", text.len());
    }
}
