//! `counterctl serve` run as a shared, production service: an API key, timeouts for
//! stalled and idle connections, a cap on open connections, `/healthz`, Prometheus
//! `/metrics` (checked with a real OpenMetrics parser), and the access log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Backend;
use crate::support::cli::counterctl;
use crate::support::repo_root;
use crate::support::serve::{
    DataDir, HttpConnection, Serve, is_closed, raw_request, serve_command_on, serve_until_exit,
};

/// The key the keyed servers are started with: 26 printable characters.
const KEY: &str = "KEY-SECRET-0123456789-abcd";
/// A wrong key of the same length, differing in the last character only.
const WRONG_KEY: &str = "KEY-SECRET-0123456789-abce";
const FORBIDDEN: &str = r#"{"message":"Forbidden"}"#;
/// How long a test waits for something the server must do within a second or two.
const GENEROUS: Duration = Duration::from_secs(15);

/// A request's status, `Content-Type` and body text.
async fn answer(request: reqwest::RequestBuilder) -> (u16, String, String) {
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// A request with `x-api-key: KEY`.
fn keyed(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request.header("x-api-key", KEY)
}

/// `POST /counter/increment?counter=NAME` with the key; must succeed.
async fn keyed_increment(serve: &Serve, counter: &str) -> i64 {
    let (status, _, body) =
        answer(keyed(serve.http.post(serve.url(&format!("/counter/increment?counter={counter}"))))).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["new_value"].as_i64().expect("new_value")
}

/// The counter's value read with the key, `None` when it does not exist.
async fn keyed_value(serve: &Serve, counter: &str) -> Option<i64> {
    match answer(keyed(serve.http.get(serve.url(&format!("/counter/value?counter={counter}"))))).await {
        (200, _, body) => Some(serde_json::from_str::<Value>(&body).unwrap()["value"].as_i64().expect("value")),
        (404, _, _) => None,
        (status, _, body) => panic!("unexpected {status} {body}"),
    }
}

fn assert_forbidden((status, content_type, body): (u16, String, String), case: &str) {
    assert_eq!((status, body.as_str()), (403, FORBIDDEN), "{case}");
    assert!(content_type.starts_with("application/json"), "{case}: {content_type}");
}

// ---------------------------------------------------------------------------------------
// Auth

#[tokio::test]
async fn without_the_key_or_with_a_wrong_one_every_request_gets_403_forbidden_and_changes_nothing() {
    let serve = Serve::start_with(&["--api-key", KEY]).await;
    assert_eq!(keyed_increment(&serve, "guarded").await, 1);

    let increment = serve.url("/counter/increment?counter=guarded");
    let staged = serve.url("/prod/counter/increment?counter=guarded");
    let value = serve.url("/counter/value?counter=guarded");
    let http = &serve.http;
    let refused = [
        ("no key", http.post(&increment)),
        ("no key, below /prod", http.post(&staged)),
        ("no key, with an idempotency key", http.post(&increment).header("Idempotency-Key", "refused-1")),
        ("a wrong key", http.post(&increment).header("x-api-key", WRONG_KEY)),
        ("the key's prefix", http.post(&increment).header("x-api-key", &KEY[..KEY.len() - 1])),
        ("the key and more", http.post(&increment).header("x-api-key", format!("{KEY}x"))),
        ("the key in another header", http.post(&increment).header("authorization", KEY)),
        ("an empty key", http.post(&increment).header("x-api-key", "")),
        ("a read without the key", http.get(&value)),
        ("a read with a wrong key", http.get(&value).header("x-api-key", WRONG_KEY)),
        ("an unknown path", http.get(serve.url("/nowhere"))),
        ("a wrong method", http.delete(&value)),
    ];
    for (case, request) in refused {
        assert_forbidden(answer(request).await, case);
    }

    assert_eq!(keyed_value(&serve, "guarded").await, Some(1), "no refused request moved the counter");
    // The refused idempotency key was not recorded either: with the key it is a new request.
    let (status, _, body) = answer(keyed(http.post(&increment)).header("Idempotency-Key", "refused-1")).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"counter": "guarded", "new_value": 2}))
    );
}

#[tokio::test]
async fn with_the_key_every_route_answers_as_without_auth() {
    let serve = Serve::start_with(&["--api-key", KEY]).await;
    let (status, _, body) = answer(keyed(serve.http.post(serve.url("/counter/increment?counter=open")))).await;
    assert_eq!((status, body.as_str()), (200, r#"{"counter":"open","new_value":1}"#));
    // Header names are case-insensitive (sent raw: client libraries lowercase them).
    let mut connection = HttpConnection::open(&serve.address()).await;
    let response =
        connection.request("POST", "/prod/counter/increment?counter=open&count=3", &[("X-API-KEY", KEY)]).await;
    let response = response.unwrap();
    assert_eq!(
        (response.status, response.body.as_str()),
        (200, r#"{"counter":"open","new_value":4,"first_value":2,"count":3}"#)
    );
    let (status, _, body) = answer(keyed(serve.http.get(serve.url("/counter/value?counter=open")))).await;
    assert_eq!((status, body.as_str()), (200, r#"{"counter":"open","value":4}"#));
    let (status, _, body) = answer(keyed(serve.http.get(serve.url("/nowhere")))).await;
    assert_eq!((status, body.as_str()), (404, r#"{"error_code":"404_not_found"}"#));
    let (status, _, body) = answer(keyed(serve.http.post(serve.url("/counter/increment")))).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, &body["error_code"]), (400, &json!("counter_not_specified")), "{body}");
}

#[tokio::test]
async fn counterctl_increment_and_get_with_api_key_work_against_a_keyed_serve() {
    let serve = Serve::start_with(&["--api-key", KEY]).await;
    for (command, url, printed) in [
        ("increment", serve.url.clone(), "1"),
        ("increment", serve.url("/prod"), "2"),
        ("get", serve.url.clone(), "2"),
        ("get", serve.url("/prod"), "2"),
    ] {
        let run = counterctl(&[command, "cli", "--url", &url, "--api-key", KEY]).await.ok();
        assert_eq!(run.stdout.trim(), printed, "{command} {url}");
    }
    let range = counterctl(&["increment", "cli", "--count", "3", "--url", &serve.url, "--api-key", KEY]).await.ok();
    assert_eq!(range.stdout.trim(), "3-5");

    for args in
        [&["increment", "cli", "--url", &serve.url][..], &["get", "cli", "--url", &serve.url, "--api-key", WRONG_KEY]]
    {
        let run = counterctl(args).await;
        assert!(!run.success(), "{args:?} without the right key: {run:?}");
        assert!(run.stdout.trim().is_empty(), "{args:?} printed no value: {run:?}");
    }
    assert_eq!(keyed_value(&serve, "cli").await, Some(5), "the refused calls changed nothing");
}

#[tokio::test]
async fn an_api_key_file_is_read_with_its_surrounding_whitespace_trimmed() {
    let directory = DataDir::new();
    std::fs::create_dir_all(directory.path()).unwrap();
    let file = directory.path().join("api-key");
    std::fs::write(&file, format!("  {KEY}\n\n")).unwrap();
    let serve = Serve::start_with(&["--api-key-file", file.to_str().unwrap()]).await;

    assert_forbidden(answer(serve.http.post(serve.url("/counter/increment?counter=filed"))).await, "no key");
    let wrong = serve.http.post(serve.url("/counter/increment?counter=filed")).header("x-api-key", WRONG_KEY);
    assert_forbidden(answer(wrong).await, "wrong key");
    assert_eq!(keyed_increment(&serve, "filed").await, 1);
}

#[tokio::test]
async fn the_key_can_come_from_counterctl_serve_api_key_in_the_environment() {
    let data_dir = DataDir::new();
    let mut command = serve_command_on("127.0.0.1:0", data_dir.path());
    command.env("COUNTERCTL_SERVE_API_KEY", KEY);
    let serve = Serve::start_command(command).await;

    assert_forbidden(answer(serve.http.post(serve.url("/counter/increment?counter=env"))).await, "no key");
    assert_eq!(keyed_increment(&serve, "env").await, 1);
}

#[tokio::test]
async fn only_keys_of_20_to_128_printable_ascii_characters_without_spaces_are_accepted() {
    let data_dir = DataDir::new();
    std::fs::create_dir_all(data_dir.path()).unwrap();
    let file = data_dir.path().join("short-key");
    std::fs::write(&file, "k".repeat(19) + "\n").unwrap();
    let spaced_file = data_dir.path().join("spaced-key");
    std::fs::write(&spaced_file, "a key with spaces in it 0123456789\n").unwrap();

    let too_short = "k".repeat(19);
    let too_long = "k".repeat(129);
    let bad = [
        ("19 characters", vec!["--api-key", &too_short]),
        ("129 characters", vec!["--api-key", &too_long]),
        ("empty", vec!["--api-key", ""]),
        ("a space", vec!["--api-key", "a-key-with-a space-0123456789"]),
        ("a tab", vec!["--api-key", "a-key-with-a\ttab-0123456789"]),
        ("a control character", vec!["--api-key", "a-key-with-a\u{7f}-del-0123456789"]),
        ("non-ASCII", vec!["--api-key", "schlüssel-schlüssel-schlüssel"]),
        ("19 characters in a file", vec!["--api-key-file", file.to_str().unwrap()]),
        ("a space in a file", vec!["--api-key-file", spaced_file.to_str().unwrap()]),
    ];
    for (case, args) in bad {
        let mut command = serve_command_on("127.0.0.1:0", data_dir.path());
        command.args(&args);
        let run = serve_until_exit(command).await;
        assert_eq!(run.code, 2, "{case}: {run:?}");
        assert!(run.stdout.is_empty(), "{case}: announced nothing: {run:?}");
    }

    // The shortest and the longest keys, with the first and last printable characters.
    for key in ["!bcdefghijklmnopqrs~".to_owned(), format!("~{}!", "k".repeat(126))] {
        let mut serve = Serve::start_with(&["--api-key", &key]).await;
        let request = serve.http.post(serve.url("/counter/increment?counter=edge")).header("x-api-key", &key);
        let (status, _, body) = answer(request).await;
        assert_eq!((status, body.as_str()), (200, r#"{"counter":"edge","new_value":1}"#), "{} characters", key.len());
        assert_forbidden(answer(serve.http.post(serve.url("/counter/increment?counter=edge"))).await, "no key");
        assert!(serve.stop(Signal::SIGTERM).await.success());
    }
}

#[tokio::test]
async fn healthz_answers_ok_without_the_key() {
    let serve = Serve::start_with(&["--api-key", KEY]).await;
    for request in [
        serve.http.get(serve.url("/healthz")),
        serve.http.get(serve.url("/healthz")).header("x-api-key", WRONG_KEY),
        keyed(serve.http.get(serve.url("/healthz"))),
    ] {
        let (status, content_type, body) = answer(request).await;
        assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
        assert!(content_type.starts_with("application/json"), "{content_type}");
    }
    // And on a server without a key.
    let open = Serve::start().await;
    let (status, _, body) = answer(open.http.get(open.url("/healthz"))).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
}

#[tokio::test]
async fn listening_beyond_loopback_without_a_key_exits_2_before_binding_and_names_the_fixes() {
    // A port held on loopback: had the server tried to bind 0.0.0.0 on it, the bind would
    // have failed with "address in use" instead of the refusal.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    for listen in [format!("0.0.0.0:{port}"), "0.0.0.0:0".to_owned()] {
        let data_dir = DataDir::new();
        let run = serve_until_exit(serve_command_on(&listen, data_dir.path())).await;
        assert_eq!(run.code, 2, "{listen}: {run:?}");
        assert!(run.stderr.contains("--api-key") && run.stderr.contains("--no-auth"), "{listen}: {run:?}");
        assert!(!run.stderr.to_lowercase().contains("in use"), "refused before binding: {run:?}");
        assert!(run.stdout.is_empty(), "announced nothing: {run:?}");
    }
}

#[tokio::test]
async fn no_auth_allows_listening_beyond_loopback_with_a_warning() {
    let data_dir = DataDir::new();
    let mut command = serve_command_on("0.0.0.0:0", data_dir.path());
    command.arg("--no-auth");
    let serve = Serve::start_command(command).await;
    let stderr = serve.stderr_containing("warning").await;
    assert!(stderr.lines().any(|line| line.to_lowercase().contains("warning")), "{stderr}");
    let mut connection = HttpConnection::open(&serve.address()).await;
    let response = connection.request("POST", "/counter/increment?counter=public", &[]).await.unwrap();
    assert_eq!((response.status, response.body.as_str()), (200, r#"{"counter":"public","new_value":1}"#));
}

#[tokio::test]
async fn no_auth_together_with_a_key_is_a_usage_error() {
    let data_dir = DataDir::new();
    for args in [["--no-auth", "--api-key", KEY], ["--api-key", KEY, "--no-auth"]] {
        let mut command = serve_command_on("127.0.0.1:0", data_dir.path());
        command.args(args);
        let run = serve_until_exit(command).await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Stalled and idle clients

/// A request line and a header, without the blank line that ends the headers.
const PARTIAL_REQUEST: &[u8] = b"POST /counter/increment?counter=stalled HTTP/1.1\r\nHost: a\r\n";

/// Waits for the server to close `stream` without answering; returns how long after
/// `connected` it did. Panics if the server answers anything, or after [`GENEROUS`].
async fn server_closes(mut stream: impl AsyncReadExt + Unpin, connected: Instant) -> Duration {
    let mut buffer = [0u8; 1024];
    match tokio::time::timeout(GENEROUS, stream.read(&mut buffer)).await {
        Err(_) => panic!("still open {:?} after it connected", connected.elapsed()),
        Ok(Ok(0)) => connected.elapsed(),
        Ok(Err(error)) if is_closed(&error) => connected.elapsed(),
        Ok(Err(error)) => panic!("reading failed: {error}"),
        Ok(Ok(n)) => panic!("a stalled request was answered: {:?}", String::from_utf8_lossy(&buffer[..n])),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stalled_partial_requests_are_closed_after_the_header_timeout_while_a_normal_client_is_served() {
    const STALLED: usize = 1_000;
    // Long enough for the 1,000 connections and a round of the normal client to fit in,
    // on a loaded machine too.
    const HEADER_TIMEOUT: u64 = 5;
    let serve = Serve::start_with(&["--header-timeout", &HEADER_TIMEOUT.to_string()]).await;
    let address = serve.address();

    let mut stalls = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        let connected = Instant::now();
        let mut stream = TcpStream::connect(&address).await.expect("the server accepts connections");
        stream.write_all(PARTIAL_REQUEST).await.expect("the server takes a partial request");
        stalls.push((connected, stream));
    }
    let closed = Arc::new(AtomicUsize::new(0));
    let watchers: Vec<_> = stalls
        .into_iter()
        .map(|(connected, stream)| {
            let closed = Arc::clone(&closed);
            tokio::spawn(async move {
                let lived = server_closes(stream, connected).await;
                closed.fetch_add(1, Ordering::SeqCst);
                lived
            })
        })
        .collect();

    // A normal client, on new connections and on one kept alive, until every stalled
    // connection is gone (and for at least 10 rounds).
    let mut kept_alive = HttpConnection::open(&address).await;
    let (mut values, mut rounds, mut rounds_while_all_stalled) = (Vec::new(), 0, 0);
    let mut slowest_round = Duration::ZERO;
    while rounds < 10 || closed.load(Ordering::SeqCst) < STALLED {
        assert!(rounds < 2_000, "the stalled connections were not all closed");
        let before = closed.load(Ordering::SeqCst);
        let round_started = Instant::now();
        let fresh = raw_request(
            &serve.url,
            b"POST /counter/increment?counter=normal HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec(),
        )
        .await;
        assert_eq!(fresh.status, 200, "{fresh:?}");
        values.push(serde_json::from_str::<Value>(&fresh.body).unwrap()["new_value"].as_i64().unwrap());
        let reused = kept_alive.request("POST", "/counter/increment?counter=normal", &[]).await;
        let reused = reused.expect("the kept-alive connection stays open while in use");
        assert_eq!(reused.status, 200, "{reused:?}");
        values.push(serde_json::from_str::<Value>(&reused.body).unwrap()["new_value"].as_i64().unwrap());
        slowest_round = slowest_round.max(round_started.elapsed());
        if before == 0 && closed.load(Ordering::SeqCst) == 0 {
            rounds_while_all_stalled += 1;
        }
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(values, (1..=values.len() as i64).collect::<Vec<_>>(), "every answer right, in order");
    assert!(rounds_while_all_stalled > 0, "the normal client was answered while all {STALLED} stalls were open");

    let mut lifetimes = Vec::new();
    for watcher in watchers {
        lifetimes.push(watcher.await.expect("every stalled connection is closed, unanswered"));
    }
    let (shortest, longest) = (lifetimes.iter().min().unwrap(), lifetimes.iter().max().unwrap());
    eprintln!(
        "{rounds_while_all_stalled} of {rounds} rounds answered while all {STALLED} stalls were open \
         (the slowest round of two requests took {slowest_round:?}); stalls closed after {shortest:?} to {longest:?}"
    );
    // Never before the timeout: the sweep meets deadlines late, not early.
    assert!(*shortest >= Duration::from_secs(HEADER_TIMEOUT), "one was closed after {shortest:?}");
    assert_eq!(serve.value("stalled").await, None, "no stalled request was applied");
    assert_eq!(serve.increment("normal").await, values.len() as i64 + 1);
}

#[tokio::test]
async fn a_request_trickling_a_header_byte_every_300_ms_is_closed_after_the_header_timeout() {
    let serve = Serve::start_with(&["--header-timeout", "2"]).await;
    let connected = Instant::now();
    let stream = TcpStream::connect(serve.address()).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let closing = tokio::spawn(server_closes(reader, connected));
    writer.write_all(b"POST /counter/increment?counter=trickle HTTP/1.1\r\nHost: a\r\nX-Trickle: ").await.unwrap();
    let mut trickled = 0;
    // Bounded: the reader gives up after GENEROUS.
    while !closing.is_finished() && trickled < 100 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if writer.write_all(b"a").await.is_err() {
            break;
        }
        trickled += 1;
    }
    let lived = closing.await.expect("the trickling request is closed, unanswered");
    eprintln!("closed after {lived:?} and {trickled} trickled bytes");
    assert!(trickled >= 3, "bytes kept arriving until it was closed: {trickled} in {lived:?}");
    assert!(lived >= Duration::from_secs(1), "not before the header timeout: {lived:?}");
    assert_eq!(serve.value("trickle").await, None);
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let serve = Serve::start_with(&["--header-timeout", "1"]).await;
    let connected = Instant::now();
    let stream = TcpStream::connect(serve.address()).await.unwrap();
    let lived = server_closes(stream, connected).await;
    eprintln!("closed after {lived:?}");
    assert_eq!(serve.increment("after").await, 1, "and the server serves on");
}

#[tokio::test]
async fn a_body_trickling_a_byte_every_300_ms_is_closed_after_the_header_timeout_unanswered() {
    let serve = Serve::start_with(&["--header-timeout", "1"]).await;
    let connected = Instant::now();
    let mut stream = TcpStream::connect(serve.address()).await.unwrap();
    stream
        .write_all(b"POST /counter/increment?counter=body HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n")
        .await
        .unwrap();
    let trickle = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if stream.write_all(b"x").await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(GENEROUS, trickle).await.expect("the trickle ends");
    let lived = server_closes(stream, connected).await;
    assert!(lived >= Duration::from_secs(1), "closed after {lived:?}");
    assert_eq!(serve.value("body").await, None, "the request was never applied");
}

#[tokio::test]
async fn a_partial_request_pipelined_behind_a_complete_one_is_closed_after_the_idle_timeout() {
    // The partial bytes arrive with the complete request, in one read: only hyper knows
    // it holds them, so the connection counts as idle (docs/guide.md, `counterctl serve`).
    let serve = Serve::start_with(&["--header-timeout", "1", "--idle-timeout", "2"]).await;
    let connected = Instant::now();
    let mut stream = TcpStream::connect(serve.address()).await.unwrap();
    let mut pipelined = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
    pipelined.extend_from_slice(PARTIAL_REQUEST);
    stream.write_all(&pipelined).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(GENEROUS, stream.read(&mut answer)).await.expect("answered").unwrap();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&answer[..read]));
    let lived = server_closes(stream, connected).await;
    assert!(lived >= Duration::from_secs(2), "closed after {lived:?}");
    assert_eq!(serve.value("stalled").await, None, "the partial request was never applied");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let serve = Serve::start_with(&["--idle-timeout", "1"]).await;
    let mut connection = HttpConnection::open(&serve.address()).await;
    let response = connection.request("POST", "/counter/increment?counter=idle", &[]).await.unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    let idle_since = Instant::now();
    assert!(connection.closed_within(GENEROUS).await, "closed once idle");
    eprintln!("closed after {:?} idle", idle_since.elapsed());
    assert_eq!(serve.value("idle").await, Some(1));
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_request_gets_the_whole_answer_and_then_the_connection_closes() {
    let serve = Serve::start().await;
    let mut values = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(serve.address()).await.unwrap();
        // Keep-alive (no `Connection: close`): the server must see the half-close itself.
        stream.write_all(b"POST /counter/increment?counter=half HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        stream.shutdown().await.expect("the sending side shuts down");
        let mut answer = Vec::new();
        tokio::time::timeout(GENEROUS, stream.read_to_end(&mut answer))
            .await
            .expect("the server answers and then closes")
            .unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        let body = answer.split_once("\r\n\r\n").expect("a head and a body").1;
        let body: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("a whole body: {answer:?}"));
        values.push(body["new_value"].as_i64().expect("the value"));
    }
    assert_eq!(values, [1, 2, 3], "each answer carries its own committed value, none repeated");
}

#[tokio::test]
async fn a_client_that_half_closes_inside_its_request_is_closed_at_once_and_nothing_is_applied() {
    let serve = Serve::start_with(&["--header-timeout", "30"]).await;
    let connected = Instant::now();
    let mut stream = TcpStream::connect(serve.address()).await.unwrap();
    stream.write_all(PARTIAL_REQUEST).await.unwrap();
    stream.shutdown().await.unwrap();
    // The request can never be completed: the server closes without waiting for the
    // header timeout.
    let lived = server_closes(stream, connected).await;
    assert!(lived < Duration::from_secs(30), "closed after {lived:?}");
    assert_eq!(serve.value("stalled").await, None, "the partial request was never applied");
}

#[tokio::test]
async fn a_keep_alive_connection_making_a_request_every_300_ms_stays_open_past_the_idle_timeout() {
    let serve = Serve::start_with(&["--idle-timeout", "2", "--header-timeout", "2"]).await;
    let mut connection = HttpConnection::open(&serve.address()).await;
    let started = Instant::now();
    // Ten requests 300 ms apart: over 3 s on one connection, more than the idle timeout.
    for expected in 1..=10 {
        let response = connection
            .request("POST", "/counter/increment?counter=busy", &[])
            .await
            .unwrap_or_else(|error| panic!("closed after {:?} while in use: {error}", started.elapsed()));
        assert_eq!(response.body, format!(r#"{{"counter":"busy","new_value":{expected}}}"#));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Connection cap

/// `clients` tasks, each making one increment of `counter` on a connection of its own
/// (closed after the answer); each returns the value it got.
fn one_request_clients(serve: &Serve, counter: &str, clients: usize) -> Vec<tokio::task::JoinHandle<i64>> {
    (0..clients)
        .map(|_| {
            let url = serve.url.clone();
            let request =
                format!("POST /counter/increment?counter={counter} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
            tokio::spawn(async move {
                // Connecting and reading panic on any error: no client may be refused.
                let response = raw_request(&url, request.into_bytes()).await;
                assert_eq!(response.status, 200, "{response:?}");
                serde_json::from_str::<Value>(&response.body).unwrap()["new_value"].as_i64().unwrap()
            })
        })
        .collect()
}

/// Two connections that made a request each and are kept open, idle.
async fn hold_two(serve: &Serve) -> Vec<HttpConnection> {
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut connection = HttpConnection::open(&serve.address()).await;
        let response = connection.request("GET", "/healthz", &[]).await.unwrap();
        assert_eq!(response.status, 200);
        held.push(connection);
    }
    held
}

#[tokio::test]
async fn past_max_connections_new_clients_wait_and_are_served_once_connections_close() {
    let serve = Serve::start_with(&["--max-connections", "2"]).await;
    let held = hold_two(&serve).await;
    let clients = one_request_clients(&serve, "capped", 5);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(clients.iter().all(|client| !client.is_finished()), "no client was served past the cap");

    drop(held);
    let mut values = BTreeSet::new();
    for client in clients {
        let value = tokio::time::timeout(GENEROUS, client).await.expect("served once the held ones closed");
        assert!(values.insert(value.expect("no client got an error")));
    }
    assert_eq!(values, (1..=5).collect());
}

#[tokio::test]
async fn past_max_connections_clients_are_served_once_the_idle_timeout_closes_held_connections() {
    let serve = Serve::start_with(&["--max-connections", "2", "--idle-timeout", "1"]).await;
    let mut held = hold_two(&serve).await;
    let clients = one_request_clients(&serve, "capped", 5);
    let mut values = BTreeSet::new();
    for client in clients {
        let value = tokio::time::timeout(GENEROUS, client).await.expect("served once idle ones were closed");
        assert!(values.insert(value.expect("no client got an error")));
    }
    assert_eq!(values, (1..=5).collect());
    for connection in &mut held {
        assert!(connection.closed_within(GENEROUS).await, "the server closed the idle connection");
    }
}

// ---------------------------------------------------------------------------------------
// Metrics

/// Parses an OpenMetrics exposition with the `prometheus_client` package's parser (in the
/// test venv, from scripts/requirements-test.txt), which rejects anything invalid, and
/// returns its families as JSON: `[{"name", "type", "samples": [{"name", "labels", "value"}]}]`.
const PARSE_OPENMETRICS: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = [
    {"name": f.name, "type": f.type,
     "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
    for f in text_string_to_metric_families(sys.stdin.read())
]
json.dump(families, sys.stdout)
"#;

/// A parsed exposition.
struct Metrics {
    text: String,
    families: Vec<Value>,
}

impl Metrics {
    async fn parse(text: String) -> Self {
        let venv_python = repo_root().join(".venv/bin/python");
        let python = if venv_python.exists() { venv_python } else { "python3".into() };
        let mut parser = tokio::process::Command::new(&python)
            .args(["-c", PARSE_OPENMETRICS])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("{} runs ({error}): run the tests with scripts/test.sh", python.display()));
        let mut stdin = parser.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).await.unwrap();
        drop(stdin);
        let output = parser.wait_with_output().await.unwrap();
        assert!(
            output.status.success(),
            "the exposition is not valid OpenMetrics: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
        let families = serde_json::from_slice(&output.stdout).unwrap();
        Self { text, families }
    }

    /// The family that has a sample named `sample` (a counter's family drops `_total`).
    fn family_of(&self, sample: &str) -> Option<&Value> {
        self.families.iter().find(|family| {
            family["samples"].as_array().unwrap().iter().any(|s| s["name"] == sample) || family["name"] == sample
        })
    }

    /// The value of the sample `name` with exactly `labels`, 0 when there is none (a label
    /// set not seen yet).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let found: Vec<f64> = self
            .samples(name)
            .filter(|(sample_labels, _)| {
                sample_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<BTreeMap<_, _>>() == labels
            })
            .map(|(_, value)| value)
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} twice:\n{}", self.text);
        found.first().copied().unwrap_or(0.0)
    }

    /// Every sample named `name`: its labels and value.
    fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (BTreeMap<String, String>, f64)> + 'a {
        self.families
            .iter()
            .flat_map(|family| family["samples"].as_array().unwrap())
            .filter(move |s| s["name"] == name)
            .map(|s| {
                let labels = s["labels"].as_object().unwrap();
                let labels = labels.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
                (labels, s["value"].as_f64().expect("a numeric value"))
            })
    }

    /// `counterctl_requests_total` by (route, status).
    fn requests(&self) -> BTreeMap<(String, String), f64> {
        self.samples("counterctl_requests_total")
            .map(|(labels, value)| {
                assert_eq!(labels.len(), 2, "route and status only: {labels:?}");
                ((labels["route"].clone(), labels["status"].clone()), value)
            })
            .collect()
    }
}

/// `GET /metrics` (with the key when given), checked as OpenMetrics and parsed.
async fn scrape(serve: &Serve, key: Option<&str>) -> Metrics {
    let mut request = serve.http.get(serve.url("/metrics"));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let (status, content_type, text) = answer(request).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    Metrics::parse(text).await
}

#[tokio::test]
async fn metrics_are_valid_openmetrics_text_behind_the_key() {
    let serve = Serve::start_with(&["--api-key", KEY]).await;
    keyed_increment(&serve, "metered").await;
    assert_forbidden(answer(serve.http.get(serve.url("/metrics"))).await, "no key");
    assert_forbidden(answer(serve.http.get(serve.url("/metrics")).header("x-api-key", WRONG_KEY)).await, "wrong key");

    let metrics = scrape(&serve, Some(KEY)).await;
    for (sample, kind) in [
        ("counterctl_requests_total", "counter"),
        ("counterctl_commits_total", "counter"),
        ("counterctl_commit_batch_size_bucket", "histogram"),
        ("counterctl_commit_seconds_bucket", "histogram"),
        ("counterctl_open_connections", "gauge"),
    ] {
        let family = metrics.family_of(sample).unwrap_or_else(|| panic!("no {sample}:\n{}", metrics.text));
        assert_eq!(family["type"], kind, "{sample}");
    }
    for histogram in ["counterctl_commit_batch_size", "counterctl_commit_seconds"] {
        let count = metrics.value(&format!("{histogram}_count"), &[]);
        assert!(count >= 1.0, "{histogram}_count {count}:\n{}", metrics.text);
        assert_eq!(metrics.value(&format!("{histogram}_bucket"), &[("le", "+Inf")]), count, "{histogram}");
        assert!(metrics.samples(&format!("{histogram}_sum")).count() == 1, "{histogram}_sum");
    }

    // Without a key, /metrics is open like the rest of the API.
    let open = Serve::start().await;
    open.increment("metered").await;
    let metrics = scrape(&open, None).await;
    assert_eq!(metrics.value("counterctl_requests_total", &[("route", "/counter/increment"), ("status", "200")]), 1.0);
}

#[tokio::test]
async fn requests_total_rises_by_exactly_the_requests_made_per_route_and_status() {
    let serve = Serve::start_with(&["--api-key", KEY]).await;
    keyed_increment(&serve, "warmup").await;
    let before = scrape(&serve, Some(KEY)).await.requests();

    let http = &serve.http;
    let mut requests: Vec<(reqwest::RequestBuilder, u16)> = Vec::new();
    for path in ["/counter/increment?counter=m", "/prod/counter/increment?counter=m"] {
        for _ in 0..if path.starts_with("/prod") { 2 } else { 5 } {
            requests.push((keyed(http.post(serve.url(path))), 200));
        }
    }
    for _ in 0..2 {
        requests.push((keyed(http.get(serve.url("/counter/value?counter=m"))), 200));
    }
    requests.push((keyed(http.get(serve.url("/counter/value?counter=never"))), 404));
    for path in ["/counter/increment", "/counter/increment?counter=", "/counter/increment?counter=m&count=0"] {
        requests.push((keyed(http.post(serve.url(path))), 400));
    }
    requests.push((keyed(http.get(serve.url("/counter/increment?counter=m"))), 405));
    for path in ["/nowhere", "/prod/nowhere?counter=m"] {
        requests.push((keyed(http.get(serve.url(path))), 404));
    }
    for _ in 0..2 {
        requests.push((http.post(serve.url("/counter/increment?counter=m")), 403));
    }
    requests.push((http.get(serve.url("/counter/value?counter=m")).header("x-api-key", WRONG_KEY), 403));
    requests.push((http.get(serve.url("/nowhere")), 403));
    for _ in 0..2 {
        requests.push((http.get(serve.url("/healthz")), 200));
    }
    requests.push((http.get(serve.url("/metrics")), 403));
    for (request, status) in requests {
        let (got, _, body) = answer(request).await;
        assert_eq!(got, status, "{body}");
    }

    let after = scrape(&serve, Some(KEY)).await.requests();
    let expected: BTreeMap<(String, String), f64> = [
        ("/counter/increment", "200", 7.0),
        ("/counter/value", "200", 2.0),
        ("/counter/value", "404", 1.0),
        ("/counter/increment", "400", 3.0),
        ("/counter/increment", "405", 1.0),
        ("unknown", "404", 2.0),
        ("/counter/increment", "403", 2.0),
        ("/counter/value", "403", 1.0),
        ("unknown", "403", 1.0),
        ("/healthz", "200", 2.0),
        ("/metrics", "403", 1.0),
        // The first scrape; the second does not count itself.
        ("/metrics", "200", 1.0),
    ]
    .into_iter()
    .map(|(route, status, rise)| ((route.to_owned(), status.to_owned()), rise))
    .collect();
    let label_sets: BTreeSet<_> = before.keys().chain(after.keys()).chain(expected.keys()).cloned().collect();
    let rises: BTreeMap<_, _> = label_sets
        .into_iter()
        .map(|labels| {
            let rise = after.get(&labels).copied().unwrap_or(0.0) - before.get(&labels).copied().unwrap_or(0.0);
            (labels, rise)
        })
        .filter(|(_, rise)| *rise != 0.0)
        .collect();
    assert_eq!(rises, expected, "before: {before:?}\nafter: {after:?}");
}

#[tokio::test]
async fn commits_and_the_commit_histograms_move_with_increments() {
    const INCREMENTS: usize = 5;
    let serve = Arc::new(Serve::start().await);
    let before = scrape(&serve, None).await;
    // One at a time: each is answered after its own commit.
    for _ in 0..INCREMENTS {
        serve.increment("committed").await;
    }
    // And a crowd at once.
    let crowd: Vec<_> = (0..20)
        .map(|_| {
            let serve = Arc::clone(&serve);
            tokio::spawn(async move { serve.increment("committed").await })
        })
        .collect();
    for client in crowd {
        client.await.unwrap();
    }
    let after = scrape(&serve, None).await;

    let rise = |name: &str| after.value(name, &[]) - before.value(name, &[]);
    let commits = rise("counterctl_commits_total");
    assert!(commits >= INCREMENTS as f64, "{commits} commits:\n{}", after.text);
    for histogram in ["counterctl_commit_batch_size", "counterctl_commit_seconds"] {
        let count = rise(&format!("{histogram}_count"));
        assert!(count >= INCREMENTS as f64, "{histogram}_count rose by {count}:\n{}", after.text);
        let sum = rise(&format!("{histogram}_sum"));
        assert!(sum > 0.0, "{histogram}_sum rose by {sum}");
        let inf = after.value(&format!("{histogram}_bucket"), &[("le", "+Inf")]);
        assert_eq!(inf, after.value(&format!("{histogram}_count"), &[]), "{histogram}");
    }
    let requests = rise("counterctl_commit_batch_size_sum");
    assert!(requests >= (INCREMENTS + 20) as f64, "every increment was in a committed batch: {requests}");
}

#[tokio::test]
async fn open_connections_reflects_connections_held_open() {
    let serve = Serve::start().await;
    let gauge = |metrics: &Metrics| metrics.value("counterctl_open_connections", &[]);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut connection = HttpConnection::open(&serve.address()).await;
        assert_eq!(connection.request("GET", "/healthz", &[]).await.unwrap().status, 200);
        held.push(connection);
    }
    let holding = gauge(&scrape(&serve, None).await);
    assert!(holding >= 3.0, "{holding} open while holding 3");

    drop(held);
    let deadline = Instant::now() + GENEROUS;
    loop {
        let now = gauge(&scrape(&serve, None).await);
        if now <= holding - 3.0 {
            break;
        }
        assert!(Instant::now() < deadline, "still {now} open after closing 3 of {holding}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Access log

const IDEMPOTENCY_SECRET: &str = "IDEMPOTENCY-SECRET";

/// The JSON objects among stderr's lines.
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok().filter(Value::is_object)).collect()
}

/// What one request's access log line must say (`None`: not checked).
struct Logged {
    method: &'static str,
    route: &'static str,
    status: u16,
    counter: Option<&'static str>,
    count: Option<i64>,
    idempotent: Option<bool>,
}

impl Logged {
    fn new(method: &'static str, route: &'static str, status: u16) -> Self {
        Self { method, route, status, counter: None, count: None, idempotent: None }
    }

    fn counter(self, counter: &'static str, idempotent: bool) -> Self {
        Self { counter: Some(counter), idempotent: Some(idempotent), ..self }
    }

    fn count(self, count: i64) -> Self {
        Self { count: Some(count), ..self }
    }

    fn matches(&self, line: &Value) -> bool {
        line["method"] == self.method
            && line["route"] == self.route
            && line["status"] == self.status
            && self.counter.is_none_or(|counter| line["counter"] == counter)
            // Absent (or null) when the request had no `count`.
            && line["count"] == self.count.map_or(Value::Null, |count| json!(count))
            && self.idempotent.is_none_or(|idempotent| line["idempotent"] == idempotent)
    }
}

/// Makes `requests` (each answered with the status its `Logged` says) to a server started
/// with `--access-log`, stops it, and returns its whole stderr.
async fn access_log_of(serve: &mut Serve, requests: Vec<(reqwest::RequestBuilder, Logged)>) -> (String, Vec<Logged>) {
    let mut expected = Vec::new();
    for (request, logged) in requests {
        let (status, _, body) = answer(request).await;
        assert_eq!(status, logged.status, "{} {}: {body}", logged.method, logged.route);
        expected.push(logged);
    }
    // Stopping waits for all of stderr.
    assert!(serve.stop(Signal::SIGTERM).await.success());
    (serve.stderr(), expected)
}

/// Exactly one JSON line per expected request, in any order, each with the Lambda
/// function's fields; and no header value anywhere on stderr.
fn assert_one_line_each(stderr: &str, expected: &[Logged], secrets: &[&str]) {
    let mut lines = json_lines(stderr);
    assert_eq!(lines.len(), expected.len(), "one JSON line per request:\n{stderr}");
    for line in &lines {
        assert_eq!(line["message"], "request", "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
        assert!(line["timestamp"].as_str().is_some_and(|t| !t.is_empty()), "{line}");
        assert!(line["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{line}");
        assert!(line["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{line}");
    }
    for logged in expected {
        let position = lines.iter().position(|line| logged.matches(line)).unwrap_or_else(|| {
            panic!(
                "no line for {} {} {} {:?} {:?} {:?}:\n{stderr}",
                logged.method, logged.route, logged.status, logged.counter, logged.count, logged.idempotent
            )
        });
        lines.remove(position);
    }
    for secret in secrets {
        assert!(!stderr.contains(secret), "a header value was logged ({secret}):\n{stderr}");
    }
    // Serve's own lines stay plain text.
    assert!(stderr.lines().any(|line| line.contains("stopping")), "{stderr}");
}

#[tokio::test]
async fn access_log_writes_one_json_line_per_api_request_with_the_lambda_fields_and_no_header_values() {
    let mut serve = Serve::start_with(&["--api-key", KEY, "--access-log"]).await;
    let http = serve.http.clone();
    let (key_1, key_2) = (format!("{IDEMPOTENCY_SECRET}-1"), format!("{IDEMPOTENCY_SECRET}-2"));
    let increment = serve.url("/counter/increment?counter=logged");
    let requests = vec![
        (
            keyed(http.post(&increment)).header("Idempotency-Key", &key_1),
            Logged::new("POST", "/counter/increment", 200).counter("logged", true),
        ),
        (
            keyed(http.post(serve.url("/prod/counter/increment?counter=logged&count=5")))
                .header("Idempotency-Key", &key_2),
            Logged::new("POST", "/counter/increment", 200).counter("logged", true).count(5),
        ),
        (keyed(http.post(&increment)), Logged::new("POST", "/counter/increment", 200).counter("logged", false)),
        (
            keyed(http.get(serve.url("/counter/value?counter=logged"))),
            Logged::new("GET", "/counter/value", 200).counter("logged", false),
        ),
        (
            keyed(http.post(serve.url("/counter/increment?counter=logged&count=0"))),
            Logged::new("POST", "/counter/increment", 400).counter("logged", false),
        ),
        (keyed(http.get(serve.url("/nowhere"))), Logged::new("GET", "unknown", 404)),
    ];
    let (stderr, expected) = access_log_of(&mut serve, requests).await;
    assert_one_line_each(&stderr, &expected, &[KEY, "KEY-SECRET", IDEMPOTENCY_SECRET]);
}

#[tokio::test]
async fn access_log_also_has_a_line_for_each_refused_health_and_metrics_request() {
    let mut serve = Serve::start_with(&["--api-key", KEY, "--access-log"]).await;
    let http = serve.http.clone();
    let requests = vec![
        (
            http.post(serve.url("/counter/increment?counter=logged"))
                .header("x-api-key", WRONG_KEY)
                .header("Idempotency-Key", IDEMPOTENCY_SECRET),
            Logged::new("POST", "/counter/increment", 403),
        ),
        (http.get(serve.url("/counter/value?counter=logged")), Logged::new("GET", "/counter/value", 403)),
        (http.get(serve.url("/healthz")), Logged::new("GET", "/healthz", 200)),
        (keyed(http.get(serve.url("/metrics"))), Logged::new("GET", "/metrics", 200)),
    ];
    let (stderr, expected) = access_log_of(&mut serve, requests).await;
    assert_one_line_each(&stderr, &expected, &[KEY, WRONG_KEY, "KEY-SECRET", IDEMPOTENCY_SECRET]);
}

#[tokio::test]
async fn access_log_request_ids_tell_requests_apart() {
    let mut serve = Serve::start_with(&["--access-log"]).await;
    let requests = (0..3)
        .map(|_| {
            let request = serve.http.post(serve.url("/counter/increment?counter=ids"));
            (request, Logged::new("POST", "/counter/increment", 200).counter("ids", false))
        })
        .collect();
    let (stderr, expected) = access_log_of(&mut serve, requests).await;
    assert_one_line_each(&stderr, &expected, &[]);
    let ids: BTreeSet<_> = json_lines(&stderr).iter().map(|line| line["request_id"].to_string()).collect();
    assert_eq!(ids.len(), 3, "each request has an id of its own, as on Lambda:\n{stderr}");
}

#[tokio::test]
async fn without_access_log_no_json_lines_are_written() {
    let mut serve = Serve::start_with(&["--api-key", KEY]).await;
    keyed_increment(&serve, "quiet").await;
    answer(serve.http.post(serve.url("/counter/increment?counter=quiet"))).await;
    answer(keyed(serve.http.get(serve.url("/nowhere")))).await;
    answer(serve.http.get(serve.url("/healthz"))).await;
    assert!(serve.stop(Signal::SIGTERM).await.success());
    let stderr = serve.stderr();
    assert!(json_lines(&stderr).is_empty(), "{stderr}");
    assert!(!stderr.contains(r#""message""#), "{stderr}");
    assert!(!stderr.contains(KEY), "{stderr}");
}
