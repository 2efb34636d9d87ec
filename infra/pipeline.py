"""The pipeline's order, derived from where each step says it runs.

Every step, built-in or third-party (entry point ``aurora_restore.steps``), declares its place on
its class: ``run_after = "<step name>"``, with ``run_when`` when it runs only under a Choice, or
``pipeline_role`` for the first step and the failure step. :func:`derive_pipeline` turns those
into stages; the state machine (``infra/state_machine.py``) is generated from the stages and the
steps' other class attributes (``name``, ``state_name``, ``reads``, ``result_key``, ``outputs``).

The vocabulary:

- :class:`Task` runs one step once.
- :class:`PollLoop` runs a poll loop step (``dispatcher.poll_loop.PollLoopStep``): its start, then
  Choice (``$.<result_key>.complete``) -> Wait (``$.<result_key>.next_poll_seconds``) -> its check
  until the work is complete. The class names the states and the bound (``max_wait_setting``).
- :class:`Branch` runs its stages only when its Choice rule holds; otherwise the pipeline goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dispatcher.poll_loop import PollLoopStep

if TYPE_CHECKING:
    from dispatcher.registry import Registry, Step


@dataclass(frozen=True)
class Task:
    """One step, run once."""

    step: str


@dataclass(frozen=True)
class PollLoop:
    """A poll loop step: its start, then its check until ``$.<result_key>.complete``."""

    step: str


@dataclass(frozen=True)
class Branch:
    """Stages run only when ``when`` (an ASL Choice rule without ``Next``) holds."""

    choice: str
    when: dict[str, Any]
    stages: tuple[Stage, ...]
    #: When the rule does not hold: a Pass state writing ``otherwise_output`` at ``$.<otherwise_key>``
    #: (the branch's step's result key), so later readers find it on both paths; None: go straight on.
    otherwise_state: str | None = None
    otherwise_key: str | None = None
    otherwise_output: dict[str, Any] | None = None


Stage = Task | PollLoop | Branch


@dataclass(frozen=True)
class Pipeline:
    """The whole pipeline: its stages, then success; any failure goes to ``failure_step``."""

    stages: tuple[Stage, ...]
    #: Every Task's Catch goes here, with the error under ``$.error``; it reads ``$`` whole.
    failure_step: str
    #: Succeed state after the last stage.
    succeeded_state: str
    #: Fail state after the failure step, so a failed refresh is a FAILED execution.
    failed_state: str


#: Succeed state after the last stage; Fail state after the failure step.
SUCCEEDED_STATE = "RefreshSucceeded"
FAILED_STATE = "RefreshFailed"


class PipelineError(ValueError):
    """The registered steps do not make one pipeline; the message says what to change."""


def derive_pipeline(registry: Registry) -> Pipeline:
    """The pipeline the registered steps' placements describe.

    Each step names the step it runs after (``run_after``), optionally under a Choice
    (``run_when``); one step is ``pipeline_role = "first"`` and one ``"failure"``. The built-in
    steps (placed in the ``steps`` package) form one line. A step placed elsewhere (a plug-in)
    runs right after the step it names, before that line goes on; inside its Choice when that
    step has one. Several such steps after one run in name order.
    """
    placeable = [cls for cls in registry if cls.part_of is None]
    for cls in placeable:
        if cls.pipeline_role and (cls.run_after or cls.run_when):
            raise PipelineError(
                f"step {cls.name!r} is the pipeline's {cls.pipeline_role} step and also sets run_after="
                f"{cls.run_after!r}; a step is placed one way: drop run_after/run_when or pipeline_role"
            )
    first = _the_one(placeable, "first")
    failure = _the_one(placeable, "failure")
    # Naming a poll loop's check half means after the loop.
    anchors = {cls.name: cls.part_of.name for cls in registry if cls.part_of is not None}
    after: dict[str, list[type[Step]]] = {}
    unplaced: list[str] = []
    for cls in placeable:
        if cls.pipeline_role:
            continue
        if not cls.run_after:
            unplaced.append(cls.name)
            continue
        anchor = anchors.get(cls.run_after, cls.run_after)
        if anchor not in registry:
            raise PipelineError(
                f"step {cls.name!r}: run_after must name a registered step, and {anchor!r} is not one "
                f"(nobody registered it); registered steps: {', '.join(registry.names()) or '(none)'}"
            )
        if anchor == failure.name:
            raise PipelineError(
                f"step {cls.name!r} sets run_after={cls.run_after!r}, but {anchor} ends the failure path; "
                "nothing runs after it. Run after a step of the refresh instead."
            )
        after.setdefault(anchor, []).append(cls)
    if unplaced:
        raise PipelineError(
            f"registered step(s) not in the pipeline: {', '.join(sorted(unplaced))}. Set "
            "run_after = '<step name>' on the class (and run_when for a conditional step)."
        )
    reached: set[str] = set()
    stages = tuple(_stages_from(first, after, reached))
    lost = sorted(cls.name for cls in placeable if cls.name not in reached and cls is not failure)
    if lost:
        names = ", ".join(f"{name} (run_after={registry.get(name).run_after!r})" for name in lost)
        raise PipelineError(
            f"cannot place step(s) {names}: run_after must name a registered step of the refresh; "
            f"steps: {', '.join(sorted(reached))}"
        )
    return Pipeline(
        stages=stages, failure_step=failure.name, succeeded_state=SUCCEEDED_STATE, failed_state=FAILED_STATE
    )


def _the_one(steps: list[type[Step]], role: str) -> type[Step]:
    found = [cls for cls in steps if cls.pipeline_role == role]
    if len(found) != 1:
        named = ", ".join(cls.name for cls in found) or "none"
        raise PipelineError(
            f"the pipeline needs exactly one step with pipeline_role = {role!r}; found: {named}"
        )
    return found[0]


def _is_builtin(cls: type[Step]) -> bool:
    """True when the class's placement is declared in the ``steps`` package (trial subclasses inherit it)."""
    owner = next((k for k in cls.__mro__ if "run_after" in k.__dict__ or "pipeline_role" in k.__dict__), cls)
    return owner.__module__ == "steps" or owner.__module__.startswith("steps.")


def _stages_from(cls: type[Step], after: dict[str, list[type[Step]]], reached: set[str]) -> list[Stage]:
    """``cls``'s stage, the plug-ins placed after it, then the built-in line from it."""
    if cls.name in reached:
        raise PipelineError(f"step {cls.name!r} is placed twice: run_after forms a cycle")
    reached.add(cls.name)
    followers = sorted(after.get(cls.name, []), key=lambda step: step.name)
    line = [step for step in followers if _is_builtin(step)]
    if len(line) > 1:
        raise PipelineError(
            f"built-in steps {', '.join(step.name for step in line)} all run after {cls.name!r}; "
            "the built-in steps form one line: make one run after another"
        )
    own: list[Stage] = [PollLoop(cls.name) if issubclass(cls, PollLoopStep) else Task(cls.name)]
    for step in followers:
        if not _is_builtin(step):
            own.extend(_stages_from(step, after, reached))
    when = cls.run_when
    if when is not None and (when.otherwise_state is None) != (when.otherwise_output is None):
        raise PipelineError(
            f"step {cls.name!r}: run_when sets only one of otherwise_state and otherwise_output; set both "
            "(a Pass state and what it writes at $." + cls.result_key + ") or neither"
        )
    stages: list[Stage] = (
        [
            Branch(
                when.choice,
                when.rule,
                tuple(own),
                otherwise_state=when.otherwise_state,
                otherwise_key=cls.result_key if when.otherwise_state else None,
                otherwise_output=dict(when.otherwise_output) if when.otherwise_output is not None else None,
            )
        ]
        if when
        else own
    )
    for step in line:
        stages.extend(_stages_from(step, after, reached))
    return stages


# -- bounds ------------------------------------------------------------------------------------
# The stack parameters that bound the waits may not exceed these limits, so the state machine's
# TimeoutSeconds (derived from them) is always longer than the steps' own bounds: a slow copy ends
# with PollTimeout, a notification and a released lock, never with a silent execution timeout.

#: Largest value the stack accepts for each ``*_max_wait_seconds`` setting.
MAX_WAIT_LIMITS_SECONDS: dict[str, int] = {
    "copy_max_wait_seconds": 10 * 24 * 3600,
    "restore_max_wait_seconds": 2 * 24 * 3600,
}
#: The dispatcher function's timeout (Lambda's maximum: setup_db_users may run long SQL scripts).
FUNCTION_TIMEOUT_SECONDS = 900
#: Each Task's TimeoutSeconds: the function's timeout plus the time Lambda takes to report it.
TASK_TIMEOUT_SECONDS = FUNCTION_TIMEOUT_SECONDS + 60
#: Room for every Task, its retries and the notifications, beside the bounded waits.
EXECUTION_MARGIN_SECONDS = 6 * 3600
