//! The vocabulary of a plan: what happens to one resource, typed by that resource's own
//! change, and the row it is shown and reported as.
//!
//! Each resource module has its change type (e.g. [`crate::resources::function`]'s
//! `FunctionChange { code, configuration, concurrency, tags }`): the plan fills it, apply
//! destructures it whole, so a difference that nobody applies does not compile. For the
//! display and `--output json`, a change is flattened into [`Diff`]s.

use std::fmt;
use std::future::Future;

use serde::Serialize;

use crate::aws::Clients;

/// Why install refuses, before any write.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error(
        "table {table} exists with key schema {found}, not the counter layout (key `id`, type S)\n\
         hint: pass --table NAME to use another table; counterctl changes nothing in this one"
    )]
    TableKeySchema { table: String, found: String },
    #[error(
        "the function uses table {current}; --table {asked} would point it at another table, and every counter \
         not in that table would restart at 1 and hand out IDs already issued\n\
         hint: leave out --table to keep {current}; to move the counters on purpose, copy them into {asked} first \
         and pass --switch-table"
    )]
    TableSwitch { current: String, asked: String },
    #[error(
        "refusing to switch from table {current} to {asked}: {count} counter(s) would go backwards: {examples}\n\
         hint: copy the counters into {asked} (at least their current values) and run again, or leave out --table"
    )]
    CountersBehind { current: String, asked: String, count: usize, examples: String },
    #[error(
        "stack {stack} has no function, and its counters are in table(s) {tables}, kept by an uninstall; \
         another table would restart every counter at 1 and hand out IDs already issued\n\
         hint: pass --table with that table to pick its counters up again (or --table NEW to start new \
         sequences on purpose)"
    )]
    KeptTable { stack: String, tables: String },
    /// The stack's own records (the function's `TABLE_NAME`, the role's grant) name a
    /// table that is gone. A table deleted with point-in-time recovery on leaves a system
    /// backup for 35 days
    /// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/PointInTimeRecovery_Howitworks.html#howitworks-pitr-deleting-table).
    #[error(
        "table {table} of stack {stack} is gone, and its counters with it: a new, empty table would hand out \
         1, 2, 3 again, IDs already issued\n\
         hint: restore it under the name {table}, then run install again: a table deleted with point-in-time \
         recovery on (counterctl turns it on) leaves a system backup for 35 days \
         (`aws dynamodb list-backups --table-name {table} --backup-type SYSTEM`, then \
         `aws dynamodb restore-table-from-backup --target-table-name {table} --backup-arn ARN`), or restore a \
         backup of your own to that name. Only if no ID from it is in use (or it was never made: a first install \
         that failed before making it), pass --recreate-table to start every counter again at 1 in a new table"
    )]
    TableLost { stack: String, table: String },
    #[error(
        "this counterctl carries no {architecture} function: it was built without a zip for {architecture} built \
         from its sources\n\
         hint: pass --function-zip PATH with a bootstrap built for {architecture} (scripts/build-function.sh \
         builds one where the aarch64-unknown-linux-gnu Rust target is installed), or --architecture x86_64"
    )]
    NoBundledCode { architecture: &'static str },
    #[error(
        "--auth api-key does not go with --front function-url: a Function URL has no API keys\n\
         hint: use --auth iam (callers sign with SigV4; the default there) or --front rest"
    )]
    ApiKeyOnFunctionUrl,
    #[error(
        "the stack has both a function URL and a REST API (a move between them did not finish)\n\
         hint: pass --front function-url or --front rest to say which to keep; the other is deleted"
    )]
    BothFronts,
    #[error(
        "--alarm-email and --alarm-topic say where the alarms send, and --alarms off removes them\n\
         hint: leave out --alarms off, or the option that gives them somewhere to send"
    )]
    AlarmTargetWithoutAlarms,
    #[error(
        "--domain does not go with --front function-url: a function URL has no custom domains\n\
         hint: put CloudFront in front of the function URL for a domain of your own, or use --front rest"
    )]
    DomainOnFunctionUrl,
    #[error(
        "stack {stack} serves custom domain {domain}, which a function URL cannot keep\n\
         hint: pass --domain off with --front function-url to remove the domain (callers of https://{domain} stop working)"
    )]
    FrontSwitchWithDomain { stack: String, domain: String },
    #[error(
        "--certificate-arn and --hosted-zone-id belong to a custom domain, and the stack has none\n\
         hint: pass --domain NAME with them"
    )]
    DomainNeedsName,
    #[error("--domain {domain} needs a certificate\nhint: pass --certificate-arn with an ACM certificate for {domain}")]
    DomainNeedsCertificate { domain: String },
    #[error(
        "certificate {arn} is not in {region}: a regional custom domain takes a certificate from its own region\n\
         hint: request or import one in ACM in {region} (`aws acm request-certificate --region {region} …`)"
    )]
    CertificateRegion { arn: String, region: String },
    #[error("ACM has no certificate {arn}\nhint: check --certificate-arn (`aws acm list-certificates`)")]
    CertificateNotFound { arn: String },
    #[error(
        "certificate {arn} is {status}, not ISSUED\n\
         hint: finish its validation in ACM (the DNS or email record it asks for), then run again"
    )]
    CertificateNotIssued { arn: String, status: String },
    #[error(
        "certificate {arn} does not cover {name}: it is for {names}\n\
         hint: use a certificate for {name} or for its parent's wildcard"
    )]
    CertificateNotCovering { arn: String, name: String, names: String },
    #[error(
        "custom domain {name} exists and is not this stack's (it maps to {mapped_to}); counterctl never takes one over\n\
         hint: use another --domain, or remove that domain's mappings and the domain first"
    )]
    DomainNotOurs { name: String, mapped_to: String },
    #[error(
        "SNS topic {name} exists and is not this stack's; counterctl never takes one over\n\
         hint: give it with --alarm-topic ARN to send the alarms there, or delete it and run again"
    )]
    TopicNotOurs { name: String },
    #[error(
        "{name} already has a DNS record in hosted zone {zone} ({found}); counterctl never overwrites one it did not make\n\
         hint: delete that record and run again, or leave out --hosted-zone-id and point it yourself"
    )]
    RecordNotOurs { name: String, zone: String, found: String },
    #[error(
        "table {table} holds items, and AWS makes a strongly consistent global table ({regions}) only from an empty one\n\
         hint: install a new stack with its own --name and --table and --regions, stop the old callers, then \
         `counterctl counters export` from this stack and `counterctl counters import` into the new one (import never \
         lowers a counter), and move callers to the new stack's URLs"
    )]
    TableNotEmpty { table: String, regions: String },
    #[error(
        "table {table} is a global table in {deployed}; AWS adds and removes no replica or witness of a strongly \
         consistent table, so it cannot become {asked}\n\
         hint: leave out --regions to keep {deployed}; for other regions, install a new stack with its own --name \
         and --table and those --regions, then `counters export` from this stack and `counters import` into the new one"
    )]
    RegionsFixed { table: String, deployed: String, asked: String },
    #[error(
        "table {table} is a global table with eventual consistency ({regions}): the last writer wins, so increments \
         in two regions can hand out one value twice\n\
         hint: counterctl runs only on a one-region table or a strongly consistent one; install a new stack with its \
         own --name and --table (with --regions for several regions) and move the counters with `counters export` and \
         `counters import`"
    )]
    EventualGlobalTable { table: String, regions: String },
    #[error(
        "table {table} exists in {region} and is not a replica of the stack's global table in {home}: AWS makes a \
         replica only where no table of its name is, and a function on another table would hand out IDs again\n\
         hint: install the stack under a new --name and --table with --regions, or delete that table in {region} \
         if nothing uses it"
    )]
    NotAReplica { table: String, region: String, home: String },
    #[error(
        "{resource} {name} of stack {stack} was made by CloudFormation stack {cloudformation} (its tag \
         aws:cloudformation:stack-name says so): counterctl changes nothing CloudFormation owns, as the stack would \
         drift and its next update undo the change\nhint: {hint}; status, increment, get, counters, logs and status \
         --metrics work on it as they are"
    )]
    CloudFormationOwned { stack: String, resource: &'static str, name: String, cloudformation: String, hint: String },
    #[error(
        "--domain is not yet made for a stack in several regions (it needs the name in each region and latency \
         records)\nhint: leave out --domain; callers take the regions' URLs in order (counterctl-client, serve \
         --upstream)"
    )]
    DomainWithRegions,
}

/// One resource of the stack, in the order the plan lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Resource {
    Table,
    LogGroup,
    Role,
    Policy,
    Function,
    Alias,
    FunctionUrl,
    Permission,
    Api,
    Route,
    Integration,
    Stage,
    ApiKey,
    UsagePlan,
    Domain,
    Mapping,
    DnsRecord,
    Topic,
    Subscription,
    Alarm,
}

// Every kind is in `ALL`, in order, up to the last one.
const _: () = {
    assert!(Resource::ALL.len() == Resource::Alarm as usize + 1);
    let mut i = 0;
    while i < Resource::ALL.len() {
        assert!(Resource::ALL[i] as usize == i);
        i += 1;
    }
};

impl Resource {
    /// Every kind, in order (a kind added last moves the check below).
    pub(crate) const ALL: [Self; 20] = [
        Self::Table,
        Self::LogGroup,
        Self::Role,
        Self::Policy,
        Self::Function,
        Self::Alias,
        Self::FunctionUrl,
        Self::Permission,
        Self::Api,
        Self::Route,
        Self::Integration,
        Self::Stage,
        Self::ApiKey,
        Self::UsagePlan,
        Self::Domain,
        Self::Mapping,
        Self::DnsRecord,
        Self::Topic,
        Self::Subscription,
        Self::Alarm,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::LogGroup => "log group",
            Self::Role => "role",
            Self::Policy => "policy",
            Self::Function => "function",
            Self::Alias => "alias",
            Self::FunctionUrl => "function url",
            Self::Permission => "permission",
            Self::Api => "api",
            Self::Route => "route",
            Self::Integration => "integration",
            Self::Stage => "stage",
            Self::ApiKey => "api key",
            Self::UsagePlan => "usage plan",
            Self::Domain => "domain",
            Self::Mapping => "mapping",
            Self::DnsRecord => "dns record",
            Self::Topic => "alarm topic",
            Self::Subscription => "subscription",
            Self::Alarm => "alarm",
        }
    }
}

/// The field a shown difference is about (display and JSON only: apply reads the typed
/// change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Field {
    Code,
    Memory,
    Timeout,
    Role,
    Runtime,
    Handler,
    TableName,
    Tags,
    Trust,
    Document,
    LegacyPolicy,
    DeletionProtection,
    PointInTimeRecovery,
    Ttl,
    Retention,
    Method,
    Integration,
    Deployment,
    Enabled,
    Stage,
    Throttle,
    Key,
    Statement,
    Concurrency,
    Definition,
    Certificate,
    SecurityPolicy,
    Zone,
    Target,
    Replicas,
    Version,
    Versions,
}

impl Field {
    fn label(self) -> &'static str {
        match self {
            Self::Code => "code",
            Self::Memory => "memory",
            Self::Timeout => "timeout",
            Self::Role => "role",
            Self::Runtime => "runtime",
            Self::Handler => "handler",
            Self::TableName => crate::stack::TABLE_VARIABLE,
            Self::Tags => "tags",
            Self::Trust => "trust policy",
            Self::Document => "document",
            Self::LegacyPolicy => "policy",
            Self::DeletionProtection => "deletion protection",
            Self::PointInTimeRecovery => "point-in-time recovery",
            Self::Ttl => "TTL",
            Self::Retention => "retention",
            Self::Method => "method",
            Self::Integration => "integration",
            Self::Deployment => "deployment",
            Self::Enabled => "enabled",
            Self::Stage => "stage",
            Self::Throttle => "throttle",
            Self::Key => "key",
            Self::Statement => "statement",
            Self::Definition => "definition",
            Self::Concurrency => "reserved concurrency",
            Self::Certificate => "certificate",
            Self::SecurityPolicy => "security policy",
            Self::Zone => "hosted zone",
            Self::Target => "target",
            Self::Replicas => "replicas",
            Self::Version => "version",
            Self::Versions => "old versions",
        }
    }
}

/// One field's difference: `field from → to`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Diff {
    pub(crate) field: Field,
    pub(crate) from: String,
    pub(crate) to: String,
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} → {}", self.field.label(), self.from, self.to)
    }
}

pub(crate) fn diff(field: Field, from: impl fmt::Display, to: impl fmt::Display) -> Diff {
    Diff { field, from: from.to_string(), to: to.to_string() }
}

/// A resource's typed change, as the differences it shows.
pub(crate) trait Changes {
    fn diffs(&self) -> Vec<Diff>;
}

impl Changes for Vec<Diff> {
    fn diffs(&self) -> Vec<Diff> {
        self.clone()
    }
}

/// The change of a resource that is only ever kept, made or deleted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Nothing {}

impl Changes for Nothing {
    fn diffs(&self) -> Vec<Diff> {
        match *self {}
    }
}

/// What happens to a resource; `C` is the resource's typed change.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action<C> {
    /// As wanted already.
    Keep,
    Create,
    Update(C),
    /// Found, not made by counterctl, and taken over with these changes.
    Adopt(C),
    /// Deleted, for this reason.
    Delete(String),
    /// Left as it is, for this reason (not the stack's, or kept on purpose).
    Retain(String),
    /// Not there, and should not be.
    Absent,
}

impl<C: Changes> Action<C> {
    /// A found resource's action: its change, adopted when counterctl did not make it.
    pub(crate) fn found(change: C, adopted: bool) -> Self {
        match (adopted, change.diffs().is_empty()) {
            (true, _) => Self::Adopt(change),
            (false, true) => Self::Keep,
            (false, false) => Self::Update(change),
        }
    }

    /// Whether applying it writes anything.
    pub(crate) fn changes(&self) -> bool {
        match self {
            Self::Create | Self::Delete(_) => true,
            Self::Update(change) | Self::Adopt(change) => !change.diffs().is_empty(),
            Self::Keep | Self::Retain(_) | Self::Absent => false,
        }
    }

    /// The typed change of a found resource, if it has one.
    pub(crate) fn change(&self) -> Option<&C> {
        match self {
            Self::Update(change) | Self::Adopt(change) => Some(change),
            _ => None,
        }
    }

    pub(crate) fn shown(&self) -> Action<Vec<Diff>> {
        match self {
            Self::Keep => Action::Keep,
            Self::Create => Action::Create,
            Self::Update(change) => Action::Update(change.diffs()),
            Self::Adopt(change) => Action::Adopt(change.diffs()),
            Self::Delete(reason) => Action::Delete(reason.clone()),
            Self::Retain(reason) => Action::Retain(reason.clone()),
            Self::Absent => Action::Absent,
        }
    }
}

/// In `--output json`, in install's, status's and uninstall's alike: `action`, then
/// `details` (the changed fields, `[{field, from, to}]`) for an update or adoption, or
/// `reason` for a deletion or a resource left as it is.
impl<C: Serialize> Serialize for Action<C> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let name = match self {
            Self::Keep => "keep",
            Self::Create => "create",
            Self::Update(_) => "update",
            Self::Adopt(_) => "adopt",
            Self::Delete(_) => "delete",
            Self::Retain(_) => "retain",
            Self::Absent => "absent",
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("action", name)?;
        match self {
            Self::Update(change) | Self::Adopt(change) => map.serialize_entry("details", change)?,
            Self::Delete(reason) | Self::Retain(reason) => map.serialize_entry("reason", reason)?,
            Self::Keep | Self::Create | Self::Absent => {}
        }
        map.end()
    }
}

/// One resource's planned action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Planned<C> {
    pub(crate) resource: Resource,
    /// The resource's name (or id, for duplicates).
    pub(crate) name: String,
    #[serde(flatten)]
    pub(crate) action: Action<C>,
    /// Existing callers stop working (a change of auth, the API key deleted).
    pub(crate) breaking: bool,
}

/// A planned action as shown and reported.
pub(crate) type Change = Planned<Vec<Diff>>;

impl<C: Changes> Planned<C> {
    pub(crate) fn new(resource: Resource, name: impl Into<String>, action: Action<C>) -> Self {
        Self { resource, name: name.into(), action, breaking: false }
    }

    pub(crate) fn breaking_if(mut self, breaking: bool) -> Self {
        self.breaking = breaking;
        self
    }

    pub(crate) fn changes(&self) -> bool {
        self.action.changes()
    }

    pub(crate) fn row(&self) -> Change {
        Planned {
            resource: self.resource,
            name: self.name.clone(),
            action: self.action.shown(),
            breaking: self.breaking,
        }
    }
}

/// A part of a plan as shown: its rows, each resource's in the order the plan lists them.
/// Every part of [`crate::plan::Plan`] and [`crate::plan::Teardown`] has them, and both
/// destructure themselves where their rows are made, so a part cannot be left out.
pub(crate) trait Rows {
    fn rows(&self) -> RowList;
}

/// Rows, in order.
#[derive(Debug, Default)]
pub(crate) struct RowList(std::vec::IntoIter<Change>);

impl RowList {
    /// The rows still to come, looked at without taking them (as tests do).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Change> {
        self.0.as_slice().iter()
    }
}

impl Iterator for RowList {
    type Item = Change;

    fn next(&mut self) -> Option<Change> {
        self.0.next()
    }
}

impl FromIterator<Change> for RowList {
    fn from_iter<I: IntoIterator<Item = Change>>(iter: I) -> Self {
        Self(iter.into_iter().collect::<Vec<_>>().into_iter())
    }
}

/// The rows of `parts`, one after the other.
pub(crate) fn rows<const N: usize>(parts: [RowList; N]) -> RowList {
    parts.into_iter().flatten().collect()
}

impl<C: Changes> Rows for Planned<C> {
    fn rows(&self) -> RowList {
        std::iter::once(self.row()).collect()
    }
}

impl<T> Rows for Deletion<T> {
    fn rows(&self) -> RowList {
        std::iter::once(self.row.row()).collect()
    }
}

impl<R: Rows> Rows for Vec<R> {
    fn rows(&self) -> RowList {
        self.iter().flat_map(Rows::rows).collect()
    }
}

impl<R: Rows> Rows for Option<R> {
    fn rows(&self) -> RowList {
        self.iter().flat_map(Rows::rows).collect()
    }
}

impl<R: Rows> Rows for Box<R> {
    fn rows(&self) -> RowList {
        R::rows(self)
    }
}

/// Something a deletion can delete: it says with which calls.
pub(crate) trait Delete: Sync {
    /// Deletes it; `Some(reason)` when AWS refused and it is kept.
    fn delete(&self, clients: &Clients) -> impl Future<Output = anyhow::Result<Option<String>>> + Send;
}

/// A planned deletion and exactly what it deletes: the row says why, `targets` what.
/// Planned as absent it has no targets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Deletion<T> {
    pub(crate) row: Planned<Nothing>,
    pub(crate) targets: Vec<T>,
}

impl<T> Deletion<T> {
    /// Deletes `targets` for `reason`, shown as one row named `name`; absent when there
    /// is nothing to delete.
    pub(crate) fn of(resource: Resource, name: impl Into<String>, targets: Vec<T>, reason: impl Into<String>) -> Self {
        let action = if targets.is_empty() { Action::Absent } else { Action::Delete(reason.into()) };
        Self { row: Planned::new(resource, name, action), targets }
    }

    /// Nothing there to delete.
    pub(crate) fn absent(resource: Resource, name: impl Into<String>) -> Self {
        Self { row: Planned::new(resource, name, Action::Absent), targets: Vec::new() }
    }

    /// Nothing to delete, with a reason to show (not the stack's, or kept on purpose).
    pub(crate) fn retained(resource: Resource, name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { row: Planned::new(resource, name, Action::Retain(reason.into())), targets: Vec::new() }
    }

    pub(crate) fn breaking_if(mut self, breaking: bool) -> Self {
        self.row.breaking = breaking;
        self
    }

    pub(crate) fn deletes(&self) -> bool {
        !self.targets.is_empty()
    }
}
