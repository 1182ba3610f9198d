//! A program of another project run as a child process: found where its Debian package puts it,
//! configured from a template, started, waited for, stopped with SIGTERM.
//!
//! **Never outlives this process**: the child asks the kernel for SIGTERM when its parent
//! thread ends (`PR_SET_PDEATHSIG`), so a test killed with SIGKILL leaves no daemon behind.
//! [`Child::spawn`] must therefore run on a thread that lives as long as the child — the test's
//! or a runtime worker, not `spawn_blocking`'s pool, whose idle threads end.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a program may take to stop after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// `path` if it is there; else an error naming the Debian package that installs it.
pub fn program(path: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(path);
    if path.is_file() {
        Ok(path)
    } else {
        bail!(
            "{} is not installed: install the Debian package {package} (apt-get install {package})",
            path.display()
        )
    }
}

/// `template` with every `@NAME@` replaced by its value, except in comment lines (`#`, where
/// the template explains them); an error if a placeholder is left.
pub fn render(template: &str, values: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut text = String::with_capacity(template.len());
    for line in template.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            text.push_str(line);
            continue;
        }
        let mut line = line.to_owned();
        for (name, value) in values {
            line = line.replace(&format!("@{name}@"), value);
        }
        text.push_str(&line);
    }
    if let Some(left) = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| {
            let start = line.find('@')?;
            let end = line[start + 1..].find('@')?;
            let name = &line[start + 1..start + 1 + end];
            (!name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                .then(|| name.to_owned())
        })
    {
        bail!("the configuration template's @{left}@ was not filled in");
    }
    Ok(text)
}

/// A loopback port free now (the program binds it a moment later).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running program; stopped with SIGTERM by [`Child::stop`] or when dropped.
pub struct Child {
    name: &'static str,
    process: Option<std::process::Child>,
}

impl Child {
    /// Starts `command` (its standard output and error go to ours).
    pub fn spawn(name: &'static str, mut command: Command) -> anyhow::Result<Child> {
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let process = command
            .spawn()
            .with_context(|| format!("cannot start {name} ({command:?})"))?;
        tracing::info!(name, pid = process.id(), "started");
        Ok(Child {
            name,
            process: Some(process),
        })
    }

    pub fn id(&self) -> u32 {
        self.process.as_ref().map_or(0, |p| p.id())
    }

    /// An error if the program has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(process) = self.process.as_mut()
            && let Some(status) = process.try_wait()?
        {
            bail!("{} exited ({status}); its messages are above", self.name);
        }
        Ok(())
    }

    /// Waits until `ready` says so; fails at once if the program exits, or after `timeout`.
    pub async fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} did not {what} within {timeout:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the program accepts TCP connections at `address`.
    pub async fn wait_until_listening(
        &mut self,
        address: SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_until(&format!("listen on {address}"), timeout, || {
            std::net::TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok()
        })
        .await
    }

    /// [`Child::stop`], and an error unless it exited with success.
    pub async fn stop_cleanly(self) -> anyhow::Result<()> {
        let name = self.name;
        let status = self.stop().await?;
        anyhow::ensure!(status.success(), "{name} exited with {status}");
        Ok(())
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`STOP_TIMEOUT`]).
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        let mut process = self.process.take().expect("running");
        terminate(&process);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = process.try_wait()? {
                tracing::info!(name = self.name, %status, "stopped");
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = process.kill();
                let status = process.wait()?;
                bail!(
                    "{} did not stop within {STOP_TIMEOUT:?} of SIGTERM: killed ({status})",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn terminate(process: &std::process::Child) {
    // SAFETY: kill(2) on our own child's pid; it is not reaped yet, so the pid is still ours.
    unsafe {
        libc::kill(process.id() as libc::pid_t, libc::SIGTERM);
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            terminate(&process);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = process.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_is_filled_in_or_says_what_is_missing() {
        let template = "# @BOOTSTRAP@ stays\nbroker=\"@BOOTSTRAP@\" topic=\"@TOPIC@\"\nmail=a@b.c";
        assert_eq!(
            render(template, &[("BOOTSTRAP", "h:1"), ("TOPIC", "t")]).unwrap(),
            "# @BOOTSTRAP@ stays\nbroker=\"h:1\" topic=\"t\"\nmail=a@b.c"
        );
        let err = render(template, &[("BOOTSTRAP", "h:1")]).unwrap_err();
        assert!(err.to_string().contains("@TOPIC@"), "{err}");
    }

    #[test]
    fn a_missing_program_names_its_package() {
        let err = program("/nonexistent/rsyslogd", "rsyslog-kafka").unwrap_err();
        assert!(
            err.to_string().contains("apt-get install rsyslog-kafka"),
            "{err}"
        );
    }
}
