//! One deployment: its resource names, ARNs, tags and the documents install writes.

use std::collections::HashMap;

use crate::aws::Account;

/// The function's environment variable naming its table.
pub(crate) const TABLE_VARIABLE: &str = "TABLE_NAME";
/// The public statements of `--front function-url --auth none` in the function's
/// resource policy: the URL, and the invocation behind it.
pub(crate) const PUBLIC_URL_SID: &str = "counterctl-function-url-public";
pub(crate) const PUBLIC_INVOKE_SID: &str = "counterctl-function-url-public-invoke";
/// The tag CloudFormation puts on every resource it creates, naming its stack.
pub(crate) const CLOUDFORMATION_TAG: &str = "aws:cloudformation:stack-name";
/// Statement id of the permission that lets API Gateway invoke the function.
pub(crate) const PERMISSION_SID: &str = "counterctl-apigateway-invoke";
/// The role's inline policy before policies were per region (the name the original
/// manual setup used).
pub(crate) const LEGACY_POLICY_NAME: &str = "dynamodb-atomiccounters";
/// IAM is global and one role serves the stack's function in every region, so each
/// region gets its own inline policy, named by this prefix and the region.
pub(crate) const REGION_POLICY_PREFIX: &str = "counterctl-";
pub(crate) const MANAGED_BY: (&str, &str) = ("managed-by", "counterctl");
pub(crate) const STACK_TAG: &str = "counterctl:stack";
/// Given at create to the resources without a unique name (API, API key, usage plan):
/// the run that made it. A create whose answer was lost and retried by the SDK makes two,
/// and the run knows both for its own. Never compared as drift: only [`STACK_TAG`] says
/// whose a resource is.
pub(crate) const RUN_TAG: &str = "counterctl:run";

/// This process's token, the value of its [`RUN_TAG`].
pub(crate) fn run_token() -> &'static str {
    static TOKEN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| uuid::Uuid::new_v4().to_string());
    &TOKEN
}

/// Set by uninstall on the table it keeps: where stack NAME's counters are.
pub(crate) const KEPT_BY_TAG: &str = "counterctl:kept-by";
/// The only resource of the API; every path below the stage goes to the function.
pub(crate) const PROXY_PATH: &str = "/{proxy+}";

const TRUST_POLICY: &str = include_str!("../assets/trust-policy.json");

/// The names of one deployment's resources.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stack {
    /// Function, role, API, API key and usage plan name.
    pub name: String,
    pub table: String,
    pub stage: String,
}

/// A stack and the account it is in: the names and ARNs of its resources are made of
/// both, so they travel together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StackContext<'a> {
    pub(crate) stack: &'a Stack,
    pub(crate) account: &'a Account,
}

impl Stack {
    /// `managed-by=counterctl` and `counterctl:stack=NAME`.
    pub(crate) fn tags(&self) -> HashMap<String, String> {
        Self::tags_of(&self.name)
    }

    pub(crate) fn tags_of(name: &str) -> HashMap<String, String> {
        HashMap::from([(MANAGED_BY.0.into(), MANAGED_BY.1.into()), (STACK_TAG.into(), name.to_owned())])
    }

    /// [`tags`](Self::tags) and this run's [`RUN_TAG`], for a create.
    pub(crate) fn tags_of_run(&self) -> HashMap<String, String> {
        let mut tags = self.tags();
        tags.insert(RUN_TAG.into(), run_token().to_owned());
        tags
    }

    /// Whether one tag is stack `name`'s tag.
    pub(crate) fn is_stack_tag(name: &str, key: &str, value: &str) -> bool {
        key == STACK_TAG && value == name
    }

    /// The CloudFormation stack that made a resource with these tags: CloudFormation tags
    /// what it creates with [`CLOUDFORMATION_TAG`]
    /// (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-resource-tags.html).
    pub(crate) fn cloudformation_stack<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<String> {
        tags.into_iter().find(|(key, _)| *key == CLOUDFORMATION_TAG).map(|(_, value)| value.to_owned())
    }

    /// [`Stack::cloudformation_stack`] of a tag map.
    pub(crate) fn cloudformation_map(tags: Option<&HashMap<String, String>>) -> Option<String> {
        Self::cloudformation_stack(tags.into_iter().flatten().map(|(key, value)| (key.as_str(), value.as_str())))
    }

    /// Whether a tag map carries stack `name`'s tag.
    pub(crate) fn tagged_map(name: &str, tags: Option<&HashMap<String, String>>) -> bool {
        tags.and_then(|tags| tags.get(STACK_TAG)).is_some_and(|value| value == name)
    }

    /// The inline policy this region's function gets.
    pub(crate) fn region_policy_name(region: &str) -> String {
        format!("{REGION_POLICY_PREFIX}{region}")
    }

    /// The log group Lambda writes the function's logs to.
    pub(crate) fn log_group(&self) -> String {
        log_group_of(&self.name)
    }

    pub(crate) fn table_arn(&self, account: &Account) -> String {
        account.arn("dynamodb", &format!("table/{}", self.table))
    }

    pub(crate) fn function_arn(&self, account: &Account) -> String {
        account.arn("lambda", &format!("function:{}", self.name))
    }

    pub(crate) fn log_group_arn(&self, account: &Account) -> String {
        account.arn("logs", &format!("log-group:{}", self.log_group()))
    }

    /// The Lambda proxy integration's URI: the function's alias, so that callers move
    /// with it (https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html
    /// gives the form, with a qualified ARN for an alias).
    pub(crate) fn integration_uri(&self, account: &Account) -> String {
        format!(
            "arn:{}:apigateway:{}:lambda:path/2015-03-31/functions/{}:{}/invocations",
            account.partition,
            account.region,
            self.function_arn(account),
            crate::resources::alias::ALIAS
        )
    }

    /// Any stage, method and path of this API, and nothing else.
    pub(crate) fn source_arn(&self, account: &Account, api_id: &str) -> String {
        account.arn("execute-api", &format!("{api_id}/*"))
    }

    pub(crate) fn invoke_url(&self, region: &str, api_id: &str) -> String {
        invoke_url(region, api_id, &self.stage)
    }

    pub(crate) fn trust_policy() -> serde_json::Value {
        serde_json::from_str(TRUST_POLICY).expect("assets/trust-policy.json is JSON")
    }

    /// Least privilege: the DynamoDB actions the function calls, on this table only,
    /// and writing to this function's log group, which install makes (so no
    /// `logs:CreateLogGroup`).
    pub(crate) fn role_policy(&self, account: &Account) -> serde_json::Value {
        self.role_policy_with(account, None)
    }

    /// During a table switch: [`role_policy`](Self::role_policy) granting `previous`
    /// table too, so the function can use whichever table it is on.
    pub(crate) fn role_policy_with(&self, account: &Account, previous: Option<&str>) -> serde_json::Value {
        let log_group = self.log_group_arn(account);
        let tables = match previous {
            None => serde_json::json!(self.table_arn(account)),
            Some(previous) => {
                serde_json::json!([account.arn("dynamodb", &format!("table/{previous}")), self.table_arn(account)])
            }
        };
        serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Counters",
                    "Effect": "Allow",
                    "Action": ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan", "dynamodb:UpdateItem"],
                    "Resource": tables,
                },
                {
                    "Sid": "Logs",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": [log_group.clone(), format!("{log_group}:*")],
                },
            ],
        })
    }
}

/// The least-privilege policy a caller's IAM identity needs for a stack with `--auth
/// iam`: invoke exactly the two routes of this API's stage
/// (https://docs.aws.amazon.com/apigateway/latest/developerguide/arn-format-reference.html:
/// `arn:PARTITION:execute-api:REGION:ACCOUNT:API-ID/STAGE/METHOD/PATH`).
pub(crate) fn caller_policy(stack: &Stack, account: &Account, api_id: &str) -> serde_json::Value {
    let route =
        |method: &str, path: &str| account.arn("execute-api", &format!("{api_id}/{}/{method}{path}", stack.stage));
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "CallTheCounters",
            "Effect": "Allow",
            "Action": "execute-api:Invoke",
            "Resource": [
                route("POST", counter_function::api::INCREMENT_PATH),
                route("GET", counter_function::api::VALUE_PATH),
            ],
        }],
    })
}

/// The least-privilege policy a caller needs for a stack with `--front function-url
/// --auth iam`: both permissions a function URL now takes
/// (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html), on this function only,
/// the second only for invocations through its URL.
pub(crate) fn function_url_caller_policy(stack: &Stack, account: &Account) -> serde_json::Value {
    // The URL is the alias's: both actions are on its ARN.
    let function = format!("{}:{}", stack.function_arn(account), crate::resources::alias::ALIAS);
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CallTheCountersUrl",
                "Effect": "Allow",
                "Action": "lambda:InvokeFunctionUrl",
                "Resource": function,
                "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
            },
            {
                "Sid": "CallTheCountersFunction",
                "Effect": "Allow",
                "Action": "lambda:InvokeFunction",
                "Resource": function,
                "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}},
            },
        ],
    })
}

/// The regions whose resources a policy document grants: the region field of every ARN
/// in its `Resource`s (`arn:PARTITION:SERVICE:REGION:...`).
pub(crate) fn policy_regions(policy: &serde_json::Value) -> std::collections::BTreeSet<String> {
    let statements = match &policy["Statement"] {
        serde_json::Value::Array(statements) => statements.clone(),
        statement => vec![statement.clone()],
    };
    let resources = statements.into_iter().flat_map(|statement| match &statement["Resource"] {
        serde_json::Value::Array(resources) => resources.clone(),
        resource => vec![resource.clone()],
    });
    resources.filter_map(|resource| Some(resource.as_str()?.split(':').nth(3)?.to_owned())).collect()
}

/// Of the resources of one kind named after the stack, the stack's own: a tagged one
/// (one in use, else the first by `order`), else the first untagged one by `order`,
/// which install adopts.
pub(crate) fn choose<T, K: Ord>(
    items: &[T],
    tagged: impl Fn(&T) -> bool,
    in_use: impl Fn(&T) -> bool,
    order: impl Fn(&T) -> K,
) -> Option<&T> {
    let tagged: Vec<&T> = items.iter().filter(|item| tagged(item)).collect();
    if tagged.is_empty() {
        return items.iter().min_by_key(|item| order(item));
    }
    let in_use = tagged.iter().copied().filter(|item| in_use(item)).min_by_key(|item| order(item));
    in_use.or_else(|| tagged.into_iter().min_by_key(|item| order(item)))
}

/// The other tagged resources of one kind, when the stack's own (`chosen`) is tagged:
/// duplicates, to delete. An untagged one chosen is adopted, and nothing else is touched.
pub(crate) fn duplicates<'a, T>(
    items: &'a [T],
    chosen: Option<&T>,
    tagged: impl Fn(&T) -> bool,
    id: impl Fn(&T) -> &str,
) -> Vec<&'a T> {
    match chosen {
        Some(chosen) if tagged(chosen) => items.iter().filter(|item| tagged(item) && id(item) != id(chosen)).collect(),
        _ => Vec::new(),
    }
}

/// The resources of one kind that run `run` made besides `kept`: more than one when a
/// create's answer was lost and the SDK made it again. Resources of other runs are not
/// among them.
pub(crate) fn made_again<'a, T>(
    items: &'a [T],
    (run, kept): (&str, &str),
    run_of: impl Fn(&T) -> Option<&str>,
    id: impl Fn(&T) -> &str,
) -> Vec<&'a T> {
    items.iter().filter(|item| run_of(item) == Some(run) && id(item) != kept).collect()
}

/// The run that made a resource, from its tags ([`RUN_TAG`]).
pub(crate) fn run_of(tags: Option<&HashMap<String, String>>) -> Option<String> {
    tags.and_then(|tags| tags.get(RUN_TAG)).cloned()
}

/// The log group of function `name`: where Lambda writes its logs.
pub(crate) fn log_group_of(name: &str) -> String {
    format!("/aws/lambda/{name}")
}

/// The URL of an API's stage.
pub(crate) fn invoke_url(region: &str, api_id: &str, stage: &str) -> String {
    let domain = if crate::aws::partition_of(region) == "aws-cn" { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("https://{api_id}.execute-api.{region}.{domain}/{stage}")
}

/// A policy document as IAM returns it: URL-encoded JSON.
pub(crate) fn decode_policy(document: &str) -> Option<serde_json::Value> {
    serde_json::from_str(document).ok().or_else(|| {
        let decoded = percent_encoding::percent_decode_str(document).decode_utf8().ok()?;
        serde_json::from_str(&decoded).ok()
    })
}

/// One policy document of several regions' (a stack in several regions): a statement the
/// regions share is kept once, and another statement whose `Sid` an earlier region's
/// statement has gets the region's position added, since IAM refuses a policy with two
/// statements of one `Sid`.
pub(crate) fn merged_policy(policies: &[serde_json::Value]) -> serde_json::Value {
    let without_sid = |statement: &serde_json::Value| {
        let mut statement = statement.clone();
        statement.as_object_mut().map(|fields| fields.remove("Sid"));
        statement
    };
    let mut statements: Vec<serde_json::Value> = Vec::new();
    for (index, policy) in policies.iter().enumerate() {
        for statement in policy["Statement"].as_array().into_iter().flatten() {
            if statements.iter().any(|kept| without_sid(kept) == without_sid(statement)) {
                continue;
            }
            let mut statement = statement.clone();
            let sid = statement["Sid"].as_str().map(str::to_owned);
            if let Some(sid) = sid
                && statements.iter().any(|kept| kept["Sid"] == sid.as_str())
            {
                statement["Sid"] = serde_json::Value::String(format!("{sid}{index}"));
            }
            statements.push(statement);
        }
    }
    serde_json::json!({ "Version": "2012-10-17", "Statement": statements })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_decode_whether_iam_url_encoded_them_or_not() {
        let plain = r#"{"Version":"2012-10-17","Statement":[]}"#;
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        let expected = serde_json::json!({"Version": "2012-10-17", "Statement": []});
        assert_eq!(decode_policy(plain), Some(expected.clone()));
        assert_eq!(decode_policy(encoded), Some(expected));
        assert_eq!(decode_policy("%7Bnot json"), None);
    }

    /// As parliament (https://github.com/duo-labs/parliament) would review it: known
    /// actions only, no wildcard in any resource.
    #[test]
    fn the_caller_policy_grants_invoke_on_exactly_two_routes() {
        let stack = Stack { name: "AtomicCounter".into(), table: "AtomicCounters".into(), stage: "prod".into() };
        let account = Account { id: "123456789012".into(), partition: "aws".into(), region: "eu-west-1".into() };
        let policy = caller_policy(&stack, &account, "abc123");
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 1);
        assert_eq!(statements[0]["Effect"], "Allow");
        assert_eq!(statements[0]["Action"], "execute-api:Invoke");
        let resources: Vec<&str> =
            statements[0]["Resource"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        assert_eq!(
            resources,
            [
                "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/POST/counter/increment",
                "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/GET/counter/value",
            ]
        );
        assert!(resources.iter().all(|resource| !resource.contains('*')), "no wildcard: {resources:?}");
        assert!(!policy.to_string().contains("NotAction") && !policy.to_string().contains("NotResource"));
    }

    #[test]
    fn the_function_url_caller_policy_allows_this_function_s_alias_only_and_only_via_its_url() {
        let stack = Stack { name: "AtomicCounter".into(), table: "AtomicCounters".into(), stage: "prod".into() };
        let account = Account { id: "123456789012".into(), partition: "aws".into(), region: "eu-west-1".into() };
        let policy = function_url_caller_policy(&stack, &account);
        let statements = policy["Statement"].as_array().unwrap();
        let actions: Vec<&str> = statements.iter().map(|s| s["Action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["lambda:InvokeFunctionUrl", "lambda:InvokeFunction"]);
        for statement in statements {
            assert_eq!(statement["Effect"], "Allow");
            assert_eq!(statement["Resource"], "arn:aws:lambda:eu-west-1:123456789012:function:AtomicCounter:live");
            assert!(statement["Condition"].is_object(), "each is narrowed by a condition: {statement}");
        }
        assert!(!policy.to_string().contains('*'), "no wildcard: {policy}");
    }

    #[test]
    fn arns_and_urls_follow_the_partition() {
        let stack = Stack { name: "AtomicCounter".into(), table: "AtomicCounters".into(), stage: "prod".into() };
        let policy = stack.role_policy(&Account {
            id: "123456789012".into(),
            partition: "aws".into(),
            region: "eu-west-1".into(),
        });
        assert_eq!(policy_regions(&policy), ["eu-west-1".to_owned()].into());
        let china = Account { id: "123456789012".into(), partition: "aws-cn".into(), region: "cn-north-1".into() };
        assert_eq!(stack.table_arn(&china), "arn:aws-cn:dynamodb:cn-north-1:123456789012:table/AtomicCounters");
        assert_eq!(stack.invoke_url("cn-north-1", "abc"), "https://abc.execute-api.cn-north-1.amazonaws.com.cn/prod");
        assert_eq!(stack.invoke_url("eu-west-1", "abc"), "https://abc.execute-api.eu-west-1.amazonaws.com/prod");
        let policy = stack.role_policy(&china).to_string();
        assert!(!policy.contains("${"), "every placeholder is filled: {policy}");
        assert!(!policy.contains("\"*\""), "no wildcard resource: {policy}");
    }

    #[test]
    fn merged_policies_keep_a_shared_statement_once_and_no_sid_twice() {
        let policy = |resource: &str| {
            serde_json::json!({"Version": "2012-10-17", "Statement": [
                {"Sid": "Role", "Effect": "Allow", "Action": "iam:GetRole", "Resource": "arn:aws:iam::1:role/R"},
                {"Sid": "Function", "Effect": "Allow", "Action": "lambda:GetFunction", "Resource": resource},
            ]})
        };
        let merged = merged_policy(&[policy("east"), policy("west")]);
        let sids: Vec<&str> =
            merged["Statement"].as_array().unwrap().iter().map(|s| s["Sid"].as_str().unwrap()).collect();
        assert_eq!(sids, ["Role", "Function", "Function1"]);
        assert_eq!(merged["Statement"][2]["Resource"], "west");
    }
}
