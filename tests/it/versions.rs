//! Every deploy a published version behind the alias `live`, which every front invokes;
//! `counterctl rollback`; a stack from before the alias moved to it; and callers through
//! an upgrade, a rollback and that move, served by the shipped bootstrap behind a front
//! that resolves the alias at each request, as API Gateway does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use counterctl_client::{Auth, Client, Endpoint};
use serde_json::Value;

use crate::support::cli::{ACCOUNT, Deployment, REGION};
use crate::support::deployed_lambda::DeployedLambda;
use crate::support::rest_api::{MethodAuth, RestApi, STAGE};

const ALIAS: &str = "live";
const PERMISSION_SID: &str = "counterctl-apigateway-invoke";

/// The version the alias points at.
async fn alias_version(stack: &Deployment) -> Option<String> {
    let alias = stack.lambda().get_alias().function_name(&stack.name).name(ALIAS).send().await.ok()?;
    alias.function_version().map(str::to_owned)
}

/// The published versions' numbers, oldest first.
async fn published(stack: &Deployment) -> Vec<u64> {
    let listed = stack.lambda().list_versions_by_function().function_name(&stack.name).send().await.unwrap();
    let mut numbers: Vec<u64> = listed.versions().iter().filter_map(|v| v.version()?.parse().ok()).collect();
    numbers.sort_unstable();
    numbers
}

/// The memory of published version `number`.
async fn memory_of(stack: &Deployment, number: &str) -> i32 {
    let configuration = stack.lambda().get_function_configuration().function_name(&stack.name).qualifier(number);
    configuration.send().await.unwrap().memory_size().unwrap()
}

/// The `{proxy+}` resource's id and its integration URI.
async fn integration(stack: &Deployment, api_id: &str) -> (String, String) {
    let apigateway = stack.apigateway();
    let resources = apigateway.get_resources().rest_api_id(api_id).send().await.unwrap();
    let proxy = resources.items().iter().find(|resource| resource.path() == Some("/{proxy+}")).unwrap();
    let proxy = proxy.id().unwrap().to_owned();
    let get = apigateway.get_integration().rest_api_id(api_id).resource_id(&proxy).http_method("ANY");
    let uri = get.send().await.unwrap().uri().unwrap().to_owned();
    (proxy, uri)
}

/// What each of a caller's keys was answered: the value, or the error after retries.
type Answers = Vec<(String, Result<i64, String>)>;

/// Callers incrementing `counter` through `url` with the client's retry policy, each call
/// with a key of its own, until `stop`; what each key was answered.
fn callers(
    url: &str,
    counter: &'static str,
    count: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Answers>> {
    (0..count)
        .map(|caller| {
            let client = Client::new(Endpoint::new(url, Auth::None).unwrap());
            let stop = Arc::clone(stop);
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut call = 0;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("caller-{caller}-call-{call}");
                    let answer = client.increment(counter, None, &key).await;
                    answers.push((
                        key,
                        answer.map(|incremented| incremented.new_value).map_err(|error| error.to_string()),
                    ));
                    call += 1;
                }
                answers
            })
        })
        .collect()
}

/// Stops the callers and checks what they were answered: no call failed (the client's
/// retries included), no value twice, and each key asked again answers its value again.
async fn every_call_answered_once(
    url: &str,
    counter: &str,
    stop: &Arc<AtomicBool>,
    callers: Vec<tokio::task::JoinHandle<Answers>>,
) -> usize {
    stop.store(true, Ordering::SeqCst);
    let mut answers = BTreeMap::new();
    for caller in callers {
        for (key, answer) in caller.await.unwrap() {
            let value = answer.unwrap_or_else(|error| panic!("call {key} failed: {error}"));
            answers.insert(key, value);
        }
    }
    let values: BTreeSet<i64> = answers.values().copied().collect();
    assert_eq!(values.len(), answers.len(), "a value handed out twice");
    let client = Client::new(Endpoint::new(url, Auth::None).unwrap());
    for (key, value) in &answers {
        let again = client.increment(counter, None, key).await.unwrap();
        assert_eq!(again.new_value, *value, "key {key} lost its answer");
    }
    answers.len()
}

/// A front for `stack` that goes where its deployed stage, policies and alias say.
async fn front(stack: &Deployment) -> (Arc<DeployedLambda>, RestApi) {
    let api_id = stack.api_id().await.unwrap();
    let deployed = Arc::new(DeployedLambda::new(&stack.aws, &api_id, STAGE, 2));
    let api = RestApi::start_deployed(Arc::clone(&deployed), MethodAuth::none()).await;
    (deployed, api)
}

/// Waits until the callers have made `calls` more calls through `deployed`.
async fn calls_go_on(deployed: &DeployedLambda, calls: usize) {
    let before = deployed.invoked().len();
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while deployed.invoked().len() < before + calls {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("calls go on");
}

#[tokio::test]
async fn a_fresh_install_runs_version_1_behind_the_alias_the_front_and_its_permission_name() {
    let stack = Deployment::new().await;
    stack.run("install", &["--auth", "none"]).await.ok();
    assert_eq!(alias_version(&stack).await.as_deref(), Some("1"));
    assert_eq!(published(&stack).await, [1]);
    let api_id = stack.api_id().await.unwrap();
    let (_, uri) = integration(&stack, &api_id).await;
    assert!(uri.ends_with(&format!("function:{}:{ALIAS}/invocations", stack.name)), "{uri}");
    let on_alias = stack.permission_statements().await;
    assert!(on_alias.iter().any(|statement| statement["Sid"] == PERMISSION_SID), "{on_alias:?}");
    let own = stack.function_statements().await;
    assert!(!own.iter().any(|statement| statement["Sid"] == PERMISSION_SID), "{own:?}");

    let (deployed, api) = front(&stack).await;
    let client = Client::new(Endpoint::new(&api.url, Auth::None).unwrap());
    assert_eq!(client.increment("tenants", None, "first").await.unwrap().new_value, 1);
    assert_eq!(deployed.invoked(), ["1"]);
    let status = stack.run("status", &["--output", "json"]).await.ok().json();
    assert_eq!(status["alias"]["name"], ALIAS);
    assert_eq!(status["alias"]["version"], 1);
    assert_eq!(status["alias"]["current"], true);
}

#[tokio::test]
async fn a_change_publishes_a_version_and_moves_the_alias_and_a_re_run_publishes_nothing() {
    let stack = Deployment::new().await;
    stack.install().await;
    let (run, mutations) = stack.mutations_of(stack.run("install", &["--memory", "256"])).await;
    run.ok();
    let publishes = mutations.iter().filter(|action| action.ends_with("/versions")).count();
    assert_eq!(publishes, 1, "{mutations:?}");
    assert_eq!(alias_version(&stack).await.as_deref(), Some("2"));
    assert_eq!(memory_of(&stack, "2").await, 256);
    assert_eq!(memory_of(&stack, "1").await, 128, "version 1 keeps what it ran");

    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new());
    assert_eq!(published(&stack).await, [1, 2]);
}

#[tokio::test]
async fn versions_past_five_are_deleted_but_never_the_alias_nor_the_one_before_it() {
    let stack = Deployment::new().await;
    stack.install().await;
    for memory in 129..=135 {
        stack.run("install", &["--memory", &memory.to_string()]).await.ok();
    }
    assert_eq!(published(&stack).await, [4, 5, 6, 7, 8]);
    assert_eq!(alias_version(&stack).await.as_deref(), Some("8"));

    // Rolled back to the oldest kept, then a deploy: 4 stays as the version the alias
    // leaves (calls may still run on it), and goes with the next.
    stack.run("rollback", &["--to", "4", "--yes"]).await.ok();
    stack.run("install", &["--memory", "200"]).await.ok();
    assert_eq!(alias_version(&stack).await.as_deref(), Some("9"));
    assert_eq!(published(&stack).await, [4, 5, 6, 7, 8, 9]);
    assert_eq!(memory_of(&stack, "9").await, 200);
    stack.run("install", &["--memory", "201"]).await.ok();
    assert_eq!(published(&stack).await, [6, 7, 8, 9, 10]);
}

#[tokio::test]
async fn rollback_shows_the_move_asks_moves_the_alias_back_and_install_brings_it_forward() {
    let stack = Deployment::new().await;
    stack.install().await;
    stack.run("install", &["--memory", "256"]).await.ok();
    let code = stack.run("status", &["--output", "json"]).await.ok().json()["bundled_code_sha256"].clone();

    // No terminal to ask on.
    let (run, mutations) = stack.mutations_of(stack.run("rollback", &[])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    assert!(run.stdout.contains("version 2 → version 1"), "the move is shown first: {}", run.stdout);
    assert_eq!(mutations, Vec::<String>::new());

    let (run, mutations) = stack.mutations_of(stack.run("rollback", &["--dry-run", "--output", "json"])).await;
    let shown = run.ok().json();
    assert_eq!(mutations, Vec::<String>::new());
    assert_eq!(shown["dry_run"], true);
    let region = &shown["regions"][0];
    assert_eq!((region["from"]["version"].as_u64(), region["to"]["version"].as_u64()), (Some(2), Some(1)));
    assert_eq!((region["from"]["memory_mb"].as_i64(), region["to"]["memory_mb"].as_i64()), (Some(256), Some(128)));
    assert_eq!(region["to"]["code_sha256"], code);

    let (run, mutations) = stack.mutations_of(stack.run("rollback", &["--yes"])).await;
    assert!(run.ok().stdout.contains("brings the alias forward"));
    assert_eq!(mutations, [format!("PUT /2015-03-31/functions/{}/aliases/{ALIAS}", stack.name)]);
    assert_eq!(alias_version(&stack).await.as_deref(), Some("1"));

    // Status: the stack runs an older version than install deploys, published by this
    // counterctl (so not newer code: a rollback).
    let run = stack.run("status", &[]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("runs another version")
            && run.stdout.contains("a rollback")
            && run.stdout.contains("`counterctl install"),
        "{}",
        run.stdout
    );
    let status = stack.run("status", &["--output", "json"]).await.json();
    assert_eq!((status["alias"]["version"].as_u64(), status["alias"]["current"].as_bool()), (Some(1), Some(false)));
    assert_eq!(status["alias"]["newer_code"], false);
    assert_eq!(status["alias"]["published_by"], env!("CARGO_PKG_VERSION"));

    // Refused before any write: a version that is not there.
    let (run, mutations) = stack.mutations_of(stack.run("rollback", &["--to", "7", "--yes"])).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no version 7") && run.stderr.contains("1, 2"), "{}", run.stderr);
    assert_eq!(mutations, Vec::<String>::new());
    // Nothing before version 1.
    let run = stack.run("rollback", &["--yes"]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no version of function") && run.stderr.contains("older"), "{}", run.stderr);

    // Install brings it forward to the version with the function's code, publishing none.
    let (run, mutations) = stack.mutations_of(stack.install()).await;
    assert!(run.stdout.contains("alias"), "{}", run.stdout);
    assert_eq!(alias_version(&stack).await.as_deref(), Some("2"));
    assert_eq!(published(&stack).await, [1, 2], "{mutations:?}");
    stack.run("status", &[]).await.ok();

    // `--to` a newer version, and to the one it runs.
    stack.run("rollback", &["--to", "1", "--yes"]).await.ok();
    let run = stack.run("rollback", &["--to", "2", "--yes", "--output", "json"]).await.ok().json();
    assert_eq!(run["rolled_back"], true);
    let (run, mutations) = stack.mutations_of(stack.run("rollback", &["--to", "2", "--yes"])).await;
    assert!(run.ok().stdout.contains("Nothing to roll back"));
    assert_eq!(mutations, Vec::<String>::new());
}

#[tokio::test]
async fn a_stack_from_before_versions_moves_to_the_alias_with_callers_answered_throughout() {
    let stack = Deployment::new().await;
    stack.run("install", &["--auth", "none"]).await.ok();
    // As an earlier counterctl left it: the integration and the permission on the function
    // itself, deployed; no alias, no version.
    let (lambda, apigateway) = (stack.lambda(), stack.apigateway());
    let api_id = stack.api_id().await.unwrap();
    let (proxy, uri) = integration(&stack, &api_id).await;
    let old_uri = uri.replace(&format!(":{ALIAS}/invocations"), "/invocations");
    let put = apigateway.put_integration().rest_api_id(&api_id).resource_id(&proxy).http_method("ANY");
    let put = put.r#type(aws_sdk_apigateway::types::IntegrationType::AwsProxy).integration_http_method("POST");
    put.uri(&old_uri).send().await.unwrap();
    apigateway.create_deployment().rest_api_id(&api_id).stage_name(STAGE).send().await.unwrap();
    let source = format!("arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/*");
    let add = lambda.add_permission().function_name(&stack.name).statement_id(PERMISSION_SID);
    add.action("lambda:InvokeFunction").principal("apigateway.amazonaws.com").source_arn(source).send().await.unwrap();
    let remove = lambda.remove_permission().function_name(&stack.name).qualifier(ALIAS);
    remove.statement_id(PERMISSION_SID).send().await.unwrap();
    lambda.delete_alias().function_name(&stack.name).name(ALIAS).send().await.unwrap();
    lambda.delete_function().function_name(&stack.name).qualifier("1").send().await.unwrap();

    let (deployed, api) = front(&stack).await;
    // The stage's deployment throttled three times (CreateDeployment's quota): it lands seconds
    // after the alias's permission, and the function's own statement must wait for it.
    let throttled = crate::support::aws_proxy::Fault::new(429, "TooManyRequestsException", "Too Many Requests");
    stack.proxy.inject(&format!("POST /restapis/{api_id}/deployments"), throttled, 3);
    let stop = Arc::new(AtomicBool::new(false));
    let running = callers(&api.url, "tenants", 3, &stop);
    calls_go_on(&deployed, 10).await;
    let (run, _) = stack.mutations_of(stack.install()).await;
    let run = run.ok();
    assert!(run.stdout.contains("alias"), "{}", run.stdout);
    calls_go_on(&deployed, 10).await;
    let answered = every_call_answered_once(&api.url, "tenants", &stop, running).await;
    assert!(answered >= 20);
    assert_eq!(deployed.refused(), 0, "no request found its target without a permission");

    // The order that keeps callers answered: the alias's permission, then the stage, then
    // the function's own statement.
    let actions = stack.proxy.actions();
    let position = |pattern: &dyn Fn(&str) -> bool| actions.iter().position(|action| pattern(action)).unwrap();
    let added = position(&|action| action.ends_with(&format!("functions/{}/policy", stack.name)));
    let deployed_stage = position(&|action| action == format!("POST /restapis/{api_id}/deployments"));
    let removed = position(&|action| action.starts_with("DELETE") && action.contains("/policy/"));
    assert!(added < deployed_stage && deployed_stage < removed, "{actions:?}");
    let invoked = deployed.invoked();
    assert_eq!(invoked.first().map(String::as_str), Some("$LATEST"));
    // Version numbers are never reused: the one deleted by hand was 1.
    assert_eq!(alias_version(&stack).await.as_deref(), Some("2"));
    assert_eq!(invoked.last().map(String::as_str), Some("2"), "callers reach the alias");
    assert!(!stack.function_statements().await.iter().any(|statement| statement["Sid"] == PERMISSION_SID));

    stack.run("status", &[]).await.ok();
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new());
}

#[tokio::test]
async fn increments_through_an_upgrade_and_a_rollback_all_succeed_and_none_repeats() {
    let stack = Deployment::new().await;
    stack.run("install", &["--auth", "none"]).await.ok();
    let (deployed, api) = front(&stack).await;
    let stop = Arc::new(AtomicBool::new(false));
    let running = callers(&api.url, "tenants", 4, &stop);
    calls_go_on(&deployed, 10).await;
    // An upgrade: a new version while calls run.
    stack.run("install", &["--memory", "256"]).await.ok();
    calls_go_on(&deployed, 10).await;
    stack.run("rollback", &["--yes"]).await.ok();
    calls_go_on(&deployed, 10).await;
    stack.install().await;
    calls_go_on(&deployed, 10).await;
    let answered = every_call_answered_once(&api.url, "tenants", &stop, running).await;
    assert!(answered >= 40);
    assert_eq!(deployed.refused(), 0);
    let invoked = deployed.invoked();
    // Version 1, then 2, then 1 again after the rollback, then 2.
    let mut runs: Vec<&str> = invoked.iter().map(String::as_str).collect();
    runs.dedup();
    assert!(runs.windows(4).any(|window| window == ["1", "2", "1", "2"]), "{runs:?}");
}

#[tokio::test]
async fn a_function_url_is_the_alias_s_and_one_from_before_the_alias_moves_only_when_confirmed() {
    let stack = Deployment::new().await;
    stack.run("install", &["--front", "function-url", "--auth", "none"]).await.ok();
    let lambda = stack.lambda();
    let on_alias = lambda.get_function_url_config().function_name(&stack.name).qualifier(ALIAS).send().await;
    let url = on_alias.unwrap().function_url;
    assert!(lambda.get_function_url_config().function_name(&stack.name).send().await.is_err(), "none of its own");
    let public: Vec<Value> = stack.permission_statements().await;
    assert_eq!(public.len(), 2, "both public statements on the alias: {public:?}");
    assert!(stack.function_statements().await.is_empty());
    let policy = stack.run("status", &["--caller-policy"]).await.ok().json();
    let alias_arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}:{ALIAS}", stack.name);
    assert_eq!(policy["Statement"][0]["Resource"], alias_arn.as_str());

    // Rollback moves what the URL's callers run.
    stack.run("install", &["--memory", "256"]).await.ok();
    stack.run("rollback", &["--yes"]).await.ok();
    assert_eq!(alias_version(&stack).await.as_deref(), Some("1"));
    stack.install().await;
    let same = lambda.get_function_url_config().function_name(&stack.name).qualifier(ALIAS).send().await;
    assert_eq!(same.unwrap().function_url, url, "the alias's URL stays through versions");

    // As an earlier counterctl left it: the function's own URL, public.
    lambda.delete_function_url_config().function_name(&stack.name).qualifier(ALIAS).send().await.unwrap();
    for sid in ["counterctl-function-url-public", "counterctl-function-url-public-invoke"] {
        let remove = lambda.remove_permission().function_name(&stack.name).qualifier(ALIAS).statement_id(sid);
        remove.send().await.unwrap();
    }
    let create = lambda.create_function_url_config().function_name(&stack.name);
    let own = create.auth_type(aws_sdk_lambda::types::FunctionUrlAuthType::None).send().await.unwrap().function_url;
    let add = lambda.add_permission().function_name(&stack.name).statement_id("counterctl-function-url-public");
    let add = add.action("lambda:InvokeFunctionUrl").principal("*");
    add.function_url_auth_type(aws_sdk_lambda::types::FunctionUrlAuthType::None).send().await.unwrap();
    let run = stack.run("rollback", &["--yes"]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("own URL") && run.stderr.contains("--yes"), "{}", run.stderr);

    // The move gives callers a new address: confirmed like any change that breaks them.
    let (run, mutations) = stack.mutations_of(stack.run("install", &[])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("a new URL on alias live") && run.stderr.contains(&own), "{}", run.stderr);
    assert!(run.stderr.contains("break existing callers") && run.stderr.contains("--yes"), "{}", run.stderr);
    assert_eq!(mutations, Vec::<String>::new());
    let run = stack.run("install", &["--yes"]).await.ok();
    let moved = lambda.get_function_url_config().function_name(&stack.name).qualifier(ALIAS).send().await;
    let moved = moved.unwrap().function_url;
    assert_ne!(moved, own);
    assert!(run.stdout.contains(&moved), "install prints the new URL: {}", run.stdout);
    assert!(lambda.get_function_url_config().function_name(&stack.name).send().await.is_err(), "the old one goes");
    assert!(stack.function_statements().await.is_empty(), "with its public statement");
    assert_eq!(stack.permission_statements().await.len(), 2);
    stack.run("status", &[]).await.ok();
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new());
}
