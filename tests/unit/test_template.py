"""The CloudFormation template: resources, environment, least privilege, the CLI's options."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import pytest
import yaml

from dispatcher.settings import PREFIX, Settings
from dispatcher.store import AUDIT_TABLE_KEYS, AUDIT_TTL_ATTRIBUTE, STATE_TABLE_KEYS
from infra import build_template as cli
from infra.policies import ACTIONS_WITHOUT_RESOURCE_LEVEL_PERMISSIONS
from infra.state_machine import build_definition
from tests.contract import contract_registry, contract_template
from tests.unit.test_pipeline_placement import extra_step

pytestmark = pytest.mark.template

READ_ONLY_PREFIXES = ("Describe", "List", "Get")
REPLACE_ACTIONS = {
    "rds:DeleteDBCluster",
    "rds:DeleteDBInstance",
    "rds:ModifyDBCluster",
    "rds:DeleteDBClusterSnapshot",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return contract_template()


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def statements(template: dict[str, Any], role: str) -> Iterator[dict[str, Any]]:
    """Every statement of a role's inline policies, conditional ones taken as present."""
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            yield statement["Fn::If"][1] if "Fn::If" in statement else statement


def actions(statement: dict[str, Any]) -> list[str]:
    value = statement["Action"]
    return [value] if isinstance(value, str) else list(value)


def is_read_only(action: str) -> bool:
    return action.split(":", 1)[1].startswith(READ_ONLY_PREFIXES)


# -- the function -----------------------------------------------------------------------------------
def test_the_dispatcher_runs_on_a_current_python_on_arm64_with_tracing(template: dict[str, Any]) -> None:
    function = template["Resources"]["DispatcherFunction"]["Properties"]
    assert function["Runtime"] in {"python3.12", "python3.13"}
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == "dispatcher.handler.lambda_handler"
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["Code"] == "build/lambda.zip"  # what `aws cloudformation package` uploads
    assert function["LoggingConfig"] == {"LogGroup": {"Ref": "DispatcherLogGroup"}}
    assert function["VpcConfig"] == {
        "SubnetIds": {"Ref": "SubnetIds"},
        "SecurityGroupIds": [{"Fn::GetAtt": ["FunctionSecurityGroup", "GroupId"]}],
    }
    assert function["KmsKeyArn"] == {"Fn::GetAtt": ["StackKey", "Arn"]}
    log_group = template["Resources"]["DispatcherLogGroup"]["Properties"]
    assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_environment_is_what_settings_read(template: dict[str, Any]) -> None:
    # GIVEN the function's environment with each parameter at its default
    variables = template["Resources"]["DispatcherFunction"]["Properties"]["Environment"]["Variables"]
    parameters = template["Parameters"]

    def resolve(value: Any) -> str:
        if isinstance(value, str):
            return value
        if "Ref" in value and value["Ref"] in parameters:
            return str(parameters[value["Ref"]]["Default"])
        if "Fn::Join" in value:
            return resolve(value["Fn::Join"][1])  # a list parameter's default is already joined
        return f"resolved-{json.dumps(value, sort_keys=True)}"

    env = {name: resolve(value) for name, value in variables.items()}

    # WHEN the dispatcher reads its settings from it
    settings = Settings.from_env(env)

    # THEN every setting the stack controls has a variable, and the defaults come through
    # db_endpoint_override points setup_db_users at a local PostgreSQL: never set in a stack.
    # stack_region is Lambda's own AWS_REGION, set by the runtime, not by the template.
    read = {f.name for f in fields(Settings)} - {"extra", "db_endpoint_override", "stack_region"}
    assert {PREFIX + name.upper() for name in read} <= set(variables)
    assert set(variables) - {PREFIX + name.upper() for name in read} == {PREFIX + "LOG_LEVEL"}
    defaults = Settings()
    for name in ("poll_min_seconds", "poll_max_seconds", "copy_max_wait_seconds", "restore_max_wait_seconds",
                 "audit_ttl_days", "default_instance_class", "db_connect_attempts"):  # fmt: skip
        assert getattr(settings, name) == getattr(defaults, name), name
    assert variables[PREFIX + "STATE_TABLE"] == {"Ref": "StateTable"}
    assert variables[PREFIX + "TOPIC_ARN"] == {"Ref": "NotificationTopic"}
    assert settings.load_plugins is False
    assert PREFIX + "DB_ENDPOINT_OVERRIDE" not in variables


def test_plugins_are_loaded_in_lambda_only_when_the_template_includes_them() -> None:
    with_plugins = contract_template(plugins=True)["Resources"]["DispatcherFunction"]
    assert with_plugins["Properties"]["Environment"]["Variables"][PREFIX + "LOAD_PLUGINS"] == "true"


# -- data and notifications ------------------------------------------------------------------------
def test_tables_are_on_demand_recoverable_encrypted_and_kept(template: dict[str, Any]) -> None:
    tables = resources(template, "AWS::DynamoDB::Table")
    assert set(tables) == {"StateTable", "AuditTable"}
    for name, keys in (("StateTable", STATE_TABLE_KEYS), ("AuditTable", AUDIT_TABLE_KEYS)):
        table = tables[name]
        props = table["Properties"]
        assert {k["AttributeName"]: k["KeyType"] for k in props["KeySchema"]} == keys
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"] == {
            "SSEEnabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": {"Ref": "StackKey"},
        }
        assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert tables["AuditTable"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": AUDIT_TTL_ATTRIBUTE,
        "Enabled": True,
    }
    assert "TimeToLiveSpecification" not in tables["StateTable"]["Properties"]
    # The key that encrypts retained tables is retained too, or they could not be read again.
    assert template["Resources"]["StackKey"]["DeletionPolicy"] == "Retain"
    assert template["Resources"]["StackKey"]["Properties"]["EnableKeyRotation"] is True


def test_the_topic_is_encrypted_and_the_email_subscription_optional(template: dict[str, Any]) -> None:
    topic = template["Resources"]["NotificationTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "StackKey"}
    subscription = template["Resources"]["NotificationEmailSubscription"]
    assert subscription["Condition"] == "HasNotificationEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "NotificationEmail"}


def test_failed_and_timed_out_refreshes_and_function_errors_alarm_the_topic(template: dict[str, Any]) -> None:
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
    }
    assert set(alarms) == {"ExecutionsFailed", "ExecutionsTimedOut", "Errors"}
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": "NotificationTopic"}]
        assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarms["ExecutionsFailed"]["Dimensions"] == [
        {"Name": "StateMachineArn", "Value": {"Ref": "StateMachine"}}
    ]
    assert alarms["Errors"]["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": "DispatcherFunction"}}
    ]


def test_the_schedule_is_optional_and_starts_the_state_machine_with_a_fixed_input(
    template: dict[str, Any],
) -> None:
    schedule = template["Resources"]["RefreshSchedule"]
    assert schedule["Condition"] == "HasSchedule"
    target = schedule["Properties"]["Target"]
    assert target["Arn"] == {"Ref": "StateMachine"}
    assert target["Input"] == {"Ref": "ScheduleInput"}
    assert schedule["Properties"]["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert "ScheduleNeedsAnInput" in template["Rules"]


def test_outputs_name_what_operators_look_up(template: dict[str, Any]) -> None:
    assert {
        "StateMachineArn",
        "DispatcherFunctionName",
        "StateTableName",
        "AuditTableName",
        "NotificationTopicArn",
    } <= set(template["Outputs"])


# -- the state machine -----------------------------------------------------------------------------
def test_the_state_machine_is_the_generated_definition_traced_and_logged(template: dict[str, Any]) -> None:
    machine = template["Resources"]["StateMachine"]["Properties"]
    assert machine["Definition"] == build_definition(contract_registry())
    assert machine["DefinitionSubstitutions"] == {
        "DispatcherFunctionArn": {"Fn::GetAtt": ["DispatcherFunction", "Arn"]}
    }
    assert machine["TracingConfiguration"] == {"Enabled": True}
    logging = machine["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"] == {
        "Fn::GetAtt": ["StateMachineLogGroup", "Arn"]
    }


def test_an_extra_registered_step_appears_in_the_template_with_no_template_edit() -> None:
    # GIVEN a step registered only here, asking to run after archive_snapshot
    registry = contract_registry()
    registry.register("export_report")(extra_step(run_after="archive_snapshot", reads=("request", "archive")))

    # WHEN the template is built by the unchanged builder
    template = json.loads(cli.build_template(registry=registry).to_json())

    # THEN the state machine in it runs the step between ArchiveSnapshot and SendNotification
    states = template["Resources"]["StateMachine"]["Properties"]["Definition"]["States"]
    assert states["ArchiveSnapshot"]["Next"] == "ExportReport"
    assert states["ExportReport"]["Parameters"]["step"] == "export_report"
    assert states["ExportReport"]["Next"] == "SendNotification"


# -- least privilege -------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["DispatcherRole", "StateMachineRole", "ScheduleRole"])
def test_no_mutating_action_is_allowed_on_every_resource(template: dict[str, Any], role: str) -> None:
    for statement in statements(template, role):
        if statement["Resource"] != "*":
            continue
        mutating = [
            a
            for a in actions(statement)
            if not is_read_only(a) and a not in ACTIONS_WITHOUT_RESOURCE_LEVEL_PERMISSIONS
        ]
        assert mutating == [], statement["Sid"]


def test_deleting_and_renaming_need_the_managed_tag_or_the_named_prefix(template: dict[str, Any]) -> None:
    for statement in statements(template, "DispatcherRole"):
        replacing = REPLACE_ACTIONS & set(actions(statement))
        if not replacing:
            continue
        condition = statement["Condition"]["StringEquals"]
        resources_text = json.dumps(statement["Resource"])
        if condition.get("aws:ResourceTag/aurora-restore:managed") == "true":
            continue
        if statement["Sid"] == "ReplaceUntaggedTargetsByNamePrefix":
            assert "cluster:${Prefix}*" in resources_text and "db:${Prefix}*" in resources_text
            continue
        # The final snapshot of a deleted cluster: only snapshot ARNs, never a cluster or instance.
        assert statement["Sid"] == "FinalSnapshotsOfReplacedClusters"
        assert replacing == {"rds:DeleteDBCluster"}
        assert ":cluster-snapshot:*" in resources_text and ":cluster:" not in resources_text


def test_copies_and_restores_only_in_target_regions_tagged_managed(template: dict[str, Any]) -> None:
    creating = [s for s in statements(template, "DispatcherRole") if {"rds:CopyDBClusterSnapshot", "rds:RestoreDBClusterFromSnapshot", "rds:CreateDBInstance"} & set(actions(s))]  # fmt: skip
    assert len(creating) == 3
    for statement in creating:
        condition = statement["Condition"]["StringEquals"]
        assert condition["aws:RequestTag/aurora-restore:managed"] == "true"
        if statement["Sid"] == "CopySnapshotsOutOfTheSourceRegionsTaggedManaged":
            # The pre-signed half of a cross-region copy runs in the source region.
            assert actions(statement) == ["rds:CopyDBClusterSnapshot"]
            assert condition["aws:RequestedRegion"] == {"Ref": "SourceRegions"}
            continue
        # One region per stack: its own (validate_request refuses any other).
        assert condition["aws:RequestedRegion"] == [{"Ref": "AWS::Region"}]


def test_keys_tables_topic_and_secrets_are_named_not_wildcarded(template: dict[str, Any]) -> None:
    allowed_keys = [
        {"Ref": "TargetKmsKeyArn"},
        {"Ref": "SourceKmsKeyArns"},
        {"Ref": "ExportKmsKeyArn"},
        {"Ref": "SecretsKmsKeyArns"},
        {"Fn::GetAtt": ["StackKey", "Arn"]},
    ]
    for statement in statements(template, "DispatcherRole"):
        services = {a.split(":")[0] for a in actions(statement)}
        targets = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        if statement["Sid"] == "DescribeTheSecretsManagerKeyForRdsManagedSecrets":
            # The AWS managed key has no ARN the stack knows: it is picked by its alias.
            assert actions(statement) == ["kms:DescribeKey"]
            aliases = statement["Condition"]["ForAnyValue:StringEquals"]["kms:ResourceAliases"]
            assert aliases == "alias/aws/secretsmanager"
            continue
        if "kms:CreateGrant" in actions(statement):
            # Grants only for the AWS service acting for the role (RDS), never to a principal.
            assert actions(statement) == ["kms:CreateGrant"], statement["Sid"]
            assert statement["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
        if "kms" in services:
            assert all(t in allowed_keys for t in targets) or statement["Resource"] in allowed_keys, (
                statement["Sid"]
            )
        if "dynamodb" in services:
            assert targets == [{"Fn::GetAtt": ["StateTable", "Arn"]}, {"Fn::GetAtt": ["AuditTable", "Arn"]}]
        if "sns" in services:
            assert (actions(statement), targets) == (["sns:Publish"], [{"Ref": "NotificationTopic"}])
        if "secretsmanager" in services:
            text = json.dumps(targets)
            assert "secret:${Prefix}*" in text or "secret:rds!cluster-*" in text, statement["Sid"]


def test_the_state_machine_has_the_eight_log_delivery_actions_on_star(template: dict[str, Any]) -> None:
    # Step Functions' logging guide grants these on "*": they have no resource-level permissions, and
    # scoping PutResourcePolicy/DescribeResourcePolicies/DescribeLogGroups to log groups fails the
    # state machine's creation with logging.
    delivery = [s for s in statements(template, "StateMachineRole") if s["Sid"] == "LogDeliveryHasNoResourceLevelPermissions"]  # fmt: skip
    assert len(delivery) == 1 and delivery[0]["Resource"] == "*"
    assert sorted(actions(delivery[0])) == sorted(
        [
            "logs:CreateLogDelivery",
            "logs:GetLogDelivery",
            "logs:UpdateLogDelivery",
            "logs:DeleteLogDelivery",
            "logs:ListLogDeliveries",
            "logs:PutResourcePolicy",
            "logs:DescribeResourcePolicies",
            "logs:DescribeLogGroups",
        ]
    )


def test_alarms_use_the_stack_key_only_for_this_accounts_alarms(template: dict[str, Any]) -> None:
    policy = template["Resources"]["StackKey"]["Properties"]["KeyPolicy"]["Statement"]
    (alarms,) = [s for s in policy if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert alarms["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert ":alarm:aurora-restore-${Stage}-*" in json.dumps(alarms["Condition"]["ArnLike"]["aws:SourceArn"])
    names = [r["Properties"]["AlarmName"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]  # fmt: skip
    assert names and all(n["Fn::Sub"][0].startswith("aurora-restore-${Stage}-") for n in names)


def test_the_state_machine_may_invoke_only_the_dispatcher(template: dict[str, Any]) -> None:
    invoking = [s for s in statements(template, "StateMachineRole") if "lambda:InvokeFunction" in actions(s)]
    assert len(invoking) == 1
    assert actions(invoking[0]) == ["lambda:InvokeFunction"]
    assert invoking[0]["Resource"] == [
        {"Fn::GetAtt": ["DispatcherFunction", "Arn"]},
        {"Fn::Sub": ["${Arn}:*", {"Arn": {"Fn::GetAtt": ["DispatcherFunction", "Arn"]}}]},
    ]
    others = {a for s in statements(template, "StateMachineRole") for a in actions(s)} - {
        "lambda:InvokeFunction"
    }
    assert all(a.startswith(("logs:", "xray:")) for a in others)
    schedule = list(statements(template, "ScheduleRole"))
    assert [(actions(s), s["Resource"]) for s in schedule] == [
        (["states:StartExecution"], [{"Ref": "StateMachine"}])
    ]


def test_roles_trust_only_their_service_from_this_account(template: dict[str, Any]) -> None:
    for role, service in (
        ("StateMachineRole", "states.amazonaws.com"),
        ("ScheduleRole", "scheduler.amazonaws.com"),
    ):
        trust = template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
        assert trust["Principal"] == {"Service": service}
        assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_wait_parameters_cannot_outlast_the_state_machine(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    copy, restore = (
        parameters["CopyMaxWaitSeconds"]["MaxValue"],
        parameters["RestoreMaxWaitSeconds"]["MaxValue"],
    )
    timeout = template["Resources"]["StateMachine"]["Properties"]["Definition"]["TimeoutSeconds"]
    assert timeout > copy + 3 * restore
    assert parameters["CopyMaxWaitSeconds"]["Default"] == Settings().copy_max_wait_seconds


# -- the command line --------------------------------------------------------------------------------
@pytest.fixture
def contract_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until every step is merged, the CLI builds from the contract's steps (a seam, not a mock)."""
    monkeypatch.setattr("infra.state_machine.load_builtin_steps", contract_registry)


def test_cli_prints_json_by_default_with_the_stage(
    contract_steps: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--stage", "prod"]) == 0
    template = json.loads(capsys.readouterr().out)
    assert template["Parameters"]["Stage"]["Default"] == "prod"


def test_cli_writes_yaml_to_a_file(contract_steps: None, tmp_path: Any) -> None:
    target = tmp_path / "out" / "template.yaml"
    assert cli.main(["--format", "yaml", "-o", str(target)]) == 0

    class Loader(yaml.SafeLoader):
        """Reads CloudFormation's short-form tags (!Ref, !Sub...) as plain data."""

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    loaded = yaml.load(target.read_text(), Loader=Loader)  # noqa: S506 (a SafeLoader subclass)
    assert loaded["Resources"]["StateMachine"]["Type"] == "AWS::StepFunctions::StateMachine"


def test_cli_diagram_is_a_mermaid_flowchart(contract_steps: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--diagram"]) == 0
    diagram = capsys.readouterr().out
    assert diagram.startswith("flowchart TD")
    assert "IsCopyComplete" in diagram and "RefreshFailed" in diagram


def test_cli_can_point_the_function_at_an_uploaded_zip(
    contract_steps: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--code", "s3://my-artifacts/aurora-restore/lambda.zip"]) == 0
    function = json.loads(capsys.readouterr().out)["Resources"]["DispatcherFunction"]
    assert function["Properties"]["Code"] == {
        "S3Bucket": "my-artifacts",
        "S3Key": "aurora-restore/lambda.zip",
    }
    assert "cfn-lint" not in function.get("Metadata", {})


def test_cli_names_the_missing_steps_instead_of_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def without_swap() -> Any:
        registry = contract_registry()
        registry.unregister("swap_clusters")
        return registry

    monkeypatch.setattr("dispatcher.registry.load_builtin_steps", without_swap)
    assert cli.main([]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "run_after must name a registered step, and 'swap_clusters' is not one" in captured.err


def test_rules_use_only_the_functions_cloudformation_allows_in_rules(template: dict[str, Any]) -> None:
    allowed = {"Fn::And", "Fn::Contains", "Fn::EachMemberEquals", "Fn::EachMemberIn", "Fn::Equals", "Fn::Not",
               "Fn::Or", "Fn::RefAll", "Fn::ValueOf", "Fn::ValueOfAll", "Ref"}  # fmt: skip

    def used(value: Any) -> set[str]:
        if isinstance(value, dict):
            return {k for k in value if k.startswith("Fn::") or k == "Ref"} | set().union(
                *map(used, value.values())
            )
        if isinstance(value, list):
            return set().union(*map(used, value)) if value else set()
        return set()

    assert used(template["Rules"]) <= allowed
    assert set(template["Rules"]) == {
        "ScheduleNeedsAnInput",
        "ExportNeedsARoleAndAKey",
        "SubnetsAreInTheVpc",
        "TlsVerificationNeedsACaBundle",
    }
