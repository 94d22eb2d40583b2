//! Command-line arguments. AWS options are one flattened struct shared by every
//! subcommand that talks to AWS, as in cargo-lambda.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "counterctl", version, about = "Sequential unique IDs as an HTTP service on your own AWS account")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update the table, role, function and API; print the invoke URL.
    Install(InstallArgs),
    /// Show each resource: present, missing or different.
    Status(StatusArgs),
    /// Increment a counter through the deployed API and print the new value.
    Increment(IncrementArgs),
    /// Print a counter's current value.
    Get(GetArgs),
    /// Delete what install created; the table and its counters are kept.
    Uninstall(UninstallArgs),
    /// Serve the same counter API on this machine, on an embedded durable store.
    Serve(ServeArgs),
}

/// Where and as whom to talk to AWS.
#[derive(Debug, Clone, Args)]
pub struct AwsOptions {
    /// AWS region (else from the profile or AWS_REGION).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Named profile from ~/.aws/config.
    #[arg(long, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// Send every AWS call to this endpoint (moto, LocalStack).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
}

/// Which deployment: resource names.
#[derive(Debug, Clone, Args)]
pub struct StackOptions {
    /// Name of the function, role and API.
    #[arg(long, env = "COUNTERCTL_NAME", default_value = "AtomicCounter")]
    pub name: String,
    /// DynamoDB table holding the counters.
    #[arg(long, env = "COUNTERCTL_TABLE", default_value = "AtomicCounters")]
    pub table: String,
    /// API Gateway stage.
    #[arg(long, env = "COUNTERCTL_STAGE", default_value = "prod")]
    pub stage: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct OutputOptions {
    /// Output format.
    #[arg(long, env = "COUNTERCTL_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Who may call the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Auth {
    /// Clients send an API key (x-api-key); a usage plan throttles it.
    ApiKey,
    /// Anyone who knows the URL can call it (the original service's setup).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Architecture {
    #[value(name = "x86_64")]
    X86_64,
    Arm64,
}

/// What to deploy, and how. An option not given means: install, the default in
/// [`Settings::DEFAULT`]; status, what is deployed.
#[derive(Debug, Clone, Args)]
pub struct DeployOptions {
    /// Who may call the API [default: api-key].
    #[arg(long, env = "COUNTERCTL_AUTH", value_enum)]
    pub auth: Option<Auth>,
    /// Usage plan steady rate, requests per second, with --auth api-key [default: 50].
    #[arg(long, value_parser = positive_rate)]
    pub rate_limit: Option<f64>,
    /// Usage plan burst, requests, with --auth api-key [default: 100].
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub burst_limit: Option<i32>,
    /// Deploy this zip (with a `bootstrap` inside) instead of the bundled one.
    #[arg(long, value_name = "PATH")]
    pub function_zip: Option<std::path::PathBuf>,
    /// The zip's instruction set [default: x86_64].
    #[arg(long, value_enum)]
    pub architecture: Option<Architecture>,
    /// Function memory in MB; CPU scales with it [default: 128].
    #[arg(long, value_parser = clap::value_parser!(i32).range(128..=10240))]
    pub memory: Option<i32>,
    /// Function timeout in seconds, at least 15: a request may wait 8 s for another with
    /// the same Idempotency-Key, then make a 5 s DynamoDB attempt [default: 15].
    #[arg(long, value_parser = clap::value_parser!(i32).range(15..=900))]
    pub timeout: Option<i32>,
}

/// The deployment's tunable settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub auth: Auth,
    pub architecture: Architecture,
    pub memory: i32,
    pub timeout: i32,
    pub rate_limit: f64,
    pub burst_limit: i32,
}

impl Settings {
    /// Secure by default. 128 MB, the smallest size: the function waits on DynamoDB, not
    /// on its CPU, and needs a few MB. 15 s: the longest request (8 s idempotency wait
    /// plus a 5 s DynamoDB attempt) with margin, under API Gateway's 29 s. 50 requests/s
    /// with bursts of 100 per key: far above one client's needs, while a leaked key can
    /// burn at most about 4.3 million IDs a day.
    pub const DEFAULT: Self = Self {
        auth: Auth::ApiKey,
        architecture: Architecture::X86_64,
        memory: 128,
        timeout: 15,
        rate_limit: 50.0,
        burst_limit: 100,
    };
}

impl DeployOptions {
    /// The options given, the others from `fallback`.
    pub fn settings(&self, fallback: Settings) -> Settings {
        Settings {
            auth: self.auth.unwrap_or(fallback.auth),
            architecture: self.architecture.unwrap_or(fallback.architecture),
            memory: self.memory.unwrap_or(fallback.memory),
            timeout: self.timeout.unwrap_or(fallback.timeout),
            rate_limit: self.rate_limit.unwrap_or(fallback.rate_limit),
            burst_limit: self.burst_limit.unwrap_or(fallback.burst_limit),
        }
    }
}

fn positive_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("{value:?} is not a positive number of requests per second")),
    }
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub aws: AwsOptions,
    #[command(flatten)]
    pub stack: StackOptions,
    #[command(flatten)]
    pub deploy: DeployOptions,
    /// Print the plan (create / update / unchanged per resource); make read calls only.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the API key's secret value (hidden otherwise).
    #[arg(long)]
    pub show_api_key: bool,
    #[command(flatten)]
    pub output: OutputOptions,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub aws: AwsOptions,
    #[command(flatten)]
    pub stack: StackOptions,
    #[command(flatten)]
    pub deploy: DeployOptions,
    /// Print the API key's secret value (hidden otherwise).
    #[arg(long)]
    pub show_api_key: bool,
    #[command(flatten)]
    pub output: OutputOptions,
}

/// Where the counter API is: given, or discovered from the stack.
#[derive(Debug, Clone, Args)]
pub struct EndpointOptions {
    /// Base URL of the counter API, e.g. https://ID.execute-api.REGION.amazonaws.com/prod
    /// or http://127.0.0.1:8080 [default: the stack's invoke URL, found in AWS].
    #[arg(long, env = "COUNTERCTL_URL")]
    pub url: Option<String>,
    /// API key to send as x-api-key [default: the stack's key, fetched from API Gateway
    /// when the stack uses keys].
    #[arg(long, env = "COUNTERCTL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct IncrementArgs {
    /// Counter name.
    pub counter: String,
    /// Reserve this many consecutive values at once; prints FIRST-LAST.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: Option<u32>,
    /// Makes retries safe: the same key always answers the same value [default: a new
    /// random key, reused by this command's own retries].
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub endpoint: EndpointOptions,
    #[command(flatten)]
    pub aws: AwsOptions,
    #[command(flatten)]
    pub stack: StackOptions,
    #[command(flatten)]
    pub output: OutputOptions,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Counter name.
    pub counter: String,
    #[command(flatten)]
    pub endpoint: EndpointOptions,
    #[command(flatten)]
    pub aws: AwsOptions,
    #[command(flatten)]
    pub stack: StackOptions,
    #[command(flatten)]
    pub output: OutputOptions,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub aws: AwsOptions,
    #[command(flatten)]
    pub stack: StackOptions,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Also delete the table and every counter in it. IDs issued again from a new table
    /// would repeat ones already handed out.
    #[arg(long)]
    pub delete_data: bool,
    #[command(flatten)]
    pub output: OutputOptions,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on; port 0 picks a free one.
    #[arg(long, env = "COUNTERCTL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Directory of the counter database [default: counterctl under the user's data
    /// directory, e.g. ~/.local/share/counterctl].
    #[arg(long, env = "COUNTERCTL_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub output: OutputOptions,
}
