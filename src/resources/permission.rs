//! The statement in the resource policy of the function's alias that lets this stack's
//! REST API invoke it (`--front rest`). The integration invokes the alias, and API Gateway
//! needs the permission on exactly the ARN it invokes
//! (https://docs.aws.amazon.com/lambda/latest/dg/configuration-aliases.html: "a
//! resource-based policy … on the alias"); a stack from before the alias had it on the
//! function itself, and loses that one once its stage invokes the alias.

use anyhow::Context;
use aws_sdk_lambda::Client;

use super::{Error, alias, function};
use crate::aws::{AwsError, Clients, Operation, gone, has_code};
use crate::change::{Action, Changes, Delete, Deletion, Diff, Field, Planned, Resource, diff};
use crate::stack::{PERMISSION_SID, Stack, StackContext};

const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];
const API_GATEWAY: &str = "apigateway.amazonaws.com";

/// What changes on the permission.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PermissionChange {
    /// AddPermission on the alias.
    pub(crate) statement: Option<Diff>,
    /// The alias's statement names another source: RemovePermission first.
    pub(crate) replaces: bool,
    /// The function's own statement goes (RemovePermission), once the stage invokes the
    /// alias.
    pub(crate) legacy: Option<Diff>,
}

impl Changes for PermissionChange {
    fn diffs(&self) -> Vec<Diff> {
        let Self { statement, replaces: _, legacy } = self;
        [statement, legacy].into_iter().flatten().cloned().collect()
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
            // A stack from before the alias moves in this one change: the alias's statement
            // is added first, the function's own goes once the stage invokes the alias.
            let legacy = function.legacy_permission.then(|| {
                diff(Field::Statement, format!("on {}", stack.name), "removed once the stage invokes the alias")
            });
            let qualified = format!("on {}:{}", stack.name, alias::ALIAS);
            let (statement, replaces) = match &function.permission {
                None => (Some(diff(Field::Statement, "none", &qualified)), false),
                Some(statement) if permits(statement, &source_arn) => (None, false),
                Some(_) => (Some(diff(Field::Statement, "another API", &qualified)), true),
            };
            match (&function.permission, &legacy) {
                (None, None) => Action::Create,
                _ => Action::found(PermissionChange { statement, replaces, legacy }, false),
            }
        }
        _ => Action::Create,
    };
    Planned::new(Resource::Permission, PERMISSION_SID, action)
}

/// Lets API `api_id` invoke the alias. A permission planned as kept still names the API
/// the plan read; if a race made another API the stack's, it is replaced. The function's
/// own statement, if planned to go, goes later ([`remove_legacy`]).
pub(crate) async fn apply(
    client: &Client,
    StackContext { stack, account }: StackContext<'_>,
    planned: &Planned<PermissionChange>,
    (planned_api, api_id): (Option<&str>, &str),
) -> anyhow::Result<()> {
    let (added, replaces) = match &planned.action {
        Action::Update(change) | Action::Adopt(change) => (change.statement.is_some(), change.replaces),
        action => (*action == Action::Create, false),
    };
    if !added && planned_api == Some(api_id) {
        return Ok(());
    }
    if replaces {
        remove(client, stack, Some(alias::ALIAS)).await.context("removing the old permission")?;
    }
    let source_arn = stack.source_arn(account, api_id);
    add(client, stack, &source_arn).await.context("letting the API invoke the function's alias")?;
    Ok(())
}

/// Whether the plan removes the function's own statement once the stage invokes the
/// alias.
pub(crate) fn removes_legacy(planned: &Planned<PermissionChange>) -> bool {
    planned.action.change().is_some_and(|change| change.legacy.is_some())
}

/// Removes the function's own statement (a stack from before the alias), once the stage
/// invokes the alias: API Gateway no longer invokes the function itself.
pub(crate) async fn remove_legacy(client: &Client, stack: &Stack) -> anyhow::Result<()> {
    remove(client, stack, None).await.context("removing the permission on the function itself")?;
    Ok(())
}

/// Without the REST front: the permission goes, if the function has it.
pub(crate) fn unwanted(
    function: Option<&function::FunctionState>,
    stack: &Stack,
    reason: &str,
) -> Deletion<Permission> {
    let targets = function
        .filter(|function| function.permission.is_some() || function.legacy_permission)
        .map(|_| Permission(stack.clone()));
    Deletion::of(Resource::Permission, PERMISSION_SID, targets.into_iter().collect(), reason)
}

/// The stack's permission statement, to remove.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Permission(Stack);

impl Delete for Permission {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        let (client, stack) = (&clients.lambda, &self.0);
        remove(client, stack, Some(alias::ALIAS)).await.context("removing the API's permission")?;
        remove(client, stack, None).await.context("removing the API's permission on the function itself")?;
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
            .qualifier(alias::ALIAS)
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
            remove(client, stack, Some(alias::ALIAS)).await?;
            add().await.op("lambda:AddPermission")?;
        }
        added => {
            added.op("lambda:AddPermission")?;
        }
    }
    Ok(())
}

/// Removes the statement from the policy of `qualifier` (the alias), or of the function
/// itself; `false` when there was no such statement (or no alias, or no function).
async fn remove(client: &Client, stack: &Stack, qualifier: Option<&str>) -> Result<bool, Error> {
    function::wait_ready_if_there(client, &stack.name).await?;
    Ok(remove_statement(client, &stack.name, PERMISSION_SID, qualifier).await?)
}

/// Removes statement `sid` from the resource policy of `qualifier` (the alias), or of
/// function `stack_name` itself; `false` when it was not there (nor the alias, nor the
/// function).
pub(crate) async fn remove_statement(
    client: &Client,
    stack_name: &str,
    sid: &str,
    qualifier: Option<&str>,
) -> Result<bool, AwsError> {
    let remove = client.remove_permission().function_name(stack_name).statement_id(sid);
    let removed = remove.set_qualifier(qualifier.map(str::to_owned)).send().await;
    gone("lambda:RemovePermission", removed, NOT_FOUND)
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
        let alias = format!("{function}:{}", alias::ALIAS);
        // The function URL's public statements are added and removed by the same calls,
        // and a stack from before the alias loses its statement on the function itself.
        let actions = &["lambda:AddPermission", "lambda:RemovePermission"];
        vec![crate::resources::Grant::new("Permission", actions, vec![function, alias])]
    }
}
