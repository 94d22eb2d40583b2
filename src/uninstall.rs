//! `counterctl uninstall`: reads the stack, plans the deletion of what carries its tag,
//! confirms, and deletes, API first so nothing can call a half-deleted stack. Anything
//! already gone counts as deleted, so it works from any partial state. The table and its
//! counters stay unless `--delete-data`; the role stays while another region's function
//! uses it.

use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::aws::Clients;
use crate::change::{Change, Delete, Deletion};
use crate::cli::{OutputFormat, UninstallArgs};
use crate::deployed::{self, Target};
use crate::plan;
use crate::progress::{Progress, Wording, ask, out, suggested};
use crate::resources::table;

const DUPLICATES_WARNING: &str = "Counters restarted in a new table would hand out IDs that were already issued.";

#[derive(Serialize)]
struct UninstallResult<'a> {
    changes: &'a [Change],
    table_kept: bool,
    /// Deletions AWS refused: what was kept, and why.
    warnings: &'a [String],
}

/// `--dry-run --output json`, in install's dry-run shape.
#[derive(Serialize)]
struct DryRun<'a> {
    dry_run: bool,
    /// Nothing is left to delete.
    up_to_date: bool,
    changes: &'a [Change],
    table_kept: bool,
}

pub(crate) async fn run(args: UninstallArgs) -> anyhow::Result<ExitCode> {
    let clients = Clients::connect(&args.aws).await?;
    let json = args.output.output == OutputFormat::Json;
    let name = &args.stack.name;
    let target = Target {
        name,
        table: args.stack.table.as_deref(),
        compare_counters: false,
        domain: None,
        certificate: None,
        zone: None,
    };
    let deployed = deployed::read(&clients, &target).await?;
    let table_name = deployed.stack_table(args.stack.table.as_deref());
    let teardown = plan::uninstall(name, &deployed, &table_name, args.delete_data);
    let changes = teardown.changes();
    let deletes_table = teardown.table.deletes();
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
    let anything_to_delete = changes.iter().any(|change| change.changes());
    if args.dry_run {
        if json {
            let table_kept = deployed.table.is_some() && !deletes_table;
            let plan = DryRun { dry_run: true, up_to_date: !anything_to_delete, changes: &changes, table_kept };
            out(serde_json::to_string_pretty(&plan)?)?;
        } else {
            out("Dry run: nothing was deleted.")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !anything_to_delete {
        let table_kept = deployed.table.is_some();
        if json {
            out(serde_json::to_string_pretty(&UninstallResult { changes: &changes, table_kept, warnings: &[] })?)?;
        } else {
            let region = &deployed.account.region;
            out(match table_kept {
                true => {
                    format!("Nothing of stack {name} is left to delete in {region}. {}", pick_up(name, &table_name))
                }
                false => format!(
                    "Nothing of stack {name} is left to delete in {region} (a typo in --name or --region finds nothing too)."
                ),
            })?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        confirm(&table_name, deletes_table)?;
    }

    // Without the function and the role's grant nothing says which table held the
    // stack's counters: the table says so itself from now on, before anything is deleted.
    if let Some(table) = &deployed.table
        && !deletes_table
        && deployed.records(&table.name)
    {
        table::mark_kept(&clients.dynamodb, table, name).await.context("marking the table kept")?;
    }

    let progress = Progress::new(json);
    // The usage plans first (AWS refuses to delete a usage plan while it has stages, and
    // without one no key is accepted), then keys and APIs, so nothing calls a
    // half-deleted stack; the function before its role; the data last.
    let mut warnings = Vec::new();
    warnings.extend(deleted(&clients, &teardown.alarms, &progress).await?);
    warnings.extend(deleted(&clients, &teardown.topic, &progress).await?);
    // Before the APIs they map to.
    for domain in &teardown.domains {
        warnings.extend(deleted(&clients, domain, &progress).await?);
    }
    for deletion in &teardown.usage_plans {
        warnings.extend(deleted(&clients, deletion, &progress).await?);
    }
    for deletion in &teardown.keys {
        warnings.extend(deleted(&clients, deletion, &progress).await?);
    }
    for deletion in &teardown.apis {
        warnings.extend(deleted(&clients, deletion, &progress).await?);
    }
    warnings.extend(deleted(&clients, &teardown.function, &progress).await?);
    warnings.extend(deleted(&clients, &teardown.log_group, &progress).await?);
    for deletion in &teardown.policies {
        warnings.extend(deleted(&clients, deletion, &progress).await?);
    }
    warnings.extend(deleted(&clients, &teardown.role, &progress).await?);
    warnings.extend(deleted(&clients, &teardown.table, &progress).await?);
    let table_kept = deployed.table.is_some() && !deletes_table;
    if json {
        out(serde_json::to_string_pretty(&UninstallResult { changes: &changes, table_kept, warnings: &warnings })?)?;
    } else if table_kept {
        // Without the function nothing records which table the stack used: name it.
        out(format!("Uninstalled. {}", pick_up(name, &table_name)))?;
    } else {
        out("Uninstalled.")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the kept counters are, and the install that picks them up again.
fn pick_up(name: &str, table: &str) -> String {
    // Where the uninstall was told to look, then the stack and its table.
    let aws = ["--region", "--profile", "--endpoint-url"];
    let install = suggested("install", std::env::args().skip(2), |flag| aws.contains(&flag));
    format!("Table {table} and its counters were kept; `{install} --name {name} --table {table}` picks them up again.")
}

/// Carries out one planned deletion; what AWS refused to delete, as a warning.
async fn deleted<T: Delete>(
    clients: &Clients,
    deletion: &Deletion<T>,
    progress: &Progress,
) -> anyhow::Result<Option<String>> {
    let kept = progress.delete(clients, deletion).await?;
    let row = &deletion.row;
    Ok((!kept.is_empty()).then(|| format!("{} {}: kept: {}", row.resource.label(), row.name, kept.join("; "))))
}

/// Asks on the terminal; refuses when there is none to ask on.
fn confirm(table: &str, delete_data: bool) -> anyhow::Result<()> {
    let refusal = "uninstall needs confirmation and there is no terminal to ask on\nhint: pass --yes";
    if delete_data {
        let question = format!("Type the table name ({table}) to delete it and its counters:");
        if ask(refusal, || Ok(question))? != table {
            anyhow::bail!("the name did not match; nothing was deleted");
        }
    } else if !matches!(ask(refusal, || Ok("Delete these? [y/N]".to_owned()))?.as_str(), "y" | "Y" | "yes") {
        anyhow::bail!("cancelled; nothing was deleted");
    }
    Ok(())
}
