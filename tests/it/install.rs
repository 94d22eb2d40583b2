//! `counterctl install` against moto: what it makes, and that a re-run converges.

use aws_sdk_apigateway::types::IntegrationType;
use aws_sdk_dynamodb::types::{BillingMode, KeyType, PointInTimeRecoveryStatus, ScalarAttributeType, TimeToLiveStatus};
use aws_sdk_lambda::types::{Architecture, Runtime};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::cli::{ACCOUNT, Deployment, REGION, REGION_POLICY};
use crate::support::repo_root;

fn bundled_code_sha256() -> String {
    let zip = std::fs::read(repo_root().join("assets/bootstrap-x86_64.zip")).unwrap();
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(zip))
}

fn url_decoded_json(document: &str) -> Value {
    let decoded = percent_encoding::percent_decode_str(document).decode_utf8().unwrap();
    serde_json::from_str(&decoded).or_else(|_| serde_json::from_str(document)).unwrap()
}

fn has_stack_tags(tags: &std::collections::HashMap<String, String>, name: &str) -> bool {
    tags.get("managed-by").map(String::as_str) == Some("counterctl")
        && tags.get("counterctl:stack").map(String::as_str) == Some(name)
}

#[tokio::test]
async fn fresh_install_makes_every_resource_exactly_as_specified() {
    let stack = Deployment::new().await;
    let run = stack.install().await;

    // Table: on-demand, key `id` (S), deletion protection, PITR, TTL on expires_at, tagged.
    let dynamodb = stack.dynamodb();
    let table = dynamodb.describe_table().table_name(&stack.table).send().await.unwrap().table.unwrap();
    assert_eq!(table.key_schema().len(), 1);
    assert_eq!((table.key_schema()[0].attribute_name(), table.key_schema()[0].key_type()), ("id", &KeyType::Hash));
    assert_eq!(table.attribute_definitions()[0].attribute_type(), &ScalarAttributeType::S);
    assert_eq!(table.billing_mode_summary().and_then(|b| b.billing_mode()), Some(&BillingMode::PayPerRequest));
    assert_eq!(table.deletion_protection_enabled(), Some(true));
    let backups = dynamodb.describe_continuous_backups().table_name(&stack.table).send().await.unwrap();
    let pitr = backups.continuous_backups_description().unwrap().point_in_time_recovery_description().unwrap();
    assert_eq!(pitr.point_in_time_recovery_status(), Some(&PointInTimeRecoveryStatus::Enabled));
    let ttl = dynamodb.describe_time_to_live().table_name(&stack.table).send().await.unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(
        (ttl.attribute_name(), ttl.time_to_live_status()),
        (Some("expires_at"), Some(&TimeToLiveStatus::Enabled))
    );
    let tags = dynamodb.list_tags_of_resource().resource_arn(table.table_arn().unwrap()).send().await.unwrap();
    let tags = tags.tags().iter().map(|tag| (tag.key().to_owned(), tag.value().to_owned())).collect();
    assert!(has_stack_tags(&tags, &stack.name), "{tags:?}");

    // Role: Lambda's trust policy, and exactly the function's DynamoDB calls on this table.
    let iam = stack.iam();
    let role = iam.get_role().role_name(&stack.name).send().await.unwrap().role.unwrap();
    assert_eq!(
        url_decoded_json(role.assume_role_policy_document().unwrap()),
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    );
    let role_tags = role.tags().iter().map(|tag| (tag.key().to_owned(), tag.value().to_owned())).collect();
    assert!(has_stack_tags(&role_tags, &stack.name));
    let policy = iam.get_role_policy().role_name(&stack.name).policy_name(REGION_POLICY).send().await.unwrap();
    let log_group = format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{}", stack.name);
    assert_eq!(
        url_decoded_json(&policy.policy_document),
        json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Counters", "Effect": "Allow",
             "Action": ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan", "dynamodb:UpdateItem"],
             "Resource": format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{}", stack.table)},
            {"Sid": "Logs", "Effect": "Allow",
             "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [log_group.clone(), format!("{log_group}:*")]}
        ]})
    );

    // Log group: made by install (the role may not create it), 30 days, tagged.
    let logs = stack.logs();
    let log_group_name = format!("/aws/lambda/{}", stack.name);
    let groups = logs.describe_log_groups().log_group_name_prefix(&log_group_name).send().await.unwrap();
    let group = groups.log_groups().iter().find(|group| group.log_group_name() == Some(&log_group_name)).unwrap();
    assert_eq!(group.retention_in_days(), Some(30));
    #[allow(deprecated)]
    let tags = logs.list_tags_log_group().log_group_name(&log_group_name).send().await.unwrap();
    assert!(has_stack_tags(tags.tags().unwrap(), &stack.name));

    // Function: the bundled zip on provided.al2023, with the documented defaults.
    let function = stack.lambda().get_function().function_name(&stack.name).send().await.unwrap();
    let config = function.configuration().unwrap();
    assert_eq!(config.runtime(), Some(&Runtime::Providedal2023));
    assert_eq!(config.handler(), Some("bootstrap"));
    assert_eq!(config.architectures(), [Architecture::X8664]);
    assert_eq!((config.memory_size(), config.timeout()), (Some(128), Some(15)));
    assert_eq!(config.role(), role.arn.as_str().into());
    let variables = config.environment().unwrap().variables().unwrap();
    assert_eq!(variables.len(), 1);
    assert_eq!(variables["TABLE_NAME"], stack.table);
    assert_eq!(config.code_sha256(), Some(bundled_code_sha256().as_str()));
    assert!(has_stack_tags(function.tags().unwrap(), &stack.name));

    // API: {proxy+} ANY, key required, AWS_PROXY to the function, deployed to prod.
    let apigateway = stack.apigateway();
    let api_id = stack.api_id().await.expect("the API exists");
    let api = apigateway.get_rest_api().rest_api_id(&api_id).send().await.unwrap();
    assert!(has_stack_tags(api.tags().unwrap(), &stack.name));
    let resources = apigateway.get_resources().rest_api_id(&api_id).embed("methods").send().await.unwrap();
    let paths: Vec<_> = resources.items().iter().filter_map(|resource| resource.path()).collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    let proxy = resources.items().iter().find(|resource| resource.path() == Some("/{proxy+}")).unwrap();
    let methods = proxy.resource_methods().unwrap();
    assert_eq!(methods.keys().collect::<Vec<_>>(), ["ANY"]);
    let method = &methods["ANY"];
    assert_eq!((method.authorization_type(), method.api_key_required()), (Some("NONE"), Some(true)));
    let integration = method.method_integration().unwrap();
    let function_arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}", stack.name);
    assert_eq!(integration.r#type(), Some(&IntegrationType::AwsProxy));
    assert_eq!(integration.http_method(), Some("POST"));
    assert_eq!(
        integration.uri(),
        Some(
            format!("arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{function_arn}:live/invocations")
                .as_str()
        )
    );
    apigateway.get_stage().rest_api_id(&api_id).stage_name("prod").send().await.expect("stage prod exists");

    // Permission: API Gateway may invoke the function, from this API only.
    let statements = stack.permission_statements().await;
    assert_eq!(statements.len(), 1, "{statements:?}");
    assert_eq!(statements[0]["Principal"]["Service"], "apigateway.amazonaws.com");
    assert_eq!(statements[0]["Action"], "lambda:InvokeFunction");
    assert_eq!(
        statements[0]["Condition"]["ArnLike"]["AWS:SourceArn"],
        format!("arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/*")
    );

    // Key and usage plan: an enabled key, throttled at the documented rate and burst.
    let keys = apigateway.get_api_keys().name_query(&stack.name).include_values(true).send().await.unwrap();
    let key = keys.items().iter().find(|key| key.name() == Some(&stack.name)).expect("the API key exists");
    assert!(key.enabled());
    let plans = apigateway.get_usage_plans().send().await.unwrap();
    let plan = plans.items().iter().find(|plan| plan.name() == Some(&stack.name)).expect("the usage plan exists");
    let stages: Vec<_> =
        plan.api_stages().iter().map(|stage| (stage.api_id().unwrap(), stage.stage().unwrap())).collect();
    assert_eq!(stages, [(api_id.as_str(), "prod")]);
    let throttle = plan.throttle().unwrap();
    assert_eq!((throttle.rate_limit(), throttle.burst_limit()), (50.0, 100));
    let plan_keys = apigateway.get_usage_plan_keys().usage_plan_id(plan.id().unwrap()).send().await.unwrap();
    assert_eq!(plan_keys.items().iter().filter_map(|key| key.id()).collect::<Vec<_>>(), [key.id().unwrap()]);

    // Output: the invoke URL and a curl with the key header, but never the key itself.
    let url = format!("https://{api_id}.execute-api.{REGION}.amazonaws.com/prod");
    assert!(run.stdout.contains(&format!("Invoke URL: {url}")), "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!(
            "curl -X POST -H \"x-api-key: $COUNTERCTL_API_KEY\" '{url}/counter/increment?counter=mycounter'"
        )),
        "{}",
        run.stdout
    );
    let secret = key.value().unwrap();
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "the key leaked");
    assert_every_step_says(&run.stdout, "created");
}

#[tokio::test]
async fn a_second_install_changes_nothing_and_says_up_to_date() {
    let stack = Deployment::new().await;
    stack.install().await;
    let (run, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new());
    assert!(run.stdout.contains("Everything is up to date."), "{}", run.stdout);
    assert_eq!(stack.permission_statements().await.len(), 1, "one permission statement, not two");
    let json = stack.run("install", &["--output", "json"]).await.ok().json();
    assert_eq!(json["up_to_date"], true);
    let kept = |change: &Value| {
        change["action"] == "keep" || (change["resource"] == "function_url" && change["action"] == "absent")
    };
    assert!(json["changes"].as_array().unwrap().iter().all(kept), "{json}");
}

#[tokio::test]
async fn install_restores_exactly_what_was_deleted_out_of_band() {
    let stack = Deployment::new().await;
    stack.install().await;
    let function_policy = format!("POST /2015-03-31/functions/{}/policy", stack.name);

    stack.delete_permission().await;
    let lambda = stack.lambda();
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, std::slice::from_ref(&function_policy));
    assert_eq!(stack.permission_statements().await.len(), 1);

    stack.delete_inline_policy().await;
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, ["PutRolePolicy"]);

    // The function's versions, alias and permission go with it, so all come back.
    lambda.delete_function().function_name(&stack.name).send().await.unwrap();
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    let function = format!("/2015-03-31/functions/{}", stack.name);
    let made = [
        "POST /2015-03-31/functions".to_owned(),
        format!("POST {function}/versions"),
        format!("POST {function}/aliases"),
        function_policy,
    ];
    assert_eq!(mutations, made);

    let log_group = format!("/aws/lambda/{}", stack.name);
    stack.logs().delete_log_group().log_group_name(&log_group).send().await.unwrap();
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, ["CreateLogGroup", "PutRetentionPolicy"]);

    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new());
}

#[tokio::test]
async fn install_updates_only_the_fields_that_differ() {
    let stack = Deployment::new().await;
    stack.install().await;
    let (run, mutations) = stack.mutations_of(stack.run("install", &["--memory", "256"])).await;
    run.ok();
    let function = format!("/2015-03-31/functions/{}", stack.name);
    let published = [format!("POST {function}/versions"), format!("PUT {function}/aliases/live")];
    assert_eq!(mutations, [&[format!("PUT {function}/configuration")][..], &published].concat());
    let config = stack.lambda().get_function_configuration().function_name(&stack.name).send().await.unwrap();
    assert_eq!((config.memory_size(), config.timeout()), (Some(256), Some(15)));
    stack.run("status", &[]).await.ok(); // settings not given are compared as deployed
    let against_default = stack.run("status", &["--memory", "128"]).await;
    assert_eq!(against_default.code, 1);
    assert!(against_default.stdout.contains("differs: memory 256 MB → 128 MB"), "{}", against_default.stdout);

    // Another zip: the code is updated, the configuration is not.
    let zip = std::env::temp_dir().join(format!("{}.zip", stack.name));
    let mut bytes = std::fs::read(repo_root().join("assets/bootstrap-x86_64.zip")).unwrap();
    bytes.extend_from_slice(b"trailing bytes change the hash");
    std::fs::write(&zip, &bytes).unwrap();
    let zip_arg = zip.display().to_string();
    let (run, mutations) =
        stack.mutations_of(stack.run("install", &["--memory", "256", "--function-zip", &zip_arg])).await;
    run.ok();
    assert_eq!(mutations, [&[format!("PUT {function}/code")][..], &published].concat());
    let config = stack.lambda().get_function_configuration().function_name(&stack.name).send().await.unwrap();
    assert_eq!(
        config.code_sha256(),
        Some(base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes)).as_str())
    );
}

#[tokio::test]
async fn auth_none_makes_a_public_api_with_a_warning_and_no_key() {
    let stack = Deployment::new().await;
    stack.install().await;
    let run = stack.run("install", &["--auth", "none", "--yes"]).await.ok();
    assert!(run.stderr.contains("warning: --auth none"), "{}", run.stderr);
    assert!(run.stdout.contains("curl -X POST 'https://"), "{}", run.stdout);
    let apigateway = stack.apigateway();
    let api_id = stack.api_id().await.unwrap();
    let resources = apigateway.get_resources().rest_api_id(&api_id).embed("methods").send().await.unwrap();
    let proxy = resources.items().iter().find(|resource| resource.path() == Some("/{proxy+}")).unwrap();
    let method = &proxy.resource_methods().unwrap()["ANY"];
    assert_eq!(method.api_key_required(), Some(false));
    assert!(method.method_integration().is_some(), "the replaced method is connected again");
    let keys = apigateway.get_api_keys().name_query(&stack.name).send().await.unwrap();
    assert!(keys.items().iter().all(|key| key.name() != Some(&stack.name)), "the key is deleted");
    let plans = apigateway.get_usage_plans().send().await.unwrap();
    assert!(plans.items().iter().all(|plan| plan.name() != Some(&stack.name)), "the usage plan is deleted");

    let (_, mutations) = stack.mutations_of(stack.run("install", &["--auth", "none"])).await;
    assert_eq!(mutations, Vec::<String>::new());
    let (_, mutations) = stack.mutations_of(stack.run("install", &[])).await;
    assert_eq!(mutations, Vec::<String>::new(), "a re-run without --auth keeps none");
    stack.run("status", &[]).await.ok(); // compares against the deployed auth
    let against_keys = stack.run("status", &["--auth", "api-key"]).await;
    assert_eq!(against_keys.code, 1, "{}", against_keys.stdout);
}

#[tokio::test]
async fn dry_run_reads_only_and_prints_the_plan() {
    let stack = Deployment::new().await;
    let (run, mutations) = stack.mutations_of(stack.run("install", &["--dry-run"])).await;
    let run = run.ok();
    assert_eq!(mutations, Vec::<String>::new());
    assert!(!stack.table_exists().await && !stack.role_exists().await && stack.api_id().await.is_none());
    assert_every_step_says(&run.stdout, "would create");

    stack.install().await;
    stack.delete_inline_policy().await;
    let (run, mutations) = stack.mutations_of(stack.run("install", &["--dry-run", "--memory", "512"])).await;
    let run = run.ok();
    assert_eq!(mutations, Vec::<String>::new());
    assert!(run.stdout.lines().any(|line| line.contains("policy") && line.contains("would create")), "{}", run.stdout);
    assert!(run.stdout.lines().any(|line| line.contains("role") && line.contains("unchanged")), "{}", run.stdout);
    assert!(
        run.stdout.lines().any(|line| line.contains("function") && line.contains("memory 128 MB → 512 MB")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.lines().any(|line| line.contains("table") && line.contains("unchanged")), "{}", run.stdout);
}

#[tokio::test]
async fn status_reports_each_resource_and_fails_on_drift() {
    let stack = Deployment::new().await;
    let missing = stack.run("status", &[]).await;
    assert_ne!(missing.code, 0);
    assert!(
        missing.stdout.lines().any(|line| line.contains("function") && line.contains("missing")),
        "{}",
        missing.stdout
    );

    stack.install().await;
    let (run, mutations) = stack.mutations_of(stack.run("status", &["--output", "json"])).await;
    let status = run.ok().json();
    assert_eq!(mutations, Vec::<String>::new());
    assert_eq!((&status["up_to_date"], &status["healthy"]), (&true.into(), &true.into()));
    assert_eq!(status["deployed_code_sha256"], bundled_code_sha256());
    assert_eq!(status["bundled_code_sha256"], bundled_code_sha256());
    let api_id = stack.api_id().await.unwrap();
    assert_eq!(status["url"], format!("https://{api_id}.execute-api.{REGION}.amazonaws.com/prod"));
    assert!(status.get("api_key").is_none(), "the key is shown only when asked for");

    stack.delete_permission().await;
    let drifted = stack.run("status", &[]).await;
    assert_eq!(drifted.code, 1, "{}", drifted.stdout);
    assert!(
        drifted.stdout.lines().any(|line| line.contains("permission") && line.contains("missing")),
        "{}",
        drifted.stdout
    );
    assert!(
        drifted.stdout.lines().any(|line| line.contains("function") && line.contains("present")),
        "{}",
        drifted.stdout
    );
}

#[tokio::test]
async fn an_existing_counter_table_is_adopted_keeping_its_data_and_protections() {
    let stack = Deployment::new().await;
    let dynamodb = stack.dynamodb();
    crate::support::create_counter_table(&dynamodb, &stack.table).await;
    let counter = aws_sdk_dynamodb::types::AttributeValue::S("tenants".into());
    let value = aws_sdk_dynamodb::types::AttributeValue::N("41".into());
    dynamodb
        .put_item()
        .table_name(&stack.table)
        .item("id", counter.clone())
        .item("lastValue", value)
        .send()
        .await
        .unwrap();

    let (run, mutations) = stack.mutations_of(stack.install()).await;
    assert!(run.stdout.lines().any(|line| line.contains("table") && line.contains("adopted")), "{}", run.stdout);
    assert!(
        mutations.iter().all(|action| !["CreateTable", "UpdateTable", "UpdateContinuousBackups", "TagResource"]
            .contains(&action.as_str())),
        "its protections and tags are the owner's: {mutations:?}"
    );
    assert!(mutations.contains(&"UpdateTimeToLive".to_owned()), "idempotency records expire: {mutations:?}");
    assert!(run.stdout.contains("has no deletion protection (turn it on with --protect-table)"), "{}", run.stdout);
    let status = stack.run("status", &[]).await;
    assert_eq!(status.code, 0, "advisories are not drift: {}", status.stdout);
    assert!(status.stdout.contains("advisory: table"), "{}", status.stdout);

    let (_, mutations) = stack.mutations_of(stack.run("install", &["--protect-table"])).await;
    assert!(mutations.contains(&"UpdateTable".to_owned()), "{mutations:?}");
    assert!(mutations.contains(&"UpdateContinuousBackups".to_owned()), "{mutations:?}");
    let table = dynamodb.describe_table().table_name(&stack.table).send().await.unwrap().table.unwrap();
    assert_eq!(table.deletion_protection_enabled(), Some(true));
    let item = dynamodb.get_item().table_name(&stack.table).key("id", counter).send().await.unwrap();
    assert_eq!(item.item().unwrap()["lastValue"].as_n().unwrap(), "41");
}

#[tokio::test]
async fn arm64_deploys_a_given_graviton_build_and_without_one_is_refused_before_any_write() {
    let stack = Deployment::new().await;
    // This build bundles x86_64 only (no aarch64 target here): arm64 needs a zip given.
    let (refused, mutations) = stack.mutations_of(stack.run("install", &["--architecture", "arm64"])).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("carries no arm64 function"), "{}", refused.stderr);
    assert!(refused.stderr.contains("--function-zip"), "{}", refused.stderr);
    assert_eq!(mutations, Vec::<String>::new());

    let zip = std::env::temp_dir().join(format!("{}-arm64.zip", stack.name));
    let mut bytes = std::fs::read(repo_root().join("assets/bootstrap-x86_64.zip")).unwrap();
    bytes.extend_from_slice(b"stands in for an arm64 build");
    std::fs::write(&zip, &bytes).unwrap();
    let zip_arg = zip.display().to_string();
    stack.run("install", &["--architecture", "arm64", "--function-zip", &zip_arg]).await.ok();
    let config = stack.lambda().get_function_configuration().function_name(&stack.name).send().await.unwrap();
    assert_eq!(config.architectures(), [Architecture::Arm64]);
    let given = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
    assert_eq!(config.code_sha256(), Some(given.as_str()));
    let (_, mutations) = stack.mutations_of(stack.run("install", &["--function-zip", &zip_arg])).await;
    assert_eq!(mutations, Vec::<String>::new(), "a re-run with the same zip keeps arm64");

    // Without the zip, the deployed arm64 function has no code in this counterctl.
    let (refused, mutations) = stack.mutations_of(stack.run("install", &[])).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("--architecture x86_64"), "{}", refused.stderr);
    assert_eq!(mutations, Vec::<String>::new());
    let (_, mutations) = stack.mutations_of(stack.run("install", &["--architecture", "x86_64"])).await;
    let function = format!("/2015-03-31/functions/{}", stack.name);
    let published = [format!("POST {function}/versions"), format!("PUT {function}/aliases/live")];
    let expected = [&[format!("PUT {function}/code")][..], &published].concat();
    assert_eq!(mutations, expected, "back to x86_64: new code, published");
    // moto ignores UpdateFunctionCode's Architectures (Lambda applies it), so only the
    // code is checked here.
    let config = stack.lambda().get_function_configuration().function_name(&stack.name).send().await.unwrap();
    assert_eq!(config.code_sha256(), Some(bundled_code_sha256().as_str()));
}

/// Every resource install handles, as its progress lines name them.
const STEPS: [&str; 12] = [
    "table",
    "log group",
    "role",
    "policy",
    "function",
    "api",
    "route",
    "integration",
    "permission",
    "stage",
    "api key",
    "usage plan",
];

/// Each step's progress line reports `outcome`.
fn assert_every_step_says(stdout: &str, outcome: &str) {
    for step in STEPS {
        assert!(stdout.lines().any(|line| line.contains(step) && line.contains(outcome)), "{step}: {stdout}");
    }
}
