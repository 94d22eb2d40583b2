//! `counterctl counters`: listing, raising, exporting and importing counters, on a
//! DynamoDB table (`--table`) and on a `serve` data directory (`--data-dir`, with `serve`
//! running on it or not). Nothing it does may lower a counter or hand a value out twice,
//! even while clients increment.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::aws_proxy::{AwsProxy, Fault};
use crate::support::cli::{Deployment, REGION, counterctl};
use crate::support::counters::{Counters, Store, import_lines, json_lines, on_every_store, pairs};
use crate::support::serve::{DataDir, Serve};
use crate::support::{Backend, LambdaStack, moto_url};

/// A name with spaces, `/`, `#` and letters beyond ASCII.
const UNICODE_NAME: &str = "ünïcødé/with spaces#1";

// `set --at-least`

on_every_store! {
    async fn set_raises_a_lower_counter(store) {
        store.seed("low", 3).await;
        assert_eq!(store.cli.set("low", 10).await, json!({"counter": "low", "value": 10, "change": "raised"}));
        assert_eq!(store.cli.list().await, pairs([("low", 10)]));
    }
}

on_every_store! {
    async fn set_never_lowers_a_counter(store) {
        store.seed("high", 50).await;
        assert_eq!(store.cli.set("high", 10).await, json!({"counter": "high", "value": 50, "change": "unchanged"}));
        assert_eq!(store.cli.set("high", 50).await, json!({"counter": "high", "value": 50, "change": "unchanged"}));
        assert_eq!(store.cli.list().await, pairs([("high", 50)]));
    }
}

on_every_store! {
    async fn set_creates_a_missing_counter_at_the_value(store) {
        store.seed("other", 1).await;
        assert_eq!(store.cli.set("new", 10).await, json!({"counter": "new", "value": 10, "change": "created"}));
        assert_eq!(store.cli.list().await, pairs([("new", 10), ("other", 1)]));
    }
}

#[tokio::test]
async fn set_prints_the_counter_and_its_value_for_people() {
    let store = Store::data_dir();
    let set = store.cli.run("set", &["tenants", "--at-least", "714"]).await.ok();
    let first_line = set.stdout.lines().next().unwrap_or_default();
    assert!(first_line.starts_with("tenants "), "{}", set.stdout);
    assert!(first_line.split_whitespace().skip(1).any(|word| word == "714"), "{}", set.stdout);
}

#[tokio::test]
async fn set_refuses_bad_names_and_values_with_exit_2_and_changes_nothing() {
    let store = Store::data_dir();
    store.cli.set("kept", 5).await;
    for args in [
        ["", "--at-least", "10"],
        ["_counterctl#idempotency#k", "--at-least", "10"],
        ["tab\there", "--at-least", "10"],
        ["kept", "--at-least", "1.5"],
        ["kept", "--at-least", "ten"],
        ["kept", "--at-least", "99999999999999999999"],
    ] {
        let run = store.cli.run("set", &args).await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(!run.stderr.is_empty(), "{args:?}: an error is printed");
    }
    assert_eq!(store.cli.list().await, pairs([("kept", 5)]));
}

/// Values handed out by increments of one counter made while something else ran.
struct Increments {
    /// Every value, in no particular order.
    all: Vec<i64>,
    /// Values of increments started after the work had finished.
    after: Vec<i64>,
}

/// Increments `counter` from `clients` tasks while `work` runs: `work` starts once each
/// task has had a value; until it finishes the tasks go on incrementing (at most
/// `most_during` times each), and then each increments 5 more times.
async fn increments_during<T>(
    store: &Arc<Store>,
    counter: &'static str,
    clients: usize,
    most_during: usize,
    work: impl Future<Output = T>,
) -> (T, Increments) {
    let done = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let (finished_tx, _) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (store, done, started) = (Arc::clone(store), Arc::clone(&done), Arc::clone(&started));
            let mut finished = finished_tx.subscribe();
            tokio::spawn(async move {
                let mut during = vec![store.increment(counter).await];
                started.fetch_add(1, Ordering::SeqCst);
                while !done.load(Ordering::SeqCst) && during.len() < most_during {
                    during.push(store.increment(counter).await);
                }
                finished.wait_for(|finished| *finished).await.unwrap();
                let mut after = Vec::new();
                for _ in 0..5 {
                    after.push(store.increment(counter).await);
                }
                (during, after)
            })
        })
        .collect();
    while started.load(Ordering::SeqCst) < clients {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let result = work.await;
    done.store(true, Ordering::SeqCst);
    finished_tx.send_replace(true);
    let mut increments = Increments { all: Vec::new(), after: Vec::new() };
    for task in tasks {
        let (during, after) = task.await.unwrap();
        increments.all.extend(&during);
        increments.all.extend(&after);
        increments.after.extend(after);
    }
    (result, increments)
}

/// The values of a counter raised to `raised_to` while it was incremented: unique, the
/// ones before the raise 1..=m, the ones after it raised_to+1..; returns the last.
fn assert_unique_around_the_raise(increments: &Increments, raised_to: i64) -> i64 {
    let all: BTreeSet<i64> = increments.all.iter().copied().collect();
    assert_eq!(all.len(), increments.all.len(), "no value handed out twice: {:?}", increments.all);
    let below = i64::try_from(all.range(..raised_to).count()).unwrap();
    let above = i64::try_from(all.len()).unwrap() - below;
    let expected: BTreeSet<i64> = (1..=below).chain(raised_to + 1..=raised_to + above).collect();
    assert_eq!(all, expected, "1..={below} before the raise, then {} and up, none lost", raised_to + 1);
    for value in &increments.after {
        assert!(*value > raised_to, "{value} was handed out after the raise to {raised_to}");
    }
    raised_to + above
}

on_every_store! {
    with_increments async fn set_during_increments_hands_no_value_out_twice(store) {
        let (set, increments) = increments_during(&store, "c", 4, 25, store.cli.set("c", 1000)).await;
        assert_eq!(set, json!({"counter": "c", "value": 1000, "change": "raised"}));
        let last = assert_unique_around_the_raise(&increments, 1000);
        assert_eq!(store.value("c").await, Some(last));
    }
}

on_every_store! {
    with_increments async fn import_during_increments_hands_no_value_out_twice(store) {
        let names: Vec<String> = (0..199).map(|i| format!("imported-{i:03}")).collect();
        let mut input: Vec<(&str, i64)> = names.iter().zip(1..).map(|(name, value)| (name.as_str(), value)).collect();
        input.insert(100, ("c", 1000));
        let lines = import_lines(input.iter().copied());
        let (import, increments) = increments_during(&store, "c", 4, 25, store.cli.import(&lines)).await;
        assert_eq!(import.ok().json(), json!({"created": 199, "raised": 1, "unchanged": 0}));
        let last = assert_unique_around_the_raise(&increments, 1000);

        let mut expected = input;
        expected.retain(|(name, _)| *name != "c");
        expected.push(("c", last));
        expected.sort_unstable();
        assert_eq!(store.cli.list().await, pairs(expected));
    }
}

// `list`

on_every_store! {
    async fn list_shows_every_counter_sorted_by_name_bytewise(store) {
        store.seed_all([("b", 2), ("ä", 5), ("B", 1), ("a", 3), (UNICODE_NAME, 7), ("Z", 4)]).await;
        let expected = pairs([("B", 1), ("Z", 4), ("a", 3), ("b", 2), ("ä", 5), (UNICODE_NAME, 7)]);
        assert_eq!(store.cli.list().await, expected);
    }
}

on_every_store! {
    async fn list_with_a_prefix_shows_only_the_names_starting_with_it(store) {
        store.seed_all([("order-2", 2), ("orders", 3), ("order-1", 1), ("Order-4", 4), ("other", 5)]).await;
        assert_eq!(store.cli.list_with(&["--prefix", "order-"]).await, pairs([("order-1", 1), ("order-2", 2)]));
        assert_eq!(store.cli.list_with(&["--prefix", "nothing"]).await, pairs([]));
    }
}

on_every_store! {
    async fn list_prints_a_header_then_one_row_per_counter_for_people(store) {
        store.seed_all([("tenants", 714), ("orders", 12)]).await;
        let list = store.cli.run("list", &[]).await.ok();
        let rows: Vec<Vec<&str>> = list.stdout.lines().map(|line| line.split_whitespace().collect()).collect();
        assert_eq!(rows, [vec!["COUNTER", "VALUE"], vec!["orders", "12"], vec!["tenants", "714"]], "{}", list.stdout);
    }
}

#[tokio::test]
async fn list_and_export_of_a_data_dir_without_a_database_exit_2() {
    let missing = DataDir::new();
    let empty = DataDir::new();
    std::fs::create_dir_all(empty.path()).unwrap();
    for dir in [&missing, &empty] {
        let counters = Counters::data_dir(dir.path());
        for command in ["list", "export"] {
            let run = counters.run(command, &[]).await;
            assert_eq!(run.code, 2, "{command} on {}: {run:?}", dir.path().display());
            assert!(!run.stderr.is_empty(), "{command}: an error is printed");
        }
    }
}

// `export` and `import`

on_every_store! {
    async fn export_then_import_into_an_empty_store_reproduces_it_exactly(store) {
        let counters = [("tenants", 714), (UNICODE_NAME, 3), ("a", 1), ("B", 2), ("big", 1_000_000)];
        store.seed_all(counters).await;
        let exported = store.cli.export().await;
        let expected = pairs([("B", 2), ("a", 1), ("big", 1_000_000), ("tenants", 714), (UNICODE_NAME, 3)]);
        assert_eq!(json_lines(&exported), expected, "{exported}");

        let target = store.another().await;
        let import = target.cli.import(&exported).await.ok();
        assert_eq!(import.json(), json!({"created": 5, "raised": 0, "unchanged": 0}));
        assert_eq!(target.cli.export().await, exported, "byte for byte");
        assert_eq!(target.cli.list().await, expected);
    }
}

on_every_store! {
    async fn export_to_a_file_writes_what_it_prints_on_stdout(store) {
        store.seed_all([("tenants", 714), (UNICODE_NAME, 3)]).await;
        let dir = DataDir::new();
        std::fs::create_dir_all(dir.path()).unwrap();
        let file = dir.path().join("counters.jsonl");
        store.cli.run("export", &[&file.display().to_string()]).await.ok();
        let to_stdout = store.cli.run("export", &["-"]).await.ok();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), to_stdout.stdout);
        assert_eq!(to_stdout.stdout, store.cli.export().await, "- is stdout, the default");
    }
}

on_every_store! {
    async fn importing_twice_changes_nothing_the_second_time(store) {
        store.seed("old", 10).await;
        let input = import_lines([("old", 20), ("new-1", 1), ("new-2", 2), (UNICODE_NAME, 3)]);
        let first = store.cli.import(&input).await.ok();
        assert_eq!(first.json(), json!({"created": 3, "raised": 1, "unchanged": 0}));
        let after_first = store.cli.list().await;
        assert_eq!(after_first, pairs([("new-1", 1), ("new-2", 2), ("old", 20), (UNICODE_NAME, 3)]));

        let second = store.cli.import(&input).await.ok();
        assert_eq!(second.json(), json!({"created": 0, "raised": 0, "unchanged": 4}));
        assert_eq!(store.cli.list().await, after_first);
    }
}

on_every_store! {
    async fn import_from_a_file_is_as_from_stdin(store) {
        let dir = DataDir::new();
        std::fs::create_dir_all(dir.path()).unwrap();
        let file = dir.path().join("counters.jsonl");
        std::fs::write(&file, import_lines([("from-file", 7), (UNICODE_NAME, 8)])).unwrap();
        let import = store.cli.import_file(&file).await.ok();
        assert_eq!(import.json(), json!({"created": 2, "raised": 0, "unchanged": 0}));
        assert_eq!(store.cli.list().await, pairs([("from-file", 7), (UNICODE_NAME, 8)]));

        let dash = store.cli.run_with_stdin("import", &["-", "--output", "json"], &import_lines([("from-file", 9)])).await;
        assert_eq!(dash.ok().json(), json!({"created": 0, "raised": 1, "unchanged": 0}), "- is stdin");
        assert_eq!(store.cli.list().await, pairs([("from-file", 9), (UNICODE_NAME, 8)]));
    }
}

on_every_store! {
    async fn import_ignores_values_lower_than_the_counters(store) {
        store.seed_all([("high", 50), ("equal", 7)]).await;
        let import = store.cli.import(&import_lines([("high", 7), ("equal", 7), ("new", 3)])).await.ok();
        assert_eq!(import.json(), json!({"created": 1, "raised": 0, "unchanged": 2}));
        assert_eq!(store.cli.list().await, pairs([("equal", 7), ("high", 50), ("new", 3)]));
    }
}

on_every_store! {
    async fn import_of_a_name_given_twice_takes_the_highest_value(store) {
        store.seed("seen", 8).await;
        let input = import_lines([("dup", 5), ("seen", 6), ("dup", 9), ("seen", 12), ("dup", 7), ("seen", 10)]);
        let import = store.cli.import(&input).await.ok();
        assert_eq!(import.json(), json!({"created": 1, "raised": 1, "unchanged": 0}), "distinct counters");
        assert_eq!(store.cli.list().await, pairs([("dup", 9), ("seen", 12)]));
    }
}

on_every_store! {
    async fn import_skips_blank_lines(store) {
        let input = "\n{\"counter\":\"a\",\"value\":1}\n\n\n{\"counter\":\"b\",\"value\":2}\n\n";
        let import = store.cli.import(input).await.ok();
        assert_eq!(import.json(), json!({"created": 2, "raised": 0, "unchanged": 0}));
        assert_eq!(store.cli.list().await, pairs([("a", 1), ("b", 2)]));
    }
}

/// Lines `import` must refuse, each with why.
const MALFORMED_LINES: &[(&str, &str)] = &[
    ("not JSON", "not json"),
    ("truncated JSON", r#"{"counter":"x","value":5"#),
    ("not an object", r#"["x",5]"#),
    ("missing value", r#"{"counter":"x"}"#),
    ("missing counter", r#"{"value":5}"#),
    ("extra field", r#"{"counter":"x","value":5,"extra":1}"#),
    ("name not a string", r#"{"counter":5,"value":5}"#),
    ("empty name", r#"{"counter":"","value":5}"#),
    ("reserved name", r#"{"counter":"_counterctl#idempotency#k","value":5}"#),
    ("control character in the name", r#"{"counter":"tab\there","value":5}"#),
    ("value with a fraction", r#"{"counter":"x","value":1.5}"#),
    ("value as a string", r#"{"counter":"x","value":"5"}"#),
    ("value with an exponent", r#"{"counter":"x","value":1e3}"#),
    ("value beyond 64 bits", r#"{"counter":"x","value":99999999999999999999}"#),
    ("value null", r#"{"counter":"x","value":null}"#),
    ("two objects on one line", r#"{"counter":"x","value":5} {"counter":"y","value":6}"#),
    ("a field given twice", r#"{"counter":"x","value":5,"counter":"y"}"#),
];

on_every_store! {
    async fn malformed_input_exits_2_naming_the_line_and_changes_nothing(store) {
        store.seed_all([("existing", 5), ("other", 9)]).await;
        let too_long = json!({"counter": "x".repeat(256), "value": 5}).to_string().into_bytes();
        let not_utf8 = b"{\"counter\":\"\xff\",\"value\":5}".to_vec();
        let cases = MALFORMED_LINES.iter().map(|(why, line)| (*why, line.as_bytes().to_vec()));
        let cases = cases.chain([("name longer than 255 bytes", too_long), ("not UTF-8", not_utf8)]);
        // Every case is tried, so one report names all the lines that were not refused.
        let mut failures = Vec::new();
        for (why, bad) in cases {
            let before = store.cli.list().await;
            let mut input = import_lines([("existing", 100), ("created-by-line-2", 1)]).into_bytes();
            input.extend(bad);
            input.push(b'\n');
            input.extend(import_lines([("created-by-line-4", 4)]).into_bytes());
            let import = store.cli.import(&input).await;
            if import.code != 2 {
                failures.push(format!("{why}: exited {}, {import:?}", import.code));
            } else if !import.stderr.contains("line 3") {
                failures.push(format!("{why}: line 3 is not named: {}", import.stderr));
            }
            let after = store.cli.list().await;
            if after != before {
                failures.push(format!("{why}: counters changed from {before:?} to {after:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

#[tokio::test]
async fn the_line_named_is_the_line_of_the_input_blank_lines_counted() {
    let store = Store::data_dir();
    store.cli.set("existing", 5).await;
    let import = store.cli.import("\n{\"counter\":\"a\",\"value\":1}\n\n\nnot json\n").await;
    assert_eq!(import.code, 2, "{import:?}");
    assert!(import.stderr.contains("line 5"), "{}", import.stderr);
    assert_eq!(store.cli.list().await, pairs([("existing", 5)]));
}

// The original service's table

#[tokio::test]
async fn the_original_services_items_are_listed_and_raised_and_idempotency_records_are_not() {
    let stack = LambdaStack::start(1).await;
    for (id, last_value) in [("tenants", "714"), ("orders", "12")] {
        let put = stack.dynamodb.put_item().table_name(&stack.table).item("id", AttributeValue::S(id.into()));
        put.item("lastValue", AttributeValue::N(last_value.into())).send().await.unwrap();
    }
    let record = [
        ("id", AttributeValue::S("_counterctl#idempotency#k".into())),
        ("counter", AttributeValue::S("tenants".into())),
        ("count", AttributeValue::N("1".into())),
        ("expires_at", AttributeValue::N("4102444800".into())),
        ("owner", AttributeValue::S("someone".into())),
        ("lease_until_ms", AttributeValue::N("0".into())),
        ("new_value", AttributeValue::N("714".into())),
    ];
    let mut put = stack.dynamodb.put_item().table_name(&stack.table);
    for (name, value) in record {
        put = put.item(name, value);
    }
    put.send().await.unwrap();

    let counters = Counters::table(&stack.table);
    assert_eq!(counters.list().await, pairs([("orders", 12), ("tenants", 714)]));
    assert_eq!(counters.list_with(&["--prefix", "_"]).await, pairs([]));
    assert_eq!(json_lines(&counters.export().await), pairs([("orders", 12), ("tenants", 714)]));

    assert_eq!(counters.set("tenants", 1000).await, json!({"counter": "tenants", "value": 1000, "change": "raised"}));
    let import = counters.import(&import_lines([("orders", 500)])).await.ok();
    assert_eq!(import.json(), json!({"created": 0, "raised": 1, "unchanged": 0}));
    assert_eq!(counters.list().await, pairs([("orders", 500), ("tenants", 1000)]));
    let item = stack.item("tenants").await.unwrap();
    assert_eq!(item["lastValue"], AttributeValue::N("1000".into()), "the same attribute, as a number");
    assert_eq!(stack.increment("tenants").await, 1001);
    assert!(stack.item("_counterctl#idempotency#k").await.is_some(), "the record is left alone");
}

// `serve` and `counters` on one data directory

#[tokio::test]
async fn serve_hands_out_values_above_what_set_and_import_raised_while_it_ran() {
    let dir = DataDir::new();
    let serve = Serve::start_in(dir.path()).await;
    let counters = Counters::data_dir(dir.path());
    assert_eq!(serve.increment("c").await, 1);

    assert_eq!(counters.set("c", 100).await, json!({"counter": "c", "value": 100, "change": "raised"}));
    assert_eq!(serve.increment("c").await, 101);
    let import = counters.import(&import_lines([("c", 200), ("d", 300)])).await.ok();
    assert_eq!(import.json(), json!({"created": 1, "raised": 1, "unchanged": 0}));
    assert_eq!(serve.increment("c").await, 201);
    assert_eq!(serve.increment("d").await, 301);
    assert_eq!(counters.list().await, pairs([("c", 201), ("d", 301)]));
}

#[tokio::test]
async fn set_and_import_into_a_data_dir_that_does_not_exist_exit_2_and_create_nothing() {
    let dir = DataDir::new();
    let missing = dir.path().join("mistyped");
    let counters = Counters::data_dir(&missing);
    let set = counters.run("set", &["c", "--at-least", "10"]).await;
    let import = counters.run_with_stdin("import", &[], import_lines([("c", 10)])).await;
    for run in [set, import] {
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains("there is no directory"), "{}", run.stderr);
    }
    assert!(!missing.exists(), "no directory was made");
}

#[tokio::test]
async fn serve_started_on_a_data_dir_continues_above_what_was_imported_without_it() {
    let dir = DataDir::new();
    std::fs::create_dir_all(dir.path()).unwrap();
    let counters = Counters::data_dir(dir.path());
    let import = counters.import(&import_lines([("c", 100), ("d", 7)])).await.ok();
    assert_eq!(import.json(), json!({"created": 2, "raised": 0, "unchanged": 0}));
    assert_eq!(counters.set("d", 50).await, json!({"counter": "d", "value": 50, "change": "raised"}));

    let serve = Serve::start_in(dir.path()).await;
    assert_eq!(serve.increment("c").await, 101);
    assert_eq!(serve.increment("d").await, 51);
}

#[tokio::test]
async fn a_data_dir_whose_serve_was_killed_is_used_without_it() {
    let dir = DataDir::new();
    let mut serve = Serve::start_in(dir.path()).await;
    assert_eq!(serve.increment("c").await, 1);
    serve.stop(Signal::SIGKILL).await;

    let counters = Counters::data_dir(dir.path());
    assert_eq!(counters.list().await, pairs([("c", 1)]));
    assert_eq!(counters.set("c", 10).await, json!({"counter": "c", "value": 10, "change": "raised"}));
    let serve = Serve::start_in(dir.path()).await;
    assert_eq!(serve.increment("c").await, 11);
}

/// Sends one request line to a running serve's admin socket, as any process of its user
/// can, and returns the reply.
async fn admin_request(data_dir: &std::path::Path, request: serde_json::Value) -> serde_json::Value {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let mut socket = tokio::net::UnixStream::connect(data_dir.join("admin.sock")).await.expect("serve listens");
    socket.write_all(format!("{request}\n").as_bytes()).await.unwrap();
    let mut reply = String::new();
    BufReader::new(socket).read_line(&mut reply).await.unwrap();
    serde_json::from_str(&reply).expect("a JSON reply")
}

#[tokio::test]
async fn the_admin_socket_refuses_values_below_1_or_above_the_maximum_and_changes_nothing() {
    let dir = DataDir::new();
    let serve = Serve::start_in(dir.path()).await;
    let mut values = vec![serve.increment("bounded").await, serve.increment("bounded").await];
    for at_least in [-100, 0, i64::MAX, counter_function::validate::MAX_VALUE + 1] {
        let reply = admin_request(dir.path(), json!({"op": "raise", "counter": "bounded", "at_least": at_least})).await;
        let failed = reply["failed"].as_str().unwrap_or_else(|| panic!("{at_least}: refused, not {reply}"));
        assert!(failed.contains(&format!("{at_least} is not a counter value")), "{failed}");
        assert_eq!(serve.value("bounded").await, Some(2), "{at_least} changed nothing");
    }
    values.push(serve.increment("bounded").await);
    assert_eq!(values, [1, 2, 3], "the next increment follows on");

    // The maximum leaves room for the largest count.
    let max = counter_function::validate::MAX_VALUE;
    let reply = admin_request(dir.path(), json!({"op": "raise", "counter": "top", "at_least": max})).await;
    assert_eq!(reply, json!({"raised": {"before": null, "after": max}}));
    let path = format!("/counter/increment?counter=top&count={}", counter_function::validate::MAX_COUNT);
    let (status, body) = serve.post(&path).await;
    assert_eq!((status, body["new_value"].as_i64()), (200, Some(i64::MAX)), "{body}");
}

#[tokio::test]
async fn a_data_dir_too_long_for_a_socket_is_refused_while_serve_runs_and_used_once_it_stopped() {
    let dir = DataDir::new();
    // A Unix socket's path holds at most 107 bytes.
    let long = dir.path().join("d".repeat(120));
    std::fs::create_dir(&long).unwrap();
    let mut serve = Serve::start_in(&long).await;
    let counters = Counters::data_dir(&long);
    assert_eq!(serve.increment("c").await, 1);

    let refused = counters.run("set", &["c", "--at-least", "10"]).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert_eq!(serve.increment("c").await, 2, "the counter was not raised");
    assert!(serve.stop(Signal::SIGTERM).await.success());

    assert_eq!(counters.set("c", 10).await, json!({"counter": "c", "value": 10, "change": "raised"}));
    let serve = Serve::start_in(&long).await;
    assert_eq!(serve.increment("c").await, 11);
}

#[tokio::test]
async fn a_sequence_moves_from_serve_to_aws_with_export_and_import() {
    let serve = Serve::start().await;
    for (name, times) in [("tenants", 3), ("orders", 5)] {
        for _ in 0..times {
            serve.increment(name).await;
        }
    }
    let data_dir = serve.database.parent().unwrap().to_owned();
    let dir = DataDir::new();
    std::fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join("export.jsonl");
    Counters::data_dir(&data_dir).run("export", &[&file.display().to_string()]).await.ok();

    let stack = LambdaStack::start(1).await;
    let import = Counters::table(&stack.table).import_file(&file).await.ok();
    assert_eq!(import.json(), json!({"created": 2, "raised": 0, "unchanged": 0}));
    assert_eq!(stack.increment("tenants").await, 4);
    assert_eq!(stack.increment("orders").await, 6);
    assert_eq!(stack.increment("tenants").await, 5);
}

// DynamoDB's throttling

#[tokio::test]
async fn import_retries_throttled_writes_and_sets_every_counter() {
    let stack = LambdaStack::start(1).await;
    let proxy = AwsProxy::start(&moto_url()).await;
    let counters = Counters::table_at(&stack.table, &proxy.url);
    let names: Vec<String> = (0..10).map(|i| format!("throttled-{i}")).collect();
    let input: Vec<(&str, i64)> = names.iter().zip(100..).map(|(name, value)| (name.as_str(), value)).collect();

    let throttled = Fault::new(
        400,
        "ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded.",
    );
    // Fewer than counterctl's attempts per call, however they fall on the calls.
    proxy.inject("UpdateItem", throttled, 4);
    let import = counters.import(&import_lines(input.iter().copied())).await.ok();
    assert_eq!(import.json(), json!({"created": 10, "raised": 0, "unchanged": 0}));
    assert!(proxy.count("UpdateItem") >= 10 + 4, "the throttled writes were retried: {:?}", proxy.actions());

    let mut expected = input;
    expected.sort_unstable();
    assert_eq!(Counters::table(&stack.table).list().await, pairs(expected));
}

// Which store

#[tokio::test]
async fn without_table_the_counters_are_those_of_the_deployed_functions_table() {
    let deployment = Deployment::new().await;
    deployment.install().await;
    let target = ["--name", &deployment.name, "--endpoint-url", &deployment.proxy.url, "--region", REGION];
    let mut set = vec!["counters", "set", "tenants", "--at-least", "714", "--output", "json"];
    set.extend(target);
    let set = counterctl(&set).await.ok();
    assert_eq!(set.json(), json!({"counter": "tenants", "value": 714, "change": "created"}));

    let key = AttributeValue::S("tenants".into());
    let item = deployment.dynamodb().get_item().table_name(&deployment.table).key("id", key).send().await.unwrap();
    assert_eq!(item.item.unwrap()["lastValue"], AttributeValue::N("714".into()), "in the stack's table");
    let mut list = vec!["counters", "list", "--output", "json"];
    list.extend(target);
    assert_eq!(json_lines(&counterctl(&list).await.ok().stdout), pairs([("tenants", 714)]));
}

#[tokio::test]
async fn a_data_dir_and_a_table_together_are_refused_with_exit_2() {
    let dir = DataDir::new();
    let missing = dir.path().join("new");
    let run = counterctl(&["counters", "list", "--data-dir", &missing.display().to_string(), "--table", "Other"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(!missing.exists(), "nothing was created");
}
