//! Serving the API from AWS Lambda: HTTP events in (API Gateway REST and HTTP APIs,
//! Function URLs, ALB), proxy responses out, through the Lambda Runtime API.
//!
//! An event's `version` says its shape: payload format 2.0 (Function URLs, HTTP APIs) is
//! read here and answered in 2.0's shape; the others (REST APIs, ALB) go through
//! lambda_http. Both end in the same [`api::handle`].

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, timeout::TimeoutConfig};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyResponse;
use lambda_http::aws_lambda_events::encodings::Body;
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Adapter, LambdaEvent, Request, RequestExt, Service, service_fn};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::api::{self, ApiError, ApiRequest};
use crate::dynamo::DEFAULT_TABLE;
use crate::store::CounterStore;

/// What the function reads from the environment Lambda gives it.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `TABLE_NAME`, else the original service's `AtomicCounters`.
    pub table: String,
    pub region: String,
    pub credentials: Credentials,
    /// `AWS_ENDPOINT_URL_DYNAMODB` or `AWS_ENDPOINT_URL`, as the AWS SDKs read them
    /// (for DynamoDB Local, LocalStack or moto).
    pub endpoint_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0} is not set; Lambda sets it for every function")]
pub struct MissingVariable(&'static str);

impl Setup {
    pub fn from_environment() -> Result<Self, MissingVariable> {
        let var = |name| std::env::var(name).ok().filter(|value| !value.is_empty());
        let required = |name| var(name).ok_or(MissingVariable(name));
        Ok(Self {
            table: var("TABLE_NAME").unwrap_or_else(|| DEFAULT_TABLE.to_owned()),
            region: required("AWS_REGION").or_else(|_| required("AWS_DEFAULT_REGION"))?,
            credentials: Credentials::new(
                required("AWS_ACCESS_KEY_ID")?,
                required("AWS_SECRET_ACCESS_KEY")?,
                var("AWS_SESSION_TOKEN"),
                None,
                "lambda-environment",
            ),
            endpoint_url: var("AWS_ENDPOINT_URL_DYNAMODB").or_else(|| var("AWS_ENDPOINT_URL")),
        })
    }

    /// The DynamoDB client for this environment, made once and shared by all requests.
    pub fn dynamodb_client(&self) -> aws_sdk_dynamodb::Client {
        let http_client =
            aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            // An attempt that times out may still have been applied, and its retry then
            // skips a value; so only a hung connection is cut short.
            .operation_attempt_timeout(Duration::from_secs(5))
            .build();
        let mut config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(self.credentials.clone())
            .http_client(http_client)
            .timeout_config(timeouts);
        if let Some(endpoint) = &self.endpoint_url {
            config = config.endpoint_url(endpoint);
        }
        aws_sdk_dynamodb::Client::from_conf(config.build())
    }
}

/// What the function returns to the Runtime API.
#[derive(Serialize)]
#[serde(untagged)]
enum Reply<HttpResponse> {
    /// lambda_http's response in the shape a REST API (or ALB) event's source expects.
    Http(HttpResponse),
    /// The payload format 2.0 response, to a 2.0 event.
    V2(ResponseV2),
    /// A direct invocation with something that is not an HTTP event still gets a
    /// proxy-shaped answer, not a failed invocation.
    UnsupportedEvent(Box<ApiGatewayProxyResponse>),
}

/// Serves invocations until the runtime shuts the environment down.
pub async fn run<S: CounterStore + 'static>(store: S) -> Result<(), lambda_http::Error> {
    let store = Arc::new(store);
    lambda_http::lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let store = Arc::clone(&store);
        async move { reply(&*store, event).await }
    }))
    .await
}

/// The answer to one invocation, in the shape its event's source expects. Every kind of
/// event is answered by the same [`api::handle`].
async fn reply<S: CounterStore + ?Sized>(
    store: &S,
    event: LambdaEvent<Box<RawValue>>,
) -> Result<Reply<impl Serialize + use<S>>, Infallible> {
    let LambdaEvent { payload, context } = event;
    if is_payload_v2(payload.get()) {
        // Boxed, as lambda_http boxes the handler's future: the store's futures nest deep.
        let answer: Pin<Box<dyn Future<Output = ResponseV2> + Send + '_>> =
            Box::pin(answer_v2(store, payload.get(), &context.request_id));
        return Ok(Reply::V2(answer.await));
    }
    // API Gateway REST APIs (and HTTP APIs' format 1.0) and ALB: lambda_http's events.
    match serde_json::from_str::<LambdaRequest>(payload.get()) {
        Ok(request) => {
            let http = service_fn(|request: Request| async move { Ok::<_, Infallible>(answer(store, request).await) });
            Adapter::from(http).call(LambdaEvent::new(request, context)).await.map(Reply::Http)
        }
        Err(error) => {
            tracing::warn!(request_id = context.request_id, error = %error, "not an HTTP event");
            Ok(Reply::UnsupportedEvent(Box::new(unsupported_event())))
        }
    }
}

async fn answer<S: CounterStore + ?Sized>(store: &S, request: Request) -> http::Response<Body> {
    let request_id = request.lambda_context_ref().map(|context| context.request_id.clone()).unwrap_or_default();
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.stage.as_deref(),
        Some(RequestContext::ApiGatewayV2(context)) => context.stage.as_deref(),
        _ => None,
    };
    // lambda_http puts the API Gateway stage in front of the path (`/prod/counter/...`).
    let path = path_below_stage(request.uri().path(), stage);
    let api_request = ApiRequest {
        request_id: &request_id,
        method: request.method(),
        path,
        query: request.uri().query(),
        headers: request.headers(),
    };
    api::handle(store, &api_request).await.map(Body::Text)
}

/// The routes are the same under any stage, so a stage in front of the path
/// (`/prod/counter/...`) is taken off. `$default` (Function URLs, HTTP APIs' default
/// stage) is never in the path.
fn path_below_stage<'a>(path: &'a str, stage: Option<&str>) -> &'a str {
    match stage {
        Some(stage) if stage != "$default" => api::path_below_stage(path, stage),
        _ => path,
    }
}

/// Whether an event is in payload format version 2.0 (`"version": "2.0"`), the one Lambda
/// Function URLs send, as do API Gateway HTTP APIs by default. REST API and ALB events
/// have no `version`; HTTP APIs' format 1.0 says `"1.0"` and is shaped as REST's.
fn is_payload_v2(payload: &str) -> bool {
    #[derive(Deserialize)]
    struct Versioned {
        version: Option<String>,
    }
    serde_json::from_str::<Versioned>(payload).is_ok_and(|event| event.version.as_deref() == Some("2.0"))
}

/// The parts of a payload format 2.0 event the API reads: AWS's "Request payload format"
/// of Function URLs, <https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads>,
/// which is API Gateway HTTP APIs' format 2.0. `rawQueryString` is the query as the client
/// sent it, still percent-encoded (decoded by `validate::query_param`, as the query lambda_http
/// rebuilds from a REST event); a repeated header arrives once, its values joined with
/// commas. `cookies`, `body` and the caller's identity (`requestContext.authorizer.iam`)
/// are not needed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventV2 {
    raw_path: Option<String>,
    raw_query_string: Option<String>,
    headers: Option<HashMap<String, String>>,
    request_context: RequestContextV2,
}

#[derive(Deserialize)]
struct RequestContextV2 {
    http: HttpV2,
    /// `$default` for a Function URL; an HTTP API's named stage is also in `rawPath`.
    stage: Option<String>,
}

#[derive(Deserialize)]
struct HttpV2 {
    method: String,
    path: Option<String>,
}

/// A payload format 2.0 response: AWS's "Response payload format" of Function URLs,
/// <https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads>
/// (`statusCode`, `headers`, `body`, `isBase64Encoded`; the API sets no cookies). The
/// format has one value per header name: repeats would be joined with commas.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseV2 {
    status_code: u16,
    headers: BTreeMap<String, String>,
    body: String,
    is_base64_encoded: bool,
}

impl From<http::Response<String>> for ResponseV2 {
    fn from(response: http::Response<String>) -> Self {
        let mut headers = BTreeMap::<String, String>::new();
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes());
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|joined| *joined = format!("{joined},{value}"))
                .or_insert_with(|| value.into_owned());
        }
        Self { status_code: response.status().as_u16(), headers, body: response.into_body(), is_base64_encoded: false }
    }
}

/// Answers a payload format 2.0 event (`"version": "2.0"`) through the API.
async fn answer_v2<S: CounterStore + ?Sized>(store: &S, payload: &str, request_id: &str) -> ResponseV2 {
    let event = match serde_json::from_str::<EventV2>(payload) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(request_id, error = %error, "a malformed payload format 2.0 event");
            return ApiError::UnsupportedEvent.into_response().into();
        }
    };
    let (Ok(method), Some(headers)) =
        (Method::from_bytes(event.request_context.http.method.as_bytes()), header_map(event.headers))
    else {
        tracing::warn!(request_id, "a payload format 2.0 event with an invalid method or header");
        return ApiError::UnsupportedEvent.into_response().into();
    };
    let raw_path = event.raw_path.or(event.request_context.http.path).unwrap_or_else(|| "/".to_owned());
    let query = event.raw_query_string.filter(|query| !query.is_empty());
    let api_request = ApiRequest {
        request_id,
        method: &method,
        path: path_below_stage(&raw_path, event.request_context.stage.as_deref()),
        query: query.as_deref(),
        headers: &headers,
    };
    api::handle(store, &api_request).await.into()
}

/// The event's headers as HTTP headers, each name with its one (perhaps comma-joined)
/// value; `None` when one is not valid HTTP.
fn header_map(headers: Option<HashMap<String, String>>) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers.unwrap_or_default() {
        map.append(HeaderName::from_bytes(name.as_bytes()).ok()?, HeaderValue::from_bytes(value.as_bytes()).ok()?);
    }
    Some(map)
}

fn unsupported_event() -> ApiGatewayProxyResponse {
    let error = ApiError::UnsupportedEvent.into_response();
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(error.status().as_u16());
    response.headers = error.headers().clone();
    response.body = Some(Body::Text(error.into_body()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use serde_json::{Value, json};

    use crate::store::{Increment, StoreError};

    /// Counters in memory; remembers the idempotency key of each increment.
    #[derive(Default)]
    struct MemoryStore {
        counters: Mutex<HashMap<String, i64>>,
        keys: Mutex<Vec<Option<String>>>,
    }

    impl CounterStore for MemoryStore {
        async fn increment(&self, request: &Increment<'_>) -> Result<i64, StoreError> {
            self.keys.lock().unwrap().push(request.idempotency_key.map(str::to_owned));
            let mut counters = self.counters.lock().unwrap();
            let value = counters.entry(request.counter.to_owned()).or_default();
            *value += i64::from(request.count);
            Ok(*value)
        }

        async fn value(&self, counter: &str) -> Result<Option<i64>, StoreError> {
            Ok(self.counters.lock().unwrap().get(counter).copied())
        }
    }

    /// What the function returns to the Runtime API for `event`, as JSON.
    async fn invoke(store: &MemoryStore, event: &Value) -> Value {
        let payload = RawValue::from_string(event.to_string()).unwrap();
        let mut context = lambda_http::Context::default();
        context.request_id = "8476a536-e9f4-11e8-9739-000000000001".to_owned();
        let reply = reply(store, LambdaEvent::new(payload, context)).await.unwrap();
        serde_json::to_value(reply).unwrap()
    }

    fn body(response: &Value) -> Value {
        serde_json::from_str(response["body"].as_str().expect("a string body")).expect("a JSON body")
    }

    /// A Function URL event with AWS_IAM auth, as AWS's "Request payload format" shows it
    /// (https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads).
    /// `query_map` is `queryStringParameters`, which the function must not need.
    fn function_url_event(method: &str, raw_path: &str, raw_query: &str, query_map: Value, headers: Value) -> Value {
        let mut all_headers = json!({
            "accept": "*/*",
            "host": "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws",
            "user-agent": "counterctl ünïcødé",
            "x-amzn-trace-id": "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700",
            "x-forwarded-for": "198.51.100.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https"
        });
        all_headers.as_object_mut().unwrap().extend(headers.as_object().unwrap().clone());
        json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": raw_path,
            "rawQueryString": raw_query,
            "cookies": ["session=1", "theme=dark"],
            "headers": all_headers,
            "queryStringParameters": query_map,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abcdefghijklmnopqrstuvwxyz012345",
                "authentication": null,
                "authorizer": {"iam": {
                    "accessKey": "AKIDCOUNTERCTLTEST",
                    "accountId": "111122223333",
                    "callerId": "AIDACKCEVSQ6C2EXAMPLE",
                    "cognitoIdentity": null,
                    "principalOrgId": null,
                    "userArn": "arn:aws:iam::111122223333:user/caller",
                    "userId": "AIDACKCEVSQ6C2EXAMPLE"
                }},
                "domainName": "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws",
                "domainPrefix": "abcdefghijklmnopqrstuvwxyz012345",
                "http": {
                    "method": method,
                    "path": raw_path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "198.51.100.7",
                    "userAgent": "counterctl ünïcødé"
                },
                "requestId": "e1506fd5-9e7b-434f-bd42-4f8fa224b599",
                "routeKey": "$default",
                "stage": "$default",
                "time": "24/Nov/2026:10:00:00 +0000",
                "timeEpoch": 1795514400000u64
            },
            "body": null,
            "pathParameters": null,
            "isBase64Encoded": false,
            "stageVariables": null
        })
    }

    /// An API Gateway REST API proxy event (v1) for `{proxy+}` under stage `prod`, with the
    /// query as API Gateway decodes it.
    fn rest_event(method: &str, proxy: &str, query: &[(&str, &str)]) -> Value {
        let single: serde_json::Map<String, Value> = query.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        let multi: serde_json::Map<String, Value> = query.iter().map(|(k, v)| ((*k).to_owned(), json!([v]))).collect();
        json!({
            "resource": "/{proxy+}",
            "path": format!("/{proxy}"),
            "httpMethod": method,
            "headers": {"host": "abcdef1234.execute-api.us-east-1.amazonaws.com"},
            "multiValueHeaders": {"host": ["abcdef1234.execute-api.us-east-1.amazonaws.com"]},
            "queryStringParameters": if single.is_empty() { Value::Null } else { Value::Object(single) },
            "multiValueQueryStringParameters": if multi.is_empty() { Value::Null } else { Value::Object(multi) },
            "pathParameters": {"proxy": proxy},
            "stageVariables": null,
            "requestContext": {
                "resourcePath": "/{proxy+}",
                "httpMethod": method,
                "path": format!("/prod/{proxy}"),
                "accountId": "123456789012",
                "stage": "prod",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "identity": {"sourceIp": "198.51.100.7"},
                "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
                "apiId": "abcdef1234"
            },
            "body": null,
            "isBase64Encoded": false
        })
    }

    #[tokio::test]
    async fn function_url_event_gets_a_payload_2_0_response() {
        let store = MemoryStore::default();
        let event = function_url_event(
            "POST",
            "/counter/increment",
            "counter=tenants",
            json!({"counter": "tenants"}),
            json!({}),
        );
        let response = invoke(&store, &event).await;
        assert_eq!(
            response,
            json!({
                "statusCode": 200,
                "headers": {"content-type": "application/json"},
                "body": r#"{"counter":"tenants","new_value":1}"#,
                "isBase64Encoded": false
            })
        );
        let read =
            function_url_event("GET", "/counter/value", "counter=tenants", json!({"counter": "tenants"}), json!({}));
        assert_eq!(body(&invoke(&store, &read).await), json!({"counter": "tenants", "value": 1}));
    }

    #[tokio::test]
    async fn function_url_raw_query_is_percent_decoded_with_plus_as_space_as_rest_queries_are() {
        let store = MemoryStore::default();
        // What a client sends for the name "a b+c d": `%20` and `+` are spaces, `%2B` a plus.
        let event = function_url_event(
            "POST",
            "/counter/increment",
            "counter=a%20b%2Bc+d&count=2",
            json!({"counter": "a b+c d", "count": "2"}),
            json!({}),
        );
        let response = invoke(&store, &event).await;
        assert_eq!(response["statusCode"], 200, "{response}");
        assert_eq!(body(&response), json!({"counter": "a b+c d", "new_value": 2, "first_value": 1, "count": 2}));
        // The same name through a REST API, which hands the function decoded parameters.
        let rest = invoke(&store, &rest_event("POST", "counter/increment", &[("counter", "a b+c d")])).await;
        assert_eq!(body(&rest), json!({"counter": "a b+c d", "new_value": 3}));
        assert_eq!(store.counters.lock().unwrap().keys().collect::<Vec<_>>(), ["a b+c d"]);
    }

    #[tokio::test]
    async fn function_url_repeated_query_parameter_uses_the_last_value_not_the_joined_map() {
        let store = MemoryStore::default();
        // Function URLs join a repeated parameter's values in `queryStringParameters`.
        let query_map = json!({"counter": "first,second"});
        let event =
            function_url_event("POST", "/counter/increment", "counter=first&counter=second", query_map, json!({}));
        assert_eq!(body(&invoke(&store, &event).await), json!({"counter": "second", "new_value": 1}));
    }

    #[tokio::test]
    async fn function_url_repeated_header_arrives_comma_joined_and_is_one_value() {
        let store = MemoryStore::default();
        let headers = json!({"idempotency-key": "order-7,retry-2"});
        let event =
            function_url_event("POST", "/counter/increment", "counter=orders", json!({"counter": "orders"}), headers);
        let response = invoke(&store, &event).await;
        assert_eq!(response["statusCode"], 200, "{response}");
        assert_eq!(*store.keys.lock().unwrap(), [Some("order-7,retry-2".to_owned())]);
    }

    #[tokio::test]
    async fn function_url_errors_keep_their_status_headers_and_bodies() {
        let store = MemoryStore::default();
        let wrong_method =
            function_url_event("GET", "/counter/increment", "counter=c", json!({"counter": "c"}), json!({}));
        let response = invoke(&store, &wrong_method).await;
        assert_eq!(response["statusCode"], 405);
        assert_eq!(response["headers"], json!({"allow": "POST", "content-type": "application/json"}));
        assert_eq!(body(&response)["error_code"], "method_not_allowed");

        let unknown =
            function_url_event("POST", "/prod/counter/increment", "counter=c", json!({"counter": "c"}), json!({}));
        let response = invoke(&store, &unknown).await;
        assert_eq!(
            (response["statusCode"].as_u64(), body(&response)),
            (Some(404), json!({"error_code": "404_not_found"}))
        );

        let missing = function_url_event("GET", "/counter/value", "", Value::Null, json!({}));
        let response = invoke(&store, &missing).await;
        assert_eq!(
            (response["statusCode"].as_u64(), &body(&response)["error_code"]),
            (Some(400), &json!("counter_not_specified"))
        );

        let never =
            function_url_event("GET", "/counter/value", "counter=never", json!({"counter": "never"}), json!({}));
        assert_eq!(invoke(&store, &never).await["statusCode"], 404);
        assert!(store.counters.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn http_api_named_stage_in_the_raw_path_is_not_part_of_the_route() {
        let store = MemoryStore::default();
        let mut event =
            function_url_event("POST", "/prod/counter/increment", "counter=v2", json!({"counter": "v2"}), json!({}));
        event["requestContext"]["stage"] = json!("prod");
        assert_eq!(body(&invoke(&store, &event).await), json!({"counter": "v2", "new_value": 1}));
    }

    #[tokio::test]
    async fn malformed_2_0_event_is_a_400_in_the_2_0_shape() {
        let store = MemoryStore::default();
        let mut bad_method =
            function_url_event("POST", "/counter/increment", "counter=c", json!({"counter": "c"}), json!({}));
        bad_method["requestContext"]["http"]["method"] = json!("NOT A METHOD");
        for event in [json!({"version": "2.0"}), json!({"version": "2.0", "requestContext": {}}), bad_method] {
            let response = invoke(&store, &event).await;
            let keys: Vec<&String> = response.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["body", "headers", "isBase64Encoded", "statusCode"], "{event}");
            assert_eq!(response["statusCode"], 400);
            assert_eq!(body(&response)["error_code"], "unsupported_event");
        }
        assert!(store.counters.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn rest_event_still_gets_a_proxy_response_from_the_same_api() {
        let store = MemoryStore::default();
        let response = invoke(&store, &rest_event("POST", "counter/increment", &[("counter", "tenants")])).await;
        assert_eq!(response["statusCode"], 200);
        assert_eq!(response["multiValueHeaders"]["content-type"], json!(["application/json"]));
        assert_eq!(response["body"], r#"{"counter":"tenants","new_value":1}"#);
        let v2 = function_url_event(
            "POST",
            "/counter/increment",
            "counter=tenants",
            json!({"counter": "tenants"}),
            json!({}),
        );
        assert_eq!(body(&invoke(&store, &v2).await), json!({"counter": "tenants", "new_value": 2}));
        // Not an HTTP event at all: the proxy-shaped 400 as before.
        let response = invoke(&store, &json!({"key1": "value1"})).await;
        assert_eq!(
            (response["statusCode"].as_u64(), &body(&response)["error_code"]),
            (Some(400), &json!("unsupported_event"))
        );
    }
}
