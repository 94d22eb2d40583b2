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

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub aws: AwsOptions,
    #[command(flatten)]
    pub stack: StackOptions,
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
    pub output: OutputOptions,
}

#[derive(Debug, Args)]
pub struct IncrementArgs {
    /// Counter name.
    pub counter: String,
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
    #[command(flatten)]
    pub output: OutputOptions,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub output: OutputOptions,
}
