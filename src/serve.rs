//! `counterctl serve`: the Lambda function's HTTP API, answered by the same code
//! (`counter_function::api`), on this machine, with counters in a local database.

use std::convert::Infallible;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use counter_function::api::{self, ApiRequest};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::CONNECTION;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::admin_socket;
use crate::cli::{OutputFormat, ServeArgs};
use crate::local_store::{self, LocalStore};

/// An AWS install's invoke URL ends in this stage; the same paths work below it here, so
/// URLs copied from one work against the other.
const STAGE_PREFIX: &str = "/prod";
/// The API reads no body; a client may send a small one, which is read and dropped.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a stop waits for requests in flight; a client that never finishes sending its
/// request must not keep the server from stopping.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long accepting pauses after an error such as running out of file descriptors,
/// giving open connections time to close.
pub const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let data_dir = match args.data_dir {
        Some(data_dir) => data_dir,
        None => default_data_dir()?,
    };
    // Taken before anything is served, so a stop request is never missed.
    let stop_signals = StopSignals::install().context("could not install the SIGINT and SIGTERM handlers")?;
    let (store, committer) =
        LocalStore::open(&data_dir, "`counterctl serve`").context("could not open the counter database")?;
    let listener =
        TcpListener::bind(args.listen).await.with_context(|| format!("could not listen on {}", args.listen))?;
    let address = listener.local_addr().context("could not read the address the server listens on")?;
    announce(args.output.output, address, &local_store::database_path(&data_dir));

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
    let committer = tokio::spawn(committer.run());
    let connections = GracefulShutdown::new();
    // No header read timeout: hyper's timer would cost a wakeup per request, and a client
    // that never finishes its request delays a stop by SHUTDOWN_GRACE at most.
    let http = hyper::server::conn::http1::Builder::new();
    let stop = stop_signals.received();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            stream = accept(&listener) => stream,
            () = &mut stop => break,
        };
        // Each answer is one write: Nagle's algorithm would only delay it.
        let _ = stream.set_nodelay(true);
        let store = store.clone();
        let service = service_fn(move |request| answer(store.clone(), request));
        let connection = http.serve_connection(TokioIo::new(stream), service);
        // A connection ends with an error when its client goes away mid-request; the
        // request was not answered, which is all that client can learn anyway.
        tokio::spawn(connections.watch(connection));
    }
    drop(listener);
    // The committer ends once the connections' handles are gone too. A raise cut off
    // here was committed or not, as a crash would leave it; raising again is harmless.
    if let Some(admin) = admin {
        admin.abort();
        let _ = admin.await;
        let _ = std::fs::remove_file(admin_socket::socket_path(&data_dir));
    }
    drop(store);
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            // Like a crash for those requests: what was not acknowledged may or may not be kept.
            eprintln!(
                "counterctl serve: stopped after waiting {}s for slow clients; their requests were not answered",
                SHUTDOWN_GRACE.as_secs()
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    // Every request has been answered; the committer closes the database and unlocks the dir.
    committer.await.context("the database committer crashed; what it had not acknowledged was not kept")?;
    eprintln!("counterctl serve: stopped");
    Ok(ExitCode::SUCCESS)
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
fn default_data_dir() -> anyhow::Result<PathBuf> {
    let data = dirs::data_dir().context("could not find your data directory (is HOME set?); pass --data-dir")?;
    Ok(data.join("counterctl"))
}

/// Says where the server is. A closed stdout does not stop the server.
fn announce(format: OutputFormat, address: SocketAddr, database: &Path) {
    let url = format!("http://{address}");
    let announcement = match format {
        OutputFormat::Json => serde_json::json!({ "url": url, "database": database }).to_string(),
        OutputFormat::Text => format!(
            "Serving the counter API at {url} (also below {url}{STAGE_PREFIX}, like an AWS install)\n\
             Counters are kept in {}\n\
             Try it:\n  curl -X POST '{url}/counter/increment?counter=mycounter'\n  \
             counterctl increment mycounter --url {url}\n\
             Stop with Ctrl-C.",
            database.display()
        ),
    };
    let _ = crate::progress::out(announcement);
}

async fn answer(store: LocalStore, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    // A request whose body is malformed or too large is refused before it can count,
    // with a bare status like hyper's own refusals (bad request line, huge headers).
    if let Err(error) = Limited::new(body, MAX_BODY_BYTES).collect().await {
        let status =
            if error.is::<LengthLimitError>() { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
        let refusal = Response::builder().status(status).header(CONNECTION, "close").body(Full::default());
        return Ok(refusal.expect("a status and a static header make a valid response"));
    }
    let request = ApiRequest {
        request_id: "local",
        method: &parts.method,
        path: path_below_stage(parts.uri.path()),
        query: parts.uri.query(),
        headers: &parts.headers,
    };
    Ok(api::handle(&store, &request).await.map(Full::from))
}

fn path_below_stage(path: &str) -> &str {
    path.strip_prefix(STAGE_PREFIX).filter(|rest| rest.starts_with('/')).unwrap_or(path)
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
    use super::path_below_stage;

    #[test]
    fn the_prod_stage_prefix_is_optional() {
        assert_eq!(path_below_stage("/counter/increment"), "/counter/increment");
        assert_eq!(path_below_stage("/prod/counter/increment"), "/counter/increment");
        assert_eq!(path_below_stage("/prod/"), "/");
        // Only a whole path segment is a stage.
        assert_eq!(path_below_stage("/product/counter/value"), "/product/counter/value");
        assert_eq!(path_below_stage("/prod"), "/prod");
    }
}
