//! What IAM would authorize a recorded AWS request as, and whether a policy allows it:
//! written here from the Service Authorization Reference, apart from the policy counterctl
//! prints, so that one checks the other.
//!
//! A request is authorized as its action on its resource, plus the actions it depends on
//! (the reference's "dependent actions"): tags given at creation need the service's
//! `TagResource` (IAM's `TagRole`, API Gateway's `PUT /tags`), a role given to Lambda
//! needs `iam:PassRole`, and `lambda:GetFunction` answers tags only with `lambda:ListTags`.

use serde_json::Value;

use super::aws_proxy::Recorded;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// One authorization IAM makes: an action on a resource, with the context its
/// conditions read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Authorization {
    pub action: String,
    pub resource: String,
    /// `(condition key, value)`, such as `("iam:PassedToService", "lambda.amazonaws.com")`.
    pub context: Vec<(String, String)>,
}

fn auth(action: impl Into<String>, resource: impl Into<String>) -> Authorization {
    Authorization { action: action.into(), resource: resource.into(), context: Vec::new() }
}

fn arn(service: &str, resource: &str) -> String {
    format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}")
}

/// What `request` is authorized as; empty for what needs no permission
/// (`sts:GetCallerIdentity`).
pub(crate) fn authorizations(request: &Recorded) -> Vec<Authorization> {
    let body = &request.body;
    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    let action = request.action.as_str();
    match request.service.as_str() {
        "sts" => Vec::new(),
        "dynamodb" => {
            let resource = match action {
                "ListTables" => "*".to_owned(),
                _ if body["ResourceArn"].is_string() => field("ResourceArn"),
                _ => arn("dynamodb", &format!("table/{}", field("TableName"))),
            };
            let mut all = vec![auth(format!("dynamodb:{action}"), &resource)];
            if action == "CreateTable" && body["Tags"].is_array() {
                all.push(auth("dynamodb:TagResource", &resource));
            }
            all
        }
        "logs" => {
            let name = field("logGroupName");
            let resource = match action {
                "DescribeLogGroups" => "*".to_owned(),
                _ => arn("logs", &format!("log-group:{name}")),
            };
            let mut all = vec![auth(format!("logs:{action}"), &resource)];
            if action == "CreateLogGroup" && body["tags"].is_object() {
                all.push(auth("logs:TagResource", &resource));
            }
            all
        }
        "acm" => vec![auth(format!("acm:{action}"), field("CertificateArn"))],
        "iam" => {
            let role = format!("arn:aws:iam::{ACCOUNT}:role/{}", field("RoleName"));
            let mut all = vec![auth(format!("iam:{action}"), &role)];
            if action == "CreateRole" && body["Tags.member.1.Key"].is_string() {
                all.push(auth("iam:TagRole", &role));
            }
            all
        }
        "monitoring" => {
            let alarm = |name: String| arn("cloudwatch", &format!("alarm:{name}"));
            let resources: Vec<String> = match action {
                "GetMetricData" => vec!["*".to_owned()],
                "DescribeAlarms" => vec![alarm(format!("{}*", field("AlarmNamePrefix")))],
                "ListTagsForResource" | "TagResource" => vec![field("ResourceARN")],
                "DeleteAlarms" => (1..)
                    .map_while(|n| body[format!("AlarmNames.member.{n}")].as_str().map(|name| alarm(name.to_owned())))
                    .collect(),
                _ => vec![alarm(field("AlarmName"))],
            };
            let mut all: Vec<Authorization> =
                resources.iter().map(|resource| auth(format!("cloudwatch:{action}"), resource)).collect();
            if action == "PutMetricAlarm" && body["Tags.member.1.Key"].is_string() {
                all.push(auth("cloudwatch:TagResource", &resources[0]));
            }
            all
        }
        "sns" => {
            let topic = match action {
                "CreateTopic" => arn("sns", &field("Name")),
                "Unsubscribe" => "*".to_owned(),
                "ListTagsForResource" | "TagResource" => field("ResourceArn"),
                _ => field("TopicArn"),
            };
            let mut all = vec![auth(format!("sns:{action}"), &topic)];
            if action == "CreateTopic" && body["Tags.member.1.Key"].is_string() {
                all.push(auth("sns:TagResource", &topic));
            }
            all
        }
        "lambda" => lambda(request),
        "apigateway" => {
            let resource = format!("arn:aws:apigateway:{REGION}::{}", request.path);
            let mut all = vec![auth(format!("apigateway:{}", request.method), resource)];
            if request.method == "POST" && body["tags"].is_object() {
                all.push(auth("apigateway:PUT", format!("arn:aws:apigateway:{REGION}::/tags/new")));
            }
            all
        }
        "route53" => {
            let parts: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
            match (request.method.as_str(), parts.as_slice()) {
                ("POST", [_, "hostedzone", zone, "rrset"]) => {
                    vec![auth("route53:ChangeResourceRecordSets", format!("arn:aws:route53:::hostedzone/{zone}"))]
                }
                ("GET", [_, "hostedzone", zone, "rrset"]) => {
                    vec![auth("route53:ListResourceRecordSets", format!("arn:aws:route53:::hostedzone/{zone}"))]
                }
                ("GET", [_, "change", id]) => vec![auth("route53:GetChange", format!("arn:aws:route53:::change/{id}"))],
                _ => vec![auth(format!("route53:UNKNOWN {} {}", request.method, request.path), "*")],
            }
        }
        other => vec![auth(format!("{other}:UNKNOWN {} {} {action}", request.method, request.path), "*")],
    }
}

/// Lambda's REST operations by method and path.
fn lambda(request: &Recorded) -> Vec<Authorization> {
    let parts: Vec<String> = request
        .path
        .trim_start_matches('/')
        .split('/')
        .map(|part| percent_encoding::percent_decode_str(part).decode_utf8_lossy().into_owned())
        .collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    // A call with a `Qualifier` acts on the version's or the alias's ARN
    // (https://docs.aws.amazon.com/lambda/latest/dg/lambda-api-permissions-ref.html).
    let qualifier = form_urlencoded::parse(request.query.as_bytes())
        .find(|(key, _)| key == "Qualifier")
        .map(|(_, qualifier)| qualifier.into_owned());
    let function = |name: &str| {
        let name = name.rsplit(':').next().unwrap_or(name);
        match &qualifier {
            Some(qualifier) => arn("lambda", &format!("function:{name}:{qualifier}")),
            None => arn("lambda", &format!("function:{name}")),
        }
    };
    let qualified = |name: &str, qualifier: &str| arn("lambda", &format!("function:{name}:{qualifier}"));
    let one = |action: &str, name: &str| vec![auth(format!("lambda:{action}"), function(name))];
    let role = request.body["Role"].as_str().map(|role| Authorization {
        action: "iam:PassRole".to_owned(),
        resource: role.to_owned(),
        context: vec![("iam:PassedToService".to_owned(), "lambda.amazonaws.com".to_owned())],
    });
    let method = request.method.as_str();
    match (method, &parts[1..]) {
        ("POST", ["functions"]) => {
            let name = request.body["FunctionName"].as_str().unwrap_or_default();
            let mut all = one("CreateFunction", name);
            all.extend(role);
            if request.body["Tags"].is_object() {
                all.extend(one("TagResource", name));
            }
            all
        }
        ("GET", ["functions", name]) => [one("GetFunction", name), one("ListTags", name)].concat(),
        ("DELETE", ["functions", name]) => one("DeleteFunction", name),
        ("GET", ["functions", name, "configuration"]) => one("GetFunctionConfiguration", name),
        ("PUT", ["functions", name, "configuration"]) => {
            let mut all = one("UpdateFunctionConfiguration", name);
            all.extend(role);
            all
        }
        ("PUT", ["functions", name, "code"]) => one("UpdateFunctionCode", name),
        ("POST", ["functions", name, "policy"]) => one("AddPermission", name),
        ("GET", ["functions", name, "policy"]) => one("GetPolicy", name),
        ("DELETE", ["functions", name, "policy", _]) => one("RemovePermission", name),
        ("GET", ["functions", name, "concurrency"]) => one("GetFunctionConcurrency", name),
        ("PUT", ["functions", name, "concurrency"]) => one("PutFunctionConcurrency", name),
        ("DELETE", ["functions", name, "concurrency"]) => one("DeleteFunctionConcurrency", name),
        ("POST", ["functions", name, "versions"]) => one("PublishVersion", name),
        ("GET", ["functions", name, "versions"]) => one("ListVersionsByFunction", name),
        ("POST", ["functions", name, "aliases"]) => one("CreateAlias", name),
        ("GET", ["functions", name, "aliases", alias]) => {
            vec![auth("lambda:GetAlias".to_owned(), qualified(name, alias))]
        }
        ("PUT", ["functions", name, "aliases", alias]) => {
            vec![auth("lambda:UpdateAlias".to_owned(), qualified(name, alias))]
        }
        ("POST", ["functions", name, "url"]) => one("CreateFunctionUrlConfig", name),
        ("GET", ["functions", name, "url"]) => one("GetFunctionUrlConfig", name),
        ("PUT", ["functions", name, "url"]) => one("UpdateFunctionUrlConfig", name),
        ("DELETE", ["functions", name, "url"]) => one("DeleteFunctionUrlConfig", name),
        ("POST", ["tags", resource]) => one("TagResource", resource),
        ("GET", ["tags", resource]) => one("ListTags", resource),
        _ => vec![auth(format!("lambda:UNKNOWN {method} {}", request.path), "*")],
    }
}

/// `text` matches IAM's `pattern`: `*` any run of characters, `?` any one.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t, mut star, mut from) = (0, 0, None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            from = t;
            p += 1;
        } else if let Some(at) = star {
            p = at + 1;
            from += 1;
            t = from;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(one) => vec![one],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether `statement` allows `authorization`: an action and a resource it names, and
/// its `StringEquals` conditions met by the context (the only operator the policy uses).
pub(crate) fn statement_allows(statement: &Value, authorization: &Authorization) -> bool {
    let action = strings(&statement["Action"])
        .iter()
        .any(|pattern| matches(&pattern.to_ascii_lowercase(), &authorization.action.to_ascii_lowercase()));
    let resource = strings(&statement["Resource"]).iter().any(|pattern| matches(pattern, &authorization.resource));
    let conditions = match statement.get("Condition") {
        None => true,
        Some(Value::Object(operators)) => operators.iter().all(|(operator, keys)| {
            operator == "StringEquals"
                && keys.as_object().is_some_and(|keys| {
                    keys.iter().all(|(key, wanted)| {
                        authorization.context.iter().any(|(k, v)| k == key && strings(wanted).contains(&v.as_str()))
                    })
                })
        }),
        Some(_) => false,
    };
    statement["Effect"] == "Allow" && action && resource && conditions
}

#[test]
fn iam_patterns_match_as_iam_does() {
    assert!(matches("arn:aws:apigateway:us-east-1::/restapis/*", "arn:aws:apigateway:us-east-1::/restapis/a/stages"));
    assert!(matches("lambda:*Function*", "lambda:GetFunctionConfiguration"));
    assert!(matches("alarm:A-?", "alarm:A-1"));
    assert!(!matches("arn:aws:iam::1:role/A", "arn:aws:iam::1:role/AB"));
    assert!(!matches("table/T", "table/T2"));
}
