//! The waits real AWS needs and moto does not enforce, shown with answers injected by
//! action name: what counterctl reads before each write, and in which order.

use serde_json::json;

use crate::support::aws_proxy::Fault;
use crate::support::cli::Deployment;

const CONFIGURATION: &str = "GET /2015-03-31/functions/*/configuration";
const GET_FUNCTION: &str = "GET /2015-03-31/functions/*";
const UPDATE_CODE: &str = "PUT /2015-03-31/functions/*/code";
const UPDATE_CONFIGURATION: &str = "PUT /2015-03-31/functions/*/configuration";

/// How many `read`s come after the first `write` and before the `next` one.
fn reads_between(actions: &[String], read: &str, write: &str, next: &str) -> usize {
    let matches = |pattern: &str, action: &str| {
        let (p, a): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), action.split('/').collect());
        p.len() == a.len() && p.iter().zip(&a).all(|(p, a)| *p == "*" || p == a)
    };
    let start = actions.iter().position(|action| matches(write, action)).expect("the first write happened");
    let end = actions.iter().skip(start + 1).position(|action| matches(next, action)).expect("the next write happened");
    actions[start + 1..start + 1 + end].iter().filter(|action| matches(read, action)).count()
}

#[tokio::test]
async fn a_pending_function_is_waited_for_before_its_permission_is_added() {
    let stack = Deployment::new().await;
    stack.install().await;
    stack.delete_permission().await;
    // The read finds it Pending (as right after a create by another run), and so do the
    // next two polls.
    stack.proxy.patch_response(GET_FUNCTION, json!({"Configuration": {"State": "Pending"}}), 1);
    stack.proxy.patch_response(CONFIGURATION, json!({"State": "Pending"}), 2);
    let before = stack.proxy.actions().len();
    stack.install().await;
    let actions = stack.proxy.actions()[before..].to_vec();
    let polls = actions.iter().filter(|action| action.ends_with("/configuration")).count();
    assert_eq!(polls, 3, "two Pending answers, then Active: {actions:?}");
    let last_poll = actions.iter().rposition(|action| action.ends_with("/configuration")).unwrap();
    let permission = actions.iter().position(|action| action.ends_with("/policy") && !action.starts_with("GET"));
    assert!(last_poll < permission.expect("the permission is added"), "{actions:?}");
    let added = actions.iter().filter(|action| action.starts_with("POST ") && action.ends_with("/policy")).count();
    assert_eq!(added, 1);
}

#[tokio::test]
async fn an_update_in_progress_is_waited_for_before_the_next_update() {
    let stack = Deployment::new().await;
    stack.install().await;
    let zip = std::env::temp_dir().join(format!("{}.zip", stack.name));
    let mut bytes = std::fs::read(crate::support::repo_root().join("assets/bootstrap-x86_64.zip")).unwrap();
    bytes.extend_from_slice(b"another build");
    std::fs::write(&zip, &bytes).unwrap();
    // Every poll after the code update says the update is still running, twice.
    stack.proxy.patch_response(CONFIGURATION, json!({"LastUpdateStatus": "InProgress"}), 2);
    let before = stack.proxy.actions().len();
    stack.run("install", &["--function-zip", &zip.display().to_string(), "--memory", "256"]).await.ok();
    let actions = stack.proxy.actions()[before..].to_vec();
    let polls_before_code = actions
        .iter()
        .take_while(|action| !action.ends_with("/code"))
        .filter(|a| a.ends_with("/configuration"))
        .count();
    let polls_between = reads_between(&actions, CONFIGURATION, UPDATE_CODE, UPDATE_CONFIGURATION);
    assert_eq!(polls_before_code + polls_between, 4, "two InProgress, then done before each update: {actions:?}");
    assert!(polls_between >= 1, "the configuration waits for the code update: {actions:?}");
}

#[tokio::test]
async fn an_inactive_function_is_a_normal_state() {
    let stack = Deployment::new().await;
    stack.install().await;
    // Idle long enough for Lambda to reclaim its resources: every answer says Inactive.
    stack.proxy.patch_response(GET_FUNCTION, json!({"Configuration": {"State": "Inactive"}}), 1);
    stack.proxy.patch_response(CONFIGURATION, json!({"State": "Inactive"}), 1000);
    let polls_before = stack.proxy.count(CONFIGURATION);
    let (run, mutations) = stack.mutations_of(stack.run("install", &["--memory", "256"])).await;
    run.ok();
    let function = format!("/2015-03-31/functions/{}", stack.name);
    let expected = [
        format!("PUT {function}/configuration"),
        format!("POST {function}/versions"),
        format!("PUT {function}/aliases/live"),
    ];
    assert_eq!(mutations, expected);
    let polls = stack.proxy.count(CONFIGURATION) - polls_before;
    assert_eq!(
        polls,
        3,
        "one look before the update, one after, one at the new version; no polling: {:?}",
        stack.proxy.actions()
    );
}

#[tokio::test]
async fn a_new_role_lambda_cannot_assume_yet_is_waited_for_on_a_configuration_update() {
    let stack = Deployment::new().await;
    stack.install().await;
    // Someone pointed the function at another role; install gives it the stack's back,
    // and Lambda does not see that role as assumable at once.
    let iam = stack.iam();
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let other = format!("{}-other", stack.name);
    let other_arn = iam.create_role().role_name(&other).assume_role_policy_document(trust).send().await.unwrap();
    let update = stack.lambda().update_function_configuration().function_name(&stack.name);
    update.role(other_arn.role.unwrap().arn).send().await.unwrap();
    let not_yet = Fault::new(
        400,
        "InvalidParameterValueException",
        "The role defined for the function cannot be assumed by Lambda.",
    );
    stack.proxy.inject(UPDATE_CONFIGURATION, not_yet, 2);
    stack.install().await;
    assert_eq!(stack.proxy.count(UPDATE_CONFIGURATION), 3, "two refused, the third accepted");
    stack.run("status", &[]).await.ok();
}

#[tokio::test]
async fn a_table_being_updated_is_waited_for_before_its_ttl_is_turned_on() {
    let stack = Deployment::new().await;
    crate::support::create_counter_table(&stack.dynamodb(), &stack.table).await;
    // The read and the next poll find it UPDATING (someone changes its capacity).
    stack.proxy.patch_response("DescribeTable", json!({"Table": {"TableStatus": "UPDATING"}}), 2);
    stack.install().await;
    let actions = stack.proxy.actions();
    let ttl = actions.iter().position(|action| action == "UpdateTimeToLive").expect("TTL is turned on");
    let reads_before = actions[..ttl].iter().filter(|action| *action == "DescribeTable").count();
    assert!(reads_before >= 3, "two UPDATING answers, then ACTIVE, before UpdateTimeToLive: {actions:?}");
}

#[tokio::test]
async fn the_table_is_deleted_only_once_it_is_active_again() {
    let stack = Deployment::new().await;
    stack.install().await;
    let before = stack.proxy.actions().len();
    // Turning deletion protection off leaves the table UPDATING for a moment.
    stack.proxy.patch_response("DescribeTable", json!({"Table": {"TableStatus": "UPDATING"}}), 3);
    stack.run("uninstall", &["--delete-data", "--yes"]).await.ok();
    let actions = stack.proxy.actions()[before..].to_vec();
    let polls = reads_between(&actions, "DescribeTable", "UpdateTable", "DeleteTable");
    assert!(polls >= 2, "UPDATING, then ACTIVE, between UpdateTable and DeleteTable: {actions:?}");
    assert!(!stack.table_exists().await);
}

#[tokio::test]
async fn update_usage_plan_throttling_is_waited_out_at_its_quota() {
    let stack = Deployment::new().await;
    stack.install().await;
    let throttled = Fault::new(429, "TooManyRequestsException", "Too Many Requests");
    // The SDK makes 5 attempts; the sixth comes after the quota's 20 s.
    stack.proxy.inject("PATCH /usageplans/*", throttled, 6);
    let started = std::time::Instant::now();
    stack.run("install", &["--rate-limit", "10"]).await.ok();
    assert_eq!(stack.proxy.count("PATCH /usageplans/*"), 7, "six throttled, the seventh updates");
    assert!(started.elapsed() >= std::time::Duration::from_secs(20), "a pause of the quota's period");
    stack.run("status", &["--rate-limit", "10"]).await.ok();
}

#[tokio::test]
async fn create_deployment_throttled_past_the_sdks_attempts_waits_for_its_quota() {
    let stack = Deployment::new().await;
    let throttled = Fault::new(429, "TooManyRequestsException", "Too Many Requests");
    // The SDK makes 5 attempts; the sixth comes after the quota's 5 s.
    stack.proxy.inject("POST /restapis/*/deployments", throttled, 6);
    let started = std::time::Instant::now();
    stack.install().await;
    assert_eq!(stack.proxy.count("POST /restapis/*/deployments"), 7);
    assert!(started.elapsed() >= std::time::Duration::from_secs(5), "a pause of the quota's period");
}
