"""The template deploys under moto's CloudFormation (create_stack) and its outputs point at real resources.

What moto's CloudFormation cannot do, and where it is covered instead:

- ``AWS::CloudWatch::Alarm``, ``AWS::SNS::Subscription`` and ``AWS::Scheduler::Schedule`` are not
  implemented: moto skips them with a warning (their shape: tests/unit/test_template.py; their
  schema: cfn-lint).
- ``AWS::StepFunctions::StateMachine`` reads only ``DefinitionString``, so the ``Definition`` +
  ``DefinitionSubstitutions`` form deploys with an empty definition; the definition itself is
  substituted and run by moto's Step Functions in test_state_machine_execution.py.
- Lambda's ``Architectures``, ``TracingConfig`` and ``KmsKeyArn``, DynamoDB's PITR and TTL, and the
  KMS key policy are accepted but not modelled (their shape: tests/unit/test_template.py).
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from typing import Any

import boto3
import pytest

from dispatcher.store import AUDIT_TABLE_KEYS, STATE_TABLE_KEYS
from tests.contract import contract_template

pytestmark = pytest.mark.template

REGION = "us-east-1"
#: Resource types moto's CloudFormation does not implement (see the module docstring).
NOT_IN_MOTO = {"AWS::CloudWatch::Alarm", "AWS::SNS::Subscription", "AWS::Scheduler::Schedule"}


def packaged(template: dict[str, Any], bucket: str, key: str) -> dict[str, Any]:
    """What `aws cloudformation package` does to the template: the local zip becomes an S3 location."""
    function = template["Resources"]["DispatcherFunction"]["Properties"]
    assert function["Code"] == "build/lambda.zip"
    function["Code"] = {"S3Bucket": bucket, "S3Key": key}
    return template


def a_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("dispatcher/__init__.py", "")
    return buffer.getvalue()


def deploy(parameters: dict[str, str]) -> tuple[dict[str, Any], set[str]]:
    """Upload a zip, create the stack; return the stack and the resource types moto skipped."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="artifacts")
    s3.put_object(Bucket="artifacts", Key="aurora-restore/lambda.zip", Body=a_zip())
    body = json.dumps(packaged(contract_template(), "artifacts", "aurora-restore/lambda.zip"))
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cloudformation.create_stack(
            StackName="aurora-restore-dev",
            TemplateBody=body,
            Capabilities=["CAPABILITY_IAM"],
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        )
    skipped = {
        str(w.message).split("parse ")[1].split(" but")[0]
        for w in caught
        if "not supported by moto" in str(w.message)
    }
    return cloudformation.describe_stacks(StackName="aurora-restore-dev")["Stacks"][0], skipped


def test_the_stack_deploys_with_its_outputs(aws: None) -> None:
    # GIVEN the packaged template and every optional part switched on
    parameters = {
        "Stage": "dev",
        "NotificationEmail": "dba@example.com",
        "SubnetIds": "subnet-0a1b2c3d,subnet-4e5f6a7b",
        "SecurityGroupIds": "sg-0123456789abcdef0",
        "TargetKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "UnmanagedTargetPrefix": "orders-dev",
        "ScheduleExpression": "cron(0 2 ? * MON-FRI *)",
        "ScheduleInput": json.dumps({"body": {"snapshot_id": "latest:orders"}}),
    }

    # WHEN CloudFormation (moto) creates the stack
    stack, skipped = deploy(parameters)

    # THEN it completes, skipping only the types moto lacks, and every output names a real resource
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert skipped == NOT_IN_MOTO
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["StateTableName"] == "aurora-restore-state"
    assert outputs["AuditTableName"] == "aurora-restore-audit"

    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for table, keys in (
        (outputs["StateTableName"], STATE_TABLE_KEYS),
        (outputs["AuditTableName"], AUDIT_TABLE_KEYS),
    ):
        described = dynamodb.describe_table(TableName=table)["Table"]
        assert {k["AttributeName"]: k["KeyType"] for k in described["KeySchema"]} == keys
        assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"

    function = boto3.client("lambda", region_name=REGION).get_function(
        FunctionName=outputs["DispatcherFunctionName"]
    )
    configuration = function["Configuration"]
    assert configuration["FunctionArn"] == outputs["DispatcherFunctionArn"]
    assert configuration["Handler"] == "dispatcher.handler.lambda_handler"
    assert configuration["VpcConfig"]["SubnetIds"] == ["subnet-0a1b2c3d", "subnet-4e5f6a7b"]
    variables = configuration["Environment"]["Variables"]
    assert variables["AURORA_RESTORE_STATE_TABLE"] == outputs["StateTableName"]
    assert variables["AURORA_RESTORE_TOPIC_ARN"] == outputs["NotificationTopicArn"]
    assert variables["AURORA_RESTORE_DEFAULT_KMS_KEY_ID"] == parameters["TargetKmsKeyArn"]

    topics = boto3.client("sns", region_name=REGION).list_topics()["Topics"]
    assert {"TopicArn": outputs["NotificationTopicArn"]} in topics
    machine = boto3.client("stepfunctions", region_name=REGION).describe_state_machine(
        stateMachineArn=outputs["StateMachineArn"]
    )
    assert machine["name"] == outputs["StateMachineName"] == "aurora-restore-pipeline-dev"


def test_the_defaults_alone_deploy(aws: None) -> None:
    # Nothing optional given: no VPC, no schedule, no e-mail, no keys. The conditional parts drop out.
    stack, skipped = deploy({})

    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert skipped == {"AWS::CloudWatch::Alarm"}
    roles = boto3.client("iam", region_name=REGION).list_roles()["Roles"]
    assert not [r for r in roles if "ScheduleRole" in r["RoleName"]]
    function = boto3.client("lambda", region_name=REGION).get_function(
        FunctionName="aurora-restore-dispatcher-dev"
    )
    assert not function["Configuration"].get("VpcConfig", {}).get("SubnetIds")
