//! `counterctl export`: the CloudFormation template and the Terraform configuration of the
//! stack install would make, or has made. Templates are checked by cfn-lint (pinned in
//! scripts/requirements-test.txt) for each front, auth, alarm and domain combination, and
//! Terraform's import blocks are compared with what moto reads back. A stack made outside
//! counterctl, by its names and tags as the templates make it, is still called, listed and
//! reported by counterctl.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use counterctl::aws::Clients;
use counterctl::call::discover;
use counterctl::cli::StackOptions;
use counterctl_client::Auth;
use serde_json::{Value, json};

use crate::domain::{certificate, domain_of, hosted_zone};
use crate::support::cli::{ACCOUNT, Deployment, REGION, REGION_POLICY, Run, counterctl};
use crate::support::deployed_lambda::DeployedLambda;
use crate::support::repo_root;
use crate::support::rest_api::{MethodAuth, RestApi};
use crate::support::serve::DataDir;

/// `counterctl export --format FORMAT --output-dir DIR ARGS` for the stack.
async fn export(stack: &Deployment, format: &str, dir: &DataDir, args: &[&str]) -> Run {
    let dir = dir.path().to_str().unwrap();
    stack.run("export", &[&["--format", format, "--output-dir", dir][..], args].concat()).await
}

fn read_json(dir: &DataDir, file: &str) -> Value {
    let text = std::fs::read_to_string(dir.path().join(file)).unwrap_or_else(|error| panic!("{file}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{file} is JSON: {error}"))
}

/// cfn-lint's findings on the template in `dir`, as `RULE: message`. W3002 is left out:
/// it says that a `Code` naming a local zip works only through `aws cloudformation
/// package`, which is how the template is meant to be deployed.
async fn cfn_lint(dir: &DataDir) -> Vec<String> {
    let output = tokio::process::Command::new(repo_root().join(".venv/bin/cfn-lint"))
        .args(["--format", "json", "--ignore-checks", "W3002", "--"])
        .arg(dir.path().join("template.json"))
        .output()
        .await
        .expect("cfn-lint is installed in the project's venv (scripts/requirements-test.txt)");
    let findings: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("cfn-lint answers JSON: {}", String::from_utf8_lossy(&output.stderr)));
    let findings = findings.as_array().unwrap();
    findings.iter().map(|finding| format!("{}: {}", finding["Rule"]["Id"], finding["Message"])).collect()
}

/// The resources of a Terraform configuration, as `TYPE.NAME`.
fn terraform_resources(config: &Value) -> BTreeSet<String> {
    let resources = config["resource"].as_object().unwrap();
    resources
        .iter()
        .flat_map(|(kind, named)| named.as_object().unwrap().keys().map(move |name| format!("{kind}.{name}")))
        .collect()
}

/// A Terraform configuration's import blocks, `to` → `id`.
fn terraform_imports(config: &Value) -> BTreeMap<String, String> {
    let imports = config["import"].as_array().map(Vec::as_slice).unwrap_or_default();
    imports
        .iter()
        .map(|block| (block["to"].as_str().unwrap().to_owned(), block["id"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn an_export_for_a_new_name_is_the_stack_install_would_make_and_writes_nothing_to_aws() {
    let stack = Deployment::new().await;
    let dir = DataDir::new();
    let (run, mutations) = stack.mutations_of(export(&stack, "cloudformation", &dir, &[])).await;
    run.ok();
    assert_eq!(mutations, Vec::<String>::new());

    let template = read_json(&dir, "template.json");
    let parameters = &template["Parameters"];
    assert_eq!(
        (&parameters["StackName"]["Default"], &parameters["TableName"]["Default"], &parameters["StageName"]["Default"]),
        (&json!(stack.name), &json!(stack.table), &json!("prod"))
    );
    let resources = &template["Resources"];
    let table = &resources["Table"];
    assert_eq!((&table["DeletionPolicy"], &table["UpdateReplacePolicy"]), (&json!("Retain"), &json!("Retain")));
    assert_eq!(table["Properties"]["TableName"], json!({"Fn::Sub": "${TableName}"}));
    assert_eq!(table["Properties"]["DeletionProtectionEnabled"], true);
    assert_eq!(table["Properties"]["TimeToLiveSpecification"], json!({"AttributeName": "expires_at", "Enabled": true}));
    // Another table name would make a new, empty table: the parameter allows none.
    assert_eq!(parameters["TableName"]["AllowedValues"], json!([stack.table]));
    let function = &resources["Function"]["Properties"];
    assert_eq!((&function["MemorySize"], &function["Timeout"]), (&json!(128), &json!(15)));
    assert_eq!((&function["Code"], &function["Architectures"]), (&json!("function.zip"), &json!(["x86_64"])));
    assert_eq!(function["Environment"]["Variables"], json!({"TABLE_NAME": {"Ref": "Table"}}));
    assert_eq!(
        function["Tags"],
        json!([{"Key": "counterctl:stack", "Value": {"Fn::Sub": "${StackName}"}}, {"Key": "managed-by", "Value": "counterctl"}])
    );
    // The front invokes the alias; the default auth is an API key in a usage plan.
    assert_eq!(resources["Alias"]["Properties"]["Name"], "live");
    assert_eq!(resources["Permission"]["Properties"]["FunctionName"], json!({"Ref": "Alias"}));
    let uri = resources["ProxyMethod"]["Properties"]["Integration"]["Uri"]["Fn::Sub"].as_str().unwrap();
    assert!(uri.ends_with(":function:${StackName}:live/invocations"), "{uri}");
    assert_eq!(resources["ProxyMethod"]["Properties"]["ApiKeyRequired"], true);
    assert_eq!(resources["UsagePlan"]["Properties"]["Throttle"], json!({"RateLimit": 50.0, "BurstLimit": 100}));
    let alarms = resources.as_object().unwrap().values().filter(|r| r["Type"] == "AWS::CloudWatch::Alarm").count();
    assert_eq!(alarms, 5);
    for output in ["InvokeUrl", "TableName", "ApiKeyId"] {
        assert!(template["Outputs"].get(output).is_some(), "output {output}");
    }
    // The zip beside it is the function this counterctl deploys.
    let zip = std::fs::read(dir.path().join("function.zip")).unwrap();
    assert_eq!(zip, std::fs::read(repo_root().join("assets/bootstrap-x86_64.zip")).unwrap());
    let policy = read_json(&dir, "stack-policy.json");
    let denied = &policy["Statement"][1];
    assert_eq!((&denied["Effect"], &denied["Resource"]), (&json!("Deny"), &json!("LogicalResourceId/Table")));
    assert_eq!(denied["Action"], json!(["Update:Replace", "Update:Delete"]));
    assert_eq!(cfn_lint(&dir).await, Vec::<String>::new());

    // Terraform: the same names as variables, nothing to import.
    let dir = DataDir::new();
    let (run, mutations) = stack.mutations_of(export(&stack, "terraform", &dir, &["--output", "json"])).await;
    assert_eq!(run.ok().json()["imports"], 0);
    assert_eq!(mutations, Vec::<String>::new());
    let config = read_json(&dir, "main.tf.json");
    assert!(config.get("import").is_none(), "{}", config["import"]);
    assert_eq!(
        (&config["variable"]["name"]["default"], &config["variable"]["table"]["default"]),
        (&json!(stack.name), &json!(stack.table))
    );
    let table = &config["resource"]["aws_dynamodb_table"]["counters"];
    assert_eq!((&table["name"], &table["lifecycle"]["prevent_destroy"]), (&json!("${var.table}"), &json!(true)));
    let function = &config["resource"]["aws_lambda_function"]["counter"];
    assert_eq!(function["filename"], "${path.module}/function.zip");
    assert_eq!(function["source_code_hash"], "${filebase64sha256(\"${path.module}/function.zip\")}");
    assert!(!stack.function_exists().await && !stack.table_exists().await);
}

#[tokio::test]
async fn an_export_of_a_deployed_stack_carries_its_deployed_values_and_an_option_given_changes_its_own() {
    let stack = Deployment::new().await;
    let options = [
        "--stage",
        "v1",
        "--auth",
        "iam",
        "--memory",
        "256",
        "--timeout",
        "20",
        "--log-retention-days",
        "14",
        "--max-concurrency",
        "7",
        "--rate-limit",
        "9",
        "--burst-limit",
        "18",
        "--alarm-email",
        "ops@example.com",
    ];
    stack.run("install", &options).await.ok();

    let dir = DataDir::new();
    let (run, mutations) = stack.mutations_of(export(&stack, "cloudformation", &dir, &[])).await;
    run.ok();
    assert_eq!(mutations, Vec::<String>::new());
    let template = read_json(&dir, "template.json");
    assert_eq!(template["Parameters"]["StageName"]["Default"], "v1");
    let resources = &template["Resources"];
    let function = &resources["Function"]["Properties"];
    assert_eq!(
        (&function["MemorySize"], &function["Timeout"], &function["ReservedConcurrentExecutions"]),
        (&json!(256), &json!(20), &json!(7))
    );
    assert_eq!(resources["LogGroup"]["Properties"]["RetentionInDays"], 14);
    let method = &resources["ProxyMethod"]["Properties"];
    assert_eq!((&method["AuthorizationType"], &method["ApiKeyRequired"]), (&json!("AWS_IAM"), &json!(false)));
    assert!(resources.get("ApiKey").is_none() && resources.get("UsagePlan").is_none());
    let settings = &resources["Stage"]["Properties"]["MethodSettings"][0];
    assert_eq!((&settings["ThrottlingRateLimit"], &settings["ThrottlingBurstLimit"]), (&json!(9.0), &json!(18)));
    assert_eq!(resources["AlarmSubscription"]["Properties"]["Endpoint"], "ops@example.com");
    assert_eq!(resources["AlarmFunctionErrors"]["Properties"]["AlarmActions"], json!([{"Ref": "AlarmTopic"}]));
    assert_eq!(cfn_lint(&dir).await, Vec::<String>::new());

    // An option given is what install would make of it; the rest stays as deployed.
    let dir = DataDir::new();
    export(&stack, "cloudformation", &dir, &["--memory", "512"]).await.ok();
    let function = &read_json(&dir, "template.json")["Resources"]["Function"]["Properties"];
    assert_eq!((&function["MemorySize"], &function["Timeout"]), (&json!(512), &json!(20)));

    let dir = DataDir::new();
    export(&stack, "terraform", &dir, &[]).await.ok();
    let config = read_json(&dir, "main.tf.json");
    let function = &config["resource"]["aws_lambda_function"]["counter"];
    assert_eq!((&function["memory_size"], &function["reserved_concurrent_executions"]), (&json!(256), &json!(7)));
    assert_eq!(config["variable"]["stage"]["default"], "v1");
    let settings = &config["resource"]["aws_api_gateway_method_settings"]["all"]["settings"];
    assert_eq!((&settings["throttling_rate_limit"], &settings["throttling_burst_limit"]), (&json!(9.0), &json!(18)));
    assert_eq!(config["resource"]["aws_cloudwatch_log_group"]["function"]["retention_in_days"], 14);
}

#[tokio::test]
async fn cfn_lint_finds_no_error_in_the_template_of_each_front_auth_alarm_and_domain_combination() {
    let stack = Deployment::new().await;
    let domain = domain_of(&stack);
    let certificate = certificate(&stack, &[&domain], true).await;
    let zone = hosted_zone(&stack).await;
    let topic = format!("arn:aws:sns:{REGION}:{ACCOUNT}:ops");
    let combinations: [&[&str]; 9] = [
        &[],
        &["--auth", "iam", "--alarm-email", "ops@example.com"],
        &["--auth", "none", "--alarms", "off"],
        &["--alarm-topic", &topic, "--max-concurrency", "5", "--log-retention-days", "7"],
        &["--front", "function-url"],
        &["--front", "function-url", "--auth", "none", "--alarm-email", "ops@example.com"],
        &["--front", "function-url", "--alarms", "off"],
        &["--domain", &domain, "--certificate-arn", &certificate, "--hosted-zone-id", &zone],
        &["--domain", &domain, "--certificate-arn", &certificate, "--auth", "iam"],
    ];
    for options in combinations {
        let dir = DataDir::new();
        export(&stack, "cloudformation", &dir, options).await.ok();
        assert_eq!(cfn_lint(&dir).await, Vec::<String>::new(), "{options:?}");
        let resources = &read_json(&dir, "template.json")["Resources"];
        let url = options.contains(&"function-url");
        assert_eq!((resources.get("Url").is_some(), resources.get("Api").is_some()), (url, !url), "{options:?}");
        assert_eq!(resources.get("DomainRecord").is_some(), options.contains(&"--hosted-zone-id"), "{options:?}");

        let dir = DataDir::new();
        export(&stack, "terraform", &dir, options).await.ok();
        let resources = terraform_resources(&read_json(&dir, "main.tf.json"));
        assert!(resources.contains("aws_dynamodb_table.counters"), "{options:?}");
        assert_eq!(resources.contains("aws_lambda_function_url.url"), url, "{options:?}");
        let public = options.contains(&"none") && url;
        assert_eq!(resources.contains("aws_lambda_permission.url_invoke"), public, "{options:?}");
    }
    assert!(!stack.function_exists().await, "export installs nothing");
}

#[tokio::test]
async fn terraform_import_blocks_name_every_deployed_resource_by_the_id_aws_reads_back() {
    let stack = Deployment::new().await;
    let domain = domain_of(&stack);
    let certificate = certificate(&stack, &[&domain], true).await;
    let zone = hosted_zone(&stack).await;
    let options = ["--alarm-email", "ops@example.com", "--domain", &domain, "--certificate-arn", &certificate];
    stack.run("install", &[&options[..], &["--hosted-zone-id", &zone]].concat()).await.ok();

    let dir = DataDir::new();
    let run = export(&stack, "terraform", &dir, &["--output", "json"]).await.ok();
    let config = read_json(&dir, "main.tf.json");
    let imports = terraform_imports(&config);
    assert_eq!(run.json()["imports"], imports.len());
    let resources = terraform_resources(&config);
    assert_eq!(imports.keys().cloned().collect::<BTreeSet<_>>(), resources, "every resource is imported");

    // Each id as AWS reads it back.
    let name = &stack.name;
    let apigateway = stack.apigateway();
    let api = stack.api_id().await.unwrap();
    let proxy = apigateway.get_resources().rest_api_id(&api).send().await.unwrap();
    let proxy = proxy.items().iter().find(|r| r.path() == Some("/{proxy+}")).unwrap().id().unwrap().to_owned();
    let stage = apigateway.get_stage().rest_api_id(&api).stage_name("prod").send().await.unwrap();
    let deployment = stage.deployment_id().unwrap();
    let key = apigateway.get_api_keys().name_query(name).send().await.unwrap().items()[0].id().unwrap().to_owned();
    let plans = apigateway.get_usage_plans().send().await.unwrap();
    let plan = plans.items().iter().find(|p| p.name() == Some(name)).unwrap().id().unwrap().to_owned();
    let sns = aws_sdk_sns::Client::new(&stack.aws);
    let topic = format!("arn:aws:sns:{REGION}:{ACCOUNT}:{name}-alarms");
    let subscriptions = sns.list_subscriptions_by_topic().topic_arn(&topic).send().await.unwrap();
    let subscription = subscriptions.subscriptions()[0].subscription_arn().unwrap().to_owned();
    let alarms =
        aws_sdk_cloudwatch::Client::new(&stack.aws).describe_alarms().alarm_name_prefix(format!("{name}-")).send();
    let alarm_names: BTreeSet<String> =
        alarms.await.unwrap().metric_alarms().iter().map(|alarm| alarm.alarm_name().unwrap().to_owned()).collect();
    let mut expected = BTreeMap::from([
        ("aws_dynamodb_table.counters", stack.table.clone()),
        ("aws_iam_role.function", name.clone()),
        ("aws_iam_role_policy.function", format!("{name}:{REGION_POLICY}")),
        ("aws_cloudwatch_log_group.function", format!("/aws/lambda/{name}")),
        ("aws_lambda_function.counter", name.clone()),
        ("aws_lambda_alias.live", format!("{name}/live")),
        ("aws_lambda_permission.api_gateway", format!("{name}:live/counterctl-apigateway-invoke")),
        ("aws_api_gateway_rest_api.api", api.clone()),
        ("aws_api_gateway_resource.proxy", format!("{api}/{proxy}")),
        ("aws_api_gateway_method.proxy", format!("{api}/{proxy}/ANY")),
        ("aws_api_gateway_integration.proxy", format!("{api}/{proxy}/ANY")),
        ("aws_api_gateway_deployment.api", format!("{api}/{deployment}")),
        ("aws_api_gateway_stage.api", format!("{api}/prod")),
        ("aws_api_gateway_api_key.key", key.clone()),
        ("aws_api_gateway_usage_plan.plan", plan.clone()),
        ("aws_api_gateway_usage_plan_key.key", format!("{plan}/{key}")),
        ("aws_sns_topic.alarms", topic.clone()),
        ("aws_sns_topic_subscription.email", subscription),
        ("aws_api_gateway_domain_name.domain", domain.clone()),
        ("aws_api_gateway_base_path_mapping.domain", format!("{domain}/")),
        ("aws_route53_record.domain", format!("{zone}_{domain}_A")),
    ])
    .into_iter()
    .map(|(to, id)| (to.to_owned(), id))
    .collect::<BTreeMap<_, _>>();
    for alarm in &alarm_names {
        let resource = alarm.trim_start_matches(&format!("{name}-")).replace('-', "_");
        expected.insert(format!("aws_cloudwatch_metric_alarm.{resource}"), alarm.clone());
    }
    assert_eq!(alarm_names.len(), 5);
    assert_eq!(imports, expected);
    // What the ids name is there: the role's inline policy, the alias and its permission.
    stack.iam().get_role_policy().role_name(name).policy_name(REGION_POLICY).send().await.unwrap();
    stack.lambda().get_alias().function_name(name).name("live").send().await.unwrap();
    let statements = stack.permission_statements().await;
    assert!(statements.iter().any(|s| s["Sid"] == "counterctl-apigateway-invoke"), "{statements:?}");

    // A public function URL: the URL on the alias and its two statements.
    stack.run("install", &["--front", "function-url", "--auth", "none", "--domain", "off", "--yes"]).await.ok();
    let dir = DataDir::new();
    export(&stack, "terraform", &dir, &[]).await.ok();
    let config = read_json(&dir, "main.tf.json");
    let imports = terraform_imports(&config);
    assert_eq!(imports.keys().cloned().collect::<BTreeSet<_>>(), terraform_resources(&config));
    assert_eq!(imports["aws_lambda_function_url.url"], format!("{name}/live"));
    stack.lambda().get_function_url_config().function_name(name).qualifier("live").send().await.unwrap();
    let sids: BTreeSet<String> =
        stack.permission_statements().await.iter().map(|s| s["Sid"].as_str().unwrap().to_owned()).collect();
    for (to, sid) in [
        ("aws_lambda_permission.url_public", "counterctl-function-url-public"),
        ("aws_lambda_permission.url_invoke", "counterctl-function-url-public-invoke"),
    ] {
        assert_eq!(imports[to], format!("{name}:live/{sid}"));
        assert!(sids.contains(sid), "{sids:?}");
    }
    assert!(!imports.contains_key("aws_api_gateway_rest_api.api"));
}

/// A stack made through the SDK and not counterctl, with the stack's names and tags (and
/// CloudFormation's tag) but CloudFormation's own statement id and fewer resources than
/// install makes: its table, role, function (the shipped bootstrap) with a version
/// behind alias `live`, and a REST API with an API key. Returns the API's id.
async fn made_outside_counterctl(stack: &Deployment, owner: &str) -> String {
    let name = &stack.name;
    let tags = [
        ("managed-by", "counterctl"),
        ("counterctl:stack", name.as_str()),
        (crate::cloudformation::CLOUDFORMATION_TAG, owner),
    ];
    crate::support::create_counter_table(&stack.dynamodb(), &stack.table).await;
    let table_arn = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{}", stack.table);
    for (key, value) in tags {
        let tag = aws_sdk_dynamodb::types::Tag::builder().key(key).value(value).build().unwrap();
        stack.dynamodb().tag_resource().resource_arn(&table_arn).tags(tag).send().await.unwrap();
    }
    let trust = std::fs::read_to_string(repo_root().join("assets/trust-policy.json")).unwrap();
    let role = stack.iam().create_role().role_name(name).assume_role_policy_document(trust).send().await.unwrap();
    let role_arn = role.role().unwrap().arn().to_owned();
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"], "Resource": table_arn}]});
    let put = stack.iam().put_role_policy().role_name(name).policy_name(REGION_POLICY);
    put.policy_document(policy.to_string()).send().await.unwrap();

    let lambda = stack.lambda();
    let zip = std::fs::read(repo_root().join("assets/bootstrap-x86_64.zip")).unwrap();
    let environment =
        aws_sdk_lambda::types::Environment::builder().variables("TABLE_NAME", stack.table.clone()).build();
    let mut create = lambda
        .create_function()
        .function_name(name)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .handler("bootstrap")
        .role(role_arn)
        .environment(environment)
        .code(aws_sdk_lambda::types::FunctionCode::builder().zip_file(zip.into()).build());
    for (key, value) in tags {
        create = create.tags(key, value);
    }
    create.send().await.unwrap();
    let version = lambda.publish_version().function_name(name).send().await.unwrap().version().unwrap().to_owned();
    lambda.create_alias().function_name(name).name("live").function_version(version).send().await.unwrap();

    let apigateway = stack.apigateway();
    let mut create = apigateway.create_rest_api().name(name);
    for (key, value) in tags {
        create = create.tags(key, value);
    }
    let api = create.send().await.unwrap().id().unwrap().to_owned();
    let resources = apigateway.get_resources().rest_api_id(&api).send().await.unwrap();
    let root = resources.items()[0].id().unwrap().to_owned();
    let proxy = apigateway.create_resource().rest_api_id(&api).parent_id(root).path_part("{proxy+}").send().await;
    let proxy = proxy.unwrap().id().unwrap().to_owned();
    let method = apigateway.put_method().rest_api_id(&api).resource_id(&proxy).http_method("ANY");
    method.authorization_type("NONE").api_key_required(true).send().await.unwrap();
    let alias = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}:live");
    let integration = apigateway.put_integration().rest_api_id(&api).resource_id(&proxy).http_method("ANY");
    let uri = format!("arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{alias}/invocations");
    let integration = integration.r#type(aws_sdk_apigateway::types::IntegrationType::AwsProxy);
    integration.integration_http_method("POST").uri(uri).send().await.unwrap();
    apigateway.create_deployment().rest_api_id(&api).stage_name("prod").send().await.unwrap();
    let permission = lambda.add_permission().function_name(name).qualifier("live").statement_id("Permission-cfn");
    let permission = permission.action("lambda:InvokeFunction").principal("apigateway.amazonaws.com");
    permission.source_arn(format!("arn:aws:execute-api:{REGION}:{ACCOUNT}:{api}/*")).send().await.unwrap();
    let key = apigateway.create_api_key().name(name).enabled(true).send().await.unwrap().id().unwrap().to_owned();
    let stage = aws_sdk_apigateway::types::ApiStage::builder().api_id(&api).stage("prod").build();
    let plan = apigateway.create_usage_plan().name(name).api_stages(stage).send().await.unwrap();
    let add = apigateway.create_usage_plan_key().usage_plan_id(plan.id().unwrap()).key_id(key).key_type("API_KEY");
    add.send().await.unwrap();
    api
}

#[tokio::test]
async fn increment_counters_and_status_work_on_a_stack_made_outside_counterctl() {
    let stack = Deployment::new().await;
    let api = made_outside_counterctl(&stack, "ids-prod").await;

    // increment finds the stack's URL and key by its name, as for a stack it installed.
    let options = StackOptions { name: stack.name.clone(), table: None, stage: None };
    let endpoint = discover(&Clients::new(stack.aws.clone()), &options).await.unwrap();
    assert_eq!(endpoint.url(), format!("https://{api}.execute-api.{REGION}.amazonaws.com/prod"));
    let Auth::ApiKey(key) = endpoint.auth().clone() else { panic!("the key is found: {:?}", endpoint.auth()) };
    let deployed = Arc::new(DeployedLambda::new(&stack.aws, &api, "prod", 1));
    let front = RestApi::start_deployed(Arc::clone(&deployed), MethodAuth::api_key(key.clone())).await;
    let increment = ["increment", "tenants", "--url", &front.url, "--api-key", &key];
    assert_eq!(counterctl(&increment).await.ok().stdout, "1\n");
    assert_eq!(counterctl(&increment).await.ok().stdout, "2\n");
    assert_eq!(deployed.invoked(), ["1", "1"], "the version behind the alias answered");

    // counters reads the table the function names; status reports the stack as
    // CloudFormation's; install changes nothing of it.
    let aws = ["--endpoint-url", &stack.proxy.url, "--region", REGION, "--name", &stack.name];
    let listed = counterctl(&[&["counters", "list"][..], &aws[..]].concat()).await.ok();
    let row = listed.stdout.lines().find(|line| line.starts_with("tenants")).unwrap_or_default();
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["tenants", "2"], "{}", listed.stdout);
    // status reads it, and exits 1 for what differs from what install would make (no log
    // group nor alarms here); what differs is the template's to change.
    let status = counterctl(&[&["status", "--output", "json"][..], &aws[..]].concat()).await;
    assert_eq!(status.code, 1, "{}", status.stderr);
    assert_eq!(status.json()["cloudformation_stack"], "ids-prod");
    let (install, mutations) = stack.mutations_of(counterctl(&[&["install", "--yes"][..], &aws[..]].concat())).await;
    assert_eq!(install.code, 2, "{}", install.stderr);
    assert!(install.stderr.contains("CloudFormation stack ids-prod"), "{}", install.stderr);
    assert_eq!(mutations, Vec::<String>::new());
}
