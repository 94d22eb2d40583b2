//! ID pools (`counterctl-client`) and `serve --upstream` (a sidecar handing out IDs from
//! blocks reserved upstream): unique across pools, processes, crashes, outages and lost
//! answers; wrong upstream answers refused; each upstream auth mode against the fronts.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use counterctl_client::{Auth, Client, Endpoint, Pool, PoolOptions};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::cli::clean_environment;
use crate::support::function_url::{AuthType, FunctionUrlStack};
use crate::support::rest_api::{IamCaller, MethodAuth};
use crate::support::serve::{
    DataDir, Serve, free_port, serve_command_on, serve_until_exit, sidecar_command, sidecar_command_on,
};
use crate::support::tcp_proxy::{Mode, TcpProxy};
use crate::support::upstreams::{LossyFront, Wrong, WrongUpstream};
use crate::support::{Backend, LambdaStack};

/// How long a test waits for something that should happen within seconds.
const PATIENCE: Duration = Duration::from_secs(30);

/// A sidecar of `upstream`, started with `args` after `--upstream URL`.
async fn sidecar(upstream: &str, args: &[&str]) -> Serve {
    sidecar_with_env(upstream, args, &clean_environment()).await
}

async fn sidecar_with_env(upstream: &str, args: &[&str], env: &[(&str, String)]) -> Serve {
    let mut command = sidecar_command(upstream, env);
    command.args(args);
    Serve::start_command(command).await
}

fn pool(upstream: &str, counter: &str, options: PoolOptions) -> Pool {
    Pool::new(Client::new(Endpoint::new(upstream, Auth::None).unwrap()), counter, options)
}

/// A figure from `/metrics`, such as `counterctl_ids_buffered`.
async fn metric(serve: &Serve, name: &str) -> u64 {
    let text = serve.http.get(format!("{}/metrics", serve.url)).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|line| line.split_whitespace().next() == Some(name)).unwrap_or_else(|| {
        panic!("no {name} in the metrics: {text}");
    });
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Values from `serve`'s increments until one is refused; the refusal too.
async fn increments_until_refused(serve: &Serve, counter: &str, most: usize) -> (Vec<i64>, Option<(u16, Value)>) {
    let mut values = Vec::new();
    for _ in 0..most {
        match serve.post(&format!("/counter/increment?counter={counter}")).await {
            (200, body) => values.push(body["new_value"].as_i64().unwrap()),
            refusal => return (values, Some(refusal)),
        }
    }
    (values, None)
}

fn assert_all_unique(groups: &[Vec<i64>]) -> BTreeSet<i64> {
    let mut all = BTreeSet::new();
    for values in groups {
        for value in values {
            assert!(all.insert(*value), "{value} was handed out twice");
        }
    }
    all
}

#[tokio::test]
async fn pools_and_sidecars_on_one_counter_never_hand_out_a_value_twice() {
    let upstream = Serve::start().await;
    let small_blocks = ["--min-block", "5", "--max-block", "40"];
    let sidecars = [sidecar(&upstream.url, &small_blocks).await, sidecar(&upstream.url, &small_blocks).await];
    let options = PoolOptions::default().min_block(5).max_block(40);
    let pools = [pool(&upstream.url, "shared", options), pool(&upstream.url, "shared", options)];

    let mut tasks = Vec::new();
    for pool in &pools {
        for _ in 0..3 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let mut values = Vec::new();
                while values.len() < 200 {
                    // A pool that outruns its fetches says so at once; try again.
                    if let Ok(value) = pool.next().await {
                        values.push(value);
                    }
                }
                values
            }));
        }
    }
    let sidecars = Arc::new(sidecars);
    for index in 0..2 {
        for _ in 0..3 {
            let sidecars = Arc::clone(&sidecars);
            tasks.push(tokio::spawn(async move {
                let mut values = Vec::new();
                for _ in 0..100 {
                    values.push(sidecars[index].increment("shared").await);
                }
                values
            }));
        }
        // Ranges, from the block when they fit, else straight from the upstream.
        let sidecars = Arc::clone(&sidecars);
        tasks.push(tokio::spawn(async move {
            let mut values = Vec::new();
            for _ in 0..20 {
                let (status, body) = sidecars[index].post("/counter/increment?counter=shared&count=7").await;
                assert_eq!(status, 200, "{body}");
                let (first, last) = (body["first_value"].as_i64().unwrap(), body["new_value"].as_i64().unwrap());
                assert_eq!(last - first, 6, "{body}");
                values.extend(first..=last);
            }
            values
        }));
    }
    let mut groups = Vec::new();
    for task in tasks {
        groups.push(task.await.unwrap());
    }
    // Single IDs come from the pools: each caller's increase. A range that does not fit
    // the current block comes straight from the upstream, above it.
    let ranges = [groups.remove(groups.len() - 1), groups.remove(2 * 3 + 3)];
    for values in &groups {
        assert!(values.windows(2).all(|pair| pair[0] < pair[1]), "each caller's values increase: {values:?}");
    }
    groups.extend(ranges);
    let all = assert_all_unique(&groups);
    assert_eq!(all.len(), 2 * 3 * 200 + 2 * 3 * 100 + 2 * 20 * 7);
    let reserved = upstream.value("shared").await.unwrap();
    assert!(*all.last().unwrap() <= reserved, "nothing above what the upstream reserved");
}

#[tokio::test]
async fn a_sidecar_killed_under_load_loses_at_most_its_blocks_and_repeats_nothing() {
    let upstream = Serve::start().await;
    // Fixed blocks of 20: the sidecar holds at most two (the current one, and the next
    // one buffered or on its way).
    let blocks = ["--min-block", "20", "--max-block", "20"];
    let mut first = sidecar(&upstream.url, &blocks).await;
    let url = first.url.clone();
    let load: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut values = Vec::new();
                // Until the server is gone.
                while let Ok(response) = http.post(format!("{url}/counter/increment?counter=crash")).send().await {
                    let Ok(body) = response.json::<Value>().await else { break };
                    values.extend(body["new_value"].as_i64());
                }
                values
            })
        })
        .collect();
    while upstream.value("crash").await.unwrap_or(0) < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.stop(Signal::SIGKILL).await;
    let mut groups = Vec::new();
    for task in load {
        groups.push(task.await.unwrap());
    }
    let reserved_at_kill = upstream.value("crash").await.unwrap();
    let handed_before = groups.iter().map(Vec::len).sum::<usize>() as i64;

    let second = sidecar(&upstream.url, &blocks).await;
    let (after, refusal) = increments_until_refused(&second, "crash", 100).await;
    assert_eq!(refusal, None);
    groups.push(after);
    let all = assert_all_unique(&groups);
    let lost_at_kill = reserved_at_kill - handed_before;
    assert!(lost_at_kill <= 2 * 20, "{lost_at_kill} values lost with the sidecar, more than its two blocks");
    assert!(all.iter().filter(|value| **value > reserved_at_kill).count() == 100, "after the restart, new blocks");
}

#[tokio::test]
async fn an_upstream_outage_is_ridden_out_from_the_buffer_then_answered_503_then_recovered() {
    let upstream = Serve::start().await;
    let proxy = TcpProxy::start(upstream.address().parse().unwrap()).await;
    let sidecar = sidecar(&proxy.url(), &["--min-block", "50", "--max-block", "50"]).await;
    let (before, refusal) = increments_until_refused(&sidecar, "outage", 11).await;
    assert_eq!((before.clone(), refusal), ((1..=11).collect(), None));
    // Past a fifth of the first block, the second is fetched.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metric(&sidecar, "counterctl_ids_buffered").await != 89 {
        assert!(tokio::time::Instant::now() < deadline, "the next block never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    proxy.set_up(false);
    let (buffered, refusal) = increments_until_refused(&sidecar, "outage", 200).await;
    assert_eq!(buffered, (12..=100).collect::<Vec<_>>(), "the buffer is handed out, in order");
    let (status, body) = refusal.expect("a refusal once the buffer is spent");
    assert_eq!((status, body["error_code"].as_str()), (503, Some("upstream_unavailable")), "{body}");
    let response = sidecar.http.post(format!("{}/counter/increment?counter=outage", sidecar.url)).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let health = sidecar.http.get(format!("{}/healthz", sidecar.url)).send().await.unwrap();
        if health.status() == 503 {
            assert_eq!(health.json::<Value>().await.unwrap()["upstream"], "unreachable");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "/healthz kept saying ok");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    proxy.set_up(true);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let recovered = loop {
        match sidecar.post("/counter/increment?counter=outage").await {
            (200, body) => break body["new_value"].as_i64().unwrap(),
            (503, _) => assert!(tokio::time::Instant::now() < deadline, "the sidecar never recovered"),
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(recovered > 100, "{recovered}: after the outage, a new block");
    assert_all_unique(&[before, buffered, vec![recovered]]);
    assert!(metric(&sidecar, "counterctl_upstream_errors_total").await > 0);
    let health: Value =
        sidecar.http.get(format!("{}/healthz", sidecar.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn a_block_fetch_whose_answer_was_lost_gets_the_same_block_when_retried() {
    let upstream = Serve::start().await;
    let front = LossyFront::start(&upstream.url, 1).await;
    let pool = pool(&front.url, "lossy", PoolOptions::default().min_block(10).max_block(10));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let first = loop {
        match pool.next().await {
            Ok(value) => break value,
            // The lost answer fails the first attempt; the pool tries again by itself.
            Err(error) => assert!(tokio::time::Instant::now() < deadline, "{error}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(first, 1, "the block reserved by the lost attempt is the one handed out");
    assert_eq!(upstream.value("lossy").await, Some(10), "one block reserved, not two");
    let keys = front.fetch_keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], keys[1], "the retry carried the same Idempotency-Key");
}

#[tokio::test]
async fn a_cold_counter_waits_for_its_first_fetch_whose_answer_was_lost_instead_of_failing() {
    let upstream = Serve::start().await;
    // A pool's first call for a counter.
    let front = LossyFront::start(&upstream.url, 1).await;
    let pool = pool(&front.url, "cold", PoolOptions::default().min_block(10).max_block(10));
    assert_eq!(pool.next().await.unwrap(), 1, "answered from the retried fetch's block");
    assert_eq!(front.fetch_keys().len(), 2, "the first answer was lost, the retry answered");
    // A sidecar's first request for a counter.
    let front = LossyFront::start(&upstream.url, 1).await;
    let sidecar = sidecar(&front.url, &[]).await;
    let (status, body) = sidecar.post("/counter/increment?counter=cold-sidecar").await;
    assert_eq!((status, body["new_value"].as_i64()), (200, Some(1)), "{body}");
    assert_eq!(front.fetch_keys().len(), 2, "the first answer was lost, the retry answered");
}

/// `/healthz`'s state of each upstream URL, the preferred first.
async fn upstream_states(serve: &Serve) -> Vec<String> {
    let (_, body) = health(serve).await;
    let upstreams = body["upstreams"].as_array().unwrap_or_else(|| panic!("no upstreams in {body}"));
    upstreams.iter().map(|upstream| upstream["state"].as_str().unwrap().to_owned()).collect()
}

/// `serve`'s increments of `counter`, one after another, each of which must succeed.
async fn increments(serve: &Serve, counter: &str, count: usize) -> Vec<i64> {
    let (values, refusal) = increments_until_refused(serve, counter, count).await;
    assert_eq!(refusal, None, "after {} values", values.len());
    values
}

#[tokio::test]
async fn a_sidecar_over_three_regions_hands_out_ids_while_one_is_down_or_silent_and_repeats_none() {
    // One table behind three regions' fronts, as on a strongly consistent global table.
    let table = Serve::start().await;
    let address = table.address().parse().unwrap();
    let regions = [TcpProxy::start(address).await, TcpProxy::start(address).await, TcpProxy::start(address).await];
    let urls: Vec<String> = regions.iter().map(TcpProxy::url).collect();
    let sidecar = sidecar(&urls.join(","), &["--min-block", "200", "--max-block", "200"]).await;
    let mut values = increments(&sidecar, "regions", 50).await;
    assert_eq!(upstream_states(&sidecar).await, ["up", "up", "up"]);

    for outage in [Mode::Refusing, Mode::Silent] {
        regions[0].set_mode(outage);
        // Three blocks' worth: each fetched while the preferred region is out.
        values.extend(increments(&sidecar, "regions", 600).await);
        assert_eq!(upstream_states(&sidecar).await, ["down", "up", "up"], "{outage:?}");
        regions[0].set_mode(Mode::Forwarding);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while upstream_states(&sidecar).await[0] != "up" {
            assert!(tokio::time::Instant::now() < deadline, "the preferred region was never used again");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    values.extend(increments(&sidecar, "regions", 50).await);
    assert_all_unique(std::slice::from_ref(&values));
    let expected: Vec<i64> = (1..=1300).collect();
    assert_eq!(values, expected, "one sidecar's values, in order and without a gap: no block was lost or taken twice");
    let metrics = sidecar.http.get(format!("{}/metrics", sidecar.url)).send().await.unwrap().text().await.unwrap();
    let moved = format!("counterctl_upstream_moved_away_total{{url=\"{}\"}}", urls[0]);
    let moved: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(&moved))
        .unwrap_or_else(|| panic!("no {moved} in {metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(moved >= 2, "calls moved from the preferred region in each outage: {moved}");
}

#[tokio::test]
async fn a_block_fetch_whose_answer_was_lost_in_one_region_gets_the_same_block_from_the_next() {
    let table = Serve::start().await;
    let home = LossyFront::start(&table.url, 1).await;
    let next = LossyFront::start(&table.url, 0).await;
    let endpoint = |url: &str| Endpoint::new(url, Auth::None).unwrap();
    let client = Client::with_fallbacks(endpoint(&home.url), vec![endpoint(&next.url)]);
    let pool = Pool::new(client.clone(), "lost-in-a-region", PoolOptions::default().min_block(10).max_block(10));
    assert_eq!(pool.next().await.unwrap(), 1, "the block reserved by the lost answer is the one handed out");
    assert_eq!(table.value("lost-in-a-region").await, Some(10), "one block reserved, not two");
    let home_keys = home.fetch_keys();
    assert_eq!(home_keys.len(), 1, "{home_keys:?}");
    assert_eq!(next.fetch_keys(), home_keys, "the next region was asked with the same Idempotency-Key");
    assert_eq!(client.endpoint_states()[0].moved_away, 1);
}

#[tokio::test]
async fn an_upstream_url_given_twice_is_refused() {
    let run = crate::support::cli::counterctl(&[
        "serve",
        "--upstream",
        "http://127.0.0.1:9/prod",
        "--upstream",
        "http://127.0.0.1:9/prod/",
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is given twice"), "{}", run.stderr);
}

#[tokio::test]
async fn a_pool_unused_past_pool_idle_seconds_is_dropped_and_its_counter_goes_on_above_it() {
    let upstream = Serve::start().await;
    let sidecar = sidecar(&upstream.url, &["--pool-idle-seconds", "1", "--min-block", "10"]).await;
    let (_, first) = sidecar.post("/counter/increment?counter=tenant-a").await;
    let first = first["new_value"].as_i64().unwrap();
    assert_eq!(metric(&sidecar, "counterctl_upstream_pools").await, 1);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metric(&sidecar, "counterctl_upstream_pools").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the idle pool was never dropped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(metric(&sidecar, "counterctl_upstream_pools_dropped_total").await, 1);
    // Asked for again: a new pool, whose block is a new reservation above the dropped one's.
    let (status, again) = sidecar.post("/counter/increment?counter=tenant-a").await;
    assert_eq!(status, 200, "{again}");
    let again = again["new_value"].as_i64().unwrap();
    assert!(again > first + 9, "above the dropped pool's block (its IDs are a gap): {first} then {again}");
}

#[tokio::test]
async fn wrong_upstream_answers_are_refused_and_nothing_from_them_is_handed_out() {
    let cases: [(Wrong, &[&str]); 3] = [
        (Wrong::NotJson, &["unexpected body"]),
        (Wrong::AnotherCounter, &["someone-else"]),
        // The keyed request's answer, then the block's.
        (Wrong::AnotherCount, &["its count is 2, not none", "its count is 11, not 10"]),
    ];
    for (wrong, said) in cases {
        let upstream = WrongUpstream::start(wrong).await;
        let sidecar = sidecar(&upstream.url, &["--min-block", "10", "--max-block", "10"]).await;
        // A keyed request goes to the upstream as it is; its answer is checked alike.
        let keyed = sidecar.http.post(format!("{}/counter/increment?counter=c", sidecar.url));
        let response = keyed.header("Idempotency-Key", "k-1").send().await.unwrap();
        assert_eq!(response.status(), 503, "{wrong:?}");
        let (values, refusal) = increments_until_refused(&sidecar, "c", 5).await;
        assert_eq!(values, [] as [i64; 0], "{wrong:?}");
        let (status, body) = refusal.unwrap();
        assert_eq!((status, body["error_code"].as_str()), (503, Some("upstream_unavailable")), "{wrong:?}: {body}");
        for said in said {
            sidecar.stderr_containing(said).await;
        }
    }

    // Right at first (the block 1-10), then ranges overlapping it.
    let upstream = WrongUpstream::start(Wrong::Overlapping).await;
    let sidecar = sidecar(&upstream.url, &["--min-block", "10", "--max-block", "10"]).await;
    assert_eq!(sidecar.increment("c").await, 1);
    // Too large for the block, so straight from the upstream: 5-504 is refused.
    let (status, _) = sidecar.post("/counter/increment?counter=c&count=500").await;
    assert_eq!(status, 503);
    sidecar.stderr_containing("refused the upstream's answer: the range 5-504 is not above 10").await;
    let (values, refusal) = increments_until_refused(&sidecar, "c", 50).await;
    assert_eq!(values, (2..=10).collect::<Vec<_>>());
    assert_eq!(refusal.unwrap().0, 503);
    sidecar.stderr_containing("refused the upstream's answer: the range 5-14 is not above 10").await;
}

#[tokio::test]
async fn a_sidecar_reaches_a_rest_front_with_its_api_key_and_without_it_answers_502_upstream_refused() {
    const KEY: &str = "sidecar-upstream-key-0123456789";
    let stack = LambdaStack::start_with_auth(1, MethodAuth::api_key(KEY)).await;
    let mut env = clean_environment();
    env.push(("COUNTERCTL_UPSTREAM_API_KEY", KEY.to_owned()));
    let keyed = sidecar_with_env(&stack.api.url, &[], &env).await;
    // Two IDs, short of the refill point (a fifth of the first block): one block reserved.
    let (values, refusal) = increments_until_refused(&keyed, "k", 2).await;
    assert_eq!((values, refusal), (vec![1, 2], None));
    assert_eq!(keyed.value("k").await, Some(10), "the value is the highest reserved: the first block's end");

    let keyless = sidecar(&stack.api.url, &[]).await;
    let (values, refusal) = increments_until_refused(&keyless, "k", 1).await;
    let (status, body) = refusal.unwrap();
    assert_eq!((values, status, body["error_code"].as_str()), (vec![], 502, Some("upstream_refused")), "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("--upstream-api-key-file"), "{description}");
    keyless.stderr_containing("answered 403").await;
}

#[tokio::test]
async fn a_sidecar_signs_for_execute_api_and_for_a_function_url() {
    let caller = IamCaller::for_tests();
    let mut env = clean_environment();
    for (name, value) in &mut env {
        match *name {
            "AWS_ACCESS_KEY_ID" => *value = caller.access_key_id.clone(),
            "AWS_SECRET_ACCESS_KEY" => *value = caller.secret_access_key.clone(),
            _ => {}
        }
    }
    let rest = LambdaStack::start_with_auth(1, MethodAuth::aws_iam(caller.clone())).await;
    let signing = ["--upstream-auth", "iam", "--region", "us-east-1"];
    let signed = sidecar_with_env(&rest.api.url, &signing, &env).await;
    let (values, refusal) = increments_until_refused(&signed, "s", 3).await;
    assert_eq!((values, refusal), (vec![1, 2, 3], None), "{}", signed.stderr());

    let url = FunctionUrlStack::start(1, AuthType::AwsIam(caller)).await;
    let mut proxied = env.clone();
    proxied.push(("HTTP_PROXY", url.front.proxy().to_owned()));
    let signed = sidecar_with_env(&url.front.aws_url(), &["--upstream-auth", "iam"], &proxied).await;
    let (values, refusal) = increments_until_refused(&signed, "s", 2).await;
    assert_eq!((values, refusal), (vec![1, 2], None), "{}", signed.stderr());
    assert_eq!(url.stored("s").await, Some(10), "one block of 10 reserved at the function");
}

/// `/healthz`'s status and body.
async fn health(serve: &Serve) -> (u16, Value) {
    let response = serve.http.get(format!("{}/healthz", serve.url)).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// A keyed increment, passed through to the upstream: status and body.
async fn keyed(serve: &Serve, counter: &str, key: &str) -> (u16, Value) {
    let request = serve.http.post(format!("{}/counter/increment?counter={counter}", serve.url));
    let response = request.header("Idempotency-Key", key).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_sidecar_restarted_in_front_of_an_upstream_that_went_back_refuses_it_and_repeats_nothing() {
    let state = DataDir::new();
    let state_dir = state.path().to_str().unwrap();
    let args = ["--state-dir", state_dir, "--min-block", "10", "--max-block", "10"];
    let mut upstream = Serve::start().await;
    let address = upstream.address();
    let mut first = sidecar(&upstream.url, &args).await;
    let mut handed = Vec::new();
    let (values, refusal) = increments_until_refused(&first, "back", 15).await;
    assert_eq!(refusal, None);
    handed.extend(values);
    // A range straight from the upstream, and a keyed one passed through: recorded too.
    let (status, body) = first.post("/counter/increment?counter=back&count=1000").await;
    assert_eq!(status, 200, "{body}");
    handed.extend(body["first_value"].as_i64().unwrap()..=body["new_value"].as_i64().unwrap());
    let (status, body) = keyed(&first, "back", "before-restart").await;
    assert_eq!(status, 200, "{body}");
    handed.push(body["new_value"].as_i64().unwrap());
    first.stop(Signal::SIGTERM).await;
    upstream.stop(Signal::SIGTERM).await;

    // The upstream went back: a new, empty one at the same URL hands out 1, 2, 3 again.
    let fresh = DataDir::new();
    let gone_back = Serve::start_command(serve_command_on(&address, fresh.path())).await;
    let second = sidecar(&gone_back.url, &args).await;
    let (values, refusal) = increments_until_refused(&second, "back", 20).await;
    let (status, body) = refusal.expect("the gone-back upstream's blocks are refused");
    assert_eq!((status, body["error_code"].as_str()), (503, Some("upstream_unavailable")), "{body}");
    handed.extend(values);
    let (status, body) = keyed(&second, "back", "after-restart").await;
    assert_eq!(status, 503, "keyed requests are refused too: {body}");
    handed.extend(body["new_value"].as_i64());
    assert_all_unique(&[handed]);

    let stderr = second.stderr_containing("the upstream went back").await;
    assert!(stderr.contains("not above"), "{stderr}");
    let (status, body) = health(&second).await;
    assert_eq!(status, 503, "{body}");
    let refused = body["refused"].as_str().unwrap_or_else(|| panic!("/healthz names the refusal: {body}"));
    assert!(refused.contains("went back") && refused.contains(state_dir), "{refused}");
    assert!(metric(&second, "counterctl_upstream_answers_refused_total").await >= 1);
}

#[tokio::test]
async fn a_second_sidecar_of_one_upstream_on_one_state_dir_is_refused_with_the_holder_named() {
    let upstream = Serve::start().await;
    let state = DataDir::new();
    let args = ["--state-dir", state.path().to_str().unwrap()];
    let first = sidecar(&upstream.url, &args).await;
    let mut command = sidecar_command(&upstream.url, &clean_environment());
    command.args(args);
    let run = serve_until_exit(command).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let holder = format!("process {}", first.pid());
    assert!(run.stderr.contains(&holder) && run.stderr.contains("--state-dir"), "{}", run.stderr);
    // Another upstream's sidecar keeps a ledger of its own there.
    let other = Serve::start().await;
    let beside = sidecar(&other.url, &args).await;
    assert_eq!(increments_until_refused(&beside, "c", 2).await, (vec![1, 2], None));
}

#[tokio::test]
async fn a_sidecar_whose_upstream_is_itself_is_refused_at_start() {
    let port = free_port();
    // Named otherwise than it listens: the probe that comes back tells, not the address.
    let command =
        sidecar_command_on(&format!("127.0.0.1:{port}"), &format!("http://localhost:{port}"), &clean_environment());
    let run = serve_until_exit(command).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is this server itself"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "nothing announced: {}", run.stdout);
}

#[tokio::test]
async fn a_sidecar_that_reaches_itself_later_refuses_the_forwarded_request_instead_of_looping() {
    let port = free_port();
    // Down at start, so the check at start cannot see the loop; up, it leads back here.
    let proxy = TcpProxy::start(format!("127.0.0.1:{port}").parse().unwrap()).await;
    proxy.set_up(false);
    let command = sidecar_command_on(&format!("127.0.0.1:{port}"), &proxy.url(), &clean_environment());
    let mut looped = Serve::start_command(command).await;
    proxy.set_up(true);
    let (status, body) = keyed(&looped, "loop", "k-1").await;
    assert_eq!((status, body["error_code"].as_str()), (508, Some("upstream_loop")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("its --upstream is itself"), "{body}");
    let (values, refusal) = increments_until_refused(&looped, "loop", 3).await;
    assert_eq!((values, refusal.map(|(status, _)| status)), (vec![], Some(503)));
    let descriptors = std::fs::read_dir(format!("/proc/{}/fd", looped.pid())).unwrap().count();
    assert!(descriptors < 100, "{descriptors} descriptors open");
    assert!(looped.is_running());
}

#[tokio::test]
async fn two_sidecars_pointed_at_each_other_fail_fast_with_the_loop_error() {
    let (port_a, port_b) = (free_port(), free_port());
    let url = |port| format!("http://127.0.0.1:{port}");
    let env = clean_environment();
    let a = Serve::start_command(sidecar_command_on(&format!("127.0.0.1:{port_a}"), &url(port_b), &env)).await;
    let b = Serve::start_command(sidecar_command_on(&format!("127.0.0.1:{port_b}"), &url(port_a), &env)).await;
    b.stderr_containing("is another counterctl sidecar").await;
    let mut handed = Vec::new();
    for sidecar in [&a, &b] {
        let (status, body) = keyed(sidecar, "ping", "k-1").await;
        assert_eq!((status, body["error_code"].as_str()), (508, Some("upstream_loop")), "{body}");
        handed.extend(body["new_value"].as_i64());
        let (values, refusal) = increments_until_refused(sidecar, "ping", 3).await;
        assert_eq!(refusal.map(|(status, _)| status), Some(503));
        handed.extend(values);
        let (status, body) = health(sidecar).await;
        assert_eq!((status, body["upstream"].as_str()), (503, Some("sidecar")), "{body}");
    }
    assert_eq!(handed, [] as [i64; 0], "nothing handed out");
}

#[tokio::test]
async fn upstream_and_data_dir_together_are_a_usage_error() {
    let run =
        crate::support::cli::counterctl(&["serve", "--upstream", "http://127.0.0.1:9", "--data-dir", "/tmp/x"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--data-dir"), "{}", run.stderr);
    let run = crate::support::cli::counterctl(&["serve", "--min-block", "5"]).await;
    assert_eq!(run.code, 2, "block options need --upstream: {}", run.stderr);
}
