//! The REST front's custom domain (`--domain NAME --certificate-arn ARN`): a regional API
//! Gateway domain name with TLS 1.2, tagged like everything else, its base path mapping
//! to the stack's API and stage, and with `--hosted-zone-id` the Route 53 alias record
//! to it. The zone is kept in a tag of the domain, so a later run knows where the record
//! is. A domain that is not the stack's is never taken over.
//!
//! The domain itself is here; its mapping, its record and the check of its certificate
//! are each a module of their own.

pub(crate) mod certificate;
pub(crate) mod mapping;
pub(crate) mod record;

use std::collections::HashMap;

use anyhow::Context;
use aws_sdk_apigateway::types::{EndpointConfiguration, EndpointType, Op, SecurityPolicy};

use self::mapping::{Mapping, MappingChange};
use self::record::{Alias, Record, RecordChange, RecordTarget};
use super::apigateway::{NOT_FOUND, patch, tag_with};
use crate::aws::{AwsError, Clients, Operation, gone};
use crate::change::{
    Action, Changes, Delete, Deletion, Diff, Field, Planned, Refusal, Resource, RowList, Rows, diff, rows,
};
use crate::stack::Stack;

/// The tag of a domain that names the hosted zone counterctl keeps its record in.
const ZONE_TAG: &str = "counterctl:hosted-zone";

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
    pub(crate) mappings: Vec<Mapping>,
    /// The zone of the record counterctl made, from the domain's tag.
    pub(crate) zone: Option<String>,
    /// The `A` record of that name in that zone, if there is one.
    pub(crate) record: Option<Record>,
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
        let (mappings, record) = tokio::try_join!(mapping::read(&clients.apigateway, &name), async {
            match &zone {
                Some(zone) => record::read(&clients.route53, zone, &name).await,
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

/// The domain the stack wants.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WantedDomain {
    pub(crate) name: String,
    pub(crate) certificate_arn: String,
    /// `--hosted-zone-id`: counterctl keeps the alias record there.
    pub(crate) zone: Option<String>,
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
        let mapped_to = mapping::mapped_to(&found.mappings);
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
    let mapping = mapping::plan(&wanted.name, deployed.map(|found| found.mappings.as_slice()), api, stage);
    let record = record::plan(wanted, deployed, zone_record)?;
    // A record counterctl kept in another zone goes when the zone changes.
    let moved_record = deployed
        .filter(|found| found.zone.is_some() && found.zone != wanted.zone)
        .and_then(|found| record::own(found).map(|record| (found, record)))
        .map(|(found, target)| {
            let name = format!("{} in {}", found.name, target.zone);
            Deletion::of(Resource::DnsRecord, name, vec![target], "another hosted zone")
        });
    Ok(DomainPlan {
        wanted: Some(DomainParts {
            wanted: wanted.clone(),
            domain: Planned::new(Resource::Domain, &wanted.name, domain_action),
            mapping,
            record,
            moved_record,
            deployed: deployed.cloned(),
        }),
        unwanted,
    })
}

/// One of the stack's domains to delete, with its record when it points at the domain.
pub(crate) fn deletion(domain: &DomainState, reason: &str) -> Deletion<DomainTarget> {
    let record = record::own(domain);
    let reason = if record.is_some() { format!("{reason}, with its alias record") } else { reason.to_owned() };
    let target = DomainTarget { name: domain.name.clone(), record };
    Deletion::of(Resource::Domain, &domain.name, vec![target], reason)
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
/// where the record should point.
pub(crate) async fn apply(
    clients: &Clients,
    stack: &Stack,
    parts: &DomainParts,
    api_id: &str,
    progress: &crate::progress::Progress,
) -> anyhow::Result<Alias> {
    let DomainParts { wanted, domain, mapping, record, moved_record, deployed } = parts;
    let client = &clients.apigateway;
    let name = &wanted.name;
    let alias = progress
        .step(domain.row(), async {
            match (&domain.action, deployed) {
                (Action::Create, _) => {
                    let mut tags: HashMap<String, String> = stack.tags();
                    if let Some(zone) = &wanted.zone {
                        tags.insert(ZONE_TAG.to_owned(), zone.clone());
                    }
                    let regional = EndpointConfiguration::builder().types(EndpointType::Regional).build();
                    let create = client
                        .create_domain_name()
                        .domain_name(name)
                        .regional_certificate_arn(&wanted.certificate_arn)
                        .endpoint_configuration(regional)
                        .security_policy(SecurityPolicy::Tls12)
                        .set_tags(Some(tags))
                        .send()
                        .await;
                    let made = create.op("apigateway:CreateDomainName").context("creating the custom domain")?;
                    let field = |value: Option<&str>| value.unwrap_or_default().to_owned();
                    Ok(Alias {
                        domain_name: field(made.regional_domain_name()),
                        zone_id: field(made.regional_hosted_zone_id()),
                    })
                }
                (action, Some(found)) => {
                    if let Some(change) = action.change() {
                        update(clients, found, change, wanted).await?;
                    }
                    Ok(Alias {
                        domain_name: found.regional_domain_name.clone(),
                        zone_id: found.regional_zone_id.clone(),
                    })
                }
                (_, None) => anyhow::bail!("the domain {name} was planned as found, and was not read"),
            }
        })
        .await?;
    progress.step(mapping.row(), mapping::apply(client, mapping, name, (api_id, &stack.stage))).await?;
    if let (Some(planned), Some(zone)) = (record, &wanted.zone) {
        progress.step(planned.row(), record::apply(&clients.route53, planned, (zone, name), &alias)).await?;
    }
    if let Some(moved) = moved_record {
        progress.delete(clients, moved).await?;
    }
    Ok(alias)
}

async fn update(
    clients: &Clients,
    found: &DomainState,
    change: &DomainChange,
    wanted: &WantedDomain,
) -> anyhow::Result<()> {
    let DomainChange { certificate, security_policy, zone } = change;
    let mut operations = Vec::new();
    if certificate.is_some() {
        operations.push(patch(Op::Replace, "/regionalCertificateArn", &wanted.certificate_arn));
    }
    if security_policy.is_some() {
        operations.push(patch(Op::Replace, "/securityPolicy", SecurityPolicy::Tls12.as_str()));
    }
    if !operations.is_empty() {
        let update = clients.apigateway.update_domain_name().domain_name(&found.name);
        let update = update.set_patch_operations(Some(operations)).send().await;
        update.op("apigateway:UpdateDomainName").context("updating the custom domain")?;
    }
    if let (Some(_), Some(zone)) = (zone, &wanted.zone) {
        let tags = HashMap::from([(ZONE_TAG.to_owned(), zone.clone())]);
        tag_with(&clients.apigateway, &format!("/domainnames/{}", found.name), tags)
            .await
            .context("tagging the custom domain with its hosted zone")?;
    }
    Ok(())
}

/// The custom domain's contract, with the check of its certificate.
pub(crate) struct DomainContract;

impl crate::resources::Contract for DomainContract {
    const KIND: crate::change::Resource = crate::change::Resource::Domain;
    type State = DomainState;
    type Change = DomainChange;
    type Target = DomainTarget;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        // Every read lists the region's domains, to find the stack's.
        let mut grants = super::apigateway::read_grants(scope.context.account, &["/domainnames"]);
        let Some(domain) = scope.domain else { return grants };
        let paths = [
            "/domainnames".to_owned(),
            format!("/domainnames/{}", domain.name),
            format!("/domainnames/{}/*", domain.name),
        ];
        let actions = &["apigateway:POST", "apigateway:GET", "apigateway:PATCH", "apigateway:DELETE"];
        let resources = paths.iter().map(|path| super::apigateway::arn(scope.context.account, path)).collect();
        grants.push(crate::resources::Grant::new("Domain", actions, resources));
        grants.push(certificate::grant(domain));
        grants
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::domain::certificate::{CertificateState, check as check_certificate, covers};
    use crate::resources::domain::mapping::ROOT;
    use aws_sdk_route53::types::{AliasTarget, ResourceRecordSet, RrType};

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
            mappings: vec![Mapping { base_path: ROOT.into(), api_id: api.into(), stage: "prod".into() }],
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
