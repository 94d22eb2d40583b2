//! The function's published versions and the alias [`ALIAS`] every front invokes.
//!
//! A deploy that changes the function's code or configuration publishes a version and
//! moves the alias to it, so callers move at once (new invocations get the new version,
//! those in flight finish on the old: https://docs.aws.amazon.com/lambda/latest/dg/configuration-aliases.html),
//! and `counterctl rollback` moves it back in one call. Versions past [`KEEP_VERSIONS`] are
//! deleted, never the alias's nor the one before it.

use anyhow::Context;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::types::{Architecture, FunctionConfiguration};

use super::function::{self, FunctionState};
use crate::aws::{AwsError, Made, Operation, found, gone, has_code, made};
use crate::change::{Action, Changes, Diff, Field, Planned, Resource, diff};
use crate::stack::Stack;

/// The alias every front invokes.
pub(crate) const ALIAS: &str = "live";
/// How many published versions are kept (the alias's and the one before it always are).
pub(crate) const KEEP_VERSIONS: usize = 5;

const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];

/// What a function runs: its code and the configuration install sets. Two versions with
/// one snapshot behave alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) code_sha256: String,
    pub(crate) architecture: String,
    pub(crate) memory_mb: i32,
    pub(crate) timeout_seconds: i32,
    pub(crate) role: String,
    pub(crate) table: String,
}

impl Snapshot {
    /// `$LATEST` as read.
    pub(crate) fn of(function: &FunctionState) -> Self {
        Self {
            code_sha256: function.code_sha256.clone(),
            architecture: function.architecture.clone(),
            memory_mb: function.memory_mb,
            timeout_seconds: function.timeout_seconds,
            role: function.role.clone(),
            table: function.table().to_owned(),
        }
    }

    fn of_configuration(configuration: &FunctionConfiguration) -> Self {
        Self {
            code_sha256: configuration.code_sha256().unwrap_or_default().to_owned(),
            architecture: configuration.architectures().first().map_or("x86_64", Architecture::as_str).to_owned(),
            memory_mb: configuration.memory_size().unwrap_or(0),
            timeout_seconds: configuration.timeout().unwrap_or(0),
            role: configuration.role().unwrap_or_default().to_owned(),
            table: function::configured_table(configuration.environment()).to_owned(),
        }
    }
}

/// One published version.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Version {
    pub(crate) number: u64,
    pub(crate) snapshot: Snapshot,
    /// The counterctl release that published it, from its description.
    pub(crate) published_by: Option<String>,
}

/// What a version published by this counterctl says in its description.
pub(crate) fn publisher() -> String {
    format!("{PUBLISHER}{}", env!("CARGO_PKG_VERSION"))
}

const PUBLISHER: &str = "published by counterctl ";

/// Whether release `release` (`MAJOR.MINOR.PATCH`) is older than this counterctl; `None`
/// when it cannot tell.
pub(crate) fn older_than_this(release: &str) -> Option<bool> {
    let parts = |release: &str| -> Option<Vec<u64>> {
        release.split(['-', '+']).next()?.split('.').map(|part| part.parse().ok()).collect()
    };
    Some(parts(release)? < parts(env!("CARGO_PKG_VERSION"))?)
}

/// The function's published versions (by number, oldest first) and its alias's version.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Versions {
    pub(crate) alias: Option<u64>,
    /// The alias's revision as read: a move planned on it fails if the alias moved since.
    pub(crate) revision: Option<String>,
    /// The alias sends a share of calls to other versions (a routing configuration set
    /// outside counterctl): a move clears it.
    pub(crate) weighted: bool,
    pub(crate) published: Vec<Version>,
}

impl Versions {
    pub(crate) fn get(&self, number: u64) -> Option<&Version> {
        self.published.iter().find(|version| version.number == number)
    }

    /// The version the alias runs, if it has one and it is listed.
    pub(crate) fn aliased(&self) -> Option<&Version> {
        self.alias.and_then(|number| self.get(number))
    }

    /// The newest version published before `number`: where a plain rollback goes.
    pub(crate) fn before(&self, number: u64) -> Option<&Version> {
        self.published.iter().rev().find(|version| version.number < number)
    }

    fn newest(&self) -> Option<&Version> {
        self.published.last()
    }
}

/// Reads the alias and every published version of function `name`.
pub(crate) async fn read(client: &Client, name: &str) -> Result<Versions, AwsError> {
    let (alias, listed) = tokio::join!(
        client.get_alias().function_name(name).name(ALIAS).send(),
        client.list_versions_by_function().function_name(name).into_paginator().items().send().collect::<Vec<_>>(),
    );
    let alias = found("lambda:GetAlias", alias, NOT_FOUND)?;
    let mut published = Vec::new();
    for configuration in listed {
        let configuration = match configuration {
            Err(error) if has_code(&error, NOT_FOUND) => return Ok(Versions::default()),
            configuration => configuration.op("lambda:ListVersionsByFunction")?,
        };
        // `$LATEST` is listed too; it is the function itself.
        if let Some(number) = configuration.version().and_then(|version| version.parse().ok()) {
            let published_by =
                configuration.description().and_then(|text| text.strip_prefix(PUBLISHER)).map(str::to_owned);
            published.push(Version { number, snapshot: Snapshot::of_configuration(&configuration), published_by });
        }
    }
    published.sort_by_key(|version| version.number);
    let revision = alias.as_ref().and_then(|alias| alias.revision_id().map(str::to_owned));
    let weighted = alias
        .as_ref()
        .and_then(|alias| alias.routing_config())
        .and_then(|routing| routing.additional_version_weights())
        .is_some_and(|weights| !weights.is_empty());
    let alias = alias.and_then(|alias| alias.function_version().and_then(|version| version.parse().ok()));
    Ok(Versions { alias, revision, weighted, published })
}

/// Which version the alias should point at once the function is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A version published from `$LATEST` now.
    New,
    /// This published version already holds what `$LATEST` runs (PublishVersion returns
    /// it: "Lambda doesn't publish a version if the function's configuration and code
    /// haven't changed since the last version",
    /// https://docs.aws.amazon.com/lambda/latest/api/API_PublishVersion.html).
    Published(u64),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::New => f.write_str("a new version"),
            Self::Published(number) => write!(f, "version {number}"),
        }
    }
}

/// What changes on the versions and the alias.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AliasChange {
    /// PublishVersion, then the alias to the version it returns (CreateAlias or
    /// UpdateAlias).
    pub(crate) version: Option<Diff>,
    /// DeleteFunction of each of these versions.
    pub(crate) prune: Vec<u64>,
}

impl Changes for AliasChange {
    fn diffs(&self) -> Vec<Diff> {
        let Self { version, prune } = self;
        let mut diffs: Vec<Diff> = version.iter().cloned().collect();
        if !prune.is_empty() {
            let numbers: Vec<String> = prune.iter().map(u64::to_string).collect();
            diffs.push(diff(Field::Versions, numbers.join(", "), "deleted"));
        }
        diffs
    }
}

/// The alias's plan, with where it goes and what apply needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AliasPlan {
    pub(crate) planned: Planned<AliasChange>,
    pub(crate) target: Target,
    /// The alias's revision as read: the move fails if another install or a rollback
    /// moved it since, rather than undo that.
    pub(crate) revision: Option<String>,
}

impl AliasPlan {
    /// Whether the alias is made or points at another version (publishing first).
    pub(crate) fn moves(&self) -> bool {
        match &self.planned.action {
            Action::Create => true,
            action => action.change().is_some_and(|change| change.version.is_some()),
        }
    }
}

impl crate::change::Rows for AliasPlan {
    fn rows(&self) -> crate::change::RowList {
        let Self { planned, target: _, revision: _ } = self;
        planned.rows()
    }
}

/// The alias: a version published and the alias moved when the function changes, when it
/// is new, or when the alias runs older code than `$LATEST` (after a rollback); versions
/// past [`KEEP_VERSIONS`] deleted.
pub(crate) fn plan(function: Option<&FunctionState>, function_changes: bool) -> AliasPlan {
    let created =
        |target| AliasPlan { planned: Planned::new(Resource::Alias, ALIAS, Action::Create), target, revision: None };
    let Some(function) = function else {
        return created(Target::New);
    };
    let versions = &function.versions;
    let target = match versions.newest() {
        Some(newest) if !function_changes && newest.snapshot == Snapshot::of(function) => {
            Target::Published(newest.number)
        }
        _ => Target::New,
    };
    // A function from before versions: the alias is made, with its first version.
    let Some(current) = versions.alias else {
        return created(target);
    };
    let version = match (target != Target::Published(current), versions.weighted) {
        (true, _) => {
            Some(diff(Field::Version, Target::Published(current), format!("{target} ({})", why(function_changes))))
        }
        // Every call on the one version (a share routed elsewhere may run another table).
        (false, true) => Some(diff(
            Field::Version,
            format!("version {current} and a share on others"),
            format!("version {current} alone"),
        )),
        (false, false) => None,
    };
    let change = AliasChange { version, prune: prune(versions, target, Some(current)) };
    let planned = Planned::new(Resource::Alias, ALIAS, Action::found(change, false));
    AliasPlan { planned, target, revision: versions.revision.clone() }
}

fn why(function_changes: bool) -> &'static str {
    if function_changes { "the function changes" } else { "what the function runs now" }
}

/// The versions to delete: all but the newest [`KEEP_VERSIONS`] (a new one counting),
/// the alias's target, and the version before it.
fn prune(versions: &Versions, target: Target, current: Option<u64>) -> Vec<u64> {
    let slots = KEEP_VERSIONS - usize::from(target == Target::New);
    let mut kept: Vec<u64> = versions.published.iter().rev().take(slots).map(|version| version.number).collect();
    // Where the alias ends up and the one before it (a plain rollback's way back; a new
    // version's is the newest kept already), and the one it leaves (calls may still run on
    // it).
    if let Target::Published(number) = target {
        kept.push(number);
        kept.extend(versions.before(number).map(|version| version.number));
    }
    kept.extend(current);
    versions.published.iter().map(|version| version.number).filter(|number| !kept.contains(number)).collect()
}

/// Publishes (or finds) the version the alias should point at, moves the alias there and
/// deletes the pruned versions; returns the alias's version. The caller has waited for
/// [`function::wait_ready`].
pub(crate) async fn apply(
    client: &Client,
    stack: &Stack,
    plan: &AliasPlan,
    code_sha256: &str,
) -> anyhow::Result<(u64, Option<String>)> {
    let name = &stack.name;
    let prune = plan.planned.action.change().map_or(&[][..], |change| change.prune.as_slice());
    let create = plan.planned.action == Action::Create;
    let version = if plan.moves() {
        // Only what was planned: a `$LATEST` whose code changed since is not published.
        let publish = client.publish_version().function_name(name).code_sha256(code_sha256).description(publisher());
        let published = publish.send().await.op("lambda:PublishVersion").context("publishing a version")?;
        let number: u64 = published
            .version()
            .and_then(|version| version.parse().ok())
            .context("PublishVersion answered no version number")?;
        function::wait_ready_at(client, name, Some(&number.to_string()))
            .await
            .context("waiting for the new version")?;
        if create {
            make_alias(client, name, number).await?;
        } else {
            move_alias(client, name, number, plan.revision.as_deref()).await?;
        }
        Some(number)
    } else {
        None
    };
    // The alias has moved: a version that cannot be deleted now is kept, and tried again
    // by the next run.
    let mut kept = Vec::new();
    for number in prune {
        let delete = client.delete_function().function_name(name).qualifier(number.to_string()).send().await;
        match gone("lambda:DeleteFunction", delete, NOT_FOUND) {
            Ok(_) => {}
            // Another alias points there (a rollback running alongside, or an alias of
            // the team's own).
            Err(error) => kept.push(format!("version {number} kept: {error}")),
        }
    }
    let note = (!kept.is_empty()).then(|| kept.join("; "));
    let number = match version {
        Some(number) => number,
        None => {
            let read = client.get_alias().function_name(name).name(ALIAS).send().await.op("lambda:GetAlias")?;
            read.function_version().and_then(|version| version.parse().ok()).context("the alias names no version")?
        }
    };
    Ok((number, note))
}

/// Makes the alias at version `number`; one there already (a lost answer, a concurrent
/// install) is moved there.
async fn make_alias(client: &Client, name: &str, number: u64) -> anyhow::Result<()> {
    let version = number.to_string();
    let create = client.create_alias().function_name(name).name(ALIAS).function_version(&version).send().await;
    // moto answers an existing alias with ConflictException, Lambda with
    // ResourceConflictException (https://docs.aws.amazon.com/lambda/latest/api/API_CreateAlias.html).
    if let Made::Existed = made("lambda:CreateAlias", create, &["ResourceConflictException", "ConflictException"])
        .context("making the alias")?
    {
        move_alias(client, name, number, None).await?;
    }
    Ok(())
}

/// Moves the existing alias to version `number`: one UpdateAlias, which callers see at
/// once. With `revision`, only if the alias has not moved since it was read.
pub(crate) async fn move_alias(client: &Client, name: &str, number: u64, revision: Option<&str>) -> anyhow::Result<()> {
    // With an empty routing configuration: every call on the one version.
    let update = client.update_alias().function_name(name).name(ALIAS).function_version(number.to_string());
    let update = update.routing_config(aws_sdk_lambda::types::AliasRoutingConfiguration::builder().build());
    let moved = update.set_revision_id(revision.map(str::to_owned)).send().await;
    if let Err(error) = &moved
        && has_code(error, &["PreconditionFailedException"])
    {
        anyhow::bail!(
            "alias {ALIAS} of function {name} moved since it was read (an install or rollback ran at the same \
             time); nothing was changed\nhint: run the command again"
        );
    }
    moved.op("lambda:UpdateAlias").context("moving the alias")?;
    Ok(())
}

/// Why a rollback is refused, before any write.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum RollbackRefusal {
    #[error("stack {stack} has no function in {region}\nhint: check --name and --region")]
    NoFunction { stack: String, region: String },
    #[error(
        "function {stack} has no alias {ALIAS} yet: it was installed by a counterctl from before versions, and its \
         front invokes the function itself\nhint: run `counterctl install` once; later installs publish versions \
         that rollback can go back to"
    )]
    NoAlias { stack: String },
    #[error(
        "alias {ALIAS} runs version {current}, and no version of function {stack} is older\nhint: \
         `counterctl rollback --to VERSION` goes to a newer one; published versions: {published}"
    )]
    NothingBefore { stack: String, current: u64, published: String },
    #[error(
        "function {stack} has no version {asked}: versions past the newest {KEEP_VERSIONS} are deleted, and \
         versions are the stack's own\nhint: pick one of the published versions: {published}"
    )]
    NoSuchVersion { stack: String, asked: u64, published: String },
    #[error(
        "version {version} of function {stack} uses table {table}, and the alias's uses {current_table}: its counters \
         are behind the ones handed out since the table switch, so it would hand out IDs again\nhint: roll back to a \
         version on {current_table} (published since the switch)"
    )]
    OtherTable { stack: String, version: u64, table: String, current_table: String },
    #[error(
        "callers of stack {stack} may still reach the function itself: its move to the alias did not finish, so \
         moving the alias would not move them\nhint: run `counterctl install` to finish it, then roll back"
    )]
    MoveUnfinished { stack: String },
    #[error(
        "stack {stack} was made by CloudFormation stack {cloudformation}: its alias is that stack's to move, or it \
         would drift\nhint: set the version of the alias in the template of stack {cloudformation} and update it"
    )]
    CloudFormation { stack: String, cloudformation: String },
    #[error(
        "stack {stack} is reached through the function's own URL, from before the alias: moving the alias would \
         change nothing for its callers\nhint: `counterctl install --yes` moves the URL to the alias (a new \
         address for callers)"
    )]
    UrlFront { stack: String },
}

/// A move of the alias back (or to a version named).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rollback {
    /// The version the alias runs.
    pub(crate) from: Version,
    /// Where it goes; `None`: it runs that version already.
    pub(crate) to: Option<Version>,
    pub(crate) revision: Option<String>,
}

/// Plans a rollback of `stack`'s alias to `to`, else to the version before its own.
pub(crate) fn plan_rollback(stack: &str, versions: &Versions, to: Option<u64>) -> Result<Rollback, RollbackRefusal> {
    let published =
        || versions.published.iter().map(|version| version.number.to_string()).collect::<Vec<_>>().join(", ");
    let current = versions.alias.ok_or_else(|| RollbackRefusal::NoAlias { stack: stack.to_owned() })?;
    let from = versions.get(current).cloned().ok_or_else(|| RollbackRefusal::NoSuchVersion {
        stack: stack.to_owned(),
        asked: current,
        published: published(),
    })?;
    let target = match to {
        Some(asked) => versions.get(asked).ok_or_else(|| RollbackRefusal::NoSuchVersion {
            stack: stack.to_owned(),
            asked,
            published: published(),
        })?,
        None => versions.before(current).ok_or_else(|| RollbackRefusal::NothingBefore {
            stack: stack.to_owned(),
            current,
            published: published(),
        })?,
    };
    let revision = versions.revision.clone();
    if target.number == current {
        return Ok(Rollback { from, to: None, revision });
    }
    if target.snapshot.table != from.snapshot.table {
        return Err(RollbackRefusal::OtherTable {
            stack: stack.to_owned(),
            version: target.number,
            table: target.snapshot.table.clone(),
            current_table: from.snapshot.table.clone(),
        });
    }
    Ok(Rollback { from, to: Some(target.clone()), revision })
}

/// The alias's contract: its versions are read with the function.
pub(crate) struct AliasContract;

impl crate::resources::Contract for AliasContract {
    const KIND: Resource = Resource::Alias;
    type State = Versions;
    type Change = AliasChange;
    type Target = function::FunctionName;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        let function = scope.context.stack.function_arn(scope.context.account);
        // A version's or the alias's ARN is the function's with `:QUALIFIER`
        // (https://docs.aws.amazon.com/lambda/latest/dg/lambda-api-permissions-ref.html):
        // these calls act on the function and on its versions and alias.
        let actions = &[
            "lambda:PublishVersion",
            "lambda:ListVersionsByFunction",
            "lambda:GetAlias",
            "lambda:CreateAlias",
            "lambda:UpdateAlias",
            // The alias's policy, read with the function (the permission's statement).
            "lambda:GetPolicy",
        ];
        let qualified = format!("{function}:*");
        vec![
            crate::resources::Grant::new("Versions", actions, vec![function.clone(), qualified.clone()]),
            // Pruned versions; a version's configuration, while it becomes Active.
            crate::resources::Grant::new(
                "OldVersions",
                &["lambda:DeleteFunction", "lambda:GetFunctionConfiguration"],
                vec![qualified],
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(code: &str) -> Snapshot {
        Snapshot {
            code_sha256: code.to_owned(),
            architecture: "x86_64".to_owned(),
            memory_mb: 128,
            timeout_seconds: 10,
            role: "arn:aws:iam::1:role/r".to_owned(),
            table: "AtomicCounters".to_owned(),
        }
    }

    fn versions(numbers: &[(u64, &str)], alias: Option<u64>) -> Versions {
        let published = numbers
            .iter()
            .map(|(number, code)| Version { number: *number, snapshot: snapshot(code), published_by: None })
            .collect();
        Versions { alias, revision: None, weighted: false, published }
    }

    #[test]
    fn prune_keeps_the_newest_five_counting_a_new_one() {
        let all: Vec<(u64, &str)> = (1..=5).map(|n| (n, "old")).collect();
        assert_eq!(prune(&versions(&all, Some(5)), Target::New, Some(5)), vec![1]);
        assert_eq!(prune(&versions(&all, Some(5)), Target::Published(5), Some(5)), Vec::<u64>::new());
    }

    #[test]
    fn prune_never_deletes_the_alias_version_nor_the_one_before_it() {
        let all: Vec<(u64, &str)> = (1..=8).map(|n| (n, "old")).collect();
        // Rolled back to 2, then a new version: 2 stays (where the alias was), beside the
        // newest four and the new one.
        assert_eq!(prune(&versions(&all, Some(2)), Target::New, Some(2)), vec![1, 3, 4]);
        // Brought forward to 8 from 2: 2 stays (where the alias was), and 7 before 8.
        assert_eq!(prune(&versions(&all, Some(2)), Target::Published(8), Some(2)), vec![1, 3]);
    }

    #[test]
    fn a_plain_rollback_goes_to_the_version_before_the_alias_and_to_goes_where_it_says() {
        let versions = versions(&[(1, "a"), (3, "b"), (4, "c")], Some(4));
        let plain = plan_rollback("S", &versions, None).unwrap();
        assert_eq!((plain.from.number, plain.to.map(|to| to.number)), (4, Some(3)));
        let to = plan_rollback("S", &versions, Some(1)).unwrap().to.unwrap();
        assert_eq!((to.number, to.snapshot.code_sha256.as_str()), (1, "a"));
        let there = plan_rollback("S", &versions, Some(4)).unwrap();
        assert_eq!((there.from.number, there.to), (4, None), "already there");
    }

    #[test]
    fn a_rollback_is_refused_to_a_version_not_there_past_the_oldest_or_without_an_alias() {
        let kept = versions(&[(3, "b"), (4, "c")], Some(4));
        assert!(matches!(
            plan_rollback("S", &kept, Some(2)),
            Err(RollbackRefusal::NoSuchVersion { asked: 2, ref published, .. }) if published == "3, 4"
        ));
        let oldest = Versions { alias: Some(3), ..kept.clone() };
        assert!(matches!(plan_rollback("S", &oldest, None), Err(RollbackRefusal::NothingBefore { current: 3, .. })));
        let no_alias = Versions { alias: None, ..kept };
        assert!(matches!(plan_rollback("S", &no_alias, None), Err(RollbackRefusal::NoAlias { .. })));
    }

    #[test]
    fn a_rollback_to_a_version_on_the_table_before_a_switch_is_refused() {
        let mut switched = versions(&[(1, "a"), (2, "a")], Some(2));
        switched.published[1].snapshot.table = "NewCounters".to_owned();
        let refused = plan_rollback("S", &switched, None);
        assert!(
            matches!(refused, Err(RollbackRefusal::OtherTable { version: 1, ref table, .. }) if table == "AtomicCounters"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_release_is_older_by_its_numbers_not_its_text() {
        assert_eq!(older_than_this("0.0.9"), Some(true));
        assert_eq!(older_than_this(env!("CARGO_PKG_VERSION")), Some(false));
        assert_eq!(older_than_this("10.0.0"), Some(false), "10 > 0, though \"10\" < \"9\" as text");
        assert_eq!(older_than_this("a.b"), None);
    }

    #[test]
    fn before_is_the_newest_older_version_left() {
        let versions = versions(&[(1, "a"), (3, "b"), (4, "c")], Some(4));
        assert_eq!(versions.before(4).map(|version| version.number), Some(3));
        assert_eq!(versions.before(3).map(|version| version.number), Some(1));
        assert_eq!(versions.before(1), None);
    }
}
