//! The function's IAM role: Lambda's trust policy and one least-privilege inline policy.

use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;

use super::{Error, Mode};
use crate::aws::{Account, AwsError, Operation, found, gone};
use crate::progress::Outcome;
use crate::stack::{ROLE_POLICY_NAME, Stack, decode_policy};

const NOT_FOUND: &[&str] = &["NoSuchEntity", "NoSuchEntityException"];

pub fn arn(stack: &Stack, account: &Account) -> String {
    format!("arn:{}:iam::{}:role/{}", account.partition, account.id, stack.name)
}

/// The role and its inline policy document (URL-encoded, as IAM returns it).
pub struct Current {
    role: Option<aws_sdk_iam::types::Role>,
    policy: Option<String>,
}

/// Reads the role and its policy, concurrently.
pub async fn read(client: &Client, stack: &Stack) -> Result<Current, AwsError> {
    let (role, policy) = tokio::join!(
        client.get_role().role_name(&stack.name).send(),
        client.get_role_policy().role_name(&stack.name).policy_name(ROLE_POLICY_NAME).send(),
    );
    Ok(Current {
        role: found("iam:GetRole", role, NOT_FOUND)?.and_then(|output| output.role),
        policy: found("iam:GetRolePolicy", policy, NOT_FOUND)?.map(|output| output.policy_document),
    })
}

/// Makes the role with Lambda's trust policy; returns its ARN.
pub async fn ensure(
    client: &Client,
    stack: &Stack,
    account: &Account,
    current: &Current,
    mode: Mode,
) -> Result<(String, Outcome), Error> {
    let trust = Stack::trust_policy();
    let Some(role) = &current.role else {
        if mode == Mode::Plan {
            return Ok((arn(stack, account), Outcome::Created));
        }
        let created = client
            .create_role()
            .role_name(&stack.name)
            .description(format!("counterctl: the {} function's role", stack.name))
            .assume_role_policy_document(trust.to_string())
            .set_tags(Some(tags(stack)))
            .send()
            .await
            .op("iam:CreateRole")?;
        let arn = created.role.map_or_else(|| arn(stack, account), |role| role.arn);
        return Ok((arn, Outcome::Created));
    };
    let mut changes = Vec::new();
    if role.assume_role_policy_document().and_then(decode_policy).as_ref() != Some(&trust) {
        changes.push("rewrite the trust policy".to_owned());
        if mode == Mode::Apply {
            let update = client.update_assume_role_policy().role_name(&stack.name).policy_document(trust.to_string());
            update.send().await.op("iam:UpdateAssumeRolePolicy")?;
        }
    }
    if !stack.tagged(role.tags().iter().map(|tag| (tag.key(), tag.value()))) {
        changes.push("tag".to_owned());
        if mode == Mode::Apply {
            client.tag_role().role_name(&stack.name).set_tags(Some(tags(stack))).send().await.op("iam:TagRole")?;
        }
    }
    Ok((role.arn.clone(), Outcome::from_changes(changes)))
}

/// Writes the inline policy unless it is already exactly this stack's. Runs once the
/// role exists, alongside the function: Lambda needs the role, not its policy.
pub async fn ensure_policy(
    client: &Client,
    stack: &Stack,
    account: &Account,
    current: &Current,
    mode: Mode,
) -> Result<((), Outcome), Error> {
    let policy = stack.role_policy(account);
    let outcome = match current.policy.as_deref().map(decode_policy) {
        Some(Some(existing)) if existing == policy => return Ok(((), Outcome::Unchanged)),
        Some(_) => Outcome::Updated { changes: vec!["rewrite it: it differs".into()] },
        None => Outcome::Created,
    };
    if mode == Mode::Apply {
        put_policy(client, stack, &policy).await?;
    }
    Ok(((), outcome))
}

fn tags(stack: &Stack) -> Vec<Tag> {
    stack
        .tags()
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build().expect("complete"))
        .collect()
}

async fn put_policy(client: &Client, stack: &Stack, policy: &serde_json::Value) -> Result<(), AwsError> {
    client
        .put_role_policy()
        .role_name(&stack.name)
        .policy_name(ROLE_POLICY_NAME)
        .policy_document(policy.to_string())
        .send()
        .await
        .op("iam:PutRolePolicy")?;
    Ok(())
}

pub async fn exists(client: &Client, stack: &Stack) -> Result<bool, AwsError> {
    Ok(found("iam:GetRole", client.get_role().role_name(&stack.name).send().await, NOT_FOUND)?.is_some())
}

/// Deletes the inline policy, then the role; `false` when the role was already gone.
pub async fn delete(client: &Client, stack: &Stack) -> Result<bool, AwsError> {
    let policy = client.delete_role_policy().role_name(&stack.name).policy_name(ROLE_POLICY_NAME).send().await;
    gone("iam:DeleteRolePolicy", policy, NOT_FOUND)?;
    gone("iam:DeleteRole", client.delete_role().role_name(&stack.name).send().await, NOT_FOUND)
}
