//! Resolving what was asked for against what is deployed: an option not given keeps
//! what is deployed, and a default applies only to what does not exist yet. The table
//! is never switched implicitly, nor while counters would go backwards.

use crate::change::Refusal;
use crate::deployed::Deployed;
use crate::resources::alarms;
use crate::resources::api::choose_api;
use crate::resources::apigateway::Throttle;
use crate::resources::domain::WantedDomain;
use crate::resources::function::{Code, WantedFunction};
use crate::resources::stage::{DEFAULT_STAGE, deployed_stage};
use crate::resources::table::{refuse_counters_behind, table_name};
use crate::resources::topic::Notify;
use crate::resources::usage_plan::choose_usage_plan;
use crate::settings::{Architecture, Auth, DomainOption, Front, MaxConcurrency, Options, Settings, Switch};
use crate::stack::Stack;

/// What is asked for.
pub(crate) struct Request<'a> {
    pub(crate) name: &'a str,
    pub(crate) table: Option<&'a str>,
    pub(crate) stage: Option<&'a str>,
    pub(crate) switch_table: bool,
    /// `--recreate-table`: a new, empty table accepted where the stack's is gone.
    pub(crate) recreate_table: bool,
    pub(crate) options: &'a Options,
    /// The code for an instruction set, `None` where none is bundled or given.
    pub(crate) code: &'a dyn Fn(Architecture) -> Option<Code>,
    /// `--regions` and `--witness-region`: a stack in several regions.
    pub(crate) regions: Option<&'a crate::regions::Regions>,
    /// The API key's value in the stack's other regions, so a caller holds one key.
    pub(crate) api_key_value: Option<&'a str>,
}

/// The settings the plan deploys.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub(crate) auth: Auth,
    pub(crate) function: WantedFunction,
    pub(crate) throttle: Throttle,
    /// `None`: an existing log group that keeps logs forever, left so.
    pub(crate) log_retention_days: Option<i32>,
    pub(crate) protect_table: bool,
    pub(crate) alarms: Alarms,
    /// The REST front's custom domain.
    pub(crate) domain: Option<WantedDomain>,
    /// The value a new API key is made with: the one the stack's key has in its other
    /// regions.
    pub(crate) api_key_value: Option<String>,
}

/// The stack's alarms: none, or all of them, reaching whom `notify` says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Alarms {
    Off,
    On { notify: Notify },
}

/// The request resolved: names, settings, and where callers are and go.
pub(crate) struct Resolved {
    pub(crate) stack: Stack,
    pub(crate) wanted: Wanted,
    pub(crate) front: Front,
    /// The auth callers use now, if anything is deployed.
    pub(crate) deployed_auth: Option<Auth>,
    /// Callers move to another front, at another URL.
    pub(crate) front_moves: bool,
    /// The table the function moves away from (`--switch-table`).
    pub(crate) table_switch: Option<String>,
    /// The stack's table is gone, and `--recreate-table` accepts a new, empty one.
    pub(crate) table_lost: bool,
}

pub(crate) fn resolve(request: &Request<'_>, deployed: &Deployed) -> Result<Resolved, Refusal> {
    let defaults = Settings::DEFAULT;
    let options = request.options;
    let function = deployed.function.as_ref();

    // The table: never switched implicitly, never to one whose counters are behind,
    // never a new one while the stack's counters are in a table an uninstall kept, and
    // never made again empty where the stack's own records say it had one.
    let table = table_name(request.table, deployed.recorded_table().as_deref());
    let table_lost = deployed.table.is_none() && deployed.records(&table);
    if table_lost && !request.recreate_table {
        return Err(Refusal::TableLost { stack: request.name.to_owned(), table });
    }
    let table_switch = function.map(|function| function.table()).filter(|current| *current != table).map(str::to_owned);
    if let Some(current) = &table_switch {
        match (&deployed.counters, request.switch_table) {
            (Some(counters), true) => refuse_counters_behind(current, &table, counters)?,
            _ => return Err(Refusal::TableSwitch { current: current.clone(), asked: table }),
        }
    }
    if !deployed.kept_tables.is_empty() && !deployed.kept_tables.contains(&table) {
        return Err(Refusal::KeptTable { stack: request.name.to_owned(), tables: deployed.kept_tables.join(", ") });
    }

    let stage = request.stage.map(str::to_owned).unwrap_or_else(|| {
        deployed.api.as_ref().map_or_else(|| DEFAULT_STAGE.to_owned(), |api| deployed_stage(&api.stages))
    });
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
    let domain = wanted_domain(options, deployed, &stack.name, front)?;
    let rest_auth = deployed.api.as_ref().and_then(|api| api.method.as_ref()).map(|method| method.auth());
    let deployed_auth = deployed.function_url.as_ref().map(|url| url.auth()).or(rest_auth);
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
    let stage_throttle = deployed.api.as_ref().and_then(|api| api.stage(&stack.stage)).and_then(|stage| stage.throttle);
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
    let function_settings = WantedFunction {
        code: (request.code)(architecture).ok_or(Refusal::NoBundledCode { architecture: architecture.name() })?,
        memory_mb: options.memory.or(function.map(|f| f.memory_mb)).unwrap_or(defaults.memory),
        timeout_seconds: options.timeout.or(function.map(|f| f.timeout_seconds)).unwrap_or(defaults.timeout),
        // A reserved concurrency of 0 refuses every invocation: only an interrupted table
        // switch leaves that, and it is not kept.
        max_concurrency: options.max_concurrency.map_or_else(
            || function.and_then(|f| f.reserved_concurrency).filter(|reserved| *reserved > 0),
            MaxConcurrency::reserved,
        ),
    };
    // A new stack gets alarms; a deployed one keeps what it has, as every setting does.
    let has_alarms = deployed.alarms.iter().any(|alarm| alarm.tagged);
    let alarms_on = match options.alarms {
        Some(switch) => switch == Switch::On,
        None => has_alarms || function.is_none(),
    };
    let given = options.alarm_email.is_some() || options.alarm_topic.is_some();
    let alarms = match (alarms_on, given) {
        (true, _) => Alarms::On { notify: notify(options, deployed, &stack.name) },
        (false, true) => return Err(Refusal::AlarmTargetWithoutAlarms),
        (false, false) => Alarms::Off,
    };
    let wanted = Wanted {
        auth,
        function: function_settings,
        throttle,
        log_retention_days,
        protect_table: options.protect_table,
        alarms,
        domain,
        api_key_value: request.api_key_value.map(str::to_owned),
    };
    Ok(Resolved {
        stack,
        wanted,
        front,
        deployed_auth,
        front_moves: deployed_front.is_some_and(|deployed| deployed != front),
        table_switch,
        table_lost,
    })
}

/// Who the alarms reach: as given, else as the deployed alarms do. The stack's own topic
/// is kept while it exists, even with its alarms gone.
fn notify(options: &Options, deployed: &Deployed, stack_name: &str) -> Notify {
    if let Some(email) = &options.alarm_email {
        return Notify::Email(Some(email.clone()));
    }
    if let Some(topic) = &options.alarm_topic {
        return Notify::Topic(topic.clone());
    }
    // The stack's own topic is known by its ARN, even if it was deleted since (it is
    // made again), and only when tagged (else it is someone's given with --alarm-topic).
    let own_arn = crate::resources::topic::arn(&deployed.account, stack_name);
    let own = deployed.topic.as_ref();
    match alarms::deployed_topic(&deployed.alarms) {
        Some(topic) if topic == own_arn && own.is_none_or(|own| own.tagged) => Notify::Email(None),
        Some(topic) => Notify::Topic(topic),
        None if own.is_some_and(|own| own.tagged) => Notify::Email(None),
        None => Notify::Nobody,
    }
}

/// The custom domain: as given, else the stack's deployed one with its certificate and
/// zone; none on a function URL, which cannot have one.
fn wanted_domain(
    options: &Options,
    deployed: &Deployed,
    stack_name: &str,
    front: Front,
) -> Result<Option<WantedDomain>, Refusal> {
    let ours = deployed.domains.iter().find(|domain| domain.tagged);
    let name = match &options.domain {
        Some(DomainOption::Off) => return Ok(None),
        Some(DomainOption::Name(name)) => name.clone(),
        None => match ours {
            Some(domain) => domain.name.clone(),
            None if options.certificate_arn.is_some() || options.hosted_zone_id.is_some() => {
                return Err(Refusal::DomainNeedsName);
            }
            None => return Ok(None),
        },
    };
    if front == Front::FunctionUrl {
        return Err(match options.domain {
            Some(_) => Refusal::DomainOnFunctionUrl,
            None => Refusal::FrontSwitchWithDomain { stack: stack_name.to_owned(), domain: name },
        });
    }
    let same = deployed.domains.iter().find(|domain| domain.tagged && domain.name == name);
    let certificate_arn = options
        .certificate_arn
        .clone()
        .or_else(|| same.and_then(|domain| domain.certificate_arn.clone()))
        .ok_or_else(|| Refusal::DomainNeedsCertificate { domain: name.clone() })?;
    let zone = options.hosted_zone_id.clone().or_else(|| same.and_then(|domain| domain.zone.clone()));
    Ok(Some(WantedDomain { name, certificate_arn, zone }))
}
