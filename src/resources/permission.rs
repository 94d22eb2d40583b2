//! The statement in the function's resource policy that lets this stack's REST API
//! invoke it (`--front rest`).

use anyhow::Context;
use aws_sdk_lambda::Client;

use super::{Error, function};
use crate::aws::{Clients, Operation, gone, has_code};
use crate::change::{Action, Changes, Delete, Deletion, Diff, Field, Planned, Resource, diff};
use crate::stack::{PERMISSION_SID, Stack, StackContext};

const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];
const API_GATEWAY: &str = "apigateway.amazonaws.com";

/// The statement replaced: it lets another source invoke the function.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PermissionChange {
    pub(crate) statement: Diff,
}

impl Changes for PermissionChange {
    fn diffs(&self) -> Vec<Diff> {
        vec![self.statement.clone()]
    }
}

/// The permission for the API the plan keeps; made anew with a new function or API.
pub(crate) fn plan(
    function: Option<&function::FunctionState>,
    function_created: bool,
    api_id: Option<&str>,
    StackContext { stack, account }: StackContext<'_>,
) -> Planned<PermissionChange> {
    let action = match (function, api_id) {
        (Some(function), Some(api_id)) if !function_created => {
            let source_arn = stack.source_arn(account, api_id);
            match &function.permission {
                None => Action::Create,
                Some(statement) if permits(statement, &source_arn) => Action::Keep,
                Some(_) => Action::Update(PermissionChange { statement: diff(Field::Statement, "other", source_arn) }),
            }
        }
        _ => Action::Create,
    };
    Planned::new(Resource::Permission, PERMISSION_SID, action)
}

/// Lets API `api_id` invoke the function. A permission planned as kept still names the
/// API the plan read; if a race made another API the stack's, it is replaced.
pub(crate) async fn apply(
    client: &Client,
    StackContext { stack, account }: StackContext<'_>,
    planned: &Planned<PermissionChange>,
    (planned_api, api_id): (Option<&str>, &str),
) -> anyhow::Result<()> {
    if !planned.changes() && planned_api == Some(api_id) {
        return Ok(());
    }
    if let Action::Update(PermissionChange { statement: _ }) = &planned.action {
        remove(client, stack).await.context("removing the old permission")?;
    }
    let source_arn = stack.source_arn(account, api_id);
    add(client, stack, &source_arn).await.context("letting the API invoke the function")?;
    Ok(())
}

/// Without the REST front: the permission goes, if the function has it.
pub(crate) fn unwanted(
    function: Option<&function::FunctionState>,
    stack: &Stack,
    reason: &str,
) -> Deletion<Permission> {
    let targets = function.and_then(|function| function.permission.as_ref()).map(|_| Permission(stack.clone()));
    Deletion::of(Resource::Permission, PERMISSION_SID, targets.into_iter().collect(), reason)
}

/// The stack's permission statement, to remove.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Permission(Stack);

impl Delete for Permission {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        remove(&clients.lambda, &self.0).await.context("removing the API's permission")?;
        Ok(None)
    }
}

/// Whether a permission statement lets API Gateway invoke the function from exactly
/// `source_arn`.
pub(crate) fn permits(statement: &serde_json::Value, source_arn: &str) -> bool {
    statement["Effect"] == "Allow"
        && statement["Action"] == "lambda:InvokeFunction"
        && statement["Principal"]["Service"] == API_GATEWAY
        && statement["Condition"]["ArnLike"]["AWS:SourceArn"] == source_arn
}

/// Lets API Gateway invoke the function from `source_arn`; the caller has waited for
/// [`function::wait_ready`]. Real AWS refuses a duplicate statement id (ResourceConflictException),
/// which a concurrent install or a lost answer can cause: then the statement there is
/// read, and replaced only if it differs.
async fn add(client: &Client, stack: &Stack, source_arn: &str) -> Result<(), Error> {
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
            let current = function::read(client, &stack.name).await?.and_then(|function| function.permission);
            if current.is_some_and(|statement| permits(&statement, source_arn)) {
                return Ok(());
            }
            remove(client, stack).await?;
            add().await.op("lambda:AddPermission")?;
        }
        added => {
            added.op("lambda:AddPermission")?;
        }
    }
    Ok(())
}

/// `false` when there was no such permission (or no function).
pub(crate) async fn remove(client: &Client, stack: &Stack) -> Result<bool, Error> {
    function::wait_ready_if_there(client, &stack.name).await?;
    let removed = client.remove_permission().function_name(&stack.name).statement_id(PERMISSION_SID).send().await;
    Ok(gone("lambda:RemovePermission", removed, NOT_FOUND)?)
}

/// The permission's contract: its statement is read with the function's policy.
pub(crate) struct PermissionContract;

impl crate::resources::Contract for PermissionContract {
    const KIND: crate::change::Resource = crate::change::Resource::Permission;
    type State = serde_json::Value;
    type Change = PermissionChange;
    type Target = Permission;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        let function = scope.context.stack.function_arn(scope.context.account);
        // The function URL's public statements are added and removed by the same calls.
        let actions = &["lambda:AddPermission", "lambda:RemovePermission"];
        vec![crate::resources::Grant::new("Permission", actions, vec![function])]
    }
}
