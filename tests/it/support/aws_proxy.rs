//! An HTTP proxy on loopback between an AWS client and moto that records each AWS action
//! and can answer chosen actions with an injected error instead of forwarding them.
//! Injected errors are shaped like the service's protocol (JSON, query/XML or REST-JSON),
//! so the SDK parses their code and message as it would AWS's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};

/// An error response to inject.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    /// The AWS error code, e.g. `ProvisionedThroughputExceededException`.
    pub code: String,
    pub message: String,
}

impl Fault {
    pub fn new(status: u16, code: &str, message: &str) -> Self {
        Self { status, code: code.into(), message: message.into() }
    }
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    actions: Mutex<Vec<String>>,
    /// Per action pattern: the fault and how many more requests get it.
    faults: Mutex<HashMap<String, (Fault, usize)>>,
    /// Fail the mutating request with this 1-based number (counted from when it was set).
    nth_mutating: Mutex<Option<(usize, Fault)>>,
    /// Added before forwarding each request, to mimic AWS's round trips.
    latency: Mutex<Duration>,
    /// Requests forwarded to moto and not yet answered.
    in_flight: AtomicUsize,
}

pub struct AwsProxy {
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl AwsProxy {
    pub async fn start(upstream: &str) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            actions: Mutex::default(),
            faults: Mutex::default(),
            nth_mutating: Mutex::default(),
            latency: Mutex::default(),
            in_flight: AtomicUsize::new(0),
        });
        // CreateFunction carries the whole zip, past axum's default 2 MB limit.
        let app = axum::Router::new()
            .fallback(forward)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, shared, server }
    }

    /// The actions seen so far, in order, e.g. `UpdateItem`.
    pub fn actions(&self) -> Vec<String> {
        self.shared.actions.lock().unwrap().clone()
    }

    /// The actions seen so far that change something (not Get/List/Describe).
    pub fn mutating_actions(&self) -> Vec<String> {
        self.actions().into_iter().filter(|action| is_mutating(action)).collect()
    }

    /// Answers the next `times` requests for `action` with `fault`. In `action`, `*`
    /// stands for one path segment, e.g. `DELETE /restapis/*`.
    pub fn inject(&self, action: &str, fault: Fault, times: usize) {
        self.shared.faults.lock().unwrap().insert(action.to_owned(), (fault, times));
    }

    /// Answers the `n`th mutating request from now (1-based) with `fault`.
    pub fn fail_nth_mutating(&self, n: usize, fault: Fault) {
        *self.shared.nth_mutating.lock().unwrap() = Some((n, fault));
    }

    /// Waits until every request forwarded so far has been answered by moto.
    pub async fn settle(&self) {
        while self.shared.in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[allow(dead_code, reason = "benches/install.rs uses it to measure the critical path")]
    pub fn set_latency(&self, latency: Duration) {
        *self.shared.latency.lock().unwrap() = latency;
    }
}

/// Whether an action changes something: reads are Get/List/Describe calls, or GET for
/// REST protocols.
pub fn is_mutating(action: &str) -> bool {
    let read_prefixes = ["Get", "List", "Describe", "Scan", "GET "];
    !read_prefixes.iter().any(|prefix| action.starts_with(prefix))
}

/// `pattern` with `*` matching exactly one path segment (no `/`).
fn matches(pattern: &str, action: &str) -> bool {
    let (pattern, action): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), action.split('/').collect());
    pattern.len() == action.len() && pattern.iter().zip(&action).all(|(p, a)| *p == "*" || p == a)
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The action a request calls: JSON protocols name it in `X-Amz-Target`, query
/// protocols in the `Action` form field, REST protocols by method and path.
fn action_of(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> String {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    if let Some((_, action)) = form_urlencoded::parse(body).find(|(key, _)| key == "Action") {
        return action.into_owned();
    }
    format!("{method} {}", uri.path())
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let action = action_of(&method, &uri, &headers, &body);
    shared.actions.lock().unwrap().push(action.clone());
    let fault = {
        let mut faults = shared.faults.lock().unwrap();
        let injected = faults.iter_mut().find(|(pattern, (_, remaining))| *remaining > 0 && matches(pattern, &action));
        match injected {
            Some((_, (fault, remaining))) => {
                *remaining -= 1;
                Some(fault.clone())
            }
            None => None,
        }
    };
    let fault = fault.or_else(|| {
        let mut nth = shared.nth_mutating.lock().unwrap();
        match nth.as_mut() {
            Some((n, _)) if is_mutating(&action) && *n > 1 => {
                *n -= 1;
                None
            }
            Some(_) if is_mutating(&action) => nth.take().map(|(_, fault)| fault),
            _ => None,
        }
    });
    if let Some(fault) = fault {
        return fault_response(&fault, &headers, &body);
    }
    let latency = *shared.latency.lock().unwrap();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let url = format!("{}{}", shared.upstream, uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut request = shared.client.request(method, url).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    // Forwarded to the end even when the client goes away (as a killed process's last
    // call still reaches AWS); `settle` waits for these.
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    let in_flight = Arc::clone(&shared);
    let forwarded = tokio::spawn(async move {
        let answer = match request.send().await {
            Ok(upstream) => {
                let mut response = Response::builder().status(upstream.status());
                for (name, value) in upstream.headers() {
                    if name != "content-length" && name != "transfer-encoding" {
                        response = response.header(name, value);
                    }
                }
                response.body(Body::from(upstream.bytes().await.unwrap_or_default())).unwrap()
            }
            Err(error) => {
                Response::builder().status(StatusCode::BAD_GATEWAY).body(Body::from(format!("proxy: {error}"))).unwrap()
            }
        };
        in_flight.in_flight.fetch_sub(1, Ordering::SeqCst);
        answer
    });
    forwarded.await.unwrap()
}

/// An error response in the request's protocol: JSON protocols name the code in
/// `__type`, query protocols (IAM, STS) answer XML, REST-JSON protocols (Lambda, API
/// Gateway) put it in `x-amzn-errortype`.
fn fault_response(fault: &Fault, headers: &HeaderMap, body: &[u8]) -> Response<Body> {
    let builder = Response::builder().status(fault.status).header("x-amzn-requestid", "injected-fault");
    if headers.contains_key("x-amz-target") {
        let body = serde_json::json!({ "__type": fault.code, "message": fault.message }).to_string();
        return builder.header("content-type", "application/x-amz-json-1.0").body(Body::from(body)).unwrap();
    }
    if form_urlencoded::parse(body).any(|(key, _)| key == "Action") {
        let body = format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error>\
             <RequestId>injected-fault</RequestId></ErrorResponse>",
            fault.code, fault.message
        );
        return builder.header("content-type", "text/xml").body(Body::from(body)).unwrap();
    }
    let body = serde_json::json!({ "message": fault.message }).to_string();
    builder
        .header("content-type", "application/json")
        .header("x-amzn-errortype", &fault.code)
        .body(Body::from(body))
        .unwrap()
}
