//! `--auth iam`: the method takes SigV4 signatures instead of an API key, the stage
//! throttles in place of a usage plan, and `status --caller-policy` prints what a caller
//! needs.

use serde_json::json;

use crate::support::LambdaStack;
use crate::support::cli::{ACCOUNT, Deployment, REGION, counterctl};
use crate::support::rest_api::{IamCaller, MethodAuth};

fn stage_throttle(stage: &aws_sdk_apigateway::operation::get_stage::GetStageOutput) -> Option<(f64, i32)> {
    let settings = stage.method_settings()?.get("*/*")?;
    Some((settings.throttling_rate_limit(), settings.throttling_burst_limit()))
}

#[tokio::test]
async fn iam_auth_signs_the_method_and_throttles_the_stage_without_keys() {
    let stack = Deployment::new().await;
    let run = stack.run("install", &["--auth", "iam", "--rate-limit", "20", "--burst-limit", "40"]).await.ok();
    let apigateway = stack.apigateway();
    let api_id = stack.api_id().await.unwrap();
    let resources = apigateway.get_resources().rest_api_id(&api_id).embed("methods").send().await.unwrap();
    let proxy = resources.items().iter().find(|resource| resource.path() == Some("/{proxy+}")).unwrap();
    let method = &proxy.resource_methods().unwrap()["ANY"];
    assert_eq!((method.authorization_type(), method.api_key_required()), (Some("AWS_IAM"), Some(false)));
    let stage = apigateway.get_stage().rest_api_id(&api_id).stage_name("prod").send().await.unwrap();
    assert_eq!(stage_throttle(&stage), Some((20.0, 40)));
    let keys = apigateway.get_api_keys().name_query(&stack.name).send().await.unwrap();
    assert!(keys.items().iter().all(|key| key.name() != Some(&stack.name)), "no API key");
    let plans = apigateway.get_usage_plans().send().await.unwrap();
    assert!(plans.items().iter().all(|plan| plan.name() != Some(&stack.name)), "no usage plan");
    assert!(run.stdout.contains(&format!("curl -X POST --aws-sigv4 'aws:amz:{REGION}:execute-api'")), "{}", run.stdout);

    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new(), "a re-run keeps iam and its throttle");
    stack.run("status", &[]).await.ok();
    let (_, mutations) = stack.mutations_of(stack.run("install", &["--rate-limit", "30"])).await;
    assert_eq!(mutations, [format!("PATCH /restapis/{api_id}/stages/prod")]);
    let stage = apigateway.get_stage().rest_api_id(&api_id).stage_name("prod").send().await.unwrap();
    assert_eq!(stage_throttle(&stage), Some((30.0, 40)));
}

#[tokio::test]
async fn moving_a_keyed_stack_to_iam_breaks_callers_so_it_asks_and_keeps_the_throttle() {
    let stack = Deployment::new().await;
    stack.run("install", &["--rate-limit", "12", "--burst-limit", "24"]).await.ok();
    let refused = stack.run("install", &["--auth", "iam"]).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("AWS_IAM (SigV4)"), "{}", refused.stderr);
    stack.run("install", &["--auth", "iam", "--yes"]).await.ok();
    let apigateway = stack.apigateway();
    let api_id = stack.api_id().await.unwrap();
    let stage = apigateway.get_stage().rest_api_id(&api_id).stage_name("prod").send().await.unwrap();
    assert_eq!(stage_throttle(&stage), Some((12.0, 24)), "the usage plan's throttle moved to the stage");
    let plans = apigateway.get_usage_plans().send().await.unwrap();
    assert!(plans.items().iter().all(|plan| plan.name() != Some(&stack.name)));
    stack.run("status", &[]).await.ok();
}

#[tokio::test]
async fn caller_policy_allows_invoking_exactly_the_two_routes_of_the_stage() {
    let stack = Deployment::new().await;
    let none_yet = stack.run("status", &["--caller-policy"]).await;
    assert_eq!(none_yet.code, 2, "{}", none_yet.stderr);
    stack.run("install", &["--auth", "iam"]).await.ok();
    let api_id = stack.api_id().await.unwrap();
    let policy = stack.run("status", &["--caller-policy"]).await.ok().json();
    let arn = format!("arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/prod");
    assert_eq!(
        policy,
        json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "CallTheCounters", "Effect": "Allow", "Action": "execute-api:Invoke",
            "Resource": [format!("{arn}/POST/counter/increment"), format!("{arn}/GET/counter/value")]}]})
    );
}

/// `counterctl COMMAND` against a front on loopback, with `AWS_SECRET_ACCESS_KEY` as given.
async fn call_front(args: &[&str], secret: &str) -> crate::support::cli::Run {
    let mut env = crate::support::cli::clean_environment();
    for (name, value) in &mut env {
        match *name {
            "AWS_ACCESS_KEY_ID" => *value = IamCaller::for_tests().access_key_id,
            "AWS_SECRET_ACCESS_KEY" => *value = secret.to_owned(),
            _ => {}
        }
    }
    crate::support::cli::counterctl_with_env(args, &env).await
}

async fn last_value(stack: &LambdaStack, counter: &str) -> Option<String> {
    stack.item(counter).await.map(|item| item["lastValue"].as_n().unwrap().clone())
}

#[tokio::test]
async fn increment_signs_its_calls_through_an_iam_front() {
    let stack = LambdaStack::start_with_auth(1, MethodAuth::aws_iam(IamCaller::for_tests())).await;
    let url = stack.api.url.as_str();
    let secret = IamCaller::for_tests().secret_access_key;
    let signed = ["increment", "tenants", "--url", url, "--auth", "iam", "--region", REGION];
    assert_eq!(call_front(&signed, &secret).await.ok().stdout, "1\n");
    assert_eq!(call_front(&signed, &secret).await.ok().stdout, "2\n");
    // Spaces and `+` in a counter name mean the same to the signer and to the front.
    let odd = ["increment", "a b+c", "--url", url, "--auth", "iam", "--region", REGION];
    assert_eq!(call_front(&odd, &secret).await.ok().stdout, "1\n");
    assert_eq!(last_value(&stack, "a b+c").await.as_deref(), Some("1"));
    let get = ["get", "tenants", "--url", url, "--auth", "iam", "--region", REGION];
    assert_eq!(call_front(&get, &secret).await.ok().stdout, "2\n");

    let unsigned = call_front(&["increment", "tenants", "--url", url], &secret).await;
    assert_eq!(unsigned.code, 2, "{}", unsigned.stderr);
    assert!(unsigned.stderr.contains("Missing Authentication Token"), "{}", unsigned.stderr);
    let wrong = call_front(&signed, "not-the-secret").await;
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("execute-api:Invoke"), "{}", wrong.stderr);
    assert!(wrong.stderr.contains(&IamCaller::for_tests().access_key_id), "{}", wrong.stderr);
    assert_eq!(last_value(&stack, "tenants").await.as_deref(), Some("2"), "refused calls move nothing");
}

#[tokio::test]
async fn increment_sends_the_key_a_key_front_requires() {
    let stack = LambdaStack::start_with_auth(1, MethodAuth::api_key("the-key-of-the-test")).await;
    let url = stack.api.url.as_str();
    let refused = counterctl(&["increment", "orders", "--url", url]).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("hint: this API needs its key"), "{}", refused.stderr);
    let keyed = ["increment", "orders", "--url", url, "--api-key", "the-key-of-the-test"];
    assert_eq!(counterctl(&keyed).await.ok().stdout, "1\n");
    let explicit = ["get", "orders", "--url", url, "--auth", "api-key"];
    let missing = counterctl(&explicit).await;
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("--auth api-key needs the key"), "{}", missing.stderr);
    assert_eq!(last_value(&stack, "orders").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn after_leaving_iam_the_stage_throttle_follows_the_usage_plan() {
    let stack = Deployment::new().await;
    stack.run("install", &["--rate-limit", "20", "--burst-limit", "40"]).await.ok();
    // The stage throttle an earlier `--auth iam` left. (Set by hand: moto, unlike API
    // Gateway, drops a stage's method settings when a deployment replaces the stage.)
    let apigateway = stack.apigateway();
    let api_id = stack.api_id().await.unwrap();
    let patch = |path: &str, value: &str| {
        aws_sdk_apigateway::types::PatchOperation::builder()
            .op(aws_sdk_apigateway::types::Op::Replace)
            .path(path)
            .value(value)
            .build()
    };
    let left = apigateway.update_stage().rest_api_id(&api_id).stage_name("prod");
    let left = left.patch_operations(patch("/*/*/throttling/rateLimit", "20"));
    left.patch_operations(patch("/*/*/throttling/burstLimit", "40")).send().await.unwrap();
    stack.run("status", &[]).await.ok();
    stack.run("install", &["--rate-limit", "200"]).await.ok();
    let stage = apigateway.get_stage().rest_api_id(&api_id).stage_name("prod").send().await.unwrap();
    assert_eq!(stage_throttle(&stage), Some((200.0, 40)), "the stage does not cap callers below the plan");
    let plans = apigateway.get_usage_plans().send().await.unwrap();
    let plan = plans.items().iter().find(|plan| plan.name() == Some(&stack.name)).unwrap();
    assert_eq!((plan.throttle().unwrap().rate_limit(), plan.throttle().unwrap().burst_limit()), (200.0, 40));
    stack.run("status", &[]).await.ok();
}
