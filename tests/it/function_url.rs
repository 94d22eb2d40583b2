//! The shipped function behind a Lambda Function URL: payload format 2.0 events in, 2.0
//! responses out, the same API as through the REST front; with auth type `AWS_IAM` only
//! requests SigV4-signed for `lambda` get through, and `counterctl` signs for `lambda` at a
//! Function URL host (reached through the stand-in as its HTTP proxy).

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::support::cli::{Run, clean_environment, counterctl_with_env};
use crate::support::function_url::{AuthType, FORBIDDEN_MESSAGE, FunctionUrlStack, LAMBDA, sign_request};
use crate::support::rest_api::{EXECUTE_API, IamCaller};
use crate::support::{Backend, LambdaStack};

/// Status, content type and raw body of one request.
async fn exchange(http: &reqwest::Client, request: reqwest::RequestBuilder) -> (u16, String, String) {
    let response = http.execute(request.build().unwrap()).await.expect("the front answers");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map_or("", |value| value.to_str().unwrap()).to_owned();
    (status, content_type, response.text().await.unwrap())
}

/// The same requests through both fronts, each on its own table, answer the same.
#[tokio::test]
async fn increments_and_reads_through_a_function_url_answer_as_through_the_rest_api() {
    let (function_url, rest) = tokio::join!(FunctionUrlStack::start(1, AuthType::None), LambdaStack::start(1));
    let requests = [
        (reqwest::Method::POST, "/counter/increment?counter=tenants"),
        (reqwest::Method::POST, "/counter/increment?counter=tenants&count=3"),
        (reqwest::Method::GET, "/counter/value?counter=tenants"),
        (reqwest::Method::GET, "/counter/value?counter=never"),
        (reqwest::Method::GET, "/counter/increment?counter=tenants"),
        (reqwest::Method::POST, "/counter/increment"),
        (reqwest::Method::POST, "/counter/decrement?counter=tenants"),
    ];
    let mut answers = Vec::new();
    for (method, path) in requests {
        let through_url =
            exchange(&function_url.http, function_url.http.request(method.clone(), function_url.url(path)));
        let through_rest = exchange(&rest.http, rest.http.request(method.clone(), rest.url(path)));
        let (through_url, through_rest) = tokio::join!(through_url, through_rest);
        assert_eq!(through_url, through_rest, "{method} {path}");
        answers.push((through_url.0, through_url.2));
    }
    let expected = [
        (200, r#"{"counter":"tenants","new_value":1}"#),
        (200, r#"{"counter":"tenants","new_value":4,"first_value":2,"count":3}"#),
        (200, r#"{"counter":"tenants","value":4}"#),
        (404, r#"{"error_code":"counter_not_found","error_description":"counter \"never\" was never incremented"}"#),
        (405, r#"{"error_code":"method_not_allowed","error_description":"this route only accepts POST"}"#),
        (
            400,
            r#"{"error_code":"counter_not_specified","error_description":"the `counter` query parameter is required, e.g. ?counter=mycounter"}"#,
        ),
        (404, r#"{"error_code":"404_not_found"}"#),
    ];
    let expected: Vec<(u16, String)> = expected.iter().map(|(status, body)| (*status, (*body).to_owned())).collect();
    assert_eq!(answers, expected);
    assert_eq!(function_url.stored("tenants").await, Some(4));
}

#[tokio::test]
async fn aws_iam_function_url_refuses_unsigned_requests_and_the_counter_stays() {
    let caller = IamCaller::for_tests();
    let stack = FunctionUrlStack::start(1, AuthType::AwsIam(caller.clone())).await;
    let mut signed = stack.http.post(stack.url("/counter/increment?counter=guarded")).build().unwrap();
    sign_request(&mut signed, &caller, LAMBDA, SystemTime::now());
    let response = stack.http.execute(signed).await.unwrap();
    assert_eq!(response.status(), 200, "a signed request gets through");
    assert_eq!(stack.stored("guarded").await, Some(1));

    for method in [reqwest::Method::POST, reqwest::Method::GET] {
        let path = if method == reqwest::Method::POST { "/counter/increment" } else { "/counter/value" };
        let unsigned = stack.http.request(method.clone(), stack.url(&format!("{path}?counter=guarded")));
        let (status, content_type, body) = exchange(&stack.http, unsigned).await;
        assert_eq!((status, content_type.as_str()), (403, "application/json"), "{method}: {body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({"Message": FORBIDDEN_MESSAGE}));
    }
    assert_eq!(stack.stored("guarded").await, Some(1), "refused requests never reach the function");
}

#[tokio::test]
async fn aws_iam_function_url_refuses_requests_signed_for_execute_api() {
    let caller = IamCaller::for_tests();
    let stack = FunctionUrlStack::start(1, AuthType::AwsIam(caller.clone())).await;
    let mut for_rest = stack.http.post(stack.url("/counter/increment?counter=scoped")).build().unwrap();
    sign_request(&mut for_rest, &caller, EXECUTE_API, SystemTime::now());
    let response = stack.http.execute(for_rest).await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"Message": FORBIDDEN_MESSAGE}));
    assert_eq!(stack.stored("scoped").await, None);

    let mut for_lambda = stack.http.post(stack.url("/counter/increment?counter=scoped")).build().unwrap();
    sign_request(&mut for_lambda, &caller, LAMBDA, SystemTime::now());
    let response = stack.http.execute(for_lambda).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"counter":"scoped","new_value":1}"#);
}

/// `counterctl ARGS` with the test caller's credentials (`secret` as its secret key) and
/// the stand-in as its `HTTP_PROXY` (no `NO_PROXY`).
async fn counterctl_through(stack: &FunctionUrlStack, args: &[&str], secret: &str) -> Run {
    let mut env = clean_environment();
    for (name, value) in &mut env {
        match *name {
            "AWS_ACCESS_KEY_ID" => *value = IamCaller::for_tests().access_key_id,
            "AWS_SECRET_ACCESS_KEY" => *value = secret.to_owned(),
            _ => {}
        }
    }
    env.push(("HTTP_PROXY", stack.front.proxy().to_owned()));
    counterctl_with_env(args, &env).await
}

#[tokio::test]
async fn counterctl_increment_with_auth_iam_signs_for_lambda_at_a_function_url_host() {
    let caller = IamCaller::for_tests();
    let stack = FunctionUrlStack::start(1, AuthType::AwsIam(caller.clone())).await;
    let url = stack.front.aws_url();
    assert!(url.ends_with(".lambda-url.us-east-1.on.aws"), "{url}");
    let secret = caller.secret_access_key.as_str();

    let increment = ["increment", "tenants", "--url", &url, "--auth", "iam"];
    assert_eq!(counterctl_through(&stack, &increment, secret).await.ok().stdout, "1\n");
    assert_eq!(counterctl_through(&stack, &increment, secret).await.ok().stdout, "2\n");
    assert_eq!(stack.stored("tenants").await, Some(2));
    let get = ["get", "tenants", "--url", &url, "--auth", "iam"];
    assert_eq!(counterctl_through(&stack, &get, secret).await.ok().stdout, "2\n");

    let wrong_secret = counterctl_through(&stack, &increment, "not-the-secret").await;
    assert_eq!(wrong_secret.code, 2, "{}", wrong_secret.stderr);
    assert!(wrong_secret.stderr.contains("403"), "{}", wrong_secret.stderr);
    assert!(
        wrong_secret.stderr.contains("lambda:InvokeFunctionUrl"),
        "the hint names the action: {}",
        wrong_secret.stderr
    );
    let unsigned = counterctl_through(&stack, &["increment", "tenants", "--url", &url], secret).await;
    assert_eq!(unsigned.code, 2, "{}", unsigned.stderr);
    assert!(unsigned.stderr.contains("answered 403: Forbidden"), "the URL refused it: {}", unsigned.stderr);
    assert!(unsigned.stderr.contains("pass --auth iam"), "{}", unsigned.stderr);
    assert_eq!(stack.stored("tenants").await, Some(2), "refused calls move nothing");
}

#[tokio::test]
async fn a_counter_name_with_a_space_and_a_plus_round_trips_through_a_function_url() {
    let caller = IamCaller::for_tests();
    let stack = FunctionUrlStack::start(1, AuthType::AwsIam(caller.clone())).await;
    let url = stack.front.aws_url();
    let secret = caller.secret_access_key.as_str();
    // counterctl sends `a%20b%2Bc`; the function reads the raw query itself.
    let increment = ["increment", "a b+c", "--url", &url, "--auth", "iam", "--output", "json"];
    let answer = counterctl_through(&stack, &increment, secret).await.ok().json();
    assert_eq!(answer, json!({"counter": "a b+c", "new_value": 1}));
    let get = ["get", "a b+c", "--url", &url, "--auth", "iam"];
    assert_eq!(counterctl_through(&stack, &get, secret).await.ok().stdout, "1\n");
    assert_eq!(stack.stored("a b+c").await, Some(1), "stored under the name as given");

    // A form-encoded query names the same counter: `+` is a space, `%2B` a plus.
    let mut form = stack.http.post(stack.url("/counter/increment?counter=a+b%2Bc")).build().unwrap();
    sign_request(&mut form, &caller, LAMBDA, SystemTime::now());
    let response = stack.http.execute(form).await.unwrap();
    assert_eq!(response.text().await.unwrap(), r#"{"counter":"a b+c","new_value":2}"#);
    assert_eq!(
        (stack.stored("a b+c").await, stack.stored("a+b+c").await, stack.stored("a b c").await),
        (Some(2), None, None)
    );
}

#[tokio::test]
async fn counterctl_increment_calls_a_public_function_url_without_signing() {
    let stack = FunctionUrlStack::start(1, AuthType::None).await;
    let url = stack.front.aws_url();
    let secret = IamCaller::for_tests().secret_access_key;
    let increment = ["increment", "visits", "--url", &url];
    assert_eq!(counterctl_through(&stack, &increment, &secret).await.ok().stdout, "1\n");
    let get = ["get", "visits", "--url", &url, "--output", "json"];
    assert_eq!(counterctl_through(&stack, &get, &secret).await.ok().json(), json!({"counter": "visits", "value": 1}));
    assert_eq!(stack.stored("visits").await, Some(1));
}
