"""Waiting tasks: who waits for which resource, so an event about it can wake the right execution.

A poll loop's waiting Task (``.waitForTaskToken``) gets a task token from Step Functions. The
token is kept in the state table under ``wait#<region>#<resource id>`` (``#`` keeps it apart from
every operation id), one entry per execution under ``waiters.<execution name>``: the token, the
check step that judges the resource, that check's input (what a poll would have been given), the
operation, and an expiry (the Task's fallback timeout plus a margin: after it, Step Functions has
given up on the token and the fallback poll has run).

Events are hints: an event only makes the event step look up these entries and run the check
once; the check's own Describe decides. The entry is written before the waiting Task checks the
resource, so an event that arrives after the write finds it, and a change that happened before it
is seen by that check: no event can fall between the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dispatcher.store import execution_name

if TYPE_CHECKING:
    from dispatcher.store import Store

#: Prefix of the state table's wait items.
WAIT_KEY_PREFIX = "wait#"
#: How long past the Task's timeout an entry is still honoured (Lambda and transition time).
EXPIRY_MARGIN_SECONDS = 120


def wait_key(region: str, resource_id: str) -> str:
    """Key of the wait item for ``resource_id`` in ``region``."""
    return f"{WAIT_KEY_PREFIX}{region}#{resource_id}"


@dataclass(frozen=True)
class Waiter:
    """One execution waiting for one resource."""

    execution_id: str
    operation_id: str
    token: str
    check_step: str
    check_event: dict[str, Any]
    expires_at: datetime

    def record(self) -> dict[str, Any]:
        """The entry as stored under ``waiters.<execution name>``."""
        return {
            "execution_id": self.execution_id,
            "operation_id": self.operation_id,
            "token": self.token,
            "check_step": self.check_step,
            "check_event": self.check_event,
            "expires_at": self.expires_at.isoformat(),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Waiter | None:
        """The waiter an entry describes; None for an entry that is not one (never trusted blindly)."""
        try:
            return cls(
                execution_id=str(record["execution_id"]),
                operation_id=str(record["operation_id"]),
                token=str(record["token"]),
                check_step=str(record["check_step"]),
                check_event=dict(record["check_event"]),
                expires_at=datetime.fromisoformat(str(record["expires_at"])),
            )
        except (KeyError, TypeError, ValueError):
            return None


def expiry(now: datetime, timeout_seconds: int) -> datetime:
    """When an entry for a Task that times out after ``timeout_seconds`` stops being honoured."""
    return now + timedelta(seconds=int(timeout_seconds) + EXPIRY_MARGIN_SECONDS)


def add_waiter(store: Store, region: str, resource_id: str, waiter: Waiter) -> None:
    """Record ``waiter`` on ``resource_id``'s wait item (replacing this execution's earlier entry)."""
    key = wait_key(region, resource_id)
    names = {"#w": execution_name(waiter.execution_id)}
    values = {":w": waiter.record()}
    for _ in range(3):
        # The map must exist before one of its keys can be set; the first waiter creates the item.
        if store.update_if(key, "SET waiters.#w = :w", "attribute_exists(waiters)", values, names):
            return
        item = {
            "operation_id": key,
            "region": region,
            "resource_id": resource_id,
            "waiters": {execution_name(waiter.execution_id): waiter.record()},
        }
        if store.put_if(item, "attribute_not_exists(operation_id)"):
            return
    raise RuntimeError(f"could not record the wait for {resource_id} in {region}: the item kept changing")


def waiters(store: Store, region: str, resource_id: str, now: datetime) -> list[Waiter]:
    """The executions waiting for ``resource_id`` whose entries have not expired."""
    item = store.get_item(wait_key(region, resource_id)) or {}
    found = item.get("waiters")
    if not isinstance(found, dict):
        return []
    result = []
    for record in found.values():
        waiter = Waiter.from_record(record) if isinstance(record, dict) else None
        if waiter is not None and waiter.expires_at > now:
            result.append(waiter)
    return result


def remove_waiter(store: Store, region: str, resource_id: str, waiter: Waiter) -> bool:
    """Remove ``waiter``'s entry if it still holds its token (a newer wait of the execution stays)."""
    return store.update_if(
        wait_key(region, resource_id),
        "REMOVE waiters.#w",
        "waiters.#w.#t = :token",
        {":token": waiter.token},
        {"#w": execution_name(waiter.execution_id), "#t": "token"},
    )
