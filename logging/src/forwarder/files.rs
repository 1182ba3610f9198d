//! Tailing one file path, rotation-safe, on a thread of its own.
//!
//! Every poll (`--poll`, 200 ms) the tailer looks at the path and at the file it has open:
//!
//! * **new lines** — read to the end of the file; each complete line (up to `\n`, a trailing
//!   `\r` dropped, empty lines skipped) is shipped under the file's key. A last line without
//!   `\n` waits for it (the writer is mid-line).
//! * **rename and recreate** (logrotate's default, `create`) — the path now names another
//!   file (device and inode differ) or none: the open file is the rotated one. It is read to its
//!   end first, then kept open and read for `--rotate-wait` (1 s) after it last grew — a writer
//!   that has not reopened its log yet still appends to it — then closed (an unfinished last
//!   line is shipped then). The new file at the path is read from its start.
//! * **truncation** (`copytruncate`) — the open file is shorter than what was read: reading
//!   starts again at 0. (Lines written between logrotate's copy and its truncation are in the
//!   copy only — the known gap of `copytruncate`, for every tailer. A file truncated and
//!   regrown past the old size within one poll looks like growth.)
//! * **a line over `--max-line-bytes`** (900 kB, under Kafka's default 1 MB record) — its start
//!   is shipped, the rest skipped up to its `\n`, and counted.
//!
//! **Positions.** Each shipped line carries the position after it; the file's acker stores it
//! once the broker acknowledged the line ([`super::positions`]). At start the tailer resumes
//! every file of its path from the positions file: the file at the path if it is the same one
//! (an offset past its end means it was truncated: from 0), and a file rotated away while the
//! forwarder was stopped — found by its inode in the path's directory — is read to its end
//! first. A file seen for the first time is read from its beginning.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::positions::{Checkpoint, FileId, Positions};
use super::shipper::{Ack, Failure, Shipper};

/// What one tailer reads and how.
#[derive(Debug, Clone)]
pub struct TailConfig {
    pub path: PathBuf,
    /// `application/host`.
    pub key: String,
    pub poll: Duration,
    pub rotate_wait: Duration,
    pub max_line_bytes: usize,
}

/// Why a tailer stopped reading: the forwarder stops.
struct Stopped;

/// A file being read.
struct Open {
    id: FileId,
    file: File,
    /// Where the next read starts.
    read_to: u64,
    /// The current line's bytes so far (up to `max_line_bytes`)…
    partial: Vec<u8>,
    /// …and its whole length, when it is longer.
    partial_len: usize,
    /// The last time it grew (for a rotated file: when to close it).
    grew_at: Instant,
}

struct Tailer {
    config: TailConfig,
    label: String,
    shipper: Shipper,
    acks: mpsc::Sender<Ack>,
    stop: CancellationToken,
    runtime: Handle,
    current: Option<Open>,
    rotated: Vec<Open>,
}

/// Starts tailing `config.path` on a thread: until `stop`, then it returns (lines read but not
/// shipped are read again at the next start: their positions were never stored).
pub fn spawn(
    config: TailConfig,
    shipper: Shipper,
    acks: mpsc::Sender<Ack>,
    positions: &Positions,
    failure: Failure,
    stop: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let label = config.path.display().to_string();
    let mut tailer = Tailer {
        label: label.clone(),
        config,
        shipper,
        acks,
        stop: stop.clone(),
        runtime: Handle::current(),
        current: None,
        rotated: Vec::new(),
    };
    tailer.resume(positions);
    let thread = std::thread::Builder::new()
        .name(format!(
            "tail {}",
            tailer
                .config
                .path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ))
        .spawn(move || {
            tracing::info!(path = %label, "tailing");
            while !tailer.stop.is_cancelled() {
                if let Err(err) = tailer.poll() {
                    match err {
                        PollError::Stopped => break,
                        PollError::Io(err) => {
                            // A file we cannot read now (permissions, a disk error): try again
                            // at the next poll rather than skip anything.
                            tracing::warn!(path = %label, %err, "cannot read; retrying");
                        }
                        PollError::Fatal(reason) => {
                            failure.set(format!("{label}: {reason}"), &tailer.stop);
                            break;
                        }
                    }
                }
                tailer.sleep(tailer.config.poll);
            }
            tracing::info!(path = %label, "tailing stopped");
        })?;
    Ok(thread)
}

enum PollError {
    Stopped,
    Io(std::io::Error),
    Fatal(String),
}

impl From<std::io::Error> for PollError {
    fn from(err: std::io::Error) -> Self {
        PollError::Io(err)
    }
}

impl From<Stopped> for PollError {
    fn from(_: Stopped) -> Self {
        PollError::Stopped
    }
}

impl Tailer {
    fn checkpoint(&self, id: FileId, offset: u64) -> Checkpoint {
        Checkpoint {
            path: self.label.clone(),
            id,
            offset,
        }
    }

    /// Picks up where the positions file says: the file at the path if it is the one read
    /// before, files rotated away meanwhile (found by inode next to it) to be read first.
    fn resume(&mut self, positions: &Positions) {
        let at_path = std::fs::metadata(&self.config.path)
            .ok()
            .map(|m| FileId::of(&m));
        for checkpoint in positions.for_path(&self.label) {
            if Some(checkpoint.id) == at_path {
                match open_at(&self.config.path, checkpoint.id, checkpoint.offset) {
                    Ok(Some(open)) => {
                        tracing::info!(path = %self.label, offset = open.read_to, "resuming");
                        self.current = Some(open);
                    }
                    Ok(None) => positions.forget(checkpoint.id),
                    Err(err) => tracing::warn!(path = %self.label, %err, "cannot reopen"),
                }
                continue;
            }
            let found = self
                .config
                .path
                .parent()
                .and_then(|dir| find_by_id(dir, checkpoint.id));
            match found.map(|path| {
                let open = open_at(&path, checkpoint.id, checkpoint.offset);
                (path, open)
            }) {
                Some((path, Ok(Some(open)))) => {
                    tracing::info!(path = %self.label, rotated = %path.display(), offset = open.read_to,
                        "a file rotated while stopped: reading it to its end first");
                    self.rotated.push(open);
                }
                _ => {
                    tracing::warn!(path = %self.label, inode = checkpoint.id.ino, offset = checkpoint.offset,
                        "a file read before is gone: anything written to it after the offset was not forwarded");
                    positions.forget(checkpoint.id);
                }
            }
        }
    }

    /// One poll: rotated files first (they hold older lines), then the path's file.
    fn poll(&mut self) -> Result<(), PollError> {
        let mut rotated = std::mem::take(&mut self.rotated);
        let outcome = self.poll_rotated(&mut rotated);
        self.rotated = rotated;
        outcome?;

        let at_path = match std::fs::metadata(&self.config.path) {
            Ok(metadata) => Some(FileId::of(&metadata)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(err.into()),
        };
        if let Some(mut open) = self.current.take() {
            if at_path != Some(open.id) {
                // Renamed away (or deleted): read what it has, then keep it as a rotated file.
                tracing::info!(path = %self.label, inode = open.id.ino, "rotated: the path names another file");
                open.grew_at = Instant::now();
                let read = self.read(&mut open);
                self.rotated.push(open);
                read?;
            } else {
                let length = open.file.metadata()?.len();
                if length < open.read_to {
                    tracing::info!(path = %self.label, length, read_to = open.read_to,
                        "truncated: reading again from the start");
                    open.file.seek(SeekFrom::Start(0))?;
                    open.read_to = 0;
                    open.partial.clear();
                    open.partial_len = 0;
                    self.send(Ack::Mark(self.checkpoint(open.id, 0)))?;
                }
                self.current = Some(open);
            }
        }
        if self.current.is_none()
            && let Some(id) = at_path
        {
            match open_at(&self.config.path, id, 0)? {
                Some(open) => {
                    tracing::info!(path = %self.label, inode = id.ino, "reading a new file from its start");
                    self.send(Ack::Mark(self.checkpoint(open.id, 0)))?;
                    self.current = Some(open);
                }
                None => return Ok(()), // replaced between the two looks: next poll
            }
        }
        if let Some(mut open) = self.current.take() {
            let read = self.read(&mut open);
            self.current = Some(open);
            read?;
        }
        Ok(())
    }

    /// Reads the rotated files; closes those that stopped growing `rotate_wait` ago.
    fn poll_rotated(&self, rotated: &mut Vec<Open>) -> Result<(), PollError> {
        let mut i = 0;
        while i < rotated.len() {
            self.read(&mut rotated[i])?;
            if rotated[i].grew_at.elapsed() >= self.config.rotate_wait {
                // The writer has moved on: an unfinished last line is all there will be.
                self.finish(&mut rotated[i])?;
                let done = rotated.remove(i);
                tracing::info!(path = %self.label, inode = done.id.ino, "rotated file done");
                self.send(Ack::Forget(done.id))?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Reads `open` to its end, shipping every complete line.
    fn read(&self, open: &mut Open) -> Result<(), PollError> {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            if self.stop.is_cancelled() {
                return Err(PollError::Stopped);
            }
            let n = open.file.read(&mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            open.grew_at = Instant::now();
            let chunk = &buffer[..n];
            let mut start = 0;
            while start < n {
                let newline = chunk[start..].iter().position(|b| *b == b'\n');
                let end = newline.map_or(n, |i| start + i);
                self.append(open, &chunk[start..end]);
                match newline {
                    Some(_) => {
                        let line_end = open.read_to + end as u64 + 1;
                        self.emit(open, line_end)?;
                        start = end + 1;
                    }
                    None => start = n,
                }
            }
            open.read_to += n as u64;
        }
    }

    fn append(&self, open: &mut Open, bytes: &[u8]) {
        let room = self
            .config
            .max_line_bytes
            .saturating_sub(open.partial.len());
        open.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        open.partial_len += bytes.len();
    }

    /// Ships the line in `open.partial`, which ends at byte `line_end` of the file.
    fn emit(&self, open: &mut Open, line_end: u64) -> Result<(), PollError> {
        // The line is shipped from the buffer (librdkafka copies it), which is then reused: no
        // allocation per line.
        let length = std::mem::take(&mut open.partial_len);
        let mut kept = open.partial.len();
        if open.partial.last() == Some(&b'\r') && length == kept {
            kept -= 1;
        }
        if kept == 0 {
            open.partial.clear();
            return Ok(());
        }
        let cut = length > open.partial.len();
        let line = &open.partial[..kept];
        let stats = self.shipper.stats();
        if cut {
            stats.truncated.fetch_add(1, Ordering::Relaxed);
            super::metrics().truncated.inc();
            tracing::warn!(path = %self.label, length, kept = line.len(), "line over --max-line-bytes: cut");
        }
        // A free permit is taken at once; only a forwarder at its bound waits on the runtime.
        let permit = match self.shipper.try_acquire() {
            Some(permit) => permit,
            None => self
                .runtime
                .block_on(self.shipper.acquire(&self.stop))
                .ok_or(Stopped)?,
        };
        let in_flight = self
            .shipper
            .ship_blocking(&self.config.key, line, permit)
            .map_err(|err| PollError::Fatal(format!("cannot ship a line: {err}")))?;
        open.partial.clear();
        stats.record_line(super::Source::File);
        let checkpoint = self.checkpoint(open.id, line_end);
        self.send(Ack::Line {
            in_flight,
            checkpoint: Some(checkpoint),
        })?;
        Ok(())
    }

    /// A rotated file is done: its unfinished last line, if any, is a line.
    fn finish(&self, open: &mut Open) -> Result<(), PollError> {
        if open.partial_len > 0 {
            let end = open.read_to;
            self.emit(open, end)?;
        }
        Ok(())
    }

    fn send(&self, ack: Ack) -> Result<(), Stopped> {
        // The acker ends only after the tailer (it owns the sending side): a failed send means
        // the forwarder is going down.
        // The channel has room for every line in flight: a send rarely waits, and only then
        // on the runtime.
        match self.acks.try_send(ack) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(ack)) => {
                self.acks.blocking_send(ack).map_err(|_| Stopped)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Stopped),
        }
    }

    /// Sleeps `duration`, or less when the forwarder stops. (A plain thread sleep in short
    /// steps, not the runtime's timer: it must not depend on the runtime still running.)
    fn sleep(&self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while !self.stop.is_cancelled() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
    }
}

/// Opens `path` if it is still the file `id`, positioned at `offset` (at 0 when the file is
/// now shorter: it was truncated). `None` if the path names another file now.
fn open_at(path: &Path, id: FileId, offset: u64) -> std::io::Result<Option<Open>> {
    let mut file = File::open(path)?;
    let metadata = file.metadata()?;
    if FileId::of(&metadata) != id {
        return Ok(None);
    }
    let offset = if metadata.len() < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(offset))?;
    Ok(Some(Open {
        id,
        file,
        read_to: offset,
        partial: Vec::new(),
        partial_len: 0,
        grew_at: Instant::now(),
    }))
}

/// The file of `dir` whose device and inode are `id` (a rotated file under its new name).
fn find_by_id(dir: &Path, id: FileId) -> Option<PathBuf> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|entry| {
            entry
                .metadata()
                .is_ok_and(|m| m.is_file() && FileId::of(&m) == id)
        })
        .map(|entry| entry.path())
}
