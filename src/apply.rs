//! The apply phase: carries out a [`Plan`], running the steps that do not depend on each
//! other concurrently. Each step does what its planned action says; nothing is decided
//! again here. Progress shows each step as it starts and ends.
//!
//! ```text
//!    ┌ table
//!    ├ log group
//!    ├ role ┬ policy
//!    │      └ function ──────────────────────────┬ permission (REST) or function URL
//!    ├ API (created: settle a race) ─────────────┘
//!    │   └ route → integration → stage ┬ usage plan ─ duplicates
//!    └──────────────────── API key ────┘
//!    then: a table switch (alone), and the old front's removal (make before break)
//! ```
//!
//! With `--front function-url` the REST branch does nothing; the function URL follows
//! the function, and the REST front's resources go once it is up.
//!
//! Two installs of one stack at the same time: both may create an API. After creating
//! one, install waits [`SETTLE`] and lists the stack's APIs; the oldest (by API
//! Gateway's creation time, then id) wins, and the loser deletes its own API and leaves
//! the key and usage plan to the winner. The wait is longer than the creation time's
//! resolution (1 s), so of two APIs created in the same second each run sees both and
//! both pick the same one; of two created in different seconds, the later run sees the
//! earlier and yields.

use std::time::Duration;

use anyhow::Context;

use crate::cli::Front;
use crate::deployed::Clients;
use crate::plan::{Action, CONFIGURATION_FIELDS, Field, Plan, Refusal, Resource, function_diffs};
use crate::progress::{Progress, Wording};
use crate::resources::api::{self, ApiDetail};
use crate::resources::auth::{self, KeyState};
use crate::resources::function::{self, Configuration};
use crate::resources::{function_url, log_group, role, table};
use crate::retry::Backoff;
use crate::stack::{LEGACY_POLICY_NAME, Stack};

/// How long after creating an API install looks for a concurrent install's.
pub const SETTLE: Duration = Duration::from_millis(1500);

/// How long a changed IAM policy is given to take effect before what it replaces goes
/// (IAM is eventually consistent: https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency).
const IAM_PROPAGATION: Duration = Duration::from_secs(10);

/// Where the applied stack is.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Where callers call: the stage's invoke URL, or the function URL.
    pub url: String,
    /// The key callers send; `None` with `--auth none`.
    pub key_id: Option<String>,
}

pub async fn apply(clients: &Clients, plan: &Plan, progress: &Progress) -> anyhow::Result<Applied> {
    let table = progress.step_noting(plan.change(Resource::Table), apply_table(clients, plan));
    let log_group = progress.step(plan.change(Resource::LogGroup), apply_log_group(clients, plan));
    // The permission (or the function URL) needs the function, and the permission the
    // API the stack ends up with; it runs alongside the deployment.
    let (settled_api, api_id) = tokio::sync::oneshot::channel::<String>();
    let function_and_front = async {
        let role_arn = progress.step_noting(plan.change(Resource::Role), apply_role(clients, plan)).await?;
        let policy = progress.step(plan.change(Resource::Policy), apply_policy(clients, plan));
        if plan.table_switch.is_some() {
            // The function and what reaches it come after everything else (below).
            policy.await?;
            return anyhow::Ok((role_arn, None));
        }
        let function = progress.step_noting(plan.change(Resource::Function), apply_function(clients, plan, &role_arn));
        tokio::try_join!(policy, function)?;
        let url = connect_function(clients, plan, progress, api_id).await?;
        Ok((role_arn, url))
    };
    let rest = async {
        match plan.front {
            Front::Rest => apply_rest(clients, plan, progress, settled_api).await.map(Some),
            Front::FunctionUrl => Ok(None),
        }
    };
    let ((), (), (role_arn, url), rest) = tokio::try_join!(table, log_group, function_and_front, rest)?;
    let url = if plan.table_switch.is_some() {
        // Alone, once all else is done: no failure elsewhere can cut a switch short and
        // leave invocations stopped.
        let function = apply_function(clients, plan, &role_arn);
        progress.step_noting(plan.change(Resource::Function), function).await?;
        let (api_id, to_url) = tokio::sync::oneshot::channel();
        if let Some(rest) = &rest {
            let _ = api_id.send(rest.api_id.clone());
        }
        connect_function(clients, plan, progress, to_url).await?
    } else {
        url
    };
    // The old front goes once the new one is up.
    match (plan.front, rest) {
        (Front::Rest, Some(rest)) => {
            if matches!(plan.action(Resource::FunctionUrl), Action::Delete(_)) {
                progress.step(plan.change(Resource::FunctionUrl), remove_function_url(clients, plan)).await?;
            }
            let url = plan.stack.invoke_url(&plan.account.region, &rest.api_id);
            Ok(Applied { url, key_id: rest.key_id })
        }
        _ => {
            remove_rest(clients, plan, progress).await?;
            Ok(Applied { url: url.context("the function URL was not made")?, key_id: None })
        }
    }
}

/// What the REST front applied: the API the stack ends up with, and the key callers send.
struct RestApplied {
    api_id: String,
    key_id: Option<String>,
}

/// The REST front: API, routes, stage, key and usage plan, and their duplicates removed.
async fn apply_rest(
    clients: &Clients,
    plan: &Plan,
    progress: &Progress,
    settled_api: tokio::sync::oneshot::Sender<String>,
) -> anyhow::Result<RestApplied> {
    let key_required = plan.wanted.auth == crate::cli::Auth::ApiKey;
    match apply_api(clients, plan, progress).await? {
        Race::Won(api_id) => {
            let _ = settled_api.send(api_id.clone());
            let stage = progress.step(plan.change(Resource::Stage), apply_stage(clients, plan, &api_id));
            let key_id = if key_required {
                let key = progress.step(plan.change(Resource::ApiKey), apply_key(clients, plan));
                let ((), key) = tokio::try_join!(stage, key)?;
                // AWS refuses a key in two usage plans of one stage: duplicates go first.
                delete_planned(clients, plan, progress, Resource::UsagePlan).await?;
                let usage_plan = apply_usage_plan(clients, plan, &api_id, &key);
                progress.step(plan.change(Resource::UsagePlan), usage_plan).await?;
                delete_planned(clients, plan, progress, Resource::ApiKey).await?;
                Some(key.id)
            } else {
                // The stage stops asking for a key first; only then do keys and plans go.
                stage.await?;
                delete_planned(clients, plan, progress, Resource::UsagePlan).await?;
                delete_planned(clients, plan, progress, Resource::ApiKey).await?;
                None
            };
            delete_planned(clients, plan, progress, Resource::Api).await?;
            Ok(RestApplied { api_id, key_id })
        }
        Race::Lost(api_id) => {
            let _ = settled_api.send(api_id.clone());
            let wait = wait_for_winner(clients, &plan.stack, &api_id, key_required);
            let key_id = progress.step(plan.change(Resource::Stage), wait).await?;
            Ok(RestApplied { api_id, key_id })
        }
    }
}

/// What reaches the function once it is ready: the REST API's permission (for the API
/// `api_id` brings), or the function URL, whose address it returns.
async fn connect_function(
    clients: &Clients,
    plan: &Plan,
    progress: &Progress,
    api_id: tokio::sync::oneshot::Receiver<String>,
) -> anyhow::Result<Option<String>> {
    match plan.front {
        Front::Rest => {
            // No API id: the front failed, and its error is the one reported.
            let Ok(api_id) = api_id.await else { return Ok(None) };
            let permission = apply_permission(clients, plan, &api_id);
            progress.step(plan.change(Resource::Permission), permission).await?;
            Ok(None)
        }
        Front::FunctionUrl => {
            let url = progress.step(plan.change(Resource::FunctionUrl), apply_function_url(clients, plan)).await?;
            Ok(Some(url))
        }
    }
}

/// The function's URL with the wanted auth type; public statements only with `none`.
async fn apply_function_url(clients: &Clients, plan: &Plan) -> anyhow::Result<String> {
    let (client, stack) = (&clients.lambda, &plan.stack);
    let action = plan.action(Resource::FunctionUrl);
    let auth_type = crate::plan::method_authorization(plan.wanted.auth);
    let url = match &plan.function_url {
        None => function_url::create(client, stack, auth_type).await.context("creating the function URL")?,
        Some(_) if action.touches(Field::Method) => {
            function_url::update(client, stack, auth_type).await.context("setting the function URL's auth type")?
        }
        Some(url) => url.url.clone(),
    };
    let public = plan.wanted.auth == crate::cli::Auth::None;
    if *action == Action::Create || action.touches(Field::Statement) {
        if public {
            function_url::allow_public(client, stack).await.context("letting anyone call the function URL")?;
        } else {
            function_url::remove_public(client, stack).await.context("ending public access to the function URL")?;
        }
    }
    Ok(url)
}

async fn remove_function_url(clients: &Clients, plan: &Plan) -> anyhow::Result<()> {
    let (client, stack) = (&clients.lambda, &plan.stack);
    function_url::delete(client, &stack.name).await.context("deleting the function URL")?;
    function_url::remove_public(client, stack).await.context("removing the function URL's public access")?;
    Ok(())
}

/// `--front function-url`: the REST front's usage plans, keys, permission and APIs go,
/// in that order.
async fn remove_rest(clients: &Clients, plan: &Plan, progress: &Progress) -> anyhow::Result<()> {
    delete_planned(clients, plan, progress, Resource::UsagePlan).await?;
    delete_planned(clients, plan, progress, Resource::ApiKey).await?;
    if matches!(plan.action(Resource::Permission), Action::Delete(_)) {
        let remove = async {
            function::remove_permission(&clients.lambda, &plan.stack).await.context("removing the API's permission")?;
            anyhow::Ok(())
        };
        progress.step(plan.change(Resource::Permission), remove).await?;
    }
    delete_planned(clients, plan, progress, Resource::Api).await
}

/// A note when the table turned out to exist already.
async fn apply_table(clients: &Clients, plan: &Plan) -> anyhow::Result<((), Option<String>)> {
    let (client, name) = (&clients.dynamodb, plan.stack.table.as_str());
    let action = plan.action(Resource::Table);
    if *action == Action::Create {
        if table::create(client, &plan.stack).await.context("creating the table")? {
            table::enable_point_in_time_recovery(client, name).await.context("turning on point-in-time recovery")?;
            table::enable_ttl(client, name).await.context("turning on TTL")?;
            return Ok(((), None));
        }
        // Made since the read (by a run interrupted a moment ago, or by hand): its data
        // is used as it is, and the next run's plan reads and completes it.
        return Ok(((), Some("adopted: it was made since it was read; run install again to complete it".into())));
    }
    if action.changes() {
        // Updates are refused while the table is CREATING or UPDATING.
        table::wait_active(client, name).await.context("waiting for the table to be ACTIVE")?;
    }
    if action.touches(Field::DeletionProtection) {
        table::set_deletion_protection(client, name, true).await.context("turning on deletion protection")?;
    }
    if action.touches(Field::PointInTimeRecovery) {
        table::enable_point_in_time_recovery(client, name).await.context("turning on point-in-time recovery")?;
    }
    if action.touches(Field::Ttl) {
        table::enable_ttl(client, name).await.context("turning on TTL")?;
    }
    Ok(((), None))
}

async fn apply_log_group(clients: &Clients, plan: &Plan) -> anyhow::Result<()> {
    let (client, stack) = (&clients.logs, &plan.stack);
    let action = plan.action(Resource::LogGroup);
    // One that appeared since the read (Lambda makes it on a first invocation) is tagged.
    let appeared =
        *action == Action::Create && !log_group::create(client, stack).await.context("creating the log group")?;
    if (*action == Action::Create || action.touches(Field::Retention))
        && let Some(days) = plan.wanted.log_retention_days
    {
        log_group::set_retention(client, stack, days).await.context("setting the log retention")?;
    }
    if action.touches(Field::Tags) || appeared {
        log_group::tag(client, stack).await.context("tagging the log group")?;
    }
    Ok(())
}

/// Returns the role's ARN, and a note when it turned out to exist already.
async fn apply_role(clients: &Clients, plan: &Plan) -> anyhow::Result<(String, Option<String>)> {
    let (client, stack) = (&clients.iam, &plan.stack);
    let action = plan.action(Resource::Role);
    if *action == Action::Create {
        if let Some(arn) = role::create(client, stack).await.context("creating the role")? {
            return Ok((arn, None));
        }
        // Made by a run whose answer was lost: adopted, made Lambda's, tagged.
        role::update_trust(client, stack).await.context("setting the role's trust policy")?;
        role::tag(client, stack).await.context("tagging the role")?;
        return Ok((plan.role_arn.clone(), Some("adopted: it existed already (EntityAlreadyExists)".into())));
    }
    if action.touches(Field::Trust) {
        role::update_trust(client, stack).await.context("setting the role's trust policy")?;
    }
    if action.touches(Field::Tags) {
        role::tag(client, stack).await.context("tagging the role")?;
    }
    Ok((plan.role_arn.clone(), None))
}

async fn apply_policy(clients: &Clients, plan: &Plan) -> anyhow::Result<()> {
    let (client, stack) = (&clients.iam, &plan.stack);
    let action = plan.action(Resource::Policy);
    let name = Stack::region_policy_name(&plan.account.region);
    if *action == Action::Create || action.touches(Field::Document) {
        // During a table switch it grants both tables; the switch narrows it.
        let policy = stack.role_policy_with(&plan.account, plan.table_switch.as_deref());
        role::put_policy(client, &stack.name, &name, &policy).await.context("writing the role's policy")?;
    }
    if action.touches(Field::LegacyPolicy) {
        // IAM applies a new policy within seconds, not at once: the old one goes after it
        // has had time to, so the function is never left without access.
        tokio::time::sleep(IAM_PROPAGATION).await;
        let delete = role::delete_policy(client, &stack.name, LEGACY_POLICY_NAME);
        delete.await.context("deleting the role's policy from before policies were per region")?;
    }
    Ok(())
}

fn configuration<'a>(plan: &Plan, role_arn: &'a str) -> Configuration<'a> {
    let mut variables = plan.function.as_ref().map(|function| function.variables.clone()).unwrap_or_default();
    variables.insert(function::TABLE_VARIABLE.to_owned(), plan.stack.table.clone());
    Configuration {
        role: role_arn,
        memory_mb: plan.wanted.memory_mb,
        timeout_seconds: plan.wanted.timeout_seconds,
        variables,
    }
}

/// A note when the function turned out to exist already.
async fn apply_function(clients: &Clients, plan: &Plan, role_arn: &str) -> anyhow::Result<((), Option<String>)> {
    let (client, stack) = (&clients.lambda, &plan.stack);
    let action = plan.action(Resource::Function);
    let configuration = configuration(plan, role_arn);
    let mut action = action.clone();
    let mut note = None;
    if action == Action::Create {
        if function::create(client, stack, &plan.wanted.code, &configuration).await.context("creating the function")? {
            if plan.wanted.max_concurrency.is_some() {
                let set = function::set_concurrency(client, stack, plan.wanted.max_concurrency);
                set.await.context("setting the function's reserved concurrency")?;
            }
            return Ok(((), None));
        }
        // Created by a run whose answer was lost: brought up to date like any other, but
        // never pointed at another table than the one it has.
        let found = function::read(client, &stack.name).await.context("reading the function")?;
        let found = found.context("the function exists and then does not: run install again")?;
        if found.table() != stack.table {
            let refusal = Refusal::TableSwitch { current: found.table().to_owned(), asked: stack.table.clone() };
            return Err(anyhow::Error::new(refusal).context("a function of this name appeared since it was read"));
        }
        action = Action::Update(function_diffs(&found, stack, &plan.wanted, role_arn));
        note = Some(format!(
            "adopted: it existed already (ResourceConflictException); {}",
            Wording::Done.describe_action(&action)
        ));
    }
    if let Some(current) = &plan.table_switch {
        switch_table(clients, plan, current, &configuration).await?;
    }
    if action.touches(Field::Code) {
        function::update_code(client, stack, &plan.wanted.code).await.context("updating the function's code")?;
    }
    if CONFIGURATION_FIELDS.iter().any(|field| action.touches(*field)) && plan.table_switch.is_none() {
        let update = function::update_configuration(client, stack, &configuration);
        update.await.context("updating the function's configuration")?;
    }
    if action.touches(Field::Concurrency) {
        let set = function::set_concurrency(client, stack, plan.wanted.max_concurrency);
        set.await.context("setting the function's reserved concurrency")?;
    }
    if action.touches(Field::Tags) {
        let arn = plan.function.as_ref().map_or_else(|| stack.function_arn(&plan.account), |f| f.arn.clone());
        function::tag(client, stack, &arn).await.context("tagging the function")?;
    }
    // What comes next (the permission) is a call on the function too.
    let was_ready = plan.function.as_ref().is_none_or(|function| function.ready);
    if action.changes() || !was_ready {
        function::wait_ready(client, &stack.name).await.context("waiting for the function to be ready")?;
    }
    Ok(((), note))
}

/// Points the function at another table without a counter going backwards: invocations
/// stop (reserved concurrency 0), those in flight get the function's timeout to finish,
/// both tables are compared again, and only then is the configuration updated and the
/// function let run again. Any failure lets it run again on its old table.
async fn switch_table(
    clients: &Clients,
    plan: &Plan,
    current: &str,
    configuration: &Configuration<'_>,
) -> anyhow::Result<()> {
    let (client, stack) = (&clients.lambda, &plan.stack);
    let deployed = plan.function.as_ref().context("a table switch needs the deployed function")?;
    function::set_concurrency(client, stack, Some(0)).await.context("stopping invocations for the table switch")?;
    let switched = async {
        tokio::time::sleep(Duration::from_secs(u64::try_from(deployed.timeout_seconds).unwrap_or(0) + 1)).await;
        let (current_counters, new_counters) = tokio::try_join!(
            table::counters(&clients.dynamodb, current),
            table::counters(&clients.dynamodb, &stack.table)
        )
        .context("reading the counters of both tables again")?;
        let counters = crate::deployed::Counters { current: current_counters, new: new_counters };
        crate::plan::refuse_counters_behind(current, &stack.table, &counters)?;
        function::update_configuration(client, stack, configuration).await.context("switching the table")?;
        let switched = function::wait_ready(client, &stack.name).await;
        switched.with_context(|| format!("waiting for the switch; the function may already use {}", stack.table))?;
        // Only the new table from now on.
        let policy = stack.role_policy(&plan.account);
        let name = Stack::region_policy_name(&plan.account.region);
        role::put_policy(&clients.iam, &stack.name, &name, &policy).await.context("narrowing the role's policy")?;
        anyhow::Ok(())
    };
    let switched = tokio::select! {
        switched = switched => switched,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted: the table switch was abandoned")),
    };
    // As it was, but never left refusing every invocation.
    let reserved = deployed.reserved_concurrency.filter(|reserved| *reserved > 0);
    let resumed = function::set_concurrency(client, stack, reserved).await;
    switched?;
    resumed.context("letting the function run again after the table switch")?;
    Ok(())
}

async fn apply_permission(clients: &Clients, plan: &Plan, api_id: &str) -> anyhow::Result<()> {
    let action = plan.action(Resource::Permission);
    // A permission planned as kept still names the API the plan read; if a race made
    // another API the stack's, it is replaced.
    let planned_api = plan.api.as_ref().map(|api| api.id.as_str());
    if !action.changes() && planned_api == Some(api_id) {
        return Ok(());
    }
    let (client, stack) = (&clients.lambda, &plan.stack);
    if matches!(action, Action::Update(_)) {
        function::remove_permission(client, stack).await.context("removing the old permission")?;
    }
    let source_arn = stack.source_arn(&plan.account, api_id);
    function::add_permission(client, stack, &source_arn).await.context("letting the API invoke the function")?;
    Ok(())
}

/// The API the stack ends up with: this run's, routes connected, or the one a concurrent
/// install made that won.
enum Race {
    Won(String),
    Lost(String),
}

async fn apply_api(clients: &Clients, plan: &Plan, progress: &Progress) -> anyhow::Result<Race> {
    let (client, stack) = (&clients.apigateway, &plan.stack);
    let Some(target) = plan.api.as_ref().filter(|_| *plan.action(Resource::Api) != Action::Create) else {
        let create = async { api::create(client, stack).await.context("creating the API") };
        let (created, detail) = progress.step(plan.change(Resource::Api), create).await?;
        // Connects the routes while waiting to see whether a concurrent install made an
        // API too.
        let settle = async {
            tokio::time::sleep(SETTLE).await;
            let apis = api::list(client, &stack.name).await.context("listing the APIs")?;
            let oldest = apis.iter().filter(|api| api.tagged).min_by_key(|api| (api.created, api.id.clone()));
            anyhow::Ok(oldest.map_or_else(|| created.id.clone(), |api| api.id.clone()))
        };
        let (routes, winner) = tokio::join!(apply_routes(clients, plan, progress, &created.id, &detail), settle);
        let winner = winner?;
        if winner != created.id {
            api::delete(client, &created.id).await.context("deleting the API a concurrent install made too")?;
            return Ok(Race::Lost(winner));
        }
        routes?;
        return Ok(Race::Won(created.id));
    };
    let action = plan.action(Resource::Api);
    let tag = async {
        if action.touches(Field::Tags) {
            api::tag(client, stack, &target.id).await.context("tagging the API")?;
        }
        anyhow::Ok(())
    };
    progress.step(plan.change(Resource::Api), tag).await?;
    apply_routes(clients, plan, progress, &target.id, &target.detail).await?;
    Ok(Race::Won(target.id.clone()))
}

/// `{proxy+}` and its method, then the integration.
async fn apply_routes(
    clients: &Clients,
    plan: &Plan,
    progress: &Progress,
    api_id: &str,
    detail: &ApiDetail,
) -> anyhow::Result<()> {
    let route = apply_route(clients, plan, api_id, detail);
    let resource_id = progress.step(plan.change(Resource::Route), route).await?;
    let integration = apply_integration(clients, plan, api_id, &resource_id);
    progress.step(plan.change(Resource::Integration), integration).await
}

/// Returns the `{proxy+}` resource's id.
async fn apply_route(clients: &Clients, plan: &Plan, api_id: &str, detail: &ApiDetail) -> anyhow::Result<String> {
    let client = &clients.apigateway;
    let action = plan.action(Resource::Route);
    let resource_id = match &detail.proxy_id {
        Some(id) => id.clone(),
        None => api::create_proxy(client, api_id, &detail.root_id).await.context("creating {proxy+}")?,
    };
    let auth = (crate::plan::method_authorization(plan.wanted.auth), plan.wanted.auth == crate::cli::Auth::ApiKey);
    if action.changes() {
        let put = api::put_method(client, api_id, &resource_id, detail.method.is_some(), auth);
        put.await.context("putting the ANY method")?;
    }
    Ok(resource_id)
}

async fn apply_integration(clients: &Clients, plan: &Plan, api_id: &str, resource_id: &str) -> anyhow::Result<()> {
    if plan.action(Resource::Integration).changes() {
        let uri = plan.stack.integration_uri(&plan.account);
        let put = api::put_integration(&clients.apigateway, api_id, resource_id, &uri);
        put.await.context("connecting the method to the function")?;
    }
    Ok(())
}

async fn apply_stage(clients: &Clients, plan: &Plan, api_id: &str) -> anyhow::Result<()> {
    let action = plan.action(Resource::Stage);
    let created = *action == Action::Create;
    if created || action.touches(Field::Deployment) {
        let deploy = api::deploy(&clients.apigateway, api_id, &plan.stack.stage, &plan.deployment);
        deploy.await.context("deploying the API to the stage")?;
    }
    // With IAM the stage throttles callers, in place of a usage plan (and a throttle left
    // from IAM follows the wanted one).
    let iam = plan.wanted.auth == crate::cli::Auth::Iam;
    if (iam && created) || action.touches(Field::Throttle) {
        let throttle = api::throttle_stage(&clients.apigateway, api_id, &plan.stack.stage, plan.wanted.throttle);
        throttle.await.context("throttling the stage")?;
    }
    Ok(())
}

async fn apply_key(clients: &Clients, plan: &Plan) -> anyhow::Result<KeyState> {
    let client = &clients.apigateway;
    let Some(key) = &plan.key else {
        return auth::create_key(client, &plan.stack).await.context("creating the API key");
    };
    let action = plan.action(Resource::ApiKey);
    if action.touches(Field::Enabled) {
        auth::enable_key(client, &key.id).await.context("enabling the API key")?;
    }
    if action.touches(Field::Tags) {
        auth::tag(client, &plan.stack, &format!("/apikeys/{}", key.id)).await.context("tagging the API key")?;
    }
    Ok(key.clone())
}

async fn apply_usage_plan(clients: &Clients, plan: &Plan, api_id: &str, key: &KeyState) -> anyhow::Result<()> {
    let client = &clients.apigateway;
    let Some(usage_plan) = &plan.usage_plan else {
        let throttle = plan.wanted.throttle;
        let id =
            auth::create_usage_plan(client, &plan.stack, api_id, throttle).await.context("creating the usage plan")?;
        auth::add_key(client, &id, &key.id).await.context("adding the key to the usage plan")?;
        return Ok(());
    };
    let action = plan.action(Resource::UsagePlan);
    let mut patches = Vec::new();
    if action.touches(Field::Stage) {
        patches.push(auth::stage_patch(api_id, &plan.stack.stage));
    }
    if action.touches(Field::Throttle) {
        patches.extend(auth::throttle_patches(plan.wanted.throttle));
    }
    if !patches.is_empty() {
        auth::update_usage_plan(client, &usage_plan.id, patches).await.context("updating the usage plan")?;
    }
    if action.touches(Field::Key) {
        auth::add_key(client, &usage_plan.id, &key.id).await.context("adding the key to the usage plan")?;
    }
    if action.touches(Field::Tags) {
        let path = format!("/usageplans/{}", usage_plan.id);
        auth::tag(client, &plan.stack, &path).await.context("tagging the usage plan")?;
    }
    Ok(())
}

/// Deletes what the plan marks for deletion of one kind: duplicates of the stack's API,
/// key or usage plan; with no key wanted (`--auth iam|none`) the stack's keys and usage
/// plans; with a function URL also its APIs.
async fn delete_planned(clients: &Clients, plan: &Plan, progress: &Progress, resource: Resource) -> anyhow::Result<()> {
    let client = &clients.apigateway;
    let deletions = plan.changes.iter().filter(|change| change.resource == resource);
    for change in deletions.filter(|change| matches!(change.action, Action::Delete(_))) {
        let delete = async {
            match resource {
                Resource::UsagePlan => {
                    // By id for a duplicate; all of the stack's with `--auth none`.
                    let named = plan.duplicate_usage_plans.iter().filter(|p| p.id == change.name).count() > 0;
                    for usage_plan in plan.duplicate_usage_plans.iter().filter(|p| !named || p.id == change.name) {
                        auth::delete_usage_plan(client, usage_plan).await.context("deleting a usage plan")?;
                    }
                }
                Resource::ApiKey => {
                    let named = plan.duplicate_keys.contains(&change.name);
                    for key in plan.duplicate_keys.iter().filter(|key| !named || **key == change.name) {
                        auth::delete_key(client, key).await.context("deleting an API key")?;
                    }
                }
                _ => {
                    api::delete(client, &change.name).await.context("deleting a duplicate API")?;
                }
            }
            anyhow::Ok(())
        };
        progress.step(change, delete).await?;
    }
    Ok(())
}

/// After losing the race for the API: waits until the winning install has deployed the
/// stage and, with keys, made the usage plan; returns the key callers send.
async fn wait_for_winner(
    clients: &Clients,
    stack: &Stack,
    api_id: &str,
    key_required: bool,
) -> anyhow::Result<Option<String>> {
    let client = &clients.apigateway;
    let key_id = std::sync::Mutex::new(None);
    let ready = Backoff::POLL
        .poll(|| async {
            let detail = api::detail(client, api_id).await?;
            if !detail.stages.iter().any(|stage| stage.name == stack.stage) {
                return Ok::<_, anyhow::Error>(false);
            }
            if !key_required {
                return Ok(true);
            }
            let plans = auth::usage_plans(client, &stack.name).await?;
            let serving = plans.iter().find(|plan| plan.tagged && plan.stages.iter().any(|(id, _)| id == api_id));
            let key = serving.and_then(|plan| plan.key_ids.first().cloned());
            let found = key.is_some();
            *key_id.lock().expect("not poisoned") = key;
            Ok(found)
        })
        .await
        .context("waiting for the concurrent install")?;
    let key_id = key_id.into_inner().expect("not poisoned");
    if !ready {
        anyhow::bail!(
            "another install of stack {} made its API at the same time and has not finished it\n\
             hint: run `counterctl install` again once it is done",
            stack.name
        );
    }
    Ok(key_id)
}
