"""A poll loop is one class registered once; the registry adds its check half, named from it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from dispatcher.poll_loop import PollAwait, PollCheck, PollLoopStep
from dispatcher.registry import Registry


class Warmup(PollLoopStep):
    """Warm the restored cluster's cache."""

    run_after = "setup_db_users"
    reads = ("request", "restore")
    result_key = "warmup"
    max_wait_setting = "restore_max_wait_seconds"

    def start(self, ctx: Any) -> dict[str, Any]:
        """Start warming."""
        return {"complete": False, "next_poll_seconds": 30, "fallback_seconds": 600, "half": "start"}

    def check(self, ctx: Any) -> dict[str, Any]:
        """Look at the warming once."""
        return {"complete": True, "next_poll_seconds": 0, "fallback_seconds": 0, "half": "check"}

    def summarize_check(self, output: dict[str, Any]) -> str:
        """The check's line."""
        return f"checked: {output['half']}"


def test_registering_a_loop_registers_its_check_half_named_from_the_result_key() -> None:
    registry = Registry()
    registry.register("warm_cache")(Warmup)
    assert registry.names() == ["await_warmup", "check_warmup_status", "warm_cache"]
    waiting = registry.get("await_warmup")
    # The waiting half is the loop's Wait state by name, reads what the check reads and writes the same key
    assert issubclass(waiting, PollAwait) and waiting.part_of is Warmup
    assert waiting.state_name == "WaitForWarmup" and waiting.result_key == "warmup"
    assert waiting.reads == ("request", "restore", "warmup") and waiting.outputs == Warmup.outputs
    assert "states:SendTaskSuccess" in waiting.aws_actions
    check = registry.get("check_warmup_status")
    assert issubclass(check, PollCheck) and check.part_of is Warmup
    assert (check.state_name, Warmup.choice_state, Warmup.wait_state) == (
        "CheckWarmupStatus",
        "IsWarmupComplete",
        "WaitForWarmup",
    )
    # The check half reads what the start reads plus the loop's own output, and writes the same key
    assert check.reads == ("request", "restore", "warmup")
    assert check.result_key == "warmup" and check.outputs == Warmup.outputs
    assert check.description() == "Look at the warming once."


def test_the_two_halves_run_start_and_check() -> None:
    registry = Registry()
    registry.register("warm_cache")(Warmup)
    # A stack that has seen an RDS event in its region (and missed none) waits for events
    seen = {"events#eu-west-1": {"last_event_at": "2026-03-01T02:00:00+00:00"}}
    ctx = SimpleNamespace(store=SimpleNamespace(get_item=seen.get), settings=SimpleNamespace(stack_region="eu-west-1"))
    started = registry.get("warm_cache")().run(ctx)
    assert started["half"] == "start" and started["wait_for_events"] is True
    # ... and one that has not (a new stack) polls
    ctx.store = SimpleNamespace(get_item=lambda key: None)
    assert registry.get("warm_cache")().run(ctx)["wait_for_events"] is False
    check = registry.get("check_warmup_status")()
    output = check.run(ctx)
    assert output["half"] == "check"
    # Done, the loop waits for nothing
    assert output["wait_for_events"] is False
    assert check.summarize(output) == "checked: check"


def test_unregistering_a_loop_takes_its_check_half_with_it() -> None:
    registry = Registry()
    registry.register("warm_cache")(Warmup)
    registry.unregister("warm_cache")
    assert registry.names() == []


def test_a_subclass_of_a_registered_loop_brings_its_own_check_half() -> None:
    # GIVEN the loop registered, then a trial subclass registered in its place
    registry = Registry()
    registry.register("warm_cache")(Warmup)

    class TrialWarmup(Warmup):
        """Trial."""

        def check(self, ctx: Any) -> dict[str, Any]:
            """Trial check."""
            return {"complete": True, "next_poll_seconds": 0, "fallback_seconds": 0, "half": "trial"}

    registry.unregister("warm_cache")
    registry.register("warm_cache")(TrialWarmup)
    # THEN the check half runs the trial's check
    assert registry.get("check_warmup_status").part_of is TrialWarmup
    assert registry.get("check_warmup_status")().run(None)["half"] == "trial"
