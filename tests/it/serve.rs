//! `counterctl serve` on its own: what it prints, where it keeps counters, that an answer
//! is never taken back (crash, stop), how it copes with load and with malformed HTTP,
//! and that one data directory has one server. The API itself is checked on both
//! backends in `api.rs`, `idempotency.rs` and `concurrency.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::idempotency::post_with_key;
use crate::support::Backend;
use crate::support::backend::assert_unique_gapless_increments;
use crate::support::serve::{DataDir, Serve, counterctl_serve, raw_request, serve_command};

#[tokio::test]
async fn prints_its_url_where_counters_are_kept_and_a_curl_that_works() {
    let data_dir = DataDir::new();
    let mut command = Command::new(env!("CARGO_BIN_EXE_counterctl"));
    command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir.path());
    let (mut serve, announcement) = Serve::start_with_text_output(command).await;

    let database = data_dir.path().join("counters.sqlite3");
    assert!(announcement.lines().next().unwrap().contains(&format!("at {} ", serve.url)), "{announcement}");
    assert!(announcement.contains(&database.display().to_string()), "{announcement}");
    let curl = announcement.lines().map(str::trim).find(|line| line.starts_with("curl ")).expect("a curl line");
    let pasted = Command::new("sh").args(["-c", curl]).output().await.expect("curl runs");
    assert!(pasted.status.success(), "{pasted:?}");
    assert_eq!(String::from_utf8(pasted.stdout).unwrap(), r#"{"counter":"mycounter","new_value":1}"#);
    assert!(database.is_file());
    assert!(serve.stop(Signal::SIGINT).await.success());
}

#[tokio::test]
async fn counterctl_increment_and_get_talk_to_it_by_url() {
    let serve = Serve::start().await;
    for (command, url, printed) in
        [("increment", serve.url.clone(), "1"), ("increment", serve.url("/prod"), "2"), ("get", serve.url.clone(), "2")]
    {
        let output = Command::new(env!("CARGO_BIN_EXE_counterctl"))
            .args([command, "mycounter", "--url", &url])
            .env_remove("COUNTERCTL_API_KEY")
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{command} {url}: {output:?}");
        assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), printed, "{command} {url}");
    }
}

#[tokio::test]
async fn by_default_counters_are_kept_in_the_users_data_directory() {
    let home = DataDir::new();
    let mut command = counterctl_serve();
    command.env("HOME", home.path()).env_remove("XDG_DATA_HOME");
    let mut serve = Serve::start_command(command).await;
    assert_eq!(serve.database, home.path().join(".local/share/counterctl/counters.sqlite3"));
    assert_eq!(serve.increment("first").await, 1);
    assert!(serve.database.is_file());
    assert!(serve.stop(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn the_api_is_also_served_below_the_prod_stage_like_an_aws_install() {
    let serve = Serve::start().await;
    let (status, body) = serve.post("/prod/counter/increment?counter=staged").await;
    assert_eq!((status, body), (200, json!({"counter": "staged", "new_value": 1})));
    assert_eq!(serve.increment("staged").await, 2, "one counter, whichever path");
    assert_eq!(serve.get("/prod/counter/value?counter=staged").await, (200, json!({"counter": "staged", "value": 2})));
    for path in
        ["/", "/prod", "/prod/", "/product/counter/value?counter=staged", "/prod/prod/counter/value?counter=staged"]
    {
        let response = serve.http.get(serve.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(response.text().await.unwrap(), r#"{"error_code":"404_not_found"}"#, "{path}");
    }
}

#[tokio::test]
async fn counters_and_idempotency_keys_survive_a_restart() {
    let data_dir = DataDir::new();
    let mut first = Serve::start_in(data_dir.path()).await;
    first.post("/counter/increment?counter=kept&count=41").await;
    let keyed = post_with_key(&first, "/counter/increment?counter=kept", "kept-key").await;
    assert_eq!(keyed, (200, json!({"counter": "kept", "new_value": 42})));
    assert!(first.stop(Signal::SIGTERM).await.success());

    let second = Serve::start_in(data_dir.path()).await;
    assert_eq!(second.value("kept").await, Some(42));
    assert_eq!(post_with_key(&second, "/counter/increment?counter=kept", "kept-key").await, keyed);
    assert_eq!(second.increment("kept").await, 43);
}

#[tokio::test]
async fn idempotency_keys_expire_after_24_hours() {
    let data_dir = DataDir::new();
    let mut serve = Serve::start_in(data_dir.path()).await;
    assert_eq!(post_with_key(&serve, "/counter/increment?counter=daily", "report-1").await.0, 200);
    assert_eq!(post_with_key(&serve, "/counter/increment?counter=daily", "report-2").await.0, 200);
    assert!(serve.stop(Signal::SIGTERM).await.success());

    let database = rusqlite::Connection::open(&serve.database).unwrap();
    let remaining: i64 = database
        .query_row("SELECT expires_at - unixepoch() FROM idempotency_keys WHERE key = 'report-1'", [], |row| row.get(0))
        .unwrap();
    assert!((86_390..=86_400).contains(&remaining), "expires in {remaining} s");
    // A day has passed for report-1.
    database.execute("UPDATE idempotency_keys SET expires_at = unixepoch() - 1 WHERE key = 'report-1'", []).unwrap();
    drop(database);

    let serve = Serve::start_in(data_dir.path()).await;
    let (status, body) = post_with_key(&serve, "/counter/increment?counter=other", "report-1").await;
    assert_eq!((status, body), (200, json!({"counter": "other", "new_value": 1})), "an expired key is a new request");
    let (status, body) = post_with_key(&serve, "/counter/increment?counter=other", "report-2").await;
    assert_eq!((status, body["error_code"].as_str()), (409, Some("idempotency_key_reused")), "a live key is not");
}

#[tokio::test]
async fn expired_idempotency_records_are_removed() {
    let data_dir = DataDir::new();
    let mut serve = Serve::start_in(data_dir.path()).await;
    for key in ["old-1", "old-2", "fresh"] {
        assert_eq!(post_with_key(&serve, "/counter/increment?counter=purge", key).await.0, 200);
    }
    assert!(serve.stop(Signal::SIGTERM).await.success());
    let database = rusqlite::Connection::open(&serve.database).unwrap();
    database.execute("UPDATE idempotency_keys SET expires_at = unixepoch() - 1 WHERE key LIKE 'old-%'", []).unwrap();
    drop(database);

    let mut serve = Serve::start_in(data_dir.path()).await;
    // Any commit sweeps expired records.
    serve.increment("purge").await;
    assert!(serve.stop(Signal::SIGTERM).await.success());
    let database = rusqlite::Connection::open(&serve.database).unwrap();
    let mut keys = database.prepare("SELECT key FROM idempotency_keys ORDER BY key").unwrap();
    let keys: Vec<String> = keys.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect();
    assert_eq!(keys, ["fresh"]);
}

#[tokio::test]
async fn a_second_serve_on_the_same_data_dir_is_refused() {
    let data_dir = DataDir::new();
    let mut first = Serve::start_in(data_dir.path()).await;
    assert_eq!(first.increment("solo").await, 1);

    let second = serve_command(data_dir.path()).output().await.unwrap();
    assert!(!second.status.success());
    let error = String::from_utf8(second.stderr).unwrap();
    assert!(error.contains(&data_dir.path().display().to_string()), "{error}");
    assert!(error.contains("is in use by `counterctl serve`"), "{error}");
    assert!(error.contains(&format!("process {}", first.pid())), "names the one holding it: {error}");
    assert!(second.stdout.is_empty(), "it announced nothing");

    assert_eq!(first.increment("solo").await, 2, "the first one is unharmed");
    assert!(first.stop(Signal::SIGTERM).await.success());
    let next = Serve::start_in(data_dir.path()).await;
    assert_eq!(next.increment("solo").await, 3, "free again once the first one stopped");
}

/// SIGTERM under load: the process exits cleanly, and every increment that was applied was
/// also answered (the answered values are exactly 1..=the stored value).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_answers_the_requests_in_flight_and_exits_cleanly() {
    const CLIENTS: usize = 8;
    let data_dir = DataDir::new();
    let mut serve = Serve::start_in(data_dir.path()).await;
    let (progress, mut reports) = tokio::sync::mpsc::channel(CLIENTS);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, url) = (serve.http.clone(), serve.url("/counter/increment?counter=steady"));
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut values = Vec::new();
                // Until the server stops taking requests (bounded in case it never does).
                while values.len() < 20_000 {
                    let Ok(response) = http.post(&url).send().await else { break };
                    let body: serde_json::Value = response.json().await.expect("an answer is always complete");
                    values.push(body["new_value"].as_i64().expect("every answer is a success"));
                    if values.len() == 20 {
                        progress.send(()).await.unwrap();
                    }
                }
                values
            })
        })
        .collect();
    drop(progress);
    for _ in 0..CLIENTS {
        reports.recv().await.expect("every client is under way");
    }

    let status = serve.stop(Signal::SIGTERM).await;
    assert!(status.success(), "{status:?}; stderr: {}", serve.stderr());
    assert!(serve.stderr().contains("stopped"), "{}", serve.stderr());
    let mut answered = BTreeSet::new();
    for client in clients {
        for value in client.await.unwrap() {
            assert!(answered.insert(value), "{value} was handed out twice");
        }
    }
    let restarted = Serve::start_in(data_dir.path()).await;
    let stored = restarted.value("steady").await.expect("the counter exists");
    assert_eq!(answered, (1..=stored).collect(), "every applied increment was answered");
}

#[tokio::test]
async fn sigint_stops_an_idle_server_and_unlocks_its_data_dir() {
    let data_dir = DataDir::new();
    let mut serve = Serve::start_in(data_dir.path()).await;
    serve.increment("idle").await;
    assert!(serve.stop(Signal::SIGINT).await.success(), "{}", serve.stderr());
    let restarted = Serve::start_in(data_dir.path()).await;
    assert_eq!(restarted.increment("idle").await, 2);
}

/// A request stuck in flight (its client stopped sending halfway through) delays a stop
/// by the grace period only, and is not acknowledged.
#[tokio::test]
async fn a_stalled_client_cannot_keep_the_server_from_stopping() {
    let data_dir = DataDir::new();
    let mut serve = Serve::start_in(data_dir.path()).await;
    let mut stalled = TcpStream::connect(serve.url.strip_prefix("http://").unwrap()).await.unwrap();
    let head = "POST /counter/increment?counter=stalled HTTP/1.1\r\nHost: localhost\r\n\
                Content-Length: 10\r\nExpect: 100-continue\r\n\r\n";
    stalled.write_all(head.as_bytes()).await.unwrap();
    // `100 Continue` comes when the server starts reading the body: the request is in flight.
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        interim.push(stalled.read_u8().await.unwrap());
    }
    assert!(interim.starts_with(b"HTTP/1.1 100 Continue"), "{:?}", String::from_utf8_lossy(&interim));
    stalled.write_all(b"1").await.unwrap();

    assert!(serve.stop(Signal::SIGTERM).await.success());
    assert!(serve.stderr().contains("waiting 10s for slow clients"), "{}", serve.stderr());
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "no answer: {:?}", String::from_utf8_lossy(&rest));
    let restarted = Serve::start_in(data_dir.path()).await;
    assert_eq!(restarted.value("stalled").await, None);
}

/// `kill -9` at a random moment under concurrent load, 20 times on one data directory:
/// across all rounds no value is returned twice, none is above what the store holds after
/// the restart, and an acknowledged idempotency key keeps its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_never_takes_back_an_answer() {
    const ROUNDS: usize = 20;
    const CLIENTS: usize = 8;
    let mut random = Random::seeded_from_clock();
    let data_dir = DataDir::new();
    let mut returned = BTreeSet::new();
    let mut acknowledged_keys: Vec<(String, (u16, serde_json::Value))> = Vec::new();
    for round in 0..ROUNDS {
        let mut serve = Serve::start_in(data_dir.path()).await;
        let stored = serve.value("ids").await.unwrap_or(0);
        assert!(
            returned.last().is_none_or(|&highest| highest <= stored),
            "round {round}: {returned:?} vs stored {stored}"
        );
        for (key, answer) in &acknowledged_keys {
            assert_eq!(
                post_with_key(&serve, "/counter/increment?counter=ids", key).await,
                *answer,
                "round {round}: {key}"
            );
        }

        let answers = Arc::new(AtomicUsize::new(0));
        let kill_after = random.below(300) + 1;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (http, url, answers) =
                    (serve.http.clone(), serve.url("/counter/increment?counter=ids"), Arc::clone(&answers));
                let count = 1 + random.below(5);
                tokio::spawn(async move {
                    let mut values = Vec::new();
                    let mut keys = Vec::new();
                    for request in 0..5_000 {
                        // Client 0 sends idempotency keys; the others single values or ranges.
                        let key = format!("round-{round}-request-{request}");
                        let sent = match client {
                            0 => http.post(&url).header("Idempotency-Key", &key).send().await,
                            _ => http.post(format!("{url}&count={count}")).send().await,
                        };
                        // The server was killed.
                        let Ok(response) = sent else { break };
                        let Ok(body) = response.json::<serde_json::Value>().await else { break };
                        let last = body["new_value"].as_i64().expect("a success");
                        let first = body["first_value"].as_i64().unwrap_or(last);
                        values.extend(first..=last);
                        if client == 0 {
                            keys.push((key, (200, body)));
                        }
                        answers.fetch_add(1, Ordering::Relaxed);
                    }
                    (values, keys)
                })
            })
            .collect();
        // A random moment, counted in answers rather than time: the same on any machine.
        while answers.load(Ordering::Relaxed) < kill_after {
            assert!(!clients.iter().all(|client| client.is_finished()), "round {round}: the load ended by itself");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        serve.stop(Signal::SIGKILL).await;
        for client in clients {
            let (values, keys) = client.await.unwrap();
            for value in values {
                assert!(returned.insert(value), "round {round}: {value} was returned twice");
            }
            acknowledged_keys.extend(keys.into_iter().take(3));
        }
    }
    let serve = Serve::start_in(data_dir.path()).await;
    let stored = serve.value("ids").await.unwrap();
    assert!(returned.last().is_some_and(|&highest| highest <= stored), "highest returned above stored {stored}");
    eprintln!("{} values returned over {ROUNDS} crashes; the store holds {stored}", returned.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_times_500_increments_get_16000_unique_gapless_values() {
    assert_unique_gapless_increments(Arc::new(Serve::start().await), "busy", 32, 500).await;
}

/// Group commit: increments that arrive together share one transaction and one fsync.
/// Every commit appends the pages it changed to the write-ahead log, so the log's growth
/// counts commits: first for increments one at a time, then for a crowd arriving at once.
#[tokio::test]
async fn concurrent_increments_share_commits() {
    const CLIENTS: usize = 100;
    const ONE_AT_A_TIME: u64 = 5;
    let data_dir = DataDir::new();
    let serve = Serve::start_in(data_dir.path()).await;
    let log = data_dir.path().join("counters.sqlite3-wal");
    let log_size = || std::fs::metadata(&log).expect("the write-ahead log exists").len();
    serve.increment("crowd").await;

    let before = log_size();
    for _ in 0..ONE_AT_A_TIME {
        serve.increment("crowd").await;
    }
    let log_growth_per_commit = (log_size() - before) / ONE_AT_A_TIME;
    assert!(log_growth_per_commit > 0);

    let address = serve.url.strip_prefix("http://").unwrap();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(TcpStream::connect(address).await.unwrap());
    }
    let request = b"POST /counter/increment?counter=crowd HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (all_but_last_byte, last_byte) = request.split_at(request.len() - 1);
    for client in &mut clients {
        client.write_all(all_but_last_byte).await.unwrap();
    }
    let before = log_size();
    for client in &mut clients {
        client.write_all(last_byte).await.unwrap();
    }
    let mut values = BTreeSet::new();
    for client in &mut clients {
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        let body: serde_json::Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
        values.insert(body["new_value"].as_i64().unwrap());
    }
    let first = ONE_AT_A_TIME as i64 + 2;
    assert_eq!(values, (first..first + CLIENTS as i64).collect(), "unique and gapless");
    let commits = (log_size() - before) / log_growth_per_commit;
    assert!(commits <= CLIENTS as u64 / 4, "{commits} commits for {CLIENTS} increments arriving together");
    eprintln!("{CLIENTS} increments arriving together took {commits} commits");
}

/// Requests no HTTP client library would send. The API's own checks answer with their
/// JSON `error_code`; what is not even valid HTTP gets the HTTP layer's bare status.
#[tokio::test]
async fn malformed_http_gets_a_4xx_changes_nothing_and_the_server_stays_up() {
    let mut serve = Serve::start().await;
    assert_eq!(serve.increment("victim").await, 1);
    let request = |method: &str, target: &[u8], headers: &[u8]| {
        let mut bytes = format!("{method} ").into_bytes();
        bytes.extend_from_slice(target);
        bytes.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        bytes.extend_from_slice(headers);
        bytes.extend_from_slice(b"\r\n");
        bytes
    };
    let increment = b"/counter/increment?counter=victim".as_slice();
    let many_headers: Vec<u8> = (0..200).flat_map(|i| format!("X-Header-{i}: value\r\n").into_bytes()).collect();
    let huge_header = [b"X-Huge: ".as_slice(), &vec![b'h'; 1 << 20], b"\r\n"].concat();
    let huge_key = [b"Idempotency-Key: ".as_slice(), &vec![b'k'; 100_000], b"\r\n"].concat();
    let long_target = [b"/counter/increment?counter=".as_slice(), &vec![b'n'; 100_000]].concat();
    let broken_chunks = b"Transfer-Encoding: chunked\r\n\r\nnot-a-chunk-size\r\n".as_slice();
    let too_much_body = [b"Content-Length: 1000000\r\n\r\n".as_slice(), &vec![b'b'; 1_000_000]].concat();

    let api_errors: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("malformed query", request("POST", b"/counter/increment?&&=&counter", b""), 400, "counter_not_specified"),
        (
            "query without values",
            request("POST", b"/counter/increment?counter&count", b""),
            400,
            "counter_not_specified",
        ),
        (
            "broken percent escapes",
            request("POST", b"/counter/increment?counter=victim&count=%zz", b""),
            400,
            "invalid_count",
        ),
        (
            "invalid UTF-8 name",
            request("POST", b"/counter/increment?counter=%FF%FEvictim", b""),
            400,
            "invalid_counter_name",
        ),
        (
            "invalid UTF-8 key",
            request("POST", increment, b"Idempotency-Key: \xff\xfe\r\n"),
            400,
            "invalid_idempotency_key",
        ),
        ("huge key", request("POST", increment, &huge_key), 400, "invalid_idempotency_key"),
        ("made-up method", request("BREW", increment, b""), 405, "method_not_allowed"),
        ("GET an increment", request("GET", increment, b""), 405, "method_not_allowed"),
        ("DELETE a value", request("DELETE", b"/counter/value?counter=victim", b""), 405, "method_not_allowed"),
    ];
    for (case, bytes, status, code) in api_errors {
        let response = raw_request(&serve.url, bytes).await;
        assert_eq!(response.status, status, "{case}: {response:?}");
        let body: serde_json::Value =
            serde_json::from_str(&response.body).unwrap_or_else(|_| panic!("{case}: {response:?}"));
        assert_eq!(body["error_code"], code, "{case}");
    }

    let http_errors: Vec<(&str, Vec<u8>, u16)> = vec![
        ("raw invalid UTF-8 in the target", request("POST", b"/counter/increment?counter=vic\xfftim", b""), 400),
        ("space in the target", request("POST", b"/counter/increment?counter=vic tim", b""), 400),
        ("not HTTP at all", b"HELLO\r\n\r\n".to_vec(), 400),
        ("NUL in a header", request("POST", increment, b"X-Nul: a\0b\r\n"), 400),
        ("control character in a header name", request("POST", increment, b"X-\x01: a\r\n"), 400),
        ("broken Content-Length", request("POST", increment, b"Content-Length: many\r\n"), 400),
        (
            "broken chunked body",
            [request("POST", increment, b"").strip_suffix(b"\r\n").unwrap(), broken_chunks].concat(),
            400,
        ),
        (
            "body over 64 KiB",
            [request("POST", increment, b"").strip_suffix(b"\r\n").unwrap(), &too_much_body].concat(),
            413,
        ),
        ("target over 64 KiB", request("POST", &long_target, b""), 414),
        ("200 headers", request("POST", increment, &many_headers), 431),
        ("a 1 MiB header", request("POST", increment, &huge_header), 431),
    ];
    for (case, bytes, status) in http_errors {
        let response = raw_request(&serve.url, bytes).await;
        assert_eq!(response.status, status, "{case}: {response:?}");
        assert!(response.head.to_ascii_lowercase().contains("connection: close"), "{case}: {response:?}");
    }

    assert!(serve.is_running());
    assert_eq!(serve.value("victim").await, Some(1), "no bad request moved the counter");
    assert_eq!(serve.increment("victim").await, 2, "and the server still serves");
}

/// xorshift64*, seeded from the clock; the seed is printed so a failure can be replayed.
struct Random(u64);

impl Random {
    fn seeded_from_clock() -> Self {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
        eprintln!("random seed {seed}");
        Self(seed)
    }

    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % bound
    }
}
