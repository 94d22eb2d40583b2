//! `counterctl status`: install's plan, read-only, worded as present / missing /
//! differs; exits 1 when anything is missing or differs. Options not given are compared
//! as deployed, exactly as install would keep them.

use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::aws::Clients;
use crate::change::{Change, Refusal, Resource};
use crate::cli::{Auth, OutputFormat, StatusArgs};
use crate::install::read_and_plan;
use crate::metrics::{Front, Subject};
use crate::plan::FrontPlan;
use crate::progress::{WHERE, Wording, out, suggested};
use crate::resources::api_key;

#[derive(Serialize)]
struct StatusResult<'a> {
    healthy: bool,
    resources: Vec<Change>,
    advisories: &'a [String],
    url: Option<String>,
    /// `https://NAME` of the custom domain.
    custom_url: Option<String>,
    /// The deployed function's CodeSha256, and the one install would deploy.
    deployed_code_sha256: Option<String>,
    bundled_code_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
    /// Each deployed alarm's state now: `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    alarms: Vec<AlarmStateShown<'a>>,
    /// The email subscriptions of the stack's own alarm topic.
    alarm_subscriptions: Vec<SubscriptionShown<'a>>,
    /// The stack's table is gone, and its counters with it: what was lost and the way
    /// forward (never a plain install).
    #[serde(skip_serializing_if = "Option::is_none")]
    table_lost: Option<String>,
}

#[derive(Serialize)]
struct SubscriptionShown<'a> {
    email: &'a str,
    /// Its confirmation link has not been opened: it gets nothing yet.
    pending: bool,
}

#[derive(Serialize)]
struct AlarmStateShown<'a> {
    name: &'a str,
    state: &'a str,
    reason: &'a str,
}

pub(crate) async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let clients = Clients::connect(&args.aws).await?;
    // A table that is gone is planned as install --recreate-table would, so the rest of
    // the stack is still reported; the loss is reported instead of a fix.
    let (deployed, plan) = match read_and_plan(&clients, &args.stack, &args.deploy, (false, true)).await {
        Ok(read) => read,
        // Not drift to fix in place but a stack to install again: a negative answer.
        Err(error) => match error.downcast_ref::<Refusal>() {
            Some(Refusal::KeptTable { stack, tables }) if !tables.contains(", ") => {
                let install =
                    suggested("install", std::env::args().skip(2), |flag| WHERE.contains(&flag) && flag != "--table");
                out(format!(
                    "Stack {stack} is not installed; its counters are in table {tables}, kept by its uninstall.\n\
                     Run `{install} --table {tables}` to install it again on them."
                ))?;
                return Ok(ExitCode::FAILURE);
            }
            _ => return Err(error),
        },
    };
    if args.caller_policy {
        let policy = match (&plan.front, plan.api_id()) {
            (FrontPlan::FunctionUrl(url), _) if url.deployed.is_some() => {
                crate::stack::function_url_caller_policy(&plan.stack, &plan.account)
            }
            (FrontPlan::Rest(_), Some(api_id)) => crate::stack::caller_policy(&plan.stack, &plan.account, api_id),
            _ => {
                anyhow::bail!("stack {} has nothing to call yet\nhint: run `counterctl install` first", plan.stack.name)
            }
        };
        if plan.wanted.auth != Auth::Iam {
            eprintln!("note: stack {} does not use --auth iam; this policy takes effect once it does", plan.stack.name);
        }
        out(serde_json::to_string_pretty(&policy)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.operator_policy {
        out(serde_json::to_string_pretty(&crate::operator_policy::policy(&plan))?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.metrics {
        // CloudWatch's periods are whole minutes, and the window is one period.
        if args.since < std::time::Duration::from_secs(60) {
            anyhow::bail!(
                "--since {} is under a minute\nhint: the window is whole minutes: pass --since 1m or more",
                humantime::format_duration(args.since)
            );
        }
        let front = match &plan.front {
            FrontPlan::FunctionUrl(url) if url.deployed.is_some() => Front::FunctionUrl,
            FrontPlan::Rest(_) if plan.api_id().is_some() => {
                Front::Rest { api: plan.stack.name.clone(), stage: plan.stack.stage.clone() }
            }
            _ => Front::None,
        };
        let subject = Subject { function: plan.stack.name.clone(), table: plan.stack.table.clone(), front };
        crate::metrics::print(&clients.cloudwatch, &subject, args.since, args.output.output).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let healthy = plan.up_to_date();
    let table_lost = plan
        .table_lost
        .then(|| Refusal::TableLost { stack: plan.stack.name.clone(), table: plan.stack.table.clone() }.to_string());
    let deployed_code_sha256 = deployed.function.as_ref().map(|function| function.code_sha256.clone());
    let bundled_code_sha256 = plan.wanted.function.code.sha256.clone();
    let url = plan.deployed_url();
    let api_key = match (plan.key(), args.show_api_key) {
        (Some(key), true) => api_key::key_value(&clients.apigateway, &key.id).await.context("reading the API key")?,
        _ => None,
    };
    let alarms: Vec<AlarmStateShown<'_>> = deployed
        .alarms
        .iter()
        .map(|alarm| AlarmStateShown { name: &alarm.spec.name, state: &alarm.state, reason: &alarm.reason })
        .collect();
    let subscriptions: Vec<SubscriptionShown<'_>> = deployed
        .topic
        .iter()
        .flat_map(|topic| &topic.subscriptions)
        .map(|subscription| SubscriptionShown { email: &subscription.email, pending: subscription.pending() })
        .collect();
    if args.output.output == OutputFormat::Json {
        let result = StatusResult {
            healthy,
            resources: plan.changes(),
            advisories: &plan.advisories,
            url,
            custom_url: plan.domain.deployed_url(),
            deployed_code_sha256,
            bundled_code_sha256,
            api_key,
            alarms,
            alarm_subscriptions: subscriptions,
            table_lost,
        };
        out(serde_json::to_string_pretty(&result)?)?;
    } else {
        // Each alarm's row with its state now.
        for change in &plan.changes() {
            let state = alarms.iter().find(|alarm| change.resource == Resource::Alarm && alarm.name == change.name);
            match state {
                Some(alarm) => out(format!("{}, {}", Wording::Status.line(change), alarm.state))?,
                None => out(Wording::Status.line(change))?,
            }
        }
        for advisory in &plan.advisories {
            out(format!("advisory: {advisory}"))?;
        }
        let deployed = deployed_code_sha256.as_deref().unwrap_or("none");
        let comparison = if deployed == bundled_code_sha256 {
            "same as bundled".to_owned()
        } else {
            format!("bundled is {bundled_code_sha256}")
        };
        out(format!("code        deployed {deployed} ({comparison})"))?;
        match url {
            Some(url) => out(format!("url         {url}"))?,
            None => out("url         none (no API)")?,
        }
        if let Some(custom) = plan.domain.deployed_url() {
            out(format!("custom url  {custom}"))?;
        }
        match (api_key, args.show_api_key) {
            (Some(key), _) => out(format!("api key     {key}"))?,
            (None, true) => out(format!("api key     none (--auth {}: callers send no key)", plan.wanted.auth.name()))?,
            (None, false) => {}
        }
        // Not drift, so the exit code does not change; but what a person must see.
        for alarm in alarms.iter().filter(|alarm| alarm.state == "ALARM") {
            out(format!("!! ALARM   {} is in ALARM: {}", alarm.name, alarm.reason))?;
        }
        for subscription in subscriptions.iter().filter(|subscription| subscription.pending) {
            out(format!(
                "note: alarms do not reach {} yet: open the confirmation link AWS mailed to it ({})",
                subscription.email,
                crate::resources::topic::LAPSES
            ))?;
        }
        if let Some(lost) = table_lost {
            out(lost)?;
        } else if healthy {
            out("Everything is installed as configured.")?;
        } else {
            let install = install_command(std::env::args().skip(1));
            out(format!("Run `{install}` to fix what is missing or differs."))?;
        }
    }
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Status's own options, which install does not take.
const STATUS_ONLY: [&str; 6] =
    ["--show-api-key", "--caller-policy", "--operator-policy", "--metrics", "--since", "--output"];

/// The install that fixes what status (run with `args`, the subcommand first) reports:
/// the options it was given, as typed, without its own. A setting not given is compared
/// as deployed, so these are exactly the ones that make the difference.
fn install_command(args: impl Iterator<Item = String>) -> String {
    suggested("install", args.skip(1), |flag| !STATUS_ONLY.contains(&flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(args: &[&str]) -> String {
        install_command(args.iter().map(|arg| (*arg).to_owned()))
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
                "--since=1h",
                "--timeout=30",
                "--show-api-key"
            ]),
            "counterctl install --region eu-west-1 --timeout=30"
        );
        assert_eq!(command(&["status"]), "counterctl install");
        assert_eq!(command(&["status", "--name", "it's"]), "counterctl install --name 'it'\\''s'");
    }
}
