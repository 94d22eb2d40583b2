//! The resources of a deployment, one module each, each with everything about it side
//! by side: its deployed state and how it is read, its typed change and how it is
//! planned (pure), how that change is applied, how it is deleted, and the IAM actions
//! those calls need ([`Contract`]).

pub(crate) mod alarms;
pub(crate) mod alias;
pub(crate) mod api;
pub(crate) mod api_key;
pub(crate) mod apigateway;
pub(crate) mod domain;
pub(crate) mod function;
pub(crate) mod function_url;
pub(crate) mod log_group;
pub(crate) mod permission;
pub(crate) mod role;
pub(crate) mod routes;
pub(crate) mod stage;
pub(crate) mod table;
pub(crate) mod topic;
pub(crate) mod usage_plan;

use serde_json::{Value, json};

use crate::aws::AwsError;
use crate::change::{Changes, Delete, Resource};
use crate::stack::StackContext;

/// What every resource module offers, one implementation per [`Resource`] kind, so the
/// compiler asks a new kind for each piece. Beside it, the module has its `read` (giving
/// `State`), its pure `plan` (giving a `Planned<Change>`, or `Deletion<Target>`s), its
/// `apply` (destructuring `Change` whole), and its plan's rows ([`crate::change::Rows`]).
pub(crate) trait Contract {
    /// The kind of its rows.
    const KIND: Resource;
    /// As read.
    type State;
    /// Its typed change: one field per kind of call.
    type Change: Changes;
    /// What its deletions name, with the calls that delete it.
    type Target: Delete;
    /// The IAM actions its calls need, each on its own ARN: its part of the operator
    /// policy ([`grants`]).
    fn grants(scope: &Scope<'_>) -> Vec<Grant>;
}

/// What the operator policy is for: the stack, its account, and the options that add
/// calls.
pub(crate) struct Scope<'a> {
    pub(crate) context: StackContext<'a>,
    /// The alarms send to the stack's own topic (`--alarm-email`).
    pub(crate) own_topic: bool,
    /// `--domain`.
    pub(crate) domain: Option<&'a domain::WantedDomain>,
    /// The stack's regions, when it runs on a strongly consistent global table.
    pub(crate) regions: Option<&'a crate::regions::Regions>,
}

/// One statement of the operator policy: actions allowed on resources.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grant {
    pub(crate) sid: &'static str,
    pub(crate) actions: &'static [&'static str],
    pub(crate) resources: Vec<String>,
    pub(crate) condition: Option<Value>,
}

impl Grant {
    pub(crate) fn new(sid: &'static str, actions: &'static [&'static str], resources: Vec<String>) -> Self {
        Self { sid, actions, resources, condition: None }
    }

    /// On `*`: for actions with no resource type (each call says why).
    pub(crate) fn on_any(sid: &'static str, actions: &'static [&'static str]) -> Self {
        Self::new(sid, actions, vec!["*".to_owned()])
    }

    pub(crate) fn with_condition(mut self, condition: Value) -> Self {
        self.condition = Some(condition);
        self
    }

    pub(crate) fn statement(&self) -> Value {
        let Self { sid, actions, resources, condition } = self;
        let mut statement = json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources });
        if let Some(condition) = condition {
            statement["Condition"] = condition.clone();
        }
        statement
    }
}

/// The grants of resource kind `kind`: its module's [`Contract::grants`]. A kind added to
/// [`Resource`] fails to compile here until its module has its contract.
pub(crate) fn grants(kind: Resource, scope: &Scope<'_>) -> Vec<Grant> {
    fn of<C: Contract>(kind: Resource, scope: &Scope<'_>) -> Vec<Grant> {
        debug_assert_eq!(C::KIND, kind, "each kind's own contract");
        C::grants(scope)
    }
    match kind {
        Resource::Table => of::<table::TableContract>(kind, scope),
        Resource::LogGroup => of::<log_group::LogGroupContract>(kind, scope),
        Resource::Role => of::<role::RoleContract>(kind, scope),
        Resource::Policy => of::<role::PolicyContract>(kind, scope),
        Resource::Function => of::<function::FunctionContract>(kind, scope),
        Resource::Alias => of::<alias::AliasContract>(kind, scope),
        Resource::FunctionUrl => of::<function_url::UrlContract>(kind, scope),
        Resource::Permission => of::<permission::PermissionContract>(kind, scope),
        Resource::Api => of::<api::ApiContract>(kind, scope),
        Resource::Route => of::<routes::RouteContract>(kind, scope),
        Resource::Integration => of::<routes::IntegrationContract>(kind, scope),
        Resource::Stage => of::<stage::StageContract>(kind, scope),
        Resource::ApiKey => of::<api_key::KeyContract>(kind, scope),
        Resource::UsagePlan => of::<usage_plan::UsagePlanContract>(kind, scope),
        Resource::Domain => of::<domain::DomainContract>(kind, scope),
        Resource::Mapping => of::<domain::mapping::MappingContract>(kind, scope),
        Resource::DnsRecord => of::<domain::record::RecordContract>(kind, scope),
        Resource::Topic => of::<topic::TopicContract>(kind, scope),
        Resource::Subscription => of::<topic::SubscriptionContract>(kind, scope),
        Resource::Alarm => of::<alarms::AlarmsContract>(kind, scope),
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("function {name} is in state {state}: {reason}")]
    FunctionFailed { name: String, state: String, reason: String },
    #[error(transparent)]
    Timeout(#[from] crate::retry::TimedOut),
}
