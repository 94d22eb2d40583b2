//! A stack whose resources CloudFormation made (tagged `aws:cloudformation:stack-name`, as
//! the tests set it, as CloudFormation does): install, uninstall and rollback refuse before
//! any write and name the CloudFormation stack; status reports it; the commands that only
//! read or call keep working.

use crate::support::cli::{ACCOUNT, Deployment, REGION, Run, counterctl};

pub(crate) const CLOUDFORMATION_TAG: &str = "aws:cloudformation:stack-name";

/// `counterctl counters ARGS` for the stack, through its proxy.
async fn counters(stack: &Deployment, args: &[&str]) -> Run {
    let aws = ["--endpoint-url", &stack.proxy.url, "--region", REGION, "--name", &stack.name, "--table", &stack.table];
    counterctl(&[&["counters"][..], args, &aws[..]].concat()).await
}

/// Tags the stack's function, table and role as CloudFormation tags what it creates.
async fn made_by_cloudformation(stack: &Deployment, owner: &str) {
    let function = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}", stack.name);
    stack.lambda().tag_resource().resource(function).tags(CLOUDFORMATION_TAG, owner).send().await.unwrap();
    let table = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{}", stack.table);
    let tag = aws_sdk_dynamodb::types::Tag::builder().key(CLOUDFORMATION_TAG).value(owner).build().unwrap();
    stack.dynamodb().tag_resource().resource_arn(table).tags(tag).send().await.unwrap();
    let tag = aws_sdk_iam::types::Tag::builder().key(CLOUDFORMATION_TAG).value(owner).build().unwrap();
    stack.iam().tag_role().role_name(&stack.name).tags(tag).send().await.unwrap();
}

#[tokio::test]
async fn install_uninstall_and_rollback_refuse_a_stack_cloudformation_made_and_write_nothing() {
    let stack = Deployment::new().await;
    stack.install().await;
    stack.run("install", &["--memory", "256"]).await.ok();
    made_by_cloudformation(&stack, "ids-prod").await;

    for (command, args, says) in [
        ("install", &["--memory", "512"][..], "update that stack"),
        ("install", &[][..], "update that stack"),
        ("uninstall", &["--yes"][..], "aws cloudformation delete-stack --stack-name ids-prod"),
        ("uninstall", &["--yes", "--delete-data"][..], "DeletionPolicy Retain"),
        ("rollback", &["--yes"][..], "template of stack ids-prod"),
    ] {
        let (run, mutations) = stack.mutations_of(stack.run(command, args)).await;
        assert_eq!(run.code, 2, "{command} {args:?}: {}", run.stderr);
        assert!(run.stderr.contains("CloudFormation stack ids-prod") && run.stderr.contains(says), "{}", run.stderr);
        assert_eq!(mutations, Vec::<String>::new(), "{command} {args:?}");
    }
    assert!(stack.function_exists().await && stack.table_exists().await);

    // Status reports it, and what reads the stack keeps working.
    let status = stack.run("status", &[]).await;
    assert_eq!(status.code, 0, "{}", status.stdout);
    assert!(status.stdout.contains("CloudFormation stack ids-prod made this stack's resources"), "{}", status.stdout);
    let json = stack.run("status", &["--output", "json"]).await.json();
    assert_eq!(json["cloudformation_stack"], "ids-prod");
    stack.run("status", &["--metrics"]).await.ok();
    stack.run("status", &["--caller-policy"]).await.ok();
    stack.put_counter(&stack.table, "tenants", 41).await;
    let listed = counters(&stack, &["list"]).await.ok();
    assert!(listed.stdout.contains("tenants") && listed.stdout.contains("41"), "{}", listed.stdout);
    let (raised, mutations) = stack.mutations_of(counters(&stack, &["set", "tenants", "--at-least", "50"])).await;
    raised.ok();
    assert_eq!(mutations, ["UpdateItem"], "counters raise in the table, not the stack");
}

#[tokio::test]
async fn a_table_alone_made_by_cloudformation_is_refused_before_install_makes_anything() {
    let stack = Deployment::new().await;
    crate::support::create_counter_table(&stack.dynamodb(), &stack.table).await;
    let table = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{}", stack.table);
    let tag = aws_sdk_dynamodb::types::Tag::builder().key(CLOUDFORMATION_TAG).value("shared-data").build().unwrap();
    stack.dynamodb().tag_resource().resource_arn(table).tags(tag).send().await.unwrap();
    let (run, mutations) = stack.mutations_of(stack.run("install", &[])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("table {} of stack", stack.table)), "{}", run.stderr);
    assert_eq!(mutations, Vec::<String>::new());
}
