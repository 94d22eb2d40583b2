//! The stack as a Terraform configuration in Terraform's JSON syntax
//! (https://developer.hashicorp.com/terraform/language/syntax/json), for the AWS provider
//! 6.28 or later (the first with `invoked_via_function_url` on `aws_lambda_permission`).
//! Names are variables; for what is deployed, an `import` block (Terraform 1.5) names
//! each resource by the import ID its provider documentation gives, so `terraform plan`
//! adopts the stack instead of making it again. The table has `prevent_destroy`.

use counter_function::dynamo::EXPIRES_AT;
use serde_json::{Map, Value, json};

use super::{AlarmTarget, Exported, Symbols, ZIP};
use crate::aws::Account;
use crate::resources::alias::ALIAS;
use crate::resources::function::HANDLER;
use crate::resources::routes::{METHOD, method_authorization};
use crate::settings::{Auth, Front};
use crate::stack::{PERMISSION_SID, PROXY_PATH, PUBLIC_INVOKE_SID, PUBLIC_URL_SID, Stack};

fn symbols() -> Symbols {
    Symbols {
        stack: Stack { name: "${var.name}".into(), table: "${var.table}".into(), stage: "${var.stage}".into() },
        account: Account {
            id: "${data.aws_caller_identity.current.account_id}".into(),
            partition: "${data.aws_partition.current.partition}".into(),
            region: "${data.aws_region.current.region}".into(),
        },
    }
}

/// The resources and their import blocks, as they are added.
#[derive(Default)]
struct Configuration {
    resources: Map<String, Value>,
    imports: Vec<Value>,
}

impl Configuration {
    /// Resource `kind`.`name`, imported by `import` when it is deployed.
    fn add(&mut self, kind: &str, name: &str, body: Value, import: Option<String>) {
        let of_kind = self.resources.entry(kind).or_insert_with(|| json!({}));
        of_kind[name] = body;
        if let Some(id) = import {
            self.imports.push(json!({"to": format!("{kind}.{name}"), "id": id}));
        }
    }
}

/// The configuration: provider requirements, variables, data sources, resources, import
/// blocks and outputs.
pub(crate) fn configuration(exported: &Exported) -> Value {
    let Symbols { stack, account } = symbols();
    let real = &exported.stack;
    let existing = &exported.existing;
    let tags = tags(&stack);
    let mut config = Configuration::default();

    // Import IDs: https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/dynamodb_table#import
    // (the table's name). prevent_destroy: no plan may delete or replace the counters.
    config.add(
        "aws_dynamodb_table",
        "counters",
        json!({
            "name": stack.table,
            "billing_mode": "PAY_PER_REQUEST",
            "hash_key": "id",
            "attribute": [{"name": "id", "type": "S"}],
            "deletion_protection_enabled": true,
            "point_in_time_recovery": {"enabled": true},
            "ttl": {"attribute_name": EXPIRES_AT, "enabled": true},
            "tags": tags,
            "lifecycle": {"prevent_destroy": true},
        }),
        existing.table.then_some(real.table.clone()),
    );
    // .../cloudwatch_log_group#import: the log group's name.
    let mut log_group = json!({"name": stack.log_group(), "tags": tags});
    if let Some(days) = exported.log_retention_days {
        log_group["retention_in_days"] = json!(days);
    }
    config.add("aws_cloudwatch_log_group", "function", log_group, existing.log_group.then_some(real.log_group()));
    // .../iam_role#import: the role's name; .../iam_role_policy#import: ROLE:POLICY.
    config.add(
        "aws_iam_role",
        "function",
        json!({
            "name": stack.name,
            "description": format!("counterctl: the {} function's role", stack.name),
            "assume_role_policy": Stack::trust_policy().to_string(),
            "tags": tags,
        }),
        existing.role.then_some(real.name.clone()),
    );
    config.add(
        "aws_iam_role_policy",
        "function",
        json!({
            "name": Stack::region_policy_name(&account.region),
            "role": "${aws_iam_role.function.id}",
            "policy": stack.role_policy(&account).to_string(),
        }),
        existing.policy.then_some(format!("{}:{}", real.name, Stack::region_policy_name(&exported.region))),
    );
    let mut variables: Map<String, Value> =
        exported.variables.iter().map(|(key, value)| (key.clone(), json!(value))).collect();
    variables.insert(crate::stack::TABLE_VARIABLE.to_owned(), json!("${aws_dynamodb_table.counters.name}"));
    // .../lambda_function#import: the function's name. `publish` makes each change of
    // code or configuration a new version, which the alias moves to.
    config.add(
        "aws_lambda_function",
        "counter",
        json!({
            "function_name": stack.name,
            "description": "counterctl: sequential unique IDs",
            "runtime": "provided.al2023",
            "handler": HANDLER,
            "role": "${aws_iam_role.function.arn}",
            "architectures": [exported.code.architecture.as_str()],
            "memory_size": exported.memory_mb,
            "timeout": exported.timeout_seconds,
            "reserved_concurrent_executions": exported.reserved_concurrency.unwrap_or(-1),
            "environment": {"variables": variables},
            "filename": format!("${{path.module}}/{ZIP}"),
            "source_code_hash": format!("${{filebase64sha256(\"${{path.module}}/{ZIP}\")}}"),
            "publish": true,
            "tags": tags,
            "depends_on": ["aws_cloudwatch_log_group.function", "aws_iam_role_policy.function"],
        }),
        existing.function.then_some(real.name.clone()),
    );
    // .../lambda_alias#import: FUNCTION/ALIAS.
    config.add(
        "aws_lambda_alias",
        "live",
        json!({
            "name": ALIAS,
            "function_name": "${aws_lambda_function.counter.function_name}",
            "function_version": "${aws_lambda_function.counter.version}",
        }),
        existing.alias.then_some(format!("{}/{ALIAS}", real.name)),
    );
    let mut outputs = Map::new();
    outputs.insert(
        "table".into(),
        json!({"description": "The counters' table", "value": "${aws_dynamodb_table.counters.name}"}),
    );
    outputs.insert(
        "function_alias".into(),
        json!({"description": "The alias the front invokes", "value": "${aws_lambda_alias.live.arn}"}),
    );
    match exported.front {
        Front::Rest => rest(exported, &stack, &mut config, &mut outputs),
        Front::FunctionUrl => function_url(exported, &mut config, &mut outputs),
    }
    alarms(exported, &stack, &mut config);
    if let Some(domain) = &exported.domain {
        // .../api_gateway_domain_name#import: the name; .../api_gateway_base_path_mapping#import:
        // DOMAIN/BASE-PATH, `DOMAIN/` for the root; .../route53_record#import: ZONE_NAME_TYPE.
        config.add(
            "aws_api_gateway_domain_name",
            "domain",
            json!({
                "domain_name": domain.name,
                "regional_certificate_arn": domain.certificate_arn,
                "endpoint_configuration": {"types": ["REGIONAL"]},
                "security_policy": "TLS_1_2",
                "tags": tags,
            }),
            existing.domain.then_some(domain.name.clone()),
        );
        config.add(
            "aws_api_gateway_base_path_mapping",
            "domain",
            json!({
                "domain_name": "${aws_api_gateway_domain_name.domain.domain_name}",
                "api_id": "${aws_api_gateway_rest_api.api.id}",
                "stage_name": "${aws_api_gateway_stage.api.stage_name}",
            }),
            existing.mapping.then_some(format!("{}/", domain.name)),
        );
        if let Some(zone) = &domain.zone {
            config.add(
                "aws_route53_record",
                "domain",
                json!({
                    "zone_id": zone,
                    "name": domain.name,
                    "type": "A",
                    "alias": {
                        "name": "${aws_api_gateway_domain_name.domain.regional_domain_name}",
                        "zone_id": "${aws_api_gateway_domain_name.domain.regional_zone_id}",
                        "evaluate_target_health": false,
                    },
                }),
                existing.record.then_some(format!("{zone}_{}_A", domain.name)),
            );
        }
        outputs.insert(
            "invoke_url".into(),
            json!({"description": "The URL callers use", "value": format!("https://{}", domain.name)}),
        );
    }

    let mut variables = json!({
        "name": {
            "type": "string",
            "default": real.name,
            "description": "The stack's function, role, log group, API, API key, usage plan and alarms are named so",
        },
        "table": {
            "type": "string",
            "default": real.table,
            "description": "The counters' table. prevent_destroy refuses a change of it on a deployed stack: a new table starts every counter again at 1",
        },
        "stage": {"type": "string", "default": real.stage, "description": "The REST API's stage"},
        "region": {"type": "string", "default": exported.region, "description": "The region the stack is in (the import ids are of this region's resources)"},
    });
    if exported.front == Front::FunctionUrl {
        variables.as_object_mut().expect("an object").remove("stage");
    }
    let mut configuration = json!({
        "//": format!("counterctl stack {}: sequential unique IDs (exported by counterctl {})", real.name, env!("CARGO_PKG_VERSION")),
        "terraform": {
            "required_version": ">= 1.5.0",
            "required_providers": {"aws": {"source": "hashicorp/aws", "version": ">= 6.28.0"}},
        },
        "variable": variables,
        "provider": {"aws": {"region": "${var.region}"}},
        "data": {
            "aws_caller_identity": {"current": {}},
            "aws_partition": {"current": {}},
            "aws_region": {"current": {}},
        },
        "resource": config.resources,
        "output": outputs,
    });
    if !config.imports.is_empty() {
        configuration["import"] = json!(config.imports);
    }
    configuration
}

fn rest(exported: &Exported, stack: &Stack, config: &mut Configuration, outputs: &mut Map<String, Value>) {
    let tags = tags(stack);
    let real = &exported.stack;
    let existing = &exported.existing;
    let api = existing.api.as_ref();
    let api_id = |rest: &str| api.map(|api| format!("{}{rest}", api.id));
    let proxy = api.and_then(|api| api.proxy_id.as_deref().map(|proxy| format!("{}/{proxy}", api.id)));
    // .../api_gateway_rest_api#import: the API's id.
    config.add(
        "aws_api_gateway_rest_api",
        "api",
        json!({
            "name": stack.name,
            "description": "counterctl: sequential unique IDs",
            "endpoint_configuration": {"types": ["REGIONAL"]},
            "tags": tags,
        }),
        api_id(""),
    );
    // .../api_gateway_resource#import: API-ID/RESOURCE-ID.
    config.add(
        "aws_api_gateway_resource",
        "proxy",
        json!({
            "rest_api_id": "${aws_api_gateway_rest_api.api.id}",
            "parent_id": "${aws_api_gateway_rest_api.api.root_resource_id}",
            "path_part": PROXY_PATH.trim_start_matches('/'),
        }),
        proxy.clone(),
    );
    // .../api_gateway_method#import and .../api_gateway_integration#import:
    // API-ID/RESOURCE-ID/HTTP-METHOD.
    let method_id = |there: bool| proxy.clone().filter(|_| there).map(|proxy| format!("{proxy}/{METHOD}"));
    config.add(
        "aws_api_gateway_method",
        "proxy",
        json!({
            "rest_api_id": "${aws_api_gateway_rest_api.api.id}",
            "resource_id": "${aws_api_gateway_resource.proxy.id}",
            "http_method": METHOD,
            "authorization": method_authorization(exported.auth),
            "api_key_required": exported.auth == Auth::ApiKey,
        }),
        method_id(api.is_some_and(|api| api.method)),
    );
    config.add(
        "aws_api_gateway_integration",
        "proxy",
        json!({
            "rest_api_id": "${aws_api_gateway_rest_api.api.id}",
            "resource_id": "${aws_api_gateway_resource.proxy.id}",
            "http_method": "${aws_api_gateway_method.proxy.http_method}",
            "type": "AWS_PROXY",
            "integration_http_method": "POST",
            "uri": "${aws_lambda_alias.live.invoke_arn}",
        }),
        method_id(api.is_some_and(|api| api.integration)),
    );
    // .../api_gateway_deployment#import: API-ID/DEPLOYMENT-ID. A change of the route
    // replaces it (before the old one goes, so the stage always serves one), as install
    // deploys the API again; `triggers` would replace an imported deployment at once.
    config.add(
        "aws_api_gateway_deployment",
        "api",
        json!({
            "rest_api_id": "${aws_api_gateway_rest_api.api.id}",
            "description": exported.deployment.as_deref().unwrap_or_default(),
            "depends_on": ["aws_api_gateway_integration.proxy"],
            "lifecycle": {
                "create_before_destroy": true,
                "replace_triggered_by": ["aws_api_gateway_method.proxy", "aws_api_gateway_integration.proxy"],
            },
        }),
        // Imported only with its route: `replace_triggered_by` acts on an update of the
        // method or integration, not on their creation, so a route Terraform makes needs
        // a deployment Terraform makes.
        api.filter(|api| api.method && api.integration)
            .and_then(|api| api.deployment_id.as_ref().map(|deployment| format!("{}/{deployment}", api.id))),
    );
    // .../api_gateway_stage#import: API-ID/STAGE.
    config.add(
        "aws_api_gateway_stage",
        "api",
        json!({
            "rest_api_id": "${aws_api_gateway_rest_api.api.id}",
            "stage_name": stack.stage,
            "deployment_id": "${aws_api_gateway_deployment.api.id}",
            "tags": tags,
        }),
        api.filter(|api| api.stage).map(|api| format!("{}/{}", api.id, real.stage)),
    );
    // With IAM the stage throttles callers, in place of a usage plan.
    // .../api_gateway_method_settings#import: API-ID/STAGE/METHOD-PATH.
    if exported.auth == Auth::Iam {
        config.add(
            "aws_api_gateway_method_settings",
            "all",
            json!({
                "rest_api_id": "${aws_api_gateway_rest_api.api.id}",
                "stage_name": "${aws_api_gateway_stage.api.stage_name}",
                "method_path": "*/*",
                "settings": {
                    "throttling_rate_limit": exported.throttle.rate,
                    "throttling_burst_limit": exported.throttle.burst,
                },
            }),
            api.filter(|api| api.method_settings).map(|api| format!("{}/{}/*/*", api.id, real.stage)),
        );
    }
    // .../lambda_permission#import: FUNCTION:QUALIFIER/STATEMENT-ID.
    config.add(
        "aws_lambda_permission",
        "api_gateway",
        json!({
            "statement_id": PERMISSION_SID,
            "action": "lambda:InvokeFunction",
            "function_name": "${aws_lambda_function.counter.function_name}",
            "qualifier": "${aws_lambda_alias.live.name}",
            "principal": "apigateway.amazonaws.com",
            "source_arn": "${aws_api_gateway_rest_api.api.execution_arn}/*",
        }),
        existing.permission.then(|| format!("{}:{ALIAS}/{PERMISSION_SID}", real.name)),
    );
    if exported.auth == Auth::ApiKey {
        // .../api_gateway_api_key#import and .../api_gateway_usage_plan#import: the id;
        // .../api_gateway_usage_plan_key#import: USAGE-PLAN-ID/KEY-ID.
        config.add(
            "aws_api_gateway_api_key",
            "key",
            json!({
                "name": stack.name,
                "description": "counterctl: the key clients send as x-api-key",
                "enabled": true,
                "tags": tags,
            }),
            existing.key_id.clone(),
        );
        config.add(
            "aws_api_gateway_usage_plan",
            "plan",
            json!({
                "name": stack.name,
                "description": "counterctl: throttles the API key",
                "api_stages": [{"api_id": "${aws_api_gateway_rest_api.api.id}", "stage": "${aws_api_gateway_stage.api.stage_name}"}],
                "throttle_settings": {"rate_limit": exported.throttle.rate, "burst_limit": exported.throttle.burst},
                "tags": tags,
            }),
            existing.usage_plan_id.clone(),
        );
        let member = match (&existing.usage_plan_id, &existing.key_id) {
            (Some(plan), Some(key)) if existing.usage_plan_key => Some(format!("{plan}/{key}")),
            _ => None,
        };
        config.add(
            "aws_api_gateway_usage_plan_key",
            "key",
            json!({
                "key_id": "${aws_api_gateway_api_key.key.id}",
                "key_type": "API_KEY",
                "usage_plan_id": "${aws_api_gateway_usage_plan.plan.id}",
            }),
            member,
        );
        outputs.insert(
            "api_key_id".into(),
            json!({"description": "aws apigateway get-api-key --include-value --api-key THIS", "value": "${aws_api_gateway_api_key.key.id}"}),
        );
    }
    outputs.insert(
        "invoke_url".into(),
        json!({"description": "The URL callers use", "value": "${aws_api_gateway_stage.api.invoke_url}"}),
    );
}

fn function_url(exported: &Exported, config: &mut Configuration, outputs: &mut Map<String, Value>) {
    let real = &exported.stack;
    let existing = &exported.existing;
    // .../lambda_function_url#import: FUNCTION/QUALIFIER.
    config.add(
        "aws_lambda_function_url",
        "url",
        json!({
            "function_name": "${aws_lambda_function.counter.function_name}",
            "qualifier": "${aws_lambda_alias.live.name}",
            "authorization_type": if exported.auth == Auth::None { "NONE" } else { "AWS_IAM" },
        }),
        existing.url.then(|| format!("{}/{ALIAS}", real.name)),
    );
    // A public URL needs both statements: since October 2025 Lambda also checks
    // lambda:InvokeFunction for calls through a function URL
    // (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html). They are declared
    // with counterctl's ids, which status reads; a URL the provider creates gets its own
    // two as well (provider 6.28.0's CHANGELOG), which grant the same.
    if exported.auth == Auth::None {
        let import = |sid: &str| existing.public_statements.then(|| format!("{}:{ALIAS}/{sid}", real.name));
        config.add(
            "aws_lambda_permission",
            "url_public",
            json!({
                "statement_id": PUBLIC_URL_SID,
                "action": "lambda:InvokeFunctionUrl",
                "function_name": "${aws_lambda_function.counter.function_name}",
                "qualifier": "${aws_lambda_alias.live.name}",
                "principal": "*",
                "function_url_auth_type": "NONE",
            }),
            import(PUBLIC_URL_SID),
        );
        config.add(
            "aws_lambda_permission",
            "url_invoke",
            json!({
                "statement_id": PUBLIC_INVOKE_SID,
                "action": "lambda:InvokeFunction",
                "function_name": "${aws_lambda_function.counter.function_name}",
                "qualifier": "${aws_lambda_alias.live.name}",
                "principal": "*",
                "invoked_via_function_url": true,
            }),
            import(PUBLIC_INVOKE_SID),
        );
    }
    outputs.insert(
        "invoke_url".into(),
        json!({"description": "The URL callers use", "value": "${aws_lambda_function_url.url.function_url}"}),
    );
}

fn alarms(exported: &Exported, stack: &Stack, config: &mut Configuration) {
    let existing = &exported.existing;
    let actions = match &exported.alarms {
        AlarmTarget::Off | AlarmTarget::Nobody => json!([]),
        AlarmTarget::Topic(arn) => json!([arn]),
        AlarmTarget::OwnTopic { email } => {
            // .../sns_topic#import: the topic's ARN; .../sns_topic_subscription#import:
            // the subscription's ARN (a subscription not yet confirmed has none).
            config.add(
                "aws_sns_topic",
                "alarms",
                json!({"name": crate::resources::topic::name(&stack.name), "tags": tags(stack)}),
                existing.topic_arn.clone(),
            );
            if let Some(email) = email {
                config.add(
                    "aws_sns_topic_subscription",
                    "email",
                    json!({"topic_arn": "${aws_sns_topic.alarms.arn}", "protocol": "email", "endpoint": email}),
                    existing.subscription_arn.clone(),
                );
            }
            json!(["${aws_sns_topic.alarms.arn}"])
        }
    };
    for (kind, spec) in exported.alarm_specs(stack) {
        let dimensions: Map<String, Value> =
            spec.dimensions.iter().map(|(name, value)| (name.clone(), json!(value))).collect();
        let mut alarm = json!({
            "alarm_name": spec.name,
            "namespace": spec.namespace,
            "metric_name": spec.metric,
            "dimensions": dimensions,
            "threshold": spec.threshold,
            "comparison_operator": spec.comparison,
            "period": spec.period,
            "evaluation_periods": spec.evaluation_periods,
            "treat_missing_data": spec.treat_missing_data,
            "alarm_actions": actions,
            "ok_actions": actions,
            "tags": tags(stack),
        });
        let statistic = if spec.extended() { "extended_statistic" } else { "statistic" };
        alarm[statistic] = json!(spec.statistic);
        // .../cloudwatch_metric_alarm#import: the alarm's name.
        let real_name = format!("{}-{kind}", exported.stack.name);
        let name = kind.replace('-', "_");
        let import = existing.alarms.contains(&real_name).then_some(real_name);
        config.add("aws_cloudwatch_metric_alarm", &name, alarm, import);
    }
}

/// The stack's tags, as install sets them ([`Stack::tags`]).
fn tags(stack: &Stack) -> Value {
    json!(stack.tags())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::exported;
    use crate::export::{Existing, ExistingApi};

    #[test]
    fn a_stack_not_deployed_has_no_import_block_and_its_table_cannot_be_destroyed() {
        let config = configuration(&exported());
        assert!(config.get("import").is_none());
        assert_eq!(config["resource"]["aws_dynamodb_table"]["counters"]["lifecycle"]["prevent_destroy"], true);
    }

    #[test]
    fn only_what_is_deployed_is_imported_and_a_deployment_only_with_its_whole_route() {
        let api = ExistingApi {
            id: "a1".into(),
            proxy_id: Some("p1".into()),
            method: true,
            integration: false,
            stage: true,
            // Not imported: its route is not all there, so Terraform deploys anew.
            deployment_id: Some("d1".into()),
            method_settings: false,
        };
        let existing = Existing { table: true, function: true, api: Some(api), ..Existing::default() };
        let config = configuration(&Exported { existing, ..exported() });
        let imports: Vec<(&str, &str)> = config["import"]
            .as_array()
            .unwrap()
            .iter()
            .map(|block| (block["to"].as_str().unwrap(), block["id"].as_str().unwrap()))
            .collect();
        assert_eq!(
            imports,
            [
                ("aws_dynamodb_table.counters", "IdsTable"),
                ("aws_lambda_function.counter", "Ids"),
                ("aws_api_gateway_rest_api.api", "a1"),
                ("aws_api_gateway_resource.proxy", "a1/p1"),
                ("aws_api_gateway_method.proxy", "a1/p1/ANY"),
                ("aws_api_gateway_stage.api", "a1/prod"),
            ]
        );
    }
}
