//! A real S3-compatible server for the sink's tests: moto's server mode (PyPI `moto[server]`),
//! one per test binary, on a free loopback port. It speaks the S3 REST API over HTTP,
//! including conditional writes (`If-None-Match: *`), which the sink's create-if-absent puts
//! rely on.
//!
//! moto is installed on first use into `~/.cache/casestudies/moto-<version>` (a Python virtual
//! environment: `python3 -m venv` and `pip`, so Debian's `python3-venv`), or taken from
//! `MOTO_HOME`. Like the Apache Kafka broker, the server runs under a small shell wrapper that
//! stops it when the test process exits, however it exits.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};

use super::guarded::Guarded;

use crate::analytics::store::{S3Options, Store};

/// The moto version installed.
pub const MOTO_VERSION: &str = "5.2.5";

/// Where moto's virtual environment is: `MOTO_HOME`, else the cache directory.
pub fn moto_home() -> PathBuf {
    if let Some(home) = std::env::var_os("MOTO_HOME") {
        return home.into();
    }
    let user_home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(user_home).join(format!(".cache/casestudies/moto-{MOTO_VERSION}"))
}

/// One moto server.
pub struct S3Server {
    endpoint: String,
    /// The server under its wrapper: dropping it stops the server.
    _process: Guarded,
}

/// The credentials the tests use (moto accepts any).
pub const ACCESS_KEY_ID: &str = "casestudies";
pub const SECRET_ACCESS_KEY: &str = "casestudies-secret";

impl S3Server {
    /// The server every test of this process shares, started by the first caller.
    pub fn shared() -> anyhow::Result<&'static S3Server> {
        static SHARED: OnceLock<Result<S3Server, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| S3Server::start().map_err(|err| format!("{err:#}")))
            .as_ref()
            .map_err(|err| anyhow::anyhow!("{err}"))
    }

    /// Installs moto if needed, starts it, and returns once it answers. Blocking.
    pub fn start() -> anyhow::Result<S3Server> {
        let python = install()?;
        let port = super::free_port()?;
        let process = Guarded::spawn(
            "moto's S3 server",
            WRAPPER,
            &[python.as_os_str(), std::ffi::OsStr::new(&port.to_string())],
            &[],
        )?;
        process.wait_until_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(60))?;
        let server = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            _process: process,
        };
        tracing::info!(endpoint = %server.endpoint, "moto S3 server {MOTO_VERSION} started");
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Creates a bucket with a fresh random name and returns a store on it.
    pub async fn bucket(&self) -> anyhow::Result<Store> {
        let options = self.new_bucket().await?;
        Store::s3(&options)
    }

    /// Creates a bucket with a fresh random name and returns how to reach it.
    pub async fn new_bucket(&self) -> anyhow::Result<S3Options> {
        let bucket = format!("test-{:016x}", rand::random::<u64>());
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .with_context(|| format!("creating bucket {bucket} on {}", self.endpoint))?;
        if !response.status().is_success() {
            bail!(
                "creating bucket {bucket}: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        Ok(S3Options {
            bucket,
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(ACCESS_KEY_ID.into()),
            secret_access_key: Some(SECRET_ACCESS_KEY.into()),
        })
    }
}

/// moto's Python, installing moto first if it is not there. The install goes to a temporary
/// directory renamed into place, so concurrent test binaries never see half an install.
fn install() -> anyhow::Result<PathBuf> {
    let home = moto_home();
    let python = home.join("bin/python");
    let ready = home.join(".installed");
    if ready.is_file() {
        return Ok(python);
    }
    if std::env::var_os("MOTO_HOME").is_some() {
        bail!(
            "MOTO_HOME={} has no moto installed by the testkit (no .installed file)",
            home.display()
        );
    }
    let parent = home.parent().context("moto's directory has no parent")?;
    std::fs::create_dir_all(parent)?;
    let staging = parent.join(format!(
        ".moto-{MOTO_VERSION}-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    eprintln!(
        "installing moto[server]=={MOTO_VERSION} from PyPI into {} (once)",
        home.display()
    );
    let run = |command: &mut Command, what: &str| -> anyhow::Result<()> {
        let output = command
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {what}"))?;
        if !output.status.success() {
            let _ = std::fs::remove_dir_all(&staging);
            bail!(
                "{what} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&staging),
        "python3 -m venv (Debian: apt-get install python3-venv)",
    )?;
    run(
        Command::new(staging.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(format!("moto[server]=={MOTO_VERSION}")),
        "pip install moto[server]",
    )?;
    std::fs::write(staging.join(".installed"), MOTO_VERSION)?;
    match std::fs::rename(&staging, &home) {
        Ok(()) => {}
        // Another test binary finished first: use its install.
        Err(_) if ready.is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
        }
        Err(err) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(err).with_context(|| format!("moving moto into {}", home.display()));
        }
    }
    Ok(python)
}

/// Runs moto's server in the background and kills it when the test process's end of the pipe
/// closes (the process exited, normally or not).
const WRAPPER: &str = r#"
python=$1 port=$2
exec 3<&0
"$python" -m moto.server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
pid=$!
( read -r _ <&3; kill -9 "$pid" 2>/dev/null ) &
watcher=$!
wait "$pid" 2>/dev/null
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
"#;
