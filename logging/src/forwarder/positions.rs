//! Read positions: for every file being read, which file it is (device and inode, so a renamed
//! file is still recognized) and the byte after the last line the broker acknowledged. Kept in
//! memory as acknowledgements arrive and written to `<data dir>/forwarder-positions.json` every
//! second and on shutdown: written to a temporary file, synced, then renamed over the old one, so
//! a crash leaves the old positions or the new ones, never half of each.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// The positions file in the forwarder's data directory.
pub const POSITIONS_FILE: &str = "forwarder-positions.json";

/// A file's identity: device and inode. It survives a rename (rotation), not a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    #[cfg(unix)]
    pub fn of(metadata: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: metadata.dev(),
            ino: metadata.ino(),
        }
    }
}

/// Where reading a file resumes: the byte after its last acknowledged line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The path the forwarder was told to read (the file may have been renamed since).
    pub path: String,
    #[serde(flatten)]
    pub id: FileId,
    pub offset: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    files: Vec<Checkpoint>,
}

/// Every file's checkpoint, and where they are saved.
#[derive(Debug)]
pub struct Positions {
    file: PathBuf,
    checkpoints: Mutex<BTreeMap<FileId, Checkpoint>>,
    dirty: AtomicBool,
}

impl Positions {
    /// The positions saved in `file`, or none when it does not exist yet.
    pub fn load(file: PathBuf) -> anyhow::Result<Positions> {
        let saved: Saved = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
                anyhow::anyhow!(
                    "{} is not a positions file: {err} (move it away to start from the files' beginnings)",
                    file.display()
                )
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(err) => anyhow::bail!("cannot read {}: {err}", file.display()),
        };
        Ok(Positions {
            file,
            checkpoints: Mutex::new(saved.files.into_iter().map(|c| (c.id, c)).collect()),
            dirty: AtomicBool::new(false),
        })
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The checkpoints of files read for `path`.
    pub fn for_path(&self, path: &str) -> Vec<Checkpoint> {
        self.lock()
            .values()
            .filter(|c| c.path == path)
            .cloned()
            .collect()
    }

    pub fn get(&self, id: FileId) -> Option<Checkpoint> {
        self.lock().get(&id).cloned()
    }

    pub fn set(&self, checkpoint: Checkpoint) {
        self.lock().insert(checkpoint.id, checkpoint);
        self.dirty.store(true, Ordering::Release);
    }

    pub fn forget(&self, id: FileId) {
        if self.lock().remove(&id).is_some() {
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Writes the positions if they changed since the last save.
    pub fn save_if_changed(&self) -> anyhow::Result<()> {
        if self.dirty.swap(false, Ordering::AcqRel)
            && let Err(err) = self.save()
        {
            self.dirty.store(true, Ordering::Release);
            return Err(err);
        }
        Ok(())
    }

    /// Writes the positions: temporary file, fsync, rename, fsync of the directory.
    pub fn save(&self) -> anyhow::Result<()> {
        let saved = Saved {
            files: self.lock().values().cloned().collect(),
        };
        let json = serde_json::to_vec_pretty(&saved)?;
        let tmp = self.file.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut out = std::fs::File::create(&tmp)?;
            out.write_all(&json)?;
            out.sync_all()?;
            std::fs::rename(&tmp, &self.file)?;
            if let Some(dir) = self.file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|err| anyhow::anyhow!("cannot save {}: {err}", self.file.display()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<FileId, Checkpoint>> {
        self.checkpoints.lock().expect("positions lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_survive_a_save_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(POSITIONS_FILE);
        let positions = Positions::load(file.clone()).unwrap();
        assert!(positions.for_path("/var/log/a.log").is_empty());
        let id = FileId { dev: 1, ino: 2 };
        positions.set(Checkpoint {
            path: "/var/log/a.log".into(),
            id,
            offset: 42,
        });
        positions.set(Checkpoint {
            path: "/var/log/b.log".into(),
            id: FileId { dev: 1, ino: 3 },
            offset: 7,
        });
        positions.save_if_changed().unwrap();
        let loaded = Positions::load(file.clone()).unwrap();
        assert_eq!(loaded.for_path("/var/log/a.log")[0].offset, 42);
        assert_eq!(loaded.get(FileId { dev: 1, ino: 3 }).unwrap().offset, 7);
        loaded.forget(id);
        loaded.save_if_changed().unwrap();
        assert!(
            Positions::load(file.clone())
                .unwrap()
                .for_path("/var/log/a.log")
                .is_empty()
        );
        std::fs::write(&file, b"{not json").unwrap();
        let err = Positions::load(file).unwrap_err().to_string();
        assert!(err.contains("not a positions file"), "{err}");
    }
}
