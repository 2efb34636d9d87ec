"""Reading a Step Functions execution history as the operator thinks of it: states, steps, progress.

Used by the local rehearsal and by ``aurora-restore watch`` on a deployed stack alike: both read
``GetExecutionHistory``, the one record Step Functions keeps of what ran, when, and how it ended.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: History event types that end an execution, and the status each means.
EXECUTION_END = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}
_TASK_STARTS = ("LambdaFunctionScheduled", "TaskScheduled")
_TASK_SUCCESSES = ("LambdaFunctionSucceeded", "TaskSucceeded")
_TASK_FAILURES = (
    "LambdaFunctionFailed",
    "LambdaFunctionTimedOut",
    "LambdaFunctionScheduleFailed",
    "LambdaFunctionStartFailed",
    "TaskFailed",
    "TaskTimedOut",
    "TaskStartFailed",
    "TaskSubmitFailed",
)


def _details(event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            return value
    return {}


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class StateRun:
    """One entry into one state of the execution."""

    name: str
    type: str
    entered_at: datetime
    exited_at: datetime | None = None
    step: str | None = None
    attempts: int = 0
    #: Error name of the last failed attempt (a Retry may have run the state again since).
    error: str | None = None
    cause: Any = None
    failed: bool = False
    #: What the Lambda returned on its last successful attempt (tasks only).
    output: Any = None
    #: Seconds a Wait state waited.
    waited: float | None = None

    @property
    def status(self) -> str:
        """running, succeeded, or failed (the state ended in an error, caught or not)."""
        if self.type == "Fail":
            return "failed"
        if self.exited_at is None:
            return "running"
        return "failed" if self.failed else "succeeded"

    @property
    def duration(self) -> float | None:
        """Seconds from entry to exit (None while running)."""
        if self.exited_at is None:
            return None
        return max(0.0, (self.exited_at - self.entered_at).total_seconds())

    @property
    def percent(self) -> int | None:
        """A copy's percent progress when the step reported one."""
        if isinstance(self.output, dict) and isinstance(self.output.get("percent_progress"), (int, float)):
            return int(self.output["percent_progress"])
        return None

    def to_dict(self) -> dict[str, Any]:
        """The report's form: name, step, status, duration, attempts, error."""
        duration = self.duration
        return {
            "name": self.name,
            "type": self.type,
            "step": self.step,
            "status": self.status,
            "duration": None if duration is None else round(duration, 3),
            "attempts": self.attempts,
            "error": self.error if (self.failed or self.type == "Fail") else None,
            "retried_errors": self.error if (self.attempts > 1 and not self.failed) else None,
        }


@dataclass
class ExecutionHistory:
    """Folds history events, in order, into state runs; feed it more as the execution goes on."""

    states: list[StateRun] = field(default_factory=list)
    status: str = "RUNNING"
    error: str | None = None
    cause: Any = None
    last_event_id: int = 0
    #: When the execution started and stopped (DescribeExecution's ``startDate`` / ``stopDate``).
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    _open: dict[str, StateRun] = field(default_factory=dict)

    def feed(self, events: list[dict[str, Any]]) -> list[tuple[str, StateRun]]:
        """Apply events newer than the last one seen; return ("entered"|"exited", state) changes."""
        changes: list[tuple[str, StateRun]] = []
        for event in sorted(events, key=lambda e: int(e["id"])):
            if int(event["id"]) <= self.last_event_id:
                continue
            self.last_event_id = int(event["id"])
            change = self._apply(event)
            if change is not None:
                changes.append(change)
        return changes

    def _apply(self, event: dict[str, Any]) -> tuple[str, StateRun] | None:
        kind = str(event["type"])
        details = _details(event)
        when = event["timestamp"]
        if kind.endswith("StateEntered"):
            run = StateRun(name=details.get("name", "?"), type=kind[: -len("StateEntered")], entered_at=when)
            self.states.append(run)
            self._open[run.name] = run
            if run.type == "Fail":
                run.exited_at = when
            return ("entered", run)
        if kind.endswith("StateExited"):
            exited = self._open.pop(details.get("name", "?"), None)
            if exited is None:
                return None
            run = exited
            run.exited_at = when
            if run.type == "Wait" and run.duration is not None:
                run.waited = run.duration
            return ("exited", run)
        current = self.states[-1] if self.states else None
        if kind in _TASK_STARTS and current is not None:
            current.attempts += 1
            payload = _json(details.get("input") or details.get("parameters"))
            if isinstance(payload, dict) and isinstance(payload.get("Payload"), dict):
                payload = payload["Payload"]
            if isinstance(payload, dict) and isinstance(payload.get("step"), str):
                current.step = payload["step"]
            current.failed = False
        elif kind in _TASK_SUCCESSES and current is not None:
            output = _json(details.get("output"))
            if isinstance(output, dict) and "Payload" in output and "StatusCode" in output:
                output = output["Payload"]
            current.output = output
            current.failed = False
        elif kind in _TASK_FAILURES and current is not None:
            current.error = details.get("error") or kind
            current.cause = _json(details.get("cause"))
            current.failed = True
        elif kind in EXECUTION_END:
            self.status = EXECUTION_END[kind]
            self.error = details.get("error")
            self.cause = _json(details.get("cause"))
        return None

    @property
    def finished(self) -> bool:
        """True once the execution has ended."""
        return self.status != "RUNNING"

    def failure(self) -> dict[str, Any] | None:
        """The error that sent the execution to its failure path: first failed task state.

        A waiting Task's ``States.Timeout`` is not one: it is the loop's fallback to a poll.
        """
        for run in self.states:
            if run.type == "Task" and run.failed and run.error != "States.Timeout":
                cause = run.cause if isinstance(run.cause, dict) else {}
                message = (
                    cause.get("errorMessage") if cause else (run.cause if isinstance(run.cause, str) else "")
                )
                return {"type": run.error, "message": message or "", "state": run.name, "step": run.step}
        if self.status in ("FAILED", "TIMED_OUT", "ABORTED"):
            message = (
                self.cause if isinstance(self.cause, str) else json.dumps(self.cause) if self.cause else ""
            )
            return {"type": self.error or self.status, "message": message, "state": None, "step": None}
        return None

    def current(self) -> StateRun | None:
        """The state the execution is in now (entered, not yet left), if any."""
        if self.states and self.states[-1].exited_at is None:
            return self.states[-1]
        return None

    def last_poll(self) -> dict[str, Any] | None:
        """What the most recent task that reported a poll (``next_poll_seconds``) returned."""
        for run in reversed(self.states):
            if run.type != "Task" or run.exited_at is None:
                continue
            output = run.output
            return output if isinstance(output, dict) and "next_poll_seconds" in output else None
        return None

    def entered_states(self) -> set[str]:
        """Names of every state entered at least once."""
        return {run.name for run in self.states}


def read_new_events(sfn: Any, execution_arn: str, after_event_id: int) -> list[dict[str, Any]]:
    """History events with id > ``after_event_id``, oldest first, reading newest pages only."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "reverseOrder": True, "maxResults": 200}
    while True:
        page = sfn.get_execution_history(**kwargs)
        fresh = [e for e in page["events"] if int(e["id"]) > after_event_id]
        events.extend(fresh)
        if len(fresh) < len(page["events"]) or not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    return sorted(events, key=lambda e: int(e["id"]))
