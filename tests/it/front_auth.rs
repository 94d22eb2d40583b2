//! The REST front enforces what the deployed method says, as API Gateway does: a method
//! that requires an API key refuses requests without the stage's key, and an `AWS_IAM`
//! method verifies each request's SigV4 signature against the caller's credentials.
//! Refused requests get API Gateway's 403 answers and never reach the function: the
//! counter, read directly from DynamoDB, does not move.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sigv4::http_request::SigningSettings;
use serde_json::{Value, json};

use crate::support::LambdaStack;
use crate::support::rest_api::{EXECUTE_API, IamCaller, MethodAuth, sign_as_client};

const KEY: &str = "k3y-0f-the-stage-usage-plan-0123456789";

/// The counter's stored value, read directly from DynamoDB; `None` before it exists.
async fn stored(stack: &LambdaStack, counter: &str) -> Option<String> {
    let item = stack.item(counter).await?;
    match &item["lastValue"] {
        AttributeValue::N(value) => Some(value.clone()),
        other => panic!("lastValue is a number: {other:?}"),
    }
}

/// Sends a request; its status, its content type and its JSON body.
async fn execute(stack: &LambdaStack, request: reqwest::Request) -> (u16, String, Value) {
    let response = stack.http.execute(request).await.expect("the front answers");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map_or("", |value| value.to_str().unwrap()).to_owned();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: body is not JSON: {text:?}"));
    (status, content_type, body)
}

fn increment(stack: &LambdaStack, counter: &str) -> reqwest::RequestBuilder {
    stack.http.post(format!("{}/counter/increment?counter={counter}", stack.api.url))
}

/// Signs `request` with SigV4 as a client does, for `service` in `region` at `at`: adds
/// `x-amz-date`, `authorization` and, for temporary credentials, `x-amz-security-token`.
fn sign_request(
    request: &mut reqwest::Request,
    credentials: &Credentials,
    region: &str,
    service: &str,
    at: SystemTime,
) {
    sign_as_client(request, credentials, region, service, at, SigningSettings::default());
}

/// A request signed now by `caller`, as `counterctl` signs for a REST API.
fn signed(caller: &IamCaller, request: reqwest::RequestBuilder) -> reqwest::Request {
    let mut request = request.build().unwrap();
    sign_request(&mut request, &caller.credentials(), &caller.region, EXECUTE_API, SystemTime::now());
    request
}

async fn iam_stack() -> (LambdaStack, IamCaller) {
    let caller = IamCaller::for_tests();
    (LambdaStack::start_with_auth(1, MethodAuth::aws_iam(caller.clone())).await, caller)
}

/// A correctly signed increment, which must succeed with `expected`.
async fn signed_increment(stack: &LambdaStack, caller: &IamCaller, counter: &str, expected: i64) {
    let (status, _, body) = execute(stack, signed(caller, increment(stack, counter))).await;
    assert_eq!((status, body), (200, json!({"counter": counter, "new_value": expected})));
}

/// Asserts API Gateway's 403 for a refused SigV4 request and returns its message.
fn refused(answer: (u16, String, Value)) -> String {
    let (status, content_type, body) = answer;
    assert_eq!(status, 403, "{body}");
    assert_eq!(content_type, "application/json");
    body["message"].as_str().unwrap_or_else(|| panic!("a message: {body}")).to_owned()
}

const MISMATCH: &str = "The request signature we calculated does not match the signature you provided.";

#[tokio::test]
async fn a_key_requiring_front_answers_forbidden_without_the_right_key_and_the_counter_stays() {
    let stack = LambdaStack::start_with_auth(1, MethodAuth::api_key(KEY)).await;
    let (status, _, body) = execute(&stack, increment(&stack, "keyed").header("x-api-key", KEY).build().unwrap()).await;
    assert_eq!((status, body), (200, json!({"counter": "keyed", "new_value": 1})));

    let value = stack.http.get(format!("{}/counter/value?counter=keyed", stack.api.url));
    let refusals = [
        ("no key", increment(&stack, "keyed")),
        ("a wrong key", increment(&stack, "keyed").header("x-api-key", "not-the-key")),
        ("the key with a suffix", increment(&stack, "keyed").header("x-api-key", format!("{KEY}x"))),
        ("an empty key", increment(&stack, "keyed").header("x-api-key", "")),
        ("the key in another header", increment(&stack, "keyed").header("x-api-key-id", KEY)),
        ("a read without a key", value),
    ];
    for (case, request) in refusals {
        let (status, content_type, body) = execute(&stack, request.build().unwrap()).await;
        assert_eq!((status, body), (403, json!({"message": "Forbidden"})), "{case}");
        assert_eq!(content_type, "application/json", "{case}");
        assert_eq!(stored(&stack, "keyed").await.as_deref(), Some("1"), "{case}: the counter did not move");
    }

    // Header names are case-insensitive.
    let (status, _, body) = execute(&stack, increment(&stack, "keyed").header("X-API-Key", KEY).build().unwrap()).await;
    assert_eq!((status, body), (200, json!({"counter": "keyed", "new_value": 2})));
    assert_eq!(stored(&stack, "keyed").await.as_deref(), Some("2"));
}

#[tokio::test]
async fn the_iam_front_answers_unsigned_requests_with_missing_authentication_token() {
    let (stack, caller) = iam_stack().await;
    signed_increment(&stack, &caller, "iam", 1).await;

    for request in [increment(&stack, "iam"), increment(&stack, "iam").header("x-api-key", KEY)] {
        let (status, content_type, body) = execute(&stack, request.build().unwrap()).await;
        assert_eq!((status, body), (403, json!({"message": "Missing Authentication Token"})));
        assert_eq!(content_type, "application/json");
    }
    assert_eq!(stored(&stack, "iam").await.as_deref(), Some("1"), "the counter did not move");
}

#[tokio::test]
async fn the_iam_front_refuses_a_signature_made_with_the_wrong_secret() {
    let (stack, caller) = iam_stack().await;
    signed_increment(&stack, &caller, "iam", 1).await;

    let impostor =
        IamCaller { secret_access_key: "not/the/secret/wJalrXUtnFEMIK7MDENGbPxRfi".into(), ..caller.clone() };
    let message = refused(execute(&stack, signed(&impostor, increment(&stack, "iam"))).await);
    assert!(message.starts_with(MISMATCH), "{message}");

    // A forged Signature on otherwise genuine headers fares no better.
    let mut request = signed(&caller, increment(&stack, "iam"));
    let genuine = request.headers()["authorization"].to_str().unwrap().to_owned();
    let (head, signature) = genuine.rsplit_once("Signature=").unwrap();
    let forged = format!("{head}Signature={}", signature.chars().rev().collect::<String>());
    request.headers_mut().insert("authorization", forged.parse().unwrap());
    let message = refused(execute(&stack, request).await);
    assert!(message.starts_with(MISMATCH), "{message}");

    assert_eq!(stored(&stack, "iam").await.as_deref(), Some("1"), "the counter did not move");
    signed_increment(&stack, &caller, "iam", 2).await;
}

#[tokio::test]
async fn the_iam_front_refuses_a_signature_made_ten_minutes_ago_as_expired() {
    let (stack, caller) = iam_stack().await;
    signed_increment(&stack, &caller, "iam", 1).await;

    let mut request = increment(&stack, "iam").build().unwrap();
    let ten_minutes_ago = SystemTime::now() - Duration::from_secs(600);
    sign_request(&mut request, &caller.credentials(), &caller.region, EXECUTE_API, ten_minutes_ago);
    let message = refused(execute(&stack, request).await);
    assert!(message.starts_with("Signature expired:"), "{message}");
    assert!(message.ends_with("- 5 min.)"), "{message}");

    // The other way too: a clock ten minutes fast.
    let mut request = increment(&stack, "iam").build().unwrap();
    let in_ten_minutes = SystemTime::now() + Duration::from_secs(600);
    sign_request(&mut request, &caller.credentials(), &caller.region, EXECUTE_API, in_ten_minutes);
    let message = refused(execute(&stack, request).await);
    assert!(message.starts_with("Signature not yet current:"), "{message}");

    assert_eq!(stored(&stack, "iam").await.as_deref(), Some("1"), "the counter did not move");
}

#[tokio::test]
async fn the_iam_front_refuses_a_request_whose_body_or_query_changed_after_signing() {
    let (stack, caller) = iam_stack().await;
    signed_increment(&stack, &caller, "iam", 1).await;

    // The body, with and without a declared payload hash.
    let body = increment(&stack, "iam").header("content-type", "application/json").body(r#"{"note":"as signed"}"#);
    let mut request = signed(&caller, body);
    *request.body_mut() = Some(r#"{"note":"tampered"}"#.into());
    let message = refused(execute(&stack, request).await);
    assert!(message.starts_with(MISMATCH), "{message}");

    let body = increment(&stack, "iam").body("as signed");
    let mut request = body.build().unwrap();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = aws_sigv4::http_request::PayloadChecksumKind::XAmzSha256;
    sign_as_client(&mut request, &caller.credentials(), &caller.region, EXECUTE_API, SystemTime::now(), settings);
    assert!(request.headers().contains_key("x-amz-content-sha256"));
    *request.body_mut() = Some("tampered".into());
    let message = refused(execute(&stack, request).await);
    assert!(message.starts_with(MISMATCH), "{message}");

    // The query: another counter, then another count.
    let mut request = signed(&caller, increment(&stack, "iam"));
    request.url_mut().set_query(Some("counter=other"));
    let message = refused(execute(&stack, request).await);
    assert!(message.starts_with(MISMATCH), "{message}");
    let mut request = signed(&caller, increment(&stack, "iam"));
    request.url_mut().set_query(Some("counter=iam&count=1000"));
    let message = refused(execute(&stack, request).await);
    assert!(message.starts_with(MISMATCH), "{message}");

    // A signed header changed.
    let mut request = signed(&caller, increment(&stack, "iam").header("x-request-note", "as signed"));
    request.headers_mut().insert("x-request-note", "tampered".parse().unwrap());
    let message = refused(execute(&stack, request).await);
    assert!(message.starts_with(MISMATCH), "{message}");

    assert_eq!(stored(&stack, "iam").await.as_deref(), Some("1"), "the counter did not move");
    assert_eq!(stored(&stack, "other").await, None, "nor did another");
}

#[tokio::test]
async fn the_iam_front_passes_correctly_signed_requests_to_the_function() {
    let (stack, caller) = iam_stack().await;
    assert_eq!(stored(&stack, "iam").await, None);
    signed_increment(&stack, &caller, "iam", 1).await;
    assert_eq!(stored(&stack, "iam").await.as_deref(), Some("1"), "the counter moved");

    // With a body, a read, a percent-encoded counter name, and a header signed along.
    let body = increment(&stack, "iam").header("content-type", "application/json").body(r#"{"note":"signed"}"#);
    let (status, _, body) = execute(&stack, signed(&caller, body)).await;
    assert_eq!((status, body), (200, json!({"counter": "iam", "new_value": 2})));
    let read =
        stack.http.get(format!("{}/counter/value?counter=iam", stack.api.url)).header("x-request-note", "signed");
    let (status, _, body) = execute(&stack, signed(&caller, read)).await;
    assert_eq!((status, body), (200, json!({"counter": "iam", "value": 2})));
    // A space as `%20`, not `+`: signers disagree on what a raw `+` in a query means.
    let encoded =
        stack.http.post(format!("{}/counter/increment?counter=t%C3%A9nants%2F%23eu%201&count=3", stack.api.url));
    let (status, _, body) = execute(&stack, signed(&caller, encoded)).await;
    assert_eq!(
        (status, body),
        (200, json!({"counter": "ténants/#eu 1", "new_value": 3, "first_value": 1, "count": 3}))
    );
    assert_eq!(stored(&stack, "iam").await.as_deref(), Some("2"));
}

#[tokio::test]
async fn the_iam_front_refuses_credentials_scoped_to_another_region_or_service() {
    let (stack, caller) = iam_stack().await;
    signed_increment(&stack, &caller, "iam", 1).await;

    let mut request = increment(&stack, "iam").build().unwrap();
    sign_request(&mut request, &caller.credentials(), "eu-west-1", EXECUTE_API, SystemTime::now());
    let message = refused(execute(&stack, request).await);
    assert_eq!(message, "Credential should be scoped to a valid region, not 'eu-west-1'. ");

    let mut request = increment(&stack, "iam").build().unwrap();
    sign_request(&mut request, &caller.credentials(), &caller.region, "lambda", SystemTime::now());
    let message = refused(execute(&stack, request).await);
    assert_eq!(message, "Credential should be scoped to correct service: 'execute-api'. ");

    assert_eq!(stored(&stack, "iam").await.as_deref(), Some("1"), "the counter did not move");
}

#[tokio::test]
async fn the_iam_front_refuses_unknown_access_keys_and_wrong_session_tokens() {
    let caller = IamCaller { session_token: Some("FwoGZXIvYXdzEXAMPLEtoken".into()), ..IamCaller::for_tests() };
    let stack = LambdaStack::start_with_auth(1, MethodAuth::aws_iam(caller.clone())).await;
    signed_increment(&stack, &caller, "iam", 1).await;

    let stranger = IamCaller { access_key_id: "AKIDSOMEONEELSE".into(), ..caller.clone() };
    let without_token = IamCaller { session_token: None, ..caller.clone() };
    let other_token = IamCaller { session_token: Some("FwoGZXIvYXdzOTHERtoken".into()), ..caller.clone() };
    for (case, signer) in [("unknown key", stranger), ("no token", without_token), ("another token", other_token)] {
        let message = refused(execute(&stack, signed(&signer, increment(&stack, "iam"))).await);
        assert_eq!(message, "The security token included in the request is invalid.", "{case}");
    }

    assert_eq!(stored(&stack, "iam").await.as_deref(), Some("1"), "the counter did not move");
    signed_increment(&stack, &caller, "iam", 2).await;
}
