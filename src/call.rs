//! `counterctl increment` and `get`: calls to a deployed counter API (or to
//! `counterctl serve`), with the URL and API key found from the stack when not given.

use std::process::ExitCode;

use anyhow::Context;
use counter_function::api::{ApiError, CurrentValue, Incremented};
use counterctl_client::{Auth, Client, Endpoint, Error as CallError, Signer, SigningService};

use crate::aws::{Clients, Connection};
use crate::cli::{AwsOptions, EndpointOptions, GetArgs, IncrementArgs, OutputFormat, StackOptions};
use crate::progress::out;
use crate::resources::api::{self, choose_api};
use crate::resources::api_key::{self, choose_key};
use crate::resources::routes::AWS_IAM;
use crate::resources::stage::deployed_stage;
use crate::resources::usage_plan::{self, choose_usage_plan};

#[derive(Debug, thiserror::Error)]
#[error(
    "no API named {name} in {region}\n\
     hint: run `counterctl install` (with the same --name and --region), or pass --url / COUNTERCTL_URL"
)]
struct NoApi {
    name: String,
    region: String,
}

/// What `endpoint` was doing, for its error: a URL given is not looked for.
fn reaching(options: &EndpointOptions) -> String {
    match &options.url {
        Some(url) => format!("preparing the call to {url}"),
        None => "finding the counter API".to_owned(),
    }
}

/// How long finding one other region's front may take before the call goes without it.
const DISCOVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The key `increment` and `get` send when `--api-key` is not given.
const API_KEY_VARIABLE: &str = "COUNTERCTL_API_KEY";

/// The endpoint from the options, else the stack's invoke URL and key from AWS: in each of
/// its regions, `--region`'s first, for a stack on a global table.
pub async fn endpoints(
    options: &EndpointOptions,
    aws: &AwsOptions,
    stack: &StackOptions,
) -> anyhow::Result<Vec<Endpoint>> {
    use crate::settings::Auth as AuthOption;
    // The variable is read here, not by clap: an --auth that sends no key outranks it.
    let api_key =
        options.api_key.clone().or_else(|| std::env::var(API_KEY_VARIABLE).ok().filter(|key| !key.is_empty()));
    if let Some(url) = &options.url {
        let auth = match (options.auth, options.api_key.is_some(), api_key) {
            (Some(auth @ (AuthOption::None | AuthOption::Iam)), true, _) => anyhow::bail!(
                "--auth {} sends no API key, and --api-key gives one\nhint: leave out --api-key, or --auth",
                auth.name()
            ),
            (Some(AuthOption::Iam), false, _) => Auth::Iam(signer_for(url, &aws.connection()).await?),
            (Some(AuthOption::None), false, _) | (None, _, None) => Auth::None,
            (Some(AuthOption::ApiKey) | None, _, Some(key)) => Auth::ApiKey(key),
            (Some(AuthOption::ApiKey), _, None) => {
                anyhow::bail!("--auth api-key needs the key\nhint: pass --api-key or set {API_KEY_VARIABLE}")
            }
        };
        return Ok(vec![Endpoint::new(url, auth)?]);
    }
    let local = "for `counterctl serve`, pass --url http://127.0.0.1:8080 (or set COUNTERCTL_URL)";
    let clients = Clients::connect_or_local(&aws.connection(), local).await?;
    let asked = discover(&clients, stack).await;
    // The other regions are what a call falls back to: one whose front cannot be found
    // (its region down, or its part uninstalled) is left out, and `--region`'s, when it
    // cannot be found, gives way to them.
    let mut endpoints = Vec::new();
    for region in other_regions(&clients, stack).await {
        let found = tokio::time::timeout(DISCOVERY, discover(&clients.in_region(&region), stack)).await;
        match found.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {} s", DISCOVERY.as_secs()))) {
            Ok(endpoint) => endpoints.push(endpoint),
            Err(error) => eprintln!("warning: calling without the stack's front in {region}: {error:#}"),
        }
    }
    match asked {
        Ok(endpoint) => endpoints.insert(0, endpoint),
        Err(error) if endpoints.is_empty() => return Err(error),
        Err(error) => eprintln!("warning: calling the stack's other regions: {error:#}"),
    }
    match &api_key {
        Some(key) => {
            endpoints.iter().map(|endpoint| Ok(Endpoint::new(endpoint.url(), Auth::ApiKey(key.clone()))?)).collect()
        }
        None => Ok(endpoints),
    }
}

/// The stack's other regions, when its table is a strongly consistent global table (the
/// function's table's replicas). The fallbacks are a bonus: a caller that may not read
/// the function or the table calls `--region`'s front alone.
async fn other_regions(clients: &Clients, stack: &StackOptions) -> Vec<String> {
    let Ok(Some(table)) = crate::resources::function::read_table(&clients.lambda, &stack.name, None).await else {
        return Vec::new();
    };
    match crate::resources::table::strong_global(&clients.dynamodb, &table).await {
        Ok(Some(global)) => global.replicas[1..].to_vec(),
        _ => Vec::new(),
    }
}

/// SigV4 for a URL given by hand: `lambda` for a Function URL, else `execute-api`; the
/// region from the host (`ID.execute-api.REGION.amazonaws.com`,
/// `ID.lambda-url.REGION.on.aws`), else from the AWS options. `serve --upstream` signs so.
pub(crate) async fn signer_for(url: &str, aws: &Connection) -> anyhow::Result<Signer> {
    let (service, host_region) = SigningService::for_url(url);
    let mut aws = aws.clone();
    if host_region.is_some() {
        aws.region = host_region;
    }
    let config = match crate::aws::load_config(&aws).await {
        Err(crate::aws::SetupError::NoRegion) => anyhow::bail!(
            "signing for {url} needs an AWS region, and its host names none (it is not an execute-api or \
             lambda-url host)\n\
             hint: pass --region with the region of the API behind it, or set AWS_REGION"
        ),
        config => config?,
    };
    Ok(Signer::from_config(&config, service)?)
}

/// The stack's invoke URL (the stage asked for, else the one counterctl deployed), and
/// how its method lets callers in: its API key, or a SigV4 signature.
pub async fn discover(clients: &Clients, stack: &StackOptions) -> anyhow::Result<Endpoint> {
    let client = &clients.apigateway;
    let region = client.config().region().map(ToString::to_string).unwrap_or_default();
    // A caller that may not read the function's URL config uses the REST front.
    let url = match crate::resources::function_url::read(&clients.lambda, &stack.name).await {
        Err(error) if error.code.as_deref().is_some_and(|code| code.starts_with("AccessDenied")) => None,
        url => url.context("looking for the function's URL")?,
    };
    if let Some(url) = url {
        let auth = match url.auth_type.as_str() {
            AWS_IAM => Auth::Iam(Signer::from_config(&clients.config, SigningService::Lambda)?),
            _ => Auth::None,
        };
        return Ok(Endpoint::new(&url.url, auth)?);
    }
    let (apis, usage_plans) =
        tokio::try_join!(async { api::list(client, &stack.name).await.context("looking for the API") }, async {
            usage_plan::read(client, &stack.name).await.context("looking for the usage plan")
        },)?;
    let Some(chosen) = choose_api(&apis, &usage_plans) else {
        return Err(NoApi { name: stack.name.clone(), region }.into());
    };
    let detail = api::detail(client, &chosen.id).await.context("reading the API's routes")?;
    let stage = stack.stage.clone().unwrap_or_else(|| deployed_stage(&detail.stages));
    let auth = match detail.method {
        Some(method) if method.authorization == AWS_IAM => {
            Auth::Iam(Signer::from_config(&clients.config, SigningService::ExecuteApi)?)
        }
        Some(method) if method.key_required => {
            let keys = api_key::read(client, &stack.name).await.context("looking for the API key")?;
            let usage_plan = choose_usage_plan(&usage_plans, Some(&chosen.id));
            let key = match choose_key(&keys, usage_plan.map_or(&[], |plan| &plan.key_ids)) {
                Some(key) => api_key::key_value(client, &key.id).await.context("reading the API key")?,
                None => None,
            };
            key.map_or(Auth::None, Auth::ApiKey)
        }
        _ => Auth::None,
    };
    Ok(Endpoint::new(&crate::stack::invoke_url(&region, &chosen.id, &stage), auth)?)
}

/// The client's error, with what a CLI user calling `endpoint` can do about it.
fn explained(error: CallError, client: &Client) -> anyhow::Error {
    let endpoint = client.endpoint();
    let (url, key_sent) = (endpoint.url(), matches!(endpoint.auth(), Auth::ApiKey(_)));
    match error {
        // Every region of a stack on a global table was tried, the last one failing so.
        CallError::Unreachable { .. } if client.endpoints().count() > 1 => {
            let urls: Vec<&str> = client.endpoints().map(Endpoint::url).collect();
            anyhow::anyhow!(
                "{error}\nhint: no region of the stack answered ({}); `counterctl status` shows what is deployed in each",
                urls.join(", ")
            )
        }
        CallError::Unreachable { .. } => {
            anyhow::anyhow!("{error}\nhint: check --url / COUNTERCTL_URL (for `counterctl serve`, is it running?)")
        }
        CallError::Forbidden { .. } if key_sent => anyhow::anyhow!(
            "{error}\n\
             hint: the API key sent (--api-key or {API_KEY_VARIABLE}) was refused: check it \
             (for a stack, `counterctl status --show-api-key` prints its key; for `counterctl serve`, the key it was started with)"
        ),
        CallError::Forbidden { .. } if !on_aws(url) => anyhow::anyhow!(
            "{error}\n\
             hint: this API needs its key: pass --api-key or set {API_KEY_VARIABLE} \
             (for `counterctl serve`, the key it was started with; for a stack, \
             `counterctl status --show-api-key` prints it)"
        ),
        CallError::Forbidden { status, message } => anyhow::anyhow!(
            "API Gateway answered {status}: {message}\n\
             hint: this API needs its key: pass --api-key or set {API_KEY_VARIABLE} \
             (`counterctl status --show-api-key` prints it), or omit --url to have it fetched; \
             a stack with --auth iam (or a function URL) takes a signature instead: pass --auth iam"
        ),
        CallError::SignatureRefused { .. } if !on_aws(url) => anyhow::anyhow!(
            "{error}\n\
             hint: a server of your own such as `counterctl serve` takes an API key, not a SigV4 signature: \
             leave out --auth iam and pass --api-key"
        ),
        CallError::SignatureRefused { status, message, access_key, action } => anyhow::anyhow!(
            "{status} for a signed call: {message}\n\
             hint: the caller's IAM identity ({access_key}) may lack {action} on this API \
             (`counterctl status --caller-policy` prints the policy it needs), or its credentials are wrong or expired"
        ),
        error => error.into(),
    }
}

/// Whether `url` is an AWS front's (API Gateway's or a function URL's, as its host says),
/// not a server of one's own such as `counterctl serve`.
fn on_aws(url: &str) -> bool {
    SigningService::for_url(url).1.is_some()
}

/// `increment`'s report: the API's answer as JSON; as text the value, or FIRST-LAST.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct IncrementReport(Incremented<'static>);

impl std::fmt::Display for IncrementReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.first_value {
            Some(first) => write!(f, "{first}-{}", self.0.new_value),
            None => write!(f, "{}", self.0.new_value),
        }
    }
}

/// `get`'s report: the API's answer as JSON; as text the value.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct GetReport(CurrentValue<'static>);

impl std::fmt::Display for GetReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.value)
    }
}

/// Prints a report once: JSON on one line, as the API answers, or its text.
fn print(report: &(impl serde::Serialize + std::fmt::Display), output: OutputFormat) -> anyhow::Result<ExitCode> {
    match output {
        OutputFormat::Json => out(serde_json::to_string(report)?)?,
        OutputFormat::Text => out(report)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A client of the stack's endpoints, the first preferred and the others its fallbacks.
async fn client(options: &EndpointOptions, aws: &AwsOptions, stack: &StackOptions) -> anyhow::Result<Client> {
    let mut endpoints = endpoints(options, aws, stack).await.with_context(|| reaching(options))?.into_iter();
    let preferred = endpoints.next().expect("one endpoint at least");
    Ok(Client::with_fallbacks(preferred, endpoints.collect()))
}

pub async fn increment(args: IncrementArgs) -> anyhow::Result<ExitCode> {
    let client = client(&args.endpoint, &args.aws, &args.stack).await?;
    let key = args.idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let answer = client.increment(&args.counter, args.count, &key).await;
    let answer = answer.map_err(|error| explained(error, &client))?;
    print(&IncrementReport(answer), args.output.output)
}

pub async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let client = client(&args.endpoint, &args.aws, &args.stack).await?;
    let answer = match client.value(&args.counter).await {
        Ok(answer) => answer,
        // A negative answer, not an error: exit 1, as grep does for no match.
        Err(CallError::Service { status: 404, code, description, .. })
            if code == ApiError::CounterNotFound(String::new()).code() =>
        {
            eprintln!("counterctl: no counter {:?} yet ({code}: {description})", args.counter);
            return Ok(ExitCode::FAILURE);
        }
        Err(error) => return Err(explained(error, &client)),
    };
    print(&GetReport(answer), args.output.output)
}
