//! The shipped bootstrap, unzipped from `assets/`, run as Lambda runs it: a process with
//! Lambda's environment that serves invocations through the Runtime API.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::runtime_api::{Outcome, RuntimeApi};

/// The bootstrap from the x86_64 zip counterctl embeds, extracted once per test run, or
/// the binary `COUNTERCTL_BOOTSTRAP` names (to compare builds; CI never sets it).
pub(crate) fn bootstrap_path() -> &'static Path {
    static BOOTSTRAP: OnceLock<PathBuf> = OnceLock::new();
    BOOTSTRAP.get_or_init(|| {
        if let Ok(path) = std::env::var("COUNTERCTL_BOOTSTRAP") {
            return PathBuf::from(path);
        }
        let zip_path = super::repo_root().join("assets/bootstrap-x86_64.zip");
        let file = std::fs::File::open(&zip_path).expect("assets/bootstrap-x86_64.zip exists");
        let mut archive = zip::ZipArchive::new(file).expect("a zip");
        let directory = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("lambda-task-{}", std::process::id()));
        archive.extract(&directory).expect("the zip extracts");
        directory.join("bootstrap")
    })
}

/// One function: its Runtime API and the execution environments (processes) polling it.
pub(crate) struct Function {
    pub runtime: RuntimeApi,
    environments: Mutex<Vec<Child>>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Function {
    /// Starts `environments` bootstraps for `table`, with DynamoDB at `endpoint`, and
    /// waits until each has initialized (polled for its first invocation).
    pub(crate) async fn start(table: &str, endpoint: &str, environments: usize) -> Self {
        Self::start_in("us-east-1", table, endpoint, environments).await
    }

    /// As [`start`](Self::start), for the function of a stack's region `region`.
    pub(crate) async fn start_in(region: &str, table: &str, endpoint: &str, environments: usize) -> Self {
        let runtime = RuntimeApi::start().await;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut polls = runtime.next_polls();
        let children =
            (0..environments).map(|_| spawn_environment(&runtime, (region, table, endpoint), &logs)).collect();
        let ready = polls.wait_for(|polls| *polls >= environments as u64);
        tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .unwrap_or_else(|_| panic!("bootstraps did not start; init errors: {:?}", runtime.init_errors()))
            .unwrap();
        Self { runtime, environments: Mutex::new(children), logs }
    }

    pub(crate) async fn invoke(&self, event: Value) -> Outcome {
        self.runtime.invoke(event).await
    }

    /// Everything the environments wrote to stdout and stderr so far, a line each.
    pub(crate) fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// CPU time (user + system) the environments used so far, from /proc.
    #[allow(dead_code, reason = "for benches/function.rs, which shares this module")]
    pub(crate) fn cpu_time(&self) -> Duration {
        // Linux reports it in clock ticks of 1/100 s (USER_HZ).
        const TICKS_PER_SECOND: u64 = 100;
        let ticks: u64 = self
            .environments
            .lock()
            .unwrap()
            .iter()
            .filter_map(Child::id)
            .map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("a running process");
                // Fields after the parenthesised command name; utime and stime are 14 and 15.
                let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
                fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
            })
            .sum();
        Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
    }

    /// Whether every environment is still running.
    pub(crate) fn all_running(&self) -> bool {
        self.environments.lock().unwrap().iter_mut().all(|child| matches!(child.try_wait(), Ok(None)))
    }
}

/// Lambda's environment for a `provided.al2023` function, plus the DynamoDB endpoint.
pub(crate) fn lambda_environment(
    runtime_api: &str,
    (region, table, endpoint): (&str, &str, &str),
) -> Vec<(&'static str, String)> {
    let task_root = bootstrap_path().parent().unwrap().display().to_string();
    vec![
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", "AtomicCounter".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/AtomicCounter".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/24/[$LATEST]0123456789abcdef".into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_REGION", region.to_owned()),
        ("AWS_DEFAULT_REGION", region.to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".into()),
        ("AWS_ACCESS_KEY_ID", "ASIATESTTESTTESTTEST".into()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".into()),
        ("AWS_SESSION_TOKEN", "test-session-token".into()),
        ("_HANDLER", "bootstrap".into()),
        ("LAMBDA_TASK_ROOT", task_root.clone()),
        ("LAMBDA_RUNTIME_DIR", task_root),
        ("LANG", "en_US.UTF-8".into()),
        ("TZ", ":UTC".into()),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".into()),
        ("TABLE_NAME", table.to_owned()),
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
    ]
}

/// One execution environment of the function in `region`, for `table`, with DynamoDB at
/// `endpoint`.
pub(crate) fn spawn_environment(
    runtime: &RuntimeApi,
    (region, table, endpoint): (&str, &str, &str),
    logs: &Arc<Mutex<Vec<String>>>,
) -> Child {
    let environment = lambda_environment(&runtime.address.to_string(), (region, table, endpoint));
    let mut child = Command::new(bootstrap_path())
        .current_dir(bootstrap_path().parent().unwrap())
        .env_clear()
        .envs(environment)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bootstrap starts");
    collect_lines(child.stdout.take().unwrap(), Arc::clone(logs));
    collect_lines(child.stderr.take().unwrap(), Arc::clone(logs));
    child
}

fn collect_lines(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static, logs: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            logs.lock().unwrap().push(line);
        }
    });
}
