//! `counterctl serve`: the Lambda function's HTTP API, answered by the same code
//! (`counter_function::api`), on this machine, with counters in a local database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use counter_function::api::{self, ApiRequest};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::oneshot;

use crate::cli::{OutputFormat, ServeArgs};
use crate::local_store::{self, LocalStore};

/// An AWS install's invoke URL ends in this stage; the same paths work below it here, so
/// URLs copied from one work against the other.
const STAGE_PREFIX: &str = "/prod";
/// The API reads no body; a client may send a small one, which is read and dropped.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a stop waits for requests in flight; a client that never finishes sending its
/// request must not keep the server from stopping.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let data_dir = match args.data_dir {
        Some(data_dir) => data_dir,
        None => default_data_dir()?,
    };
    // Taken before anything is served, so a stop request is never missed.
    let stop_signals = StopSignals::install().context("could not install the SIGINT and SIGTERM handlers")?;
    let (store, writer) = LocalStore::open(&data_dir).context("could not open the counter database")?;
    let listener =
        TcpListener::bind(args.listen).await.with_context(|| format!("could not listen on {}", args.listen))?;
    let address = listener.local_addr().context("could not read the address the server listens on")?;
    announce(args.output.output, address, &local_store::database_path(&data_dir));

    let app = axum::Router::new().fallback(answer).with_state(Arc::new(store));
    let (stop_requested, stopping) = oneshot::channel();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        stop_signals.received().await;
        let _ = stop_requested.send(());
    });
    let grace_over = async {
        match stopping.await {
            Ok(()) => tokio::time::sleep(SHUTDOWN_GRACE).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = server.into_future() => served.context("the HTTP server failed")?,
        () = grace_over => {
            // Like a crash for those requests: what was not acknowledged may or may not be kept.
            eprintln!(
                "counterctl serve: stopped after waiting {}s for slow clients; their requests were not answered",
                SHUTDOWN_GRACE.as_secs()
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    // Every request has been answered; the writer closes the database and unlocks the dir.
    tokio::task::spawn_blocking(move || writer.finish()).await.context("could not wait for the database writer")??;
    eprintln!("counterctl serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// `counterctl` in the user's data directory, e.g. `~/.local/share/counterctl`.
fn default_data_dir() -> anyhow::Result<PathBuf> {
    let data = dirs::data_dir().context("could not find your data directory (is HOME set?); pass --data-dir")?;
    Ok(data.join("counterctl"))
}

fn announce(format: OutputFormat, address: SocketAddr, database: &Path) {
    let url = format!("http://{address}");
    match format {
        OutputFormat::Json => {
            let announcement = serde_json::json!({ "url": url, "database": database });
            println!("{announcement}");
        }
        OutputFormat::Text => {
            println!("Serving the counter API at {url} (also below {url}{STAGE_PREFIX}, like an AWS install)");
            println!("Counters are kept in {}", database.display());
            println!("Try it:");
            println!("  curl -X POST '{url}/counter/increment?counter=mycounter'");
            println!("  counterctl increment mycounter --url {url}");
            println!("Stop with Ctrl-C.");
        }
    }
}

async fn answer(
    State(store): State<Arc<LocalStore>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> axum::response::Response {
    // A request whose body is malformed or too large is refused before it can count,
    // with a bare status like the HTTP layer's own refusals (bad request line, huge headers).
    if let Err(error) = axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        let too_large =
            std::error::Error::source(&error).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        let status = if too_large { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
        return (status, [(axum::http::header::CONNECTION, "close")]).into_response();
    }
    let request = ApiRequest {
        request_id: "local",
        method: &method,
        path: path_below_stage(uri.path()),
        query: uri.query(),
        headers: &headers,
    };
    api::handle(&*store, &request).await.into_response()
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
