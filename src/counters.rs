//! `counterctl counters`: list, raise, export and import counters, in the stack's DynamoDB
//! table or in a `serve` data directory, with the same semantics on both. A counter is only
//! ever raised: lowering, resetting or deleting one would hand out its IDs again, so there
//! is no command for it (start a new counter name instead).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use counter_function::api::CurrentValue;
use counter_function::dynamo::{DynamoStore, IdempotencyTimings};
use counter_function::store::{CounterAdmin, Raised, StoreError};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::admin_socket::{AdminClient, checked_name};
use crate::aws::Account;
use crate::aws::Clients;
use crate::cli::{CounterStoreOptions, CountersArgs, CountersCommand, OutputFormat};
use crate::local_store::{self, LocalStore, OpenError, StoreOptions};
use crate::progress::out;
use crate::resources::function;
use crate::resources::table::{self, COUNTER_KEY_SCHEMA};
use crate::retry;

/// Raises in flight at once during an import: enough to fill serve's commit batches and to
/// hide DynamoDB's latency, few enough to stay under a new on-demand table's write rate.
const IMPORT_CONCURRENCY: usize = 32;
/// How long to keep trying a data directory whose serve is starting or stopping (a stop
/// waits up to its grace period for HTTP clients after closing the admin socket).
const SERVE_WAIT: Duration = Duration::from_secs(local_store::SHUTDOWN_GRACE.as_secs() + 5);

/// Where the command works.
enum Store {
    Table(DynamoStore),
    /// The data directory's database, opened here: serve is not running on it.
    Local {
        store: LocalStore,
        committer: tokio::task::JoinHandle<()>,
    },
    /// Through the admin socket of the serve running on the data directory.
    Serve(AdminClient),
}

/// What to do, with its input already checked: nothing is opened or locked for input that
/// would be refused.
enum Work {
    List { prefix: String, format: OutputFormat },
    Set { counter: String, at_least: i64, format: OutputFormat },
    Export { file: PathBuf },
    Import { source: String, wanted: BTreeMap<String, i64>, format: OutputFormat },
}

pub(crate) async fn run(args: CountersArgs) -> anyhow::Result<ExitCode> {
    let command = args.command;
    let work = match &command {
        CountersCommand::List(args) => Work::List { prefix: args.prefix.clone(), format: args.output.output },
        CountersCommand::Set(args) => {
            checked_name(&args.counter).map_err(|reason| {
                anyhow::anyhow!("{reason}\nhint: counter names are what the HTTP API accepts; nothing was changed")
            })?;
            Work::Set { counter: args.counter.clone(), at_least: args.at_least, format: args.output.output }
        }
        CountersCommand::Export(args) => Work::Export { file: args.file.clone() },
        CountersCommand::Import(args) => {
            let (source, wanted) = read_import(&args.file)?;
            Work::Import { source, wanted, format: args.output.output }
        }
        CountersCommand::Backup(args) => return backup(&args.store, &args.file).await,
    };
    // Reading a data directory that holds no database would create an empty one.
    let reads_only = matches!(work, Work::List { .. } | Work::Export { .. });
    match open(command.store(), reads_only).await? {
        Store::Table(store) => execute(&store, work).await,
        Store::Serve(client) => execute(&client, work).await,
        Store::Local { store, committer } => {
            let result = execute(&store, work).await;
            // The committer closes the database (and unlocks the directory) once the last
            // handle is gone, after committing everything it acknowledged.
            drop(store);
            committer.await.context("the database committer crashed")?;
            result
        }
    }
}

async fn execute(store: &impl CounterAdmin, work: Work) -> anyhow::Result<ExitCode> {
    match work {
        Work::List { prefix, format } => list(store, &prefix, format).await,
        Work::Set { counter, at_least, format } => set(store, &counter, at_least, format).await,
        Work::Export { file } => export(store, &file).await,
        Work::Import { source, wanted, format } => import(store, &source, &wanted, format).await,
    }?;
    Ok(ExitCode::SUCCESS)
}

/// `counters backup`: a copy of a data directory's database, taken by the serve running on
/// it or, while none does, here.
async fn backup(options: &CounterStoreOptions, file: &Path) -> anyhow::Result<ExitCode> {
    // Absolute: a running serve writes it, from its own working directory.
    let file = std::path::absolute(file).with_context(|| format!("resolving {}", file.display()))?;
    if file.exists() {
        bail!("{} exists already\nhint: name a new file; a backup never overwrites one", file.display());
    }
    let copied = match open(options, true).await? {
        Store::Table(_) => bail!(
            "counters backup copies a `counterctl serve` data directory; a stack's table has DynamoDB's own \
             backups (point-in-time recovery is on)\nhint: pass --data-dir DIR"
        ),
        Store::Serve(client) => client.backup(&file).await,
        Store::Local { store, committer } => {
            let copied = store.backup(&file).await;
            drop(store);
            committer.await.context("the database committer crashed")?;
            copied
        }
    };
    copied.context("copying the database")?;
    out(format!("backed up the counter database to {}", file.display()))?;
    Ok(ExitCode::SUCCESS)
}

async fn open(options: &CounterStoreOptions, reads_only: bool) -> anyhow::Result<Store> {
    // serve's data directory from the environment, unless a table is asked for.
    let from_env = || std::env::var_os("COUNTERCTL_DATA_DIR").filter(|dir| !dir.is_empty()).map(PathBuf::from);
    let data_dir = options.data_dir.clone().or_else(|| options.table.is_none().then(from_env).flatten());
    match data_dir {
        Some(data_dir) => open_data_dir(&data_dir, reads_only).await,
        None => open_table(options).await.map(Store::Table).map_err(|error| {
            // Without AWS, the counters may well be those of a serve on this machine.
            let default = local_store::default_data_dir().filter(|dir| local_store::database_path(dir).exists());
            match default {
                Some(dir) if options.table.is_none() => anyhow::anyhow!(
                    "{error:#}\nhint: a `counterctl serve` database is in its default data directory: pass --data-dir {} \
                     (or set COUNTERCTL_DATA_DIR) for its counters",
                    dir.display()
                ),
                _ => error,
            }
        }),
    }
}

/// Opens the data directory's database, or, while a serve holds it, connects to that serve.
async fn open_data_dir(data_dir: &Path, reads_only: bool) -> anyhow::Result<Store> {
    if reads_only && !local_store::database_path(data_dir).exists() {
        bail!(
            "there is no counter database in {}\nhint: pass the --data-dir that `counterctl serve` uses",
            data_dir.display()
        );
    }
    if data_dir.exists() && !data_dir.is_dir() {
        bail!(
            "{} is a file, not a directory\nhint: pass the --data-dir that `counterctl serve` uses",
            data_dir.display()
        );
    }
    // A mistyped directory must not become a new, empty store that `set` reports success on.
    if !data_dir.is_dir() {
        bail!(
            "there is no directory {}\nhint: pass the --data-dir that `counterctl serve` uses, \
             or create the directory to start a new store there",
            data_dir.display()
        );
    }
    let state_dir = std::env::var_os("COUNTERCTL_STATE_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(local_store::default_state_dir)
        .context("could not find your state directory (is HOME set?); set COUNTERCTL_STATE_DIR")?;
    let history = StoreOptions::new(state_dir, false);
    let give_up_at = Instant::now() + SERVE_WAIT;
    loop {
        match LocalStore::open(data_dir, "`counterctl counters`", &history) {
            Ok((store, committer, _)) => {
                // The committer blocks its thread for each commit.
                let runtime = tokio::runtime::Handle::current();
                let committer = tokio::task::spawn_blocking(move || runtime.block_on(committer.run(|_, _, _| {})));
                return Ok(Store::Local { store, committer });
            }
            Err(in_use @ OpenError::InUse { .. }) => match AdminClient::connect(data_dir).await {
                Ok(client) => return Ok(Store::Serve(client)),
                // A serve that is starting has the lock before its socket; one that is
                // stopping, the other way round.
                Err(_) if Instant::now() < give_up_at => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(error) => {
                    return Err(in_use).with_context(|| {
                        format!(
                            "no `counterctl serve` answered on {} ({error})\n\
                             hint: run the command again once the one holding the directory has ended",
                            crate::admin_socket::socket_path(data_dir).display()
                        )
                    });
                }
            },
            Err(error) => return Err(error).context("opening the counter database"),
        }
    }
}

/// The table the AWS commands use, when neither --table nor a data directory is given.
const TABLE_VARIABLE: &str = "COUNTERCTL_TABLE";

async fn open_table(options: &CounterStoreOptions) -> anyhow::Result<DynamoStore> {
    let local = "for a `counterctl serve` data directory, pass --data-dir DIR";
    let clients = Clients::connect_or_local(&options.aws.connection(), local).await?;
    let region = clients.config.region().map(ToString::to_string).unwrap_or_default();
    // The AWS commands' variable, read here so that --data-dir and COUNTERCTL_DATA_DIR
    // outrank it.
    let table = options.table.clone().or_else(|| std::env::var(TABLE_VARIABLE).ok().filter(|table| !table.is_empty()));
    let table = match &table {
        Some(table) => table.clone(),
        None => find_stack_table(&clients, &options.name, &region).await?,
    };
    let key_schema = table::read_key_schema(&clients.dynamodb, &table).await.context("reading the table")?;
    match key_schema {
        None => bail!("there is no table {table} in {region}\nhint: check --table, --name and --region"),
        Some(key_schema) if key_schema != COUNTER_KEY_SCHEMA => bail!(
            "table {table} does not hold counters: its key is {key_schema}, not {COUNTER_KEY_SCHEMA}\nhint: check --table"
        ),
        Some(_) => Ok(DynamoStore::new(clients.dynamodb, table, IdempotencyTimings::default())),
    }
}

/// The table of stack `name` ([`table::stack_table`]): its function's, else the one its
/// uninstall kept.
async fn find_stack_table(clients: &Clients, name: &str, region: &str) -> anyhow::Result<String> {
    let recorded = function::read_table(&clients.lambda, name, None).await.context("reading the function")?;
    let tables = match recorded {
        Some(_) => Vec::new(),
        None => {
            let account = Account::of_caller(&clients.config).await.context("checking the credentials")?;
            table::stack_tables(&clients.dynamodb, &account, name).await.context("looking for the stack's tables")?
        }
    };
    if let Some(table) = table::stack_table(None, recorded.as_deref(), &tables) {
        return Ok(table);
    }
    match tables.as_slice() {
        [] => bail!(
            "no stack {name} in {region}: no function {name}, and no table tagged as its own\n\
             hint: pass --table (the original service's is AtomicCounters), --name or --region"
        ),
        several => bail!(
            "stack {name} has no function, and several tables hold its counters: {}\nhint: pass --table",
            several.join(", ")
        ),
    }
}

async fn list(store: &impl CounterAdmin, prefix: &str, format: OutputFormat) -> anyhow::Result<()> {
    let counters = store.list(prefix).await.context("listing the counters")?;
    match format {
        OutputFormat::Json => {
            for (counter, value) in &counters {
                out(export_line(counter, *value))?;
            }
        }
        OutputFormat::Text if counters.is_empty() => eprintln!("no counters"),
        OutputFormat::Text => {
            let name_width = counters.iter().map(|(name, _)| name.chars().count()).max().unwrap_or(0).max(7);
            let value_width = counters.iter().map(|(_, value)| value.to_string().len()).max().unwrap_or(0).max(5);
            out(format!("{:<name_width$}  {:>value_width$}", "COUNTER", "VALUE"))?;
            for (counter, value) in &counters {
                out(format!("{counter:<name_width$}  {value:>value_width$}"))?;
            }
        }
    }
    Ok(())
}

/// What raising did to a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Raised,
    Unchanged,
}

impl Change {
    fn of(raised: &Raised) -> Self {
        match raised.before {
            None => Self::Created,
            Some(before) if before < raised.after => Self::Raised,
            Some(_) => Self::Unchanged,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Raised => "raised",
            Self::Unchanged => "unchanged",
        }
    }
}

/// `set --output json`: the counter line of `list`, and what happened.
#[derive(serde::Serialize)]
struct SetLine<'a> {
    counter: &'a str,
    value: i64,
    change: &'static str,
}

async fn set(store: &impl CounterAdmin, counter: &str, at_least: i64, format: OutputFormat) -> anyhow::Result<()> {
    let raised = raise(store, counter, at_least).await.with_context(|| format!("raising counter {counter:?}"))?;
    let change = Change::of(&raised);
    match format {
        OutputFormat::Json => {
            let line = SetLine { counter, value: raised.after, change: change.name() };
            out(serde_json::to_string(&line).expect("a line serializes"))?;
        }
        OutputFormat::Text => {
            let what = match (change, raised.before) {
                (Change::Raised, Some(before)) => format!("raised from {before}"),
                (Change::Unchanged, _) => format!("unchanged: already at least {at_least}"),
                _ => "created".to_owned(),
            };
            out(format!("{counter} = {} ({what})", raised.after))?;
        }
    }
    Ok(())
}

/// One raise, retried while the store is throttled: raising to a value twice is the same
/// as once.
async fn raise(store: &impl CounterAdmin, counter: &str, at_least: i64) -> Result<Raised, StoreError> {
    retry::THROTTLED.retry(|| store.raise(counter, at_least), |error| matches!(error, StoreError::Throttled(_))).await
}

fn export_line(counter: &str, value: i64) -> String {
    let line = CurrentValue { counter: counter.into(), value };
    serde_json::to_string(&line).expect("a counter serializes")
}

async fn export(store: &impl CounterAdmin, file: &Path) -> anyhow::Result<()> {
    let counters = store.list("").await.context("reading the counters")?;
    let mut lines = String::new();
    for (counter, value) in &counters {
        lines.push_str(&export_line(counter, *value));
        lines.push('\n');
    }
    if file == Path::new("-") {
        return Ok(std::io::stdout().lock().write_all(lines.as_bytes())?);
    }
    write_whole(file, lines.as_bytes())?;
    out(format!("exported {} to {}", counters_count(counters.len()), file.display()))?;
    Ok(())
}

/// Writes `file` so that it holds either its old content or all of `content`, even after a
/// crash or power loss: written aside, flushed to disk, renamed over, and the rename
/// flushed too.
fn write_whole(file: &Path, content: &[u8]) -> anyhow::Result<()> {
    let mut aside = file.as_os_str().to_owned();
    aside.push(format!(".partial-{}", std::process::id()));
    let aside = PathBuf::from(aside);
    let written = (|| {
        let mut partial = std::fs::File::create(&aside)?;
        partial.write_all(content)?;
        partial.sync_all()?;
        std::fs::rename(&aside, file)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&aside);
        return Err(error).with_context(|| format!("writing {}", file.display()));
    }
    let directory = file.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(directory)
        .and_then(|directory| directory.sync_all())
        .with_context(|| format!("flushing the rename of {} to disk", file.display()))
}

fn counters_count(count: usize) -> String {
    format!("{count} counter{}", if count == 1 { "" } else { "s" })
}

/// What an import did, by counter.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
struct Tally {
    created: usize,
    raised: usize,
    unchanged: usize,
}

impl Tally {
    fn count(&mut self, change: Change) {
        match change {
            Change::Created => self.created += 1,
            Change::Raised => self.raised += 1,
            Change::Unchanged => self.unchanged += 1,
        }
    }
}

/// The import's input, read whole and checked: where it came from, and its counters.
fn read_import(file: &Path) -> anyhow::Result<(String, BTreeMap<String, i64>)> {
    let (source, input) = if file == Path::new("-") {
        let mut input = Vec::new();
        std::io::stdin().read_to_end(&mut input).context("reading stdin")?;
        ("stdin".to_owned(), input)
    } else {
        let input = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        (file.display().to_string(), input)
    };
    let wanted = parse_import(&input).map_err(|bad| {
        anyhow::anyhow!("{source}, {bad}\nhint: no counter was changed; fix the line and run it again")
    })?;
    Ok((source, wanted))
}

async fn import(
    store: &impl CounterAdmin,
    source: &str,
    wanted: &BTreeMap<String, i64>,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let bar = progress_bar(wanted.len());
    let mut tally = Tally::default();
    let mut raises = futures_util::stream::iter(wanted)
        .map(|(counter, value)| async move { (counter, raise(store, counter, *value).await) })
        .buffer_unordered(IMPORT_CONCURRENCY);
    while let Some((counter, result)) = raises.next().await {
        match result {
            Ok(raised) => tally.count(Change::of(&raised)),
            Err(error) => {
                bar.abandon();
                return Err(error).with_context(|| {
                    format!(
                        "raising counter {counter:?}, after {} of {} counters; importing again is safe, \
                         it raises only what is still lower",
                        tally.created + tally.raised + tally.unchanged,
                        wanted.len()
                    )
                });
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    match format {
        OutputFormat::Json => out(serde_json::to_string(&tally).expect("a tally serializes"))?,
        OutputFormat::Text => out(format!(
            "imported {} from {source}: {} created, {} raised, {} unchanged",
            counters_count(wanted.len()),
            tally.created,
            tally.raised,
            tally.unchanged
        ))?,
    }
    Ok(())
}

/// A bar on a terminal's stderr, nothing elsewhere.
fn progress_bar(length: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(length as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40.cyan} {pos}/{len} counters ({per_sec}, {eta} left)")
            .expect("a valid template"),
    );
    bar
}

/// A line of an import that is not a counter.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub(crate) struct BadLine {
    pub line: usize,
    pub reason: String,
}

/// The counters of an import, each with the highest value any of its lines gives; blank
/// lines are skipped. The first bad line fails the whole input.
pub(crate) fn parse_import(input: &[u8]) -> Result<BTreeMap<String, i64>, BadLine> {
    let mut wanted = BTreeMap::new();
    for (index, bytes) in input.split(|byte| *byte == b'\n').enumerate() {
        let bad = |reason| BadLine { line: index + 1, reason };
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8".to_owned()))?;
        if text.trim().is_empty() {
            continue;
        }
        let (counter, value) = parse_line(text).map_err(bad)?;
        let highest = wanted.entry(counter).or_insert(value);
        *highest = value.max(*highest);
    }
    Ok(wanted)
}

/// One line of an import: exactly these two fields, each once.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    counter: Value,
    /// As written, to quote it so in an error.
    value: Box<serde_json::value::RawValue>,
}

fn parse_line(text: &str) -> Result<(String, i64), String> {
    let shape = r#"expected {"counter":"NAME","value":N}"#;
    // A struct would also be read from an array of its fields.
    if !text.trim_start().starts_with('{') {
        return Err(format!("not a JSON object; {shape}"));
    }
    let line: Line = serde_json::from_str(text).map_err(|error| {
        // serde_json places the error within the line ("at line 1 column 9"); the line
        // number that matters is the input's, which the caller adds.
        let error = error.to_string();
        let reason = error.rsplit_once(" at line ").map_or(error.as_str(), |(reason, _)| reason);
        format!("{reason}; {shape}")
    })?;
    let Value::String(counter) = line.counter else {
        return Err(format!("\"counter\" is {}, not a string", line.counter));
    };
    // A JSON integer in range reads as an i64; anything else (1.5, 1e3, "5", null) not.
    let written = line.value.get();
    let value = written.parse::<i64>().map_err(|_| format!("\"value\" is {written}, not a 64-bit integer"))?;
    counter_function::validate::counter_value(value).map_err(|invalid| format!("\"value\": {invalid}"))?;
    checked_name(&counter)?;
    Ok((counter, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_keeps_the_highest_value_of_each_counter_and_skips_blank_lines() {
        let input =
            "{\"counter\":\"b\",\"value\":5}\n\n{\"counter\":\"a\",\"value\":3}\n  \n{\"counter\":\"b\",\"value\":2}\n";
        let wanted = parse_import(input.as_bytes()).unwrap();
        assert_eq!(wanted, BTreeMap::from([("a".to_owned(), 3), ("b".to_owned(), 5)]));
    }

    #[test]
    fn an_import_accepts_1_to_the_largest_value_an_increment_still_fits_above() {
        let max = counter_function::validate::MAX_VALUE;
        let input = format!("{{\"counter\":\"max\",\"value\":{max}}}\n{{\"counter\":\"min\",\"value\":1}}");
        let wanted = parse_import(input.as_bytes()).unwrap();
        assert_eq!(wanted["max"], max);
        assert_eq!(wanted["min"], 1);
    }

    #[test]
    fn a_bad_line_fails_the_import_with_its_number() {
        let good = r#"{"counter":"ok","value":1}"#;
        let cases = [
            ("not json", "not a JSON object"),
            ("[1,2]", "not a JSON object"),
            ("{\"counter\":", "EOF while parsing"),
            (r#"{"value":1}"#, "missing field `counter`"),
            (r#"{"counter":"x"}"#, "missing field `value`"),
            (r#"{"counter":"x","value":1,"counter":"y"}"#, "duplicate field `counter`"),
            (r#"{"counter":7,"value":1}"#, "not a string"),
            (r#"{"counter":"x","value":1.5}"#, "not a 64-bit integer"),
            (r#"{"counter":"x","value":1e3}"#, "\"value\" is 1e3, not a 64-bit integer"),
            (r#"{"counter":"x","value": 5.0 }"#, "\"value\" is 5.0, not"),
            (r#"{"counter":"x","value":"5"}"#, "not a 64-bit integer"),
            (r#"{"counter":"x","value":9223372036854775808}"#, "not a 64-bit integer"),
            (r#"{"counter":"x","value":0}"#, "at least 1"),
            (r#"{"counter":"x","value":-5}"#, "at least 1"),
            (r#"{"counter":"x","value":9223372036854775807}"#, "at most 9223372036853775807"),
            (r#"{"counter":"x","value":null}"#, "not a 64-bit integer"),
            (r#"{"counter":"x","value":1,"extra":true}"#, "unknown field `extra`"),
            (r#"{"counter":"","value":1}"#, "empty"),
            (r#"{"counter":"_counterctl#idempotency#k","value":1}"#, "reserved"),
            (r#"{"counter":"tab\there","value":1}"#, "control characters"),
        ];
        for (bad, says) in cases {
            let input = format!("{good}\n\n{bad}\n{good}\n");
            let error = parse_import(input.as_bytes()).unwrap_err();
            assert_eq!(error.line, 3, "{bad}");
            assert!(error.reason.contains(says), "{bad}: {}", error.reason);
            assert!(!error.reason.contains("column"), "no position within the line: {}", error.reason);
        }
    }

    #[test]
    fn a_line_that_is_not_utf8_fails_the_import_with_its_number() {
        let input = b"{\"counter\":\"a\",\"value\":1}\n{\"counter\":\"\xff\",\"value\":1}\n";
        assert_eq!(parse_import(input), Err(BadLine { line: 2, reason: "not UTF-8".to_owned() }));
    }

    #[test]
    fn changes_are_told_apart_by_the_value_before() {
        assert_eq!(Change::of(&Raised { before: None, after: 5 }), Change::Created);
        assert_eq!(Change::of(&Raised { before: Some(2), after: 5 }), Change::Raised);
        assert_eq!(Change::of(&Raised { before: Some(9), after: 9 }), Change::Unchanged);
    }
}
