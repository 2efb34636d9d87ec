"""TLS verification is the default from the template to the function; turning it off is explicit."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.errors import ValidationError
from dispatcher.settings import Settings
from tests.contract import contract_template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return contract_template()


def evaluate(expression: Any, parameters: dict[str, str]) -> Any:
    """The rule functions the template uses, evaluated as CloudFormation does at deploy time."""
    if isinstance(expression, dict):
        ((name, value),) = expression.items()
        if name == "Ref":
            return parameters[value]
        if name == "Fn::EachMemberEquals":
            items, wanted = evaluate(value[0], parameters), value[1]
            return all(item == wanted for item in items)
        args = [evaluate(v, parameters) for v in value]
        if name == "Fn::Equals":
            return args[0] == args[1]
        if name == "Fn::Not":
            return not args[0]
        if name == "Fn::And":
            return all(args)
        if name == "Fn::Or":
            return any(args)
        raise AssertionError(f"rule function not handled here: {name}")
    return expression


def refs(value: Any) -> set[str]:
    """Every parameter a piece of the template refers to."""
    if isinstance(value, dict):
        found = {value["Ref"]} if isinstance(value.get("Ref"), str) else set()
        return found.union(*map(refs, value.values()))
    if isinstance(value, list):
        return set().union(*map(refs, value))
    return set()


def refusals(template: dict[str, Any], **overrides: str) -> list[str]:
    """AssertDescriptions of the TLS parameters' rules a deploy with these parameters would fail.

    Only the rules that read DbTlsVerify or DbCaBundle: others look up AWS resources
    (Fn::ValueOfAll), which CloudFormation does against the account.
    """
    parameters: dict[str, Any] = {
        name: p.get("Default", "").split(",") if p["Type"] == "CommaDelimitedList" else str(p.get("Default", ""))
        for name, p in template["Parameters"].items()
    }
    parameters.update(overrides)
    failed = []
    tls_rules = [r for r in template["Rules"].values() if {"DbTlsVerify", "DbCaBundle"} & refs(r)]
    assert tls_rules
    for rule in tls_rules:
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], parameters):
            continue
        failed += [a["AssertDescription"] for a in rule["Assertions"] if not evaluate(a["Assert"], parameters)]
    return failed


def test_a_deploy_without_a_bundle_is_refused_unless_verification_is_turned_off(template: dict[str, Any]) -> None:
    assert template["Parameters"]["DbTlsVerify"]["Default"] == "true"
    # The defaults alone: refused, naming both parameters and the build option
    (refused,) = refusals(template)
    assert "DbTlsVerify is true: DbCaBundle must name the CA bundle" in refused
    assert "--ca-bundle" in refused and "DbTlsVerify=false" in refused
    # The shipped bundle named, or verification off explicitly: accepted
    assert refusals(template, DbCaBundle="/var/task/certs/global-bundle.pem") == []
    assert refusals(template, DbTlsVerify="false") == []


def test_the_function_gets_both_settings(template: dict[str, Any]) -> None:
    variables = template["Resources"]["DispatcherFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["AURORA_RESTORE_DB_CA_BUNDLE"] == {"Ref": "DbCaBundle"}
    assert variables["AURORA_RESTORE_DB_TLS_VERIFY"] == {"Ref": "DbTlsVerify"}


def test_verification_is_on_unless_the_environment_says_false() -> None:
    assert Settings().db_tls_verify is True
    assert Settings.from_env({}).db_tls_verify is True
    assert Settings.from_env({"AURORA_RESTORE_DB_TLS_VERIFY": "false"}).db_tls_verify is False
    assert Settings.from_env({"AURORA_RESTORE_DB_TLS_VERIFY": "TRUE"}).db_tls_verify is True
    with pytest.raises(ValidationError, match="AURORA_RESTORE_DB_TLS_VERIFY: 'no' is not valid; must be true or false"):
        Settings.from_env({"AURORA_RESTORE_DB_TLS_VERIFY": "no"})
