//! Command-line arguments. AWS options are one flattened struct shared by every
//! subcommand that talks to AWS, as in cargo-lambda. This module only parses: the values
//! are the domain's (`settings.rs`), the options convert into what the lower layers take
//! (`settings::Options`, `aws::Connection`), and back into the words of a command
//! counterctl suggests.

use clap::builder::PossibleValue;
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::aws::Connection;
use crate::settings::{Architecture, Auth, DomainOption, Front, MaxConcurrency, Options, Switch};

/// The stack's name when `--name` is not given.
const DEFAULT_NAME: &str = "AtomicCounter";

#[derive(Debug, Parser)]
#[command(name = "counterctl", version, about = "Sequential unique IDs as an HTTP service on your own AWS account")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command line, parsed; `--version` also names the function code bundled, hashed
    /// only then (not at every start).
    pub fn parse_args() -> Self {
        let matches = match Self::command().try_get_matches() {
            Ok(matches) => matches,
            Err(error) if error.kind() == ErrorKind::DisplayVersion => {
                let version =
                    format!("counterctl {} (function: {})", env!("CARGO_PKG_VERSION"), crate::bundle::bundled_code());
                // A closed pipe ends it quietly, as every command's output does.
                let _ = crate::progress::out(version);
                std::process::exit(0);
            }
            Err(error) => error.exit(),
        };
        Self::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update the table, role, function and API; print the invoke URL.
    Install(InstallArgs),
    /// Show each resource: present, missing or different.
    Status(StatusArgs),
    /// Increment a counter through the deployed API (or `serve`, with --url) and print
    /// the new value.
    Increment(IncrementArgs),
    /// Print a counter's current value.
    Get(GetArgs),
    /// Delete what install created; the table and its counters are kept.
    Uninstall(UninstallArgs),
    /// Serve the same counter API on this machine, on an embedded durable store.
    Serve(ServeArgs),
    /// List, raise, export or import counters, in the stack's table or a serve data
    /// directory. Counters are only ever raised: nothing lowers, resets or deletes one.
    Counters(CountersArgs),
    /// Print the function's log lines, oldest first (`--follow` for new ones).
    Logs(LogsArgs),
    /// Move the function's alias back to the version before it (or --to VERSION), in
    /// every region of the stack; `install` brings it forward again.
    Rollback(RollbackArgs),
    /// Write the stack as a CloudFormation template or a Terraform configuration, with
    /// the function's zip beside it (and, for a deployed stack, Terraform import blocks).
    Export(ExportArgs),
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
    /// Send every AWS call to this endpoint (moto, LocalStack), e.g. http://127.0.0.1:5000.
    #[arg(long, env = "AWS_ENDPOINT_URL", value_parser = endpoint_url)]
    pub endpoint_url: Option<String>,
    /// Accept a region this counterctl does not know (one newer than its build).
    #[arg(long, env = "COUNTERCTL_SKIP_REGION_VALIDATION")]
    pub skip_region_validation: bool,
}

/// Which deployment: resource names, checked against AWS's naming rules before any call.
#[derive(Debug, Clone, Args)]
pub struct StackOptions {
    /// Name of the stack: its function, role, log group, API, API key, usage plan,
    /// alarms (NAME-…) and alarm topic (NAME-alarms) are named so. 1-64 of A-Z a-z 0-9
    /// - _ (the Lambda function name rules, which are also valid IAM role names).
    #[arg(long, env = "COUNTERCTL_NAME", default_value = DEFAULT_NAME, value_parser = stack_name)]
    pub name: String,
    /// DynamoDB table holding the counters: 3-255 of A-Z a-z 0-9 _ - . [default: the
    /// deployed function's table, else AtomicCounters].
    #[arg(long, env = "COUNTERCTL_TABLE", value_parser = table_name)]
    pub table: Option<String>,
    /// API Gateway stage: 1-128 of A-Z a-z 0-9 - _ [default: the deployed stage, else prod].
    #[arg(long, env = "COUNTERCTL_STAGE", value_parser = stage_name)]
    pub stage: Option<String>,
}

/// Lambda function names: `[a-zA-Z0-9-_]+`, at most 64 characters
/// (https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html#lambda-CreateFunction-request-FunctionName);
/// IAM role names allow these and more, also up to 64
/// (https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html).
fn stack_name(value: &str) -> Result<String, String> {
    named(value, 1, 64, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_', "A-Z a-z 0-9 - _")
}

/// DynamoDB table names: 3-255 characters of `[a-zA-Z0-9_.-]`
/// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html).
fn table_name(value: &str) -> Result<String, String> {
    named(value, 3, 255, |c| c.is_ascii_alphanumeric() || "_.-".contains(c), "A-Z a-z 0-9 _ . -")
}

/// API Gateway stage names: alphanumerics, hyphens and underscores, at most 128
/// (https://docs.aws.amazon.com/apigateway/latest/api/API_CreateStage.html).
fn stage_name(value: &str) -> Result<String, String> {
    named(value, 1, 128, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_', "A-Z a-z 0-9 - _")
}

fn named(value: &str, min: usize, max: usize, allowed: fn(char) -> bool, rule: &str) -> Result<String, String> {
    if (min..=max).contains(&value.len()) && value.chars().all(allowed) {
        Ok(value.to_owned())
    } else {
        Err(format!("{value:?} is not a valid name: use {min}-{max} characters of {rule}"))
    }
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

impl ValueEnum for Auth {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::ApiKey, Self::Iam, Self::None]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self {
            Self::ApiKey => "Clients send an API key (x-api-key); a usage plan throttles it",
            Self::Iam => {
                "Callers sign requests with SigV4 as an IAM identity allowed `execute-api:Invoke` (REST; the stage \
                 throttles) or `lambda:InvokeFunctionUrl` and `lambda:InvokeFunction` (function URL): `counterctl \
                 status --caller-policy`"
            }
            Self::None => "Anyone who knows the URL can call it (the original service's setup)",
        };
        Some(PossibleValue::new(self.name()).help(help))
    }
}

impl ValueEnum for Front {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Rest, Self::FunctionUrl]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Self::Rest => PossibleValue::new("rest")
                .help("An API Gateway REST API (`{proxy+}`, a stage; API keys and usage plans possible)"),
            Self::FunctionUrl => PossibleValue::new("function-url").help(
                "The function's own Lambda Function URL: no charge of its own; `--auth iam` (the default there) or \
                 `none`",
            ),
        })
    }
}

impl ValueEnum for Architecture {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::X86_64, Self::Arm64]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

impl ValueEnum for Switch {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::On, Self::Off]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Self::On => "on",
            Self::Off => "off",
        }))
    }
}

/// What to deploy, and how. An option not given keeps what is deployed; for what is not
/// deployed yet, the default in [`Settings::DEFAULT`](crate::settings::Settings::DEFAULT).
#[derive(Debug, Clone, Args)]
pub struct DeployOptions {
    /// What callers reach the function through [default: the deployed front, else rest].
    #[arg(long, env = "COUNTERCTL_FRONT", value_enum)]
    pub front: Option<Front>,
    /// Who may call the API [default: the deployed auth, else api-key with the REST
    /// front, iam with a function URL].
    #[arg(long, env = "COUNTERCTL_AUTH", value_enum)]
    pub auth: Option<Auth>,
    /// Steady rate, requests per second: the usage plan's with --auth api-key, the stage's
    /// with --auth iam [default: as deployed, else 50].
    #[arg(long, value_parser = positive_rate)]
    pub rate_limit: Option<f64>,
    /// Burst, requests: the usage plan's with --auth api-key, the stage's with --auth iam
    /// [default: as deployed, else 100].
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub burst_limit: Option<i32>,
    /// Deploy this zip (with a `bootstrap` inside) instead of the bundled one.
    #[arg(long, value_name = "PATH")]
    pub function_zip: Option<std::path::PathBuf>,
    /// The zip's instruction set [default: as deployed, else x86_64].
    #[arg(long, value_enum)]
    pub architecture: Option<Architecture>,
    /// Function memory in MB, 128-10240; CPU scales with it [default: as deployed, else
    /// 128].
    #[arg(long, value_parser = clap::value_parser!(i32).range(128..=10240))]
    pub memory: Option<i32>,
    /// Function timeout in seconds, 15-900: a request may wait 8 s for another with the
    /// same Idempotency-Key, then make a 5 s DynamoDB attempt [default: as deployed, else
    /// 15].
    #[arg(long, value_parser = clap::value_parser!(i32).range(15..=900))]
    pub timeout: Option<i32>,
    /// Days the function's log group keeps logs: one of CloudWatch's values (1, 3, 5, 7,
    /// 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    /// 3288, 3653) [default: as deployed, else 30].
    #[arg(long, value_parser = retention_days)]
    pub log_retention_days: Option<i32>,
    /// Turn on deletion protection and point-in-time recovery on a table counterctl did
    /// not create (on its own tables they are always on).
    #[arg(long)]
    pub protect_table: bool,
    /// Cap the function's concurrent executions (its reserved concurrency), which caps
    /// both cost and DynamoDB load: a number, or `off` to remove the cap [default: as
    /// deployed, else off].
    #[arg(long, value_name = "N|off", value_parser = max_concurrency)]
    pub max_concurrency: Option<MaxConcurrency>,
    /// CloudWatch alarms on the function's errors, throttles and latency, the front's
    /// 5xx and the table's throttled updates [default: on for a new stack, else as
    /// deployed].
    #[arg(long, value_enum)]
    pub alarms: Option<Switch>,
    /// Send every alarm's ALARM and OK to this address, through the stack's own SNS
    /// topic NAME-alarms (made for it; AWS mails a link that must be opened first). A
    /// new address replaces the old one [default: as deployed].
    #[arg(long, value_name = "ADDRESS", value_parser = email, conflicts_with = "alarm_topic")]
    pub alarm_email: Option<String>,
    /// Send every alarm's ALARM and OK to this SNS topic instead (counterctl never
    /// changes or deletes it) [default: as deployed, else none].
    #[arg(long, value_name = "ARN", value_parser = topic_arn)]
    pub alarm_topic: Option<String>,
    /// Serve the REST front at https://NAME too: a regional API Gateway custom domain
    /// (TLS 1.2) mapped to the stack's stage; `off` removes it [default: as deployed,
    /// else none].
    #[arg(long, value_name = "NAME|off", value_parser = domain)]
    pub domain: Option<DomainOption>,
    /// The ACM certificate of --domain: in the stack's region, ISSUED, for NAME or its
    /// parent's wildcard [default: as deployed].
    #[arg(long, value_name = "ARN", value_parser = certificate_arn)]
    pub certificate_arn: Option<String>,
    /// Keep --domain's alias record in this Route 53 hosted zone (made or updated, and
    /// waited for); without it, install prints the record to make [default: as
    /// deployed].
    #[arg(long, value_name = "ZONE", value_parser = hosted_zone_id)]
    pub hosted_zone_id: Option<String>,
}

/// A DNS name as a custom domain takes it: 2-127 labels of 1-63 of a-z 0-9 -, not
/// starting or ending with `-`, at most 253 characters (RFC 1035, section 2.3.1).
fn domain(value: &str) -> Result<DomainOption, String> {
    if value == "off" {
        return Ok(DomainOption::Off);
    }
    let name = value.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |label: &&str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() <= 253 && labels.len() >= 2 && labels.iter().all(label_ok) {
        Ok(DomainOption::Name(name))
    } else {
        Err(format!("{value:?} is not a DNS name such as ids.example.com (labels of a-z 0-9 -), or `off`"))
    }
}

/// `--certificate-arn`: `arn:PARTITION:acm:REGION:ACCOUNT:certificate/ID`.
fn certificate_arn(value: &str) -> Result<String, String> {
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "acm", region, account, resource]
            if !region.is_empty() && account.len() == 12 && resource.starts_with("certificate/") =>
        {
            Ok(value.to_owned())
        }
        _ => Err(format!(
            "{value:?} is not an ACM certificate ARN such as arn:aws:acm:us-east-1:123456789012:certificate/ID"
        )),
    }
}

/// `--hosted-zone-id`: a Route 53 zone id such as Z0123456789ABCDEFGHIJ (a leading
/// `/hostedzone/` is dropped).
fn hosted_zone_id(value: &str) -> Result<String, String> {
    let id = value.trim_start_matches("/hostedzone/");
    if (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(id.to_owned())
    } else {
        Err(format!("{value:?} is not a Route 53 hosted zone id such as Z0123456789ABCDEFGHIJ"))
    }
}

fn max_concurrency(value: &str) -> Result<MaxConcurrency, String> {
    match value {
        "off" => Ok(MaxConcurrency::Off),
        _ => match value.parse::<i32>() {
            // 0 would refuse every invocation: that is not a cap.
            Ok(limit) if limit >= 1 => Ok(MaxConcurrency::Limit(limit)),
            _ => Err(format!("{value:?} is not a positive number of concurrent executions, or `off`")),
        },
    }
}

/// The values PutRetentionPolicy accepts
/// (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html).
pub const RETENTION_DAYS: [i32; 22] =
    [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

fn retention_days(value: &str) -> Result<i32, String> {
    match value.parse::<i32>() {
        Ok(days) if RETENTION_DAYS.contains(&days) => Ok(days),
        _ => Err(format!("{value:?} is not a retention CloudWatch Logs accepts: one of {RETENTION_DAYS:?}")),
    }
}

fn positive_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("{value:?} is not a positive number of requests per second")),
    }
}

impl AwsOptions {
    /// Where and as whom to talk to AWS, for `aws::load_config`.
    pub fn connection(&self) -> Connection {
        let Self { region, profile, endpoint_url, skip_region_validation } = self.clone();
        Connection { region, profile, endpoint_url, skip_region_validation }
    }

    /// The options given, as words of a command line.
    pub(crate) fn words(&self) -> Vec<String> {
        let Self { region, profile, endpoint_url, skip_region_validation } = self;
        let mut words = Words::default();
        words.value("--endpoint-url", endpoint_url.as_ref());
        words.value("--region", region.as_ref());
        words.flag("--skip-region-validation", *skip_region_validation);
        words.value("--profile", profile.as_ref());
        words.0
    }
}

impl RegionsOptions {
    /// The options given, as words of a command line.
    pub(crate) fn words(&self) -> Vec<String> {
        let Self { regions, witness_region } = self;
        let mut words = Words::default();
        words.value("--regions", (!regions.is_empty()).then(|| regions.join(",")).as_ref());
        words.value("--witness-region", witness_region.as_ref());
        words.0
    }
}

impl StackOptions {
    /// The options given, as words of a command line; the default name is left out.
    pub(crate) fn words(&self) -> Vec<String> {
        let Self { name, table, stage } = self;
        let mut words = Words::default();
        words.value("--name", Some(name).filter(|name| *name != DEFAULT_NAME));
        words.value("--table", table.as_ref());
        words.value("--stage", stage.as_ref());
        words.0
    }
}

impl DeployOptions {
    /// The settings asked for, for planning (the zip to deploy is the command's to load).
    pub fn options(&self) -> Options {
        let Self {
            front,
            auth,
            rate_limit,
            burst_limit,
            function_zip: _,
            architecture,
            memory,
            timeout,
            log_retention_days,
            protect_table,
            max_concurrency,
            alarms,
            alarm_email,
            alarm_topic,
            domain,
            certificate_arn,
            hosted_zone_id,
        } = self.clone();
        Options {
            front,
            auth,
            rate_limit,
            burst_limit,
            architecture,
            memory,
            timeout,
            log_retention_days,
            protect_table,
            max_concurrency,
            alarms,
            alarm_email,
            alarm_topic,
            domain,
            certificate_arn,
            hosted_zone_id,
        }
    }

    /// The options given, as words of a command line. Destructured whole, so that an
    /// option added here is rendered too.
    pub(crate) fn words(&self) -> Vec<String> {
        let Self {
            front,
            auth,
            rate_limit,
            burst_limit,
            function_zip,
            architecture,
            memory,
            timeout,
            log_retention_days,
            protect_table,
            max_concurrency,
            alarms,
            alarm_email,
            alarm_topic,
            domain,
            certificate_arn,
            hosted_zone_id,
        } = self;
        let mut words = Words::default();
        words.value("--front", front.as_ref().map(choice));
        words.value("--auth", auth.as_ref().map(choice));
        words.value("--rate-limit", rate_limit.as_ref());
        words.value("--burst-limit", burst_limit.as_ref());
        words.value("--function-zip", function_zip.as_ref().map(|path| path.display()));
        words.value("--architecture", architecture.as_ref().map(choice));
        words.value("--memory", memory.as_ref());
        words.value("--timeout", timeout.as_ref());
        words.value("--log-retention-days", log_retention_days.as_ref());
        words.flag("--protect-table", *protect_table);
        words.value(
            "--max-concurrency",
            max_concurrency.map(|max| match max {
                MaxConcurrency::Limit(limit) => limit.to_string(),
                MaxConcurrency::Off => "off".to_owned(),
            }),
        );
        words.value("--alarms", alarms.as_ref().map(choice));
        words.value("--alarm-email", alarm_email.as_ref());
        words.value("--alarm-topic", alarm_topic.as_ref());
        words.value(
            "--domain",
            domain.as_ref().map(|domain| match domain {
                DomainOption::Name(name) => name.as_str(),
                DomainOption::Off => "off",
            }),
        );
        words.value("--certificate-arn", certificate_arn.as_ref());
        words.value("--hosted-zone-id", hosted_zone_id.as_ref());
        words.0
    }
}

/// A value as typed on the command line.
fn choice(value: &impl ValueEnum) -> String {
    value.to_possible_value().map(|value| value.get_name().to_owned()).unwrap_or_default()
}

/// The words of a command line, each flag followed by its value.
#[derive(Default)]
struct Words(Vec<String>);

impl Words {
    fn value(&mut self, flag: &str, value: Option<impl std::fmt::Display>) {
        if let Some(value) = value {
            self.0.extend([flag.to_owned(), value.to_string()]);
        }
    }

    fn flag(&mut self, flag: &str, given: bool) {
        if given {
            self.0.push(flag.to_owned());
        }
    }
}

/// `counterctl COMMAND` and `words`, each shell-quoted: a command counterctl suggests,
/// made of the options the user gave.
pub(crate) fn suggested(command: &str, words: impl IntoIterator<Item = String>) -> String {
    let words = words.into_iter().map(|word| shell_quoted(&word));
    ["counterctl".to_owned(), command.to_owned()].into_iter().chain(words).collect::<Vec<_>>().join(" ")
}

/// `arg` as a POSIX shell reads it back.
fn shell_quoted(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) { arg.to_owned() } else { format!("'{}'", arg.replace('\'', "'\\''")) }
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
    /// Apply changes that break existing callers (a change of auth, deleting the API key)
    /// without asking; needed for them when there is no terminal to ask on.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Allow --table to point a deployed function at another table. It is still refused
    /// when any counter in the new table is behind the current one.
    #[arg(long)]
    pub switch_table: bool,
    /// Make the stack's table again, new and empty, where it was deleted: every counter
    /// starts again at 1. Destructive: asked for as a change that breaks callers (or
    /// --yes). Restore the table under its name instead while any of its IDs is in use.
    #[arg(long)]
    pub recreate_table: bool,
    /// Print the API key's secret value (hidden otherwise).
    #[arg(long)]
    pub show_api_key: bool,
    #[command(flatten)]
    pub regions: RegionsOptions,
    #[command(flatten)]
    pub output: OutputOptions,
}

/// Where a stack in several regions runs (install, and status to show what it would do).
#[derive(Debug, Clone, Args)]
pub struct RegionsOptions {
    /// Run the stack in three regions on a DynamoDB global table with multi-Region strong
    /// consistency: three regions of one region set, comma-separated (e.g.
    /// us-east-1,us-east-2,us-west-2), or two with --witness-region. The first is home,
    /// where the table is made; --region, if given, must be one of them. [default: the
    /// deployed table's regions]
    #[arg(long, value_delimiter = ',', value_name = "REGION,...")]
    pub regions: Vec<String>,
    /// The third region of a stack in two --regions: it keeps a witness of the table (no
    /// data, no function), in the same region set.
    #[arg(long, value_name = "REGION", requires = "regions")]
    pub witness_region: Option<String>,
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
    /// Print only the least-privilege IAM policy (JSON) a calling service needs for this
    /// stack with --auth iam: execute-api:Invoke on its two routes, or with a function
    /// URL lambda:InvokeFunctionUrl and lambda:InvokeFunction on its function.
    #[arg(long)]
    pub caller_policy: bool,
    /// Print only the least-privilege IAM policy (JSON) an operator (a CI deploy role)
    /// needs to run install with these options, status and uninstall for this stack in
    /// this region; `counters` is its statement "Counters".
    #[arg(long, conflicts_with_all = ["caller_policy", "metrics"])]
    pub operator_policy: bool,
    /// Print only the stack's metrics over --since: the function's invocations, errors,
    /// throttles and duration, the front's requests, 4xx, 5xx and latency, the table's
    /// write units and throttled updates.
    #[arg(long, conflicts_with = "caller_policy")]
    pub metrics: bool,
    /// With --metrics, the window, e.g. 15m, 1h, 2d.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration, requires = "metrics")]
    pub since: std::time::Duration,
    #[command(flatten)]
    pub regions: RegionsOptions,
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
    /// API key to send as x-api-key. Without it: COUNTERCTL_API_KEY, else the stack's
    /// key, fetched from API Gateway when the stack uses keys.
    #[arg(long)]
    pub api_key: Option<String>,
    /// With --url, how to call it: `iam` signs with SigV4 (for `lambda` at a Function URL
    /// `*.lambda-url.REGION.on.aws`, else `execute-api`; the region from the host, else
    /// --region), `api-key` sends --api-key [default: api-key when --api-key is given,
    /// else none; without --url, what the stack uses].
    #[arg(long, value_enum)]
    pub auth: Option<Auth>,
}

#[derive(Debug, Args)]
pub struct IncrementArgs {
    /// Counter name.
    pub counter: String,
    /// Reserve this many consecutive values at once, 1 to 1,000,000; prints FIRST-LAST.
    #[arg(long, value_parser = count)]
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
pub struct RollbackArgs {
    #[command(flatten)]
    pub aws: AwsOptions,
    #[command(flatten)]
    pub stack: StackOptions,
    /// The published version to move the alias to [default: the newest version before
    /// the alias's].
    #[arg(long, value_name = "VERSION", value_parser = clap::value_parser!(u64).range(1..))]
    pub to: Option<u64>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the move, making read calls only.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: OutputOptions,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub aws: AwsOptions,
    #[command(flatten)]
    pub stack: StackOptions,
    #[command(flatten)]
    pub deploy: DeployOptions,
    /// What to write: a CloudFormation template (template.json) or a Terraform
    /// configuration (main.tf.json).
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The directory to write into (made if missing); files already there of the same
    /// names are replaced.
    #[arg(long, value_name = "DIR")]
    pub output_dir: std::path::PathBuf,
    #[command(flatten)]
    pub output: OutputOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A CloudFormation template, for `aws cloudformation package` and `deploy`.
    Cloudformation,
    /// A Terraform configuration in Terraform's JSON syntax, with import blocks for what
    /// is deployed.
    Terraform,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Lines from this long ago on, e.g. 10m, 2h, 1d.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration)]
    pub since: std::time::Duration,
    /// Keep printing new lines as they arrive, until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only lines matching this CloudWatch Logs filter pattern, e.g. ERROR or
    /// '{ $.counter = "tenants" }'.
    #[arg(long, value_name = "PATTERN")]
    pub filter: Option<String>,
    #[command(flatten)]
    pub aws: AwsOptions,
    /// The stack whose function's log group (/aws/lambda/NAME) is read.
    #[arg(long, env = "COUNTERCTL_NAME", default_value = DEFAULT_NAME, value_parser = stack_name)]
    pub name: String,
    /// `json` prints the function's JSON lines unchanged.
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
    /// Print what would be deleted, making read calls only (Terraform's `plan -destroy`).
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: OutputOptions,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on; port 0 picks a free one. Any address but loopback
    /// needs an API key, or --no-auth.
    #[arg(long, env = "COUNTERCTL_LISTEN", default_value = "127.0.0.1:8080", value_parser = listen_address)]
    pub listen: std::net::SocketAddr,
    /// Directory of the counter database [env: COUNTERCTL_DATA_DIR] [default: counterctl
    /// under the user's data directory, e.g. ~/.local/share/counterctl]. Not with
    /// --upstream.
    #[arg(long, conflicts_with = "upstream")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Hand out IDs from blocks reserved at this counter API instead of a local
    /// database: an AWS stack's invoke URL or function URL, or another serve. A local
    /// ID cache (a sidecar) for callers in any language. Repeat it (or separate URLs
    /// with commas) for the regions of a multi-region stack: the first is preferred, and
    /// calls move to the next while it fails.
    #[arg(long, value_name = "URL", env = "COUNTERCTL_UPSTREAM", value_delimiter = ',')]
    pub upstream: Vec<String>,
    #[command(flatten)]
    pub upstream_options: UpstreamOptions,
    /// Directory where serve remembers what it has handed out, outside the data directory
    /// so that a data directory restored from a copy cannot take it back with it [env:
    /// COUNTERCTL_STATE_DIR] [default: counterctl under the user's state directory, e.g.
    /// ~/.local/state/counterctl].
    #[arg(long, value_name = "DIR", env = "COUNTERCTL_STATE_DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Serve a database restored from an older copy (or, where it is lost, a new one):
    /// every counter is first raised past what the newer database could have handed out,
    /// so that no ID repeats. Without it serve refuses a database that went back.
    #[arg(long, conflicts_with = "upstream")]
    pub restored: bool,
    /// Require this key in `x-api-key` on every request but GET /healthz: 20-128
    /// printable ASCII characters, no spaces (e.g. `openssl rand -hex 20`). Prefer
    /// --api-key-file: a command line is visible to other users of the machine. Without
    /// --api-key, --api-key-file or --no-auth: COUNTERCTL_SERVE_API_KEY.
    #[arg(long, value_parser = api_key)]
    pub api_key: Option<String>,
    /// Read the API key from this file (surrounding whitespace ignored).
    #[arg(long, value_name = "PATH", conflicts_with = "api_key")]
    pub api_key_file: Option<std::path::PathBuf>,
    /// Serve a non-loopback address without an API key (when something in front of
    /// serve decides who may call).
    #[arg(long, conflicts_with_all = ["api_key", "api_key_file"])]
    pub no_auth: bool,
    /// Close a connection whose request (headers and body) has not arrived this many
    /// seconds after its first byte, or after the connection opened.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub header_timeout: u64,
    /// Close a keep-alive connection after this many seconds without a request.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub idle_timeout: u64,
    /// Most connections open at once; past it, new ones wait to be accepted [default: the
    /// open-files limit, raised to its maximum, less 64].
    #[arg(long, value_name = "N", value_parser = positive_count)]
    pub max_connections: Option<usize>,
    /// Print one JSON line per request on stderr, with the Lambda function's log fields.
    #[arg(long)]
    pub access_log: bool,
    #[command(flatten)]
    pub output: OutputOptions,
}

/// How `serve --upstream` reaches its upstream and sizes its blocks.
#[derive(Debug, Clone, Args)]
/// Each needs --upstream, and so is no option of a data directory (clap drops a
/// `requires` when an argument conflicting with what it requires is given).
pub struct UpstreamOptions {
    /// How to call the upstream: `api-key` sends its key as x-api-key, `iam` signs with
    /// SigV4 as the AWS chain's identity (--profile; for `lambda` at a function URL, else
    /// `execute-api`; the region from the host, else --region) [default: api-key when a
    /// key is given, else none].
    #[arg(long, requires = "upstream", conflicts_with = "data_dir", value_enum)]
    pub upstream_auth: Option<UpstreamAuth>,
    /// Read the upstream's API key from this file (surrounding whitespace ignored); else
    /// from COUNTERCTL_UPSTREAM_API_KEY.
    #[arg(long, requires = "upstream", conflicts_with = "data_dir", value_name = "PATH")]
    pub upstream_api_key_file: Option<std::path::PathBuf>,
    /// How long a block of IDs should last at the rate they are taken: longer means
    /// fewer upstream writes and a longer upstream outage ridden out, shorter a smaller
    /// gap of unused IDs when serve stops [default: 60].
    #[arg(long, requires = "upstream", conflicts_with = "data_dir", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub block_seconds: Option<u64>,
    /// The smallest block, and the first one's size [default: 10].
    #[arg(long, requires = "upstream", conflicts_with = "data_dir", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub min_block: Option<u32>,
    /// The largest block [default: 1000000, the API's largest count].
    #[arg(long, requires = "upstream", conflicts_with = "data_dir", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_block: Option<u32>,
    /// A counter's pool unused this long is dropped, with the IDs it holds (a gap), so
    /// memory follows the counters in use [default: 600].
    #[arg(long, requires = "upstream", conflicts_with = "data_dir", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub pool_idle_seconds: Option<u64>,
    /// AWS region to sign for when the upstream's host names none, with iam [default:
    /// AWS_REGION, else the profile's].
    #[arg(long, requires = "upstream", conflicts_with = "data_dir")]
    pub region: Option<String>,
    /// Named profile from ~/.aws/config to sign as, with iam [default: AWS_PROFILE].
    #[arg(long, requires = "upstream", conflicts_with = "data_dir")]
    pub profile: Option<String>,
}

/// How `serve --upstream` authenticates to its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpstreamAuth {
    /// Nothing (the upstream lets anyone call).
    None,
    /// The upstream's API key, as x-api-key.
    ApiKey,
    /// A SigV4 signature by the AWS chain's identity.
    Iam,
}

#[derive(Debug, Args)]
pub struct CountersArgs {
    #[command(subcommand)]
    pub command: CountersCommand,
}

#[derive(Debug, Subcommand)]
pub enum CountersCommand {
    /// Print every counter and its value, sorted by name.
    List(ListCountersArgs),
    /// Raise a counter to at least a value (creating it); never lowers it.
    Set(SetCounterArgs),
    /// Write every counter as JSON lines, {"counter":NAME,"value":N}, sorted by name.
    Export(ExportCountersArgs),
    /// Raise each counter of a JSON-lines file to at least its value (as `set` does).
    /// The whole input is checked before anything is written; running it again changes
    /// nothing.
    Import(ImportCountersArgs),
    /// Copy a `serve` data directory's database to a file: a consistent snapshot, taken
    /// while serve runs or not. Restore it with serve's --restored (see docs/operations.md,
    /// "Backups of serve").
    Backup(BackupCountersArgs),
}

impl CountersCommand {
    pub fn store(&self) -> &CounterStoreOptions {
        match self {
            Self::List(args) => &args.store,
            Self::Set(args) => &args.store,
            Self::Export(args) => &args.store,
            Self::Import(args) => &args.store,
            Self::Backup(args) => &args.store,
        }
    }
}

/// Where the counters are: the AWS stack's table (read directly through DynamoDB with
/// your credentials), or a `counterctl serve` data directory.
#[derive(Debug, Clone, Args)]
pub struct CounterStoreOptions {
    /// A `counterctl serve` data directory instead of the AWS stack's table; serve may be
    /// running on it or not. Without --data-dir or --table: COUNTERCTL_DATA_DIR, as
    /// serve reads it.
    #[arg(long, value_name = "DIR", conflicts_with = "table")]
    pub data_dir: Option<std::path::PathBuf>,
    /// The stack whose table holds the counters (its function's table, else the table its
    /// uninstall kept).
    #[arg(long, env = "COUNTERCTL_NAME", default_value = DEFAULT_NAME, value_parser = stack_name)]
    pub name: String,
    /// DynamoDB table holding the counters. Without it (and without a data directory):
    /// COUNTERCTL_TABLE, else the stack's.
    #[arg(long, value_parser = table_name)]
    pub table: Option<String>,
    #[command(flatten)]
    pub aws: AwsOptions,
}

#[derive(Debug, Args)]
pub struct ListCountersArgs {
    /// Only counters whose name starts with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    #[command(flatten)]
    pub store: CounterStoreOptions,
    #[command(flatten)]
    pub output: OutputOptions,
}

#[derive(Debug, Args)]
pub struct SetCounterArgs {
    /// Counter name.
    pub counter: String,
    /// The value the counter must have at least: the last ID already in use, so the next
    /// increment hands out the one after it.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = at_least)]
    pub at_least: i64,
    #[command(flatten)]
    pub store: CounterStoreOptions,
    #[command(flatten)]
    pub output: OutputOptions,
}

#[derive(Debug, Args)]
pub struct ExportCountersArgs {
    /// Where to write; `-` for stdout. A file is written whole or not at all.
    #[arg(value_name = "FILE|-", default_value = "-")]
    pub file: std::path::PathBuf,
    #[command(flatten)]
    pub store: CounterStoreOptions,
}

#[derive(Debug, Args)]
pub struct BackupCountersArgs {
    /// The file to write; it must not exist yet.
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
    #[command(flatten)]
    pub store: CounterStoreOptions,
}

#[derive(Debug, Args)]
pub struct ImportCountersArgs {
    /// JSON lines as `export` writes them; `-` for stdin.
    #[arg(value_name = "FILE|-", default_value = "-")]
    pub file: std::path::PathBuf,
    #[command(flatten)]
    pub store: CounterStoreOptions,
    #[command(flatten)]
    pub output: OutputOptions,
}

/// An API key for `serve`: 20-128 printable ASCII characters without spaces, as API
/// Gateway's own keys.
pub fn api_key(value: &str) -> Result<String, String> {
    if (20..=128).contains(&value.len()) && value.bytes().all(|byte| byte.is_ascii_graphic()) {
        Ok(value.to_owned())
    } else {
        Err("an API key is 20-128 printable ASCII characters without spaces (e.g. `openssl rand -hex 20`)".to_owned())
    }
}

/// `--alarm-email`: one address, `local@domain.tld`, as SNS's email protocol takes it.
fn email(value: &str) -> Result<String, String> {
    let valid = value.split_once('@').is_some_and(|(local, domain)| {
        let labels: Vec<&str> = domain.split('.').collect();
        !local.is_empty()
            && labels.len() >= 2
            && labels.iter().all(|label| !label.is_empty())
            && value.bytes().all(|byte| byte.is_ascii_graphic() && byte != b',')
            && !domain.contains('@')
    });
    if valid { Ok(value.to_owned()) } else { Err(format!("{value:?} is not an email address such as ops@example.com")) }
}

/// `--alarm-topic`: an SNS topic's ARN, `arn:PARTITION:sns:REGION:ACCOUNT:NAME`.
fn topic_arn(value: &str) -> Result<String, String> {
    let parts: Vec<&str> = value.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "sns", region, account, name]
            if !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && !name.is_empty() =>
        {
            Ok(value.to_owned())
        }
        _ => Err(format!("{value:?} is not an SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:ops")),
    }
}

/// `--count`: what the API takes, 1 to its `MAX_COUNT`.
fn count(value: &str) -> Result<u32, String> {
    let max = counter_function::validate::MAX_COUNT;
    counter_function::validate::count(value).map_err(|_| format!("{value:?} is not a whole number from 1 to {max}"))
}

/// `--at-least`: a counter value, as the API's one rule has it (`validate::counter_value`).
fn at_least(value: &str) -> Result<i64, String> {
    let parsed = value.parse::<i64>().map_err(|_| format!("{value:?} is not a whole number"))?;
    counter_function::validate::counter_value(parsed).map_err(|invalid| invalid.to_string())
}

/// `--listen`: an IP address and port, or a host name that resolves to one
/// (`localhost:8080`: its first address).
fn listen_address(value: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(address) = value.parse() {
        return Ok(address);
    }
    let shape = "an ADDRESS:PORT such as 127.0.0.1:8080, [::1]:8080 or localhost:8080";
    match value.to_socket_addrs() {
        Ok(mut addresses) => addresses.next().ok_or_else(|| format!("{value:?} resolves to no address; {shape}")),
        Err(error) => Err(format!("{value:?} is not {shape} ({error})")),
    }
}

/// An AWS endpoint: the SDK takes anything and fails at the first call with its request
/// dumped, so a URL without a scheme is refused here, as `--url` is.
fn endpoint_url(value: &str) -> Result<String, String> {
    match reqwest::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|host| !host.is_empty()) => {
            Ok(value.to_owned())
        }
        _ => Err(format!("{value:?} needs http:// or https:// and a host, e.g. http://127.0.0.1:5000")),
    }
}

/// A duration such as `90s`, `10m`, `2h` or `1d 12h`.
fn duration(value: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(value)
        .map_err(|error| format!("{value:?} is not a duration such as 10m, 2h or 1d: {error}"))
}

fn positive_count(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(count) if count >= 1 => Ok(count),
        _ => Err(format!("{value:?} is not a positive whole number")),
    }
}

/// `args` parsed as typed, without what the environment gives (`AWS_REGION`, …).
#[cfg(test)]
pub(crate) fn parse_as_typed(args: &[&str]) -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let command = Cli::command().mut_subcommands(|command| command.mut_args(|arg| arg.env(None)));
    let matches = command.try_get_matches_from([&["counterctl"][..], args].concat()).expect("valid arguments");
    Cli::from_arg_matches(&matches).expect("valid arguments")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn nothing_below_the_commands_imports_the_command_line() {
        // The commands parse; every other module takes the domain's types.
        let commands = ["cli.rs", "lib.rs", "main.rs", "install.rs", "status.rs", "uninstall.rs", "call.rs"];
        let commands =
            [&commands[..], &["counters.rs", "export.rs", "logs.rs", "rollback.rs", "serve.rs", "serve/upstream.rs"]]
                .concat();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut directories = vec![src.clone()];
        let mut importers = Vec::new();
        while let Some(directory) = directories.pop() {
            for entry in std::fs::read_dir(&directory).unwrap() {
                let path = entry.unwrap().path();
                let module = path.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    directories.push(path);
                } else if !commands.contains(&module.as_str())
                    && std::fs::read_to_string(&path).unwrap().contains("crate::cli")
                {
                    importers.push(module);
                }
            }
        }
        assert_eq!(importers, Vec::<String>::new(), "below the commands, these import cli");
    }

    #[test]
    fn a_suggested_command_keeps_the_options_asked_for_with_their_values() {
        let args = ["--memory", "256", "--region=eu-west-1", "--yes", "--name", "a-b", "--endpoint-url", "http://x:1"];
        let Command::Install(install) = parse_as_typed(&[&["install"][..], &args].concat()).command else {
            panic!("install")
        };
        assert_eq!(
            suggested("status", [install.aws.words(), install.stack.words()].concat()),
            "counterctl status --endpoint-url http://x:1 --region eu-west-1 --name a-b"
        );
    }

    #[test]
    fn every_deploy_option_given_is_rendered_back_as_it_parses() {
        let args = [
            "--front",
            "function-url",
            "--auth",
            "iam",
            "--rate-limit",
            "8.5",
            "--burst-limit",
            "20",
            "--function-zip",
            "/tmp/a b.zip",
            "--architecture",
            "x86_64",
            "--memory",
            "256",
            "--timeout",
            "30",
            "--log-retention-days",
            "7",
            "--protect-table",
            "--max-concurrency",
            "off",
            "--alarms",
            "on",
            "--alarm-email",
            "ops@example.com",
            "--domain",
            "ids.example.com",
            "--certificate-arn",
            "arn:aws:acm:us-east-1:123456789012:certificate/1",
            "--hosted-zone-id",
            "Z0123",
        ];
        let Command::Install(install) = parse_as_typed(&[&["install"][..], &args].concat()).command else {
            panic!("install")
        };
        let words = install.deploy.words();
        assert_eq!(words, args.map(str::to_owned));
        let Command::Install(again) =
            parse_as_typed(&[&["install"][..], &words.iter().map(String::as_str).collect::<Vec<_>>()].concat()).command
        else {
            panic!("install")
        };
        assert_eq!(again.deploy.words(), words, "what is rendered parses back to the same options");
    }

    #[test]
    fn the_upstreams_options_need_an_upstream_with_or_without_a_data_dir() {
        for extra in [&[][..], &["--data-dir", "/tmp/counters"]] {
            for option in [&["--block-seconds", "30"][..], &["--min-block", "5"], &["--upstream-auth", "iam"]] {
                let args = [&["counterctl", "serve"][..], option, extra].concat();
                let error = Cli::try_parse_from(&args).map(|_| ()).unwrap_err();
                assert_eq!(error.exit_code(), 2, "{args:?}");
                assert!(
                    error.to_string().contains("--upstream") || error.to_string().contains("--data-dir"),
                    "{error}"
                );
            }
        }
        assert!(
            Cli::try_parse_from(["counterctl", "serve", "--upstream", "http://127.0.0.1:9", "--min-block", "5"])
                .is_ok()
        );
    }
}
