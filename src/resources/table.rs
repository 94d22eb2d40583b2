//! The DynamoDB table: on-demand, key `id` (S), deletion protection, point-in-time
//! recovery, and TTL on the idempotency records' `expires_at`. A multi-region stack's
//! table is a global table with multi-Region strong consistency (MRSC), made global in
//! its home region and protected and tagged in every replica region; it has no TTL,
//! which MRSC does not support, so the function sweeps expired idempotency records.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalTableWitnessGroupMemberAction, CreateReplicationGroupMemberAction,
    DeleteGlobalTableWitnessGroupMemberAction, DeleteReplicationGroupMemberAction, GlobalTableWitnessGroupUpdate,
    KeySchemaElement, KeyType, MultiRegionConsistency, PointInTimeRecoverySpecification, PointInTimeRecoveryStatus,
    ReplicaStatus, ReplicationGroupUpdate, ScalarAttributeType, Select, TableDescription, TableStatus, Tag,
    TimeToLiveSpecification, TimeToLiveStatus, WitnessStatus,
};
use counter_function::dynamo::{DynamoStore, EXPIRES_AT, IdempotencyTimings};
use counter_function::store::{CounterAdmin, StoreError};

use anyhow::Context;

use super::Error;
use crate::aws::{Account, AwsError, Clients, Made, Operation, found, gone, has_code, made};
use crate::change::{Action, Changes, Delete, Diff, Field, Planned, Refusal, Resource, diff};
use crate::regions::Regions;
use crate::retry;
use crate::stack::{KEPT_BY_TAG, Stack};

const KEY: &str = "id";

/// Which table is a stack's, the one rule of install, status, uninstall and counters:
/// the one asked for (`--table`); else the one the stack's own records name (`recorded`:
/// the function's `TABLE_NAME`, else this region's role policy's grant); else the one
/// table whose tags say it holds the stack's counters (`kept`: made for it, or kept by
/// its uninstall; looked for only when nothing else names one). `None`: nothing says
/// which (none is kept, or several are).
pub(crate) fn stack_table(given: Option<&str>, recorded: Option<&str>, kept: &[String]) -> Option<String> {
    let kept = match kept {
        [kept] => Some(kept.as_str()),
        _ => None,
    };
    given.or(recorded).or(kept).map(str::to_owned)
}

/// [`stack_table`], else the original service's: the table a new stack gets.
pub(crate) fn stack_table_or_new(given: Option<&str>, recorded: Option<&str>, kept: &[String]) -> String {
    stack_table(given, recorded, kept).unwrap_or_else(|| counter_function::dynamo::DEFAULT_TABLE.to_owned())
}

/// [`stack_table_or_new`] before any kept table is known. Install takes a kept table up
/// only when `--table` names it (and refuses a new one beside it).
pub(crate) fn table_name(given: Option<&str>, recorded: Option<&str>) -> String {
    stack_table_or_new(given, recorded, &[])
}
/// Table `name`'s ARN (`*`: every table of the region).
fn arn(account: &Account, name: &str) -> String {
    account.arn("dynamodb", &format!("table/{name}"))
}

/// The key schema counterctl's function reads and writes.
pub(crate) const COUNTER_KEY_SCHEMA: &str = "id HASH (S)";
const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];

/// The table as deployed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableState {
    pub name: String,
    pub arn: String,
    /// e.g. `id HASH (S)`.
    pub key_schema: String,
    /// Carries this stack's tag: counterctl made it.
    pub tagged: bool,
    /// The CloudFormation stack that made it, if one did.
    pub cloudformation: Option<String>,
    pub deletion_protection: bool,
    pub point_in_time_recovery: bool,
    pub ttl: Ttl,
    /// Its replicas, when it is a global table.
    pub global: Option<Global>,
    /// Whether it holds any item: read only where it decides, before making it global
    /// (an MRSC table is made from an empty one).
    pub holds_items: Option<bool>,
}

impl TableState {
    /// Its regions, the asking one first, when it is a strongly consistent global table.
    pub(crate) fn strong_regions(&self) -> Option<Regions> {
        self.global.as_ref().filter(|global| global.strong).map(Global::regions)
    }
}

/// A global table as DescribeTable shows it in one of its regions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Global {
    /// The replicas' regions, the asking one first: `Replicas` may or may not list the
    /// region asked from, so it is added when missing.
    pub replicas: Vec<String>,
    pub witness: Option<String>,
    /// `MultiRegionConsistency: STRONG`; else eventual, whose last writer wins.
    pub strong: bool,
}

impl Global {
    fn of(description: &TableDescription, asking: &str) -> Option<Self> {
        if description.replicas().is_empty() && description.global_table_witnesses().is_empty() {
            return None;
        }
        let mut replicas = vec![asking.to_owned()];
        let listed = description.replicas().iter().filter_map(|replica| replica.region_name());
        replicas.extend(listed.filter(|region| *region != asking).map(str::to_owned));
        Some(Self {
            replicas,
            witness: description.global_table_witnesses().iter().find_map(|w| w.region_name()).map(str::to_owned),
            strong: description.multi_region_consistency() == Some(&MultiRegionConsistency::Strong),
        })
    }

    /// The table's regions, `asking` first.
    pub(crate) fn regions(&self) -> Regions {
        Regions::of_table(&self.replicas[0], &self.replicas, self.witness.as_deref())
    }

    /// A table whose concurrent `ADD`s may both succeed on one value: an eventually
    /// consistent global table of more than one replica, where the last writer wins.
    fn last_writer_wins(&self) -> bool {
        !self.strong && self.replicas.len() > 1
    }
}

/// The table's TTL as it concerns the idempotency records.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ttl {
    /// On (or being turned on) for `expires_at`.
    OnExpiresAt,
    /// Off: install turns it on.
    Off,
    /// On another attribute: DynamoDB allows one TTL attribute, so install leaves it and
    /// says so.
    Other(String),
    /// Being turned off: DynamoDB allows no change for an hour after one.
    Disabling,
}

/// Reads the table, its tags, backups and TTL; `None` when there is no such table.
pub(crate) async fn read(client: &Client, name: &str, stack_name: &str) -> Result<Option<TableState>, AwsError> {
    let Some(description) = describe(client, name).await? else {
        return Ok(None);
    };
    let arn = description.table_arn().unwrap_or_default();
    let (tags, backups, ttl) = tokio::join!(
        client.list_tags_of_resource().resource_arn(arn).send(),
        client.describe_continuous_backups().table_name(name).send(),
        client.describe_time_to_live().table_name(name).send(),
    );
    let tags = tags.op("dynamodb:ListTagsOfResource")?;
    let point_in_time_recovery = backups
        .op("dynamodb:DescribeContinuousBackups")?
        .continuous_backups_description()
        .and_then(|backups| backups.point_in_time_recovery_description())
        .and_then(|pitr| pitr.point_in_time_recovery_status())
        == Some(&PointInTimeRecoveryStatus::Enabled);
    let ttl = ttl.op("dynamodb:DescribeTimeToLive")?;
    let ttl = match ttl.time_to_live_description().map(|ttl| (ttl.attribute_name(), ttl.time_to_live_status())) {
        Some((Some(EXPIRES_AT), Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling))) => Ttl::OnExpiresAt,
        None | Some((_, None | Some(TimeToLiveStatus::Disabled))) => Ttl::Off,
        Some((_, Some(TimeToLiveStatus::Disabling))) => Ttl::Disabling,
        Some((attribute, Some(status))) => Ttl::Other(format!("{} on `{}`", status.as_str(), attribute.unwrap_or("?"))),
    };
    let asking = asking_region(client);
    Ok(Some(TableState {
        name: name.to_owned(),
        arn: arn.to_owned(),
        key_schema: key_schema(&description),
        tagged: tags.tags().iter().any(|tag| Stack::is_stack_tag(stack_name, tag.key(), tag.value())),
        cloudformation: Stack::cloudformation_stack(tags.tags().iter().map(|tag| (tag.key(), tag.value()))),
        deletion_protection: description.deletion_protection_enabled() == Some(true),
        point_in_time_recovery,
        ttl,
        global: Global::of(&description, &asking),
        holds_items: None,
    }))
}

/// The table's replicas when it is a strongly consistent global table, the asking region
/// first.
pub(crate) async fn strong_global(client: &Client, name: &str) -> Result<Option<Global>, AwsError> {
    let description = describe(client, name).await?;
    let global = description.and_then(|description| Global::of(&description, &asking_region(client)));
    Ok(global.filter(|global| global.strong))
}

/// Whether the table holds any item (one key read, strongly consistent).
pub(crate) async fn holds_items(client: &Client, table: &str) -> Result<bool, AwsError> {
    let scan = client.scan().table_name(table).limit(1).consistent_read(true).select(Select::Count).send().await;
    Ok(scan.op("dynamodb:Scan")?.count() > 0)
}

/// The table's key schema, e.g. `id HASH (S)`, from DescribeTable alone; `None` when there
/// is no such table.
pub(crate) async fn read_key_schema(client: &Client, name: &str) -> Result<Option<String>, AwsError> {
    Ok(describe(client, name).await?.as_ref().map(key_schema))
}

async fn describe(client: &Client, name: &str) -> Result<Option<TableDescription>, AwsError> {
    let output = found("dynamodb:DescribeTable", client.describe_table().table_name(name).send().await, NOT_FOUND)?;
    Ok(output.and_then(|output| output.table))
}

fn key_schema(description: &TableDescription) -> String {
    let keys: Vec<String> = description
        .key_schema()
        .iter()
        .map(|key| {
            let kind = description
                .attribute_definitions()
                .iter()
                .find(|definition| definition.attribute_name() == key.attribute_name())
                .map_or("?".to_owned(), |definition| definition.attribute_type().as_str().to_owned());
            format!("{} {} ({kind})", key.attribute_name(), key.key_type().as_str())
        })
        .collect();
    keys.join(", ")
}

/// Creates the table, tagged and protected, and waits until it is ACTIVE, whether this
/// call made it or it existed already (a run interrupted a moment ago made it).
async fn create(client: &Client, stack: &Stack) -> Result<Made<()>, Error> {
    let tags = stack
        .tags()
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build().expect("key and value set"))
        .collect();
    let output = client
        .create_table()
        .table_name(&stack.table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(KeySchemaElement::builder().attribute_name(KEY).key_type(KeyType::Hash).build().expect("complete"))
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(KEY)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("complete"),
        )
        .deletion_protection_enabled(true)
        .set_tags(Some(tags))
        .send()
        .await;
    let made = made("dynamodb:CreateTable", output, &["ResourceInUseException"])?;
    wait_active(client, &stack.table).await?;
    Ok(made.map(drop))
}

/// Waits until the table is ACTIVE, and every replica and witness it has: DynamoDB
/// refuses UpdateTable, UpdateTimeToLive and DeleteTable with ResourceInUseException
/// while it is CREATING or UPDATING
/// (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_DeleteTable.html:
/// "If a table is in CREATING or UPDATING states, then DynamoDB returns a
/// ResourceInUseException"), and a replica being made is not yet written to.
pub(crate) async fn wait_active(client: &Client, table: &str) -> Result<(), Error> {
    retry::POLL
        .poll(&format!("table {table} becoming ACTIVE"), || async {
            let output =
                found("dynamodb:DescribeTable", client.describe_table().table_name(table).send().await, NOT_FOUND)?;
            let Some(description) = output.and_then(|output| output.table) else {
                return Ok::<_, Error>(None);
            };
            let active = description.table_status() == Some(&TableStatus::Active)
                && description
                    .replicas()
                    .iter()
                    .all(|replica| replica.replica_status() == Some(&ReplicaStatus::Active))
                && description
                    .global_table_witnesses()
                    .iter()
                    .all(|witness| witness.witness_status() == Some(&WitnessStatus::Active));
            Ok(active.then_some(()))
        })
        .await
}

/// Makes the empty table a global table with multi-Region strong consistency, in the one
/// UpdateTable AWS requires ("a single create fails with Unsupported table replica
/// count": https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/V2globaltables_HowItWorks.html#V2globaltables_HowItWorks.consistency-modes-mrsc),
/// waits until every replica is ACTIVE, then protects and tags each replica: deletion
/// protection, point-in-time recovery and tags are never synchronized between replicas
/// (same page, "Settings synchronization").
async fn make_global(client: &Client, stack: &Stack, regions: &Regions) -> anyhow::Result<()> {
    let replicas = regions.others.iter().map(|region| {
        let create = CreateReplicationGroupMemberAction::builder().region_name(region).build().expect("complete");
        ReplicationGroupUpdate::builder().create(create).build()
    });
    let witness = regions.witness.iter().map(|region| {
        let create =
            CreateGlobalTableWitnessGroupMemberAction::builder().region_name(region).build().expect("complete");
        GlobalTableWitnessGroupUpdate::builder().create(create).build()
    });
    wait_ttl_off(client, &stack.table).await.context("waiting for the table's TTL to be off")?;
    let update = client
        .update_table()
        .table_name(&stack.table)
        .set_replica_updates(Some(replicas.collect()))
        .set_global_table_witness_updates(Some(witness.collect()))
        .multi_region_consistency(MultiRegionConsistency::Strong);
    update.send().await.op("dynamodb:UpdateTable").context("making the table global")?;
    wait_active(client, &stack.table).await.context("waiting for the replicas to be ACTIVE")?;
    for region in &regions.others {
        let client = in_region(client, region);
        let described = describe(&client, &stack.table).await?.context("the replica is not there")?;
        let what = format!("protecting and tagging the replica in {region}");
        let arn = described.table_arn().unwrap_or_default();
        tag(&client, arn, stack).await.context(what.clone())?;
        set_deletion_protection(&client, &stack.table, true).await.context(what.clone())?;
        enable_point_in_time_recovery(&client, &stack.table).await.context(what)?;
    }
    Ok(())
}

fn asking_region(client: &Client) -> String {
    client.config().region().map(|region| region.as_ref().to_owned()).unwrap_or_default()
}

/// Leaves the global table a table in the asking region alone: the other replicas lose
/// their deletion protection, then they and the witness are removed in one UpdateTable
/// ("You can delete two replicas or delete one replica and a witness from a MRSC global
/// table, converting the remaining replica to a single-Region DynamoDB table":
/// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/V2globaltables_HowItWorks.html),
/// and the table is waited for until it is ACTIVE with no replica. Whether a replica's
/// deletion protection blocks its removal is not documented, so it is turned off first.
async fn remove_replicas(client: &Client, table: &str, global: &Global) -> Result<(), Error> {
    for region in &global.replicas[1..] {
        set_deletion_protection(&in_region(client, region), table, false).await?;
    }
    let replicas = global.replicas[1..].iter().map(|region| {
        let delete = DeleteReplicationGroupMemberAction::builder().region_name(region).build().expect("complete");
        ReplicationGroupUpdate::builder().delete(delete).build()
    });
    let witness = global.witness.iter().map(|region| {
        let delete =
            DeleteGlobalTableWitnessGroupMemberAction::builder().region_name(region).build().expect("complete");
        GlobalTableWitnessGroupUpdate::builder().delete(delete).build()
    });
    let update = client
        .update_table()
        .table_name(table)
        .set_replica_updates(Some(replicas.collect()))
        .set_global_table_witness_updates(Some(witness.collect()));
    update.send().await.op("dynamodb:UpdateTable")?;
    retry::POLL
        .poll(&format!("table {table}'s replicas being removed"), || async {
            let described = describe(client, table).await?;
            let alone = described.is_none_or(|description| {
                description.replicas().iter().all(|replica| replica.region_name() == Some(global.replicas[0].as_str()))
                    && description.global_table_witnesses().is_empty()
            });
            Ok::<_, Error>(alone.then_some(()))
        })
        .await?;
    wait_active(client, table).await
}

/// Makes a table found instead of made (a lost answer) global, unless it is already, or
/// holds items.
async fn make_global_if_empty(client: &Client, stack: &Stack, regions: &Regions) -> anyhow::Result<()> {
    let description = describe(client, &stack.table).await?.context("the table is not there")?;
    if Global::of(&description, &asking_region(client)).is_some() {
        return Ok(());
    }
    if holds_items(client, &stack.table).await? {
        Err(Refusal::TableNotEmpty { table: stack.table.clone(), regions: regions.to_string() })?;
    }
    make_global(client, stack, regions).await
}

/// Waits until TTL is off: a table is made global only then, since MRSC has none.
async fn wait_ttl_off(client: &Client, table: &str) -> Result<(), Error> {
    retry::POLL
        .poll(&format!("table {table}'s TTL being turned off"), || async {
            let ttl =
                client.describe_time_to_live().table_name(table).send().await.op("dynamodb:DescribeTimeToLive")?;
            let status = ttl.time_to_live_description().and_then(|ttl| ttl.time_to_live_status());
            Ok::<_, Error>(matches!(status, None | Some(TimeToLiveStatus::Disabled)).then_some(()))
        })
        .await
}

/// The same client, for the table's replica in `region`.
fn in_region(client: &Client, region: &str) -> Client {
    let config = client.config().to_builder().region(aws_sdk_dynamodb::config::Region::new(region.to_owned()));
    Client::from_conf(config.build())
}

async fn tag(client: &Client, arn: &str, stack: &Stack) -> Result<(), AwsError> {
    let tags = stack
        .tags()
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build().expect("key and value set"));
    client.tag_resource().resource_arn(arn).set_tags(Some(tags.collect())).send().await.op("dynamodb:TagResource")?;
    Ok(())
}

async fn set_deletion_protection(client: &Client, table: &str, on: bool) -> Result<(), Error> {
    let update = client.update_table().table_name(table).deletion_protection_enabled(on).send().await;
    update.op("dynamodb:UpdateTable")?;
    wait_active(client, table).await
}

/// Right after CreateTable AWS may still refuse this for a few seconds.
async fn enable_point_in_time_recovery(client: &Client, table: &str) -> Result<(), AwsError> {
    retry::ABOUT_TWO_MINUTES
        .retry(
            || {
                client
                    .update_continuous_backups()
                    .table_name(table)
                    .point_in_time_recovery_specification(
                        PointInTimeRecoverySpecification::builder()
                            .point_in_time_recovery_enabled(true)
                            .build()
                            .expect("complete"),
                    )
                    .send()
            },
            |error| has_code(error, &["ContinuousBackupsUnavailableException"]),
        )
        .await
        .op("dynamodb:UpdateContinuousBackups")?;
    Ok(())
}

async fn enable_ttl(client: &Client, table: &str, enabled: bool) -> Result<(), AwsError> {
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().enabled(enabled).attribute_name(EXPIRES_AT).build().expect("complete"),
        )
        .send()
        .await
        .op("dynamodb:UpdateTimeToLive")?;
    Ok(())
}

/// How many items the table holds, counted exactly (a Scan of keys only).
pub(crate) async fn count_items(client: &Client, table: &str) -> Result<u64, AwsError> {
    let mut pages = client.scan().table_name(table).select(Select::Count).into_paginator().send();
    let mut items = 0u64;
    while let Some(page) = pages.next().await {
        items += u64::try_from(page.op("dynamodb:Scan")?.count()).unwrap_or(0);
    }
    Ok(items)
}

/// Every counter and its last value, from a strongly consistent Scan, as `counters list`
/// reads them.
pub(crate) async fn counters(client: &Client, table: &str) -> Result<BTreeMap<String, i64>, StoreError> {
    let store = DynamoStore::new(client.clone(), table, IdempotencyTimings::default());
    Ok(store.list("").await?.into_iter().collect())
}

/// The tables in this region that hold stack `stack_name`'s counters by their tags: made
/// by counterctl for it, or kept by its uninstall. A table whose tags cannot be read
/// (access denied, being deleted) is not counted.
pub(crate) async fn stack_tables(
    client: &Client,
    account: &Account,
    stack_name: &str,
) -> Result<Vec<String>, AwsError> {
    let mut pages = client.list_tables().into_paginator().send();
    let mut names = Vec::new();
    while let Some(page) = pages.next().await {
        names.extend(page.op("dynamodb:ListTables")?.table_names().iter().cloned());
    }
    // A few at a time: these calls share the account's control-plane rate.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let mut reads = tokio::task::JoinSet::new();
    for name in names {
        let (client, slots, stack_name) = (client.clone(), std::sync::Arc::clone(&slots), stack_name.to_owned());
        let arn = arn(account, &name);
        reads.spawn(async move {
            let _slot = slots.acquire().await.expect("never closed");
            let tags = client.list_tags_of_resource().resource_arn(arn).send().await;
            let unreadable = ["ResourceNotFoundException", "AccessDeniedException", "ResourceInUseException"];
            let tags = found("dynamodb:ListTagsOfResource", tags, &unreadable)?;
            let ours = tags.is_some_and(|tags| {
                tags.tags().iter().any(|tag| {
                    Stack::is_stack_tag(&stack_name, tag.key(), tag.value())
                        || (tag.key() == KEPT_BY_TAG && tag.value() == stack_name)
                })
            });
            Ok::<_, AwsError>(ours.then_some(name))
        });
    }
    let mut tables = Vec::new();
    while let Some(read) = reads.join_next().await {
        tables.extend(read.expect("a table read does not panic")?);
    }
    tables.sort();
    Ok(tables)
}

/// Marks a table uninstall keeps as holding stack `stack_name`'s counters.
pub(crate) async fn mark_kept(client: &Client, table: &TableState, stack_name: &str) -> Result<(), AwsError> {
    let tag = Tag::builder().key(KEPT_BY_TAG).value(stack_name).build().expect("key and value set");
    client.tag_resource().resource_arn(&table.arn).tags(tag).send().await.op("dynamodb:TagResource")?;
    Ok(())
}

/// Deletes the table and its data: deletion protection off first, then, once the table
/// is ACTIVE again, DeleteTable. `false` when it was already gone.
async fn delete(client: &Client, table: &str) -> Result<bool, Error> {
    let Some(description) = describe(client, table).await? else {
        return Ok(false);
    };
    if let Some(global) = Global::of(&description, &asking_region(client)) {
        remove_replicas(client, table, &global).await?;
    }
    let unprotect = client.update_table().table_name(table).deletion_protection_enabled(false).send().await;
    if !gone("dynamodb:UpdateTable", unprotect, NOT_FOUND)? {
        return Ok(false);
    }
    wait_active(client, table).await?;
    Ok(gone("dynamodb:DeleteTable", client.delete_table().table_name(table).send().await, NOT_FOUND)?)
}

/// A switch of table asked for: every counter of the current table and of the new one.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Counters {
    pub(crate) current: BTreeMap<String, i64>,
    pub(crate) new: BTreeMap<String, i64>,
}

/// Refuses a switch from table `current` to `new` when any counter would go backwards:
/// lower in the new table, or missing there (it would restart at 1).
pub(crate) fn refuse_counters_behind(current: &str, new: &str, counters: &Counters) -> Result<(), Refusal> {
    let behind: Vec<String> = counters
        .current
        .iter()
        .filter(|(name, value)| counters.new.get(*name).copied().unwrap_or(0) < **value)
        .map(|(name, value)| format!("{name} ({value} → {})", counters.new.get(name).copied().unwrap_or(0)))
        .collect();
    if behind.is_empty() {
        return Ok(());
    }
    Err(Refusal::CountersBehind {
        current: current.to_owned(),
        asked: new.to_owned(),
        count: behind.len(),
        examples: behind.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
    })
}

/// What changes on the table.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct TableChange {
    pub(crate) deletion_protection: Option<Diff>,
    pub(crate) point_in_time_recovery: Option<Diff>,
    pub(crate) ttl: Option<Diff>,
    /// Made a global table of these regions.
    pub(crate) replicas: Option<(Diff, Regions)>,
    /// TTL turned off before the table is made global: MRSC has none.
    pub(crate) ttl_off: Option<Diff>,
}

impl Changes for TableChange {
    fn diffs(&self) -> Vec<Diff> {
        let replicas = self.replicas.as_ref().map(|(diff, _)| diff);
        [&self.deletion_protection, &self.point_in_time_recovery, &self.ttl, &self.ttl_off]
            .into_iter()
            .flatten()
            .chain(replicas)
            .cloned()
            .collect()
    }
}

/// The table: refused with another key schema; protections always on a table
/// counterctl made, on another only with `--protect-table` (else advised); TTL on
/// `expires_at` wherever DynamoDB allows it. With `regions` (the stack's, wanted or as
/// deployed), a strongly consistent global table: made from an empty table in its home
/// region, read in the others as the stack's replica. Refused: a table that holds items,
/// another set of regions than the table's (AWS adds and removes no MRSC replica), and an
/// eventually consistent global table, on which two regions' increments can both hand
/// out one value.
pub(crate) fn plan(
    table: Option<&TableState>,
    name: &str,
    protect_table: bool,
    (region, regions): (&str, Option<&Regions>),
    advisories: &mut Vec<String>,
) -> Result<Planned<TableChange>, Refusal> {
    let Some(table) = table else {
        return Ok(match regions {
            // Made in the home region as its replica.
            Some(regions) if regions.home != region => {
                let action = Action::Retain(format!("a replica, made with the table in {}", regions.home));
                Planned::new(Resource::Table, name, action)
            }
            _ => Planned::new(Resource::Table, name, Action::Create),
        });
    };
    if table.key_schema != COUNTER_KEY_SCHEMA {
        return Err(Refusal::TableKeySchema { table: table.name.clone(), found: table.key_schema.clone() });
    }
    if let Some(global) = &table.global
        && global.last_writer_wins()
    {
        return Err(Refusal::EventualGlobalTable { table: table.name.clone(), regions: global.regions().to_string() });
    }
    let deployed_regions = table.strong_regions();
    // AWS makes a replica only where no table of its name exists, and a function of the
    // stack on another table than the others' would hand out their values again.
    if let Some(regions) = regions
        && regions.home != region
        && deployed_regions.is_none()
    {
        return Err(Refusal::NotAReplica {
            table: table.name.clone(),
            region: region.to_owned(),
            home: regions.home.clone(),
        });
    }
    let replicas = match (regions, &deployed_regions) {
        (Some(wanted), Some(deployed)) if !wanted.same_table(deployed) => {
            return Err(Refusal::RegionsFixed {
                table: table.name.clone(),
                deployed: deployed.to_string(),
                asked: wanted.to_string(),
            });
        }
        (Some(wanted), None) if table.holds_items != Some(false) => {
            return Err(Refusal::TableNotEmpty { table: table.name.clone(), regions: wanted.to_string() });
        }
        (Some(wanted), None) => Some((diff(Field::Replicas, "none", format!("{wanted}, strong")), wanted.clone())),
        _ => None,
    };
    // A replica is the stack's where it carries the stack's tag, which install sets in
    // every replica region as it makes the table global (tags are per replica).
    let protect = table.tagged || protect_table;
    let mut protection = |on: bool, field, what| match (on, protect) {
        (true, _) => None,
        (false, true) => Some(diff(field, "off", "on")),
        (false, false) => {
            advisories.push(format!("table {} has no {what} (turn it on with --protect-table)", table.name));
            None
        }
    };
    let deletion_protection = protection(table.deletion_protection, Field::DeletionProtection, "deletion protection");
    let point_in_time_recovery =
        protection(table.point_in_time_recovery, Field::PointInTimeRecovery, "point-in-time recovery");
    let strongly_global = deployed_regions.is_some() || replicas.is_some();
    let (ttl, ttl_off) = match (&table.ttl, strongly_global) {
        // Being turned off: making it global waits until it is.
        (Ttl::OnExpiresAt, false) | (Ttl::Off | Ttl::Disabling, true) => (None, None),
        (Ttl::Off, false) => (Some(diff(Field::Ttl, "off", format!("on `{EXPIRES_AT}`"))), None),
        (Ttl::OnExpiresAt | Ttl::Other(_), true) => (None, Some(diff(Field::Ttl, "on", "off (MRSC has no TTL)"))),
        (Ttl::Other(ttl), false) => {
            advisories.push(format!(
                "table {} has TTL {ttl}, so idempotency records never expire (DynamoDB allows one TTL attribute; \
                 counterctl leaves it)",
                table.name
            ));
            (None, None)
        }
        (Ttl::Disabling, false) => {
            advisories.push(format!(
                "table {}'s TTL is being turned off; run install again once it is off to turn it on for `{EXPIRES_AT}` \
                 (DynamoDB allows one TTL change an hour)",
                table.name
            ));
            (None, None)
        }
    };
    let change = TableChange { deletion_protection, point_in_time_recovery, ttl, replicas, ttl_off };
    Ok(Planned::new(Resource::Table, name, Action::found(change, !table.tagged)))
}

/// Creates the table or applies its change; a note when it turned out to exist already.
/// `regions`: the stack's, when a new table is made global.
pub(crate) async fn apply(
    client: &Client,
    stack: &Stack,
    planned: &Planned<TableChange>,
    regions: Option<&Regions>,
) -> anyhow::Result<((), Option<String>)> {
    let name = stack.table.as_str();
    if planned.action == Action::Create {
        if let Made::Created(()) = create(client, stack).await.context("creating the table")? {
            enable_point_in_time_recovery(client, name).await.context("turning on point-in-time recovery")?;
            match regions {
                Some(regions) => make_global(client, stack, regions).await?,
                None => enable_ttl(client, name, true).await.context("turning on TTL")?,
            }
            return Ok(((), None));
        }
        // Made since the read (by a run interrupted a moment ago, or by hand): its data
        // is used as it is, and the next run's plan reads and completes it. A stack in
        // several regions needs it global before any other region is installed.
        if let Some(regions) = regions {
            wait_active(client, name).await.context("waiting for the table to be ACTIVE")?;
            make_global_if_empty(client, stack, regions).await?;
        }
        return Ok(((), Some("adopted: it was made since it was read; run install again to complete it".into())));
    }
    let Some(TableChange { deletion_protection, point_in_time_recovery, ttl, replicas, ttl_off }) =
        planned.action.change()
    else {
        return Ok(((), None));
    };
    if planned.changes() {
        // Updates are refused while the table is CREATING or UPDATING.
        wait_active(client, name).await.context("waiting for the table to be ACTIVE")?;
    }
    if deletion_protection.is_some() {
        set_deletion_protection(client, name, true).await.context("turning on deletion protection")?;
    }
    if point_in_time_recovery.is_some() {
        enable_point_in_time_recovery(client, name).await.context("turning on point-in-time recovery")?;
    }
    if ttl.is_some() {
        enable_ttl(client, name, true).await.context("turning on TTL")?;
    }
    if ttl_off.is_some() {
        enable_ttl(client, name, false).await.context("turning off TTL")?;
    }
    if let Some((_, regions)) = replicas {
        make_global(client, stack, regions).await?;
    }
    Ok(((), None))
}

/// A table, by name, to delete with its data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableName(pub(crate) String);

impl Delete for TableName {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        delete(&clients.dynamodb, &self.0).await.context("deleting the table")?;
        Ok(None)
    }
}

/// The table's contract: its counters too (`counters`).
pub(crate) struct TableContract;

impl crate::resources::Contract for TableContract {
    const KIND: crate::change::Resource = crate::change::Resource::Table;
    type State = TableState;
    type Change = TableChange;
    type Target = TableName;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        use crate::resources::Grant;
        let (stack, account) = (scope.context.stack, scope.context.account);
        let table = stack.table_arn(account);
        let mut grants = vec![
            Grant::new(
                "Table",
                &[
                    "dynamodb:CreateTable",
                    "dynamodb:DescribeTable",
                    "dynamodb:UpdateTable",
                    "dynamodb:DeleteTable",
                    "dynamodb:TagResource",
                    "dynamodb:ListTagsOfResource",
                    "dynamodb:DescribeContinuousBackups",
                    "dynamodb:UpdateContinuousBackups",
                    "dynamodb:DescribeTimeToLive",
                    "dynamodb:UpdateTimeToLive",
                ],
                vec![table.clone()],
            ),
            // ListTables has no resource type: it is granted on `*` or not at all. Install
            // and uninstall look for the tables an uninstall kept.
            Grant::on_any("FindKeptTables", &["dynamodb:ListTables"]),
            // A kept table is known by its tag, so each table of the region is asked for
            // its tags (only when the stack has no function and no --table is given).
            Grant::new("ReadTheTablesTags", &["dynamodb:ListTagsOfResource"], vec![arn(account, "*")]),
            Grant::new("Counters", &["dynamodb:Scan", "dynamodb:UpdateItem"], vec![table]),
        ];
        // A strongly consistent global table: its replicas and witness made and removed
        // from this region's table, and DynamoDB's replication role made once for the
        // account, as AWS's MRSC tutorial lists them
        // (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/V2globaltables.tutorial.html#create-gt-mrsc).
        if scope.regions.is_some() {
            grants.push(Grant::new(
                "GlobalTable",
                &[
                    "dynamodb:CreateTableReplica",
                    "dynamodb:DeleteTableReplica",
                    "dynamodb:CreateGlobalTableWitness",
                    "dynamodb:DeleteGlobalTableWitness",
                ],
                vec![stack.table_arn(account)],
            ));
            let replication = format!(
                "arn:{}:iam::{}:role/aws-service-role/replication.dynamodb.amazonaws.com/AWSServiceRoleForDynamoDBReplication",
                account.partition, account.id
            );
            grants.push(
                Grant::new("DynamoDBReplicationRole", &["iam:CreateServiceLinkedRole"], vec![replication])
                    .with_condition(serde_json::json!({"StringEquals": {"iam:AWSServiceName": "replication.dynamodb.amazonaws.com"}})),
            );
        }
        // Without --table, a stack whose function is gone is read from the default table
        // first (the table a new stack gets).
        let default_table = counter_function::dynamo::DEFAULT_TABLE;
        if stack.table != default_table {
            grants.push(Grant::new(
                "ReadTheDefaultTable",
                &["dynamodb:DescribeTable"],
                vec![arn(account, default_table)],
            ));
        }
        grants
    }
}
