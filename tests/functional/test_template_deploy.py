"""The template deploys under moto's CloudFormation (create_stack) and its outputs point at real resources.

What moto's CloudFormation cannot do, and where it is covered instead:

- ``AWS::CloudWatch::Alarm``, ``AWS::SNS::Subscription`` and ``AWS::Scheduler::Schedule`` are not
  implemented: moto skips them with a warning (their shape: tests/unit/test_template.py; their
  schema: cfn-lint).
- ``AWS::StepFunctions::StateMachine`` reads only ``DefinitionString``, so the ``Definition`` +
  ``DefinitionSubstitutions`` form deploys with an empty definition; the definition itself is
  substituted and run by moto's Step Functions in test_state_machine_execution.py.
- EC2: moto creates the security groups, the ingress rule and the VPC endpoints, and knows which
  endpoint services each region offers (its list is taken from AWS), but routes nothing and
  ignores a security group's ``SecurityGroupEgress``; whether a refresh gets through is for a
  first deploy in a sandbox account (docs/deploy.md).
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


def a_vpc() -> dict[str, str]:
    """An empty VPC as an operator starts from: two private subnets, their route table, the clusters' group."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate("ab")
    ]
    route_table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    for subnet in subnets:
        ec2.associate_route_table(RouteTableId=route_table, SubnetId=subnet)
    clusters_group = ec2.create_security_group(
        GroupName="orders-dev-db", Description="the clusters", VpcId=vpc
    )["GroupId"]
    return {
        "VpcId": vpc,
        "SubnetIds": ",".join(subnets),
        "RouteTableIds": route_table,
        "DatabaseSecurityGroupId": clusters_group,
    }


def test_the_stack_deploys_with_its_outputs(aws: None) -> None:
    # GIVEN the packaged template, a VPC, and every optional part switched on
    network = a_vpc()
    parameters = {
        **network,
        "CreateVpcEndpoints": "true",
        "Stage": "dev",
        "NotificationEmail": "dba@example.com",
        "TargetRegions": "us-east-1,eu-central-1",
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
    assert configuration["VpcConfig"]["SubnetIds"] == network["SubnetIds"].split(",")
    assert configuration["VpcConfig"]["SecurityGroupIds"] == [outputs["FunctionSecurityGroupId"]]
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


def test_the_network_alone_deploys(aws: None) -> None:
    # GIVEN only what has no default: the VPC and its subnets
    network = a_vpc()

    # WHEN the stack is created with nothing optional (no endpoints, no clusters' group, no schedule)
    stack, skipped = deploy({"VpcId": network["VpcId"], "SubnetIds": network["SubnetIds"]})

    # THEN the function runs in the subnets, and no endpoint, rule or schedule was made
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert skipped == {"AWS::CloudWatch::Alarm"}
    roles = boto3.client("iam", region_name=REGION).list_roles()["Roles"]
    assert not [r for r in roles if "ScheduleRole" in r["RoleName"]]
    function = boto3.client("lambda", region_name=REGION).get_function(
        FunctionName="aurora-restore-dispatcher-dev"
    )
    assert function["Configuration"]["VpcConfig"]["SubnetIds"] == network["SubnetIds"].split(",")
    ec2 = boto3.client("ec2", region_name=REGION)
    assert (
        ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [network["VpcId"]]}])["VpcEndpoints"]
        == []
    )
    (clusters_group,) = ec2.describe_security_groups(GroupIds=[network["DatabaseSecurityGroupId"]])[
        "SecurityGroups"
    ]
    assert clusters_group["IpPermissions"] == []


def test_the_network_reaches_the_clusters_and_this_regions_apis(aws: None) -> None:
    # GIVEN a VPC with the clusters' security group, and endpoints asked for
    network = a_vpc()

    # WHEN the stack is created
    stack, _ = deploy({**network, "CreateVpcEndpoints": "true", "DatabasePort": "5433"})
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    function_group = outputs["FunctionSecurityGroupId"]

    # THEN the clusters' group lets the function's group in on the database port, and nothing else
    ec2 = boto3.client("ec2", region_name=REGION)
    (clusters_group,) = ec2.describe_security_groups(GroupIds=[network["DatabaseSecurityGroupId"]])[
        "SecurityGroups"
    ]
    assert [
        (p["IpProtocol"], p["FromPort"], p["ToPort"], [g["GroupId"] for g in p["UserIdGroupPairs"]])
        for p in clusters_group["IpPermissions"]
    ] == [("tcp", 5433, 5433, [function_group])]

    # AND each endpoint is one AWS offers in this region with that type (moto's list is AWS's)
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [network["VpcId"]]}])[
        "VpcEndpoints"
    ]
    by_service = {e["ServiceName"]: e for e in endpoints}
    assert len(by_service) == len(endpoints) == 9
    interface = {
        f"com.amazonaws.{REGION}.{s}"
        for s in ("rds", "kms", "secretsmanager", "sns", "sts", "states", "logs")
    }
    gateway = {f"com.amazonaws.{REGION}.{s}" for s in ("dynamodb", "s3")}
    assert set(by_service) == interface | gateway
    offered = ec2.describe_vpc_endpoint_services(ServiceNames=sorted(by_service))["ServiceDetails"]
    offered_types = {(d["ServiceName"], t["ServiceType"]) for d in offered for t in d["ServiceType"]}
    for name, endpoint in by_service.items():
        kind = "Interface" if name in interface else "Gateway"
        assert endpoint["VpcEndpointType"] == kind
        assert (name, kind) in offered_types
    for name in interface:
        endpoint = by_service[name]
        assert endpoint["PrivateDnsEnabled"] is True
        assert sorted(endpoint["SubnetIds"]) == sorted(network["SubnetIds"].split(","))
        (endpoint_group,) = ec2.describe_security_groups(GroupIds=[g["GroupId"] for g in endpoint["Groups"]])[
            "SecurityGroups"
        ]
        assert [
            (p["FromPort"], [g["GroupId"] for g in p["UserIdGroupPairs"]])
            for p in endpoint_group["IpPermissions"]
        ] == [(443, [function_group])]
    for name in gateway:
        assert by_service[name]["RouteTableIds"] == [network["RouteTableIds"]]


def test_endpoints_without_route_tables_are_the_interface_ones_only(aws: None) -> None:
    # GIVEN a VPC that already routes S3 and DynamoDB (no route tables named for the gateway endpoints)
    network = a_vpc()

    # WHEN the stack is created with endpoints asked for
    stack, _ = deploy(
        {"VpcId": network["VpcId"], "SubnetIds": network["SubnetIds"], "CreateVpcEndpoints": "true"}
    )

    # THEN only the interface endpoints are made
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    endpoints = boto3.client("ec2", region_name=REGION).describe_vpc_endpoints(
        Filters=[{"Name": "vpc-id", "Values": [network["VpcId"]]}]
    )["VpcEndpoints"]
    assert {e["VpcEndpointType"] for e in endpoints} == {"Interface"}
    assert len(endpoints) == 7
