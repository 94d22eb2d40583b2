//! The function's IAM role: Lambda's trust policy and, per region, one least-privilege
//! inline policy. IAM is global: the same stack name in two regions shares the role, and
//! each region only ever writes and deletes its own policy.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;

use crate::aws::{Account, AwsError, Clients, Made, Operation, found, gone, has_code, made};
use crate::change::{Action, Changes, Delete, Deletion, Diff, Field, Planned, Resource, diff};
use crate::stack::{LEGACY_POLICY_NAME, REGION_POLICY_PREFIX, Stack, StackContext, decode_policy, policy_regions};

/// How long a changed IAM policy is given to take effect before what it replaces goes
/// (IAM is eventually consistent: https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency).
const IAM_PROPAGATION: Duration = Duration::from_secs(10);

const NOT_FOUND: &[&str] = &["NoSuchEntity", "NoSuchEntityException"];

pub(crate) fn arn(stack_name: &str, account: &Account) -> String {
    format!("arn:{}:iam::{}:role/{stack_name}", account.partition, account.id)
}

/// The role as deployed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RoleState {
    pub(crate) arn: String,
    pub(crate) tagged: bool,
    /// The CloudFormation stack that made it, if one did.
    pub(crate) cloudformation: Option<String>,
    /// The trust policy is exactly Lambda's.
    pub(crate) trust_ok: bool,
    /// Inline policies by name; the documents of this region's and the legacy policy,
    /// `None` for the others.
    pub(crate) inline: BTreeMap<String, Option<serde_json::Value>>,
    /// ARNs of attached managed policies.
    pub(crate) managed: Vec<String>,
    /// Names of the instance profiles it is in.
    pub(crate) instance_profiles: Vec<String>,
}

/// Reads the role, its inline policies (the documents of this region's and the legacy
/// one) and attached managed policies, all at once: on a missing role each answers
/// NoSuchEntity.
pub(crate) async fn read(client: &Client, stack_name: &str, region: &str) -> Result<Option<RoleState>, AwsError> {
    let region_policy = Stack::region_policy_name(region);
    let document = |name: &str| {
        let name = name.to_owned();
        async move {
            let policy = client.get_role_policy().role_name(stack_name).policy_name(name).send().await;
            Ok::<_, AwsError>(
                found("iam:GetRolePolicy", policy, NOT_FOUND)?
                    .and_then(|policy| decode_policy(&policy.policy_document)),
            )
        }
    };
    let (role, names, managed, profiles, region_document, legacy_document) = tokio::join!(
        client.get_role().role_name(stack_name).send(),
        client.list_role_policies().role_name(stack_name).send(),
        client.list_attached_role_policies().role_name(stack_name).send(),
        client.list_instance_profiles_for_role().role_name(stack_name).send(),
        document(&region_policy),
        document(LEGACY_POLICY_NAME),
    );
    let Some(role) = found("iam:GetRole", role, NOT_FOUND)?.and_then(|output| output.role) else {
        return Ok(None);
    };
    let Some(names) = found("iam:ListRolePolicies", names, NOT_FOUND)? else { return Ok(None) };
    let Some(managed) = found("iam:ListAttachedRolePolicies", managed, NOT_FOUND)? else { return Ok(None) };
    let Some(profiles) = found("iam:ListInstanceProfilesForRole", profiles, NOT_FOUND)? else { return Ok(None) };
    let (region_document, legacy_document) = (region_document?, legacy_document?);
    let inline = names
        .policy_names()
        .iter()
        .map(|name| {
            let document = match name.as_str() {
                name if name == region_policy => region_document.clone(),
                LEGACY_POLICY_NAME => legacy_document.clone(),
                _ => None,
            };
            (name.clone(), document)
        })
        .collect();
    let trust_ok = role.assume_role_policy_document().and_then(decode_policy).as_ref() == Some(&Stack::trust_policy());
    Ok(Some(RoleState {
        arn: role.arn.clone(),
        tagged: role.tags().iter().any(|tag| Stack::is_stack_tag(stack_name, tag.key(), tag.value())),
        cloudformation: Stack::cloudformation_stack(role.tags().iter().map(|tag| (tag.key(), tag.value()))),
        trust_ok,
        inline,
        managed: managed
            .attached_policies()
            .iter()
            .filter_map(|policy| policy.policy_arn().map(str::to_owned))
            .collect(),
        instance_profiles: profiles.instance_profiles().iter().map(|p| p.instance_profile_name().to_owned()).collect(),
    }))
}

fn tags(stack: &Stack) -> Vec<Tag> {
    stack
        .tags()
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build().expect("complete"))
        .collect()
}

/// Makes the role with Lambda's trust policy and returns its ARN; `Existed` when it
/// exists already (a create whose answer was lost): the caller adopts it.
async fn create(client: &Client, stack: &Stack) -> Result<Made<Option<String>>, AwsError> {
    let created = client
        .create_role()
        .role_name(&stack.name)
        .description(format!("counterctl: the {} function's role", stack.name))
        .assume_role_policy_document(Stack::trust_policy().to_string())
        .set_tags(Some(tags(stack)))
        .send()
        .await;
    let made = made("iam:CreateRole", created, &["EntityAlreadyExists", "EntityAlreadyExistsException"])?;
    Ok(made.map(|output| output.role.map(|role| role.arn)))
}

async fn update_trust(client: &Client, stack: &Stack) -> Result<(), AwsError> {
    let update = client.update_assume_role_policy().role_name(&stack.name);
    update.policy_document(Stack::trust_policy().to_string()).send().await.op("iam:UpdateAssumeRolePolicy")?;
    Ok(())
}

async fn tag(client: &Client, stack: &Stack) -> Result<(), AwsError> {
    client.tag_role().role_name(&stack.name).set_tags(Some(tags(stack))).send().await.op("iam:TagRole")?;
    Ok(())
}

async fn put_policy(client: &Client, role: &str, name: &str, policy: &serde_json::Value) -> Result<(), AwsError> {
    let put = client.put_role_policy().role_name(role).policy_name(name).policy_document(policy.to_string());
    put.send().await.op("iam:PutRolePolicy")?;
    Ok(())
}

async fn delete_policy(client: &Client, role: &str, name: &str) -> Result<(), AwsError> {
    let delete = client.delete_role_policy().role_name(role).policy_name(name).send().await;
    gone("iam:DeleteRolePolicy", delete, NOT_FOUND)?;
    Ok(())
}

/// Deletes the role after what IAM requires gone first
/// (https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteRole.html: "you must
/// delete the items attached to the role manually, or the deletion fails"): managed
/// policies detached, inline policies deleted. `Ok(Some(reason))` when IAM still refuses
/// (DeleteConflict, e.g. an instance profile): the role is then kept.
async fn delete(client: &Client, role: &str, state: &RoleState) -> Result<Option<String>, AwsError> {
    for policy in &state.managed {
        let detach = client.detach_role_policy().role_name(role).policy_arn(policy).send().await;
        gone("iam:DetachRolePolicy", detach, NOT_FOUND)?;
    }
    for name in state.inline.keys() {
        delete_policy(client, role, name).await?;
    }
    match client.delete_role().role_name(role).send().await {
        Err(error) if has_code(&error, &["DeleteConflict", "DeleteConflictException"]) => {
            Ok(Some(AwsError::new("iam:DeleteRole", error).to_string()))
        }
        result => {
            gone("iam:DeleteRole", result, NOT_FOUND)?;
            Ok(None)
        }
    }
}

/// What changes on the role.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RoleChange {
    pub(crate) trust: Option<Diff>,
    pub(crate) tags: Option<Diff>,
}

impl Changes for RoleChange {
    fn diffs(&self) -> Vec<Diff> {
        [&self.trust, &self.tags].into_iter().flatten().cloned().collect()
    }
}

/// What changes on this region's policy.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct PolicyChange {
    /// PutRolePolicy with the least-privilege document.
    pub(crate) document: Option<Diff>,
    /// The policy from before policies were per region, deleted once this one is in.
    pub(crate) legacy: Option<Diff>,
}

impl Changes for PolicyChange {
    fn diffs(&self) -> Vec<Diff> {
        [&self.document, &self.legacy].into_iter().flatten().cloned().collect()
    }
}

/// A legacy inline policy (from before policies were per region) that grants only this
/// region's resources is replaced by this region's policy; one that grants another
/// region's is that region's and is left alone.
fn legacy_policy_replaced(role: &RoleState, region: &str) -> bool {
    matches!(role.inline.get(LEGACY_POLICY_NAME), Some(Some(document)) if policy_regions(document) == BTreeSet::from([region.to_owned()]))
}

/// The tables in `region` that the role's counterctl policy for it grants, in the
/// order the policy names them (during a table switch the old one, then the new one).
/// Install writes that grant only once the table exists (`apply.rs`), and it lives
/// outside the table: the stack's record that it had these tables.
pub(crate) fn granted_tables(role: &RoleState, region: &str) -> Vec<String> {
    let policies = [Stack::region_policy_name(region), LEGACY_POLICY_NAME.to_owned()];
    let documents = policies.iter().filter_map(|name| role.inline.get(name).cloned().flatten());
    let mut tables = Vec::new();
    for document in documents {
        let statements = match &document["Statement"] {
            serde_json::Value::Array(statements) => statements.clone(),
            statement => vec![statement.clone()],
        };
        for statement in statements {
            let resources = match &statement["Resource"] {
                serde_json::Value::Array(resources) => resources.clone(),
                resource => vec![resource.clone()],
            };
            // arn:PARTITION:dynamodb:REGION:ACCOUNT:table/NAME
            let named = resources.iter().filter_map(|resource| {
                let parts: Vec<&str> = resource.as_str()?.splitn(6, ':').collect();
                let name = parts.get(5)?.strip_prefix("table/")?;
                let plain = !name.contains(['*', '?', '/']);
                (parts.get(2) == Some(&"dynamodb") && parts.get(3) == Some(&region) && plain).then(|| name.to_owned())
            });
            for name in named {
                if !tables.contains(&name) {
                    tables.push(name);
                }
            }
        }
    }
    tables
}

/// The regions other than `region` whose counterctl policies are on the role.
pub(crate) fn other_regions(role: &RoleState, region: &str) -> Vec<String> {
    let mut regions = BTreeSet::new();
    for (name, document) in &role.inline {
        if let Some(other) = name.strip_prefix(REGION_POLICY_PREFIX) {
            regions.insert(other.to_owned());
        } else if name == LEGACY_POLICY_NAME {
            regions.extend(document.as_ref().map(policy_regions).unwrap_or_default());
        }
    }
    regions.remove(region);
    regions.into_iter().collect()
}

/// The role (Lambda's trust, the stack's tag) and this region's policy, which replaces an
/// older counterctl's policy for this region in the same run.
/// `made_in`: the region of a stack in several regions that makes the one role (IAM is
/// global), when it is not this one: a role not there yet is left to it.
pub(crate) fn plan(
    role: Option<&RoleState>,
    stack: &Stack,
    account: &Account,
    made_in: Option<&str>,
) -> (Planned<RoleChange>, Planned<PolicyChange>) {
    let policy_name = Stack::region_policy_name(&account.region);
    let Some(role) = role else {
        let action = match made_in {
            Some(home) => Action::Retain(format!("made with the stack in {home} (IAM is global)")),
            None => Action::Create,
        };
        return (
            Planned::new(Resource::Role, &stack.name, action),
            Planned::new(Resource::Policy, policy_name, Action::Create),
        );
    };
    let change = RoleChange {
        trust: (!role.trust_ok).then(|| diff(Field::Trust, "other", "Lambda's")),
        tags: (!role.tagged).then(|| diff(Field::Tags, "none", "counterctl")),
    };
    let document = match role.inline.get(&policy_name) {
        Some(Some(document)) if *document == stack.role_policy(account) => None,
        Some(_) => Some(diff(Field::Document, "other", "least privilege on this stack")),
        None => Some(diff(Field::Document, "none", "least privilege on this stack")),
    };
    let legacy = legacy_policy_replaced(role, &account.region)
        .then(|| diff(Field::LegacyPolicy, LEGACY_POLICY_NAME, format!("{policy_name} (one per region)")));
    let policy_action = match (role.inline.contains_key(&policy_name), &legacy) {
        (false, None) => Action::Create,
        _ => Action::found(PolicyChange { document, legacy }, false),
    };
    (
        Planned::new(Resource::Role, &stack.name, Action::found(change, !role.tagged)),
        Planned::new(Resource::Policy, policy_name, policy_action),
    )
}

/// Makes or completes the role; returns its ARN, and a note when it turned out to exist
/// already.
pub(crate) async fn apply_role(
    client: &Client,
    stack: &Stack,
    planned: &Planned<RoleChange>,
    role_arn: &str,
) -> anyhow::Result<(String, Option<String>)> {
    if planned.action == Action::Create {
        if let Made::Created(Some(arn)) = create(client, stack).await.context("creating the role")? {
            return Ok((arn, None));
        }
        // Made by a run whose answer was lost: adopted, made Lambda's, tagged.
        update_trust(client, stack).await.context("setting the role's trust policy")?;
        tag(client, stack).await.context("tagging the role")?;
        return Ok((role_arn.to_owned(), Some("adopted: it existed already (EntityAlreadyExists)".into())));
    }
    if let Some(RoleChange { trust, tags }) = planned.action.change() {
        if trust.is_some() {
            update_trust(client, stack).await.context("setting the role's trust policy")?;
        }
        if tags.is_some() {
            tag(client, stack).await.context("tagging the role")?;
        }
    }
    Ok((role_arn.to_owned(), None))
}

/// Writes this region's policy; during a table switch it grants the table the function
/// moves away from too (the switch narrows it, [`narrow_policy`]).
pub(crate) async fn apply_policy(
    client: &Client,
    StackContext { stack, account }: StackContext<'_>,
    planned: &Planned<PolicyChange>,
    switching_from: Option<&str>,
) -> anyhow::Result<()> {
    let name = Stack::region_policy_name(&account.region);
    let (document, legacy) = match planned.action.change() {
        Some(PolicyChange { document, legacy }) => (document.is_some(), legacy.is_some()),
        None => (planned.action == Action::Create, false),
    };
    if document {
        let policy = stack.role_policy_with(account, switching_from);
        put_policy(client, &stack.name, &name, &policy).await.context("writing the role's policy")?;
    }
    if legacy {
        // IAM applies a new policy within seconds, not at once: the old one goes after it
        // has had time to, so the function is never left without access.
        tokio::time::sleep(IAM_PROPAGATION).await;
        let delete = delete_policy(client, &stack.name, LEGACY_POLICY_NAME);
        delete.await.context("deleting the role's policy from before policies were per region")?;
    }
    Ok(())
}

/// This region's policy granting the stack's table alone (after a table switch).
pub(crate) async fn narrow_policy(client: &Client, stack: &Stack, account: &Account) -> Result<(), AwsError> {
    let name = Stack::region_policy_name(&account.region);
    put_policy(client, &stack.name, &name, &stack.role_policy(account)).await
}

/// Uninstall's plan for the role: deleted when nothing else may use it; else kept, with
/// this region's policies deleted.
pub(crate) fn plan_teardown(
    role: Option<&RoleState>,
    name: &str,
    region: &str,
) -> (Vec<Deletion<RolePolicy>>, Deletion<Role>) {
    let not_ours = "not made by counterctl (no counterctl:stack tag): left alone";
    let role_state = match role {
        None => return (Vec::new(), Deletion::absent(Resource::Role, name)),
        Some(role) if !role.tagged => return (Vec::new(), Deletion::retained(Resource::Role, name, not_ours)),
        Some(role) => role,
    };
    let others = other_regions(role_state, region);
    // Policies counterctl did not write, or an old one that names no region (a
    // wildcard): something else may use the role.
    let foreign: Vec<&str> = role_state
        .inline
        .iter()
        .filter(|(name, document)| {
            let legacy = *name == LEGACY_POLICY_NAME
                && document.as_ref().is_some_and(|document| !policy_regions(document).is_empty());
            !name.starts_with(REGION_POLICY_PREFIX) && !legacy
        })
        .map(|(name, _)| name.as_str())
        .collect();
    let kept = if !others.is_empty() {
        Some(format!("still used by the stack in {}", others.join(", ")))
    } else if !foreign.is_empty() {
        Some(format!(
            "it has inline policies counterctl did not write ({}); delete it by hand once nothing uses it",
            foreign.join(", ")
        ))
    } else if !role_state.instance_profiles.is_empty() {
        Some(format!("it is in instance profile(s) {}", role_state.instance_profiles.join(", ")))
    } else {
        None
    };
    let Some(reason) = kept else {
        let role = Role { name: name.to_owned(), state: role_state.clone() };
        let reason = "uninstall: managed policies detached, inline policies deleted";
        return (Vec::new(), Deletion::of(Resource::Role, name, vec![role], reason));
    };
    let policy = |policy: &str, reason: &str| {
        let target = RolePolicy { role: name.to_owned(), name: policy.to_owned() };
        Deletion::of(Resource::Policy, policy, vec![target], reason)
    };
    let mut policies = Vec::new();
    let region_policy = Stack::region_policy_name(region);
    if role_state.inline.contains_key(&region_policy) {
        policies.push(policy(&region_policy, "this region's policy"));
    }
    if legacy_policy_replaced(role_state, region) {
        policies.push(policy(LEGACY_POLICY_NAME, "an older counterctl's policy for this region"));
    }
    (policies, Deletion::retained(Resource::Role, name, reason))
}

/// One inline policy of a role, to delete.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RolePolicy {
    role: String,
    name: String,
}

impl Delete for RolePolicy {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        delete_policy(&clients.iam, &self.role, &self.name).await.context("deleting this region's policy")?;
        Ok(None)
    }
}

/// A role as read, to delete with what IAM requires gone first.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Role {
    name: String,
    state: RoleState,
}

impl Delete for Role {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        delete(&clients.iam, &self.name, &self.state).await.context("deleting the role")
    }
}

/// The role's contract.
pub(crate) struct RoleContract;

impl crate::resources::Contract for RoleContract {
    const KIND: crate::change::Resource = crate::change::Resource::Role;
    type State = RoleState;
    type Change = RoleChange;
    type Target = Role;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        use crate::resources::Grant;
        let role = arn(&scope.context.stack.name, scope.context.account);
        vec![
            Grant::new(
                "Role",
                &[
                    "iam:CreateRole",
                    "iam:GetRole",
                    "iam:TagRole",
                    "iam:UpdateAssumeRolePolicy",
                    "iam:DeleteRole",
                    "iam:ListRolePolicies",
                    "iam:ListAttachedRolePolicies",
                    "iam:DetachRolePolicy",
                    "iam:ListInstanceProfilesForRole",
                ],
                vec![role.clone()],
            ),
            Grant::new("PassTheRoleToLambda", &["iam:PassRole"], vec![role])
                .with_condition(serde_json::json!({"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}})),
        ]
    }
}

/// The contract of this region's inline policy, read with its role.
pub(crate) struct PolicyContract;

impl crate::resources::Contract for PolicyContract {
    const KIND: crate::change::Resource = crate::change::Resource::Policy;
    type State = RoleState;
    type Change = PolicyChange;
    type Target = RolePolicy;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        let role = arn(&scope.context.stack.name, scope.context.account);
        let actions = &["iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy"];
        vec![crate::resources::Grant::new("RolePolicy", actions, vec![role])]
    }
}
