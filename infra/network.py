"""The function's network: its VPC and subnets, its security group, the way into the database, endpoints.

``setup_db_users`` connects to every restored cluster, so the function always runs in the clusters'
VPC: ``VpcId`` and ``SubnetIds`` are required (CloudFormation's VPC and subnet parameter types
cannot be empty, and a stack without them could never finish a refresh).

The stack creates the function's security group rather than taking one: the ingress rules it
adds (on the clusters' security group, on the endpoints' security group) name that group as their
source, and a group only this function uses opens the database to this function and nothing else.
An operator's existing group may be shared with other workloads, which the rule would then let in.

From private subnets the function reaches AWS APIs only through a NAT gateway or VPC endpoints.
``CreateVpcEndpoints=true`` creates the endpoints of the stack's region (interface endpoints serve
their own region only: calls to a source region in another region need a NAT gateway; see
docs/deploy.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from troposphere import (
    And,
    Equals,
    Export,
    GetAtt,
    Join,
    Not,
    Output,
    Parameter,
    Ref,
    Sub,
    Tags,
    Template,
    awslambda,
    ec2,
)

#: Interface endpoints: the APIs the function calls (RDS, KMS, Secrets Manager, SNS), and those the
#: operator CLI and tools call from inside the VPC (STS, Step Functions, CloudWatch Logs).
INTERFACE_ENDPOINT_SERVICES = ("rds", "kms", "secretsmanager", "sns", "sts", "states", "logs")
#: Gateway endpoints (no hourly charge): the state tables and the users spec's s3:// scripts.
GATEWAY_ENDPOINT_SERVICES = ("dynamodb", "s3")
#: PostgreSQL's port, Aurora PostgreSQL's default; Aurora allows 1150-65535.
DEFAULT_DATABASE_PORT = 5432
HTTPS_PORT = 443
ANYWHERE = "0.0.0.0/0"

# Condition names.
CREATES_ENDPOINTS = "CreatesVpcEndpoints"
CREATES_GATEWAY_ENDPOINTS = "CreatesGatewayEndpoints"
HAS_DATABASE_SECURITY_GROUP = "HasDatabaseSecurityGroup"

PARAMETER_GROUP = "Network of the function"


@dataclass
class NetworkParameters:
    """The network's stack parameters."""

    vpc_id: Parameter
    subnet_ids: Parameter
    database_security_group_id: Parameter
    database_port: Parameter
    create_vpc_endpoints: Parameter
    route_table_ids: Parameter


@dataclass
class Network:
    """What the rest of the template needs from the network: the function's placement."""

    parameters: NetworkParameters
    function_security_group: ec2.SecurityGroup

    def vpc_config(self) -> awslambda.VPCConfig:
        """The function's ``VpcConfig``: the given subnets, the stack's own security group."""
        return awslambda.VPCConfig(
            SubnetIds=Ref(self.parameters.subnet_ids),
            SecurityGroupIds=[GetAtt(self.function_security_group, "GroupId")],
        )


def endpoint_service_name(service: str) -> Sub:
    """AWS's service name of a regional endpoint, e.g. ``com.amazonaws.eu-central-1.rds``."""
    return Sub("com.amazonaws.${AWS::Region}." + service)


def endpoint_title(service: str) -> str:
    """The endpoint's logical id, e.g. ``SecretsmanagerEndpoint``."""
    return service.capitalize() + "Endpoint"


def add_network(template: Template, stage: Parameter) -> Network:
    """Parameters, conditions, rule, security groups, ingress rule, endpoints and output of the network."""
    params = add_network_parameters(template)
    _add_conditions(template, params)
    _add_rules(template, params)
    tags = Tags({"aurora-restore:stage": Ref(stage), "aurora-restore:component": "aurora-restore"})
    function_group = template.add_resource(
        ec2.SecurityGroup(
            "FunctionSecurityGroup",
            GroupDescription="aurora-restore dispatcher function: AWS APIs and the restored clusters",
            VpcId=Ref(params.vpc_id),
            # Stated, so the default allow-everything egress rule is replaced by these two. DNS needs
            # no rule: security groups do not filter traffic to the VPC's Amazon DNS server.
            SecurityGroupEgress=[
                ec2.SecurityGroupRule(
                    IpProtocol="tcp",
                    FromPort=HTTPS_PORT,
                    ToPort=HTTPS_PORT,
                    CidrIp=ANYWHERE,
                    Description="AWS APIs: the VPC endpoints, or a NAT gateway for other regions",
                ),
                ec2.SecurityGroupRule(
                    IpProtocol="tcp",
                    FromPort=Ref(params.database_port),
                    ToPort=Ref(params.database_port),
                    CidrIp=ANYWHERE,
                    Description="PostgreSQL on the restored clusters (their security group admits it)",
                ),
            ],
            Tags=tags,
        )
    )
    template.add_resource(
        ec2.SecurityGroupIngress(
            "DatabaseIngressFromFunction",
            Condition=HAS_DATABASE_SECURITY_GROUP,
            GroupId=Ref(params.database_security_group_id),
            IpProtocol="tcp",
            FromPort=Ref(params.database_port),
            ToPort=Ref(params.database_port),
            SourceSecurityGroupId=GetAtt(function_group, "GroupId"),
            Description=Sub("aurora-restore ${Stage}: setup_db_users connects", Stage=Ref(stage)),
        )
    )
    _add_endpoints(template, params, function_group, tags)
    template.add_output(
        Output(
            "FunctionSecurityGroupId",
            Description="The function's security group: the source to allow on the clusters' port "
            "when DatabaseSecurityGroupId is not set",
            Value=GetAtt(function_group, "GroupId"),
            Export=Export(Sub("${AWS::StackName}-FunctionSecurityGroupId")),
        )
    )
    return Network(params, function_group)


def add_network_parameters(template: Template) -> NetworkParameters:
    """The network's parameters, in their own group of the console's parameter form."""

    def add(name: str, **kwargs: Any) -> Parameter:
        return template.add_parameter(Parameter(name, **kwargs))

    params = NetworkParameters(
        vpc_id=add(
            "VpcId",
            Type="AWS::EC2::VPC::Id",
            Description="VPC of the restored clusters; the function runs in it (setup_db_users connects "
            "to every restored cluster)",
        ),
        subnet_ids=add(
            "SubnetIds",
            Type="List<AWS::EC2::Subnet::Id>",
            Description="Private subnets of VpcId for the function and the interface endpoints, one per "
            "Availability Zone (two or more)",
        ),
        database_security_group_id=add(
            "DatabaseSecurityGroupId",
            Type="String",
            Default="",
            AllowedPattern=r"^$|^sg-[0-9a-f]{8,17}$",
            Description="Security group of the restored clusters: the stack lets the function in on "
            "DatabasePort. Empty: allow the FunctionSecurityGroupId output yourself",
        ),
        database_port=add(
            "DatabasePort",
            Type="Number",
            Default=DEFAULT_DATABASE_PORT,
            MinValue=1150,
            MaxValue=65535,
            Description="Port of the restored clusters (Aurora PostgreSQL's default is 5432)",
        ),
        create_vpc_endpoints=add(
            "CreateVpcEndpoints",
            Type="String",
            Default="false",
            AllowedValues=["true", "false"],
            Description="true: create this region's interface endpoints (rds, kms, secretsmanager, sns, sts, "
            "states, logs) in SubnetIds, and the dynamodb and s3 gateway endpoints on RouteTableIds. "
            "false: a NAT gateway or existing endpoints reach the AWS APIs",
        ),
        route_table_ids=add(
            "RouteTableIds",
            Type="CommaDelimitedList",
            Default="",
            Description="Route tables of SubnetIds for the dynamodb and s3 gateway endpoints (with "
            "CreateVpcEndpoints=true); empty: no gateway endpoints (the VPC has them already)",
        ),
    )
    interface = template.metadata.setdefault("AWS::CloudFormation::Interface", {})
    interface.setdefault("ParameterGroups", []).insert(
        1,
        {
            "Label": {"default": PARAMETER_GROUP},
            "Parameters": [
                params.vpc_id.title,
                params.subnet_ids.title,
                params.database_security_group_id.title,
                params.database_port.title,
                params.create_vpc_endpoints.title,
                params.route_table_ids.title,
            ],
        },
    )
    return params


def _add_conditions(template: Template, params: NetworkParameters) -> None:
    template.add_condition(CREATES_ENDPOINTS, Equals(Ref(params.create_vpc_endpoints), "true"))
    template.add_condition(
        CREATES_GATEWAY_ENDPOINTS,
        And({"Condition": CREATES_ENDPOINTS}, Not(Equals(Join("", Ref(params.route_table_ids)), ""))),
    )
    template.add_condition(
        HAS_DATABASE_SECURITY_GROUP, Not(Equals(Ref(params.database_security_group_id), ""))
    )


def _add_rules(template: Template, params: NetworkParameters) -> None:
    template.add_rule(
        "SubnetsAreInTheVpc",
        {
            "Assertions": [
                {
                    "Assert": {
                        "Fn::EachMemberEquals": [
                            {"Fn::ValueOfAll": [params.subnet_ids.title, "VpcId"]},
                            Ref(params.vpc_id),
                        ]
                    },
                    "AssertDescription": "Every subnet in SubnetIds must be in VpcId",
                }
            ]
        },
    )


def _add_endpoints(
    template: Template, params: NetworkParameters, function_group: ec2.SecurityGroup, tags: Tags
) -> None:
    endpoint_group = template.add_resource(
        ec2.SecurityGroup(
            "EndpointSecurityGroup",
            Condition=CREATES_ENDPOINTS,
            GroupDescription="aurora-restore interface endpoints: HTTPS from the dispatcher function",
            VpcId=Ref(params.vpc_id),
            SecurityGroupIngress=[
                ec2.SecurityGroupRule(
                    IpProtocol="tcp",
                    FromPort=HTTPS_PORT,
                    ToPort=HTTPS_PORT,
                    SourceSecurityGroupId=GetAtt(function_group, "GroupId"),
                    Description="HTTPS from the dispatcher function",
                )
            ],
            Tags=tags,
        )
    )
    for service in INTERFACE_ENDPOINT_SERVICES:
        template.add_resource(
            ec2.VPCEndpoint(
                endpoint_title(service),
                Condition=CREATES_ENDPOINTS,
                VpcId=Ref(params.vpc_id),
                ServiceName=endpoint_service_name(service),
                VpcEndpointType="Interface",
                # The SDK's default regional host names then resolve to the endpoint: no client
                # configuration in the function changes.
                PrivateDnsEnabled=True,
                SubnetIds=Ref(params.subnet_ids),
                SecurityGroupIds=[GetAtt(endpoint_group, "GroupId")],
            )
        )
    for service in GATEWAY_ENDPOINT_SERVICES:
        template.add_resource(
            ec2.VPCEndpoint(
                endpoint_title(service),
                Condition=CREATES_GATEWAY_ENDPOINTS,
                VpcId=Ref(params.vpc_id),
                ServiceName=endpoint_service_name(service),
                VpcEndpointType="Gateway",
                RouteTableIds=Ref(params.route_table_ids),
            )
        )
