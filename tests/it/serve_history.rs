//! `counterctl serve` never starts over, nor goes back, silently: a database that is empty,
//! missing, older than the one last served, damaged, another directory's or a copy is
//! refused before anything is handed out; `--restored` accepts a restored or lost database
//! above everything handed out before; `counters backup` takes a copy to restore. Every
//! case collects the values handed out and checks that none repeats.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::Backend;
use crate::support::cli::{Run, clean_environment, counterctl_with_env};
use crate::support::serve::{DataDir, Serve, serve_command, serve_until_exit};

const DATABASE: &str = "counters.sqlite3";

/// Every value handed out in a test, by counter, to check that none repeats.
#[derive(Default)]
struct HandedOut(BTreeSet<(String, i64)>);

impl HandedOut {
    fn take(&mut self, counter: &str, value: i64) {
        assert!(self.0.insert((counter.to_owned(), value)), "{counter} {value} was handed out twice");
    }

    /// `count` values of `counter` in one request: its range.
    async fn reserve(&mut self, serve: &Serve, counter: &str, count: u32) {
        let (status, body) = serve.post(&format!("/counter/increment?counter={counter}&count={count}")).await;
        assert_eq!(status, 200, "{body}");
        let last = body["new_value"].as_i64().unwrap();
        (last - i64::from(count) + 1..=last).for_each(|value| self.take(counter, value));
    }

    async fn increment(&mut self, serve: &Serve, counter: &str) -> i64 {
        let value = serve.increment(counter).await;
        self.take(counter, value);
        value
    }
}

/// A data directory whose database has handed out 1 to `count` of counter `big`, served
/// and stopped.
async fn served(count: u32, handed: &mut HandedOut) -> DataDir {
    let data_dir = DataDir::new();
    let mut serve = Serve::start_in(data_dir.path()).await;
    handed.reserve(&serve, "big", count).await;
    assert!(serve.stop(Signal::SIGTERM).await.success());
    data_dir
}

async fn refused(data_dir: &Path) -> Run {
    let run = serve_until_exit(serve_command(data_dir)).await;
    assert_eq!(run.code, 2, "serve must refuse: {run:?}");
    run
}

async fn restored(data_dir: &Path) -> Serve {
    let mut command = serve_command(data_dir);
    command.arg("--restored");
    Serve::start_command(command).await
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn a_zero_length_database_is_refused_and_restored_starts_above_everything_handed_out() {
    let mut handed = HandedOut::default();
    let data_dir = served(1000, &mut handed).await;
    let database = data_dir.path().join(DATABASE);
    std::fs::File::create(&database).unwrap();

    let run = refused(data_dir.path()).await;
    assert!(run.stderr.contains(&database.display().to_string()), "names the file: {}", run.stderr);
    assert!(run.stderr.contains("missing or empty"), "says what was found: {}", run.stderr);
    assert!(run.stderr.contains("--restored"), "gives the way forward: {}", run.stderr);
    assert_eq!(std::fs::metadata(&database).unwrap().len(), 0, "nothing was written");

    let serve = restored(data_dir.path()).await;
    assert!(handed.increment(&serve, "big").await > 1000);
    handed.increment(&serve, "new-since").await;
}

#[tokio::test]
async fn a_zero_length_database_beside_a_stale_log_is_refused() {
    let mut handed = HandedOut::default();
    let data_dir = DataDir::new();
    let mut serve = Serve::start_in(data_dir.path()).await;
    handed.reserve(&serve, "big", 1000).await;
    // Killed: the write-ahead log stays beside the database.
    serve.stop(Signal::SIGKILL).await;
    let database = data_dir.path().join(DATABASE);
    assert!(data_dir.path().join(format!("{DATABASE}-wal")).exists());
    std::fs::File::create(&database).unwrap();

    refused(data_dir.path()).await;
    let serve = restored(data_dir.path()).await;
    assert!(handed.increment(&serve, "big").await > 1000);
}

#[tokio::test]
async fn a_deleted_database_is_refused() {
    let mut handed = HandedOut::default();
    let data_dir = served(300, &mut handed).await;
    std::fs::remove_file(data_dir.path().join(DATABASE)).unwrap();

    let run = refused(data_dir.path()).await;
    assert!(run.stderr.contains("missing or empty"), "{}", run.stderr);
    assert!(!data_dir.path().join(DATABASE).exists(), "no new database was made");
    let serve = restored(data_dir.path()).await;
    assert!(serve.stderr_containing("starts above").await.contains("300"), "{}", serve.stderr());
    assert!(handed.increment(&serve, "big").await > 300);
}

#[tokio::test]
async fn an_older_copy_of_the_database_file_is_refused_and_restored_raises_past_the_newer() {
    let mut handed = HandedOut::default();
    let data_dir = served(100, &mut handed).await;
    let backup = data_dir.path().join("backup.sqlite3");
    std::fs::copy(data_dir.path().join(DATABASE), &backup).unwrap();
    let mut serve = Serve::start_in(data_dir.path()).await;
    handed.reserve(&serve, "big", 100).await;
    handed.reserve(&serve, "born-after-the-copy", 7).await;
    assert!(serve.stop(Signal::SIGTERM).await.success());
    std::fs::copy(&backup, data_dir.path().join(DATABASE)).unwrap();

    let run = refused(data_dir.path()).await;
    assert!(run.stderr.contains("older than the database last served from it"), "{}", run.stderr);
    assert!(run.stderr.contains("behind by 107 in all"), "{}", run.stderr);

    let mut serve = restored(data_dir.path()).await;
    serve.stderr_containing("raised every counter").await;
    assert!(handed.increment(&serve, "big").await > 200);
    assert!(handed.increment(&serve, "born-after-the-copy").await > 7);
    assert!(serve.stop(Signal::SIGTERM).await.success());
    // Accepted once: from now on it is the directory's database.
    let serve = Serve::start_in(data_dir.path()).await;
    handed.increment(&serve, "big").await;
}

#[tokio::test]
async fn an_older_copy_of_the_whole_directory_is_refused() {
    let mut handed = HandedOut::default();
    let data_dir = served(100, &mut handed).await;
    let copy = PathBuf::from(format!("{}-copy", data_dir.path().display()));
    copy_dir(data_dir.path(), &copy);
    let mut serve = Serve::start_in(data_dir.path()).await;
    handed.reserve(&serve, "big", 100).await;
    assert!(serve.stop(Signal::SIGTERM).await.success());
    copy_dir(&copy, data_dir.path());
    std::fs::remove_dir_all(&copy).unwrap();

    let run = refused(data_dir.path()).await;
    assert!(run.stderr.contains("behind by 100 in all"), "{}", run.stderr);
    let serve = restored(data_dir.path()).await;
    assert!(handed.increment(&serve, "big").await > 200);
}

#[tokio::test]
async fn another_directorys_database_is_refused() {
    let mut handed = HandedOut::default();
    let ours = served(10, &mut handed).await;
    let mut theirs_handed = HandedOut::default();
    let theirs = served(500, &mut theirs_handed).await;
    std::fs::copy(theirs.path().join(DATABASE), ours.path().join(DATABASE)).unwrap();

    for restored in [false, true] {
        let mut command = serve_command(ours.path());
        if restored {
            command.arg("--restored");
        }
        let run = serve_until_exit(command).await;
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains("is not this directory's database"), "{}", run.stderr);
    }
}

#[tokio::test]
async fn a_copy_of_a_directory_still_in_use_is_refused_and_a_moved_one_served() {
    let mut handed = HandedOut::default();
    let data_dir = served(50, &mut handed).await;
    let copy = PathBuf::from(format!("{}-copy", data_dir.path().display()));
    copy_dir(data_dir.path(), &copy);

    let run = refused(&copy).await;
    assert!(run.stderr.contains("is a copy of the database in"), "{}", run.stderr);

    // Moved: the original is gone, so the copy is the database.
    std::fs::remove_dir_all(data_dir.path()).unwrap();
    let serve = Serve::start_in(&copy).await;
    assert_eq!(handed.increment(&serve, "big").await, 51);
    drop(serve);
    std::fs::remove_dir_all(&copy).unwrap();
}

#[tokio::test]
async fn a_damaged_database_is_refused_at_start() {
    let mut handed = HandedOut::default();
    let data_dir = DataDir::new();
    let mut serve = Serve::start_in(data_dir.path()).await;
    // Enough counters for the table to span pages below its root.
    for counter in 0..400 {
        handed.reserve(&serve, &format!("counter-with-a-longish-name-{counter:04}"), 1).await;
    }
    assert!(serve.stop(Signal::SIGTERM).await.success());
    let database = data_dir.path().join(DATABASE);
    let mut bytes = std::fs::read(&database).unwrap();
    assert!(bytes.len() > 4 * 4096, "{} bytes", bytes.len());
    // Garbage over the third page: an interior or leaf page of a table.
    bytes[2 * 4096..3 * 4096].fill(0xA5);
    std::fs::write(&database, bytes).unwrap();

    let run = refused(data_dir.path()).await;
    assert!(run.stderr.contains("is damaged"), "{}", run.stderr);
    assert!(run.stderr.contains("quick_check"), "{}", run.stderr);
}

#[tokio::test]
async fn a_data_dir_that_is_a_file_gets_a_clear_error() {
    let data_dir = DataDir::new();
    let file = data_dir.path().join("not-a-directory");
    std::fs::write(&file, "").unwrap();
    let run = serve_until_exit(serve_command(&file)).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("is a file, not a directory"), "{}", run.stderr);
}

/// counterctl with the tests' state directory, as the servers have it.
async fn counterctl(args: &[&str]) -> Run {
    let mut env = clean_environment();
    env.push(("COUNTERCTL_STATE_DIR", crate::support::serve::state_dir().display().to_string()));
    counterctl_with_env(args, &env).await
}

#[tokio::test]
async fn a_backup_restored_with_restored_never_repeats_an_id() {
    let mut handed = HandedOut::default();
    let data_dir = DataDir::new();
    let mut serve = Serve::start_in(data_dir.path()).await;
    handed.reserve(&serve, "orders", 40).await;
    let dir = data_dir.path().display().to_string();
    // Taken while serve runs, through it.
    let backup = data_dir.path().join("orders.backup");
    let run = counterctl(&["counters", "backup", &backup.display().to_string(), "--data-dir", &dir]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let again = counterctl(&["counters", "backup", &backup.display().to_string(), "--data-dir", &dir]).await;
    assert_eq!(again.code, 2, "an existing file is never overwritten: {again:?}");
    handed.reserve(&serve, "orders", 60).await;
    assert!(serve.stop(Signal::SIGTERM).await.success());
    // Taken while it is stopped, directly.
    let stopped = data_dir.path().join("stopped.backup");
    let run = counterctl(&["counters", "backup", &stopped.display().to_string(), "--data-dir", &dir]).await;
    assert_eq!(run.code, 0, "{run:?}");

    std::fs::copy(&backup, data_dir.path().join(DATABASE)).unwrap();
    refused(data_dir.path()).await;
    let mut serve = restored(data_dir.path()).await;
    assert!(handed.increment(&serve, "orders").await > 100);
    assert!(serve.stop(Signal::SIGTERM).await.success());

    // The copy taken while stopped is older now too.
    std::fs::copy(&stopped, data_dir.path().join(DATABASE)).unwrap();
    refused(data_dir.path()).await;
}

#[tokio::test]
async fn the_write_ahead_log_stays_bounded() {
    let data_dir = DataDir::new();
    let mut serve = Serve::start_in(data_dir.path()).await;
    let log = data_dir.path().join(format!("{DATABASE}-wal"));
    let mut largest = 0;
    for round in 0..2500 {
        serve.increment("steady").await;
        if round % 100 == 99 {
            largest = largest.max(std::fs::metadata(&log).unwrap().len());
        }
    }
    // 1,000 pages of 4 KiB and their frame headers, then it is checkpointed and reused.
    assert!(largest < 5 * 1024 * 1024, "the log reached {largest} bytes");
    assert!(serve.stop(Signal::SIGTERM).await.success());
}

/// A tmpfs of its own, mounted for the test and unmounted after.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// `None`, with the reason printed, where the test cannot mount one (not root).
    fn mount(bytes: u64) -> Option<Self> {
        let dir = DataDir::new();
        let path = dir.path().to_owned();
        std::mem::forget(dir);
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes},mode=700"), "tmpfs"])
            .arg(&path)
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(Self(path)),
            Ok(output) => {
                eprintln!(
                    "skipped: mounting a small tmpfs failed (the test needs root): {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                None
            }
            Err(error) => {
                eprintln!("skipped: no mount command ({error})");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn health(serve: &Serve) -> (u16, Value) {
    serve.get("/healthz").await
}

#[tokio::test]
async fn a_full_disk_is_unhealthy_and_logged_and_service_resumes_once_there_is_room() {
    let Some(disk) = SmallDisk::mount(2 * 1024 * 1024) else { return };
    let mut handed = HandedOut::default();
    let serve = Serve::start_in(&disk.0).await;
    handed.increment(&serve, "full").await;
    assert_eq!(health(&serve).await.0, 200);
    // Everything but a few bytes taken by another file.
    let filler = disk.0.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);

    let mut failed = 0;
    for _ in 0..50 {
        let (status, body) = serve.post("/counter/increment?counter=full").await;
        match status {
            200 => handed.take("full", body["new_value"].as_i64().unwrap()),
            _ => {
                assert_eq!(status, 500, "{body}");
                failed += 1;
            }
        }
    }
    assert!(failed > 0, "the disk never filled");
    assert_eq!(health(&serve).await.0, 503, "a store that cannot commit is not healthy: {}", serve.stderr());
    assert!(serve.stderr_containing("failed").await.contains("request(s) got an error"), "{}", serve.stderr());

    std::fs::remove_file(&filler).unwrap();
    // Healthy again once no commit has failed for a while (10 s).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while health(&serve).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never healthy again: {}", serve.stderr());
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    for _ in 0..5 {
        handed.increment(&serve, "full").await;
    }
    drop(serve);
}

#[tokio::test]
async fn a_database_from_before_the_history_is_served_and_recorded() {
    let data_dir = DataDir::new();
    // As an earlier counterctl left it: no history, schema version 1.
    let database = rusqlite::Connection::open(data_dir.path().join(DATABASE)).unwrap();
    database
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE counters (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) STRICT, WITHOUT ROWID;
             CREATE TABLE idempotency_keys (key TEXT PRIMARY KEY NOT NULL, counter TEXT NOT NULL,
                 count INTEGER NOT NULL, new_value INTEGER NOT NULL, expires_at INTEGER NOT NULL) STRICT;
             INSERT INTO counters VALUES ('tenants', 714);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    drop(database);
    let backup = data_dir.path().join("before.sqlite3");
    std::fs::copy(data_dir.path().join(DATABASE), &backup).unwrap();

    let mut handed = HandedOut::default();
    let mut serve = Serve::start_in(data_dir.path()).await;
    assert_eq!(handed.increment(&serve, "tenants").await, 715);
    assert!(serve.stop(Signal::SIGTERM).await.success());
    // Recorded now: the same file from before is older.
    std::fs::copy(&backup, data_dir.path().join(DATABASE)).unwrap();
    let run = refused(data_dir.path()).await;
    assert!(run.stderr.contains("behind by 1 in all"), "{}", run.stderr);
}
