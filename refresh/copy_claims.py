"""Copy claims: several refreshes of one source snapshot into one region share one copy.

Operations deciding at the same moment that no copy exists yet must not all copy: the first to
claim ``copyclaim#<region>#<hash of source snapshot ARN and key>`` copies, the others reuse its
copy. A claim whose owner stopped copying is taken over by one of the waiting operations. The
claim is an item of the state table; ``#`` keeps it apart from every operation id.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from dispatcher.store import iso_time

if TYPE_CHECKING:
    from datetime import datetime

    from dispatcher.store import Store


def copy_claim_key(region: str, source_arn: str, kms_key: str) -> str:
    """Key of the claim item for copies of ``source_arn`` into ``region`` with ``kms_key``."""
    digest = hashlib.sha256(f"{source_arn}\n{kms_key}".encode()).hexdigest()[:16]
    return f"copyclaim#{region}#{digest}"


def claim_copy(
    store: Store,
    *,
    region: str,
    source_arn: str,
    kms_key: str,
    operation_id: str,
    copy_id: str,
    now: datetime,
) -> dict[str, Any]:
    """Claim the right to copy ``source_arn`` into ``region`` with ``kms_key``; return the claim.

    The first conditional put wins, and every other operation gets the winner's claim
    (``claim_owner``, ``copy_id``, ``claimed_at``) and reuses that copy. Claiming again as its
    owner (a retry) returns the owner's claim unchanged.
    """
    key = copy_claim_key(region, source_arn, kms_key)
    item = {
        "operation_id": key,
        "claim_owner": operation_id,
        "copy_id": copy_id,
        "claimed_at": iso_time(now),
        "target_region": region,
        "source_arn": source_arn,
        "kms_key": kms_key,
    }
    if store.put_if(item, "attribute_not_exists(operation_id)"):
        return item
    held = store.get_item(key)
    if held is None:
        # Released between our put and our read: claim again.
        return claim_copy(
            store,
            region=region,
            source_arn=source_arn,
            kms_key=kms_key,
            operation_id=operation_id,
            copy_id=copy_id,
            now=now,
        )
    return held


def take_over_copy_claim(
    store: Store, claim: dict[str, Any], *, operation_id: str, copy_id: str, now: datetime
) -> dict[str, Any]:
    """Take a stale claim from its owner; return the claim as it now stands.

    The update is conditional on the owner still being the one judged stale, so of several
    operations taking over at once one wins and the others get its claim.
    """
    key = str(claim["operation_id"])
    taken = store.update_if(
        key,
        "SET claim_owner = :me, copy_id = :copy, claimed_at = :now",
        "claim_owner = :old",
        {":me": operation_id, ":copy": copy_id, ":now": iso_time(now), ":old": str(claim["claim_owner"])},
    )
    if not taken:
        return store.get_item(key) or claim
    return {**claim, "claim_owner": operation_id, "copy_id": copy_id, "claimed_at": iso_time(now)}
