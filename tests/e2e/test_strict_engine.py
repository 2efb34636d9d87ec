"""The rehearsal fails a run wherever AWS would, where moto alone would let it through.

moto sends a Choice whose variable is absent to its Default, reports an absent Parameters path as
a catchable error, and lets ``States.ALL`` catch ``States.Runtime`` and
``States.DataLimitExceeded``. AWS ends the execution instead: no failure step, no notification.
Each run here breaks one step or the definition on purpose (a trial registry or definition,
never the product's) and must end FAILED the way AWS would end it.
"""

from __future__ import annotations

import copy
from typing import Any

from dispatcher.registry import Registry, load_builtin_steps
from infra.state_machine import build_definition


def _replacing(step: str, **attributes: Any) -> Registry:
    """The built-in steps with ``step`` replaced by a trial subclass with ``attributes``."""
    fresh = Registry()
    for cls in load_builtin_steps():
        if cls.name == step:
            cls = type("Trial" + cls.__name__, (cls,), {"__doc__": cls.__doc__, **attributes})
        fresh.register(cls.name, state_name=cls.state_name)(cls)
    return fresh


def _dropping_swap_required(method: Any) -> Any:
    def run(self: Any, ctx: Any) -> dict[str, Any]:
        output: dict[str, Any] = method(self, ctx)
        output.pop("swap_required", None)
        return output

    return run


def assert_ended_by_aws(report: Any, error: str, state: str) -> None:
    """FAILED with ``error`` at ``state``: the failure step never ran and nobody was notified."""
    assert report.status == "FAILED"
    assert report.error is not None and report.error.get("type") == error, report.error
    names = [run.name for run in report.states]
    assert names[-1] == state, names
    assert "HandleFailure" not in names
    assert report.notifications == []


def test_a_choice_whose_variable_is_absent_ends_the_execution_with_states_runtime(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN a restore check that drops swap_required (and no longer declares it, so the
    # dispatcher lets the output through) under the definition the template deploys, which reads it
    from steps.restore_snapshot import RestoreSnapshot

    outputs = tuple(f for f in RestoreSnapshot.outputs if f != "swap_required")
    registry = _replacing(
        "restore_snapshot", outputs=outputs, check=_dropping_swap_required(RestoreSnapshot.check)
    )
    # WHEN the refresh runs (moto alone would skip the swap and report SUCCEEDED)
    report = rehearse(seed_input, registry=registry, definition=build_definition())
    # THEN NeedsSwap ends it as AWS would
    assert_ended_by_aws(report, "States.Runtime", "NeedsSwap")
    assert "$.restore.swap_required" in str(report.error)


def test_a_parameters_path_that_is_absent_ends_the_execution_with_states_runtime(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    definition = copy.deepcopy(build_definition())
    definition["States"]["SnapshotCheck"]["Parameters"]["nothing.$"] = "$.nothing"
    report = rehearse(seed_input, definition=definition)
    assert_ended_by_aws(report, "States.Runtime", "SnapshotCheck")


def test_a_state_output_over_256_kib_ends_the_execution_with_data_limit_exceeded(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    from steps.snapshot_check import SnapshotCheck

    def run(self: Any, ctx: Any) -> dict[str, Any]:
        output: dict[str, Any] = SnapshotCheck.run(self, ctx)
        return {**output, "padding": "x" * 262_144}

    report = rehearse(seed_input, registry=_replacing("snapshot_check", run=run))
    assert_ended_by_aws(report, "States.DataLimitExceeded", "SnapshotCheck")
    assert report.max_state_bytes > 262_144


def test_a_history_past_its_limit_ends_the_execution(
    rehearse: Any, seed_input: dict[str, Any], monkeypatch: Any
) -> None:
    # GIVEN the history limit lowered from 25,000 so that a short refresh reaches it
    from aurora_restore.simulate import engine

    monkeypatch.setattr(engine, "HISTORY_EVENT_LIMIT", 12)
    report = rehearse(seed_input)
    # THEN the run ends at the state entered past the limit, unhandled, as on AWS
    assert report.status == "FAILED"
    assert report.error is not None and report.error.get("type") == "States.Runtime", report.error
    assert "12 events" in str(report.error)
    assert "HandleFailure" not in [run.name for run in report.states]
    assert report.notifications == []
    assert report.history_events >= 12
