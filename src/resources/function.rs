//! The Lambda function running the bundled bootstrap, and the permission that lets this
//! stack's API invoke it.

use aws_sdk_lambda::Client;
use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::operation::get_function::GetFunctionOutput;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture, Environment, FunctionCode, FunctionConfiguration, LastUpdateStatus, Runtime, State,
};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{Error, Mode};
use crate::aws::{Account, AwsError, Operation, found, gone};
use crate::progress::Outcome;
use crate::retry::Backoff;
use crate::stack::{PERMISSION_SID, Stack};

const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];
const HANDLER: &str = "bootstrap";
const TABLE_VARIABLE: &str = "TABLE_NAME";
const API_GATEWAY: &str = "apigateway.amazonaws.com";

/// What the function should be.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub zip: Vec<u8>,
    pub architecture: Architecture,
    pub memory_mb: i32,
    pub timeout_seconds: i32,
}

impl FunctionSpec {
    /// Lambda's `CodeSha256`: the base64 SHA-256 of the zip.
    pub fn code_sha256(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&self.zip))
    }
}

pub async fn get(client: &Client, stack: &Stack) -> Result<Option<GetFunctionOutput>, AwsError> {
    found("lambda:GetFunction", client.get_function().function_name(&stack.name).send().await, NOT_FOUND)
}

/// Makes the function match `spec`, given what [`get`] found.
pub async fn ensure(
    client: &Client,
    stack: &Stack,
    existing: Option<GetFunctionOutput>,
    role_arn: &str,
    spec: &FunctionSpec,
    mode: Mode,
) -> Result<((), Outcome), Error> {
    let Some(function) = existing else {
        if mode == Mode::Apply {
            create(client, stack, role_arn, spec).await?;
        }
        return Ok(((), Outcome::Created));
    };
    let Some(config) = function.configuration() else {
        return Err(Error::FunctionFailed {
            name: stack.name.clone(),
            state: "unknown".into(),
            reason: "GetFunction returned no configuration".into(),
        });
    };
    let mut changes = Vec::new();
    let code_sha256 = spec.code_sha256();
    let code_differs =
        config.code_sha256() != Some(code_sha256.as_str()) || config.architectures() != [spec.architecture.clone()];
    if code_differs {
        changes.push(format!(
            "code {} {} → {code_sha256} {}",
            config.code_sha256().unwrap_or("none"),
            config.architectures().first().map_or("?", Architecture::as_str),
            spec.architecture.as_str()
        ));
    }
    let configuration_changes = configuration_changes(config, stack, role_arn, spec);
    changes.extend(configuration_changes.iter().cloned());
    let untagged =
        !stack.tagged(function.tags().into_iter().flatten().map(|(key, value)| (key.as_str(), value.as_str())));
    if untagged {
        changes.push("tag".to_owned());
    }
    if mode == Mode::Plan {
        return Ok(((), Outcome::from_changes(changes)));
    }
    if code_differs {
        wait_updated(client, stack).await?;
        client
            .update_function_code()
            .function_name(&stack.name)
            .zip_file(Blob::new(spec.zip.clone()))
            .architectures(spec.architecture.clone())
            .send()
            .await
            .op("lambda:UpdateFunctionCode")?;
    }
    if !configuration_changes.is_empty() {
        wait_updated(client, stack).await?;
        client
            .update_function_configuration()
            .function_name(&stack.name)
            .role(role_arn)
            .runtime(Runtime::Providedal2023)
            .handler(HANDLER)
            .memory_size(spec.memory_mb)
            .timeout(spec.timeout_seconds)
            .environment(environment(config, stack))
            .send()
            .await
            .op("lambda:UpdateFunctionConfiguration")?;
    }
    if untagged {
        let arn = config.function_arn().unwrap_or_default();
        client.tag_resource().resource(arn).set_tags(Some(stack.tags())).send().await.op("lambda:TagResource")?;
    }
    if code_differs || !configuration_changes.is_empty() {
        wait_updated(client, stack).await?;
    }
    Ok(((), Outcome::from_changes(changes)))
}

fn configuration_changes(
    config: &FunctionConfiguration,
    stack: &Stack,
    role_arn: &str,
    spec: &FunctionSpec,
) -> Vec<String> {
    let mut changes = Vec::new();
    let mut differs = |field: &str, current: String, wanted: String| {
        if current != wanted {
            changes.push(format!("{field} {current} → {wanted}"));
        }
    };
    differs("role", config.role().unwrap_or("none").into(), role_arn.into());
    differs(
        "runtime",
        config.runtime().map_or("none", Runtime::as_str).into(),
        Runtime::Providedal2023.as_str().into(),
    );
    differs("handler", config.handler().unwrap_or("none").into(), HANDLER.into());
    differs("memory", format!("{} MB", config.memory_size().unwrap_or(0)), format!("{} MB", spec.memory_mb));
    differs("timeout", format!("{} s", config.timeout().unwrap_or(0)), format!("{} s", spec.timeout_seconds));
    let table = config.environment().and_then(|env| env.variables()).and_then(|vars| vars.get(TABLE_VARIABLE));
    differs(TABLE_VARIABLE, table.map_or("unset", String::as_str).into(), stack.table.clone());
    changes
}

/// The function's variables with `TABLE_NAME` set; others the user added are kept.
fn environment(config: &FunctionConfiguration, stack: &Stack) -> Environment {
    let mut variables = config.environment().and_then(|env| env.variables()).cloned().unwrap_or_default();
    variables.insert(TABLE_VARIABLE.to_owned(), stack.table.clone());
    Environment::builder().set_variables(Some(variables)).build()
}

/// Whether CreateFunction failed only because IAM has not yet propagated a new role.
fn role_not_yet_assumable<E: ProvideErrorMetadata, R>(error: &aws_sdk_lambda::error::SdkError<E, R>) -> bool {
    error.code() == Some("InvalidParameterValueException")
        && error.message().is_some_and(|message| message.contains("cannot be assumed by Lambda"))
}

async fn create(client: &Client, stack: &Stack, role_arn: &str, spec: &FunctionSpec) -> Result<(), Error> {
    let create = || {
        client
            .create_function()
            .function_name(&stack.name)
            .description("counterctl: sequential unique IDs")
            .runtime(Runtime::Providedal2023)
            .handler(HANDLER)
            .role(role_arn)
            .architectures(spec.architecture.clone())
            .memory_size(spec.memory_mb)
            .timeout(spec.timeout_seconds)
            .environment(Environment::builder().variables(TABLE_VARIABLE, &stack.table).build())
            .code(FunctionCode::builder().zip_file(Blob::new(spec.zip.clone())).build())
            .set_tags(Some(stack.tags()))
            .send()
    };
    // A role created seconds ago is not yet assumable by Lambda.
    let created = Backoff::ABOUT_TWO_MINUTES.retry(create, role_not_yet_assumable).await.op("lambda:CreateFunction")?;
    if created.state() != Some(&State::Active) {
        wait_updated(client, stack).await?;
    }
    Ok(())
}

/// Waits until the function is Active and no update is in progress.
async fn wait_updated(client: &Client, stack: &Stack) -> Result<(), Error> {
    let backoff = Backoff::POLL;
    let settled = backoff
        .poll(|| async {
            let config = client
                .get_function_configuration()
                .function_name(&stack.name)
                .send()
                .await
                .op("lambda:GetFunctionConfiguration")?;
            if config.state() == Some(&State::Failed) || config.last_update_status() == Some(&LastUpdateStatus::Failed)
            {
                let reason = config.state_reason().or(config.last_update_status_reason()).unwrap_or("no reason given");
                let state = config.state().map_or("unknown", State::as_str).to_owned();
                return Err(Error::FunctionFailed { name: stack.name.clone(), state, reason: reason.to_owned() });
            }
            let active = config.state().is_none_or(|state| state == &State::Active);
            let updated = config.last_update_status() != Some(&LastUpdateStatus::InProgress);
            Ok(active && updated)
        })
        .await?;
    if !settled {
        return Err(Error::Timeout {
            what: format!("function {}", stack.name),
            seconds: backoff.give_up_after.as_secs(),
        });
    }
    Ok(())
}

/// Lets API Gateway invoke the function, from this API only. Real AWS refuses a
/// duplicate statement id, so the policy is read first.
pub async fn ensure_permission(
    client: &Client,
    stack: &Stack,
    account: &Account,
    api_id: Option<&str>,
    mode: Mode,
) -> Result<((), Outcome), Error> {
    let Some(api_id) = api_id else {
        return Ok(((), Outcome::Created));
    };
    let policy = found("lambda:GetPolicy", client.get_policy().function_name(&stack.name).send().await, NOT_FOUND)?;
    let statement = policy
        .and_then(|policy| policy.policy)
        .and_then(|policy| serde_json::from_str::<serde_json::Value>(&policy).ok())
        .and_then(|policy| {
            policy["Statement"].as_array()?.iter().find(|statement| statement["Sid"] == PERMISSION_SID).cloned()
        });
    let source_arn = stack.source_arn(account, api_id);
    let outcome = match statement {
        None => Outcome::Created,
        Some(statement) if permits(&statement, &source_arn) => return Ok(((), Outcome::Unchanged)),
        Some(_) => Outcome::Updated { changes: vec![format!("limit to {source_arn}")] },
    };
    if mode == Mode::Plan {
        return Ok(((), outcome));
    }
    if outcome != Outcome::Created {
        remove_permission(client, stack).await?;
    }
    client
        .add_permission()
        .function_name(&stack.name)
        .statement_id(PERMISSION_SID)
        .action("lambda:InvokeFunction")
        .principal(API_GATEWAY)
        .source_arn(&source_arn)
        .send()
        .await
        .op("lambda:AddPermission")?;
    Ok(((), outcome))
}

fn permits(statement: &serde_json::Value, source_arn: &str) -> bool {
    statement["Effect"] == "Allow"
        && statement["Action"] == "lambda:InvokeFunction"
        && statement["Principal"]["Service"] == API_GATEWAY
        && statement["Condition"]["ArnLike"]["AWS:SourceArn"] == source_arn
}

/// `false` when there was no such permission (or no function).
pub async fn remove_permission(client: &Client, stack: &Stack) -> Result<bool, AwsError> {
    let removed = client.remove_permission().function_name(&stack.name).statement_id(PERMISSION_SID).send().await;
    gone("lambda:RemovePermission", removed, NOT_FOUND)
}

pub async fn delete(client: &Client, stack: &Stack) -> Result<bool, AwsError> {
    gone("lambda:DeleteFunction", client.delete_function().function_name(&stack.name).send().await, NOT_FOUND)
}
