//! `counterctl status`: install's plan, read-only, worded as present / missing /
//! differs; exits 1 when anything is missing or differs. Options not given are compared
//! as deployed, exactly as install would keep them. Its other answers (`--caller-policy`,
//! `--operator-policy`, `--metrics`) are modes of the same read.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::aws::Clients;
use crate::change::{Change, Refusal, Resource};
use crate::cli::{OutputFormat, StackOptions, StatusArgs, suggested};
use crate::deployed::{Deployed, Reach};
use crate::install::{Planning, read_and_plan};
use crate::metrics::{Front, Subject};
use crate::plan::{FrontPlan, Plan};
use crate::progress::{Wording, out, report};
use crate::regions::{InRegion, PerRegion, Regions};
use crate::resources::api_key;
use crate::settings::Auth;

/// What `status` answers: one mode, chosen by its options (clap lets at most one be given).
enum Mode {
    /// Each resource against the options (the default).
    Stack { show_api_key: bool },
    /// `--caller-policy`: the policy a calling service needs.
    CallerPolicy,
    /// `--operator-policy`: the policy an operator needs.
    OperatorPolicy,
    /// `--metrics`: the stack's figures over `since`.
    Metrics { since: Duration },
}

impl Mode {
    /// The mode `args` ask for; a window CloudWatch cannot answer is refused before any
    /// read.
    fn of(args: &StatusArgs) -> anyhow::Result<Self> {
        Ok(match args {
            StatusArgs { caller_policy: true, .. } => Self::CallerPolicy,
            StatusArgs { operator_policy: true, .. } => Self::OperatorPolicy,
            StatusArgs { metrics: true, since, .. } => {
                // CloudWatch's periods are whole minutes, and the window is one period.
                if *since < Duration::from_secs(60) {
                    anyhow::bail!(
                        "--since {} is under a minute\nhint: the window is whole minutes: pass --since 1m or more",
                        humantime::format_duration(*since)
                    );
                }
                Self::Metrics { since: *since }
            }
            StatusArgs { show_api_key, .. } => Self::Stack { show_api_key: *show_api_key },
        })
    }

    /// What the mode reads. The caller policy and the metrics need only the names, the
    /// front and the table; the operator policy takes the alarms' topic and the domain as
    /// deployed, so it reads the whole stack, as the report does.
    fn reach(&self) -> Reach {
        match self {
            Self::Stack { .. } | Self::OperatorPolicy => Reach::Whole,
            Self::CallerPolicy | Self::Metrics { .. } => Reach::Callers,
        }
    }
}

/// Each resource of the stack against the options: `--output json`, or text.
#[derive(Serialize)]
struct StatusReport {
    /// Nothing install would change: no drift (not that the service answers).
    up_to_date: bool,
    /// `up_to_date` under its first name, kept for scripts that read it.
    healthy: bool,
    resources: Vec<Change>,
    advisories: Vec<String>,
    url: Option<String>,
    /// `https://NAME` of the custom domain.
    custom_url: Option<String>,
    /// The deployed function's CodeSha256, and the one install would deploy.
    deployed_code_sha256: Option<String>,
    bundled_code_sha256: String,
    /// The alias the fronts invoke; `None` when the function has none yet.
    alias: Option<AliasShown>,
    /// The CloudFormation stack that made the stack's resources: install, uninstall and
    /// rollback leave it to CloudFormation.
    #[serde(skip_serializing_if = "Option::is_none")]
    cloudformation_stack: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
    /// Each deployed alarm's state now: `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    alarms: Vec<AlarmStateShown>,
    /// The email subscriptions of the stack's own alarm topic.
    alarm_subscriptions: Vec<SubscriptionShown>,
    /// The stack's table is gone, and its counters with it: what was lost and the way
    /// forward (never a plain install).
    #[serde(skip_serializing_if = "Option::is_none")]
    table_lost: Option<String>,
    /// `--show-api-key` was given: a stack without a key says so.
    #[serde(skip)]
    show_api_key: bool,
    /// The auth the stack uses.
    #[serde(skip)]
    auth: Auth,
    /// The install that fixes what differs: the options given to status, without its own.
    #[serde(skip)]
    fix: String,
}

/// The alias, the version it runs and the one before it.
#[derive(Serialize)]
struct AliasShown {
    name: &'static str,
    version: u64,
    /// Where a plain `rollback` goes.
    previous: Option<u64>,
    /// What the alias runs is what install would deploy; `false` after a rollback, or
    /// when this counterctl carries other code or the options another configuration.
    current: bool,
    /// The counterctl release that published the alias's version, if it says.
    published_by: Option<String>,
    /// This counterctl carries other code than the alias's version runs, and is a later
    /// release than the one that published it (`null`: other code, and no release to
    /// compare, or none of these).
    newer_code: Option<bool>,
}

#[derive(Serialize)]
struct SubscriptionShown {
    email: String,
    /// Its confirmation link has not been opened: it gets nothing yet.
    pending: bool,
}

#[derive(Serialize)]
struct AlarmStateShown {
    name: String,
    state: String,
    reason: String,
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = Vec::new();
        // Each alarm's row with its state now.
        for change in &self.resources {
            let state =
                self.alarms.iter().find(|alarm| change.resource == Resource::Alarm && alarm.name == change.name);
            lines.push(match state {
                Some(alarm) => format!("{}, {}", Wording::Status.line(change), alarm.state),
                None => Wording::Status.line(change),
            });
        }
        lines.extend(self.advisories.iter().map(|advisory| format!("advisory: {advisory}")));
        let bundled = &self.bundled_code_sha256;
        let deployed = self.deployed_code_sha256.as_deref().unwrap_or("none");
        let comparison =
            if deployed == bundled { "same as bundled".to_owned() } else { format!("bundled is {bundled}") };
        lines.push(format!("code        deployed {deployed} ({comparison})"));
        if let Some(alias) = &self.alias {
            let previous = alias.previous.map_or_else(|| "none".to_owned(), |number| format!("version {number}"));
            lines.push(format!("alias       {} runs version {} (before it: {previous})", alias.name, alias.version));
            if !alias.current {
                let why = match alias.newer_code {
                    Some(true) => "this counterctl carries newer code",
                    Some(false) => "a rollback, or other options",
                    None => "this counterctl carries other code, or the options differ",
                };
                lines.push(format!(
                    "note: alias {} runs another version than install would deploy ({why}); `{}` brings it forward",
                    alias.name, self.fix
                ));
            }
        }
        if let Some(owner) = &self.cloudformation_stack {
            lines.push(format!(
                "note: CloudFormation stack {owner} made this stack's resources: install, uninstall and rollback \
                 leave it to CloudFormation"
            ));
        }
        lines.push(match &self.url {
            Some(url) => format!("url         {url}"),
            None => "url         none (no API)".to_owned(),
        });
        if let Some(custom) = &self.custom_url {
            lines.push(format!("custom url  {custom}"));
        }
        match (&self.api_key, self.show_api_key) {
            (Some(key), _) => lines.push(format!("api key     {key}")),
            (None, true) => {
                lines.push(format!("api key     none (--auth {}: callers send no key)", self.auth.name()));
            }
            (None, false) => {}
        }
        // Not drift, so the exit code does not change; but what a person must see.
        for alarm in self.alarms.iter().filter(|alarm| alarm.state == "ALARM") {
            lines.push(format!("!! ALARM   {} is in ALARM: {}", alarm.name, alarm.reason));
        }
        for subscription in self.alarm_subscriptions.iter().filter(|subscription| subscription.pending) {
            lines.push(format!(
                "note: alarms do not reach {} yet: open the confirmation link AWS mailed to it ({})",
                subscription.email,
                crate::resources::topic::LAPSES
            ));
        }
        lines.push(match (&self.table_lost, &self.cloudformation_stack) {
            (Some(lost), _) => lost.clone(),
            (None, _) if self.up_to_date => "Everything is installed as configured.".to_owned(),
            (None, Some(owner)) => {
                format!("What differs is CloudFormation stack {owner}'s to change, in its template.")
            }
            (None, None) => format!("Run `{}` to fix what is missing or differs.", self.fix),
        });
        f.write_str(&lines.join("\n"))
    }
}

/// A stack that is not installed, whose uninstall kept its table: the install that picks
/// its counters up again.
#[derive(Serialize)]
struct NotInstalled {
    installed: bool,
    up_to_date: bool,
    stack: String,
    kept_table: String,
    install: String,
}

impl fmt::Display for NotInstalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { stack, kept_table, install, .. } = self;
        write!(
            f,
            "Stack {stack} is not installed; its counters are in table {kept_table}, kept by its uninstall.\n\
             Run `{install}` to install it again on them."
        )
    }
}

pub(crate) async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mode = Mode::of(&args)?;
    let (given, connection) = crate::install::given_regions(&args.regions, &args.aws, &args.deploy)?;
    let clients = Clients::connect(&connection).await?;
    // A table that is gone is planned as install --recreate-table would, so the rest of
    // the stack is still reported; the loss is reported instead of a fix.
    let planning = Planning { regions: given.as_ref(), ..planning(mode.reach()) };
    let (deployed, plan) = match read_and_plan(&clients, &args.stack, &args.deploy, planning).await {
        Ok(read) => read,
        // Not drift to fix in place but a stack to install again: a negative answer.
        Err(error) => match error.downcast_ref::<Refusal>() {
            Some(Refusal::KeptTable { stack, tables }) if !tables.contains(", ") => {
                let stack_options = StackOptions { table: None, ..args.stack.clone() };
                let install = suggested("install", [args.aws.words(), stack_options.words()].concat());
                let not_installed = NotInstalled {
                    installed: false,
                    up_to_date: false,
                    stack: stack.clone(),
                    kept_table: tables.clone(),
                    install: format!("{install} --table {tables}"),
                };
                report(args.output.output == OutputFormat::Json, &not_installed)?;
                return Ok(ExitCode::FAILURE);
            }
            _ => return Err(error),
        },
    };
    let json = args.output.output == OutputFormat::Json;
    if let Some(regions) = plan.regions.clone().filter(|regions| !regions.others.is_empty()) {
        return in_every_region(&args, mode, (clients, deployed, plan), &regions).await;
    }
    match mode {
        Mode::Stack { show_api_key } => {
            let status = stack_report(&clients, &deployed, &plan, show_api_key, install_command(&args)).await?;
            report(json, &status)?;
            Ok(if status.up_to_date { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Mode::CallerPolicy => {
            out(serde_json::to_string_pretty(&caller_policy(&plan)?)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Mode::OperatorPolicy => {
            out(serde_json::to_string_pretty(&crate::operator_policy::policy(&plan))?)?;
            Ok(ExitCode::SUCCESS)
        }
        Mode::Metrics { since } => {
            report(json, &metrics(&clients, &plan, since).await?)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `status` of a stack in several regions: `read` is the asking region's, the others are
/// read here through the table's replicas. Drift in any region is drift.
async fn in_every_region(
    args: &StatusArgs,
    mode: Mode,
    read: (Clients, Deployed, Plan),
    regions: &Regions,
) -> anyhow::Result<ExitCode> {
    let json = args.output.output == OutputFormat::Json;
    // Every region read for the asking region's table, as install plans them.
    let stack = StackOptions { table: Some(read.2.stack.table.clone()), ..args.stack.clone() };
    let mut reads = vec![read];
    for region in &regions.others {
        let clients = reads[0].0.in_region(region);
        let planning = Planning { regions: Some(regions), ..planning(mode.reach()) };
        let (deployed, plan) = read_and_plan(&clients, &stack, &args.deploy, planning)
            .await
            .with_context(|| format!("reading the stack in {region}"))?;
        reads.push((clients, deployed, plan));
    }
    let table = reads[0].2.stack.table.clone();
    match mode {
        Mode::Stack { show_api_key } => {
            let mut reports = Vec::new();
            for (clients, deployed, plan) in &reads {
                let report = stack_report(clients, deployed, plan, show_api_key, install_command(args)).await?;
                reports.push(InRegion { region: plan.account.region.clone(), report });
            }
            let up_to_date = reports.iter().all(|region| region.report.up_to_date);
            report(json, &PerRegion { up_to_date: Some(up_to_date), ..PerRegion::new(&table, regions, reports) })?;
            Ok(if up_to_date { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Mode::CallerPolicy => {
            let policies = reads.iter().map(|(_, _, plan)| caller_policy(plan)).collect::<anyhow::Result<Vec<_>>>()?;
            out(serde_json::to_string_pretty(&crate::stack::merged_policy(&policies))?)?;
            Ok(ExitCode::SUCCESS)
        }
        Mode::OperatorPolicy => {
            let policies: Vec<_> = reads.iter().map(|(_, _, plan)| crate::operator_policy::policy(plan)).collect();
            out(serde_json::to_string_pretty(&crate::stack::merged_policy(&policies))?)?;
            Ok(ExitCode::SUCCESS)
        }
        Mode::Metrics { since } => {
            let mut reports = Vec::new();
            for (clients, _, plan) in &reads {
                let report = metrics(clients, plan, since).await?;
                reports.push(InRegion { region: plan.account.region.clone(), report });
            }
            report(json, &PerRegion::new(&table, regions, reports))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What status reads and plans: the stack as install would leave it, a lost table
/// included.
fn planning(reach: Reach) -> Planning<'static> {
    Planning {
        switch_table: false,
        recreate_table: true,
        reach,
        regions: None,
        api_key_value: None,
        refuse_cloudformation: false,
    }
}

/// `--caller-policy`: a policy document, JSON whatever the output format.
fn caller_policy(plan: &Plan) -> anyhow::Result<serde_json::Value> {
    let policy = match (&plan.front, plan.api_id()) {
        (FrontPlan::FunctionUrl(url), _) if url.deployed.is_some() => {
            crate::stack::function_url_caller_policy(&plan.stack, &plan.account)
        }
        (FrontPlan::Rest(_), Some(api_id)) => crate::stack::caller_policy(&plan.stack, &plan.account, api_id),
        _ => anyhow::bail!("stack {} has nothing to call yet\nhint: run `counterctl install` first", plan.stack.name),
    };
    if plan.wanted.auth != Auth::Iam {
        eprintln!("note: stack {} does not use --auth iam; this policy takes effect once it does", plan.stack.name);
    }
    Ok(policy)
}

/// `--metrics`: the figures of the stack's function, front and table over `since`.
async fn metrics(clients: &Clients, plan: &Plan, since: Duration) -> anyhow::Result<crate::metrics::Metrics> {
    let front = match &plan.front {
        FrontPlan::FunctionUrl(url) if url.deployed.is_some() => Front::FunctionUrl,
        FrontPlan::Rest(_) if plan.api_id().is_some() => {
            Front::Rest { api: plan.stack.name.clone(), stage: plan.stack.stage.clone() }
        }
        _ => Front::None,
    };
    let subject = Subject { function: plan.stack.name.clone(), table: plan.stack.table.clone(), front };
    crate::metrics::read(&clients.cloudwatch, &subject, since).await
}

/// The install that fixes what status (run with `args`) reports: the options it was
/// given, without its own. A setting not given is compared as deployed, so these are
/// exactly the ones that make the difference.
fn install_command(args: &StatusArgs) -> String {
    suggested("install", [args.aws.words(), args.stack.words(), args.deploy.words(), args.regions.words()].concat())
}

/// The stack against the options, with what only status shows: the code's hashes, the
/// alarms' states, pending subscriptions, and the key when asked for.
async fn stack_report(
    clients: &Clients,
    deployed: &Deployed,
    plan: &Plan,
    show_api_key: bool,
    fix: String,
) -> anyhow::Result<StatusReport> {
    let api_key = match (plan.key(), show_api_key) {
        (Some(key), true) => api_key::key_value(&clients.apigateway, &key.id).await.context("reading the API key")?,
        _ => None,
    };
    let alarms = deployed
        .alarms
        .iter()
        .map(|alarm| AlarmStateShown {
            name: alarm.spec.name.clone(),
            state: alarm.state.clone(),
            reason: alarm.reason.clone(),
        })
        .collect();
    let alarm_subscriptions = deployed
        .topic
        .iter()
        .flat_map(|topic| &topic.subscriptions)
        .map(|subscription| SubscriptionShown { email: subscription.email.clone(), pending: subscription.pending() })
        .collect();
    Ok(StatusReport {
        up_to_date: plan.up_to_date(),
        healthy: plan.up_to_date(),
        resources: plan.changes(),
        advisories: plan.advisories.clone(),
        url: plan.deployed_url(),
        custom_url: plan.domain.deployed_url(),
        deployed_code_sha256: deployed.function.as_ref().map(|function| function.code_sha256.clone()),
        bundled_code_sha256: plan.wanted.function.code.sha256.clone(),
        alias: alias_shown(deployed, plan),
        cloudformation_stack: deployed.cloudformation(&plan.stack.name).map(|owned| owned.stack),
        api_key,
        alarms,
        alarm_subscriptions,
        table_lost: plan.table_lost.then(|| {
            Refusal::TableLost { stack: plan.stack.name.clone(), table: plan.stack.table.clone() }.to_string()
        }),
        show_api_key,
        auth: plan.wanted.auth,
        fix,
    })
}

/// The alias as deployed, against what install would make it.
fn alias_shown(deployed: &Deployed, plan: &Plan) -> Option<AliasShown> {
    let versions = &deployed.function.as_ref()?.versions;
    let version = versions.alias?;
    let runs = versions.aliased();
    Some(AliasShown {
        name: crate::resources::alias::ALIAS,
        version,
        previous: versions.before(version).map(|before| before.number),
        current: !plan.function.alias.moves(),
        published_by: runs.and_then(|runs| runs.published_by.clone()),
        newer_code: match runs {
            Some(runs) if runs.snapshot.code_sha256 == plan.wanted.function.code.sha256 => Some(false),
            Some(runs) => runs.published_by.as_deref().and_then(crate::resources::alias::older_than_this),
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, parse_as_typed};

    fn command(args: &[&str]) -> String {
        let Command::Status(args) = parse_as_typed(args).command else { panic!("status") };
        install_command(&args)
    }

    #[test]
    fn the_fix_repeats_the_options_given_to_status_without_its_own() {
        assert_eq!(command(&["status", "--memory", "256"]), "counterctl install --memory 256");
        assert_eq!(
            command(&[
                "status",
                "--output",
                "json",
                "--region",
                "eu-west-1",
                "--metrics",
                "--since=1h",
                "--timeout=30",
                "--show-api-key"
            ]),
            "counterctl install --region eu-west-1 --timeout 30"
        );
        assert_eq!(command(&["status"]), "counterctl install");
        assert_eq!(
            command(&["status", "--function-zip", "it's.zip"]),
            "counterctl install --function-zip 'it'\\''s.zip'"
        );
    }
}
