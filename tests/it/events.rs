//! The bootstrap fed raw Lambda events through the Runtime API: the exact events API
//! Gateway (REST and HTTP APIs) and Function URLs send, and direct invocations.

use axum::http::Method;
use serde_json::{Value, json};

use crate::support::function::Function;
use crate::support::rest_api::rest_event;
use crate::support::runtime_api::Outcome;
use crate::support::{create_counter_table, dynamodb, moto_url, unique_name};

async fn function() -> Function {
    let table = unique_name("events");
    create_counter_table(&dynamodb(&moto_url()).await, &table).await;
    Function::start(&table, &moto_url(), 1).await
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn answer(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Response(response) => response,
        Outcome::Error { error_type, body } => panic!("invocation failed: {error_type:?} {body}"),
    }
}

/// A response header as API Gateway reads it, from `headers` or `multiValueHeaders`.
fn header<'a>(response: &'a Value, name: &str) -> Option<&'a str> {
    response["headers"][name].as_str().or_else(|| response["multiValueHeaders"][name][0].as_str())
}

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().expect("body is a string")).expect("body is JSON")
}

#[tokio::test]
async fn rest_proxy_event_gets_a_proxy_response() {
    let function = function().await;
    let headers = pairs(&[("host", "abcdef1234.execute-api.us-east-1.amazonaws.com"), ("user-agent", "curl/8.5.0")]);
    let event = rest_event(
        &Method::POST,
        "counter/increment",
        &pairs(&[("counter", "mycounter")]),
        &headers,
        None,
        "198.51.100.7",
    );
    let response = answer(function.invoke(event).await);
    assert_eq!(response["statusCode"], 200);
    assert_eq!(response["isBase64Encoded"], false);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    assert_eq!(response["body"], r#"{"counter":"mycounter","new_value":1}"#);
}

#[tokio::test]
async fn rest_event_without_query_string_is_a_400_not_a_crash() {
    let function = function().await;
    for method in [Method::POST, Method::GET] {
        let proxy = if method == Method::POST { "counter/increment" } else { "counter/value" };
        let event = rest_event(&method, proxy, &[], &[], None, "198.51.100.7");
        assert!(event["queryStringParameters"].is_null() && event["multiValueQueryStringParameters"].is_null());
        let response = answer(function.invoke(event).await);
        assert_eq!(response["statusCode"], 400);
        assert_eq!(body(&response)["error_code"], "counter_not_specified");
    }
}

#[tokio::test]
async fn rest_event_with_repeated_query_parameter_uses_the_last_value() {
    let function = function().await;
    let query = pairs(&[("counter", "first"), ("counter", "second")]);
    let event = rest_event(&Method::POST, "counter/increment", &query, &[], None, "198.51.100.7");
    let response = answer(function.invoke(event).await);
    assert_eq!(body(&response), json!({"counter": "second", "new_value": 1}));
}

/// An HTTP API (payload format 2.0) event; Lambda Function URLs send the same format.
fn http_api_event(method: &str, raw_path: &str, raw_query: &str, stage: &str) -> Value {
    let query: serde_json::Map<String, Value> = form_urlencoded::parse(raw_query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": {
            "accept": "*/*",
            "content-length": "0",
            "host": "abcdef1234.execute-api.us-east-1.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-forwarded-for": "198.51.100.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https"
        },
        "queryStringParameters": if query.is_empty() { Value::Null } else { Value::Object(query) },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abcdef1234",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": "curl/8.5.0"
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": stage,
            "time": "24/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795514400000u64
        },
        "isBase64Encoded": false
    })
}

#[tokio::test]
async fn http_api_and_function_url_events_are_served_too() {
    let function = function().await;
    let default_stage = http_api_event("POST", "/counter/increment", "counter=v2", "$default");
    let response = answer(function.invoke(default_stage).await);
    assert_eq!(response["statusCode"], 200);
    assert_eq!(body(&response), json!({"counter": "v2", "new_value": 1}));

    // A named HTTP API stage appears in rawPath.
    let named_stage = http_api_event("POST", "/prod/counter/increment", "counter=v2&count=3", "prod");
    let response = answer(function.invoke(named_stage).await);
    assert_eq!(body(&response), json!({"counter": "v2", "new_value": 4, "first_value": 2, "count": 3}));

    let read = http_api_event("GET", "/counter/value", "counter=v2", "$default");
    let response = answer(function.invoke(read).await);
    assert_eq!(body(&response), json!({"counter": "v2", "value": 4}));
}

#[tokio::test]
async fn direct_invocation_with_a_non_http_payload_is_answered_not_failed() {
    let function = function().await;
    for payload in [
        json!({"key1": "value1", "key2": "value2", "key3": "value3"}),
        json!({}),
        json!([1, 2]),
        json!("hi"),
        Value::Null,
    ] {
        let response = answer(function.invoke(payload.clone()).await);
        assert_eq!(response["statusCode"], 400, "{payload}");
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        assert_eq!(body(&response)["error_code"], "unsupported_event", "{payload}");
    }
    // And the environment keeps serving.
    let event =
        rest_event(&Method::POST, "counter/increment", &pairs(&[("counter", "after")]), &[], None, "198.51.100.7");
    assert_eq!(answer(function.invoke(event).await)["statusCode"], 200);
}

#[tokio::test]
async fn each_request_logs_one_json_line_without_header_values() {
    let function = function().await;
    let headers = pairs(&[
        ("x-api-key", "SECRET-API-KEY-VALUE"),
        ("idempotency-key", "SECRET-IDEMPOTENCY-KEY"),
        ("authorization", "Bearer SECRET-TOKEN"),
    ]);
    let query = pairs(&[("counter", "logged"), ("count", "7")]);
    let event = rest_event(&Method::POST, "counter/increment", &query, &headers, None, "198.51.100.7");
    assert_eq!(answer(function.invoke(event).await)["statusCode"], 200);

    // The line is written before the response is posted, but read through a pipe.
    let mut request_lines = Vec::new();
    for _ in 0..100 {
        request_lines = function.logs().into_iter().filter(|line| line.contains(r#""message":"request""#)).collect();
        if !request_lines.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(request_lines.len(), 1, "{:?}", function.logs());
    let line: Value = serde_json::from_str(&request_lines[0]).expect("a JSON log line");
    assert!(line["request_id"].as_str().is_some_and(|id| id.starts_with("8476a536-")), "{line}");
    assert_eq!(line["route"], "/counter/increment");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["counter"], "logged");
    assert_eq!(line["count"], 7);
    assert_eq!(line["idempotent"], true);
    assert_eq!(line["status"], 200);
    assert!(line["value"].as_i64().is_some_and(|value| value >= 7), "the last value reserved: {line}");
    assert!(line["duration_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{line}");
    assert_eq!(line["level"], "INFO");
    for line in function.logs() {
        assert!(!line.contains("SECRET"), "a header value was logged: {line}");
    }
}

#[tokio::test]
async fn replicated_write_conflicts_are_retried_and_no_value_is_skipped_or_repeated() {
    use crate::support::aws_proxy::{AwsProxy, Fault};
    let table = unique_name("conflicts");
    create_counter_table(&dynamodb(&moto_url()).await, &table).await;
    // The function's DynamoDB behind a proxy that answers for a multi-Region strongly
    // consistent table: a write that conflicted was not applied.
    let proxy = AwsProxy::start(&moto_url()).await;
    let function = Function::start(&table, &proxy.url, 1).await;
    let conflict = || Fault::new(400, "ReplicatedWriteConflictException", "Replicated write conflict");
    let increment = |key: Option<&str>| {
        let headers = key.map(|key| pairs(&[("idempotency-key", key)])).unwrap_or_default();
        rest_event(&Method::POST, "counter/increment", &pairs(&[("counter", "global")]), &headers, None, "198.51.100.7")
    };
    // More conflicts in a row than the SDK's own three attempts take.
    const CONFLICTS: usize = 4;
    let mut values = Vec::new();
    proxy.inject("UpdateItem", conflict(), CONFLICTS);
    values.push(body(&answer(function.invoke(increment(None)).await))["new_value"].as_i64().unwrap());
    // A keyed increment: its claim (PutItem) and its increment (UpdateItem) conflict too.
    proxy.inject("PutItem", conflict(), CONFLICTS);
    proxy.inject("UpdateItem", conflict(), CONFLICTS);
    let keyed = answer(function.invoke(increment(Some("conflicted-key"))).await);
    assert_eq!(keyed["statusCode"], 200, "{keyed}");
    values.push(body(&keyed)["new_value"].as_i64().unwrap());
    proxy.inject("UpdateItem", conflict(), CONFLICTS);
    values.push(body(&answer(function.invoke(increment(None)).await))["new_value"].as_i64().unwrap());
    assert_eq!(values, [1, 2, 3], "every value once, none skipped: a conflicted write was not applied");
    assert_eq!(proxy.count("PutItem"), 1 + CONFLICTS, "the claim was sent until it went through");
    let again = answer(function.invoke(increment(Some("conflicted-key"))).await);
    assert_eq!(body(&again)["new_value"], 2, "the key keeps its one value");
}
