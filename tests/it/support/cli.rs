//! counterctl run as a real process against moto, through an [`AwsProxy`] that records
//! every AWS call and can inject faults; plus SDK clients that read moto directly (not
//! through the proxy) to check what counterctl made.

use std::path::PathBuf;
use std::process::Stdio;

use aws_config::SdkConfig;
use serde_json::Value;

use super::aws_proxy::AwsProxy;
use super::{moto_url, unique_name};

pub(crate) const REGION: &str = "us-east-1";
/// moto's account.
pub(crate) const ACCOUNT: &str = "123456789012";
/// The role's inline policy for [`REGION`].
pub(crate) const REGION_POLICY: &str = "counterctl-us-east-1";

/// What one counterctl process did.
#[derive(Debug)]
pub(crate) struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub(crate) fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics with the output unless the process exited 0.
    pub(crate) fn ok(self) -> Self {
        assert!(self.success(), "counterctl exited {}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr);
        self
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|_| panic!("stdout is not JSON: {}", self.stdout))
    }
}

/// An environment with credentials for moto and nothing from this machine's AWS setup.
pub(crate) fn clean_environment() -> Vec<(&'static str, String)> {
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    vec![
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOME", home.display().to_string()),
        ("AWS_CONFIG_FILE", home.join("no-config").display().to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials").display().to_string()),
        // No instance metadata lookups (they take seconds to time out off EC2).
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
    ]
}

/// Runs counterctl with exactly `env` as its environment.
pub(crate) async fn counterctl_with_env(args: &[&str], env: &[(&str, String)]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_counterctl"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .output()
        .await
        .expect("counterctl runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub(crate) async fn counterctl(args: &[&str]) -> Run {
    counterctl_with_env(args, &clean_environment()).await
}

/// One stack with names no other test uses, installed through its own proxy.
pub(crate) struct Deployment {
    pub proxy: AwsProxy,
    pub name: String,
    pub table: String,
    pub aws: SdkConfig,
}

impl Deployment {
    pub(crate) async fn new() -> Self {
        let proxy = AwsProxy::start(&moto_url()).await;
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
            .endpoint_url(moto_url())
            .load()
            .await;
        Self { proxy, name: unique_name("Counter"), table: unique_name("Counters"), aws }
    }

    /// Runs `counterctl COMMAND [args]` for this stack through the proxy.
    pub(crate) async fn run(&self, command: &str, args: &[&str]) -> Run {
        let mut all = vec![command, "--endpoint-url", &self.proxy.url, "--region", REGION];
        all.extend(["--name", &self.name, "--table", &self.table]);
        all.extend(args);
        counterctl(&all).await
    }

    pub(crate) async fn install(&self) -> Run {
        self.run("install", &[]).await.ok()
    }

    /// The mutating AWS actions `work` made.
    pub(crate) async fn mutations_of<T>(&self, work: impl Future<Output = T>) -> (T, Vec<String>) {
        let before = self.proxy.actions().len();
        let result = work.await;
        let actions = self.proxy.actions()[before..].to_vec();
        (result, actions.into_iter().filter(|action| super::aws_proxy::is_mutating(action)).collect())
    }

    /// Writes counter `name` at `value` into `table` behind counterctl's back.
    pub(crate) async fn put_counter(&self, table: &str, name: &str, value: i64) {
        use aws_sdk_dynamodb::types::AttributeValue;
        let put = self.dynamodb().put_item().table_name(table).item("id", AttributeValue::S(name.into()));
        put.item("lastValue", AttributeValue::N(value.to_string())).send().await.unwrap();
    }

    pub(crate) fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.aws)
    }

    pub(crate) fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.aws)
    }

    /// Removes the API Gateway permission from the function's alias behind counterctl's
    /// back.
    pub(crate) async fn delete_permission(&self) {
        let remove = self.lambda().remove_permission().function_name(&self.name).qualifier("live");
        remove.statement_id("counterctl-apigateway-invoke").send().await.unwrap();
    }

    /// Deletes the role's inline policy behind counterctl's back.
    pub(crate) async fn delete_inline_policy(&self) {
        let delete = self.iam().delete_role_policy().role_name(&self.name).policy_name(REGION_POLICY);
        delete.send().await.unwrap();
    }

    pub(crate) fn lambda(&self) -> aws_sdk_lambda::Client {
        aws_sdk_lambda::Client::new(&self.aws)
    }

    pub(crate) fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        aws_sdk_cloudwatchlogs::Client::new(&self.aws)
    }

    pub(crate) fn apigateway(&self) -> aws_sdk_apigateway::Client {
        aws_sdk_apigateway::Client::new(&self.aws)
    }

    /// The id of the API named after this stack, if there is one.
    pub(crate) async fn api_id(&self) -> Option<String> {
        let apis = self.apigateway().get_rest_apis().limit(500).send().await.unwrap();
        apis.items().iter().find(|api| api.name() == Some(&self.name)).and_then(|api| api.id.clone())
    }

    pub(crate) async fn table_exists(&self) -> bool {
        self.dynamodb().describe_table().table_name(&self.table).send().await.is_ok()
    }

    pub(crate) async fn function_exists(&self) -> bool {
        self.lambda().get_function().function_name(&self.name).send().await.is_ok()
    }

    pub(crate) async fn role_exists(&self) -> bool {
        self.iam().get_role().role_name(&self.name).send().await.is_ok()
    }

    /// The statements of the function's own resource policy (a function URL's from
    /// before the alias).
    pub(crate) async fn function_statements(&self) -> Vec<Value> {
        self.policy_statements(None).await
    }

    /// The resource policy statements of the function's alias, which the fronts invoke.
    pub(crate) async fn permission_statements(&self) -> Vec<Value> {
        self.policy_statements(Some("live")).await
    }

    /// The statements of the resource policy of `qualifier`, or of the function itself.
    async fn policy_statements(&self, qualifier: Option<&str>) -> Vec<Value> {
        let get = self.lambda().get_policy().function_name(&self.name).set_qualifier(qualifier.map(str::to_owned));
        match get.send().await {
            Ok(policy) => {
                let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
                policy["Statement"].as_array().cloned().unwrap_or_default()
            }
            Err(_) => Vec::new(),
        }
    }
}
