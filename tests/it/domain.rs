//! The REST front's custom domain, against moto through the recording proxy: the domain,
//! its mapping and its alias record made and kept, removed by `--domain off` and by
//! uninstall, and every refusal made before anything is written.

use aws_sdk_route53::types::RrType;

use crate::support::cli::Deployment;

/// A domain of this test's own (moto is shared by the tests running at once).
pub(crate) fn domain_of(deployment: &Deployment) -> String {
    format!("{}.example.com", deployment.name.to_ascii_lowercase())
}

/// An ACM certificate for `names`: issued at once when a private CA signs it (moto),
/// else pending validation.
pub(crate) async fn certificate(deployment: &Deployment, names: &[&str], issued: bool) -> String {
    let acm = aws_sdk_acm::Client::new(&deployment.aws);
    let mut request = acm.request_certificate().domain_name(names[0]);
    for name in &names[1..] {
        request = request.subject_alternative_names(*name);
    }
    if issued {
        request = request.certificate_authority_arn("arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/ca");
    }
    request.send().await.unwrap().certificate_arn().unwrap().to_owned()
}

pub(crate) async fn hosted_zone(deployment: &Deployment) -> String {
    let route53 = aws_sdk_route53::Client::new(&deployment.aws);
    let zone = route53.create_hosted_zone().name(format!("{}.example.com", deployment.name.to_ascii_lowercase()));
    let zone = zone.caller_reference(&deployment.name).send().await.unwrap();
    zone.hosted_zone().unwrap().id().trim_start_matches("/hostedzone/").to_owned()
}

/// The domain as API Gateway has it, with its mappings `(base path, API, stage)`.
async fn domain(
    deployment: &Deployment,
    name: &str,
) -> Option<(aws_sdk_apigateway::operation::get_domain_name::GetDomainNameOutput, Vec<(String, String, String)>)> {
    let apigateway = deployment.apigateway();
    let domain = apigateway.get_domain_name().domain_name(name).send().await.ok()?;
    let mappings = apigateway.get_base_path_mappings().domain_name(name).send().await.unwrap();
    let field = |value: Option<&str>| value.unwrap_or_default().to_owned();
    let mappings =
        mappings.items().iter().map(|m| (field(m.base_path()), field(m.rest_api_id()), field(m.stage()))).collect();
    Some((domain, mappings))
}

/// The alias target of the `A` record `name` in `zone`, if there is one.
async fn alias_of(deployment: &Deployment, zone: &str, name: &str) -> Option<String> {
    let route53 = aws_sdk_route53::Client::new(&deployment.aws);
    let sets = route53.list_resource_record_sets().hosted_zone_id(zone).send().await.unwrap();
    sets.resource_record_sets()
        .iter()
        .find(|set| set.name().trim_end_matches('.') == name && set.r#type() == &RrType::A)
        .and_then(|set| set.alias_target())
        .map(|alias| alias.dns_name().trim_end_matches('.').to_owned())
}

#[tokio::test]
async fn install_with_a_domain_makes_it_mapped_and_aliased_and_a_rerun_writes_nothing() {
    let deployment = Deployment::new().await;
    let name = domain_of(&deployment);
    let arn = certificate(&deployment, &[&name], true).await;
    let zone = hosted_zone(&deployment).await;
    let install = deployment
        .run("install", &["--domain", &name, "--certificate-arn", &arn, "--hosted-zone-id", &zone])
        .await
        .ok();
    assert!(install.stdout.contains(&format!("Custom domain: https://{name}")), "{}", install.stdout);
    let (found, mappings) = domain(&deployment, &name).await.expect("the domain");
    assert_eq!(found.regional_certificate_arn(), Some(arn.as_str()));
    assert_eq!(found.security_policy().map(|p| p.as_str()), Some("TLS_1_2"));
    let types: Vec<&str> = found.endpoint_configuration().unwrap().types().iter().map(|t| t.as_str()).collect();
    assert_eq!(types, ["REGIONAL"]);
    assert_eq!(found.tags().unwrap().get("counterctl:stack"), Some(&deployment.name));
    let api = deployment.api_id().await.unwrap();
    assert_eq!(mappings, [("(none)".to_owned(), api, "prod".to_owned())]);
    let regional = found.regional_domain_name().unwrap().to_owned();
    assert_eq!(alias_of(&deployment, &zone, &name).await, Some(regional));

    let (run, mutations) = deployment.mutations_of(deployment.run("install", &[])).await;
    run.ok();
    assert_eq!(mutations, Vec::<String>::new(), "a re-run keeps the domain, its mapping and its record");
    let status = deployment.run("status", &[]).await;
    assert_eq!(status.code, 0, "{}", status.stdout);
    assert!(status.stdout.contains(&format!("custom url  https://{name}")), "{}", status.stdout);
    let json = deployment.run("status", &["--output", "json"]).await.ok().json();
    assert_eq!(json["custom_url"], format!("https://{name}"));

    deployment.run("install", &["--domain", "off"]).await.ok();
    assert!(domain(&deployment, &name).await.is_none(), "--domain off deletes the domain");
    assert_eq!(alias_of(&deployment, &zone, &name).await, None, "and the record counterctl made");
    let status = deployment.run("status", &[]).await;
    assert_eq!(status.code, 0, "no domain is kept so: {}", status.stdout);
}

#[tokio::test]
async fn without_a_zone_install_prints_the_record_and_uninstall_removes_the_domain() {
    let deployment = Deployment::new().await;
    let name = domain_of(&deployment);
    let arn = certificate(&deployment, &[&format!("*.{}", name.split_once('.').unwrap().1)], true).await;
    let install = deployment.run("install", &["--domain", &name, "--certificate-arn", &arn]).await.ok();
    let (found, _) = domain(&deployment, &name).await.expect("a wildcard certificate covers the name");
    let regional = found.regional_domain_name().unwrap();
    assert!(install.stdout.contains(&format!("DNS: point {name} at {regional}: a CNAME record")), "{}", install.stdout);
    let uninstall = deployment.run("uninstall", &["--yes"]).await.ok();
    assert!(uninstall.stdout.contains(&name), "{}", uninstall.stdout);
    assert!(domain(&deployment, &name).await.is_none(), "uninstall deletes the domain");
}

#[tokio::test]
async fn a_certificate_that_does_not_serve_the_domain_is_refused_before_any_write() {
    let deployment = Deployment::new().await;
    let name = domain_of(&deployment);
    let pending = certificate(&deployment, &[&name], false).await;
    let other = certificate(&deployment, &["other.example.org"], true).await;
    let elsewhere = "arn:aws:acm:eu-west-1:123456789012:certificate/0d8e2f3c-0000-4000-8000-000000000000";
    let missing = "arn:aws:acm:us-east-1:123456789012:certificate/0d8e2f3c-0000-4000-8000-000000000000";
    for (arn, says) in [
        (pending.as_str(), "is PENDING_VALIDATION, not ISSUED"),
        (other.as_str(), "does not cover"),
        (elsewhere, "is not in us-east-1"),
        (missing, "ACM has no certificate"),
    ] {
        let args = ["--domain", &name, "--certificate-arn", arn];
        let (refused, mutations) = deployment.mutations_of(deployment.run("install", &args)).await;
        assert_eq!(refused.code, 2, "{arn}: {}", refused.stderr);
        assert!(refused.stderr.contains(says), "{arn}: {}", refused.stderr);
        assert_eq!(mutations, Vec::<String>::new(), "{arn}: nothing is written");
    }
    let bad = deployment.run("install", &["--domain", "not a name", "--certificate-arn", &other]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("is not a DNS name"), "{}", bad.stderr);
}

#[tokio::test]
async fn a_domain_that_is_not_the_stacks_and_a_function_url_are_refused_before_any_write() {
    let deployment = Deployment::new().await;
    deployment.install().await;
    let name = domain_of(&deployment);
    let arn = certificate(&deployment, &[&name], true).await;
    // Somebody else's domain of that name, mapped to their own API.
    let apigateway = deployment.apigateway();
    let theirs = apigateway.create_rest_api().name(format!("{}-theirs", deployment.name)).send().await.unwrap();
    let theirs = theirs.id().unwrap().to_owned();
    apigateway.create_domain_name().domain_name(&name).regional_certificate_arn(&arn).send().await.unwrap();
    apigateway.create_base_path_mapping().domain_name(&name).rest_api_id(&theirs).send().await.unwrap();
    let args = ["--domain", &name, "--certificate-arn", &arn];
    let (refused, mutations) = deployment.mutations_of(deployment.run("install", &args)).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains(&format!("maps to API {theirs}")), "{}", refused.stderr);
    assert!(refused.stderr.contains("never takes one over"), "{}", refused.stderr);
    assert_eq!(mutations, Vec::<String>::new());

    let args = ["--front", "function-url", "--domain", "ids.example.net", "--certificate-arn", &arn];
    let (refused, mutations) = deployment.mutations_of(deployment.run("install", &args)).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("a function URL has no custom domains"), "{}", refused.stderr);
    assert_eq!(mutations, Vec::<String>::new());
}

#[tokio::test]
async fn a_switch_to_a_function_url_is_refused_until_the_domain_is_off() {
    let deployment = Deployment::new().await;
    let name = domain_of(&deployment);
    let arn = certificate(&deployment, &[&name], true).await;
    deployment.run("install", &["--domain", &name, "--certificate-arn", &arn]).await.ok();
    let (refused, mutations) =
        deployment.mutations_of(deployment.run("install", &["--front", "function-url", "--yes"])).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("pass --domain off with --front function-url"), "{}", refused.stderr);
    assert_eq!(mutations, Vec::<String>::new());
    deployment.run("install", &["--front", "function-url", "--domain", "off", "--yes"]).await.ok();
    assert!(domain(&deployment, &name).await.is_none());
}

#[tokio::test]
async fn a_record_of_that_name_counterctl_did_not_make_is_refused_before_any_write() {
    use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet};
    let deployment = Deployment::new().await;
    let name = domain_of(&deployment);
    let arn = certificate(&deployment, &[&name], true).await;
    let zone = hosted_zone(&deployment).await;
    // The name already points at a server of someone's.
    let set = ResourceRecordSet::builder().name(&name).r#type(RrType::A).ttl(60);
    let set = set.resource_records(ResourceRecord::builder().value("192.0.2.10").build().unwrap()).build().unwrap();
    let change = Change::builder().action(ChangeAction::Create).resource_record_set(set).build().unwrap();
    let route53 = aws_sdk_route53::Client::new(&deployment.aws);
    let batch = ChangeBatch::builder().changes(change).build().unwrap();
    route53.change_resource_record_sets().hosted_zone_id(&zone).change_batch(batch).send().await.unwrap();

    let args = ["--domain", &name, "--certificate-arn", &arn, "--hosted-zone-id", &zone];
    let (refused, mutations) = deployment.mutations_of(deployment.run("install", &args)).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("counterctl never overwrites one it did not make"), "{}", refused.stderr);
    assert_eq!(mutations, Vec::<String>::new());
}

#[tokio::test]
async fn after_an_install_whose_record_failed_a_plain_status_names_the_missing_record_and_exits_1() {
    let deployment = Deployment::new().await;
    let name = domain_of(&deployment);
    let arn = certificate(&deployment, &[&name], true).await;
    let zone = hosted_zone(&deployment).await;
    let refused = crate::support::aws_proxy::Fault::new(400, "InvalidInput", "injected: the record is refused");
    deployment.proxy.inject("POST /2013-04-01/hostedzone/*/rrset", refused, 1);
    let failed =
        deployment.run("install", &["--domain", &name, "--certificate-arn", &arn, "--hosted-zone-id", &zone]).await;
    assert_eq!(failed.code, 2, "the record's write failed: {}", failed.stderr);
    assert_eq!(alias_of(&deployment, &zone, &name).await, None);

    // The zone was recorded on the domain before the record was written.
    let status = deployment.run("status", &[]).await;
    assert_eq!(status.code, 1, "{}", status.stdout);
    assert!(status.stdout.lines().any(|line| line.contains("record") && line.contains("missing")), "{}", status.stdout);
    deployment.run("install", &[]).await.ok();
    assert!(alias_of(&deployment, &zone, &name).await.is_some(), "a plain re-run makes the record");
}
