//! `counterctl status --operator-policy`: the least-privilege IAM policy for whoever runs
//! `install` (with the stack's options), `status` and `uninstall` of one stack in one
//! region, with `counters` as a statement of its own. (`counterctl logs` needs
//! `logs:FilterLogEvents` and `logs:StartLiveTail` on the log group besides.)
//!
//! Each action is granted on the stack's own resources wherever the Service
//! Authorization Reference lets it be
//! (https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html);
//! the few granted on `*` say why. `sts:GetCallerIdentity` needs no permission
//! (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).

use serde_json::{Value, json};

use crate::aws::Account;
use crate::plan::{Alarms, Plan};
use crate::resources::topic::Notify;
use crate::stack::Stack;

/// The policy for `plan`'s stack, as its options are now.
pub(crate) fn policy(plan: &Plan) -> Value {
    let (stack, account) = (&plan.stack, &plan.account);
    let table = account.arn("dynamodb", &format!("table/{}", stack.table));
    let role = crate::resources::role::arn(&stack.name, account);
    let function = stack.function_arn(account);
    let log_group = account.arn("logs", &format!("log-group:{}", stack.log_group()));
    let apigateway = |path: &str| apigateway_arn(account, path);
    let mut statements = vec![
        allow(
            "Table",
            &[
                "dynamodb:CreateTable",
                "dynamodb:DescribeTable",
                "dynamodb:UpdateTable",
                "dynamodb:DeleteTable",
                "dynamodb:TagResource",
                "dynamodb:ListTagsOfResource",
                "dynamodb:DescribeContinuousBackups",
                "dynamodb:UpdateContinuousBackups",
                "dynamodb:DescribeTimeToLive",
                "dynamodb:UpdateTimeToLive",
            ],
            vec![table.clone()],
        ),
        // ListTables has no resource type: it is granted on `*` or not at all. Install
        // and uninstall look for the tables an uninstall kept.
        allow("FindKeptTables", &["dynamodb:ListTables"], vec!["*".to_owned()]),
        // A kept table is known by its tag, so each table of the region is asked for its
        // tags (only when the stack has no function and no --table is given).
        allow("ReadTheTablesTags", &["dynamodb:ListTagsOfResource"], vec![account.arn("dynamodb", "table/*")]),
        allow(
            "Role",
            &[
                "iam:CreateRole",
                "iam:GetRole",
                "iam:TagRole",
                "iam:UpdateAssumeRolePolicy",
                "iam:DeleteRole",
                "iam:PutRolePolicy",
                "iam:GetRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:ListRolePolicies",
                "iam:ListAttachedRolePolicies",
                "iam:DetachRolePolicy",
                "iam:ListInstanceProfilesForRole",
            ],
            vec![role.clone()],
        ),
        json!({
            "Sid": "PassTheRoleToLambda",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": [role],
            "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
        }),
        allow(
            "Function",
            &[
                "lambda:CreateFunction",
                "lambda:GetFunction",
                "lambda:GetFunctionConfiguration",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
                "lambda:DeleteFunction",
                "lambda:TagResource",
                // GetFunction answers the tags only to a caller that may list them.
                "lambda:ListTags",
                "lambda:AddPermission",
                "lambda:RemovePermission",
                "lambda:GetPolicy",
                "lambda:GetFunctionConcurrency",
                "lambda:PutFunctionConcurrency",
                "lambda:DeleteFunctionConcurrency",
                "lambda:CreateFunctionUrlConfig",
                "lambda:GetFunctionUrlConfig",
                "lambda:UpdateFunctionUrlConfig",
                "lambda:DeleteFunctionUrlConfig",
            ],
            vec![function.clone()],
        ),
        allow(
            "LogGroup",
            &[
                "logs:CreateLogGroup",
                "logs:DeleteLogGroup",
                "logs:PutRetentionPolicy",
                "logs:TagLogGroup",
                // CreateLogGroup with tags needs it.
                "logs:TagResource",
                "logs:ListTagsLogGroup",
            ],
            vec![log_group.clone(), format!("{log_group}:*")],
        ),
        // DescribeLogGroups has no resource type: it lists the account's log groups.
        allow("FindTheLogGroup", &["logs:DescribeLogGroups"], vec!["*".to_owned()]),
        allow(
            "Alarms",
            &[
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:DeleteAlarms",
                "cloudwatch:DescribeAlarms",
                "cloudwatch:TagResource",
                "cloudwatch:ListTagsForResource",
            ],
            vec![account.arn("cloudwatch", &format!("alarm:{}-*", stack.name))],
        ),
        // GetMetricData (`status --metrics`) has no resource type.
        allow("ReadMetrics", &["cloudwatch:GetMetricData"], vec!["*".to_owned()]),
        // API Gateway authorizes by method on the resource's path; an API's id is made
        // when it is created, so the stack's are the region's `/restapis/*`.
        allow(
            "ReadTheFront",
            &["apigateway:GET"],
            ["/restapis", "/restapis/*", "/apikeys", "/apikeys/*", "/usageplans", "/usageplans/*", "/domainnames"]
                .map(apigateway)
                .to_vec(),
        ),
        allow(
            "ChangeTheFront",
            &["apigateway:POST", "apigateway:PUT", "apigateway:PATCH", "apigateway:DELETE"],
            ["/restapis", "/restapis/*", "/apikeys", "/apikeys/*", "/usageplans", "/usageplans/*", "/tags/*"]
                .map(apigateway)
                .to_vec(),
        ),
        allow("Counters", &["dynamodb:Scan", "dynamodb:UpdateItem"], vec![table]),
    ];
    // Without --table, a stack whose function is gone is read from the default table
    // first (the table a new stack gets).
    let default_table = counter_function::dynamo::DEFAULT_TABLE;
    if stack.table != default_table {
        let guessed = account.arn("dynamodb", &format!("table/{default_table}"));
        statements.push(allow("ReadTheDefaultTable", &["dynamodb:DescribeTable"], vec![guessed]));
    }
    // Every read looks for the stack's own alarm topic.
    let topic = crate::resources::topic::arn(account, &stack.name);
    statements.push(allow("FindTheAlarmTopic", &["sns:GetTopicAttributes"], vec![topic]));
    statements.extend(topic_statements(plan, account, stack));
    statements.extend(domain_statements(plan, account));
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// An API Gateway resource's ARN: its path, with no account.
fn apigateway_arn(account: &Account, path: &str) -> String {
    format!("arn:{}:apigateway:{}::{path}", account.partition, account.region)
}

/// A statement allowing `actions` on `resources`.
fn allow(sid: &str, actions: &[&str], resources: Vec<String>) -> Value {
    json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources })
}

/// The stack's own alarm topic (`--alarm-email`).
fn topic_statements(plan: &Plan, account: &Account, stack: &Stack) -> Vec<Value> {
    if !matches!(&plan.wanted.alarms, Alarms::On { notify: Notify::Email(_) }) {
        return Vec::new();
    }
    let actions = [
        "sns:CreateTopic",
        "sns:DeleteTopic",
        "sns:ListSubscriptionsByTopic",
        "sns:ListTagsForResource",
        "sns:TagResource",
        "sns:Subscribe",
    ];
    vec![
        allow("AlarmTopic", &actions, vec![crate::resources::topic::arn(account, &stack.name)]),
        // Unsubscribe has no resource type: it names a subscription, not its topic.
        allow("ReplaceTheSubscription", &["sns:Unsubscribe"], vec!["*".to_owned()]),
    ]
}

/// The custom domain, its certificate and its record (`--domain`).
fn domain_statements(plan: &Plan, account: &Account) -> Vec<Value> {
    let Some(domain) = plan.wanted.domain.as_ref() else {
        return Vec::new();
    };
    let domain_paths =
        ["/domainnames".to_owned(), format!("/domainnames/{}", domain.name), format!("/domainnames/{}/*", domain.name)];
    let mut statements = vec![
        allow(
            "Domain",
            &["apigateway:POST", "apigateway:GET", "apigateway:PATCH", "apigateway:DELETE"],
            domain_paths.iter().map(|path| apigateway_arn(account, path)).collect(),
        ),
        allow("Certificate", &["acm:DescribeCertificate"], vec![domain.certificate_arn.clone()]),
    ];
    if let Some(zone) = &domain.zone {
        let partition = &account.partition;
        let records = ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"];
        statements.push(allow("DomainRecord", &records, vec![format!("arn:{partition}:route53:::hostedzone/{zone}")]));
        // A change's id is made by the change.
        statements.push(allow(
            "WaitForTheRecord",
            &["route53:GetChange"],
            vec![format!("arn:{partition}:route53:::change/*")],
        ));
    }
    statements
}
