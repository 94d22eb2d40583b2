//! `counterctl install`: brings every resource to its wanted state, running the steps
//! that do not depend on each other concurrently:
//!
//! ```text
//!                ┌ table ──────────────────────────────────────────────────┐
//! first reads    ├ role ┬ policy           ┐                               │
//! (STS, table,   │      └ function         ├ permission ───────────────────┤ done
//! role, function,├ API → route, stage?     ├ integration → stage → usage plan
//! API)           └ API key, usage plan?    ┘
//! ```

use std::process::ExitCode;

use anyhow::Context;
use aws_config::SdkConfig;
use serde::Serialize;

use crate::aws::{self, Account};
use crate::cli::{Auth, DeployOptions, InstallArgs, OutputFormat, Settings};
use crate::progress::{Progress, StepReport, Wording};
use crate::resources::auth::Throttle;
use crate::resources::function::FunctionSpec;
use crate::resources::{Mode, api, auth, function, role, table};
use crate::stack::{PERMISSION_SID, PROXY_PATH, ROLE_POLICY_NAME, Stack};

/// One client per service, from one configuration.
pub struct Clients {
    pub config: SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub iam: aws_sdk_iam::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub apigateway: aws_sdk_apigateway::Client,
}

impl Clients {
    pub fn new(config: SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            iam: aws_sdk_iam::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
            apigateway: aws_sdk_apigateway::Client::new(&config),
            config,
        }
    }

    pub async fn connect(options: &crate::cli::AwsOptions) -> anyhow::Result<Self> {
        Ok(Self::new(aws::load_config(options).await?))
    }
}

/// What the deployment should be.
pub struct Wanted {
    pub function: FunctionSpec,
    pub auth: Auth,
    pub throttle: Throttle,
}

impl Wanted {
    /// The options given, the others from `fallback`.
    pub fn from_options(options: &DeployOptions, fallback: Settings) -> anyhow::Result<Self> {
        let settings = options.settings(fallback);
        Ok(Self {
            function: crate::bundle::function_spec(options.function_zip.as_deref(), &settings)?,
            auth: settings.auth,
            throttle: Throttle { rate: settings.rate_limit, burst: settings.burst_limit },
        })
    }
}

/// Where the converged deployment is.
pub struct Converged {
    pub account: Account,
    /// `None` when planning the API's creation.
    pub api_id: Option<String>,
    pub key_id: Option<String>,
}

/// Makes (or, in [`Mode::Plan`], compares) every resource; each step's outcome goes to
/// `progress`.
pub async fn converge(
    clients: &Clients,
    stack: &Stack,
    wanted: &Wanted,
    mode: Mode,
    progress: &Progress,
) -> anyhow::Result<Converged> {
    let key_required = wanted.auth == Auth::ApiKey;
    let (iam, lambda, apigateway) = (&clients.iam, &clients.lambda, &clients.apigateway);
    // Every first read at once. The credentials and the table's layout are checked
    // here, before anything is created.
    let (account, existing_table, current_role, existing_function, existing_api) = tokio::try_join!(
        async { Account::of_caller(&clients.config).await.context("checking the credentials") },
        async {
            let existing = table::describe(&clients.dynamodb, &stack.table).await.context("table")?;
            if let Some(description) = &existing {
                table::check_key_schema(&stack.table, description).context("table")?;
            }
            anyhow::Ok(existing)
        },
        async { role::read(iam, stack).await.context("role") },
        async { function::get(lambda, stack).await.context("function") },
        async { api::find(apigateway, stack).await.context("API") },
    )?;

    let table = async {
        let ensure = table::ensure(&clients.dynamodb, stack, existing_table, mode);
        progress.step("table", &stack.table, ensure).await.context("table")
    };
    let role_and_function = async {
        let role = role::ensure(iam, stack, &account, &current_role, mode);
        let role_arn = progress.step("role", &stack.name, role).await.context("role")?;
        let policy = async {
            let policy = role::ensure_policy(iam, stack, &account, &current_role, mode);
            progress.step("policy", ROLE_POLICY_NAME, policy).await.context("role policy")
        };
        let function = async {
            let function = function::ensure(lambda, stack, existing_function, &role_arn, &wanted.function, mode);
            progress.step("function", &stack.name, function).await.context("function")
        };
        tokio::try_join!(policy, function).map(|_| ())
    };
    let api_and_route = async {
        let api_id = progress
            .step("api", &stack.name, api::ensure(apigateway, stack, existing_api, mode))
            .await
            .context("API")?;
        let route = async {
            let (route, outcome) = api::ensure_route(apigateway, api_id.as_deref(), key_required, mode).await?;
            Ok::<_, crate::resources::Error>(((route, outcome.changed()), outcome))
        };
        let (route, stage_exists) =
            tokio::try_join!(async { progress.step("route", PROXY_PATH, route).await.context("API route") }, async {
                api::stage_exists(apigateway, stack, api_id.as_deref()).await.context("stage")
            },)?;
        anyhow::Ok((api_id, route, stage_exists))
    };
    let key_and_plan = async {
        if !key_required {
            let removed = auth::remove(apigateway, stack, mode);
            progress.step("api key", "none (--auth none)", removed).await.context("removing the API key")?;
            return Ok((None, None));
        }
        let key = async {
            progress.step("api key", &stack.name, auth::ensure_key(apigateway, stack, mode)).await.context("API key")
        };
        let plan = async { auth::find_usage_plan(apigateway, stack).await.context("usage plan") };
        tokio::try_join!(key, plan)
    };
    // Everything up to a callable API; the table is needed only once requests come.
    let front = async {
        let ((), (api_id, (route, route_changed), stage_exists), (key_id, plan)) =
            tokio::try_join!(role_and_function, api_and_route, key_and_plan)?;
        let permission = async {
            let permission = function::ensure_permission(lambda, stack, &account, api_id.as_deref(), mode);
            progress.step("permission", PERMISSION_SID, permission).await.context("Lambda permission")
        };
        let deployment = async {
            let integration = async {
                let ((), outcome) =
                    api::ensure_integration(apigateway, stack, &account, api_id.as_deref(), &route, mode).await?;
                Ok::<_, crate::resources::Error>((outcome.changed(), outcome))
            };
            let integration_changed =
                progress.step("integration", &stack.name, integration).await.context("integration")?;
            let changed = route_changed || integration_changed;
            let stage = api::ensure_stage(apigateway, stack, api_id.as_deref(), stage_exists, changed, mode);
            progress.step("stage", &stack.stage, stage).await.context("stage")?;
            if key_required {
                let ids = (api_id.as_deref(), key_id.as_deref());
                let plan = auth::ensure_usage_plan(apigateway, stack, plan, ids, wanted.throttle, mode);
                progress.step("usage plan", &stack.name, plan).await.context("usage plan")?;
            }
            anyhow::Ok(())
        };
        tokio::try_join!(permission, deployment)?;
        anyhow::Ok((api_id, key_id))
    };
    let ((), (api_id, key_id)) = tokio::try_join!(table, front)?;
    Ok(Converged { account, api_id, key_id })
}

#[derive(Serialize)]
struct InstallResult {
    dry_run: bool,
    up_to_date: bool,
    steps: Vec<StepReport>,
    url: Option<String>,
    auth: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
    curl: Option<String>,
}

pub async fn run(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let wanted = Wanted::from_options(&args.deploy, Settings::DEFAULT)?;
    let stack = Stack::from_options(&args.stack);
    let clients = Clients::connect(&args.aws).await?;
    let json = args.output.output == OutputFormat::Json;
    let mode = if args.dry_run { Mode::Plan } else { Mode::Apply };
    let progress = Progress::new(if args.dry_run { Wording::Plan } else { Wording::Done }, json);
    if wanted.auth == Auth::None {
        eprintln!("warning: --auth none: anyone who finds the URL can call it and burn IDs");
    }
    let converged = converge(&clients, &stack, &wanted, mode, &progress).await?;

    let steps = progress.reports();
    let up_to_date = steps.iter().all(|step| !step.outcome.changed());
    let url = converged.api_id.as_deref().map(|id| stack.invoke_url(&converged.account.region, id));
    let api_key = match (&converged.key_id, args.show_api_key, mode) {
        (Some(key_id), true, Mode::Apply) => {
            auth::key_value(&clients.apigateway, key_id).await.context("reading the API key")?
        }
        _ => None,
    };
    let curl = url.as_deref().map(|url| curl_command(url, wanted.auth, api_key.as_deref()));
    let auth = match wanted.auth {
        Auth::ApiKey => "api-key",
        Auth::None => "none",
    };
    if json {
        let result = InstallResult { dry_run: args.dry_run, up_to_date, steps, url, auth, api_key, curl };
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(ExitCode::SUCCESS);
    }
    if args.dry_run {
        let planned = steps.iter().filter(|step| step.outcome.changed()).count();
        match planned {
            0 => println!("Dry run: everything is up to date."),
            _ => println!("Dry run: {planned} resource(s) to create or update; nothing was changed."),
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", if up_to_date { "Everything is up to date." } else { "Installed." });
    if let (Some(url), Some(curl)) = (url, curl) {
        println!("\nInvoke URL: {url}\nTry it:\n  {curl}");
        if wanted.auth == Auth::ApiKey && api_key.is_none() {
            println!(
                "The API key is not shown; print it with `counterctl status --show-api-key` (or `install --show-api-key`),\n\
                 or let `counterctl increment NAME` fetch it."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A ready-to-paste increment call.
fn curl_command(url: &str, auth: Auth, api_key: Option<&str>) -> String {
    let header = match (auth, api_key) {
        (Auth::ApiKey, Some(key)) => format!(" -H 'x-api-key: {key}'"),
        (Auth::ApiKey, None) => " -H \"x-api-key: $COUNTERCTL_API_KEY\"".to_owned(),
        (Auth::None, _) => String::new(),
    };
    format!("curl -X POST{header} '{url}/counter/increment?counter=mycounter'")
}
