//! The Lambda function running the bundled bootstrap, and a switch of the table it uses.
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
use aws_sdk_lambda::types::{
    Architecture, Environment, EnvironmentResponse, FunctionCode, LastUpdateStatus, Runtime, State,
};

use counter_function::dynamo::DEFAULT_TABLE;

use anyhow::Context;

use super::{Error, alias, role, table};
use crate::aws::{Account, AwsError, Clients, Made, Operation, found, gone, made};
use crate::change::{Action, Changes, Delete, Diff, Field, Planned, Refusal, Resource, RowList, Rows, diff};
use crate::retry;
use crate::stack::{PERMISSION_SID, PUBLIC_INVOKE_SID, PUBLIC_URL_SID, Stack, StackContext, TABLE_VARIABLE};

const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];
pub(crate) const HANDLER: &str = "bootstrap";
pub(crate) const RUNTIME: Runtime = Runtime::Providedal2023;

/// The function as deployed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FunctionState {
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
    /// The CloudFormation stack that made it, if one did.
    pub cloudformation: Option<String>,
    /// Neither Pending nor with an update InProgress: calls on it are accepted.
    pub ready: bool,
    /// Its reserved concurrency, if it has one.
    pub reserved_concurrency: Option<i32>,
    /// The statement with [`PERMISSION_SID`] in the resource policy of the alias
    /// ([`alias::ALIAS`]), which the REST API invokes.
    pub permission: Option<serde_json::Value>,
    /// The function's own (unqualified) policy still has that statement: a stack from
    /// before the alias, whose API invoked the function itself.
    pub legacy_permission: bool,
    /// Its published versions and the alias.
    pub versions: alias::Versions,
    /// How many of the two statements that let anyone call its alias's URL (`--front
    /// function-url --auth none`) the alias's policy has: 2 when public, 0 when not, 1
    /// after a half-done change.
    pub public_statements: u8,
    /// The function's own policy has such a statement (a URL from before the alias).
    pub own_public: bool,
}

impl FunctionState {
    /// The table the function reads and writes: `TABLE_NAME`, else the function's default
    /// (the original service's table).
    pub(crate) fn table(&self) -> &str {
        table_in(self.variables.get(TABLE_VARIABLE))
    }
}

/// The table a function with this `TABLE_NAME` uses: the function's default when it has
/// none.
fn table_in(variable: Option<&String>) -> &str {
    variable.filter(|table| !table.is_empty()).map_or(DEFAULT_TABLE, String::as_str)
}

/// The table the function (or its version or alias `qualifier`) uses
/// ([`FunctionState::table`]), from its configuration alone; `None` when there is no such
/// function.
pub(crate) async fn read_table(
    client: &Client,
    stack_name: &str,
    qualifier: Option<&str>,
) -> Result<Option<String>, AwsError> {
    let configuration = client.get_function_configuration().function_name(stack_name);
    let configuration = configuration.set_qualifier(qualifier.map(str::to_owned)).send().await;
    let configuration = found("lambda:GetFunctionConfiguration", configuration, NOT_FOUND)?;
    Ok(configuration.map(|configuration| configured_table(configuration.environment()).to_owned()))
}

/// The table a function's (or a version's) environment names.
pub(crate) fn configured_table(environment: Option<&EnvironmentResponse>) -> &str {
    let variables = environment.and_then(|environment| environment.variables());
    table_in(variables.and_then(|variables| variables.get(TABLE_VARIABLE)))
}

/// What the function should run: the zip and its instruction set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Code {
    pub zip: std::sync::Arc<Vec<u8>>,
    pub sha256: String,
    pub architecture: Architecture,
}

/// The function's configuration as install sets it.
#[derive(Debug, Clone)]
pub(crate) struct Configuration<'a> {
    pub role: &'a str,
    pub memory_mb: i32,
    pub timeout_seconds: i32,
    pub variables: BTreeMap<String, String>,
}

/// Reads the function and its permission statement.
pub(crate) async fn read(client: &Client, stack_name: &str) -> Result<Option<FunctionState>, AwsError> {
    // GetFunctionConcurrency, not GetFunction's `Concurrency`: that one is left out by
    // moto when the reserved concurrency is 0, the value a stopped function has.
    let (function, policy, alias_policy, concurrency, versions) = tokio::join!(
        client.get_function().function_name(stack_name).send(),
        client.get_policy().function_name(stack_name).send(),
        // Not found when there is no alias yet, or its policy is empty.
        client.get_policy().function_name(stack_name).qualifier(alias::ALIAS).send(),
        client.get_function_concurrency().function_name(stack_name).send(),
        alias::read(client, stack_name),
    );
    let Some(function) = found("lambda:GetFunction", function, NOT_FOUND)? else {
        return Ok(None);
    };
    let statements = |policy: Option<aws_sdk_lambda::operation::get_policy::GetPolicyOutput>| {
        policy
            .and_then(|policy| policy.policy)
            .and_then(|policy| serde_json::from_str::<serde_json::Value>(&policy).ok())
            .and_then(|policy| policy["Statement"].as_array().cloned())
            .unwrap_or_default()
    };
    let alias_statements = statements(found("lambda:GetPolicy", alias_policy, NOT_FOUND)?);
    let statements = statements(found("lambda:GetPolicy", policy, NOT_FOUND)?);
    let statement = |sid: &str| statements.iter().find(|statement| statement["Sid"] == sid);
    let permission = alias_statements.iter().find(|statement| statement["Sid"] == PERMISSION_SID).cloned();
    let legacy_permission = statement(PERMISSION_SID).is_some();
    let on_alias = |sid: &str| alias_statements.iter().any(|statement| statement["Sid"] == sid);
    let public_statements = u8::from(on_alias(PUBLIC_URL_SID)) + u8::from(on_alias(PUBLIC_INVOKE_SID));
    let own_public = statement(PUBLIC_URL_SID).is_some() || statement(PUBLIC_INVOKE_SID).is_some();
    let tagged = Stack::tagged_map(stack_name, function.tags());
    let cloudformation = Stack::cloudformation_map(function.tags());
    let concurrency = found("lambda:GetFunctionConcurrency", concurrency, NOT_FOUND)?;
    let reserved_concurrency = concurrency.and_then(|concurrency| concurrency.reserved_concurrent_executions());
    let Some(config) = function.configuration else {
        return Err(AwsError {
            operation: "lambda:GetFunction",
            code: None,
            message: "the answer has no configuration".into(),
            foreign_answer: false,
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
        cloudformation,
        ready: config.state() != Some(&State::Pending)
            && config.last_update_status() != Some(&LastUpdateStatus::InProgress),
        reserved_concurrency,
        permission,
        legacy_permission,
        versions: versions?,
        public_statements,
        own_public,
    }))
}

/// Whether a call failed only because IAM has not yet propagated a role (new, or newly
/// given to the function) to Lambda.
fn role_not_yet_assumable<E: ProvideErrorMetadata, R>(error: &aws_sdk_lambda::error::SdkError<E, R>) -> bool {
    error.code() == Some("InvalidParameterValueException")
        && error.message().is_some_and(|message| message.contains("cannot be assumed by Lambda"))
}

/// Creates the function; `Existed` when it exists already (a create whose answer was
/// lost): the caller then brings that one up to date.
async fn create(
    client: &Client,
    stack: &Stack,
    code: &Code,
    configuration: &Configuration<'_>,
) -> Result<Made<()>, Error> {
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
    let created = retry::ABOUT_TWO_MINUTES.retry(create, role_not_yet_assumable).await;
    if let Made::Existed = made("lambda:CreateFunction", created, &["ResourceConflictException"])? {
        return Ok(Made::Existed);
    }
    wait_ready(client, &stack.name).await?;
    Ok(Made::Created(()))
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

pub(crate) async fn update_code(client: &Client, stack: &Stack, code: &Code) -> Result<(), Error> {
    wait_ready(client, &stack.name).await?;
    let update = || {
        client
            .update_function_code()
            .function_name(&stack.name)
            .zip_file(Blob::new(code.zip.as_slice()))
            .architectures(code.architecture.clone())
            .send()
    };
    retry::POLL.retry(update, updating).await.op("lambda:UpdateFunctionCode")?;
    Ok(())
}

/// Sets the whole configuration. A role given to the function a moment ago may not be
/// assumable yet, as on CreateFunction: waited out the same way.
pub(crate) async fn update_configuration(
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
    retry::ABOUT_TWO_MINUTES.retry(update, retryable).await.op("lambda:UpdateFunctionConfiguration")?;
    Ok(())
}

/// Sets the function's reserved concurrency (`None`: unreserved); 0 refuses every
/// invocation.
pub(crate) async fn set_concurrency(client: &Client, stack: &Stack, reserved: Option<i32>) -> Result<(), AwsError> {
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

pub(crate) async fn tag(client: &Client, stack: &Stack, arn: &str) -> Result<(), Error> {
    wait_ready(client, &stack.name).await?;
    client.tag_resource().resource(arn).set_tags(Some(stack.tags())).send().await.op("lambda:TagResource")?;
    Ok(())
}

/// Waits until the function is not Pending and no update is InProgress.
pub(crate) async fn wait_ready(client: &Client, name: &str) -> Result<(), Error> {
    wait_ready_at(client, name, None).await
}

/// [`wait_ready`] for the function's version `qualifier` (a new version is Pending for a
/// while too, and cannot be invoked until it is Active), or the function itself.
pub(crate) async fn wait_ready_at(client: &Client, name: &str, qualifier: Option<&str>) -> Result<(), Error> {
    let shown = qualifier.map_or_else(|| name.to_owned(), |qualifier| format!("{name}:{qualifier}"));
    retry::POLL
        .poll(&format!("function {shown}"), || async {
            let config = client.get_function_configuration().function_name(name);
            let config = config.set_qualifier(qualifier.map(str::to_owned)).send().await;
            let config = config.op("lambda:GetFunctionConfiguration")?;
            if config.state() == Some(&State::Failed) || config.last_update_status() == Some(&LastUpdateStatus::Failed)
            {
                let reason = config.state_reason().or(config.last_update_status_reason()).unwrap_or("no reason given");
                let state = config.state().map_or("unknown", State::as_str).to_owned();
                return Err(Error::FunctionFailed { name: shown.clone(), state, reason: reason.to_owned() });
            }
            let pending = config.state() == Some(&State::Pending);
            let updating = config.last_update_status() == Some(&LastUpdateStatus::InProgress);
            Ok((!pending && !updating).then_some(()))
        })
        .await
}

async fn delete(client: &Client, stack_name: &str) -> Result<bool, AwsError> {
    gone("lambda:DeleteFunction", client.delete_function().function_name(stack_name).send().await, NOT_FOUND)
}

pub(crate) async fn wait_ready_if_there(client: &Client, name: &str) -> Result<(), Error> {
    match wait_ready(client, name).await {
        Err(Error::Aws(error)) if error.code.as_deref() == Some("ResourceNotFoundException") => Ok(()),
        result => result,
    }
}

/// What the function should be, as install resolved it from the options and what is
/// deployed.
#[derive(Debug, Clone)]
pub(crate) struct WantedFunction {
    pub(crate) code: Code,
    pub(crate) memory_mb: i32,
    pub(crate) timeout_seconds: i32,
    /// The function's reserved concurrency; `None`: unreserved.
    pub(crate) max_concurrency: Option<i32>,
}

/// What changes on the function, one field per kind of call.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct FunctionChange {
    /// UpdateFunctionCode.
    pub(crate) code: Option<Diff>,
    /// One UpdateFunctionConfiguration: memory, timeout, role, runtime, handler, table.
    pub(crate) configuration: Vec<Diff>,
    /// PutFunctionConcurrency or DeleteFunctionConcurrency.
    pub(crate) concurrency: Option<Diff>,
    pub(crate) tags: Option<Diff>,
}

impl FunctionChange {
    /// Whether it changes what a published version holds (code or configuration), so a
    /// new version is published.
    pub(crate) fn versioned(&self) -> bool {
        self.code.is_some() || !self.configuration.is_empty()
    }
}

impl Changes for FunctionChange {
    fn diffs(&self) -> Vec<Diff> {
        let mut diffs: Vec<Diff> = self.code.iter().cloned().collect();
        diffs.extend(self.configuration.iter().cloned());
        diffs.extend([&self.concurrency, &self.tags].into_iter().flatten().cloned());
        diffs
    }
}

/// The function as wanted, with the stack and role it runs in: what its plan and apply
/// take.
pub(crate) struct FunctionSpec<'a> {
    pub(crate) stack: &'a Stack,
    pub(crate) wanted: &'a WantedFunction,
    pub(crate) role_arn: &'a str,
}

/// The function as found (at the read, or after a lost answer) against its target; a
/// function on another table is refused, never repointed.
pub(crate) fn plan_found(function: &FunctionState, spec: &FunctionSpec<'_>) -> Action<FunctionChange> {
    let (stack, settings) = (spec.stack, spec.wanted);
    let architecture = settings.code.architecture.as_str();
    let code = (function.code_sha256 != settings.code.sha256 || function.architecture != architecture).then(|| {
        diff(
            Field::Code,
            format!("{} {}", function.code_sha256, function.architecture),
            format!("{} {architecture}", settings.code.sha256),
        )
    });
    let variable = function.variables.get(TABLE_VARIABLE).filter(|table| !table.is_empty());
    let configuration = [
        (Field::Memory, format!("{} MB", function.memory_mb), format!("{} MB", settings.memory_mb)),
        (Field::Timeout, format!("{} s", function.timeout_seconds), format!("{} s", settings.timeout_seconds)),
        (Field::Role, function.role.clone(), spec.role_arn.to_owned()),
        (Field::Runtime, function.runtime.clone(), RUNTIME.as_str().to_owned()),
        (Field::Handler, function.handler.clone(), HANDLER.to_owned()),
        (Field::TableName, variable.map_or("unset", String::as_str).to_owned(), stack.table.clone()),
    ];
    let configuration =
        configuration.into_iter().filter(|(_, from, to)| from != to).map(|(field, from, to)| diff(field, from, to));
    let wording = |reserved: Option<i32>| match reserved {
        None => "unreserved".to_owned(),
        Some(0) => "0 (every invocation refused, as an interrupted table switch leaves it)".to_owned(),
        Some(reserved) => reserved.to_string(),
    };
    let change = FunctionChange {
        code,
        configuration: configuration.collect(),
        concurrency: (function.reserved_concurrency != settings.max_concurrency).then(|| {
            diff(Field::Concurrency, wording(function.reserved_concurrency), wording(settings.max_concurrency))
        }),
        tags: (!function.tagged).then(|| diff(Field::Tags, "none", "counterctl")),
    };
    Action::found(change, !function.tagged)
}

/// The function: created, or brought to its target. Switching tables stops the function
/// while the counters are compared again, so it breaks callers for that while.
pub(crate) fn plan(
    function: Option<&FunctionState>,
    spec: &FunctionSpec<'_>,
    table_switch: bool,
) -> Planned<FunctionChange> {
    let action = function.map_or(Action::Create, |function| plan_found(function, spec));
    Planned::new(Resource::Function, &spec.stack.name, action).breaking_if(table_switch)
}

/// The function's plan with what apply needs of the read.
#[derive(Debug, Clone)]
pub(crate) struct FunctionPlan {
    pub(crate) planned: Planned<FunctionChange>,
    /// As read; `None` when it is created.
    pub(crate) deployed: Option<FunctionState>,
    /// The table the function moves away from (`--switch-table`).
    pub(crate) table_switch: Option<String>,
    /// Its versions and the alias the fronts invoke.
    pub(crate) alias: alias::AliasPlan,
}

impl FunctionPlan {
    pub(crate) fn new(
        planned: Planned<FunctionChange>,
        deployed: Option<FunctionState>,
        table_switch: Option<String>,
    ) -> Self {
        let versioned = match &planned.action {
            Action::Create => true,
            action => action.change().is_some_and(FunctionChange::versioned),
        };
        let alias = alias::plan(deployed.as_ref(), versioned);
        Self { planned, deployed, table_switch, alias }
    }
}

impl Rows for FunctionPlan {
    fn rows(&self) -> RowList {
        let Self { planned, deployed: _, table_switch: _, alias } = self;
        crate::change::rows([planned.rows(), alias.rows()])
    }
}

fn configuration<'a>(plan: &FunctionPlan, spec: &FunctionSpec<'a>) -> Configuration<'a> {
    let mut variables = plan.deployed.as_ref().map(|function| function.variables.clone()).unwrap_or_default();
    variables.insert(TABLE_VARIABLE.to_owned(), spec.stack.table.clone());
    Configuration {
        role: spec.role_arn,
        memory_mb: spec.wanted.memory_mb,
        timeout_seconds: spec.wanted.timeout_seconds,
        variables,
    }
}

/// Creates the function or applies its change; a note when it turned out to exist
/// already (the answer to an earlier create was lost). Its reserved concurrency is left
/// for the caller to set once the alias has moved ([`Resume`]).
pub(crate) async fn apply(
    clients: &Clients,
    account: &Account,
    plan: &FunctionPlan,
    spec: &FunctionSpec<'_>,
) -> anyhow::Result<(Resume, Option<String>)> {
    let (client, stack, settings) = (&clients.lambda, spec.stack, spec.wanted);
    let configuration = configuration(plan, spec);
    let mut action = plan.planned.action.clone();
    let mut note = None;
    if action == Action::Create {
        let made = create(client, stack, &settings.code, &configuration).await.context("creating the function")?;
        if made == Made::Created(()) {
            if settings.max_concurrency.is_some() {
                let set = set_concurrency(client, stack, settings.max_concurrency);
                set.await.context("setting the function's reserved concurrency")?;
            }
            return Ok((Resume(None), None));
        }
        // Created by a run whose answer was lost: planned by the same rule as one read,
        // and never pointed at another table than the one it has.
        let found = read(client, &stack.name).await.context("reading the function")?;
        let found = found.context("the function exists and then does not: run install again")?;
        if found.table() != stack.table {
            let refusal = Refusal::TableSwitch { current: found.table().to_owned(), asked: stack.table.clone() };
            return Err(anyhow::Error::new(refusal).context("a function of this name appeared since it was read"));
        }
        action = plan_found(&found, spec);
        note = Some(format!(
            "adopted: it existed already (ResourceConflictException); {}",
            crate::progress::Wording::Done.describe_action(&action.shown())
        ));
    }
    let mut resume = Resume(None);
    if let Some(current) = &plan.table_switch {
        switch_table(clients, StackContext { stack, account }, plan, current, &configuration).await?;
        let deployed = plan.deployed.as_ref().and_then(|function| function.reserved_concurrency);
        resume = Resume(Some(deployed.filter(|reserved| *reserved > 0)));
    }
    if let Some(FunctionChange { code, configuration: configured, concurrency, tags }) = action.change() {
        if code.is_some() {
            update_code(client, stack, &settings.code).await.context("updating the function's code")?;
        }
        // A table switch has set the configuration already.
        if !configured.is_empty() && plan.table_switch.is_none() {
            let update = update_configuration(client, stack, &configuration);
            update.await.context("updating the function's configuration")?;
        }
        if concurrency.is_some() {
            resume = Resume(Some(settings.max_concurrency));
        }
        if tags.is_some() {
            let arn = plan.deployed.as_ref().map_or_else(|| stack.function_arn(account), |f| f.arn.clone());
            tag(client, stack, &arn).await.context("tagging the function")?;
        }
    }
    // What comes next (the permission) is a call on the function too.
    let was_ready = plan.deployed.as_ref().is_none_or(|function| function.ready);
    if action.changes() || !was_ready {
        wait_ready(client, &stack.name).await.context("waiting for the function to be ready")?;
    }
    Ok((resume, note))
}

/// Points the function at another table without a counter going backwards: invocations
/// stop (reserved concurrency 0), those in flight get the function's timeout to finish,
/// both tables are compared again, and only then is the configuration updated. Callers
/// reach the function through its alias, whose version still uses the old table: they
/// stay stopped until the alias runs a version on the new one ([`Resume`]). A failure
/// before the configuration changed lets the function run again on its old table; one
/// after leaves invocations stopped, for the next install to finish the switch.
async fn switch_table(
    clients: &Clients,
    StackContext { stack, account }: StackContext<'_>,
    plan: &FunctionPlan,
    current: &str,
    configuration: &Configuration<'_>,
) -> anyhow::Result<()> {
    let client = &clients.lambda;
    let deployed = plan.deployed.as_ref().context("a table switch needs the deployed function")?;
    set_concurrency(client, stack, Some(0)).await.context("stopping invocations for the table switch")?;
    let configured = std::cell::Cell::new(false);
    let switched = async {
        tokio::time::sleep(std::time::Duration::from_secs(u64::try_from(deployed.timeout_seconds).unwrap_or(0) + 1))
            .await;
        let (current_counters, new_counters) = tokio::try_join!(
            table::counters(&clients.dynamodb, current),
            table::counters(&clients.dynamodb, &stack.table)
        )
        .context("reading the counters of both tables again")?;
        let counters = table::Counters { current: current_counters, new: new_counters };
        table::refuse_counters_behind(current, &stack.table, &counters)?;
        configured.set(true);
        update_configuration(client, stack, configuration).await.context("switching the table")?;
        let switched = wait_ready(client, &stack.name).await;
        switched.with_context(|| format!("waiting for the switch; the function may already use {}", stack.table))?;
        // Only the new table from now on.
        role::narrow_policy(&clients.iam, stack, account).await.context("narrowing the role's policy")?;
        anyhow::Ok(())
    };
    let switched = tokio::select! {
        switched = switched => switched,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted: the table switch was abandoned")),
    };
    match switched {
        Ok(()) => Ok(()),
        Err(error) if configured.get() => Err(error.context(
            "invocations stay stopped (reserved concurrency 0) so that nothing runs on the old table again: run \
             install again to finish the switch",
        )),
        Err(error) => {
            // As it was, but never left refusing every invocation.
            let reserved = deployed.reserved_concurrency.filter(|reserved| *reserved > 0);
            let resumed = set_concurrency(client, stack, reserved).await;
            resumed.context("letting the function run again after the abandoned table switch")?;
            Err(error)
        }
    }
}

/// What the function's reserved concurrency becomes once the alias runs the function's
/// version: set after the alias moves, so that calls resumed after a table switch never
/// run a version on the old table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resume(pub(crate) Option<Option<i32>>);

impl Resume {
    /// Sets the reserved concurrency, if there is one to set.
    pub(crate) async fn apply(self, client: &Client, stack: &Stack) -> anyhow::Result<()> {
        if let Self(Some(reserved)) = self {
            set_concurrency(client, stack, reserved).await.context("setting the function's reserved concurrency")?;
        }
        Ok(())
    }
}

/// The function of stack `name`, to delete (with its resource policy).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FunctionName(pub(crate) String);

impl Delete for FunctionName {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        delete(&clients.lambda, &self.0).await.context("deleting the function")?;
        Ok(None)
    }
}

/// The function's contract.
pub(crate) struct FunctionContract;

impl crate::resources::Contract for FunctionContract {
    const KIND: crate::change::Resource = crate::change::Resource::Function;
    type State = FunctionState;
    type Change = FunctionChange;
    type Target = FunctionName;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        let function = scope.context.stack.function_arn(scope.context.account);
        let actions = &[
            "lambda:CreateFunction",
            "lambda:GetFunction",
            "lambda:GetFunctionConfiguration",
            "lambda:UpdateFunctionCode",
            "lambda:UpdateFunctionConfiguration",
            "lambda:DeleteFunction",
            "lambda:TagResource",
            // GetFunction answers the tags only to a caller that may list them.
            "lambda:ListTags",
            // Its policy, read with it (the permission's statements).
            "lambda:GetPolicy",
            "lambda:GetFunctionConcurrency",
            "lambda:PutFunctionConcurrency",
            "lambda:DeleteFunctionConcurrency",
        ];
        vec![crate::resources::Grant::new("Function", actions, vec![function])]
    }
}
