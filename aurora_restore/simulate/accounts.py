"""A second account in moto: the production account that owns the source snapshots.

moto keeps accounts apart (STS AssumeRole gives credentials of the role's account); with
``moto_compat.accounts_as_documented`` it also holds the role's trust policy, shared snapshots and
key policies to what AWS documents. :func:`deploy_source_account` plays "deploy the source-account
stack" there: the role with the template's own trust and permissions, the shareable key with the
template's key policy (or one that forgets the target account, for the trap), and returns clients
acting in that account for seeding and reading it back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: The source account of the rehearsal and the tests (the target is moto's default account).
SOURCE_ACCOUNT = "111111111111"
#: The external id the rehearsal's stacks are deployed with.
EXTERNAL_ID = "rehearsal-external-id-0001"
ROLE_NAME = "aurora-restore-source"
#: The dispatcher role the source-account stack trusts (moto's callers are checked by account).
DISPATCHER_ROLE = "arn:aws:iam::{account}:role/aurora-restore-dispatcher"


@dataclass
class SourceAccount:
    """What the source-account stack made, and clients acting in that account."""

    account: str
    region: str
    role_arn: str
    key_arn: str
    clients: Any

    def rds(self) -> Any:
        """RDS in the source account and region."""
        return self.clients("rds", self.region)


def deploy_source_account(
    clients: Any,
    *,
    account: str = SOURCE_ACCOUNT,
    region: str,
    target_account: str,
    external_id: str = EXTERNAL_ID,
    key_grants_target: bool = True,
) -> SourceAccount:
    """The role and the shareable key of the source-account template, made in ``account``.

    The trust policy, the role's permissions and the key policy are the template's, resolved for
    these accounts; ``key_grants_target=False`` leaves the target account out of the key policy.
    """
    from moto.iam.models import iam_backends

    from infra.source_account import shareable_key_policy

    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": DISPATCHER_ROLE.format(account=target_account)},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
            }
        ],
    }
    iam = iam_backends[account]["aws"]
    role = next((r for r in iam.roles.values() if r.name == ROLE_NAME), None)
    if role is None:
        role = iam.create_role(ROLE_NAME, json.dumps(trust), "/", None, "aurora-restore source", [], None)
    credentials = clients("sts", region).assume_role(
        RoleArn=role.arn, RoleSessionName="rehearsal-seed", ExternalId=external_id
    )["Credentials"]
    there = clients.assumed(credentials)
    policy = _resolve(shareable_key_policy(), account=account, target_account=target_account)
    if not key_grants_target:
        policy["Statement"] = [s for s in policy["Statement"] if "TargetAccount" not in s["Sid"]]
    kms = there("kms", region)
    key = kms.create_key(Description="aurora-restore shareable key", Policy=json.dumps(policy))["KeyMetadata"]
    return SourceAccount(account, region, str(role.arn), str(key["Arn"]), there)


def _resolve(node: Any, *, account: str, target_account: str) -> Any:
    """The template's ``Fn::Sub`` strings of the key policy, for these accounts."""
    if isinstance(node, list):
        return [_resolve(v, account=account, target_account=target_account) for v in node]
    if isinstance(node, dict):
        return {k: _resolve(v, account=account, target_account=target_account) for k, v in node.items()}
    if hasattr(node, "to_dict"):
        text = node.to_dict()["Fn::Sub"]
        return (
            text.replace("${AWS::Partition}", "aws")
            .replace("${AWS::AccountId}", account)
            .replace("${TargetAccountId}", target_account)
        )
    return node


def automated_snapshot_under_aws_rds(
    source: SourceAccount, cluster_id: str, snapshot_id: str
) -> dict[str, Any]:
    """A production cluster encrypted with ``aws/rds`` and an automated snapshot of it (RDS's backup)."""
    from moto.rds.models import rds_backends

    aws_rds = source.clients("kms", source.region).describe_key(KeyId="alias/aws/rds")["KeyMetadata"]["Arn"]
    rds = source.rds()
    rds.create_db_cluster(
        DBClusterIdentifier=cluster_id,
        Engine="aurora-postgresql",
        EngineVersion="15.4",
        MasterUsername="orders_master",
        MasterUserPassword="source-master-pw-1",
        StorageEncrypted=True,
        KmsKeyId=aws_rds,
    )
    # No API makes an automated snapshot under a chosen name; moto's backend has RDS's backup call.
    rds_backends[source.account][source.region].create_auto_cluster_snapshot(cluster_id, snapshot_id)
    found = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=snapshot_id)["DBClusterSnapshots"]
    return dict(found[0])
