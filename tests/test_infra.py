"""The Azure deployment (azure.yaml, infra/, .github/workflows), validated without Azure.

No Bicep compiler or Azure account is reachable here, so:

- every .bicep file must parse (pycep-parser);
- the contract: the app settings the Bicep gives App Service are exactly the production
  settings decided below for every variable Brook reads (no missing one, no stale one), and
  the azd outputs match the Azure variables in .env.sample;
- structure tests pin what the seed posts and issue 5 ask for: the free tier's settings, the
  VNet, its delegations and private DNS zone, keyless access, the guard against vnet + F1;
- checkov (`make infra-tools` installs it in .venv-infra) finds nothing beyond
  tests/infra/checkov-baseline.json, and the PostgreSQL checks in tests/infra/checks flag the
  bad servers in tests/infra/fixtures.

A missing tool is a failure, never a skip.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import json
import operator
import re
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any, ClassVar, get_args

import pytest
from pycep import BicepParser

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"
CHECKS = ROOT / "tests" / "infra" / "checks"
FIXTURES = ROOT / "tests" / "infra" / "fixtures"
BASELINE = ROOT / "tests" / "infra" / "checkov-baseline.json"
CHECKOV = ROOT / ".venv-infra" / "bin" / "checkov"
WORKFLOWS = ROOT / ".github" / "workflows"

# ----------------------------------------------------------------------------------------------
# The contract: every variable Brook reads gets a decision.
# ----------------------------------------------------------------------------------------------

PER_VISITOR = "a per-visitor limit on a public address (parameter "
SIGNED_IN = ("only when given, where signed-in users' limit differs from everyone's (-1, the "
             "default, sets nothing: the same as everyone's; parameter ")
SIGN_IN = "only when given, the operator's choice of sign-in (parameter "

# Production settings the Bicep must set on App Service, and why.
SET_BY_BICEP = {
    "DATABASE_URL": "the PostgreSQL Flexible Server: postgresql://<identity name>@<server>"
                    ".postgres.database.azure.com:5432/brook?sslmode=require (Entra), or the admin "
                    "login and password with postgresAuth password, then a Key Vault "
                    "reference (the Entra one holds no secret)",
    "DATABASE_ENTRA_AUTH": "'true' with postgresAuth entra (the default): each connection "
                           "signs in with a fresh Microsoft Entra token as password",
    "AZURE_CLIENT_ID": "the user-assigned identity DefaultAzureCredential signs in as, for "
                       "Azure OpenAI and PostgreSQL (read by azure-identity, not Brook's code)",
    "AZURE_OPENAI_ENDPOINT": "the account created (or named) by the Bicep",
    "AZURE_OPENAI_DEPLOYMENT": "the chat deployment created (or named) by the Bicep",
    "AZURE_OPENAI_API_VERSION": "pinned by a parameter, so production never changes API "
                                "version behind your back",
    "MODEL_PROVIDER": "'azure': start-up fails fast if the Azure OpenAI settings go missing "
                      "instead of falling back to another provider",
    "SECRET_KEY": "from the @secure() secretKey parameter azd generates once: the same on every "
                  "instance and across restarts, so owner cookies stay valid; a Key Vault "
                  "reference",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "traces and logs to Application Insights through "
                                             "OpenTelemetry (never prompts or answers)",
    "APPLICATIONINSIGHTS_ENTRA_AUTH": "'true': the component takes Entra-signed telemetry only "
                                      "(DisableLocalAuth), so the app signs in as its identity",
    "TRUSTED_PROXIES": "'1': App Service's front end is the one proxy whose X-Forwarded-* "
                       "headers are trusted (scheme, client address)",
    "HOST": "'0.0.0.0': App Service reaches the container from outside",
    "PORT": "'8000': where App Service sends traffic for Python apps",
    "WEB_CONCURRENCY": "gunicorn workers per instance (parameter webConcurrency)",
    "LIMIT_ANSWERS_PER_MINUTE": PER_VISITOR + "limitAnswersPerMinute)",
    "LIMIT_CONCURRENT_ANSWERS": PER_VISITOR + "limitConcurrentAnswers)",
    "LIMIT_TOKENS_PER_DAY": PER_VISITOR + "limitTokensPerDay)",
    "LIMIT_CONVERSATIONS_PER_DAY": PER_VISITOR + "limitConversationsPerDay)",
    "LIMIT_STORED_CONVERSATIONS": PER_VISITOR + "limitStoredConversations)",
    "BUDGET_TOKENS_PER_DAY": "the ceiling on a day's tokens, so on its cost (parameter "
                             "budgetTokensPerDay)",
    "REDIS_URL": "only with enableRedis: rediss:// to Azure Managed Redis, access key from "
                 "listKeys(), written into the Key Vault by redis.bicep so it never passes a "
                 "parameter or an output; a Key Vault reference",
    # Sign-in: a portal setting does not survive `azd provision`, so each is a parameter.
    "AUTH_MODE": SIGN_IN + "authMode; unset, Brook picks appservice when App Service "
                 "Authentication is on, else anonymous; main.bicep refuses oidc without an "
                 "https issuer and a client id, as Brook would at start)",
    "OIDC_ISSUER": SIGN_IN + "oidcIssuer: the operator's OpenID provider)",
    "OIDC_CLIENT_ID": SIGN_IN + "oidcClientId: what the provider gave Brook)",
    "OIDC_CLIENT_SECRET": SIGN_IN + "oidcClientSecret, @secure(): written into the Key Vault "
                          "by keyvault-secret.bicep; a Key Vault reference; none for a public "
                          "client)",
    "OIDC_SCOPES": SIGN_IN + "oidcScopes; unset: Brook's openid email profile)",
    "AUTH_ALLOWED_EMAILS": SIGN_IN + "authAllowedEmails: who may sign in)",
    "AUTH_ALLOWED_DOMAINS": SIGN_IN + "authAllowedDomains: who may sign in)",
    "ADMIN_EMAILS": SIGN_IN + "adminEmails: who has no limits and sees everyone's usage)",
    "SIGNED_IN_LIMIT_ANSWERS_PER_MINUTE": SIGNED_IN + "signedInLimitAnswersPerMinute)",
    "SIGNED_IN_LIMIT_CONCURRENT_ANSWERS": SIGNED_IN + "signedInLimitConcurrentAnswers)",
    "SIGNED_IN_LIMIT_TOKENS_PER_DAY": SIGNED_IN + "signedInLimitTokensPerDay)",
    "SIGNED_IN_LIMIT_CONVERSATIONS_PER_DAY": SIGNED_IN + "signedInLimitConversationsPerDay)",
    "SIGNED_IN_LIMIT_STORED_CONVERSATIONS": SIGNED_IN + "signedInLimitStoredConversations)",
    # Models: an operator's choice that a portal setting would lose at the next provision.
    "MODELS": "only when given (parameter models, azd variable MODELS, a JSON list): the chat "
              "deployment first, then each model given, all deployments of the account the "
              "templates create or name, which the templates create on an account they create; "
              "no key or endpoint (keyless as the site's identity, at AZURE_OPENAI_ENDPOINT); "
              "main.bicep refuses what Brook would refuse at start",
    "MODEL_TITLES": "only when titles are turned off (parameter modelTitles, default true: "
                    "Brook's own default)",
}
# Each sign-in setting (authSettings in main.bicep): its parameter, what an operator may give
# (azd env set <the setting's own name> ...), and the setting's value then. Unset (the
# parameter's default, '' or -1), the setting is not there and Brook's default applies.
AUTH_SETTINGS: dict[str, tuple[str, Any, str]] = {
    "AUTH_MODE": ("authMode", "anonymous", "anonymous"),
    "OIDC_ISSUER": ("oidcIssuer", "https://accounts.google.com", "https://accounts.google.com"),
    "OIDC_CLIENT_ID": ("oidcClientId", "brook-client", "brook-client"),
    "OIDC_CLIENT_SECRET": ("oidcClientSecret", "0idc~s3cret/with+and=",
                           "@Microsoft.KeyVault(SecretUri=https://kv-abc123.vault.azure.net/"
                           "secrets/oidc-client-secret)"),
    "OIDC_SCOPES": ("oidcScopes", "openid email", "openid email"),
    "AUTH_ALLOWED_EMAILS": ("authAllowedEmails", "ana@example.com, bo@example.org",
                            "ana@example.com, bo@example.org"),
    "AUTH_ALLOWED_DOMAINS": ("authAllowedDomains", "example.com", "example.com"),
    "ADMIN_EMAILS": ("adminEmails", "ana@example.com", "ana@example.com"),
    "SIGNED_IN_LIMIT_ANSWERS_PER_MINUTE": ("signedInLimitAnswersPerMinute", 30, "30"),
    "SIGNED_IN_LIMIT_CONCURRENT_ANSWERS": ("signedInLimitConcurrentAnswers", 4, "4"),
    "SIGNED_IN_LIMIT_TOKENS_PER_DAY": ("signedInLimitTokensPerDay", 0, "0"),  # 0: no limit
    "SIGNED_IN_LIMIT_CONVERSATIONS_PER_DAY": ("signedInLimitConversationsPerDay", 500, "500"),
    "SIGNED_IN_LIMIT_STORED_CONVERSATIONS": ("signedInLimitStoredConversations", 5000, "5000"),
}
# Each model setting (modelSettings in main.bicep), as AUTH_SETTINGS: its parameter, what an
# operator may give, and the setting's value then (JSON in the form Brook reads, README, Models).
GIVEN_MODELS = [
    {"id": "o4-mini", "name": "o4-mini (reasons)", "api": "responses",
     "api_version": "2025-04-01-preview", "reasoning_summary": "auto", "temperature": False,
     "model_version": "2025-04-16", "capacity": 10},
    {"id": "gpt-4.1", "default": True, "model": "gpt-41", "model_name": "gpt-4.1",
     "model_version": "2025-04-14", "sku": "DataZoneStandard"},
]
PICKED_MODELS = [
    {"id": "gpt-4.1-mini", "name": "gpt-4.1-mini", "provider": "azure", "model": "gpt-4.1-mini",
     "api": "chat", "api_version": "2024-10-21", "reasoning_summary": None, "temperature": True,
     "default": False},
    {"id": "o4-mini", "name": "o4-mini (reasons)", "provider": "azure", "model": "o4-mini",
     "api": "responses", "api_version": "2025-04-01-preview", "reasoning_summary": "auto",
     "temperature": False, "default": False},
    {"id": "gpt-4.1", "name": "gpt-4.1", "provider": "azure", "model": "gpt-41", "api": "chat",
     "api_version": "2024-10-21", "reasoning_summary": None, "temperature": True,
     "default": True},
]
MODEL_SETTINGS: dict[str, tuple[str, Any, str]] = {
    "MODELS": ("models", GIVEN_MODELS, json.dumps(PICKED_MODELS, separators=(",", ":"))),
    "MODEL_TITLES": ("modelTitles", False, "false"),
}
# ... of which these are set only when a parameter asks for them.
CONDITIONAL = {"REDIS_URL"} | set(AUTH_SETTINGS) | set(MODEL_SETTINGS)
# ... and these carry secrets (from a @secure() parameter or listKeys()), so the site gets Key
# Vault references to them (DATABASE_URL only when it holds a password).
SECRET = {"DATABASE_URL", "SECRET_KEY", "REDIS_URL", "OIDC_CLIENT_SECRET"}

# Read by Brook but deliberately not set by the Bicep.
NOT_SET = {
    "AZURE_OPENAI_API_KEY": "keyless: the account has key authentication disabled",
    "OPENAI_API_KEY": "the provider is Azure OpenAI; with MODEL_PROVIDER=azure it is ignored",
    "OPENAI_BASE_URL": "the provider is Azure OpenAI",
    "OPENAI_MODEL": "the provider is Azure OpenAI (AZURE_OPENAI_DEPLOYMENT names the model)",
    "WEBSITE_AUTH_ENABLED": "App Service sets it itself when Authentication is on; setting it "
                            "without Authentication would trust forgeable headers",
    "BROOK_INSTANCE_PATH": "only holds the default SQLite file and a generated key; production "
                           "has DATABASE_URL and SECRET_KEY",
    "TIKTOKEN_CACHE_DIR": "optional tiktoken cache; without it Brook estimates token counts "
                          "high and never downloads",
    "DATA_GYM_CACHE_DIR": "tiktoken's older name for TIKTOKEN_CACHE_DIR",
    "LOG_LEVEL": "tunable; Brook's default INFO suits production",
    "MODEL_TIMEOUT": "tunable with a default",
    "MODEL_CONNECT_TIMEOUT": "tunable with a default",
    "MODEL_MAX_RETRIES": "tunable with a default",
    "SYSTEM_PROMPT": "tunable with a default",
    "PROMPT_TOKEN_BUDGET": "tunable with a default",
    "MAX_MESSAGE_CHARS": "tunable with a default",
    "FLUSH_INTERVAL_MS": "tunable with a default",
    "DATABASE_POOL_TIMEOUT": "tunable with a default",
    "DATABASE_POOL_SIZE": "tunable with a default that fits the smallest tier's connections",
    "FLUSH_CHARS": "tunable with a default",
    "STREAM_COALESCE_MS": "tunable with a default",
    "STREAM_KEEPALIVE_SECONDS": "tunable with a default (15 s keeps App Service's front end "
                                "from closing idle streams)",
    "STREAM_LEASE_SECONDS": "tunable with a default",
    "MAX_ANSWERS_PER_WORKER": "tunable with a default; App Service scales out on CPU",
    "MAX_EVENT_LOOP_LAG_MS": "tunable with a default",
    "STREAM_EXPIRE_SECONDS": "tunable with a default",
    "SHUTDOWN_GRACE_SECONDS": "tunable with a default",
    "GUNICORN_WORKER_CONNECTIONS": "tunable with a default",
    "BROOK_LOCAL_MODEL": "the in-process local model (an optional extra) is not deployed: "
                         "App Service runs Brook against Azure OpenAI",
    "LOCAL_MODEL_DEVICE": "local model only",
    "LOCAL_MODEL_CONCURRENCY": "local model only",
    "LOCAL_MODEL_QUEUE": "local model only",
    "LOCAL_MODEL_MAX_TOKENS": "local model only",
    "LOCAL_MODEL_THINKING": "local model only",
    "LOCAL_MODEL_RETRY_SECONDS": "local model only",
    "OMP_NUM_THREADS": "local model only (read by torch; unset, Brook leaves one core free)",
}

# App Service settings that Brook does not read.
PLATFORM = {
    "SCM_DO_BUILD_DURING_DEPLOYMENT": "App Service builds the upload with Oryx (pip install .)",
    "ENABLE_ORYX_BUILD": "the Oryx build, not the legacy Kudu one",
}

# azd outputs that are azd's own, not Brook's (azd writes every output to .azure/<env>/.env).
AZD_OUTPUTS = {
    "AZURE_LOCATION": "azd's region",
    "AZURE_TENANT_ID": "azd's tenant",
    "AZURE_RESOURCE_GROUP": "azd finds the resources in it",
    "SERVICE_WEB_NAME": "the App Service site",
    "SERVICE_WEB_URI": "where Brook answers",
    "POSTGRES_HOST": "for psql from a workstation (docs/deploy.md)",
    "POSTGRES_DATABASE": "for psql",
    "POSTGRES_DEVELOPER_ROLE": "the PostgreSQL role of whoever ran azd",
    "POSTGRES_ADMIN_ROLE": "the PostgreSQL role of the database administrator identity (id-db)",
    "AZURE_KEY_VAULT_NAME": "the vault of the secrets, for an operator (docs/deploy.md)",
}
# Azure variables of .env.sample that are deliberately not outputs.
NOT_OUTPUT = {
    "AZURE_OPENAI_API_KEY": "keyless: there is no key",
    "AZURE_CLIENT_ID": "the web app's managed identity exists only in Azure; on a workstation "
                       "it would make azure-identity look for it instead of your `az login`",
}


def variables_brook_reads() -> set[str]:
    """The variables Brook reads: its settings' fields (test_config checks that nothing
    outside brook.config reads the environment)."""
    from brook.config import environment_variables

    return set(environment_variables())


# ----------------------------------------------------------------------------------------------
# Reading Bicep (pycep gives JSON; identifiers and string literals both come out as strings)
# ----------------------------------------------------------------------------------------------

@functools.cache
def _parser() -> BicepParser:
    return BicepParser()


@functools.cache
def bicep(path: Path) -> dict[str, Any]:
    return dict(_parser().parse(file_path=path))


def main() -> dict[str, Any]:
    return bicep(INFRA / "main.bicep")


def module(name: str) -> dict[str, Any]:
    return bicep(MODULES / f"{name}.bicep")


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's properties, inside an `if (...)` or `for` if it has one."""
    config: dict[str, Any] = resource["config"]
    if "config" in config and ("condition" in config or "loop_type" in config):
        inner: dict[str, Any] = config["config"]
        return inner
    return config


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in (template.get("resources") or {}).items() if r["type"] == kind}


def only(template: dict[str, Any], kind: str) -> dict[str, Any]:
    found = resources(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.values()))


def strings(value: Any) -> Iterator[str]:
    """Every string in a parsed value: identifiers, literals, interpolations."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def expr(value: Any) -> str:
    """A parsed expression written back roughly as Bicep: a.b.c, a::b, f(x, y), c ? t : f."""
    if isinstance(value, dict) and "operator" in value:
        kind, operands = value["operator"]["type"], value["operator"]["operands"]
        parts = [expr(v) for v in operands.values()]
        if kind == "property_accessor":
            return ".".join(parts)
        if kind == "nested_resource_accessor":
            return "::".join(parts)
        if kind == "conditional":
            return f"{parts[0]} ? {parts[1]} : {parts[2]}"
        return f"{kind}({', '.join(parts)})"
    if isinstance(value, dict) and "function" in value:
        parameters = value["function"].get("parameters") or {}
        arguments = ", ".join(expr(v) for v in parameters.values())
        return f"{value['function']['type']}({arguments})"
    return value if isinstance(value, str) and value else json.dumps(value)


def keys(value: Any) -> set[str]:
    """The keys of every object literal in a value (through conditionals and functions)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "operator" not in value and "function" not in value:
            found |= set(value)
        for item in value.values():
            found |= keys(item)
    elif isinstance(value, list):
        for item in value:
            found |= keys(item)
    return found


def is_secure(template: dict[str, Any], parameter: str) -> bool:
    decorators = template["parameters"][parameter]["decorators"]
    return any(d["type"] == "secure" for d in decorators)


def allowed(template: dict[str, Any], parameter: str) -> list[Any]:
    for decorator in template["parameters"][parameter]["decorators"]:
        if decorator["type"] == "allowed":
            values: list[Any] = decorator["argument"]
            return values
    raise AssertionError(f"{parameter} has no @allowed")


class Failed(Exception):
    """The template called fail(message)."""


class Evaluator:
    """Evaluates the (fully parenthesized) expressions the structure tests need: pycep has no
    operator precedence, which is why main.bicep parenthesizes every guard. Anything else stays
    symbolic: a parameter without a default is its name, other expressions their text.
    For-expressions are evaluated with their item (and index) bound by name, and `a.b` reads
    b from a where a is an object; pycep keeps no quotes, so a string literal that is also the
    name of a parameter, variable or loop item is read as that (the templates avoid them)."""

    COMPARISONS: ClassVar[dict[str, Callable[[Any, Any], bool]]] = {
        "equals": operator.eq, "not_equals": operator.ne, "greater_than": operator.gt,
        "less_than": operator.lt, "greater_than_or_equals": operator.ge,
        "less_than_or_equals": operator.le,
    }
    FUNCTIONS: ClassVar[frozenset[str]] = frozenset({"fail", "empty", "contains", "string",
                                                      "union", "concat", "starts_with",
                                                      "length", "take"})

    def __init__(self, template: dict[str, Any], **values: Any) -> None:
        self.template, self.values = template, values

    def name(self, name: str) -> Any:
        parameters = self.template.get("parameters") or {}
        variables = self.template.get("variables") or {}
        if name in self.values:
            return self.values[name]
        if name in parameters:
            default = parameters[name]["default"]
            return name if default is None else self(default)  # no default: stays symbolic
        if name in variables:
            return self(variables[name]["value"])
        return name  # a string literal

    def __call__(self, node: Any) -> Any:
        if isinstance(node, str):
            return self.name(node)
        if isinstance(node, list):
            return [self(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "loop_type" in node:  # [for item in array: ...] or [for (item, i) in array: ...]
            return self.loop(node["loop_type"]["detail"], node["config"])
        if "operator" in node:
            return self.operation(node["operator"]["type"], node["operator"]["operands"])
        if "function" in node:
            kind, parameters = node["function"]["type"], node["function"].get("parameters")
            return self.function(kind, parameters) if kind in self.FUNCTIONS else expr(node)
        return {key: self(value) for key, value in node.items()}

    def loop(self, detail: dict[str, Any], body: Any) -> list[Any]:
        items = self(detail["array_name"])
        assert isinstance(items, list), (detail, items)
        evaluated = []
        for index, item in enumerate(items):
            bound = {detail["item_name"]: item}
            if "index_name" in detail:
                bound[detail["index_name"]] = index
            evaluated.append(Evaluator(self.template, **(self.values | bound))(body))
        return evaluated

    def property(self, operands: dict[str, Any]) -> Any:
        """`a.b.c` where a is an object (a loop item, a variable): its property; else (a
        module's outputs, a resource's properties) the expression's text."""
        value = self(operands["operand_1"])
        path = operands["operand_2"]
        while isinstance(value, dict):
            if isinstance(path, str):
                assert path in value, f"no property {path} in {value}"
                return value[path]
            inner = path["operator"]
            assert inner["type"] == "property_accessor", path
            value, path = value.get(inner["operands"]["operand_1"]), inner["operands"]["operand_2"]
        return expr({"operator": {"type": "property_accessor", "operands": operands}})

    def operation(self, kind: str, operands: dict[str, Any]) -> Any:
        if kind == "property_accessor":
            return self.property(operands)
        if kind == "conditional":
            chosen = "true_value" if self(operands["condition"]) else "false_value"
            return self(operands[chosen])
        if kind == "not":
            return not self(operands["bool_value"])
        if kind == "minus":  # -1
            return -self(operands["integer_value"])
        first, second = operands.get("operand_1"), operands.get("operand_2")
        if kind == "and":
            return self(first) and self(second)
        if kind == "or":
            return self(first) or self(second)
        if kind == "add":
            return self(first) + self(second)
        if kind not in self.COMPARISONS:
            return expr({"operator": {"type": kind, "operands": operands}})  # stays symbolic
        return self.COMPARISONS[kind](self(first), self(second))

    def function(self, kind: str, parameters: dict[str, Any]) -> Any:
        if kind == "union":
            merged: dict[str, Any] = {}
            for argument in parameters.values():
                merged.update(self(argument))
            return merged
        if kind == "concat":
            parts = [self(argument) for argument in parameters.values()]
            if all(isinstance(part, list) for part in parts):
                return [item for part in parts for item in part]
            return "".join(str(part) for part in parts)
        if kind == "fail":
            raise Failed(parameters["arg_1"])
        if kind == "empty":
            return not self(parameters["item_to_test"])
        if kind == "contains":
            return self(parameters["item_to_find"]) in self(parameters["container"])
        if kind == "string":  # ARM writes an object or array as JSON, the rest as text
            value = self(parameters["value_to_convert"])
            if isinstance(value, (dict, list)):
                return json.dumps(value, separators=(",", ":"))
            return str(value)
        if kind == "length":
            return len(self(parameters["arg_1"]))
        if kind == "take":
            return self(parameters["original_value"])[:self(parameters["number_to_take"])]
        if kind == "starts_with":
            searched = self(parameters["string_to_search"])
            return str(searched).startswith(str(self(parameters["string_to_find"])))
        raise NotImplementedError(kind)


# ----------------------------------------------------------------------------------------------
# Files and parsing
# ----------------------------------------------------------------------------------------------

BICEP_FILES = sorted(INFRA.rglob("*.bicep")) + sorted(FIXTURES.glob("*.bicep"))


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_bicep_file_parses(path: Path) -> None:
    parsed = bicep(path)
    assert parsed.get("resources") or parsed.get("modules"), f"{path} declares nothing"


def accessed_outputs(value: Any) -> Iterator[tuple[str, str]]:
    """(module, output) for every `<module>.outputs.<name>` in a parsed value, string
    interpolations (`'...${module.outputs.name}...'`, which pycep leaves as text) included."""
    if isinstance(value, str):
        for interpolation in re.findall(r"\$\{([^{}]*)\}", value):
            yield from re.findall(r"(\w+)!?\.outputs\.(\w+)", interpolation)
    elif isinstance(value, dict):
        operator_ = value.get("operator")
        if isinstance(operator_, dict) and operator_.get("type") == "property_accessor":
            first, rest = operator_["operands"]["operand_1"], operator_["operands"]["operand_2"]
            inner = rest.get("operator") if isinstance(rest, dict) else None
            if isinstance(first, str) and isinstance(inner, dict) and \
                    inner.get("type") == "property_accessor" and \
                    inner["operands"]["operand_1"] == "outputs":
                output = inner["operands"]["operand_2"]
                while isinstance(output, dict):  # outputs.a.b: the output is a
                    output = output["operator"]["operands"]["operand_1"]
                yield first, output
        for item in value.values():
            yield from accessed_outputs(item)
    elif isinstance(value, list):
        for item in value:
            yield from accessed_outputs(item)


def wiring_problems(path: Path) -> list[str]:
    """What `az bicep build` would reject in how a template uses its modules: a parameter
    passed that the module does not declare, a required one not passed, an output read that
    the module does not have."""
    template = bicep(path)
    modules = template.get("modules") or {}
    problems: list[str] = []
    declared_outputs: dict[str, set[str]] = {}
    for name, declaration in modules.items():
        target = bicep(path.parent / declaration["detail"]["path"])
        parameters = target.get("parameters") or {}
        declared_outputs[name] = set(target.get("outputs") or {})
        passed = body(declaration).get("params") or {}
        problems += [f"{name}: passes {p}, which it does not declare"
                     for p in passed if p not in parameters]
        problems += [f"{name}: does not pass the required {p}"
                     for p, spec in parameters.items()
                     if spec.get("default") is None and p not in passed]
    problems += [f"{name}: has no output {output}"
                 for name, output in sorted(set(accessed_outputs(template)))
                 if name in declared_outputs and output not in declared_outputs[name]]
    return problems


def test_modules_are_wired_as_they_declare() -> None:
    # The walk sees every output main.bicep reads (as a plain text scan finds them).
    text = (INFRA / "main.bicep").read_text()
    assert set(accessed_outputs(main())) == set(re.findall(r"(\w+)!?\.outputs\.(\w+)", text))
    assert wiring_problems(INFRA / "main.bicep") == []
    assert wiring_problems(ROOT / "tests" / "infra" / "wiring" / "main.bicep") == [
        "store: passes size, which it does not declare",
        "store: does not pass the required name",
        "store: has no output key",
    ]


# Linter rules `az bicep build` must treat as errors (infra/bicepconfig.json): mistakes that
# would deploy, and deploy something wrong.
LINTER_ERRORS = {"no-unused-params", "no-unused-vars", "no-hardcoded-env-urls",
                 "secure-parameter-default", "secure-secrets-in-params",
                 "outputs-should-not-contain-secrets", "use-secure-value-for-secure-inputs"}


def unused_declarations(path: Path) -> list[str]:
    """Parameters and variables a template declares and never uses, as the linter's
    no-unused-params and no-unused-vars rules find them."""
    code = re.sub(r"//.*", "", path.read_text())
    return [f"{kind} {name}" for kind in ("param", "var")
            for name in re.findall(rf"^{kind} (\w+)", code, re.MULTILINE)
            if len(re.findall(rf"\b{name}\b", code)) < 2]


def test_the_linter_fails_the_build_on_what_matters_and_the_templates_pass_it() -> None:
    config = json.loads((INFRA / "bicepconfig.json").read_text())["analyzers"]["core"]
    assert config["enabled"] is True
    errors = {rule for rule, setting in config["rules"].items() if setting["level"] == "error"}
    assert errors >= LINTER_ERRORS
    for path in sorted(INFRA.rglob("*.bicep")):
        assert unused_declarations(path) == [], path
    assert unused_declarations(ROOT / "tests" / "infra" / "wiring" / "unused.bicep") == [
        "param unused", "var forgotten"]


def test_main_uses_every_module_and_every_module_exists() -> None:
    used = {(INFRA / m["detail"]["path"]).resolve() for m in main()["modules"].values()}
    assert used == {p.resolve() for p in MODULES.glob("*.bicep")}


def read_yaml(path: Path) -> dict[str, Any]:
    """A simple YAML file of nested mappings and lists of scalars (azure.yaml)."""
    root: dict[str, Any] = {}
    # (indent, container, the mapping holding it, its key there)
    stack: list[tuple[int, Any, dict[str, Any], str]] = [(-1, root, {}, "")]
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent, text = len(line) - len(line.lstrip()), line.strip()
        while stack[-1][0] >= indent:
            stack.pop()
        _, container, holder, key = stack[-1]
        if text.startswith("- "):
            if container == {}:  # the first item: this key holds a list, not a mapping
                container = holder[key] = []
                stack[-1] = (stack[-1][0], container, holder, key)
            container.append(text[2:].strip())
            continue
        name, _, value = text.partition(":")
        if value.strip():
            container[name] = value.strip().strip("'\"")
        else:
            container[name] = {}
            stack.append((indent, container[name], container, name))
    return root


# The first azd release whose Bicep has each feature main.bicep relies on (azd's CHANGELOG:
# 1.12.0 updated the Bicep CLI to v0.33.93, the first with fail()).
AZD_FOR = {"fail(": (1, 12, 0)}
# The first azd that reads an array or object parameter's `${VARIABLE}` in main.parameters.json
# as JSON (azd's CHANGELOG, 1.23.4: "Fix environment variable substitution for array and object
# Bicep parameters"); an older one passes the text on, which ARM refuses for an array, or
# breaks the parameters file's JSON on the value's quotes.
AZD_FOR_JSON_PARAMETERS = (1, 23, 4)


def test_azure_yaml_asks_for_an_azd_whose_bicep_compiles_the_templates() -> None:
    """An older azd installs an older Bicep, which rejects fail() with an unhelpful error, or
    cannot hand a JSON list from the environment to an array parameter (models)."""
    wanted = read_yaml(ROOT / "azure.yaml")["requiredVersions"]["azd"]
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)\.(\d+)", wanted)
    assert match, wanted
    floor = tuple(int(part) for part in match.groups())
    bicep = "\n".join(path.read_text() for path in INFRA.rglob("*.bicep"))
    for feature, first in AZD_FOR.items():
        if feature in bicep:
            assert floor >= first, (feature, wanted)
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    from_json = [name for name, declared in main()["parameters"].items()
                 if declared["type"] in ("array", "object")
                 and "${" in str(parameters[name]["value"])]
    assert from_json == ["models"]
    assert floor >= AZD_FOR_JSON_PARAMETERS, wanted


def test_the_azd_environment_is_not_committed() -> None:
    """.azure/<env>/.env holds the environment's generated secrets (BROOK_SECRET_KEY)."""
    assert ".azure/" in (ROOT / ".gitignore").read_text().splitlines()


def test_azure_yaml_deploys_the_web_service_to_app_service() -> None:
    config = read_yaml(ROOT / "azure.yaml")
    web = config["services"]["web"]
    assert (web["host"], web["language"], web["project"]) == ("appservice", "python", ".")
    assert config["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    # azd pipeline config hands every azd environment variable the parameters file reads
    # (but azd's own) to GitHub, and the workflow hands them back.
    parameters = (INFRA / "main.parameters.json").read_text()
    wanted = set(re.findall(r"\$\{(\w+)", parameters)) - {
        "AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID", "AZURE_PRINCIPAL_TYPE"}
    pipeline = config["pipeline"]
    assert set(pipeline["variables"]) | set(pipeline["secrets"]) == wanted
    assert set(pipeline["secrets"]) == {"BROOK_SECRET_KEY", "POSTGRES_ADMIN_PASSWORD",
                                        "OIDC_CLIENT_SECRET"}
    # The upload is assembled by the prepackage hook into dist, and nothing else goes.
    assert web["dist"] == "build/appservice"
    hooks = web["hooks"]["prepackage"]
    assert hooks["posix"]["run"] == "infra/app/package.sh"
    assert hooks["windows"]["run"] == "infra/app/package.ps1"
    assert (ROOT / "infra" / "app" / "package.ps1").exists()
    # The site carries the tag azd looks for.
    site = only(module("appservice"), "Microsoft.Web/sites")
    assert "'azd-service-name'" in keys(body(site)["tags"])
    assert "web" in strings(body(site)["tags"])


@pytest.mark.slow  # pip wheel
def test_the_upload_installs_brook_with_pip(tmp_path: Path) -> None:
    """What azd uploads: Brook's sources and a requirements.txt of `.`, so App Service's build
    (Oryx) runs `pip install .`; no .env, instance/ or tests. It builds into a wheel."""
    out = tmp_path / "appservice"
    subprocess.run(["sh", str(INFRA / "app" / "package.sh"), str(out)], check=True,
                   capture_output=True)
    top = {p.name for p in out.iterdir()}
    assert top == {"pyproject.toml", "README.md", "gunicorn.conf.py", "src", "requirements.txt"}
    lines = [line for line in (out / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines == ["."]
    assert not list(out.rglob("__pycache__"))
    assert not list(out.rglob("*.egg-info"))
    wheels = tmp_path / "wheels"
    # Offline with this venv's setuptools (Python 3.11 venvs have it), else as pip would.
    offline = ["--no-build-isolation", "--no-index"] if find_spec("setuptools") else []
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *offline,
                    "-w", str(wheels), str(out)], check=True, capture_output=True)
    assert [w.name for w in wheels.glob("brook-*.whl")]


def test_parameters_file_wires_every_parameter_to_the_azd_environment() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = main()["parameters"]
    assert set(parameters) == set(declared), "main.parameters.json and main.bicep disagree"
    values = {name: p["value"] for name, p in parameters.items()}
    assert values["environmentName"] == "${AZURE_ENV_NAME}"
    assert values["location"] == "${AZURE_LOCATION}"
    assert values["principalId"] == "${AZURE_PRINCIPAL_ID}"
    for name, value in values.items():
        match = re.fullmatch(r"\$\{(\w+)(?:=(.*))?\}", value) if isinstance(value, str) else None
        if match is None or match.group(2) is None:
            continue
        # A default in the parameters file must be the Bicep default and an allowed value.
        default = Evaluator(main())(declared[name]["default"])
        expected = str(default).lower() if isinstance(default, bool) else str(default)
        assert match.group(2) == expected, f"{name}: {match.group(2)} here, {expected} in Bicep"
        if any(d["type"] == "allowed" for d in declared[name]["decorators"]):
            assert match.group(2) in [str(v) for v in allowed(main(), name)], name


# Secure parameters that may be left empty, meaning "none": a required one would make azd
# prompt for it (and an empty default is no secret; the linter's secure-parameter-default
# allows it).
OPTIONAL_SECRETS = {"oidcClientSecret": "a public client has no secret, and without sign-in "
                                        "there is no client"}


def test_no_secret_parameter_has_a_default() -> None:
    for path in INFRA.rglob("*.bicep"):
        template = bicep(path)
        for name, parameter in (template.get("parameters") or {}).items():
            secret = re.search(r"password|secret|key$", name, re.IGNORECASE)
            if secret or is_secure(template, name):
                assert is_secure(template, name), f"{path.name}: {name} must be @secure()"
                optional = path.name == "main.bicep" and name in OPTIONAL_SECRETS
                assert parameter["default"] == ("" if optional else None), \
                    f"{path.name}: {name} has a default"
    # azd generates the two secrets once and keeps them in the environment: no prompt, no default.
    for name in ("secretKey", "postgresAdminPassword"):
        metadata = [d["argument"] for d in main()["parameters"][name]["decorators"]
                    if d["type"] == "metadata"]
        assert metadata, name
        assert metadata[0]["azd"]["type"] == "generate", name


# ----------------------------------------------------------------------------------------------
# The contract
# ----------------------------------------------------------------------------------------------

def app_settings() -> dict[str, tuple[Any, str]]:
    """Every app setting the Bicep may give App Service: name -> (value, the main.bicep
    variable that sets it: appSettings, secretSettings, redisSettings when Redis is on, or
    authSettings or modelSettings when its parameter is given)."""
    settings: dict[str, tuple[Any, str]] = {}
    variables = main()["variables"]
    redis = variables["redisSettings"]["value"]["operator"]["operands"]
    assert redis["condition"] == "enableRedis"
    assert redis["false_value"] == {}, "REDIS_URL must be set only when Redis is on"
    sources = [(variables["appSettings"]["value"], "appSettings"),
               (variables["secretSettings"]["value"], "secretSettings"),
               (redis["true_value"], "redisSettings"),
               ({name: value for name, (_, value) in auth_settings().items()}, "authSettings"),
               ({name: value for name, (_, value) in model_settings().items()}, "modelSettings")]
    for values, where in sources:
        for name, value in values.items():
            assert name not in settings, f"{name} is set twice"
            settings[name] = (value, where)
    return settings


def auth_settings() -> dict[str, tuple[Any, Any]]:
    """main.bicep's authSettings: name -> (the condition under which it is NOT set, its value).
    A union of `<unset> ? {} : { NAME: value }`, one setting each."""
    return settings_given("authSettings")


def model_settings() -> dict[str, tuple[Any, Any]]:
    """main.bicep's modelSettings, as auth_settings()."""
    return settings_given("modelSettings")


def settings_given(variable: str) -> dict[str, tuple[Any, Any]]:
    union = main()["variables"][variable]["value"]["function"]
    assert union["type"] == "union"
    found: dict[str, tuple[Any, Any]] = {}
    for part in union["parameters"].values():
        operands = part["operator"]["operands"]
        assert part["operator"]["type"] == "conditional"
        assert operands["true_value"] == {}, expr(part)
        ((name, value),) = operands["false_value"].items()
        assert name not in found, f"{name} is set twice"
        found[name] = (operands["condition"], value)
    return found


# What Azure fills in where the Bicep reads a deployed resource (made-up values of the real
# shapes, a key with characters a URL must escape).
IDENTITIES = "/subscriptions/0000/resourceGroups/rg-brook-prod/providers/" \
    "Microsoft.ManagedIdentity/userAssignedIdentities"
DEPLOYED = {
    "openAiAccess.outputs.endpoint": "https://oai-abc.openai.azure.com/",
    "identity.outputs.clientId": "00000000-0000-0000-0000-0000000000c1",
    "identity.outputs.principalId": "00000000-0000-0000-0000-0000000000b1",
    "identity.outputs.id": f"{IDENTITIES}/id-web-abc123",
    "databaseAdmin.outputs.clientId": "00000000-0000-0000-0000-0000000000c2",
    "databaseAdmin.outputs.principalId": "00000000-0000-0000-0000-0000000000b2",
    "databaseAdmin.outputs.id": f"{IDENTITIES}/id-db-abc123",
    "monitoring.outputs.applicationInsightsConnectionString":
        "InstrumentationKey=00000000-0000-0000-0000-0000000000a1;"
        "IngestionEndpoint=https://eastus-0.in.applicationinsights.azure.com/",
    "postgres.outputs.fqdn": "psql-abc.postgres.database.azure.com",
    "keyVault.outputs.name": "kv-abc123",
    # In redis.bicep:
    "database.listKeys().primaryKey": "k3y/with+and=",
    "cluster.properties.hostName": "redis-abc.eastus.redis.azure.net",
}
DEPLOYMENT_MODES: dict[str, dict[str, Any]] = {
    "F1, public, Entra": {"appServiceSku": "F1", "networkMode": "public",
                          "postgresAuth": "entra"},
    "B1, vnet, Entra": {"appServiceSku": "B1", "networkMode": "vnet", "postgresAuth": "entra"},
    "B1, public, password": {"appServiceSku": "B1", "networkMode": "public",
                             "postgresAuth": "password", "postgresAdminPassword": "p@ss:w/rd%"},
    "S1, 3 instances of 2 workers, Redis": {"appServiceSku": "S1", "instanceCount": 3,
                                            "webConcurrency": 2, "enableRedis": True},
    "B1, OIDC sign-in, signed-in limits": {
        "appServiceSku": "B1", "authMode": "oidc",
        **{parameter: given for parameter, given, _ in AUTH_SETTINGS.values()
           if parameter != "authMode"}},
    "B1, several models, no model titles": {
        "appServiceSku": "B1",
        **{parameter: given for parameter, given, _ in MODEL_SETTINGS.values()}},
}


def fill(value: Any, evaluator: Evaluator, known: dict[str, str] | None = None) -> str:
    """An evaluated value as the string ARM makes of it: interpolations filled in (through
    `evaluator`), deployed resources' values from DEPLOYED or `known`."""
    known = DEPLOYED | (known or {})
    text = known.get(value, value) if isinstance(value, str) else value
    assert isinstance(text, str), (value, text)

    def one(match: re.Match[str]) -> str:
        inner = match.group(1).replace("!.", ".")
        escaped = re.fullmatch(r"uriComponent\((.+)\)", inner)
        if escaped:
            return urllib.parse.quote(fill("${" + escaped.group(1) + "}", evaluator, known),
                                      safe="")
        if inner in known:
            return known[inner]
        return fill(evaluator(inner), evaluator, known)

    return re.sub(r"\$\{([^{}]+(?:\([^()]*\))?[^{}]*)\}", one, text)


def deployment(mode: dict[str, Any]) -> Evaluator:
    """main.bicep's evaluator for a deployment in `mode` (the environment's values filled in)."""
    return Evaluator(main(), environmentName="brook-prod", location="eastus",
                     secretKey="s" * 32, resourceToken="abc123", **mode)


def module_template(name: str) -> dict[str, Any]:
    """The template of main.bicep's module `name`."""
    return bicep(INFRA / main()["modules"][name]["detail"]["path"])


def module_evaluator(name: str, evaluate: Evaluator) -> Evaluator:
    """An evaluator of main.bicep's module `name`, given the parameters main.bicep passes it
    (evaluated by `evaluate`, strings filled in)."""
    values: dict[str, Any] = {}
    for parameter, value in (body(main()["modules"][name]).get("params") or {}).items():
        evaluated = evaluate(value)
        values[parameter] = fill(evaluated, evaluate) if isinstance(evaluated, str) else evaluated
    return Evaluator(module_template(name), **values)


SECRET_TYPE = "Microsoft.KeyVault/vaults/secrets"
# An app setting App Service resolves from Key Vault (as the site's keyVaultReferenceIdentity).
REFERENCE = re.compile(r"@Microsoft\.KeyVault\(SecretUri=(?P<uri>[^()]*)\)")


def key_vault(mode: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """What a deployment in `mode` keeps in Key Vault: the secret URI that each module output
    `<module>.outputs.<name>` holding a secret's `properties.secretUri` stands for, and the
    value stored at each URI (evaluated as the module that writes it would)."""
    evaluate = deployment(mode)
    uris: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for name, declaration in main()["modules"].items():
        template = module_template(name)
        declared = resources(template, SECRET_TYPE)
        condition = declaration["config"].get("condition")
        if not declared or (condition is not None and not evaluate(condition)):
            continue
        inner = module_evaluator(name, evaluate)
        for symbol, secret in declared.items():
            condition = secret["config"].get("condition")
            if condition is not None and not inner(condition):
                continue
            config = body(secret)
            vault = body(template["resources"][config["parent"]])
            uri = (f"https://{fill(inner(vault['name']), inner)}.vault.azure.net/secrets/"
                   f"{fill(inner(config['name']), inner)}")
            assert uri not in secrets, f"two secrets at {uri}"
            secrets[uri] = fill(inner(config["properties"]["value"]), inner)
            for output, value in (template.get("outputs") or {}).items():
                if expr(value["value"]) == f"{symbol}.properties.secretUri":
                    uris[f"{name}.outputs.{output}"] = uri
    return uris, secrets


def deployed_settings(mode: dict[str, Any]) -> dict[str, str]:
    """The app settings a deployment in `mode` gives the site, as strings, as the site's
    configuration holds them: what main.bicep passes the site module evaluated (the settings
    only some deployments have included or not), interpolations filled in, resources' values
    from DEPLOYED, Key Vault references with their secrets' URIs."""
    evaluate = deployment(mode)
    uris, _ = key_vault(mode)
    settings = evaluate(body(main()["modules"]["web"])["params"]["appSettings"])
    assert isinstance(settings, dict)
    return {name: fill(value, evaluate, uris) for name, value in settings.items()}


def resolved_settings(mode: dict[str, Any]) -> dict[str, str]:
    """The environment Brook starts with: each Key Vault reference replaced by the secret at
    its URI, as App Service does (a reference to nothing the templates store fails here)."""
    _, secrets = key_vault(mode)
    environment: dict[str, str] = {}
    for name, value in deployed_settings(mode).items():
        reference = REFERENCE.fullmatch(value)
        if reference:
            assert reference["uri"] in secrets, f"{name}: no secret at {reference['uri']}"
            value = secrets[reference["uri"]]
        environment[name] = value
    return environment


@pytest.mark.parametrize("mode", DEPLOYMENT_MODES, ids=list(DEPLOYMENT_MODES))
def test_the_settings_each_mode_deploys_are_accepted_by_brook(mode: str,
                                                              tmp_path: Path) -> None:
    from brook.config import load_settings

    deployed = resolved_settings(DEPLOYMENT_MODES[mode])
    for name, value in deployed.items():
        assert "${" not in value, (name, value)
        assert ".outputs." not in value, (name, value)
        assert "@Microsoft.KeyVault" not in value, (name, value)
    settings = load_settings(deployed, tmp_path)  # raises ConfigError on anything it refuses
    assert settings.secret_key == "s" * 32
    assert settings.provider == "azure"
    assert settings.appinsights_entra_auth is True
    assert settings.azure_openai_endpoint == DEPLOYED["openAiAccess.outputs.endpoint"]
    password = DEPLOYMENT_MODES[mode].get("postgresAuth") == "password"
    assert settings.database_entra_auth is not password
    assert settings.database_url.startswith("postgresql")
    assert "psql-abc.postgres.database.azure.com:5432/brook" in settings.database_url
    if password:
        assert "://brookadmin:p%40ss%3Aw%2Frd%25@" in settings.database_url
    else:  # the app's managed identity is the database user, its token the password
        assert "://id-web-abc123@" in settings.database_url
    assert (settings.redis_url is not None) is bool(DEPLOYMENT_MODES[mode].get("enableRedis"))
    if settings.redis_url:
        assert settings.redis_url.startswith("rediss://:k3y%2Fwith%2Band%3D@redis-abc.")
    # Sign-in: as given, or Brook's defaults (App Service Authentication is not on here).
    given = DEPLOYMENT_MODES[mode]
    assert settings.auth_mode == given.get("authMode", "anonymous")
    assert settings.oidc_issuer == given.get("oidcIssuer")
    assert settings.oidc_client_id == given.get("oidcClientId")
    assert settings.oidc_client_secret == given.get("oidcClientSecret")  # from the vault
    assert settings.oidc_scopes == given.get("oidcScopes", "openid email profile")
    assert settings.admin_emails == ({"ana@example.com"} if "adminEmails" in given else set())
    assert settings.auth_allowed_domains == \
        ({"example.com"} if "authAllowedDomains" in given else set())
    if "signedInLimitTokensPerDay" in given:
        assert (settings.signed_in_limit_answers_per_minute,
                settings.signed_in_limit_tokens_per_day) == (30, 0)
    else:  # the same as everyone's
        assert settings.signed_in_limit_tokens_per_day is None
    # Models: the chat deployment alone, or it and those given; each on the account, keyless.
    specs = settings.model_specs
    assert [spec.id for spec in specs] == (["gpt-4.1", "gpt-4.1-mini", "o4-mini"] if "models"
                                           in given else ["gpt-4.1-mini"])  # the default first
    assert {spec.provider for spec in specs} == {"azure"}
    assert {spec.endpoint for spec in specs} == {DEPLOYED["openAiAccess.outputs.endpoint"]}
    assert {spec.api_key for spec in specs} == {None}
    assert settings.model_titles is given.get("modelTitles", True)


def test_every_variable_brook_reads_has_a_production_decision() -> None:
    read = variables_brook_reads() | {"AZURE_CLIENT_ID"}
    assert {"DATABASE_URL", "SECRET_KEY", "PORT", "TIKTOKEN_CACHE_DIR"} <= read
    decided = set(SET_BY_BICEP) | set(NOT_SET)
    assert not set(SET_BY_BICEP) & set(NOT_SET)
    assert read - decided == set(), "Brook reads these: decide in tests/test_infra.py"
    assert decided - read == set(), "Brook no longer reads these: drop them"


def test_app_service_gets_exactly_the_production_settings() -> None:
    settings = app_settings()
    assert set(settings) == set(SET_BY_BICEP) | set(PLATFORM)
    where = {name: source for name, (_, source) in settings.items()}
    assert {n for n, w in where.items()
            if w in ("redisSettings", "authSettings", "modelSettings")} == CONDITIONAL
    # The secrets are exactly the settings that are (or may be) Key Vault references, and
    # none is among the plain appSettings.
    references = {name for name, (value, _) in settings.items()
                  if "@Microsoft.KeyVault(" in " ".join(strings(value))}
    assert references == SECRET
    assert {n for n, w in where.items() if w == "secretSettings"} <= SECRET
    assert not {n for n, w in where.items() if w == "appSettings"} & (SECRET | CONDITIONAL)
    # The five are the site's settings, whole.
    assert body(main()["modules"]["web"])["params"]["appSettings"] == {"function": {
        "type": "union", "parameters": {"arg_1": "appSettings", "arg_2": "secretSettings",
                                        "arg_3": "redisSettings", "arg_4": "authSettings",
                                        "arg_5": "modelSettings"}}}
    web = module("appservice")
    settings_resource = [body(r) for r in resources(web, "Microsoft.Web/sites/config").values()
                         if body(r)["name"] == "appsettings"]
    assert len(settings_resource) == 1
    assert settings_resource[0]["properties"] == "appSettings"
    # Nothing the site module gets is a secret (test_no_app_setting_holds_a_secret...).
    assert not [name for name in web["parameters"] if is_secure(web, name)]


def without_emptiness_tests(value: Any) -> Any:
    """A parsed value with each `empty(x)` in it replaced by the word `empty`: whether a value
    was given is no secret, so a condition may ask it of a secure parameter."""
    if isinstance(value, dict):
        function = value.get("function")
        if isinstance(function, dict) and function.get("type") == "empty":
            return "empty"
        return {key: without_emptiness_tests(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_emptiness_tests(item) for item in value]
    return value


def used_by(value: Any, template: dict[str, Any], seen: set[str] | None = None) -> Iterator[str]:
    """Every string in a parsed value and in the variables it uses, through interpolations,
    but for what `empty()` tests."""
    seen = set() if seen is None else seen
    variables = template.get("variables") or {}
    for text in strings(without_emptiness_tests(value)):
        yield text
        for word in re.findall(r"\w+", text):
            if word in variables and word not in seen:
                seen.add(word)
                yield from used_by(variables[word]["value"], template, seen)


@pytest.mark.parametrize("mode", DEPLOYMENT_MODES, ids=list(DEPLOYMENT_MODES))
def test_no_app_setting_holds_a_secret_in_plain_text(mode: str) -> None:
    """The site's configuration, which anyone with contributor rights on it can read, holds no
    SECRET_KEY, password or access key: only Key Vault references to them."""
    values = DEPLOYMENT_MODES[mode]
    plain = {"s" * 32, DEPLOYED["database.listKeys().primaryKey"]}
    for parameter in ("postgresAdminPassword", "oidcClientSecret"):
        if parameter in values:
            plain.add(values[parameter])
    plain |= {urllib.parse.quote(secret, safe="") for secret in plain}
    for name, value in deployed_settings(values).items():
        assert not [secret for secret in plain if secret in value], name
    # Nor can any mode put one there: what main.bicep hands the site names no secure
    # parameter (but to ask whether it is empty) and calls no list*() function.
    secure = {name for name in main()["parameters"] if is_secure(main(), name)}
    assert {"secretKey", "postgresAdminPassword", "oidcClientSecret"} <= secure
    for text in used_by(body(main()["modules"]["web"])["params"], main()):
        assert not set(re.findall(r"\w+", text)) & secure, text
        assert "listKeys" not in text, text


@pytest.mark.parametrize("mode", DEPLOYMENT_MODES, ids=list(DEPLOYMENT_MODES))
def test_each_secret_setting_is_a_reference_to_a_secret_in_the_vault(mode: str) -> None:
    values = DEPLOYMENT_MODES[mode]
    settings = deployed_settings(values)
    _, secrets = key_vault(values)
    vault = fill(deployment(values)(body(main()["modules"]["keyVault"])["params"]["name"]),
                 deployment(values))
    assert vault == DEPLOYED["keyVault.outputs.name"] == "kv-abc123"
    assert expr(module("keyvault")["outputs"]["name"]["value"]) == "vault.name"
    referenced = set()
    for name in SECRET & set(settings):
        value = settings[name]
        if name == "DATABASE_URL" and values.get("postgresAuth", "entra") == "entra":
            # Its password is a fresh Entra token: nothing secret to keep.
            assert not REFERENCE.search(value)
            assert urllib.parse.urlsplit(value).password is None
            continue
        reference = REFERENCE.fullmatch(value)
        assert reference, f"{name} is no Key Vault reference: {value}"
        # The unversioned URI of a secret in Brook's vault: rotation reaches the app.
        assert re.fullmatch(rf"https://{vault}\.vault\.azure\.net/secrets/[a-z0-9-]+",
                            reference["uri"]), reference["uri"]
        assert reference["uri"] in secrets
        referenced.add(reference["uri"])
    assert referenced == set(secrets), "a secret no setting refers to"
    assert ("REDIS_URL" in settings) is bool(values.get("enableRedis"))


def test_the_app_identity_alone_reads_the_vault() -> None:
    keyvault = module("keyvault")
    vault = body(only(keyvault, "Microsoft.KeyVault/vaults"))["properties"]
    # Azure RBAC decides who reads a secret (no access policies); deleted secrets and the
    # vault itself stay recoverable, and nobody can purge them before their time.
    assert vault["enableRbacAuthorization"] is True
    assert "accessPolicies" not in vault
    assert (vault["enableSoftDelete"], vault["enablePurgeProtection"]) == (True, True)
    assert 7 <= vault["softDeleteRetentionInDays"] <= 90
    # One role assignment on the vault: Key Vault Secrets User for the app's identity.
    role = body(only(keyvault, "Microsoft.Authorization/roleAssignments"))
    assert role["scope"] == "vault"
    assert keyvault["variables"]["secretsUserRoleId"]["value"] == \
        "4633458b-17de-408a-b874-0445c86b69e6"  # Key Vault Secrets User
    assert "secretsUserRoleId" in strings(role["properties"]["roleDefinitionId"])
    assert role["properties"]["principalId"] == "readerPrincipalId"
    assert role["properties"]["principalType"] == "ServicePrincipal"
    params = body(main()["modules"]["keyVault"])["params"]
    assert expr(params["readerPrincipalId"]) == "identity.outputs.principalId"
    # No other template grants anything on a vault (the developer included: an operator who
    # must read a secret assigns the role to themself, docs/deploy.md).
    for path in INFRA.rglob("*.bicep"):
        if path.name != "keyvault.bicep":
            assert "4633458b-17de-408a-b874-0445c86b69e6" not in path.read_text(), path
    # Every module that writes a secret writes it into that vault.
    for name, declaration in main()["modules"].items():
        if resources(module_template(name), SECRET_TYPE) and name != "keyVault":
            vault_names = [p for p, v in body(declaration)["params"].items()
                           if expr(v) == "keyVault.outputs.name"]
            assert vault_names, f"{name} writes a secret outside Brook's vault"
    # App Service resolves the references as the app's identity, which the site holds.
    site = body(only(module("appservice"), "Microsoft.Web/sites"))
    assert site["properties"]["keyVaultReferenceIdentity"] == "identityId"
    assert expr(body(main()["modules"]["web"])["params"]["identityId"]) == "identity.outputs.id"


def test_production_setting_values() -> None:
    settings = {name: value for name, (value, _) in app_settings().items()}
    evaluate = Evaluator(main())
    fixed = {"HOST": "0.0.0.0", "PORT": "8000", "TRUSTED_PROXIES": "1", "MODEL_PROVIDER": "azure",
             "SCM_DO_BUILD_DURING_DEPLOYMENT": "true", "ENABLE_ORYX_BUILD": "true"}
    for name, value in fixed.items():
        assert settings[name] == value, name
    assert evaluate(settings["WEB_CONCURRENCY"]) == "1"
    assert evaluate(settings["AZURE_OPENAI_DEPLOYMENT"]) == "gpt-4.1-mini"
    # Another model alone names its deployment after itself; a deployment name wins.
    other = Evaluator(main(), chatModelName="gpt-4o", chatDeploymentName="")
    assert other(settings["AZURE_OPENAI_DEPLOYMENT"]) == "gpt-4o"
    assert other(body(main()["modules"]["openAi"])["params"]["deploymentName"]) == "gpt-4o"
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["chatDeploymentName"]["value"] == "${AZURE_OPENAI_DEPLOYMENT}"
    named = Evaluator(main(), chatModelName="gpt-4o", chatDeploymentName="chat")
    assert named(settings["AZURE_OPENAI_DEPLOYMENT"]) == "chat"
    assert named(main()["outputs"]["AZURE_OPENAI_DEPLOYMENT"]["value"]) == "chat"
    assert evaluate(settings["AZURE_OPENAI_API_VERSION"]) == "2024-10-21"
    assert settings["SECRET_KEY"] == \
        "@Microsoft.KeyVault(SecretUri=${keyVault.outputs.secretKeyUri})"
    assert body(main()["modules"]["keyVault"])["params"]["secretKey"] == "secretKey"
    assert is_secure(main(), "secretKey")
    assert is_secure(module("keyvault"), "secretKey")
    # Entra by default: the identity is the database user and the password a token.
    assert Evaluator(main())(settings["DATABASE_ENTRA_AUTH"]) == "true"
    assert Evaluator(main(), postgresAuth="password")(settings["DATABASE_ENTRA_AUTH"]) == "false"
    url = settings["DATABASE_URL"]["operator"]["operands"]
    assert url["condition"] == "entraDatabaseAuth"
    assert url["true_value"] == "entraDatabaseUrl"
    assert url["false_value"] == \
        "@Microsoft.KeyVault(SecretUri=${databaseUrlSecret!.outputs.uri})"
    assert body(main()["modules"]["databaseUrlSecret"])["params"]["value"] == \
        "passwordDatabaseUrl"
    assert is_secure(module("keyvault-secret"), "value")
    entra = main()["variables"]["entraDatabaseUrl"]["value"]
    password = main()["variables"]["passwordDatabaseUrl"]["value"]
    assert entra.startswith("postgresql://${identityName}@${postgres.outputs.fqdn}:5432/")
    assert password.startswith("postgresql://${postgresAdminLogin}:"
                               "${uriComponent(postgresAdminPassword)}@")
    assert entra.endswith("?sslmode=require")
    assert password.endswith("?sslmode=require")
    assert expr(settings["AZURE_CLIENT_ID"]) == "identity.outputs.clientId"
    assert expr(settings["AZURE_OPENAI_ENDPOINT"]) == "openAiAccess.outputs.endpoint"
    assert expr(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]) == \
        "monitoring.outputs.applicationInsightsConnectionString"
    assert settings["REDIS_URL"] == \
        "@Microsoft.KeyVault(SecretUri=${redis!.outputs.urlSecretUri})"
    redis_url = body(only(module("redis"), SECRET_TYPE))["properties"]["value"]
    assert redis_url.startswith("rediss://:${uriComponent(")
    assert ".listKeys()." in redis_url
    assert "AZURE_OPENAI_API_KEY" not in settings
    assert "WEBSITE_AUTH_ENABLED" not in settings


def test_outputs_match_the_azure_variables_of_env_sample() -> None:
    outputs = main()["outputs"]
    sample = (ROOT / ".env.sample").read_text()
    documented = set(re.findall(r"^#?\s*(AZURE_[A-Z_]+)=", sample, re.MULTILINE))
    assert documented == {"AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT",
                          "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_API_VERSION", "AZURE_CLIENT_ID"}
    assert set(outputs) - set(AZD_OUTPUTS) == documented - set(NOT_OUTPUT)
    assert set(AZD_OUTPUTS) <= set(outputs), "stale entries in AZD_OUTPUTS"
    # No output is another variable Brook reads, and none carries a secret.
    assert not (set(outputs) - documented) & variables_brook_reads()
    secure = {n for n in main()["parameters"] if is_secure(main(), n)}
    for name, output in outputs.items():
        text = " ".join(strings(output["value"]))
        assert not any(s in text for s in secure), name
        assert "listKeys" not in text, name
        assert not any(d["type"] == "secure" for d in output["decorators"]), name


# ----------------------------------------------------------------------------------------------
# Structure
# ----------------------------------------------------------------------------------------------

def test_free_tier_has_always_on_off_and_a_32_bit_worker() -> None:
    web = module("appservice")
    assert body(main()["modules"]["web"])["params"]["sku"] == "appServiceSku"
    assert allowed(web, "sku") == allowed(main(), "appServiceSku")
    site_config = body(only(web, "Microsoft.Web/sites"))["properties"]["siteConfig"]
    for sku in allowed(main(), "appServiceSku"):
        evaluate = Evaluator(web, sku=sku)
        always_on = evaluate(site_config["alwaysOn"])
        use_32_bit = evaluate(site_config["use32BitWorkerProcess"])
        assert (always_on, use_32_bit) == ((False, True) if sku == "F1" else (True, False)), sku
    plan = body(only(web, "Microsoft.Web/serverfarms"))
    assert plan["sku"]["name"] == "sku"
    assert plan["properties"]["reserved"] is True


def test_vnet_with_the_free_tier_fails_before_anything_is_created() -> None:
    rg = body(only(main(), "Microsoft.Resources/resourceGroups"))
    assert "checkedNetworkMode" in strings(rg["tags"]), "the guard must be evaluated first"
    assert "dependsOn" not in rg
    guard = main()["variables"]["checkedNetworkMode"]["value"]
    combinations = itertools.product(allowed(main(), "appServiceSku"),
                                     allowed(main(), "networkMode"))
    for sku, mode in combinations:
        evaluate = Evaluator(main(), appServiceSku=sku, networkMode=mode)
        if (sku, mode) == ("F1", "vnet"):
            with pytest.raises(Failed, match=r"vnet needs App Service B1.*F1.*no VNet"):
                evaluate(guard)
        else:
            assert evaluate(guard) == mode
    # Everything that depends on the mode goes through the guard.
    assert main()["variables"]["privateNetwork"]["value"]["operator"]["operands"]["operand_1"] \
        == "checkedNetworkMode"


# How many instances each plan runs (App Service's documented scale-out limits).
MAX_INSTANCES = {"F1": 1, "B1": 3, "B2": 3, "B3": 3, "S1": 10, "P0v3": 30, "P1v3": 30,
                 "P2v3": 30}


def test_several_instances_or_workers_need_redis_and_a_plan_that_runs_them() -> None:
    guard = main()["variables"]["checkedScale"]["value"]
    assert set(allowed(main(), "appServiceSku")) == set(MAX_INSTANCES)
    for sku, instances, workers, redis in itertools.product(
            MAX_INSTANCES, [1, 2, 3, 4, 10, 11, 30], [1, 3], [False, True]):
        evaluate = Evaluator(main(), appServiceSku=sku, instanceCount=instances,
                             webConcurrency=workers, enableRedis=redis)
        refused = ((instances > 1 or workers > 1) and not redis) or \
            instances > MAX_INSTANCES[sku]
        if refused:
            with pytest.raises(Failed):
                evaluate(guard)
        else:
            assert evaluate(guard) == instances
    assert body(main()["modules"]["web"])["params"]["instanceCount"] == "checkedScale"


def test_vnet_subnets_delegations_and_private_dns_zone() -> None:
    network = module("network")
    vnet = body(only(network, "Microsoft.Network/virtualNetworks"))["properties"]
    space = ipaddress.ip_network(vnet["addressSpace"]["addressPrefixes"][0])
    assert space == ipaddress.ip_network("10.0.0.0/16")
    subnets = {}
    for subnet in vnet["subnets"]:
        name = Evaluator(network)(subnet["name"])
        prefix = ipaddress.ip_network(subnet["properties"]["addressPrefix"])
        assert prefix.subnet_of(space)  # type: ignore[arg-type]
        services = [d["properties"]["serviceName"] for d in subnet["properties"]["delegations"]]
        subnets[name] = (prefix, services)
    assert subnets["database-subnet"][1] == ["Microsoft.DBforPostgreSQL/flexibleServers"]
    assert subnets["web-subnet"][1] == ["Microsoft.Web/serverFarms"]
    assert not subnets["database-subnet"][0].overlaps(subnets["web-subnet"][0])
    zone = body(only(network, "Microsoft.Network/privateDnsZones"))
    assert zone["name"].endswith(".private.postgres.database.azure.com")
    assert zone["location"] == "global"
    link = body(only(network, "Microsoft.Network/privateDnsZones/virtualNetworkLinks"))
    assert link["properties"]["registrationEnabled"] is False
    assert link["properties"]["virtualNetwork"]["id"] == {
        "operator": {"type": "property_accessor",
                     "operands": {"operand_1": "virtualNetwork", "operand_2": "id"}}}
    # main wires the subnets: the server into the database subnet with the zone, the app into
    # the web subnet (VNet integration), and only in vnet mode.
    assert main()["modules"]["network"]["config"]["condition"] == "privateNetwork"
    postgres = body(main()["modules"]["postgres"])["params"]
    web = body(main()["modules"]["web"])["params"]
    assert expr(postgres["delegatedSubnetId"]) == \
        'privateNetwork ? network.outputs.databaseSubnetId : ""'
    assert expr(postgres["privateDnsZoneId"]) == \
        'privateNetwork ? network.outputs.privateDnsZoneId : ""'
    assert expr(web["virtualNetworkSubnetId"]) == \
        'privateNetwork ? network.outputs.webSubnetId : ""'
    site = body(only(module("appservice"), "Microsoft.Web/sites"))["properties"]
    assert "virtualNetworkSubnetId" in site


def test_postgres_flexible_server() -> None:
    postgres = module("postgres")
    server = body(only(postgres, "Microsoft.DBforPostgreSQL/flexibleServers"))

    def properties(**values: Any) -> dict[str, Any]:
        evaluated: dict[str, Any] = Evaluator(postgres, **values)(server["properties"])
        return evaluated

    entra = properties(authMode="entra")
    assert entra["version"] == "version"
    assert entra["storage"]["storageSizeGB"] == "storageSizeGB"
    assert entra["authConfig"]["activeDirectoryAuth"] == "Enabled"
    assert entra["authConfig"]["passwordAuth"] == "Disabled"
    assert "administratorLogin" not in entra  # Entra-only: no password administrator at all
    assert "administratorLoginPassword" not in entra
    password = properties(authMode="password")
    assert password["authConfig"]["passwordAuth"] == "Enabled"
    assert password["administratorLoginPassword"] == "administratorLoginPassword"
    assert is_secure(postgres, "administratorLoginPassword")
    # Private access: injected into the subnet with the zone, no public endpoint.
    private = properties(delegatedSubnetId="subnet", privateDnsZoneId="zone")
    assert private["network"] == {"delegatedSubnetResourceId": "subnet",
                                  "privateDnsZoneArmResourceId": "zone",
                                  "publicNetworkAccess": "Disabled"}
    assert properties(delegatedSubnetId="")["network"] == {"publicNetworkAccess": "Enabled"}
    # No database (test_no_template_creates_the_database); firewall rules in a loop.
    rules = resources(postgres, "Microsoft.DBforPostgreSQL/flexibleServers/firewallRules")
    single = next(r for r in rules.values() if "loop_type" in r["config"])
    assert "allowedSingleIPs" in strings(single["config"]["loop_type"])
    # main.bicep takes them as one comma-separated azd variable, not a list in a committed file.
    assert body(main()["modules"]["postgres"])["params"]["allowedSingleIPs"] == "allowedIps"
    assert main()["parameters"]["allowedSingleIPs"]["type"] == "string"
    assert {"split", "replace", "empty"} <= set(strings(main()["variables"]["allowedIps"]["value"]))
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["allowedSingleIPs"]["value"] == "${POSTGRES_ALLOWED_IPS}"
    assert Evaluator(postgres, privateAccess=True)(
        single["config"]["loop_type"]["detail"]["array_name"]) == []
    azure = next(r for r in rules.values() if "loop_type" not in r["config"])
    assert body(azure)["properties"] == {"startIpAddress": "0.0.0.0", "endIpAddress": "0.0.0.0"}
    for private_access, allow, created in ((False, True, True), (False, False, False),
                                           (True, True, False)):
        evaluate = Evaluator(postgres, privateAccess=private_access, allowAzureServices=allow)
        assert bool(evaluate(azure["config"]["condition"])) is created
    assert allowed(main(), "postgresVersion")[-1] == "17"
    # 13 is past its end of life (November 2025): no new server on it.
    assert min(int(version) for version in allowed(main(), "postgresVersion")) >= 14
    assert main()["parameters"]["postgresSkuName"]["default"] == "Standard_B1ms"
    assert main()["parameters"]["postgresSkuTier"]["default"] == "Burstable"
    # Children one at a time: 0.0.0.0 -> single IPs -> admins -> TLS settings.
    order = ["allowAzureServicesRule", "allowSingleIPRules", "administrators",
             "requireSecureTransport", "minimumTlsVersion"]
    assert "dependsOn" not in body(postgres["resources"][order[0]])
    for before, after in itertools.pairwise(order):
        assert body(postgres["resources"][after])["dependsOn"] == [before], after
    children = {name for name, r in postgres["resources"].items()
                if r["type"].startswith(f"{SERVER}/")}
    assert children == set(order), "a child of the server outside the one-at-a-time chain"


def test_brook_is_no_postgres_administrator_but_the_database_admin_and_developer_are() -> None:
    admins = body(only(module("postgres"),
                       "Microsoft.DBforPostgreSQL/flexibleServers/administrators"))
    assert admins["name"] == {"operator": {"type": "property_accessor",
                                           "operands": {"operand_1": "admin",
                                                        "operand_2": "objectId"}}}
    assert admins["properties"]["principalName"]["operator"]["operands"]["operand_2"] == "name"
    declared = body(main()["modules"]["postgres"])["params"]["entraAdministrators"]
    database_admin = {"objectId": "databaseAdmin.outputs.principalId",
                      "name": "id-db-${resourceToken}", "type": "ServicePrincipal"}
    developer = Evaluator(main(), principalId="dev")(declared)[1]
    assert (developer["objectId"], developer["type"]) == ("dev", "User")
    assert developer["name"] == main()["variables"]["developerPostgresRole"]["value"]
    assert Evaluator(main(), principalId="dev")(declared) == [database_admin, developer]
    assert Evaluator(main(), principalId="")(declared) == [database_admin]
    # Brook's identity (id-web) is not among them, by object id or by role name.
    text = json.dumps(declared)
    assert "identity.outputs" not in text
    assert "identityName" not in text
    # The administrator is a second identity of the same module, with a name of its own.
    identities = {name: body(m)["params"]["name"] for name, m in main()["modules"].items()
                  if m["detail"]["path"] == "modules/identity.bicep"}
    assert identities == {"identity": "identityName", "databaseAdmin": "databaseAdminName"}
    assert main()["variables"]["databaseAdminName"]["value"] == "id-db-${resourceToken}"
    assert main()["variables"]["identityName"]["value"] == "id-web-${resourceToken}"
    assert main()["outputs"]["POSTGRES_ADMIN_ROLE"]["value"] == "databaseAdminName"


def test_no_template_creates_the_database() -> None:
    """A database made by ARM belongs to no Entra administrator, and from PostgreSQL 15 on
    only its owner may create in `public`: `brook db setup` creates it instead."""
    for path in INFRA.rglob("*.bicep"):
        kinds = {r["type"] for r in (bicep(path).get("resources") or {}).values()}
        assert f"{SERVER}/databases" not in kinds, path
    assert "databaseNames" not in main()["parameters"]
    assert "databaseNames" not in module("postgres")["parameters"]
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert "databaseNames" not in parameters
    # One database, by a name PostgreSQL takes (at most 63 bytes).
    decorators = {d["type"]: d.get("argument") for d in
                  main()["parameters"]["databaseName"]["decorators"]}
    assert (decorators["min_length"], decorators["max_length"]) == (1, 63)
    assert "brook db setup" in decorators["description"]
    assert main()["parameters"]["databaseName"]["default"] == "brook"


SERVE = "brook db upgrade && brook serve --host 0.0.0.0 --port 8000"
SETUP_ENTRA = ("brook db setup --admin-role id-db-abc123"
               f" --admin-client-id {DEPLOYED['databaseAdmin.outputs.clientId']}"
               f" --app-object-id {DEPLOYED['identity.outputs.principalId']}")
# (postgresAuth, postgresSetupOnStart) -> (start-up command, identities the site holds)
STARTUP = {
    ("entra", True): (f"{SETUP_ENTRA} && {SERVE}", {"id-web-abc123", "id-db-abc123"}),
    ("password", True): (f"brook db setup && {SERVE}", {"id-web-abc123"}),
    ("entra", False): (SERVE, {"id-web-abc123"}),
    ("password", False): (SERVE, {"id-web-abc123"}),
}


def site_startup(**mode: Any) -> tuple[str, set[str]]:
    """The site's start-up command and the names of the identities it holds, deployed."""
    evaluate = deployment(mode)
    params = body(main()["modules"]["web"])["params"]
    web = module("appservice")
    in_web = Evaluator(web, **{name: fill(evaluate(params[name]), evaluate)
                               for name in ("startupCommand", "identityId",
                                            "databaseAdminIdentityId")})
    site = body(only(web, "Microsoft.Web/sites"))
    command = fill(in_web(site["properties"]["siteConfig"]["appCommandLine"]), in_web)
    held = in_web(site["identity"]["userAssignedIdentities"])
    return command, {fill(key.strip("'"), in_web).rpartition("/")[2] for key in held}


def cli_command(words: list[str]) -> Any:
    """The click command `brook <words...>` runs (words up to the first option)."""
    import click

    import brook.cli

    command: Any = brook.cli.main
    for word in words:
        assert isinstance(command, click.Group), words
        assert word in command.commands, f"brook has no command {' '.join(words)}"
        command = command.commands[word]
    return command


@pytest.mark.parametrize(("auth", "setup"), list(STARTUP), ids=[f"{a}, setup {s}"
                                                                 for a, s in STARTUP])
def test_the_start_up_command_sets_up_the_database_with_options_brook_declares(
        auth: str, setup: bool) -> None:
    assert main()["parameters"]["postgresSetupOnStart"]["default"] is True
    command, identities = site_startup(postgresAuth=auth, postgresSetupOnStart=setup)
    assert (command, identities) == STARTUP[(auth, setup)]
    # Every step is a command the real CLI has, given only options it declares.
    for step in command.split(" && "):
        words = step.split()
        assert words[0] == "brook"
        path = list(itertools.takewhile(lambda w: not w.startswith("--"), words[1:]))
        declared = {option for parameter in cli_command(path).params
                    for option in parameter.opts}
        used = {w for w in words if w.startswith("--")}
        assert used <= declared, f"brook {' '.join(path)} declares no {used - declared}"
    # Brook runs as id-web whatever else the site holds.
    settings = {name: value for name, (value, _) in app_settings().items()}
    assert expr(settings["AZURE_CLIENT_ID"]) == "identity.outputs.clientId"


def test_postgres_setup_on_start_is_an_azd_variable() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["postgresSetupOnStart"]["value"] == "${POSTGRES_SETUP_ON_START=true}"
    assert "POSTGRES_SETUP_ON_START" in read_yaml(ROOT / "azure.yaml")["pipeline"]["variables"]


# The limits every visitor has: setting -> its parameter (always set, Brook's default by default).
LIMITS = {
    "LIMIT_ANSWERS_PER_MINUTE": "limitAnswersPerMinute",
    "LIMIT_CONCURRENT_ANSWERS": "limitConcurrentAnswers",
    "LIMIT_TOKENS_PER_DAY": "limitTokensPerDay",
    "LIMIT_CONVERSATIONS_PER_DAY": "limitConversationsPerDay",
    "LIMIT_STORED_CONVERSATIONS": "limitStoredConversations",
    "BUDGET_TOKENS_PER_DAY": "budgetTokensPerDay",
}


def brook_default(variable: str) -> Any:
    """The default of the setting Brook reads from `variable`."""
    from brook.config import Settings

    (field,) = [f for f in Settings.model_fields.values() if f.validation_alias == variable]
    return field.default


def decorators(parameter: str) -> dict[str, Any]:
    return {d["type"]: d.get("argument") for d in main()["parameters"][parameter]["decorators"]}


def test_limits_and_sign_in_are_parameters_named_after_brooks_variables() -> None:
    """Each is a described parameter of main.bicep, read by main.parameters.json from the azd
    variable of the setting's own name, and handed on by `azd pipeline config` and the
    workflow, so `azd env set <NAME> <value>` works as the README's table says."""
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    pipeline = read_yaml(ROOT / "azure.yaml")["pipeline"]
    workflow = (WORKFLOWS / "azure-dev.yml").read_text()
    wanted = {setting: (parameter, decorators(parameter), main()["parameters"][parameter])
              for setting, parameter in LIMITS.items()}
    wanted |= {setting: (parameter, decorators(parameter), main()["parameters"][parameter])
               for setting, (parameter, _, _) in AUTH_SETTINGS.items()}
    for setting, (parameter, decorated, declared) in wanted.items():
        assert len(decorated.get("description") or "") > 30, f"{parameter}: describe it"
        default = Evaluator(main())(declared["default"])
        value = parameters[parameter]["value"]
        if declared["type"] == "int":
            # A limit: 0 turns it off; the signed-in ones' -1 (the default) sets nothing.
            signed_in = setting.startswith("SIGNED_IN_")
            assert decorated["min_value"] == (-1 if signed_in else 0), parameter
            assert default == (-1 if signed_in else brook_default(setting)), parameter
            assert value == f"${{{setting}={default}}}", parameter
        else:
            assert default == "", parameter  # empty: not set, Brook's default applies
            assert value == f"${{{setting}}}", parameter
        secret = setting in SECRET
        assert is_secure(main(), parameter) is secret, parameter
        assert setting in pipeline["secrets" if secret else "variables"], setting
        source = "secrets" if secret else "vars"
        assert f"{setting}: ${{{{ {source}.{setting} }}}}" in workflow, setting
    # authMode takes Brook's modes, or nothing (Brook then decides by WEBSITE_AUTH_ENABLED).
    from brook.config import AuthMode

    assert allowed(main(), "authMode") == ["", *get_args(AuthMode)]


def test_limits_are_always_set_and_sign_in_settings_only_when_given() -> None:
    settings = app_settings()
    for setting, parameter in LIMITS.items():
        assert settings[setting] == ({"function": {"type": "string", "parameters": {
            "value_to_convert": parameter}}}, "appSettings"), setting
    assert {n for n, (_, where) in settings.items() if where == "authSettings"} == \
        set(AUTH_SETTINGS)
    # A default deployment sets none of them: Brook's defaults apply (anonymous, no lists,
    # signed-in users limited as everyone).
    default = deployed_settings({})
    assert not set(default) & set(AUTH_SETTINGS)
    assert default["LIMIT_TOKENS_PER_DAY"] == "200000"
    assert not [uri for uri in key_vault({})[1] if "oidc" in uri]
    # Each given alone adds itself, with the value given, and nothing else.
    for setting, (parameter, given, expected) in AUTH_SETTINGS.items():
        deployed = deployed_settings({parameter: given})
        assert set(deployed) - set(default) == {setting}, setting
        assert deployed[setting] == expected, setting
    # The client secret, when given, is in the vault, where the setting refers to.
    _, secrets = key_vault({"oidcClientSecret": "0idc~s3cret/with+and="})
    reference = REFERENCE.fullmatch(AUTH_SETTINGS["OIDC_CLIENT_SECRET"][2])
    assert reference
    assert secrets[reference["uri"]] == "0idc~s3cret/with+and="
    declaration = main()["modules"]["oidcSecret"]
    assert expr(declaration["config"]["condition"]) == "not(empty(oidcClientSecret))"
    assert body(declaration)["params"]["value"] == "oidcClientSecret"
    assert is_secure(module("keyvault-secret"), "value")
    # A signed-in limit of 0 (no limit) is a value, not "unset".
    assert deployed_settings({"signedInLimitTokensPerDay": 0})[
        "SIGNED_IN_LIMIT_TOKENS_PER_DAY"] == "0"


@pytest.mark.parametrize(("given", "refused"), [
    ({"authMode": "oidc"}, "needs the issuer of your OpenID provider and the client id"),
    ({"authMode": "oidc", "oidcIssuer": "https://accounts.google.com"}, "client id"),
    ({"authMode": "oidc", "oidcClientId": "brook"}, "OIDC_ISSUER"),
    ({"authMode": "oidc", "oidcIssuer": "http://idp.example.com", "oidcClientId": "brook"},
     "https://"),
    ({"oidcIssuer": "accounts.google.com"}, "https://"),
    ({"authMode": "oidc", "oidcIssuer": "https://accounts.google.com", "oidcClientId": "b"},
     None),
    ({"authMode": "appservice"}, None),
    ({}, None),
], ids=["oidc alone", "no client id", "no issuer", "http issuer", "no scheme", "oidc",
        "appservice", "default"])
def test_oidc_without_what_brook_needs_fails_before_anything_is_created(
        given: dict[str, Any], refused: str | None) -> None:
    """As Brook would refuse to start (config's _auth_is_complete), so does the deployment,
    at preflight: the guard is in the resource group's tags."""
    rg = body(only(main(), "Microsoft.Resources/resourceGroups"))
    assert "checkedAuthMode" in strings(rg["tags"])
    evaluate = Evaluator(main(), **given)
    if refused:
        with pytest.raises(Failed, match=re.escape(refused)):
            evaluate(rg["tags"])
        with pytest.raises(Failed):
            deployed_settings(given)
    else:
        tags = evaluate(rg["tags"])
        assert tags["'brook-auth-mode'"] == (given.get("authMode") or "default")
        assert deployed_settings(given).get("AUTH_MODE") == given.get("authMode")
    # AUTH_MODE is set through the guard.
    assert auth_settings()["AUTH_MODE"][1] == "checkedAuthMode"


# ----------------------------------------------------------------------------------------------
# Several models (MODELS) and model-written titles (MODEL_TITLES)
# ----------------------------------------------------------------------------------------------

DEPLOYMENT_TYPE = "Microsoft.CognitiveServices/accounts/deployments"


def test_models_and_titles_are_parameters_read_from_the_azd_environment() -> None:
    """`azd env set MODELS '[...]'` and `azd env set MODEL_TITLES false` work as docs/deploy.md
    says, survive the next provision, and reach the deploy workflow."""
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    pipeline = read_yaml(ROOT / "azure.yaml")["pipeline"]
    workflow = (WORKFLOWS / "azure-dev.yml").read_text()
    declared = main()["parameters"]
    assert declared["models"]["type"] == "array"
    assert Evaluator(main())(declared["models"]["default"]) == []
    assert declared["modelTitles"]["type"] == "bool"
    assert declared["modelTitles"]["default"] is True is brook_default("MODEL_TITLES")
    # Unset, or empty as the workflow passes a variable GitHub does not have: [] (azd's
    # substitution takes the default for an empty value too), so no MODELS setting.
    assert parameters["models"]["value"] == "${MODELS=[]}"
    assert parameters["modelTitles"]["value"] == "${MODEL_TITLES=true}"
    for setting, (parameter, _, _) in MODEL_SETTINGS.items():
        description = decorators(parameter)["description"]
        assert description.startswith(f"{setting}: "), parameter
        assert not is_secure(main(), parameter), parameter
        assert setting in pipeline["variables"], setting
        assert f"{setting}: ${{{{ vars.{setting} }}}}" in workflow, setting
    # Each field an entry may have is described, and no key is offered.
    description = decorators("models")["description"]
    for field in ("id", "name", "model", "api", "api_version", "reasoning_summary",
                  "temperature", "default", "model_name", "model_version", "sku", "capacity",
                  "2025-03-01-preview"):
        assert re.search(rf"\b{field}\b", description), field
    assert "No keys" in description


def test_models_and_titles_are_set_only_when_given() -> None:
    settings = app_settings()
    assert {n for n, (_, where) in settings.items() if where == "modelSettings"} == \
        set(MODEL_SETTINGS)
    # A default deployment sets neither: Brook offers the one chat deployment, titles on.
    default = deployed_settings({})
    assert not set(default) & set(MODEL_SETTINGS)
    assert deployed_settings({"modelTitles": True, "models": []}) == default
    # Each given alone adds itself, with the value given, and nothing else.
    for setting, (parameter, given, expected) in MODEL_SETTINGS.items():
        deployed = deployed_settings({parameter: given})
        assert set(deployed) - set(default) == {setting}, setting
        assert deployed[setting] == expected, setting
    # MODELS is the chat deployment (whatever it is named, on the API version given), then the
    # models given with Brook's defaults filled in: Brook's fields alone, no key, no endpoint.
    models = json.loads(deployed_settings({
        "models": [{"id": "o3", "api": "responses"}], "chatDeploymentName": "chat",
        "openAiApiVersion": "2025-04-01-preview"})["MODELS"])
    assert models == [
        {"id": "chat", "name": "chat", "provider": "azure", "model": "chat", "api": "chat",
         "api_version": "2025-04-01-preview", "reasoning_summary": None, "temperature": True,
         "default": False},
        {"id": "o3", "name": "o3", "provider": "azure", "model": "o3", "api": "responses",
         "api_version": "2025-04-01-preview", "reasoning_summary": None, "temperature": True,
         "default": False}]
    from brook.config import ModelSpec

    for model in models + PICKED_MODELS:
        assert set(model) <= set(ModelSpec.model_fields) - {"api_key", "endpoint", "base_url"}
        ModelSpec.model_validate(model)


def test_models_hold_no_secret_and_are_called_as_the_sites_identity() -> None:
    """MODELS is a plain app setting: it names deployments, never a key. The guard refuses an
    entry with a key (or another endpoint or provider, which the site's identity has no role
    on), and nothing secure reaches modelSettings."""
    for entry in ({"id": "a", "api_key": "k3y"}, {"id": "a", "endpoint": "https://x.example/"},
                  {"id": "a", "base_url": "https://x.example/v1"},
                  {"id": "a", "provider": "openai"}):
        with pytest.raises(Failed, match="keylessly as its identity"):
            deployed_settings({"models": [entry]})
    secure = {name for name in main()["parameters"] if is_secure(main(), name)}
    for text in used_by(main()["variables"]["modelSettings"]["value"], main()):
        assert not set(re.findall(r"\w+", text)) & secure, text
    # Keyless means a role on the account: the one the site's identity has, where every model
    # is a deployment (Brook fills in each model's endpoint from AZURE_OPENAI_ENDPOINT).
    settings = deployed_settings({"models": GIVEN_MODELS})
    assert "AZURE_OPENAI_API_KEY" not in settings
    assert settings["AZURE_OPENAI_ENDPOINT"] == DEPLOYED["openAiAccess.outputs.endpoint"]
    assert "endpoint" not in settings["MODELS"]
    assert "key" not in settings["MODELS"]


@pytest.mark.parametrize(("models", "given", "refused"), [
    ([{"id": "a"}, {"id": "a", "model": "b"}], {}, "names a model id twice"),
    ([{"id": "gpt-4.1-mini", "model": "other"}], {}, "names a model id twice"),
    ([{"id": "a", "default": True}, {"id": "b", "default": True}], {}, "more than one"),
    ([{"id": "a", "default": False}, {"id": "b", "default": True}], {}, None),
    ([{"id": "a", "api": "completions"}], {}, "api is chat or responses"),
    ([{"id": "a", "reasoning_summary": "full"}], {}, "reasoning_summary auto, concise"),
    ([{"id": "a", "api": "responses"}], {}, "2025-03-01-preview or later"),
    ([{"id": "a", "api": "responses", "api_version": "2024-12-01-preview"}], {},
     "2025-03-01-preview or later"),
    ([{"id": "a", "api": "responses", "api_version": "2025-03-01-preview"}], {}, None),
    ([{"id": "a", "api": "responses"}], {"openAiApiVersion": "2025-04-01-preview"}, None),
    ([{"id": "a", "provider": "azure", "reasoning_summary": "auto"}], {}, None),
    ([{"id": "a", "model": "d"}, {"id": "b", "model": "d"}], {}, "of its own"),
    ([{"id": "a", "model": "gpt-4.1-mini"}], {}, "of its own"),
    # With an existing account nothing is created: one deployment may be offered twice.
    ([{"id": "a", "model": "d"}, {"id": "b", "model": "d"}],
     {"openAiAccountName": "oai-shared"}, None),
    ([{"id": "a", "model": "gpt-4.1-mini", "api": "responses",
       "api_version": "2025-04-01-preview"}], {"openAiAccountName": "oai-shared"}, None),
    (GIVEN_MODELS, {}, None),
], ids=["id twice", "the chat deployment's id", "two defaults", "one default", "another api",
        "another summary", "responses on the default api version",
        "responses on an older api version", "responses on 2025-03-01-preview",
        "responses on a newer AZURE_OPENAI_API_VERSION", "provider azure",
        "one deployment twice", "the chat deployment again",
        "one deployment twice, existing account", "the chat deployment again, existing account",
        "several"])
def test_models_brook_would_refuse_fail_before_anything_is_created(
        models: list[dict[str, Any]], given: dict[str, Any], refused: str | None,
        tmp_path: Path) -> None:
    """As Brook would refuse to start (config's _models_are_coherent, ModelSpec), and as the
    deployments could not be created, so does the deployment, at preflight: the guard is in the
    resource group's tags. What it lets through, Brook starts with."""
    from brook.config import load_settings

    rg = body(only(main(), "Microsoft.Resources/resourceGroups"))
    assert "checkedModels" in strings(rg["tags"])
    evaluate = Evaluator(main(), models=models, **given)
    if refused:
        with pytest.raises(Failed, match=re.escape(refused)):
            evaluate(rg["tags"])
        with pytest.raises(Failed):
            deployed_settings({"models": models, **given})
        return
    assert evaluate(rg["tags"])["'brook-models'"] == str(len(models))
    settings = load_settings(resolved_settings({"models": models, **given}), tmp_path)
    assert len(settings.model_specs) == len(models) + 1
    # The default: the one marked, else the chat deployment.
    marked = [entry["id"] for entry in models if entry.get("default")]
    assert settings.model_specs[0].id == (marked[0] if marked else "gpt-4.1-mini")


def test_the_templates_create_the_models_deployments_on_the_account_they_create() -> None:
    """Each model given is a deployment of its own on the new account, created one at a time
    after the chat deployment (an account takes one deployment change at a time); with an
    existing account (AZURE_OPENAI_ACCOUNT_NAME) the deployments must exist and none is made."""
    openai = module("openai")
    declared = resources(openai, DEPLOYMENT_TYPE)["modelDeployments"]
    assert {"type": "batchSize", "argument": 1} in declared["decorators"]
    config = body(declared)
    assert (config["parent"], config["dependsOn"]) == ("account", ["chatDeployment"])
    # main.bicep hands the module the deployments of the guarded models, and only creates it
    # (the account) when no existing account is named.
    assert body(main()["modules"]["openAi"])["params"]["deployments"] == "modelDeployments"
    assert main()["variables"]["modelDeployments"]["value"]["loop_type"]["detail"][
        "array_name"] == "checkedModels"
    assert main()["modules"]["openAi"]["config"]["condition"] == {
        "operator": {"type": "not", "operands": {"bool_value": "useExistingOpenAi"}}}
    assert config["properties"]["versionUpgradeOption"] == "OnceCurrentVersionExpired"

    def created(**mode: Any) -> list[dict[str, Any]]:
        evaluate = deployment(mode)
        if not evaluate(main()["modules"]["openAi"]["config"]["condition"]):
            return []
        made: list[dict[str, Any]] = module_evaluator("openAi", evaluate)(declared["config"])
        return [{"name": d["name"], "sku": d["sku"], "model": d["properties"]["model"]}
                for d in made]

    assert created() == []
    assert created(models=GIVEN_MODELS) == [
        {"name": "o4-mini", "sku": {"name": "GlobalStandard", "capacity": 10},
         "model": {"format": "OpenAI", "name": "o4-mini", "version": "2025-04-16"}},
        {"name": "gpt-41", "sku": {"name": "DataZoneStandard", "capacity": 30},
         "model": {"format": "OpenAI", "name": "gpt-4.1", "version": "2025-04-14"}},
    ]
    # Without a version, the model's default version; sku and capacity the chat deployment's.
    assert created(models=[{"id": "o3"}], chatDeploymentSku="Standard",
                   chatDeploymentCapacity=5) == [
        {"name": "o3", "sku": {"name": "Standard", "capacity": 5},
         "model": {"format": "OpenAI", "name": "o3"}}]
    assert created(models=GIVEN_MODELS, openAiAccountName="oai-shared") == []
    # Every model Brook is given is a deployment there: the chat one or one created.
    picked = json.loads(deployed_settings({"models": GIVEN_MODELS})["MODELS"])
    assert {model["model"] for model in picked} == \
        {"gpt-4.1-mini"} | {d["name"] for d in created(models=GIVEN_MODELS)}


def test_keyless_azure_openai() -> None:
    openai = module("openai")
    account = body(only(openai, "Microsoft.CognitiveServices/accounts"))
    assert account["properties"]["disableLocalAuth"] is True
    assert account["properties"]["customSubDomainName"] == "name"  # Entra needs a subdomain
    deployments = resources(openai, "Microsoft.CognitiveServices/accounts/deployments")
    assert set(deployments) == {"chatDeployment", "modelDeployments"}  # see test_models_...
    assert body(deployments["chatDeployment"])["properties"]["model"]["format"] == "OpenAI"
    access = module("openai-access")
    role = body(only(access, "Microsoft.Authorization/roleAssignments"))
    assert access["variables"]["openAiUserRoleId"]["value"] == \
        "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"  # Cognitive Services OpenAI User
    assert role["scope"] == "account"
    principals = body(main()["modules"]["openAiAccess"])["params"]["principals"]
    app = principals["function"]["parameters"]["arg_1"][0]
    assert app["type"] == "ServicePrincipal"
    assert expr(app["id"]) == "identity.outputs.principalId"
    # An existing account by parameters instead of a new one.
    assert main()["modules"]["openAi"]["config"]["condition"] == {
        "operator": {"type": "not", "operands": {"bool_value": "useExistingOpenAi"}}}


def test_app_service_site_is_hardened_and_starts_brook() -> None:
    web = module("appservice")
    site = body(only(web, "Microsoft.Web/sites"))
    properties, config = site["properties"], site["properties"]["siteConfig"]
    assert properties["httpsOnly"] is True
    assert site["identity"]["type"] == "UserAssigned"
    assert config["appCommandLine"] == "startupCommand"  # see test_the_start_up_command_...
    assert config["linuxFxVersion"] == "PYTHON|${pythonVersion}"
    assert all(v >= "3.11" for v in allowed(main(), "pythonVersion"))
    assert config["healthCheckPath"] == "/healthz"
    assert (config["ftpsState"], config["minTlsVersion"], config["scmMinTlsVersion"]) == \
        ("Disabled", "1.2", "1.2")
    assert config["remoteDebuggingEnabled"] is False
    policies = resources(web, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert sorted(body(p)["name"] for p in policies.values()) == ["ftp", "scm"]
    assert all(body(p)["properties"]["allow"] is False for p in policies.values())


def test_monitoring_is_workspace_based_application_insights() -> None:
    monitoring = module("monitoring")
    insights = body(only(monitoring, "Microsoft.Insights/components"))
    assert insights["properties"]["WorkspaceResourceId"] == {
        "operator": {"type": "property_accessor",
                     "operands": {"operand_1": "logAnalytics", "operand_2": "id"}}}
    only(monitoring, "Microsoft.OperationalInsights/workspaces")
    # Local authentication off: only Entra-signed telemetry is taken, and the app's identity
    # may send it (Monitoring Metrics Publisher on the component), as the app signs in.
    assert insights["properties"]["DisableLocalAuth"] is True
    role = body(only(monitoring, "Microsoft.Authorization/roleAssignments"))
    assert role["scope"] == "applicationInsights"
    assert "3913510d-42f4-4e42-8a64-420c390055eb" in strings(
        monitoring["variables"]["monitoringMetricsPublisher"])
    assert role["properties"]["principalId"] == "publisherPrincipalId"
    assert expr(body(main()["modules"]["monitoring"])["params"]["publisherPrincipalId"]) == \
        "identity.outputs.principalId"
    settings = {name: value for name, (value, _) in app_settings().items()}
    assert settings["APPLICATIONINSIGHTS_ENTRA_AUTH"] == "true"


def test_redis_is_optional_tls_only_and_off_by_default() -> None:
    assert main()["parameters"]["enableRedis"]["default"] is False
    assert main()["modules"]["redis"]["config"]["condition"] == "enableRedis"
    redis = module("redis")
    cluster = body(only(redis, "Microsoft.Cache/redisEnterprise"))
    assert cluster["properties"]["minimumTlsVersion"] == "1.2"
    database = body(only(redis, "Microsoft.Cache/redisEnterprise/databases"))
    assert database["properties"]["clientProtocol"] == "Encrypted"
    assert database["properties"]["port"] == 10000
    assert body(only(redis, SECRET_TYPE))["properties"]["value"].endswith(":10000/0")


# Where each resource's logs go: module -> (the resource, the log categories sent to Log
# Analytics). App Service on Linux: console, HTTP and platform logs (AppServiceAppLogs is Java
# and Tomcat only there); none is limited to a tier above F1 in Microsoft's reference.
DIAGNOSTICS = {
    "appservice": ("site", {"AppServiceConsoleLogs", "AppServiceHTTPLogs",
                            "AppServicePlatformLogs"}),
    "postgres": ("server", {"PostgreSQLLogs"}),
    "keyvault": ("vault", {"AuditEvent"}),
}


@pytest.mark.parametrize("name", DIAGNOSTICS)
def test_diagnostic_settings_send_the_logs_to_log_analytics(name: str) -> None:
    resource, categories = DIAGNOSTICS[name]
    template = module(name)
    declared = only(template, "Microsoft.Insights/diagnosticSettings")
    assert "condition" not in declared["config"], "on every SKU and mode"
    setting = body(declared)
    assert setting["scope"] == resource
    logs = setting["properties"]["logs"]
    assert all(log["enabled"] is True for log in logs)
    assert {log["category"] for log in logs} == categories
    assert len(logs) == len(categories)
    # ... to the deployment's own workspace.
    assert setting["properties"]["workspaceId"] == "logAnalyticsWorkspaceId"
    (caller,) = [m for m in main()["modules"].values()
                 if m["detail"]["path"] == f"modules/{name}.bicep"]
    assert expr(body(caller)["params"]["logAnalyticsWorkspaceId"]) == \
        "monitoring.outputs.logAnalyticsWorkspaceId"
    assert expr(module("monitoring")["outputs"]["logAnalyticsWorkspaceId"]["value"]) == \
        "logAnalytics.id"


def test_no_other_resource_sends_diagnostics_elsewhere() -> None:
    for path in INFRA.rglob("*.bicep"):
        found = resources(bicep(path), "Microsoft.Insights/diagnosticSettings")
        assert len(found) == (1 if path.stem in DIAGNOSTICS else 0), path
        for setting in found.values():
            destinations = set(body(setting)["properties"]) - {"logs", "metrics"}
            assert destinations == {"workspaceId"}, path


# ----------------------------------------------------------------------------------------------
# checkov
# ----------------------------------------------------------------------------------------------

CUSTOM_CHECKS = {"CKV_BROOK_1", "CKV_BROOK_2", "CKV_BROOK_3", "CKV_BROOK_4"}
# What the custom checks must flag in tests/infra/fixtures: check -> {(file, resource)}.
SERVER = "Microsoft.DBforPostgreSQL/flexibleServers"
FIXTURE_FAILURES = {
    "CKV_BROOK_1": {("public_access_in_vnet.bicep", f"{SERVER}.server")},
    "CKV_BROOK_2": {
        ("tls_not_declared.bicep", f"{SERVER}.server"),
        ("tls_weakened.bicep", f"{SERVER}.server"),
        ("tls_weakened.bicep", f"{SERVER}/configurations.requireSecureTransport"),
        ("tls_weakened.bicep", f"{SERVER}/configurations.minimumTlsVersion"),
    },
    "CKV_BROOK_3": {
        ("password_in_template.bicep", f"{SERVER}.literal"),
        ("password_in_template.bicep", f"{SERVER}.defaulted"),
    },
    "CKV_BROOK_4": {("entra_disabled.bicep", f"{SERVER}.server")},
}


@pytest.fixture(scope="module", autouse=True)
def checkov_run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
                ) -> Iterator[subprocess.Popen[str] | None]:
    """Starts one checkov run over a copy of infra/ and the fixtures, with the custom checks,
    as soon as this module's tests begin: it works on the other core while they run. Not
    when no test selected here reads its report (`make test-unit` leaves them out)."""
    wanted = any("checkov" in getattr(item, "fixturenames", ())
                 for item in request.session.items if item.path == request.path)
    if not CHECKOV.exists() or not wanted:
        yield None
        return
    root = tmp_path_factory.mktemp("checkov")
    shutil.copytree(INFRA, root / "infra", ignore=shutil.ignore_patterns("*.json", "app"))
    shutil.copytree(FIXTURES, root / "fixtures")
    # checkov bundles pycep-parser 0.5.1, which predates Bicep's fail(): the copy it scans calls
    # string() there instead. Nothing checkov checks is in those guard expressions.
    for path in (root / "infra").rglob("*.bicep"):
        path.write_text(re.sub(r"\bfail\(", "string(", path.read_text()))
    process = subprocess.Popen(
        [str(CHECKOV), "--framework", "bicep", "--skip-download", "--compact",
         "--output", "json", "--directory", str(root), "--external-checks-dir", str(CHECKS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield process
    if process.poll() is None:  # its tests were deselected
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def checkov(checkov_run: subprocess.Popen[str] | None) -> dict[str, Any]:
    """checkov's JSON report."""
    if checkov_run is None:
        pytest.fail(f"{CHECKOV.relative_to(ROOT)} is missing: run `make infra-tools`")
    stdout, stderr = checkov_run.communicate(timeout=600)
    assert checkov_run.returncode in (0, 1), stderr[-3000:]
    report: dict[str, Any] = json.loads(stdout)
    return report


def findings(report: dict[str, Any], kind: str, folder: str) -> set[tuple[str, str, str]]:
    """(check, file under folder, resource) for the failed or passed checks there."""
    found = set()
    for item in report["results"][f"{kind}_checks"]:
        path = item["file_path"].lstrip("/")
        if path.startswith(f"{folder}/"):
            found.add((item["check_id"], path.removeprefix(f"{folder}/"), item["resource"]))
    return found


@pytest.mark.slow  # checkov
def test_checkov_parses_every_file(checkov: dict[str, Any]) -> None:
    assert checkov["summary"]["parsing_errors"] == 0
    scanned = {item["file_path"].lstrip("/") for kind in ("passed", "failed")
               for item in checkov["results"][f"{kind}_checks"]}
    # checkov only lists files it has checks for; these are the ones with resources it checks.
    assert {"infra/modules/appservice.bicep", "infra/modules/openai.bicep",
            "infra/modules/postgres.bicep"} <= scanned
    assert {f"fixtures/{p.name}" for p in FIXTURES.glob("*.bicep")} <= scanned


@pytest.mark.slow  # checkov
def test_checkov_finds_nothing_beyond_the_baseline(checkov: dict[str, Any]) -> None:
    baseline = json.loads(BASELINE.read_text())["accepted"]
    accepted = set()
    for entry in baseline:
        assert len(entry["reason"]) > 60, f"{entry['check_id']}: give the reason"
        for resource in entry["resources"]:
            path, _, name = resource.partition(":")
            accepted.add((entry["check_id"], path, name))
    failed = findings(checkov, "failed", "infra")
    assert failed - accepted == set(), "new checkov findings: fix them or accept them with a reason"
    assert accepted - failed == set(), "these no longer fail: remove them from the baseline"


@pytest.mark.slow  # checkov
def test_custom_checks_pass_on_the_deployment(checkov: dict[str, Any]) -> None:
    passed = findings(checkov, "passed", "infra")
    server = ("modules/postgres.bicep", f"{SERVER}.server")
    for check in CUSTOM_CHECKS:
        assert (check, *server) in passed, f"{check} did not run on the server"
    assert not {f for f in findings(checkov, "failed", "infra") if f[0] in CUSTOM_CHECKS}


@pytest.mark.slow  # checkov
def test_custom_checks_flag_the_bad_fixtures(checkov: dict[str, Any]) -> None:
    failed = {f for f in findings(checkov, "failed", "fixtures") if f[0] in CUSTOM_CHECKS}
    expected = {(check, *where) for check, places in FIXTURE_FAILURES.items()
                for where in places}
    assert failed == expected
    for fixture in FIXTURES.glob("*.bicep"):
        assert any(file == fixture.name for _, file, _ in failed), f"{fixture.name} is not caught"


# ----------------------------------------------------------------------------------------------
# Workflows and docs
# ----------------------------------------------------------------------------------------------

def test_workflows() -> None:
    tests = (WORKFLOWS / "tests.yml").read_text()
    for needed in (".ci/run", "postgres:", "redis:", "chromium", "bookworm"):
        assert needed in tests, needed
    bicep_workflow = (WORKFLOWS / "bicep.yml").read_text()
    assert "az bicep build -f infra/main.bicep" in bicep_workflow
    assert "microsoft/security-devops-action" in bicep_workflow
    assert "tools: templateanalyzer" in bicep_workflow
    deploy = (WORKFLOWS / "azure-dev.yml").read_text()
    for needed in ("Azure/setup-azd", "id-token: write", "--federated-credential-provider github",
                   "azd provision --no-prompt", "azd deploy --no-prompt",
                   "AZD_INITIAL_ENVIRONMENT_CONFIG", "AZURE_PRINCIPAL_TYPE: ServicePrincipal"):
        assert needed in deploy, needed
    # Every azd environment variable the parameters file reads reaches the pipeline.
    parameters = (INFRA / "main.parameters.json").read_text()
    for name in set(re.findall(r"\$\{(\w+)", parameters)) - {"AZURE_PRINCIPAL_ID"}:
        assert name in deploy, f"{name} is not passed to azd in azure-dev.yml"


def test_deploy_docs(tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for needed in (
        "azd up", "azd down", "F1", "B1", "networkMode", "vnet", "estimate",
        "Cannot update the site 'your-site-name-here' because it uses x64 worker process "
        "which is not allowed in the target compute mode.",
        "location is restricted", "centralus", "0.0.0.0",
        # Easy Auth's secret is an app setting, and a provision replaces them all.
        "`azd provision` replaces every app setting", "MICROSOFT_PROVIDER_AUTHENTICATION_SECRET",
        # A first deployment in each mode, and who can do what in the database.
        "### First deployment: the free tier, public network, Entra sign-in",
        "### First deployment: B1, private network (vnet), Entra sign-in",
        "### First deployment: password sign-in to PostgreSQL",
        "## Who can do what in the database", "brook db setup", "POSTGRES_SETUP_ON_START",
        "pgaadauth_create_principal_with_oid", "azure_pg_admin",
        # The secrets, their rotation, the logs, the upgrade of an older deployment.
        "## Secrets in Key Vault", "Key Vault Secrets User", "everyone is signed out",
        "## Where the logs go", "AppServiceConsoleLogs", "AppServiceHTTPLogs", "PostgreSQLLogs",
        "## Upgrading a deployment made before", "az postgres flexible-server db delete",
        # Before sharing the address: limits, and the two ways to sign in, with azd.
        "## Before you share the address", "SIGNED_IN_LIMIT_TOKENS_PER_DAY",
        "### Sign-in with OpenID Connect", "azd env set AUTH_MODE oidc",
        "azd env set OIDC_ISSUER", "azd env set OIDC_CLIENT_ID",
        "azd env set OIDC_CLIENT_SECRET", "AUTH_ALLOWED_EMAILS", "AUTH_ALLOWED_DOMAINS",
        "ADMIN_EMAILS", "https://<site>/auth/callback", "oidc-client-secret",
        "### Sign-in with App Service Authentication",
        # Several models: the azd variable, what it creates, the Responses API's version, the
        # regions, and titles.
        "## Several models", "azd env set MODELS '[", "model_version", "capacity",
        "2025-03-01-preview", "az cognitiveservices model list", "AZURE_OPENAI_ACCOUNT_NAME",
        "azd env set MODEL_TITLES false", "1.23.4",
    ):
        assert needed in docs, needed
    assert "databaseNames" not in docs
    # Sign-in settings are parameters now, not settings to add to main.bicep by hand.
    assert "not a parameter" not in " ".join(docs.split())
    # Every variable an operator is told to `azd env set` is one the templates read.
    parameters = (INFRA / "main.parameters.json").read_text()
    read = set(re.findall(r"\$\{(\w+)", parameters))
    for name in re.findall(r"azd env set (\w+)", docs):
        assert name in read, f"docs/deploy.md sets {name}, which main.parameters.json never reads"
    # Every output an operator is told to read exists.
    for name in re.findall(r"azd env get-value (\w+)", docs):
        assert name in main()["outputs"], name
    # The MODELS it shows is one the templates take and Brook starts with.
    from brook.config import load_settings

    (shown,) = re.findall(r"^azd env set MODELS '(.*)'$", docs, re.MULTILINE)
    models = json.loads(shown)
    settings = load_settings(resolved_settings({"models": models}), tmp_path)
    assert [spec.id for spec in settings.model_specs] == ["gpt-4.1", "gpt-4.1-mini", "o4-mini"]
