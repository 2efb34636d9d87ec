"""Placing steps: each after the step its class names, plug-ins before the built-in line goes on."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.registry import Step
from infra.state_machine import PipelineError, build_definition
from tests.contract import contract_registry

pytestmark = pytest.mark.template


def extra_step(
    *,
    run_after: str | None = None,
    reads: tuple[str, ...] = ("request",),
    result_key: str = "",
    state_name: str = "",
    **more: Any,
) -> type[Step]:
    """A third-party-like step class, registered only in the test's registry."""

    def run(self: Step, ctx: Any) -> dict[str, Any]:
        return {}

    attributes: dict[str, Any] = {"__doc__": "An extra step (test only).", "reads": reads, "run": run, **more}
    if run_after:
        attributes["run_after"] = run_after
    if result_key:
        attributes["result_key"] = result_key
    if state_name:
        attributes["state_name"] = state_name
    return type("ExtraStep", (Step,), attributes)


def test_an_extra_step_runs_after_the_step_it_names_with_no_template_edit() -> None:
    # GIVEN the built-in pipeline and one more step that asks to run after setup_db_users
    registry = contract_registry()
    registry.register("mask_emails")(extra_step(run_after="setup_db_users", reads=("request", "restore")))

    # WHEN the definition is generated
    states = build_definition(registry)["States"]

    # THEN it sits between SetupDBUsers and the built-in line's next step, called like every other step
    assert states["SetupDBUsers"]["Next"] == "MaskEmails"
    assert states["MaskEmails"]["Next"] == "RunChecks"
    assert states["MaskEmails"]["Parameters"] == {
        "step": "mask_emails",
        "execution_id.$": "$$.Execution.Id",
        "request.$": "$.request",
        "restore.$": "$.restore",
    }
    assert states["MaskEmails"]["ResultPath"] == "$.mask_emails"
    assert states["MaskEmails"]["Catch"][0]["Next"] == "HandleFailure"
    assert states["MaskEmails"]["Retry"] == states["SetupDBUsers"]["Retry"]


def test_after_half_of_a_poll_loop_means_after_the_work_is_complete() -> None:
    registry = contract_registry()
    registry.register("verify_copy")(extra_step(run_after="check_copy_status", reads=("request", "copy")))

    states = build_definition(registry)["States"]

    assert states["IsCopyComplete"]["Choices"][0]["Next"] == "VerifyCopy"
    assert states["VerifyCopy"]["Next"] == "SharedFromSourceAccount"
    assert states["CheckCopyStatus"]["Next"] == "IsCopyComplete"


def test_after_a_step_inside_a_branch_stays_inside_the_branch() -> None:
    registry = contract_registry()
    registry.register("log_deletion")(extra_step(run_after="delete_target", reads=("request", "delete")))

    states = build_definition(registry)["States"]

    assert states["IsDeleteComplete"]["Choices"][0]["Next"] == "LogDeletion"
    assert states["LogDeletion"]["Next"] == "RestoreSnapshot"
    assert states["ChooseStrategy"]["Default"] == "RestoreSnapshot"


def test_several_extra_steps_after_one_run_in_name_order_and_may_chain() -> None:
    registry = contract_registry()
    registry.register("zeta")(extra_step(run_after="archive_snapshot"))
    registry.register("alpha")(extra_step(run_after="archive_snapshot"))
    registry.register("alpha_follow_up")(extra_step(run_after="alpha", reads=("request", "alpha")))

    states = build_definition(registry)["States"]

    order, current = [], states["ArchiveSnapshot"]["Next"]
    while current != "SendNotification":
        order.append(current)
        current = states[current]["Next"]
    assert order == ["Alpha", "AlphaFollowUp", "Zeta"]


def test_a_step_after_one_nobody_registered_is_named() -> None:
    registry = contract_registry()
    registry.unregister("swap_clusters")
    with pytest.raises(PipelineError, match=r"step 'archive_snapshot': run_after must name a registered") as caught:
        build_definition(registry)
    assert "'swap_clusters' is not one" in str(caught.value)
    assert "registered steps: archive_snapshot" in str(caught.value)


def test_a_registered_step_missing_from_the_pipeline_is_named_with_the_two_fixes() -> None:
    registry = contract_registry()
    registry.register("forgotten_step")(extra_step())
    with pytest.raises(PipelineError) as caught:
        build_definition(registry)
    message = str(caught.value)
    assert "not in the pipeline: forgotten_step" in message
    assert "run_after" in message and "run_when" in message


@pytest.mark.parametrize(
    ("run_after", "words"),
    [
        ("no_such_step", "run_after must name a registered step"),
        ("handle_failure", "ends the failure path"),
    ],
)
def test_run_after_must_name_a_step_of_the_refresh(run_after: str, words: str) -> None:
    registry = contract_registry()
    registry.register("lost_step")(extra_step(run_after=run_after))
    with pytest.raises(PipelineError, match=words) as caught:
        build_definition(registry)
    assert "lost_step" in str(caught.value)


def test_a_step_may_not_read_what_no_earlier_state_certainly_wrote() -> None:
    # copy is written by CopySnapshot, after SnapshotCheck: reading it earlier would be States.Runtime.
    registry = contract_registry()
    registry.register("too_early")(extra_step(run_after="snapshot_check", reads=("request", "copy")))
    with pytest.raises(
        PipelineError, match=r"state TooEarly reads \$\.copy, which no earlier state certainly"
    ):
        build_definition(registry)


def test_what_an_optional_branch_writes_is_not_certain_after_it() -> None:
    # delete exists only when the delete-first branch ran.
    registry = contract_registry()
    registry.register("report_deletion")(
        extra_step(run_after="archive_snapshot", reads=("request", "delete"))
    )
    with pytest.raises(PipelineError, match=r"reads \$\.delete"):
        build_definition(registry)


def test_the_failure_step_reads_only_the_whole_data() -> None:
    registry = contract_registry()
    registry.unregister("handle_failure")
    registry.register("handle_failure", state_name="HandleFailure")(
        extra_step(reads=("request",), pipeline_role="failure")
    )
    with pytest.raises(PipelineError, match="must read only '\\$'"):
        build_definition(registry)


@pytest.mark.parametrize("result_key", ["error", "input", "step", "Bad-Key"])
def test_a_result_key_that_would_clash_is_refused(result_key: str) -> None:
    registry = contract_registry()
    registry.register("clashing")(extra_step(run_after="archive_snapshot", result_key=result_key))
    with pytest.raises(PipelineError, match=f"result_key '{result_key}'"):
        build_definition(registry)


def test_two_states_with_one_name_are_refused() -> None:
    registry = contract_registry()
    registry.register("twin")(extra_step(run_after="archive_snapshot", state_name="SendNotification"))
    with pytest.raises(PipelineError, match="two states are named 'SendNotification'"):
        build_definition(registry)


def test_a_step_is_placed_one_way() -> None:
    registry = contract_registry()
    registry.register("second_start")(extra_step(run_after="setup_db_users", pipeline_role="first"))
    with pytest.raises(PipelineError, match="placed one way"):
        build_definition(registry)


def test_the_pipeline_has_one_first_step() -> None:
    registry = contract_registry()
    registry.register("second_start")(extra_step(pipeline_role="first"))
    with pytest.raises(PipelineError, match="exactly one step with pipeline_role = 'first'") as caught:
        build_definition(registry)
    assert "second_start" in str(caught.value) and "validate_request" in str(caught.value)


def test_two_builtin_steps_after_one_are_refused() -> None:
    # GIVEN a trial subclass of a built-in step (it inherits the built-in placement) moved beside another
    registry = contract_registry()
    from steps.archive_snapshot import ArchiveSnapshot

    registry.unregister("archive_snapshot")
    registry.register("archive_snapshot")(type("TrialArchive", (ArchiveSnapshot,), {"__doc__": "Trial."}))
    registry.register("early_archive")(
        type("EarlyArchive", (ArchiveSnapshot,), {"__doc__": "Trial.", "result_key": "early_archive"})
    )
    # THEN two steps of the built-in line both run after swap_clusters: refused, naming both
    with pytest.raises(PipelineError, match="archive_snapshot, early_archive all run after 'swap_clusters'"):
        build_definition(registry)
