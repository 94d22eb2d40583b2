//! The plan: from what is deployed and what was asked for, the typed list of changes per
//! resource, or a refusal. Pure: no AWS call is made here, and every rule is unit-tested.
//!
//! The deployed stack is the source of truth: an option not given keeps what is
//! deployed, and a default applies only to what does not exist yet.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::aws::Account;
use crate::cli::{Architecture, Auth, DeployOptions, Front, Settings};
use crate::deployed::Deployed;
use crate::resources::api::{AWS_IAM, ApiDetail, ApiSummary, DEPLOYMENT_PREFIX, NO_AUTHORIZATION};
use crate::resources::auth::{KeyState, Throttle, UsagePlanState};
use crate::resources::function::{self, Code, FunctionState, HANDLER, RUNTIME, TABLE_VARIABLE};
use crate::resources::function_url::UrlState;
use crate::resources::log_group::LogGroupState;
use crate::resources::role::RoleState;
use crate::resources::table::{COUNTER_KEY_SCHEMA, TableState, Ttl};
use crate::stack::{LEGACY_POLICY_NAME, REGION_POLICY_PREFIX, Stack, policy_regions};

/// The table a stack uses: the one asked for, else the deployed function's, else the
/// original service's.
pub fn table_name(given: Option<&str>, function: Option<&FunctionState>) -> String {
    given.or_else(|| function.map(FunctionState::table)).unwrap_or(counter_function::dynamo::DEFAULT_TABLE).to_owned()
}

/// The stage of the original service, and of a new install.
pub const DEFAULT_STAGE: &str = "prod";

/// The stage an API serves the stack on: the one a counterctl deployment is on, else the
/// default.
pub fn deployed_stage(api: &ApiDetail) -> String {
    let by_counterctl =
        api.stages.iter().find(|stage| stage.deployment.as_deref().is_some_and(|d| d.starts_with("counterctl")));
    by_counterctl.map_or_else(|| DEFAULT_STAGE.to_owned(), |stage| stage.name.clone())
}

/// Of the APIs named after the stack, the one the stack uses: a tagged one (the one a
/// usage plan of the stack serves, else the oldest), else the oldest untagged one, which
/// install adopts.
pub fn choose_api<'a>(apis: &'a [ApiSummary], usage_plans: &[UsagePlanState]) -> Option<&'a ApiSummary> {
    let in_use = |api: &ApiSummary| {
        usage_plans.iter().any(|plan| plan.tagged && plan.stages.iter().any(|(id, _)| *id == api.id))
    };
    let oldest = |api: &&ApiSummary| (api.created, api.id.clone());
    let tagged: Vec<&ApiSummary> = apis.iter().filter(|api| api.tagged).collect();
    if !tagged.is_empty() {
        return tagged
            .iter()
            .copied()
            .filter(|api| in_use(api))
            .min_by_key(oldest)
            .or_else(|| tagged.into_iter().min_by_key(oldest));
    }
    apis.iter().min_by_key(oldest)
}

/// Why install refuses, before any write.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
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
}

/// What is asked for.
pub struct Request<'a> {
    pub name: &'a str,
    pub table: Option<&'a str>,
    pub stage: Option<&'a str>,
    pub switch_table: bool,
    pub options: &'a DeployOptions,
    /// The code to deploy for each instruction set.
    pub code: &'a dyn Fn(Architecture) -> Code,
}

/// The settings the plan deploys.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub auth: Auth,
    pub architecture: Architecture,
    pub code: Code,
    pub memory_mb: i32,
    pub timeout_seconds: i32,
    pub throttle: Throttle,
    /// `None`: an existing log group that keeps logs forever, left so.
    pub log_retention_days: Option<i32>,
    pub protect_table: bool,
    /// The function's reserved concurrency; `None`: unreserved.
    pub max_concurrency: Option<i32>,
}

/// One resource of the stack, in the order the plan lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Table,
    LogGroup,
    Role,
    Policy,
    Function,
    FunctionUrl,
    Permission,
    Api,
    Route,
    Integration,
    Stage,
    ApiKey,
    UsagePlan,
}

impl Resource {
    pub fn label(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::LogGroup => "log group",
            Self::Role => "role",
            Self::Policy => "policy",
            Self::Function => "function",
            Self::FunctionUrl => "function url",
            Self::Permission => "permission",
            Self::Api => "api",
            Self::Route => "route",
            Self::Integration => "integration",
            Self::Stage => "stage",
            Self::ApiKey => "api key",
            Self::UsagePlan => "usage plan",
        }
    }
}

/// A field a change touches; apply maps fields to calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
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
}

/// One field's change: `field from → to`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub field: Field,
    pub from: String,
    pub to: String,
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.field {
            Field::Code => "code",
            Field::Memory => "memory",
            Field::Timeout => "timeout",
            Field::Role => "role",
            Field::Runtime => "runtime",
            Field::Handler => "handler",
            Field::TableName => TABLE_VARIABLE,
            Field::Tags => "tags",
            Field::Trust => "trust policy",
            Field::Document => "document",
            Field::LegacyPolicy => "policy",
            Field::DeletionProtection => "deletion protection",
            Field::PointInTimeRecovery => "point-in-time recovery",
            Field::Ttl => "TTL",
            Field::Retention => "retention",
            Field::Method => "method",
            Field::Integration => "integration",
            Field::Deployment => "deployment",
            Field::Enabled => "enabled",
            Field::Stage => "stage",
            Field::Throttle => "throttle",
            Field::Key => "key",
            Field::Statement => "statement",
            Field::Concurrency => "reserved concurrency",
        };
        write!(f, "{name} {} → {}", self.from, self.to)
    }
}

fn diff(field: Field, from: impl fmt::Display, to: impl fmt::Display) -> Diff {
    Diff { field, from: from.to_string(), to: to.to_string() }
}

/// What happens to a resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", content = "details", rename_all = "snake_case")]
pub enum Action {
    /// As wanted already.
    Keep,
    Create,
    Update(Vec<Diff>),
    /// Found, not made by counterctl, and taken over with these changes.
    Adopt(Vec<Diff>),
    /// Deleted, for this reason.
    Delete(String),
    /// Left as it is, for this reason (not the stack's, or kept on purpose).
    Retain(String),
    /// Not there, and should not be.
    Absent,
}

impl Action {
    /// Whether applying it writes anything.
    pub fn changes(&self) -> bool {
        match self {
            Self::Create | Self::Delete(_) => true,
            Self::Update(diffs) | Self::Adopt(diffs) => !diffs.is_empty(),
            Self::Keep | Self::Retain(_) | Self::Absent => false,
        }
    }

    pub fn touches(&self, field: Field) -> bool {
        match self {
            Self::Update(diffs) | Self::Adopt(diffs) => diffs.iter().any(|diff| diff.field == field),
            _ => false,
        }
    }

    fn from_diffs(diffs: Vec<Diff>, adopted: bool) -> Self {
        match (adopted, diffs.is_empty()) {
            (true, _) => Self::Adopt(diffs),
            (false, true) => Self::Keep,
            (false, false) => Self::Update(diffs),
        }
    }
}

/// One resource's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub resource: Resource,
    /// The resource's name (or id, for duplicates).
    pub name: String,
    #[serde(flatten)]
    pub action: Action,
    /// Existing callers stop working (a change of auth, the API key deleted).
    pub breaking: bool,
}

/// The chosen API, as apply needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiTarget {
    pub id: String,
    pub detail: ApiDetail,
}

/// What install will do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub stack: Stack,
    pub account: Account,
    pub wanted: Wanted,
    pub changes: Vec<Change>,
    /// Worth knowing, not drift: protections a table not made by counterctl lacks.
    pub advisories: Vec<String>,
    /// The existing API the stack keeps; `None` when it is created.
    pub api: Option<ApiTarget>,
    pub key: Option<KeyState>,
    pub usage_plan: Option<UsagePlanState>,
    pub role_arn: String,
    pub function: Option<FunctionState>,
    /// Duplicates to delete: API ids, key ids, usage plans.
    pub duplicate_apis: Vec<String>,
    pub duplicate_keys: Vec<String>,
    pub duplicate_usage_plans: Vec<UsagePlanState>,
    /// The description of the deployment the stage should serve.
    pub deployment: String,
    /// The table the function moves away from (`--switch-table`).
    pub table_switch: Option<String>,
    pub front: Front,
    /// The function's URL as deployed.
    pub function_url: Option<UrlState>,
    /// Callers move to another front, at another URL.
    pub front_moves: bool,
}

impl Plan {
    /// The change of `resource` (the first, for duplicates).
    pub fn change(&self, resource: Resource) -> &Change {
        self.changes.iter().find(|change| change.resource == resource).expect("every resource is planned")
    }

    pub fn action(&self, resource: Resource) -> &Action {
        &self.change(resource).action
    }

    pub fn up_to_date(&self) -> bool {
        !self.changes.iter().any(|change| change.action.changes())
    }

    /// Where callers call now, if anywhere: the function URL, or the stage of the API.
    pub fn deployed_url(&self) -> Option<String> {
        match self.front {
            Front::FunctionUrl => self.function_url.as_ref().map(|url| url.url.clone()),
            Front::Rest => self.api.as_ref().map(|api| self.stack.invoke_url(&self.account.region, &api.id)),
        }
    }

    /// The service callers sign for with `--auth iam`.
    pub fn signing_service(&self) -> &'static str {
        match self.front {
            Front::FunctionUrl => "lambda",
            Front::Rest => "execute-api",
        }
    }

    pub fn breaking(&self) -> Vec<&Change> {
        self.changes.iter().filter(|change| change.breaking && change.action.changes()).collect()
    }
}

/// The description of a deployment of this API: a fingerprint of what callers see (auth
/// and integration), so a change that was never deployed (throttled, interrupted) is
/// seen and deployed by the next run.
pub fn deployment_description(authorization: &str, key_required: bool, integration_uri: &str) -> String {
    let fingerprint = Sha256::digest(format!(
        "ANY {PROXY} {authorization} key={key_required} {integration_uri}",
        PROXY = crate::stack::PROXY_PATH
    ));
    let hex: String = fingerprint.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
    format!("{DEPLOYMENT_PREFIX}{hex}")
}

/// Plans an install (or, read-only, the status) of `request` over `deployed`.
pub fn install(request: &Request<'_>, deployed: &Deployed) -> Result<Plan, Refusal> {
    let defaults = Settings::DEFAULT;
    let options = request.options;
    let account = deployed.account.clone();
    let function = deployed.function.as_ref();

    // The table: never switched implicitly, never to one whose counters are behind, and
    // never a new one while the stack's counters are in a table an uninstall kept.
    let table = table_name(request.table, function);
    let table_switch = function.map(FunctionState::table).filter(|current| *current != table).map(str::to_owned);
    if let Some(current) = &table_switch {
        match (&deployed.counters, request.switch_table) {
            (Some(counters), true) => refuse_counters_behind(current, &table, counters)?,
            _ => return Err(Refusal::TableSwitch { current: current.clone(), asked: table }),
        }
    }
    if !deployed.kept_tables.is_empty() && !deployed.kept_tables.contains(&table) {
        return Err(Refusal::KeptTable { stack: request.name.to_owned(), tables: deployed.kept_tables.join(", ") });
    }

    let stage = request
        .stage
        .map(str::to_owned)
        .unwrap_or_else(|| deployed.api.as_ref().map_or_else(|| DEFAULT_STAGE.to_owned(), deployed_stage));
    let stack = Stack { name: request.name.to_owned(), table, stage };

    let chosen_api = choose_api(&deployed.apis, &deployed.usage_plans);
    // The front callers use now, and the auth it has.
    let deployed_front = match (&deployed.function_url, chosen_api) {
        (Some(_), _) => Some(Front::FunctionUrl),
        (None, Some(_)) => Some(Front::Rest),
        (None, None) => None,
    };
    // Both fronts at once: a move between them was interrupted, and which one callers use
    // is not for install to guess (it would delete the other).
    let tagged_api = deployed.apis.iter().any(|api| api.tagged);
    if options.front.is_none() && deployed.function_url.is_some() && tagged_api {
        return Err(Refusal::BothFronts);
    }
    let front = options.front.or(deployed_front).unwrap_or(Front::Rest);
    if front == Front::FunctionUrl && options.auth == Some(Auth::ApiKey) {
        return Err(Refusal::ApiKeyOnFunctionUrl);
    }
    let rest_auth = deployed.api.as_ref().and_then(|api| api.method.as_ref()).map(|method| {
        match (method.authorization.as_str(), method.key_required) {
            (AWS_IAM, _) => Auth::Iam,
            (_, true) => Auth::ApiKey,
            (_, false) => Auth::None,
        }
    });
    let url_auth =
        deployed.function_url.as_ref().map(|url| if url.auth_type == AWS_IAM { Auth::Iam } else { Auth::None });
    let deployed_auth = url_auth.or(rest_auth);
    let live_stage = |name: &str| deployed.api.as_ref().and_then(|api| api.stages.iter().find(|s| s.name == name));
    // A Function URL has no keys: moving there without --auth signs with IAM.
    let kept_auth = deployed_auth.filter(|auth| !(front == Front::FunctionUrl && *auth == Auth::ApiKey));
    let default_auth = if front == Front::FunctionUrl { Auth::Iam } else { defaults.auth };
    let auth = options.auth.or(kept_auth).unwrap_or(default_auth);
    let deployed_architecture = function
        .map(|function| if function.architecture == "arm64" { Architecture::Arm64 } else { Architecture::X86_64 });
    let architecture = options.architecture.or(deployed_architecture).unwrap_or(defaults.architecture);
    let chosen_plan = choose_usage_plan(&deployed.usage_plans, chosen_api.map(|api| api.id.as_str()));
    // The throttle deployed where this auth keeps it (the usage plan's, or with IAM the
    // stage's), else where the auth before it kept it: a change of auth keeps the rate.
    let plan_throttle = chosen_plan.and_then(|plan| plan.throttle);
    let stage_throttle = live_stage(&stack.stage).and_then(|stage| stage.throttle);
    let deployed_throttle = match auth {
        Auth::Iam => stage_throttle.or(plan_throttle),
        _ => plan_throttle.or(stage_throttle),
    };
    let throttle = Throttle {
        rate: options.rate_limit.or(deployed_throttle.map(|t| t.rate)).unwrap_or(defaults.rate_limit),
        burst: options.burst_limit.or(deployed_throttle.map(|t| t.burst)).unwrap_or(defaults.burst_limit),
    };
    let log_retention_days = match (&deployed.log_group, options.log_retention_days) {
        (_, Some(days)) => Some(days),
        (Some(group), None) => group.retention_days,
        (None, None) => Some(defaults.log_retention_days),
    };
    let wanted = Wanted {
        auth,
        architecture,
        code: (request.code)(architecture),
        memory_mb: options.memory.or(function.map(|f| f.memory_mb)).unwrap_or(defaults.memory),
        timeout_seconds: options.timeout.or(function.map(|f| f.timeout_seconds)).unwrap_or(defaults.timeout),
        throttle,
        log_retention_days,
        protect_table: options.protect_table,
        // A reserved concurrency of 0 refuses every invocation: only an interrupted table
        // switch leaves that, and it is not kept.
        max_concurrency: options.max_concurrency.map_or_else(
            || function.and_then(|f| f.reserved_concurrency).filter(|reserved| *reserved > 0),
            crate::cli::MaxConcurrency::reserved,
        ),
    };

    let mut changes = Vec::new();
    let mut advisories = Vec::new();
    let mut change = |resource, name: &str, action, breaking| {
        changes.push(Change { resource, name: name.to_owned(), action, breaking });
    };

    let table_action = table_action(deployed.table.as_ref(), &wanted, &mut advisories)?;
    change(Resource::Table, &stack.table, table_action, false);

    let log_group_action = log_group_action(deployed.log_group.as_ref(), &stack, &wanted, &mut advisories);
    change(Resource::LogGroup, &stack.log_group(), log_group_action, false);

    // Role and this region's policy.
    let role_arn = deployed
        .role
        .as_ref()
        .map_or_else(|| crate::resources::role::arn(&stack.name, &account), |role| role.arn.clone());
    let policy_name = Stack::region_policy_name(&account.region);
    let (role_action, policy_action) = role_actions(deployed.role.as_ref(), &stack, &account);
    change(Resource::Role, &stack.name, role_action, false);
    change(Resource::Policy, &policy_name, policy_action, false);

    // Function.
    let function_action = match function {
        None => Action::Create,
        Some(function) => Action::from_diffs(function_diffs(function, &stack, &wanted, &role_arn), !function.tagged),
    };
    // Switching tables stops the function while the counters are compared again.
    change(Resource::Function, &stack.name, function_action.clone(), table_switch.is_some());

    let front_moves = deployed_front.is_some_and(|deployed| deployed != front);
    if front == Front::FunctionUrl {
        let url_front = UrlFront { deployed, stack: &stack, wanted: &wanted, deployed_auth, front_moves };
        let parts = Parts { account, changes, advisories, role_arn, table_switch };
        return Ok(url_front.plan(parts));
    }
    let public_left = function.is_some_and(|function| function.public_statements > 0);
    let url_action = match (&deployed.function_url, public_left) {
        (Some(_), _) => Action::Delete("--front rest replaces it".into()),
        (None, true) => Action::Delete("its public statements are left behind".into()),
        (None, false) => Action::Absent,
    };
    change(Resource::FunctionUrl, &stack.name, url_action, front_moves);

    // API, and duplicates of it.
    let api = chosen_api.zip(deployed.api.clone()).map(|(api, detail)| ApiTarget { id: api.id.clone(), detail });
    let api_action = match chosen_api {
        None => Action::Create,
        Some(api) if api.tagged => Action::Keep,
        Some(_) => Action::Adopt(vec![diff(Field::Tags, "none", "counterctl")]),
    };
    let duplicate_apis: Vec<String> = match chosen_api {
        Some(chosen) if chosen.tagged => {
            deployed.apis.iter().filter(|api| api.tagged && api.id != chosen.id).map(|api| api.id.clone()).collect()
        }
        _ => Vec::new(),
    };

    // Permission: API Gateway may invoke the function from this API only.
    let permission_action = match (function, &api) {
        (Some(function), Some(api)) if function_action != Action::Create => {
            let source_arn = stack.source_arn(&account, &api.id);
            match &function.permission {
                None => Action::Create,
                Some(statement) if function::permits(statement, &source_arn) => Action::Keep,
                Some(_) => Action::Update(vec![diff(Field::Statement, "other", source_arn)]),
            }
        }
        _ => Action::Create,
    };
    change(Resource::Permission, crate::stack::PERMISSION_SID, permission_action, false);
    // A new API is a new URL for callers of a function URL.
    let new_front = front_moves && api_action == Action::Create;
    change(Resource::Api, &stack.name, api_action, new_front);
    for id in &duplicate_apis {
        change(
            Resource::Api,
            id,
            Action::Delete(format!("a duplicate of the stack's API {}", chosen_api.map_or("", |api| api.id.as_str()))),
            false,
        );
    }

    // Route, integration, deployment.
    let key_required = wanted.auth == Auth::ApiKey;
    let authorization = method_authorization(wanted.auth);
    let method = api.as_ref().and_then(|api| api.detail.method.as_ref());
    let route_action = match (&api, method) {
        (None, _) => Action::Create,
        (Some(api), _) if api.detail.proxy_id.is_none() => Action::Create,
        (Some(_), None) => Action::Update(vec![diff(Field::Method, "none", auth_wording(wanted.auth))]),
        (Some(_), Some(method)) if method.authorization != authorization || method.key_required != key_required => {
            let deployed = deployed_auth.map_or("other", auth_wording);
            Action::Update(vec![diff(Field::Method, deployed, auth_wording(wanted.auth))])
        }
        (Some(_), Some(_)) => Action::Keep,
    };
    let auth_changes = deployed_auth.is_some_and(|deployed| deployed != wanted.auth);
    let route_replaced = route_action.changes();
    change(Resource::Route, crate::stack::PROXY_PATH, route_action, auth_changes);
    let integration_uri = stack.integration_uri(&account);
    let integration_action = match method.and_then(|method| method.integration_uri.as_deref()) {
        _ if route_replaced => Action::Create,
        None => Action::Create,
        Some(uri) if uri == integration_uri => Action::Keep,
        Some(uri) => Action::Update(vec![diff(Field::Integration, uri, &integration_uri)]),
    };
    let integration_changes = integration_action.changes();
    change(Resource::Integration, &stack.name, integration_action, false);
    let deployment = deployment_description(authorization, key_required, &integration_uri);
    let live = api.as_ref().and_then(|api| api.detail.stages.iter().find(|s| s.name == stack.stage));
    let stage_action = match live {
        None => Action::Create,
        Some(live) => {
            let mut diffs = Vec::new();
            if live.deployment.as_deref() != Some(deployment.as_str()) || route_replaced || integration_changes {
                diffs.push(diff(Field::Deployment, live.deployment.as_deref().unwrap_or("none"), &deployment));
            }
            // With IAM the stage throttles; a stage throttle left from IAM is kept equal to
            // the wanted one, so it never caps callers below what the usage plan allows.
            let throttles = wanted.auth == Auth::Iam || live.throttle.is_some();
            if throttles && live.throttle != Some(wanted.throttle) {
                let current = live.throttle.map_or("none".to_owned(), throttle_wording);
                diffs.push(diff(Field::Throttle, current, throttle_wording(wanted.throttle)));
            }
            Action::from_diffs(diffs, false)
        }
    };
    change(Resource::Stage, &stack.stage, stage_action, false);

    // API key and usage plan.
    let tagged_keys: Vec<&KeyState> = deployed.keys.iter().filter(|key| key.tagged).collect();
    let tagged_plans: Vec<&UsagePlanState> = deployed.usage_plans.iter().filter(|plan| plan.tagged).collect();
    let (key, duplicate_keys, usage_plan, duplicate_usage_plans);
    if key_required {
        key = choose_key(&deployed.keys, chosen_plan);
        duplicate_keys = match key {
            Some(chosen) if chosen.tagged => {
                tagged_keys.iter().filter(|k| k.id != chosen.id).map(|k| k.id.clone()).collect()
            }
            _ => Vec::new(),
        };
        let key_action = match key {
            None => Action::Create,
            Some(key) => {
                let mut diffs = Vec::new();
                if !key.enabled {
                    diffs.push(diff(Field::Enabled, "no", "yes"));
                }
                if !key.tagged {
                    diffs.push(diff(Field::Tags, "none", "counterctl"));
                }
                Action::from_diffs(diffs, !key.tagged)
            }
        };
        change(Resource::ApiKey, &stack.name, key_action, false);
        for id in &duplicate_keys {
            change(Resource::ApiKey, id, Action::Delete("a duplicate of the stack's API key".into()), false);
        }
        usage_plan = chosen_plan;
        duplicate_usage_plans = match usage_plan {
            Some(chosen) if chosen.tagged => {
                tagged_plans.iter().filter(|p| p.id != chosen.id).map(|p| (*p).clone()).collect()
            }
            _ => Vec::new(),
        };
        let plan_action = match (usage_plan, &api) {
            (None, _) => Action::Create,
            (Some(plan), api) => {
                let mut diffs = Vec::new();
                let serves = api
                    .as_ref()
                    .is_some_and(|api| plan.stages.iter().any(|(id, s)| *id == api.id && *s == stack.stage));
                if !serves {
                    diffs.push(diff(
                        Field::Stage,
                        "none",
                        format!("{}:{}", api.as_ref().map_or("new API", |api| api.id.as_str()), stack.stage),
                    ));
                }
                if plan.throttle != Some(wanted.throttle) {
                    let current = plan.throttle.map_or("none".to_owned(), throttle_wording);
                    diffs.push(diff(Field::Throttle, current, throttle_wording(wanted.throttle)));
                }
                if !key.is_some_and(|key| plan.key_ids.contains(&key.id)) {
                    diffs.push(diff(Field::Key, "none", "the stack's key"));
                }
                if !plan.tagged {
                    diffs.push(diff(Field::Tags, "none", "counterctl"));
                }
                Action::from_diffs(diffs, !plan.tagged)
            }
        };
        change(Resource::UsagePlan, &stack.name, plan_action, false);
        for plan in &duplicate_usage_plans {
            change(
                Resource::UsagePlan,
                &plan.id,
                Action::Delete("a duplicate of the stack's usage plan".into()),
                false,
            );
        }
    } else {
        key = None;
        usage_plan = None;
        duplicate_keys = tagged_keys.iter().map(|key| key.id.clone()).collect();
        duplicate_usage_plans = tagged_plans.iter().map(|plan| (*plan).clone()).collect();
        let reason = format!("--auth {}: callers no longer send a key", crate::install::auth_name(wanted.auth));
        let none = |present: bool| if present { Action::Delete(reason.clone()) } else { Action::Absent };
        change(Resource::ApiKey, &stack.name, none(!duplicate_keys.is_empty()), true);
        change(Resource::UsagePlan, &stack.name, none(!duplicate_usage_plans.is_empty()), true);
    }
    changes.sort_by_key(|change| change.resource);

    Ok(Plan {
        stack,
        account,
        wanted,
        changes,
        advisories,
        api,
        key: key.cloned(),
        usage_plan: usage_plan.cloned(),
        role_arn,
        function: function.cloned(),
        duplicate_apis,
        duplicate_keys,
        duplicate_usage_plans,
        deployment,
        table_switch,
        front,
        function_url: deployed.function_url.clone(),
        front_moves,
    })
}

/// What every plan has, whatever the front.
struct Parts {
    account: Account,
    changes: Vec<Change>,
    advisories: Vec<String>,
    role_arn: String,
    table_switch: Option<String>,
}

/// `--front function-url`: the function's URL, and the REST front's resources deleted.
struct UrlFront<'a> {
    deployed: &'a Deployed,
    stack: &'a Stack,
    wanted: &'a Wanted,
    deployed_auth: Option<Auth>,
    front_moves: bool,
}

impl UrlFront<'_> {
    fn plan(self, parts: Parts) -> Plan {
        let Parts { account, mut changes, advisories, role_arn, table_switch } = parts;
        let (deployed, stack, wanted) = (self.deployed, self.stack, self.wanted);
        let mut change = |resource, name: &str, action, breaking| {
            changes.push(Change { resource, name: name.to_owned(), action, breaking });
        };
        let auth_type = if wanted.auth == Auth::Iam { AWS_IAM } else { NO_AUTHORIZATION };
        let public = wanted.auth == Auth::None;
        let function = deployed.function.as_ref();
        let url_action = match &deployed.function_url {
            None => Action::Create,
            Some(url) => {
                let mut diffs = Vec::new();
                if url.auth_type != auth_type {
                    diffs.push(diff(Field::Method, &url.auth_type, auth_type));
                }
                let wanted_statements = if public { 2 } else { 0 };
                if function.is_none_or(|function| function.public_statements != wanted_statements) {
                    let wording = |public| if public { "public" } else { "signed callers only" };
                    diffs.push(diff(Field::Statement, wording(!public), wording(public)));
                }
                Action::from_diffs(diffs, false)
            }
        };
        let auth_changes = self.deployed_auth.is_some_and(|deployed| deployed != wanted.auth);
        change(Resource::FunctionUrl, &stack.name, url_action, self.front_moves || auth_changes);

        // The REST front goes once the URL is up.
        let replaced = || Action::Delete("--front function-url replaces it".into());
        let permission = function.and_then(|function| function.permission.as_ref());
        change(
            Resource::Permission,
            crate::stack::PERMISSION_SID,
            permission.map_or(Action::Absent, |_| replaced()),
            false,
        );
        let duplicate_apis: Vec<String> =
            deployed.apis.iter().filter(|api| api.tagged).map(|api| api.id.clone()).collect();
        for id in &duplicate_apis {
            change(Resource::Api, id, replaced(), self.front_moves);
        }
        if duplicate_apis.is_empty() {
            change(Resource::Api, &stack.name, Action::Absent, false);
        }
        change(Resource::Route, crate::stack::PROXY_PATH, Action::Absent, false);
        change(Resource::Integration, &stack.name, Action::Absent, false);
        change(Resource::Stage, &stack.stage, Action::Absent, false);
        let duplicate_keys: Vec<String> =
            deployed.keys.iter().filter(|key| key.tagged).map(|key| key.id.clone()).collect();
        let duplicate_usage_plans: Vec<UsagePlanState> =
            deployed.usage_plans.iter().filter(|plan| plan.tagged).cloned().collect();
        let gone = |present: bool| if present { replaced() } else { Action::Absent };
        change(Resource::ApiKey, &stack.name, gone(!duplicate_keys.is_empty()), true);
        change(Resource::UsagePlan, &stack.name, gone(!duplicate_usage_plans.is_empty()), true);
        changes.sort_by_key(|change| change.resource);
        Plan {
            stack: stack.clone(),
            account,
            wanted: wanted.clone(),
            changes,
            advisories,
            api: None,
            key: None,
            usage_plan: None,
            role_arn,
            function: function.cloned(),
            duplicate_apis,
            duplicate_keys,
            duplicate_usage_plans,
            deployment: String::new(),
            table_switch,
            front: Front::FunctionUrl,
            function_url: deployed.function_url.clone(),
            front_moves: self.front_moves,
        }
    }
}

/// The table: refused with another key schema; protections always on a table
/// counterctl made, on another only with `--protect-table` (else advised); TTL on
/// `expires_at` wherever DynamoDB allows it.
fn table_action(table: Option<&TableState>, wanted: &Wanted, advisories: &mut Vec<String>) -> Result<Action, Refusal> {
    let Some(table) = table else {
        return Ok(Action::Create);
    };
    if table.key_schema != COUNTER_KEY_SCHEMA {
        return Err(Refusal::TableKeySchema { table: table.name.clone(), found: table.key_schema.clone() });
    }
    let protect = table.tagged || wanted.protect_table;
    let mut diffs = Vec::new();
    for (on, field, what) in [
        (table.deletion_protection, Field::DeletionProtection, "deletion protection"),
        (table.point_in_time_recovery, Field::PointInTimeRecovery, "point-in-time recovery"),
    ] {
        match (on, protect) {
            (true, _) => {}
            (false, true) => diffs.push(diff(field, "off", "on")),
            (false, false) => {
                advisories.push(format!("table {} has no {what} (turn it on with --protect-table)", table.name));
            }
        }
    }
    match &table.ttl {
        Ttl::OnExpiresAt => {}
        Ttl::Off => diffs.push(diff(Field::Ttl, "off", format!("on `{}`", counter_function::dynamo::EXPIRES_AT))),
        Ttl::Other(ttl) => advisories.push(format!(
            "table {} has TTL {ttl}, so idempotency records never expire (DynamoDB allows one TTL attribute; \
             counterctl leaves it)",
            table.name
        )),
    }
    Ok(Action::from_diffs(diffs, !table.tagged))
}

/// The log group: the retention wanted, and the stack's tag.
fn log_group_action(
    group: Option<&LogGroupState>,
    stack: &Stack,
    wanted: &Wanted,
    advisories: &mut Vec<String>,
) -> Action {
    let Some(group) = group else {
        return Action::Create;
    };
    let mut diffs = Vec::new();
    if group.retention_days != wanted.log_retention_days {
        diffs.push(diff(Field::Retention, days(group.retention_days), days(wanted.log_retention_days)));
    }
    if group.retention_days.is_none() && wanted.log_retention_days.is_none() {
        advisories.push(format!("log group {} keeps logs forever (set --log-retention-days)", stack.log_group()));
    }
    if !group.tagged {
        diffs.push(diff(Field::Tags, "none", "counterctl"));
    }
    Action::from_diffs(diffs, false)
}

/// The role (Lambda's trust, the stack's tag) and this region's policy, which replaces an
/// older counterctl's policy for this region in the same run.
fn role_actions(role: Option<&RoleState>, stack: &Stack, account: &Account) -> (Action, Action) {
    let Some(role) = role else {
        return (Action::Create, Action::Create);
    };
    let mut diffs = Vec::new();
    if !role.trust_ok {
        diffs.push(diff(Field::Trust, "other", "Lambda's"));
    }
    if !role.tagged {
        diffs.push(diff(Field::Tags, "none", "counterctl"));
    }
    let policy_name = Stack::region_policy_name(&account.region);
    let mut policy_diffs = Vec::new();
    match role.inline.get(&policy_name) {
        Some(Some(document)) if *document == stack.role_policy(account) => {}
        Some(_) => policy_diffs.push(diff(Field::Document, "other", "least privilege on this stack")),
        None => policy_diffs.push(diff(Field::Document, "none", "least privilege on this stack")),
    }
    if legacy_policy_replaced(role, &account.region) {
        policy_diffs.push(diff(Field::LegacyPolicy, LEGACY_POLICY_NAME, format!("{policy_name} (one per region)")));
    }
    let policy_action = match (role.inline.contains_key(&policy_name), policy_diffs.len()) {
        (false, 1) => Action::Create,
        _ => Action::from_diffs(policy_diffs, false),
    };
    (Action::from_diffs(diffs, !role.tagged), policy_action)
}

/// Refuses a switch from table `current` to `new` when any counter would go backwards:
/// lower in the new table, or missing there (it would restart at 1).
pub fn refuse_counters_behind(current: &str, new: &str, counters: &crate::deployed::Counters) -> Result<(), Refusal> {
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

/// The function's fields that differ from what is wanted.
pub fn function_diffs(function: &FunctionState, stack: &Stack, wanted: &Wanted, role_arn: &str) -> Vec<Diff> {
    let mut diffs = Vec::new();
    let architecture = wanted.code.architecture.as_str();
    if function.code_sha256 != wanted.code.sha256 || function.architecture != architecture {
        diffs.push(diff(
            Field::Code,
            format!("{} {}", function.code_sha256, function.architecture),
            format!("{} {architecture}", wanted.code.sha256),
        ));
    }
    let mut differs = |field, current: String, wanted: String| {
        if current != wanted {
            diffs.push(diff(field, current, wanted));
        }
    };
    differs(Field::Memory, format!("{} MB", function.memory_mb), format!("{} MB", wanted.memory_mb));
    differs(Field::Timeout, format!("{} s", function.timeout_seconds), format!("{} s", wanted.timeout_seconds));
    differs(Field::Role, function.role.clone(), role_arn.to_owned());
    differs(Field::Runtime, function.runtime.clone(), RUNTIME.as_str().to_owned());
    differs(Field::Handler, function.handler.clone(), HANDLER.to_owned());
    let variable = function.variables.get(TABLE_VARIABLE).filter(|table| !table.is_empty());
    differs(Field::TableName, variable.map_or("unset", String::as_str).to_owned(), stack.table.clone());
    if function.reserved_concurrency != wanted.max_concurrency {
        let wording = |reserved: Option<i32>| match reserved {
            None => "unreserved".to_owned(),
            Some(0) => "0 (every invocation refused, as an interrupted table switch leaves it)".to_owned(),
            Some(reserved) => reserved.to_string(),
        };
        diffs.push(diff(Field::Concurrency, wording(function.reserved_concurrency), wording(wanted.max_concurrency)));
    }
    if !function.tagged {
        diffs.push(diff(Field::Tags, "none", "counterctl"));
    }
    diffs
}

/// The function configuration fields (one UpdateFunctionConfiguration call).
pub const CONFIGURATION_FIELDS: [Field; 6] =
    [Field::Memory, Field::Timeout, Field::Role, Field::Runtime, Field::Handler, Field::TableName];

/// A legacy inline policy (from before policies were per region) that grants only this
/// region's resources is replaced by this region's policy; one that grants another
/// region's is that region's and is left alone.
fn legacy_policy_replaced(role: &RoleState, region: &str) -> bool {
    matches!(role.inline.get(LEGACY_POLICY_NAME), Some(Some(document)) if policy_regions(document) == BTreeSet::from([region.to_owned()]))
}

/// The regions other than `region` whose counterctl policies are on the role.
pub fn other_regions(role: &RoleState, region: &str) -> Vec<String> {
    let mut regions = BTreeSet::new();
    for (name, document) in &role.inline {
        if let Some(other) = name.strip_prefix(REGION_POLICY_PREFIX) {
            regions.insert(other.to_owned());
        } else if name == LEGACY_POLICY_NAME {
            regions.extend(document.as_ref().map(policy_regions).unwrap_or_default());
        }
    }
    regions.remove(region);
    regions.into_iter().collect()
}

/// Of the API keys named after the stack, the one callers use: a tagged one (the one in
/// the stack's usage plan, else the oldest), else the oldest untagged one.
pub fn choose_key<'a>(keys: &'a [KeyState], plan: Option<&UsagePlanState>) -> Option<&'a KeyState> {
    let in_use = |key: &&KeyState| plan.is_some_and(|plan| plan.key_ids.contains(&key.id));
    let oldest = |key: &&KeyState| (key.created, key.id.clone());
    let tagged: Vec<&KeyState> = keys.iter().filter(|key| key.tagged).collect();
    if !tagged.is_empty() {
        return tagged
            .iter()
            .copied()
            .filter(in_use)
            .min_by_key(oldest)
            .or_else(|| tagged.into_iter().min_by_key(oldest));
    }
    keys.iter().min_by_key(oldest)
}

/// Of the usage plans named after the stack, the stack's: a tagged one serving its API,
/// else any tagged one, else an untagged one (the smallest id, for a stable choice).
pub fn choose_usage_plan<'a>(plans: &'a [UsagePlanState], api_id: Option<&str>) -> Option<&'a UsagePlanState> {
    let serves = |plan: &&UsagePlanState| api_id.is_some_and(|id| plan.stages.iter().any(|(api, _)| api == id));
    let tagged: Vec<&UsagePlanState> = plans.iter().filter(|plan| plan.tagged).collect();
    if !tagged.is_empty() {
        let serving = tagged.iter().copied().filter(serves).min_by_key(|plan| plan.id.clone());
        return serving.or_else(|| tagged.into_iter().min_by_key(|plan| plan.id.clone()));
    }
    plans.iter().min_by_key(|plan| plan.id.clone())
}

/// The method's authorization type for `auth`.
pub fn method_authorization(auth: Auth) -> &'static str {
    if auth == Auth::Iam { AWS_IAM } else { NO_AUTHORIZATION }
}

fn auth_wording(auth: Auth) -> &'static str {
    match auth {
        Auth::ApiKey => "API key required",
        Auth::Iam => "AWS_IAM (SigV4)",
        Auth::None => "no auth",
    }
}

fn throttle_wording(throttle: Throttle) -> String {
    format!("{} req/s, burst {}", throttle.rate, throttle.burst)
}

fn days(retention: Option<i32>) -> String {
    retention.map_or_else(|| "forever".to_owned(), |days| format!("{days} days"))
}

/// Plans an uninstall: only what carries the stack's tag is deleted; the table only with
/// `delete_data`; the role only when no other region's function uses it.
pub fn uninstall(name: &str, deployed: &Deployed, table: &str, delete_data: bool) -> Vec<Change> {
    let mut changes = Vec::new();
    let not_ours = || Action::Retain("not made by counterctl (no counterctl:stack tag): left alone".into());
    let mut change = |resource, name: &str, action| {
        changes.push(Change { resource, name: name.to_owned(), action, breaking: false })
    };
    for api in &deployed.apis {
        change(Resource::Api, &api.id, if api.tagged { Action::Delete("uninstall".into()) } else { not_ours() });
    }
    for plan in &deployed.usage_plans {
        change(
            Resource::UsagePlan,
            &plan.id,
            if plan.tagged { Action::Delete("uninstall".into()) } else { not_ours() },
        );
    }
    for key in &deployed.keys {
        change(Resource::ApiKey, &key.id, if key.tagged { Action::Delete("uninstall".into()) } else { not_ours() });
    }
    let function_action = match &deployed.function {
        None => Action::Absent,
        Some(function) if function.tagged => Action::Delete("uninstall, with its API Gateway permission".into()),
        Some(_) => not_ours(),
    };
    change(Resource::Function, name, function_action);
    let log_group_action = match &deployed.log_group {
        None => Action::Absent,
        Some(group) if group.tagged => Action::Delete("uninstall".into()),
        Some(_) => not_ours(),
    };
    change(Resource::LogGroup, &format!("/aws/lambda/{name}"), log_group_action);
    let region = &deployed.account.region;
    let policy_name = Stack::region_policy_name(region);
    let role_action = match &deployed.role {
        None => Action::Absent,
        Some(role) if !role.tagged => not_ours(),
        Some(role) => {
            let others = other_regions(role, region);
            // Policies counterctl did not write, or an old one that names no region (a
            // wildcard): something else may use the role.
            let foreign: Vec<&str> = role
                .inline
                .iter()
                .filter(|(name, document)| {
                    let legacy = *name == LEGACY_POLICY_NAME
                        && document.as_ref().is_some_and(|document| !policy_regions(document).is_empty());
                    !name.starts_with(REGION_POLICY_PREFIX) && !legacy
                })
                .map(|(name, _)| name.as_str())
                .collect();
            let kept = if !others.is_empty() {
                Some(format!("still used by the stack in {}", others.join(", ")))
            } else if !foreign.is_empty() {
                Some(format!(
                    "it has inline policies counterctl did not write ({}); delete it by hand once nothing uses it",
                    foreign.join(", ")
                ))
            } else if !role.instance_profiles.is_empty() {
                Some(format!("it is in instance profile(s) {}", role.instance_profiles.join(", ")))
            } else {
                None
            };
            match kept {
                None => Action::Delete("uninstall: managed policies detached, inline policies deleted".into()),
                Some(reason) => {
                    if role.inline.contains_key(&policy_name) {
                        change(Resource::Policy, &policy_name, Action::Delete("this region's policy".into()));
                    }
                    if legacy_policy_replaced(role, region) {
                        let reason = "an older counterctl's policy for this region".into();
                        change(Resource::Policy, LEGACY_POLICY_NAME, Action::Delete(reason));
                    }
                    Action::Retain(reason)
                }
            }
        }
    };
    change(Resource::Role, name, role_action);
    let table_action = match (&deployed.table, delete_data) {
        (None, _) => Action::Absent,
        (Some(_), false) => Action::Retain("kept with its counters (delete it with --delete-data)".into()),
        (Some(table), true) if table.tagged => Action::Delete("--delete-data".into()),
        (Some(_), true) => {
            Action::Retain("not made by counterctl (no counterctl:stack tag): --delete-data leaves it alone".into())
        }
    };
    change(Resource::Table, table, table_action);
    changes.sort_by_key(|change| change.resource);
    changes
}

#[cfg(test)]
mod tests;
