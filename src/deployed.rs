//! The read phase: every resource of a stack as deployed, each read once, concurrently.

use anyhow::Context;

use crate::aws::{Account, Clients};
use crate::change::Resource;
use crate::resources::alarms::{self, AlarmState};
use crate::resources::api::{self, ApiDetail, ApiSummary, choose_api};
use crate::resources::api_key::{self, KeyState};
use crate::resources::domain::certificate::{self, CertificateState};
use crate::resources::domain::record::{self, Record};
use crate::resources::domain::{self, DomainState};
use crate::resources::function::{self, FunctionState};
use crate::resources::function_url::{self, UrlState};
use crate::resources::log_group::{self, LogGroupState};
use crate::resources::role::{self, RoleState};
use crate::resources::table::{self, Counters, TableState, table_name};
use crate::resources::topic::{self, TopicState};
use crate::resources::usage_plan::{self, UsagePlanState};

/// Everything of one stack as it is in AWS.
#[derive(Debug, Clone)]
pub(crate) struct Deployed {
    pub(crate) account: Account,
    pub(crate) function: Option<FunctionState>,
    /// The function's URL (`--front function-url`).
    pub(crate) function_url: Option<UrlState>,
    /// The table the stack uses ([`Deployed::stack_table`]: `--table`, else what the
    /// stack's records name ([`recorded_table`]), else the one table kept for it).
    pub(crate) table: Option<TableState>,
    /// Read only when `--table` names another table than the function's.
    pub(crate) counters: Option<Counters>,
    /// With no function and no `--table`: the tables whose tags say they hold the
    /// stack's counters (made for it, or kept by its uninstall).
    pub(crate) kept_tables: Vec<String>,
    pub(crate) role: Option<RoleState>,
    pub(crate) log_group: Option<LogGroupState>,
    /// Every API named after the stack.
    pub(crate) apis: Vec<ApiSummary>,
    /// The routes and stages of the API [`choose_api`] picks.
    pub(crate) api: Option<ApiDetail>,
    pub(crate) keys: Vec<KeyState>,
    pub(crate) usage_plans: Vec<UsagePlanState>,
    /// The stack's alarms by name, with their states.
    pub(crate) alarms: Vec<AlarmState>,
    /// The stack's own alarm topic (`--alarm-email`).
    pub(crate) topic: Option<TopicState>,
    /// The stack's custom domains, and the one `--domain` names.
    pub(crate) domains: Vec<DomainState>,
    /// The certificate `--certificate-arn` names.
    pub(crate) certificate: Option<CertificateState>,
    /// The `A` record of the domain's name in `--hosted-zone-id`'s zone, whoever made it.
    pub(crate) zone_record: Option<Record>,
}

/// The table the stack's own records say it uses, records a deleted table cannot take
/// along: the function's `TABLE_NAME`, else (the function gone too) the table this
/// region's role policy grants, the last one during a switch (the one it moves to).
pub(crate) fn recorded_table(
    function: Option<&FunctionState>,
    role: Option<&RoleState>,
    region: &str,
) -> Option<String> {
    match function {
        Some(function) => Some(function.table().to_owned()),
        None => role.and_then(|role| role::granted_tables(role, region).pop()),
    }
}

/// A resource of the stack that a CloudFormation stack made.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CloudFormationOwned {
    pub(crate) resource: Resource,
    pub(crate) name: String,
    /// The CloudFormation stack's name.
    pub(crate) stack: String,
}

impl Deployed {
    /// The first resource of the stack CloudFormation made (its function, table, role,
    /// log group or API), if any: all of them are then the CloudFormation stack's to change.
    pub(crate) fn cloudformation(&self, stack_name: &str) -> Option<CloudFormationOwned> {
        let owned = |resource, name: &str, stack: &Option<String>| {
            stack.clone().map(|stack| CloudFormationOwned { resource, name: name.to_owned(), stack })
        };
        let log_group = crate::stack::log_group_of(stack_name);
        let function =
            self.function.as_ref().map(|function| (Resource::Function, stack_name, &function.cloudformation));
        let table = self.table.as_ref().map(|table| (Resource::Table, table.name.as_str(), &table.cloudformation));
        let role = self.role.as_ref().map(|role| (Resource::Role, stack_name, &role.cloudformation));
        let group =
            self.log_group.as_ref().map(|group| (Resource::LogGroup, log_group.as_str(), &group.cloudformation));
        let apis = self.apis.iter().map(|api| (Resource::Api, api.id.as_str(), &api.cloudformation));
        [function, table, role, group]
            .into_iter()
            .flatten()
            .chain(apis)
            .find_map(|(resource, name, stack)| owned(resource, name, stack))
    }

    /// The table the stack's records say it uses ([`recorded_table`]).
    pub(crate) fn recorded_table(&self) -> Option<String> {
        recorded_table(self.function.as_ref(), self.role.as_ref(), &self.account.region)
    }

    /// The stack's table ([`table::stack_table`]), as [`read`] read it: `given`, else
    /// the recorded one, else the one table kept for it, else the original service's.
    pub(crate) fn stack_table(&self, given: Option<&str>) -> String {
        table::stack_table_or_new(given, self.recorded_table().as_deref(), &self.kept_tables)
    }

    /// Whether the stack's records name `table` as one it had: the function uses it, or
    /// this region's role policy grants it.
    pub(crate) fn records(&self, table: &str) -> bool {
        self.function.as_ref().is_some_and(|function| function.table() == table)
            || self
                .role
                .as_ref()
                .is_some_and(|role| role::granted_tables(role, &self.account.region).iter().any(|t| t == table))
    }
}

/// What to read: the stack's name, and the table asked for.
pub(crate) struct Lookup<'a> {
    pub(crate) name: &'a str,
    pub(crate) table: Option<&'a str>,
    /// Read the counters of both tables when `table` differs from the deployed one.
    pub(crate) compare_counters: bool,
    /// `--domain`'s name, read even when it is not the stack's.
    pub(crate) domain: Option<&'a str>,
    /// `--certificate-arn`, to check before anything is written.
    pub(crate) certificate: Option<&'a str>,
    /// `--hosted-zone-id`, to see what that zone holds for the domain's name.
    pub(crate) zone: Option<&'a str>,
    /// How much of the stack to read.
    pub(crate) reach: Reach,
}

impl<'a> Lookup<'a> {
    /// The stack `name` (on `table`, if given) as far as `reach`, with no domain,
    /// certificate or zone named and no counters compared: what uninstall and rollback read.
    pub(crate) fn stack(name: &'a str, table: Option<&'a str>, reach: Reach) -> Self {
        Self { name, table, compare_counters: false, domain: None, certificate: None, zone: None, reach }
    }
}

/// How much of the stack a command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Every resource: what install and status plan.
    Whole,
    /// What callers reach and count on: the function, its URL, its role, its table and
    /// the REST API with its keys and usage plans. Its log group, alarms, alarm topic and
    /// custom domain are not read (and so read as absent), unless the lookup names a
    /// domain, a certificate or a zone.
    Callers,
}

/// Reads the stack: every group of reads at once, each a named read below; a read waits
/// only for the one it needs.
pub(crate) async fn read(clients: &Clients, lookup: &Lookup<'_>) -> anyhow::Result<Deployed> {
    let region = clients.config.region().map(ToString::to_string).unwrap_or_default();
    let whole = lookup.reach == Reach::Whole;
    let domain_named = lookup.domain.is_some() || lookup.certificate.is_some() || lookup.zone.is_some();
    let (caller, with_function, log_group, rest, alarms, domain) = tokio::try_join!(
        read_caller(clients, lookup.name, whole),
        read_with_function(clients, lookup, &region),
        async { if whole { read_log_group(clients, lookup.name).await } else { Ok(None) } },
        read_rest(clients, lookup.name),
        async { if whole { read_alarms(clients, lookup.name).await } else { Ok(Vec::new()) } },
        async {
            if whole || domain_named {
                read_domain(clients, lookup).await
            } else {
                Ok(Domain { domains: Vec::new(), certificate: None })
            }
        },
    )?;
    let Caller { account, topic } = caller;
    let WithFunction { function, function_url, role, table, counters } = with_function;
    let Rest { apis, api, keys, usage_plans } = rest;
    let Domain { domains, certificate } = domain;
    let zone_record = read_zone_record(clients, lookup, &domains).await?;
    let (table, kept_tables) = read_kept_tables(clients, lookup, &account, table, function.is_none()).await?;
    Ok(Deployed {
        account,
        function,
        function_url,
        table,
        counters,
        kept_tables,
        role,
        log_group,
        apis,
        api,
        keys,
        usage_plans,
        alarms,
        topic,
        domains,
        certificate,
        zone_record,
    })
}

/// Who is calling, and the stack's alarm topic, whose ARN is made of the account.
struct Caller {
    account: Account,
    topic: Option<TopicState>,
}

async fn read_caller(clients: &Clients, name: &str, with_topic: bool) -> anyhow::Result<Caller> {
    let account = Account::of_caller(&clients.config).await.context("checking the credentials")?;
    let topic = match with_topic {
        true => topic::read(&clients.sns, &account, name).await.context("reading the alarm topic")?,
        false => None,
    };
    Ok(Caller { account, topic })
}

/// The function and what its records name: the table, and both tables' counters for a
/// switch.
struct WithFunction {
    function: Option<FunctionState>,
    function_url: Option<UrlState>,
    role: Option<RoleState>,
    table: TableRead,
    counters: Option<Counters>,
}

/// A table read, the name it was read by, and the table the stack's records name.
struct TableRead {
    name: String,
    recorded: Option<String>,
    state: Option<TableState>,
}

async fn read_with_function(clients: &Clients, lookup: &Lookup<'_>, region: &str) -> anyhow::Result<WithFunction> {
    let name = lookup.name;
    // The table is read alongside the function and the role, as the one asked for or
    // else the default; only if their records name another one is that read after them.
    let guess = table_name(lookup.table, None);
    let (function, function_url, role, guessed) = tokio::try_join!(
        async { function::read(&clients.lambda, name).await.context("reading the function") },
        async { function_url::read(&clients.lambda, name).await.context("reading the function's URL") },
        async { role::read(&clients.iam, name, region).await.context("reading the role") },
        async { table::read(&clients.dynamodb, &guess, name).await.context("reading the table") },
    )?;
    let deployed_table = function.as_ref().map(FunctionState::table);
    let recorded = recorded_table(function.as_ref(), role.as_ref(), region);
    let stack_table = table_name(lookup.table, recorded.as_deref());
    let table = async {
        if stack_table == guess {
            return anyhow::Ok(guessed);
        }
        table::read(&clients.dynamodb, &stack_table, name).await.context("reading the table")
    };
    let counters = async {
        match deployed_table {
            Some(current) if lookup.compare_counters && current != stack_table => {
                let (current, new) = tokio::try_join!(
                    table::counters(&clients.dynamodb, current),
                    table::counters(&clients.dynamodb, &stack_table)
                )
                .context("reading the counters of both tables")?;
                anyhow::Ok(Some(Counters { current, new }))
            }
            _ => Ok(None),
        }
    };
    let (table, counters) = tokio::try_join!(table, counters)?;
    let table = TableRead { name: stack_table, recorded, state: table };
    Ok(WithFunction { function, function_url, role, table, counters })
}

async fn read_log_group(clients: &Clients, name: &str) -> anyhow::Result<Option<LogGroupState>> {
    let log_group_name = crate::stack::log_group_of(name);
    log_group::read(&clients.logs, name, &log_group_name).await.context("reading the log group")
}

/// The REST front: every API named after the stack, the chosen one's routes and
/// stages, the keys and the usage plans.
struct Rest {
    apis: Vec<ApiSummary>,
    api: Option<ApiDetail>,
    keys: Vec<KeyState>,
    usage_plans: Vec<UsagePlanState>,
}

async fn read_rest(clients: &Clients, name: &str) -> anyhow::Result<Rest> {
    let detail = |id: String| async move {
        api::detail(&clients.apigateway, &id).await.context("reading the API's routes and stages")
    };
    // With one API of the stack (the usual case) its routes are read alongside the
    // usage plans; only duplicates need the plans to tell which is in use.
    let apis_and_detail = async {
        let apis = api::list(&clients.apigateway, name).await.context("listing the APIs")?;
        let single = apis.iter().filter(|api| api.tagged).count() <= 1;
        let early = match choose_api(&apis, &[]).filter(|_| single) {
            Some(chosen) => Some((chosen.id.clone(), detail(chosen.id.clone()).await?)),
            None => None,
        };
        anyhow::Ok((apis, early))
    };
    let ((apis, early), keys, usage_plans) = tokio::try_join!(
        apis_and_detail,
        async { api_key::read(&clients.apigateway, name).await.context("listing the API keys") },
        async { usage_plan::read(&clients.apigateway, name).await.context("listing the usage plans") },
    )?;
    let api = match (choose_api(&apis, &usage_plans), early) {
        (Some(chosen), Some((id, detail))) if chosen.id == id => Some(detail),
        (Some(chosen), _) => Some(detail(chosen.id.clone()).await?),
        (None, _) => None,
    };
    Ok(Rest { apis, api, keys, usage_plans })
}

async fn read_alarms(clients: &Clients, name: &str) -> anyhow::Result<Vec<AlarmState>> {
    alarms::read(&clients.cloudwatch, name).await.context("reading the alarms")
}

/// The stack's custom domains (and the one `--domain` names), and the certificate
/// `--certificate-arn` names.
struct Domain {
    domains: Vec<DomainState>,
    certificate: Option<CertificateState>,
}

async fn read_domain(clients: &Clients, lookup: &Lookup<'_>) -> anyhow::Result<Domain> {
    let domains =
        async { domain::read(clients, lookup.name, lookup.domain).await.context("reading the custom domains") };
    let certificate = async {
        match lookup.certificate {
            Some(arn) => certificate::read(&clients.acm, arn).await.context("reading the certificate"),
            None => Ok(None),
        }
    };
    let (domains, certificate) = tokio::try_join!(domains, certificate)?;
    Ok(Domain { domains, certificate })
}

/// What `--hosted-zone-id`'s zone holds for the domain's name, once the name is known;
/// not read again from the zone the domain's own record was read from.
async fn read_zone_record(
    clients: &Clients,
    lookup: &Lookup<'_>,
    domains: &[DomainState],
) -> anyhow::Result<Option<Record>> {
    let named =
        lookup.domain.or_else(|| domains.iter().find(|domain| domain.tagged).map(|domain| domain.name.as_str()));
    let read_already = |zone: &str, name: &str| {
        domains.iter().any(|domain| domain.name == name && domain.zone.as_deref() == Some(zone))
    };
    match (lookup.zone, named) {
        (Some(zone), Some(name)) if !read_already(zone, name) => {
            record::read(&clients.route53, zone, name).await.context("reading the hosted zone's record")
        }
        _ => Ok(None),
    }
}

/// With no function and no `--table`, the tables whose tags say they hold the stack's
/// counters (only then: the search makes a call per table in the region); when they
/// name the stack's table ([`table::stack_table`]), that table in place of the one read.
async fn read_kept_tables(
    clients: &Clients,
    lookup: &Lookup<'_>,
    account: &Account,
    table: TableRead,
    no_function: bool,
) -> anyhow::Result<(Option<TableState>, Vec<String>)> {
    if !no_function || lookup.table.is_some() {
        return Ok((table.state, Vec::new()));
    }
    let name = lookup.name;
    let kept = table::stack_tables(&clients.dynamodb, account, name).await.context("looking for the stack's tables")?;
    let state = match table::stack_table(None, table.recorded.as_deref(), &kept) {
        Some(kept) if kept != table.name => {
            table::read(&clients.dynamodb, &kept, name).await.context("reading the table")?
        }
        _ => table.state,
    };
    Ok((state, kept))
}
