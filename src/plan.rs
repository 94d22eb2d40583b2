//! The plan: from what is deployed and what was asked for, each resource's typed change,
//! or a refusal. Pure: no AWS call is made here, and every rule is unit-tested.
//!
//! Install planning is a short orchestration: resolve the options against what is
//! deployed ([`wanted`]), then ask each resource module for its change. Uninstall
//! planning asks each for its deletion ([`Teardown`]).

mod wanted;

#[cfg(test)]
mod tests;

pub(crate) use wanted::{Alarms, Request, Wanted};

use crate::aws::Account;
use crate::change::{Action, Change, Deletion, Nothing, Planned, Refusal, Resource, RowList, Rows, rows};
use crate::deployed::Deployed;
use crate::regions::Regions;
use crate::resources::alarms::{self, AlarmChange, AlarmNames, AlarmSpec};
use crate::resources::api::{self, ApiId, ApiPlan};
use crate::resources::api_key::{self, KeyId, KeyPlan, KeyState};
use crate::resources::domain::{self, DomainPlan, DomainTarget};
use crate::resources::function::{self, FunctionName, FunctionPlan, FunctionSpec};
use crate::resources::function_url::{self, Url, UrlChange, UrlState};
use crate::resources::log_group::{self, LogGroupChange, LogGroupName};
use crate::resources::permission::{self, Permission, PermissionChange};
use crate::resources::role::{self, PolicyChange, Role, RoleChange, RolePolicy};
use crate::resources::routes::{self, IntegrationChange, RouteChange, method_authorization};
use crate::resources::stage::{self, StageChange};
use crate::resources::table::{self, TableChange, TableName, TableState};
use crate::resources::topic::{self, Notify, TopicArn, TopicPlan};
use crate::resources::usage_plan::{self, UsagePlanPlan, UsagePlanSpec, UsagePlanState};
use crate::settings::{Auth, Front};
use crate::stack::{PROXY_PATH, Stack, StackContext};

/// What install will do.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) stack: Stack,
    pub(crate) account: Account,
    pub(crate) wanted: Wanted,
    /// The regions of a stack on a strongly consistent global table: wanted, or as its
    /// table is deployed.
    pub(crate) regions: Option<Regions>,
    /// Worth knowing, not drift: protections a table not made by counterctl lacks.
    pub(crate) advisories: Vec<String>,
    pub(crate) table: Planned<TableChange>,
    /// The stack's records name its table, and it is gone (planned only with
    /// `--recreate-table`, or read-only by `status`).
    pub(crate) table_lost: bool,
    pub(crate) log_group: Planned<LogGroupChange>,
    pub(crate) role: Planned<RoleChange>,
    /// The role's ARN, as read or as it will be made.
    pub(crate) role_arn: String,
    pub(crate) policy: Planned<PolicyChange>,
    pub(crate) function: FunctionPlan,
    pub(crate) front: FrontPlan,
    /// Callers move to another front, at another URL.
    pub(crate) front_moves: bool,
    pub(crate) alarms: AlarmsPlan,
    /// The stack's own alarm topic (`--alarm-email`).
    pub(crate) topic: TopicPlan,
    /// The REST front's custom domain.
    pub(crate) domain: DomainPlan,
}

/// The stack's alarms: each wanted one with its definition, and those to delete.
#[derive(Debug, Clone)]
pub(crate) struct AlarmsPlan {
    pub(crate) wanted: Vec<(AlarmSpec, Planned<AlarmChange>)>,
    pub(crate) unwanted: Deletion<AlarmNames>,
}

/// What callers reach the function through.
#[derive(Debug, Clone)]
pub(crate) enum FrontPlan {
    Rest(Box<RestPlan>),
    FunctionUrl(Box<UrlPlan>),
}

/// `--front rest`: the API and what hangs off it; a function URL goes.
#[derive(Debug, Clone)]
pub(crate) struct RestPlan {
    pub(crate) function_url: Deletion<Url>,
    pub(crate) permission: Planned<PermissionChange>,
    pub(crate) api: ApiPlan,
    pub(crate) route: Planned<RouteChange>,
    pub(crate) integration: Planned<IntegrationChange>,
    pub(crate) stage: Planned<StageChange>,
    /// The description of the deployment the stage should serve.
    pub(crate) deployment: String,
    pub(crate) keys: Keys,
}

/// The REST front's API key and usage plan.
#[derive(Debug, Clone)]
pub(crate) enum Keys {
    /// `--auth api-key`: the stack's key in its usage plan.
    Wanted { key: Box<KeyPlan>, usage_plan: Box<UsagePlanPlan> },
    /// Callers send no key: the stack's keys and usage plans go.
    Unwanted { keys: Deletion<KeyId>, usage_plans: Deletion<UsagePlanState> },
}

/// `--front function-url`: the function's URL; the REST front's resources go once it is
/// up.
#[derive(Debug, Clone)]
pub(crate) struct UrlPlan {
    pub(crate) url: Planned<UrlChange>,
    /// As read; `None` when it is created.
    pub(crate) deployed: Option<UrlState>,
    pub(crate) permission: Deletion<Permission>,
    pub(crate) apis: Vec<Deletion<ApiId>>,
    /// Route, integration and stage, shown as not there.
    pub(crate) absent: Vec<Planned<Nothing>>,
    pub(crate) keys: Deletion<KeyId>,
    pub(crate) usage_plans: Deletion<UsagePlanState>,
}

impl Rows for AlarmsPlan {
    fn rows(&self) -> RowList {
        let Self { wanted, unwanted } = self;
        let wanted = wanted.iter().map(|(_, planned)| planned.row()).collect();
        let unwanted = if unwanted.deletes() { unwanted.rows() } else { RowList::default() };
        rows([wanted, unwanted])
    }
}

impl Rows for FrontPlan {
    fn rows(&self) -> RowList {
        match self {
            Self::Rest(rest) => rest.rows(),
            Self::FunctionUrl(url) => url.rows(),
        }
    }
}

impl Rows for RestPlan {
    fn rows(&self) -> RowList {
        let Self { function_url, permission, api, route, integration, stage, deployment: _, keys } = self;
        let parts = [function_url.rows(), permission.rows(), api.rows(), route.rows(), integration.rows()];
        rows([rows(parts), stage.rows(), keys.rows()])
    }
}

impl Rows for Keys {
    fn rows(&self) -> RowList {
        match self {
            Self::Wanted { key, usage_plan } => rows([key.rows(), usage_plan.rows()]),
            Self::Unwanted { keys, usage_plans } => rows([keys.rows(), usage_plans.rows()]),
        }
    }
}

impl Rows for UrlPlan {
    fn rows(&self) -> RowList {
        let Self { url, deployed: _, permission, apis, absent, keys, usage_plans } = self;
        rows([url.rows(), permission.rows(), apis.rows(), absent.rows(), keys.rows(), usage_plans.rows()])
    }
}

impl Plan {
    /// The stack with its account.
    pub(crate) fn context(&self) -> StackContext<'_> {
        StackContext { stack: &self.stack, account: &self.account }
    }

    /// Every resource's row, in the order the plan lists them.
    pub(crate) fn changes(&self) -> Vec<Change> {
        // Whole, with no `..`: a part added to the plan is shown, or this fails to compile.
        let Self {
            stack: _,
            account: _,
            regions: _,
            wanted: _,
            advisories: _,
            table,
            table_lost: _,
            log_group,
            role,
            role_arn: _,
            policy,
            function,
            front,
            front_moves: _,
            alarms,
            topic,
            domain,
        } = self;
        let mut rows: Vec<Change> = rows([
            table.rows(),
            log_group.rows(),
            role.rows(),
            policy.rows(),
            function.rows(),
            front.rows(),
            domain.rows(),
            topic.rows(),
            alarms.rows(),
        ])
        .collect();
        rows.sort_by_key(|row| row.resource);
        rows
    }

    pub(crate) fn up_to_date(&self) -> bool {
        !self.changes().iter().any(Planned::changes)
    }

    pub(crate) fn breaking(&self) -> Vec<Change> {
        self.changes().into_iter().filter(|change| change.breaking && change.changes()).collect()
    }

    pub(crate) fn front(&self) -> Front {
        match self.front {
            FrontPlan::Rest(_) => Front::Rest,
            FrontPlan::FunctionUrl(_) => Front::FunctionUrl,
        }
    }

    /// The API key callers send, if the stack has one yet.
    pub(crate) fn key(&self) -> Option<&KeyState> {
        match &self.front {
            FrontPlan::Rest(rest) => match &rest.keys {
                Keys::Wanted { key, .. } => key.key.as_ref(),
                Keys::Unwanted { .. } => None,
            },
            FrontPlan::FunctionUrl(_) => None,
        }
    }

    /// The REST API the stack keeps, if it has one yet.
    pub(crate) fn api_id(&self) -> Option<&str> {
        match &self.front {
            FrontPlan::Rest(rest) => rest.api.chosen.as_ref().map(|api| api.id.as_str()),
            FrontPlan::FunctionUrl(_) => None,
        }
    }

    /// Where callers call now, if anywhere: the function URL, or the stage of the API.
    pub(crate) fn deployed_url(&self) -> Option<String> {
        match &self.front {
            FrontPlan::FunctionUrl(url) => url.deployed.as_ref().map(|url| url.url.clone()),
            FrontPlan::Rest(_) => self.api_id().map(|id| self.stack.invoke_url(&self.account.region, id)),
        }
    }

    /// The service callers sign for with `--auth iam`.
    pub(crate) fn signing_service(&self) -> &'static str {
        match self.front {
            FrontPlan::FunctionUrl(_) => "lambda",
            FrontPlan::Rest(_) => "execute-api",
        }
    }
}

/// What a move between fronts does to the auth when `--auth` is not given: a function URL
/// has no API keys, and the REST API keeps the function URL's auth.
fn front_move_auth(front: Front, deployed: Option<Auth>, wanted: Auth) -> Option<String> {
    match (front, deployed) {
        (Front::FunctionUrl, Some(Auth::ApiKey)) => Some(format!(
            "auth api-key → {}: a function URL has no API keys, so callers sign their calls with SigV4 \
             (lambda:InvokeFunctionUrl); pass --auth none for a public URL, or keep --front rest",
            wanted.name()
        )),
        (Front::Rest, Some(previous)) if previous != Auth::ApiKey => Some(format!(
            "auth stays {} on the REST API, as on the function URL; pass --auth api-key for callers to send an API \
             key again",
            wanted.name()
        )),
        _ => None,
    }
}

/// Plans an install (or, read-only, the status) of `request` over `deployed`.
pub(crate) fn install(request: &Request<'_>, deployed: &Deployed) -> Result<Plan, Refusal> {
    let wanted::Resolved { stack, wanted, front, deployed_auth, front_moves, table_switch, table_lost } =
        wanted::resolve(request, deployed)?;
    let account = deployed.account.clone();
    let mut advisories = Vec::new();
    if front_moves && request.options.auth.is_none() {
        advisories.extend(front_move_auth(front, deployed_auth, wanted.auth));
    }
    // A new, empty table where the stack's is gone restarts every counter: destructive,
    // so confirmed as a change that breaks callers.
    let regions = request.regions.cloned().or_else(|| deployed.table.as_ref().and_then(TableState::strong_regions));
    if regions.is_some() && wanted.domain.is_some() {
        return Err(Refusal::DomainWithRegions);
    }
    let table_region = (account.region.as_str(), regions.as_ref());
    let table =
        table::plan(deployed.table.as_ref(), &stack.table, wanted.protect_table, table_region, &mut advisories)?
            .breaking_if(table_lost);
    let log_group = log_group::plan(deployed.log_group.as_ref(), &stack, wanted.log_retention_days, &mut advisories);
    let role_arn = deployed.role.as_ref().map_or_else(|| role::arn(&stack.name, &account), |role| role.arn.clone());
    let made_in = regions.as_ref().map(|regions| regions.home.as_str()).filter(|home| *home != account.region);
    let (role, policy) = role::plan(deployed.role.as_ref(), &stack, &account, made_in);
    let spec = FunctionSpec { stack: &stack, wanted: &wanted.function, role_arn: &role_arn };
    let function = FunctionPlan::new(
        function::plan(deployed.function.as_ref(), &spec, table_switch.is_some()),
        deployed.function.clone(),
        table_switch,
    );
    let callers = Callers { deployed_auth, front_moves };
    let front_kind = front;
    let front = match front {
        Front::Rest => {
            let function_created = function.planned.action == Action::Create;
            FrontPlan::Rest(Box::new(rest_front(
                deployed,
                StackContext { stack: &stack, account: &account },
                &wanted,
                callers,
                function_created,
            )))
        }
        Front::FunctionUrl => FrontPlan::FunctionUrl(Box::new(url_front(deployed, &stack, &wanted, callers))),
    };
    let api_id = match &front {
        FrontPlan::Rest(rest) => rest.api.chosen.as_ref().map(|api| api.id.as_str()),
        FrontPlan::FunctionUrl(_) => None,
    };
    // The certificate given is checked before any write, whatever else changes.
    if let (Some(wanted_domain), Some(_)) = (&wanted.domain, &request.options.certificate_arn) {
        domain::certificate::check(wanted_domain, deployed.certificate.as_ref(), &account.region)?;
    }
    let off = if request.options.domain.is_some() { "--domain off" } else { "not the stack's domain now" };
    let zone_record = deployed.zone_record.as_ref();
    let domain = domain::plan(&deployed.domains, wanted.domain.as_ref(), api_id, &stack.stage, off, zone_record)?;
    let wanted_alarms = match &wanted.alarms {
        Alarms::On { notify } => {
            let topic = match notify {
                Notify::Nobody => {
                    advisories.push(format!(
                        "the alarms of stack {} reach nobody: give --alarm-email ADDRESS (or --alarm-topic ARN)",
                        stack.name
                    ));
                    None
                }
                Notify::Topic(arn) => Some(arn.clone()),
                Notify::Email(email) => {
                    let subscribed = deployed.topic.as_ref().is_some_and(|topic| !topic.subscriptions.is_empty());
                    if email.is_none() && !subscribed {
                        advisories.push(format!(
                            "alarm topic {} has no email subscription: give --alarm-email ADDRESS",
                            topic::name(&stack.name)
                        ));
                    }
                    Some(topic::arn(&account, &stack.name))
                }
            };
            alarms::wanted(&stack, front_kind, wanted.function.timeout_seconds, topic.as_deref())
        }
        Alarms::Off => {
            if request.options.alarms.is_none() {
                advisories
                    .push(format!("stack {} has no alarms: `counterctl install --alarms on` adds them", stack.name));
            }
            Vec::new()
        }
    };
    let (planned_alarms, unwanted) = alarms::plan(&deployed.alarms, &wanted_alarms);
    let alarms = AlarmsPlan { wanted: wanted_alarms.into_iter().zip(planned_alarms).collect(), unwanted };
    let notify = match &wanted.alarms {
        Alarms::On { notify } => Some(notify),
        Alarms::Off => None,
    };
    let topic = topic::plan(deployed.topic.as_ref(), &stack, notify)?;
    Ok(Plan {
        stack,
        account,
        wanted,
        regions,
        advisories,
        table,
        table_lost,
        log_group,
        role,
        role_arn,
        policy,
        function,
        front,
        front_moves,
        alarms,
        topic,
        domain,
    })
}

/// Where callers are: what a change breaks for them.
#[derive(Clone, Copy)]
struct Callers {
    deployed_auth: Option<Auth>,
    front_moves: bool,
}

impl Callers {
    fn auth_changes(self, auth: Auth) -> bool {
        self.deployed_auth.is_some_and(|deployed| deployed != auth)
    }
}

fn rest_front(
    deployed: &Deployed,
    StackContext { stack, account }: StackContext<'_>,
    wanted: &Wanted,
    callers: Callers,
    function_created: bool,
) -> RestPlan {
    let function_url = function_url::unwanted(deployed.function_url.as_ref(), deployed.function.as_ref(), stack)
        .breaking_if(callers.front_moves);
    let chosen = api::choose_api(&deployed.apis, &deployed.usage_plans);
    let mut api = api::plan(&deployed.apis, chosen, deployed.api.as_ref(), &stack.name);
    // A new API is a new URL for callers of a function URL.
    api.planned.breaking = callers.front_moves && api.planned.action == Action::Create;
    let api_id = api.chosen.as_ref().map(|api| api.id.as_str());
    let permission =
        permission::plan(deployed.function.as_ref(), function_created, api_id, StackContext { stack, account });
    let integration_uri = stack.integration_uri(account);
    let (route, integration) = routes::plan(
        api.chosen.as_ref().map(|api| api.detail.route()),
        wanted.auth,
        callers.deployed_auth,
        &integration_uri,
        &stack.name,
    );
    let key_required = wanted.auth == Auth::ApiKey;
    let deployment = stage::deployment_description(method_authorization(wanted.auth), key_required, &integration_uri);
    let routes_change = route.changes() || integration.changes();
    let stage = stage::plan(
        api.chosen.as_ref().and_then(|api| api.detail.stage(&stack.stage)),
        &stack.stage,
        (&deployment, routes_change),
        wanted.auth,
        wanted.throttle,
    );
    let keys = if key_required {
        let chosen_plan = usage_plan::choose_usage_plan(&deployed.usage_plans, chosen.map(|api| api.id.as_str()));
        let in_plan = chosen_plan.map_or(&[][..], |plan| &plan.key_ids);
        let key = api_key::plan(&deployed.keys, in_plan, &stack.name, wanted.api_key_value.as_deref());
        let spec = UsagePlanSpec {
            stack,
            api_id,
            throttle: wanted.throttle,
            key_id: key.key.as_ref().map(|key| key.id.as_str()),
        };
        let usage_plan = usage_plan::plan(chosen_plan, &deployed.usage_plans, &spec);
        Keys::Wanted { key: Box::new(key), usage_plan: Box::new(usage_plan) }
    } else {
        let reason = format!("--auth {}: callers no longer send a key", wanted.auth.name());
        Keys::Unwanted {
            keys: api_key::unwanted(&deployed.keys, &stack.name, &reason),
            usage_plans: usage_plan::unwanted(&deployed.usage_plans, &stack.name, &reason),
        }
    };
    RestPlan { function_url, permission, api, route, integration, stage, deployment, keys }
}

fn url_front(deployed: &Deployed, stack: &Stack, wanted: &Wanted, callers: Callers) -> UrlPlan {
    let breaking = callers.front_moves || callers.auth_changes(wanted.auth);
    let url = function_url::plan(
        deployed.function_url.as_ref(),
        deployed.function.as_ref(),
        wanted.auth,
        (&stack.name, breaking),
    );
    let reason = "--front function-url replaces it";
    let absent = |resource, name: &str| Planned::new(resource, name, Action::Absent);
    UrlPlan {
        url,
        deployed: deployed.function_url.clone(),
        permission: permission::unwanted(deployed.function.as_ref(), stack, reason),
        apis: api::unwanted(&deployed.apis, &stack.name, reason, callers.front_moves),
        absent: vec![
            absent(Resource::Route, PROXY_PATH),
            absent(Resource::Integration, &stack.name),
            absent(Resource::Stage, &stack.stage),
        ],
        keys: api_key::unwanted(&deployed.keys, &stack.name, reason),
        usage_plans: usage_plan::unwanted(&deployed.usage_plans, &stack.name, reason),
    }
}

/// What uninstall deletes, by kind, in no particular order ([`Teardown::changes`] lists
/// them; uninstall orders the deletions).
#[derive(Debug, Clone)]
pub(crate) struct Teardown {
    pub(crate) alarms: Deletion<AlarmNames>,
    pub(crate) topic: Deletion<TopicArn>,
    pub(crate) domains: Vec<Deletion<DomainTarget>>,
    pub(crate) usage_plans: Vec<Deletion<UsagePlanState>>,
    pub(crate) keys: Vec<Deletion<KeyId>>,
    pub(crate) apis: Vec<Deletion<ApiId>>,
    pub(crate) function: Deletion<FunctionName>,
    pub(crate) log_group: Deletion<LogGroupName>,
    pub(crate) policies: Vec<Deletion<RolePolicy>>,
    pub(crate) role: Deletion<Role>,
    pub(crate) table: Deletion<TableName>,
}

impl Teardown {
    pub(crate) fn changes(&self) -> Vec<Change> {
        // Whole, with no `..`: a deletion added to the teardown is shown, or this fails to
        // compile.
        let Self { alarms, topic, domains, usage_plans, keys, apis, function, log_group, policies, role, table } = self;
        let alarms = if alarms.deletes() { alarms.rows() } else { RowList::default() };
        let topic = if topic.row.action == Action::Absent { RowList::default() } else { topic.rows() };
        let mut rows: Vec<Change> = rows([
            alarms,
            topic,
            domains.rows(),
            usage_plans.rows(),
            keys.rows(),
            apis.rows(),
            function.rows(),
            log_group.rows(),
            policies.rows(),
            role.rows(),
            table.rows(),
        ])
        .collect();
        rows.sort_by_key(|row| row.resource);
        rows
    }
}

/// Plans an uninstall: only what carries the stack's tag is deleted; the table only with
/// `delete_data`; the role only when no other region's function uses it.
pub(crate) fn uninstall(name: &str, deployed: &Deployed, table: &str, delete_data: bool) -> Teardown {
    const NOT_OURS: &str = "not made by counterctl (no counterctl:stack tag): left alone";
    fn tagged<T>(resource: Resource, name: &str, tagged: bool, target: T, reason: &str) -> Deletion<T> {
        if tagged {
            Deletion::of(resource, name, vec![target], reason)
        } else {
            Deletion::retained(resource, name, NOT_OURS)
        }
    }
    let usage_plans = deployed
        .usage_plans
        .iter()
        .map(|plan| tagged(Resource::UsagePlan, &plan.id, plan.tagged, plan.clone(), "uninstall"))
        .collect();
    let keys = deployed
        .keys
        .iter()
        .map(|key| tagged(Resource::ApiKey, &key.id, key.tagged, KeyId(key.id.clone()), "uninstall"))
        .collect();
    let apis = deployed
        .apis
        .iter()
        .map(|api| tagged(Resource::Api, &api.id, api.tagged, ApiId(api.id.clone()), "uninstall"))
        .collect();
    let function = match &deployed.function {
        None => Deletion::absent(Resource::Function, name),
        Some(function) => {
            // Deleting the function deletes its URL and its permission with it.
            let reason = match (&deployed.function_url, &function.permission) {
                (Some(_), _) => "uninstall, with its function URL",
                (None, Some(_)) => "uninstall, with its API Gateway permission",
                (None, None) => "uninstall",
            };
            tagged(Resource::Function, name, function.tagged, FunctionName(name.to_owned()), reason)
        }
    };
    let log_group_name = crate::stack::log_group_of(name);
    let log_group = match &deployed.log_group {
        None => Deletion::absent(Resource::LogGroup, &log_group_name),
        Some(group) => {
            let target = LogGroupName(log_group_name.clone());
            tagged(Resource::LogGroup, &log_group_name, group.tagged, target, "uninstall")
        }
    };
    let (policies, role) = role::plan_teardown(deployed.role.as_ref(), name, &deployed.account.region);
    let table = match (&deployed.table, delete_data) {
        (None, _) => Deletion::absent(Resource::Table, table),
        (Some(_), false) => {
            Deletion::retained(Resource::Table, table, "its counters stay (delete them with --delete-data)")
        }
        (Some(found), true) if found.tagged => {
            Deletion::of(Resource::Table, table, vec![TableName(table.to_owned())], "--delete-data")
        }
        (Some(_), true) => Deletion::retained(
            Resource::Table,
            table,
            "not made by counterctl (no counterctl:stack tag): --delete-data leaves it alone",
        ),
    };
    let alarms = alarms::teardown(&deployed.alarms);
    let topic_name = topic::name(name);
    let topic = match &deployed.topic {
        None => Deletion::absent(Resource::Topic, &topic_name),
        Some(topic) => {
            let target = TopicArn(topic.arn.clone());
            tagged(Resource::Topic, &topic_name, topic.tagged, target, "uninstall, with its subscriptions")
        }
    };
    let domains = deployed
        .domains
        .iter()
        .filter(|found| found.tagged)
        .map(|found| domain::deletion(found, "uninstall"))
        .collect();
    Teardown { alarms, topic, domains, usage_plans, keys, apis, function, log_group, policies, role, table }
}
