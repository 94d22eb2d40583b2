//! The HTTP API as clients see it, the same from both backends: the Lambda function
//! through API Gateway's REST front, and `counterctl serve`.

use serde_json::json;

use crate::support::backend::on_both_backends;
use crate::support::{Backend, LambdaStack, send};

on_both_backends! {
    async fn increment_answers_the_original_body_and_counts_up(api) {
        let response = api.http().post(api.url("/counter/increment?counter=mycounter")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.text().await.unwrap(), r#"{"counter":"mycounter","new_value":1}"#);
        assert_eq!(api.increment("mycounter").await, 2);
        assert_eq!(api.increment("other").await, 1, "counters are independent");
        assert_eq!(api.increment("mycounter").await, 3);
    }
}

on_both_backends! {
    async fn count_reserves_a_range_with_one_call(api) {
        api.increment("batch").await;
        let response = api.http().post(api.url("/counter/increment?counter=batch&count=500")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.text().await.unwrap(),
            r#"{"counter":"batch","new_value":501,"first_value":2,"count":500}"#
        );
        let (status, body) = api.post("/counter/increment?counter=batch&count=1000000").await;
        assert_eq!((status, body), (200, json!({"counter": "batch", "new_value": 1_000_501, "first_value": 502, "count": 1_000_000})));
        assert_eq!(api.increment("batch").await, 1_000_502);
    }
}

on_both_backends! {
    async fn value_reads_the_counter_without_moving_it(api) {
        let (status, body) = api.get("/counter/value?counter=fresh").await;
        assert_eq!(status, 404);
        assert_eq!(body["error_code"], "counter_not_found");
        assert!(body["error_description"].as_str().unwrap().contains("fresh"));

        api.increment("fresh").await;
        api.increment("fresh").await;
        let response = api.http().get(api.url("/counter/value?counter=fresh")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), r#"{"counter":"fresh","value":2}"#);
        assert_eq!(api.value("fresh").await, Some(2), "reading does not move it");
    }
}

on_both_backends! {
    async fn counter_names_are_percent_decoded_utf8(api) {
        let (status, body) = api.post("/counter/increment?counter=t%C3%A9nants%2F%23eu+1").await;
        assert_eq!((status, body), (200, json!({"counter": "ténants/#eu 1", "new_value": 1})));
        assert_eq!(api.value("t%C3%A9nants%2F%23eu%201").await, Some(1));
        let longest = "n".repeat(255);
        assert_eq!(api.increment(&longest).await, 1);
    }
}

on_both_backends! {
    async fn unknown_paths_get_the_exact_original_404(api) {
        for path in ["/counter", "/counter/increment/extra", "/counter/decrement?counter=a", "/COUNTER/increment?counter=a"] {
            let response = api.http().post(api.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 404, "{path}");
            assert_eq!(response.headers()["content-type"], "application/json");
            assert_eq!(response.text().await.unwrap(), r#"{"error_code":"404_not_found"}"#, "{path}");
        }
    }
}

#[tokio::test]
async fn api_gateway_itself_answers_for_the_stage_root() {
    let stack = LambdaStack::start(1).await;
    // Only `/{proxy+}` has a method; the stage root never reaches the function.
    let response = stack.http.post(stack.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 403);
}

on_both_backends! {
    async fn wrong_methods_get_405_with_allow(api) {
        let cases = [
            (reqwest::Method::GET, "/counter/increment?counter=m", "POST"),
            (reqwest::Method::PUT, "/counter/increment?counter=m", "POST"),
            (reqwest::Method::DELETE, "/counter/increment?counter=m", "POST"),
            (reqwest::Method::POST, "/counter/value?counter=m", "GET"),
            (reqwest::Method::PATCH, "/counter/value?counter=m", "GET"),
        ];
        for (method, path, allow) in cases {
            let response = api.http().request(method.clone(), api.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 405, "{method} {path}");
            assert_eq!(response.headers()["allow"], allow);
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error_code"], "method_not_allowed");
        }
        assert_eq!(api.value("m").await, None, "nothing was incremented");
    }
}

on_both_backends! {
    /// Every kind of bad input: the documented 400, and the counter does not move.
    async fn bad_input_is_rejected_and_changes_nothing(api) {
        assert_eq!(api.increment("victim").await, 1);
        let long_name = "x".repeat(256);
        // path and query, headers, error_code
        type Case<'a> = (String, Vec<(&'a str, String)>, &'a str);
        let cases: Vec<Case> = vec![
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
            let mut request = api.http().request(method, api.url(path));
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let (status, body) = send(request).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert_eq!(body["error_code"], *code, "{path}: {body}");
            assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{path}: {body}");
        }
        assert_eq!(api.value("victim").await, Some(1), "no bad request moved the counter");
        assert_eq!(api.value(&"x".repeat(255)).await, None);
    }
}

/// `counter=h%G1`, `h%`, `x%2`: a `%` that starts no escape is refused, and no counter by
/// those literal names is made; a character beyond ASCII sent unencoded counts as its
/// percent-encoding. Checked on the fronts that hand the function the query as sent (a
/// REST API hands it the parameters decoded, and API Gateway decides about escapes).
async fn check_query_escapes(api: &impl Backend) {
    use crate::support::serve::raw_request;

    let root = api.base_url().to_owned();
    let request = |target: &str| format!("POST {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").into_bytes();
    for (target, code) in [
        ("/counter/increment?counter=h%G1", "invalid_counter_name"),
        ("/counter/increment?counter=h%", "invalid_counter_name"),
        ("/counter/increment?counter=x%2", "invalid_counter_name"),
        ("/counter/increment?counter=ok&count=1%", "invalid_count"),
    ] {
        let response = raw_request(&root, request(target)).await;
        let body: serde_json::Value = serde_json::from_str(&response.body).expect("a JSON error");
        assert_eq!((response.status, body["error_code"].as_str()), (400, Some(code)), "{target}: {body}");
        assert!(body["error_description"].as_str().unwrap().contains("two hexadecimal digits"), "{body}");
    }
    for literal in ["h%25G1", "h%25", "x%252", "ok"] {
        assert_eq!(api.value(literal).await, None, "{literal}: nothing was made");
    }

    let raw = raw_request(&root, request("/counter/increment?counter=ünï")).await;
    assert_eq!((raw.status, raw.body.as_str()), (200, r#"{"counter":"ünï","new_value":1}"#));
    assert_eq!(api.increment("%C3%BCn%C3%AF").await, 2, "the same counter as its encoding");
}

#[tokio::test]
async fn query_escapes_on_serve() {
    check_query_escapes(&crate::support::serve::Serve::start().await).await;
}

#[tokio::test]
async fn query_escapes_on_a_function_url() {
    use crate::support::function_url::{AuthType, FunctionUrlStack};
    check_query_escapes(&FunctionUrlStack::start(1, AuthType::None).await).await;
}
