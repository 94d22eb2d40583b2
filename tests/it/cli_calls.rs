//! `counterctl increment` and `get` against the shipped function behind the REST front,
//! and URL and key discovery against moto.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, Uri};
use counterctl::aws::Clients;
use counterctl::call::discover;
use counterctl::cli::StackOptions;
use counterctl_client::{Auth, SigningService};

use crate::support::LambdaStack;
use crate::support::cli::{Deployment, clean_environment, counterctl, counterctl_with_env};

async fn increment(url: &str, args: &[&str]) -> crate::support::cli::Run {
    let mut all = vec!["increment", "--url", url];
    all.extend(args);
    counterctl(&all).await
}

#[tokio::test]
async fn increment_and_get_print_just_the_numbers() {
    let stack = LambdaStack::start(1).await;
    let url = stack.api.url.as_str();
    assert_eq!(increment(url, &["tenants"]).await.ok().stdout, "1\n");
    assert_eq!(increment(url, &["tenants"]).await.ok().stdout, "2\n");
    assert_eq!(increment(url, &["tenants", "--count", "5"]).await.ok().stdout, "3-7\n");
    assert_eq!(counterctl(&["get", "tenants", "--url", url]).await.ok().stdout, "7\n");

    let json = increment(url, &["tenants", "--output", "json"]).await.ok().json();
    assert_eq!(json, serde_json::json!({"counter": "tenants", "new_value": 8}));
    let mut env = clean_environment();
    env.push(("COUNTERCTL_URL", format!("{url}/")));
    let from_env = counterctl_with_env(&["get", "tenants", "--output", "json"], &env).await.ok();
    assert_eq!(from_env.json(), serde_json::json!({"counter": "tenants", "value": 8}));
}

#[tokio::test]
async fn an_idempotency_key_answers_repeats_with_the_same_value() {
    let stack = LambdaStack::start(1).await;
    let url = stack.api.url.as_str();
    let first = increment(url, &["orders", "--idempotency-key", "order-17"]).await.ok();
    let repeat = increment(url, &["orders", "--idempotency-key", "order-17"]).await.ok();
    assert_eq!((first.stdout.as_str(), repeat.stdout.as_str()), ("1\n", "1\n"));
    assert_eq!(increment(url, &["orders"]).await.ok().stdout, "2\n");
}

/// Requests as the flaky front saw them: method, Idempotency-Key, x-api-key.
type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

/// How the flaky front answers the first request.
#[derive(Clone, Copy)]
enum FirstAnswer {
    /// Forwarded, then answered 502, as a connection lost after the increment was
    /// applied would look.
    LostAfterApplying,
    /// Not forwarded: 409 idempotency_key_in_progress with `Retry-After: 1`, as when
    /// another request with the key is still running.
    KeyInProgress,
}

/// A front that forwards every request to the API but answers the first as `first` says.
async fn flaky_front(upstream: String, first: FirstAnswer) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let state = (upstream, Arc::clone(&seen), reqwest::Client::new(), first);
    let app = axum::Router::new().fallback(forward).with_state(Arc::new(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn forward(
    State(state): State<Arc<(String, Seen, reqwest::Client, FirstAnswer)>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let (upstream, seen, http, first_answer) = &*state;
    let header = |name: &str| headers.get(name).map(|value| value.to_str().unwrap().to_owned());
    let first = {
        let mut seen = seen.lock().unwrap();
        seen.push((method.to_string(), header("idempotency-key"), header("x-api-key")));
        seen.len() == 1
    };
    if first && matches!(first_answer, FirstAnswer::KeyInProgress) {
        let body = r#"{"error_code":"idempotency_key_in_progress","error_description":"another request is running"}"#;
        return Response::builder().status(409).header("retry-after", "1").body(Body::from(body)).unwrap();
    }
    let mut request = http.request(method, format!("{upstream}{uri}")).body(body);
    if let Some(key) = header("idempotency-key") {
        request = request.header("Idempotency-Key", key);
    }
    let answer = request.send().await.unwrap();
    let status = if first { 502 } else { answer.status().as_u16() };
    Response::builder().status(status).body(Body::from(answer.bytes().await.unwrap())).unwrap()
}

#[tokio::test]
async fn a_key_still_in_progress_is_retried_after_its_retry_after() {
    let stack = LambdaStack::start(1).await;
    let (url, seen) = flaky_front(stack.api.url.clone(), FirstAnswer::KeyInProgress).await;
    let started = std::time::Instant::now();
    let run = increment(&url, &["receipts", "--idempotency-key", "receipt-9"]).await.ok();
    assert_eq!(run.stdout, "1\n");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "waited for Retry-After");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|(_, key, _)| key.as_deref() == Some("receipt-9")));
}

#[tokio::test]
async fn a_retried_increment_reuses_its_key_so_no_id_is_burnt() {
    let stack = LambdaStack::start(1).await;
    let (url, seen) = flaky_front(stack.api.url.clone(), FirstAnswer::LostAfterApplying).await;
    let run = increment(&url, &["invoices", "--api-key", "the-key"]).await.ok();
    assert_eq!(run.stdout, "1\n", "the retry answers the value the lost answer carried");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let key = seen[0].1.clone().expect("an Idempotency-Key is generated");
    assert_eq!(seen[1].1.as_ref(), Some(&key), "the retry reuses it");
    assert!(seen.iter().all(|(method, _, api_key)| method == "POST" && api_key.as_deref() == Some("the-key")));
    assert_eq!(increment(&stack.api.url, &["invoices"]).await.ok().stdout, "2\n", "no value was skipped");
}

#[tokio::test]
async fn service_errors_show_their_code_and_a_missing_counter_exits_1() {
    let stack = LambdaStack::start(1).await;
    let run = counterctl(&["get", "ghost", "--url", &stack.api.url]).await;
    assert_eq!(run.code, 1, "a counter not there is a negative answer: {}", run.stderr);
    assert_eq!(
        run.stderr,
        "counterctl: no counter \"ghost\" yet (counter_not_found: counter \"ghost\" was never incremented)\n"
    );
    let bad = increment(&stack.api.url, &["_counterctl#mine"]).await;
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("400 invalid_counter_name"), "{}", bad.stderr);
}

#[tokio::test]
async fn an_unreachable_url_is_named_in_the_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let run = increment(&url, &["x"]).await;
    assert_ne!(run.code, 0);
    assert!(run.stderr.starts_with(&format!("error: could not reach {url}/counter/increment: ")), "{}", run.stderr);
    assert!(run.stderr.contains("hint: check --url / COUNTERCTL_URL"), "{}", run.stderr);
}

#[tokio::test]
async fn the_url_and_api_key_are_discovered_from_the_stack() {
    let deployment = Deployment::new().await;
    let stack = StackOptions { name: deployment.name.clone(), table: Some(deployment.table.clone()), stage: None };
    let apigateway = deployment.apigateway();
    let clients = Clients::new(deployment.aws.clone());
    let missing = discover(&clients, &stack).await.unwrap_err();
    assert!(
        format!("{missing:#}")
            .starts_with(&format!("no API named {} in us-east-1\nhint: run `counterctl install`", stack.name))
    );

    deployment.install().await;
    let api_id = deployment.api_id().await.unwrap();
    let keys = apigateway.get_api_keys().name_query(&stack.name).include_values(true).send().await.unwrap();
    let key = keys.items().iter().find(|key| key.name() == Some(&stack.name)).unwrap().value().unwrap().to_owned();
    let url = format!("https://{api_id}.execute-api.us-east-1.amazonaws.com/prod");
    let discovered = discover(&clients, &stack).await.unwrap();
    assert_eq!(discovered.url(), url);
    assert!(matches!(discovered.auth(), Auth::ApiKey(sent) if *sent == key), "{:?}", discovered.auth());
    let shown = deployment.run("status", &["--show-api-key", "--output", "json"]).await.ok().json();
    assert_eq!(shown["api_key"], key.as_str());
    let install = deployment.run("install", &["--show-api-key"]).await.ok();
    assert!(
        install.stdout.contains(&format!("curl -X POST -H 'x-api-key: {key}' '{url}/counter/increment")),
        "{}",
        install.stdout
    );

    deployment.run("install", &["--auth", "none", "--yes"]).await.ok();
    let discovered = discover(&clients, &stack).await.unwrap();
    assert_eq!(discovered.url(), url);
    assert!(matches!(discovered.auth(), Auth::None), "{:?}", discovered.auth());

    // With IAM the caller signs as itself: the credentials it has, for execute-api.
    deployment.run("install", &["--auth", "iam", "--yes"]).await.ok();
    let Auth::Iam(signer) = discover(&clients, &stack).await.unwrap().auth().clone() else {
        panic!("an IAM stack is called with a signature");
    };
    assert_eq!((signer.region(), signer.service()), ("us-east-1", SigningService::ExecuteApi));
    assert_eq!(
        signer.credentials().await.unwrap().access_key_id(),
        aws_sdk_dynamodb::config::Credentials::for_tests().access_key_id()
    );
}
