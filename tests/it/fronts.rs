//! `--front function-url`: the function's own URL in place of the REST API, and moving a
//! live stack between the two fronts.

use counterctl::aws::Clients;
use counterctl::call::discover;
use counterctl::cli::StackOptions;
use counterctl_client::{Auth, SigningService};

use crate::support::cli::{Deployment, REGION};

async fn url_config(stack: &Deployment) -> Option<(String, String)> {
    let config = stack.lambda().get_function_url_config().function_name(&stack.name).qualifier("live");
    let config = config.send().await.ok()?;
    Some((config.function_url, config.auth_type.as_str().to_owned()))
}

/// The statement ids of the resource policies of the function and of its alias.
async fn statement_ids(stack: &Deployment) -> Vec<String> {
    let statements = [stack.function_statements().await, stack.permission_statements().await].concat();
    let mut sids: Vec<String> = statements.iter().filter_map(|s| s["Sid"].as_str().map(str::to_owned)).collect();
    sids.sort();
    sids
}

async fn rest_leftovers(stack: &Deployment) -> (Option<String>, usize, usize) {
    let apigateway = stack.apigateway();
    let keys = apigateway.get_api_keys().name_query(&stack.name).send().await.unwrap();
    let plans = apigateway.get_usage_plans().send().await.unwrap();
    (
        stack.api_id().await,
        keys.items().iter().filter(|key| key.name() == Some(&stack.name)).count(),
        plans.items().iter().filter(|plan| plan.name() == Some(&stack.name)).count(),
    )
}

#[tokio::test]
async fn a_function_url_front_signs_with_iam_and_makes_no_rest_api() {
    let stack = Deployment::new().await;
    let run = stack.run("install", &["--front", "function-url"]).await.ok();
    let (url, auth_type) = url_config(&stack).await.expect("the function has a URL");
    assert_eq!(auth_type, "AWS_IAM", "iam is the default there");
    assert_eq!(rest_leftovers(&stack).await, (None, 0, 0), "no API, key or usage plan");
    assert_eq!(statement_ids(&stack).await, Vec::<String>::new(), "no public access");
    assert!(run.stdout.contains(&format!("Invoke URL: {}", url.trim_end_matches('/'))), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("--aws-sigv4 'aws:amz:{REGION}:lambda'")), "{}", run.stdout);

    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new(), "a re-run keeps the front");
    stack.run("status", &[]).await.ok();
    let policy = stack.run("status", &["--caller-policy"]).await.ok().json();
    let actions: Vec<&str> =
        policy["Statement"].as_array().unwrap().iter().map(|s| s["Action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["lambda:InvokeFunctionUrl", "lambda:InvokeFunction"]);
    // The URL is the alias's.
    let alias_arn = format!("arn:aws:lambda:{REGION}:123456789012:function:{}:live", stack.name);
    assert!(policy["Statement"].as_array().unwrap().iter().all(|s| s["Resource"] == alias_arn.as_str()));

    let options = StackOptions { name: stack.name.clone(), table: Some(stack.table.clone()), stage: None };
    let endpoint = discover(&Clients::new(stack.aws.clone()), &options).await.unwrap();
    assert_eq!(endpoint.url(), url.trim_end_matches('/'));
    assert!(
        matches!(endpoint.auth(), Auth::Iam(signer) if signer.service() == SigningService::Lambda),
        "{:?}",
        endpoint.auth()
    );
}

#[tokio::test]
async fn api_key_auth_with_a_function_url_is_refused_before_any_write() {
    let stack = Deployment::new().await;
    let (run, mutations) =
        stack.mutations_of(stack.run("install", &["--front", "function-url", "--auth", "api-key"])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--auth api-key does not go with --front function-url"), "{}", run.stderr);
    assert_eq!(mutations, Vec::<String>::new());
}

#[tokio::test]
async fn a_public_function_url_gets_both_public_statements_and_loses_them_with_iam() {
    let stack = Deployment::new().await;
    let run = stack.run("install", &["--front", "function-url", "--auth", "none"]).await.ok();
    assert!(run.stderr.contains("warning: --auth none"), "{}", run.stderr);
    assert_eq!(url_config(&stack).await.unwrap().1, "NONE");
    let public = ["counterctl-function-url-public", "counterctl-function-url-public-invoke"];
    assert_eq!(statement_ids(&stack).await, public);
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new());

    stack.run("install", &["--auth", "iam", "--yes"]).await.ok();
    assert_eq!(url_config(&stack).await.unwrap().1, "AWS_IAM");
    assert_eq!(statement_ids(&stack).await, Vec::<String>::new());
    stack.run("status", &[]).await.ok();
}

#[tokio::test]
async fn moving_rest_to_function_url_and_back_leaves_no_orphan() {
    let stack = Deployment::new().await;
    stack.install().await; // REST, api-key
    let refused = stack.run("install", &["--front", "function-url"]).await;
    assert_eq!(refused.code, 2, "callers get a new URL, so it asks: {}", refused.stderr);

    stack.run("install", &["--front", "function-url", "--yes"]).await.ok();
    assert!(url_config(&stack).await.is_some());
    assert_eq!(rest_leftovers(&stack).await, (None, 0, 0), "the REST front is gone");
    assert_eq!(statement_ids(&stack).await, Vec::<String>::new(), "and its permission");
    stack.run("status", &[]).await.ok();

    stack.run("install", &["--front", "rest", "--yes"]).await.ok();
    assert_eq!(url_config(&stack).await, None, "the function URL is gone");
    let (api, keys, plans) = rest_leftovers(&stack).await;
    assert!(api.is_some());
    assert_eq!((keys, plans), (0, 0), "iam went along, so no key");
    assert_eq!(statement_ids(&stack).await, ["counterctl-apigateway-invoke"]);
    stack.run("status", &[]).await.ok();
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new());
}

#[tokio::test]
async fn moving_a_public_function_url_to_rest_leaves_no_public_access() {
    let stack = Deployment::new().await;
    stack.run("install", &["--front", "function-url", "--auth", "none"]).await.ok();
    let public = ["counterctl-function-url-public", "counterctl-function-url-public-invoke"];
    assert_eq!(statement_ids(&stack).await, public);
    stack.run("install", &["--front", "rest", "--yes"]).await.ok();
    assert_eq!(url_config(&stack).await, None);
    assert_eq!(statement_ids(&stack).await, ["counterctl-apigateway-invoke"], "no public statement is left");
    stack.run("status", &[]).await.ok();
}

#[tokio::test]
async fn a_stack_with_both_fronts_asks_which_to_keep() {
    let stack = Deployment::new().await;
    stack.install().await;
    // As a move to a function URL interrupted before the API was deleted leaves it.
    let create = stack.lambda().create_function_url_config().function_name(&stack.name).qualifier("live");
    create.auth_type(aws_sdk_lambda::types::FunctionUrlAuthType::AwsIam).send().await.unwrap();
    let (run, mutations) = stack.mutations_of(stack.run("install", &["--yes"])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("hint: pass --front function-url or --front rest"), "{}", run.stderr);
    assert_eq!(mutations, Vec::<String>::new());
    stack.run("install", &["--front", "rest", "--yes"]).await.ok();
    assert_eq!(url_config(&stack).await, None);
    assert!(stack.api_id().await.is_some());
}
