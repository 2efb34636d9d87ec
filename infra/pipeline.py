"""The pipeline's order, declared once.

This is the only place that says in which order the registered steps run; the state machine
(``infra/state_machine.py``) is generated from it and from each step's class attributes
(``name``, ``state_name``, ``reads``, ``result_key``). Adding a built-in step is registering a class
in ``steps/`` and naming it here. A third-party step (entry point ``aurora_restore.steps``) is not
named here: it sets ``run_after = "<step name>"`` and is inserted after that step.

The vocabulary:

- :class:`Task` runs one step once.
- :class:`PollLoop` runs a poll loop step (``dispatcher.poll_loop.PollLoopStep``): its start, then
  Choice (``$.<result_key>.complete``) -> Wait (``$.<result_key>.next_poll_seconds``) -> its check
  until the work is complete. The class names the states and the bound (``max_wait_setting``).
- :class:`Branch` runs its stages only when its Choice rule holds; otherwise the pipeline goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


#: The refresh, in the seed's order, with the seed's state names where the seed has the state.
PIPELINE = Pipeline(
    stages=(
        Task("validate_request"),
        Task("snapshot_check"),
        PollLoop("copy_snapshot"),
        # delete-first (the seed's order) removes an existing target before restoring under its
        # name; swap (the default) restores beside it and renames after the users are set up.
        Branch(
            choice="ChooseStrategy",
            when={
                "And": [
                    {"Variable": "$.request.strategy", "StringEquals": "delete-first"},
                    {"Variable": "$.snapshot.target.exists", "BooleanEquals": True},
                ]
            },
            stages=(
                PollLoop("delete_target"),
            ),
        ),
        PollLoop("restore_snapshot"),
        Task("setup_db_users"),
        Branch(
            choice="NeedsSwap",
            when={"Variable": "$.restore.swap_required", "BooleanEquals": True},
            stages=(
                PollLoop("swap_clusters"),
            ),
        ),
        Task("archive_snapshot"),
        Task("sns_notification"),
    ),
    failure_step="handle_failure",
    succeeded_state="RefreshSucceeded",
    failed_state="RefreshFailed",
)

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
