"""The function's network in the template: VPC placement, ENI permissions, the database ingress, endpoints.

What CloudFormation does with these resources is deployed under moto in
tests/functional/test_template_deploy.py; here the template's shape is held to what AWS documents.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.contract import contract_template

#: The EC2 actions of AWS's managed policy AWSLambdaVPCAccessExecutionRole (v3): what Lambda needs
#: the function's role to allow before it attaches the function to a VPC.
LAMBDA_VPC_ACCESS_ACTIONS = {
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}
INTERFACE = ("rds", "kms", "secretsmanager", "sns", "sts", "states", "logs")
GATEWAY = ("dynamodb", "s3")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return contract_template()


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_the_function_always_runs_in_the_given_subnets_with_the_stacks_own_group(
    template: dict[str, Any],
) -> None:
    function = template["Resources"]["DispatcherFunction"]["Properties"]
    assert function["VpcConfig"] == {
        "SubnetIds": {"Ref": "SubnetIds"},
        "SecurityGroupIds": [{"Fn::GetAtt": ["FunctionSecurityGroup", "GroupId"]}],
    }
    group = template["Resources"]["FunctionSecurityGroup"]
    assert "Condition" not in group
    assert group["Properties"]["VpcId"] == {"Ref": "VpcId"}


def test_the_vpc_and_subnets_are_required_and_checked_by_cloudformation(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    # AWS-specific types: CloudFormation refuses ids that do not exist, and the console offers a picker.
    assert parameters["VpcId"]["Type"] == "AWS::EC2::VPC::Id"
    assert "Default" not in parameters["VpcId"]
    assert parameters["SubnetIds"]["Type"] == "List<AWS::EC2::Subnet::Id>"
    assert "Default" not in parameters["SubnetIds"]
    (assertion,) = template["Rules"]["SubnetsAreInTheVpc"]["Assertions"]
    assert assertion["Assert"] == {
        "Fn::EachMemberEquals": [{"Fn::ValueOfAll": ["SubnetIds", "VpcId"]}, {"Ref": "VpcId"}]
    }
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    (network,) = [g for g in groups if g["Label"]["default"] == "Network of the function"]
    assert network["Parameters"] == [
        "VpcId",
        "SubnetIds",
        "DatabaseSecurityGroupId",
        "DatabasePort",
        "CreateVpcEndpoints",
        "RouteTableIds",
    ]


def test_the_role_may_manage_the_functions_network_interfaces_unconditionally(
    template: dict[str, Any],
) -> None:
    # GIVEN the dispatcher role's inline policies
    policies = template["Resources"]["DispatcherRole"]["Properties"]["Policies"]
    (network,) = [p for p in policies if p["PolicyName"] == "aurora-restore-dispatcher-network"]
    statements = network["PolicyDocument"]["Statement"]

    # THEN every EC2 action of AWSLambdaVPCAccessExecutionRole is allowed, none behind a condition
    assert all("Fn::If" not in s and "Condition" not in s for s in statements)
    allowed = {a: s["Resource"] for s in statements for a in s["Action"]}
    assert set(allowed) == LAMBDA_VPC_ACCESS_ACTIONS
    # Lambda's guide: DescribeNetworkInterfaces works only on "*"; DeleteNetworkInterface needs every
    # network interface of the account and region, since Lambda names none in advance.
    assert allowed["ec2:DescribeNetworkInterfaces"] == "*"
    assert {
        "Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:network-interface/*"
    } in allowed["ec2:DeleteNetworkInterface"]


def test_the_clusters_group_admits_the_function_on_the_database_port_when_named(
    template: dict[str, Any],
) -> None:
    rule = template["Resources"]["DatabaseIngressFromFunction"]
    assert rule["Type"] == "AWS::EC2::SecurityGroupIngress"
    assert rule["Condition"] == "HasDatabaseSecurityGroup"
    assert template["Conditions"]["HasDatabaseSecurityGroup"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "DatabaseSecurityGroupId"}, ""]}]
    }
    properties = rule["Properties"]
    assert properties["GroupId"] == {"Ref": "DatabaseSecurityGroupId"}
    assert properties["SourceSecurityGroupId"] == {"Fn::GetAtt": ["FunctionSecurityGroup", "GroupId"]}
    assert (properties["IpProtocol"], properties["FromPort"], properties["ToPort"]) == (
        "tcp",
        {"Ref": "DatabasePort"},
        {"Ref": "DatabasePort"},
    )
    assert template["Parameters"]["DatabasePort"]["Default"] == 5432
    # The function's own egress: HTTPS to the APIs and the database port, nothing else.
    egress = template["Resources"]["FunctionSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert [(e["IpProtocol"], e["FromPort"], e["ToPort"], e["CidrIp"]) for e in egress] == [
        ("tcp", 443, 443, "0.0.0.0/0"),
        ("tcp", {"Ref": "DatabasePort"}, {"Ref": "DatabasePort"}, "0.0.0.0/0"),
    ]


def test_endpoints_exist_only_when_asked_for_with_this_regions_service_names(
    template: dict[str, Any],
) -> None:
    # GIVEN every VPC endpoint of the template
    endpoints = resources_of_type(template, "AWS::EC2::VPCEndpoint")

    # THEN there is one per service, interface or gateway, each under its condition
    expected = {("Interface", s) for s in INTERFACE} | {("Gateway", s) for s in GATEWAY}
    found = {
        (e["Properties"]["VpcEndpointType"], e["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1])
        for e in endpoints.values()
    }
    assert found == expected
    for endpoint in endpoints.values():
        properties = endpoint["Properties"]
        service = properties["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1]
        assert properties["ServiceName"] == {"Fn::Sub": f"com.amazonaws.${{AWS::Region}}.{service}"}
        assert properties["VpcId"] == {"Ref": "VpcId"}
        if properties["VpcEndpointType"] == "Interface":
            assert endpoint["Condition"] == "CreatesVpcEndpoints"
            assert properties["PrivateDnsEnabled"] is True
            assert properties["SubnetIds"] == {"Ref": "SubnetIds"}
            assert properties["SecurityGroupIds"] == [{"Fn::GetAtt": ["EndpointSecurityGroup", "GroupId"]}]
        else:
            assert endpoint["Condition"] == "CreatesGatewayEndpoints"
            assert properties["RouteTableIds"] == {"Ref": "RouteTableIds"}
    assert template["Parameters"]["CreateVpcEndpoints"]["Default"] == "false"
    assert template["Conditions"]["CreatesVpcEndpoints"] == {
        "Fn::Equals": [{"Ref": "CreateVpcEndpoints"}, "true"]
    }
    assert template["Conditions"]["CreatesGatewayEndpoints"] == {
        "Fn::And": [
            {"Condition": "CreatesVpcEndpoints"},
            {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "RouteTableIds"}]}, ""]}]},
        ]
    }


def test_the_endpoints_admit_https_from_the_function_only(template: dict[str, Any]) -> None:
    group = template["Resources"]["EndpointSecurityGroup"]
    assert group["Condition"] == "CreatesVpcEndpoints"
    (ingress,) = group["Properties"]["SecurityGroupIngress"]
    assert ingress == {
        "IpProtocol": "tcp",
        "FromPort": 443,
        "ToPort": 443,
        "SourceSecurityGroupId": {"Fn::GetAtt": ["FunctionSecurityGroup", "GroupId"]},
        "Description": ingress["Description"],
    }


def test_the_function_group_is_an_output_for_operators_who_manage_the_clusters_group(
    template: dict[str, Any],
) -> None:
    output = template["Outputs"]["FunctionSecurityGroupId"]
    assert output["Value"] == {"Fn::GetAtt": ["FunctionSecurityGroup", "GroupId"]}


def test_the_deploy_guide_shows_the_network_the_template_builds(template: dict[str, Any]) -> None:
    # GIVEN docs/deploy.md's network section and its diagram
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    section = guide[guide.index("## 5. The network") : guide.index("## 6. Deploy")]
    diagram = section[section.index("```mermaid") : section.index("```", section.index("```mermaid") + 3)]

    # THEN the diagram names every endpoint and every network parameter the template has
    services = {
        e["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1]
        for e in resources_of_type(template, "AWS::EC2::VPCEndpoint").values()
    }
    assert [s for s in sorted(services) if not re.search(rf"\b{s}\b", diagram)] == []
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    (network,) = [g for g in groups if g["Label"]["default"] == "Network of the function"]
    assert [p for p in network["Parameters"] if p not in section] == []
    # AND the parameter table lists each of them
    table = guide[guide.index("## Parameters") :]
    assert [p for p in network["Parameters"] if f"`{p}`" not in table] == []
