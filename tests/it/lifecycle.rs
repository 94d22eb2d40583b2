//! The lifecycle decides from what is deployed: options not given keep it, nothing an
//! operator does by default can restart a sequence, and every run converges whatever
//! happened before (a lost answer, an undeployed change, a concurrent install).

use aws_sdk_dynamodb::types::AttributeValue;

use crate::support::aws_proxy::Fault;
use crate::support::cli::{Deployment, REGION, REGION_POLICY, Run, counterctl};
use crate::support::function::Function;
use crate::support::rest_api::{MethodAuth, RestApi};

/// Runs `counterctl COMMAND` for the stack's name but without `--table`.
async fn run_without_table(stack: &Deployment, command: &str, args: &[&str]) -> Run {
    let mut all = vec![command, "--endpoint-url", &stack.proxy.url, "--region", REGION, "--name", &stack.name];
    all.extend(args);
    counterctl(&all).await
}

async fn function_table(stack: &Deployment) -> String {
    let config = stack.lambda().get_function_configuration().function_name(&stack.name).send().await.unwrap();
    config.environment().unwrap().variables().unwrap()["TABLE_NAME"].clone()
}

#[tokio::test]
async fn a_rerun_without_table_keeps_the_deployed_table() {
    let stack = Deployment::new().await;
    stack.install().await; // --table Counters-…, not the default
    stack.put_counter(&stack.table, "tenants", 714).await;

    let status = run_without_table(&stack, "status", &[]).await;
    assert_eq!(status.code, 0, "status compares against the deployed table: {}", status.stdout);
    let (run, mutations) = stack.mutations_of(run_without_table(&stack, "install", &[])).await;
    run.ok();
    assert_eq!(mutations, Vec::<String>::new());
    assert!(!mutations.contains(&"CreateTable".to_owned()), "no empty AtomicCounters is made");
    assert_eq!(function_table(&stack).await, stack.table);
}

#[tokio::test]
async fn another_table_is_refused_without_switch_table_and_changes_nothing() {
    let stack = Deployment::new().await;
    stack.install().await;
    let (run, mutations) = stack.mutations_of(run_without_table(&stack, "install", &["--table", "Elsewhere"])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("the function uses table {}", stack.table)), "{}", run.stderr);
    assert!(run.stderr.contains("hint: leave out --table"), "{}", run.stderr);
    assert_eq!(mutations, Vec::<String>::new());
    assert_eq!(function_table(&stack).await, stack.table);
}

#[tokio::test]
async fn switch_table_is_refused_while_any_counter_would_go_backwards() {
    let stack = Deployment::new().await;
    stack.install().await;
    stack.put_counter(&stack.table, "tenants", 714).await;
    stack.put_counter(&stack.table, "orders", 20).await;
    let new_table = format!("{}-new", stack.table);
    crate::support::create_counter_table(&stack.dynamodb(), &new_table).await;
    stack.put_counter(&new_table, "tenants", 700).await;
    // An idempotency record of the function is not a counter.
    let record = stack.dynamodb().put_item().table_name(&stack.table);
    let record = record
        .item("id", AttributeValue::S("_counterctl#key#x".into()))
        .item("lastValue", AttributeValue::N("9".into()));
    record.send().await.unwrap();

    let args = ["--table", new_table.as_str(), "--switch-table"];
    let (run, mutations) = stack.mutations_of(run_without_table(&stack, "install", &args)).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("2 counter(s) would go backwards"), "{}", run.stderr);
    assert!(run.stderr.contains("orders (20 → 0)") && run.stderr.contains("tenants (714 → 700)"), "{}", run.stderr);
    assert!(!run.stderr.contains("_counterctl#"), "{}", run.stderr);
    assert_eq!(mutations, Vec::<String>::new());

    stack.put_counter(&new_table, "tenants", 714).await;
    stack.put_counter(&new_table, "orders", 25).await;
    let unconfirmed = run_without_table(&stack, "install", &args).await;
    assert_eq!(unconfirmed.code, 2, "callers are stopped during the switch: {}", unconfirmed.stderr);
    assert!(unconfirmed.stderr.contains("hint: pass --yes"), "{}", unconfirmed.stderr);

    let confirmed = [&args[..], &["--yes"]].concat();
    let (run, mutations) = stack.mutations_of(run_without_table(&stack, "install", &confirmed)).await;
    run.ok();
    // Invocations stop, the configuration switches, the alias moves to a version on the
    // new table, and only then do invocations resume: callers reach the function through
    // the alias, whose old version uses the old table.
    let concurrency = format!("/2017-10-31/functions/{}/concurrency", stack.name);
    let function = format!("/2015-03-31/functions/{}", stack.name);
    let position = |action: String| mutations.iter().position(|made| *made == action);
    let stop = position(format!("PUT {concurrency}"));
    let switch = position(format!("PUT {function}/configuration"));
    let alias = position(format!("PUT {function}/aliases/live"));
    let resume = position(format!("DELETE {concurrency}"));
    assert!(stop.is_some() && stop < switch && switch < alias && alias < resume, "{mutations:?}");
    assert_eq!(function_table(&stack).await, new_table);
    let concurrency = stack.lambda().get_function_concurrency().function_name(&stack.name).send().await.unwrap();
    assert_eq!(concurrency.reserved_concurrent_executions(), None, "the function runs again, unreserved as before");
    let alias = stack.lambda().get_function_configuration().function_name(&stack.name).qualifier("live");
    let alias = alias.send().await.unwrap();
    assert_eq!(alias.environment().unwrap().variables().unwrap()["TABLE_NAME"], new_table);

    // The version before the switch counts on the old table: a rollback there is refused.
    let (run, mutations) = stack.mutations_of(run_without_table(&stack, "rollback", &["--yes"])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("would hand out IDs again"), "{}", run.stderr);
    assert_eq!(mutations, Vec::<String>::new());
}

#[tokio::test]
async fn a_switch_whose_alias_does_not_move_keeps_invocations_stopped_until_the_next_install() {
    let stack = Deployment::new().await;
    stack.install().await;
    let new_table = format!("{}-new", stack.table);
    crate::support::create_counter_table(&stack.dynamodb(), &new_table).await;
    let function = format!("/2015-03-31/functions/{}", stack.name);
    stack.proxy.inject(
        &format!("POST {function}/versions"),
        Fault::new(400, "InvalidParameterValueException", "injected"),
        1,
    );
    let args = ["--table", new_table.as_str(), "--switch-table", "--yes"];
    let run = run_without_table(&stack, "install", &args).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("invocations stay stopped"), "{}", run.stderr);
    let concurrency = stack.lambda().get_function_concurrency().function_name(&stack.name).send().await.unwrap();
    assert_eq!(concurrency.reserved_concurrent_executions(), Some(0), "nothing runs on the old table again");
    // A template of it would start the function before it moves the alias: refused.
    let dir = std::env::temp_dir().join(format!("{}-export", stack.name));
    let args = ["--format", "terraform", "--output-dir", dir.to_str().unwrap()];
    let export = run_without_table(&stack, "export", &args).await;
    assert_eq!(export.code, 2, "{}", export.stderr);
    assert!(export.stderr.contains("has not finished"), "{}", export.stderr);
    assert!(!dir.exists(), "nothing written");

    let (run, mutations) = stack.mutations_of(run_without_table(&stack, "install", &[])).await;
    run.ok();
    let alias = mutations.iter().position(|made| *made == format!("PUT {function}/aliases/live"));
    let resume = mutations.iter().position(|made| made.starts_with("DELETE") && made.ends_with("/concurrency"));
    assert!(alias.is_some() && alias < resume, "the alias moves first: {mutations:?}");
    let alias = stack.lambda().get_function_configuration().function_name(&stack.name).qualifier("live");
    let alias = alias.send().await.unwrap();
    assert_eq!(alias.environment().unwrap().variables().unwrap()["TABLE_NAME"], new_table);
}

#[tokio::test]
async fn a_counter_that_moves_on_during_the_switch_stops_it() {
    let stack = Deployment::new().await;
    stack.install().await;
    stack.put_counter(&stack.table, "tenants", 714).await;
    let new_table = format!("{}-new", stack.table);
    crate::support::create_counter_table(&stack.dynamodb(), &new_table).await;
    stack.put_counter(&new_table, "tenants", 714).await;

    let args = ["--table", new_table.as_str(), "--switch-table", "--yes"];
    let switch = run_without_table(&stack, "install", &args);
    let late_increment = async {
        // A request in flight when invocations stopped finishes during the wait.
        let stopped = format!("PUT /2017-10-31/functions/{}/concurrency", stack.name);
        while !stack.proxy.actions().contains(&stopped) {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        stack.put_counter(&stack.table, "tenants", 715).await;
    };
    let (run, ()) = tokio::join!(switch, late_increment);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("tenants (715 → 714)"), "{}", run.stderr);
    assert_eq!(function_table(&stack).await, stack.table, "still on its table");
    let concurrency = stack.lambda().get_function_concurrency().function_name(&stack.name).send().await.unwrap();
    assert_eq!(concurrency.reserved_concurrent_executions(), None, "the function runs again");
    let policy = stack.iam().get_role_policy().role_name(&stack.name).policy_name(REGION_POLICY).send().await.unwrap();
    let table_arn = format!("table/{}\"", stack.table);
    assert!(
        policy.policy_document.contains(&table_arn) || {
            let decoded =
                percent_encoding::percent_decode_str(&policy.policy_document).decode_utf8().unwrap().into_owned();
            decoded.contains(&table_arn)
        },
        "the role still grants the table the function uses: {}",
        policy.policy_document
    );
}

#[tokio::test]
async fn a_switch_that_fails_halfway_lets_the_function_run_again() {
    let stack = Deployment::new().await;
    stack.install().await;
    let new_table = format!("{}-new", stack.table);
    crate::support::create_counter_table(&stack.dynamodb(), &new_table).await;
    let args = ["--table", new_table.as_str(), "--switch-table", "--yes"];
    let switch = run_without_table(&stack, "install", &args);
    let failure = async {
        let stopped = format!("PUT /2017-10-31/functions/{}/concurrency", stack.name);
        while !stack.proxy.actions().contains(&stopped) {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        stack.proxy.inject("Scan", Fault::new(400, "AccessDeniedException", "injected: not allowed"), 1);
    };
    let (run, ()) = tokio::join!(switch, failure);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("reading the counters of both tables again"), "{}", run.stderr);
    let concurrency = stack.lambda().get_function_concurrency().function_name(&stack.name).send().await.unwrap();
    assert_eq!(concurrency.reserved_concurrent_executions(), None, "invocations are let through again");
    assert_eq!(function_table(&stack).await, stack.table);
}

#[tokio::test]
async fn a_function_left_refusing_every_invocation_is_repaired() {
    let stack = Deployment::new().await;
    stack.install().await;
    // As a switch killed during its wait leaves it.
    let stop = stack.lambda().put_function_concurrency().function_name(&stack.name).reserved_concurrent_executions(0);
    stop.send().await.unwrap();
    let status = stack.run("status", &[]).await;
    assert_eq!(status.code, 1, "{}", status.stdout);
    assert!(status.stdout.contains("reserved concurrency 0"), "{}", status.stdout);
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, [format!("DELETE /2017-10-31/functions/{}/concurrency", stack.name)]);
    stack.run("status", &[]).await.ok();
}

#[tokio::test]
async fn options_not_given_keep_what_is_deployed() {
    let stack = Deployment::new().await;
    let custom =
        ["--memory", "512", "--timeout", "30", "--rate-limit", "7", "--burst-limit", "9", "--log-retention-days", "7"];
    stack.run("install", &custom).await.ok();
    let (run, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new(), "{}", run.stdout);
    assert!(run.stdout.contains("Everything is up to date."), "{}", run.stdout);
    stack.run("status", &[]).await.ok();

    let config = stack.lambda().get_function_configuration().function_name(&stack.name).send().await.unwrap();
    assert_eq!((config.memory_size(), config.timeout()), (Some(512), Some(30)));
    let plans = stack.apigateway().get_usage_plans().send().await.unwrap();
    let plan = plans.items().iter().find(|plan| plan.name() == Some(&stack.name)).unwrap();
    assert_eq!((plan.throttle().unwrap().rate_limit(), plan.throttle().unwrap().burst_limit()), (7.0, 9));
}

#[tokio::test]
async fn an_auth_change_needs_yes_without_a_terminal() {
    let stack = Deployment::new().await;
    stack.install().await;
    let (run, mutations) = stack.mutations_of(stack.run("install", &["--auth", "none"])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("These changes break existing callers"), "{}", run.stderr);
    assert!(run.stderr.contains("hint: pass --yes"), "{}", run.stderr);
    assert_eq!(mutations, Vec::<String>::new());
    let dry = stack.run("install", &["--auth", "none", "--dry-run"]).await.ok();
    assert!(dry.stdout.contains("[breaks existing callers]"), "{}", dry.stdout);
    stack.run("install", &["--auth", "none", "--yes"]).await.ok();
    let back = stack.run("install", &["--auth", "api-key", "-y"]).await.ok();
    assert!(back.stdout.contains("Installed."), "{}", back.stdout);
}

#[tokio::test]
async fn a_change_whose_deployment_failed_is_deployed_by_the_next_run() {
    let stack = Deployment::new().await;
    stack.install().await;
    let denied = Fault::new(403, "AccessDeniedException", "injected: not allowed");
    stack.proxy.inject("POST /restapis/*/deployments", denied, 1);
    let failed = stack.run("install", &["--auth", "none", "--yes"]).await;
    assert_eq!(failed.code, 2, "{}", failed.stderr);
    stack.proxy.settle().await;

    let status = stack.run("status", &[]).await;
    assert_eq!(status.code, 1, "the live stage still serves the old method: {}", status.stdout);
    assert!(
        status.stdout.lines().any(|line| line.contains("stage") && line.contains("differs: deployment")),
        "{}",
        status.stdout
    );
    let (run, mutations) = stack.mutations_of(stack.run("install", &["--yes"])).await;
    run.ok();
    assert!(mutations.iter().any(|action| action.ends_with("/deployments")), "{mutations:?}");
    stack.run("status", &[]).await.ok();
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new());
}

#[tokio::test]
async fn create_deployment_throttled_three_times_still_deploys() {
    let stack = Deployment::new().await;
    let throttled = Fault::new(429, "TooManyRequestsException", "Too Many Requests");
    stack.proxy.inject("POST /restapis/*/deployments", throttled, 3);
    stack.install().await;
    let attempts = stack.proxy.actions().iter().filter(|action| action.ends_with("/deployments")).count();
    assert_eq!(attempts, 4, "three throttled, the fourth deploys");
    stack.run("status", &[]).await.ok();
}

#[tokio::test]
async fn two_installs_at_once_end_with_one_api_key_and_usage_plan() {
    let stack = Deployment::new().await;
    // Slow enough that both read before either creates.
    stack.proxy.set_latency(std::time::Duration::from_millis(50));
    let (first, second) = tokio::join!(stack.run("install", &[]), stack.run("install", &[]));
    assert_eq!(stack.proxy.count("POST /restapis"), 2, "both made an API");
    let (first, second) = (first.ok(), second.ok());
    let apigateway = stack.apigateway();
    let apis = apigateway.get_rest_apis().limit(500).send().await.unwrap();
    let apis: Vec<_> = apis.items().iter().filter(|api| api.name() == Some(&stack.name)).collect();
    assert_eq!(apis.len(), 1, "{apis:?}");
    let url = format!("https://{}.execute-api.{REGION}.amazonaws.com/prod", apis[0].id().unwrap());
    for run in [&first, &second] {
        assert!(run.stdout.contains(&format!("Invoke URL: {url}")), "{}", run.stdout);
    }
    let keys = apigateway.get_api_keys().name_query(&stack.name).send().await.unwrap();
    assert_eq!(keys.items().iter().filter(|key| key.name() == Some(&stack.name)).count(), 1);
    let plans = apigateway.get_usage_plans().send().await.unwrap();
    let plans: Vec<_> = plans.items().iter().filter(|plan| plan.name() == Some(&stack.name)).collect();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].api_stages()[0].api_id(), apis[0].id());
    let statements = stack.permission_statements().await;
    assert_eq!(statements.len(), 1, "{statements:?}");
    assert!(statements[0]["Condition"]["ArnLike"]["AWS:SourceArn"].as_str().unwrap().contains(apis[0].id().unwrap()));
    stack.run("status", &[]).await.ok();
}

#[tokio::test]
async fn a_duplicate_api_of_the_stack_is_deleted_and_the_original_kept() {
    let stack = Deployment::new().await;
    stack.install().await;
    let in_use = stack.api_id().await.unwrap();
    // As a CreateRestApi whose answer was lost leaves it: same name, same tags.
    let tags = [("managed-by", "counterctl"), ("counterctl:stack", stack.name.as_str())];
    let mut create = stack.apigateway().create_rest_api().name(&stack.name);
    for (key, value) in tags {
        create = create.tags(key, value);
    }
    let duplicate = create.send().await.unwrap().id.unwrap();
    let status = stack.run("status", &[]).await;
    assert_eq!(status.code, 1, "{}", status.stdout);
    stack.install().await;
    let apis = stack.apigateway().get_rest_apis().limit(500).send().await.unwrap();
    let ids: Vec<_> =
        apis.items().iter().filter(|api| api.name() == Some(&stack.name)).filter_map(|api| api.id()).collect();
    assert_eq!(ids, [in_use.as_str()], "the duplicate {duplicate} is deleted, the one in use kept");
}

#[tokio::test]
async fn a_role_created_by_a_lost_answer_is_adopted() {
    let stack = Deployment::new().await;
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    stack.iam().create_role().role_name(&stack.name).assume_role_policy_document(trust).send().await.unwrap();
    // The read misses it, as when the CreateRole answer was lost a moment ago.
    stack.proxy.inject("GetRole", Fault::new(404, "NoSuchEntity", "injected: not yet"), 1);
    let run = stack.install().await;
    assert!(stack.proxy.actions().contains(&"CreateRole".to_owned()), "{}", run.stdout);
    let role = stack.iam().get_role().role_name(&stack.name).send().await.unwrap().role.unwrap();
    assert!(role.tags().iter().any(|tag| tag.key() == "counterctl:stack" && tag.value() == stack.name));
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new());
}

#[tokio::test]
async fn a_function_created_by_a_lost_answer_is_brought_up_to_date() {
    let stack = Deployment::new().await;
    stack.run("install", &["--memory", "256"]).await.ok();
    let not_yet = Fault::new(404, "ResourceNotFoundException", "injected: not yet");
    stack.proxy.inject("GET /2015-03-31/functions/*", not_yet, 1);
    let (run, mutations) = stack.mutations_of(stack.run("install", &["--memory", "512"])).await;
    run.ok();
    assert!(mutations.contains(&"POST /2015-03-31/functions".to_owned()), "it tried to create it: {mutations:?}");
    let config = stack.lambda().get_function_configuration().function_name(&stack.name).send().await.unwrap();
    assert_eq!(config.memory_size(), Some(512), "the existing function got the wanted settings");
    stack.run("status", &[]).await.ok();
}

#[tokio::test]
async fn the_same_name_in_a_second_region_leaves_the_first_alone() {
    let stack = Deployment::new().await;
    stack.install().await;
    let iam = stack.iam();
    let first = iam.get_role_policy().role_name(&stack.name).policy_name(REGION_POLICY).send().await.unwrap();
    let other =
        ["--endpoint-url", &stack.proxy.url, "--region", "us-west-2", "--name", &stack.name, "--table", &stack.table];
    counterctl(&[&["install"][..], &other[..]].concat()).await.ok();

    let after = iam.get_role_policy().role_name(&stack.name).policy_name(REGION_POLICY).send().await.unwrap();
    assert_eq!(after.policy_document, first.policy_document, "us-east-1's policy is untouched");
    iam.get_role_policy().role_name(&stack.name).policy_name("counterctl-us-west-2").send().await.unwrap();

    let run = counterctl(&[&["uninstall", "--yes"][..], &other[..]].concat()).await.ok();
    assert!(run.stdout.contains("still used by the stack in us-east-1"), "{}", run.stdout);
    assert!(stack.role_exists().await, "the role us-east-1 uses stays");
    iam.get_role_policy().role_name(&stack.name).policy_name(REGION_POLICY).send().await.unwrap();
    let gone = iam.get_role_policy().role_name(&stack.name).policy_name("counterctl-us-west-2").send().await;
    assert!(gone.is_err(), "us-west-2's policy is deleted");
    stack.run("status", &[]).await.ok();
}

#[tokio::test]
async fn an_adopted_role_with_a_managed_policy_is_uninstalled_cleanly() {
    let stack = Deployment::new().await;
    let iam = stack.iam();
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    iam.create_role().role_name(&stack.name).assume_role_policy_document(trust).send().await.unwrap();
    let document = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"logs:*","Resource":"*"}]}"#;
    let policy = iam.create_policy().policy_name(format!("{}-logs", stack.name)).policy_document(document).send().await;
    let policy_arn = policy.unwrap().policy.unwrap().arn.unwrap();
    iam.attach_role_policy().role_name(&stack.name).policy_arn(&policy_arn).send().await.unwrap();

    let run = stack.install().await;
    assert!(run.stdout.lines().any(|line| line.contains("role") && line.contains("adopted")), "{}", run.stdout);
    stack.run("uninstall", &["--yes"]).await.ok();
    assert!(!stack.role_exists().await, "detached, then deleted");
}

#[tokio::test]
async fn an_older_installs_policy_for_this_region_is_replaced_by_the_region_policy() {
    let stack = Deployment::new().await;
    stack.install().await;
    // As counterctl before per-region policies left it: one policy named like the
    // original setup's, granting this region's table.
    let iam = stack.iam();
    let policy = iam.get_role_policy().role_name(&stack.name).policy_name(REGION_POLICY).send().await.unwrap();
    let document = percent_encoding::percent_decode_str(&policy.policy_document).decode_utf8().unwrap().into_owned();
    let put = iam.put_role_policy().role_name(&stack.name).policy_name("dynamodb-atomiccounters");
    put.policy_document(document).send().await.unwrap();
    iam.delete_role_policy().role_name(&stack.name).policy_name(REGION_POLICY).send().await.unwrap();

    let status = stack.run("status", &[]).await;
    assert_eq!(status.code, 1, "{}", status.stdout);
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, ["PutRolePolicy", "DeleteRolePolicy"], "written, then the old one deleted");
    let names = iam.list_role_policies().role_name(&stack.name).send().await.unwrap();
    assert_eq!(names.policy_names(), [REGION_POLICY]);
    stack.run("status", &[]).await.ok();
}

#[tokio::test]
async fn duplicate_keys_and_usage_plans_of_the_stack_are_reduced_to_the_ones_in_use() {
    let stack = Deployment::new().await;
    stack.install().await;
    let apigateway = stack.apigateway();
    // As a CreateApiKey and a CreateUsagePlan whose answers were lost leave them.
    let tags = [("managed-by", "counterctl"), ("counterctl:stack", stack.name.as_str())];
    let mut key = apigateway.create_api_key().name(&stack.name).enabled(true);
    let mut plan = apigateway.create_usage_plan().name(&stack.name);
    for (name, value) in tags {
        key = key.tags(name, value);
        plan = plan.tags(name, value);
    }
    let newer_key = key.send().await.unwrap().id.unwrap();
    let duplicate_plan = plan.send().await.unwrap().id.unwrap();
    // Callers moved to the newer key: it is the one in the usage plan now.
    let plans = apigateway.get_usage_plans().send().await.unwrap();
    let in_use = plans.items().iter().find(|plan| plan.api_stages().len() == 1 && plan.name() == Some(&stack.name));
    let in_use = in_use.unwrap().id().unwrap().to_owned();
    let older_key = apigateway.get_usage_plan_keys().usage_plan_id(&in_use).send().await.unwrap().items()[0].id.clone();
    let add = apigateway.create_usage_plan_key().usage_plan_id(&in_use).key_id(&newer_key).key_type("API_KEY");
    add.send().await.unwrap();
    apigateway.delete_usage_plan_key().usage_plan_id(&in_use).key_id(older_key.unwrap()).send().await.unwrap();
    let status = stack.run("status", &[]).await;
    assert_eq!(status.code, 1, "{}", status.stdout);

    stack.install().await;
    let keys = apigateway.get_api_keys().name_query(&stack.name).send().await.unwrap();
    let keys: Vec<_> =
        keys.items().iter().filter(|key| key.name() == Some(&stack.name)).filter_map(|k| k.id()).collect();
    assert_eq!(keys, [newer_key.as_str()], "the key in the usage plan is kept, though newer");
    let plans = apigateway.get_usage_plans().send().await.unwrap();
    let plans: Vec<_> = plans.items().iter().filter(|plan| plan.name() == Some(&stack.name)).collect();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].id(), Some(in_use.as_str()), "the usage plan serving the API is kept");
    assert_ne!(plans[0].id(), Some(duplicate_plan.as_str()));
    let members = apigateway.get_usage_plan_keys().usage_plan_id(plans[0].id().unwrap()).send().await.unwrap();
    assert_eq!(members.items().iter().filter_map(|key| key.id()).collect::<Vec<_>>(), keys);
    stack.run("status", &[]).await.ok();
}

#[tokio::test]
async fn uninstall_leaves_what_does_not_carry_the_stacks_tag() {
    let stack = Deployment::new().await;
    stack.install().await;
    // Someone else's API, key and usage plan of the same name, made by hand.
    let apigateway = stack.apigateway();
    let other = apigateway.create_rest_api().name(&stack.name).send().await.unwrap().id.unwrap();
    let other_key = apigateway.create_api_key().name(&stack.name).send().await.unwrap().id.unwrap();
    let other_plan = apigateway.create_usage_plan().name(&stack.name).send().await.unwrap().id.unwrap();
    let run = stack.run("uninstall", &["--yes"]).await.ok();
    assert!(run.stdout.contains("not made by counterctl"), "{}", run.stdout);
    let apis = stack.apigateway().get_rest_apis().limit(500).send().await.unwrap();
    let left: Vec<_> =
        apis.items().iter().filter(|api| api.name() == Some(&stack.name)).filter_map(|a| a.id()).collect();
    assert_eq!(left, [other.as_str()]);
    apigateway.get_api_key().api_key(&other_key).send().await.expect("the hand-made key is kept");
    apigateway.get_usage_plan().usage_plan_id(&other_plan).send().await.expect("the hand-made usage plan is kept");
    assert!(!stack.function_exists().await && !stack.role_exists().await);
}

#[tokio::test]
async fn after_uninstall_a_new_table_is_refused_even_where_the_default_exists() {
    // A region of its own: this test makes an `AtomicCounters` there.
    let stack = Deployment::new().await;
    let region = "us-west-1";
    let regional = |command: &'static str, extra: &[&'static str]| {
        let mut args = vec![command, "--endpoint-url", &stack.proxy.url, "--region", region, "--name", &stack.name];
        args.extend(extra);
        args
    };
    let west = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .endpoint_url(crate::support::moto_url())
        .load()
        .await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&west);
    // The stack's counters are in an adopted table, made by hand (so untagged).
    crate::support::create_counter_table(&dynamodb, &stack.table).await;
    if dynamodb.describe_table().table_name("AtomicCounters").send().await.is_err() {
        crate::support::create_counter_table(&dynamodb, "AtomicCounters").await;
    }
    let table_args = ["--table", stack.table.as_str()];
    counterctl(&[&regional("install", &[])[..], &table_args[..]].concat()).await.ok();
    counterctl(&regional("uninstall", &["--yes"])).await.ok();

    let (run, mutations) = stack.mutations_of(counterctl(&regional("install", &[]))).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("its counters are in table(s) {}", stack.table)), "{}", run.stderr);
    assert_eq!(mutations, Vec::<String>::new());
    counterctl(&[&regional("install", &[])[..], &table_args[..]].concat()).await.ok();
    counterctl(&regional("uninstall", &["--yes"])).await.ok();
}

#[tokio::test]
async fn max_concurrency_is_set_kept_and_removed() {
    let stack = Deployment::new().await;
    stack.run("install", &["--max-concurrency", "3"]).await.ok();
    let reserved = || async {
        let concurrency = stack.lambda().get_function_concurrency().function_name(&stack.name).send().await.unwrap();
        concurrency.reserved_concurrent_executions()
    };
    assert_eq!(reserved().await, Some(3));
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new(), "a re-run keeps the cap");
    stack.run("install", &["--max-concurrency", "off"]).await.ok();
    assert_eq!(reserved().await, None);
    stack.run("status", &[]).await.ok();
    let zero = stack.run("install", &["--max-concurrency", "0"]).await;
    assert_eq!(zero.code, 2, "0 would refuse every call: {}", zero.stderr);
}

/// Deletes the stack's table by hand, as an operator would: deletion protection off, then
/// DeleteTable.
async fn delete_table_by_hand(stack: &Deployment) {
    let dynamodb = stack.dynamodb();
    dynamodb.update_table().table_name(&stack.table).deletion_protection_enabled(false).send().await.unwrap();
    dynamodb.delete_table().table_name(&stack.table).send().await.unwrap();
}

#[tokio::test]
async fn a_stacks_table_deleted_by_hand_is_refused_not_made_again_empty() {
    let stack = Deployment::new().await;
    stack.install().await;
    stack.put_counter(&stack.table, "tenants", 100).await;
    delete_table_by_hand(&stack).await;

    let (run, mutations) = stack.mutations_of(stack.run("install", &[])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let gone = format!("table {} of stack {} is gone, and its counters with it", stack.table, stack.name);
    assert!(run.stderr.contains(&gone), "{}", run.stderr);
    assert!(run.stderr.contains("restore-table-from-backup") && run.stderr.contains("--recreate-table"));
    assert_eq!(mutations, Vec::<String>::new(), "refused before any write");
    assert!(!stack.table_exists().await);

    let status = stack.run("status", &[]).await;
    assert_eq!(status.code, 1, "{}", status.stdout);
    assert!(status.stdout.contains(&gone), "{}", status.stdout);
    assert!(!status.stdout.contains("Run `counterctl install"), "no plain install is suggested: {}", status.stdout);
    let json = stack.run("status", &["--output", "json"]).await.json();
    assert_eq!((&json["up_to_date"], &json["healthy"]), (&false.into(), &false.into()));
    assert!(json["table_lost"].as_str().unwrap().contains(&gone), "{json}");

    // With the function deleted too, the role's grant still records the table.
    stack.lambda().delete_function().function_name(&stack.name).send().await.unwrap();
    let (run, mutations) = stack.mutations_of(run_without_table(&stack, "install", &[])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(&gone), "{}", run.stderr);
    assert_eq!(mutations, Vec::<String>::new());
}

#[tokio::test]
async fn recreate_table_makes_a_new_empty_table_only_when_confirmed() {
    let stack = Deployment::new().await;
    stack.install().await;
    delete_table_by_hand(&stack).await;

    let (run, mutations) = stack.mutations_of(stack.run("install", &["--recreate-table"])).await;
    assert_eq!(run.code, 2, "no terminal to confirm on: {}", run.stderr);
    assert!(run.stderr.contains("every counter starts again at 1") && run.stderr.contains("--yes"), "{}", run.stderr);
    assert_eq!(mutations, Vec::<String>::new());

    let run = stack.run("install", &["--recreate-table", "--yes"]).await.ok();
    assert!(stack.table_exists().await, "{}", run.stdout);
    stack.run("status", &[]).await.ok();
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new());
}

#[tokio::test]
async fn a_table_restored_under_its_name_is_picked_up_and_counting_goes_on_above_it() {
    let stack = Deployment::new().await;
    stack.install().await;
    stack.put_counter(&stack.table, "tenants", 100).await;
    delete_table_by_hand(&stack).await;
    // As restore-table-from-backup leaves it: the name, the key schema and the items, no tags.
    crate::support::create_counter_table(&stack.dynamodb(), &stack.table).await;
    stack.put_counter(&stack.table, "tenants", 100).await;

    let (run, mutations) = stack.mutations_of(stack.install()).await;
    assert!(!mutations.contains(&"CreateTable".to_owned()), "{mutations:?}");
    assert!(run.stdout.lines().any(|line| line.contains("table") && line.contains("adopted")), "{}", run.stdout);
    stack.run("install", &["--protect-table"]).await.ok();
    stack.run("status", &[]).await.ok();

    // The deployed function's table, served by the shipped bootstrap.
    let table = function_table(&stack).await;
    assert_eq!(table, stack.table);
    let function = std::sync::Arc::new(Function::start(&table, &crate::support::moto_url(), 1).await);
    let api = RestApi::start_with_auth(function, MethodAuth::none()).await;
    let http = reqwest::Client::new();
    let mut values = Vec::new();
    for _ in 0..3 {
        let (status, body) =
            crate::support::send(http.post(format!("{}/counter/increment?counter=tenants", api.url))).await;
        assert_eq!(status, 200, "{body}");
        values.push(body["new_value"].as_i64().unwrap());
    }
    assert_eq!(values, [101, 102, 103], "no value at or below the restored 100 again");
}

#[tokio::test]
async fn after_uninstall_delete_data_a_new_install_makes_its_table_without_refusal() {
    let stack = Deployment::new().await;
    stack.install().await;
    stack.run("uninstall", &["--delete-data", "--yes"]).await.ok();
    assert!(!stack.table_exists().await);
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert!(mutations.contains(&"CreateTable".to_owned()), "{mutations:?}");
}

#[tokio::test]
async fn the_api_key_rotates_without_a_moment_with_no_key_by_the_documented_steps() {
    let stack = Deployment::new().await;
    stack.install().await;
    let apigateway = stack.apigateway();
    let old = stack.run("status", &["--show-api-key", "--output", "json"]).await.ok().json()["api_key"].clone();
    let plans = apigateway.get_usage_plans().send().await.unwrap();
    let plan_id = plans.items().iter().find(|plan| plan.name() == Some(&stack.name)).unwrap().id().unwrap().to_owned();

    // 1. A second key, in the stack's usage plan: both work.
    let next_name = format!("{}-next", stack.name);
    let tags = [("counterctl:stack", stack.name.as_str()), ("managed-by", "counterctl")];
    let mut create = apigateway.create_api_key().name(&next_name).enabled(true);
    for (key, value) in tags {
        create = create.tags(key, value);
    }
    let next = create.send().await.unwrap();
    let next_id = next.id().unwrap().to_owned();
    apigateway
        .create_usage_plan_key()
        .usage_plan_id(&plan_id)
        .key_id(&next_id)
        .key_type("API_KEY")
        .send()
        .await
        .unwrap();
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new(), "install leaves a key of another name in its usage plan alone");

    // 2. Callers move to it; 3. the old key goes and the new one takes the stack's name.
    let keys = apigateway.get_api_keys().name_query(&stack.name).send().await.unwrap();
    let old_id = keys.items().iter().find(|key| key.name() == Some(&stack.name)).unwrap().id().unwrap().to_owned();
    apigateway.delete_api_key().api_key(&old_id).send().await.unwrap();
    let rename = aws_sdk_apigateway::types::PatchOperation::builder()
        .op(aws_sdk_apigateway::types::Op::Replace)
        .path("/name")
        .value(&stack.name)
        .build();
    apigateway.update_api_key().api_key(&next_id).patch_operations(rename).send().await.unwrap();

    // 4. install keeps it as the stack's key: no new key, nothing to change.
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new(), "the renamed key is the stack's");
    let shown = stack.run("status", &["--show-api-key", "--output", "json"]).await.ok().json();
    assert_eq!(shown["api_key"], next.value().unwrap());
    assert_ne!(shown["api_key"], old);
    assert_eq!(shown["up_to_date"], true, "{shown}");
}
