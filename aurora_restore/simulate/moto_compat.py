"""moto corrected where it differs from RDS as documented, for the rehearsal and the tests alike.

Every correction names the AWS behaviour it reproduces, and is applied only while a block runs
(moto is as it was afterwards). :func:`corrections` applies them all: the rehearsal enters it
around every run. The tests enter the block for the service they exercise: ``faithful_rds``
(:func:`rds_as_documented`), ``atomic_dynamodb_writes`` (:func:`atomic_conditional_writes`), the
documented commands' test (:func:`change_sets_set_outputs`), so a step meets the same AWS in the
tests and in the rehearsal. Blocks nest: only the outermost applies and undoes.

Two are fixes moto merged upstream, re-applied only when the installed moto still has the faulty
code (its source is checked, not its version):

- Snapshot ARNs (https://github.com/getmoto/moto/issues/10177): RDS accepts a snapshot's ARN
  wherever it accepts its identifier, and an automated snapshot's identifier has a colon of its
  own (``...:cluster-snapshot:rds:orders-2026-11-20``). moto splits the ARN at its *last* colon
  and answers "not found". A cross-region copy names its source by ARN, so copying an automated
  snapshot needs this.
- Second executions (https://github.com/getmoto/moto/issues/10077): Step Functions runs any
  number of executions of one state machine. moto's ``StartExecution`` deep-copies the state
  machine with its running executions (threads, locks), so the second one fails with ``cannot
  pickle '_thread.RLock'``. A retry under a new execution name is a second execution.

The others are fidelity gaps moto has not fixed, applied whatever its version:

- No snapshot at creation: RDS takes automated backups in the backup window and removes them
  with the cluster. moto takes one named ``rds:<cluster>-<minute>`` the moment a cluster is
  created or restored and keeps it after the cluster is deleted, so a cluster restored under the
  same name within the minute (delete-first, or a retry) would collide with moto's leftover.
- Renames (``ModifyDBCluster(NewDBClusterIdentifier)``): RDS refuses a name another cluster holds
  (``DBClusterAlreadyExistsFault``), answers ``DBClusterNotFoundFault`` for a missing cluster, and
  keeps a cluster's instances across a rename. moto overwrites the other cluster, raises a
  KeyError, and leaves the instances under the old name, where they would belong to whatever
  cluster takes it next; the swap strategy renames twice and then deletes the old cluster's
  instances, so that would remove the new cluster's writer.
- Restores (``RestoreDBClusterFromSnapshot``): RDS refuses an identifier another cluster holds
  (``DBClusterAlreadyExistsFault``) and honours ``DeletionProtection=False``. moto overwrites
  the existing cluster and keeps the snapshot's source cluster's protection when told ``False``.
- Point-in-time restores and clones (``RestoreDBClusterToPointInTime``): RDS refuses an identifier
  another cluster holds (``DBClusterAlreadyExistsFault``), a source that is not available
  (``InvalidDBClusterStateFault``) and a ``RestoreToTime`` outside the source's
  ``EarliestRestorableTime``..``LatestRestorableTime`` (``InvalidRestoreFault``); a
  ``copy-on-write`` clone shares the source's storage, so it keeps the source's KMS key (another
  ``KmsKeyId`` is refused) and joins its clone group: every member reports the same
  ``CloneGroupId`` in DescribeDBClusters, which is how clones of one source are counted. Any
  ``KmsKeyId`` for an unencrypted source is rejected (the API reference, ``KmsKeyId``). moto
  restores any time, overwrites a taken name and leaves ``CloneGroupId`` empty.
- Conditional writes (DynamoDB ``PutItem``/``UpdateItem``/``DeleteItem`` with a
  ``ConditionExpression``): DynamoDB evaluates the condition and writes atomically. moto checks
  and then writes with nothing held between the two, so two threads can both pass
  ``attribute_not_exists`` (seen in CI: two of five racing operations "took" one target's lock).
  A lock around moto's writes gives the same guarantee, so a test judges our locking, not moto's.
- Change sets (CloudFormation ``ExecuteChangeSet``): AWS sets the stack's outputs from the
  template the change set applied; moto's ``ChangeSet.apply`` leaves the stack without outputs,
  which ``aws cloudformation deploy`` followed by ``describe-stacks`` would then miss.
- Task tokens (Step Functions ``SendTaskSuccess``/``SendTaskFailure``): AWS refuses an ``output``
  that is not JSON or longer than 262,144 bytes (``InvalidOutput``) and passes ``SendTaskFailure``'s
  ``cause`` on to the failed Task (what a Catch's ``ResultPath`` holds). moto takes any output and
  drops the ``cause``, so a failure sent by the event step would reach the failure handler with no
  message.
"""

from __future__ import annotations

import contextlib
import copy as real_copy
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

#: A correction's ``apply``: changes moto and returns the function that undoes the change.
Apply = Callable[[], Callable[[], None]]


def _applied_once(apply: Apply) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """A block that applies ``apply`` unless an enclosing block already did (a test's fixture
    around a rehearsal), and undoes it when the outermost block ends."""
    depth = [0]

    @contextlib.contextmanager
    def block() -> Iterator[None]:
        undo = apply() if depth[0] == 0 else None
        depth[0] += 1
        try:
            yield
        finally:
            depth[0] -= 1
            if undo is not None:
                undo()

    block.__doc__ = apply.__doc__
    return block


def _arn_parts(identifier: str) -> tuple[str | None, str]:
    """(region, resource id) of an RDS ARN; the id keeps its own colons (``rds:...``)."""
    if not identifier.startswith("arn:"):
        return None, identifier
    parts = identifier.split(":", 6)
    return parts[3], parts[6] if len(parts) == 7 else identifier


def _get_snapshot(self: Any, identifier: str, resource_type: Any, not_found_exception: Any) -> Any:
    """``RDSBackend.get_snapshot`` that finds a snapshot by ARN whatever colons its id holds."""
    region, snapshot_id = _arn_parts(identifier)
    backend = self.get_backend("rds", region=region or self.region_name)
    snapshots = backend.resource_map[resource_type]
    if snapshot_id not in snapshots:
        raise not_found_exception(snapshot_id)
    return snapshots[snapshot_id]


class _DeepcopyWithoutExecutions:
    """``copy`` as moto's Step Functions parser sees it: a state machine's copy leaves its executions."""

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        memo = {} if memo is None else memo
        executions = getattr(value, "executions", None)
        if isinstance(executions, list):
            memo[id(executions)] = []
        return real_copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(real_copy, name)


def _no_creation_snapshot(self: Any) -> None:
    """RDS makes no snapshot when a cluster is created; its backups come in the backup window."""


def _name_taken(backend: Any, cluster_id: str) -> bool:
    """RDS cluster identifiers are case-insensitive: ``Orders`` and ``orders`` are one name."""
    return any(existing.lower() == cluster_id.lower() for existing in backend.clusters)


def _renames_as_rds_does(original: Any) -> Any:
    """``RDSBackend.modify_db_cluster`` that refuses taken names and keeps instances across a rename."""
    from moto.rds.exceptions import DBClusterNotFoundError, RDSClientError

    def modify_db_cluster(self: Any, kwargs: dict[str, Any]) -> Any:
        old_id = kwargs["db_cluster_identifier"]
        if old_id not in self.clusters:
            raise DBClusterNotFoundError(old_id)
        new_id: str = kwargs.get("new_db_cluster_identifier") or ""
        renamed = bool(new_id) and new_id.lower() != old_id.lower()
        if renamed and _name_taken(self, new_id):
            raise RDSClientError("DBClusterAlreadyExistsFault", f"DB Cluster {new_id} already exists")
        members = [
            instance
            for instance in self.databases.values()
            if str(getattr(instance, "db_cluster_identifier", None) or "").lower() == old_id.lower()
        ]
        result = original(self, kwargs)
        # Harmless where moto already moves the instances: they then already carry the new name.
        for instance in members if renamed else []:
            instance.db_cluster_identifier = new_id.lower()
        return result

    return modify_db_cluster


def _restores_as_rds_does(original: Any) -> Any:
    """``RDSBackend.restore_db_cluster_from_snapshot`` that refuses taken names and honours the flags."""
    from moto.rds.exceptions import RDSClientError

    def restore_db_cluster_from_snapshot(self: Any, from_snapshot_id: str, overrides: dict[str, Any]) -> Any:
        new_id = overrides.get("db_cluster_identifier")
        if new_id and _name_taken(self, new_id):
            raise RDSClientError("DBClusterAlreadyExistsFault", "DB cluster already exists")
        cluster = original(self, from_snapshot_id, overrides)
        if overrides.get("deletion_protection") is not None:
            cluster.deletion_protection = overrides["deletion_protection"] in (True, "true", "True")
        return cluster

    return restore_db_cluster_from_snapshot


def _restores_to_point_in_time_as_rds_does(original: Any) -> Any:
    """``RDSBackend.restore_db_cluster_to_point_in_time`` with RDS's refusals and clone groups."""
    import uuid
    from datetime import timezone

    from moto.rds.exceptions import RDSClientError

    def restore_db_cluster_to_point_in_time(
        self: Any, db_cluster_identifier: str, source_db_cluster_identifier: str, **kwargs: Any
    ) -> Any:
        if _name_taken(self, db_cluster_identifier):
            raise RDSClientError("DBClusterAlreadyExistsFault", "DB cluster already exists")
        source = self.clusters.get(source_db_cluster_identifier) or self.clusters.get(
            source_db_cluster_identifier.lower()
        )
        if source is None:
            raise RDSClientError(
                "DBClusterNotFoundFault", f"DBCluster {source_db_cluster_identifier} not found."
            )
        if source.status != "available":
            raise RDSClientError(
                "InvalidDBClusterStateFault",
                f"DbCluster {source.db_cluster_identifier} is not in available state",
            )
        restore_to = kwargs.get("restore_to_time")
        if restore_to is not None:
            when = restore_to if restore_to.tzinfo else restore_to.replace(tzinfo=timezone.utc)
            earliest = source.earliest_restorable_time
            earliest = earliest if earliest.tzinfo else earliest.replace(tzinfo=timezone.utc)
            latest = source.latest_restorable_time
            latest = latest if latest.tzinfo else latest.replace(tzinfo=timezone.utc)
            if not earliest <= when <= latest:
                raise RDSClientError(
                    "InvalidRestoreFault",
                    f"Restore time {when.isoformat()} is outside the restorable window "
                    f"{earliest.isoformat()} - {latest.isoformat()}",
                )
        copy_on_write = kwargs.get("restore_type") == "copy-on-write"
        key = kwargs.get("kms_key_id")
        if key and not source.storage_encrypted:
            raise RDSClientError(
                "InvalidParameterCombination", "KmsKeyId cannot be given for an unencrypted source DB cluster"
            )
        if copy_on_write and key and key != source.kms_key_id:
            raise RDSClientError(
                "InvalidParameterCombination", "A copy-on-write clone keeps the source DB cluster's KMS key"
            )
        cluster = original(self, db_cluster_identifier, source_db_cluster_identifier, **kwargs)
        if kwargs.get("deletion_protection") is not None:
            cluster.deletion_protection = kwargs["deletion_protection"] in (True, "true", "True")
        if copy_on_write:
            if not getattr(source, "clone_group_id", None):
                source.clone_group_id = str(uuid.uuid4())
            cluster.clone_group_id = source.clone_group_id
        else:
            cluster.clone_group_id = None
        return cluster

    return restore_db_cluster_to_point_in_time


def _still_faulty(function: Any, faulty_code: str) -> bool:
    try:
        return faulty_code in inspect.getsource(function)
    except (OSError, TypeError):
        return False


def _apply_rds() -> Callable[[], None]:
    """RDS (and the Step Functions engine) as documented while the block runs; see the module."""
    from moto.rds.models import DBCluster, RDSBackend
    from moto.stepfunctions.parser import models as parser_models

    saved_get_snapshot = RDSBackend.get_snapshot
    saved_modify = RDSBackend.modify_db_cluster
    saved_restore = RDSBackend.restore_db_cluster_from_snapshot
    saved_pitr = RDSBackend.restore_db_cluster_to_point_in_time
    saved_copy = parser_models.copy
    saved_backup = DBCluster.save_automated_backup
    DBCluster.save_automated_backup = _no_creation_snapshot  # type: ignore[method-assign]
    RDSBackend.modify_db_cluster = _renames_as_rds_does(saved_modify)  # type: ignore[method-assign]
    RDSBackend.restore_db_cluster_from_snapshot = _restores_as_rds_does(saved_restore)  # type: ignore[method-assign]
    RDSBackend.restore_db_cluster_to_point_in_time = _restores_to_point_in_time_as_rds_does(saved_pitr)  # type: ignore[method-assign]
    if _still_faulty(RDSBackend.get_snapshot, 'identifier.split(":")[-1]'):
        RDSBackend.get_snapshot = _get_snapshot  # type: ignore[method-assign]
    if _still_faulty(
        parser_models.StepFunctionsParserBackend.start_execution, "copy.deepcopy(state_machine)"
    ):
        parser_models.copy = _DeepcopyWithoutExecutions()  # type: ignore[assignment]

    def undo() -> None:
        RDSBackend.get_snapshot = saved_get_snapshot  # type: ignore[method-assign]
        RDSBackend.modify_db_cluster = saved_modify  # type: ignore[method-assign]
        RDSBackend.restore_db_cluster_from_snapshot = saved_restore  # type: ignore[method-assign]
        RDSBackend.restore_db_cluster_to_point_in_time = saved_pitr  # type: ignore[method-assign]
        parser_models.copy = saved_copy
        DBCluster.save_automated_backup = saved_backup  # type: ignore[method-assign]

    return undo


def _apply_dynamodb() -> Callable[[], None]:
    """DynamoDB's conditional writes atomic while the block runs, as DynamoDB's are."""
    from moto.dynamodb.models import DynamoDBBackend

    guard = threading.RLock()
    saved = {name: getattr(DynamoDBBackend, name) for name in ("put_item", "update_item", "delete_item")}

    def atomic(original: Any) -> Any:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            with guard:
                return original(self, *args, **kwargs)

        return write

    for name, original in saved.items():
        setattr(DynamoDBBackend, name, atomic(original))

    def undo() -> None:
        for name, original in saved.items():
            setattr(DynamoDBBackend, name, original)

    return undo


def _apply_cloudformation() -> Callable[[], None]:
    """A change set sets its stack's outputs while the block runs, as CloudFormation does."""
    from moto.cloudformation.models import ChangeSet
    from moto.cloudformation.parsing import OutputMap

    original = ChangeSet.apply

    def apply(self: Any) -> None:
        original(self)
        self.stack.output_map = OutputMap(self.stack.resource_map, self.template_dict, self.stack.stack_id)

    ChangeSet.apply = apply  # type: ignore[method-assign]

    def undo() -> None:
        ChangeSet.apply = original  # type: ignore[method-assign]

    return undo


#: SendTaskSuccess's ``output``: at most this many bytes of UTF-8 JSON (the API's length limit).
TASK_OUTPUT_LIMIT_BYTES = 262_144


def _apply_task_tokens() -> Callable[[], None]:
    """SendTaskSuccess and SendTaskFailure as Step Functions documents them, while the block runs."""
    import json

    from moto.core.exceptions import JsonRESTError
    from moto.stepfunctions import responses
    from moto.stepfunctions.parser import models as parser_models

    backend = parser_models.StepFunctionsParserBackend
    saved_success = backend.send_task_success
    saved_failure = backend.send_task_failure
    saved_response = responses.StepFunctionResponse.send_task_failure

    def send_task_success(self: Any, task_token: str, outcome: str) -> Any:
        size = len((outcome or "").encode("utf-8"))
        if size > TASK_OUTPUT_LIMIT_BYTES:
            message = f"output is {size} bytes, more than {TASK_OUTPUT_LIMIT_BYTES}"
            raise JsonRESTError("InvalidOutput", message)
        try:
            json.loads(outcome)
        except (TypeError, ValueError):
            raise JsonRESTError("InvalidOutput", "The provided JSON output data is not valid") from None
        return saved_success(self, task_token, outcome)

    def send_task_failure(self: Any) -> Any:
        backend_of = self.stepfunction_backend
        token, error = self._get_param("taskToken"), self._get_param("error")
        if isinstance(backend_of, backend):
            backend_of.send_task_failure(token, error=error, cause=self._get_param("cause"))
        else:  # moto's backend that runs no state machine answers without looking
            backend_of.send_task_failure(token, error=error)
        from moto.core.responses import EmptyResult

        return EmptyResult()

    backend.send_task_success = send_task_success  # type: ignore[method-assign]
    responses.StepFunctionResponse.send_task_failure = send_task_failure  # type: ignore[method-assign]

    def undo() -> None:
        backend.send_task_success = saved_success  # type: ignore[method-assign]
        backend.send_task_failure = saved_failure  # type: ignore[method-assign]
        responses.StepFunctionResponse.send_task_failure = saved_response  # type: ignore[method-assign]

    return undo


rds_as_documented = _applied_once(_apply_rds)
task_tokens_as_documented = _applied_once(_apply_task_tokens)
atomic_conditional_writes = _applied_once(_apply_dynamodb)
change_sets_set_outputs = _applied_once(_apply_cloudformation)


@contextlib.contextmanager
def corrections() -> Iterator[None]:
    """Every correction while the block runs (the rehearsal's moto); moto is as it was afterwards."""
    with (
        rds_as_documented(),
        atomic_conditional_writes(),
        change_sets_set_outputs(),
        task_tokens_as_documented(),
    ):
        yield
