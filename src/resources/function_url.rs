//! The Lambda Function URL front (`--front function-url`): the HTTPS endpoint of the
//! function's alias ([`alias::ALIAS`]), at no charge of its own, in place of the REST API.
//! A URL is the alias's own (a new address); a stack from before the alias had the
//! function's, which the move to the alias's replaces, breaking its callers' address.
//!
//! Since October 2025 a new function URL needs both `lambda:InvokeFunctionUrl` and
//! `lambda:InvokeFunction` (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html:
//! "Starting in October 2025, new function URLs will require both
//! lambda:InvokeFunctionUrl and lambda:InvokeFunction permissions"). With auth type
//! `AWS_IAM`, callers of the same account get both from their own identity policy
//! (`counterctl status --caller-policy`); with `NONE`, "your function's resource-based
//! policy is always in effect and must grant public access", so install adds both as
//! public statements.

use anyhow::Context;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::types::FunctionUrlAuthType;

use super::alias;
use super::function::FunctionState;
use super::routes::{AWS_IAM, method_authorization};
use crate::aws::{AwsError, Clients, Operation, found, gone, has_code};
use crate::change::{Action, Changes, Delete, Deletion, Diff, Field, Planned, Resource, diff};
use crate::settings::Auth;
use crate::stack::{PUBLIC_INVOKE_SID, PUBLIC_URL_SID, Stack};

const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];

/// The function's URL as deployed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UrlState {
    pub(crate) url: String,
    /// `AWS_IAM` or `NONE`.
    pub(crate) auth_type: String,
    /// The alias's URL; `false`: the function's own, of a stack from before the alias.
    pub(crate) on_alias: bool,
    /// The function's own URL is there too (a move to the alias that did not finish).
    pub(crate) own_left: bool,
}

impl UrlState {
    /// The auth callers of this URL need.
    pub(crate) fn auth(&self) -> Auth {
        if self.auth_type == AWS_IAM { Auth::Iam } else { Auth::None }
    }
}

/// Reads the alias's URL, else the function's own.
pub(crate) async fn read(client: &Client, stack_name: &str) -> Result<Option<UrlState>, AwsError> {
    let (on_alias, own) = tokio::join!(
        client.get_function_url_config().function_name(stack_name).qualifier(alias::ALIAS).send(),
        client.get_function_url_config().function_name(stack_name).send(),
    );
    let on_alias = found("lambda:GetFunctionUrlConfig", on_alias, NOT_FOUND)?;
    let own = found("lambda:GetFunctionUrlConfig", own, NOT_FOUND)?;
    let own_left = own.is_some();
    Ok(match (on_alias, own) {
        (Some(config), _) => Some((config, true)),
        (None, Some(config)) => Some((config, false)),
        (None, None) => None,
    }
    .map(|(config, on_alias)| UrlState {
        url: config.function_url,
        auth_type: config.auth_type.as_str().to_owned(),
        on_alias,
        own_left,
    }))
}

/// Creates the alias's URL (one made by a concurrent install is updated instead);
/// returns it.
async fn create(client: &Client, stack: &Stack, auth_type: &str) -> Result<String, AwsError> {
    let created = client
        .create_function_url_config()
        .function_name(&stack.name)
        .qualifier(alias::ALIAS)
        .auth_type(FunctionUrlAuthType::from(auth_type))
        .send()
        .await;
    match created {
        Err(error) if has_code(&error, &["ResourceConflictException"]) => update(client, stack, auth_type).await,
        created => Ok(created.op("lambda:CreateFunctionUrlConfig")?.function_url),
    }
}

async fn update(client: &Client, stack: &Stack, auth_type: &str) -> Result<String, AwsError> {
    let updated = client
        .update_function_url_config()
        .function_name(&stack.name)
        .qualifier(alias::ALIAS)
        .auth_type(FunctionUrlAuthType::from(auth_type))
        .send()
        .await
        .op("lambda:UpdateFunctionUrlConfig")?;
    Ok(updated.function_url)
}

/// Deletes the URL of `qualifier` (the alias), or the function's own.
async fn delete(client: &Client, stack_name: &str, qualifier: Option<&str>) -> Result<bool, AwsError> {
    let delete = client.delete_function_url_config().function_name(stack_name);
    let deleted = delete.set_qualifier(qualifier.map(str::to_owned)).send().await;
    gone("lambda:DeleteFunctionUrlConfig", deleted, NOT_FOUND)
}

/// The function's own URL and its public statements, of a stack from before the alias.
async fn delete_own(client: &Client, stack: &Stack) -> Result<(), AwsError> {
    delete(client, &stack.name, None).await?;
    remove_public(client, stack, None).await
}

/// Lets anyone call the alias's URL (`--auth none`); a statement there already is kept.
/// The caller has waited for the function to be ready (no update in progress).
async fn allow_public(client: &Client, stack: &Stack) -> Result<(), AwsError> {
    let url = client
        .add_permission()
        .function_name(&stack.name)
        .qualifier(alias::ALIAS)
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
        .qualifier(alias::ALIAS)
        .statement_id(PUBLIC_INVOKE_SID)
        .action("lambda:InvokeFunction")
        .principal("*")
        .invoked_via_function_url(true)
        .send()
        .await;
    tolerate_existing("lambda:AddPermission", invoke)
}

/// Takes the public statements away again, from the policy of `qualifier` (the alias)
/// or the function's own.
async fn remove_public(client: &Client, stack: &Stack, qualifier: Option<&str>) -> Result<(), AwsError> {
    for sid in [PUBLIC_URL_SID, PUBLIC_INVOKE_SID] {
        super::permission::remove_statement(client, &stack.name, sid, qualifier).await?;
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
    R: crate::aws::RawAnswer + std::fmt::Debug + Send + Sync + 'static,
{
    // Lambda answers ResourceConflictException both for a statement id there already
    // (fine: the statement is ours) and for an update in progress (not fine).
    match result {
        Err(error) if has_code(&error, &["ResourceConflictException"]) && already_exists(&error) => Ok(()),
        result => result.map(|_| ()).op(operation),
    }
}

/// What changes on the function's URL.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct UrlChange {
    /// The alias's URL is made in place of the function's own: a new address.
    pub(crate) to_alias: Option<Diff>,
    /// UpdateFunctionUrlConfig.
    pub(crate) auth_type: Option<Diff>,
    /// The public statements added (`--auth none`) or removed.
    pub(crate) public: Option<Diff>,
    /// The function's own URL, left by a move that did not finish, goes.
    pub(crate) own_left: Option<Diff>,
}

impl Changes for UrlChange {
    fn diffs(&self) -> Vec<Diff> {
        let Self { to_alias, auth_type, public, own_left } = self;
        [to_alias, auth_type, public, own_left].into_iter().flatten().cloned().collect()
    }
}

/// The URL with the auth type of `auth`, public (both statements) only with `none`.
/// `breaking`: callers move here from the REST front, or their auth changes.
pub(crate) fn plan(
    url: Option<&UrlState>,
    function: Option<&FunctionState>,
    auth: Auth,
    (stack_name, breaking): (&str, bool),
) -> Planned<UrlChange> {
    let auth_type = method_authorization(auth);
    let public = auth == Auth::None;
    let (action, moves) = match url {
        None => (Action::Create, false),
        // A stack from before the alias: the alias's URL, a new address for callers.
        Some(url) if !url.on_alias => {
            let to_alias = diff(Field::Target, format!("{} (the function itself)", url.url), "a new URL on alias live");
            (Action::Update(UrlChange { to_alias: Some(to_alias), ..UrlChange::default() }), true)
        }
        Some(url) => {
            let wanted_statements = if public { 2 } else { 0 };
            let wording = |public| if public { "public" } else { "signed callers only" };
            let change = UrlChange {
                to_alias: None,
                auth_type: (url.auth_type != auth_type).then(|| diff(Field::Method, &url.auth_type, auth_type)),
                public: function
                    .is_none_or(|function| function.public_statements != wanted_statements)
                    .then(|| diff(Field::Statement, wording(!public), wording(public))),
                own_left: url.own_left.then(|| diff(Field::Target, "the function's own URL too", "removed")),
            };
            (Action::found(change, false), false)
        }
    };
    Planned::new(Resource::FunctionUrl, stack_name, action).breaking_if(breaking || moves)
}

/// Makes or updates the URL; returns its address.
pub(crate) async fn apply(
    client: &Client,
    stack: &Stack,
    (planned, deployed): (&Planned<UrlChange>, Option<&UrlState>),
    auth: Auth,
) -> anyhow::Result<String> {
    let auth_type = method_authorization(auth);
    let (created, update_auth, set_public, own_goes) = match planned.action.change() {
        Some(UrlChange { to_alias, auth_type, public, own_left }) => (
            to_alias.is_some(),
            auth_type.is_some(),
            public.is_some() || to_alias.is_some(),
            to_alias.is_some() || own_left.is_some(),
        ),
        None => (planned.action == Action::Create, false, planned.action == Action::Create, false),
    };
    let url = match deployed {
        Some(_) if !created && update_auth => {
            update(client, stack, auth_type).await.context("setting the function URL's auth type")?
        }
        Some(url) if !created => url.url.clone(),
        _ => create(client, stack, auth_type).await.context("creating the function URL")?,
    };
    if set_public {
        if auth == Auth::None {
            allow_public(client, stack).await.context("letting anyone call the function URL")?;
        } else {
            let removed = remove_public(client, stack, Some(alias::ALIAS));
            removed.await.context("ending public access to the function URL")?;
        }
    }
    // Once the alias's URL is up.
    if own_goes {
        delete_own(client, stack).await.context("deleting the function's own URL")?;
    }
    Ok(url)
}

/// On the REST front: the URL goes, and any public statement left behind.
pub(crate) fn unwanted(url: Option<&UrlState>, function: Option<&FunctionState>, stack: &Stack) -> Deletion<Url> {
    let public_left = function.is_some_and(|function| function.public_statements > 0 || function.own_public);
    let reason = match (url, public_left) {
        (Some(_), _) => "--front rest replaces it",
        (None, _) => "its public statements are left behind",
    };
    let targets = (url.is_some() || public_left).then(|| Url(stack.clone()));
    Deletion::of(Resource::FunctionUrl, &stack.name, targets.into_iter().collect(), reason)
}

/// The stack's function URL and its public statements, to delete.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Url(Stack);

impl Delete for Url {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        let (client, stack) = (&clients.lambda, &self.0);
        delete(client, &stack.name, Some(alias::ALIAS)).await.context("deleting the function URL")?;
        let removed = remove_public(client, stack, Some(alias::ALIAS));
        removed.await.context("removing the function URL's public access")?;
        delete_own(client, stack).await.context("deleting the function's own URL")?;
        Ok(None)
    }
}

/// The function URL's contract (its public statements: [`super::permission`]'s grants).
pub(crate) struct UrlContract;

impl crate::resources::Contract for UrlContract {
    const KIND: crate::change::Resource = crate::change::Resource::FunctionUrl;
    type State = UrlState;
    type Change = UrlChange;
    type Target = Url;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        let function = scope.context.stack.function_arn(scope.context.account);
        let on_alias = format!("{function}:{}", alias::ALIAS);
        // The alias's URL, and the function's own of a stack from before the alias.
        let actions = &[
            "lambda:CreateFunctionUrlConfig",
            "lambda:GetFunctionUrlConfig",
            "lambda:UpdateFunctionUrlConfig",
            "lambda:DeleteFunctionUrlConfig",
        ];
        vec![crate::resources::Grant::new("FunctionUrl", actions, vec![function, on_alias])]
    }
}
