//! A stack in three regions on a strongly consistent DynamoDB global table (the test
//! proxy keeps the global tables moto has not): install, status, re-runs and uninstall
//! from any of its regions, the refusals, and increments in every region.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_sdk_dynamodb::types::ReplicationGroupUpdate;
use aws_sdk_dynamodb::types::{AttributeValue, CreateReplicationGroupMemberAction, MultiRegionConsistency};
use http::Method;

use crate::support::aws_proxy::{AwsProxy, Fault};
use crate::support::cli::{Deployment, Run, clean_environment, counterctl, counterctl_with_env};
use crate::support::function::Function;
use crate::support::rest_api::rest_event;
use crate::support::runtime_api::Outcome;
use crate::support::{create_counter_table, moto_url, unique_name};

const THREE: &str = "us-east-1,us-east-2,us-west-2";

/// The SDK's config for `region`, at moto directly.
async fn aws_in(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .endpoint_url(moto_url())
        .load()
        .await
}

/// `counterctl COMMAND` for the stack, from `region`.
async fn run_in(stack: &Deployment, region: &str, command: &str, args: &[&str]) -> Run {
    let mut all = vec![command, "--endpoint-url", &stack.proxy.url, "--region", region, "--name", &stack.name];
    all.extend(args);
    counterctl(&all).await
}

async fn function_in(stack: &Deployment, region: &str) -> bool {
    let lambda = aws_sdk_lambda::Client::new(&aws_in(region).await);
    lambda.get_function().function_name(&stack.name).send().await.is_ok()
}

async fn api_key_in(stack: &Deployment, region: &str) -> Option<String> {
    let apigateway = aws_sdk_apigateway::Client::new(&aws_in(region).await);
    let keys = apigateway.get_api_keys().name_query(&stack.name).include_values(true).send().await.unwrap();
    keys.items().first().and_then(|key| key.value().map(str::to_owned))
}

#[tokio::test]
async fn regions_that_cannot_make_a_strongly_consistent_table_are_refused_before_any_call() {
    let stack = Deployment::new().await;
    let refused = [
        (vec!["--regions", "us-east-1,us-east-1,us-west-2"], "given twice"),
        (vec!["--regions", "us-east-1,us-east-2"], "exactly three regions"),
        (vec!["--regions", "us-east-1,us-east-2", "--witness-region", "eu-west-1"], "different region sets"),
        (vec!["--regions", "us-east-1,us-east-2,sa-east-1"], "in no region set"),
        (vec!["--regions", THREE, "--domain", "ids.example.com"], "latency records"),
    ];
    for (args, reason) in refused {
        let run = stack.run("install", &args[..]).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(reason) && run.stderr.contains("hint:"), "{args:?}: {}", run.stderr);
    }
    let elsewhere = run_in(&stack, "eu-west-1", "install", &["--regions", THREE]).await;
    assert_eq!(elsewhere.code, 2, "{}", elsewhere.stderr);
    assert!(elsewhere.stderr.contains("is not one of --regions"), "{}", elsewhere.stderr);
    assert!(stack.proxy.actions().is_empty(), "no call at all: {:?}", stack.proxy.actions());
    let witness_alone = stack.run("install", &["--witness-region", "us-west-2"]).await;
    assert_eq!(witness_alone.code, 2, "--witness-region needs --regions: {}", witness_alone.stderr);
}

#[tokio::test]
async fn a_table_that_holds_counters_is_not_made_global_and_the_hint_says_how_to_move() {
    let stack = Deployment::new().await;
    stack.install().await;
    stack.put_counter(&stack.table, "tenant", 7).await;

    let (run, writes) = stack.mutations_of(stack.run("install", &["--regions", THREE])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("holds items") && run.stderr.contains("counters export"), "{}", run.stderr);
    assert!(writes.is_empty(), "nothing written: {writes:?}");
    assert_eq!(stack.proxy.global_table(&stack.table), None);
}

#[tokio::test]
async fn install_in_three_regions_makes_one_strongly_consistent_table_and_the_stack_in_each() {
    let stack = Deployment::new().await;
    let run = stack.run("install", &["--regions", THREE, "--output", "json"]).await.ok();
    let report = run.json();
    let regions: Vec<&str> =
        report["regions"].as_array().unwrap().iter().map(|r| r["region"].as_str().unwrap()).collect();
    assert_eq!(regions, ["us-east-1", "us-east-2", "us-west-2"]);
    let (home, replicas, witness) = stack.proxy.global_table(&stack.table).expect("made global");
    assert_eq!(
        (home.as_str(), replicas, witness),
        ("us-east-1", vec!["us-east-1".into(), "us-east-2".into(), "us-west-2".into()], None)
    );

    let mut keys = BTreeSet::new();
    let tagged: BTreeSet<String> = stack
        .proxy
        .recorded()
        .iter()
        .filter(|call| call.action == "TagResource" && call.service == "dynamodb")
        .map(|call| call.region.clone())
        .collect();
    assert_eq!(tagged.len(), 2, "the replicas are tagged in their own regions: {tagged:?}");
    for region in ["us-east-1", "us-east-2", "us-west-2"] {
        assert!(function_in(&stack, region).await, "a function in {region}");
        keys.insert(api_key_in(&stack, region).await.expect("an API key in each region"));
    }
    assert_eq!(keys.len(), 1, "one key value in every region: a caller holds one key");
    let ttl = stack.dynamodb().describe_time_to_live().table_name(&stack.table).send().await.unwrap();
    let ttl_status =
        ttl.time_to_live_description().and_then(|ttl| ttl.time_to_live_status()).map(|s| s.as_str().to_owned());
    assert_ne!(ttl_status.as_deref(), Some("ENABLED"), "MRSC has no TTL: the function sweeps instead");

    // From any region of the stack: status sees every region, and a re-run writes nothing.
    for region in ["us-east-1", "us-east-2", "us-west-2"] {
        let status = run_in(&stack, region, "status", &["--output", "json"]).await;
        assert_eq!(status.code, 0, "{region}: {}", status.stdout);
        let status = status.json();
        assert_eq!(status["consistency"], "strong");
        assert_eq!(status["regions"].as_array().unwrap().len(), 3, "{region}: {status}");
        assert_eq!(status["regions"][0]["region"], region, "the asking region first");
        let (rerun, writes) = stack.mutations_of(run_in(&stack, region, "install", &[])).await;
        rerun.ok();
        assert!(writes.is_empty(), "a plain re-run from {region} writes nothing: {writes:?}");
    }
    let policy = run_in(&stack, "us-east-2", "status", &["--operator-policy"]).await.ok().json();
    let text = policy.to_string();
    assert!(text.contains("dynamodb:CreateTableReplica") && text.contains("iam:CreateServiceLinkedRole"), "{text}");
    for region in ["us-east-1", "us-east-2", "us-west-2"] {
        assert!(text.contains(&format!("arn:aws:lambda:{region}:")), "the operator policy covers {region}");
    }
    let sids: Vec<&str> = policy["Statement"].as_array().unwrap().iter().filter_map(|s| s["Sid"].as_str()).collect();
    assert_eq!(sids.iter().collect::<BTreeSet<_>>().len(), sids.len(), "no Sid twice: {sids:?}");

    let caller = run_in(&stack, "us-west-2", "status", &["--caller-policy"]).await.ok().json().to_string();
    let metrics = run_in(&stack, "us-west-2", "status", &["--metrics", "--output", "json"]).await.ok().json();
    for region in ["us-east-1", "us-east-2", "us-west-2"] {
        assert!(caller.contains(&format!("arn:aws:execute-api:{region}:")), "the caller policy covers {region}");
        assert!(metrics["regions"].as_array().unwrap().iter().any(|r| r["region"] == region), "{metrics}");
    }

    // increment finds every region's front, --region's first, and moves on while none
    // answers (an HTTPS proxy that refuses stands for fronts that are down).
    let mut env = clean_environment();
    env.push(("HTTPS_PROXY", "http://127.0.0.1:9".into()));
    let args =
        ["increment", "tenants", "--endpoint-url", &stack.proxy.url, "--region", "us-east-2", "--name", &stack.name];
    let down = counterctl_with_env(&args, &env).await;
    assert_eq!(down.code, 2, "{}", down.stderr);
    let hint = down.stderr.lines().find(|line| line.contains("no region of the stack answered")).expect(&down.stderr);
    let at = |region: &str| hint.find(&format!(".execute-api.{region}.amazonaws.com")).expect(hint);
    assert!(at("us-east-2") < at("us-east-1") && at("us-east-2") < at("us-west-2"), "--region's first: {hint}");

    // Drift in any region is drift.
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&aws_in("us-west-2").await);
    cloudwatch.delete_alarms().alarm_names(format!("{}-function-errors", stack.name)).send().await.unwrap();
    assert_eq!(run_in(&stack, "us-east-1", "status", &[]).await.code, 1, "an alarm missing in us-west-2");

    // A deployed MRSC table keeps its regions: AWS adds and removes none.
    let (other, writes) = stack
        .mutations_of(stack.run("install", &["--regions", "us-east-1,us-east-2", "--witness-region", "us-west-2"]))
        .await;
    assert_eq!(other.code, 2, "{}", other.stderr);
    assert!(other.stderr.contains("adds and removes no replica"), "{}", other.stderr);
    assert!(writes.is_empty(), "{writes:?}");
}

#[tokio::test]
async fn the_operator_policy_of_a_stack_in_three_regions_is_printed_before_its_install() {
    let stack = Deployment::new().await;
    let (run, writes) = stack.mutations_of(stack.run("status", &["--regions", THREE, "--operator-policy"])).await;
    let policy = run.ok().json().to_string();
    for region in ["us-east-1", "us-east-2", "us-west-2"] {
        assert!(policy.contains(&format!("arn:aws:lambda:{region}:")), "{region}: {policy}");
    }
    assert!(policy.contains("dynamodb:CreateTableReplica"), "{policy}");
    assert!(writes.is_empty(), "status writes nothing: {writes:?}");
}

#[tokio::test]
async fn a_lost_create_table_answer_still_makes_the_table_global_before_another_region() {
    let stack = Deployment::new().await;
    stack.proxy.lose_answer("CreateTable", 1);
    stack.run("install", &["--regions", THREE]).await.ok();
    assert!(stack.proxy.global_table(&stack.table).is_some(), "adopted, then made global");
    for region in ["us-east-1", "us-east-2", "us-west-2"] {
        assert!(function_in(&stack, region).await, "a function in {region}");
    }
}

#[tokio::test]
async fn a_replica_region_with_a_table_of_its_own_is_refused_before_any_write() {
    let stack = Deployment::new().await;
    // A one-region table of the stack's name in us-east-2 (an earlier install there).
    let east = aws_sdk_dynamodb::Client::new(&aws_in("us-east-2").await);
    create_counter_table(&east, &stack.table).await;
    let (run, writes) = stack.mutations_of(stack.run("install", &["--regions", THREE])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is not a replica") && run.stderr.contains("us-east-2"), "{}", run.stderr);
    assert!(writes.is_empty(), "refused before any write: {writes:?}");
}

#[tokio::test]
async fn two_regions_and_a_witness_run_the_function_in_the_two() {
    let stack = Deployment::new().await;
    // Replicas CREATING for a while, and `Replicas` listing the asking region too.
    stack.proxy.set_global_tables(3, true);
    stack.run("install", &["--regions", "us-east-1,us-east-2", "--witness-region", "us-west-2"]).await.ok();
    let (_, replicas, witness) = stack.proxy.global_table(&stack.table).expect("made global");
    assert_eq!((replicas.len(), witness.as_deref()), (2, Some("us-west-2")));
    assert!(function_in(&stack, "us-east-1").await && function_in(&stack, "us-east-2").await);
    assert!(!function_in(&stack, "us-west-2").await, "a witness region runs nothing");
    let status = run_in(&stack, "us-east-2", "status", &["--output", "json"]).await;
    assert_eq!(status.code, 0, "{}", status.stdout);
    assert_eq!(status.json()["witness"], "us-west-2");
    // export writes one region's stack: a global table's is refused, nothing written.
    let dir = std::env::temp_dir().join(format!("{}-export", stack.name));
    let export = stack.run("export", &["--format", "terraform", "--output-dir", dir.to_str().unwrap()]).await;
    assert_eq!(export.code, 2, "{}", export.stderr);
    assert!(
        export.stderr.contains("runs in several regions (us-east-1, us-east-2 (witness us-west-2))"),
        "{}",
        export.stderr
    );
    assert!(!dir.exists());
}

#[tokio::test]
async fn uninstall_from_a_non_home_region_removes_every_region_and_keeps_the_counters() {
    let stack = Deployment::new().await;
    stack.run("install", &["--regions", THREE]).await.ok();
    stack.put_counter(&stack.table, "tenant", 714).await;

    let list = ["counters", "list", "--endpoint-url", &stack.proxy.url, "--region", "us-west-2", "--name", &stack.name];
    let listed = counterctl(&list).await.ok();
    assert!(
        listed.stdout.contains("tenant") && listed.stdout.contains("714"),
        "one table, read in any region: {}",
        listed.stdout
    );

    run_in(&stack, "us-west-2", "uninstall", &["--yes"]).await.ok();
    for region in ["us-east-1", "us-east-2", "us-west-2"] {
        assert!(!function_in(&stack, region).await, "no function left in {region}");
    }
    assert!(!stack.role_exists().await, "the role goes with the last region's function");
    assert!(stack.proxy.global_table(&stack.table).is_some(), "the global table stays");
    let read = stack.dynamodb().get_item().table_name(&stack.table).key("id", AttributeValue::S("tenant".into()));
    assert_eq!(read.send().await.unwrap().item().unwrap()["lastValue"], AttributeValue::N("714".into()));

    let delete = ["--yes", "--delete-data", "--table", &stack.table];
    run_in(&stack, "us-east-2", "uninstall", &delete).await.ok();
    assert_eq!(stack.proxy.global_table(&stack.table), None, "replicas removed first");
    assert!(!stack.table_exists().await, "then the table");
}

/// The shipped bootstrap in each region, against one MRSC table: every value once.
#[tokio::test]
async fn increments_in_all_three_regions_are_unique_and_gapless() {
    let proxy = AwsProxy::start(&moto_url()).await;
    let table = unique_name("global");
    let home = aws_sdk_dynamodb::Client::new(&aws_in("us-east-1").await);
    create_counter_table(&home, &table).await;
    let create = |region: &str| {
        let create = CreateReplicationGroupMemberAction::builder().region_name(region).build().unwrap();
        ReplicationGroupUpdate::builder().create(create).build()
    };
    // Through the proxy, which keeps the global table.
    let config = aws_sdk_dynamodb::config::Builder::from(&aws_in("us-east-1").await).endpoint_url(&proxy.url).build();
    let through_proxy = aws_sdk_dynamodb::Client::from_conf(config);
    let update = through_proxy.update_table().table_name(&table).replica_updates(create("us-east-2"));
    update
        .replica_updates(create("us-west-2"))
        .multi_region_consistency(MultiRegionConsistency::Strong)
        .send()
        .await
        .unwrap();

    let mut functions = Vec::new();
    for region in ["us-east-1", "us-east-2", "us-west-2"] {
        functions.push(Arc::new(Function::start_in(region, &table, &proxy.url, 2).await));
    }
    let (per_region, tasks_per_region) = (30, 3);
    let mut tasks = Vec::new();
    for function in &functions {
        for _ in 0..tasks_per_region {
            let function = Arc::clone(function);
            tasks.push(tokio::spawn(async move {
                let mut values = Vec::new();
                for _ in 0..per_region / tasks_per_region {
                    let query = [("counter".to_owned(), "tenants".to_owned())];
                    let event = rest_event(&Method::POST, "counter/increment", &query, &[], None, "198.51.100.7");
                    let Outcome::Response(response) = function.invoke(event).await else {
                        panic!("the function failed")
                    };
                    assert_eq!(response["statusCode"], 200, "{response}");
                    let body: serde_json::Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
                    values.push(body["new_value"].as_i64().unwrap());
                }
                values
            }));
        }
    }
    let mut all = BTreeSet::new();
    for task in tasks {
        for value in task.await.unwrap() {
            assert!(all.insert(value), "{value} was handed out twice");
        }
    }
    let total = i64::try_from(per_region * functions.len()).unwrap();
    assert_eq!(all, (1..=total).collect(), "unique and gapless across the regions");

    // us-west-2's DynamoDB is down: its function fails, the others go on from the table.
    proxy.region_outage("us-west-2", Some(Fault::new(500, "InternalServerError", "region outage")));
    async fn increment(function: &Function) -> Outcome {
        let query = [("counter".to_owned(), "tenants".to_owned())];
        function.invoke(rest_event(&Method::POST, "counter/increment", &query, &[], None, "198.51.100.7")).await
    }
    let Outcome::Response(down) = increment(&functions[2]).await else { panic!("the function failed") };
    assert!(down["statusCode"].as_i64().unwrap() >= 500, "{down}");
    let Outcome::Response(up) = increment(&functions[1]).await else { panic!("the function failed") };
    let body: serde_json::Value = serde_json::from_str(up["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["new_value"], total + 1, "the next value, from another region");
    proxy.region_outage("us-west-2", None);
    let regions: BTreeSet<String> =
        proxy.recorded().iter().filter(|call| call.action == "UpdateItem").map(|call| call.region.clone()).collect();
    assert_eq!(regions.len(), 3, "each region's function wrote through its own region: {regions:?}");
}

#[tokio::test]
async fn rollback_moves_the_alias_back_in_every_region_and_install_brings_each_forward() {
    let stack = Deployment::new().await;
    stack.run("install", &["--regions", "us-east-1,us-east-2", "--witness-region", "us-west-2"]).await.ok();
    stack.run("install", &["--memory", "256"]).await.ok();
    let alias_in = |region: &'static str| {
        let name = stack.name.clone();
        async move {
            let lambda = aws_sdk_lambda::Client::new(&aws_in(region).await);
            let alias = lambda.get_alias().function_name(&name).name("live").send().await.unwrap();
            alias.function_version().unwrap().to_owned()
        }
    };
    assert_eq!((alias_in("us-east-1").await, alias_in("us-east-2").await), ("2".into(), "2".into()));

    let run = run_in(&stack, "us-east-2", "rollback", &["--yes", "--output", "json"]).await.ok().json();
    let moved: Vec<(&str, u64, u64)> = run["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|region| {
            let (from, to) = (region["from"]["version"].as_u64().unwrap(), region["to"]["version"].as_u64().unwrap());
            (region["region"].as_str().unwrap(), from, to)
        })
        .collect();
    assert_eq!(moved, [("us-east-2", 2, 1), ("us-east-1", 2, 1)]);
    assert_eq!((alias_in("us-east-1").await, alias_in("us-east-2").await), ("1".into(), "1".into()));
    let status = stack.run("status", &[]).await;
    assert_eq!(status.code, 1, "{}", status.stdout);

    stack.install().await;
    assert_eq!((alias_in("us-east-1").await, alias_in("us-east-2").await), ("2".into(), "2".into()));
    run_in(&stack, "us-east-2", "status", &[]).await.ok();
}
