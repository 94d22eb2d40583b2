//! Talking to AWS: the SDK configuration from the common options, the caller's account,
//! and AWS errors worded for people (operation, error code, message, and a hint).

use std::fmt;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::ProvideCredentials;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use counterctl_client::causes;

/// Where and as whom to talk to AWS; what is not given, the SDK's default chain decides
/// (the environment, the profile).
#[derive(Debug, Clone)]
pub struct Connection {
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Every AWS call goes to this endpoint (moto, LocalStack).
    pub endpoint_url: Option<String>,
    /// Whether a region missing from [`KNOWN_REGIONS`] is accepted.
    pub skip_region_validation: bool,
}

/// The regions of the AWS SDK for Rust's partition metadata, which this build carries
/// (aws-sdk-dynamodb 1.136, `src/endpoint_lib.rs`, the same list as botocore's
/// `endpoints.json`): a region outside it is most likely a typo, which would otherwise
/// fail at the first call on a DNS lookup.
pub const KNOWN_REGIONS: [&str; 43] = [
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "cn-north-1",
    "cn-northwest-1",
    "eusc-de-east-1",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-iso-east-1",
    "us-iso-west-1",
    "us-isob-east-1",
    "us-isof-south-1",
];

/// Why counterctl cannot talk to AWS at all.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "no AWS region is set\n\
         hint: pass --region (e.g. --region us-east-1), set AWS_REGION, or set `region` in your profile"
    )]
    NoRegion,
    #[error(
        "no AWS credentials were found ({0})\n\
         hint: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, pass --profile NAME, or run `aws sso login`"
    )]
    NoCredentials(String),
    /// As the AWS CLI says it: "The config profile (NAME) could not be found".
    #[error(
        "the config profile ({name}) could not be found in the AWS config or credentials file (profiles there: \
         {known})\n\
         hint: pass --profile with one of them (or unset AWS_PROFILE), or make it with `aws configure --profile {name}`"
    )]
    NoProfile { name: String, known: String },
    #[error(
        "{region} is not an AWS region this counterctl knows{}\n\
         hint: pass --region with a region such as us-east-1; for a region newer than this build, pass \
         --skip-region-validation (or set COUNTERCTL_SKIP_REGION_VALIDATION=true)",
        closest.as_ref().map_or(String::new(), |closest| format!(" (did you mean {closest}?)"))
    )]
    UnknownRegion { region: String, closest: Option<&'static str> },
}

/// `region`, unless it is not one of [`KNOWN_REGIONS`]; then the known one nearest in
/// spelling, if one is near.
fn check_region(region: &str) -> Result<(), SetupError> {
    if KNOWN_REGIONS.contains(&region) {
        return Ok(());
    }
    let nearest = KNOWN_REGIONS.iter().min_by_key(|known| strsim::damerau_levenshtein(region, known));
    let closest = nearest.filter(|known| strsim::damerau_levenshtein(region, known) <= 2).copied();
    Err(SetupError::UnknownRegion { region: region.to_owned(), closest })
}

/// Refuses a profile that neither shared file (`~/.aws/config`, `~/.aws/credentials`, or
/// AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE) defines: the SDK would go on without
/// it and report missing credentials. Files that cannot be read are left to the SDK.
async fn check_profile(name: &str) -> Result<(), SetupError> {
    let files = aws_runtime::env_config::file::EnvConfigFiles::default();
    let (fs, env) = (aws_types::os_shim_internal::Fs::real(), aws_types::os_shim_internal::Env::real());
    match aws_config::profile::load(&fs, &env, &files, None).await {
        Ok(profiles) if profiles.get_profile(name).is_none() => {
            let mut known: Vec<&str> = profiles.profiles().collect();
            known.sort_unstable();
            let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
            Err(SetupError::NoProfile { name: name.to_owned(), known })
        }
        _ => Ok(()),
    }
}

/// Loads the SDK configuration and checks that a region and credentials are there, so a
/// missing one fails before anything is read or created.
pub async fn load_config(options: &Connection) -> Result<SdkConfig, SetupError> {
    let retry = aws_config::retry::RetryConfig::standard().with_max_attempts(crate::retry::SDK_ATTEMPTS);
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(retry);
    if let Some(profile) = &options.profile {
        check_profile(profile).await?;
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &options.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let config = loader.load().await;
    let Some(region) = config.region() else { return Err(SetupError::NoRegion) };
    if !options.skip_region_validation {
        check_region(region.as_ref())?;
    }
    let provider = config.credentials_provider().ok_or_else(|| SetupError::NoCredentials("no provider".into()))?;
    provider.provide_credentials().await.map_err(|error| SetupError::NoCredentials(causes(&error)))?;
    Ok(config)
}

/// One client per service, from one configuration.
#[derive(Clone)]
pub struct Clients {
    pub(crate) config: SdkConfig,
    pub(crate) dynamodb: aws_sdk_dynamodb::Client,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) lambda: aws_sdk_lambda::Client,
    pub(crate) logs: aws_sdk_cloudwatchlogs::Client,
    pub(crate) cloudwatch: aws_sdk_cloudwatch::Client,
    pub(crate) sns: aws_sdk_sns::Client,
    pub(crate) acm: aws_sdk_acm::Client,
    pub(crate) route53: aws_sdk_route53::Client,
    pub(crate) apigateway: aws_sdk_apigateway::Client,
}

impl Clients {
    pub fn new(config: SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            iam: aws_sdk_iam::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
            sns: aws_sdk_sns::Client::new(&config),
            acm: aws_sdk_acm::Client::new(&config),
            route53: aws_sdk_route53::Client::new(&config),
            apigateway: aws_sdk_apigateway::Client::new(&config),
            config,
        }
    }

    /// The same connection, in `region`: a multi-region stack's other regions.
    pub(crate) fn in_region(&self, region: &str) -> Self {
        let config = self.config.to_builder().region(aws_config::Region::new(region.to_owned())).build();
        Self::new(config)
    }

    pub async fn connect(options: &Connection) -> anyhow::Result<Self> {
        Ok(Self::new(load_config(options).await?))
    }

    /// As [`connect`](Self::connect), for a command that may have meant a local `serve`:
    /// with no AWS set up, the error also says how to reach that (`local`).
    pub async fn connect_or_local(options: &Connection, local: &str) -> anyhow::Result<Self> {
        match load_config(options).await {
            Ok(config) => Ok(Self::new(config)),
            Err(error) => Err(anyhow::anyhow!("{error}\nhint: {local}")),
        }
    }
}

/// Who and where the installer is: everything ARNs are made of.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub partition: String,
    pub region: String,
}

impl Account {
    /// The caller's account and partition from STS (`arn:PARTITION:sts::ACCOUNT:...`).
    pub async fn of_caller(config: &SdkConfig) -> Result<Self, AwsError> {
        let identity = aws_sdk_sts::Client::new(config)
            .get_caller_identity()
            .send()
            .await
            .map_err(|error| AwsError::new("sts:GetCallerIdentity", error))?;
        let id = identity.account().unwrap_or_default().to_owned();
        let partition = identity.arn().and_then(|arn| arn.split(':').nth(1)).unwrap_or("aws").to_owned();
        let region = config.region().map(|region| region.to_string()).unwrap_or_default();
        Ok(Self { id, partition, region })
    }

    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!("arn:{}:{service}:{}:{}:{resource}", self.partition, self.region, self.id)
    }
}

/// The partition a region belongs to, for ARNs made before STS has answered.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// A failed AWS call: which operation, the service's error code and message.
#[derive(Debug)]
pub struct AwsError {
    pub operation: &'static str,
    pub code: Option<String>,
    pub message: String,
    /// The endpoint answered, with what no AWS service answers: the network works, the
    /// endpoint is wrong.
    pub foreign_answer: bool,
}

impl AwsError {
    /// The error's code and message; without a message, its causes (never its `Debug`
    /// form, which dumps whole responses).
    pub fn new<E, R>(operation: &'static str, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: RawAnswer + fmt::Debug + Send + Sync + 'static,
    {
        let code = error.code().map(str::to_owned);
        if let (SdkError::ServiceError(_), Some(message)) = (&error, error.message()) {
            return Self { operation, code, message: message.to_owned(), foreign_answer: false };
        }
        let foreign = error.raw_response().and_then(RawAnswer::not_aws);
        Self { operation, code, foreign_answer: foreign.is_some(), message: foreign.unwrap_or_else(|| causes(&error)) }
    }

    fn hint(&self) -> Option<&'static str> {
        let code = self.code.as_deref()?;
        Some(match code {
            "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "IncompleteSignature" => {
                "AWS rejected the credentials: refresh them (`aws sso login`, or check AWS_ACCESS_KEY_ID / --profile)"
            }
            "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "AuthorizationError" => {
                "the caller may not do this: installing needs DynamoDB, IAM, Lambda, API Gateway, CloudWatch, CloudWatch Logs and SNS permissions \
                 on these resources (`counterctl status --operator-policy` prints the least-privilege policy; \
                 or use a profile that has them, with --profile)"
            }
            "Throttling" | "ThrottlingException" | "TooManyRequestsException" | "RequestLimitExceeded" => {
                "AWS is throttling this account: wait a minute and run the command again; it resumes where it stopped"
            }
            "UnknownEndpoint" | "InvalidAction" => "check --region and --endpoint-url",
            _ => return None,
        })
    }
}

/// A raw answer an SDK error may carry.
pub trait RawAnswer {
    /// What an answer that no AWS service gives says of itself (an HTML page, a proxy's
    /// error): its status and first characters. `None` for an answer in AWS's formats.
    fn not_aws(&self) -> Option<String>;
}

/// An event stream's message is AWS's.
impl RawAnswer for aws_smithy_types::event_stream::RawMessage {
    fn not_aws(&self) -> Option<String> {
        None
    }
}

impl RawAnswer for HttpResponse {
    fn not_aws(&self) -> Option<String> {
        not_an_aws_answer(self)
    }
}

fn not_an_aws_answer(response: &HttpResponse) -> Option<String> {
    let body = String::from_utf8_lossy(response.body().bytes()?);
    let text = body.trim_start();
    let html = text.get(..15).is_some_and(|start| start.to_ascii_lowercase().starts_with("<!doctype html"))
        || text.get(..5).is_some_and(|start| start.eq_ignore_ascii_case("<html"));
    let aws_format = !html && (text.starts_with('{') || text.starts_with('<'));
    if aws_format {
        return None;
    }
    let shown: String = text.chars().take(80).collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ");
    let kind = if html { "an HTML page" } else { "a body" };
    Some(format!(
        "the endpoint answered HTTP {} with {kind}, not an AWS answer ({shown:?}…): it is not AWS, or it does \
         not serve this call (an emulator may lack it)",
        response.status().as_u16()
    ))
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} failed: {code}: {}", self.operation, self.message)?,
            // An answer that is not AWS's came from somewhere: the network works.
            None if self.foreign_answer => write!(
                f,
                "{} failed: {}\nhint: check --endpoint-url (AWS_ENDPOINT_URL): leave it out for AWS, or give an \
                 emulator that serves this call",
                self.operation, self.message
            )?,
            None => write!(
                f,
                "{} failed: {}\nhint: check the network, --region and --endpoint-url",
                self.operation, self.message
            )?,
        }
        if let Some(hint) = self.hint() {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for AwsError {}

/// Whether an SDK error carries one of `codes`.
pub fn has_code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>, codes: &[&str]) -> bool {
    error.code().is_some_and(|code| codes.contains(&code))
}

/// The output of a read call, `None` when the service says the thing does not exist.
pub fn found<T, E, R>(
    operation: &'static str,
    result: Result<T, SdkError<E, R>>,
    not_found: &[&str],
) -> Result<Option<T>, AwsError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: RawAnswer + fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(output) => Ok(Some(output)),
        Err(error) if has_code(&error, not_found) => Ok(None),
        Err(error) => Err(AwsError::new(operation, error)),
    }
}

/// The output of a delete call; a thing already gone counts as deleted.
pub fn gone<T, E, R>(
    operation: &'static str,
    result: Result<T, SdkError<E, R>>,
    not_found: &[&str],
) -> Result<bool, AwsError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: RawAnswer + fmt::Debug + Send + Sync + 'static,
{
    found(operation, result, not_found).map(|output| output.is_some())
}

/// What a create call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Made<T> {
    /// Made by this call.
    Created(T),
    /// There already: made by a run whose answer was lost, a concurrent install, or
    /// since it was read. The caller adopts it.
    Existed,
}

impl<T> Made<T> {
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Made<U> {
        match self {
            Self::Created(output) => Made::Created(f(output)),
            Self::Existed => Made::Existed,
        }
    }
}

/// The output of a create call, `Existed` when the service says it exists already (an
/// error with one of `exists`).
pub(crate) fn made<T, E, R>(
    operation: &'static str,
    result: Result<T, SdkError<E, R>>,
    exists: &[&str],
) -> Result<Made<T>, AwsError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: RawAnswer + fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(output) => Ok(Made::Created(output)),
        Err(error) if has_code(&error, exists) => Ok(Made::Existed),
        Err(error) => Err(AwsError::new(operation, error)),
    }
}

/// Extension to name the operation when an SDK call fails.
pub trait Operation<T> {
    fn op(self, operation: &'static str) -> Result<T, AwsError>;
}

impl<T, E, R> Operation<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: RawAnswer + fmt::Debug + Send + Sync + 'static,
{
    fn op(self, operation: &'static str) -> Result<T, AwsError> {
        self.map_err(|error| AwsError::new(operation, error))
    }
}
