//! API Gateway's REST API on loopback for one `{proxy+}` resource with Lambda proxy
//! integration under stage `prod`: HTTP requests become the v1 proxy events API Gateway
//! sends, and proxy responses become HTTP responses again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use serde_json::{Value, json};

use super::function::Function;
use super::runtime_api::Outcome;

pub const STAGE: &str = "prod";

pub struct RestApi {
    /// The invoke URL, e.g. `http://127.0.0.1:PORT/prod`.
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

impl RestApi {
    pub async fn start(function: Arc<Function>) -> Self {
        let app = axum::Router::new().fallback(forward).with_state(function);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/{STAGE}", listener.local_addr().unwrap());
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
        Self { url, server }
    }
}

impl Drop for RestApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(
    State(function): State<Arc<Function>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let proxy = uri.path().strip_prefix(&format!("/{STAGE}/")).filter(|proxy| !proxy.is_empty());
    let Some(proxy) = proxy else {
        // Only `/{proxy+}` has a method; API Gateway answers anything else like this.
        return gateway_error(StatusCode::FORBIDDEN, "Missing Authentication Token");
    };
    let query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let body = (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
    let event = rest_event(&method, proxy, &query, &headers, body, &peer.ip().to_string());
    match function.invoke(event).await {
        Outcome::Response(response) => {
            proxy_response(&response).unwrap_or_else(|| gateway_error(StatusCode::BAD_GATEWAY, "Internal server error"))
        }
        Outcome::Error { .. } => gateway_error(StatusCode::BAD_GATEWAY, "Internal server error"),
    }
}

/// The event API Gateway sends for `{proxy+}` under stage `prod`. `proxy` is the path
/// below the stage without its leading slash; headers and query pairs in request order.
pub fn rest_event(
    method: &Method,
    proxy: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    body: Option<String>,
    source_ip: &str,
) -> Value {
    let single = |pairs: &[(String, String)]| -> Value {
        if pairs.is_empty() {
            return Value::Null;
        }
        let map: BTreeMap<&str, &str> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        json!(map)
    };
    let multi = |pairs: &[(String, String)]| -> Value {
        if pairs.is_empty() {
            return Value::Null;
        }
        let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (key, value) in pairs {
            map.entry(key).or_default().push(value);
        }
        json!(map)
    };
    let path = format!("/{proxy}");
    let user_agent = headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("user-agent")).map(|(_, v)| v.clone());
    json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method.as_str(),
        "headers": single(headers),
        "multiValueHeaders": multi(headers),
        "queryStringParameters": single(query),
        "multiValueQueryStringParameters": multi(query),
        "pathParameters": {"proxy": proxy},
        "stageVariables": null,
        "requestContext": {
            "resourceId": "a1b2c3",
            "resourcePath": "/{proxy+}",
            "httpMethod": method.as_str(),
            "extendedRequestId": "BQGojGkyoAMFZ1g=",
            "requestTime": "24/Nov/2026:10:00:00 +0000",
            "path": format!("/{STAGE}{path}"),
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": "abcdef1234",
            "requestTimeEpoch": 1795514400000u64,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {
                "cognitoIdentityPoolId": null,
                "accountId": null,
                "cognitoIdentityId": null,
                "caller": null,
                "sourceIp": source_ip,
                "principalOrgId": null,
                "accessKey": null,
                "cognitoAuthenticationType": null,
                "cognitoAuthenticationProvider": null,
                "userArn": null,
                "userAgent": user_agent,
                "user": null
            },
            "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
            "deploymentId": "d1e2f3",
            "apiId": "abcdef1234"
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// An HTTP response from a Lambda proxy integration response; `None` when malformed,
/// which API Gateway answers with 502.
fn proxy_response(response: &Value) -> Option<Response<Body>> {
    let status = StatusCode::from_u16(u16::try_from(response.get("statusCode")?.as_u64()?).ok()?).ok()?;
    let mut builder = Response::builder().status(status);
    if let Some(headers) = response.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            builder = builder.header(name, value.as_str()?);
        }
    }
    if let Some(headers) = response.get("multiValueHeaders").and_then(Value::as_object) {
        for (name, values) in headers {
            for value in values.as_array()? {
                if !builder.headers_ref()?.contains_key(name) {
                    builder = builder.header(name, value.as_str()?);
                }
            }
        }
    }
    if response.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        return None; // this function only sends text
    }
    let body = response.get("body").and_then(Value::as_str).unwrap_or("").to_owned();
    builder.body(Body::from(body)).ok()
}

fn gateway_error(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(json!({ "message": message }).to_string()))
        .unwrap()
}
