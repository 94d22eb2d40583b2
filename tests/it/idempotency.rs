//! `Idempotency-Key`: one key, one movement of the counter, one answer. The behaviour is
//! checked on both backends; how the records are kept, on each backend's own storage
//! (DynamoDB here, SQLite in `serve.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use counter_function::dynamo::{DynamoStore, IdempotencyTimings};
use counter_function::store::{Clock, CounterStore, Increment, since_epoch};
use serde_json::{Value, json};

use crate::support::backend::on_both_backends;
use crate::support::{Backend, LambdaStack, create_counter_table, dynamodb, moto_url, send, unique_name};

pub(crate) async fn post_with_key(api: &impl Backend, path: &str, key: &str) -> (u16, Value) {
    send(api.http().post(api.url(path)).header("Idempotency-Key", key)).await
}

on_both_backends! {
    async fn a_repeated_key_gets_the_identical_answer_and_moves_the_counter_once(api) {
        api.increment("orders").await;
        let first = post_with_key(&api, "/counter/increment?counter=orders", "order-42").await;
        assert_eq!(first, (200, json!({"counter": "orders", "new_value": 2})));
        for _ in 0..3 {
            assert_eq!(post_with_key(&api, "/counter/increment?counter=orders", "order-42").await, first);
        }
        assert_eq!(api.value("orders").await, Some(2));

        let ranged = post_with_key(&api, "/counter/increment?counter=orders&count=10", "batch-7").await;
        assert_eq!(ranged, (200, json!({"counter": "orders", "new_value": 12, "first_value": 3, "count": 10})));
        assert_eq!(post_with_key(&api, "/counter/increment?counter=orders&count=10", "batch-7").await, ranged);
        assert_eq!(api.value("orders").await, Some(12));
    }
}

on_both_backends! {
    async fn a_key_reused_for_another_counter_or_count_is_a_409(api) {
        assert_eq!(post_with_key(&api, "/counter/increment?counter=a", "shared-key").await.0, 200);
        for path in ["/counter/increment?counter=b", "/counter/increment?counter=a&count=2"] {
            let (status, body) = post_with_key(&api, path, "shared-key").await;
            assert_eq!(status, 409, "{path}");
            assert_eq!(body["error_code"], "idempotency_key_reused");
        }
        assert_eq!(api.value("a").await, Some(1));
        assert_eq!(api.value("b").await, None, "the rejected request changed nothing");
    }
}

on_both_backends! {
    concurrent async fn concurrent_requests_with_one_key_all_get_the_same_value(api) {
        for round in 0..5 {
            let key = format!("concurrent-{round}");
            let requests: Vec<_> = (0..8)
                .map(|_| {
                    let api = std::sync::Arc::clone(&api);
                    let key = key.clone();
                    tokio::spawn(async move { post_with_key(&api, "/counter/increment?counter=race", &key).await })
                })
                .collect();
            let mut answers = Vec::new();
            for request in requests {
                answers.push(request.await.unwrap());
            }
            assert!(answers.iter().all(|answer| *answer == answers[0]), "{answers:?}");
            assert_eq!(answers[0].0, 200);
            assert_eq!(api.value("race").await, answers[0].1["new_value"].as_i64(), "the counter moved once");
        }
        assert_eq!(api.value("race").await, Some(5));
    }
}

fn now_secs() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// An idempotency record as a request writes it when it claims a key.
struct KeyRecord<'a> {
    key: &'a str,
    counter: &'a str,
    expires_at: i64,
    owner: &'a str,
    lease_until_ms: i64,
    new_value: Option<i64>,
}

async fn put_record(stack: &LambdaStack, record: KeyRecord<'_>) {
    let number = |value: i64| AttributeValue::N(value.to_string());
    let mut put = stack
        .dynamodb
        .put_item()
        .table_name(&stack.table)
        .item("id", AttributeValue::S(format!("_counterctl#idempotency#{}", record.key)))
        .item("counter", AttributeValue::S(record.counter.into()))
        .item("count", number(1))
        .item("expires_at", number(record.expires_at))
        .item("owner", AttributeValue::S(record.owner.into()))
        .item("lease_until_ms", number(record.lease_until_ms));
    if let Some(value) = record.new_value {
        put = put.item("new_value", number(value));
    }
    put.send().await.unwrap();
}

#[tokio::test]
async fn a_key_past_its_expiry_keeps_its_answer_until_ttl_deletes_the_row() {
    let stack = LambdaStack::start(1).await;
    // Expired a minute ago by this clock, not yet removed by DynamoDB's TTL (nor by the
    // function's sweep, which waits an hour past the expiry).
    let old = KeyRecord {
        key: "old",
        counter: "other",
        expires_at: now_secs() - 60,
        owner: "long-gone",
        lease_until_ms: 0,
        new_value: Some(99),
    };
    put_record(&stack, old).await;
    let answer = post_with_key(&stack, "/counter/increment?counter=other", "old").await;
    assert_eq!(answer, (200, json!({"counter": "other", "new_value": 99})));
    let (status, body) = post_with_key(&stack, "/counter/increment?counter=fresh", "old").await;
    assert_eq!((status, &body["error_code"]), (409, &json!("idempotency_key_reused")), "{body}");
    assert_eq!(stack.value("other").await, None, "no counter moved");
    assert_eq!(stack.value("fresh").await, None, "no counter moved");
}

/// The system's clock, set ahead (positive) or behind (negative) by some seconds.
struct Skewed(i64);

impl Clock for Skewed {
    fn since_epoch(&self) -> Duration {
        let skew = Duration::from_secs(self.0.unsigned_abs());
        if self.0 >= 0 { since_epoch() + skew } else { since_epoch() - skew }
    }
}

async fn store_with_clock(client: &aws_sdk_dynamodb::Client, table: &str, skew_secs: i64) -> DynamoStore {
    DynamoStore::new(client.clone(), table, IdempotencyTimings::default()).with_clock(Arc::new(Skewed(skew_secs)))
}

#[tokio::test]
async fn a_key_stored_by_a_clock_2_days_behind_answers_its_first_value_to_a_clock_25_hours_ahead() {
    const HOUR: i64 = 3600;
    let client = dynamodb(&moto_url()).await;
    let table = unique_name("skew");
    create_counter_table(&client, &table).await;
    let behind = store_with_clock(&client, &table, -48 * HOUR).await;
    let ahead = store_with_clock(&client, &table, 25 * HOUR).await;
    let keyed = Increment { counter: "skewed", count: 1, idempotency_key: Some("order-1") };
    let plain = Increment { idempotency_key: None, ..keyed };

    let mut handed_out = vec![ahead.increment(&plain).await.unwrap()];
    let first = behind.increment(&keyed).await.unwrap();
    handed_out.push(first);
    for store in [&ahead, &behind, &ahead] {
        assert_eq!(store.increment(&keyed).await.unwrap(), first, "the key keeps its one answer");
    }
    handed_out.push(ahead.increment(&plain).await.unwrap());
    let distinct: BTreeSet<_> = handed_out.iter().collect();
    assert_eq!(distinct.len(), handed_out.len(), "no value handed out twice: {handed_out:?}");
    assert_eq!(ahead.value("skewed").await.unwrap(), Some(3), "the key moved the counter once");
}

/// The ids of the table's idempotency records.
async fn key_records(client: &aws_sdk_dynamodb::Client, table: &str) -> BTreeSet<String> {
    let scan = client.scan().table_name(table).consistent_read(true).send().await.unwrap();
    let ids = scan.items().iter().filter_map(|item| item["id"].as_s().ok().cloned());
    ids.filter(|id| id.starts_with("_counterctl#idempotency#")).collect()
}

/// A table with no TTL (a strongly consistent global table has none): the function's
/// sweep deletes records an hour past their expiry, and no other.
#[tokio::test]
async fn expired_records_are_swept_by_the_function_and_live_ones_keep_their_answers() {
    const HOUR: i64 = 3600;
    let client = dynamodb(&moto_url()).await;
    let table = unique_name("sweep");
    create_counter_table(&client, &table).await;
    let every_claim = IdempotencyTimings { sweep_every: 1, ..IdempotencyTimings::default() };
    let store = |skew| DynamoStore::new(client.clone(), &table, every_claim).with_clock(Arc::new(Skewed(skew)));
    let (old, now) = (store(-26 * HOUR), store(0));
    fn keyed(key: &str) -> Increment<'_> {
        Increment { counter: "swept", count: 1, idempotency_key: Some(key) }
    }
    let old_keys: Vec<String> = (0..20).map(|index| format!("old-{index}")).collect();
    for key in &old_keys {
        old.increment(&keyed(key)).await.unwrap();
    }
    let mut live = Vec::new();
    for index in 0..5 {
        let key = format!("live-{index}");
        live.push((key.clone(), now.increment(&keyed(&key)).await.unwrap()));
    }
    // Each claim starts a page of the sweep (one at a time); the 16 segments are read in
    // turn, so the old records go within some dozens of claims.
    let mut claims = 0;
    while key_records(&client, &table).await.iter().any(|id| id.contains("#old-")) {
        assert!(claims < 400, "the sweep did not delete the expired records");
        let key = format!("more-{claims}");
        now.increment(&keyed(&key)).await.unwrap();
        claims += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kept = key_records(&client, &table).await;
    for (key, value) in &live {
        assert!(kept.contains(&format!("_counterctl#idempotency#{key}")), "{key} is not expired: kept");
        assert_eq!(now.increment(&keyed(key)).await.unwrap(), *value, "{key} keeps its answer");
    }
}

#[tokio::test]
async fn a_key_held_by_a_crashed_request_is_taken_over_after_its_lease() {
    let stack = LambdaStack::start(1).await;
    // A request claimed the key and died before answering; its lease has run out.
    let orphan = KeyRecord {
        key: "orphan",
        counter: "jobs",
        expires_at: now_secs() + 3600,
        owner: "crashed-request",
        lease_until_ms: (now_secs() - 1) * 1000,
        new_value: None,
    };
    put_record(&stack, orphan).await;
    let first = post_with_key(&stack, "/counter/increment?counter=jobs", "orphan").await;
    assert_eq!(first, (200, json!({"counter": "jobs", "new_value": 1})));
    assert_eq!(post_with_key(&stack, "/counter/increment?counter=jobs", "orphan").await, first);
    assert_eq!(stack.value("jobs").await, Some(1));
}

#[tokio::test]
async fn records_expire_through_ttl_within_24_hours() {
    let stack = LambdaStack::start(1).await;
    assert_eq!(post_with_key(&stack, "/counter/increment?counter=ttl", "ttl-key").await.0, 200);
    let item = stack.item("_counterctl#idempotency#ttl-key").await.expect("the record is in the counters table");
    let AttributeValue::N(expires_at) = &item["expires_at"] else { panic!("expires_at is a number") };
    let remaining = expires_at.parse::<i64>().unwrap() - now_secs();
    assert!((86_390..=86_400).contains(&remaining), "expires in {remaining} s");
}

#[tokio::test]
async fn a_key_held_by_a_live_request_answers_409_in_progress_after_waiting() {
    let stack = LambdaStack::start(1).await;
    // Another request holds the key and its lease is still running.
    let busy = KeyRecord {
        key: "busy",
        counter: "slow",
        expires_at: now_secs() + 3600,
        owner: "still-working",
        lease_until_ms: (now_secs() + 3600) * 1000,
        new_value: None,
    };
    put_record(&stack, busy).await;
    let response = stack
        .http
        .post(stack.url("/counter/increment?counter=slow"))
        .header("Idempotency-Key", "busy")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], "idempotency_key_in_progress");
    assert_eq!(stack.value("slow").await, None, "the counter did not move");
}
