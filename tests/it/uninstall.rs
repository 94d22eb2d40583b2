//! `counterctl uninstall`: deletes the stack, keeps the counters unless told otherwise.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::support::aws_proxy::Fault;
use crate::support::cli::Deployment;

async fn last_value(stack: &Deployment, name: &str) -> String {
    let get = stack.dynamodb().get_item().table_name(&stack.table).key("id", AttributeValue::S(name.into()));
    get.send().await.unwrap().item.unwrap()["lastValue"].as_n().unwrap().clone()
}

#[tokio::test]
async fn uninstall_deletes_the_stack_but_keeps_the_table_and_its_counters() {
    let stack = Deployment::new().await;
    stack.install().await;
    stack.put_counter(&stack.table, "orders", 1234).await;

    let run = stack.run("uninstall", &["--yes"]).await.ok();
    assert!(run.stdout.contains(&format!("table {} and its counters are kept", stack.table)), "{}", run.stdout);
    assert_eq!(stack.api_id().await, None);
    assert!(!stack.function_exists().await && !stack.role_exists().await);
    let apigateway = stack.apigateway();
    let keys = apigateway.get_api_keys().name_query(&stack.name).send().await.unwrap();
    assert!(keys.items().iter().all(|key| key.name() != Some(&stack.name)));
    let plans = apigateway.get_usage_plans().send().await.unwrap();
    assert!(plans.items().iter().all(|plan| plan.name() != Some(&stack.name)));
    assert_eq!(last_value(&stack, "orders").await, "1234");

    let log_group = format!("/aws/lambda/{}", stack.name);
    let groups = stack.logs().describe_log_groups().log_group_name_prefix(&log_group).send().await.unwrap();
    assert!(groups.log_groups().iter().all(|group| group.log_group_name() != Some(&log_group)), "log group deleted");

    let again = stack.run("uninstall", &["--yes"]).await.ok();
    assert!(again.stdout.contains("is left to delete"), "a second uninstall succeeds: {}", again.stdout);
    assert!(again.stdout.contains(&format!("--table {}` picks them up again", stack.table)), "{}", again.stdout);
    // Without --table too, it names the table it kept, not the default.
    let proxy = stack.proxy.url.as_str();
    let args = ["uninstall", "--yes", "--endpoint-url", proxy, "--region", "us-east-1", "--name", &stack.name];
    let without_table = crate::support::cli::counterctl(&args).await.ok();
    let row = without_table.stdout.lines().find(|line| line.contains(" table ")).unwrap_or_default().to_owned();
    assert!(row.contains(&stack.table) && row.contains("its counters stay"), "{}", without_table.stdout);

    // A re-install without --table does not start over in a new, empty table: the
    // message names the table, and with it the counters are picked up again.
    // It repeats where the uninstall looked (moto here).
    let pick_up = format!(
        "counterctl install --endpoint-url {} --region us-east-1 --name {} --table {}",
        stack.proxy.url, stack.name, stack.table
    );
    assert!(run.stdout.contains(&pick_up), "{}", run.stdout);
    let args = ["install", "--endpoint-url", &stack.proxy.url, "--region", crate::support::cli::REGION];
    let refused = crate::support::cli::counterctl(&[&args[..], &["--name", &stack.name]].concat()).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains(&format!("its counters are in table(s) {}", stack.table)), "{}", refused.stderr);
    stack.install().await;
    let config = stack.lambda().get_function_configuration().function_name(&stack.name).send().await.unwrap();
    assert_eq!(config.environment().unwrap().variables().unwrap()["TABLE_NAME"], stack.table);
    assert_eq!(last_value(&stack, "orders").await, "1234", "counters and all");
}

#[tokio::test]
async fn delete_data_deletes_the_table_after_saying_how_many_items_it_holds() {
    let stack = Deployment::new().await;
    stack.install().await;
    stack.put_counter(&stack.table, "a", 1).await;
    stack.put_counter(&stack.table, "b", 2).await;
    let (run, mutations) = stack.mutations_of(stack.run("uninstall", &["--delete-data", "--yes"])).await;
    let run = run.ok();
    assert_eq!(mutations[mutations.len() - 2..], ["UpdateTable", "DeleteTable"], "deletion protection off first");
    assert!(run.stdout.contains(&format!("table {} and its 2 items WILL BE DELETED", stack.table)), "{}", run.stdout);
    assert!(run.stdout.contains("would hand out IDs that were already issued"), "{}", run.stdout);
    assert!(!stack.table_exists().await);
}

#[tokio::test]
async fn uninstall_without_yes_and_without_a_terminal_refuses_and_deletes_nothing() {
    let stack = Deployment::new().await;
    stack.install().await;
    let (run, mutations) = stack.mutations_of(stack.run("uninstall", &[])).await;
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("hint: pass --yes"), "{}", run.stderr);
    assert_eq!(mutations, Vec::<String>::new());
}

#[tokio::test]
async fn delete_rest_api_throttling_is_waited_out_at_its_quota() {
    let stack = Deployment::new().await;
    stack.install().await;
    let throttled = Fault::new(429, "TooManyRequestsException", "Too Many Requests");
    // The SDK makes 5 attempts; the sixth comes after the quota's 30 s.
    stack.proxy.inject("DELETE /restapis/*", throttled, 6);
    let started = std::time::Instant::now();
    stack.run("uninstall", &["--yes"]).await.ok();
    let attempts = stack.proxy.actions().iter().filter(|action| action.starts_with("DELETE /restapis/")).count();
    assert_eq!(attempts, 7, "six throttled, the seventh deletes");
    assert!(started.elapsed() >= std::time::Duration::from_secs(30), "a pause of the quota's period");
    assert_eq!(stack.api_id().await, None);
}
