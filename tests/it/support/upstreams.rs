//! Upstreams that misbehave, for `serve --upstream` and the client's pools: one that loses
//! answers the way a front does when it times out after the function wrote, and one that
//! answers what no counter API would.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::LoopbackServer;

/// Forwards to a counter API, but answers the first `lose` block fetches (increments
/// with `count`) with API Gateway's integration timeout, `504 {"message": "Endpoint
/// request timed out"}`, after the upstream applied them.
pub(crate) struct LossyFront {
    pub url: String,
    state: Arc<Lossy>,
    _server: LoopbackServer,
}

struct Lossy {
    upstream: String,
    lose: Mutex<usize>,
    /// The `Idempotency-Key` of every block fetch, in arrival order.
    keys: Mutex<Vec<String>>,
    http: reqwest::Client,
}

impl LossyFront {
    pub(crate) async fn start(upstream: &str, lose: usize) -> Self {
        let state = Arc::new(Lossy {
            upstream: upstream.to_owned(),
            lose: Mutex::new(lose),
            keys: Mutex::default(),
            http: reqwest::Client::new(),
        });
        let app = axum::Router::new().fallback(forward).with_state(Arc::clone(&state));
        let server = LoopbackServer::start(app).await;
        Self { url: format!("http://{}", server.address), state, _server: server }
    }

    pub(crate) fn fetch_keys(&self) -> Vec<String> {
        self.state.keys.lock().unwrap().clone()
    }
}

async fn forward(State(front): State<Arc<Lossy>>, request: Request) -> Response {
    let target = format!("{}{}", front.upstream, request.uri().path_and_query().map_or("", |p| p.as_str()));
    let key = request.headers().get("idempotency-key").and_then(|key| key.to_str().ok()).map(str::to_owned);
    let is_fetch = request.uri().query().is_some_and(|query| query.contains("count="));
    let mut forwarded = front.http.request(request.method().clone(), &target);
    if let Some(key) = &key {
        forwarded = forwarded.header("idempotency-key", key);
    }
    let answer = forwarded.send().await.expect("the upstream answers");
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let body = answer.text().await.unwrap();
    if is_fetch {
        front.keys.lock().unwrap().push(key.unwrap_or_default());
        let mut lose = front.lose.lock().unwrap();
        if *lose > 0 {
            *lose -= 1;
            return (StatusCode::GATEWAY_TIMEOUT, axum::Json(json!({ "message": "Endpoint request timed out" })))
                .into_response();
        }
    }
    (status, [("content-type", "application/json")], body).into_response()
}

/// What a [`WrongUpstream`] answers to increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrong {
    NotJson,
    AnotherCounter,
    AnotherCount,
    /// Right the first time (values from 1), then ranges that start at 5 again.
    Overlapping,
}

/// A counter API that answers increments wrongly, as [`Wrong`] says; `GET
/// /counter/value` answers 404 `counter_not_found`.
pub(crate) struct WrongUpstream {
    pub url: String,
    _server: LoopbackServer,
}

impl WrongUpstream {
    pub(crate) async fn start(wrong: Wrong) -> Self {
        let answered = Arc::new(Mutex::new(0_u32));
        let app = axum::Router::new().fallback(move |request: Request| {
            let answered = Arc::clone(&answered);
            async move { answer(wrong, &answered, &request) }
        });
        let server = LoopbackServer::start(app).await;
        Self { url: format!("http://{}", server.address), _server: server }
    }
}

fn answer(wrong: Wrong, answered: &Mutex<u32>, request: &Request) -> Response {
    if request.uri().path() != "/counter/increment" {
        return (StatusCode::NOT_FOUND, axum::Json(json!({ "error_code": "counter_not_found" }))).into_response();
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
    let param = |name: &str| query.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    let counter = param("counter").unwrap_or_default();
    let count: i64 = param("count").and_then(|count| count.parse().ok()).unwrap_or(1);
    let mut answered = answered.lock().unwrap();
    *answered += 1;
    let body = match wrong {
        Wrong::NotJson => return (StatusCode::OK, "<html>proxy error page</html>").into_response(),
        Wrong::AnotherCounter => {
            json!({ "counter": "someone-else", "new_value": count, "first_value": 1, "count": count })
        }
        Wrong::AnotherCount => {
            json!({ "counter": counter, "new_value": count + 1, "first_value": 1, "count": count + 1 })
        }
        Wrong::Overlapping if *answered == 1 => {
            json!({ "counter": counter, "new_value": count, "first_value": 1, "count": count })
        }
        Wrong::Overlapping => json!({ "counter": counter, "new_value": count + 4, "first_value": 5, "count": count }),
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}
