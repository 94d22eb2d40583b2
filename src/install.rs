//! `counterctl install`: read what is deployed, plan, confirm what breaks callers, apply,
//! report. `--dry-run` stops after printing the plan.

use std::fmt;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::apply::{Applied, apply};
use crate::aws::{Clients, Connection};
use crate::bundle::Codes;
use crate::change::{Change, Refusal};
use crate::cli::{AwsOptions, DeployOptions, InstallArgs, OutputFormat, RegionsOptions, StackOptions, suggested};
use crate::deployed::{self, Deployed, Lookup, Reach};
use crate::plan::{self, Plan, Request};
use crate::progress::{Progress, Wording, ask, out, report};
use crate::regions::{InRegion, PerRegion, Regions};
use crate::resources::{api_key, table};
use crate::settings::{Auth, DomainOption, Front};

/// What install did, or with `--dry-run` would do: `--output json`, or text.
#[derive(Serialize)]
struct InstallReport {
    dry_run: bool,
    up_to_date: bool,
    changes: Vec<Change>,
    advisories: Vec<String>,
    url: Option<String>,
    auth: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
    curl: Option<String>,
    /// `https://NAME` of the custom domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_url: Option<String>,
    /// The record the custom domain needs, when install does not keep it.
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_record: Option<DnsRecord>,
    /// The address AWS mailed a confirmation link to in this run (`--alarm-email`).
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmation_mailed_to: Option<String>,
    /// Callers move to another front, whose URL a dry run does not know yet.
    #[serde(skip)]
    front_moves: bool,
    /// The status command that shows the API key, when the stack has one and it is not
    /// shown.
    #[serde(skip)]
    key_hidden: Option<String>,
}

/// The DNS record of `--domain` to make by hand (its fields in the order JSON has them).
#[derive(Serialize)]
struct DnsRecord {
    alias_hosted_zone_id: String,
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    value: String,
}

impl fmt::Display for InstallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = Vec::new();
        if self.dry_run {
            lines.extend(self.changes.iter().map(|change| Wording::Plan.line(change)));
        }
        lines.extend(self.advisories.iter().map(|advisory| format!("advisory: {advisory}")));
        if self.dry_run {
            if self.front_moves {
                lines.push(
                    "The new front's URL is known once install makes it; callers of the old URL must move to it."
                        .to_owned(),
                );
            }
            lines.push(match self.changes.iter().filter(|change| change.changes()).count() {
                0 => "Dry run: everything is up to date.".to_owned(),
                planned => format!("Dry run: {planned} change(s) planned; nothing was changed."),
            });
            return f.write_str(&lines.join("\n"));
        }
        lines.push(if self.up_to_date { "Everything is up to date." } else { "Installed." }.to_owned());
        if let Some(email) = &self.confirmation_mailed_to {
            lines.push(format!(
                "AWS mailed a confirmation link to {email}: alarms reach it once the link is opened ({}).",
                crate::resources::topic::LAPSES
            ));
        }
        let (url, curl) = (self.url.as_deref().unwrap_or_default(), self.curl.as_deref().unwrap_or_default());
        lines.push(format!("\nInvoke URL: {url}\nTry it:\n  {curl}"));
        if let Some(custom_url) = &self.custom_url {
            lines.push(format!("Custom domain: {custom_url}"));
        }
        if let Some(DnsRecord { alias_hosted_zone_id: zone, name, value: regional, .. }) = &self.dns_record {
            lines.push(format!(
                "DNS: point {name} at {regional}: a CNAME record, or in Route 53 an alias A record to it \
                 (its hosted zone {zone}); with --hosted-zone-id ZONE install keeps that record itself."
            ));
        }
        if let Some(status) = &self.key_hidden {
            lines.push(format!(
                "The API key is not shown; print it with `{status} --show-api-key` (or `install --show-api-key`),\n\
                 or let `counterctl increment NAME` fetch it; `export COUNTERCTL_API_KEY=…` for the curl above."
            ));
        }
        f.write_str(&lines.join("\n"))
    }
}

/// What `read_and_plan` reads and plans, besides the options.
#[derive(Clone, Copy)]
pub(crate) struct Planning<'a> {
    /// `--switch-table`, `--recreate-table`.
    pub(crate) switch_table: bool,
    pub(crate) recreate_table: bool,
    pub(crate) reach: Reach,
    /// The stack's regions, when asked for (`--regions`) or known from another region.
    pub(crate) regions: Option<&'a Regions>,
    /// The API key's value in the stack's other regions.
    pub(crate) api_key_value: Option<&'a str>,
    /// Refuse a stack CloudFormation made (install), rather than read it (status).
    pub(crate) refuse_cloudformation: bool,
}

/// Reads the stack and plans `args` over it; shared with `status`.
pub(crate) async fn read_and_plan(
    clients: &Clients,
    stack: &StackOptions,
    deploy: &DeployOptions,
    planning: Planning<'_>,
) -> anyhow::Result<(Deployed, Plan)> {
    let Planning { switch_table, recreate_table, reach, regions, api_key_value, refuse_cloudformation } = planning;
    let codes = Codes::load(deploy.function_zip.as_deref())?;
    let domain = match &deploy.domain {
        Some(DomainOption::Name(name)) => Some(name.as_str()),
        _ => None,
    };
    let lookup = Lookup {
        name: &stack.name,
        table: stack.table.as_deref(),
        compare_counters: switch_table,
        domain,
        certificate: deploy.certificate_arn.as_deref(),
        zone: deploy.hosted_zone_id.as_deref(),
        reach,
    };
    let mut deployed = deployed::read(clients, &lookup).await?;
    if refuse_cloudformation {
        refuse_if_cloudformation(&deployed, &stack.name, |owner| {
            format!("change it in the template of CloudFormation stack {owner} and update that stack")
        })?;
    }
    // An MRSC table is made from an empty one: whether this one is decides the plan.
    if regions.is_some()
        && let Some(table) = deployed.table.as_mut()
        && table.global.is_none()
    {
        table.holds_items = Some(
            table::holds_items(&clients.dynamodb, &table.name).await.context("reading whether the table is empty")?,
        );
    }
    let code = |architecture| codes.code(architecture);
    let options = deploy.options();
    let request = Request {
        name: &stack.name,
        table: stack.table.as_deref(),
        stage: stack.stage.as_deref(),
        switch_table,
        recreate_table,
        options: &options,
        code: &code,
        regions,
        api_key_value,
    };
    let plan = plan::install(&request, &deployed)?;
    Ok((deployed, plan))
}

/// Refuses, before any write, a stack whose resources a CloudFormation stack made; `hint`
/// says what to do through CloudFormation instead, given that stack's name.
pub(crate) fn refuse_if_cloudformation(
    deployed: &Deployed,
    stack: &str,
    hint: impl FnOnce(&str) -> String,
) -> Result<(), Refusal> {
    match deployed.cloudformation(stack) {
        Some(owned) => Err(Refusal::CloudFormationOwned {
            stack: stack.to_owned(),
            resource: owned.resource.label(),
            name: owned.name,
            hint: hint(&owned.stack),
            cloudformation: owned.stack,
        }),
        None => Ok(()),
    }
}

/// `--regions` and `--witness-region`, checked before any call (`--region`, if given,
/// must be one of them), and the connection, in the home region when they are given.
/// Shared with `status`.
pub(crate) fn given_regions(
    given: &RegionsOptions,
    aws: &AwsOptions,
    deploy: &DeployOptions,
) -> anyhow::Result<(Option<Regions>, Connection)> {
    let mut connection = aws.connection();
    if given.regions.is_empty() {
        return Ok((None, connection));
    }
    let regions = Regions::parse(&given.regions, given.witness_region.as_deref())?;
    if matches!(deploy.domain, Some(DomainOption::Name(_))) {
        return Err(Refusal::DomainWithRegions.into());
    }
    if let Some(region) = &aws.region
        && !regions.replicas().any(|replica| replica == region)
    {
        anyhow::bail!(
            "--region {region} is not one of --regions {}\nhint: leave out --region, or name one of the replica \
             regions (the first of --regions is where the table is made)",
            given.regions.join(",")
        );
    }
    connection.region = Some(regions.home.clone());
    Ok((Some(regions), connection))
}

pub(crate) async fn run(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let (given, connection) = given_regions(&args.regions, &args.aws, &args.deploy)?;
    let clients = Clients::connect(&connection).await?;
    let json = args.output.output == OutputFormat::Json;
    let planning = Planning {
        switch_table: args.switch_table,
        recreate_table: args.recreate_table,
        reach: Reach::Whole,
        regions: given.as_ref(),
        api_key_value: None,
        refuse_cloudformation: true,
    };
    let (_, plan) = read_and_plan(&clients, &args.stack, &args.deploy, planning).await?;
    let throttled = args.deploy.rate_limit.is_some() || args.deploy.burst_limit.is_some();
    if plan.front() == Front::FunctionUrl && throttled {
        eprintln!(
            "warning: a function URL has no throttle: --rate-limit and --burst-limit do nothing there; cap it with --max-concurrency"
        );
    }
    if plan.wanted.auth == Auth::None {
        eprintln!("warning: --auth none: anyone who finds the URL can call it and burn IDs");
    }
    let Some(regions) = plan.regions.clone() else {
        return install_in_one_region(&args, &clients, plan, json).await;
    };
    // The stack in each region: the home region's plan first, made global there; the
    // others read through their replica once it exists, on the home region's table (a
    // function there that records another is refused as a table switch).
    let planning = Planning { regions: Some(&regions), ..planning };
    let table = plan.stack.table.clone();
    let stack = StackOptions { table: Some(table.clone()), ..args.stack.clone() };
    let mut plans = vec![(clients.clone(), plan)];
    for region in &regions.others {
        let clients = clients.in_region(region);
        let (_, plan) =
            read_and_plan(&clients, &stack, &args.deploy, planning).await.with_context(|| reading_in(region))?;
        plans.push((clients, plan));
    }
    let planned = |plans: &[(Clients, Plan)]| -> Vec<InRegion<InstallReport>> {
        plans
            .iter()
            .map(|(_, plan)| InRegion { region: plan.account.region.clone(), report: planned_report(plan) })
            .collect()
    };
    if args.dry_run {
        report(json, &PerRegion::new(&table, &regions, planned(&plans)))?;
        return Ok(ExitCode::SUCCESS);
    }
    let breaking: Vec<(&Plan, Vec<Change>)> =
        plans.iter().map(|(_, plan)| (plan, plan.breaking())).filter(|(_, breaking)| !breaking.is_empty()).collect();
    if !args.yes {
        for (plan, breaking) in &breaking {
            confirm(plan, breaking)?;
        }
    }
    let mut reports = Vec::new();
    let mut api_key_value = None;
    for (index, region) in regions.replicas().enumerate() {
        let replanned;
        let (clients, plan) = if index == 0 {
            (&plans[0].0, &plans[0].1)
        } else {
            // Planned again now that the replica exists, with the home key's value.
            let clients = clients.in_region(region);
            let planning = Planning { api_key_value: api_key_value.as_deref(), ..planning };
            let (_, plan) =
                read_and_plan(&clients, &stack, &args.deploy, planning).await.with_context(|| reading_in(region))?;
            replanned = (clients, plan);
            (&replanned.0, &replanned.1)
        };
        let applied = apply(clients, plan, &Progress::new(json)).await.with_context(|| format!("in {region}"))?;
        if index == 0 {
            // No other region goes on unless the table is the strongly consistent global
            // table of these regions.
            let global =
                table::strong_global(&clients.dynamodb, &table).await.context("reading the table's replicas")?;
            if !global.is_some_and(|global| global.regions().same_table(&regions)) {
                anyhow::bail!(
                    "table {table} is not yet a strongly consistent global table in {regions}; the other regions were \
                     left as they are\nhint: run install again"
                );
            }
        }
        if let (Some(key_id), None) = (&applied.key_id, &api_key_value) {
            api_key_value = api_key::key_value(&clients.apigateway, key_id).await.context("reading the API key")?;
        }
        let report = installed_report(&args, clients, plan, &applied).await?;
        reports.push(InRegion { region: region.to_owned(), report });
    }
    report(json, &PerRegion::new(&table, &regions, reports))?;
    Ok(ExitCode::SUCCESS)
}

fn reading_in(region: &str) -> String {
    format!("reading the stack in {region}")
}

async fn install_in_one_region(
    args: &InstallArgs,
    clients: &Clients,
    plan: Plan,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if args.dry_run {
        report(json, &planned_report(&plan))?;
        return Ok(ExitCode::SUCCESS);
    }
    let breaking = plan.breaking();
    if !breaking.is_empty() && !args.yes {
        confirm(&plan, &breaking)?;
    }
    let applied = apply(clients, &plan, &Progress::new(json)).await?;
    report(json, &installed_report(args, clients, &plan, &applied).await?)?;
    Ok(ExitCode::SUCCESS)
}

/// The plan's report; apply's results complete it.
fn planned_report(plan: &Plan) -> InstallReport {
    InstallReport {
        dry_run: true,
        up_to_date: plan.up_to_date(),
        changes: plan.changes(),
        advisories: plan.advisories.clone(),
        url: plan.deployed_url(),
        auth: plan.wanted.auth.name(),
        api_key: None,
        curl: plan.deployed_url().map(|url| curl_command(&url, plan, None)),
        custom_url: plan.domain.deployed_url(),
        dns_record: None,
        confirmation_mailed_to: None,
        front_moves: plan.front_moves,
        key_hidden: None,
    }
}

async fn installed_report(
    args: &InstallArgs,
    clients: &Clients,
    plan: &Plan,
    applied: &Applied,
) -> anyhow::Result<InstallReport> {
    let url = applied.url.trim_end_matches('/').to_owned();
    let api_key = match (&applied.key_id, args.show_api_key) {
        (Some(key_id), true) => api_key::key_value(&clients.apigateway, key_id).await.context("reading the API key")?,
        _ => None,
    };
    let record_to_make = plan.wanted.domain.as_ref().is_some_and(|wanted| wanted.zone.is_none());
    let dns_record = applied.domain.as_ref().filter(|_| record_to_make).map(|domain| DnsRecord {
        alias_hosted_zone_id: domain.alias.zone_id.clone(),
        name: domain.name.clone(),
        kind: "CNAME",
        value: domain.alias.domain_name.clone(),
    });
    let stack_options = [args.aws.words(), args.stack.words()].concat();
    let key_hidden =
        (plan.wanted.auth == Auth::ApiKey && api_key.is_none()).then(|| suggested("status", stack_options));
    Ok(InstallReport {
        dry_run: false,
        curl: Some(curl_command(&url, plan, api_key.as_deref())),
        url: Some(url),
        api_key,
        custom_url: applied.domain.as_ref().map(|domain| format!("https://{}", domain.name)),
        dns_record,
        confirmation_mailed_to: plan.topic.subscribes().map(str::to_owned),
        key_hidden,
        ..planned_report(plan)
    })
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
