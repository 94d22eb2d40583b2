//! `counterctl uninstall`: reads the stack, plans the deletion of what carries its tag,
//! confirms, and deletes, API first so nothing can call a half-deleted stack. Anything
//! already gone counts as deleted, so it works from any partial state. The table and its
//! counters stay unless `--delete-data`; the role stays while another region's function
//! uses it.

use std::fmt;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::aws::Clients;
use crate::change::{Change, Delete, Deletion};
use crate::cli::{OutputFormat, UninstallArgs, suggested};
use crate::deployed::{self, Deployed, Lookup, Reach};
use crate::plan;
use crate::progress::{Progress, Wording, ask, out, report};
use crate::regions::{InRegion, PerRegion};
use crate::resources::table;

const DUPLICATES_WARNING: &str = "Counters restarted in a new table would hand out IDs that were already issued.";

/// What uninstall deleted, or with `--dry-run` would delete: `--output json`, or text.
#[derive(Serialize)]
#[serde(untagged)]
enum UninstallReport {
    /// `--dry-run`, in install's dry-run shape.
    DryRun {
        dry_run: bool,
        /// Nothing is left to delete.
        up_to_date: bool,
        changes: Vec<Change>,
        table_kept: bool,
    },
    Deleted {
        changes: Vec<Change>,
        table_kept: bool,
        /// Deletions AWS refused: what was kept, and why.
        warnings: Vec<String>,
        /// Anything was there to delete.
        #[serde(skip)]
        deleted: bool,
        /// Where the stack was looked for, and what picks the kept table up again.
        #[serde(skip)]
        kept: Kept,
    },
}

/// The stack, where it was looked for, and the install that picks its kept table up.
struct Kept {
    stack: String,
    region: String,
    table: String,
    install: String,
}

impl Kept {
    /// Where the kept counters are, and the install that picks them up again.
    fn pick_up(&self) -> String {
        let Self { table, install, .. } = self;
        format!("Table {table} and its counters were kept; `{install}` picks them up again.")
    }
}

impl fmt::Display for UninstallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DryRun { .. } => f.write_str("Dry run: nothing was deleted."),
            Self::Deleted { deleted: true, table_kept: true, kept, .. } => write!(f, "Uninstalled. {}", kept.pick_up()),
            Self::Deleted { deleted: true, table_kept: false, .. } => f.write_str("Uninstalled."),
            Self::Deleted { deleted: false, table_kept, kept, .. } => {
                let Kept { stack, region, .. } = kept;
                match table_kept {
                    true => write!(f, "Nothing of stack {stack} is left to delete in {region}. {}", kept.pick_up()),
                    false => write!(
                        f,
                        "Nothing of stack {stack} is left to delete in {region} (a typo in --name or --region finds nothing too)."
                    ),
                }
            }
        }
    }
}

/// How far one region's uninstall goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Print the plan and stop (`--dry-run`, or before the question for every region).
    Show,
    /// Print the plan, ask, delete: one region's uninstall.
    AskAndDelete,
    /// Delete what was shown and confirmed for every region.
    Delete,
}

pub(crate) async fn run(args: UninstallArgs) -> anyhow::Result<ExitCode> {
    let clients = Clients::connect(&args.aws.connection()).await?;
    let json = args.output.output == OutputFormat::Json;
    let deployed = read(&clients, &args).await?;
    crate::install::refuse_if_cloudformation(&deployed, &args.stack.name, |owner| {
        format!(
            "delete CloudFormation stack {owner} instead (`aws cloudformation delete-stack --stack-name {owner}`); a \
             table with DeletionPolicy Retain stays, with its counters"
        )
    })?;
    let Some(regions) = deployed.table.as_ref().and_then(table::TableState::strong_regions) else {
        let run = if args.dry_run { Run::Show } else { Run::AskAndDelete };
        report(json, &in_region(&args, &clients, deployed, args.delete_data, run).await?)?;
        return Ok(ExitCode::SUCCESS);
    };
    // A stack on a strongly consistent global table: every replica region's part, the
    // region asked from last, so its role goes with the last function and the table (with
    // --delete-data) once no region's function uses it.
    let table = deployed.stack_table(args.stack.table.as_deref());
    let mut order: Vec<(Clients, bool)> =
        regions.others.iter().map(|region| (clients.in_region(region), false)).collect();
    order.push((clients, true));
    // The asking region was read already; it is read again only before its deletions.
    let mut asked_region = Some(deployed);
    let mut shown = Vec::new();
    for (clients, asked) in &order {
        let deployed = match asked_region.take_if(|_| *asked) {
            Some(deployed) => deployed,
            None => read(clients, &args).await?,
        };
        let region = deployed.account.region.clone();
        let report = in_region(&args, clients, deployed, args.delete_data && *asked, Run::Show).await?;
        shown.push(InRegion { region, report });
    }
    let anything_to_delete =
        shown.iter().any(|shown| matches!(shown.report, UninstallReport::DryRun { up_to_date: false, .. }));
    if args.dry_run || !anything_to_delete {
        report(json, &PerRegion::new(&table, &regions, shown))?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        confirm(&table, args.delete_data)?;
    }
    let mut reports = Vec::new();
    for (clients, asked) in &order {
        let deployed = read(clients, &args).await?;
        let region = deployed.account.region.clone();
        let report = in_region(&args, clients, deployed, args.delete_data && *asked, Run::Delete)
            .await
            .with_context(|| format!("in {region}"))?;
        reports.push(InRegion { region, report });
    }
    report(json, &PerRegion::new(&table, &regions, reports))?;
    Ok(ExitCode::SUCCESS)
}

async fn read(clients: &Clients, args: &UninstallArgs) -> anyhow::Result<Deployed> {
    let lookup = Lookup::stack(&args.stack.name, args.stack.table.as_deref(), Reach::Whole);
    deployed::read(clients, &lookup).await
}

/// Uninstalls the stack's part in one region, as far as `run` says.
async fn in_region(
    args: &UninstallArgs,
    clients: &Clients,
    deployed: Deployed,
    delete_data: bool,
    run: Run,
) -> anyhow::Result<UninstallReport> {
    let json = args.output.output == OutputFormat::Json;
    let name = &args.stack.name;
    let table_name = deployed.stack_table(args.stack.table.as_deref());
    let teardown = plan::uninstall(name, &deployed, &table_name, delete_data);
    let changes = teardown.changes();
    let deletes_table = teardown.table.deletes();
    let table_kept = deployed.table.is_some() && !deletes_table;
    let items = if deletes_table && run != Run::Delete {
        Some(table::count_items(&clients.dynamodb, &table_name).await.context("counting the table's items")?)
    } else {
        None
    };
    // The plan, shown before anything is deleted (and before the question).
    if !json && run != Run::Delete {
        if run == Run::Show && !args.dry_run {
            out(format!("{}:", deployed.account.region))?;
        }
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
    if run == Run::Show {
        return Ok(UninstallReport::DryRun { dry_run: true, up_to_date: !anything_to_delete, changes, table_kept });
    }
    // Where the uninstall was told to look, then the stack and its table.
    let install = [args.aws.words(), ["--name", name, "--table", &table_name].map(str::to_owned).to_vec()].concat();
    let kept = Kept {
        stack: name.clone(),
        region: deployed.account.region.clone(),
        table: table_name.clone(),
        install: suggested("install", install),
    };
    if !anything_to_delete {
        return Ok(UninstallReport::Deleted { changes, table_kept, warnings: Vec::new(), deleted: false, kept });
    }
    if run == Run::AskAndDelete && !args.yes {
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
    warnings.extend(deleted(clients, &teardown.alarms, &progress).await?);
    warnings.extend(deleted(clients, &teardown.topic, &progress).await?);
    // Before the APIs they map to.
    for domain in &teardown.domains {
        warnings.extend(deleted(clients, domain, &progress).await?);
    }
    for deletion in &teardown.usage_plans {
        warnings.extend(deleted(clients, deletion, &progress).await?);
    }
    for deletion in &teardown.keys {
        warnings.extend(deleted(clients, deletion, &progress).await?);
    }
    for deletion in &teardown.apis {
        warnings.extend(deleted(clients, deletion, &progress).await?);
    }
    warnings.extend(deleted(clients, &teardown.function, &progress).await?);
    warnings.extend(deleted(clients, &teardown.log_group, &progress).await?);
    for deletion in &teardown.policies {
        warnings.extend(deleted(clients, deletion, &progress).await?);
    }
    warnings.extend(deleted(clients, &teardown.role, &progress).await?);
    warnings.extend(deleted(clients, &teardown.table, &progress).await?);
    // Without the function nothing records which table the stack used: the text names it.
    Ok(UninstallReport::Deleted { changes, table_kept, warnings, deleted: true, kept })
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
