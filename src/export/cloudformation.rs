//! The stack as a CloudFormation template (JSON). Names are parameters; ARNs and names
//! are written as install writes them, over `${Parameter}` and pseudo-parameter names,
//! and each string holding one becomes an `Fn::Sub`.
//!
//! The function's `Code` is the path of the zip beside the template, which
//! `aws cloudformation package` uploads and replaces with its S3 location
//! (https://docs.aws.amazon.com/cli/latest/reference/cloudformation/package.html lists
//! `Code` of `AWS::Lambda::Function` among the properties it packages).

use counter_function::dynamo::EXPIRES_AT;
use serde_json::{Map, Value, json};

use super::{AlarmTarget, Exported, Symbols, ZIP};
use crate::aws::Account;
use crate::resources::alias::{ALIAS, publisher};
use crate::resources::function::HANDLER;
use crate::resources::routes::{METHOD, method_authorization};
use crate::resources::stage::deployment_description;
use crate::settings::{Auth, Front};
use crate::stack::{PROXY_PATH, Stack};

/// The template's parameters: the stack's names.
const NAME: &str = "StackName";
const TABLE: &str = "TableName";
const STAGE: &str = "StageName";

fn symbols() -> Symbols {
    Symbols {
        stack: Stack { name: format!("${{{NAME}}}"), table: format!("${{{TABLE}}}"), stage: format!("${{{STAGE}}}") },
        account: Account {
            id: "${AWS::AccountId}".into(),
            partition: "${AWS::Partition}".into(),
            region: "${AWS::Region}".into(),
        },
    }
}

/// The template: parameters, resources and outputs.
pub(crate) fn template(exported: &Exported) -> Value {
    let Symbols { stack, account } = symbols();
    let mut resources = Map::new();
    let tags = tags(&stack);
    let mut add = |logical: &str, resource: Value| {
        resources.insert(logical.to_owned(), resource);
    };

    // The counters: no stack operation deletes or replaces them
    // (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html,
    // .../aws-attribute-updatereplacepolicy.html).
    add(
        "Table",
        json!({
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "TableName": stack.table,
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                "DeletionProtectionEnabled": true,
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true},
                "TimeToLiveSpecification": {"AttributeName": EXPIRES_AT, "Enabled": true},
                "Tags": tags,
            },
        }),
    );
    let mut log_group = json!({"LogGroupName": stack.log_group(), "Tags": tags});
    if let Some(days) = exported.log_retention_days {
        log_group["RetentionInDays"] = json!(days);
    }
    add("LogGroup", json!({"Type": "AWS::Logs::LogGroup", "Properties": log_group}));
    add(
        "Role",
        json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": stack.name,
                "Description": format!("counterctl: the {} function's role", stack.name),
                "AssumeRolePolicyDocument": Stack::trust_policy(),
                "Policies": [{
                    "PolicyName": Stack::region_policy_name(&account.region),
                    "PolicyDocument": stack.role_policy(&account),
                }],
                "Tags": tags,
            },
        }),
    );
    let mut variables: Map<String, Value> =
        exported.variables.iter().map(|(key, value)| (key.clone(), json!(value))).collect();
    variables.insert(crate::stack::TABLE_VARIABLE.to_owned(), json!({"Ref": "Table"}));
    let mut function = json!({
        "FunctionName": stack.name,
        "Description": "counterctl: sequential unique IDs",
        "Runtime": "provided.al2023",
        "Handler": HANDLER,
        "Role": {"Fn::GetAtt": ["Role", "Arn"]},
        "Architectures": [exported.code.architecture.as_str()],
        "MemorySize": exported.memory_mb,
        "Timeout": exported.timeout_seconds,
        "Environment": {"Variables": variables},
        "Code": ZIP,
        "Tags": tags,
    });
    if let Some(reserved) = exported.reserved_concurrency {
        function["ReservedConcurrentExecutions"] = json!(reserved);
    }
    add("Function", json!({"Type": "AWS::Lambda::Function", "DependsOn": "LogGroup", "Properties": function}));
    // A version's logical id is named by what it holds, so a change of code or
    // configuration publishes a new one (the table cannot change: its parameter allows
    // only the exported name). Each is retained when the next replaces it, for a rollback
    // (deploy the template before); deleting old ones is the team's (install keeps five).
    let version = format!("Version{}", short_hash(&version_contents(exported)));
    add(
        &version,
        json!({
            "Type": "AWS::Lambda::Version",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "FunctionName": {"Ref": "Function"},
                "CodeSha256": exported.code.sha256,
                "Description": publisher(),
            },
        }),
    );
    add(
        "Alias",
        json!({
            "Type": "AWS::Lambda::Alias",
            "Properties": {
                "Name": ALIAS,
                "FunctionName": {"Ref": "Function"},
                "FunctionVersion": {"Fn::GetAtt": [version, "Version"]},
            },
        }),
    );

    let mut outputs = Map::new();
    outputs.insert("TableName".into(), json!({"Description": "The counters' table", "Value": {"Ref": "Table"}}));
    outputs.insert(
        "FunctionAlias".into(),
        json!({"Description": "The alias the front invokes", "Value": {"Ref": "Alias"}}),
    );
    match exported.front {
        Front::Rest => rest(exported, &stack, &account, &mut add, &mut outputs),
        Front::FunctionUrl => function_url(exported, &mut add, &mut outputs),
    }
    alarms(exported, &stack, &mut add);
    if let Some(domain) = &exported.domain {
        add(
            "Domain",
            json!({
                "Type": "AWS::ApiGateway::DomainName",
                "Properties": {
                    "DomainName": domain.name,
                    "RegionalCertificateArn": domain.certificate_arn,
                    "EndpointConfiguration": {"Types": ["REGIONAL"]},
                    "SecurityPolicy": "TLS_1_2",
                    "Tags": tags,
                },
            }),
        );
        add(
            "DomainMapping",
            json!({
                "Type": "AWS::ApiGateway::BasePathMapping",
                "Properties": {"DomainName": {"Ref": "Domain"}, "RestApiId": {"Ref": "Api"}, "Stage": {"Ref": "Stage"}},
            }),
        );
        if let Some(zone) = &domain.zone {
            add(
                "DomainRecord",
                json!({
                    "Type": "AWS::Route53::RecordSet",
                    "Properties": {
                        "HostedZoneId": zone,
                        "Name": domain.name,
                        "Type": "A",
                        "AliasTarget": {
                            "DNSName": {"Fn::GetAtt": ["Domain", "RegionalDomainName"]},
                            "HostedZoneId": {"Fn::GetAtt": ["Domain", "RegionalHostedZoneId"]},
                            "EvaluateTargetHealth": false,
                        },
                    },
                }),
            );
        }
        outputs.insert(
            "InvokeUrl".into(),
            json!({"Description": "The URL callers use", "Value": format!("https://{}", domain.name)}),
        );
    }

    let real = &exported.stack;
    let mut template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("counterctl stack {}: sequential unique IDs (exported by counterctl {})", real.name, env!("CARGO_PKG_VERSION")),
        "Parameters": {
            NAME: {
                "Type": "String",
                "Default": real.name,
                "Description": "The stack's function, role, log group, API, API key, usage plan and alarms are named so",
                "AllowedPattern": "^[A-Za-z0-9_-]{1,64}$",
            },
            TABLE: {
                "Type": "String",
                "Default": real.table,
                "Description": "The counters' table: only the name it was exported with (a new table would start every counter again at 1; export again with --table for another)",
                "AllowedValues": [real.table],
            },
            STAGE: {
                "Type": "String",
                "Default": real.stage,
                "Description": "The REST API's stage",
                "AllowedPattern": "^[A-Za-z0-9_-]{1,128}$",
            },
        },
        "Resources": resources,
        "Outputs": outputs,
    });
    if exported.front == Front::FunctionUrl {
        template["Parameters"].as_object_mut().expect("an object").remove(STAGE);
    }
    substitute(&mut template);
    template
}

/// A stack policy that denies replacing or deleting the table through any update: with
/// `UpdateReplacePolicy: Retain` the old table would be kept, but the function would move
/// to a new, empty one and hand out every ID again
/// (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/protect-stack-resources.html).
pub(crate) fn stack_policy() -> Value {
    json!({
        "Statement": [
            {"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": ["Update:Replace", "Update:Delete"],
                "Principal": "*",
                "Resource": "LogicalResourceId/Table",
            },
        ],
    })
}

fn rest(
    exported: &Exported,
    stack: &Stack,
    account: &Account,
    add: &mut impl FnMut(&str, Value),
    outputs: &mut Map<String, Value>,
) {
    let tags = tags(stack);
    let authorization = method_authorization(exported.auth);
    add(
        "Api",
        json!({
            "Type": "AWS::ApiGateway::RestApi",
            "Properties": {
                "Name": stack.name,
                "Description": "counterctl: sequential unique IDs",
                "EndpointConfiguration": {"Types": ["REGIONAL"]},
                "Tags": tags,
            },
        }),
    );
    add(
        "ProxyResource",
        json!({
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {
                "RestApiId": {"Ref": "Api"},
                "ParentId": {"Fn::GetAtt": ["Api", "RootResourceId"]},
                "PathPart": PROXY_PATH.trim_start_matches('/'),
            },
        }),
    );
    add(
        "ProxyMethod",
        json!({
            "Type": "AWS::ApiGateway::Method",
            "DependsOn": "Alias",
            "Properties": {
                "RestApiId": {"Ref": "Api"},
                "ResourceId": {"Ref": "ProxyResource"},
                "HttpMethod": METHOD,
                "AuthorizationType": authorization,
                "ApiKeyRequired": exported.auth == Auth::ApiKey,
                "Integration": {
                    "Type": "AWS_PROXY",
                    "IntegrationHttpMethod": "POST",
                    "Uri": stack.integration_uri(account),
                },
            },
        }),
    );
    // Named by what it deploys (install's fingerprint of the route, over the parameters),
    // as install deploys the API again when that changes.
    let description =
        deployment_description(authorization, exported.auth == Auth::ApiKey, &stack.integration_uri(account));
    let deployment = format!("Deployment{}", short_hash(&description));
    add(
        &deployment,
        json!({
            "Type": "AWS::ApiGateway::Deployment",
            "DependsOn": "ProxyMethod",
            "Properties": {"RestApiId": {"Ref": "Api"}, "Description": description},
        }),
    );
    let mut stage = json!({
        "RestApiId": {"Ref": "Api"},
        "StageName": stack.stage,
        "DeploymentId": {"Ref": deployment},
        "Tags": tags,
    });
    // With IAM the stage throttles callers, in place of a usage plan.
    if exported.auth == Auth::Iam {
        stage["MethodSettings"] = json!([{
            "ResourcePath": "/*",
            "HttpMethod": "*",
            "ThrottlingRateLimit": exported.throttle.rate,
            "ThrottlingBurstLimit": exported.throttle.burst,
        }]);
    }
    add("Stage", json!({"Type": "AWS::ApiGateway::Stage", "Properties": stage}));
    add(
        "Permission",
        json!({
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "FunctionName": {"Ref": "Alias"},
                "Action": "lambda:InvokeFunction",
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": stack.source_arn(account, "${Api}"),
            },
        }),
    );
    if exported.auth == Auth::ApiKey {
        add(
            "ApiKey",
            json!({
                "Type": "AWS::ApiGateway::ApiKey",
                "Properties": {
                    "Name": stack.name,
                    "Description": "counterctl: the key clients send as x-api-key",
                    "Enabled": true,
                    "Tags": tags,
                },
            }),
        );
        add(
            "UsagePlan",
            json!({
                "Type": "AWS::ApiGateway::UsagePlan",
                "Properties": {
                    "UsagePlanName": stack.name,
                    "Description": "counterctl: throttles the API key",
                    "ApiStages": [{"ApiId": {"Ref": "Api"}, "Stage": {"Ref": "Stage"}}],
                    "Throttle": {"RateLimit": exported.throttle.rate, "BurstLimit": exported.throttle.burst},
                    "Tags": tags,
                },
            }),
        );
        add(
            "UsagePlanKey",
            json!({
                "Type": "AWS::ApiGateway::UsagePlanKey",
                "Properties": {"KeyId": {"Ref": "ApiKey"}, "KeyType": "API_KEY", "UsagePlanId": {"Ref": "UsagePlan"}},
            }),
        );
        outputs.insert(
            "ApiKeyId".into(),
            json!({"Description": "aws apigateway get-api-key --include-value --api-key THIS", "Value": {"Ref": "ApiKey"}}),
        );
    }
    outputs.insert(
        "InvokeUrl".into(),
        json!({"Description": "The URL callers use", "Value": format!("https://${{Api}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/{}", stack.stage)}),
    );
}

fn function_url(exported: &Exported, add: &mut impl FnMut(&str, Value), outputs: &mut Map<String, Value>) {
    add(
        "Url",
        json!({
            "Type": "AWS::Lambda::Url",
            "Properties": {
                "TargetFunctionArn": {"Ref": "Function"},
                "Qualifier": ALIAS,
                "AuthType": if exported.auth == Auth::None { "NONE" } else { "AWS_IAM" },
            },
            "DependsOn": "Alias",
        }),
    );
    // A public URL needs both statements: since October 2025 Lambda also checks
    // lambda:InvokeFunction for calls through a function URL
    // (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html).
    if exported.auth == Auth::None {
        add(
            "UrlPublicPermission",
            json!({
                "Type": "AWS::Lambda::Permission",
                "Properties": {
                    "FunctionName": {"Ref": "Alias"},
                    "Action": "lambda:InvokeFunctionUrl",
                    "Principal": "*",
                    "FunctionUrlAuthType": "NONE",
                },
            }),
        );
        add(
            "UrlInvokePermission",
            json!({
                "Type": "AWS::Lambda::Permission",
                "Properties": {
                    "FunctionName": {"Ref": "Alias"},
                    "Action": "lambda:InvokeFunction",
                    "Principal": "*",
                    "InvokedViaFunctionUrl": true,
                },
            }),
        );
    }
    outputs.insert(
        "InvokeUrl".into(),
        json!({"Description": "The URL callers use", "Value": {"Fn::GetAtt": ["Url", "FunctionUrl"]}}),
    );
}

fn alarms(exported: &Exported, stack: &Stack, add: &mut impl FnMut(&str, Value)) {
    let actions = match &exported.alarms {
        AlarmTarget::Off | AlarmTarget::Nobody => json!([]),
        AlarmTarget::Topic(arn) => json!([arn]),
        AlarmTarget::OwnTopic { email } => {
            add(
                "AlarmTopic",
                json!({
                    "Type": "AWS::SNS::Topic",
                    "Properties": {"TopicName": crate::resources::topic::name(&stack.name), "Tags": tags(stack)},
                }),
            );
            if let Some(email) = email {
                add(
                    "AlarmSubscription",
                    json!({
                        "Type": "AWS::SNS::Subscription",
                        "Properties": {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email", "Endpoint": email},
                    }),
                );
            }
            json!([{"Ref": "AlarmTopic"}])
        }
    };
    for (kind, spec) in exported.alarm_specs(stack) {
        let dimensions: Vec<Value> =
            spec.dimensions.iter().map(|(name, value)| json!({"Name": name, "Value": value})).collect();
        let mut properties = json!({
            "AlarmName": spec.name,
            "Namespace": spec.namespace,
            "MetricName": spec.metric,
            "Dimensions": dimensions,
            "Threshold": spec.threshold,
            "ComparisonOperator": spec.comparison,
            "Period": spec.period,
            "EvaluationPeriods": spec.evaluation_periods,
            "TreatMissingData": spec.treat_missing_data,
            "AlarmActions": actions,
            "OKActions": actions,
            "Tags": tags(stack),
        });
        let statistic = if spec.extended() { "ExtendedStatistic" } else { "Statistic" };
        properties[statistic] = json!(spec.statistic);
        add(&format!("Alarm{}", logical(&kind)), json!({"Type": "AWS::CloudWatch::Alarm", "Properties": properties}));
    }
}

/// `function-errors` → `FunctionErrors`.
fn logical(kind: &str) -> String {
    kind.split(['-', '_'])
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// The stack's tags, as install sets them ([`Stack::tags`]), in CloudFormation's list form.
fn tags(stack: &Stack) -> Value {
    let tags: std::collections::BTreeMap<String, String> = stack.tags().into_iter().collect();
    tags.into_iter().map(|(key, value)| json!({"Key": key, "Value": value})).collect()
}

/// What a published version holds: its code and configuration.
fn version_contents(exported: &Exported) -> String {
    let variables: Vec<String> = exported.variables.iter().map(|(key, value)| format!("{key}={value}")).collect();
    format!(
        "{} {} {} {} {}",
        exported.code.sha256,
        exported.code.architecture.as_str(),
        exported.memory_mb,
        exported.timeout_seconds,
        variables.join("\n")
    )
}

/// Eight hex digits of `text`'s SHA-256: a logical id that changes with what it names.
fn short_hash(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().take(4).map(|byte| format!("{byte:02x}")).collect()
}

/// Every string naming a `${…}` becomes an `Fn::Sub` of it.
fn substitute(value: &mut Value) {
    match value {
        Value::String(text) if text.contains("${") => *value = json!({"Fn::Sub": text.clone()}),
        Value::Array(items) => items.iter_mut().for_each(substitute),
        Value::Object(map) => map.values_mut().for_each(substitute),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::export::tests::exported;
    use crate::resources::function::Code;

    fn logical_ids(template: &Value, prefix: &str) -> Vec<String> {
        let resources = template["Resources"].as_object().unwrap();
        resources.keys().filter(|id| id.starts_with(prefix)).cloned().collect()
    }

    #[test]
    fn a_change_of_code_or_configuration_names_a_new_version_and_the_alias_moves_to_it() {
        let before = template(&exported());
        let same = template(&exported());
        assert_eq!(logical_ids(&before, "Version"), logical_ids(&same, "Version"), "a re-export publishes nothing");
        for changed in [
            Exported { memory_mb: 256, ..exported() },
            Exported { code: Code { sha256: "b3RoZXI=".into(), ..exported().code }, ..exported() },
            Exported { variables: BTreeMap::from([("LOG".into(), "debug".into())]), ..exported() },
        ] {
            let after = template(&changed);
            let version = logical_ids(&after, "Version");
            assert_ne!(logical_ids(&before, "Version"), version);
            assert_eq!(after["Resources"]["Alias"]["Properties"]["FunctionVersion"]["Fn::GetAtt"][0], version[0]);
            assert_eq!(after["Resources"][&version[0]]["DeletionPolicy"], "Retain", "kept for a rollback");
        }
    }

    #[test]
    fn a_change_of_the_route_names_a_new_deployment_which_the_stage_serves() {
        let before = template(&exported());
        let after = template(&Exported { auth: Auth::Iam, ..exported() });
        let deployment = logical_ids(&after, "Deployment");
        assert_ne!(logical_ids(&before, "Deployment"), deployment);
        assert_eq!(after["Resources"]["Stage"]["Properties"]["DeploymentId"], json!({"Ref": deployment[0]}));
    }

    #[test]
    fn names_are_substituted_from_the_parameters_and_literal_text_is_left_alone() {
        let template = template(&exported());
        let role = &template["Resources"]["Role"]["Properties"];
        assert_eq!(role["RoleName"], json!({"Fn::Sub": "${StackName}"}));
        let policy = &role["Policies"][0];
        assert_eq!(policy["PolicyName"], json!({"Fn::Sub": "counterctl-${AWS::Region}"}));
        let tables = &policy["PolicyDocument"]["Statement"][0]["Resource"];
        assert_eq!(
            tables,
            &json!({"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${TableName}"})
        );
        assert_eq!(template["Resources"]["ProxyResource"]["Properties"]["PathPart"], "{proxy+}");
    }
}
