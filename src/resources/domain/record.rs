//! The custom domain's Route 53 alias record (`--hosted-zone-id`), in the zone the
//! domain's tag names. A record counterctl did not make is never overwritten.

use anyhow::Context;
use aws_sdk_route53::Client;
use aws_sdk_route53::client::Waiters;
use aws_sdk_route53::types::{AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecordSet, RrType};

use super::{DomainState, WantedDomain};
use crate::aws::{AwsError, Clients, Operation, found, gone};
use crate::change::{Action, Changes, Delete, Diff, Field, Planned, Refusal, Resource, diff};

/// Route 53 answers a change `PENDING` until every name server has it
/// (https://docs.aws.amazon.com/Route53/latest/APIReference/API_GetChange.html).
const RECORD_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// An `A` alias record as found in a zone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// Its alias target's DNS name, without the final dot; `None` for a plain `A` record.
    pub(crate) alias_to: Option<String>,
    /// The set, to delete it exactly (Route 53 deletes only an exact match).
    pub(crate) set: ResourceRecordSet,
}

/// Where an alias record points: a regional domain's name and its hosted zone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Alias {
    pub(crate) domain_name: String,
    pub(crate) zone_id: String,
}

/// The `A` record named `name` in `zone`: the list starts at that name and type.
pub(crate) async fn read(client: &Client, zone: &str, name: &str) -> Result<Option<Record>, AwsError> {
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

/// What changes on the record: where it points.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RecordChange {
    pub(crate) alias: Diff,
}

impl Changes for RecordChange {
    fn diffs(&self) -> Vec<Diff> {
        vec![self.alias.clone()]
    }
}

/// The record of `wanted` in its zone, if it has one, pointing at the `deployed` domain
/// (its regional name, once made). In the zone counterctl keeps it in, what is there is
/// its own (drift is put back); in a new zone, `zone_record` is what is there already,
/// which is refused.
pub(crate) fn plan(
    wanted: &WantedDomain,
    deployed: Option<&DomainState>,
    zone_record: Option<&Record>,
) -> Result<Option<Planned<RecordChange>>, Refusal> {
    let Some(zone) = &wanted.zone else { return Ok(None) };
    let alias_to = deployed.map(|found| found.regional_domain_name.as_str());
    // The zone counterctl keeps the record in, or a new one: what is there now.
    let ours = deployed.filter(|found| found.zone.as_deref() == Some(zone));
    let existing = match ours {
        Some(found) => found.record.as_ref(),
        None => zone_record,
    };
    let action = match (existing, alias_to) {
        (Some(record), Some(alias_to)) if record.alias_to.as_deref() == Some(alias_to) => Action::Keep,
        // Its own record, changed by hand: drift, put back.
        (Some(record), _) if ours.is_some() => Action::Update(RecordChange {
            alias: diff(
                Field::Target,
                record.alias_to.as_deref().unwrap_or("not an alias"),
                alias_to.unwrap_or("the new domain"),
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
    Ok(Some(Planned::new(Resource::DnsRecord, format!("{} in {zone}", wanted.name), action)))
}

/// The record counterctl keeps for `domain`, when it points at the domain.
pub(crate) fn own(domain: &DomainState) -> Option<RecordTarget> {
    let record = domain.record.as_ref()?;
    let zone = domain.zone.clone()?;
    let points_here = record.alias_to.as_deref() == Some(domain.regional_domain_name.as_str());
    points_here.then(|| RecordTarget { zone, set: record.set.clone() })
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

/// Makes the record `name` in `zone` point at `alias`, as planned.
pub(crate) async fn apply(
    client: &Client,
    planned: &Planned<RecordChange>,
    (zone, name): (&str, &str),
    alias: &Alias,
) -> anyhow::Result<()> {
    // A new record is a CREATE, which Route 53 refuses if one appeared since.
    let action = match &planned.action {
        Action::Create => ChangeAction::Create,
        Action::Update(RecordChange { alias: _ }) => ChangeAction::Upsert,
        _ => return Ok(()),
    };
    write(client, (zone, name), alias, action).await
}

/// Creates or updates the alias record and waits until Route 53 has it everywhere.
async fn write(client: &Client, (zone, name): (&str, &str), alias: &Alias, action: ChangeAction) -> anyhow::Result<()> {
    let alias = AliasTarget::builder()
        .hosted_zone_id(&alias.zone_id)
        .dns_name(&alias.domain_name)
        .evaluate_target_health(false);
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

/// The alias record's contract.
pub(crate) struct RecordContract;

impl crate::resources::Contract for RecordContract {
    const KIND: crate::change::Resource = crate::change::Resource::DnsRecord;
    type State = Record;
    type Change = RecordChange;
    type Target = RecordTarget;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        use crate::resources::Grant;
        let Some(zone) = scope.domain.and_then(|domain| domain.zone.as_ref()) else { return Vec::new() };
        let partition = &scope.context.account.partition;
        let records = &["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"];
        vec![
            Grant::new("DomainRecord", records, vec![format!("arn:{partition}:route53:::hostedzone/{zone}")]),
            // A change's id is made by the change.
            Grant::new("WaitForTheRecord", &["route53:GetChange"], vec![format!("arn:{partition}:route53:::change/*")]),
        ]
    }
}
