//! Install when AWS misbehaves: eventual consistency, and a failure at any step.

use crate::support::aws_proxy::Fault;
use crate::support::cli::Deployment;

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
    let attempts = stack.proxy.actions().iter().filter(|action| *action == CREATE_FUNCTION).count();
    assert_eq!(attempts, 3, "two refused, the third accepted");
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
    assert_eq!(stack.proxy.actions().iter().filter(|action| *action == CREATE_FUNCTION).count(), 1);
}

/// Every mutating call of a fresh install, failed in turn: a re-run converges, and
/// uninstall works from the partial state and keeps the table.
#[tokio::test]
async fn an_install_interrupted_at_any_step_converges_on_a_rerun_and_uninstalls() {
    let reference = Deployment::new().await;
    let (_, mutations) = reference.mutations_of(reference.install()).await;
    assert!(mutations.len() >= 15, "a fresh install makes each resource: {mutations:?}");

    // A few at a time: moto is shared with the other tests.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
    let mut cases = tokio::task::JoinSet::new();
    for step in 1..=mutations.len() {
        for uninstall_right_away in [false, true] {
            let slots = std::sync::Arc::clone(&slots);
            cases.spawn(async move {
                let _slot = slots.acquire().await.unwrap();
                if uninstall_right_away {
                    interrupt_then_uninstall(step).await
                } else {
                    interrupt_then_rerun(step).await
                }
            });
        }
    }
    while let Some(case) = cases.join_next().await {
        case.unwrap();
    }
}

fn access_denied() -> Fault {
    Fault::new(403, "AccessDeniedException", "injected: not allowed")
}

async fn interrupt_then_rerun(step: usize) {
    let stack = Deployment::new().await;
    stack.proxy.fail_nth_mutating(step, access_denied());
    let failed = stack.run("install", &[]).await;
    assert_ne!(failed.code, 0, "step {step}: {}", failed.stdout);
    assert!(failed.stderr.contains("AccessDenied"), "step {step}: {}", failed.stderr);
    stack.proxy.settle().await;

    stack.install().await;
    stack.run("status", &[]).await.ok();
    let (_, mutations) = stack.mutations_of(stack.install()).await;
    assert_eq!(mutations, Vec::<String>::new(), "step {step}: converged");
    assert_eq!(stack.permission_statements().await.len(), 1, "step {step}");
}

async fn interrupt_then_uninstall(step: usize) {
    let stack = Deployment::new().await;
    stack.proxy.fail_nth_mutating(step, access_denied());
    assert_ne!(stack.run("install", &[]).await.code, 0, "step {step}");
    stack.proxy.settle().await;
    let table_made = stack.table_exists().await;

    stack.run("uninstall", &["--yes"]).await.ok();
    assert!(!stack.function_exists().await && !stack.role_exists().await, "step {step}");
    assert_eq!(stack.api_id().await, None, "step {step}");
    assert_eq!(stack.table_exists().await, table_made, "step {step}: the table is kept");
    stack.run("uninstall", &["--yes"]).await.ok();
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
