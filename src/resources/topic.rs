//! The stack's own SNS topic for its alarms, `NAME-alarms`: made for `--alarm-email`,
//! tagged like everything else, with that address's email subscription. A topic given
//! with `--alarm-topic` is someone else's, and is never made, changed or deleted here.

use anyhow::Context;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::Tag;

use crate::aws::{Account, AwsError, Clients, Operation, found, gone};
use crate::change::{Action, Delete, Deletion, Nothing, Planned, Refusal, Resource, RowList, Rows, rows};
use crate::stack::Stack;

const NOT_FOUND: &[&str] = &["NotFound"];
/// What ListSubscriptionsByTopic names a subscription by while it is being removed. One
/// whose link is not opened yet it names `PendingConfirmation`, and it has no ARN to
/// unsubscribe it by until then.
const DELETED: &str = "Deleted";
/// SNS deletes a subscription left unconfirmed for 48 hours
/// (<https://aws.amazon.com/about-aws/whats-new/2023/05/amazon-sns-automatic-deletion-unconfirmed-subscriptions/>).
pub(crate) const LAPSES: &str = "AWS drops a subscription whose link is not opened within 48 hours";

/// The stack's topic as deployed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TopicState {
    pub(crate) arn: String,
    pub(crate) tagged: bool,
    /// Its email subscriptions.
    pub(crate) subscriptions: Vec<Subscription>,
}

/// An email subscription of the stack's topic.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Subscription {
    pub(crate) email: String,
    /// `None` while the address has not opened the confirmation link.
    pub(crate) arn: Option<String>,
}

impl Subscription {
    /// Whether it is `email`'s: addresses are compared as SNS compares them, ignoring case.
    pub(crate) fn of(&self, email: &str) -> bool {
        self.email.eq_ignore_ascii_case(email)
    }

    pub(crate) fn pending(&self) -> bool {
        self.arn.is_none()
    }
}

pub(crate) fn name(stack: &str) -> String {
    format!("{stack}-alarms")
}

pub(crate) fn arn(account: &Account, stack: &str) -> String {
    account.arn("sns", &name(stack))
}

pub(crate) async fn read(client: &Client, account: &Account, stack_name: &str) -> Result<Option<TopicState>, AwsError> {
    let arn = arn(account, stack_name);
    let attributes = client.get_topic_attributes().topic_arn(&arn).send().await;
    if found("sns:GetTopicAttributes", attributes, NOT_FOUND)?.is_none() {
        return Ok(None);
    }
    let tagged = async {
        let tags = client.list_tags_for_resource().resource_arn(&arn).send().await.op("sns:ListTagsForResource")?;
        Ok::<_, AwsError>(tags.tags().iter().any(|tag| Stack::is_stack_tag(stack_name, tag.key(), tag.value())))
    };
    let subscriptions = async {
        let mut pages = client.list_subscriptions_by_topic().topic_arn(&arn).into_paginator().send();
        let mut subscriptions = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.op("sns:ListSubscriptionsByTopic")?;
            // A subscription being removed is listed as `Deleted`: it is gone.
            let email = page.subscriptions().iter().filter(|s| s.protocol() == Some("email"));
            subscriptions.extend(email.filter(|s| s.subscription_arn() != Some(DELETED)).map(|s| Subscription {
                email: s.endpoint().unwrap_or_default().to_owned(),
                arn: s.subscription_arn().filter(|arn| arn.starts_with("arn:")).map(str::to_owned),
            }));
        }
        Ok(subscriptions)
    };
    let (tagged, subscriptions) = tokio::try_join!(tagged, subscriptions)?;
    Ok(Some(TopicState { arn, tagged, subscriptions }))
}

/// Who the alarms reach.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Notify {
    /// Nobody: the alarms show in status and the console only.
    Nobody,
    /// A topic given with `--alarm-topic`.
    Topic(String),
    /// The stack's own topic, with this address subscribed (`--alarm-email`), or
    /// (`None`) with the subscriptions it has.
    Email(Option<String>),
}

/// The stack's topic and its subscriptions.
#[derive(Debug, Clone)]
pub(crate) struct TopicPlan {
    /// The topic, when the alarms send to it.
    pub(crate) topic: Option<Planned<Nothing>>,
    /// The address subscribed, or to subscribe.
    pub(crate) subscription: Option<Planned<Nothing>>,
    /// Other addresses' subscriptions, replaced by `--alarm-email`.
    pub(crate) replaced: Vec<Deletion<SubscriptionArn>>,
    /// The topic when the alarms no longer send to it.
    pub(crate) unwanted: Deletion<TopicArn>,
}

/// Its rows, in the order they apply.
impl Rows for TopicPlan {
    fn rows(&self) -> RowList {
        let Self { topic, subscription, replaced, unwanted } = self;
        let unwanted = if unwanted.deletes() { unwanted.rows() } else { RowList::default() };
        rows([topic.rows(), subscription.rows(), replaced.rows(), unwanted])
    }
}

impl TopicPlan {
    /// The address that AWS mails a confirmation link to in this run.
    pub(crate) fn subscribes(&self) -> Option<&str> {
        self.subscription.as_ref().filter(|planned| planned.action == Action::Create).map(|p| p.name.as_str())
    }
}

/// The topic for `notify`: made and subscribed for `--alarm-email`, and deleted when the
/// alarms no longer send to it (`--alarms off`, or `--alarm-topic` in its place). Only
/// a topic tagged as the stack's is ever deleted.
pub(crate) fn plan(
    deployed: Option<&TopicState>,
    stack: &Stack,
    notify: Option<&Notify>,
) -> Result<TopicPlan, Refusal> {
    let name = name(&stack.name);
    let Some(Notify::Email(email)) = notify else {
        let reason = if notify.is_some() { "the alarms send elsewhere" } else { "--alarms off" };
        let targets = deployed.filter(|topic| topic.tagged).map(|topic| TopicArn(topic.arn.clone()));
        let unwanted = Deletion::of(Resource::Topic, &name, targets.into_iter().collect(), reason);
        return Ok(TopicPlan { topic: None, subscription: None, replaced: Vec::new(), unwanted });
    };
    // Someone's own topic of that name (perhaps given with --alarm-topic before) keeps
    // its subscriptions: it is never taken over.
    if deployed.is_some_and(|topic| !topic.tagged) {
        return Err(Refusal::TopicNotOurs { name });
    }
    let topic = match deployed {
        None => Action::Create,
        Some(_) => Action::Keep,
    };
    let subscriptions = deployed.map_or(&[][..], |topic| &topic.subscriptions);
    let (subscription, replaced) = match email {
        None => (None, Vec::new()),
        Some(email) => {
            let present = subscriptions.iter().any(|subscription| subscription.of(email));
            let action = if present { Action::Keep } else { Action::Create };
            let replaced = subscriptions
                .iter()
                .filter(|subscription| !subscription.of(email))
                .map(|old| match &old.arn {
                    Some(arn) => Deletion::of(
                        Resource::Subscription,
                        &old.email,
                        vec![SubscriptionArn(arn.clone())],
                        format!("replaced by {email}"),
                    ),
                    // Not confirmed, so it gets no alarm; and it cannot be unsubscribed.
                    None => Deletion::retained(Resource::Subscription, &old.email, format!("pending: {LAPSES}")),
                })
                .collect();
            (Some(Planned::new(Resource::Subscription, email, action)), replaced)
        }
    };
    Ok(TopicPlan {
        topic: Some(Planned::new(Resource::Topic, &name, topic)),
        subscription,
        replaced,
        unwanted: Deletion::absent(Resource::Topic, name),
    })
}

/// Makes the topic, tagged (CreateTopic answers an existing one's ARN): before the
/// alarms, which send to it.
pub(crate) async fn apply(client: &Client, stack: &Stack, planned: &Planned<Nothing>) -> anyhow::Result<()> {
    if planned.action != Action::Create {
        return Ok(());
    }
    let tags = stack.tags().into_iter().map(|(key, value)| Tag::builder().key(key).value(value).build());
    let tags = tags.collect::<Result<Vec<_>, _>>().context("tagging the alarm topic")?;
    let create = client.create_topic().name(name(&stack.name)).set_tags(Some(tags)).send().await;
    create.op("sns:CreateTopic").context("creating the alarm topic")?;
    Ok(())
}

/// Subscribes the address; AWS mails it a link to open before anything reaches it.
pub(crate) async fn subscribe(client: &Client, planned: &Planned<Nothing>, arn: &str) -> anyhow::Result<()> {
    if planned.action != Action::Create {
        return Ok(());
    }
    let email = &planned.name;
    let subscribe = client.subscribe().topic_arn(arn).protocol("email").endpoint(email).send().await;
    subscribe.op("sns:Subscribe").with_context(|| format!("subscribing {email} to the alarm topic"))?;
    Ok(())
}

/// A subscription to remove.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SubscriptionArn(pub(crate) String);

impl Delete for SubscriptionArn {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        let unsubscribe = clients.sns.unsubscribe().subscription_arn(&self.0).send().await;
        gone("sns:Unsubscribe", unsubscribe, NOT_FOUND).context("removing a replaced email subscription")?;
        Ok(None)
    }
}

/// The stack's topic, to delete with its subscriptions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TopicArn(pub(crate) String);

impl Delete for TopicArn {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        let delete = clients.sns.delete_topic().topic_arn(&self.0).send().await;
        gone("sns:DeleteTopic", delete, NOT_FOUND).context("deleting the alarm topic")?;
        Ok(None)
    }
}

/// The alarm topic's contract.
pub(crate) struct TopicContract;

impl crate::resources::Contract for TopicContract {
    const KIND: crate::change::Resource = crate::change::Resource::Topic;
    type State = TopicState;
    type Change = Nothing;
    type Target = TopicArn;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        use crate::resources::Grant;
        let topic = arn(scope.context.account, &scope.context.stack.name);
        // Every read looks for the stack's own alarm topic.
        let mut grants = vec![Grant::new("FindTheAlarmTopic", &["sns:GetTopicAttributes"], vec![topic.clone()])];
        if scope.own_topic {
            let actions = &[
                "sns:CreateTopic",
                "sns:DeleteTopic",
                "sns:ListSubscriptionsByTopic",
                "sns:ListTagsForResource",
                "sns:TagResource",
            ];
            grants.push(Grant::new("AlarmTopic", actions, vec![topic]));
        }
        grants
    }
}

/// The contract of the topic's email subscription.
pub(crate) struct SubscriptionContract;

impl crate::resources::Contract for SubscriptionContract {
    const KIND: crate::change::Resource = crate::change::Resource::Subscription;
    type State = Subscription;
    type Change = Nothing;
    type Target = SubscriptionArn;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        use crate::resources::Grant;
        if !scope.own_topic {
            return Vec::new();
        }
        vec![
            Grant::new("Subscribe", &["sns:Subscribe"], vec![arn(scope.context.account, &scope.context.stack.name)]),
            // Unsubscribe has no resource type: it names a subscription, not its topic.
            Grant::on_any("ReplaceTheSubscription", &["sns:Unsubscribe"]),
        ]
    }
}
