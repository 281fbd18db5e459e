"""checkov checks for Azure Database for PostgreSQL Flexible Server, which checkov has none of.

Loaded by `checkov --framework bicep --external-checks-dir tests/infra/checks` (tests/test_infra.py
runs it from .venv-infra). Each check can fail: tests/infra/fixtures/ holds a small bad server
for each, and the test asserts they are flagged.

- CKV_BROOK_1: a server injected into a subnet has public network access off.
- CKV_BROOK_2: TLS is enforced: the server declares require_secure_transport = on and
  ssl_min_protocol_version = TLSv1.2 or later, and no configuration weakens either.
- CKV_BROOK_3: the admin password is not written in the template: it comes from a @secure()
  parameter without a default (or a Key Vault getSecret()), or is not set at all.
- CKV_BROOK_4: Microsoft Entra authentication is on.

checkov hands a check the resource with variables and parameter defaults substituted, which
hides whether a value came from a secure parameter; CKV_BROOK_2 and CKV_BROOK_3 therefore read
the Bicep file itself with pycep, as checkov does.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from checkov.bicep.checks.resource.base_resource_check import (  # type: ignore[import-not-found]
    BaseResourceCheck,
)
from checkov.common.models.enums import (  # type: ignore[import-not-found]
    CheckCategories,
    CheckResult,
)
from pycep import BicepParser

SERVER = "Microsoft.DBforPostgreSQL/flexibleServers"
CONFIGURATION = "Microsoft.DBforPostgreSQL/flexibleServers/configurations"
SECURE_TLS_VERSIONS = {"tlsv1.2", "tlsv1.3"}
GUIDELINE = "docs/deploy.md#security-checks"


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every object literal in a value, through conditionals and function arguments."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


@lru_cache(maxsize=1)
def _parser() -> BicepParser:
    return BicepParser()  # building the grammar takes seconds: once per checkov run


@lru_cache(maxsize=64)
def _template(path: str) -> dict[str, Any]:
    parsed: dict[str, Any] = dict(_parser().parse(file_path=Path(path)))
    return parsed


def _body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's properties, inside its `if (...)` condition or `for` loop if it has one."""
    config: dict[str, Any] = resource.get("config") or {}
    if "config" in config and ("condition" in config or "loop_type" in config):
        inner: dict[str, Any] = config["config"] or {}
        return inner
    return config


def _scanned(check: Any) -> tuple[dict[str, Any], str] | None:
    """The parsed file the resource is in, and the resource's symbolic name."""
    path, _, name = str(check.entity_path).rsplit(":", 2)
    try:
        return _template(path), name
    except Exception:  # a file pycep cannot read: checkov reports it as a parsing error
        return None


def _configurations(template: dict[str, Any], server: str) -> dict[str, Any]:
    """The server's configuration values declared in the same file, by configuration name."""
    found: dict[str, Any] = {}
    for symbol, resource in (template.get("resources") or {}).items():
        if resource.get("type") != CONFIGURATION:
            continue
        body = _body(resource)
        nested = symbol.startswith(f"{server}__")  # declared inside the server's body
        if body.get("parent") == server or nested:
            found[str(body.get("name"))] = (body.get("properties") or {}).get("value")
    return found


def _is_secure_source(value: Any, template: dict[str, Any], seen: frozenset[str]) -> bool:
    """True when every value `value` can take comes from a secure parameter or Key Vault."""
    if value is None:
        return True
    if isinstance(value, str):
        parameters = template.get("parameters") or {}
        variables = template.get("variables") or {}
        if value in parameters:
            parameter = parameters[value]
            secure = any(d.get("type") == "secure" for d in parameter.get("decorators") or [])
            return secure and parameter.get("default") is None
        if value in variables and value not in seen:
            return _is_secure_source(variables[value].get("value"), template, seen | {value})
        return False  # a literal: the password is in the template
    if isinstance(value, dict) and "operator" in value:
        operator = value["operator"]
        operands = operator.get("operands") or {}
        if operator.get("type") == "conditional":
            return all(_is_secure_source(operands.get(branch), template, seen)
                       for branch in ("true_value", "false_value"))
        if operator.get("type") == "function_accessor":  # kv.getSecret('name')
            return "getsecret" in str(operands).lower()
        if operator.get("type") == "coalesce":
            return all(_is_secure_source(v, template, seen) for v in operands.values())
    return False


class PrivateServerHasNoPublicAccess(BaseResourceCheck):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(
            name="PostgreSQL flexible server injected into a VNet has public network access off",
            id="CKV_BROOK_1",
            categories=[CheckCategories.NETWORKING],
            supported_resources=[SERVER],
            guideline=GUIDELINE,
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> Any:
        # Every network block, also inside union() or a conditional.
        for block in _objects(conf.get("properties")):
            if block.get("delegatedSubnetResourceId") in (None, ""):
                continue
            if str(block.get("publicNetworkAccess", "")).lower() != "disabled":
                return CheckResult.FAILED
        return CheckResult.PASSED


class TlsEnforced(BaseResourceCheck):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(
            name="PostgreSQL flexible server enforces TLS 1.2 or later "
                 "(require_secure_transport on, ssl_min_protocol_version TLSv1.2+)",
            id="CKV_BROOK_2",
            categories=[CheckCategories.ENCRYPTION],
            supported_resources=[SERVER, CONFIGURATION],
            guideline=GUIDELINE,
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> Any:
        if self.entity_type == CONFIGURATION:
            name = str(conf.get("name"))
            value = str((conf.get("properties") or {}).get("value", "")).lower()
            if name == "require_secure_transport":
                return CheckResult.PASSED if value == "on" else CheckResult.FAILED
            if name == "ssl_min_protocol_version":
                return CheckResult.PASSED if value in SECURE_TLS_VERSIONS else CheckResult.FAILED
            return CheckResult.UNKNOWN
        scanned = _scanned(self)
        if scanned is None:
            return CheckResult.FAILED
        template, server = scanned
        declared = _configurations(template, server)
        transport = str(declared.get("require_secure_transport", "")).lower()
        version = str(declared.get("ssl_min_protocol_version", "")).lower()
        if transport == "on" and version in SECURE_TLS_VERSIONS:
            return CheckResult.PASSED
        return CheckResult.FAILED


class AdminPasswordNotHardCoded(BaseResourceCheck):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(
            name="PostgreSQL flexible server admin password comes from a @secure() parameter "
                 "without a default (or Key Vault), never from the template",
            id="CKV_BROOK_3",
            categories=[CheckCategories.SECRETS],
            supported_resources=[SERVER],
            guideline=GUIDELINE,
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> Any:
        scanned = _scanned(self)
        if scanned is None:
            return CheckResult.FAILED
        template, server = scanned
        resource = (template.get("resources") or {}).get(server)
        if resource is None:
            return CheckResult.FAILED
        properties = _body(resource).get("properties")
        passwords = [block["administratorLoginPassword"] for block in _objects(properties)
                     if "administratorLoginPassword" in block]
        # None at all: Entra-only from creation. Otherwise each must be a secure source.
        if all(_is_secure_source(value, template, frozenset()) for value in passwords):
            return CheckResult.PASSED
        return CheckResult.FAILED


class EntraAuthenticationEnabled(BaseResourceCheck):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(
            name="PostgreSQL flexible server has Microsoft Entra authentication enabled",
            id="CKV_BROOK_4",
            categories=[CheckCategories.IAM],
            supported_resources=[SERVER],
            guideline=GUIDELINE,
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> Any:
        # authConfig, also inside union() or a conditional; it is off unless said otherwise.
        values = [str(block["activeDirectoryAuth"]).lower() for block in
                  _objects(conf.get("properties")) if "activeDirectoryAuth" in block]
        if values and all(value == "enabled" for value in values):
            return CheckResult.PASSED
        return CheckResult.FAILED


check_public_access = PrivateServerHasNoPublicAccess()
check_tls = TlsEnforced()
check_password = AdminPasswordNotHardCoded()
check_entra = EntraAuthenticationEnabled()
