//! A server process the tests start (Apache Kafka, moto's S3 server) that must not outlive the
//! test process, however it ends: the server runs under a small shell wrapper that reads the
//! test process's end of a pipe, and kills the server when the pipe closes — at a normal exit,
//! a panic or a SIGKILL of the test process alike (a `static` is never dropped, so a destructor
//! alone would leak the shared servers).

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};

/// The wrapper's running and the test's end of its pipe. Dropping it stops the server.
pub struct Guarded {
    name: &'static str,
    stdin: Mutex<Option<ChildStdin>>,
    wrapper: Mutex<Child>,
}

impl Guarded {
    /// Runs `script` with `sh -c` and `args` (`$1`…); the script starts the server in the
    /// background, then waits for a line or end-of-file on stdin (descriptor 3 once it did
    /// `exec 3<&0`) and kills it.
    pub fn spawn(
        name: &'static str,
        script: &str,
        args: &[&std::ffi::OsStr],
        envs: &[(&str, String)],
    ) -> anyhow::Result<Guarded> {
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(name)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start sh for the {name} wrapper"))?;
        let stdin = wrapper.stdin.take();
        Ok(Guarded {
            name,
            stdin: Mutex::new(stdin),
            wrapper: Mutex::new(wrapper),
        })
    }

    /// Waits until the server accepts TCP connections at `address`; fails at once if it exited.
    pub fn wait_until_listening(
        &self,
        address: SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.wrapper.lock().unwrap().try_wait()? {
                bail!(
                    "{} exited during start-up ({status}); its log is above",
                    self.name
                );
            }
            if std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "{} did not listen on {address} within {timeout:?}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.lock().unwrap().take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let _ = self.wrapper.lock().unwrap().wait();
    }
}
