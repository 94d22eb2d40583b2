//! The REST front's custom domain (`--domain NAME --certificate-arn ARN`): a regional API
//! Gateway domain name with TLS 1.2, tagged like everything else, its base path mapping
//! to the stack's API and stage, and with `--hosted-zone-id` the Route 53 alias record
//! to it. The zone is kept in a tag of the domain, so a later run knows where the record
//! is. A domain that is not the stack's is never taken over.

use std::collections::HashMap;

use anyhow::Context;
use aws_sdk_apigateway::Client;
use aws_sdk_apigateway::types::{EndpointConfiguration, EndpointType, Op, SecurityPolicy};
use aws_sdk_route53::client::Waiters;
use aws_sdk_route53::types::{AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecordSet, RrType};

use super::apigateway::{NOT_FOUND, patch, tag_with};
use crate::aws::{AwsError, Clients, Operation, found, gone};
use crate::change::{
    Action, Changes, Delete, Deletion, Diff, Field, Planned, Refusal, Resource, RowList, Rows, diff, rows,
};
use crate::stack::Stack;

/// The tag of a domain that names the hosted zone counterctl keeps its record in.
const ZONE_TAG: &str = "counterctl:hosted-zone";
/// API Gateway's name for a mapping of the domain's root (no base path).
const ROOT: &str = "(none)";
/// Route 53 answers a change `PENDING` until every name server has it
/// (https://docs.aws.amazon.com/Route53/latest/APIReference/API_GetChange.html).
const RECORD_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// One custom domain as deployed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DomainState {
    pub(crate) name: String,
    pub(crate) tagged: bool,
    pub(crate) certificate_arn: Option<String>,
    pub(crate) security_policy: Option<String>,
    /// Where its alias record points: `d-….execute-api.REGION.amazonaws.com`.
    pub(crate) regional_domain_name: String,
    pub(crate) regional_zone_id: String,
    /// `(base path, API id, stage)`.
    pub(crate) mappings: Vec<(String, String, String)>,
    /// The zone of the record counterctl made, from the domain's tag.
    pub(crate) zone: Option<String>,
    /// The `A` record of that name in that zone, if there is one.
    pub(crate) record: Option<Record>,
}

/// An `A` alias record as found in a zone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// Its alias target's DNS name, without the final dot; `None` for a plain `A` record.
    pub(crate) alias_to: Option<String>,
    /// The set, to delete it exactly (Route 53 deletes only an exact match).
    pub(crate) set: ResourceRecordSet,
}

/// A certificate as ACM describes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CertificateState {
    pub(crate) arn: String,
    /// `ISSUED`, `PENDING_VALIDATION`, `EXPIRED`, …
    pub(crate) status: String,
    /// Its domain name and subject alternative names.
    pub(crate) names: Vec<String>,
}

/// Reads the stack's domains (tagged as its own) and the one named `asked`, with their
/// mappings and records.
pub(crate) async fn read(
    clients: &Clients,
    stack_name: &str,
    asked: Option<&str>,
) -> Result<Vec<DomainState>, AwsError> {
    let mut pages = clients.apigateway.get_domain_names().limit(500).into_paginator().send();
    let mut chosen = Vec::new();
    while let Some(page) = pages.next().await {
        for domain in page.op("apigateway:GetDomainNames")?.items() {
            let name = domain.domain_name().unwrap_or_default();
            if Stack::tagged_map(stack_name, domain.tags()) || asked == Some(name) {
                chosen.push(domain.clone());
            }
        }
    }
    let states = chosen.into_iter().map(|domain| async move {
        let name = domain.domain_name().unwrap_or_default().to_owned();
        let zone = domain.tags().and_then(|tags| tags.get(ZONE_TAG)).cloned();
        let (mappings, record) = tokio::try_join!(mappings(&clients.apigateway, &name), async {
            match &zone {
                Some(zone) => record(&clients.route53, zone, &name).await,
                None => Ok(None),
            }
        })?;
        Ok::<_, AwsError>(DomainState {
            tagged: Stack::tagged_map(stack_name, domain.tags()),
            certificate_arn: domain.regional_certificate_arn().map(str::to_owned),
            security_policy: domain.security_policy().map(|policy| policy.as_str().to_owned()),
            regional_domain_name: domain.regional_domain_name().unwrap_or_default().to_owned(),
            regional_zone_id: domain.regional_hosted_zone_id().unwrap_or_default().to_owned(),
            mappings,
            zone,
            record,
            name,
        })
    });
    futures_util::future::try_join_all(states).await
}

async fn mappings(client: &Client, name: &str) -> Result<Vec<(String, String, String)>, AwsError> {
    let read = client.get_base_path_mappings().domain_name(name).limit(500).send().await;
    let Some(mappings) = found("apigateway:GetBasePathMappings", read, NOT_FOUND)? else {
        return Ok(Vec::new());
    };
    let field = |value: Option<&str>| value.unwrap_or_default().to_owned();
    Ok(mappings
        .items()
        .iter()
        .map(|mapping| (field(mapping.base_path()), field(mapping.rest_api_id()), field(mapping.stage())))
        .collect())
}

/// The `A` record named `name` in `zone`: the list starts at that name and type.
pub(crate) async fn record(
    client: &aws_sdk_route53::Client,
    zone: &str,
    name: &str,
) -> Result<Option<Record>, AwsError> {
    let list = client.list_resource_record_sets().hosted_zone_id(zone).start_record_name(name);
    let list = list.start_record_type(RrType::A).max_items(1).send().await;
    let Some(sets) = found("route53:ListResourceRecordSets", list, &["NoSuchHostedZone"])? else {
        return Ok(None);
    };
    // Route 53 answers names fully qualified, with the final dot.
    let same_name =
        |set: &ResourceRecordSet| set.name().trim_end_matches('.').eq_ignore_ascii_case(name.trim_end_matches('.'));
    Ok(sets.resource_record_sets().iter().find(|set| same_name(set) && set.r#type() == &RrType::A).map(|set| Record {
        alias_to: set.alias_target().map(|alias| alias.dns_name().trim_end_matches('.').to_owned()),
        set: set.clone(),
    }))
}

/// ACM's description of `arn`; `None` when there is no such certificate.
pub(crate) async fn certificate(client: &aws_sdk_acm::Client, arn: &str) -> Result<Option<CertificateState>, AwsError> {
    let describe = client.describe_certificate().certificate_arn(arn).send().await;
    let Some(described) = found("acm:DescribeCertificate", describe, &["ResourceNotFoundException"])? else {
        return Ok(None);
    };
    let certificate = described.certificate();
    let mut names: Vec<String> = certificate.and_then(|c| c.domain_name()).map(str::to_owned).into_iter().collect();
    names.extend(certificate.map(|c| c.subject_alternative_names().to_vec()).unwrap_or_default());
    names.dedup();
    let status = certificate.and_then(|c| c.status()).map(|status| status.as_str().to_owned()).unwrap_or_default();
    Ok(Some(CertificateState { arn: arn.to_owned(), status, names }))
}

/// Whether a certificate for `names` serves `domain`: by its name, or a wildcard one
/// label up (`*.example.com` covers `ids.example.com`, not `a.ids.example.com`).
pub(crate) fn covers(names: &[String], domain: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    names.iter().map(|name| name.to_ascii_lowercase()).any(|name| match name.strip_prefix("*.") {
        Some(parent) => domain.split_once('.').is_some_and(|(_, rest)| rest == parent),
        None => name == domain,
    })
}

/// The domain the stack wants.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WantedDomain {
    pub(crate) name: String,
    pub(crate) certificate_arn: String,
    /// `--hosted-zone-id`: counterctl keeps the alias record there.
    pub(crate) zone: Option<String>,
}

/// Checks the certificate for `wanted` in `region`: ACM's, in that region, issued, and
/// covering the name.
pub(crate) fn check_certificate(
    wanted: &WantedDomain,
    certificate: Option<&CertificateState>,
    region: &str,
) -> Result<(), Refusal> {
    let arn = &wanted.certificate_arn;
    let certificate_region = arn.split(':').nth(3).unwrap_or_default();
    if certificate_region != region {
        return Err(Refusal::CertificateRegion { arn: arn.clone(), region: region.to_owned() });
    }
    let Some(certificate) = certificate else {
        return Err(Refusal::CertificateNotFound { arn: arn.clone() });
    };
    if certificate.status != "ISSUED" {
        return Err(Refusal::CertificateNotIssued { arn: arn.clone(), status: certificate.status.clone() });
    }
    if !covers(&certificate.names, &wanted.name) {
        let names = certificate.names.join(", ");
        return Err(Refusal::CertificateNotCovering { arn: arn.clone(), name: wanted.name.clone(), names });
    }
    Ok(())
}

/// What changes on the domain itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct DomainChange {
    pub(crate) certificate: Option<Diff>,
    pub(crate) security_policy: Option<Diff>,
    /// The zone tag, to a new `--hosted-zone-id`.
    pub(crate) zone: Option<Diff>,
}

impl Changes for DomainChange {
    fn diffs(&self) -> Vec<Diff> {
        [&self.certificate, &self.security_policy, &self.zone].into_iter().flatten().cloned().collect()
    }
}

/// What changes on the mapping: the API or the stage it maps to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MappingChange {
    pub(crate) target: Diff,
}

impl Changes for MappingChange {
    fn diffs(&self) -> Vec<Diff> {
        vec![self.target.clone()]
    }
}

/// What changes on the record: where it points.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RecordChange {
    pub(crate) target: Diff,
}

impl Changes for RecordChange {
    fn diffs(&self) -> Vec<Diff> {
        vec![self.target.clone()]
    }
}

/// The wanted domain, its mapping and its record.
#[derive(Debug, Clone)]
pub(crate) struct DomainParts {
    pub(crate) wanted: WantedDomain,
    pub(crate) domain: Planned<DomainChange>,
    pub(crate) mapping: Planned<MappingChange>,
    pub(crate) record: Option<Planned<RecordChange>>,
    /// Its record in the zone it was kept in before another `--hosted-zone-id`.
    pub(crate) moved_record: Option<Deletion<RecordTarget>>,
    /// As read; `None` when it is created.
    pub(crate) deployed: Option<DomainState>,
}

/// The stack's domain: the one wanted, and its others deleted.
#[derive(Debug, Clone)]
pub(crate) struct DomainPlan {
    pub(crate) wanted: Option<DomainParts>,
    pub(crate) unwanted: Vec<Deletion<DomainTarget>>,
}

impl Rows for DomainParts {
    fn rows(&self) -> RowList {
        let Self { wanted: _, domain, mapping, record, moved_record, deployed: _ } = self;
        rows([domain.rows(), mapping.rows(), record.rows(), moved_record.rows()])
    }
}

impl Rows for DomainPlan {
    fn rows(&self) -> RowList {
        let Self { wanted, unwanted } = self;
        rows([wanted.rows(), unwanted.rows()])
    }
}

impl DomainPlan {
    /// `https://NAME`, when the stack has its domain.
    pub(crate) fn deployed_url(&self) -> Option<String> {
        let parts = self.wanted.as_ref().filter(|parts| parts.deployed.is_some())?;
        Some(format!("https://{}", parts.wanted.name))
    }
}

/// The domain for `wanted` over the deployed `domains`, mapped to `api` (its id, once
/// known) and `stage`. A wanted domain that is not the stack's is refused.
pub(crate) fn plan(
    domains: &[DomainState],
    wanted: Option<&WantedDomain>,
    api: Option<&str>,
    stage: &str,
    reason_off: &str,
    zone_record: Option<&Record>,
) -> Result<DomainPlan, Refusal> {
    let unwanted = domains
        .iter()
        .filter(|domain| domain.tagged && wanted.is_none_or(|wanted| wanted.name != domain.name))
        .map(|domain| deletion(domain, reason_off))
        .collect();
    let Some(wanted) = wanted else {
        return Ok(DomainPlan { wanted: None, unwanted });
    };
    let deployed = domains.iter().find(|domain| domain.name == wanted.name);
    if let Some(found) = deployed.filter(|domain| !domain.tagged) {
        let mapped_to = match found.mappings.as_slice() {
            [] => "nothing".to_owned(),
            mappings => {
                mappings.iter().map(|(_, api, stage)| format!("API {api} stage {stage}")).collect::<Vec<_>>().join(", ")
            }
        };
        return Err(Refusal::DomainNotOurs { name: wanted.name.clone(), mapped_to });
    }
    let domain_action = match deployed {
        None => Action::Create,
        Some(found) => {
            let certificate = found.certificate_arn.as_deref().unwrap_or("none");
            let policy = found.security_policy.as_deref().unwrap_or("none");
            let zone = found.zone.as_deref().unwrap_or("none");
            let change = DomainChange {
                certificate: (certificate != wanted.certificate_arn)
                    .then(|| diff(Field::Certificate, certificate, &wanted.certificate_arn)),
                security_policy: (policy != SecurityPolicy::Tls12.as_str())
                    .then(|| diff(Field::SecurityPolicy, policy, SecurityPolicy::Tls12.as_str())),
                zone: wanted.zone.as_deref().filter(|wanted| *wanted != zone).map(|to| diff(Field::Zone, zone, to)),
            };
            Action::found(change, false)
        }
    };
    let shown_target = |api: &str, stage: &str| format!("API {api} stage {stage}");
    let root = deployed.and_then(|found| found.mappings.iter().find(|(base, _, _)| base == ROOT || base.is_empty()));
    let mapping_action = match (root, api) {
        (None, _) => Action::Create,
        (Some((_, mapped_api, mapped_stage)), Some(api)) if mapped_api == api && mapped_stage == stage => Action::Keep,
        (Some((_, mapped_api, mapped_stage)), api) => Action::Update(MappingChange {
            target: diff(
                Field::Target,
                shown_target(mapped_api, mapped_stage),
                shown_target(api.unwrap_or("new"), stage),
            ),
        }),
    };
    let record = wanted
        .zone
        .as_ref()
        .map(|zone| {
            let target = deployed.map(|found| found.regional_domain_name.as_str());
            // The zone counterctl keeps the record in, or a new one: what is there now.
            let ours = deployed.filter(|found| found.zone.as_deref() == Some(zone));
            let existing = match ours {
                Some(found) => found.record.as_ref(),
                None => zone_record,
            };
            let action = match (existing, target) {
                (Some(record), Some(target)) if record.alias_to.as_deref() == Some(target) => Action::Keep,
                // Its own record, changed by hand: drift, put back.
                (Some(record), _) if ours.is_some() => Action::Update(RecordChange {
                    target: diff(
                        Field::Target,
                        record.alias_to.as_deref().unwrap_or("not an alias"),
                        target.unwrap_or("the new domain"),
                    ),
                }),
                (Some(record), _) => {
                    let found = record.alias_to.as_deref().map_or_else(
                        || format!("a {} record", record.set.r#type().as_str()),
                        |alias| format!("an alias to {alias}"),
                    );
                    return Err(Refusal::RecordNotOurs { name: wanted.name.clone(), zone: zone.clone(), found });
                }
                (None, _) => Action::Create,
            };
            Ok(Planned::new(Resource::DnsRecord, format!("{} in {zone}", wanted.name), action))
        })
        .transpose()?;
    // A record counterctl kept in another zone goes when the zone changes.
    let moved_record = deployed
        .filter(|found| found.zone.is_some() && found.zone != wanted.zone)
        .and_then(|found| own_record(found).map(|record| (found, record)))
        .map(|(found, (zone, set))| {
            let target = RecordTarget { zone: zone.clone(), set };
            Deletion::of(Resource::DnsRecord, format!("{} in {zone}", found.name), vec![target], "another hosted zone")
        });
    Ok(DomainPlan {
        wanted: Some(DomainParts {
            wanted: wanted.clone(),
            domain: Planned::new(Resource::Domain, &wanted.name, domain_action),
            mapping: Planned::new(Resource::Mapping, format!("{} {ROOT}", wanted.name), mapping_action),
            record,
            moved_record,
            deployed: deployed.cloned(),
        }),
        unwanted,
    })
}

/// The record counterctl keeps for `domain`: (zone, set), when it points at the domain.
fn own_record(domain: &DomainState) -> Option<(String, ResourceRecordSet)> {
    let record = domain.record.as_ref()?;
    let zone = domain.zone.clone()?;
    let points_here = record.alias_to.as_deref() == Some(domain.regional_domain_name.as_str());
    points_here.then(|| (zone, record.set.clone()))
}

/// One of the stack's domains to delete, with its record when it points at the domain.
pub(crate) fn deletion(domain: &DomainState, reason: &str) -> Deletion<DomainTarget> {
    let record = own_record(domain).map(|(zone, set)| RecordTarget { zone, set });
    let reason = if record.is_some() { format!("{reason}, with its alias record") } else { reason.to_owned() };
    let target = DomainTarget { name: domain.name.clone(), record };
    Deletion::of(Resource::Domain, &domain.name, vec![target], reason)
}

/// A record to delete: Route 53 deletes only an exact match, so the set as read. One
/// changed since it was read is refused (`InvalidChangeBatch`), and the run fails: the
/// next one reads it again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RecordTarget {
    pub(crate) zone: String,
    pub(crate) set: ResourceRecordSet,
}

impl Delete for RecordTarget {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        let change = Change::builder().action(ChangeAction::Delete).resource_record_set(self.set.clone()).build()?;
        let batch = ChangeBatch::builder().changes(change).build()?;
        let delete = clients.route53.change_resource_record_sets().hosted_zone_id(&self.zone).change_batch(batch);
        gone("route53:ChangeResourceRecordSets", delete.send().await, &["NoSuchHostedZone"])
            .context("deleting the domain's alias record")?;
        Ok(None)
    }
}

/// A domain to delete, and the record that points at it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DomainTarget {
    pub(crate) name: String,
    pub(crate) record: Option<RecordTarget>,
}

impl Delete for DomainTarget {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        if let Some(record) = &self.record {
            record.delete(clients).await?;
        }
        // Its mappings go with it.
        let delete = clients.apigateway.delete_domain_name().domain_name(&self.name).send().await;
        gone("apigateway:DeleteDomainName", delete, NOT_FOUND).context("deleting the custom domain")?;
        Ok(None)
    }
}

/// Makes or updates the domain and its mapping to `api_id`, then its record; answers
/// where the record should point (the regional domain name and its zone).
pub(crate) async fn apply(
    clients: &Clients,
    stack: &Stack,
    parts: &DomainParts,
    api_id: &str,
    progress: &crate::progress::Progress,
) -> anyhow::Result<(String, String)> {
    let client = &clients.apigateway;
    let name = &parts.wanted.name;
    let (regional, regional_zone) = progress
        .step(parts.domain.row(), async {
            match (&parts.domain.action, &parts.deployed) {
                (Action::Create, _) => {
                    let mut tags: HashMap<String, String> = stack.tags();
                    if let Some(zone) = &parts.wanted.zone {
                        tags.insert(ZONE_TAG.to_owned(), zone.clone());
                    }
                    let regional = EndpointConfiguration::builder().types(EndpointType::Regional).build();
                    let create = client
                        .create_domain_name()
                        .domain_name(name)
                        .regional_certificate_arn(&parts.wanted.certificate_arn)
                        .endpoint_configuration(regional)
                        .security_policy(SecurityPolicy::Tls12)
                        .set_tags(Some(tags))
                        .send()
                        .await;
                    let made = create.op("apigateway:CreateDomainName").context("creating the custom domain")?;
                    let field = |value: Option<&str>| value.unwrap_or_default().to_owned();
                    Ok((field(made.regional_domain_name()), field(made.regional_hosted_zone_id())))
                }
                (action, Some(found)) => {
                    if let Some(change) = action.change() {
                        update(clients, found, change, &parts.wanted).await?;
                    }
                    Ok((found.regional_domain_name.clone(), found.regional_zone_id.clone()))
                }
                (_, None) => anyhow::bail!("the domain {name} was planned as found, and was not read"),
            }
        })
        .await?;
    progress
        .step(parts.mapping.row(), async {
            let stage = &stack.stage;
            match &parts.mapping.action {
                Action::Create => {
                    let create = client.create_base_path_mapping().domain_name(name).rest_api_id(api_id).stage(stage);
                    create.send().await.op("apigateway:CreateBasePathMapping").context("mapping the custom domain")?;
                }
                Action::Update(_) => {
                    let operations =
                        vec![patch(Op::Replace, "/restapiId", api_id), patch(Op::Replace, "/stage", stage)];
                    let update = client.update_base_path_mapping().domain_name(name).base_path(ROOT);
                    let update = update.set_patch_operations(Some(operations)).send().await;
                    update.op("apigateway:UpdateBasePathMapping").context("mapping the custom domain")?;
                }
                _ => {}
            }
            Ok(())
        })
        .await?;
    if let (Some(planned), Some(zone)) = (&parts.record, &parts.wanted.zone) {
        let work = async {
            // A new record is a CREATE, which Route 53 refuses if one appeared since.
            let action = match &planned.action {
                Action::Create => ChangeAction::Create,
                Action::Update(_) => ChangeAction::Upsert,
                _ => return Ok(()),
            };
            write_record(&clients.route53, (zone, name), (&regional, &regional_zone), action).await
        };
        progress.step(planned.row(), work).await?;
    }
    if let Some(moved) = &parts.moved_record {
        progress.delete(clients, moved).await?;
    }
    Ok((regional, regional_zone))
}

async fn update(
    clients: &Clients,
    found: &DomainState,
    change: &DomainChange,
    wanted: &WantedDomain,
) -> anyhow::Result<()> {
    let mut operations = Vec::new();
    if change.certificate.is_some() {
        operations.push(patch(Op::Replace, "/regionalCertificateArn", &wanted.certificate_arn));
    }
    if change.security_policy.is_some() {
        operations.push(patch(Op::Replace, "/securityPolicy", SecurityPolicy::Tls12.as_str()));
    }
    if !operations.is_empty() {
        let update = clients.apigateway.update_domain_name().domain_name(&found.name);
        let update = update.set_patch_operations(Some(operations)).send().await;
        update.op("apigateway:UpdateDomainName").context("updating the custom domain")?;
    }
    if let (Some(_), Some(zone)) = (&change.zone, &wanted.zone) {
        let tags = HashMap::from([(ZONE_TAG.to_owned(), zone.clone())]);
        tag_with(&clients.apigateway, &format!("/domainnames/{}", found.name), tags)
            .await
            .context("tagging the custom domain with its hosted zone")?;
    }
    Ok(())
}

/// Creates or updates the alias record and waits until Route 53 has it everywhere.
async fn write_record(
    client: &aws_sdk_route53::Client,
    (zone, name): (&str, &str),
    (regional, regional_zone): (&str, &str),
    action: ChangeAction,
) -> anyhow::Result<()> {
    let alias = AliasTarget::builder().hosted_zone_id(regional_zone).dns_name(regional).evaluate_target_health(false);
    let set = ResourceRecordSet::builder().name(name).r#type(RrType::A).alias_target(alias.build()?).build()?;
    let change = Change::builder().action(action).resource_record_set(set).build()?;
    let batch = ChangeBatch::builder().comment("counterctl: the stack's custom domain").changes(change).build()?;
    let changed = client.change_resource_record_sets().hosted_zone_id(zone).change_batch(batch).send().await;
    let changed = changed.op("route53:ChangeResourceRecordSets").context("writing the domain's alias record")?;
    let id = changed.change_info().map(|info| info.id().to_owned()).unwrap_or_default();
    client.wait_until_resource_record_sets_changed().id(id).wait(RECORD_WAIT).await.map_err(|error| {
        anyhow::anyhow!("waiting for the alias record to be INSYNC: {}", counterctl_client::causes(&error))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "arn:aws:acm:us-east-1:123456789012:certificate/c";

    fn wanted(name: &str, zone: Option<&str>) -> WantedDomain {
        WantedDomain { name: name.into(), certificate_arn: CERT.into(), zone: zone.map(str::to_owned) }
    }

    fn deployed(name: &str, tagged: bool, api: &str) -> DomainState {
        let regional = "d-1.execute-api.us-east-1.amazonaws.com".to_owned();
        let alias = AliasTarget::builder().hosted_zone_id("Z2").dns_name(&regional).evaluate_target_health(false);
        let set = ResourceRecordSet::builder().name(name).r#type(RrType::A).alias_target(alias.build().unwrap());
        DomainState {
            name: name.into(),
            tagged,
            certificate_arn: Some(CERT.into()),
            security_policy: Some("TLS_1_2".into()),
            regional_domain_name: regional.clone(),
            regional_zone_id: "Z2".into(),
            mappings: vec![(ROOT.into(), api.into(), "prod".into())],
            zone: Some("Z1".into()),
            record: Some(Record { alias_to: Some(regional), set: set.build().unwrap() }),
        }
    }

    fn issued(names: &[&str]) -> CertificateState {
        CertificateState {
            arn: CERT.into(),
            status: "ISSUED".into(),
            names: names.iter().map(|n| (*n).into()).collect(),
        }
    }

    #[test]
    fn a_certificate_covers_its_names_and_one_label_under_its_wildcard() {
        let names = ["example.com".to_owned(), "*.example.com".to_owned()];
        assert!(covers(&names, "ids.example.com"));
        assert!(covers(&names, "EXAMPLE.com"));
        assert!(!covers(&names, "a.ids.example.com"), "a wildcard covers one label");
        assert!(!covers(&names, "example.org"));
    }

    #[test]
    fn the_certificate_must_be_in_the_region_issued_and_covering_the_name() {
        let want = wanted("ids.example.com", None);
        assert_eq!(check_certificate(&want, Some(&issued(&["ids.example.com"])), "us-east-1"), Ok(()));
        assert!(matches!(
            check_certificate(&want, Some(&issued(&["ids.example.com"])), "eu-west-1"),
            Err(Refusal::CertificateRegion { .. })
        ));
        let pending = CertificateState { status: "PENDING_VALIDATION".into(), ..issued(&["ids.example.com"]) };
        assert!(matches!(
            check_certificate(&want, Some(&pending), "us-east-1"),
            Err(Refusal::CertificateNotIssued { .. })
        ));
        assert!(matches!(
            check_certificate(&want, Some(&issued(&["other.example.com"])), "us-east-1"),
            Err(Refusal::CertificateNotCovering { .. })
        ));
        assert!(matches!(check_certificate(&want, None, "us-east-1"), Err(Refusal::CertificateNotFound { .. })));
    }

    #[test]
    fn a_deployed_domain_as_wanted_is_kept_whole() {
        let domains = [deployed("ids.example.com", true, "api1")];
        let plan =
            plan(&domains, Some(&wanted("ids.example.com", Some("Z1"))), Some("api1"), "prod", "off", None).unwrap();
        assert!(plan.rows().iter().all(|row| !row.changes()), "{:?}", plan.rows());
        assert_eq!(plan.deployed_url().as_deref(), Some("https://ids.example.com"));
    }

    #[test]
    fn a_new_api_moves_the_mapping_and_a_new_name_replaces_the_domain_and_its_record() {
        let domains = [deployed("ids.example.com", true, "old-api")];
        let moved = plan(&domains, Some(&wanted("ids.example.com", Some("Z1"))), None, "prod", "off", None).unwrap();
        let parts = moved.wanted.unwrap();
        assert!(matches!(parts.mapping.action, Action::Update(_)));
        assert_eq!(parts.domain.action, Action::Keep);

        let renamed =
            plan(&domains, Some(&wanted("new.example.com", Some("Z1"))), Some("old-api"), "prod", "gone", None)
                .unwrap();
        assert_eq!(renamed.wanted.as_ref().unwrap().domain.action, Action::Create);
        let [old] = renamed.unwanted.as_slice() else { panic!("{:?}", renamed.unwanted) };
        assert_eq!(old.row.action, Action::Delete("gone, with its alias record".into()));
        assert!(old.targets[0].record.is_some(), "the record pointing at the old domain goes with it");
    }

    #[test]
    fn a_domain_that_is_not_the_stacks_is_refused_and_a_record_elsewhere_is_left() {
        let theirs = [deployed("ids.example.com", false, "their-api")];
        let refused =
            plan(&theirs, Some(&wanted("ids.example.com", None)), Some("api1"), "prod", "off", None).unwrap_err();
        assert!(matches!(refused, Refusal::DomainNotOurs { ref mapped_to, .. } if mapped_to.contains("their-api")));
        assert!(plan(&theirs, None, None, "prod", "off", None).unwrap().unwanted.is_empty(), "never deleted either");

        let mut repointed = deployed("ids.example.com", true, "api1");
        repointed.record.as_mut().unwrap().alias_to = Some("elsewhere.example.net".into());
        let off = plan(&[repointed], None, None, "prod", "--domain off", None).unwrap();
        assert_eq!(off.unwanted[0].targets[0].record, None, "a record that points elsewhere is not the domain's");
    }

    #[test]
    fn a_record_counterctl_did_not_make_is_refused_and_its_own_is_put_back() {
        let theirs = Record {
            alias_to: None,
            set: ResourceRecordSet::builder().name("ids.example.com").r#type(RrType::A).build().unwrap(),
        };
        let new = plan(&[], Some(&wanted("ids.example.com", Some("Z9"))), None, "prod", "off", Some(&theirs));
        assert!(matches!(new, Err(Refusal::RecordNotOurs { ref zone, .. }) if zone == "Z9"), "{new:?}");
        let free = plan(&[], Some(&wanted("ids.example.com", Some("Z9"))), None, "prod", "off", None).unwrap();
        assert_eq!(free.wanted.unwrap().record.unwrap().action, Action::Create);

        let mut repointed = deployed("ids.example.com", true, "api1");
        repointed.record.as_mut().unwrap().alias_to = Some("elsewhere.example.net".into());
        let fixed = plan(&[repointed], Some(&wanted("ids.example.com", Some("Z1"))), Some("api1"), "prod", "off", None);
        assert!(
            matches!(fixed.unwrap().wanted.unwrap().record.unwrap().action, Action::Update(_)),
            "drift is put back"
        );
    }

    #[test]
    fn another_zone_moves_the_record_and_deletes_the_one_counterctl_kept() {
        let domains = [deployed("ids.example.com", true, "api1")];
        let moved = plan(&domains, Some(&wanted("ids.example.com", Some("Z2"))), Some("api1"), "prod", "off", None);
        let parts = moved.unwrap().wanted.unwrap();
        assert_eq!(parts.record.unwrap().action, Action::Create);
        let old = parts.moved_record.expect("the old zone's record goes");
        assert_eq!(old.targets[0].zone, "Z1");
        assert!(matches!(parts.domain.action, Action::Update(DomainChange { zone: Some(_), .. })));
    }
}
