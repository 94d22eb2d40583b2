//! `counterctl uninstall`: deletes what install made, API first so nothing can call a
//! half-deleted stack. Anything already gone counts as deleted, so it works from any
//! partial state. The table and its counters stay unless `--delete-data`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::cli::{OutputFormat, UninstallArgs};
use crate::install::Clients;
use crate::progress::{Outcome, Progress, StepReport, Wording};
use crate::resources::{Mode, api, auth, function, role, table};
use crate::stack::Stack;

const DUPLICATES_WARNING: &str = "Counters restarted in a new table would hand out IDs that were already issued.";

#[derive(Serialize)]
struct UninstallResult {
    steps: Vec<StepReport>,
    table_kept: bool,
}

pub async fn run(args: UninstallArgs) -> anyhow::Result<ExitCode> {
    let stack = Stack::from_options(&args.stack);
    let clients = Clients::connect(&args.aws).await?;
    let json = args.output.output == OutputFormat::Json;

    let (api, plan, key, function, role_exists, table) = tokio::try_join!(
        async { api::find(&clients.apigateway, &stack).await.context("looking for the API") },
        async { auth::find_usage_plan(&clients.apigateway, &stack).await.context("looking for the usage plan") },
        async { auth::find_key(&clients.apigateway, &stack).await.context("looking for the API key") },
        async { function::get(&clients.lambda, &stack).await.context("looking for the function") },
        async { role::exists(&clients.iam, &stack).await.context("looking for the role") },
        async { table::describe(&clients.dynamodb, &stack.table).await.context("looking for the table") },
    )?;
    let api_id = api.and_then(|api| api.id);
    let mut plan_lines = Vec::new();
    if let Some(id) = &api_id {
        plan_lines.push(format!("API {} ({id}) and its stage {}", stack.name, stack.stage));
    }
    if plan.is_some() {
        plan_lines.push(format!("usage plan {}", stack.name));
    }
    if key.is_some() {
        plan_lines.push(format!("API key {}", stack.name));
    }
    if function.is_some() {
        plan_lines.push(format!("function {} and its API Gateway permission", stack.name));
    }
    if role_exists {
        plan_lines.push(format!("role {} and its inline policy", stack.name));
    }
    let items = match (&table, args.delete_data) {
        (Some(_), true) => {
            Some(table::count_items(&clients.dynamodb, &stack.table).await.context("counting the table's items")?)
        }
        _ => None,
    };
    let table_note = match (&table, items) {
        (None, _) => format!("table {} does not exist", stack.table),
        (Some(_), Some(items)) => {
            format!("table {} and its {items} items WILL BE DELETED. {DUPLICATES_WARNING}", stack.table)
        }
        (Some(_), None) => format!("table {} and its counters are kept (delete them with --delete-data)", stack.table),
    };
    if !json {
        if plan_lines.is_empty() {
            println!("Nothing of stack {} is left to delete.", stack.name);
        } else {
            println!("This deletes:");
            for line in &plan_lines {
                println!("  - {line}");
            }
        }
        println!("{table_note}");
    }
    let anything_to_delete = !plan_lines.is_empty() || items.is_some();
    if anything_to_delete && !args.yes {
        confirm(&stack, items.is_some())?;
    }

    let progress = Progress::new(Wording::Done, json);
    if let Some(api_id) = &api_id {
        let delete = deletion(api::delete(&clients.apigateway, api_id));
        progress.step("api", &stack.name, delete).await.context("deleting the API")?;
    }
    progress
        .step("usage plan", &stack.name, auth::remove(&clients.apigateway, &stack, Mode::Apply))
        .await
        .context("deleting the usage plan and API key")?;
    let permission = deletion(function::remove_permission(&clients.lambda, &stack));
    progress
        .step("permission", crate::stack::PERMISSION_SID, permission)
        .await
        .context("removing the Lambda permission")?;
    let delete_function = deletion(function::delete(&clients.lambda, &stack));
    progress.step("function", &stack.name, delete_function).await.context("deleting the function")?;
    let delete_role = deletion(role::delete(&clients.iam, &stack));
    progress.step("role", &stack.name, delete_role).await.context("deleting the role")?;
    if args.delete_data {
        let delete_table = deletion(table::delete(&clients.dynamodb, &stack.table));
        progress.step("table", &stack.table, delete_table).await.context("deleting the table")?;
    }

    let table_kept = table.is_some() && !args.delete_data;
    if json {
        println!("{}", serde_json::to_string_pretty(&UninstallResult { steps: progress.reports(), table_kept })?);
    } else if table_kept {
        println!(
            "Uninstalled. Table {} and its counters were kept; `counterctl install` picks them up again.",
            stack.table
        );
    } else {
        println!("Uninstalled.");
    }
    Ok(ExitCode::SUCCESS)
}

/// A delete call as a progress step: `Deleted`, or `Absent` when it was already gone.
async fn deletion<E>(delete: impl Future<Output = Result<bool, E>>) -> Result<((), Outcome), E> {
    let gone = delete.await?;
    Ok(((), if gone { Outcome::Deleted } else { Outcome::Absent }))
}

/// Asks on the terminal; refuses when there is none to ask on.
fn confirm(stack: &Stack, delete_data: bool) -> anyhow::Result<()> {
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
        if ask(&format!("Type the table name ({}) to delete it and its counters:", stack.table))? != stack.table {
            anyhow::bail!("the name did not match; nothing was deleted");
        }
    } else if !matches!(ask("Delete these? [y/N]")?.as_str(), "y" | "Y" | "yes") {
        anyhow::bail!("cancelled; nothing was deleted");
    }
    Ok(())
}
