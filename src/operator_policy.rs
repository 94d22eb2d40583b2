//! `counterctl status --operator-policy`: the least-privilege IAM policy for whoever runs
//! `install` (with the stack's options), `status` and `uninstall` of one stack in one
//! region, with `counters` as a statement of its own. (`counterctl logs` needs
//! `logs:FilterLogEvents` and `logs:StartLiveTail` on the log group besides.)
//!
//! It is assembled from the grants each resource module keeps beside its calls
//! ([`crate::resources::Contract::grants`]), kind by kind, and `status --metrics`'s.
//! Each action is granted on the stack's own resources wherever the Service
//! Authorization Reference lets it be
//! (https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html);
//! the few granted on `*` say why. `sts:GetCallerIdentity` needs no permission
//! (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).

use serde_json::{Value, json};

use crate::change::Resource;
use crate::plan::{Alarms, Plan};
use crate::resources::topic::Notify;
use crate::resources::{self, Grant, Scope};

/// The policy for `plan`'s stack, as its options are now.
pub(crate) fn policy(plan: &Plan) -> Value {
    let scope = Scope {
        context: plan.context(),
        own_topic: matches!(&plan.wanted.alarms, Alarms::On { notify: Notify::Email(_) }),
        domain: plan.wanted.domain.as_ref(),
        regions: plan.regions.as_ref(),
    };
    let every = Resource::ALL.into_iter().flat_map(|kind| resources::grants(kind, &scope));
    let statements: Vec<Value> = merged(every.chain([crate::metrics::grant()])).iter().map(Grant::statement).collect();
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// One statement per `Sid`: kinds that share one (API Gateway's reads and changes) add
/// their resources to it.
fn merged(grants: impl Iterator<Item = Grant>) -> Vec<Grant> {
    let mut statements: Vec<Grant> = Vec::new();
    for grant in grants {
        match statements.iter_mut().find(|statement| statement.sid == grant.sid) {
            Some(statement) => {
                debug_assert_eq!(statement.actions, grant.actions, "one Sid, one list of actions");
                for resource in grant.resources {
                    if !statement.resources.contains(&resource) {
                        statement.resources.push(resource);
                    }
                }
            }
            None => statements.push(grant),
        }
    }
    statements
}
