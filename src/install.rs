//! `counterctl install`: read what is deployed, plan, confirm what breaks callers, apply,
//! report. `--dry-run` stops after printing the plan.

use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::apply::apply;
use crate::aws::Clients;
use crate::bundle::Codes;
use crate::change::Change;
use crate::cli::{Auth, Front, InstallArgs, OutputFormat};
use crate::deployed::{self, Deployed, Target};
use crate::plan::{self, Plan, Request};
use crate::progress::{Progress, WHERE, Wording, ask, out, suggested};
use crate::resources::api_key;

#[derive(Serialize)]
struct InstallResult<'a> {
    dry_run: bool,
    up_to_date: bool,
    changes: Vec<Change>,
    advisories: &'a [String],
    url: Option<String>,
    auth: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
    curl: Option<String>,
    /// `https://NAME` of the custom domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_url: Option<String>,
    /// The record the custom domain needs, when install does not keep it: `{name, type,
    /// value, alias_hosted_zone_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_record: Option<serde_json::Value>,
    /// The address AWS mailed a confirmation link to in this run (`--alarm-email`).
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmation_mailed_to: Option<&'a str>,
}

/// Reads the stack and plans `args` over it; shared with `status`.
pub(crate) async fn read_and_plan(
    clients: &Clients,
    stack: &crate::cli::StackOptions,
    deploy: &crate::cli::DeployOptions,
    (switch_table, recreate_table): (bool, bool),
) -> anyhow::Result<(Deployed, Plan)> {
    let codes = Codes::load(deploy.function_zip.as_deref())?;
    let domain = match &deploy.domain {
        Some(crate::cli::DomainOption::Name(name)) => Some(name.as_str()),
        _ => None,
    };
    let target = Target {
        name: &stack.name,
        table: stack.table.as_deref(),
        compare_counters: switch_table,
        domain,
        certificate: deploy.certificate_arn.as_deref(),
        zone: deploy.hosted_zone_id.as_deref(),
    };
    let deployed = deployed::read(clients, &target).await?;
    let code = |architecture| codes.code(architecture);
    let request = Request {
        name: &stack.name,
        table: stack.table.as_deref(),
        stage: stack.stage.as_deref(),
        switch_table,
        recreate_table,
        options: deploy,
        code: &code,
    };
    let plan = plan::install(&request, &deployed)?;
    Ok((deployed, plan))
}

pub(crate) async fn run(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let clients = Clients::connect(&args.aws).await?;
    let json = args.output.output == OutputFormat::Json;
    let (_, plan) =
        read_and_plan(&clients, &args.stack, &args.deploy, (args.switch_table, args.recreate_table)).await?;
    let throttled = args.deploy.rate_limit.is_some() || args.deploy.burst_limit.is_some();
    if plan.front() == Front::FunctionUrl && throttled {
        eprintln!(
            "warning: a function URL has no throttle: --rate-limit and --burst-limit do nothing there; cap it with --max-concurrency"
        );
    }
    if plan.wanted.auth == Auth::None {
        eprintln!("warning: --auth none: anyone who finds the URL can call it and burn IDs");
    }
    let auth = plan.wanted.auth.name();
    if args.dry_run {
        let url = plan.deployed_url();
        if json {
            let curl = url.as_deref().map(|url| curl_command(url, &plan, None));
            let result = InstallResult {
                dry_run: true,
                up_to_date: plan.up_to_date(),
                changes: plan.changes(),
                advisories: &plan.advisories,
                url,
                auth,
                api_key: None,
                curl,
                custom_url: plan.domain.deployed_url(),
                dns_record: None,
                confirmation_mailed_to: None,
            };
            out(serde_json::to_string_pretty(&result)?)?;
            return Ok(ExitCode::SUCCESS);
        }
        print_plan(&plan, Wording::Plan)?;
        if plan.front_moves {
            out("The new front's URL is known once install makes it; callers of the old URL must move to it.")?;
        }
        let planned = plan.changes().iter().filter(|change| change.changes()).count();
        match planned {
            0 => out("Dry run: everything is up to date.")?,
            _ => out(format!("Dry run: {planned} change(s) planned; nothing was changed."))?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    let breaking = plan.breaking();
    if !breaking.is_empty() && !args.yes {
        confirm(&plan, &breaking)?;
    }

    let applied = apply(&clients, &plan, &Progress::new(json)).await?;
    let url = applied.url.trim_end_matches('/').to_owned();
    let api_key = match (&applied.key_id, args.show_api_key) {
        (Some(key_id), true) => api_key::key_value(&clients.apigateway, key_id).await.context("reading the API key")?,
        _ => None,
    };
    let curl = curl_command(&url, &plan, api_key.as_deref());
    let record_to_make = plan.wanted.domain.as_ref().is_some_and(|wanted| wanted.zone.is_none());
    let dns_record = applied.domain.as_ref().filter(|_| record_to_make).map(|(name, regional, zone)| {
        serde_json::json!({"name": name, "type": "CNAME", "value": regional, "alias_hosted_zone_id": zone})
    });
    if json {
        let result = InstallResult {
            dry_run: false,
            up_to_date: plan.up_to_date(),
            changes: plan.changes(),
            advisories: &plan.advisories,
            url: Some(url),
            auth,
            api_key,
            curl: Some(curl),
            custom_url: applied.domain.as_ref().map(|(name, _, _)| format!("https://{name}")),
            dns_record,
            confirmation_mailed_to: plan.topic.subscribes(),
        };
        out(serde_json::to_string_pretty(&result)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for advisory in &plan.advisories {
        out(format!("advisory: {advisory}"))?;
    }
    out(if plan.up_to_date() { "Everything is up to date." } else { "Installed." })?;
    if let Some(email) = plan.topic.subscribes() {
        out(format!(
            "AWS mailed a confirmation link to {email}: alarms reach it once the link is opened ({}).",
            crate::resources::topic::LAPSES
        ))?;
    }
    out(format!("\nInvoke URL: {url}\nTry it:\n  {curl}"))?;
    if let Some((name, regional, zone)) = &applied.domain {
        out(format!("Custom domain: https://{name}"))?;
        if record_to_make {
            out(format!(
                "DNS: point {name} at {regional}: a CNAME record, or in Route 53 an alias A record to it \
                 (its hosted zone {zone}); with --hosted-zone-id ZONE install keeps that record itself."
            ))?;
        }
    }
    if plan.wanted.auth == Auth::ApiKey && api_key.is_none() {
        let status = suggested("status", std::env::args().skip(2), |flag| WHERE.contains(&flag));
        out(format!(
            "The API key is not shown; print it with `{status} --show-api-key` (or `install --show-api-key`),\n\
             or let `counterctl increment NAME` fetch it; `export COUNTERCTL_API_KEY=…` for the curl above."
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints each change of the plan, then its advisories.
fn print_plan(plan: &Plan, wording: Wording) -> std::io::Result<()> {
    for change in &plan.changes() {
        out(wording.line(change))?;
    }
    for advisory in &plan.advisories {
        out(format!("advisory: {advisory}"))?;
    }
    Ok(())
}

/// Asks before changes that break callers; refuses when there is no terminal to ask on.
fn confirm(plan: &Plan, breaking: &[Change]) -> anyhow::Result<()> {
    let lines: Vec<String> = breaking.iter().map(|change| format!("  {}", Wording::Plan.line(change))).collect();
    let mut what = format!("These changes break existing callers of stack {}:\n{}", plan.stack.name, lines.join("\n"));
    if plan.table_lost {
        what.push_str(&format!(
            "\nTable {} is gone: the new one is empty, and every counter starts again at 1 (IDs already issued)",
            plan.stack.table
        ));
    }
    let refusal =
        format!("{what}\nrefusing without confirmation, and there is no terminal to ask on\nhint: pass --yes");
    let answer = ask(&refusal, || {
        print_plan(plan, Wording::Plan)?;
        Ok(format!("{what}\nApply them? [y/N]"))
    })?;
    if !matches!(answer.as_str(), "y" | "Y" | "yes") {
        anyhow::bail!("cancelled; nothing was changed");
    }
    Ok(())
}

/// A ready-to-paste increment call.
fn curl_command(url: &str, plan: &Plan, api_key: Option<&str>) -> String {
    let (region, service) = (&plan.account.region, plan.signing_service());
    let header = match (plan.wanted.auth, api_key) {
        (Auth::ApiKey, Some(key)) => format!(" -H 'x-api-key: {key}'"),
        (Auth::ApiKey, None) => " -H \"x-api-key: $COUNTERCTL_API_KEY\"".to_owned(),
        // Temporary credentials also need -H "x-amz-security-token: $AWS_SESSION_TOKEN".
        (Auth::Iam, _) => {
            format!(" --aws-sigv4 'aws:amz:{region}:{service}' --user \"$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY\"")
        }
        (Auth::None, _) => String::new(),
    };
    format!("curl -X POST{header} '{url}/counter/increment?counter=mycounter'")
}
