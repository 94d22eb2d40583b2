//! `counterctl export`: the stack install would make with the options given (with none,
//! as it is deployed) as infrastructure as code, for a team that deploys through
//! CloudFormation or Terraform. Read → plan (the install plan, not applied) → the
//! stack's parts as data ([`Exported`]) → one renderer per format → files.
//!
//! The templates make the resources install makes, with the same names, tags, settings
//! and policy documents (built by the same functions, over symbolic names), so `status`,
//! `increment`, `counters` and `logs` keep finding the stack by its names and tags. What
//! they cannot carry: the statement ids of the function's permissions under
//! CloudFormation, which names its own, and the run tag install gives at create.

mod cloudformation;
mod terraform;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::aws::{Account, Clients};
use crate::cli::{ExportArgs, ExportFormat, OutputFormat};
use crate::deployed::{Deployed, Reach};
use crate::install::{Planning, read_and_plan};
use crate::plan::{Alarms, FrontPlan, Keys, Plan};
use crate::resources::alarms::{self, AlarmSpec};
use crate::resources::apigateway::Throttle;
use crate::resources::domain::WantedDomain;
use crate::resources::function::Code;
use crate::resources::stage::StageState;
use crate::resources::topic::Notify;
use crate::settings::{Auth, Front};
use crate::stack::{Stack, TABLE_VARIABLE};

/// The function's code, written beside the template.
pub(crate) const ZIP: &str = "function.zip";
/// The CloudFormation stack policy that keeps the table from being replaced.
const STACK_POLICY: &str = "stack-policy.json";

/// The stack's parts, as the templates need them: settings resolved as install resolves
/// them, and the ids of what is deployed (for import).
#[derive(Debug, Clone)]
pub(crate) struct Exported {
    /// The names install would use; the templates make them parameters (variables)
    /// whose defaults these are.
    pub(crate) stack: Stack,
    pub(crate) region: String,
    /// The function's code: the zip written beside the template, its `CodeSha256` and
    /// instruction set.
    pub(crate) code: Code,
    pub(crate) memory_mb: i32,
    pub(crate) timeout_seconds: i32,
    pub(crate) reserved_concurrency: Option<i32>,
    /// The function's environment besides [`TABLE_VARIABLE`], kept as deployed.
    pub(crate) variables: BTreeMap<String, String>,
    /// `None`: the log group keeps logs forever.
    pub(crate) log_retention_days: Option<i32>,
    pub(crate) front: Front,
    pub(crate) auth: Auth,
    pub(crate) throttle: Throttle,
    pub(crate) alarms: AlarmTarget,
    pub(crate) domain: Option<WantedDomain>,
    /// The REST front: the description of the API deployment its stage should serve,
    /// a fingerprint of the route (so a deployment of another route is not imported).
    pub(crate) deployment: Option<String>,
    pub(crate) existing: Existing,
}

/// The stack's alarms, and whom they reach.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AlarmTarget {
    Off,
    /// Alarms, sent to no topic.
    Nobody,
    /// Alarms sent to a topic given with `--alarm-topic`.
    Topic(String),
    /// Alarms sent to the stack's own topic, with this address subscribed.
    OwnTopic {
        email: Option<String>,
    },
}

impl AlarmTarget {
    pub(crate) fn on(&self) -> bool {
        *self != Self::Off
    }
}

/// The ids of what is deployed, read by install's read phase: what Terraform's import
/// blocks name. `None` (or `false`) where the resource is not there.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Existing {
    pub(crate) table: bool,
    pub(crate) role: bool,
    /// The role's inline policy for this region.
    pub(crate) policy: bool,
    pub(crate) log_group: bool,
    pub(crate) function: bool,
    pub(crate) alias: bool,
    /// API Gateway's permission on the alias.
    pub(crate) permission: bool,
    pub(crate) api: Option<ExistingApi>,
    pub(crate) key_id: Option<String>,
    pub(crate) usage_plan_id: Option<String>,
    /// The key is in the usage plan.
    pub(crate) usage_plan_key: bool,
    /// The function URL on the alias.
    pub(crate) url: bool,
    /// The public statements of a URL with `--auth none`.
    pub(crate) public_statements: bool,
    /// The stack's alarms that exist, by name.
    pub(crate) alarms: Vec<String>,
    pub(crate) topic_arn: Option<String>,
    /// The subscription of the address asked for, once confirmed (a pending one has no
    /// ARN to import by).
    pub(crate) subscription_arn: Option<String>,
    pub(crate) domain: bool,
    /// The domain's root mapping to the stack's API.
    pub(crate) mapping: bool,
    /// The domain's alias record in the zone named.
    pub(crate) record: bool,
}

/// The stack's REST API as deployed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExistingApi {
    pub(crate) id: String,
    /// The `{proxy+}` resource, with its method (and integration) when there.
    pub(crate) proxy_id: Option<String>,
    pub(crate) method: bool,
    pub(crate) integration: bool,
    /// The stage, with the deployment it serves.
    pub(crate) stage: bool,
    pub(crate) deployment_id: Option<String>,
    /// The stage's `*/*` method settings (its throttle).
    pub(crate) method_settings: bool,
}

/// Why a stack is not exported.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum ExportRefusal {
    #[error(
        "stack {stack} runs in several regions ({regions}): export writes the stack of one region\nhint: a strongly \
         consistent global table and its replicas are not exported yet; keep running install for this stack"
    )]
    SeveralRegions { stack: String, regions: String },
    #[error(
        "stack {stack}'s move to table {table} has not finished (its function is stopped, or its alias runs a \
         version on another table): a template of it would start the function on the table the alias's version \
         uses\nhint: run `counterctl install` to finish the move, then export"
    )]
    SwitchUnfinished { stack: String, table: String },
}

impl Exported {
    /// The plan's stack as data; pure.
    pub(crate) fn new(plan: &Plan, deployed: &Deployed) -> Result<Self, ExportRefusal> {
        if let Some(regions) = &plan.regions {
            return Err(ExportRefusal::SeveralRegions { stack: plan.stack.name.clone(), regions: regions.to_string() });
        }
        let wanted = &plan.wanted;
        let function = deployed.function.as_ref();
        // An interrupted `--switch-table` leaves the function stopped (reserved
        // concurrency 0) until the alias runs a version on the new table: a template
        // updates the function's concurrency before it moves the alias.
        let stopped = function.is_some_and(|function| function.reserved_concurrency == Some(0));
        let alias_table =
            function.and_then(|function| function.versions.aliased()).map(|version| version.snapshot.table.as_str());
        if stopped || alias_table.is_some_and(|table| table != plan.stack.table) {
            return Err(ExportRefusal::SwitchUnfinished {
                stack: plan.stack.name.clone(),
                table: plan.stack.table.clone(),
            });
        }
        let mut variables = function.map(|function| function.variables.clone()).unwrap_or_default();
        variables.remove(TABLE_VARIABLE);
        let alarms = match &wanted.alarms {
            Alarms::Off => AlarmTarget::Off,
            Alarms::On { notify: Notify::Nobody } => AlarmTarget::Nobody,
            Alarms::On { notify: Notify::Topic(arn) } => AlarmTarget::Topic(arn.clone()),
            Alarms::On { notify: Notify::Email(email) } => {
                let subscribed = deployed.topic.as_ref().and_then(|topic| topic.subscriptions.first());
                let email = email.clone().or_else(|| subscribed.map(|subscription| subscription.email.clone()));
                AlarmTarget::OwnTopic { email }
            }
        };
        Ok(Self {
            stack: plan.stack.clone(),
            region: plan.account.region.clone(),
            code: wanted.function.code.clone(),
            memory_mb: wanted.function.memory_mb,
            timeout_seconds: wanted.function.timeout_seconds,
            reserved_concurrency: wanted.function.max_concurrency,
            variables,
            log_retention_days: wanted.log_retention_days,
            front: plan.front(),
            auth: wanted.auth,
            throttle: wanted.throttle,
            existing: existing(plan, deployed, &alarms),
            alarms,
            domain: wanted.domain.clone(),
            deployment: match &plan.front {
                FrontPlan::Rest(rest) => Some(rest.deployment.clone()),
                FrontPlan::FunctionUrl(_) => None,
            },
        })
    }

    /// The stack's alarms, named and defined as install makes them, over `stack`'s
    /// (symbolic) names, each with its kind (`function-errors`); their actions are the
    /// renderer's to set.
    pub(crate) fn alarm_specs<'a>(&self, stack: &'a Stack) -> impl Iterator<Item = (String, AlarmSpec)> + 'a {
        let specs =
            if self.alarms.on() { alarms::wanted(stack, self.front, self.timeout_seconds, None) } else { Vec::new() };
        let prefix = format!("{}-", stack.name);
        specs.into_iter().map(move |spec| (spec.name.trim_start_matches(&prefix).to_owned(), spec))
    }
}

/// What of the stack exists, from the plan (which chose the API, key and usage plan the
/// stack uses) and the read.
fn existing(plan: &Plan, deployed: &Deployed, target: &AlarmTarget) -> Existing {
    let function = deployed.function.as_ref();
    let region_policy = Stack::region_policy_name(&plan.account.region);
    let mut existing = Existing {
        table: deployed.table.is_some(),
        role: deployed.role.is_some(),
        policy: deployed.role.as_ref().is_some_and(|role| role.inline.contains_key(&region_policy)),
        log_group: deployed.log_group.is_some(),
        function: function.is_some(),
        alias: function.is_some_and(|function| function.versions.alias.is_some()),
        // Install adopts an alarm of the stack's names, tagged or not: so does the import.
        alarms: deployed.alarms.iter().map(|alarm| alarm.spec.name.clone()).collect(),
        ..Existing::default()
    };
    match &plan.front {
        FrontPlan::Rest(rest) => {
            existing.permission = function.is_some_and(|function| function.permission.is_some());
            existing.api = rest.api.chosen.as_ref().map(|api| {
                let stage = api.detail.stage(&plan.stack.stage);
                ExistingApi {
                    id: api.id.clone(),
                    proxy_id: api.detail.proxy_id.clone(),
                    method: api.detail.method.is_some(),
                    integration: api.detail.method.as_ref().is_some_and(|method| method.integration_uri.is_some()),
                    stage: stage.is_some(),
                    deployment_id: deployment_of_route(stage, &rest.deployment),
                    method_settings: stage.is_some_and(|stage| stage.throttle.is_some()),
                }
            });
            if let Keys::Wanted { key, usage_plan } = &rest.keys {
                existing.key_id = key.key.as_ref().map(|key| key.id.clone());
                existing.usage_plan_id = usage_plan.usage_plan.as_ref().map(|plan| plan.id.clone());
                existing.usage_plan_key = match (&key.key, &usage_plan.usage_plan) {
                    (Some(key), Some(plan)) => plan.key_ids.contains(&key.id),
                    _ => false,
                };
            }
        }
        FrontPlan::FunctionUrl(url) => {
            existing.url = url.deployed.as_ref().is_some_and(|url| url.on_alias);
            existing.public_statements = function.is_some_and(|function| function.public_statements == 2);
        }
    }
    if let (AlarmTarget::OwnTopic { email }, Some(topic)) = (target, deployed.topic.as_ref().filter(|t| t.tagged)) {
        existing.topic_arn = Some(topic.arn.clone());
        existing.subscription_arn = topic
            .subscriptions
            .iter()
            .find(|subscription| email.as_deref().is_some_and(|email| subscription.of(email)))
            .and_then(|subscription| subscription.arn.clone());
    }
    if let Some(wanted) = &plan.wanted.domain
        && let Some(domain) = deployed.domains.iter().find(|domain| domain.tagged && domain.name == wanted.name)
    {
        existing.domain = true;
        let api = existing.api.as_ref().map(|api| api.id.as_str());
        existing.mapping =
            domain.mappings.iter().any(|mapping| mapping.is_root() && Some(mapping.api_id.as_str()) == api);
        existing.record = wanted.zone.is_some() && domain.zone == wanted.zone && domain.record.is_some();
    }
    existing
}

/// The id of the deployment `stage` serves if it deploys the route described so: one of
/// an earlier route (a deploy throttled or interrupted) is left for Terraform to replace.
fn deployment_of_route(stage: Option<&StageState>, description: &str) -> Option<String> {
    stage.filter(|stage| stage.deployment.as_deref() == Some(description)).and_then(|stage| stage.deployment_id.clone())
}

/// Names as templates write them: each a reference the template resolves (a parameter,
/// a variable), so one export serves any name.
pub(crate) struct Symbols {
    pub(crate) stack: Stack,
    pub(crate) account: Account,
}

/// What was written, for the report.
#[derive(Debug, Serialize)]
struct ExportReport {
    format: &'static str,
    files: Vec<PathBuf>,
    /// Import blocks written, for what is deployed (Terraform).
    imports: usize,
    next: String,
}

pub(crate) async fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let clients = Clients::connect(&args.aws.connection()).await?;
    let planning = Planning {
        switch_table: false,
        recreate_table: false,
        reach: Reach::Whole,
        regions: None,
        api_key_value: None,
        refuse_cloudformation: false,
    };
    let (deployed, plan) = read_and_plan(&clients, &args.stack, &args.deploy, planning).await?;
    let exported = Exported::new(&plan, &deployed)?;
    let (format, template_name, template, imports) = match args.format {
        ExportFormat::Cloudformation => ("cloudformation", "template.json", cloudformation::template(&exported), 0),
        ExportFormat::Terraform => {
            let configuration = terraform::configuration(&exported);
            let imports = configuration["import"].as_array().map_or(0, Vec::len);
            ("terraform", "main.tf.json", configuration, imports)
        }
    };
    let dir = &args.output_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("making the directory {}", dir.display()))?;
    let template_path = dir.join(template_name);
    let text = serde_json::to_string_pretty(&template).expect("a template is JSON") + "\n";
    write(&template_path, text.as_bytes())?;
    let zip_path = dir.join(ZIP);
    write(&zip_path, &exported.code.zip)?;
    let mut files = vec![template_path.clone(), zip_path];
    if args.format == ExportFormat::Cloudformation {
        let policy_path = dir.join(STACK_POLICY);
        let policy = serde_json::to_string_pretty(&cloudformation::stack_policy()).expect("a policy is JSON") + "\n";
        write(&policy_path, policy.as_bytes())?;
        files.push(policy_path);
    }
    let next = match args.format {
        ExportFormat::Cloudformation if exported.existing.function || exported.existing.table => format!(
            "the stack is deployed, and CloudFormation does not create resources over existing ones: see \
             docs/operations.md, \"Handing the stack over\", for the way over (the table kept, imported into the \
             CloudFormation stack) or export to Terraform, whose import blocks adopt the stack ({})",
            template_path.display()
        ),
        ExportFormat::Cloudformation => format!(
            "aws cloudformation package --template-file {} --s3-bucket BUCKET --output-template-file packaged.json, \
             then aws cloudformation create-stack --stack-name {} --template-body file://packaged.json --capabilities \
             CAPABILITY_NAMED_IAM --stack-policy-body file://{} (docs/operations.md, \"Handing the stack over\")",
            template_path.display(),
            plan.stack.name,
            dir.join(STACK_POLICY).display()
        ),
        ExportFormat::Terraform if imports > 0 => format!(
            "terraform -chdir={} init && terraform -chdir={} plan: it imports the {imports} deployed resources; \
             apply, then stop running install for this stack (docs/operations.md, \"Handing the stack over\")",
            dir.display(),
            dir.display()
        ),
        ExportFormat::Terraform => {
            format!("terraform -chdir={} init && terraform -chdir={} apply", dir.display(), dir.display())
        }
    };
    let report = ExportReport { format, files, imports, next };
    if args.output.output == OutputFormat::Json {
        crate::progress::out(serde_json::to_string_pretty(&report).expect("a report is JSON"))?;
    } else {
        let files: Vec<String> = report.files.iter().map(|file| file.display().to_string()).collect();
        crate::progress::out(format!("Wrote {}\nNext: {}", files.join(", "), report.next))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn only_the_deployment_of_the_route_wanted_is_imported() {
        let stage = |description: &str| StageState {
            name: "prod".into(),
            deployment: Some(description.into()),
            deployment_id: Some("d1".into()),
            throttle: None,
        };
        assert_eq!(deployment_of_route(Some(&stage("counterctl abc")), "counterctl abc").as_deref(), Some("d1"));
        assert_eq!(deployment_of_route(Some(&stage("counterctl old")), "counterctl abc"), None);
        assert_eq!(deployment_of_route(None, "counterctl abc"), None);
    }

    /// A stack as a fresh install makes it with the defaults.
    pub(crate) fn exported() -> Exported {
        Exported {
            stack: Stack { name: "Ids".into(), table: "IdsTable".into(), stage: "prod".into() },
            region: "us-east-1".into(),
            code: Code {
                zip: std::sync::Arc::new(Vec::new()),
                sha256: "c29tZSBoYXNo".into(),
                architecture: aws_sdk_lambda::types::Architecture::X8664,
            },
            memory_mb: 128,
            timeout_seconds: 15,
            reserved_concurrency: None,
            variables: BTreeMap::new(),
            log_retention_days: Some(30),
            front: Front::Rest,
            auth: Auth::ApiKey,
            throttle: Throttle { rate: 50.0, burst: 100 },
            alarms: AlarmTarget::Nobody,
            domain: None,
            deployment: Some("counterctl NONE key".into()),
            existing: Existing::default(),
        }
    }
}
