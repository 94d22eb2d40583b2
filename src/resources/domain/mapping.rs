//! The custom domain's base path mapping: its root, to the stack's API and stage.

use anyhow::Context;
use aws_sdk_apigateway::Client;
use aws_sdk_apigateway::types::Op;

use crate::aws::{AwsError, Operation, found};
use crate::change::{Action, Changes, Diff, Field, Planned, diff};
use crate::resources::apigateway::{NOT_FOUND, patch};

/// API Gateway's name for a mapping of the domain's root (no base path).
pub(crate) const ROOT: &str = "(none)";

/// One base path mapping as deployed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mapping {
    pub(crate) base_path: String,
    pub(crate) api_id: String,
    pub(crate) stage: String,
}

impl Mapping {
    /// The root mapping: API Gateway answers its base path as `(none)`, or empty.
    pub(crate) fn is_root(&self) -> bool {
        self.base_path == ROOT || self.base_path.is_empty()
    }

    /// How a row shows where it maps to.
    fn shown(api_id: &str, stage: &str) -> String {
        format!("API {api_id} stage {stage}")
    }
}

/// The mappings of domain `name`.
pub(crate) async fn read(client: &Client, name: &str) -> Result<Vec<Mapping>, AwsError> {
    let read = client.get_base_path_mappings().domain_name(name).limit(500).send().await;
    let Some(mappings) = found("apigateway:GetBasePathMappings", read, NOT_FOUND)? else {
        return Ok(Vec::new());
    };
    let field = |value: Option<&str>| value.unwrap_or_default().to_owned();
    Ok(mappings
        .items()
        .iter()
        .map(|mapping| Mapping {
            base_path: field(mapping.base_path()),
            api_id: field(mapping.rest_api_id()),
            stage: field(mapping.stage()),
        })
        .collect())
}

/// Where a domain's mappings send callers, as a refusal says it.
pub(crate) fn mapped_to(mappings: &[Mapping]) -> String {
    match mappings {
        [] => "nothing".to_owned(),
        mappings => mappings
            .iter()
            .map(|mapping| Mapping::shown(&mapping.api_id, &mapping.stage))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// What changes on the mapping: the API or the stage it maps to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MappingChange {
    pub(crate) destination: Diff,
}

impl Changes for MappingChange {
    fn diffs(&self) -> Vec<Diff> {
        vec![self.destination.clone()]
    }
}

/// The root mapping of domain `name` over the deployed `mappings`: to `api` (its id,
/// once known) and `stage`.
pub(crate) fn plan(name: &str, mappings: Option<&[Mapping]>, api: Option<&str>, stage: &str) -> Planned<MappingChange> {
    let root = mappings.and_then(|mappings| mappings.iter().find(|mapping| mapping.is_root()));
    let action = match (root, api) {
        (None, _) => Action::Create,
        (Some(mapped), Some(api)) if mapped.api_id == api && mapped.stage == stage => Action::Keep,
        (Some(mapped), api) => Action::Update(MappingChange {
            destination: diff(
                Field::Target,
                Mapping::shown(&mapped.api_id, &mapped.stage),
                Mapping::shown(api.unwrap_or("new"), stage),
            ),
        }),
    };
    // API Gateway names the root path "(none)": every path of the domain goes to the stage.
    Planned::new(crate::change::Resource::Mapping, format!("{name} (its root path)"), action)
}

/// Maps domain `name`'s root to `api_id` and `stage`, as planned.
pub(crate) async fn apply(
    client: &Client,
    planned: &Planned<MappingChange>,
    name: &str,
    (api_id, stage): (&str, &str),
) -> anyhow::Result<()> {
    match &planned.action {
        Action::Create => {
            let create = client.create_base_path_mapping().domain_name(name).rest_api_id(api_id).stage(stage);
            create.send().await.op("apigateway:CreateBasePathMapping").context("mapping the custom domain")?;
        }
        Action::Update(MappingChange { destination: _ }) => {
            let operations = vec![patch(Op::Replace, "/restapiId", api_id), patch(Op::Replace, "/stage", stage)];
            let update = client.update_base_path_mapping().domain_name(name).base_path(ROOT);
            let update = update.set_patch_operations(Some(operations)).send().await;
            update.op("apigateway:UpdateBasePathMapping").context("mapping the custom domain")?;
        }
        _ => {}
    }
    Ok(())
}

/// The mapping's contract: it goes with its domain.
pub(crate) struct MappingContract;

impl crate::resources::Contract for MappingContract {
    const KIND: crate::change::Resource = crate::change::Resource::Mapping;
    type State = Mapping;
    type Change = MappingChange;
    type Target = super::DomainTarget;

    /// Authorized as paths under its domain (`/domainnames/NAME/*`):
    /// [`super::DomainContract`]'s.
    fn grants(_: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        Vec::new()
    }
}
