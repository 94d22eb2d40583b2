//! SigV4 for `--auth iam` stacks, with the `aws-sigv4` crate as the AWS SDKs sign.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use crate::error::{Error, causes};

/// Credentials this close to their expiry are fetched anew, so that none expires in
/// flight (the SDKs' identity cache refreshes five minutes ahead too).
const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);

/// The AWS service a counter API's front authorizes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningService {
    /// A REST API with `authorizationType: AWS_IAM`.
    ExecuteApi,
    /// A function URL with auth type `AWS_IAM`.
    Lambda,
}

impl SigningService {
    /// The signing name: `execute-api` or `lambda`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ExecuteApi => "execute-api",
            Self::Lambda => "lambda",
        }
    }

    /// The IAM action a caller needs to be let in.
    pub fn invoke_action(self) -> &'static str {
        match self {
            Self::ExecuteApi => "execute-api:Invoke",
            Self::Lambda => "lambda:InvokeFunctionUrl",
        }
    }

    /// What a URL's host says: `ID.lambda-url.REGION.on.aws` is a function URL (`lambda`),
    /// anything else is signed for `execute-api`; the region when the host names one
    /// (`ID.execute-api.REGION.amazonaws.com` too).
    pub fn for_url(url: &str) -> (Self, Option<String>) {
        let host = reqwest::Url::parse(url).ok().and_then(|url| url.host_str().map(str::to_owned)).unwrap_or_default();
        let labels: Vec<&str> = host.split('.').collect();
        match labels.as_slice() {
            [_, "lambda-url", region, "on", "aws"] => (Self::Lambda, Some((*region).to_owned())),
            [_, "execute-api", region, ..] => (Self::ExecuteApi, Some((*region).to_owned())),
            _ => (Self::ExecuteApi, None),
        }
    }
}

/// Signs each request with SigV4 for one service and region, with credentials from a
/// provider (refreshed before they expire) or given outright.
#[derive(Clone)]
pub struct Signer {
    region: String,
    service: SigningService,
    provider: SharedCredentialsProvider,
    cached: Arc<Mutex<Option<Credentials>>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Signer").field("region", &self.region).field("service", &self.service).finish()
    }
}

impl Signer {
    /// Signs for `service` in `region` with what `provider` gives (such as an SDK
    /// configuration's `credentials_provider()`, or fixed [`Credentials`]).
    pub fn new(
        region: impl Into<String>,
        service: SigningService,
        provider: impl ProvideCredentials + 'static,
    ) -> Self {
        Self {
            region: region.into(),
            service,
            provider: SharedCredentialsProvider::new(provider),
            cached: Arc::new(Mutex::new(None)),
        }
    }

    /// Signs for the service `url` calls ([`SigningService::for_url`]), in the region of
    /// its host, else the chain's, with credentials from the AWS default chain.
    #[cfg(feature = "aws-config")]
    pub async fn from_environment(url: &str) -> Result<Self, Error> {
        let (service, host_region) = SigningService::for_url(url);
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = host_region {
            loader = loader.region(aws_config::Region::new(region));
        }
        let config = loader.load().await;
        Self::from_config(&config, service)
    }

    /// Signs for `service` with an SDK configuration's region and credentials provider.
    #[cfg(feature = "aws-config")]
    pub fn from_config(config: &aws_config::SdkConfig, service: SigningService) -> Result<Self, Error> {
        let region = config.region().ok_or_else(|| Error::Credentials("no AWS region is set".to_owned()))?;
        let provider = config
            .credentials_provider()
            .ok_or_else(|| Error::Credentials("no AWS credentials provider is configured".to_owned()))?;
        Ok(Self::new(region.to_string(), service, provider))
    }

    /// The region it signs for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The service it signs for.
    pub fn service(&self) -> SigningService {
        self.service
    }

    /// The credentials it signs with now: the provider's, fetched again five minutes
    /// before they expire.
    pub async fn credentials(&self) -> Result<Credentials, Error> {
        let fresh = |credentials: &Credentials| {
            credentials.expiry().is_none_or(|expiry| expiry > SystemTime::now() + REFRESH_AHEAD)
        };
        if let Some(credentials) = self.cached.lock().expect("never poisoned").as_ref().filter(|c| fresh(c)) {
            return Ok(credentials.clone());
        }
        let credentials =
            self.provider.provide_credentials().await.map_err(|error| Error::Credentials(causes(&error)))?;
        *self.cached.lock().expect("never poisoned") = Some(credentials.clone());
        Ok(credentials)
    }

    /// Adds `Authorization`, `X-Amz-Date` and, for temporary credentials,
    /// `X-Amz-Security-Token`; answers the access key id that signed.
    pub(crate) async fn sign(&self, request: &mut reqwest::Request) -> Result<String, Error> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let credentials = self.credentials().await?;
        let failed = |error: &dyn std::fmt::Display| Error::Signing(error.to_string());
        let identity = credentials.clone().into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service.name())
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|error| failed(&error))?
            .into();
        let body = request.body().and_then(reqwest::Body::as_bytes).unwrap_or_default();
        let headers = request.headers().iter().filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        let signable =
            SignableRequest::new(request.method().as_str(), request.url().as_str(), headers, SignableBody::Bytes(body))
                .map_err(|error| failed(&error))?;
        let (instructions, _) = sign(signable, &params).map_err(|error| failed(&error))?.into_parts();
        for (name, value) in instructions.headers() {
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|error| failed(&error))?;
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|error| failed(&error))?;
            request.headers_mut().insert(name, value);
        }
        Ok(credentials.access_key_id().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_names_the_service_and_region() {
        let of = |url| SigningService::for_url(url);
        assert_eq!(of("https://abc.lambda-url.eu-west-1.on.aws/"), (SigningService::Lambda, Some("eu-west-1".into())));
        assert_eq!(
            of("https://abc.execute-api.us-east-2.amazonaws.com/prod"),
            (SigningService::ExecuteApi, Some("us-east-2".into()))
        );
        assert_eq!(of("https://ids.example.com"), (SigningService::ExecuteApi, None));
    }

    #[tokio::test]
    async fn credentials_are_fetched_again_only_near_their_expiry() {
        use std::sync::atomic::{AtomicU32, Ordering};
        #[derive(Debug, Default)]
        struct Counting(Arc<AtomicU32>, Duration);
        impl ProvideCredentials for Counting {
            fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                self.0.fetch_add(1, Ordering::SeqCst);
                let expiry = SystemTime::now() + self.1;
                aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
                    "AKID",
                    "secret",
                    None,
                    Some(expiry),
                    "test",
                )))
            }
        }
        let fetched = Arc::new(AtomicU32::new(0));
        let lasting =
            Signer::new("us-east-1", SigningService::ExecuteApi, Counting(fetched.clone(), REFRESH_AHEAD * 2));
        for _ in 0..3 {
            lasting.credentials().await.unwrap();
        }
        assert_eq!(fetched.load(Ordering::SeqCst), 1);
        let expiring =
            Signer::new("us-east-1", SigningService::ExecuteApi, Counting(fetched.clone(), REFRESH_AHEAD / 2));
        for _ in 0..3 {
            expiring.credentials().await.unwrap();
        }
        assert_eq!(fetched.load(Ordering::SeqCst), 4);
    }
}
