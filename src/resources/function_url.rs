//! The Lambda Function URL front (`--front function-url`): the function's own HTTPS
//! endpoint, at no charge of its own, in place of the REST API.
//!
//! Since October 2025 a new function URL needs both `lambda:InvokeFunctionUrl` and
//! `lambda:InvokeFunction` (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html:
//! "Starting in October 2025, new function URLs will require both
//! lambda:InvokeFunctionUrl and lambda:InvokeFunction permissions"). With auth type
//! `AWS_IAM`, callers of the same account get both from their own identity policy
//! (`counterctl status --caller-policy`); with `NONE`, "your function's resource-based
//! policy is always in effect and must grant public access", so install adds both as
//! public statements.

use aws_sdk_lambda::Client;
use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::types::FunctionUrlAuthType;

use crate::aws::{AwsError, Operation, found, gone, has_code};
use crate::stack::Stack;

const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];
/// The public statements of `--auth none`: the URL, and the invocation behind it.
pub const PUBLIC_URL_SID: &str = "counterctl-function-url-public";
pub const PUBLIC_INVOKE_SID: &str = "counterctl-function-url-public-invoke";

/// The function's URL as deployed.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlState {
    pub url: String,
    /// `AWS_IAM` or `NONE`.
    pub auth_type: String,
}

pub async fn read(client: &Client, stack_name: &str) -> Result<Option<UrlState>, AwsError> {
    let config = client.get_function_url_config().function_name(stack_name).send().await;
    Ok(found("lambda:GetFunctionUrlConfig", config, NOT_FOUND)?
        .map(|config| UrlState { url: config.function_url, auth_type: config.auth_type.as_str().to_owned() }))
}

/// Creates the URL (one made by a concurrent install is updated instead); returns it.
pub async fn create(client: &Client, stack: &Stack, auth_type: &str) -> Result<String, AwsError> {
    let created = client
        .create_function_url_config()
        .function_name(&stack.name)
        .auth_type(FunctionUrlAuthType::from(auth_type))
        .send()
        .await;
    match created {
        Err(error) if has_code(&error, &["ResourceConflictException"]) => update(client, stack, auth_type).await,
        created => Ok(created.op("lambda:CreateFunctionUrlConfig")?.function_url),
    }
}

pub async fn update(client: &Client, stack: &Stack, auth_type: &str) -> Result<String, AwsError> {
    let updated = client
        .update_function_url_config()
        .function_name(&stack.name)
        .auth_type(FunctionUrlAuthType::from(auth_type))
        .send()
        .await
        .op("lambda:UpdateFunctionUrlConfig")?;
    Ok(updated.function_url)
}

pub async fn delete(client: &Client, stack_name: &str) -> Result<bool, AwsError> {
    let deleted = client.delete_function_url_config().function_name(stack_name).send().await;
    gone("lambda:DeleteFunctionUrlConfig", deleted, NOT_FOUND)
}

/// Lets anyone call the URL (`--auth none`); a statement there already is kept. The
/// caller has waited for the function to be ready (no update in progress).
pub async fn allow_public(client: &Client, stack: &Stack) -> Result<(), AwsError> {
    let url = client
        .add_permission()
        .function_name(&stack.name)
        .statement_id(PUBLIC_URL_SID)
        .action("lambda:InvokeFunctionUrl")
        .principal("*")
        .function_url_auth_type(FunctionUrlAuthType::None)
        .send()
        .await;
    tolerate_existing("lambda:AddPermission", url)?;
    let invoke = client
        .add_permission()
        .function_name(&stack.name)
        .statement_id(PUBLIC_INVOKE_SID)
        .action("lambda:InvokeFunction")
        .principal("*")
        .invoked_via_function_url(true)
        .send()
        .await;
    tolerate_existing("lambda:AddPermission", invoke)
}

/// Takes the public statements away again.
pub async fn remove_public(client: &Client, stack: &Stack) -> Result<(), AwsError> {
    for sid in [PUBLIC_URL_SID, PUBLIC_INVOKE_SID] {
        let removed = client.remove_permission().function_name(&stack.name).statement_id(sid).send().await;
        gone("lambda:RemovePermission", removed, NOT_FOUND)?;
    }
    Ok(())
}

fn already_exists<E: ProvideErrorMetadata, R>(error: &aws_sdk_lambda::error::SdkError<E, R>) -> bool {
    error.message().is_some_and(|message| message.contains("already exists"))
}

fn tolerate_existing<T, E, R>(
    operation: &'static str,
    result: Result<T, aws_sdk_lambda::error::SdkError<E, R>>,
) -> Result<(), AwsError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    // Lambda answers ResourceConflictException both for a statement id there already
    // (fine: the statement is ours) and for an update in progress (not fine).
    match result {
        Err(error) if has_code(&error, &["ResourceConflictException"]) && already_exists(&error) => Ok(()),
        result => result.map(|_| ()).op(operation),
    }
}
