//! The counter HTTP API: routes, validation and response bodies, the same wherever the
//! request comes from (a Lambda event, a local server) and wherever counters are kept.

use std::time::Instant;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::store::{CounterStore, Increment, StoreError};
use crate::validate::{self, InvalidCount, InvalidIdempotencyKey, InvalidName, InvalidQuery};

pub const INCREMENT_PATH: &str = "/counter/increment";
pub const VALUE_PATH: &str = "/counter/value";
/// The header that makes an increment idempotent.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The header an API key travels in, as API Gateway reads it.
pub const API_KEY_HEADER: &str = "x-api-key";

/// An HTTP request as the API sees it.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    /// Correlates the log line with the platform's request (Lambda's request id).
    pub request_id: &'a str,
    pub method: &'a Method,
    /// The path below the stage, e.g. `/counter/increment`.
    pub path: &'a str,
    /// The raw, percent-encoded query string.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Increment,
    Value,
}

impl Route {
    fn from_path(path: &str) -> Option<Self> {
        match path {
            INCREMENT_PATH => Some(Self::Increment),
            VALUE_PATH => Some(Self::Value),
            _ => None,
        }
    }

    fn method(self) -> Method {
        match self {
            Self::Increment => Method::POST,
            Self::Value => Method::GET,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Increment => INCREMENT_PATH,
            Self::Value => VALUE_PATH,
        }
    }
}

/// Every way a request can fail, each with its status and `error_code`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the `counter` query parameter is required, e.g. ?counter=mycounter")]
    CounterNotSpecified,
    #[error("{0}")]
    InvalidCounterName(#[from] InvalidName),
    #[error("{0}")]
    InvalidCount(#[from] InvalidCount),
    /// A query parameter that cannot be decoded: `counter` or `count`, answered with that
    /// parameter's code.
    #[error("the `{parameter}` query parameter cannot be read: {reason}")]
    UndecodableParameter { parameter: Parameter, reason: InvalidQuery },
    #[error("{0}")]
    InvalidIdempotencyKey(#[from] InvalidIdempotencyKey),
    #[error("no such route")]
    NotFound,
    #[error("this route only accepts {allow}")]
    MethodNotAllowed { allow: Method },
    #[error("counter {0:?} was never incremented")]
    CounterNotFound(String),
    #[error("{0}")]
    IdempotencyKeyReused(StoreError),
    #[error("another request with this Idempotency-Key is in progress; retry shortly")]
    IdempotencyKeyInProgress,
    #[error("the database is throttling requests; retry shortly")]
    Throttled,
    #[error("the counter could not be read or written")]
    Storage,
    #[error("the upstream counter API cannot be reached and this server holds no IDs for the counter; retry shortly")]
    UpstreamUnavailable { retry_after: std::time::Duration },
    /// The upstream's own refusal, answered as it was given.
    #[error("{}", description.as_deref().unwrap_or("refused by the upstream counter API"))]
    Upstream { status: StatusCode, code: String, description: Option<String> },
    #[error(
        "this function answers HTTP events (API Gateway REST or HTTP API, Function URLs, ALB); \
         the payload was not one"
    )]
    UnsupportedEvent,
}

/// The query parameters the API reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameter {
    Counter,
    Count,
}

impl Parameter {
    fn name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Count => "count",
        }
    }

    /// Its value, decoded; `None` when absent.
    fn read(self, request: &ApiRequest<'_>) -> Result<Option<String>, ApiError> {
        validate::query_param(request.query, self.name())
            .transpose()
            .map_err(|reason| ApiError::UndecodableParameter { parameter: self, reason })
    }
}

impl std::fmt::Display for Parameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::CounterNotSpecified
            | Self::InvalidCounterName(_)
            | Self::InvalidCount(_)
            | Self::UndecodableParameter { .. }
            | Self::InvalidIdempotencyKey(_)
            | Self::UnsupportedEvent => StatusCode::BAD_REQUEST,
            Self::NotFound | Self::CounterNotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::IdempotencyKeyReused(_) | Self::IdempotencyKeyInProgress => StatusCode::CONFLICT,
            Self::Throttled => StatusCode::TOO_MANY_REQUESTS,
            Self::Storage => StatusCode::INTERNAL_SERVER_ERROR,
            Self::UpstreamUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream { status, .. } => *status,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            Self::CounterNotSpecified => "counter_not_specified",
            Self::InvalidCounterName(_) => "invalid_counter_name",
            Self::InvalidCount(_) => "invalid_count",
            Self::UndecodableParameter { parameter: Parameter::Counter, .. } => "invalid_counter_name",
            Self::UndecodableParameter { parameter: Parameter::Count, .. } => "invalid_count",
            Self::InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            Self::NotFound => "404_not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::CounterNotFound(_) => "counter_not_found",
            Self::IdempotencyKeyReused(_) => "idempotency_key_reused",
            Self::IdempotencyKeyInProgress => "idempotency_key_in_progress",
            Self::Throttled => "throttled",
            Self::Storage => "error_incrementing_probably_database_error",
            Self::UnsupportedEvent => "unsupported_event",
            Self::UpstreamUnavailable { .. } => "upstream_unavailable",
            Self::Upstream { code, .. } => code,
        }
    }

    pub fn into_response(self) -> Response<String> {
        // Clients of the original service compare the 404 body byte for byte.
        let description = match &self {
            Self::NotFound => None,
            Self::Upstream { description, .. } => description.clone(),
            _ => Some(self.to_string()),
        };
        let body = ErrorBody { error_code: Cow::Borrowed(self.code()), error_description: description };
        let mut response = json_response(self.status(), &body);
        let headers = response.headers_mut();
        match self {
            Self::MethodNotAllowed { allow } => {
                headers
                    .insert(header::ALLOW, HeaderValue::from_str(allow.as_str()).expect("a method is a header value"));
            }
            Self::Throttled | Self::IdempotencyKeyInProgress => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::UpstreamUnavailable { retry_after } => {
                // Whole seconds (RFC 9110), rounded up and at least 1.
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::IdempotencyKeyReused { .. } => Self::IdempotencyKeyReused(error),
            StoreError::IdempotencyKeyInProgress => Self::IdempotencyKeyInProgress,
            StoreError::Throttled(_) => Self::Throttled,
            StoreError::Database(_) => Self::Storage,
            StoreError::Unavailable { retry_after, .. } => Self::UpstreamUnavailable { retry_after },
            StoreError::Refused { status, code, description } => Self::Upstream {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                code,
                description,
            },
        }
    }
}

// The bodies the API answers with, here once for the server and for clients
// (`counterctl increment` / `get` parse them).

/// An error: `error_code` says which, the description says why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody<'a> {
    pub error_code: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// An increment: the original service's body, `{"counter":…,"new_value":…}` (clients
/// compare it, so exactly these keys in this order), and with `count` the range too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incremented<'a> {
    pub counter: Cow<'a, str>,
    /// The last value reserved.
    pub new_value: i64,
    /// With `count`: the first value reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_value: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// A counter's current value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentValue<'a> {
    pub counter: Cow<'a, str>,
    pub value: i64,
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<String> {
    let body = serde_json::to_string(body).expect("response bodies serialize");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("a valid response")
}

/// What the request log line says about a request, filled in as it is understood.
#[derive(Default)]
struct RequestFacts {
    counter: Option<String>,
    count: Option<u32>,
    idempotent: bool,
    /// The value answered: the last reserved, or the counter's current value.
    value: Option<i64>,
}

/// Answers one request, and logs one line about it.
pub async fn handle<S: CounterStore + ?Sized>(store: &S, request: &ApiRequest<'_>) -> Response<String> {
    let started = Instant::now();
    let route = Route::from_path(request.path);
    let mut facts = RequestFacts::default();
    let result = match route {
        None => Err(ApiError::NotFound),
        Some(route) if *request.method != route.method() => Err(ApiError::MethodNotAllowed { allow: route.method() }),
        Some(Route::Increment) => increment(store, request, &mut facts).await,
        Some(Route::Value) => value(store, request, &mut facts).await,
    };
    let response = result.unwrap_or_else(ApiError::into_response);
    tracing::info!(
        request_id = request.request_id,
        method = %request.method,
        route = route.map_or("unknown", Route::path),
        counter = facts.counter.as_deref(),
        count = facts.count,
        idempotent = facts.idempotent,
        value = facts.value,
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}

/// The valid `counter` parameter, noted for the log line.
fn required_counter(request: &ApiRequest<'_>, facts: &mut RequestFacts) -> Result<String, ApiError> {
    let counter = match Parameter::Counter.read(request)? {
        None => return Err(ApiError::CounterNotSpecified),
        Some(name) if name.is_empty() => return Err(ApiError::CounterNotSpecified),
        Some(name) => validate::counter_name(&name)?.to_owned(),
    };
    facts.counter = Some(counter.clone());
    Ok(counter)
}

async fn increment<S: CounterStore + ?Sized>(
    store: &S,
    request: &ApiRequest<'_>,
    facts: &mut RequestFacts,
) -> Result<Response<String>, ApiError> {
    let counter = required_counter(request, facts)?;
    let count = match Parameter::Count.read(request)? {
        None => None,
        Some(raw) => Some(validate::count(&raw)?),
    };
    facts.count = count;
    let idempotency_key = validate::idempotency_key(request.headers.get_all(IDEMPOTENCY_KEY_HEADER).iter())?;
    facts.idempotent = idempotency_key.is_some();

    let increment = Increment { counter: &counter, count: count.unwrap_or(1), idempotency_key };
    let new_value = store.increment(&increment).await.map_err(store_error)?;
    facts.value = Some(new_value);
    Ok(match count {
        None => {
            let body = Incremented { counter: Cow::Borrowed(&counter), new_value, first_value: None, count: None };
            json_response(StatusCode::OK, &body)
        }
        Some(count) => {
            let first_value = Some(new_value - i64::from(count) + 1);
            let body = Incremented { counter: Cow::Borrowed(&counter), new_value, first_value, count: Some(count) };
            json_response(StatusCode::OK, &body)
        }
    })
}

async fn value<S: CounterStore + ?Sized>(
    store: &S,
    request: &ApiRequest<'_>,
    facts: &mut RequestFacts,
) -> Result<Response<String>, ApiError> {
    let counter = required_counter(request, facts)?;
    match store.value(&counter).await.map_err(store_error)? {
        Some(value) => {
            facts.value = Some(value);
            Ok(json_response(StatusCode::OK, &CurrentValue { counter: Cow::Borrowed(&counter), value }))
        }
        None => Err(ApiError::CounterNotFound(counter)),
    }
}

fn store_error(error: StoreError) -> ApiError {
    // An unavailable upstream is logged where it fails, once per attempt, not per request.
    if let StoreError::Throttled(_) | StoreError::Database(_) = error {
        tracing::error!(error = %error, "storage failed");
    }
    error.into()
}

/// The path below a stage's prefix: the routes are the same under any stage, so
/// `/prod/counter/value` is `/counter/value` below `prod`. Only a whole path segment is a
/// stage: `/product/...` and `/prod` alone are left as they are.
pub fn path_below_stage<'a>(path: &'a str, stage: &str) -> &'a str {
    path.strip_prefix('/')
        .and_then(|rest| rest.strip_prefix(stage))
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_stage_prefix_is_taken_off_only_as_a_whole_segment() {
        assert_eq!(path_below_stage("/counter/increment", "prod"), "/counter/increment");
        assert_eq!(path_below_stage("/prod/counter/increment", "prod"), "/counter/increment");
        assert_eq!(path_below_stage("/prod/", "prod"), "/");
        assert_eq!(path_below_stage("/product/counter/value", "prod"), "/product/counter/value");
        assert_eq!(path_below_stage("/prod", "prod"), "/prod");
    }

    /// Records what reaches the store; every counter answers 41 + count.
    #[derive(Default)]
    struct RecordingStore {
        calls: Mutex<Vec<String>>,
    }

    impl CounterStore for RecordingStore {
        async fn increment(&self, request: &Increment<'_>) -> Result<i64, StoreError> {
            self.calls.lock().unwrap().push(format!("{request:?}"));
            Ok(41 + i64::from(request.count))
        }

        async fn value(&self, counter: &str) -> Result<Option<i64>, StoreError> {
            self.calls.lock().unwrap().push(format!("value {counter}"));
            Ok((counter == "known").then_some(7))
        }
    }

    async fn call(store: &RecordingStore, method: Method, target: &str, headers: &[(&str, &str)]) -> Response<String> {
        let (path, query) = target.split_once('?').map_or((target, None), |(path, query)| (path, Some(query)));
        let mut header_map = HeaderMap::new();
        for (name, value) in headers {
            header_map
                .append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        let request = ApiRequest { request_id: "test", method: &method, path, query, headers: &header_map };
        handle(store, &request).await
    }

    fn error_code(response: &Response<String>) -> String {
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        body["error_code"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn valid_requests_reach_the_store_and_shape_the_body() {
        let store = RecordingStore::default();
        let response = call(&store, Method::POST, "/counter/increment?counter=a%20b", &[]).await;
        assert_eq!(response.body(), r#"{"counter":"a b","new_value":42}"#);
        let response =
            call(&store, Method::POST, "/counter/increment?counter=a&count=9", &[("Idempotency-Key", "k1")]).await;
        assert_eq!(response.body(), r#"{"counter":"a","new_value":50,"first_value":42,"count":9}"#);
        assert_eq!(
            call(&store, Method::GET, "/counter/value?counter=known", &[]).await.body(),
            r#"{"counter":"known","value":7}"#
        );
        let missing = call(&store, Method::GET, "/counter/value?counter=unknown", &[]).await;
        assert_eq!((missing.status().as_u16(), error_code(&missing)), (404, "counter_not_found".to_owned()));
        assert_eq!(
            *store.calls.lock().unwrap(),
            [
                r#"Increment { counter: "a b", count: 1, idempotency_key: None }"#,
                r#"Increment { counter: "a", count: 9, idempotency_key: Some("k1") }"#,
                "value known",
                "value unknown",
            ]
        );
    }

    #[tokio::test]
    async fn bad_requests_never_reach_the_store() {
        let store = RecordingStore::default();
        // method, target, headers, status, error_code
        type Case<'a> = (Method, &'a str, &'a [(&'a str, &'a str)], u16, &'a str);
        let cases: &[Case] = &[
            (Method::POST, "/counter/increment", &[], 400, "counter_not_specified"),
            (Method::POST, "/counter/increment?counter=", &[], 400, "counter_not_specified"),
            (Method::POST, "/counter/increment?counter=%C3%28", &[], 400, "invalid_counter_name"),
            (Method::POST, "/counter/increment?counter=a%0A", &[], 400, "invalid_counter_name"),
            (Method::POST, "/counter/increment?counter=a&count=0", &[], 400, "invalid_count"),
            (Method::POST, "/counter/increment?counter=a&count=%FF", &[], 400, "invalid_count"),
            (Method::POST, "/counter/increment?counter=h%G1", &[], 400, "invalid_counter_name"),
            (Method::POST, "/counter/increment?counter=h%", &[], 400, "invalid_counter_name"),
            (Method::POST, "/counter/increment?counter=x%2", &[], 400, "invalid_counter_name"),
            (Method::GET, "/counter/value?counter=h%G1", &[], 400, "invalid_counter_name"),
            (Method::POST, "/counter/increment?counter=a&count=1%", &[], 400, "invalid_count"),
            (Method::POST, "/counter/increment?counter=a&count=%G1", &[], 400, "invalid_count"),
            (
                Method::POST,
                "/counter/increment?counter=a",
                &[("idempotency-key", "a"), ("idempotency-key", "b")],
                400,
                "invalid_idempotency_key",
            ),
            (Method::GET, "/counter/increment?counter=a", &[], 405, "method_not_allowed"),
            (Method::DELETE, "/counter/value?counter=a", &[], 405, "method_not_allowed"),
            (Method::POST, "/nope?counter=a", &[], 404, "404_not_found"),
        ];
        for (method, target, headers, status, code) in cases {
            let response = call(&store, method.clone(), target, headers).await;
            assert_eq!(response.status().as_u16(), *status, "{method} {target}");
            assert_eq!(error_code(&response), *code, "{method} {target}");
        }
        assert!(store.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn routes_match_exact_paths_only() {
        assert_eq!(Route::from_path("/counter/increment"), Some(Route::Increment));
        assert_eq!(Route::from_path("/counter/value"), Some(Route::Value));
        for path in ["/", "", "/counter", "/counter/increment/", "/prod/counter/increment", "/COUNTER/value"] {
            assert_eq!(Route::from_path(path), None, "{path}");
        }
    }

    #[test]
    fn not_found_body_is_exactly_the_original() {
        let response = ApiError::NotFound.into_response();
        assert_eq!(response.status(), 404);
        assert_eq!(response.body(), r#"{"error_code":"404_not_found"}"#);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn errors_carry_code_description_and_headers() {
        let response = ApiError::MethodNotAllowed { allow: Method::POST }.into_response();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()[header::ALLOW], "POST");
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(body["error_code"], "method_not_allowed");
        assert!(body["error_description"].as_str().unwrap().contains("POST"));

        let throttled = ApiError::from(StoreError::Throttled("ProvisionedThroughputExceededException".into()));
        let response = throttled.into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert!(!response.body().contains("ProvisionedThroughput"), "no internals leak");

        let unavailable = StoreError::Unavailable {
            reason: "connection refused".into(),
            retry_after: std::time::Duration::from_millis(1500),
        };
        let response = ApiError::from(unavailable).into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert!(response.body().starts_with(r#"{"error_code":"upstream_unavailable""#));
        assert!(!response.body().contains("refused"), "no internals leak");

        let refused = StoreError::Refused {
            status: 409,
            code: "idempotency_key_reused".into(),
            description: Some("first".into()),
        };
        let response = ApiError::from(refused).into_response();
        assert_eq!(response.status(), 409);
        assert_eq!(response.body(), r#"{"error_code":"idempotency_key_reused","error_description":"first"}"#);

        let storage = ApiError::from(StoreError::Database("secret internals".into())).into_response();
        assert_eq!(storage.status(), 500);
        assert!(storage.body().starts_with(r#"{"error_code":"error_incrementing_probably_database_error""#));
        assert!(!storage.body().contains("secret"));
    }
}
