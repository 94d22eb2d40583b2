//! What a data directory remembers of its database, so that no database ever starts over
//! or goes back silently: an empty, missing, older or foreign database is refused before
//! anything is handed out.
//!
//! Each database carries an id and its `advance`: every counter movement it ever
//! committed, summed (what an increment added, what a raise lifted a counter by). A
//! counter's value is never above the database's `floor` plus its `advance`, and a copy
//! taken earlier has a smaller `advance` than the database it was taken from.
//!
//! After every commit the committer writes the database's [`Mark`] to two markers: one
//! beside the database (`counters.history`), one in the state directory
//! (`databases/ID.history`), which a data directory restored whole from a copy cannot take
//! back with it. At start the database found is judged against both ([`judge`]).

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The marker beside the database.
pub(crate) const MARKER_FILE: &str = "counters.history";
/// The markers of every database served on this machine, in the state directory.
const REGISTRY_DIR: &str = "databases";
const MARKER_EXTENSION: &str = "history";
/// A marker holds two slots and each write goes to the older one, so a write torn by a
/// power failure leaves the other intact. A slot is one disk sector.
const SLOT_BYTES: usize = 512;

/// How far one database had gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mark {
    pub(crate) database_id: String,
    /// Every counter movement ever committed, summed; only grows.
    pub(crate) advance: i64,
    /// A counter the database does not hold starts above this.
    pub(crate) floor: i64,
    /// The data directory it was last served from.
    pub(crate) data_dir: PathBuf,
}

impl Mark {
    /// Above every value the database can have handed out.
    pub(crate) fn ceiling(&self) -> i64 {
        self.floor.saturating_add(self.advance)
    }
}

/// The database found in the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// No file, an empty (zero-length) one, or one without counterctl's tables.
    Nothing,
    Database {
        /// `None` for a database from before markers (made by an older counterctl).
        database_id: Option<String>,
        advance: i64,
        floor: i64,
    },
}

/// What the markers say about the data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Evidence {
    /// The marker beside the database.
    pub(crate) beside: Option<Mark>,
    /// The state directory's marker of the database the directory should hold: the one
    /// the marker beside it names, else the one found.
    pub(crate) registered: Option<Mark>,
    /// The state directory's marker of a database last served from this directory, for
    /// when the marker beside it is gone too.
    pub(crate) registered_here: Option<Mark>,
    /// Another directory holding the database found (its marker names it).
    pub(crate) copy_in: Option<PathBuf>,
}

/// How serve starts on what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// A new database: in a directory that never held one (`floor` 0), or, accepted with
    /// `--restored`, in place of a lost one, above everything it could have handed out.
    New { floor: i64, replaces: Option<Mark> },
    /// The database found, as it is; `raise_by` is above 0 only for an older copy accepted
    /// with `--restored`: every counter is raised by it, and its advance becomes `advance`.
    Existing { database_id: Option<String>, raise_by: i64, advance: i64, floor: i64 },
}

/// Why a database is not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error(
        "{} is missing or empty, but this directory held counter database {} whose counters \
         had reached up to {}: a new, empty database would hand out 1, 2, 3 … again",
        database.display(), held.database_id, held.ceiling()
    )]
    Missing { database: PathBuf, held: Mark },
    #[error(
        "{} is older than the database last served from it: its counters are behind by {behind} \
         in all (was it restored from a copy?), so they would hand out IDs again",
        database.display()
    )]
    Older { database: PathBuf, behind: i64 },
    #[error(
        "{} is not this directory's database: the directory held counter database {expected}, \
         this file is {}",
        database.display(), found.as_deref().unwrap_or("one from an older counterctl")
    )]
    Other { database: PathBuf, expected: String, found: Option<String> },
    #[error(
        "{} is a copy of the database in {}: two copies would hand out the same IDs",
        database.display(), original.display()
    )]
    Copy { database: PathBuf, original: PathBuf },
}

impl Refusal {
    /// The way forward, for the hint line.
    pub(crate) fn hint(&self) -> String {
        match self {
            Self::Missing { .. } | Self::Older { .. } => "put this directory's newest database back (stop serve, copy \
                 it over the file), or, to go on with what is there, start serve once with --restored: every \
                 counter is then raised past what the lost or newer database could have handed out, so no ID \
                 repeats (a gap instead)"
                .to_owned(),
            Self::Other { .. } => "put this directory's own database back, or serve that database from a \
                 directory of its own (a new, empty directory)"
                .to_owned(),
            Self::Copy { original, .. } => format!(
                "serve the database from {} only; to move it here, move the whole directory",
                original.display()
            ),
        }
    }
}

/// How to start on `found`, or why not. `restored` is `--restored`: an older copy, or a
/// missing database, is accepted and raised past what was lost.
pub(crate) fn judge(database: &Path, found: &Found, evidence: &Evidence, restored: bool) -> Result<Start, Refusal> {
    let found_id = match found {
        Found::Database { database_id, .. } => database_id.as_deref(),
        Found::Nothing => None,
    };
    // What the directory held: its own marker, the state directory's newer word on the
    // same database (a directory restored whole brings back an old marker), or, with
    // that marker gone too, the state directory's word on this directory.
    let held = match (&evidence.beside, &evidence.registered_here) {
        (Some(beside), _) => Some(newest(beside, evidence.registered.as_ref())),
        (None, Some(here)) if found_id != Some(here.database_id.as_str()) => Some(here.clone()),
        (None, _) => evidence.registered.clone(),
    };
    match found {
        Found::Nothing => match held {
            None => Ok(Start::New { floor: 0, replaces: None }),
            Some(held) if restored => Ok(Start::New { floor: held.ceiling(), replaces: Some(held) }),
            Some(held) => Err(Refusal::Missing { database: database.to_owned(), held }),
        },
        Found::Database { database_id, advance, floor } => {
            if let Some(original) = &evidence.copy_in {
                return Err(Refusal::Copy { database: database.to_owned(), original: original.clone() });
            }
            let Some(held) = held else {
                return Ok(Start::Existing {
                    database_id: database_id.clone(),
                    raise_by: 0,
                    advance: *advance,
                    floor: *floor,
                });
            };
            if database_id.as_ref().is_some_and(|id| *id != held.database_id) {
                return Err(Refusal::Other {
                    database: database.to_owned(),
                    expected: held.database_id,
                    found: database_id.clone(),
                });
            }
            let behind = held.advance.saturating_sub(*advance);
            match behind {
                ..=0 => Ok(Start::Existing {
                    database_id: Some(held.database_id),
                    raise_by: 0,
                    advance: *advance,
                    floor: *floor,
                }),
                _ if restored => Ok(Start::Existing {
                    database_id: Some(held.database_id),
                    raise_by: behind,
                    advance: held.advance,
                    floor: floor.saturating_add(behind),
                }),
                _ => Err(Refusal::Older { database: database.to_owned(), behind }),
            }
        }
    }
}

fn newest(beside: &Mark, registered: Option<&Mark>) -> Mark {
    match registered {
        Some(registered) if registered.database_id == beside.database_id && registered.advance > beside.advance => {
            registered.clone()
        }
        _ => beside.clone(),
    }
}

/// The state directory's markers.
pub(crate) struct Registry {
    dir: PathBuf,
}

impl Registry {
    pub(crate) fn new(state_dir: &Path) -> Self {
        Self { dir: state_dir.join(REGISTRY_DIR) }
    }

    pub(crate) fn path_of(&self, database_id: &str) -> PathBuf {
        self.dir.join(database_id).with_extension(MARKER_EXTENSION)
    }

    pub(crate) fn create_dir(&self) -> std::io::Result<()> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)
    }

    pub(crate) fn read(&self, database_id: &str) -> std::io::Result<Option<Mark>> {
        read_marker(&self.path_of(database_id))
    }

    /// Every marker naming `data_dir`; unreadable ones are skipped (they name nothing).
    pub(crate) fn naming(&self, data_dir: &Path) -> std::io::Result<Vec<Mark>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            entries => entries?,
        };
        let mut marks = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|extension| extension == MARKER_EXTENSION)
                && let Ok(Some(mark)) = read_marker(&path)
                && mark.data_dir == data_dir
            {
                marks.push(mark);
            }
        }
        Ok(marks)
    }

    /// Forgets a database whose successor in the same directory has taken over its
    /// ceiling (`--restored` in place of a lost one).
    pub(crate) fn forget(&self, database_id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path_of(database_id)) {
            Err(error) if error.kind() != ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

/// One marker file, kept open for the writes after each commit.
pub(crate) struct Marker {
    file: File,
    /// Of the last write: the slot written is `sequence % 2`.
    sequence: u64,
}

#[derive(Serialize, Deserialize)]
struct Slot {
    sequence: u64,
    #[serde(flatten)]
    mark: Mark,
}

impl Marker {
    /// Opens (creating) the marker at `path`, to write after what it holds.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let sequence = read_slots(&file)?.map_or(0, |slot| slot.sequence);
        Ok(Self { file, sequence })
    }

    /// Writes `mark` over the older slot. Not synced: a process that dies keeps it (the
    /// kernel has it), and [`sync`](Self::sync) makes it survive a power failure too.
    pub(crate) fn write(&mut self, mark: &Mark) -> std::io::Result<()> {
        self.sequence += 1;
        let slot = Slot { sequence: self.sequence, mark: mark.clone() };
        let json = serde_json::to_string(&slot).map_err(std::io::Error::other)?;
        let mut bytes = format!("{json}\n{}\n", checksum(&json)).into_bytes();
        if bytes.len() > SLOT_BYTES {
            return Err(std::io::Error::other(format!("a history mark of {} bytes does not fit a slot", bytes.len())));
        }
        bytes.resize(SLOT_BYTES, b' ');
        self.file.write_all_at(&bytes, (self.sequence % 2) * SLOT_BYTES as u64)
    }

    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// What the marker at `path` holds: `None` when there is no such file; an error when it
/// exists and neither slot is whole (it is not a marker, or was overwritten).
pub(crate) fn read_marker(path: &Path) -> std::io::Result<Option<Mark>> {
    let file = match File::open(path) {
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        file => file?,
    };
    match read_slots(&file)? {
        Some(slot) => Ok(Some(slot.mark)),
        None if file.metadata()?.len() == 0 => Ok(None),
        None => Err(std::io::Error::new(ErrorKind::InvalidData, format!("{} is not readable", path.display()))),
    }
}

/// The newer whole slot, if any.
fn read_slots(file: &File) -> std::io::Result<Option<Slot>> {
    let mut bytes = vec![0; 2 * SLOT_BYTES];
    let mut read = 0;
    while read < bytes.len() {
        match file.read_at(&mut bytes[read..], read as u64)? {
            0 => break,
            more => read += more,
        }
    }
    bytes.truncate(read);
    Ok(bytes.chunks(SLOT_BYTES).filter_map(parse_slot).max_by_key(|slot| slot.sequence))
}

fn parse_slot(bytes: &[u8]) -> Option<Slot> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    let (json, sum) = (lines.next()?, lines.next()?);
    (checksum(json) == sum).then(|| serde_json::from_str(json).ok()).flatten()
}

fn checksum(json: &str) -> String {
    Sha256::digest(json.as_bytes()).iter().take(8).map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(id: &str, advance: i64) -> Mark {
        Mark { database_id: id.to_owned(), advance, floor: 0, data_dir: PathBuf::from("/data") }
    }

    fn database(id: &str, advance: i64) -> Found {
        Found::Database { database_id: Some(id.to_owned()), advance, floor: 0 }
    }

    fn beside(mark: Mark) -> Evidence {
        Evidence { beside: Some(mark), ..Evidence::default() }
    }

    const DB: &str = "/data/counters.sqlite3";

    #[test]
    fn a_directory_that_never_held_a_database_gets_a_new_one() {
        assert_eq!(
            judge(Path::new(DB), &Found::Nothing, &Evidence::default(), false),
            Ok(Start::New { floor: 0, replaces: None })
        );
    }

    #[test]
    fn a_missing_or_empty_database_is_refused_where_one_was_held() {
        let refused = judge(Path::new(DB), &Found::Nothing, &beside(mark("a", 200)), false);
        assert!(matches!(refused, Err(Refusal::Missing { held, .. }) if held.advance == 200));
        // With the marker beside it gone too, the state directory remembers the directory.
        let here = Evidence { registered_here: Some(mark("a", 200)), ..Evidence::default() };
        assert!(matches!(judge(Path::new(DB), &Found::Nothing, &here, false), Err(Refusal::Missing { .. })));
    }

    #[test]
    fn a_lost_database_accepted_as_restored_is_replaced_above_everything_it_handed_out() {
        let held = Mark { floor: 50, ..mark("a", 200) };
        assert_eq!(
            judge(Path::new(DB), &Found::Nothing, &beside(held.clone()), true),
            Ok(Start::New { floor: 250, replaces: Some(held) })
        );
    }

    #[test]
    fn an_older_copy_is_refused_by_either_marker() {
        let older = judge(Path::new(DB), &database("a", 100), &beside(mark("a", 200)), false);
        assert_eq!(older, Err(Refusal::Older { database: PathBuf::from(DB), behind: 100 }));
        // Restored whole: the marker beside it came back with it, the state directory's did not.
        let whole = Evidence { beside: Some(mark("a", 100)), registered: Some(mark("a", 200)), ..Evidence::default() };
        assert!(matches!(judge(Path::new(DB), &database("a", 100), &whole, false), Err(Refusal::Older { .. })));
    }

    #[test]
    fn an_older_copy_accepted_as_restored_is_raised_by_what_it_is_behind() {
        let whole = Evidence { beside: Some(mark("a", 100)), registered: Some(mark("a", 200)), ..Evidence::default() };
        assert_eq!(
            judge(Path::new(DB), &database("a", 100), &whole, true),
            Ok(Start::Existing { database_id: Some("a".into()), raise_by: 100, advance: 200, floor: 100 })
        );
    }

    #[test]
    fn the_database_as_far_as_its_markers_is_served_as_it_is() {
        for advance in [200, 250] {
            assert_eq!(
                judge(Path::new(DB), &database("a", advance), &beside(mark("a", 200)), false),
                Ok(Start::Existing { database_id: Some("a".into()), raise_by: 0, advance, floor: 0 })
            );
        }
    }

    #[test]
    fn another_database_or_a_copy_is_refused_even_as_restored() {
        for restored in [false, true] {
            let other = judge(Path::new(DB), &database("b", 900), &beside(mark("a", 200)), restored);
            assert!(matches!(other, Err(Refusal::Other { .. })), "{other:?}");
            let here = Evidence { registered_here: Some(mark("a", 200)), ..Evidence::default() };
            assert!(matches!(judge(Path::new(DB), &database("b", 900), &here, restored), Err(Refusal::Other { .. })));
            let copy = Evidence { copy_in: Some(PathBuf::from("/elsewhere")), ..Evidence::default() };
            assert!(matches!(judge(Path::new(DB), &database("a", 200), &copy, restored), Err(Refusal::Copy { .. })));
        }
    }

    #[test]
    fn a_database_from_before_markers_takes_the_directorys_id() {
        let unmarked = Found::Database { database_id: None, advance: 300, floor: 0 };
        assert_eq!(
            judge(Path::new(DB), &unmarked, &Evidence::default(), false),
            Ok(Start::Existing { database_id: None, raise_by: 0, advance: 300, floor: 0 })
        );
        let behind = Found::Database { database_id: None, advance: 100, floor: 0 };
        assert!(matches!(judge(Path::new(DB), &behind, &beside(mark("a", 200)), false), Err(Refusal::Older { .. })));
    }

    #[test]
    fn a_marker_keeps_its_last_whole_slot() {
        let dir = std::env::temp_dir().join(format!("counterctl-marker-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(MARKER_FILE);
        let mut marker = Marker::open(&path).unwrap();
        marker.write(&mark("a", 1)).unwrap();
        marker.write(&mark("a", 2)).unwrap();
        assert_eq!(read_marker(&path).unwrap(), Some(mark("a", 2)));
        // A torn write of the newer slot leaves the older one.
        let torn = OpenOptions::new().write(true).open(&path).unwrap();
        torn.write_all_at(b"{\"seq\":7,\"torn", 0).unwrap();
        assert_eq!(read_marker(&path).unwrap(), Some(mark("a", 1)));
        // A reopened marker writes after what it holds.
        let mut reopened = Marker::open(&path).unwrap();
        reopened.write(&mark("a", 3)).unwrap();
        assert_eq!(read_marker(&path).unwrap(), Some(mark("a", 3)));
        std::fs::write(&path, "not a marker").unwrap();
        assert!(read_marker(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
