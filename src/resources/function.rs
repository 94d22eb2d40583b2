//! The Lambda function running the bundled bootstrap, and the permission that lets this
//! stack's API invoke it.
//!
//! Lambda rejects calls on a function that is Pending, or whose last update is still
//! InProgress (https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html: "Any
//! invocations or other API actions that operate on the function will fail"; "wait for
//! the function to become active before performing additional actions"), so every write
//! here first waits for [`wait_ready`]. Inactive (idle long enough for Lambda to reclaim
//! its resources) is a normal state: calls on it are accepted.

use std::collections::BTreeMap;

use aws_sdk_lambda::Client;
use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Environment, FunctionCode, LastUpdateStatus, Runtime, State};

use counter_function::dynamo::DEFAULT_TABLE;

use super::Error;
use super::function_url::{PUBLIC_INVOKE_SID, PUBLIC_URL_SID};
use crate::aws::{AwsError, Operation, found, gone, has_code};
use crate::retry::Backoff;
use crate::stack::{PERMISSION_SID, Stack};

const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];
pub const HANDLER: &str = "bootstrap";
pub const RUNTIME: Runtime = Runtime::Providedal2023;
pub const TABLE_VARIABLE: &str = "TABLE_NAME";
pub const API_GATEWAY: &str = "apigateway.amazonaws.com";

/// The function as deployed.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionState {
    pub arn: String,
    pub code_sha256: String,
    /// `x86_64` or `arm64`.
    pub architecture: String,
    pub memory_mb: i32,
    pub timeout_seconds: i32,
    pub role: String,
    pub runtime: String,
    pub handler: String,
    pub variables: BTreeMap<String, String>,
    pub tagged: bool,
    /// Neither Pending nor with an update InProgress: calls on it are accepted.
    pub ready: bool,
    /// Its reserved concurrency, if it has one.
    pub reserved_concurrency: Option<i32>,
    /// The statement with [`PERMISSION_SID`] in the function's resource policy.
    pub permission: Option<serde_json::Value>,
    /// How many of the two statements that let anyone call its URL (`--front
    /// function-url --auth none`) its policy has: 2 when public, 0 when not, 1 after a
    /// half-done change.
    pub public_statements: u8,
}

impl FunctionState {
    /// The table the function reads and writes: `TABLE_NAME`, else the function's default
    /// (the original service's table).
    pub fn table(&self) -> &str {
        table_in(self.variables.get(TABLE_VARIABLE))
    }
}

/// The table a function with this `TABLE_NAME` uses: the function's default when it has
/// none.
fn table_in(variable: Option<&String>) -> &str {
    variable.filter(|table| !table.is_empty()).map_or(DEFAULT_TABLE, String::as_str)
}

/// The table the function uses ([`FunctionState::table`]), from its configuration alone;
/// `None` when there is no such function.
pub async fn read_table(client: &Client, stack_name: &str) -> Result<Option<String>, AwsError> {
    let configuration = client.get_function_configuration().function_name(stack_name).send().await;
    let Some(configuration) = found("lambda:GetFunctionConfiguration", configuration, NOT_FOUND)? else {
        return Ok(None);
    };
    let variables = configuration.environment().and_then(|environment| environment.variables());
    Ok(Some(table_in(variables.and_then(|variables| variables.get(TABLE_VARIABLE))).to_owned()))
}

/// What the function should run: the zip and its instruction set.
#[derive(Debug, Clone, PartialEq)]
pub struct Code {
    pub zip: std::sync::Arc<Vec<u8>>,
    pub sha256: String,
    pub architecture: Architecture,
}

/// The function's configuration as install sets it.
#[derive(Debug, Clone)]
pub struct Configuration<'a> {
    pub role: &'a str,
    pub memory_mb: i32,
    pub timeout_seconds: i32,
    pub variables: BTreeMap<String, String>,
}

/// Reads the function and its permission statement.
pub async fn read(client: &Client, stack_name: &str) -> Result<Option<FunctionState>, AwsError> {
    // GetFunctionConcurrency, not GetFunction's `Concurrency`: that one is left out by
    // moto when the reserved concurrency is 0, the value a stopped function has.
    let (function, policy, concurrency) = tokio::join!(
        client.get_function().function_name(stack_name).send(),
        client.get_policy().function_name(stack_name).send(),
        client.get_function_concurrency().function_name(stack_name).send(),
    );
    let Some(function) = found("lambda:GetFunction", function, NOT_FOUND)? else {
        return Ok(None);
    };
    let statements: Vec<serde_json::Value> = found("lambda:GetPolicy", policy, NOT_FOUND)?
        .and_then(|policy| policy.policy)
        .and_then(|policy| serde_json::from_str::<serde_json::Value>(&policy).ok())
        .and_then(|policy| policy["Statement"].as_array().cloned())
        .unwrap_or_default();
    let statement = |sid: &str| statements.iter().find(|statement| statement["Sid"] == sid);
    let permission = statement(PERMISSION_SID).cloned();
    let public_statements =
        u8::from(statement(PUBLIC_URL_SID).is_some()) + u8::from(statement(PUBLIC_INVOKE_SID).is_some());
    let tagged = Stack::tagged_map(stack_name, function.tags());
    let concurrency = found("lambda:GetFunctionConcurrency", concurrency, NOT_FOUND)?;
    let reserved_concurrency = concurrency.and_then(|concurrency| concurrency.reserved_concurrent_executions());
    let Some(config) = function.configuration else {
        return Err(AwsError {
            operation: "lambda:GetFunction",
            code: None,
            message: "the answer has no configuration".into(),
        });
    };
    Ok(Some(FunctionState {
        arn: config.function_arn().unwrap_or_default().to_owned(),
        code_sha256: config.code_sha256().unwrap_or_default().to_owned(),
        architecture: config.architectures().first().map_or("x86_64", Architecture::as_str).to_owned(),
        memory_mb: config.memory_size().unwrap_or(0),
        timeout_seconds: config.timeout().unwrap_or(0),
        role: config.role().unwrap_or_default().to_owned(),
        runtime: config.runtime().map_or("none", Runtime::as_str).to_owned(),
        handler: config.handler().unwrap_or("none").to_owned(),
        variables: config
            .environment()
            .and_then(|env| env.variables())
            .map(|variables| variables.iter().map(|(key, value)| (key.clone(), value.clone())).collect())
            .unwrap_or_default(),
        tagged,
        ready: config.state() != Some(&State::Pending)
            && config.last_update_status() != Some(&LastUpdateStatus::InProgress),
        reserved_concurrency,
        permission,
        public_statements,
    }))
}

/// Whether a call failed only because IAM has not yet propagated a role (new, or newly
/// given to the function) to Lambda.
fn role_not_yet_assumable<E: ProvideErrorMetadata, R>(error: &aws_sdk_lambda::error::SdkError<E, R>) -> bool {
    error.code() == Some("InvalidParameterValueException")
        && error.message().is_some_and(|message| message.contains("cannot be assumed by Lambda"))
}

/// Creates the function; `false` when it exists already (a create whose answer was
/// lost): the caller then brings that one up to date.
pub async fn create(
    client: &Client,
    stack: &Stack,
    code: &Code,
    configuration: &Configuration<'_>,
) -> Result<bool, Error> {
    let create = || {
        client
            .create_function()
            .function_name(&stack.name)
            .description("counterctl: sequential unique IDs")
            .runtime(RUNTIME)
            .handler(HANDLER)
            .role(configuration.role)
            .architectures(code.architecture.clone())
            .memory_size(configuration.memory_mb)
            .timeout(configuration.timeout_seconds)
            .environment(environment(configuration))
            .code(FunctionCode::builder().zip_file(Blob::new(code.zip.as_slice())).build())
            .set_tags(Some(stack.tags()))
            .send()
    };
    // A role created seconds ago is not yet assumable by Lambda.
    match Backoff::ABOUT_TWO_MINUTES.retry(create, role_not_yet_assumable).await {
        Err(error) if has_code(&error, &["ResourceConflictException"]) => return Ok(false),
        created => created.op("lambda:CreateFunction")?,
    };
    wait_ready(client, &stack.name).await?;
    Ok(true)
}

fn environment(configuration: &Configuration<'_>) -> Environment {
    let variables = configuration.variables.iter().map(|(key, value)| (key.clone(), value.clone())).collect();
    Environment::builder().set_variables(Some(variables)).build()
}

/// Whether a call failed because another update of the function (a concurrent install)
/// is in progress: it is waited for, and the call made again.
fn updating<E: ProvideErrorMetadata, R>(error: &aws_sdk_lambda::error::SdkError<E, R>) -> bool {
    error.code() == Some("ResourceConflictException")
}

pub async fn update_code(client: &Client, stack: &Stack, code: &Code) -> Result<(), Error> {
    wait_ready(client, &stack.name).await?;
    let update = || {
        client
            .update_function_code()
            .function_name(&stack.name)
            .zip_file(Blob::new(code.zip.as_slice()))
            .architectures(code.architecture.clone())
            .send()
    };
    Backoff::POLL.retry(update, updating).await.op("lambda:UpdateFunctionCode")?;
    Ok(())
}

/// Sets the whole configuration. A role given to the function a moment ago may not be
/// assumable yet, as on CreateFunction: waited out the same way.
pub async fn update_configuration(
    client: &Client,
    stack: &Stack,
    configuration: &Configuration<'_>,
) -> Result<(), Error> {
    wait_ready(client, &stack.name).await?;
    let update = || {
        client
            .update_function_configuration()
            .function_name(&stack.name)
            .role(configuration.role)
            .runtime(RUNTIME)
            .handler(HANDLER)
            .memory_size(configuration.memory_mb)
            .timeout(configuration.timeout_seconds)
            .environment(environment(configuration))
            .send()
    };
    let retryable = |error: &_| role_not_yet_assumable(error) || updating(error);
    Backoff::ABOUT_TWO_MINUTES.retry(update, retryable).await.op("lambda:UpdateFunctionConfiguration")?;
    Ok(())
}

/// Sets the function's reserved concurrency (`None`: unreserved); 0 refuses every
/// invocation.
pub async fn set_concurrency(client: &Client, stack: &Stack, reserved: Option<i32>) -> Result<(), AwsError> {
    match reserved {
        Some(reserved) => {
            let put = client.put_function_concurrency().function_name(&stack.name);
            put.reserved_concurrent_executions(reserved).send().await.op("lambda:PutFunctionConcurrency")?;
        }
        None => {
            let delete = client.delete_function_concurrency().function_name(&stack.name).send().await;
            delete.op("lambda:DeleteFunctionConcurrency")?;
        }
    }
    Ok(())
}

pub async fn tag(client: &Client, stack: &Stack, arn: &str) -> Result<(), Error> {
    wait_ready(client, &stack.name).await?;
    client.tag_resource().resource(arn).set_tags(Some(stack.tags())).send().await.op("lambda:TagResource")?;
    Ok(())
}

/// Waits until the function is not Pending and no update is InProgress.
pub async fn wait_ready(client: &Client, name: &str) -> Result<(), Error> {
    let backoff = Backoff::POLL;
    let settled = backoff
        .poll(|| async {
            let config = client
                .get_function_configuration()
                .function_name(name)
                .send()
                .await
                .op("lambda:GetFunctionConfiguration")?;
            if config.state() == Some(&State::Failed) || config.last_update_status() == Some(&LastUpdateStatus::Failed)
            {
                let reason = config.state_reason().or(config.last_update_status_reason()).unwrap_or("no reason given");
                let state = config.state().map_or("unknown", State::as_str).to_owned();
                return Err(Error::FunctionFailed { name: name.to_owned(), state, reason: reason.to_owned() });
            }
            let pending = config.state() == Some(&State::Pending);
            let updating = config.last_update_status() == Some(&LastUpdateStatus::InProgress);
            Ok(!pending && !updating)
        })
        .await?;
    if !settled {
        return Err(Error::Timeout { what: format!("function {name}"), seconds: backoff.give_up_after.as_secs() });
    }
    Ok(())
}

/// Whether a permission statement lets API Gateway invoke the function from exactly
/// `source_arn`.
pub fn permits(statement: &serde_json::Value, source_arn: &str) -> bool {
    statement["Effect"] == "Allow"
        && statement["Action"] == "lambda:InvokeFunction"
        && statement["Principal"]["Service"] == API_GATEWAY
        && statement["Condition"]["ArnLike"]["AWS:SourceArn"] == source_arn
}

/// Lets API Gateway invoke the function from `source_arn`; the caller has waited for
/// [`wait_ready`]. Real AWS refuses a duplicate statement id (ResourceConflictException),
/// which a concurrent install or a lost answer can cause: then the statement there is
/// read, and replaced only if it differs.
pub async fn add_permission(client: &Client, stack: &Stack, source_arn: &str) -> Result<(), Error> {
    let add = || {
        client
            .add_permission()
            .function_name(&stack.name)
            .statement_id(PERMISSION_SID)
            .action("lambda:InvokeFunction")
            .principal(API_GATEWAY)
            .source_arn(source_arn)
            .send()
    };
    match add().await {
        Err(error) if has_code(&error, &["ResourceConflictException"]) => {
            let current = read(client, &stack.name).await?.and_then(|function| function.permission);
            if current.is_some_and(|statement| permits(&statement, source_arn)) {
                return Ok(());
            }
            remove_permission(client, stack).await?;
            add().await.op("lambda:AddPermission")?;
        }
        added => {
            added.op("lambda:AddPermission")?;
        }
    }
    Ok(())
}

/// `false` when there was no such permission (or no function).
pub async fn remove_permission(client: &Client, stack: &Stack) -> Result<bool, Error> {
    wait_ready_if_there(client, &stack.name).await?;
    let removed = client.remove_permission().function_name(&stack.name).statement_id(PERMISSION_SID).send().await;
    Ok(gone("lambda:RemovePermission", removed, NOT_FOUND)?)
}

pub async fn delete(client: &Client, stack_name: &str) -> Result<bool, AwsError> {
    gone("lambda:DeleteFunction", client.delete_function().function_name(stack_name).send().await, NOT_FOUND)
}

async fn wait_ready_if_there(client: &Client, name: &str) -> Result<(), Error> {
    match wait_ready(client, name).await {
        Err(Error::Aws(error)) if error.code.as_deref() == Some("ResourceNotFoundException") => Ok(()),
        result => result,
    }
}
