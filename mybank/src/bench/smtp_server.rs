//! A real SMTP server for the bench and MyBank's tests: Debian's `python3-aiosmtpd`, started as a
//! child process on a free loopback port, storing every accepted message in a Maildir that
//! [`SmtpServer::messages`] reads back. (Not a fake: lettre speaks SMTP to it over TCP.)
//! [`SmtpServer::start_rejecting`] adds a content policy, as mail servers have: a message
//! containing one of the given texts is refused with `554 5.7.1`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// When the server wrote it (the Maildir file's modification time).
    pub accepted_at: SystemTime,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// aiosmtpd's Maildir handler with a content policy (texts from `MYBANK_SMTP_REJECT`, one a
/// line).
const POLICY: &str = r#"
import os
from aiosmtpd.handlers import Mailbox

class PolicyMailbox(Mailbox):
    def __init__(self, maildir):
        super().__init__(maildir)
        texts = os.environ.get("MYBANK_SMTP_REJECT", "").split("\n")
        self.reject = [t.encode() for t in texts if t]

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or b""
        if any(text in content for text in self.reject):
            return "554 5.7.1 Message rejected by content policy"
        return await super().handle_DATA(server, session, envelope)
"#;

pub struct SmtpServer {
    child: tokio::process::Child,
    port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts aiosmtpd (Debian's `/usr/bin/python3`, else `python3` on the PATH).
    pub async fn start() -> anyhow::Result<SmtpServer> {
        SmtpServer::start_rejecting(&[]).await
    }

    /// Starts aiosmtpd with a content policy: a message whose DATA contains any of `texts`
    /// is answered `554 5.7.1 Message rejected by content policy` and not stored.
    pub async fn start_rejecting(texts: &[&str]) -> anyhow::Result<SmtpServer> {
        let dir = tempfile::Builder::new().prefix("mybank-smtp-").tempdir()?;
        std::fs::write(dir.path().join("mybank_smtp_policy.py"), POLICY)?;
        let maildir = dir.path().join("maildir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let python = if std::path::Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let mut child = tokio::process::Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "mybank_smtp_policy.PolicyMailbox"])
            .arg(&maildir)
            .env("PYTHONPATH", dir.path())
            .env("MYBANK_SMTP_REJECT", texts.join("\n"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {python}"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if let Some(status) = child.try_wait()? {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = pipe.read_to_string(&mut stderr).await;
                }
                bail!(
                    "the SMTP server exited ({status}): {}; install it with `apt-get install python3-aiosmtpd`",
                    stderr.trim()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the SMTP server did not listen on port {port} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(SmtpServer {
            child,
            port,
            maildir,
            _dir: dir,
        })
    }

    /// `smtp://127.0.0.1:<port>` (plain SMTP on loopback).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message accepted so far.
    pub fn messages(&self) -> anyhow::Result<Vec<Received>> {
        let new = self.maildir.join("new");
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&new) else {
            return Ok(out);
        };
        for entry in entries {
            let entry = entry?;
            let accepted_at = entry.metadata()?.modified()?;
            let text = std::fs::read_to_string(entry.path())?;
            let text = text.replace("\r\n", "\n");
            let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
            let mut headers: Vec<(String, String)> = Vec::new();
            for line in head.lines() {
                if line.starts_with([' ', '\t']) {
                    if let Some((_, value)) = headers.last_mut() {
                        value.push(' ');
                        value.push_str(line.trim());
                    }
                } else if let Some((name, value)) = line.split_once(':') {
                    headers.push((name.trim().to_owned(), value.trim().to_owned()));
                }
            }
            out.push(Received {
                headers,
                body: body.to_owned(),
                accepted_at,
            });
        }
        Ok(out)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
