"""The moto corrections the rehearsal and the tests share: RDS as documented while a block runs,
nesting without applying twice, and moto as it was once the outermost block ends."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from aurora_restore.simulate.moto_compat import corrections, rds_as_documented
from tests.functional.replace_world import TARGET, TARGET_REGION, make_cluster


def rename(clients: Any, old: str, new: str) -> None:
    clients("rds", TARGET_REGION).modify_db_cluster(
        DBClusterIdentifier=old, NewDBClusterIdentifier=new, ApplyImmediately=True
    )


def cluster_of(clients: Any, instance_id: str) -> str:
    found = clients("rds", TARGET_REGION).describe_db_instances(DBInstanceIdentifier=instance_id)
    return str(found["DBInstances"][0]["DBClusterIdentifier"])


def test_a_rename_onto_a_taken_name_is_refused_and_instances_follow_a_rename(clients: Any) -> None:
    # GIVEN two clusters, with the corrections on
    with rds_as_documented():
        make_cluster(clients, TARGET)
        make_cluster(clients, "orders-other")
        # WHEN one is renamed onto the other's name THEN RDS's error, and both are still there
        with pytest.raises(ClientError) as refused:
            rename(clients, TARGET, "orders-other")
        assert refused.value.response["Error"]["Code"] == "DBClusterAlreadyExistsFault"
        # WHEN it is renamed to a free name THEN its instance goes with it
        rename(clients, TARGET, "orders-dev-old")
        assert cluster_of(clients, f"{TARGET}-instance-1") == "orders-dev-old"
        # AND no snapshot was taken when the clusters were made
        assert clients("rds", TARGET_REGION).describe_db_cluster_snapshots()["DBClusterSnapshots"] == []


def test_blocks_nest_and_moto_is_as_it_was_after_the_outermost(clients: Any) -> None:
    from moto.rds.models import RDSBackend

    plain = RDSBackend.modify_db_cluster
    # GIVEN a test's block around the rehearsal's (as faithful_rds around a rehearsal)
    with rds_as_documented():
        corrected = RDSBackend.modify_db_cluster
        with corrections():
            # THEN the inner block applies nothing twice
            assert RDSBackend.modify_db_cluster is corrected
        # AND its end leaves the outer block's corrections in place
        assert RDSBackend.modify_db_cluster is corrected
        make_cluster(clients, TARGET)
        make_cluster(clients, "orders-other")
        with pytest.raises(ClientError):
            rename(clients, TARGET, "orders-other")
    # WHEN the outermost block ends THEN moto is as it was
    assert RDSBackend.modify_db_cluster is plain


def test_a_task_token_answer_is_held_to_step_functions_limits() -> None:
    """SendTaskSuccess refuses output that is not JSON or over 262,144 bytes (InvalidOutput), as
    the API documents; the check comes before the token is even looked up."""
    import boto3
    from moto import mock_aws

    from aurora_restore.simulate.moto_compat import TASK_OUTPUT_LIMIT_BYTES, task_tokens_as_documented

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), task_tokens_as_documented():
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        for output in ("not json", json.dumps({"x": "a" * TASK_OUTPUT_LIMIT_BYTES})):
            with pytest.raises(ClientError) as caught:
                sfn.send_task_success(taskToken="t", output=output)
            assert caught.value.response["Error"]["Code"] == "InvalidOutput"
        # A valid output gets as far as the token, which no execution handed out.
        with pytest.raises(ClientError) as caught:
            sfn.send_task_success(taskToken="t", output="{}")
        assert caught.value.response["Error"]["Code"] == "InvalidToken"


def test_an_item_updated_from_two_threads_at_once_is_updated_atomically(clients: Any, store: Any) -> None:
    """DynamoDB updates an item atomically; moto copies it for UpdateItem outside its write path.

    The rehearsal meets this when an RDS event's check holds a loop on the operation's state item
    while the execution's step records its progress there. With the correction on, neither
    thread's update fails and every attribute both wrote is there.
    """
    import threading

    from aurora_restore.simulate.moto_compat import requests_atomic

    store.step_started("op-race", "restore_snapshot", "exec-race")
    errors: list[BaseException] = []

    def writer(prefix: str) -> None:
        try:
            for n in range(300):
                store.update_if(
                    "op-race", "SET #a = :v", "attribute_exists(operation_id)", {":v": n}, {"#a": f"{prefix}{n}"}
                )
        except BaseException as error:  # the test reports what a thread met
            errors.append(error)

    with requests_atomic():
        threads = [threading.Thread(target=writer, args=(p,)) for p in ("left_", "right_")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    item = store.get_item("op-race")
    assert {f"left_{n}" for n in range(300)} | {f"right_{n}" for n in range(300)} <= set(item)
