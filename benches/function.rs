//! Figures for the shipped bootstrap (docs/figures.md): zip and binary size, init time
//! (process spawn to its first `invocation/next`), and warm request time through the
//! Runtime API against moto, beside moto's own UpdateItem time from the same run; then
//! one client's IDs per second through the REST front, plain increments against an ID
//! pool (`counterctl-client`).
//!
//! Run with `scripts/bench-function.sh` (starts moto). `COUNTERCTL_BOOTSTRAP=PATH`
//! measures another build of the bootstrap instead of the shipped one.

#[allow(dead_code, unused_imports, unused_macros)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use axum::http::Method;

use counterctl_client::{Auth, Client, Endpoint, PoolOptions, Pools};
use support::function::{Function, bootstrap_path, spawn_environment};
use support::rest_api::rest_event;
use support::runtime_api::{Outcome, RuntimeApi};

const INIT_RUNS: usize = 30;
const WARMUP: usize = 50;
const REQUESTS: usize = 1000;
/// How long one client takes IDs each way through the REST front.
const CLIENT_RUN: Duration = Duration::from_secs(5);

struct Summary {
    median: Duration,
    p99: Duration,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Summary { median: at(0.5), p99: at(0.99) }
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

async fn init_times(table: &str) -> Vec<Duration> {
    let runtime = RuntimeApi::start().await;
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut samples = Vec::new();
    for _ in 0..INIT_RUNS {
        let mut polls = runtime.next_polls();
        let seen = *polls.borrow_and_update();
        let started = Instant::now();
        let mut child = spawn_environment(&runtime, ("us-east-1", table, &support::moto_url()), &logs);
        polls.wait_for(|polls| *polls > seen).await.unwrap();
        samples.push(started.elapsed());
        child.kill().await.unwrap();
    }
    samples
}

#[tokio::main]
async fn main() {
    let dynamodb = support::dynamodb(&support::moto_url()).await;
    let table = support::unique_name("bench");
    support::create_counter_table(&dynamodb, &table).await;
    let binary = bootstrap_path();
    println!("bootstrap: {} ({} bytes)", binary.display(), std::fs::metadata(binary).unwrap().len());

    let init = summarize(init_times(&table).await);
    println!(
        "init (spawn to first invocation/next), {INIT_RUNS} runs: median {}, p99 {}",
        ms(init.median),
        ms(init.p99)
    );

    let function = Function::start(&table, &support::moto_url(), 1).await;
    let event =
        rest_event(&Method::POST, "counter/increment", &[("counter".into(), "bench".into())], &[], None, "127.0.0.1");
    let mut request_times = Vec::with_capacity(REQUESTS);
    let mut cpu_before = Duration::ZERO;
    let mut moto_times = Vec::with_capacity(REQUESTS);
    for round in 0..WARMUP + REQUESTS {
        let started = Instant::now();
        let Outcome::Response(response) = function.invoke(event.clone()).await else { panic!("invocation failed") };
        let elapsed = started.elapsed();
        assert_eq!(response["statusCode"], 200);

        // moto's own time for the same UpdateItem, interleaved so both see the same load.
        let started = Instant::now();
        dynamodb
            .update_item()
            .table_name(&table)
            .key("id", AttributeValue::S("bench-direct".into()))
            .update_expression("ADD lastValue :one")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .await
            .unwrap();
        if round + 1 == WARMUP {
            cpu_before = function.cpu_time();
        }
        if round >= WARMUP {
            request_times.push(elapsed);
            moto_times.push(started.elapsed());
        }
    }
    let cpu_per_request = (function.cpu_time() - cpu_before) / REQUESTS as u32;
    let request = summarize(request_times);
    let moto = summarize(moto_times);
    println!(
        "warm increment through the Runtime API, {REQUESTS} requests: median {}, p99 {}",
        ms(request.median),
        ms(request.p99)
    );
    println!("moto UpdateItem from the SDK, same run:               median {}, p99 {}", ms(moto.median), ms(moto.p99));
    println!("handler + Runtime API share (median difference): {}", ms(request.median.saturating_sub(moto.median)));
    println!("bootstrap CPU time per warm request (user + system): {}", ms(cpu_per_request));

    // One client through the REST front: plain increments, then a pool's IDs.
    let stack = support::LambdaStack::start(1).await;
    let started = Instant::now();
    let mut plain = 0_u64;
    while started.elapsed() < CLIENT_RUN {
        let (status, _) =
            support::send(stack.http.post(format!("{}/counter/increment?counter=plain", stack.api.url))).await;
        assert_eq!(status, 200);
        plain += 1;
    }
    let plain_rate = plain as f64 / started.elapsed().as_secs_f64();
    let pools = Pools::new(Client::new(Endpoint::new(&stack.api.url, Auth::None).unwrap()), PoolOptions::default());
    let pool = pools.get("pooled");
    let started = Instant::now();
    let mut pooled = 0_u64;
    while started.elapsed() < CLIENT_RUN {
        // A pool that outruns its fetches while its blocks grow waits, or says so.
        if pool.next().await.is_ok() {
            pooled += 1;
        }
    }
    let pooled_rate = pooled as f64 / started.elapsed().as_secs_f64();
    let fetched = pools.stats().blocks_fetched;
    println!("one client through the REST front, {} s each:", CLIENT_RUN.as_secs());
    println!("  plain increments: {plain_rate:.0} IDs/s ({plain} requests)");
    println!(
        "  Pool::next():     {pooled_rate:.0} IDs/s ({pooled} IDs from {fetched} block fetches, {:.1} fetches per million IDs; {:.0}x)",
        fetched as f64 * 1e6 / pooled as f64,
        pooled_rate / plain_rate
    );
}
