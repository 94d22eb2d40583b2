//! The function's IAM role: Lambda's trust policy and, per region, one least-privilege
//! inline policy. IAM is global: the same stack name in two regions shares the role, and
//! each region only ever writes and deletes its own policy.

use std::collections::BTreeMap;

use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;

use crate::aws::{Account, AwsError, Operation, found, gone, has_code};
use crate::stack::{LEGACY_POLICY_NAME, Stack, decode_policy};

const NOT_FOUND: &[&str] = &["NoSuchEntity", "NoSuchEntityException"];

pub fn arn(stack_name: &str, account: &Account) -> String {
    format!("arn:{}:iam::{}:role/{stack_name}", account.partition, account.id)
}

/// The role as deployed.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleState {
    pub arn: String,
    pub tagged: bool,
    /// The trust policy is exactly Lambda's.
    pub trust_ok: bool,
    /// Inline policies by name; the documents of this region's and the legacy policy,
    /// `None` for the others.
    pub inline: BTreeMap<String, Option<serde_json::Value>>,
    /// ARNs of attached managed policies.
    pub managed: Vec<String>,
    /// Names of the instance profiles it is in.
    pub instance_profiles: Vec<String>,
}

/// Reads the role, its inline policies (the documents of this region's and the legacy
/// one) and attached managed policies, all at once: on a missing role each answers
/// NoSuchEntity.
pub async fn read(client: &Client, stack_name: &str, region: &str) -> Result<Option<RoleState>, AwsError> {
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

/// Makes the role with Lambda's trust policy; `None` when it exists already (a create
/// whose answer was lost): the caller adopts it.
pub async fn create(client: &Client, stack: &Stack) -> Result<Option<String>, AwsError> {
    let created = client
        .create_role()
        .role_name(&stack.name)
        .description(format!("counterctl: the {} function's role", stack.name))
        .assume_role_policy_document(Stack::trust_policy().to_string())
        .set_tags(Some(tags(stack)))
        .send()
        .await;
    match created {
        Err(error) if has_code(&error, &["EntityAlreadyExists", "EntityAlreadyExistsException"]) => Ok(None),
        created => Ok(created.op("iam:CreateRole")?.role.map(|role| role.arn)),
    }
}

pub async fn update_trust(client: &Client, stack: &Stack) -> Result<(), AwsError> {
    let update = client.update_assume_role_policy().role_name(&stack.name);
    update.policy_document(Stack::trust_policy().to_string()).send().await.op("iam:UpdateAssumeRolePolicy")?;
    Ok(())
}

pub async fn tag(client: &Client, stack: &Stack) -> Result<(), AwsError> {
    client.tag_role().role_name(&stack.name).set_tags(Some(tags(stack))).send().await.op("iam:TagRole")?;
    Ok(())
}

pub async fn put_policy(client: &Client, role: &str, name: &str, policy: &serde_json::Value) -> Result<(), AwsError> {
    let put = client.put_role_policy().role_name(role).policy_name(name).policy_document(policy.to_string());
    put.send().await.op("iam:PutRolePolicy")?;
    Ok(())
}

pub async fn delete_policy(client: &Client, role: &str, name: &str) -> Result<(), AwsError> {
    let delete = client.delete_role_policy().role_name(role).policy_name(name).send().await;
    gone("iam:DeleteRolePolicy", delete, NOT_FOUND)?;
    Ok(())
}

/// Deletes the role after what IAM requires gone first
/// (https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteRole.html: "you must
/// delete the items attached to the role manually, or the deletion fails"): managed
/// policies detached, inline policies deleted. `Ok(Some(reason))` when IAM still refuses
/// (DeleteConflict, e.g. an instance profile): the role is then kept.
pub async fn delete(client: &Client, role: &str, state: &RoleState) -> Result<Option<String>, AwsError> {
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
