//! Install when AWS misbehaves: eventual consistency, and a failure at any step.

use aws_sdk_lambda::types::State;

use crate::support::aws_proxy::Fault;
use crate::support::cli::{Deployment, REGION};

const CREATE_FUNCTION: &str = "POST /2015-03-31/functions";

#[tokio::test]
async fn a_role_lambda_cannot_assume_yet_is_waited_for() {
    let stack = Deployment::new().await;
    let not_yet = Fault::new(
        400,
        "InvalidParameterValueException",
        "The role defined for the function cannot be assumed by Lambda.",
    );
    stack.proxy.inject(CREATE_FUNCTION, not_yet, 2);
    let run = stack.install().await;
    assert_eq!(stack.proxy.count(CREATE_FUNCTION), 3, "two refused, the third accepted");
    assert!(stack.function_exists().await, "{}", run.stdout);
}

#[tokio::test]
async fn other_create_function_errors_are_not_retried() {
    let stack = Deployment::new().await;
    let invalid =
        Fault::new(400, "InvalidParameterValueException", "Unzipped size must be smaller than 262144000 bytes");
    stack.proxy.inject(CREATE_FUNCTION, invalid, 1);
    let run = stack.run("install", &[]).await;
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("lambda:CreateFunction failed: InvalidParameterValueException: Unzipped size must be smaller"),
        "{}",
        run.stderr
    );
    assert_eq!(stack.proxy.count(CREATE_FUNCTION), 1);
}

/// Every kind of mutating call of a fresh install, its first call failed in turn: a re-run
/// converges, and uninstall works from the partial state and keeps the table. Calls are
/// chosen by action, not by position, as concurrent calls come in varying order.
#[tokio::test]
async fn an_install_interrupted_at_any_step_converges_on_a_rerun_and_uninstalls() {
    let reference = Deployment::new().await;
    let (_, mutations) = reference.mutations_of(reference.install()).await;
    assert!(mutations.len() >= 15, "a fresh install makes each resource: {mutations:?}");
    let mut steps: Vec<String> = Vec::new();
    for action in &mutations {
        let step = action_pattern(action, &[&reference.name, &reference.table]);
        if !steps.contains(&step) {
            steps.push(step);
        }
    }

    // A few at a time: moto is shared with the other tests.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
    let mut cases = tokio::task::JoinSet::new();
    for step in steps {
        for uninstall_right_away in [false, true] {
            let slots = std::sync::Arc::clone(&slots);
            let step = step.clone();
            cases.spawn(async move {
                let _slot = slots.acquire().await.unwrap();
                if uninstall_right_away {
                    interrupt_then_uninstall(&step).await
                } else {
                    interrupt_then_rerun(&step).await
                }
            });
        }
    }
    while let Some(case) = cases.join_next().await {
        case.unwrap();
    }
}

/// `action` as a pattern any stack's same call matches: in REST paths, the segment after a
/// collection (`restapis/abc123`, `functions/Counter-1-2`) names a member, and the
/// stack's name, table name and ARNs differ per stack: each becomes `*`. A member is
/// never taken for a collection, though a generated id may end in `s` too.
fn action_pattern(action: &str, stack_names: &[&str]) -> String {
    let mut after_collection = false;
    let segments = action.split('/').map(|segment| {
        let per_stack = stack_names.iter().any(|name| segment.contains(name));
        let arn = segment.contains(':') || segment.contains('%');
        let member = after_collection || per_stack || arn;
        after_collection = !member && segment.ends_with('s') && !segment.contains(' ');
        if member { "*" } else { segment }
    });
    segments.collect::<Vec<_>>().join("/")
}

#[test]
fn recorded_actions_become_patterns_of_their_kind() {
    let names = ["Counter-1-2", "Counters-1-3"];
    let pattern = |action| action_pattern(action, &names);
    assert_eq!(pattern("CreateTable"), "CreateTable");
    assert_eq!(pattern("POST /restapis"), "POST /restapis");
    // A generated id that ends in `s` is not a collection.
    assert_eq!(pattern("POST /restapis/g9yyit3d7s/resources/ktbab8ov6o"), "POST /restapis/*/resources/*");
    assert_eq!(pattern("POST /restapis/g9yyit3d7s/deployments"), "POST /restapis/*/deployments");
    let method = "PUT /restapis/abc/resources/crgf99purz/methods/ANY/integration";
    assert_eq!(pattern(method), "PUT /restapis/*/resources/*/methods/*/integration");
    assert_eq!(pattern("POST /2015-03-31/functions/Counter-1-2/policy"), "POST /2015-03-31/functions/*/policy");
    assert_eq!(pattern("POST /usageplans/m6zgdktkfu/keys"), "POST /usageplans/*/keys");
    let tag = "POST /2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3ACounter-1-2";
    assert_eq!(pattern(tag), "POST /2017-03-31/tags/*");
}

fn access_denied() -> Fault {
    Fault::new(403, "AccessDeniedException", "injected: not allowed")
}

async fn interrupt_then_rerun(step: &str) {
    let stack = Deployment::new().await;
    stack.proxy.inject(step, access_denied(), 1);
    let failed = stack.run("install", &[]).await;
    assert_ne!(failed.code, 0, "{step}: {}", failed.stdout);
    assert!(failed.stderr.contains("AccessDenied"), "{step}: {}", failed.stderr);
    stack.proxy.settle().await;

    stack.install().await;
    stack.run("status", &[]).await.ok();
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new(), "{step}: converged");
    assert_eq!(stack.permission_statements().await.len(), 1, "{step}");
}

async fn interrupt_then_uninstall(step: &str) {
    let stack = Deployment::new().await;
    stack.proxy.inject(step, access_denied(), 1);
    assert_ne!(stack.run("install", &[]).await.code, 0, "{step}");
    stack.proxy.settle().await;
    let table_made = stack.table_exists().await;

    stack.run("uninstall", &["--yes"]).await.ok();
    assert!(!stack.function_exists().await && !stack.role_exists().await, "{step}");
    assert_eq!(stack.api_id().await, None, "{step}");
    assert_eq!(stack.table_exists().await, table_made, "{step}: the table is kept");
    stack.run("uninstall", &["--yes"]).await.ok();
}

/// The proxy's own check: a patched answer says what the patch says, once, and keeps the
/// rest of moto's answer.
#[tokio::test]
async fn injected_answers_patch_what_moto_says() {
    let stack = Deployment::new().await;
    stack.install().await;
    let through_proxy = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_lambda::config::Credentials::for_tests())
        .endpoint_url(&stack.proxy.url)
        .load()
        .await;
    let lambda = aws_sdk_lambda::Client::new(&through_proxy);
    let configuration = "GET /2015-03-31/functions/*/configuration";
    let reads_before = stack.proxy.count(configuration);

    stack.proxy.patch_response(configuration, serde_json::json!({ "State": "Pending" }), 1);
    let read = || lambda.get_function_configuration().function_name(&stack.name).send();
    let patched = read().await.unwrap();
    assert_eq!(patched.state(), Some(&State::Pending));
    assert_eq!(patched.function_name(), Some(stack.name.as_str()), "the rest is moto's");
    assert_eq!(read().await.unwrap().state(), Some(&State::Active), "patched once");

    assert_eq!(stack.proxy.count(configuration), reads_before + 2);
    let last_read = stack.proxy.last_position(configuration).unwrap();
    assert_eq!(last_read, stack.proxy.actions().len() - 1);
    assert!(stack.proxy.position(configuration).unwrap() < last_read);
}

#[tokio::test]
async fn a_table_created_since_the_first_look_is_used_not_refused() {
    let stack = Deployment::new().await;
    crate::support::create_counter_table(&stack.dynamodb(), &stack.table).await;
    let not_yet = Fault::new(400, "ResourceNotFoundException", "Requested resource not found");
    stack.proxy.inject("DescribeTable", not_yet, 1);
    let run = stack.install().await;
    assert!(stack.proxy.actions().contains(&"CreateTable".to_owned()), "install tried to create it");
    assert!(run.stdout.lines().any(|line| line.contains("table") && line.contains("adopted")), "{}", run.stdout);
}

/// The ids of the stack's APIs, keys and usage plans (named after it and tagged with it),
/// as moto holds them.
async fn tagged_api_resources(stack: &Deployment) -> [Vec<String>; 3] {
    let apigateway = stack.apigateway();
    let ours = |name: Option<&str>, tags: Option<&std::collections::HashMap<String, String>>| {
        name == Some(stack.name.as_str())
            && tags.and_then(|tags| tags.get("counterctl:stack")).is_some_and(|value| *value == stack.name)
    };
    let apis = apigateway.get_rest_apis().limit(500).send().await.unwrap();
    let apis = apis.items().iter().filter(|api| ours(api.name(), api.tags())).filter_map(|api| api.id.clone());
    let keys = apigateway.get_api_keys().name_query(&stack.name).limit(500).send().await.unwrap();
    let keys = keys.items().iter().filter(|key| ours(key.name(), key.tags())).filter_map(|key| key.id.clone());
    let plans = apigateway.get_usage_plans().limit(500).send().await.unwrap();
    let plans = plans.items().iter().filter(|plan| ours(plan.name(), plan.tags())).filter_map(|plan| plan.id.clone());
    [apis.collect(), keys.collect(), plans.collect()]
}

/// Install with `create`'s first answer lost after moto applied it: the SDK makes it
/// again, and the run finds two of its own. It converges in this one run, and status
/// right after finds nothing to fix. Returns the stack and the install's actions.
async fn install_with_a_lost_answer_on(create: &str) -> (Deployment, Vec<String>) {
    let stack = Deployment::new().await;
    stack.proxy.lose_answer(create, 1);
    let run = stack.install().await;
    let installed = stack.proxy.actions();
    assert_eq!(stack.proxy.count(create), 2, "applied, its answer lost, and made again: {}", run.stdout);
    let [apis, keys, plans] = tagged_api_resources(&stack).await;
    assert_eq!((apis.len(), keys.len(), plans.len()), (1, 1, 1), "{apis:?} {keys:?} {plans:?}");
    assert!(run.stdout.contains(&format!("Invoke URL: https://{}.execute-api", apis[0])), "{}", run.stdout);
    let status = stack.run("status", &[]).await;
    assert_eq!(status.code, 0, "{}", status.stdout);
    (stack, installed)
}

#[tokio::test]
async fn a_lost_create_rest_api_answer_leaves_one_api_at_once_without_waiting_for_another_install() {
    let (stack, installed) = install_with_a_lost_answer_on("POST /restapis").await;
    let deletions = installed.iter().filter(|action| action.starts_with("DELETE /restapis/")).count();
    assert_eq!(deletions, 1, "its second API is deleted at once: {installed:?}");
    // Waiting for a concurrent install's stage would read the stages again and again.
    let stage_reads = installed.iter().filter(|action| action.ends_with("/stages")).count();
    assert!(stage_reads <= 1, "{installed:?}");
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new());
}

#[tokio::test]
async fn a_lost_create_api_key_answer_leaves_one_key_and_a_clean_status() {
    let (_, installed) = install_with_a_lost_answer_on("POST /apikeys").await;
    assert_eq!(installed.iter().filter(|action| action.starts_with("DELETE /apikeys/")).count(), 1, "{installed:?}");
}

#[tokio::test]
async fn a_lost_create_usage_plan_answer_leaves_one_usage_plan_and_a_clean_status() {
    let (_, installed) = install_with_a_lost_answer_on("POST /usageplans").await;
    let deletions = installed.iter().filter(|action| action.starts_with("DELETE /usageplans/")).count();
    assert_eq!(deletions, 1, "{installed:?}");
}
