//! What API Gateway does between a request and the function, for a stack counterctl
//! installed in moto, read from moto at each request as API Gateway reads its own
//! configuration:
//! - the stage serves its deployment, and a deployment the integration as it was then
//!   (https://docs.aws.amazon.com/apigateway/latest/developerguide/how-to-deploy-api.html:
//!   changes reach callers only once deployed), so the integration is read when the stage
//!   first shows a new deployment id;
//! - the integration's URI names the function, an alias or `$LATEST`; API Gateway may
//!   invoke it only if the resource policy of exactly that qualifier allows
//!   `apigateway.amazonaws.com` from this API, else callers get `500 Internal server
//!   error` ("Invalid permissions on Lambda function");
//! - an alias is resolved to its version at each invocation (callers move the moment the
//!   alias moves; those in flight finish where they started).
//!
//! Each version runs in its own execution environments: the shipped bootstrap with that
//! version's table, started when the version is first invoked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::function::Function;
use super::moto_url;

pub(crate) struct DeployedLambda {
    lambda: aws_sdk_lambda::Client,
    apigateway: aws_sdk_apigateway::Client,
    api_id: String,
    stage: String,
    region: String,
    environments: usize,
    /// The integration URI of each deployment seen.
    integrations: Mutex<HashMap<String, String>>,
    /// The execution environments of each version invoked (`$LATEST` included).
    versions: tokio::sync::Mutex<HashMap<String, Arc<Function>>>,
    /// Requests answered 500 because the target's policy did not allow the API.
    refused: AtomicUsize,
    /// The version each request ran on, in order.
    invoked: Mutex<Vec<String>>,
}

impl DeployedLambda {
    /// The data plane of API `api_id`'s stage `stage` in `aws`'s region, each version with
    /// `environments` execution environments.
    pub(crate) fn new(aws: &aws_config::SdkConfig, api_id: &str, stage: &str, environments: usize) -> Self {
        Self {
            lambda: aws_sdk_lambda::Client::new(aws),
            apigateway: aws_sdk_apigateway::Client::new(aws),
            api_id: api_id.to_owned(),
            stage: stage.to_owned(),
            region: aws.region().unwrap().to_string(),
            environments,
            integrations: Mutex::default(),
            versions: tokio::sync::Mutex::default(),
            refused: AtomicUsize::new(0),
            invoked: Mutex::default(),
        }
    }

    /// How many requests were refused for a missing permission.
    pub(crate) fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// The version each request ran on.
    pub(crate) fn invoked(&self) -> Vec<String> {
        self.invoked.lock().unwrap().clone()
    }

    /// The execution environments this request goes to, or why API Gateway answers 500.
    pub(crate) async fn resolve(&self) -> Result<Arc<Function>, String> {
        let uri = self.deployed_integration().await?;
        // arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/FUNCTION_ARN/invocations
        let function_arn = uri
            .split("/functions/")
            .nth(1)
            .and_then(|rest| rest.strip_suffix("/invocations"))
            .ok_or_else(|| format!("not a Lambda integration: {uri}"))?;
        let (name, qualifier) = match function_arn.split(':').collect::<Vec<_>>()[..] {
            [.., "function", name] => (name.to_owned(), None),
            [.., "function", name, qualifier] => (name.to_owned(), Some(qualifier.to_owned())),
            _ => return Err(format!("not a function ARN: {function_arn}")),
        };
        if !self.permitted(&name, qualifier.as_deref()).await? {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(format!("Invalid permissions on Lambda function {function_arn}"));
        }
        let version = match qualifier {
            None => "$LATEST".to_owned(),
            Some(number) if number.chars().all(|c| c.is_ascii_digit()) => number,
            Some(alias) => {
                let alias = self.lambda.get_alias().function_name(&name).name(alias).send().await;
                let alias = alias.map_err(|error| format!("GetAlias: {error:?}"))?;
                alias.function_version().unwrap().to_owned()
            }
        };
        self.invoked.lock().unwrap().push(version.clone());
        let mut versions = self.versions.lock().await;
        if let Some(function) = versions.get(&version) {
            return Ok(Arc::clone(function));
        }
        let configuration = self.lambda.get_function_configuration().function_name(&name).qualifier(&version);
        let configuration = configuration.send().await.map_err(|error| format!("{error:?}"))?;
        let table = configuration.environment().unwrap().variables().unwrap()["TABLE_NAME"].clone();
        let function = Arc::new(Function::start_in(&self.region, &table, &moto_url(), self.environments).await);
        versions.insert(version, Arc::clone(&function));
        Ok(function)
    }

    /// The integration URI of the deployment the stage serves now.
    async fn deployed_integration(&self) -> Result<String, String> {
        let stage = self.apigateway.get_stage().rest_api_id(&self.api_id).stage_name(&self.stage).send().await;
        let stage = stage.map_err(|error| format!("GetStage: {error:?}"))?;
        let deployment = stage.deployment_id().ok_or("the stage has no deployment")?.to_owned();
        if let Some(uri) = self.integrations.lock().unwrap().get(&deployment) {
            return Ok(uri.clone());
        }
        let resources = self.apigateway.get_resources().rest_api_id(&self.api_id).send().await;
        let resources = resources.map_err(|error| format!("GetResources: {error:?}"))?;
        let proxy = resources.items().iter().find(|resource| resource.path() == Some("/{proxy+}"));
        let proxy = proxy.and_then(|resource| resource.id()).ok_or("no /{proxy+} resource")?;
        let integration =
            self.apigateway.get_integration().rest_api_id(&self.api_id).resource_id(proxy).http_method("ANY");
        let integration = integration.send().await.map_err(|error| format!("GetIntegration: {error:?}"))?;
        let uri = integration.uri().ok_or("the integration has no URI")?.to_owned();
        self.integrations.lock().unwrap().insert(deployment, uri.clone());
        Ok(uri)
    }

    /// Whether the resource policy of `name` at `qualifier` lets this API invoke it.
    async fn permitted(&self, name: &str, qualifier: Option<&str>) -> Result<bool, String> {
        let policy = self.lambda.get_policy().function_name(name).set_qualifier(qualifier.map(str::to_owned));
        let policy = match policy.send().await {
            Ok(policy) => policy,
            Err(error) if format!("{error:?}").contains("ResourceNotFoundException") => return Ok(false),
            Err(error) => return Err(format!("GetPolicy: {error:?}")),
        };
        let policy: Value = serde_json::from_str(policy.policy().unwrap_or("{}")).unwrap();
        let source = format!(
            "arn:aws:execute-api:{}:123456789012:{}/{}/POST/counter/increment",
            self.region, self.api_id, self.stage
        );
        let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
        Ok(statements.iter().any(|statement| {
            statement["Effect"] == "Allow"
                && statement["Principal"]["Service"] == "apigateway.amazonaws.com"
                && statement["Action"] == "lambda:InvokeFunction"
                && statement["Condition"]["ArnLike"]["AWS:SourceArn"]
                    .as_str()
                    .is_some_and(|arn| super::iam::matches(arn, &source))
        }))
    }
}
