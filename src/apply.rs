//! The apply phase: carries out a [`Plan`], running the steps that do not depend on each
//! other concurrently. Each resource module applies its own typed change; this module
//! only orders them. Progress shows each step as it starts and ends.
//!
//! ```text
//!    ┌ table ─────┐ (a new table, before what records it)
//!    ├ log group  │
//!    ├ role ──────┴ ┬ policy
//!    │              └ function → alias ──────────┬ permission (REST) or function URL
//!    ├ API (created: settle a race) ─────────────┘     │ (added before the stage moves;
//!    │   └ route → integration → stage ┬ usage plan    │  the function's own statement
//!    └──────────────────── API key ────┘ ─ duplicates  └ goes once it has moved)
//!    then: a table switch (alone), the old front's removal (make before break), the
//!    custom domain with its mapping and record (a domain that goes after it, or before
//!    the REST API it maps to goes), the alarm topic and its subscription, and the alarms
//! ```
//!
//! With `--front function-url` the REST branch does nothing; the function URL follows
//! the function, and the REST front's resources go once it is up.

use anyhow::Context;

use crate::aws::Clients;
use crate::change::Action;
use crate::plan::{FrontPlan, Keys, Plan, RestPlan, UrlPlan};
use crate::progress::Progress;
use crate::resources::api::{self, Race};
use crate::resources::function::FunctionSpec;
use crate::resources::{
    alarms, alias, api_key, domain, function, function_url, log_group, permission, role, routes, stage, table, topic,
    usage_plan,
};
use crate::retry::{self, TimedOut};
use crate::settings::Auth;
use crate::stack::Stack;

/// Where the applied stack is.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    /// Where callers call: the stage's invoke URL, or the function URL.
    pub(crate) url: String,
    /// The key callers send; `None` without `--auth api-key`.
    pub(crate) key_id: Option<String>,
    /// The custom domain, and where its DNS record points.
    pub(crate) domain: Option<AppliedDomain>,
}

/// A custom domain as applied: its name, and the alias its DNS record points to.
#[derive(Debug, Clone)]
pub(crate) struct AppliedDomain {
    pub(crate) name: String,
    pub(crate) alias: domain::record::Alias,
}

pub(crate) async fn apply(clients: &Clients, plan: &Plan, progress: &Progress) -> anyhow::Result<Applied> {
    let stack = &plan.stack;
    let (table_made, table_ready) = tokio::sync::oneshot::channel::<()>();
    let table = async {
        progress
            .step_noting(plan.table.row(), table::apply(&clients.dynamodb, stack, &plan.table, plan.regions.as_ref()))
            .await?;
        let _ = table_made.send(());
        anyhow::Ok(())
    };
    let retention = plan.wanted.log_retention_days;
    let log_group =
        progress.step(plan.log_group.row(), log_group::apply(&clients.logs, stack, &plan.log_group, retention));
    // The permission (or the function URL) needs the function, and the permission the
    // API the stack ends up with; it runs alongside the deployment.
    let (settled_api, api_id) = tokio::sync::oneshot::channel::<String>();
    // The stage deploys what invokes the alias only once the alias may be invoked, and the
    // function's own statement goes only once the stage no longer invokes the function.
    let (permission_added, permission_ready) = tokio::sync::oneshot::channel::<()>();
    let (stage_deployed, stage_moved) = tokio::sync::oneshot::channel::<()>();
    let switching_from = plan.function.table_switch.as_deref();
    let function_and_front = async {
        let role = role::apply_role(&clients.iam, stack, &plan.role, &plan.role_arn);
        let role_arn = progress.step_noting(plan.role.row(), role).await?;
        // The policy's grant and the function's TABLE_NAME are the stack's record that it
        // has its table (`Deployed::records`): written once a new table exists, so a run
        // whose CreateTable failed records nothing a re-run would take for a lost table.
        if plan.table.action == Action::Create && table_ready.await.is_err() {
            anyhow::bail!("the table was not made");
        }
        let policy = role::apply_policy(&clients.iam, plan.context(), &plan.policy, switching_from);
        let policy = progress.step(plan.policy.row(), policy);
        if switching_from.is_some() {
            // The function and what reaches it come after everything else (below).
            policy.await?;
            return anyhow::Ok((role_arn, None));
        }
        let function = async {
            let resume = apply_function(clients, plan, progress, &role_arn).await?;
            resume.apply(&clients.lambda, stack).await
        };
        tokio::try_join!(policy, function)?;
        let gates = Gates { permission_added: Some(permission_added), stage_moved };
        let url = connect_function(clients, plan, progress, api_id, gates).await?;
        Ok((role_arn, url))
    };
    let rest = async {
        match &plan.front {
            FrontPlan::Rest(rest) => {
                // A table switch connects the function after everything else: nothing to wait for.
                let permission_ready = switching_from.is_none().then_some(permission_ready);
                let stage_gates = (permission_ready, stage_deployed);
                apply_rest(clients, plan, rest, progress, settled_api, stage_gates).await.map(Some)
            }
            FrontPlan::FunctionUrl(_) => Ok(None),
        }
    };
    let ((), (), (role_arn, url), rest) = tokio::try_join!(table, log_group, function_and_front, rest)?;
    let url = if switching_from.is_some() {
        // Alone, once all else is done: no failure elsewhere can cut a switch short and
        // leave invocations stopped.
        let resume = apply_function(clients, plan, progress, &role_arn).await?;
        let (api_id, to_url) = tokio::sync::oneshot::channel();
        if let Some(rest) = &rest {
            let _ = api_id.send(rest.api_id.clone());
        }
        // The stage was deployed above (or the front is a function URL).
        let (stage_deployed, stage_moved) = tokio::sync::oneshot::channel();
        let _ = stage_deployed.send(());
        let url =
            connect_function(clients, plan, progress, to_url, Gates { permission_added: None, stage_moved }).await?;
        // Calls run again only once the front may invoke the alias, and only if it still
        // runs a version on the new table (another install may have moved it since).
        let table = function::read_table(&clients.lambda, &stack.name, Some(alias::ALIAS));
        let table = table.await.context("reading the alias's table")?;
        if table.as_deref() != Some(stack.table.as_str()) {
            let table = table.as_deref().unwrap_or("none (no alias)");
            anyhow::bail!(
                "alias live of function {} runs a version on table {table}, not {}: invocations stay stopped \
                 (reserved concurrency 0) so that nothing runs on the old table again\nhint: run install again",
                stack.name,
                stack.table
            );
        }
        resume.apply(&clients.lambda, stack).await?;
        url
    } else {
        url
    };
    // The old front goes once the new one is up.
    let applied = match (&plan.front, rest) {
        (FrontPlan::Rest(front), Some(rest)) => {
            progress.delete(clients, &front.function_url).await?;
            let url = stack.invoke_url(&plan.account.region, &rest.api_id);
            let domain = match &plan.domain.wanted {
                Some(parts) => {
                    let alias = domain::apply(clients, stack, parts, &rest.api_id, progress).await?;
                    Some(AppliedDomain { name: parts.wanted.name.clone(), alias })
                }
                None => None,
            };
            // A domain the stack no longer has goes once its new one is up.
            for unwanted in &plan.domain.unwanted {
                progress.delete(clients, unwanted).await?;
            }
            Applied { url, key_id: rest.key_id, domain }
        }
        (FrontPlan::FunctionUrl(front), _) => {
            // Before the API it maps to.
            for unwanted in &plan.domain.unwanted {
                progress.delete(clients, unwanted).await?;
            }
            remove_rest(clients, front, progress).await?;
            Applied { url: url.context("the function URL was not made")?, key_id: None, domain: None }
        }
        (FrontPlan::Rest(_), None) => unreachable!("the REST branch returns its API or an error"),
    };
    // Last: they watch the function, the front and the table, whichever front it is now;
    // the stack's topic first, as they send to it.
    let topic_arn = topic::arn(&plan.account, &stack.name);
    if let Some(planned) = &plan.topic.topic {
        progress.step(planned.row(), topic::apply(&clients.sns, stack, planned)).await?;
    }
    if let Some(subscription) = &plan.topic.subscription {
        progress.step(subscription.row(), topic::subscribe(&clients.sns, subscription, &topic_arn)).await?;
    }
    let alarms =
        plan.alarms.wanted.iter().map(|(spec, planned)| {
            progress.step(planned.row(), alarms::apply(&clients.cloudwatch, stack, planned, spec))
        });
    futures_util::future::try_join_all(alarms).await?;
    progress.delete(clients, &plan.alarms.unwanted).await?;
    for replaced in &plan.topic.replaced {
        progress.delete(clients, replaced).await?;
    }
    progress.delete(clients, &plan.topic.unwanted).await?;
    Ok(applied)
}

/// The function, then its version and alias; its reserved concurrency is the caller's to
/// set after that ([`function::Resume`]): calls resumed after a table switch reach only a
/// version on the new table.
async fn apply_function(
    clients: &Clients,
    plan: &Plan,
    progress: &Progress,
    role_arn: &str,
) -> anyhow::Result<function::Resume> {
    let spec = FunctionSpec { stack: &plan.stack, wanted: &plan.wanted.function, role_arn };
    let apply = function::apply(clients, &plan.account, &plan.function, &spec);
    let resume = progress.step_noting(plan.function.planned.row(), apply).await?;
    let aliased = &plan.function.alias;
    let apply = alias::apply(&clients.lambda, &plan.stack, aliased, &plan.wanted.function.code.sha256);
    let moved = progress.step_noting(aliased.planned.row(), apply).await;
    if moved.is_err() && plan.function.table_switch.is_some() {
        return moved.map(|_| resume).context(
            "invocations stay stopped (reserved concurrency 0): the alias still runs the version on the old table; \
             run install again to finish the switch",
        );
    }
    moved?;
    Ok(resume)
}

/// How the permission and the stage wait for each other.
struct Gates {
    /// Sent once the alias's permission is there.
    permission_added: Option<tokio::sync::oneshot::Sender<()>>,
    /// Received once the stage is deployed.
    stage_moved: tokio::sync::oneshot::Receiver<()>,
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
    rest: &RestPlan,
    progress: &Progress,
    settled_api: tokio::sync::oneshot::Sender<String>,
    (permission_ready, stage_deployed): (Option<tokio::sync::oneshot::Receiver<()>>, tokio::sync::oneshot::Sender<()>),
) -> anyhow::Result<RestApplied> {
    let (client, stack, auth) = (&clients.apigateway, &plan.stack, plan.wanted.auth);
    let integration_uri = &stack.integration_uri(&plan.account);
    let connect = |api_id: String, detail: api::ApiDetail| async move {
        let route = routes::apply_route(client, (&api_id, &detail.root_id), detail.route(), &rest.route, auth);
        let resource_id = progress.step(rest.route.row(), route).await?;
        let integration =
            routes::apply_integration(client, (&api_id, &resource_id), &rest.integration, integration_uri);
        progress.step(rest.integration.row(), integration).await
    };
    match api::apply(client, stack, &rest.api, progress, connect).await? {
        Race::Won(api_id) => {
            let _ = settled_api.send(api_id.clone());
            let deployed = (rest.deployment.as_str(), auth, plan.wanted.throttle);
            let stage = async {
                if let Some(permission_ready) = permission_ready {
                    // Dropped unsent: the function's branch failed, and reports why.
                    permission_ready.await.context("the alias's permission was not added")?;
                }
                progress.step(rest.stage.row(), stage::apply(client, stack, &api_id, &rest.stage, deployed)).await?;
                let _ = stage_deployed.send(());
                anyhow::Ok(())
            };
            let key_id = match &rest.keys {
                Keys::Wanted { key, usage_plan } => {
                    let made = progress.step(key.planned.row(), api_key::apply(client, stack, key));
                    let ((), made) = tokio::try_join!(stage, made)?;
                    // AWS refuses a key in two usage plans of one stage: duplicates go first.
                    for duplicate in &usage_plan.duplicates {
                        progress.delete(clients, duplicate).await?;
                    }
                    let ids = (api_id.as_str(), made.id.as_str());
                    let apply = usage_plan::apply(client, stack, usage_plan, plan.wanted.throttle, ids);
                    progress.step(usage_plan.planned.row(), apply).await?;
                    for duplicate in &key.duplicates {
                        progress.delete(clients, duplicate).await?;
                    }
                    Some(made.id)
                }
                Keys::Unwanted { keys, usage_plans } => {
                    // The stage stops asking for a key first; only then do keys and plans go.
                    stage.await?;
                    progress.delete(clients, usage_plans).await?;
                    progress.delete(clients, keys).await?;
                    None
                }
            };
            for duplicate in &rest.api.duplicates {
                progress.delete(clients, duplicate).await?;
            }
            Ok(RestApplied { api_id, key_id })
        }
        Race::Lost(api_id) => {
            let _ = settled_api.send(api_id.clone());
            let wait = wait_for_winner(clients, stack, &api_id, auth == Auth::ApiKey);
            let key_id = progress.step(rest.stage.row(), wait).await?;
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
    Gates { permission_added, stage_moved }: Gates,
) -> anyhow::Result<Option<String>> {
    match &plan.front {
        FrontPlan::Rest(rest) => {
            // No API id: the front failed, and its error is the one reported.
            let Ok(api_id) = api_id.await else { return Ok(None) };
            let planned_api = rest.api.chosen.as_ref().map(|api| api.id.as_str());
            let work = async {
                let apply =
                    permission::apply(&clients.lambda, plan.context(), &rest.permission, (planned_api, &api_id));
                apply.await?;
                if let Some(permission_added) = permission_added {
                    let _ = permission_added.send(());
                }
                // Only once callers reach the alias; no stage deployed (the front failed, or
                // another install deploys it): the statement stays for the next run.
                if permission::removes_legacy(&rest.permission) && stage_moved.await.is_ok() {
                    permission::remove_legacy(&clients.lambda, &plan.stack).await?;
                }
                anyhow::Ok(())
            };
            progress.step(rest.permission.row(), work).await?;
            Ok(None)
        }
        FrontPlan::FunctionUrl(front) => {
            let apply = function_url::apply(
                &clients.lambda,
                &plan.stack,
                (&front.url, front.deployed.as_ref()),
                plan.wanted.auth,
            );
            Ok(Some(progress.step(front.url.row(), apply).await?))
        }
    }
}

/// `--front function-url`: the REST front's usage plans, keys, permission and APIs go,
/// in that order.
async fn remove_rest(clients: &Clients, front: &UrlPlan, progress: &Progress) -> anyhow::Result<()> {
    progress.delete(clients, &front.usage_plans).await?;
    progress.delete(clients, &front.keys).await?;
    progress.delete(clients, &front.permission).await?;
    for api in &front.apis {
        progress.delete(clients, api).await?;
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
    // Settled: `Some` of the key callers send (`None` without keys).
    let ready = retry::POLL
        .poll("the concurrent install", || async {
            let detail = api::detail(client, api_id).await?;
            if detail.stage(&stack.stage).is_none() {
                return Ok::<_, anyhow::Error>(None);
            }
            if !key_required {
                return Ok(Some(None));
            }
            let plans = usage_plan::read(client, &stack.name).await?;
            let serving = plans.iter().find(|plan| plan.tagged && plan.serves(api_id));
            Ok(serving.and_then(|plan| plan.key_ids.first().cloned()).map(Some))
        })
        .await;
    if ready.as_ref().is_err_and(|error| error.downcast_ref::<TimedOut>().is_some()) {
        anyhow::bail!(
            "another install of stack {} made its API at the same time and has not finished it\n\
             hint: run `counterctl install` again once it is done",
            stack.name
        );
    }
    ready.context("waiting for the concurrent install")
}
