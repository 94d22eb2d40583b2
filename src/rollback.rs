//! `counterctl rollback`: moves the function's alias back to the version before it (or
//! to `--to VERSION`) in every region of the stack: read, plan, show, confirm, one
//! UpdateAlias per region. Callers move at once; `install` brings the alias forward again.

use std::fmt;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::aws::Clients;
use crate::cli::{OutputFormat, RollbackArgs};
use crate::deployed::{self, Deployed, Lookup, Reach};
use crate::progress::{ask, out, report};
use crate::resources::alias::{self, ALIAS, Rollback, RollbackRefusal, Version};
use crate::resources::table::TableState;

/// A version as rollback shows it.
#[derive(Serialize)]
struct VersionShown {
    version: u64,
    code_sha256: String,
    architecture: String,
    memory_mb: i32,
    timeout_seconds: i32,
    table: String,
}

impl From<&Version> for VersionShown {
    fn from(version: &Version) -> Self {
        let snapshot = &version.snapshot;
        Self {
            version: version.number,
            code_sha256: snapshot.code_sha256.clone(),
            architecture: snapshot.architecture.clone(),
            memory_mb: snapshot.memory_mb,
            timeout_seconds: snapshot.timeout_seconds,
            table: snapshot.table.clone(),
        }
    }
}

/// One region's move.
#[derive(Serialize)]
struct Move {
    region: String,
    alias: &'static str,
    from: VersionShown,
    /// `None`: it runs the version asked for already.
    to: Option<VersionShown>,
}

impl fmt::Display for Move {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { region, alias, from, to } = self;
        let line = |version: &VersionShown| {
            format!(
                "version {}: code {} {}, {} MB, {} s, table {}",
                version.version,
                version.code_sha256,
                version.architecture,
                version.memory_mb,
                version.timeout_seconds,
                version.table
            )
        };
        match to {
            Some(to) => write!(
                f,
                "~ alias {alias} in {region}: version {} → version {}\n    from {}\n    to   {}",
                from.version,
                to.version,
                line(from),
                line(to)
            ),
            None => write!(f, "  alias {alias} in {region}: runs version {} already", from.version),
        }
    }
}

/// What rollback did, or with `--dry-run` would do.
#[derive(Serialize)]
struct RollbackReport {
    dry_run: bool,
    /// The alias moved (in at least one region).
    rolled_back: bool,
    regions: Vec<Move>,
    /// The install that brings the alias forward again.
    #[serde(skip)]
    forward: String,
}

impl fmt::Display for RollbackReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.dry_run, self.rolled_back) {
            (true, _) => f.write_str("Dry run: the alias was not moved."),
            (false, true) => write!(
                f,
                "Rolled back: new invocations run the version above; those in flight finish on the one they \
                 started on. `{}` brings the alias forward again.",
                self.forward
            ),
            (false, false) => f.write_str("Nothing to roll back."),
        }
    }
}

pub(crate) async fn run(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let json = args.output.output == OutputFormat::Json;
    let clients = Clients::connect(&args.aws.connection()).await?;
    let asked = read(&clients, &args).await?;
    // A stack on a strongly consistent global table has an alias in every region, each
    // with its own versions: each moves.
    let mut regions = vec![(clients.clone(), asked.clone())];
    if let Some(global) = asked.table.as_ref().and_then(TableState::strong_regions) {
        for region in &global.others {
            let clients = clients.in_region(region);
            let deployed = read(&clients, &args).await.with_context(|| format!("reading the stack in {region}"))?;
            regions.push((clients, deployed));
        }
    }
    let mut planned = Vec::new();
    for (clients, deployed) in regions {
        let rollback = plan(&args, &deployed)?;
        planned.push((clients, deployed.account.region.clone(), rollback));
    }
    let moves: Vec<Move> = planned
        .iter()
        .map(|(_, region, rollback)| Move {
            region: region.clone(),
            alias: ALIAS,
            from: (&rollback.from).into(),
            to: rollback.to.as_ref().map(Into::into),
        })
        .collect();
    let forward = crate::cli::suggested("install", [args.aws.words(), args.stack.words()].concat());
    let moves_any = moves.iter().any(|shown| shown.to.is_some());
    if !json {
        for shown in &moves {
            out(shown)?;
        }
    }
    if args.dry_run || !moves_any {
        report(json, &RollbackReport { dry_run: args.dry_run, rolled_back: false, regions: moves, forward })?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        let refusal = "rollback needs confirmation and there is no terminal to ask on\nhint: pass --yes";
        if !matches!(ask(refusal, || Ok("Move the alias? [y/N]".to_owned()))?.as_str(), "y" | "Y" | "yes") {
            anyhow::bail!("cancelled; the alias was not moved");
        }
    }
    let mut moved: Vec<String> = Vec::new();
    for (clients, region, rollback) in &planned {
        if let Rollback { from: _, to: Some(to), revision } = rollback {
            let moving = alias::move_alias(&clients.lambda, &args.stack.name, to.number, revision.as_deref()).await;
            if let Err(error) = moving {
                // A plain rollback again would take the regions moved already one further.
                let done = if moved.is_empty() { "none".to_owned() } else { moved.join(", ") };
                return Err(error.context(format!(
                    "in {region}; moved already: {done}\nhint: run `counterctl rollback --to {}` to finish: a \
                     region there already is left as it is",
                    to.number
                )));
            }
            moved.push(format!("{region} (to version {})", to.number));
        }
    }
    report(json, &RollbackReport { dry_run: false, rolled_back: true, regions: moves, forward })?;
    Ok(ExitCode::SUCCESS)
}

async fn read(clients: &Clients, args: &RollbackArgs) -> anyhow::Result<Deployed> {
    let lookup = Lookup::stack(&args.stack.name, args.stack.table.as_deref(), Reach::Callers);
    deployed::read(clients, &lookup).await
}

/// One region's rollback. Refused before any write.
fn plan(args: &RollbackArgs, deployed: &Deployed) -> Result<Rollback, RollbackRefusal> {
    let stack = args.stack.name.clone();
    let region = deployed.account.region.clone();
    let function = deployed.function.as_ref().ok_or(RollbackRefusal::NoFunction { stack: stack.clone(), region })?;
    if let Some(owned) = deployed.cloudformation(&stack) {
        return Err(RollbackRefusal::CloudFormation { stack, cloudformation: owned.stack });
    }
    if deployed.function_url.as_ref().is_some_and(|url| !url.on_alias) {
        return Err(RollbackRefusal::UrlFront { stack });
    }
    if function.legacy_permission || deployed.function_url.as_ref().is_some_and(|url| url.own_left) {
        return Err(RollbackRefusal::MoveUnfinished { stack });
    }
    alias::plan_rollback(&stack, &function.versions, args.to)
}
