//! `counterctl uninstall`: reads the stack, plans the deletion of what carries its tag,
//! confirms, and deletes, API first so nothing can call a half-deleted stack. Anything
//! already gone counts as deleted, so it works from any partial state. The table and its
//! counters stay unless `--delete-data`; the role stays while another region's function
//! uses it.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::cli::{OutputFormat, UninstallArgs};
use crate::deployed::{self, Clients, Deployed, Target};
use crate::plan::{self, Action, Change, Resource};
use crate::progress::{Progress, Wording, out};
use crate::resources::{api, auth, function, log_group, role, table};

const DUPLICATES_WARNING: &str = "Counters restarted in a new table would hand out IDs that were already issued.";

#[derive(Serialize)]
struct UninstallResult<'a> {
    changes: &'a [Change],
    table_kept: bool,
    /// Deletions AWS refused: what was kept, and why.
    warnings: &'a [String],
}

pub async fn run(args: UninstallArgs) -> anyhow::Result<ExitCode> {
    let clients = Clients::connect(&args.aws).await?;
    let json = args.output.output == OutputFormat::Json;
    let name = &args.stack.name;
    let target = Target { name, table: args.stack.table.as_deref(), compare_counters: false };
    let deployed = deployed::read(&clients, &target).await?;
    let table_name = plan::table_name(args.stack.table.as_deref(), deployed.function.as_ref());
    let changes = plan::uninstall(name, &deployed, &table_name, args.delete_data);
    let deletes_table = changes.iter().any(|c| c.resource == Resource::Table && matches!(c.action, Action::Delete(_)));
    let items = if deletes_table {
        Some(table::count_items(&clients.dynamodb, &table_name).await.context("counting the table's items")?)
    } else {
        None
    };
    if !json {
        for change in &changes {
            out(Wording::Plan.line(change))?;
        }
        if let Some(items) = items {
            out(format!("table {table_name} and its {items} items WILL BE DELETED. {DUPLICATES_WARNING}"))?;
        } else if deployed.table.is_some() {
            out(format!("table {table_name} and its counters are kept (delete them with --delete-data)"))?;
        }
    }
    let anything_to_delete = changes.iter().any(|change| change.action.changes());
    if !anything_to_delete {
        if !json {
            out(format!("Nothing of stack {name} is left to delete."))?;
        }
    } else if !args.yes {
        confirm(&table_name, deletes_table)?;
    }

    // Without the function nothing says which table held the stack's counters: the table
    // says so itself from now on, before anything is deleted.
    if let Some(table) = &deployed.table
        && !deletes_table
        && deployed.function.as_ref().is_some_and(|function| function.table() == table.name)
    {
        table::mark_kept(&clients.dynamodb, table, name).await.context("marking the table kept")?;
    }

    let progress = Progress::new(json);
    // The usage plans first (AWS refuses to delete a usage plan while it has stages, and
    // without one no key is accepted), then keys and APIs, so nothing calls a
    // half-deleted stack; the function before its role; the data last.
    let order = [
        Resource::UsagePlan,
        Resource::ApiKey,
        Resource::Api,
        Resource::Function,
        Resource::LogGroup,
        Resource::Policy,
        Resource::Role,
        Resource::Table,
    ];
    let mut warnings = Vec::new();
    for resource in order {
        for change in changes.iter().filter(|change| change.resource == resource && change.action.changes()) {
            let step = async {
                let kept = delete(&clients, &deployed, name, change).await?;
                let note = kept.as_ref().map(|reason| format!("kept: {reason}"));
                Ok((kept, note))
            };
            if let Some(kept) = progress.step_noting(change, step).await? {
                warnings.push(format!("{} {}: kept: {kept}", change.resource.label(), change.name));
            }
        }
    }
    let table_kept = deployed.table.is_some() && !deletes_table;
    if json {
        out(serde_json::to_string_pretty(&UninstallResult { changes: &changes, table_kept, warnings: &warnings })?)?;
    } else if table_kept {
        // Without the function nothing records which table the stack used: name it.
        out(format!(
            "Uninstalled. Table {table_name} and its counters were kept; \
             `counterctl install --name {name} --table {table_name}` picks them up again."
        ))?;
    } else {
        out("Uninstalled.")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Carries out one planned deletion; `Some(reason)` when AWS refused it and the resource
/// is kept.
async fn delete(
    clients: &Clients,
    deployed: &Deployed,
    stack_name: &str,
    change: &Change,
) -> anyhow::Result<Option<String>> {
    let apigateway = &clients.apigateway;
    let name = change.name.as_str();
    match change.resource {
        Resource::Api => {
            api::delete(apigateway, name).await.context("deleting the API")?;
        }
        Resource::UsagePlan => {
            if let Some(plan) = deployed.usage_plans.iter().find(|plan| plan.id == name) {
                auth::delete_usage_plan(apigateway, plan).await.context("deleting the usage plan")?;
            }
        }
        Resource::ApiKey => {
            auth::delete_key(apigateway, name).await.context("deleting the API key")?;
        }
        Resource::Function => {
            function::delete(&clients.lambda, name).await.context("deleting the function")?;
        }
        Resource::LogGroup => {
            log_group::delete(&clients.logs, name).await.context("deleting the log group")?;
        }
        Resource::Policy => {
            role::delete_policy(&clients.iam, stack_name, name).await.context("deleting this region's policy")?;
        }
        Resource::Role => {
            let Some(state) = &deployed.role else { return Ok(None) };
            return role::delete(&clients.iam, name, state).await.context("deleting the role");
        }
        Resource::Table => {
            table::delete(&clients.dynamodb, name).await.context("deleting the table")?;
        }
        Resource::Permission | Resource::Route | Resource::Integration | Resource::Stage | Resource::FunctionUrl => {}
    }
    Ok(None)
}

/// Asks on the terminal; refuses when there is none to ask on.
fn confirm(table: &str, delete_data: bool) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("uninstall needs confirmation and there is no terminal to ask on\nhint: pass --yes");
    }
    let mut answer = String::new();
    let mut ask = |question: &str| -> anyhow::Result<String> {
        print!("{question} ");
        std::io::stdout().flush()?;
        answer.clear();
        std::io::stdin().lock().read_line(&mut answer)?;
        Ok(answer.trim().to_owned())
    };
    if delete_data {
        if ask(&format!("Type the table name ({table}) to delete it and its counters:"))? != table {
            anyhow::bail!("the name did not match; nothing was deleted");
        }
    } else if !matches!(ask("Delete these? [y/N]")?.as_str(), "y" | "Y" | "yes") {
        anyhow::bail!("cancelled; nothing was deleted");
    }
    Ok(())
}
