//! `counterctl serve` as a user runs it: the real binary, listening on a loopback port,
//! keeping its counters in a data directory of the test's own.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::unique_name;

/// How long a server may take to start or stop before the test gives up on it.
const PATIENCE: Duration = Duration::from_secs(60);

/// A data directory under the target directory, removed when dropped.
pub(crate) struct DataDir(PathBuf);

impl DataDir {
    pub(crate) fn new() -> Self {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique_name("serve-data"));
        // A directory left by an earlier run whose process had the same id.
        let _ = std::fs::remove_dir_all(&path);
        // serve refuses a data directory that does not exist.
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `counterctl serve --listen 127.0.0.1:0 --output json`, not yet started.
pub(crate) fn counterctl_serve() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_counterctl"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--output", "json"])
        .env_remove("COUNTERCTL_LISTEN")
        .env_remove("COUNTERCTL_DATA_DIR")
        .env("COUNTERCTL_STATE_DIR", state_dir());
    command
}

/// The state directory every server of this test run remembers what it handed out in:
/// under the target directory, not the user's, and one per run, since a data directory's
/// name may come again in a later run (the process id is in it) and its markers must not.
pub(crate) fn state_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("serve-state-{}", std::process::id()))
}

/// `counterctl serve --listen 127.0.0.1:0 --output json --data-dir DIR`, not yet started.
pub(crate) fn serve_command(data_dir: &Path) -> Command {
    let mut command = counterctl_serve();
    command.arg("--data-dir").arg(data_dir);
    command
}

/// `counterctl serve --listen LISTEN --output json --data-dir DIR`, not yet started.
pub(crate) fn serve_command_on(listen: &str, data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_counterctl"));
    command
        .args(["serve", "--listen", listen, "--output", "json", "--data-dir"])
        .arg(data_dir)
        .env_remove("COUNTERCTL_LISTEN")
        .env_remove("COUNTERCTL_DATA_DIR")
        .env_remove("COUNTERCTL_SERVE_API_KEY")
        .env("COUNTERCTL_STATE_DIR", state_dir());
    command
}

/// `counterctl serve --listen 127.0.0.1:0 --output json --upstream URL`, not yet
/// started, with exactly `env` as its environment (no key or AWS setup of this machine)
/// and a state directory of its own (sidecars of one upstream refuse to share one),
/// unless `env` or `--state-dir` gives one.
pub(crate) fn sidecar_command(upstream: &str, env: &[(&str, String)]) -> Command {
    sidecar_command_on("127.0.0.1:0", upstream, env)
}

/// [`sidecar_command`] listening on `listen`.
pub(crate) fn sidecar_command_on(listen: &str, upstream: &str, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_counterctl"));
    command
        .args(["serve", "--listen", listen, "--output", "json", "--upstream", upstream])
        .env_clear()
        .env("COUNTERCTL_STATE_DIR", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique_name("sidecar-state")))
        .envs(env.iter().map(|(key, value)| (key, value)));
    command
}

/// A loopback port nothing listens on now, for a server that must know its address
/// before it starts.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `counterctl serve`.
pub(crate) struct Serve {
    /// The root URL it printed, e.g. `http://127.0.0.1:PORT`.
    pub url: String,
    /// The database file it printed (with `--output json`).
    pub database: PathBuf,
    pub http: reqwest::Client,
    child: Child,
    stderr: Arc<Mutex<String>>,
    /// Reads stderr until the process closes it.
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
    /// Set when the server owns its data directory (removed after the server is gone).
    _own_data_dir: Option<DataDir>,
}

impl Serve {
    /// A server on a data directory of its own.
    pub(crate) async fn start() -> Self {
        let data_dir = DataDir::new();
        let mut serve = Self::start_in(data_dir.path()).await;
        serve._own_data_dir = Some(data_dir);
        serve
    }

    /// A server on `data_dir`, which outlives it (to start another one on it).
    pub(crate) async fn start_in(data_dir: &Path) -> Self {
        Self::start_command(serve_command(data_dir)).await
    }

    /// A server on a data directory of its own, started with `args` after the usual ones
    /// (e.g. `--api-key KEY`), as [`serve_command_on`] makes them.
    pub(crate) async fn start_with(args: &[&str]) -> Self {
        let data_dir = DataDir::new();
        let mut command = serve_command_on("127.0.0.1:0", data_dir.path());
        command.args(args);
        let mut serve = Self::start_command(command).await;
        serve._own_data_dir = Some(data_dir);
        serve
    }

    /// Starts `command` (from `counterctl_serve`) and waits for its announcement: one line
    /// of JSON on stdout with the URL and the database.
    pub(crate) async fn start_command(command: Command) -> Self {
        let (mut serve, mut stdout) = Self::spawn(command);
        let line = serve.next_line(&mut stdout).await;
        let announcement: Value = serde_json::from_str(&line).expect("the announcement is JSON");
        serve.url = announcement["url"].as_str().expect("the announcement has the url").to_owned();
        // A sidecar (`--upstream`) announces its upstream instead.
        serve.database = announcement["database"].as_str().map(PathBuf::from).unwrap_or_default();
        keep_reading(stdout);
        serve
    }

    /// Starts `command` without `--output json` and returns the server with what it
    /// printed for people, up to its last line ("Stop with Ctrl-C.").
    pub(crate) async fn start_with_text_output(command: Command) -> (Self, String) {
        let (mut serve, mut stdout) = Self::spawn(command);
        let mut text = String::new();
        while !text.contains("Ctrl-C") {
            text.push_str(&serve.next_line(&mut stdout).await);
            text.push('\n');
        }
        keep_reading(stdout);
        let url = text.split_whitespace().find(|word| word.starts_with("http://")).expect("a URL");
        serve.url = url.to_owned();
        (serve, text)
    }

    fn spawn(mut command: Command) -> (Self, Lines<BufReader<ChildStdout>>) {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = command.spawn().expect("counterctl starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_reader = collect(child.stderr.take().unwrap(), Arc::clone(&stderr));
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let serve = Self {
            url: String::new(),
            database: PathBuf::new(),
            http: reqwest::Client::new(),
            child,
            stderr,
            stderr_reader: Some(stderr_reader),
            _own_data_dir: None,
        };
        (serve, stdout)
    }

    async fn next_line(&mut self, stdout: &mut Lines<BufReader<ChildStdout>>) -> String {
        match tokio::time::timeout(PATIENCE, stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            _ => panic!("serve did not announce its URL ({:?}); stderr: {}", self.child.try_wait(), self.stderr()),
        }
    }

    /// The `HOST:PORT` to connect to, on loopback (a server listening on all addresses,
    /// `0.0.0.0`, is reached at 127.0.0.1).
    pub(crate) fn address(&self) -> String {
        let address = self.url.strip_prefix("http://").expect("an http URL");
        let address = address.split('/').next().unwrap();
        match address.strip_prefix("0.0.0.0:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => address.to_owned(),
        }
    }

    /// Waits until what the server wrote to stderr contains `text` (ignoring case), and
    /// returns it; panics after [`PATIENCE`].
    pub(crate) async fn stderr_containing(&self, text: &str) -> String {
        let text = text.to_lowercase();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let stderr = self.stderr();
            if stderr.to_lowercase().contains(&text) {
                return stderr;
            }
            assert!(tokio::time::Instant::now() < deadline, "stderr never said {text:?}: {stderr}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id().expect("still running")).unwrap())
    }

    /// What the server wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends `signal` and waits for the process to end and for all it wrote to stderr.
    pub(crate) async fn stop(&mut self, signal: Signal) -> ExitStatus {
        kill(self.pid(), signal).expect("the server can be signalled");
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("serve did not stop after {signal:?}; stderr: {}", self.stderr()))
            .unwrap();
        if let Some(reader) = self.stderr_reader.take() {
            tokio::time::timeout(PATIENCE, reader).await.expect("stderr closes with the process").unwrap();
        }
        status
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Nothing more is expected on stdout, but a closed pipe must not break the server.
fn keep_reading(mut stdout: Lines<BufReader<ChildStdout>>) {
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
}

fn collect(stream: impl AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<String>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = into.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    })
}

/// What came back for a raw request: the status and the body, as far as they arrived.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Sends `request` byte for byte on a new connection and reads the answer until the
/// server closes the connection. Reading runs alongside writing: a server refusing a
/// request may answer and close before it was all sent.
pub(crate) async fn raw_request(url: &str, request: Vec<u8>) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let address = url.strip_prefix("http://").expect("an http URL");
    let stream = tokio::net::TcpStream::connect(address).await.expect("the server accepts connections");
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        // A refusal may close the connection before all was sent; what it answered counts.
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
                // A reset after the answer arrived (the server closed with unread input).
                Err(error) if !answer.is_empty() => {
                    eprintln!("connection ended with {error} after the answer");
                    break;
                }
                Err(error) => panic!("no answer: {error}"),
            }
        }
    })
    .await;
    read.expect("the server answers and closes the connection");
    drop(sending.await);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let status =
        head.split(' ').nth(1).and_then(|status| status.parse().ok()).unwrap_or_else(|| panic!("no status: {head}"));
    RawResponse { status, head: head.to_owned(), body: body.to_owned() }
}

/// Runs a `counterctl serve` command that is expected to exit on its own (refused
/// options), and returns what it did; panics if it is still running after [`PATIENCE`]
/// (it started serving).
pub(crate) async fn serve_until_exit(mut command: Command) -> super::cli::Run {
    command.stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("counterctl serve exits instead of serving")
        .expect("counterctl runs");
    super::cli::Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// One HTTP/1.1 connection kept open across requests, spoken byte for byte, so that a test
/// knows which connection each request used and when the server closes it.
pub(crate) struct HttpConnection {
    stream: BufReader<tokio::net::TcpStream>,
}

impl HttpConnection {
    /// Connects to `address` (`HOST:PORT`).
    pub(crate) async fn open(address: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(address).await.expect("the server accepts connections");
        Self { stream: BufReader::new(stream) }
    }

    /// Sends one request with `headers` and no body, and reads its answer (which must have a
    /// `Content-Length`). An error means the server closed the connection.
    pub(crate) async fn request(
        &mut self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<RawResponse> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let mut request = format!("{method} {path_and_query} HTTP/1.1\r\nHost: localhost\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let status = head.split(' ').nth(1).and_then(|status| status.parse().ok());
        let status = status.unwrap_or_else(|| panic!("not an HTTP response: {head:?}"));
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().unwrap())
            })
            .unwrap_or_else(|| panic!("no Content-Length: {head:?}"));
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        let body = String::from_utf8(body).expect("a UTF-8 body");
        Ok(RawResponse { status, head: head.trim_end().to_owned(), body })
    }

    /// Waits up to `patience` for the server to close the connection (end of stream or a
    /// reset) and says whether it did; panics if the server sends anything instead.
    pub(crate) async fn closed_within(&mut self, patience: Duration) -> bool {
        use tokio::io::AsyncReadExt;

        let mut byte = [0u8; 1];
        match tokio::time::timeout(patience, self.stream.read(&mut byte)).await {
            Err(_) => false,
            Ok(Ok(0)) => true,
            Ok(Err(error)) if is_closed(&error) => true,
            Ok(Err(error)) => panic!("reading from the server failed: {error}"),
            Ok(Ok(_)) => panic!("the server sent something unasked: {:?}", String::from_utf8_lossy(&byte)),
        }
    }
}

/// Whether an I/O error means the peer closed the connection.
pub(crate) fn is_closed(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(error.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof)
}
