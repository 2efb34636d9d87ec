"""The swap strategy's one routine, run by both halves of the swap_clusters loop.

Phases, in order, each started by one action and finished when RDS says so:

``starting``           the new cluster waits beside the target under a temporary name;
``renaming-old-away``  the old target is renamed to ``names.retired_cluster_id``;
``renaming-new-in``    the new cluster is renamed to the target's name;
``deleting-old``       the old cluster's instances, then the old cluster, are deleted;
``complete``           the new cluster holds the name, the old one is gone.

Every call looks at the three names (target, temporary, retired) and works out which phase the
world is in; it then starts the next phase only if the world is exactly where its input said it
left it. So a retried call with the same input never acts twice, a call that finds RDS still
renaming just waits, and a call that finds the world ahead of its input reports it and waits one
poll. The environment goes without a cluster under its name only between the two renames, and
those polls run at the shortest interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from refresh.errors import SwapFailed
from refresh.request import request_of
from refresh.safety import describe_cluster, ensure_replaceable
from steps.lib import names
from steps.lib.clusters import (
    RETIRED_BY_TAG,
    RETIRED_FROM_TAG,
    delete_cluster_and_instances,
    endpoints,
    is_failed,
    is_renaming,
    made_by,
    rename_back,
    rename_cluster,
    retired_by,
    status_of,
)
from steps.lib.polling import step_poll_fields

if TYPE_CHECKING:
    from dispatcher.context import StepContext

PHASES = ("starting", "renaming-old-away", "renaming-new-in", "deleting-old", "complete")
STARTING, RENAMING_OLD_AWAY, RENAMING_NEW_IN, DELETING_OLD, COMPLETE = range(len(PHASES))


@dataclass
class Names:
    """The three identifiers a swap moves clusters between."""

    target: str
    new: str
    retired: str


@dataclass
class World:
    """What each of the three names holds right now."""

    target: dict[str, Any] | None
    new: dict[str, Any] | None
    retired: dict[str, Any] | None
    phase: int = STARTING
    #: True when the phase's action has finished (False: RDS is still at it).
    done: bool = True
    waiting_for: str = ""


def same_cluster(left: dict[str, Any] | None, right: dict[str, Any] | None) -> bool:
    """Two names answering with one cluster: a rename caught half way."""
    if not left or not right:
        return False
    return bool(left.get("DbClusterResourceId")) and left.get("DbClusterResourceId") == right.get(
        "DbClusterResourceId"
    )


def observe(rds: Any, ids: Names, operation_id: str) -> World:
    """Describe the three names and work out how far the swap has come."""
    world = World(
        target=describe_cluster(rds, ids.target),
        new=describe_cluster(rds, ids.new),
        retired=describe_cluster(rds, ids.retired),
    )
    target, new, retired = world.target, world.new, world.retired
    ours_retired = retired if retired_by(retired, operation_id) else None

    if target is not None and made_by(target, operation_id):
        status = status_of(target)
        if is_failed(status):
            raise SwapFailed(
                f"the new cluster, renamed to {ids.target}, is {status}; the old target is kept as "
                f"{ids.retired if ours_retired else '(none)'}",
                cluster_id=ids.target,
                status=status,
            )
        if is_renaming(target) or same_cluster(target, new) or status != "available":
            world.phase, world.done = RENAMING_NEW_IN, False
            world.waiting_for = f"{ids.new} to be renamed to {ids.target} ({status})"
        elif ours_retired is None:
            world.phase = COMPLETE
        else:
            world.phase, world.done = DELETING_OLD, False
            world.waiting_for = f"the old cluster {ids.retired} to be deleted ({status_of(ours_retired)})"
    elif target is not None:
        if ours_retired is not None and not same_cluster(target, ours_retired):
            raise SwapFailed(
                f"cluster {ids.target} appeared under the target name after the old target was renamed "
                f"to {ids.retired}; the new cluster is still {ids.new}. Nothing more was changed: "
                "sort the names out by hand",
                cluster_id=ids.target,
            )
        if is_renaming(target) or same_cluster(target, ours_retired):
            world.phase, world.done = RENAMING_OLD_AWAY, False
            world.waiting_for = f"{ids.target} to be renamed to {ids.retired}"
        else:
            world.phase = STARTING
    elif new is not None and is_renaming(new):
        world.phase, world.done = RENAMING_NEW_IN, False
        world.waiting_for = f"{ids.new} to be renamed to {ids.target}"
    elif ours_retired is not None and is_renaming(ours_retired):
        world.phase, world.done = RENAMING_OLD_AWAY, False
        world.waiting_for = f"{ids.target} to be renamed to {ids.retired}"
    elif new is not None:
        # The old target is renamed away (or someone else removed it): the name waits for the new one.
        world.phase = RENAMING_OLD_AWAY
    else:
        raise SwapFailed(
            f"neither the new cluster {ids.new} nor a cluster under {ids.target} exists in the target "
            "region; there is nothing to swap in",
            cluster_id=ids.new,
        )
    return world


def advance_swap(ctx: StepContext, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Take the swap one phase further if the world allows it, and report where it stands."""
    request = request_of(ctx)
    snapshot = ctx.input("snapshot")
    restore = ctx.input("restore")
    rds = ctx.aws("rds", request.target_region)
    operation_id = request.operation_id
    ids_target = request.target_cluster_id
    temporary = names.temporary_cluster_id(ids_target, operation_id)
    restored = str(restore.get("cluster_id") or temporary)
    if restore.get("swap_required", True) and restored.lower() == ids_target.lower():
        # The restore adopted this operation's cluster already swapped in by an earlier execution
        # (a retry): the swap is past its renames; observing the usual names finds where it stands.
        restored = temporary
    ids = Names(
        target=ids_target,
        new=restored,
        retired=names.retired_cluster_id(request.target_cluster_id, operation_id),
    )
    source = {
        "source_cluster_id": snapshot.get("source_cluster_id"),
        "source_region": snapshot.get("source_region"),
    }
    final_snapshot_id = (
        None if request.skip_final_snapshot else names.final_snapshot_id(ids.target, operation_id)
    )
    previous_phase = STARTING
    if previous and previous.get("phase") in PHASES:
        previous_phase = PHASES.index(previous["phase"])
    actions: list[str] = []

    if not restore.get("swap_required", True) or ids.new.lower() == ids.target.lower():
        world = World(target=describe_cluster(rds, ids.target), new=None, retired=None, phase=COMPLETE)
        return _output(ctx, previous, ids, world, COMPLETE, actions, final_snapshot_id, note="no swap needed")

    world = observe(rds, ids, operation_id)
    note = world.waiting_for
    if world.phase == COMPLETE:
        phase = COMPLETE
    elif world.phase == DELETING_OLD:
        phase = DELETING_OLD
        # Deleting takes several calls (instances first); each one continues where RDS is.
        if previous_phase >= RENAMING_NEW_IN:
            note = _delete_old(ctx, rds, ids, world, source, final_snapshot_id, actions) or note
    elif not world.done:
        phase = world.phase
    elif world.phase != previous_phase:
        # The world is ahead of this call's input (an earlier attempt acted but its output was
        # lost) or behind it (RDS does not show the last rename yet): act on the next poll.
        phase = max(world.phase, previous_phase)
        note = "RDS to show the last change" if previous_phase > world.phase else "the next poll"
    elif world.phase == STARTING:
        phase, note = _rename_old_away(ctx, rds, ids, world, source, actions)
    else:
        phase, note = _rename_new_in(ctx, rds, ids, world, actions)

    if actions:
        world = observe(rds, ids, operation_id)
        if world.phase == COMPLETE:
            phase = COMPLETE
    return _output(ctx, previous, ids, world, phase, actions, final_snapshot_id, note=note)


def _rename_old_away(
    ctx: StepContext, rds: Any, ids: Names, world: World, source: dict[str, Any], actions: list[str]
) -> tuple[int, str]:
    """Phase 1: rename the old target away, once the new cluster is ready and the name is free."""
    request = request_of(ctx)
    new, retired = world.new, world.retired
    if new is None or not made_by(new, request.operation_id):
        raise SwapFailed(
            f"the new cluster {ids.new} is missing or not this operation's; the target {ids.target} "
            "was left untouched",
            cluster_id=ids.new,
        )
    if is_failed(status_of(new)):
        raise SwapFailed(
            f"the new cluster {ids.new} is {status_of(new)}; the target {ids.target} was left untouched",
            cluster_id=ids.new,
            status=status_of(new),
        )
    if status_of(new) != "available":
        return STARTING, f"the new cluster {ids.new} to be available ({status_of(new)})"
    if retired is not None:
        if status_of(retired) == "deleting":
            return STARTING, f"the name {ids.retired} to be freed (a cluster under it is being deleted)"
        raise SwapFailed(
            f"the name {ids.retired}, needed to rename the old target away, is taken by another cluster; "
            f"the target {ids.target} was left untouched",
            cluster_id=ids.retired,
        )
    target_status = status_of(world.target)
    if target_status in {"stopped", "stopping"} or is_failed(target_status):
        raise SwapFailed(
            f"the target {ids.target} is {target_status} and cannot be renamed; start it (or use "
            "strategy delete-first) and run again. Nothing was changed",
            cluster_id=ids.target,
            status=target_status,
        )
    if target_status != "available":
        return STARTING, f"the target {ids.target} to be available ({target_status})"

    target = ensure_replaceable(ctx, ids.target, source=source)
    if target is None:
        return RENAMING_OLD_AWAY, f"the target {ids.target} vanished; the new cluster takes the name next"
    # The tags let later polls and the failure handler know this operation moved it, and from where.
    rds.add_tags_to_resource(
        ResourceName=target["DBClusterArn"],
        Tags=[
            {"Key": RETIRED_BY_TAG, "Value": request.operation_id},
            {"Key": RETIRED_FROM_TAG, "Value": ids.target},
        ],
    )
    rename_cluster(ctx, rds, ids.target, ids.retired, region=request.target_region)
    actions.append(f"renamed the old target {ids.target} to {ids.retired}")
    return RENAMING_OLD_AWAY, f"{ids.target} to be renamed to {ids.retired}"


def _rename_new_in(
    ctx: StepContext, rds: Any, ids: Names, world: World, actions: list[str]
) -> tuple[int, str]:
    """Phase 2: rename the new cluster to the target's name; undo phase 1 if that fails."""
    request = request_of(ctx)
    new = world.new
    if new is None:
        raise _undo(ctx, rds, ids, world, f"the new cluster {ids.new} vanished before it could take the name")
    if is_failed(status_of(new)):
        raise _undo(ctx, rds, ids, world, f"the new cluster {ids.new} is {status_of(new)}")
    if status_of(new) != "available":
        return RENAMING_OLD_AWAY, f"the new cluster {ids.new} to be available ({status_of(new)})"
    from botocore.exceptions import ClientError

    from dispatcher.aws import THROTTLING_CODES, TRANSIENT_CODES, error_code

    try:
        rename_cluster(ctx, rds, ids.new, ids.target, region=request.target_region)
    except ClientError as exc:
        code = error_code(exc)
        if code in THROTTLING_CODES or code in TRANSIENT_CODES:
            raise  # Retryable: the retried call finds the world unchanged and tries again.
        reason = f"renaming {ids.new} to {ids.target} failed with {code}: {exc}"
        raise _undo(ctx, rds, ids, world, reason) from exc
    actions.append(f"renamed the new cluster {ids.new} to {ids.target}")
    return RENAMING_NEW_IN, f"{ids.new} to be renamed to {ids.target}"


def _undo(ctx: StepContext, rds: Any, ids: Names, world: World, reason: str) -> SwapFailed:
    """Rename the old target back to its name; return the SwapFailed to raise.

    Renaming the old target back restores what was there before this operation, so no safety
    rule stands in its way.
    """
    request = request_of(ctx)
    retired = world.retired
    if retired is None or not retired_by(retired, request.operation_id):
        return SwapFailed(f"{reason}; there was no old target to put back", cluster_id=ids.target)
    if describe_cluster(rds, ids.target) is not None:
        return SwapFailed(
            f"{reason}; the old target stays as {ids.retired} because {ids.target} is taken",
            cluster_id=ids.target,
        )
    try:
        rename_back(ctx, rds, retired, ids.target, region=request.target_region)
    except Exception as exc:
        return SwapFailed(
            f"{reason}; renaming the old target {ids.retired} back to {ids.target} failed too ({exc}): "
            f"rename it back by hand",
            cluster_id=ids.target,
        )
    return SwapFailed(
        f"{reason}; the old target {ids.retired} was renamed back to {ids.target}", cluster_id=ids.target
    )


def _delete_old(
    ctx: StepContext,
    rds: Any,
    ids: Names,
    world: World,
    source: dict[str, Any],
    final_snapshot_id: str | None,
    actions: list[str],
) -> str:
    """Phase 3: delete the old cluster (instances first), judged by the rules as the old target."""
    request = request_of(ctx)
    retired = world.retired
    if retired is None or not retired_by(retired, request.operation_id) or status_of(retired) == "deleting":
        return ""
    old = ensure_replaceable(ctx, ids.retired, source=source, judged_as=ids.target)
    if old is None:
        return ""
    done = delete_cluster_and_instances(
        ctx, rds, old, final_snapshot_id=final_snapshot_id, region=request.target_region
    )
    actions.extend(
        f"deleted instance {i} of the old cluster {ids.retired}" for i in done["instances_deleted"]
    )
    if done["cluster_deleting"]:
        snapshot_note = f"final snapshot {final_snapshot_id}" if final_snapshot_id else "no final snapshot"
        actions.append(f"started deleting the old cluster {ids.retired} ({snapshot_note})")
    return f"the old cluster {ids.retired} to be deleted"


def _output(
    ctx: StepContext,
    previous: dict[str, Any] | None,
    ids: Names,
    world: World,
    phase: int,
    actions: list[str],
    final_snapshot_id: str | None,
    *,
    note: str,
) -> dict[str, Any]:
    complete = phase == COMPLETE
    had_old = world.retired is not None or (
        world.target is not None and not made_by(world.target, ctx.operation_id)
    )
    old_cluster_id = ids.retired if had_old or (previous or {}).get("old_cluster_id") else None
    connection = endpoints(world.target if world.target and made_by(world.target, ctx.operation_id) else None)
    return {
        "phase": PHASES[phase],
        "target_cluster_id": ids.target,
        "old_cluster_id": old_cluster_id,
        "new_cluster_id": ids.new,
        "final_snapshot_id": final_snapshot_id if old_cluster_id else None,
        "actions": actions,
        "note": "" if complete else note,
        **connection,
        **step_poll_fields(
            ctx,
            previous,
            complete=complete,
            max_wait_seconds=ctx.settings.restore_max_wait_seconds,
            waiting_for=f"the swap of {ids.new} into {ids.target} ({PHASES[phase]}: {note})",
            # Between the renames the environment has no cluster under its name: poll closely.
            urgent=phase in (RENAMING_OLD_AWAY, RENAMING_NEW_IN),
        ),
    }
