//! The Lambda Runtime API on loopback, as Lambda serves it to `bootstrap`: long-polled
//! `invocation/next` with the request id, deadline, function ARN and trace headers, and
//! `response`, `error` and `init/error` posts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::LoopbackServer;
use tokio::sync::{mpsc, oneshot};

pub(crate) const FUNCTION_TIMEOUT: Duration = Duration::from_secs(15);

/// How an invocation ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Response(Value),
    Error { error_type: Option<String>, body: Value },
}

struct Invocation {
    event: Value,
    outcome: oneshot::Sender<Outcome>,
}

struct Shared {
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_errors: Mutex<Vec<Value>>,
    next_polls: tokio::sync::watch::Sender<u64>,
    request_ids: AtomicU64,
}

pub(crate) struct RuntimeApi {
    pub address: SocketAddr,
    submit: mpsc::UnboundedSender<Invocation>,
    shared: Arc<Shared>,
    _server: LoopbackServer,
}

impl RuntimeApi {
    pub(crate) async fn start() -> Self {
        let (submit, queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(queue),
            in_flight: Mutex::default(),
            init_errors: Mutex::default(),
            next_polls: tokio::sync::watch::Sender::new(0),
            request_ids: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(respond))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(Arc::clone(&shared));
        let server = LoopbackServer::start(app).await;
        Self { address: server.address, submit, shared, _server: server }
    }

    /// Invokes the function with `event`, as Lambda's Invoke API would.
    pub(crate) async fn invoke(&self, event: Value) -> Outcome {
        let (outcome, answer) = oneshot::channel();
        self.submit.send(Invocation { event, outcome }).expect("runtime API is running");
        tokio::time::timeout(FUNCTION_TIMEOUT, answer)
            .await
            .expect("the function answered within its timeout")
            .expect("the invocation was answered")
    }

    /// Counts `invocation/next` polls: a bootstrap is initialized when it first polls.
    pub(crate) fn next_polls(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.next_polls.subscribe()
    }

    pub(crate) fn init_errors(&self) -> Vec<Value> {
        self.shared.init_errors.lock().unwrap().clone()
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared.next_polls.send_modify(|polls| *polls += 1);
    let invocation = shared.queue.lock().await.recv().await;
    let Some(Invocation { event, outcome }) = invocation else {
        return StatusCode::GONE.into_response();
    };
    let sequence = shared.request_ids.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("8476a536-e9f4-11e8-9739-{sequence:012x}");
    shared.in_flight.lock().unwrap().insert(request_id.clone(), outcome);
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + FUNCTION_TIMEOUT;
    let headers = [
        ("lambda-runtime-aws-request-id", request_id),
        ("lambda-runtime-deadline-ms", deadline.as_millis().to_string()),
        ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:AtomicCounter".into()),
        (
            "lambda-runtime-trace-id",
            format!("Root=1-5bef4de7-ad49b0e87f6ef6c8{sequence:08x};Parent=9a9197af755a6419;Sampled=1"),
        ),
        ("content-type", "application/json".into()),
    ];
    (headers, event.to_string()).into_response()
}

fn finish(shared: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    match shared.in_flight.lock().unwrap().remove(id) {
        Some(waiter) => {
            let _ = waiter.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn respond(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let response = serde_json::from_slice(&body).expect("the function's response is JSON");
    finish(&shared, &id, Outcome::Response(response))
}

async fn fail(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let error_type = headers.get("lambda-runtime-function-error-type").map(|v| v.to_str().unwrap().to_owned());
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    finish(&shared, &id, Outcome::Error { error_type, body })
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.init_errors.lock().unwrap().push(body);
    StatusCode::ACCEPTED
}
