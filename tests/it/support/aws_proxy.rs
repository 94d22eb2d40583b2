//! An HTTP proxy on loopback between an AWS client and moto that records each AWS action
//! and can answer chosen actions with an injected error instead of forwarding them, or
//! alter moto's answer to them (states moto never reports, such as a function still
//! `Pending`). Injected errors are shaped like the service's protocol (JSON, query/XML or
//! REST-JSON), so the SDK parses their code and message as it would AWS's.
//!
//! Actions are chosen by name, never by position: concurrent calls make positions differ
//! from run to run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use serde_json::Value;

use super::LoopbackServer;
use super::global_tables::{GlobalTables, Route, resigned_for, signed_region, table_of};

/// An error response to inject.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub status: u16,
    /// The AWS error code, e.g. `ProvisionedThroughputExceededException`.
    pub code: String,
    pub message: String,
}

impl Fault {
    pub(crate) fn new(status: u16, code: &str, message: &str) -> Self {
        Self { status, code: code.into(), message: message.into() }
    }
}

/// A whole answer, given instead of moto's (for what moto does not serve).
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub content_type: &'static str,
    pub body: Bytes,
}

/// A change to moto's answer.
#[derive(Debug, Clone)]
enum Patch {
    /// Deep-merged into a JSON answer.
    Json(Value),
    /// Every `from` in a query/XML answer replaced by `to`.
    Text { from: String, to: String },
}

/// A request as the proxy saw it, for what IAM would authorize it as.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// The signing name in its SigV4 credential scope: `dynamodb`, `monitoring`, `lambda`, …
    pub service: String,
    /// The region in its SigV4 credential scope.
    pub region: String,
    pub method: String,
    pub path: String,
    /// The query string (Lambda's `Qualifier`), empty when there is none.
    pub query: String,
    /// JSON protocols' `X-Amz-Target`, query protocols' `Action`, else empty.
    pub action: String,
    /// A JSON body (long strings, such as a zip, cut short), a query protocol's form as an
    /// object, or `null`.
    pub body: Value,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    actions: Mutex<Vec<String>>,
    recorded: Mutex<Vec<Recorded>>,
    /// Per action pattern: the fault and how many more requests get it.
    faults: Mutex<HashMap<String, (Fault, usize)>>,
    /// Per action pattern: how many more requests are forwarded to moto, applied there,
    /// and then answered with a 503 instead of moto's answer (a lost answer).
    lost_answers: Mutex<HashMap<String, usize>>,
    /// Per action pattern: an answer given in moto's place, and how many more get it.
    answers: Mutex<HashMap<String, (Answer, usize)>>,
    /// Per action pattern: the change made to moto's answer and how many more answers
    /// get it.
    patches: Mutex<HashMap<String, (Patch, usize)>>,
    /// Added before forwarding each request, to mimic AWS's round trips.
    latency: Mutex<Duration>,
    /// Requests forwarded to moto and not yet answered.
    in_flight: AtomicUsize,
    /// Held while a write AWS would check against what exists (AddPermission,
    /// CreateUsagePlanKey) is checked and forwarded, so two at once cannot both pass.
    checked_writes: tokio::sync::Mutex<()>,
    /// DynamoDB global tables, which moto has not.
    global_tables: Mutex<GlobalTables>,
    /// Per region: the fault every DynamoDB request signed for it gets (an outage).
    region_faults: Mutex<HashMap<String, Fault>>,
}

pub(crate) struct AwsProxy {
    pub url: String,
    shared: Arc<Shared>,
    _server: LoopbackServer,
}

impl AwsProxy {
    pub(crate) async fn start(upstream: &str) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            actions: Mutex::default(),
            recorded: Mutex::default(),
            faults: Mutex::default(),
            lost_answers: Mutex::default(),
            answers: Mutex::default(),
            patches: Mutex::default(),
            latency: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            checked_writes: tokio::sync::Mutex::new(()),
            global_tables: Mutex::default(),
            region_faults: Mutex::default(),
        });
        // CreateFunction carries the whole zip, past axum's default 2 MB limit.
        let app = axum::Router::new()
            .fallback(forward)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(Arc::clone(&shared));
        let server = LoopbackServer::start(app).await;
        Self { url: format!("http://{}", server.address), shared, _server: server }
    }

    /// The actions seen so far, in order, e.g. `UpdateItem`.
    pub(crate) fn actions(&self) -> Vec<String> {
        self.shared.actions.lock().unwrap().clone()
    }

    /// Every request seen so far.
    pub(crate) fn recorded(&self) -> Vec<Recorded> {
        self.shared.recorded.lock().unwrap().clone()
    }

    /// The actions seen so far that change something (not Get/List/Describe).
    pub(crate) fn mutating_actions(&self) -> Vec<String> {
        self.actions().into_iter().filter(|action| is_mutating(action)).collect()
    }

    /// Answers the next `times` requests for `action` with `fault`. In `action`, `*`
    /// stands for one path segment, e.g. `DELETE /restapis/*`.
    pub(crate) fn inject(&self, action: &str, fault: Fault, times: usize) {
        self.shared.faults.lock().unwrap().insert(action.to_owned(), (fault, times));
    }

    /// Forwards the next `times` requests for `action` to moto, which applies them, and
    /// answers each with a 503 instead of moto's answer: a call applied whose answer was
    /// lost, which the SDK retries (a 503 is a transient error to it). `action` as for
    /// [`inject`](Self::inject).
    pub(crate) fn lose_answer(&self, action: &str, times: usize) {
        self.shared.lost_answers.lock().unwrap().insert(action.to_owned(), times);
    }

    /// Answers the next `times` requests for `action` with `answer` (status 200), without
    /// forwarding them, before any fault injected for it: what moto does not serve
    /// faithfully, such as StartLiveTail's event stream (moto 5.2.5 streams every event
    /// of the last log group made, whichever is asked for).
    pub(crate) fn answer(&self, action: &str, answer: Answer, times: usize) {
        self.shared.answers.lock().unwrap().insert(action.to_owned(), (answer, times));
    }

    /// Alters moto's answer to the next `times` requests for `action` (a pattern as for
    /// [`inject`](Self::inject), named as recorded, e.g. `DescribeTable` or
    /// `GET /2015-03-31/functions/*/configuration`), to simulate what moto never says: a
    /// function `Pending` or with an update `InProgress`, a table `UPDATING`.
    ///
    /// The request still goes to moto and does its work there; the JSON body of moto's
    /// answer is then deep-merged with `patch`: objects key by key, recursively, any other
    /// value (arrays included) replaced, `null` set as `null`. Only successful (2xx) answers
    /// are patched and counted; moto's errors pass through as they are. A patched answer
    /// that is not JSON (IAM's and STS's XML) becomes a 502 naming the action, so a
    /// misdirected patch fails loudly. A later call for the same pattern replaces this one.
    pub(crate) fn patch_response(&self, action: &str, patch: Value, times: usize) {
        self.shared.patches.lock().unwrap().insert(action.to_owned(), (Patch::Json(patch), times));
    }

    /// As [`patch_response`](Self::patch_response), for the query protocols' XML answers
    /// (SNS, CloudWatch, IAM): every `from` in moto's answer becomes `to`, to simulate what
    /// moto never says (an email subscription still `PendingConfirmation`). An answer
    /// without `from` becomes a 502 naming the action, so a misdirected patch fails loudly.
    pub(crate) fn replace_in_response(&self, action: &str, from: &str, to: &str, times: usize) {
        let patch = Patch::Text { from: from.to_owned(), to: to.to_owned() };
        self.shared.patches.lock().unwrap().insert(action.to_owned(), (patch, times));
    }

    /// How many of the actions seen so far match `action_pattern` (`*` = one path segment).
    pub(crate) fn count(&self, action_pattern: &str) -> usize {
        self.actions().iter().filter(|action| matches(action_pattern, action)).count()
    }

    /// Where the first action matching `action_pattern` is among the actions seen so far.
    pub(crate) fn position(&self, action_pattern: &str) -> Option<usize> {
        self.actions().iter().position(|action| matches(action_pattern, action))
    }

    /// Where the last action matching `action_pattern` is among the actions seen so far,
    /// e.g. to show that the last poll came before the first write.
    pub(crate) fn last_position(&self, action_pattern: &str) -> Option<usize> {
        self.actions().iter().rposition(|action| matches(action_pattern, action))
    }

    /// Waits until every request forwarded so far has been answered by moto.
    pub(crate) async fn settle(&self) {
        while self.shared.in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// How global tables answer: `creating_describes` `DescribeTable`s after a table is
    /// made global show its new replicas `CREATING`; `list_asking_region` says whether
    /// `Replicas` lists the region asked from.
    pub(crate) fn set_global_tables(&self, creating_describes: usize, list_asking_region: bool) {
        let mut tables = self.shared.global_tables.lock().unwrap();
        tables.creating_describes = creating_describes;
        tables.list_asking_region = list_asking_region;
    }

    /// The global table `table`, if the proxy made it one: home, replicas and witness.
    pub(crate) fn global_table(&self, table: &str) -> Option<(String, Vec<String>, Option<String>)> {
        let tables = self.shared.global_tables.lock().unwrap();
        tables
            .get(table)
            .filter(|global| global.replicas.len() > 1)
            .map(|global| (global.home.clone(), global.replicas.clone(), global.witness.clone()))
    }

    /// Answers every DynamoDB request signed for `region` with `fault` (a region's
    /// DynamoDB down), until `None`.
    pub(crate) fn region_outage(&self, region: &str, fault: Option<Fault>) {
        let mut faults = self.shared.region_faults.lock().unwrap();
        match fault {
            Some(fault) => faults.insert(region.to_owned(), fault),
            None => faults.remove(region),
        };
    }

    /// Mimics AWS's round trips (the install bench measures the critical path with it).
    pub(crate) fn set_latency(&self, latency: Duration) {
        *self.shared.latency.lock().unwrap() = latency;
    }
}

/// Whether an action changes something: reads are Get/List/Describe calls, or GET for
/// REST protocols.
pub(crate) fn is_mutating(action: &str) -> bool {
    let read_prefixes = ["Get", "List", "Describe", "Scan", "GET "];
    !read_prefixes.iter().any(|prefix| action.starts_with(prefix))
}

/// `pattern` with `*` matching exactly one path segment (no `/`).
fn matches(pattern: &str, action: &str) -> bool {
    let (pattern, action): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), action.split('/').collect());
    pattern.len() == action.len() && pattern.iter().zip(&action).all(|(p, a)| *p == "*" || p == a)
}

/// The action a request calls: JSON protocols name it in `X-Amz-Target`, query
/// protocols in the `Action` form field, REST protocols by method and path.
fn action_of(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> String {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    if let Some((_, action)) = form_urlencoded::parse(body).find(|(key, _)| key == "Action") {
        return action.into_owned();
    }
    format!("{method} {}", uri.path())
}

fn recorded(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Recorded {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default();
    // Credential=AKID/YYYYMMDD/REGION/SERVICE/aws4_request
    let scope = header("authorization").split("Credential=").nth(1).unwrap_or_default();
    let service = scope.split(['/', ',']).nth(3).unwrap_or_default().to_owned();
    let region = scope.split(['/', ',']).nth(2).unwrap_or_default().to_owned();
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let (action, body) = if !header("x-amz-target").is_empty() {
        let target = header("x-amz-target");
        (
            target.rsplit('.').next().unwrap_or(target).to_owned(),
            shortened(serde_json::from_slice(body).unwrap_or(Value::Null)),
        )
    } else if let Some((_, action)) = form.iter().find(|(key, _)| key == "Action") {
        (
            action.clone(),
            Value::Object(form.iter().map(|(key, value)| (key.clone(), Value::from(value.as_str()))).collect()),
        )
    } else {
        (String::new(), shortened(serde_json::from_slice(body).unwrap_or(Value::Null)))
    };
    let query = uri.query().unwrap_or_default().to_owned();
    Recorded { service, region, method: method.to_string(), path: uri.path().to_owned(), query, action, body }
}

/// `value` with its long strings (a function's zip) cut short.
fn shortened(value: Value) -> Value {
    match value {
        Value::String(text) if text.len() > 1024 => Value::from("…"),
        Value::Array(items) => Value::Array(items.into_iter().map(shortened).collect()),
        Value::Object(fields) => {
            Value::Object(fields.into_iter().map(|(key, value)| (key, shortened(value))).collect())
        }
        other => other,
    }
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    mut body: Bytes,
) -> Response<Body> {
    let action = action_of(&method, &uri, &headers, &body);
    shared.actions.lock().unwrap().push(action.clone());
    shared.recorded.lock().unwrap().push(recorded(&method, &uri, &headers, &body));
    let canned = {
        let mut answers = shared.answers.lock().unwrap();
        let found = answers.iter_mut().find(|(pattern, (_, remaining))| *remaining > 0 && matches(pattern, &action));
        found.map(|(_, (answer, remaining))| {
            *remaining -= 1;
            answer.clone()
        })
    };
    if let Some(canned) = canned {
        let builder = Response::builder().status(StatusCode::OK).header("x-amzn-requestid", "injected-answer");
        return builder.header("content-type", canned.content_type).body(Body::from(canned.body)).unwrap();
    }
    let fault = {
        let mut faults = shared.faults.lock().unwrap();
        let injected = faults.iter_mut().find(|(pattern, (_, remaining))| *remaining > 0 && matches(pattern, &action));
        match injected {
            Some((_, (fault, remaining))) => {
                *remaining -= 1;
                Some(fault.clone())
            }
            None => None,
        }
    };
    if let Some(fault) = fault {
        return fault_response(&fault, &headers, &body);
    }
    let mut headers = headers;
    // DynamoDB's global tables: a request in a replica region goes to the home region's
    // table, and what moto does not know is answered here.
    let dynamodb =
        headers.get("x-amz-target").and_then(|t| t.to_str().ok()).is_some_and(|t| t.starts_with("DynamoDB_"));
    let mut global_description = None;
    if dynamodb {
        let authorization = headers.get("authorization").and_then(|a| a.to_str().ok()).unwrap_or_default().to_owned();
        let region = signed_region(&authorization).unwrap_or("us-east-1").to_owned();
        let outage = shared.region_faults.lock().unwrap().get(&region).cloned();
        if let Some(fault) = outage {
            return fault_response(&fault, &headers, &body);
        }
        let mut request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let table = table_of(&request);
        let makes_global = action == "UpdateTable"
            && request.get("ReplicaUpdates").is_some()
            && shared.global_tables.lock().unwrap().get(&table).is_none();
        let empty = !makes_global || table_is_empty(&shared, &headers, &table).await;
        let route = shared.global_tables.lock().unwrap().route(&action, &region, &request, || empty);
        match route {
            Route::Refuse(fault) => return fault_response(&fault, &headers, &body),
            Route::Forward { region: to } => {
                if to != region
                    && let Some(resigned) = resigned_for(&authorization, &to)
                {
                    headers.insert("authorization", resigned.parse().unwrap());
                    if let Some(arn) = request["ResourceArn"].as_str() {
                        request["ResourceArn"] = Value::from(arn.replace(&format!(":{region}:"), &format!(":{to}:")));
                        body = serde_json::to_vec(&request).unwrap().into();
                    }
                }
            }
        }
        if matches!(action.as_str(), "DescribeTable" | "UpdateTable") {
            global_description = Some((table, region));
        }
    }
    let adds_permission = matches("POST /2015-03-31/functions/*/policy", &action);
    let adds_key = matches("POST /usageplans/*/keys", &action);
    let _one_at_a_time = if adds_permission || adds_key { Some(shared.checked_writes.lock().await) } else { None };
    let conflict = match (adds_permission, adds_key) {
        (true, _) => duplicate_statement(&shared, &uri, &headers, &body).await,
        (_, true) => key_in_another_plan(&shared, &uri, &headers, &body).await,
        _ => None,
    };
    if let Some(conflict) = conflict {
        return fault_response(&conflict, &headers, &body);
    }
    let lose_answer = {
        let mut lost = shared.lost_answers.lock().unwrap();
        let pending = lost.iter_mut().find(|(pattern, remaining)| **remaining > 0 && matches(pattern, &action));
        match pending {
            Some((_, remaining)) => {
                *remaining -= 1;
                true
            }
            None => false,
        }
    };
    let latency = *shared.latency.lock().unwrap();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let url = format!("{}{}", shared.upstream, uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut request = shared.client.request(method, url).body(body.clone());
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    // Forwarded to the end even when the client goes away (as a killed process's last
    // call still reaches AWS); `settle` waits for these.
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    let shared = Arc::clone(&shared);
    let forwarded = tokio::spawn(async move {
        let answer = match request.send().await {
            Ok(upstream) => {
                let status = upstream.status();
                let headers = upstream.headers().clone();
                let body = upstream.bytes().await.unwrap_or_default();
                let mut patch = if status.is_success() { take_patch(&shared, &action) } else { None };
                if status.is_success()
                    && let Some((table, region)) = &global_description
                    && let Some(replicas) = shared.global_tables.lock().unwrap().description_patch(table, region)
                {
                    let key = if action == "DescribeTable" { "Table" } else { "TableDescription" };
                    patch = Some(Patch::Json(serde_json::json!({ key: replicas })));
                }
                let cannot = |why: &str| {
                    Response::builder()
                        .status(StatusCode::BAD_GATEWAY)
                        .body(Body::from(format!("proxy: cannot patch {action}: {why}")))
                        .unwrap()
                };
                match patch {
                    None => answer(status, &headers, body, false),
                    Some(Patch::Json(patch)) => match serde_json::from_slice::<Value>(&body) {
                        Ok(mut json) => {
                            merge(&mut json, patch);
                            answer(status, &headers, Bytes::from(json.to_string()), true)
                        }
                        Err(_) => cannot("moto's answer is not JSON"),
                    },
                    Some(Patch::Text { from, to }) => {
                        let text = String::from_utf8_lossy(&body);
                        if text.contains(&from) {
                            answer(status, &headers, Bytes::from(text.replace(&from, &to)), true)
                        } else {
                            cannot(&format!("moto's answer has no {from:?}"))
                        }
                    }
                }
            }
            Err(error) => {
                Response::builder().status(StatusCode::BAD_GATEWAY).body(Body::from(format!("proxy: {error}"))).unwrap()
            }
        };
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        answer
    });
    let answer = forwarded.await.unwrap();
    if lose_answer {
        let lost = Fault::new(503, "ServiceUnavailableException", "injected: applied, and the answer lost");
        return fault_response(&lost, &headers, &body);
    }
    answer
}

/// The patch for `action`'s answer, if one is pending, counted off.
fn take_patch(shared: &Shared, action: &str) -> Option<Patch> {
    let mut patches = shared.patches.lock().unwrap();
    let (_, (patch, remaining)) =
        patches.iter_mut().find(|(pattern, (_, remaining))| *remaining > 0 && matches(pattern, action))?;
    *remaining -= 1;
    Some(patch.clone())
}

/// Merges `patch` into `target`: objects key by key, recursively; anything else replaced.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

/// moto's answer passed on, with the length of `body` (which may have been patched). A
/// patched body drops DynamoDB's `x-amz-crc32`, which no longer holds.
fn answer(status: StatusCode, headers: &HeaderMap, body: Bytes, patched: bool) -> Response<Body> {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        let stale = patched && name == "x-amz-crc32";
        if name != "content-length" && name != "transfer-encoding" && !stale {
            response = response.header(name, value);
        }
    }
    response.body(Body::from(body)).unwrap()
}

/// Lambda refuses an AddPermission whose statement id the policy has already
/// (ResourceConflictException); moto accepts it and adds a second statement. The proxy
/// answers as Lambda does, so the tests see what real AWS makes of a repeated call. The
/// policy is the one of the call's `Qualifier` (an alias's), if it names one.
async fn duplicate_statement(shared: &Shared, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Option<Fault> {
    let statement_id = serde_json::from_slice::<Value>(body).ok()?["StatementId"].as_str()?.to_owned();
    let policy = upstream_get(shared, uri.path_and_query()?.as_str(), headers).await?;
    let policy: Value = serde_json::from_str(policy["Policy"].as_str()?).ok()?;
    let statements = policy["Statement"].as_array()?;
    statements.iter().any(|statement| statement["Sid"] == statement_id).then(|| {
        let message = format!(
            "The statement id ({statement_id}) provided already exists. Please provide a new statement id, or remove the existing statement."
        );
        Fault::new(409, "ResourceConflictException", &message)
    })
}

/// API Gateway refuses a key in two usage plans that share an API stage
/// (ConflictException); moto accepts it. The proxy answers as API Gateway does.
async fn key_in_another_plan(shared: &Shared, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Option<Fault> {
    let key_id = serde_json::from_slice::<Value>(body).ok()?["keyId"].as_str()?.to_owned();
    let plan_id = uri.path().split('/').nth(2)?.to_owned();
    let plans = upstream_get(shared, "/usageplans", headers).await?;
    let plans = plans["item"].as_array()?;
    let stages = |plan: &Value| -> Vec<(String, String)> {
        plan["apiStages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| (s["apiId"].to_string(), s["stage"].to_string()))
            .collect()
    };
    let target = stages(plans.iter().find(|plan| plan["id"] == plan_id.as_str())?);
    for other in plans.iter().filter(|plan| plan["id"] != plan_id.as_str()) {
        let shared_stage = stages(other).into_iter().find(|stage| target.contains(stage));
        let Some((api, stage)) = shared_stage else { continue };
        let keys = upstream_get(shared, &format!("/usageplans/{}/keys", other["id"].as_str()?), headers).await?;
        if keys["item"].as_array()?.iter().any(|key| key["id"] == key_id.as_str()) {
            let message = format!(
                "Usage Plan {plan_id} cannot be added because API Key {key_id} cannot reference multiple Usage Plans \
                 with the same API Stage: {}:{}",
                api.trim_matches('"'),
                stage.trim_matches('"')
            );
            return Some(Fault::new(409, "ConflictException", &message));
        }
    }
    None
}

/// Whether `table` holds no item, asked of moto with the request's credentials.
async fn table_is_empty(shared: &Shared, headers: &HeaderMap, table: &str) -> bool {
    let mut request = shared.client.post(format!("{}/", shared.upstream));
    for (name, value) in headers {
        if name != "host" && name != "content-length" && name != "x-amz-target" {
            request = request.header(name, value);
        }
    }
    let scan = serde_json::json!({ "TableName": table, "Limit": 1, "Select": "COUNT" });
    let answer = request.header("x-amz-target", "DynamoDB_20120810.Scan").body(scan.to_string()).send().await;
    let answer: Option<Value> = async { answer.ok()?.json().await.ok() }.await;
    answer.is_some_and(|answer| answer["Count"] == 0)
}

/// A GET to moto with the request's credentials, its JSON answer.
async fn upstream_get(shared: &Shared, path: &str, headers: &HeaderMap) -> Option<Value> {
    let mut request = shared.client.get(format!("{}{path}", shared.upstream));
    for (name, value) in headers {
        if name != "host" && name != "content-length" && name != "content-type" {
            request = request.header(name, value);
        }
    }
    request.send().await.ok()?.json().await.ok()
}

/// An error response in the request's protocol: JSON protocols name the code in
/// `__type`, query protocols (IAM, STS) answer XML, REST-JSON protocols (Lambda, API
/// Gateway) put it in `x-amzn-errortype`.
fn fault_response(fault: &Fault, headers: &HeaderMap, body: &[u8]) -> Response<Body> {
    let builder = Response::builder().status(fault.status).header("x-amzn-requestid", "injected-fault");
    if headers.contains_key("x-amz-target") {
        let body = serde_json::json!({ "__type": fault.code, "message": fault.message }).to_string();
        return builder.header("content-type", "application/x-amz-json-1.0").body(Body::from(body)).unwrap();
    }
    if form_urlencoded::parse(body).any(|(key, _)| key == "Action") {
        let body = format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error>\
             <RequestId>injected-fault</RequestId></ErrorResponse>",
            fault.code, fault.message
        );
        return builder.header("content-type", "text/xml").body(Body::from(body)).unwrap();
    }
    let body = serde_json::json!({ "message": fault.message }).to_string();
    builder
        .header("content-type", "application/json")
        .header("x-amzn-errortype", &fault.code)
        .body(Body::from(body))
        .unwrap()
}
