//! An HTTP proxy on loopback between an AWS client and moto that records each AWS action
//! and can answer chosen actions with an injected error instead of forwarding them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    /// Per action: the fault and how many more requests get it.
    faults: Mutex<HashMap<String, (Fault, usize)>>,
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
        });
        let app = axum::Router::new().fallback(forward).with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, shared, server }
    }

    /// The actions seen so far, in order, e.g. `UpdateItem`.
    pub fn actions(&self) -> Vec<String> {
        self.shared.actions.lock().unwrap().clone()
    }

    /// Answers the next `times` requests for `action` with `fault`.
    pub fn inject(&self, action: &str, fault: Fault, times: usize) {
        self.shared.faults.lock().unwrap().insert(action.to_owned(), (fault, times));
    }
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
        match faults.get_mut(&action) {
            Some((fault, remaining)) if *remaining > 0 => {
                *remaining -= 1;
                Some(fault.clone())
            }
            _ => None,
        }
    };
    if let Some(fault) = fault {
        let body = serde_json::json!({ "__type": fault.code, "message": fault.message }).to_string();
        return Response::builder()
            .status(fault.status)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amzn-errortype", &fault.code)
            .body(Body::from(body))
            .unwrap();
    }
    let url = format!("{}{}", shared.upstream, uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut request = shared.client.request(method, url).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(upstream) => {
            let mut response = Response::builder().status(upstream.status());
            for (name, value) in upstream.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    response = response.header(name, value);
                }
            }
            response.body(Body::from(upstream.bytes().await.unwrap_or_default())).unwrap()
        }
        Err(error) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from(format!("proxy: {error}")))
            .unwrap(),
    }
}
