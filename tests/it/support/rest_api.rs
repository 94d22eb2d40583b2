//! API Gateway's REST API on loopback for one `{proxy+}` resource with Lambda proxy
//! integration under stage `prod`: HTTP requests become the v1 proxy events API Gateway
//! sends, and proxy responses become HTTP responses again.
//!
//! The front enforces what the deployed method says ([`MethodAuth`]), as API Gateway does
//! before it invokes anything: `apiKeyRequired` (the `x-api-key` header must hold the
//! stage's key) and `authorizationType: AWS_IAM` (each request must carry a valid SigV4
//! signature for `execute-api` by the test credentials). Refused requests get API
//! Gateway's 403 answers and never reach the function.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::LoopbackServer;
use super::deployed_lambda::DeployedLambda;
use super::function::Function;
use super::runtime_api::Outcome;

pub(crate) const STAGE: &str = "prod";

/// The service name requests to the REST API are signed for.
pub(crate) const EXECUTE_API: &str = "execute-api";

/// How far `X-Amz-Date` may be from the front's clock, either way.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// What the deployed `{proxy+}` method requires of a caller, as its method settings say.
/// The default requires nothing (`authorizationType: NONE`, no API key).
#[derive(Clone, Debug, Default)]
pub(crate) struct MethodAuth {
    /// `authorizationType: AWS_IAM`: requests must be SigV4-signed by these credentials.
    pub iam: Option<IamCaller>,
    /// `apiKeyRequired: true`, with the one key the stage's usage plan holds.
    pub api_key: Option<String>,
}

impl MethodAuth {
    /// `authorizationType: NONE`, no API key: anyone may call.
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// `apiKeyRequired: true`: `x-api-key` must equal `key`.
    pub(crate) fn api_key(key: impl Into<String>) -> Self {
        Self { iam: None, api_key: Some(key.into()) }
    }

    /// `authorizationType: AWS_IAM`: only `caller`'s SigV4-signed requests get through.
    pub(crate) fn aws_iam(caller: IamCaller) -> Self {
        Self { iam: Some(caller), api_key: None }
    }
}

/// The one IAM identity allowed to invoke an `AWS_IAM` method, and the API's region
/// (which a request's credential scope must name). Test credentials only.
#[derive(Clone, Debug)]
pub(crate) struct IamCaller {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Temporary credentials' token: requests must then carry it in `x-amz-security-token`.
    pub session_token: Option<String>,
    pub region: String,
}

impl IamCaller {
    pub(crate) fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
            region: region.into(),
        }
    }

    /// Long-term test credentials in `us-east-1`.
    pub(crate) fn for_tests() -> Self {
        Self::new("AKIDCOUNTERCTLTEST", "counterctl/test/wJalrXUtnFEMIK7MDENGbPxRfiCY", None, "us-east-1")
    }

    /// The credentials, for signing as this caller.
    pub(crate) fn credentials(&self) -> Credentials {
        Credentials::new(&self.access_key_id, &self.secret_access_key, self.session_token.clone(), None, "tests")
    }
}

pub(crate) struct RestApi {
    /// The invoke URL, e.g. `http://127.0.0.1:PORT/prod`.
    pub url: String,
    _server: LoopbackServer,
}

struct Front {
    target: Target,
    auth: MethodAuth,
}

/// What the method invokes.
enum Target {
    /// These execution environments, always.
    Function(Arc<Function>),
    /// What a stack in moto integrates at the time of each request.
    Deployed(Arc<DeployedLambda>),
}

impl RestApi {
    /// A front for `function` whose method requires what `auth` says ([`MethodAuth::none`]
    /// for nothing).
    pub(crate) async fn start_with_auth(function: Arc<Function>, auth: MethodAuth) -> Self {
        Self::start(Target::Function(function), auth).await
    }

    /// A front for a stack in moto: each request goes where the deployed stage, the
    /// function's policies and its alias send it ([`DeployedLambda`]).
    pub(crate) async fn start_deployed(deployed: Arc<DeployedLambda>, auth: MethodAuth) -> Self {
        Self::start(Target::Deployed(deployed), auth).await
    }

    async fn start(target: Target, auth: MethodAuth) -> Self {
        let app = axum::Router::new().fallback(forward).with_state(Arc::new(Front { target, auth }));
        let server = LoopbackServer::start(app).await;
        Self { url: format!("http://{}/{STAGE}", server.address), _server: server }
    }
}

async fn forward(
    State(front): State<Arc<Front>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let proxy = uri.path().strip_prefix(&format!("/{STAGE}/")).filter(|proxy| !proxy.is_empty());
    let Some(proxy) = proxy else {
        // Only `/{proxy+}` has a method; API Gateway answers anything else like this.
        return refusal(Refusal::missing_authentication_token());
    };
    // API Gateway authorizes the caller first, then checks the API key.
    let access_key = match &front.auth.iam {
        Some(caller) => match verify_sigv4(caller, EXECUTE_API, &method, &uri, &headers, &body, SystemTime::now()) {
            Ok(access_key) => Some(access_key),
            Err(refused) => return refusal(refused),
        },
        None => None,
    };
    if let Some(key) = &front.auth.api_key
        && headers.get("x-api-key").is_none_or(|given| given.as_bytes() != key.as_bytes())
    {
        return refusal(Refusal::new("ForbiddenException", "Forbidden"));
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let body = (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
    let mut event = rest_event(&method, proxy, &query, &headers, body, &peer.ip().to_string());
    let identity = &mut event["requestContext"]["identity"];
    if let Some(access_key) = access_key {
        identity["accessKey"] = json!(access_key);
    }
    if let Some(key) = &front.auth.api_key {
        identity["apiKey"] = json!(key);
        identity["apiKeyId"] = json!("k3yid12345");
    }
    let function = match &front.target {
        Target::Function(function) => Arc::clone(function),
        Target::Deployed(deployed) => match deployed.resolve().await {
            Ok(function) => function,
            Err(_) => return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"),
        },
    };
    match function.invoke(event).await {
        Outcome::Response(response) => {
            proxy_response(&response).unwrap_or_else(|| gateway_error(StatusCode::BAD_GATEWAY, "Internal server error"))
        }
        Outcome::Error { .. } => gateway_error(StatusCode::BAD_GATEWAY, "Internal server error"),
    }
}

/// A 403 API Gateway answers itself: its `x-amzn-ErrorType` and message. Also why
/// [`verify_sigv4`] refused a request.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub error_type: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(error_type: &'static str, message: impl Into<String>) -> Self {
        Self { error_type, message: message.into() }
    }

    fn missing_authentication_token() -> Self {
        Self::new("MissingAuthenticationTokenException", "Missing Authentication Token")
    }

    fn incomplete(message: impl Into<String>) -> Self {
        Self::new("IncompleteSignatureException", message)
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidSignatureException", message)
    }

    fn invalid_token() -> Self {
        // The type AWS's troubleshooting guide for API Gateway's 403s gives this message.
        Self::new("AccessDeniedException", "The security token included in the request is invalid.")
    }

    fn mismatch() -> Self {
        Self::invalid(
            "The request signature we calculated does not match the signature you provided. Check your AWS \
             Secret Access Key and signing method. Consult the service documentation for details.",
        )
    }
}

fn refusal(refused: Refusal) -> Response<Body> {
    Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", refused.error_type)
        .body(Body::from(json!({ "message": refused.message }).to_string()))
        .unwrap()
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
struct Authorization<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_authorization(header: &str) -> Result<Authorization<'_>, Refusal> {
    let (algorithm, parameters) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for pair in parameters.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let Some((name, value)) = pair.split_once('=') else {
            let hashed = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, Sha256::digest(header));
            return Err(Refusal::incomplete(format!(
                "Invalid key=value pair (missing equal-sign) in Authorization header (hashed with SHA-256 and \
                 encoded with Base64): '{hashed}'."
            )));
        };
        match name.trim() {
            "Credential" => credential = Some(value.trim()),
            "SignedHeaders" => signed_headers = Some(value.trim()),
            "Signature" => signature = Some(value.trim()),
            _ => {}
        }
    }
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(Refusal::incomplete(format!(
            "Unsupported signing algorithm '{algorithm}'. Authorization={header}"
        )));
    }
    let mut missing = String::new();
    for (name, value) in [("Credential", credential), ("Signature", signature), ("SignedHeaders", signed_headers)] {
        if value.is_none() {
            missing.push_str(&format!("Authorization header requires '{name}' parameter. "));
        }
    }
    match (credential, signed_headers, signature) {
        (Some(credential), Some(signed_headers), Some(signature)) => {
            Ok(Authorization { credential, signed_headers, signature })
        }
        _ => Err(Refusal::incomplete(format!("{missing}Authorization={header}"))),
    }
}

/// Verifies a request's SigV4 signature for `service` as AWS does (API Gateway for an
/// `AWS_IAM` method with `execute-api`, a Function URL with auth type `AWS_IAM` with
/// `lambda`): rebuilds the canonical request from what arrived (method, path, query, the
/// `Host` header and the others named in `SignedHeaders`, the payload hash) and signs it
/// again with `caller`'s secret at the request's `X-Amz-Date`. `uri` may be in origin form
/// (`/path?query`) or, as a request to a proxy arrives, absolute form; only its path and
/// query count. Returns the caller's access key id.
pub(crate) fn verify_sigv4(
    caller: &IamCaller,
    service: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<String, Refusal> {
    let Some(header) = headers.get(http::header::AUTHORIZATION) else {
        return Err(Refusal::missing_authentication_token());
    };
    let header = header.to_str().map_err(|_| Refusal::incomplete("Authorization header is not ASCII."))?;
    let authorization = parse_authorization(header)?;
    let Some(amz_date) = headers.get("x-amz-date").and_then(|date| date.to_str().ok()) else {
        return Err(Refusal::incomplete(format!(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. \
             Authorization={header}"
        )));
    };
    let Some(signed_at) = parse_amz_date(amz_date) else {
        return Err(Refusal::incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
        )));
    };

    // Credential=AKID/YYYYMMDD/REGION/SERVICE/aws4_request
    let scope: Vec<&str> = authorization.credential.split('/').collect();
    let [access_key_id, date, region, scope_service, terminator] = scope[..] else {
        return Err(Refusal::incomplete(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            scope.get(2).unwrap_or(&"")
        )));
    };
    if region != caller.region {
        return Err(Refusal::invalid(format!("Credential should be scoped to a valid region, not '{region}'. ")));
    }
    if scope_service != service {
        return Err(Refusal::invalid(format!("Credential should be scoped to correct service: '{service}'. ")));
    }
    if terminator != "aws4_request" {
        return Err(Refusal::invalid(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. "
        )));
    }
    if date != &amz_date[..8] {
        return Err(Refusal::invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
             '{date}' != '{}', from '{amz_date}'.",
            &amz_date[..8]
        )));
    }

    if signed_at + MAX_SKEW < now {
        return Err(Refusal::invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
            format_amz_date(now - MAX_SKEW),
            format_amz_date(now)
        )));
    }
    if signed_at > now + MAX_SKEW {
        return Err(Refusal::invalid(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
            format_amz_date(now + MAX_SKEW),
            format_amz_date(now)
        )));
    }

    // Only the one test identity exists, with its session token if it has one.
    let token = headers.get("x-amz-security-token").map(|token| token.as_bytes());
    if access_key_id != caller.access_key_id || token != caller.session_token.as_ref().map(|token| token.as_bytes()) {
        return Err(Refusal::invalid_token());
    }

    let signed: Vec<&str> = authorization.signed_headers.split(';').collect();
    if !signed.contains(&"host") {
        return Err(Refusal::incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."));
    }
    match recompute_signature(caller, service, method, uri, headers, &signed, body, signed_at) {
        Some(signature) if signature == authorization.signature => Ok(access_key_id.to_owned()),
        _ => Err(Refusal::mismatch()),
    }
}

/// The signature of the request rebuilt from the received parts, restricted to the `signed`
/// headers, at `signed_at`; `None` when the parts cannot be signed (which no correct
/// signature could match either).
#[allow(clippy::too_many_arguments, reason = "the parts of one request")]
fn recompute_signature(
    caller: &IamCaller,
    service: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    signed: &[&str],
    body: &[u8],
    signed_at: SystemTime,
) -> Option<String> {
    let host = headers.get(http::header::HOST)?.to_str().ok()?;
    let path_and_query = uri.path_and_query().map_or("/", |path_and_query| path_and_query.as_str());
    let mut builder = http::Request::builder().method(method.clone()).uri(format!("http://{host}{path_and_query}"));
    for name in signed {
        for value in headers.get_all(*name) {
            builder = builder.header(*name, value);
        }
    }
    let mut request = builder.body(()).ok()?;

    // The payload hash the client declared, which must then be the body's, or the body's.
    let body_hash = hex::encode(Sha256::digest(body));
    let declared = request.headers().get("x-amz-content-sha256").map(|hash| hash.to_str().map(str::to_owned));
    let payload = match declared {
        Some(Ok(hash)) if hash == body_hash => SignableBody::Precomputed(hash),
        Some(_) => return None,
        None => SignableBody::Bytes(body),
    };
    // A session token is part of the signature when the client signed it.
    let token = signed
        .contains(&"x-amz-security-token")
        .then(|| headers.get("x-amz-security-token")?.to_str().ok().map(str::to_owned))
        .flatten();
    let credentials = Credentials::new(&caller.access_key_id, &caller.secret_access_key, token, None, "rest-api");
    let identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = None; // sign exactly what the client named
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&caller.region)
        .name(service)
        .time(signed_at)
        .settings(settings)
        .build()
        .ok()?
        .into();
    let signable_headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect::<Option<_>>()?;
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(method.as_str(), uri, signable_headers.into_iter(), payload).ok()?;
    let (instructions, _) = sign(signable, &params).ok()?.into_parts();
    instructions.apply_to_request_http1x(&mut request);
    let recomputed = request.headers().get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let recomputed = parse_authorization(recomputed).ok()?;
    Some(recomputed.signature.to_owned())
}

/// `X-Amz-Date`'s form: `20261124T100000Z`.
pub(crate) fn format_amz_date(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap());
    let (hour, minute, second) = (second_of_day / 3600, second_of_day / 60 % 60, second_of_day % 60);
    format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z")
}

fn parse_amz_date(date: &str) -> Option<SystemTime> {
    let bytes = date.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let text = date.get(range)?;
        text.bytes().all(|byte| byte.is_ascii_digit()).then(|| text.parse().ok())?
    };
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?);
    (format_amz_date(time) == date).then_some(time) // no 30 February
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    (if month <= 2 { year_of_era + era * 400 + 1 } else { year_of_era + era * 400 }, month, day)
}

/// The event API Gateway sends for `{proxy+}` under stage `prod`. `proxy` is the path
/// below the stage without its leading slash; headers and query pairs in request order.
pub(crate) fn rest_event(
    method: &Method,
    proxy: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    body: Option<String>,
    source_ip: &str,
) -> Value {
    let single = |pairs: &[(String, String)]| -> Value {
        if pairs.is_empty() {
            return Value::Null;
        }
        let map: BTreeMap<&str, &str> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        json!(map)
    };
    let multi = |pairs: &[(String, String)]| -> Value {
        if pairs.is_empty() {
            return Value::Null;
        }
        let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (key, value) in pairs {
            map.entry(key).or_default().push(value);
        }
        json!(map)
    };
    let path = format!("/{proxy}");
    let user_agent = headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("user-agent")).map(|(_, v)| v.clone());
    json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method.as_str(),
        "headers": single(headers),
        "multiValueHeaders": multi(headers),
        "queryStringParameters": single(query),
        "multiValueQueryStringParameters": multi(query),
        "pathParameters": {"proxy": proxy},
        "stageVariables": null,
        "requestContext": {
            "resourceId": "a1b2c3",
            "resourcePath": "/{proxy+}",
            "httpMethod": method.as_str(),
            "extendedRequestId": "BQGojGkyoAMFZ1g=",
            "requestTime": "24/Nov/2026:10:00:00 +0000",
            "path": format!("/{STAGE}{path}"),
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": "abcdef1234",
            "requestTimeEpoch": 1795514400000u64,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {
                "cognitoIdentityPoolId": null,
                "accountId": null,
                "cognitoIdentityId": null,
                "caller": null,
                "sourceIp": source_ip,
                "principalOrgId": null,
                "accessKey": null,
                "cognitoAuthenticationType": null,
                "cognitoAuthenticationProvider": null,
                "userArn": null,
                "userAgent": user_agent,
                "user": null
            },
            "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
            "deploymentId": "d1e2f3",
            "apiId": "abcdef1234"
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// An HTTP response from a Lambda proxy integration response; `None` when malformed,
/// which API Gateway answers with 502.
fn proxy_response(response: &Value) -> Option<Response<Body>> {
    let status = StatusCode::from_u16(u16::try_from(response.get("statusCode")?.as_u64()?).ok()?).ok()?;
    let mut builder = Response::builder().status(status);
    if let Some(headers) = response.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            builder = builder.header(name, value.as_str()?);
        }
    }
    if let Some(headers) = response.get("multiValueHeaders").and_then(Value::as_object) {
        for (name, values) in headers {
            for value in values.as_array()? {
                if !builder.headers_ref()?.contains_key(name) {
                    builder = builder.header(name, value.as_str()?);
                }
            }
        }
    }
    if response.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        return None; // this function only sends text
    }
    let body = response.get("body").and_then(Value::as_str).unwrap_or("").to_owned();
    builder.body(Body::from(body)).ok()
}

fn gateway_error(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(json!({ "message": message }).to_string()))
        .unwrap()
}

/// Signs `request` with SigV4 as a client does, for `service` in `region` at `at`: adds
/// `x-amz-date`, `authorization` and, for temporary credentials, `x-amz-security-token`.
/// The host signed is the URL's.
pub(crate) fn sign_as_client(
    request: &mut reqwest::Request,
    credentials: &Credentials,
    region: &str,
    service: &str,
    at: SystemTime,
    settings: SigningSettings,
) {
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let headers: Vec<(&str, &str)> =
        request.headers().iter().map(|(name, value)| (name.as_str(), value.to_str().unwrap())).collect();
    let body = request.body().map(|body| body.as_bytes().expect("a buffered body")).unwrap_or_default();
    let signable = SignableRequest::new(
        request.method().as_str(),
        request.url().as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _signature) = sign(signable, &params).unwrap().into_parts();
    for (name, value) in instructions.headers() {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, reqwest::header::HeaderValue::from_str(value).unwrap());
    }
}
