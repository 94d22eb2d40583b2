//! The ranges' upper ends, per counter, kept on disk so that a process started again
//! still refuses an upstream that went back (restored from a backup, or replaced by a
//! new, empty one) instead of handing out its values a second time.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What the file holds: for each counter, the highest value received from the upstream.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Marks {
    high: BTreeMap<String, i64>,
}

/// A file that records, per counter, the highest value a process received from its
/// upstream, written (and fsynced) before any value of a range is handed out. A process
/// that opens it again refuses every range at or below what it records.
///
/// One process holds it at a time: it is locked (`flock`, through a `.lock` file beside
/// it) while open, and a second [`open`](Self::open) fails with
/// [`LedgerFileError::InUse`], naming the holder. Each write replaces the whole file
/// atomically, so a crash leaves the old or the new contents, never a mix.
#[derive(Debug)]
pub struct LedgerFile {
    path: PathBuf,
    /// Held for the lock; the lock ends when the process does.
    _lock: File,
    /// What the file holds, changed only after it is on disk.
    marks: Mutex<Marks>,
}

/// Why a ledger file could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerFileError {
    /// Another process (or another [`LedgerFile`] of this one) holds it.
    #[error("{} is in use by {holder}", path.display())]
    InUse {
        /// The ledger file.
        path: PathBuf,
        /// Who holds it, as it wrote in the lock file (such as "serve --upstream URL
        /// (process 1234)").
        holder: String,
    },
    /// It is there but not a ledger: what it recorded is unknown.
    #[error("{} is not a ledger file ({reason}); what it recorded is unknown", path.display())]
    Unreadable {
        /// The ledger file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading, writing or syncing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl LedgerFile {
    /// Opens (or starts) the ledger at `path`, making its directory if need be, and
    /// locks it for this process; `holder` says who holds it, for the error another one
    /// gets (such as "serve --upstream URL").
    pub fn open(path: impl Into<PathBuf>, holder: &str) -> Result<Self, LedgerFileError> {
        let path = path.into();
        let directory = parent(&path);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LedgerFileError::Io { path, source }
        };
        std::fs::create_dir_all(directory).map_err(io(directory))?;
        let lock_path = path.with_extension("lock");
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {
                lock.set_len(0).map_err(io(&lock_path))?;
                write!(lock, "{holder} (process {})", std::process::id()).map_err(io(&lock_path))?;
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                lock.read_to_string(&mut holder).map_err(io(&lock_path))?;
                return Err(LedgerFileError::InUse { path, holder });
            }
            Err(TryLockError::Error(source)) => return Err(LedgerFileError::Io { path: lock_path, source }),
        }
        // A temporary file left by a write cut short holds nothing that counts.
        let _ = std::fs::remove_file(temporary(&path));
        let marks = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|error| LedgerFileError::Unreadable { path: path.clone(), reason: error.to_string() })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Marks::default(),
            Err(source) => return Err(LedgerFileError::Io { path, source }),
        };
        Ok(Self { path, _lock: lock, marks: Mutex::new(marks) })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The highest value recorded for `counter`: 0 when none.
    pub fn high(&self, counter: &str) -> i64 {
        self.marks.lock().expect("never poisoned").high.get(counter).copied().unwrap_or(0)
    }

    /// Records that values of `counter` up to `high` were received, and returns once
    /// that is on disk; a lower value than recorded changes nothing. Blocks on the disk.
    pub fn record(&self, counter: &str, high: i64) -> Result<(), LedgerFileError> {
        // Held across the write: writes go one at a time, and the file only grows.
        let mut marks = self.marks.lock().expect("never poisoned");
        if marks.high.get(counter).is_some_and(|recorded| *recorded >= high) {
            return Ok(());
        }
        let mut next = marks.clone();
        next.high.insert(counter.to_owned(), high);
        self.write(&next)?;
        *marks = next;
        Ok(())
    }

    /// Replaces the file with `marks`: a temporary file written and fsynced, renamed over
    /// the file, and the directory fsynced. rename(2) replaces the file atomically ("If
    /// newpath already exists, it will be atomically replaced",
    /// https://man7.org/linux/man-pages/man2/rename.2.html), and the directory's fsync
    /// makes the rename itself durable (fsync(2): "Calling fsync() does not necessarily
    /// ensure that the entry in the directory containing the file has also reached disk.
    /// For that an explicit fsync() on a file descriptor for the directory is also
    /// needed", https://man7.org/linux/man-pages/man2/fsync.2.html).
    fn write(&self, marks: &Marks) -> Result<(), LedgerFileError> {
        let temporary = temporary(&self.path);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LedgerFileError::Io { path, source }
        };
        let bytes = serde_json::to_vec_pretty(marks).expect("a map of numbers serializes");
        let mut file = File::create(&temporary).map_err(io(&temporary))?;
        file.write_all(&bytes).map_err(io(&temporary))?;
        file.sync_all().map_err(io(&temporary))?;
        drop(file);
        std::fs::rename(&temporary, &self.path).map_err(io(&self.path))?;
        let directory = parent(&self.path);
        File::open(directory).and_then(|directory| directory.sync_all()).map_err(io(directory))
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn temporary(path: &Path) -> PathBuf {
    path.with_extension("tmp")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("counterctl-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn what_is_recorded_is_found_again_after_a_restart_and_never_lowered() {
        let dir = scratch("restart");
        let path = dir.join("sidecar").join("ledger.json");
        let ledger = LedgerFile::open(&path, "test").unwrap();
        assert_eq!(ledger.high("a"), 0);
        ledger.record("a", 10).unwrap();
        ledger.record("a", 5).unwrap();
        ledger.record("b", 3).unwrap();
        drop(ledger);
        let ledger = LedgerFile::open(&path, "test").unwrap();
        assert_eq!((ledger.high("a"), ledger.high("b"), ledger.high("c")), (10, 3, 0));
        assert!(!temporary(&path).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = scratch("second");
        let path = dir.join("ledger.json");
        let _held = LedgerFile::open(&path, "serve --upstream http://a").unwrap();
        match LedgerFile::open(&path, "another") {
            Err(LedgerFileError::InUse { holder, .. }) => {
                assert!(holder.starts_with("serve --upstream http://a (process "), "{holder}");
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_that_is_no_ledger_is_refused_rather_than_taken_as_empty() {
        let dir = scratch("garbage");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.json");
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(LedgerFile::open(&path, "test"), Err(LedgerFileError::Unreadable { .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
