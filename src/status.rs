//! `counterctl status`: install's plan, read-only, worded as present / missing /
//! differs; exits non-zero when anything is missing or differs. Tunable settings not
//! given as options are compared as deployed, so a stack installed with `--memory 512`
//! is not reported as differing.

use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use aws_sdk_lambda::operation::get_function::GetFunctionOutput;

use crate::cli::{Architecture, Auth, OutputFormat, Settings, StatusArgs};
use crate::install::{Clients, Wanted, converge};
use crate::progress::{Progress, StepReport, Wording};
use crate::resources::{Mode, api, auth, function};
use crate::stack::Stack;

#[derive(Serialize)]
struct StatusResult {
    healthy: bool,
    resources: Vec<StepReport>,
    url: Option<String>,
    /// The deployed function's CodeSha256, and the one install would deploy.
    deployed_code_sha256: Option<String>,
    bundled_code_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
}

/// The deployed function, and the deployment's settings as deployed (defaults for what
/// is missing): status compares against these unless options say otherwise.
async fn deployed_settings(clients: &Clients, stack: &Stack) -> anyhow::Result<(Option<GetFunctionOutput>, Settings)> {
    let (function, key_required, plan) = tokio::try_join!(
        async { function::get(&clients.lambda, stack).await.context("reading the function") },
        async {
            let Some(api_id) =
                api::find(&clients.apigateway, stack).await.context("looking for the API")?.and_then(|api| api.id)
            else {
                return Ok(None);
            };
            api::requires_key(&clients.apigateway, &api_id).await.context("reading the API's routes")
        },
        async { auth::find_usage_plan(&clients.apigateway, stack).await.context("reading the usage plan") },
    )?;
    let mut settings = Settings::DEFAULT;
    if let Some(config) = function.as_ref().and_then(|function| function.configuration()) {
        settings.memory = config.memory_size().unwrap_or(settings.memory);
        settings.timeout = config.timeout().unwrap_or(settings.timeout);
        if config.architectures().contains(&aws_sdk_lambda::types::Architecture::Arm64) {
            settings.architecture = Architecture::Arm64;
        }
    }
    if key_required == Some(false) {
        settings.auth = Auth::None;
    }
    if let Some(throttle) = plan.as_ref().and_then(|plan| plan.throttle()) {
        settings.rate_limit = throttle.rate_limit();
        settings.burst_limit = throttle.burst_limit();
    }
    Ok((function, settings))
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let stack = Stack::from_options(&args.stack);
    let clients = Clients::connect(&args.aws).await?;
    let (deployed, settings) = deployed_settings(&clients, &stack).await?;
    let wanted = Wanted::from_options(&args.deploy, settings)?;
    let json = args.output.output == OutputFormat::Json;
    let progress = Progress::new(Wording::Status, json);
    let converged = converge(&clients, &stack, &wanted, Mode::Plan, &progress).await?;
    let resources = progress.reports();
    let healthy = resources.iter().all(|step| !step.outcome.changed());

    let deployed_code_sha256 = deployed.and_then(|function| function.configuration?.code_sha256);
    let bundled_code_sha256 = wanted.function.code_sha256();
    let url = converged.api_id.as_deref().map(|id| stack.invoke_url(&converged.account.region, id));
    let api_key = match (&converged.key_id, args.show_api_key) {
        (Some(key_id), true) if wanted.auth == Auth::ApiKey => {
            auth::key_value(&clients.apigateway, key_id).await.context("reading the API key")?
        }
        _ => None,
    };
    if json {
        let result = StatusResult { healthy, resources, url, deployed_code_sha256, bundled_code_sha256, api_key };
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        let deployed = deployed_code_sha256.as_deref().unwrap_or("none");
        let comparison = if deployed == bundled_code_sha256 {
            "same as bundled".to_owned()
        } else {
            format!("bundled is {bundled_code_sha256}")
        };
        println!("code        deployed {deployed} ({comparison})");
        match url {
            Some(url) => println!("url         {url}"),
            None => println!("url         none (no API)"),
        }
        if let Some(key) = api_key {
            println!("api key     {key}");
        }
        println!(
            "{}",
            if healthy {
                "Everything is installed as configured."
            } else {
                "Run `counterctl install` to fix what is missing or differs."
            }
        );
    }
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
