//! `counterctl serve`: the Lambda function's HTTP API, answered by the same code
//! (`counter_function::api`), on this machine, with counters in a local database.

mod connections;
mod metrics;
mod upstream;

use std::convert::Infallible;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use counter_function::api::{self, API_KEY_HEADER, ApiRequest, INCREMENT_PATH, VALUE_PATH};
use counter_function::store::{CounterStore, StoreError};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::gauge::Gauge;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::admin_socket;
use crate::cli::{OutputFormat, ServeArgs};
use crate::local_store::{self, LocalStore, Opened, SHUTDOWN_GRACE, StoreOptions};
use crate::retry::ACCEPT_BACKOFF;
use connections::{Deadlines, Watch, Watched};
use metrics::Metrics;
use upstream::Upstream;

/// An AWS install's invoke URL ends in this stage; the same paths work below it here, so
/// URLs copied from one work against the other.
const STAGE: &str = "prod";
/// The API reads no body; a client may send a small one, which is read and dropped.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// For load balancers and orchestrators: answered without a key.
const HEALTH_PATH: &str = "/healthz";
/// Prometheus's scrape target.
const METRICS_PATH: &str = "/metrics";
const CONTENT_TYPE_JSON: &str = "application/json";
/// File descriptors kept free of connections: the database and its log, the lock, the
/// listening sockets, admin connections, the runtime's own.
const RESERVED_DESCRIPTORS: u64 = 64;

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let api_key = api_key(&args)?;
    if api_key.is_none() && !args.listen.ip().to_canonical().is_loopback() {
        if !args.no_auth {
            anyhow::bail!(
                "refusing to serve on {} without an API key: anyone who can reach it could use up IDs\n\
                 hint: pass --api-key-file PATH (or --api-key KEY, or set COUNTERCTL_SERVE_API_KEY), \
                 or --no-auth if something in front of it decides who may call",
                args.listen
            );
        }
        eprintln!(
            "counterctl serve: warning: serving on {} with --no-auth: anyone who can reach it can use up IDs",
            args.listen
        );
    }
    if args.access_log {
        counter_function::logging::init_with(std::io::stderr);
    } else if !args.upstream.is_empty() {
        // What goes wrong upstream is logged either way.
        counter_function::logging::init_at(std::io::stderr, tracing::level_filters::LevelFilter::WARN);
    }
    // Taken before anything is served, so a stop request is never missed.
    let stop_signals = StopSignals::install().context("could not install the SIGINT and SIGTERM handlers")?;
    let max_connections = max_connections(args.max_connections);
    let metrics = Arc::new(Metrics::new());
    // Before a database is made or opened: an address in use changes nothing.
    let listener = TcpListener::bind(args.listen).await.map_err(|error| {
        let hint = match error.kind() {
            std::io::ErrorKind::AddrInUse => {
                "\nhint: another process listens there; pass --listen ADDRESS:PORT (port 0 picks a free one)"
            }
            _ => "",
        };
        anyhow::anyhow!("could not listen on {}: {error}{hint}", args.listen)
    })?;
    let (backend, mut local) = match args.upstream.as_slice() {
        [] => {
            let (store, local) = Local::open(&args, &metrics)?;
            (Backend::Local(store), Some(local))
        }
        urls => {
            let upstream = Arc::new(Upstream::connect(urls, &args.upstream_options, &state_dir(&args)?).await?);
            metrics.watch_upstream(Arc::clone(&upstream));
            (Backend::Upstream(upstream), None)
        }
    };
    let address = listener.local_addr().context("could not read the address the server listens on")?;
    let limits = Limits {
        header_timeout: Duration::from_secs(args.header_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_connections,
        api_key: api_key.is_some(),
    };
    let source = match (&backend, &local) {
        (Backend::Upstream(upstream), _) => {
            let mut urls = upstream.urls();
            Source::Upstream { preferred: urls.remove(0), fallbacks: urls }
        }
        (Backend::Local(_), Some(local)) => Source::Database(local_store::database_path(&local.data_dir)),
        (Backend::Local(_), None) => unreachable!("a local store comes with its data directory"),
    };
    let deadlines = Deadlines::new(limits.header_timeout, limits.idle_timeout);
    let sweeper = tokio::spawn(Arc::clone(&deadlines).sweep());
    let shared = Arc::new(Shared { backend, access_log: args.access_log, api_key, metrics, deadlines });
    let slots = Arc::new(Semaphore::new(max_connections));
    let connections = GracefulShutdown::new();
    // No hyper timers: they would cost a wakeup per request (see `connections`).
    let mut http = hyper::server::conn::http1::Builder::new();
    // A client may shut down its sending side once its request is sent and still wait for
    // the answer (its increment is committed either way). The connection closes after that
    // answer; one that stalls before it meets the header or idle timeout as any other.
    http.half_close(true);
    // Announced once the upstream is known not to be this server, which must be
    // answering to tell: a probe that comes back here says so.
    let upstream = match &shared.backend {
        Backend::Upstream(upstream) => Some(Arc::clone(upstream)),
        Backend::Local(_) => None,
    };
    let ended = async {
        if let Some(upstream) = upstream
            && let Err(refusal) = check_upstream(&upstream).await
        {
            return Ended::Refused(refusal);
        }
        announce(args.output.output, address, &source, &limits);
        stop_signals.received().await;
        Ended::Stopped
    };
    tokio::pin!(ended);
    let ended = loop {
        // Past the cap, new clients wait in the listen backlog until a connection ends.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("never closed"),
            ended = &mut ended => break ended,
        };
        let stream = tokio::select! {
            stream = accept(&listener) => stream,
            ended = &mut ended => break ended,
        };
        // Each answer is one write: Nagle's algorithm would only delay it.
        let _ = stream.set_nodelay(true);
        let watch = shared.deadlines.watch();
        let io = TokioIo::new(Watched::new(stream, Arc::clone(&watch), Arc::clone(&shared.deadlines)));
        let service = {
            let (shared, watch) = (Arc::clone(&shared), Arc::clone(&watch));
            service_fn(move |request| answer(Arc::clone(&shared), Arc::clone(&watch), request))
        };
        let connection = connections.watch(http.serve_connection(io, service));
        let open = OpenConnection::new(&shared.metrics.open_connections);
        tokio::spawn(async move {
            let _held = (slot, open);
            // A connection ends with an error when its client goes away mid-request; the
            // request was not answered, which is all that client can learn anyway.
            tokio::select! {
                _ = connection => {}
                () = watch.closed() => {}
            }
        });
    };
    drop(listener);
    if let Some(local) = &mut local {
        local.stop_admin().await;
    }
    drop(shared);
    // The sweeper keeps closing stalled clients meanwhile.
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            // Like a crash for those requests: what was not acknowledged may or may not be kept.
            eprintln!(
                "counterctl serve: stopped after waiting {}s for slow clients; their requests were not answered",
                SHUTDOWN_GRACE.as_secs()
            );
            return match ended {
                Ended::Stopped => Ok(ExitCode::SUCCESS),
                Ended::Refused(refusal) => Err(refusal),
            };
        }
    }
    sweeper.abort();
    if let Some(local) = local {
        // Every request has been answered; the committer closes the database and unlocks the dir.
        local.committer.await.context("the database committer crashed; what it had not acknowledged was not kept")?;
    }
    if let Ended::Refused(refusal) = ended {
        return Err(refusal);
    }
    eprintln!("counterctl serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Why serving ended.
enum Ended {
    /// SIGINT or SIGTERM.
    Stopped,
    /// The upstream is this server.
    Refused(anyhow::Error),
}

/// Refuses an upstream that is this server, however its URL names it (`localhost`,
/// `127.0.0.1`, another name or address of this machine, a proxy in front): a probe
/// carrying this server's instance id comes back here. Other findings are warnings:
/// the upstream may come up, or its key be rotated, later.
async fn check_upstream(upstream: &Upstream) -> anyhow::Result<()> {
    for (url, reach) in upstream.probe_each().await {
        match reach {
            upstream::Reach::Itself => anyhow::bail!(
                "--upstream {url} is this server itself (a request sent there came back here): it would forward \
                 each request to itself\n\
                 hint: give --upstream the URL of the counter API to reserve blocks at (an AWS stack's URL, or a \
                 serve --data-dir), not this server's"
            ),
            upstream::Reach::Sidecar => eprintln!(
                "counterctl serve: warning: the upstream {url} is another counterctl sidecar, which refuses requests \
                 a sidecar forwards ({} {}): point --upstream at the counter API itself",
                upstream::LOOP_STATUS,
                upstream::LOOP_CODE
            ),
            upstream::Reach::Refused => eprintln!(
                "counterctl serve: warning: the upstream {url} refuses this server (403): \
                 check --upstream-auth and --upstream-api-key-file (or COUNTERCTL_UPSTREAM_API_KEY)"
            ),
            upstream::Reach::Unreachable => {
                eprintln!("counterctl serve: warning: the upstream {url} does not answer yet");
            }
            upstream::Reach::Reachable => {}
        }
    }
    eprintln!("counterctl serve: the ranges received are recorded in {}", upstream.ledger_path().display());
    Ok(())
}

/// Where serve's counters are: its own database, or an upstream's blocks.
enum Backend {
    Local(LocalStore),
    Upstream(Arc<Upstream>),
}

impl CounterStore for Backend {
    async fn increment(&self, request: &counter_function::store::Increment<'_>) -> Result<i64, StoreError> {
        match self {
            Self::Local(store) => store.increment(request).await,
            Self::Upstream(upstream) => upstream.increment(request).await,
        }
    }

    async fn value(&self, counter: &str) -> Result<Option<i64>, StoreError> {
        match self {
            Self::Local(store) => store.value(counter).await,
            Self::Upstream(upstream) => upstream.value(counter).await,
        }
    }
}

/// What a local database brings besides its store: its directory, the admin socket for
/// `counterctl counters`, and the committer that writes batches.
struct Local {
    data_dir: PathBuf,
    admin: Option<tokio::task::JoinHandle<()>>,
    committer: tokio::task::JoinHandle<()>,
}

impl Local {
    fn open(args: &ServeArgs, metrics: &Arc<Metrics>) -> anyhow::Result<(LocalStore, Self)> {
        let given = args.data_dir.clone().or_else(|| std::env::var_os("COUNTERCTL_DATA_DIR").map(PathBuf::from));
        if let Some(data_dir) = given.as_ref().filter(|data_dir| data_dir.exists() && !data_dir.is_dir()) {
            anyhow::bail!(
                "{} is a file, not a directory\nhint: --data-dir names the directory the counter database is in",
                data_dir.display()
            );
        }
        // A mistyped directory must not become a new, empty store that hands out 1 again.
        if let Some(data_dir) = given.as_ref().filter(|data_dir| !data_dir.is_dir()) {
            anyhow::bail!(
                "there is no directory {}: a new one would be a new, empty store whose counters start at 1 again\n\
                 hint: check the path (the one your counters are in); to start a new store there, create it first \
                 (mkdir -m 700 {0})",
                data_dir.display()
            );
        }
        let data_dir = match given {
            Some(data_dir) => data_dir,
            None => local_store::default_data_dir()
                .context("could not find your data directory (is HOME set?); pass --data-dir")?,
        };
        let history = StoreOptions::new(state_dir(args)?, args.restored);
        let (store, committer, opened) = LocalStore::open(&data_dir, "`counterctl serve`", &history)
            .context("could not open the counter database")?;
        let shown = data_dir.display();
        match opened {
            Opened::New => eprintln!(
                "counterctl serve: no counter database in {shown}: started a new, empty one (its counters start at 1)"
            ),
            Opened::Replaced { floor } => eprintln!(
                "counterctl serve: --restored: started a new counter database in {shown} in place of the lost one; \
                 every counter starts above {floor}, past anything the lost one handed out"
            ),
            Opened::Raised { by } => eprintln!(
                "counterctl serve: --restored: raised every counter in {shown} by {by}, past anything the newer \
                 database handed out; the IDs in between are skipped"
            ),
            Opened::Existing if args.restored => eprintln!(
                "counterctl serve: --restored: {shown} holds this directory's newest database; nothing to raise"
            ),
            Opened::Existing => {}
        }
        let admin = match admin_socket::bind(&data_dir) {
            Ok(listener) => Some(tokio::spawn(admin_socket::serve(listener, store.clone()))),
            // Such as a path longer than a socket address holds: serving matters more.
            Err(error) => {
                eprintln!(
                    "counterctl serve: could not listen on {} ({error}); `counterctl counters --data-dir` \
                     can use this data directory only while serve is stopped",
                    admin_socket::socket_path(&data_dir).display()
                );
                None
            }
        };
        let metrics = Arc::clone(metrics);
        let committer = tokio::spawn(
            committer.run(move |batch_size, took, succeeded| metrics.committed(batch_size, took, succeeded)),
        );
        Ok((store, Self { data_dir, admin, committer }))
    }

    /// The committer ends once the connections' handles are gone too. A raise cut off
    /// here was committed or not, as a crash would leave it; raising again is harmless.
    async fn stop_admin(&mut self) {
        if let Some(admin) = self.admin.take() {
            admin.abort();
            let _ = admin.await;
            let _ = std::fs::remove_file(admin_socket::socket_path(&self.data_dir));
        }
    }
}

/// What serve hands out from, as announced.
enum Source {
    Database(PathBuf),
    Upstream { preferred: String, fallbacks: Vec<String> },
}

/// What every connection shares.
struct Shared {
    backend: Backend,
    /// `--access-log`: each request gets an id of its own, as on Lambda.
    access_log: bool,
    api_key: Option<ApiKey>,
    metrics: Arc<Metrics>,
    deadlines: Arc<Deadlines>,
}

/// What serve enforces, as announced.
struct Limits {
    header_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
    api_key: bool,
}

/// The key callers must send, kept as its SHA-256 so that comparing takes the same time
/// whatever was sent (length included).
struct ApiKey {
    digest: [u8; 32],
}

impl ApiKey {
    fn new(key: &str) -> Self {
        Self { digest: Sha256::digest(key.as_bytes()).into() }
    }

    fn admits(&self, headers: &HeaderMap) -> bool {
        headers.get(API_KEY_HEADER).is_some_and(|sent| Sha256::digest(sent.as_bytes()).ct_eq(&self.digest).into())
    }
}

/// `--api-key`, `--api-key-file`, else (without `--no-auth`) `COUNTERCTL_SERVE_API_KEY`:
/// what is typed outranks the environment.
fn api_key(args: &ServeArgs) -> anyhow::Result<Option<ApiKey>> {
    const ENV: &str = "COUNTERCTL_SERVE_API_KEY";
    let from_env = std::env::var(ENV).ok().filter(|key| !key.is_empty());
    let overridden = |by: &str| {
        if from_env.is_some() {
            eprintln!("counterctl serve: {by} is given, so {ENV} in the environment is not used");
        }
    };
    if let Some(key) = &args.api_key {
        overridden("--api-key");
        return Ok(Some(ApiKey::new(key)));
    }
    if let Some(path) = &args.api_key_file {
        overridden("--api-key-file");
        let key = crate::cli::api_key(&key_from_file(path, "the API key")?)
            .map_err(|rule| anyhow::anyhow!("the API key in {}: {rule}", path.display()))?;
        return Ok(Some(ApiKey::new(&key)));
    }
    if args.no_auth {
        overridden("--no-auth");
        return Ok(None);
    }
    match from_env {
        Some(key) => {
            let key = crate::cli::api_key(&key).map_err(|rule| anyhow::anyhow!("the API key in {ENV}: {rule}"))?;
            Ok(Some(ApiKey::new(&key)))
        }
        None => Ok(None),
    }
}

/// A key kept in a file (`--api-key-file`, `--upstream-api-key-file`), surrounding
/// whitespace ignored; `what` names it in the error.
fn key_from_file(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {what} from {}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// `--max-connections`, else what the open-files limit allows, with room for the
/// database's files, the listening sockets and the admin connections.
fn max_connections(asked: Option<usize>) -> usize {
    // The soft limit is raised to the hard one, as Go's runtime does at start.
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
        .unwrap_or(1024);
    let allowed = usize::try_from(limit.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX).max(1);
    match asked {
        Some(asked) if asked > allowed => {
            eprintln!(
                "counterctl serve: warning: --max-connections {asked} is more than the open-files limit \
                 ({limit}) allows; past about {allowed} connections, accepting pauses until some close"
            );
            asked
        }
        Some(asked) => asked,
        None => allowed,
    }
}

/// Counts a connection in the `open_connections` gauge while it lives.
struct OpenConnection(Gauge);

impl OpenConnection {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            // The client gave up before it was accepted.
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
                ) => {}
            Err(error) => {
                eprintln!(
                    "counterctl serve: could not accept a connection ({error}); trying again in {}s",
                    ACCEPT_BACKOFF.as_secs()
                );
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// `counterctl` in the user's data directory, e.g. `~/.local/share/counterctl`.
/// `--state-dir` (or `COUNTERCTL_STATE_DIR`), else [`local_store::default_state_dir`].
fn state_dir(args: &ServeArgs) -> anyhow::Result<PathBuf> {
    match &args.state_dir {
        Some(dir) => Ok(dir.clone()),
        None => local_store::default_state_dir()
            .context("could not find your state directory (is HOME set?); pass --state-dir"),
    }
}

/// Says where the server is. A closed stdout does not stop the server.
fn announce(format: OutputFormat, address: SocketAddr, source: &Source, limits: &Limits) {
    let url = format!("http://{address}");
    let (key_header, key_note) = if limits.api_key { (" -H 'x-api-key: KEY'", " --api-key KEY") } else { ("", "") };
    let announcement = match format {
        OutputFormat::Json => match source {
            Source::Database(database) => serde_json::json!({ "url": url, "database": database }),
            Source::Upstream { preferred, fallbacks } => {
                serde_json::json!({ "url": url, "upstream": preferred, "fallbacks": fallbacks })
            }
        }
        .to_string(),
        OutputFormat::Text => format!(
            "Serving the counter API at {url} (also below {url}/{STAGE}, like an AWS install)\n\
             {}\n\
             Requests must arrive within {}s, idle connections close after {}s, at most {} connections{}\n\
             Try it:\n  curl -X POST{key_header} '{url}/counter/increment?counter=mycounter'\n  {}\n\
             Stop with Ctrl-C.",
            match source {
                Source::Database(database) => format!("Counters are kept in {}", database.display()),
                Source::Upstream { preferred, fallbacks } if fallbacks.is_empty() => {
                    format!("IDs come from blocks reserved at {preferred}")
                }
                Source::Upstream { preferred, fallbacks } => format!(
                    "IDs come from blocks reserved at {preferred}, or while it fails at {}",
                    fallbacks.join(", then ")
                ),
            },
            limits.header_timeout.as_secs(),
            limits.idle_timeout.as_secs(),
            limits.max_connections,
            if limits.api_key { "; calls need the API key (x-api-key)" } else { "" },
            match source {
                Source::Database(_) => format!("counterctl increment mycounter --url {url}{key_note}"),
                // The CLI sends an Idempotency-Key, and keyed requests go to the upstream.
                Source::Upstream { .. } => {
                    "(requests without an Idempotency-Key are served from the blocks; counterctl increment sends one)"
                        .to_owned()
                }
            },
        ),
    };
    let _ = crate::progress::out(announcement);
}

/// The route a request is counted under: a fixed string, whatever the client sent.
fn route_of(path: &str) -> &'static str {
    [INCREMENT_PATH, VALUE_PATH, HEALTH_PATH, METRICS_PATH]
        .into_iter()
        .find(|route| *route == path)
        .unwrap_or("unknown")
}

async fn answer(
    shared: Arc<Shared>,
    watch: Arc<Watch>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // Only a log line shows them: without one, neither is taken.
    let started = shared.access_log.then(Instant::now);
    let request_id = if shared.access_log { Uuid::new_v4().to_string() } else { String::new() };
    let (parts, body) = request.into_parts();
    let path = api::path_below_stage(parts.uri.path(), STAGE);
    // A request whose body is malformed or too large is refused before it can count,
    // with a bare status like hyper's own refusals (bad request line, huge headers).
    let response = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Err(error) => {
            let status =
                if error.is::<LengthLimitError>() { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
            let refusal = Response::builder().status(status).header(CONNECTION, "close").body(Full::default());
            (refusal.expect("a status and a static header make a valid response"), Logged::No)
        }
        Ok(_) => {
            shared.deadlines.answering(&watch);
            respond(&shared, &parts, path, &request_id).await
        }
    };
    let (response, logged) = response;
    let route = route_of(path);
    let status = response.status().as_u16();
    if let (Some(started), Logged::No) = (started, logged) {
        // The API's log line, for what serve answers itself.
        let duration_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(request_id, method = %parts.method, route, idempotent = false, status, duration_ms, "request");
    }
    shared.metrics.answered(route, status);
    shared.deadlines.answered(&watch);
    Ok(response)
}

/// Whether the API logged its line about a request (with `--access-log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Logged {
    Yes,
    No,
}

/// Answers a request that has fully arrived.
async fn respond(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    path: &str,
    request_id: &str,
) -> (Response<Full<Bytes>>, Logged) {
    let reads = parts.method == Method::GET || parts.method == Method::HEAD;
    // Before the key: a sidecar must learn that its upstream is itself, key or not.
    if let Backend::Upstream(upstream) = &shared.backend
        && path != HEALTH_PATH
        && path != METRICS_PATH
        && let Some(from) = parts.headers.get(upstream::FORWARDED_HEADER)
    {
        let refusal = api::ApiError::from(upstream.refuse_forwarded(from.as_bytes()));
        tracing::warn!(description = %refusal, "refused a request another counterctl sidecar forwarded");
        return (refusal.into_response().map(Full::from), Logged::No);
    }
    // Load balancers ask without a key.
    if path == HEALTH_PATH && reads {
        return (health(&shared.backend).await, Logged::No);
    }
    // serve's own routes take GET (and HEAD), as the errors table says of every route.
    if (path == HEALTH_PATH || path == METRICS_PATH) && !reads {
        let refusal = api::ApiError::MethodNotAllowed { allow: Method::GET }.into_response();
        return (refusal.map(Full::from), Logged::No);
    }
    if let Some(key) = &shared.api_key
        && !key.admits(&parts.headers)
    {
        // API Gateway's answer to a missing or wrong key.
        return (response(StatusCode::FORBIDDEN, CONTENT_TYPE_JSON, r#"{"message":"Forbidden"}"#.into()), Logged::No);
    }
    if path == METRICS_PATH && reads {
        return (response(StatusCode::OK, metrics::CONTENT_TYPE, shared.metrics.exposition()), Logged::No);
    }
    let request =
        ApiRequest { request_id, method: &parts.method, path, query: parts.uri.query(), headers: &parts.headers };
    (api::handle(&shared.backend, &request).await.map(Full::from), Logged::Yes)
}

/// 200 while IDs can be handed out; upstream, whether the upstream answers too.
async fn health(backend: &Backend) -> Response<Full<Bytes>> {
    let (ok, body) = match backend {
        Backend::Local(store) => {
            let ok = store.check().await.is_ok();
            (ok, serde_json::json!({ "status": if ok { "ok" } else { "unavailable" } }))
        }
        Backend::Upstream(upstream) => {
            let health = upstream.health().await;
            let status = if health.ok { "ok" } else { "unavailable" };
            let endpoints: Vec<_> = health
                .endpoints
                .iter()
                .map(|endpoint| {
                    let mut state = serde_json::json!({
                        "url": endpoint.url,
                        "state": if endpoint.up() { "up" } else { "down" },
                    });
                    if let Some(failure) = &endpoint.failure {
                        state["failure"] = failure.as_str().into();
                    }
                    state
                })
                .collect();
            let mut body =
                serde_json::json!({ "status": status, "upstream": health.reach.name(), "upstreams": endpoints });
            if let Some(refused) = health.refused {
                body["refused"] = refused.into();
            }
            (health.ok, body)
        }
    };
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    response(status, CONTENT_TYPE_JSON, body.to_string())
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let response = Response::builder().status(status).header(CONTENT_TYPE, content_type).body(Full::from(body));
    response.expect("a status and a static header make a valid response")
}

/// SIGINT (Ctrl-C) and SIGTERM, the two ways to ask the server to stop.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<Self> {
        Ok(Self { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }

    async fn received(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        eprintln!("counterctl serve: stopping; requests in flight are answered first");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_counted_under_fixed_names() {
        assert_eq!(route_of("/counter/increment"), "/counter/increment");
        assert_eq!(route_of("/healthz"), "/healthz");
        assert_eq!(route_of("/metrics"), "/metrics");
        assert_eq!(route_of("/anything/else"), "unknown");
    }

    #[test]
    fn only_the_exact_api_key_is_admitted() {
        let key = ApiKey::new("k3y-that-is-long-enough-20");
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(API_KEY_HEADER, value.parse().unwrap());
            headers
        };
        assert!(key.admits(&with("k3y-that-is-long-enough-20")));
        assert!(!key.admits(&with("k3y-that-is-long-enough-2")));
        assert!(!key.admits(&with("k3y-that-is-long-enough-200")));
        assert!(!key.admits(&HeaderMap::new()));
    }
}
