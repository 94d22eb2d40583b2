//! The HTTP API, through API Gateway's REST front, as clients see it.

use serde_json::json;

use crate::support::{LambdaStack, send};

#[tokio::test]
async fn increment_answers_the_original_body_and_counts_up() {
    let stack = LambdaStack::start(1).await;
    let response = stack.http.post(stack.url("/counter/increment?counter=mycounter")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), r#"{"counter":"mycounter","new_value":1}"#);
    assert_eq!(stack.increment("mycounter").await, 2);
    assert_eq!(stack.increment("other").await, 1, "counters are independent");
    assert_eq!(stack.increment("mycounter").await, 3);
}

#[tokio::test]
async fn count_reserves_a_range_with_one_call() {
    let stack = LambdaStack::start(1).await;
    stack.increment("batch").await;
    let response = stack.http.post(stack.url("/counter/increment?counter=batch&count=500")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"counter":"batch","new_value":501,"first_value":2,"count":500}"#
    );
    let (status, body) = stack.post("/counter/increment?counter=batch&count=1000000").await;
    assert_eq!((status, body), (200, json!({"counter": "batch", "new_value": 1_000_501, "first_value": 502, "count": 1_000_000})));
    assert_eq!(stack.increment("batch").await, 1_000_502);
}

#[tokio::test]
async fn value_reads_the_counter_without_moving_it() {
    let stack = LambdaStack::start(1).await;
    let (status, body) = stack.get("/counter/value?counter=fresh").await;
    assert_eq!(status, 404);
    assert_eq!(body["error_code"], "counter_not_found");
    assert!(body["error_description"].as_str().unwrap().contains("fresh"));

    stack.increment("fresh").await;
    stack.increment("fresh").await;
    let response = stack.http.get(stack.url("/counter/value?counter=fresh")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"counter":"fresh","value":2}"#);
    assert_eq!(stack.value("fresh").await, Some(2), "reading does not move it");
}

#[tokio::test]
async fn counter_names_are_percent_decoded_utf8() {
    let stack = LambdaStack::start(1).await;
    let (status, body) = stack.post("/counter/increment?counter=t%C3%A9nants%2F%23eu+1").await;
    assert_eq!((status, body), (200, json!({"counter": "ténants/#eu 1", "new_value": 1})));
    assert_eq!(stack.value("t%C3%A9nants%2F%23eu%201").await, Some(1));
    let longest = "n".repeat(255);
    assert_eq!(stack.increment(&longest).await, 1);
}

#[tokio::test]
async fn unknown_paths_get_the_exact_original_404() {
    let stack = LambdaStack::start(1).await;
    for path in ["/", "/counter", "/counter/increment/extra", "/counter/decrement?counter=a", "/COUNTER/increment?counter=a"] {
        let response = stack.http.post(stack.url(path)).send().await.unwrap();
        if path == "/" {
            // API Gateway itself answers for the stage root, which has no method.
            assert_eq!(response.status(), 403, "{path}");
            continue;
        }
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.text().await.unwrap(), r#"{"error_code":"404_not_found"}"#, "{path}");
    }
}

#[tokio::test]
async fn wrong_methods_get_405_with_allow() {
    let stack = LambdaStack::start(1).await;
    let cases = [
        (reqwest::Method::GET, "/counter/increment?counter=m", "POST"),
        (reqwest::Method::PUT, "/counter/increment?counter=m", "POST"),
        (reqwest::Method::DELETE, "/counter/increment?counter=m", "POST"),
        (reqwest::Method::POST, "/counter/value?counter=m", "GET"),
        (reqwest::Method::PATCH, "/counter/value?counter=m", "GET"),
    ];
    for (method, path, allow) in cases {
        let response = stack.http.request(method.clone(), stack.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error_code"], "method_not_allowed");
    }
    assert_eq!(stack.value("m").await, None, "nothing was incremented");
}

/// Every kind of bad input: the documented 400, and the counter does not move.
#[tokio::test]
async fn bad_input_is_rejected_and_changes_nothing() {
    let stack = LambdaStack::start(1).await;
    assert_eq!(stack.increment("victim").await, 1);
    let long_name = "x".repeat(256);
    let cases: Vec<(String, Vec<(&str, String)>, &str)> = vec![
        ("/counter/increment".into(), vec![], "counter_not_specified"),
        ("/counter/increment?".into(), vec![], "counter_not_specified"),
        ("/counter/increment?counter=".into(), vec![], "counter_not_specified"),
        ("/counter/increment?count=5".into(), vec![], "counter_not_specified"),
        ("/counter/value".into(), vec![], "counter_not_specified"),
        (format!("/counter/increment?counter={long_name}"), vec![], "invalid_counter_name"),
        ("/counter/increment?counter=tab%09name".into(), vec![], "invalid_counter_name"),
        ("/counter/increment?counter=%00".into(), vec![], "invalid_counter_name"),
        ("/counter/increment?counter=_counterctl%23idempotency%23x".into(), vec![], "invalid_counter_name"),
        ("/counter/value?counter=_counterctl%23x".into(), vec![], "invalid_counter_name"),
        ("/counter/increment?counter=victim&count=0".into(), vec![], "invalid_count"),
        ("/counter/increment?counter=victim&count=-3".into(), vec![], "invalid_count"),
        ("/counter/increment?counter=victim&count=1000001".into(), vec![], "invalid_count"),
        ("/counter/increment?counter=victim&count=2.5".into(), vec![], "invalid_count"),
        ("/counter/increment?counter=victim&count=".into(), vec![], "invalid_count"),
        ("/counter/increment?counter=victim&count=ten".into(), vec![], "invalid_count"),
        ("/counter/increment?counter=victim".into(), vec![("idempotency-key", "k".repeat(129))], "invalid_idempotency_key"),
        ("/counter/increment?counter=victim".into(), vec![("idempotency-key", String::new())], "invalid_idempotency_key"),
    ];
    for (path, headers, code) in &cases {
        let method = if path.starts_with("/counter/value") { reqwest::Method::GET } else { reqwest::Method::POST };
        let mut request = stack.http.request(method, stack.url(path));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let (status, body) = send(request).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error_code"], *code, "{path}: {body}");
        assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{path}: {body}");
    }
    assert_eq!(stack.value("victim").await, Some(1), "no bad request moved the counter");
    assert_eq!(stack.value(&"x".repeat(255)).await, None);
}
