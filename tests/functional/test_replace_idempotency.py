"""Every mutating step of the replace strategies, run twice with the same input, acts only once.

Step Functions and Lambda retry: the second run of a step must adopt what the first made, never
create, rename or delete anything more. Each scenario builds the world a step meets in the
pipeline and returns the event its Task state sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dispatcher.registry import load_builtin_steps
from tests.functional.replace_world import (
    TARGET,
    event,
    fail_once,
    faithful_rds,
    make_cluster,
    mutations,
    request,
    snapshot_facts,
    target_world,
)

__all__ = ["faithful_rds", "mutations", "target_world"]

#: The modules whose mutating steps (both halves of each poll loop) this file must cover.
REPLACE_MODULES = {"steps.restore_snapshot", "steps.delete_target", "steps.swap_clusters"}

Scenario = Callable[[Any, Any, dict[str, Any]], dict[str, Any]]


def swap_inputs(dispatcher: Any, clients: Any, world: dict[str, Any]) -> dict[str, Any]:
    make_cluster(clients, TARGET, instances=2)
    inputs: dict[str, Any] = {"request": request(), "snapshot": snapshot_facts(target_exists=True)}
    restore = dispatcher.handle(event("restore_snapshot", **inputs, copy=world["copy"]))
    inputs["restore"] = dispatcher.handle(
        event("check_restore_status", request=inputs["request"], restore=restore)
    )
    return inputs


def restore_snapshot(dispatcher: Any, clients: Any, world: dict[str, Any]) -> dict[str, Any]:
    make_cluster(clients, TARGET)
    return event(
        "restore_snapshot", request=request(), snapshot=snapshot_facts(target_exists=True), copy=world["copy"]
    )


def check_restore_status(dispatcher: Any, clients: Any, world: dict[str, Any]) -> dict[str, Any]:
    req = request(reader_count=2)
    restore = dispatcher.handle(
        event(
            "restore_snapshot", request=req, snapshot=snapshot_facts(target_exists=False), copy=world["copy"]
        )
    )
    return event("check_restore_status", request=req, restore=restore)


def delete_target(dispatcher: Any, clients: Any, world: dict[str, Any]) -> dict[str, Any]:
    make_cluster(clients, TARGET, instances=2)
    return event(
        "delete_target", request=request(strategy="delete-first"), snapshot=snapshot_facts(target_exists=True)
    )


def check_delete_status(dispatcher: Any, clients: Any, world: dict[str, Any]) -> dict[str, Any]:
    # RDS refused the cluster while its instances were deleting; the poll deletes it.
    make_cluster(clients, TARGET, instances=2)
    fail_once(clients, "DeleteDBCluster", "InvalidDBClusterStateFault")
    req = request(strategy="delete-first")
    delete = dispatcher.handle(
        event("delete_target", request=req, snapshot=snapshot_facts(target_exists=True))
    )
    return event("check_delete_status", request=req, delete=delete)


def swap_clusters(dispatcher: Any, clients: Any, world: dict[str, Any]) -> dict[str, Any]:
    return event("swap_clusters", **swap_inputs(dispatcher, clients, world))


def check_swap_status_renaming_new_in(dispatcher: Any, clients: Any, world: dict[str, Any]) -> dict[str, Any]:
    inputs = swap_inputs(dispatcher, clients, world)
    swap = dispatcher.handle(event("swap_clusters", **inputs))
    return event("check_swap_status", **inputs, swap=swap)


def check_swap_status_deleting_old(dispatcher: Any, clients: Any, world: dict[str, Any]) -> dict[str, Any]:
    inputs = swap_inputs(dispatcher, clients, world)
    swap = dispatcher.handle(event("swap_clusters", **inputs))
    swap = dispatcher.handle(event("check_swap_status", **inputs, swap=swap))
    return event("check_swap_status", **inputs, swap=swap)


SCENARIOS: dict[str, Scenario] = {
    "restore_snapshot": restore_snapshot,
    "check_restore_status": check_restore_status,
    "delete_target": delete_target,
    "check_delete_status": check_delete_status,
    "swap_clusters": swap_clusters,
    "check_swap_status[renaming-new-in]": check_swap_status_renaming_new_in,
    "check_swap_status[deleting-old]": check_swap_status_deleting_old,
}


def waiting(check: Scenario, await_step: str) -> Scenario:
    """The loop's waiting half meeting what its check meets: it records its token, then runs the
    same check once (moto's Step Functions API takes the answer and does nothing with it)."""

    def scenario(dispatcher: Any, clients: Any, world: dict[str, Any]) -> dict[str, Any]:
        return {**check(dispatcher, clients, world), "step": await_step, "task_token": "token-1"}

    return scenario


SCENARIOS.update(
    {
        "await_restore": waiting(check_restore_status, "await_restore"),
        "await_delete": waiting(check_delete_status, "await_delete"),
        "await_swap[renaming-new-in]": waiting(check_swap_status_renaming_new_in, "await_swap"),
    }
)


def test_every_mutating_replace_step_has_a_scenario() -> None:
    steps = [s for s in load_builtin_steps() if s.mutating and s.__module__ in REPLACE_MODULES]
    assert {s.__module__ for s in steps} == REPLACE_MODULES
    covered = {name.split("[")[0] for name in SCENARIOS}
    assert {s.name for s in steps} <= covered


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_second_run_with_the_same_input_changes_nothing_more(
    scenario: str, dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN the world the step meets in the pipeline
    step_event = SCENARIOS[scenario](dispatcher, clients, target_world)
    mutations.clear()
    # WHEN it runs once, it acts
    first = dispatcher.handle(step_event)
    acted = list(mutations.names)
    assert acted, f"{scenario}: the scenario must make the first run act"
    # WHEN it runs again with the same input (a retry)
    mutations.clear()
    second = dispatcher.handle(step_event)
    # THEN it creates, renames and deletes nothing more, and still answers in the same shape
    assert mutations.names == [], f"{scenario}: the retry repeated {mutations.names} after {acted}"
    assert set(second) == set(first)
    assert isinstance(second["complete"], bool)
    assert isinstance(second["next_poll_seconds"], int)
