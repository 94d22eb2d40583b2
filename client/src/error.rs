//! What a call to the counter API can fail with.

use std::time::Duration;

/// A call that failed, with what the API or its front said.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No answer: the connection failed, timed out or was cut.
    #[error("could not reach {url}: {reason}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The transport's error, with its causes.
        reason: String,
    },
    /// The counter API's own refusal.
    #[error("the counter API answered {status} {code}: {description}")]
    Service {
        /// The HTTP status.
        status: u16,
        /// The API's `error_code`, such as `counter_not_found`.
        code: String,
        /// Its `error_description`, for people.
        description: String,
        /// Its `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The front refused the call before the API saw it (a missing or wrong API key,
    /// or a signature where none is accepted).
    #[error("the API's front answered {status}: {message}")]
    Forbidden {
        /// The HTTP status (403).
        status: u16,
        /// The front's `message`.
        message: String,
    },
    /// The front refused a signed call: the identity may lack `action`, or its
    /// credentials are wrong or expired.
    #[error("{status} for a call signed by {access_key}: {message} (it needs {action})")]
    SignatureRefused {
        /// The HTTP status (403).
        status: u16,
        /// The front's `message`.
        message: String,
        /// The access key id that signed.
        access_key: String,
        /// The IAM action the caller needs, such as `execute-api:Invoke`.
        action: &'static str,
    },
    /// The request could not be signed.
    #[error("signing the request: {0}")]
    Signing(String),
    /// No credentials to sign with.
    #[error("reading the AWS credentials to sign with: {0}")]
    Credentials(String),
    /// An answer that is not the API's: not JSON, or not the body the call expects.
    #[error("{url} answered {status} with an unexpected body: {body}")]
    Unexpected {
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The body's first 200 characters.
        body: String,
    },
    /// A header that cannot be sent ([`Endpoint::with_header`](crate::Endpoint::with_header)).
    #[error("the header {name:?} cannot be sent: {reason}")]
    InvalidHeader {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not a URL of a counter API.
    #[error("{url} is not a counter API URL: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// The API's `error_code`, when it answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The API refused the request itself (a 4xx with its `error_code`, throttling
    /// aside, or `508 Loop Detected`, a request that came back to a server it had passed
    /// through): the same request gets the same answer again.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Service { status: 400..=499 | 508, .. }) && self.status() != Some(429)
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Service { status, .. }
            | Self::Forbidden { status, .. }
            | Self::SignatureRefused { status, .. }
            | Self::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An error with its causes on one line, each by its `Display`, as in "error sending
/// request: … Connection refused". Unlike the AWS SDK's `DisplayErrorContext`, it adds no
/// `Debug` dump of the error.
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
