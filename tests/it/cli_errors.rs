//! Bad input and a bad environment: one clear message with the fix, a non-zero exit,
//! and nothing created.

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};

use crate::support::cli::{Deployment, REGION, clean_environment, counterctl_with_env};

/// Runs `install` for `stack` with `env` instead of the test credentials and region.
async fn install_with_env(stack: &Deployment, extra: &[&str], env: &[(&str, String)]) -> crate::support::cli::Run {
    let mut args = vec!["install", "--endpoint-url", &stack.proxy.url, "--name", &stack.name, "--table", &stack.table];
    args.extend(extra);
    counterctl_with_env(&args, env).await
}

#[tokio::test]
async fn missing_credentials_are_named_with_the_fix() {
    let stack = Deployment::new().await;
    let env: Vec<_> =
        clean_environment().into_iter().filter(|(key, _)| !key.starts_with("AWS_ACCESS_KEY_ID")).collect();
    let run = install_with_env(&stack, &["--region", REGION], &env).await;
    assert_ne!(run.code, 0);
    assert!(run.stderr.starts_with("error: no AWS credentials were found"), "{}", run.stderr);
    assert!(
        run.stderr.contains("hint: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, pass --profile NAME"),
        "{}",
        run.stderr
    );
    assert_eq!(stack.proxy.actions(), Vec::<String>::new(), "nothing was even read");
}

#[tokio::test]
async fn a_missing_region_is_named_with_the_fix() {
    let stack = Deployment::new().await;
    let run = install_with_env(&stack, &[], &clean_environment()).await;
    assert_ne!(run.code, 0);
    assert_eq!(
        run.stderr,
        "error: no AWS region is set\nhint: pass --region (e.g. --region us-east-1), set AWS_REGION, or set `region` in your profile\n"
    );
    assert_eq!(stack.proxy.actions(), Vec::<String>::new());
}

#[tokio::test]
async fn rejected_credentials_get_a_hint_and_create_nothing() {
    let stack = Deployment::new().await;
    let rejected = crate::support::aws_proxy::Fault::new(
        403,
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
    );
    stack.proxy.inject("GetCallerIdentity", rejected, 1);
    let run = stack.run("install", &[]).await;
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains(
            "sts:GetCallerIdentity failed: InvalidClientTokenId: The security token included in the request is invalid."
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: AWS rejected the credentials"), "{}", run.stderr);
    assert_eq!(stack.proxy.mutating_actions(), Vec::<String>::new());
}

#[tokio::test]
async fn a_table_with_another_key_schema_is_refused_before_anything_is_created() {
    let stack = Deployment::new().await;
    let dynamodb = stack.dynamodb();
    dynamodb
        .create_table()
        .table_name(&stack.table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap())
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::N).build().unwrap(),
        )
        .send()
        .await
        .unwrap();
    let run = stack.run("install", &[]).await;
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains(&format!(
            "table {} exists with key schema pk HASH (N), not the counter layout (key `id`, type S)",
            stack.table
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: pass --table NAME"), "{}", run.stderr);
    assert_eq!(stack.proxy.mutating_actions(), Vec::<String>::new());
    assert!(!stack.role_exists().await && stack.api_id().await.is_none());
}

#[tokio::test]
async fn bad_arguments_are_refused_with_a_message_and_touch_nothing() {
    let stack = Deployment::new().await;
    let zip = std::env::temp_dir().join(format!("{}-not-a.zip", stack.name));
    std::fs::write(&zip, "not a zip").unwrap();
    let not_a_zip = zip.display().to_string();
    let cases: [(&[&str], &str); 6] = [
        (&["--memory", "64"], "invalid value '64' for '--memory <MEMORY>': 64 is not in 128..=10240"),
        (&["--timeout", "3"], "invalid value '3' for '--timeout <TIMEOUT>'"),
        (&["--auth", "open"], "invalid value 'open' for '--auth <AUTH>'"),
        (&["--rate-limit=0"], "\"0\" is not a positive number of requests per second"),
        (&["--function-zip", "/nonexistent/function.zip"], "reading the function zip /nonexistent/function.zip"),
        (&["--function-zip", &not_a_zip], "is not a zip file"),
    ];
    for (args, message) in cases {
        let run = stack.run("install", args).await;
        assert_ne!(run.code, 0, "{args:?}");
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
    let run = crate::support::cli::counterctl(&["status", "--endpoint-url", "127.0.0.1:45111"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("\"127.0.0.1:45111\" needs http:// or https:// and a host"), "{}", run.stderr);
    let run = stack.run("increment", &[]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("the following required arguments were not provided:\n  <COUNTER>"), "{}", run.stderr);
    assert_eq!(stack.proxy.actions(), Vec::<String>::new());
}

#[tokio::test]
async fn names_aws_would_reject_are_refused_before_any_call() {
    let stack = Deployment::new().await;
    let long = "x".repeat(65);
    let cases: [(&str, &str, &str); 5] = [
        ("--name", "has space", "is not a valid name: use 1-64 characters of A-Z a-z 0-9 - _"),
        ("--name", &long, "is not a valid name: use 1-64 characters"),
        ("--table", "ab", "is not a valid name: use 3-255 characters of A-Z a-z 0-9 _ . -"),
        ("--table", "no/slash", "is not a valid name: use 3-255 characters"),
        ("--stage", "pr.od", "is not a valid name: use 1-128 characters of A-Z a-z 0-9 - _"),
    ];
    for (option, value, message) in cases {
        for command in ["install", "status", "uninstall"] {
            let args = [command, "--endpoint-url", &stack.proxy.url, "--region", REGION, option, value];
            let run = crate::support::cli::counterctl(&args).await;
            assert_eq!(run.code, 2, "{command} {option} {value}: {}", run.stderr);
            assert!(run.stderr.contains(message), "{command} {option} {value}: {}", run.stderr);
        }
    }
    assert_eq!(stack.proxy.actions(), Vec::<String>::new());
}

#[tokio::test]
async fn errors_exit_2_and_drift_exits_1() {
    let stack = Deployment::new().await;
    let refused = crate::support::cli::counterctl(&["install", "--endpoint-url", &stack.proxy.url]).await;
    assert_eq!(refused.code, 2, "no region is an error: {}", refused.stderr);
    let drift = stack.run("status", &[]).await;
    assert_eq!(drift.code, 1, "nothing installed is drift, not an error: {}", drift.stderr);
    stack.install().await;
    assert_eq!(stack.run("status", &[]).await.code, 0);
}

#[tokio::test]
async fn a_closed_stdout_ends_the_command_quietly() {
    let stack = Deployment::new().await;
    stack.install().await;
    let args =
        ["status", "--endpoint-url", &stack.proxy.url, "--region", REGION, "--name", &stack.name, "--output", "json"];
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_counterctl"))
        .args(args)
        .env_clear()
        .envs(clean_environment())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before counterctl has read anything from AWS, so its first write fails.
    drop(child.stdout.take());
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr, "", "nothing is said about the closed pipe");
    assert_eq!(output.status.code(), Some(0));
}

#[tokio::test]
async fn signing_for_a_url_whose_host_names_no_region_asks_for_one() {
    let args = ["increment", "tenants", "--url", "http://127.0.0.1:9", "--auth", "iam"];
    let run = counterctl_with_env(&args, &clean_environment()).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("signing for http://127.0.0.1:9 needs an AWS region"), "{}", run.stderr);
    assert!(run.stderr.contains("hint: pass --region"), "{}", run.stderr);
    assert!(!run.stderr.contains("finding the counter API"), "the URL was given, not looked for: {}", run.stderr);
}

#[tokio::test]
async fn serve_on_an_address_in_use_names_listen_and_makes_no_database() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let data_dir = crate::support::serve::DataDir::new();
    let command = crate::support::serve::serve_command_on(&address, data_dir.path());
    let run = crate::support::serve::serve_until_exit(command).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("could not listen on {address}")), "{}", run.stderr);
    assert!(run.stderr.contains("hint: another process listens there; pass --listen"), "{}", run.stderr);
    let made: Vec<_> = std::fs::read_dir(data_dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert!(made.is_empty(), "no database is made before the address is bound: {made:?}");
    assert!(!run.stderr.contains("new, empty"), "{}", run.stderr);
}

#[tokio::test]
async fn a_profile_that_is_not_in_the_config_files_is_named_with_those_that_are() {
    let dir = crate::support::serve::DataDir::new();
    let config = dir.path().join("config");
    std::fs::write(&config, "[profile dev]\nregion = eu-west-1\n[default]\nregion = us-east-1\n").unwrap();
    let mut env = clean_environment();
    env.retain(|(name, _)| *name != "AWS_CONFIG_FILE");
    env.push(("AWS_CONFIG_FILE", config.display().to_string()));
    let run = counterctl_with_env(&["status", "--profile", "prod"], &env).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.starts_with("error: the config profile (prod) could not be found"), "{}", run.stderr);
    assert!(run.stderr.contains("(profiles there: default, dev)"), "{}", run.stderr);
    assert!(!run.stderr.contains("no AWS credentials"), "{}", run.stderr);
    env.push(("AWS_PROFILE", "dev".into()));
    let known = counterctl_with_env(&["status", "--endpoint-url", "http://127.0.0.1:9"], &env).await;
    assert!(!known.stderr.contains("could not be found"), "dev is there: {}", known.stderr);
}

#[tokio::test]
async fn a_region_aws_does_not_have_is_refused_at_once_with_the_nearest_and_the_override() {
    let stack = Deployment::new().await;
    let mut args = vec!["status", "--endpoint-url", &stack.proxy.url, "--name", &stack.name];
    args.extend(["--region", "us-eats-1"]);
    let run = counterctl_with_env(&args, &clean_environment()).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("error: us-eats-1 is not an AWS region this counterctl knows (did you mean us-east-1?)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--skip-region-validation"), "{}", run.stderr);
    assert_eq!(stack.proxy.actions(), Vec::<String>::new(), "refused before any call");

    args.push("--skip-region-validation");
    let skipped = counterctl_with_env(&args, &clean_environment()).await;
    assert!(!skipped.stderr.contains("is not an AWS region"), "{}", skipped.stderr);
    assert!(!stack.proxy.actions().is_empty(), "with the override, the calls are made");
}

#[tokio::test]
async fn an_endpoint_that_answers_html_is_named_as_no_aws_endpoint_not_as_the_network() {
    let page = axum::Router::new().fallback(|| async {
        let html = "<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>nothing here</body></html>";
        (axum::http::StatusCode::NOT_FOUND, axum::response::Html(html))
    });
    let server = crate::support::LoopbackServer::start(page).await;
    let url = format!("http://{}", server.address);
    let run = counterctl_with_env(&["status", "--endpoint-url", &url, "--region", REGION], &clean_environment()).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("the endpoint answered HTTP 404 with an HTML page, not an AWS answer"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: check --endpoint-url"), "{}", run.stderr);
    assert!(!run.stderr.contains("check the network"), "an answer came: {}", run.stderr);
}

#[tokio::test]
async fn counters_without_aws_name_the_data_directory_where_serve_keeps_its_database() {
    let data_home = crate::support::serve::DataDir::new();
    let mut env = clean_environment();
    env.push(("XDG_DATA_HOME", data_home.path().display().to_string()));
    let run = counterctl_with_env(&["counters", "list"], &env).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(!run.stderr.contains("default data directory"), "no serve database there yet: {}", run.stderr);

    let default_dir = data_home.path().join("counterctl");
    std::fs::create_dir_all(&default_dir).unwrap();
    std::fs::write(default_dir.join("counters.sqlite3"), b"").unwrap();
    let run = counterctl_with_env(&["counters", "list"], &env).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let hint = format!("in its default data directory: pass --data-dir {}", default_dir.display());
    assert!(run.stderr.contains(&hint), "{}", run.stderr);
}
