//! A Lambda Function URL on loopback for the shipped function: HTTP requests become the
//! payload format 2.0 events Lambda sends, and the function's 2.0 responses become HTTP
//! responses again, as AWS's "Request and response payloads" of Function URLs describe
//! (https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads).
//!
//! With auth type `AWS_IAM` ([`AuthType::AwsIam`]) every request must carry a valid SigV4
//! signature for service `lambda` by the test credentials, verified as the REST stand-in
//! verifies `execute-api` ([`verify_sigv4`]); a refused request gets the Function URL's
//! 403 and never reaches the function.
//!
//! The stand-in is also an HTTP proxy for its own host (and for no other): a request in
//! absolute form (`POST http://ID.lambda-url.us-east-1.on.aws/counter/increment HTTP/1.1`),
//! which is how an HTTP client sends a plain-http request to the proxy named by
//! `HTTP_PROXY`, is answered as the Function URL would answer it, with the `Host` header in
//! the signature. So a client can be pointed at [`FunctionUrl::aws_url`] through
//! [`FunctionUrl::proxy`] and sign for `lambda` as it would for the real Function URL.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::function::Function;
use super::rest_api::{IamCaller, verify_sigv4};
use super::runtime_api::Outcome;
use super::{LoopbackServer, create_counter_table, dynamodb, moto_url, unique_name};

/// The service name requests to a Function URL are signed for.
pub(crate) const LAMBDA: &str = "lambda";

/// The URL id, the first label of the Function URL's host (32 lowercase letters and digits).
pub(crate) const URL_ID: &str = "c0unterct1f0nct10nur1standin0000";

/// The account that owns the function.
pub(crate) const ACCOUNT: &str = "123456789012";

/// The `Message` of a Function URL's 403 to a request it does not let through (a capital
/// `M`, unlike API Gateway's `message`). AWS's Function URL pages do not print the body;
/// this is what Function URLs answer today as reported in
/// https://github.com/ant-media/Ant-Media-Server/issues/7827 and
/// https://github.com/brikis98/devops-book/pull/12 (earlier reports show plain
/// `{"Message":"Forbidden"}`). Some signature errors get a message of their own (an invalid
/// token: https://github.com/jamesmbourne/aws4-axios/issues/1553); the stand-in answers
/// every refusal with this one.
pub(crate) const FORBIDDEN_MESSAGE: &str = "Forbidden. For troubleshooting Function URL authorization issues, see: https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html";

/// The Function URL's auth type.
#[derive(Clone, Debug, Default)]
pub(crate) enum AuthType {
    /// `NONE`: anyone may call.
    #[default]
    None,
    /// `AWS_IAM`: only `caller`'s requests, SigV4-signed for `lambda`, get through.
    AwsIam(IamCaller),
}

pub(crate) struct FunctionUrl {
    /// Where the stand-in listens, `http://127.0.0.1:PORT`: the Function URL for requests
    /// sent straight to it, and the proxy for requests to [`Self::aws_url`].
    pub url: String,
    region: String,
    _server: LoopbackServer,
}

struct Front {
    function: Arc<Function>,
    auth: AuthType,
    domain: String,
    requests: AtomicU64,
}

impl FunctionUrl {
    /// A Function URL for `function` with auth type `auth`, in `us-east-1` (or the IAM
    /// caller's region).
    pub(crate) async fn start(function: Arc<Function>, auth: AuthType) -> Self {
        let region = match &auth {
            AuthType::AwsIam(caller) => caller.region.clone(),
            AuthType::None => "us-east-1".to_owned(),
        };
        let domain = format!("{URL_ID}.lambda-url.{region}.on.aws");
        let front = Arc::new(Front { function, auth, domain, requests: AtomicU64::new(0) });
        let app = axum::Router::new().fallback(forward).with_state(front);
        let server = LoopbackServer::start(app).await;
        Self { url: format!("http://{}", server.address), region, _server: server }
    }

    /// The Function URL's own address, `http://ID.lambda-url.REGION.on.aws` (plain http,
    /// so a client sends its requests to the proxy in absolute form, readable here).
    /// Reached only through [`Self::proxy`].
    pub(crate) fn aws_url(&self) -> String {
        format!("http://{URL_ID}.lambda-url.{}.on.aws", self.region)
    }

    /// The stand-in as an HTTP proxy, for `HTTP_PROXY`.
    pub(crate) fn proxy(&self) -> &str {
        &self.url
    }
}

async fn forward(
    State(front): State<Arc<Front>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    if uri.host().is_some_and(|host| host != front.domain) {
        // A request in absolute form for another host: this proxy serves only its own.
        return bad_gateway();
    }
    let access_key = match &front.auth {
        AuthType::AwsIam(caller) => {
            match verify_sigv4(caller, LAMBDA, &method, &uri, &headers, &body, SystemTime::now()) {
                Ok(access_key) => Some(access_key),
                Err(_) => return forbidden(),
            }
        }
        AuthType::None => None,
    };
    let sequence = front.requests.fetch_add(1, Ordering::Relaxed);
    let event = function_url_event(&front.domain, &method, &uri, &headers, &body, peer, access_key, sequence);
    match front.function.invoke(event).await {
        Outcome::Response(response) => http_response(&response).unwrap_or_else(bad_gateway),
        Outcome::Error { .. } => bad_gateway(),
    }
}

fn forbidden() -> Response<Body> {
    Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header("content-type", "application/json")
        .body(Body::from(json!({ "Message": FORBIDDEN_MESSAGE }).to_string()))
        .unwrap()
}

/// What a Function URL answers when the function fails or returns what it cannot read.
fn bad_gateway() -> Response<Body> {
    Response::builder().status(StatusCode::BAD_GATEWAY).body(Body::from("Internal Server Error")).unwrap()
}

/// The payload format 2.0 event a Function URL sends for one request: `rawPath` and
/// `rawQueryString` as sent (still percent-encoded), header names in lower case with a
/// repeated header's values joined with commas, cookies in `cookies` rather than
/// `headers`, and with `AWS_IAM` the caller in `requestContext.authorizer.iam`.
#[allow(clippy::too_many_arguments, reason = "the parts of one request")]
fn function_url_event(
    domain: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    peer: SocketAddr,
    access_key: Option<String>,
    sequence: u64,
) -> Value {
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::COOKIE {
            cookies.extend(value.split(';').map(str::trim).filter(|cookie| !cookie.is_empty()).map(str::to_owned));
            continue;
        }
        joined.entry(name.as_str().to_owned()).and_modify(|all| *all = format!("{all},{value}")).or_insert(value);
    }
    joined.insert("x-forwarded-for".into(), peer.ip().to_string());
    joined.insert("x-forwarded-proto".into(), "https".into());
    joined.insert("x-forwarded-port".into(), "443".into());
    joined.insert("x-amzn-trace-id".into(), format!("Root=1-6743f9a0-{sequence:024x}"));
    let user_agent = joined.get("user-agent").cloned().unwrap_or_default();

    let raw_query = uri.query().unwrap_or("");
    let mut query: Map<String, Value> = Map::new();
    for (name, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        match query.get_mut(name.as_ref()) {
            Some(Value::String(all)) => *all = format!("{all},{value}"),
            _ => {
                query.insert(name.into_owned(), Value::String(value.into_owned()));
            }
        }
    }
    let authorizer = match access_key {
        Some(access_key) => json!({"iam": {
            "accessKey": access_key,
            "accountId": ACCOUNT,
            "callerId": "AIDACOUNTERCTLTESTCALLER",
            "cognitoIdentity": null,
            "principalOrgId": null,
            "userArn": format!("arn:aws:iam::{ACCOUNT}:user/counterctl-test"),
            "userId": "AIDACOUNTERCTLTESTCALLER"
        }}),
        None => Value::Null,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": uri.path(),
        "rawQueryString": raw_query,
        "headers": joined,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": URL_ID,
            "authentication": null,
            "authorizer": authorizer,
            "domainName": domain,
            "domainPrefix": URL_ID,
            "http": {
                "method": method.as_str(),
                "path": uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": user_agent
            },
            "requestId": format!("e1506fd5-9e7b-434f-bd42-{sequence:012x}"),
            "routeKey": "$default",
            "stage": "$default",
            "time": "24/Nov/2026:10:00:00 +0000",
            "timeEpoch": u64::try_from(now.as_millis()).unwrap()
        },
        "isBase64Encoded": false
    });
    let fields = event.as_object_mut().unwrap();
    if !cookies.is_empty() {
        fields.insert("cookies".into(), json!(cookies));
    }
    if !query.is_empty() {
        fields.insert("queryStringParameters".into(), Value::Object(query));
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => fields.insert("body".into(), json!(text)),
            Err(_) => {
                fields.insert("isBase64Encoded".into(), json!(true));
                fields.insert("body".into(), json!(BASE64.encode(body)))
            }
        };
    }
    event
}

/// The HTTP response for a function's payload format 2.0 response; `None` when it cannot
/// be read (a Function URL answers 502). As AWS documents, valid JSON without a
/// `statusCode` is itself the body of a 200 `application/json` response.
fn http_response(response: &Value) -> Option<Response<Body>> {
    let Some(status) = response.get("statusCode") else {
        let builder = Response::builder().status(StatusCode::OK).header("content-type", "application/json");
        return builder.body(Body::from(response.to_string())).ok();
    };
    let status = StatusCode::from_u16(u16::try_from(status.as_u64()?).ok()?).ok()?;
    let mut builder = Response::builder().status(status);
    if let Some(headers) = response.get("headers").filter(|headers| !headers.is_null()) {
        for (name, value) in headers.as_object()? {
            builder = builder.header(name, value.as_str()?);
        }
    }
    if let Some(cookies) = response.get("cookies").filter(|cookies| !cookies.is_null()) {
        for cookie in cookies.as_array()? {
            builder = builder.header("set-cookie", cookie.as_str()?);
        }
    }
    let body = response.get("body").and_then(Value::as_str).unwrap_or("");
    let body = match response.get("isBase64Encoded").and_then(Value::as_bool) {
        Some(true) => BASE64.decode(body).ok()?,
        _ => body.as_bytes().to_vec(),
    };
    builder.body(Body::from(body)).ok()
}

/// Signs `request` with SigV4 as a client does, for `service` in `caller`'s region at `at`:
/// adds `x-amz-date`, `authorization` and, for temporary credentials,
/// `x-amz-security-token`. The host signed is the URL's.
pub(crate) fn sign_request(request: &mut reqwest::Request, caller: &IamCaller, service: &str, at: SystemTime) {
    let settings = aws_sigv4::http_request::SigningSettings::default();
    super::rest_api::sign_as_client(request, &caller.credentials(), &caller.region, service, at, settings);
}

/// The deployment with a Function URL instead of the REST API: a table, the shipped
/// function in `environments` execution environments, and the Function URL in front. Its
/// HTTP helpers come with [`super::Backend`], which calls the stand-in directly.
pub(crate) struct FunctionUrlStack {
    pub table: String,
    pub dynamodb: Client,
    /// In front of the function, which it keeps running.
    pub front: FunctionUrl,
    pub http: reqwest::Client,
}

impl FunctionUrlStack {
    pub(crate) async fn start(environments: usize, auth: AuthType) -> Self {
        let dynamodb = dynamodb(&moto_url()).await;
        let table = unique_name("counters");
        create_counter_table(&dynamodb, &table).await;
        let function = Arc::new(Function::start(&table, &moto_url(), environments).await);
        let front = FunctionUrl::start(function, auth).await;
        // Straight to the stand-in, whatever HTTP_PROXY the test run has.
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Self { table, dynamodb, front, http }
    }

    /// The counter's stored `lastValue`, read directly from DynamoDB; `None` before it exists.
    pub(crate) async fn stored(&self, counter: &str) -> Option<i64> {
        let key = AttributeValue::S(counter.to_owned());
        let item = self.dynamodb.get_item().table_name(&self.table).key("id", key).send().await.unwrap().item?;
        Some(item["lastValue"].as_n().expect("lastValue is a number").parse().unwrap())
    }
}

impl super::Backend for FunctionUrlStack {
    fn base_url(&self) -> &str {
        &self.front.url
    }

    fn http(&self) -> &reqwest::Client {
        &self.http
    }
}
