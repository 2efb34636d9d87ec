"""Upstream fixes for moto bugs a rehearsal walks into, applied only while a rehearsal runs.

The first two are fixes moto merged later, re-applied here for the moto the machine has, and
only when the installed moto still has the faulty code (its source is checked, not its version).

- getmoto/moto#10177: a snapshot ARN is split at its *last* colon, so an automated snapshot
  (``...:cluster-snapshot:rds:orders-2026-11-20``) referenced by ARN is "not found". Copying an
  automated snapshot across regions needs exactly that ARN: the seed's own input does it.
- getmoto/moto#10077 (fixed by #10093): ``StartExecution`` deep-copies the state machine with its
  running executions (threads, locks), so a second execution of one state machine fails with
  ``cannot pickle '_thread.RLock'``. A retry under a new execution name needs a second execution.

And two fidelity gaps with no upstream fix yet:

- moto takes an automated snapshot named ``rds:<cluster>-<minute>`` the moment a cluster is
  created (or restored) and keeps it after the cluster is deleted. RDS takes automated backups in
  the backup window and removes them with the cluster; a cluster restored under the same name
  within the minute (delete-first, or a retry) would collide with moto's leftover. Clusters get
  no creation snapshot during a rehearsal; the world holds the snapshots its file lists.
- moto's ``ModifyDBCluster(NewDBClusterIdentifier)`` renames the cluster but leaves its
  instances pointing at the old name, so after a rename the instances belong to whatever cluster
  takes the old name next. RDS keeps a cluster's instances across a rename; the swap strategy
  renames twice and then deletes the old cluster's instances, so without this the rehearsal would
  show the old writer attached to the new cluster.
"""

from __future__ import annotations

import contextlib
import copy as real_copy
import inspect
from collections.abc import Iterator
from typing import Any


def _arn_parts(identifier: str) -> tuple[str | None, str]:
    """(region, resource id) of an RDS ARN; the id keeps its own colons (``rds:...``)."""
    if not identifier.startswith("arn:"):
        return None, identifier
    parts = identifier.split(":", 6)
    return parts[3], parts[6] if len(parts) == 7 else identifier


def _get_snapshot(self: Any, identifier: str, resource_type: Any, not_found_exception: Any) -> Any:
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


def _renaming_keeps_instances(original: Any) -> Any:
    """``RDSBackend.modify_db_cluster`` that moves the cluster's instances with a rename."""

    def modify_db_cluster(self: Any, kwargs: dict[str, Any]) -> Any:
        old_id = kwargs.get("db_cluster_identifier")
        new_id = kwargs.get("new_db_cluster_identifier")
        members = [
            instance
            for instance in self.databases.values()
            if getattr(instance, "db_cluster_identifier", None) == old_id
        ]
        result = original(self, kwargs)
        if new_id and new_id != old_id:
            for instance in members:
                instance.db_cluster_identifier = new_id
        return result

    return modify_db_cluster


def _no_creation_snapshot(self: Any) -> None:
    """RDS makes no snapshot when a cluster is created; its backups come in the backup window."""


def _still_faulty(function: Any, faulty_code: str) -> bool:
    try:
        return faulty_code in inspect.getsource(function)
    except (OSError, TypeError):
        return False


@contextlib.contextmanager
def upstream_fixes() -> Iterator[None]:
    """Apply the fixes the installed moto needs while the block runs; moto is as it was afterwards."""
    from moto.rds.models import DBCluster, RDSBackend
    from moto.stepfunctions.parser import models as parser_models

    saved_get_snapshot = RDSBackend.get_snapshot
    saved_modify = RDSBackend.modify_db_cluster
    saved_copy = parser_models.copy
    saved_backup = DBCluster.save_automated_backup
    DBCluster.save_automated_backup = _no_creation_snapshot  # type: ignore[method-assign]
    # Harmless where moto already moves the instances: they then already carry the new name.
    RDSBackend.modify_db_cluster = _renaming_keeps_instances(saved_modify)  # type: ignore[method-assign]
    if _still_faulty(RDSBackend.get_snapshot, 'identifier.split(":")[-1]'):
        RDSBackend.get_snapshot = _get_snapshot  # type: ignore[method-assign]
    if _still_faulty(
        parser_models.StepFunctionsParserBackend.start_execution, "copy.deepcopy(state_machine)"
    ):
        parser_models.copy = _DeepcopyWithoutExecutions()  # type: ignore[assignment]
    try:
        yield
    finally:
        RDSBackend.get_snapshot = saved_get_snapshot  # type: ignore[method-assign]
        RDSBackend.modify_db_cluster = saved_modify  # type: ignore[method-assign]
        parser_models.copy = saved_copy
        DBCluster.save_automated_backup = saved_backup  # type: ignore[method-assign]
