//! The API's stage: the deployment it serves (fingerprinted, so one never deployed is
//! seen) and, with `--auth iam`, the throttle of every method.
//!
//! CreateDeployment is limited to "1 request every 5 seconds per account"
//! (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html): it waits
//! out throttling with backoff sized to that quota.

use anyhow::Context;
use aws_sdk_apigateway::Client;
use sha2::{Digest, Sha256};

use super::Error;
use super::apigateway::{THROTTLED, Throttle, throttle_wording};
use crate::aws::{AwsError, Operation, has_code};
use crate::change::{Action, Changes, Diff, Field, Planned, Resource, diff};
use crate::retry;
use crate::settings::Auth;
use crate::stack::Stack;

/// The stage of the original service, and of a new install.
pub(crate) const DEFAULT_STAGE: &str = "prod";
/// What the description of each deployment counterctl makes starts with.
pub(crate) const DEPLOYMENT_PREFIX: &str = "counterctl ";

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StageState {
    pub(crate) name: String,
    /// The description of the deployment the stage serves.
    pub(crate) deployment: Option<String>,
    /// That deployment's id (what `export` names in an import block).
    pub(crate) deployment_id: Option<String>,
    /// The throttle of every method (`*/*` method settings), if set.
    pub(crate) throttle: Option<Throttle>,
}

/// The stage an API serves the stack on: the one a counterctl deployment is on, else the
/// default.
pub(crate) fn deployed_stage(stages: &[StageState]) -> String {
    let by_counterctl =
        stages.iter().find(|stage| stage.deployment.as_deref().is_some_and(|d| d.starts_with("counterctl")));
    by_counterctl.map_or_else(|| DEFAULT_STAGE.to_owned(), |stage| stage.name.clone())
}

/// The description of a deployment of this API: a fingerprint of what callers see (auth
/// and integration), so a change that was never deployed (throttled, interrupted) is
/// seen and deployed by the next run, then the same in words, for the plan.
pub(crate) fn deployment_description(authorization: &str, key_required: bool, integration_uri: &str) -> String {
    let fingerprint = Sha256::digest(format!(
        "ANY {PROXY} {authorization} key={key_required} {integration_uri}",
        PROXY = crate::stack::PROXY_PATH
    ));
    let hex: String = fingerprint.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
    let key = if key_required { "API key required" } else { "no API key" };
    // `…:function:NAME/invocations`: the function's name says enough.
    let function = integration_uri
        .split(":function:")
        .nth(1)
        .map_or(integration_uri, |rest| rest.split('/').next().unwrap_or(rest));
    format!("{DEPLOYMENT_PREFIX}{hex} (auth {authorization}, {key}, function {function})")
}

/// A deployment's fingerprint: its description before the words (an earlier counterctl
/// wrote the fingerprint alone).
fn fingerprint(description: &str) -> &str {
    description.split_once(" (").map_or(description, |(fingerprint, _)| fingerprint)
}

/// What a deployment serves, in words, where its description says.
fn in_words(description: &str) -> Option<&str> {
    description.split_once(" (").map(|(_, words)| words.trim_end_matches(')'))
}

/// The plan's line for a redeploy: what changes for callers, in words (the parts that
/// differ), or the deployed fingerprint where its description has no words.
fn deployment_diff(live: Option<&str>, wanted: &str) -> Diff {
    let to = in_words(wanted).unwrap_or(wanted);
    match live.map(|live| (live, in_words(live))) {
        None => diff(Field::Deployment, "none", to),
        Some((live, None)) => diff(Field::Deployment, fingerprint(live), to),
        Some((_, Some(from))) => {
            let (from_parts, to_parts): (Vec<&str>, Vec<&str>) = (from.split(", ").collect(), to.split(", ").collect());
            let changed: Vec<(&str, &str)> = from_parts
                .iter()
                .zip(&to_parts)
                .filter(|(old, new)| old != new)
                .map(|(old, new)| (*old, *new))
                .collect();
            if changed.is_empty() || from_parts.len() != to_parts.len() {
                // The same deployment again, for a route or integration that changed.
                let again = if from == to { "the same, deployed again" } else { to };
                return diff(Field::Deployment, from, again);
            }
            let (old, new): (Vec<&str>, Vec<&str>) = changed.into_iter().unzip();
            diff(Field::Deployment, old.join(", "), new.join(", "))
        }
    }
}

/// What changes on the stage.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct StageChange {
    pub(crate) deployment: Option<Diff>,
    pub(crate) throttle: Option<Diff>,
}

impl Changes for StageChange {
    fn diffs(&self) -> Vec<Diff> {
        [&self.deployment, &self.throttle].into_iter().flatten().cloned().collect()
    }
}

/// The stage, as found on the API kept (`live`), deploying `deployment` (and again when
/// the route or integration changed).
pub(crate) fn plan(
    live: Option<&StageState>,
    stage: &str,
    (deployment, routes_change): (&str, bool),
    auth: Auth,
    throttle: Throttle,
) -> Planned<StageChange> {
    let action = match live {
        None => Action::Create,
        Some(live) => {
            let deployed = live.deployment.as_deref().map(fingerprint);
            let redeploy = deployed != Some(fingerprint(deployment)) || routes_change;
            // With IAM the stage throttles; a stage throttle left from IAM is kept equal to
            // the wanted one, so it never caps callers below what the usage plan allows.
            let throttles = auth == Auth::Iam || live.throttle.is_some();
            let change = StageChange {
                deployment: redeploy.then(|| deployment_diff(live.deployment.as_deref(), deployment)),
                throttle: (throttles && live.throttle != Some(throttle))
                    .then(|| diff(Field::Throttle, throttle_wording(live.throttle), throttle)),
            };
            Action::found(change, false)
        }
    };
    Planned::new(Resource::Stage, stage, action)
}

pub(crate) async fn apply(
    client: &Client,
    stack: &Stack,
    api_id: &str,
    planned: &Planned<StageChange>,
    (deployment, auth, throttle): (&str, Auth, Throttle),
) -> anyhow::Result<()> {
    let created = planned.action == Action::Create;
    let (redeploy, rethrottle) = match planned.action.change() {
        Some(StageChange { deployment, throttle }) => (deployment.is_some(), throttle.is_some()),
        None => (false, false),
    };
    if created || redeploy {
        deploy(client, api_id, &stack.stage, deployment).await.context("deploying the API to the stage")?;
    }
    // With IAM the stage throttles callers, in place of a usage plan (and a throttle left
    // from IAM follows the wanted one).
    if (created && auth == Auth::Iam) || rethrottle {
        throttle_stage(client, api_id, &stack.stage, throttle).await.context("throttling the stage")?;
    }
    Ok(())
}

/// Deploys the API to the stage with `description` (which carries the fingerprint of
/// what is deployed), waiting out CreateDeployment's one call per 5 s.
async fn deploy(client: &Client, api_id: &str, stage: &str, description: &str) -> Result<(), Error> {
    retry::QUOTA_5_SECONDS
        .retry(
            || client.create_deployment().rest_api_id(api_id).stage_name(stage).description(description).send(),
            |error| has_code(error, THROTTLED),
        )
        .await
        .op("apigateway:CreateDeployment")?;
    Ok(())
}

/// Throttles every method of the stage (`*/*` method settings), as `--auth iam` does in
/// place of a usage plan.
async fn throttle_stage(client: &Client, api_id: &str, stage: &str, throttle: Throttle) -> Result<(), AwsError> {
    let patch = |path: &str, value: String| {
        aws_sdk_apigateway::types::PatchOperation::builder()
            .op(aws_sdk_apigateway::types::Op::Replace)
            .path(path)
            .value(value)
            .build()
    };
    client
        .update_stage()
        .rest_api_id(api_id)
        .stage_name(stage)
        .patch_operations(patch("/*/*/throttling/rateLimit", throttle.rate.to_string()))
        .patch_operations(patch("/*/*/throttling/burstLimit", throttle.burst.to_string()))
        .send()
        .await
        .op("apigateway:UpdateStage")?;
    Ok(())
}

/// The stage's contract: it goes with its API.
pub(crate) struct StageContract;

impl crate::resources::Contract for StageContract {
    const KIND: crate::change::Resource = crate::change::Resource::Stage;
    type State = StageState;
    type Change = StageChange;
    type Target = super::apigateway::WithItsApi;

    /// Authorized as paths under its API (`/restapis/*`), by the API's own grants.
    fn grants(_: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        Vec::new()
    }
}
