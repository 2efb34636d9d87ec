"""moto corrected where it differs from RDS as documented, for the rehearsal and the tests alike.

Every correction names the RDS (or Step Functions) behaviour it reproduces. :func:`corrections`
applies them all while a block runs and leaves moto as it was afterwards; the rehearsal enters it
around every run, and the tests that build an RDS world enter it through their ``faithful_rds``
fixture, so a step meets the same RDS in both.

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
"""

from __future__ import annotations

import contextlib
import copy as real_copy
import inspect
from collections.abc import Iterator
from typing import Any

#: How many ``corrections()`` blocks are open: only the outermost applies and restores, so a test
#: fixture and the rehearsal it drives can both ask for them.
_OPEN: list[int] = [0]


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


def _still_faulty(function: Any, faulty_code: str) -> bool:
    try:
        return faulty_code in inspect.getsource(function)
    except (OSError, TypeError):
        return False


@contextlib.contextmanager
def corrections() -> Iterator[None]:
    """moto behaves as RDS documents while the block runs; moto is as it was afterwards.

    Blocks may nest (a test's fixture around a rehearsal): the inner ones change nothing more.
    """
    if _OPEN[0]:
        _OPEN[0] += 1
        try:
            yield
        finally:
            _OPEN[0] -= 1
        return

    from moto.rds.models import DBCluster, RDSBackend
    from moto.stepfunctions.parser import models as parser_models

    saved_get_snapshot = RDSBackend.get_snapshot
    saved_modify = RDSBackend.modify_db_cluster
    saved_restore = RDSBackend.restore_db_cluster_from_snapshot
    saved_copy = parser_models.copy
    saved_backup = DBCluster.save_automated_backup
    DBCluster.save_automated_backup = _no_creation_snapshot  # type: ignore[method-assign]
    RDSBackend.modify_db_cluster = _renames_as_rds_does(saved_modify)  # type: ignore[method-assign]
    RDSBackend.restore_db_cluster_from_snapshot = _restores_as_rds_does(saved_restore)  # type: ignore[method-assign]
    if _still_faulty(RDSBackend.get_snapshot, 'identifier.split(":")[-1]'):
        RDSBackend.get_snapshot = _get_snapshot  # type: ignore[method-assign]
    if _still_faulty(
        parser_models.StepFunctionsParserBackend.start_execution, "copy.deepcopy(state_machine)"
    ):
        parser_models.copy = _DeepcopyWithoutExecutions()  # type: ignore[assignment]
    _OPEN[0] += 1
    try:
        yield
    finally:
        _OPEN[0] -= 1
        RDSBackend.get_snapshot = saved_get_snapshot  # type: ignore[method-assign]
        RDSBackend.modify_db_cluster = saved_modify  # type: ignore[method-assign]
        RDSBackend.restore_db_cluster_from_snapshot = saved_restore  # type: ignore[method-assign]
        parser_models.copy = saved_copy
        DBCluster.save_automated_backup = saved_backup  # type: ignore[method-assign]
