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

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


# -- whether events arrive ---------------------------------------------------------------------------
#: Key of the item recording, per region, when an RDS event last arrived and when a fallback poll
#: last found work done that no event had reported (``events#<region>``).
EVENTS_KEY_PREFIX = "events#"
#: An arrival is written at most this often: the rule sends every RDS event in the region here.
ARRIVAL_WRITE_INTERVAL_SECONDS = 300


def events_key(region: str) -> str:
    """Key of the item that says whether RDS events reach the dispatcher in ``region``."""
    return f"{EVENTS_KEY_PREFIX}{region}"


def record_arrival(store: Store, region: str, now: datetime) -> None:
    """An RDS event arrived in ``region``: the rule, its target and the function all work."""
    stale = (now - timedelta(seconds=ARRIVAL_WRITE_INTERVAL_SECONDS)).isoformat()
    item = store.get_item(events_key(region)) or {}
    arrived, missed = item.get("last_event_at"), item.get("last_missed_at")
    # Written when stale, and always right after a miss: one arrival restores trust.
    if isinstance(arrived, str) and arrived > stale and not (isinstance(missed, str) and missed > arrived):
        return
    store.update_if(
        events_key(region),
        "SET last_event_at = :now, #r = :region",
        "attribute_not_exists(last_event_at) OR last_event_at < :now",
        {":now": now.isoformat(), ":region": region},
        {"#r": "region"},
    )


#: A fallback poll finding the work done counts as a missed event only after a wait this long: a
#: swap's renames wait ``poll_min_seconds`` at a time, and an event may well come a little later.
MISS_AFTER_SECONDS = 300


def record_miss(store: Store, region: str, resource_ids: list[str], now: datetime) -> None:
    """A fallback poll found work done whose event never came (lost, or later than the fallback)."""
    store.update_if(
        events_key(region),
        "SET last_missed_at = :now, missed_resources = :ids, #r = :region",
        "attribute_not_exists(last_missed_at) OR last_missed_at < :now",
        {":now": now.isoformat(), ":ids": list(resource_ids), ":region": region},
        {"#r": "region"},
    )


def events_trusted(store: Store, region: str) -> bool:
    """Whether a loop in ``region`` should wait for events (long fallbacks) or poll as before.

    Trusted once an RDS event has arrived in the region (the rule, its target and this function
    work) and no fallback poll has since found work done that no event reported. A new stack
    polls, exactly as the poll policy would, until its first event arrives (RDS sends events
    for every change in the region, the stack's own copy among them): with the rule missing,
    disabled or failing, no wait is ever spent on an event that cannot come.
    """
    item = store.get_item(events_key(region)) or {}
    missed, arrived = item.get("last_missed_at"), item.get("last_event_at")
    if not isinstance(arrived, str):
        return False
    return not isinstance(missed, str) or arrived > missed


# -- one check at a time -------------------------------------------------------------------------------
#: The operation's state item holds ``checking_<result_key>`` (holder, expiry) while a check of that
#: loop runs: no item of its own to clean up, and nothing but UpdateItem on an item that exists.
CHECK_ATTRIBUTE_PREFIX = "checking_"
#: A check that holds the item longer than this is taken to have died (a Lambda timeout).
CHECK_HOLD_SECONDS = 120
#: How long a second check waits for the first to finish before giving up, and how often it looks.
CHECK_WAIT_SECONDS = 20.0
CHECK_WAIT_STEP_SECONDS = 0.25


def check_attribute(result_key: str) -> str:
    """The state item's attribute held while a check of ``result_key``'s loop runs."""
    return f"{CHECK_ATTRIBUTE_PREFIX}{result_key}"


@contextmanager
def one_check_at_a_time(
    store: Store,
    operation_id: str,
    result_key: str,
    holder: str,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[bool]:
    """Hold the loop's check on the operation's item while the block runs; yields False if it could
    not be had.

    A loop whose check acts (a rename, an instance created, a deletion re-issued) must not be
    checked twice at once: the waiting half's own check and the event step's would both see the
    same world and both act. One after the other is safe (each looks before it acts), so the
    second waits for the first, up to ``CHECK_WAIT_SECONDS``. One execution of an operation runs
    at a time (the target's lock), so the operation's item is the execution's.
    """
    names = {"#c": check_attribute(result_key)}
    waited = 0.0
    held = False
    while True:
        now = clock()
        hold = {"holder": holder, "expires_at": (now + timedelta(seconds=CHECK_HOLD_SECONDS)).isoformat()}
        if store.update_if(
            operation_id,
            "SET #c = :hold",
            "attribute_exists(operation_id) AND (attribute_not_exists(#c) OR #c.expires_at < :now)",
            {":hold": hold, ":now": now.isoformat()},
            names,
        ):
            held = True
            break
        if waited >= CHECK_WAIT_SECONDS:
            break
        sleep(CHECK_WAIT_STEP_SECONDS)
        waited += CHECK_WAIT_STEP_SECONDS
    try:
        yield held
    finally:
        if held:
            _release(store, operation_id, names, holder)


def _release(store: Store, operation_id: str, names: dict[str, str], holder: str) -> None:
    """Let the next check run; a failed release only delays it until the hold expires."""
    from botocore.exceptions import BotoCoreError, ClientError

    from dispatcher.logs import get_logger

    try:
        store.update_if(operation_id, "REMOVE #c", "#c.holder = :holder", {":holder": holder}, names)
    except (BotoCoreError, ClientError) as error:
        # The check itself is done and its answer stands; failing it here would fail a refresh
        # whose work succeeded. The next check waits for the hold to run out instead.
        get_logger("aurora_restore.waits").warning(
            "could not release the loop's check; the next check waits until it expires",
            attribute=names["#c"],
            hold_seconds=CHECK_HOLD_SECONDS,
            error=str(error),
        )
