//! The deployment's settings, in the domain's words: who may call (`Auth`), through
//! what (`Front`), the function's instruction set, the alarms' switch, the concurrency
//! cap, the custom domain, and the defaults of a new stack. The command line parses
//! into these (`cli.rs`); planning, resources and apply read them, never the CLI.

/// Who may call the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Clients send an API key (x-api-key); a usage plan throttles it.
    ApiKey,
    /// Callers sign requests with SigV4 as an IAM identity allowed `execute-api:Invoke`
    /// (REST; the stage throttles) or `lambda:InvokeFunctionUrl` and
    /// `lambda:InvokeFunction` (function URL): `counterctl status --caller-policy`.
    Iam,
    /// Anyone who knows the URL can call it (the original service's setup).
    None,
}

impl Auth {
    /// The option's value, as typed.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::ApiKey => "api-key",
            Self::Iam => "iam",
            Self::None => "none",
        }
    }
}

/// What callers reach the function through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// An API Gateway REST API (`{proxy+}`, a stage; API keys and usage plans possible).
    Rest,
    /// The function's own Lambda Function URL: no charge of its own; `--auth iam` (the
    /// default there) or `none`.
    FunctionUrl,
}

/// The function's instruction set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    X86_64,
    Arm64,
}

impl Architecture {
    /// As Lambda names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
        }
    }
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
}

/// `--max-concurrency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxConcurrency {
    Limit(i32),
    Off,
}

impl MaxConcurrency {
    /// The reserved concurrency this sets; `None`: unreserved.
    pub fn reserved(self) -> Option<i32> {
        match self {
            Self::Limit(limit) => Some(limit),
            Self::Off => None,
        }
    }
}

/// `--domain`: a DNS name, or `off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainOption {
    Name(String),
    Off,
}

/// What install (or status) was asked to set. `None`: not given, so what is deployed is
/// kept, else the default in [`Settings::DEFAULT`].
#[derive(Debug, Clone)]
pub struct Options {
    pub front: Option<Front>,
    pub auth: Option<Auth>,
    pub rate_limit: Option<f64>,
    pub burst_limit: Option<i32>,
    pub architecture: Option<Architecture>,
    pub memory: Option<i32>,
    pub timeout: Option<i32>,
    pub log_retention_days: Option<i32>,
    pub protect_table: bool,
    pub max_concurrency: Option<MaxConcurrency>,
    pub alarms: Option<Switch>,
    pub alarm_email: Option<String>,
    pub alarm_topic: Option<String>,
    pub domain: Option<DomainOption>,
    pub certificate_arn: Option<String>,
    pub hosted_zone_id: Option<String>,
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
    pub log_retention_days: i32,
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
        log_retention_days: 30,
    };
}
