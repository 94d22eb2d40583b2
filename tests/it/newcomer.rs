//! What a newcomer meets first (issue 19's findings, one test each): input refused with
//! the form it needs, before anything is called or written.

use crate::support::cli::{clean_environment, counterctl, counterctl_with_env};
use crate::support::counters::Counters;
use crate::support::serve::{DataDir, Serve, serve_command_on};
use crate::support::{Backend, LoopbackServer};

#[tokio::test]
async fn a_url_without_a_scheme_is_refused_naming_the_form_it_needs() {
    let run = counterctl(&["increment", "tenants", "--url", "127.0.0.1:8080"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("127.0.0.1:8080 is not a counter API URL: it needs http:// or https:// and a host"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("builder error"), "{}", run.stderr);
}

#[tokio::test]
async fn a_count_the_api_would_refuse_is_refused_before_any_call() {
    for count in ["0", "1000001"] {
        // Nothing listens on port 9: a call would fail otherwise.
        let run = counterctl(&["increment", "tenants", "--url", "http://127.0.0.1:9", "--count", count]).await;
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains("is not a whole number from 1 to 1000000"), "{count}: {}", run.stderr);
        assert!(!run.stderr.contains("could not reach"), "{}", run.stderr);
    }
    let run = counterctl(&["increment", "tenants", "--url", "http://127.0.0.1:9", "--count", "1000000"]).await;
    assert!(run.stderr.contains("could not reach"), "the largest count is sent: {}", run.stderr);
}

#[tokio::test]
async fn a_counter_below_1_is_refused_by_set_and_by_import() {
    let dir = DataDir::new();
    std::fs::create_dir_all(dir.path()).unwrap();
    let counters = Counters::data_dir(dir.path());
    for at_least in ["0", "-5"] {
        let run = counters.run("set", &["tenants", "--at-least", at_least]).await;
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains("IDs are 1, 2, 3"), "{}", run.stderr);
    }
    let run = counters
        .run_with_stdin("import", &["-"], "{\"counter\":\"ok\",\"value\":4}\n{\"counter\":\"tenants\",\"value\":0}\n")
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("line 2") && run.stderr.contains("at least 1"), "{}", run.stderr);
    let listed = counters.run("list", &[]).await;
    assert!(listed.stderr.contains("there is no counter database"), "nothing was written: {}", listed.stderr);
    assert_eq!(counters.set("tenants", 1).await["value"], 1, "1 is the smallest");
    assert_eq!(counters.list().await, [("tenants".to_owned(), 1)]);
}

#[tokio::test]
async fn serve_listens_on_a_host_name_and_answers_405_on_its_own_routes() {
    let dir = DataDir::new();
    let serve = Serve::start_command(serve_command_on("localhost:0", dir.path())).await;
    assert_eq!(serve.increment("c").await, 1);
    for path in ["/healthz", "/metrics"] {
        let response = serve.http.post(format!("{}{path}", serve.url)).send().await.unwrap();
        assert_eq!(response.status(), 405, "POST {path}");
        assert_eq!(response.headers()["allow"], "GET");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error_code"], "method_not_allowed");
    }
    let health = serve.http.get(format!("{}/healthz", serve.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_key_flag_or_no_auth_outranks_the_key_in_the_environment() {
    const ENV_KEY: &str = "KEY-FROM-THE-ENVIRONMENT-0123";
    const FILE_KEY: &str = "KEY-FROM-THE-FILE-0123456789";
    let dir = DataDir::new();
    std::fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, FILE_KEY).unwrap();
    let mut command = serve_command_on("127.0.0.1:0", dir.path());
    command.arg("--api-key-file").arg(&file).env("COUNTERCTL_SERVE_API_KEY", ENV_KEY);
    let mut serve = Serve::start_command(command).await;
    let increment = |key: &str| {
        serve.http.post(format!("{}/counter/increment?counter=k", serve.url)).header("x-api-key", key.to_owned()).send()
    };
    assert_eq!(increment(FILE_KEY).await.unwrap().status(), 200);
    assert_eq!(increment(ENV_KEY).await.unwrap().status(), 403);
    serve
        .stderr_containing("--api-key-file is given, so COUNTERCTL_SERVE_API_KEY in the environment is not used")
        .await;
    serve.stop(nix::sys::signal::Signal::SIGTERM).await;

    let mut command = serve_command_on("127.0.0.1:0", dir.path());
    command.arg("--no-auth").env("COUNTERCTL_SERVE_API_KEY", ENV_KEY);
    let serve = Serve::start_command(command).await;
    assert_eq!(serve.increment("k").await, 2, "no key is needed");
    serve.stderr_containing("--no-auth is given").await;
}

#[tokio::test]
async fn counters_use_the_data_dir_serve_reads_from_the_environment() {
    let dir = DataDir::new();
    std::fs::create_dir_all(dir.path()).unwrap();
    let mut env = crate::support::cli::clean_environment();
    env.push(("COUNTERCTL_DATA_DIR", dir.path().display().to_string()));
    let set = crate::support::cli::counterctl_with_env(&["counters", "set", "tenants", "--at-least", "3"], &env).await;
    assert_eq!(set.code, 0, "{}", set.stderr);
    assert_eq!(Counters::data_dir(dir.path()).list().await, [("tenants".to_owned(), 3)]);
}

#[tokio::test]
async fn uninstall_dry_run_shows_what_it_would_delete_and_deletes_nothing() {
    let deployment = crate::support::cli::Deployment::new().await;
    deployment.install().await;
    let (run, mutations) = deployment.mutations_of(deployment.run("uninstall", &["--dry-run"])).await;
    let run = run.ok();
    assert_eq!(mutations, Vec::<String>::new(), "read calls only");
    assert!(run.stdout.contains("Dry run: nothing was deleted."), "{}", run.stdout);
    assert!(
        run.stdout.lines().any(|line| line.contains("function") && line.contains(&deployment.name)),
        "{}",
        run.stdout
    );
    assert!(deployment.function_exists().await);

    let json = deployment.run("uninstall", &["--dry-run", "--output", "json"]).await.ok().json();
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["up_to_date"], false);
    assert_eq!(json["table_kept"], true);
    let function = json["changes"].as_array().unwrap().iter().find(|change| change["resource"] == "function").unwrap();
    assert_eq!(function["action"], "delete", "{function}");
    assert!(deployment.function_exists().await);
}

#[tokio::test]
async fn uninstall_names_what_goes_with_the_function_and_says_kept_once() {
    let deployment = crate::support::cli::Deployment::new().await;
    deployment.run("install", &["--front", "function-url"]).await.ok();
    let plan = deployment.run("uninstall", &["--dry-run"]).await.ok().stdout;
    let function = plan.lines().find(|line| line.contains("function ") && line.contains(&deployment.name)).unwrap();
    assert!(
        function.ends_with("delete (uninstall, with its function URL)") || function.contains("with its function URL"),
        "{plan}"
    );
    assert!(!plan.contains("API Gateway permission"), "{plan}");
    assert!(!plan.contains("kept: kept"), "{plan}");
    assert!(plan.contains("kept: its counters stay"), "{plan}");
}

/// The first `Debug` form in `text`, such as `ServiceError { source: …` or
/// `ProviderError(ProviderError {`: a type name followed by ` { ` or by `(` and another.
fn debug_dump(text: &str) -> Option<&str> {
    let starts_type = |word: &str| word.chars().next().is_some_and(|first| first.is_ascii_uppercase());
    let type_name_before = |at: usize| {
        let word = text[..at].rsplit(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or_default();
        starts_type(word).then_some(word)
    };
    let braces = text.match_indices(" { ").find_map(|(at, _)| type_name_before(at).map(|_| &text[at..]));
    let parentheses = text.match_indices('(').find_map(|(at, _)| {
        let inside = text[at + 1..].split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or_default();
        (type_name_before(at).is_some() && starts_type(inside)).then(|| &text[at..])
    });
    braces.or(parentheses)
}

#[test]
fn the_debug_dump_finder_finds_the_sdks_debug_forms_and_not_plain_messages() {
    assert!(debug_dump("ProviderError(ProviderError { source: FailedToLoadToken(").is_some());
    assert!(debug_dump("dispatch failure (ServiceError { source: Unhandled").is_some());
    assert!(debug_dump("tcp connect error: Connection refused (os error 111)").is_none());
    assert!(debug_dump("hint: pass --region (e.g. --region us-east-1)").is_none());
}

#[tokio::test]
async fn aws_errors_show_their_causes_and_never_an_sdk_debug_dump() {
    let env = clean_environment();
    // Nothing listens on port 9.
    let refused = counterctl(&["status", "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1"]).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("Connection refused"), "the cause: {}", refused.stderr);

    // An endpoint that answers, but not as AWS does.
    let app = axum::Router::new().fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "<html>no such</html>") });
    let server = LoopbackServer::start(app).await;
    let url = format!("http://{}", server.address);
    let not_aws = counterctl(&["status", "--endpoint-url", &url, "--region", "us-east-1"]).await;
    assert_eq!(not_aws.code, 2, "{}", not_aws.stderr);

    // A profile signed in through SSO, with no token cached: the credentials fail.
    let home = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sso-home");
    std::fs::create_dir_all(&home).unwrap();
    let config = home.join("config");
    std::fs::write(
        &config,
        "[profile corp]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = Admin\nregion = us-east-1\n\
         [sso-session corp]\nsso_start_url = https://example.awsapps.com/start\nsso_region = us-east-1\n",
    )
    .unwrap();
    let sso_env: Vec<(&str, String)> = env
        .iter()
        .filter(|(key, _)| !key.starts_with("AWS_ACCESS_KEY_ID") && !key.starts_with("AWS_SECRET"))
        .cloned()
        .chain([("HOME", home.display().to_string()), ("AWS_CONFIG_FILE", config.display().to_string())])
        .collect();
    let sso = counterctl_with_env(&["status", "--profile", "corp", "--endpoint-url", &url], &sso_env).await;
    assert_eq!(sso.code, 2, "{}", sso.stderr);
    assert!(sso.stderr.starts_with("error: no AWS credentials were found"), "{}", sso.stderr);

    for run in [&refused, &not_aws, &sso] {
        assert_eq!(debug_dump(&run.stderr), None, "a Debug dump reached stderr: {}", run.stderr);
    }
}

#[tokio::test]
async fn status_names_the_install_that_fixes_the_difference_it_reports() {
    let deployment = crate::support::cli::Deployment::new().await;
    deployment.install().await;
    let status = deployment.run("status", &["--memory", "256", "--output", "text"]).await;
    assert_eq!(status.code, 1, "{}", status.stdout);
    let hint = status.stdout.lines().find(|line| line.starts_with("Run `")).expect("a hint").to_owned();
    let command = hint.trim_start_matches("Run `").split('`').next().unwrap();
    assert!(command.starts_with("counterctl install ") && command.ends_with(" --memory 256"), "{hint}");
    assert!(!command.contains("--output"), "status's own options stay out: {hint}");
    // Exactly that command fixes it.
    let args: Vec<&str> = command.split(' ').skip(1).collect();
    counterctl(&args).await.ok();
    let status = deployment.run("status", &["--memory", "256"]).await;
    assert_eq!(status.code, 0, "{}", status.stdout);
}

/// The help text `counterctl COMMAND --help` gives for `option`.
async fn help_of(command: &str, option: &str) -> String {
    let help = counterctl(&[command, "--help"]).await.ok().stdout;
    let heading = |line: &str| {
        let line = line.trim_start();
        line.starts_with("--") || (line.starts_with('-') && line.chars().nth(2) == Some(','))
    };
    let names_option = |line: &str| line.trim_start().split([' ', ',']).any(|word| word == option);
    let mut lines = help.lines().skip_while(|line| !(heading(line) && names_option(line)));
    let first = lines.next().unwrap_or_else(|| panic!("{option} is in the help: {help}"));
    // Its text and possible values, up to the next option.
    let text: Vec<&str> = lines.take_while(|line| !heading(line)).map(str::trim).collect();
    format!("{first} {}", text.join(" "))
}

#[tokio::test]
async fn help_says_an_option_not_given_keeps_what_is_deployed_and_gives_the_ranges() {
    for (option, default) in [
        ("--memory", "128"),
        ("--timeout", "15"),
        ("--rate-limit", "50"),
        ("--burst-limit", "100"),
        ("--architecture", "x86_64"),
        ("--log-retention-days", "30"),
        ("--max-concurrency", "off"),
    ] {
        let help = help_of("install", option).await;
        assert!(help.contains(&format!("[default: as deployed, else {default}]")), "{help}");
    }
    assert!(help_of("install", "--memory").await.contains("128-10240"));
    assert!(help_of("install", "--timeout").await.contains("15-900"));
    let name = help_of("install", "--name").await;
    assert!(name.contains("API key, usage plan"), "{name}");
    let policy = help_of("status", "--caller-policy").await;
    assert!(policy.contains("lambda:InvokeFunctionUrl"), "{policy}");
    let auth = help_of("install", "--auth").await;
    assert!(auth.contains("lambda:InvokeFunctionUrl"), "{auth}");
}

#[tokio::test]
async fn a_403_from_serve_says_it_wants_a_key_and_a_key_is_never_dropped_silently() {
    const KEY: &str = "SERVE-KEY-0123456789-abc";
    let serve = Serve::start_with(&["--api-key", KEY]).await;
    let without = counterctl(&["increment", "c", "--url", &serve.url]).await;
    assert_eq!(without.code, 2, "{}", without.stderr);
    assert!(without.stderr.contains("hint: this API needs its key: pass --api-key"), "{}", without.stderr);
    assert!(without.stderr.contains("for `counterctl serve`, the key it was started with"), "{}", without.stderr);
    assert!(!without.stderr.contains("API Gateway"), "serve is not API Gateway: {}", without.stderr);

    for auth in ["none", "iam"] {
        let both = counterctl(&["increment", "c", "--url", &serve.url, "--auth", auth, "--api-key", KEY]).await;
        assert_eq!(both.code, 2, "{}", both.stderr);
        assert!(
            both.stderr.contains(&format!("--auth {auth} sends no API key, and --api-key gives one")),
            "{}",
            both.stderr
        );
    }
    let mut env = clean_environment();
    env.push(("COUNTERCTL_API_KEY", KEY.to_owned()));
    let from_env = counterctl_with_env(&["increment", "c", "--url", &serve.url], &env).await.ok();
    assert_eq!(from_env.stdout.trim(), "1", "the key in the environment is sent");
    let outranked = counterctl_with_env(&["increment", "c", "--url", &serve.url, "--auth", "none"], &env).await;
    assert_eq!(outranked.code, 2, "--auth none sends no key, even one in the environment: {}", outranked.stderr);
    let after = counterctl_with_env(&["increment", "c", "--url", &serve.url], &env).await.ok();
    assert_eq!(after.stdout.trim(), "2", "refused calls took no ID");
}

#[tokio::test]
async fn install_and_uninstall_json_give_details_as_fields_and_reasons_as_reason() {
    let deployment = crate::support::cli::Deployment::new().await;
    deployment.install().await;
    let install = deployment.run("install", &["--memory", "256", "--dry-run", "--output", "json"]).await.ok().json();
    let function = install["changes"].as_array().unwrap().iter().find(|c| c["resource"] == "function").unwrap();
    assert_eq!(function["action"], "update");
    assert_eq!(function["details"], serde_json::json!([{"field": "memory", "from": "128 MB", "to": "256 MB"}]));
    let uninstall = deployment.run("uninstall", &["--dry-run", "--output", "json"]).await.ok().json();
    for change in uninstall["changes"].as_array().unwrap() {
        assert!(change.get("details").is_none_or(serde_json::Value::is_array), "{change}");
        if change["action"] == "delete" || change["action"] == "retain" {
            assert!(change["reason"].is_string(), "{change}");
        }
    }
    let table = uninstall["changes"].as_array().unwrap().iter().find(|c| c["resource"] == "table").unwrap();
    assert_eq!(table["reason"], "its counters stay (delete them with --delete-data)");
}

#[tokio::test]
async fn import_quotes_a_bad_value_as_the_line_has_it() {
    let dir = DataDir::new();
    std::fs::create_dir_all(dir.path()).unwrap();
    for written in ["1e3", "5.0", "\"7\""] {
        let line = format!("{{\"counter\":\"x\",\"value\":{written}}}\n");
        let import = Counters::data_dir(dir.path()).import(line).await;
        assert_eq!(import.code, 2, "{}", import.stderr);
        assert!(import.stderr.contains(&format!("\"value\" is {written}, not a 64-bit integer")), "{}", import.stderr);
    }
}

#[tokio::test]
async fn a_route_given_as_the_url_is_refused_and_makes_no_counter() {
    let dir = DataDir::new();
    let serve = Serve::start_command(serve_command_on("127.0.0.1:0", dir.path())).await;
    for url in [
        format!("{}/counter/increment?counter=tenants", serve.url),
        format!("{}/counter/value", serve.url),
        format!("{}?counter=tenants", serve.url),
    ] {
        let run = counterctl(&["increment", "tenants", "--url", &url]).await;
        assert_eq!(run.code, 2, "{url}: {}", run.stderr);
        assert!(run.stderr.contains("give the API's base URL, without a route or query"), "{}", run.stderr);
    }
    assert_eq!(Counters::data_dir(dir.path()).list().await, [], "no counter was made");
}

#[tokio::test]
async fn serve_refuses_a_data_dir_that_does_not_exist_and_says_when_it_starts_a_new_store() {
    let dir = DataDir::new();
    let missing = dir.path().join("mistyped");
    let run = crate::support::serve::serve_until_exit(serve_command_on("127.0.0.1:0", &missing)).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("a new one would be a new, empty store whose counters start at 1 again"),
        "{}",
        run.stderr
    );
    assert!(!missing.exists(), "nothing was created");

    let serve = Serve::start_command(serve_command_on("127.0.0.1:0", dir.path())).await;
    serve.stderr_containing("started a new, empty one (its counters start at 1)").await;
}

#[tokio::test]
async fn without_aws_the_hints_name_serves_url_and_data_dir() {
    let env: Vec<(&str, String)> = clean_environment();
    let increment = counterctl_with_env(&["increment", "tenants"], &env).await;
    assert_eq!(increment.code, 2, "{}", increment.stderr);
    assert!(
        increment.stderr.contains("hint: for `counterctl serve`, pass --url http://127.0.0.1:8080"),
        "{}",
        increment.stderr
    );
    let set = counterctl_with_env(&["counters", "set", "tenants", "--at-least", "5"], &env).await;
    assert_eq!(set.code, 2, "{}", set.stderr);
    assert!(
        set.stderr.contains("hint: for a `counterctl serve` data directory, pass --data-dir DIR"),
        "{}",
        set.stderr
    );
}

#[tokio::test]
async fn wrong_keys_and_signatures_at_serve_get_hints_that_apply() {
    const KEY: &str = "SERVE-KEY-0123456789-xyz";
    let serve = Serve::start_with(&["--api-key", KEY]).await;
    let wrong = counterctl(&["increment", "c", "--url", &serve.url, "--api-key", "WRONG-KEY-0123456789-xyz"]).await;
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("the API key sent (--api-key or COUNTERCTL_API_KEY) was refused"),
        "{}",
        wrong.stderr
    );
    let signed = counterctl(&["increment", "c", "--url", &serve.url, "--auth", "iam", "--region", "us-east-1"]).await;
    assert_eq!(signed.code, 2, "{}", signed.stderr);
    assert!(signed.stderr.contains("takes an API key, not a SigV4 signature"), "{}", signed.stderr);
}

#[tokio::test]
async fn status_metrics_refuses_a_window_under_a_minute() {
    let deployment = crate::support::cli::Deployment::new().await;
    let run = deployment.run("status", &["--metrics", "--since", "30s"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--since 30s is under a minute"), "{}", run.stderr);
}

#[tokio::test]
async fn counters_read_the_table_the_aws_commands_use_from_the_environment() {
    let deployment = crate::support::cli::Deployment::new().await;
    deployment.install().await;
    let mut env = clean_environment();
    env.push(("COUNTERCTL_TABLE", deployment.table.clone()));
    let proxy = deployment.proxy.url.as_str();
    let set = ["counters", "set", "tenants", "--at-least", "7", "--endpoint-url", proxy, "--region", "us-east-1"];
    // Another --name: only the variable says which table.
    let set = [&set[..], &["--name", "NoSuchStack"]].concat();
    assert_eq!(counterctl_with_env(&set, &env).await.ok().stdout, "tenants = 7 (created)\n");
    let list = Counters::table_at(&deployment.table, &deployment.proxy.url).list().await;
    assert_eq!(list, [("tenants".to_owned(), 7)]);
}

#[tokio::test]
async fn uninstall_of_a_stack_that_is_not_there_says_so() {
    let deployment = crate::support::cli::Deployment::new().await;
    let run = deployment.run("uninstall", &["--yes"]).await.ok();
    assert!(
        run.stdout.contains(&format!("Nothing of stack {} is left to delete in us-east-1", deployment.name)),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("Uninstalled."), "{}", run.stdout);
}

#[tokio::test]
async fn show_api_key_on_a_stack_without_keys_says_there_is_none() {
    let deployment = crate::support::cli::Deployment::new().await;
    deployment.run("install", &["--auth", "iam"]).await.ok();
    let status = deployment.run("status", &["--show-api-key"]).await.ok();
    assert!(status.stdout.contains("api key     none (--auth iam: callers send no key)"), "{}", status.stdout);
}

#[tokio::test]
async fn a_sidecar_whose_upstream_refuses_its_key_says_so_and_healthz_names_it_refused() {
    const KEY: &str = "UPSTREAM-KEY-0123456789-abc";
    let upstream = Serve::start_with(&["--api-key", KEY]).await;
    let sidecar =
        Serve::start_command(crate::support::serve::sidecar_command(&upstream.url, &clean_environment())).await;
    sidecar.stderr_containing("refuses this server (403): check --upstream-auth and --upstream-api-key-file").await;
    let health = sidecar.http.get(format!("{}/healthz", sidecar.url)).send().await.unwrap();
    assert_eq!(health.status(), 503);
    assert_eq!(health.json::<serde_json::Value>().await.unwrap()["upstream"], "refused");
}

#[tokio::test]
async fn install_names_the_status_that_shows_this_stacks_key() {
    let deployment = crate::support::cli::Deployment::new().await;
    let install = deployment.run("install", &["--memory", "256"]).await.ok();
    let status = format!(
        "`counterctl status --endpoint-url {} --region us-east-1 --name {} --table {} --show-api-key`",
        deployment.proxy.url, deployment.name, deployment.table
    );
    assert!(install.stdout.contains(&status), "the stack's options, not --memory: {}", install.stdout);
}

#[tokio::test]
async fn status_of_an_uninstalled_stack_names_the_install_that_picks_its_counters_up() {
    let deployment = crate::support::cli::Deployment::new().await;
    deployment.install().await;
    deployment.run("uninstall", &["--yes"]).await.ok();
    let proxy = deployment.proxy.url.as_str();
    let args = ["status", "--endpoint-url", proxy, "--region", "us-east-1", "--name", &deployment.name];
    let status = counterctl(&args).await;
    assert_eq!(status.code, 1, "a negative answer, not an error: {}", status.stderr);
    let install = format!(
        "Run `counterctl install --endpoint-url {proxy} --region us-east-1 --name {} --table {}`",
        deployment.name, deployment.table
    );
    assert!(status.stdout.contains("is not installed; its counters are in table"), "{}", status.stdout);
    assert!(status.stdout.contains(&install), "{}", status.stdout);

    let json = counterctl(&[&args[..], &["--output", "json"]].concat()).await;
    assert_eq!(json.code, 1, "{}", json.stderr);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON, as asked");
    assert_eq!((&json["installed"], &json["up_to_date"]), (&false.into(), &false.into()));
    assert_eq!(json["kept_table"], deployment.table.as_str());
    assert!(install.contains(json["install"].as_str().unwrap()), "{json}");
}
