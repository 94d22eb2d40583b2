//! How `counterctl counters` reaches the store of a `counterctl serve` that holds the data
//! directory: a Unix socket, `admin.sock` in the data directory. Both ends check who is at
//! the other: serve answers only its own user (whoever may write the database file may
//! change counters anyway), and `counters` talks only to a serve run by the database
//! file's owner. One JSON request per line, one JSON reply per line. The requests go to
//! serve's committer like increments do, so a raise lands between two batches of
//! increments, never inside one.

use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use counter_function::store::{CounterAdmin, Raised, StoreError};
use counter_function::validate;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::local_store::{self, LocalStore};
use crate::retry::ACCEPT_BACKOFF;

/// The socket, inside the data directory.
pub(crate) const SOCKET_FILE: &str = "admin.sock";
/// Admin connections open at once: an import keeps up to 32; past this, accepting
/// pauses (they count against serve's reserve of file descriptors).
const MAX_CONNECTIONS: usize = 32;
/// How long a request may take: listing a million counters takes seconds; a serve that
/// was stopped (SIGSTOP) must not hang the command.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    List {
        prefix: String,
    },
    Raise {
        counter: String,
        at_least: i64,
    },
    /// The path is absolute: serve runs in another directory.
    Backup {
        to: PathBuf,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Listed(Vec<(String, i64)>),
    Raised(Raised),
    BackedUp,
    Failed(String),
}

pub(crate) fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// The socket, listening, and the user it answers.
pub(crate) struct Listener {
    socket: UnixListener,
    owner: u32,
}

/// Listens on the data directory's socket. The caller holds the directory's lock, so a
/// socket file found there was left by a process that ended without removing it.
pub(crate) fn bind(data_dir: &Path) -> std::io::Result<Listener> {
    let path = socket_path(data_dir);
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() != ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let socket = UnixListener::bind(&path)?;
    // Connecting takes write permission on the socket file. Until this, the umask decided
    // it: the peer check below is what keeps others out.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    // The file was made by this process, so it is owned by this process's user.
    let owner = std::fs::metadata(&path)?.uid();
    Ok(Listener { socket, owner })
}

/// Answers connections until dropped; dropping it drops every connection too, and with
/// them their handles on the store.
pub(crate) async fn serve(listener: Listener, store: LocalStore) {
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = Arc::clone(&slots).acquire_owned().await.expect("never closed");
        tokio::select! {
            accepted = listener.socket.accept() => match accepted {
                Ok((stream, _)) => {
                    if stream.peer_cred().is_ok_and(|peer| peer.uid() == listener.owner) {
                        let store = store.clone();
                        connections.spawn(async move {
                            let _slot = slot;
                            answer_connection(stream, store).await;
                        });
                    }
                }
                Err(error) => {
                    eprintln!(
                        "counterctl serve: could not accept on the admin socket ({error}); trying again in {}s",
                        ACCEPT_BACKOFF.as_secs()
                    );
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn answer_connection(stream: UnixStream, store: LocalStore) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match serde_json::from_str(&line) {
            Ok(Request::List { prefix }) => store.list(&prefix).await.map(Reply::Listed),
            Ok(Request::Raise { counter, at_least }) => match checked_raise(&counter, at_least) {
                Ok(()) => store.raise(&counter, at_least).await.map(Reply::Raised),
                Err(reason) => Ok(Reply::Failed(reason)),
            },
            Ok(Request::Backup { to }) => store.backup(&to).await.map(|()| Reply::BackedUp),
            Err(error) => Ok(Reply::Failed(format!("not a request: {error}"))),
        };
        let reply = reply.unwrap_or_else(|error| Reply::Failed(error.to_string()));
        if write.write_all(&to_line(&reply)).await.is_err() {
            break;
        }
    }
}

fn to_line(message: &impl Serialize) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).expect("admin messages serialize");
    line.push(b'\n');
    line
}

/// A running serve's store, through its admin socket. Connections are kept for reuse, one
/// per request in flight.
pub(crate) struct AdminClient {
    path: PathBuf,
    /// The user the serve must run as: the database file's owner.
    owner: u32,
    idle: Mutex<Vec<Connection>>,
}

struct Connection {
    replies: Lines<BufReader<OwnedReadHalf>>,
    requests: OwnedWriteHalf,
}

impl Connection {
    /// Connects, if the one listening is a process of the database's owner.
    async fn open(path: &Path, owner: u32) -> std::io::Result<Self> {
        let stream = UnixStream::connect(path).await?;
        let peer = stream.peer_cred()?.uid();
        if peer != owner {
            let message = format!("the process listening there runs as user {peer}, not the database's owner {owner}");
            return Err(std::io::Error::new(ErrorKind::PermissionDenied, message));
        }
        let (read, requests) = stream.into_split();
        Ok(Self { replies: BufReader::new(read).lines(), requests })
    }

    async fn call(&mut self, request: &Request) -> std::io::Result<Reply> {
        self.requests.write_all(&to_line(request)).await?;
        let line = tokio::time::timeout(REPLY_TIMEOUT, self.replies.next_line())
            .await
            .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "no reply within 60 s"))??
            .ok_or(ErrorKind::UnexpectedEof)?;
        serde_json::from_str(&line).map_err(std::io::Error::other)
    }
}

impl AdminClient {
    /// Connects to the serve holding `data_dir`; an error when none answers there.
    pub(crate) async fn connect(data_dir: &Path) -> std::io::Result<Self> {
        let path = socket_path(data_dir);
        let owner = std::fs::metadata(local_store::database_path(data_dir))?.uid();
        let first = Connection::open(&path, owner).await?;
        Ok(Self { path, owner, idle: Mutex::new(vec![first]) })
    }

    async fn call(&self, request: Request) -> Result<Reply, StoreError> {
        let idle = self.idle.lock().expect("never poisoned").pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => Connection::open(&self.path, self.owner).await.map_err(|error| self.lost(&error))?,
        };
        let reply = connection.call(&request).await.map_err(|error| self.lost(&error))?;
        self.idle.lock().expect("never poisoned").push(connection);
        match reply {
            Reply::Failed(message) => Err(StoreError::Database(message)),
            reply => Ok(reply),
        }
    }

    fn lost(&self, error: &std::io::Error) -> StoreError {
        StoreError::Database(format!(
            "lost the running `counterctl serve` at {} ({error}); did it stop?",
            self.path.display()
        ))
    }
}

fn unexpected(reply: &Reply) -> StoreError {
    StoreError::Database(format!("unexpected reply from `counterctl serve`: {reply:?}"))
}

impl AdminClient {
    /// Has serve write a copy of its database to `to`, an absolute path.
    pub(crate) async fn backup(&self, to: &Path) -> Result<(), StoreError> {
        match self.call(Request::Backup { to: to.to_owned() }).await? {
            Reply::BackedUp => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

impl CounterAdmin for AdminClient {
    async fn list(&self, prefix: &str) -> Result<Vec<(String, i64)>, StoreError> {
        match self.call(Request::List { prefix: prefix.to_owned() }).await? {
            Reply::Listed(counters) => Ok(counters),
            other => Err(unexpected(&other)),
        }
    }

    async fn raise(&self, counter: &str, at_least: i64) -> Result<Raised, StoreError> {
        match self.call(Request::Raise { counter: counter.to_owned(), at_least }).await? {
            Reply::Raised(raised) => Ok(raised),
            other => Err(unexpected(&other)),
        }
    }
}

/// The rules `counters set` applies, again: the socket takes requests from any process of
/// serve's user, not only from counterctl.
fn checked_raise(counter: &str, at_least: i64) -> Result<(), String> {
    checked_name(counter)?;
    validate::counter_value(at_least).map_err(|invalid| format!("counter {counter:?}: {invalid}"))?;
    Ok(())
}

/// The rules the API applies to a counter name.
pub(crate) fn checked_name(counter: &str) -> Result<&str, String> {
    if counter.is_empty() {
        return Err("the counter name is empty".to_owned());
    }
    validate::counter_name(counter).map_err(|invalid| format!("counter {counter:?}: {invalid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raise_is_checked_by_the_rules_of_counters_set() {
        assert_eq!(checked_raise("a", 1), Ok(()));
        assert_eq!(checked_raise("a", validate::MAX_VALUE), Ok(()));
        for at_least in [-100, 0, validate::MAX_VALUE + 1, i64::MAX] {
            let refused = checked_raise("a", at_least).unwrap_err();
            assert!(refused.contains(&format!("{at_least} is not a counter value")), "{refused}");
        }
        assert!(checked_raise("", 5).is_err());
        assert!(checked_raise("_counterctl#idempotency#k", 5).is_err());
    }
}
