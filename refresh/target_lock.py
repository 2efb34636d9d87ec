"""The target lock, its whole life: taken, reported, released, force-released.

Two refreshes of one target at once would restore over each other, so the first step that
touches AWS (the snapshot check) takes the target's lock before any RDS call; the success
notification and the failure handler release it; an operator frees the lock of a dead operation
with ``aurora-restore unlock``, audited on that operation's trail.

The lock is an item of the state table under ``lock#<region>#<cluster-id>``: ``#`` is not allowed
in operation ids, so no operation can collide with it. Every write is conditional on the owner,
so taking it again as its owner (a retried step) is a no-op and no operation frees another's lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.store import iso_time
from refresh.errors import TargetLocked

if TYPE_CHECKING:
    from dispatcher.store import Store


def lock_key(region: str, cluster_id: str) -> str:
    """Key of the lock item for a target cluster (ids are case-insensitive in RDS)."""
    return f"lock#{region}#{cluster_id.lower()}"


def unlock_command(region: str, cluster_id: str) -> str:
    """The operator's command that frees the target's lock."""
    return f"aurora-restore unlock {cluster_id.lower()} --region {region}"


def take_lock(store: Store, region: str, cluster_id: str, operation_id: str) -> None:
    """Take the target's lock for ``operation_id``; taking it again as its owner is a no-op.

    Raises ``TargetLocked`` naming the holder, since when, and how to free a dead holder's lock.
    """
    item = {
        "operation_id": lock_key(region, cluster_id),
        "lock_owner": operation_id,
        "target_region": region,
        "target_cluster_id": cluster_id,
        "acquired_at": iso_time(store.now()),
    }
    if store.put_if(item, "attribute_not_exists(operation_id) OR lock_owner = :me", {":me": operation_id}):
        return
    holder = lock_holder(store, region, cluster_id) or {}
    raise TargetLocked(
        f"target {cluster_id} in {region} is locked by operation "
        f"{holder.get('lock_owner', '?')} since {holder.get('acquired_at', '?')}; wait for it to "
        f"finish, or if it is dead release it with: {unlock_command(region, cluster_id)}",
        holder=holder.get("lock_owner"),
        target_cluster_id=cluster_id,
        target_region=region,
    )


def lock_holder(store: Store, region: str, cluster_id: str) -> dict[str, Any] | None:
    """The lock item of the target, or None when it is free."""
    return store.get_item(lock_key(region, cluster_id))


def release_lock(store: Store, region: str, cluster_id: str, operation_id: str) -> bool:
    """Release the lock if ``operation_id`` owns it; True when released, False otherwise."""
    return store.delete_if(lock_key(region, cluster_id), "lock_owner = :me", {":me": operation_id})


def release_for_report(store: Store, region: str, cluster_id: str, operation_id: str) -> dict[str, Any]:
    """Release the target's lock if ``operation_id`` holds it; never another operation's lock.

    Returns ``released`` (bool), ``holder`` (who holds it now, or None) and ``lock``: released,
    already free, or held by another operation (left alone: an operation that failed with
    TargetLocked must not free the lock of the operation that is really running). The notifying
    steps put this in their output and their message.
    """
    if release_lock(store, region, cluster_id, operation_id):
        return {"released": True, "holder": None, "lock": "released"}
    holder = lock_holder(store, region, cluster_id)
    owner = str(holder.get("lock_owner")) if holder else None
    if owner is None:
        return {"released": False, "holder": None, "lock": "not held"}
    if owner == operation_id:
        # The owner-only delete raced with nothing we know of; say so rather than guess.
        return {"released": False, "holder": owner, "lock": "still held by this operation"}
    return {"released": False, "holder": owner, "lock": f"held by operation {owner}; left alone"}


def force_release_lock(
    store: Store, region: str, cluster_id: str, *, released_by: str, reason: str
) -> str | None:
    """Operator action: release whoever holds the lock, audited on the holder's trail.

    Returns the operation that held it, or None when the lock was free (or changed hands while
    being released: the new holder is left alone).
    """
    holder = lock_holder(store, region, cluster_id)
    if holder is None:
        return None
    owner = str(holder["lock_owner"])
    if not release_lock(store, region, cluster_id, owner):
        return None
    store.audit(
        owner,
        "lock_force_released",
        step="unlock",
        target_region=region,
        target_cluster_id=cluster_id,
        released_by=released_by,
        reason=reason,
    )
    return owner
