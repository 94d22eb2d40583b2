//! Where a counter API is and how a call is let in: an endpoint, the one thing a client,
//! its fallbacks and the failover bookkeeping all name.

use counter_function::api::{INCREMENT_PATH, VALUE_PATH};

use crate::error::Error;
use crate::signer::Signer;

/// What a call carries to be let in.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Nothing: the front lets anyone call (or something in front of it decides).
    None,
    /// An API key, sent as `x-api-key` (API Gateway's usage plans, `counterctl serve`).
    ApiKey(String),
    /// A SigV4 signature (`--auth iam` stacks: `execute-api`, or `lambda` for a function URL).
    Iam(Signer),
}

/// Where a counter API is and how to call it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    url: reqwest::Url,
    auth: Auth,
    /// Sent with every call.
    headers: reqwest::header::HeaderMap,
}

impl Endpoint {
    /// The API below `url` (an invoke URL such as
    /// `https://ID.execute-api.REGION.amazonaws.com/prod`, a function URL, or
    /// `http://127.0.0.1:8080` for `counterctl serve`), called with `auth`.
    pub fn new(url: &str, auth: Auth) -> Result<Self, Error> {
        let invalid = || Error::InvalidUrl {
            url: url.to_owned(),
            reason: "it needs http:// or https:// and a host, e.g. http://127.0.0.1:8080".to_owned(),
        };
        let parsed = reqwest::Url::parse(url).map_err(|_| invalid())?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid());
        }
        // A route given as the base would become part of every counter's name.
        let route = [INCREMENT_PATH, VALUE_PATH].iter().any(|route| parsed.path().contains(route));
        if route || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(Error::InvalidUrl {
                url: url.to_owned(),
                reason: "give the API's base URL, without a route or query, e.g. http://127.0.0.1:8080 or \
                         https://ID.execute-api.REGION.amazonaws.com/prod: the client adds \
                         /counter/increment?counter=NAME"
                    .to_owned(),
            });
        }
        Ok(Self { url: parsed, auth, headers: reqwest::header::HeaderMap::new() })
    }

    /// Sends the header `name: value` with every call (with [`Auth::Iam`] it is signed
    /// with the rest), such as a proxy's mark on what it forwards.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self, Error> {
        let invalid =
            |error: &dyn std::fmt::Display| Error::InvalidHeader { name: name.to_owned(), reason: error.to_string() };
        let header = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|error| invalid(&error))?;
        let value = reqwest::header::HeaderValue::from_str(value).map_err(|error| invalid(&error))?;
        self.headers.insert(header, value);
        Ok(self)
    }

    /// The base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }

    /// How calls are let in.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The headers sent with every call ([`with_header`](Self::with_header)).
    pub(crate) fn headers(&self) -> &reqwest::header::HeaderMap {
        &self.headers
    }
}
