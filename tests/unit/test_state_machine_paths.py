"""Every path the state machine reads is written on every path into it, nested fields included.

On AWS a Choice whose ``Variable`` is absent, or a Task whose ``Parameters`` path is absent, ends
the execution with ``States.Runtime``: no Catch sees it, so no failure step, no notification, the
lock held. Each step declares the fields its output guarantees (``outputs``); the build proves
every Choice, Wait and Parameters read against them, and the dispatcher refuses an output that
breaks its declaration. Retry and Catch rules Step Functions would refuse or ignore fail the
build too.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dispatcher.registry import Registry, Step
from infra.state_machine import PipelineError, build_definition, check_error_handling
from tests.contract import contract_registry

pytestmark = pytest.mark.template


def with_outputs(registry: Registry, step: str, outputs: tuple[str, ...]) -> Registry:
    """A registry where ``step`` is a trial subclass declaring ``outputs`` instead of its own."""
    fresh = Registry()
    for cls in registry:
        if cls.name == step:
            cls = type("Trial" + cls.__name__, (cls,), {"__doc__": cls.__doc__, "outputs": outputs})
        fresh.register(cls.name, state_name=cls.state_name)(cls)
    return fresh


def without(registry: Registry, step: str, field: str) -> Registry:
    cls = registry.get(step)
    return with_outputs(registry, step, tuple(f for f in cls.outputs if f != field))


@pytest.mark.parametrize(
    ("step", "field", "state", "path"),
    [
        ("check_restore_status", "swap_required", "NeedsSwap", "$.restore.swap_required"),
        ("restore_snapshot", "swap_required", "NeedsSwap", "$.restore.swap_required"),
        ("snapshot_check", "target.exists", "ChooseStrategy", "$.snapshot.target.exists"),
        ("copy_snapshot", "complete", "IsCopyComplete", "$.copy.complete"),
        ("check_copy_status", "fallback_seconds", "WaitForCopy", "$.copy.fallback_seconds"),
        ("check_delete_status", "complete", "IsDeleteComplete", "$.delete.complete"),
        ("check_swap_status", "complete", "IsSwapComplete", "$.swap.complete"),
        ("validate_request", "strategy", "ChooseStrategy", "$.request.strategy"),
        ("snapshot_check", "source_kind", "NeedsCopy", "$.snapshot.source_kind"),
    ],
)
def test_a_step_whose_output_lacks_a_field_a_state_reads_fails_the_build(
    step: str, field: str, state: str, path: str
) -> None:
    registry = without(contract_registry(), step, field)
    with pytest.raises(PipelineError) as caught:
        build_definition(registry)
    message = str(caught.value)
    assert f"state {state} reads {path}" in message
    assert f"step {step} (state " in message
    assert "States.Runtime" in message


def test_the_skipped_copy_must_write_what_the_restore_reads() -> None:
    # GIVEN the copy's Choice without its otherwise Pass state (a live cluster would skip the copy
    # and leave $.copy unwritten)
    from dispatcher.registry import RunWhen

    registry = contract_registry()
    copy_step = registry.get("copy_snapshot")
    assert copy_step.run_when is not None
    bare = RunWhen(copy_step.run_when.choice, copy_step.run_when.rule)
    fresh = Registry()
    for cls in registry:
        if cls.name == "copy_snapshot":
            cls = type("TrialCopy", (cls,), {"__doc__": cls.__doc__, "run_when": bare})
        if cls.part_of is None:
            fresh.register(cls.name, state_name=cls.state_name)(cls)
    # THEN the build refuses the restore's read of $.copy
    with pytest.raises(PipelineError, match=r"state RestoreSnapshot reads \$\.copy, which no earlier state"):
        build_definition(fresh)


def test_a_read_of_a_field_the_skipped_branch_does_not_write_fails_the_build() -> None:
    # GIVEN a plug-in Choice after the restore that reads $.copy.next_poll_seconds: the copy loop
    # declares it, the NoCopyNeeded Pass state does not write it
    from dispatcher.registry import RunWhen

    def run(self: Step, ctx: Any) -> dict[str, Any]:
        return {}

    attributes = {
        "__doc__": "Runs when the copy waited.",
        "run_after": "restore_snapshot",
        "run_when": RunWhen("CopyWaited", {"Variable": "$.copy.next_poll_seconds", "NumericGreaterThan": 0}),
        "run": run,
    }
    registry = contract_registry()
    registry.register("copy_waited")(type("CopyWaited", (Step,), attributes))
    # THEN the proof names the Pass state that may have written $.copy last, and only it
    with pytest.raises(
        PipelineError,
        match=r"state CopyWaited reads \$\.copy\.next_poll_seconds, but step \(NoCopyNeeded\) \(state NoCopyNeeded\)",
    ):
        build_definition(registry)


def test_a_parameters_key_no_path_certainly_writes_fails_the_build() -> None:
    # GIVEN an extra step after ArchiveSnapshot that reads $.swap, written only inside NeedsSwap's branch
    def run(self: Step, ctx: Any) -> dict[str, Any]:
        return {}

    attributes = {
        "__doc__": "Reads the swap.",
        "reads": ("request", "swap"),
        "run_after": "archive_snapshot",
        "run": run,
    }
    registry = contract_registry()
    registry.register("reads_swap")(type("ReadsSwap", (Step,), attributes))
    # THEN the build refuses it: a refresh without a swap would die there with States.Runtime
    with pytest.raises(
        PipelineError, match=r"state ReadsSwap reads \$\.swap, which no earlier state certainly"
    ):
        build_definition(registry)


# -- Retry and Catch -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return build_definition(contract_registry())


def _mutated(definition: dict[str, Any], change: Any) -> dict[str, Any]:
    trial = copy.deepcopy(definition)
    change(trial["States"]["SnapshotCheck"])
    return trial


@pytest.mark.parametrize(
    ("case", "change", "words"),
    [
        (
            "States.ALL beside another name",
            lambda s: s["Catch"][0].update(ErrorEquals=["States.ALL", "CopyFailed"]),
            "States.ALL must be alone",
        ),
        (
            "States.ALL not in the last rule",
            lambda s: s["Retry"].insert(0, {"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}),
            "States.ALL must be alone",
        ),
        (
            "jitter not FULL or NONE",
            lambda s: s["Retry"][0].update(JitterStrategy="HALF"),
            "JitterStrategy 'HALF'",
        ),
        (
            "an invented States.* name",
            lambda s: s["Retry"][1]["ErrorEquals"].append("States.Throttled"),
            "States.Throttled is not a Step Functions error name",
        ),
        (
            "an uncatchable error named",
            lambda s: s["Catch"].insert(0, {"ErrorEquals": ["States.Runtime"], "Next": "HandleFailure"}),
            "States.Runtime ends the execution",
        ),
        ("an empty ErrorEquals", lambda s: s["Retry"][0].update(ErrorEquals=[]), "non-empty list"),
    ],
)
def test_retry_and_catch_rules_aws_refuses_fail_the_build(
    definition: dict[str, Any], case: str, change: Any, words: str
) -> None:
    check_error_handling(definition)  # the generated one passes
    with pytest.raises(PipelineError) as caught:
        check_error_handling(_mutated(definition, change))
    assert "state SnapshotCheck" in str(caught.value), case
    assert words in str(caught.value), case
