"""Deterministic names for everything the pipeline creates.

No RDS call takes a client token, so a retried step finds what its first run made by name: every
identifier here is a pure function of the request and the operation id. RDS identifiers are
letters, digits and hyphens, start with a letter, have no ``--`` and no trailing hyphen; clusters
and instances are at most 63 characters, snapshots at most 255.
"""

from __future__ import annotations

import hashlib
import re

CLUSTER_MAX = 63
SNAPSHOT_MAX = 255
#: CopyDBClusterSnapshot and CreateDBClusterSnapshot take at most 63 characters (botocore's model),
#: unlike DB (instance) snapshots' 255.
CLUSTER_SNAPSHOT_MAX = 63


def short_hash(*parts: str, length: int = 6) -> str:
    """A short, stable hex digest of ``parts``."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]


def _clean(text: str) -> str:
    """Letters, digits and single hyphens only; starts with a letter."""
    text = re.sub(r"[^A-Za-z0-9-]", "-", text)
    text = re.sub(r"-{2,}", "-", text).strip("-")
    if not text or not text[0].isalpha():
        text = "x" + text
    return text


def _join(base: str, suffix: str, limit: int) -> str:
    base = _clean(base)[: limit - len(suffix) - 1].rstrip("-")
    return f"{base}-{suffix}"


def temporary_cluster_id(target_cluster_id: str, operation_id: str) -> str:
    """Where the swap strategy restores, beside the existing target: ``<target>-new-<hash>``."""
    return _join(target_cluster_id, "new-" + short_hash(operation_id), CLUSTER_MAX)


def retired_cluster_id(target_cluster_id: str, operation_id: str) -> str:
    """The name the old target is renamed to during a swap: ``<target>-old-<hash>``."""
    return _join(target_cluster_id, "old-" + short_hash(operation_id), CLUSTER_MAX)


def instance_id(target_cluster_id: str, operation_id: str, index: int) -> str:
    """Instance ``index`` (0 is the writer) of the cluster restored by this operation.

    Derived from the target id, not the temporary one, so the names still read right after the
    swap renames the cluster; the hash keeps them apart from the old target's instances.
    """
    return _join(target_cluster_id, f"{short_hash(operation_id, length=4)}-{index + 1}", CLUSTER_MAX)


def copy_snapshot_id(source_snapshot_identifier: str, operation_id: str) -> str:
    """The copy of a source snapshot made for this operation (no ``:``: ``rds:`` is dropped)."""
    source = (
        source_snapshot_identifier.split(":")[-1]
        if source_snapshot_identifier.startswith("arn:")
        else (source_snapshot_identifier)
    )
    source = source.removeprefix("rds:")
    return _join("ar-" + source, short_hash(operation_id, length=8), CLUSTER_SNAPSHOT_MAX)


def final_snapshot_id(cluster_id: str, operation_id: str) -> str:
    """The final snapshot taken when a replaced cluster is deleted."""
    return _join(cluster_id, "final-" + short_hash(operation_id, length=8), SNAPSHOT_MAX)
