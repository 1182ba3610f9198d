//! `CASESTUDIES_TEST_KAFKA=tansu`: a real broker process (tansu, a Kafka-protocol broker written
//! in Rust) with in-memory storage, on a free loopback port, killed when the test ends.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// The tansu binary: `TANSU_BIN`, else `tansu` on `PATH`, else `~/.cargo/bin/tansu`.
pub fn tansu_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("TANSU_BIN") {
        return bin.into();
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"))
        .find(|candidate| candidate.is_file());
    on_path.unwrap_or_else(|| {
        let home = std::env::var_os("HOME").unwrap_or_default();
        PathBuf::from(home).join(".cargo/bin/tansu")
    })
}

pub struct TansuProcess {
    child: Child,
    bootstrap: String,
}

impl TansuProcess {
    pub async fn start() -> anyhow::Result<TansuProcess> {
        let port = super::free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let binary = tansu_binary();
        let child = Command::new(&binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {}: install it with `cargo install tansu --version 0.6.0 --locked \
                     --features dynostore,libsql` or set TANSU_BIN",
                    binary.display()
                )
            })?;
        Ok(TansuProcess {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
        })
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for TansuProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
