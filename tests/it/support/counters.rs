//! `counterctl counters` run as a user runs it, against one store: a DynamoDB table in
//! moto (`--table`), or a `counterctl serve` data directory (`--data-dir`), with or
//! without `serve` running on it. [`on_every_store!`] writes a case once for each.

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::cli::{Run, clean_environment};
use super::serve::{DataDir, Serve};
use super::{Backend, LambdaStack, moto_url};

/// `counterctl counters …` with the options that select one store.
pub(crate) struct Counters {
    target: Vec<String>,
    env: Vec<(&'static str, String)>,
}

impl Counters {
    /// The DynamoDB table `table` in moto.
    pub(crate) fn table(table: &str) -> Self {
        Self::table_at(table, &moto_url())
    }

    /// The DynamoDB table `table`, reached at `endpoint` (a proxy in front of moto).
    pub(crate) fn table_at(table: &str, endpoint: &str) -> Self {
        let mut env = clean_environment();
        env.push(("AWS_ENDPOINT_URL", endpoint.to_owned()));
        env.push(("AWS_REGION", "us-east-1".to_owned()));
        Self { target: vec!["--table".into(), table.into()], env }
    }

    /// The `serve` data directory `dir`.
    pub(crate) fn data_dir(dir: &Path) -> Self {
        Self { target: vec!["--data-dir".into(), dir.display().to_string()], env: clean_environment() }
    }

    fn command(&self, subcommand: &str, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_counterctl"));
        command
            .arg("counters")
            .arg(subcommand)
            .args(args)
            .args(&self.target)
            .env_clear()
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// `counterctl counters SUBCOMMAND ARGS… TARGET`, stdin empty.
    pub(crate) async fn run(&self, subcommand: &str, args: &[&str]) -> Run {
        let output = self.command(subcommand, args).stdin(Stdio::null()).output().await.expect("counterctl runs");
        to_run(output)
    }

    /// As [`run`](Self::run), with `input` on stdin.
    pub(crate) async fn run_with_stdin(&self, subcommand: &str, args: &[&str], input: impl AsRef<[u8]>) -> Run {
        let mut child = self.command(subcommand, args).stdin(Stdio::piped()).spawn().expect("counterctl starts");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.as_ref().to_vec();
        // Written alongside reading the output, so neither pipe can fill up and stall.
        let writer = tokio::spawn(async move {
            // A command that refuses early may close stdin before all was written.
            let _ = stdin.write_all(&input).await;
        });
        let output = child.wait_with_output().await.expect("counterctl runs");
        writer.await.unwrap();
        to_run(output)
    }

    /// `list --output json [ARGS…]`, which must succeed: (name, value) in the printed order.
    pub(crate) async fn list_with(&self, args: &[&str]) -> Vec<(String, i64)> {
        let mut all = vec!["--output", "json"];
        all.extend(args);
        json_lines(&self.run("list", &all).await.ok().stdout)
    }

    /// Every counter, as `list --output json` prints them.
    pub(crate) async fn list(&self) -> Vec<(String, i64)> {
        self.list_with(&[]).await
    }

    /// `set NAME --at-least N --output json`, which must succeed; what it printed.
    pub(crate) async fn set(&self, name: &str, at_least: i64) -> Value {
        self.run("set", &[name, "--at-least", &at_least.to_string(), "--output", "json"]).await.ok().json()
    }

    /// `export` to stdout, which must succeed; what it printed.
    pub(crate) async fn export(&self) -> String {
        self.run("export", &[]).await.ok().stdout
    }

    /// `import --output json` with `input` on stdin (not checked).
    pub(crate) async fn import(&self, input: impl AsRef<[u8]>) -> Run {
        self.run_with_stdin("import", &["--output", "json"], input).await
    }

    /// `import --output json FILE` (not checked).
    pub(crate) async fn import_file(&self, file: &Path) -> Run {
        self.run("import", &[&file.display().to_string(), "--output", "json"]).await
    }
}

fn to_run(output: std::process::Output) -> Run {
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `{"counter":NAME,"value":N}` lines, as `list --output json` and `export` print them.
pub(crate) fn json_lines(text: &str) -> Vec<(String, i64)> {
    text.lines()
        .map(|line| {
            let object: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line:?}"));
            let fields: Vec<&String> = object.as_object().expect("an object").keys().collect();
            assert_eq!(fields.len(), 2, "only counter and value: {line}");
            let name = object["counter"].as_str().unwrap_or_else(|| panic!("a counter name: {line}"));
            let value = object["value"].as_i64().unwrap_or_else(|| panic!("an integer value: {line}"));
            (name.to_owned(), value)
        })
        .collect()
}

/// Import input: one `{"counter":NAME,"value":N}` line per pair.
pub(crate) fn import_lines<'a>(counters: impl IntoIterator<Item = (&'a str, i64)>) -> String {
    counters
        .into_iter()
        .map(|(name, value)| format!("{}\n", serde_json::json!({"counter": name, "value": value})))
        .collect()
}

/// Owned pairs, to compare with what [`Counters::list`] returns.
pub(crate) fn pairs<'a>(counters: impl IntoIterator<Item = (&'a str, i64)>) -> Vec<(String, i64)> {
    counters.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

/// What a store is, and what keeps it alive.
enum Kind {
    /// A LambdaStack: its table, and the API that increments in it.
    Aws(LambdaStack),
    /// `serve` running on a data directory (stopped before the directory is removed).
    Serve { serve: Box<Serve>, _dir: DataDir },
    /// A data directory with no `serve` running.
    DataDir { _dir: DataDir },
}

/// One store of counters: `counterctl counters` for it, and for the AWS and `serve` kinds
/// the counter API on it (as a [`Backend`]).
pub(crate) struct Store {
    pub cli: Counters,
    kind: Kind,
}

impl Store {
    /// A table behind the real function and API Gateway, in `environments` execution
    /// environments.
    pub(crate) async fn aws(environments: usize) -> Self {
        let stack = LambdaStack::start(environments).await;
        Self { cli: Counters::table(&stack.table), kind: Kind::Aws(stack) }
    }

    /// `serve` running on a data directory of its own.
    pub(crate) async fn serve() -> Self {
        let dir = DataDir::new();
        let serve = Box::new(Serve::start_in(dir.path()).await);
        Self { cli: Counters::data_dir(dir.path()), kind: Kind::Serve { serve, _dir: dir } }
    }

    /// An empty data directory, with no `serve`.
    pub(crate) fn data_dir() -> Self {
        let dir = DataDir::new();
        std::fs::create_dir_all(dir.path()).unwrap();
        Self { cli: Counters::data_dir(dir.path()), kind: Kind::DataDir { _dir: dir } }
    }

    /// Another store of the same kind, empty.
    pub(crate) async fn another(&self) -> Self {
        match self.kind {
            Kind::Aws(_) => Self::aws(1).await,
            Kind::Serve { .. } => Self::serve().await,
            Kind::DataDir { .. } => Self::data_dir(),
        }
    }

    /// Makes a new counter `name` with value `value` (≥ 1): through the counter API
    /// (`count=value`) where the store has one, else with `counters set`.
    pub(crate) async fn seed(&self, name: &str, value: i64) {
        if matches!(self.kind, Kind::DataDir { .. }) {
            let set = self.cli.set(name, value).await;
            assert_eq!((set["value"].as_i64(), set["change"].as_str()), (Some(value), Some("created")), "{set}");
            return;
        }
        let encoded: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
        let (status, body) = self.post(&format!("/counter/increment?counter={encoded}&count={value}")).await;
        assert_eq!((status, body["new_value"].as_i64()), (200, Some(value)), "seeding {name:?}: {body}");
    }

    /// Seeds each (name, value).
    pub(crate) async fn seed_all<'a>(&self, counters: impl IntoIterator<Item = (&'a str, i64)>) {
        for (name, value) in counters {
            self.seed(name, value).await;
        }
    }
}

impl Backend for Store {
    fn base_url(&self) -> &str {
        match &self.kind {
            Kind::Aws(stack) => stack.base_url(),
            Kind::Serve { serve, .. } => serve.base_url(),
            Kind::DataDir { .. } => panic!("a data directory without serve has no counter API"),
        }
    }

    fn http(&self) -> &reqwest::Client {
        match &self.kind {
            Kind::Aws(stack) => stack.http(),
            Kind::Serve { serve, .. } => serve.http(),
            Kind::DataDir { .. } => panic!("a data directory without serve has no counter API"),
        }
    }
}

/// Writes a `counterctl counters` case once and runs it on each store: the case becomes a
/// module holding the tests `aws` (a table behind the function and API Gateway), `serve`
/// (`--data-dir` of a running `serve`) and `data_dir` (`--data-dir` with no `serve`); the
/// body gets the store as `Store`. Cases marked `with_increments` increment through the
/// counter API while `counters` runs, so they have no `data_dir` test; they run on four
/// threads, with the function in four execution environments, and get `Arc<Store>`.
macro_rules! on_every_store {
    ($(#[$meta:meta])* async fn $case:ident($store:ident) $body:block) => {
        $(#[$meta])*
        mod $case {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn aws() {
                check($crate::support::counters::Store::aws(1).await).await
            }

            #[tokio::test]
            async fn serve() {
                check($crate::support::counters::Store::serve().await).await
            }

            #[tokio::test]
            async fn data_dir() {
                check($crate::support::counters::Store::data_dir()).await
            }

            async fn check($store: $crate::support::counters::Store) $body
        }
    };
    (with_increments $(#[$meta:meta])* async fn $case:ident($store:ident) $body:block) => {
        $(#[$meta])*
        mod $case {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn aws() {
                check(std::sync::Arc::new($crate::support::counters::Store::aws(4).await)).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn serve() {
                check(std::sync::Arc::new($crate::support::counters::Store::serve().await)).await
            }

            async fn check($store: std::sync::Arc<$crate::support::counters::Store>) $body
        }
    };
}
pub(crate) use on_every_store;
