"""moto's server, applying one request at a time; same arguments as `moto_server`.

moto's threaded server runs concurrent requests against its in-memory tables without a
lock, so two concurrent `UpdateItem ADD`s on one item can both read the old value.
DynamoDB applies writes to an item atomically; serializing moto's requests restores that,
so a duplicate seen in a test is ours, not moto's.

Lambda's versions and aliases are brought to what AWS documents where moto differs, so
that a test of counterctl's versions can fail for counterctl's reasons only:
- version numbers are never reused, also after a version is deleted (moto numbers the
  next one by how many are left);
- an alias has a resource policy of its own, which stays with the alias when it moves,
  and a version has its own (moto shares the function's one among all versions and keeps
  an alias's statements on the version it pointed at);
- RemovePermission honours its Qualifier (moto ignores it);
- a version an alias points at cannot be deleted (moto deletes it);
- a function URL can be on an alias (`Qualifier`), beside the function's own (moto
  refuses any qualifier).
"""
import threading

from moto import server
from moto.awslambda import models as lambda_models
from moto.awslambda import responses as lambda_responses
from moto.awslambda.exceptions import LambdaClientError
from moto.awslambda.policy import Policy

_one_at_a_time = threading.Lock()
_handle = server.DomainDispatcherApplication.__call__


def _serialized(self, environ, start_response):
    with _one_at_a_time:
        return list(_handle(self, environ, start_response))


server.DomainDispatcherApplication.__call__ = _serialized


# https://docs.aws.amazon.com/lambda/latest/dg/configuration-versions.html: "Lambda
# doesn't reuse version numbers, even if the function is deleted and recreated"; each
# published version is a snapshot with its own resource policy.
_publish = lambda_models.LambdaStorage.publish_version


def _publish_monotonic(self, name_or_arn, description=""):
    function = self.get_function_by_name_or_arn_forbid_qualifier(name_or_arn)
    versions = self._functions.get(function.function_name, {}).get("versions", [])
    before = {id(version) for version in versions}
    published = _publish(self, name_or_arn, description)
    if published is not None and id(published) not in before:
        highest = getattr(self, "_highest_version", {})
        numbers = [int(version.version) for version in versions if version is not published]
        number = max([highest.get(function.function_name, 0), *numbers]) + 1
        highest[function.function_name] = number
        self._highest_version = highest
        # moto filed it under a number an existing version may hold: put those back.
        for version in versions:
            if version is not published:
                self._arns[version.function_arn] = version
        published.set_version(number)
        self._arns[published.function_arn] = published
        published.policy = Policy(published)
    return published


lambda_models.LambdaStorage.publish_version = _publish_monotonic


def _alias(backend, function_name, qualifier):
    """The alias `qualifier` names, if it names one rather than a version."""
    if not qualifier or qualifier == "$LATEST" or qualifier.isdigit():
        return None
    return backend._lambdas._get_function_aliases(function_name).get(qualifier)


def _policy_of(backend, function_name, qualifier):
    alias = _alias(backend, function_name, qualifier)
    if alias is None:
        return backend._lambdas.get_function_by_name_or_arn_with_qualifier(function_name, qualifier).policy
    if not hasattr(alias, "policy"):
        alias.policy = Policy(backend._lambdas.get_function_by_name_or_arn_with_qualifier(function_name))
    return alias.policy


def _add_permission(self, function_name, qualifier, raw):
    statement, _ = _policy_of(self, function_name, qualifier).add_statement(raw, qualifier)
    return statement


def _get_policy(self, function_name, qualifier=None):
    return _policy_of(self, function_name, qualifier).wire_format()


def _remove_permission_response(self):
    function_name = lambda_responses.unquote(self.path.split("/")[-3])
    statement_id = self.path.split("/")[-1].split("?")[0]
    qualifier = self.querystring.get("Qualifier", [None])[0]
    revision = self.querystring.get("RevisionId", [""])[0]
    _policy_of(self.backend, function_name, qualifier).del_statement(statement_id, revision)
    return 204, {"status": 204}, "{}"


# https://docs.aws.amazon.com/lambda/latest/api/API_DeleteFunction.html: a version an
# alias points at is refused ("You can't delete a version that an alias references").
_delete = lambda_models.LambdaBackend.delete_function


def _delete_unless_aliased(self, function_name, qualifier=None):
    if qualifier and qualifier.isdigit():
        aliases = self._lambdas._get_function_aliases(function_name).values()
        if any(str(alias.function_version) == qualifier for alias in aliases):
            raise LambdaClientError(
                "ResourceConflictException",
                f"Unable to delete version because the following aliases reference it: "
                f"{[alias.name for alias in aliases if str(alias.function_version) == qualifier]}",
            )
    _delete(self, function_name, qualifier)


# https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunctionUrlConfig.html: "Qualifier
# - The alias name"; an alias's URL is its own, with the alias's ARN.
class _AliasUrlConfig(lambda_models.FunctionUrlConfig):
    def __init__(self, function, config, arn):
        super().__init__(function=function, config=config)
        self.arn = arn

    def to_dict(self):
        return {**super().to_dict(), "FunctionArn": self.arn}


def _url_response(method):
    original = getattr(lambda_responses.LambdaResponse, method)

    def respond(self):
        qualifier = self.querystring.get("Qualifier", [None])[0]
        function_name = lambda_responses.unquote(self.path.split("/")[-2])
        alias = _alias(self.backend, function_name, qualifier)
        if alias is None:
            return original(self)
        config = getattr(alias, "url_config", None)
        if method == "create_function_url_config":
            if config is not None:
                raise LambdaClientError("ResourceConflictException", f"Failed to create function url config for [functionArn = {alias.arn}]. Error message:  FunctionUrlConfig exists for this Lambda function")
            function = self.backend._lambdas.get_function_by_name_or_arn_with_qualifier(function_name)
            alias.url_config = _AliasUrlConfig(function, self.json_body, alias.arn)
            return 201, {"status": 201}, lambda_responses.json.dumps(alias.url_config.to_dict())
        if config is None:
            raise LambdaClientError("ResourceNotFoundException", "The resource you requested does not exist.")
        if method == "delete_function_url_config":
            alias.url_config = None
            return 204, {"status": 204}, "{}"
        if method == "update_function_url_config":
            config.update(self.json_body)
        return 200, {"status": 200}, lambda_responses.json.dumps(config.to_dict())

    setattr(lambda_responses.LambdaResponse, method, respond)


for _method in [
    "create_function_url_config",
    "get_function_url_config",
    "update_function_url_config",
    "delete_function_url_config",
]:
    _url_response(_method)

lambda_models.LambdaBackend.add_permission = _add_permission
lambda_models.LambdaBackend.get_policy = _get_policy
lambda_models.LambdaBackend.delete_function = _delete_unless_aliased
lambda_responses.LambdaResponse.remove_permission = _remove_permission_response

if __name__ == "__main__":
    server.main()
