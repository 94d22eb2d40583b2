//! `status --operator-policy`, checked against what a whole lifecycle calls: every AWS
//! request of install (each option, front and auth switches, alarms and domain on and
//! off), status, counters and uninstall, recorded by the proxy and authorized as IAM
//! would (support/iam.rs), is allowed by the printed policy; every action the policy
//! grants was needed at least once; and parliament finds nothing in it.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::cli::{Deployment, counterctl};
use crate::support::iam::{authorizations, statement_allows};
use crate::support::repo_root;

async fn issued_certificate(deployment: &Deployment, name: &str) -> String {
    let acm = aws_sdk_acm::Client::new(&deployment.aws);
    let request = acm.request_certificate().domain_name(name);
    // moto issues a certificate a private CA signs at once.
    let request = request.certificate_authority_arn("arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/ca");
    request.send().await.unwrap().certificate_arn().unwrap().to_owned()
}

async fn hosted_zone(deployment: &Deployment, name: &str) -> String {
    let route53 = aws_sdk_route53::Client::new(&deployment.aws);
    let zone = route53.create_hosted_zone().name(name).caller_reference(&deployment.name).send().await.unwrap();
    zone.hosted_zone().unwrap().id().trim_start_matches("/hostedzone/").to_owned()
}

#[tokio::test]
async fn the_operator_policy_allows_every_call_of_a_whole_lifecycle_and_grants_nothing_unused() {
    let deployment = Deployment::new().await;
    let name = deployment.name.clone();
    let domain = format!("{}.example.com", name.to_ascii_lowercase());
    let certificate = issued_certificate(&deployment, &domain).await;
    let zone = hosted_zone(&deployment, &domain).await;
    // A log group made before install, which install adopts and tags.
    let logs = deployment.logs();
    logs.create_log_group().log_group_name(format!("/aws/lambda/{name}")).send().await.unwrap();

    // The policy of a stack with no options given covers what every read calls.
    let plain = deployment.run("status", &["--operator-policy"]).await.ok().json();
    deployment.run("status", &[]).await;
    let reads: Vec<_> = deployment.proxy.recorded().iter().flat_map(authorizations).collect();
    let plain_statements = plain["Statement"].as_array().unwrap();
    let refused: Vec<String> = reads
        .iter()
        .filter(|read| !plain_statements.iter().any(|statement| statement_allows(statement, read)))
        .map(|read| format!("{} on {}", read.action, read.resource))
        .collect();
    assert!(refused.is_empty(), "a plain stack's reads are not all allowed:\n{}", refused.join("\n"));

    let full = ["--alarm-email", "ops@example.com", "--domain", &domain, "--certificate-arn", &certificate];
    let full: Vec<&str> = full.iter().copied().chain(["--hosted-zone-id", zone.as_str()]).collect();
    deployment.run("install", &full).await.ok();
    let policy = deployment.run("status", &[&full[..], &["--operator-policy"]].concat()).await.ok().json();

    // An arm64 build is given (this counterctl bundles x86_64 only); the next change
    // moves back to the bundled x86_64 build.
    let arm64_zip = std::env::temp_dir().join(format!("{name}-arm64.zip"));
    let mut zip = std::fs::read(crate::support::repo_root().join("assets/bootstrap-x86_64.zip")).unwrap();
    zip.extend_from_slice(b"stands in for an arm64 build");
    std::fs::write(&arm64_zip, zip).unwrap();
    let arm64_zip = arm64_zip.display().to_string();
    let changes: &[&[&str]] = &[
        &["--memory", "256", "--timeout", "30", "--log-retention-days", "14", "--rate-limit", "20"],
        &["--burst-limit", "40", "--max-concurrency", "5"],
        &["--max-concurrency", "off", "--architecture", "arm64", "--function-zip", &arm64_zip],
        &["--auth", "iam", "--yes", "--architecture", "x86_64"],
        &["--auth", "api-key", "--yes"],
        &["--alarm-email", "pager@example.com"],
        &["--alarms", "off"],
        &["--alarms", "on", "--alarm-email", "ops@example.com"],
        // Two more versions: past the five kept, the oldest is deleted.
        &["--memory", "300"],
        &["--timeout", "40"],
    ];
    for options in changes {
        deployment.run("install", options).await.ok();
    }
    // A trust policy changed by hand is put back.
    let iam = deployment.iam();
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    iam.update_assume_role_policy().role_name(&name).policy_document(trust).send().await.unwrap();
    deployment.run("install", &[]).await.ok();
    // An API deleted by accident is made anew, and the domain mapped to it.
    let api = deployment.api_id().await.unwrap();
    deployment.apigateway().delete_rest_api().rest_api_id(api).send().await.unwrap();
    deployment.run("install", &[]).await.ok();
    for options in [
        &["--domain", "off"][..],
        &["--front", "function-url", "--yes"],
        &["--auth", "none", "--yes"],
        &["--front", "rest", "--auth", "api-key", "--yes"],
    ] {
        deployment.run("install", options).await.ok();
    }
    deployment.run("status", &[]).await.ok();
    deployment.run("status", &["--metrics"]).await.ok();
    let proxy = deployment.proxy.url.as_str();
    let aws = ["--endpoint-url", proxy, "--region", "us-east-1", "--name", &name, "--table", &deployment.table];
    for command in
        [&["counters", "set", "tenants", "--at-least", "5"][..], &["counters", "list"], &["counters", "export"]]
    {
        counterctl(&[command, &aws[..]].concat()).await.ok();
    }

    // A managed policy on the role, which uninstall detaches first.
    let managed = iam.create_policy().policy_name(format!("{name}-extra")).policy_document(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}]}"#,
    );
    let managed = managed.send().await.unwrap().policy().unwrap().arn().unwrap().to_owned();
    iam.attach_role_policy().role_name(&name).policy_arn(managed).send().await.unwrap();
    deployment.run("uninstall", &["--yes"]).await.ok();
    // Without --table, status looks for the tables an uninstall kept, among all of the
    // region's, such as another team's.
    crate::support::create_counter_table(&deployment.dynamodb(), &format!("{name}-other")).await;
    let kept = counterctl(&["status", "--endpoint-url", proxy, "--region", "us-east-1", "--name", &name]).await;
    assert_eq!(kept.code, 1, "not installed, with its kept table: {}", kept.stdout);
    deployment.run("install", &[]).await.ok();
    deployment.run("uninstall", &["--delete-data", "--yes"]).await.ok();
    deployment.proxy.settle().await;

    let statements = policy["Statement"].as_array().expect("statements");
    let needed: Vec<_> = deployment.proxy.recorded().iter().flat_map(authorizations).collect();
    let refused: BTreeSet<String> = needed
        .iter()
        .filter(|authorization| !statements.iter().any(|statement| statement_allows(statement, authorization)))
        .map(|authorization| format!("{} on {}", authorization.action, authorization.resource))
        .collect();
    assert!(
        refused.is_empty(),
        "not allowed by the printed policy:\n{}",
        refused.into_iter().collect::<Vec<_>>().join("\n")
    );
    let mut unused = Vec::new();
    for statement in statements {
        for action in statement["Action"].as_array().unwrap().iter().map(|action| action.as_str().unwrap()) {
            // The statement with this action alone.
            let mut only = statement.clone();
            only["Action"] = Value::from(action);
            if !needed.iter().any(|authorization| statement_allows(&only, authorization)) {
                unused.push(format!("{} in {}", action, statement["Sid"]));
            }
        }
    }
    assert!(unused.is_empty(), "granted and never needed:\n{}", unused.join("\n"));

    let parliament = tokio::process::Command::new(repo_root().join(".venv/bin/parliament"))
        .arg("--json")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut parliament =
        parliament.expect("parliament is installed in the project's venv (scripts/requirements-test.txt)");
    let mut stdin = parliament.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, policy.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let findings = parliament.wait_with_output().await.unwrap();
    let findings = String::from_utf8_lossy(&findings.stdout);
    assert_eq!(findings.trim(), "", "parliament's findings");
}
