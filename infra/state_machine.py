"""The state machine definition, generated from the registered steps and where each says it runs.

Every Task invokes the one dispatcher function (``Resource`` is the ``${DispatcherFunctionArn}``
placeholder, filled by the template's ``DefinitionSubstitutions`` or by the local rehearsal) with
``{"step": <name>, "execution_id.$": "$$.Execution.Id", "<key>.$": "$.<key>"...}`` and puts the
step's output under ``$.<result_key>``, so the request is never overwritten. The rules, each there
because Step Functions would otherwise fail the run in a way nothing reports:

- the first state normalises the raw input (``"input.$": "$"``);
- Choice states read ``complete`` and the fields the steps really return; Wait states take
  ``SecondsPath`` from ``next_poll_seconds``, waiting Tasks ``TimeoutSecondsPath`` from
  ``fallback_seconds``;
- every Task retries Lambda's transient errors and the project's ``Retryable`` errors with
  backoff and full jitter, and catches everything else into the failure step, which gets ``$``
  whole and ends in a Fail state (a failed refresh is a FAILED execution);
- every path a state reads is written by a state that certainly ran before it
  (:func:`check_reads`): Step Functions' ``States.ALL`` does not catch ``States.Runtime``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dispatcher.errors import retryable_error_names
from dispatcher.poll_loop import TIMEOUT_FIELD, PollLoopStep
from dispatcher.registry import Registry, Step, load_builtin_steps
from infra.pipeline import (
    EXECUTION_MARGIN_SECONDS,
    MAX_WAIT_LIMITS_SECONDS,
    TASK_TIMEOUT_SECONDS,
    Branch,
    Pipeline,
    PipelineError,
    PollLoop,
    Stage,
    Task,
    derive_pipeline,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Name of the DefinitionSubstitutions key that carries the dispatcher's ARN.
DISPATCHER_ARN_VARIABLE = "DispatcherFunctionArn"
#: What every Task's ``Resource`` holds until the substitution (direct Lambda ARN form).
DISPATCHER_ARN_PLACEHOLDER = "${" + DISPATCHER_ARN_VARIABLE + "}"

#: Lambda's own transient errors; AWS recommends retrying them (2 s, 6 attempts, rate 2).
LAMBDA_TRANSIENT_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.TooManyRequestsException",
)
#: Where every Catch puts the error (``{"Error": ..., "Cause": ...}``).
ERROR_KEY = "error"
#: Keys a step may not use as its result key: the Task parameters and the Catch's result path.
RESERVED_KEYS = frozenset({"step", "execution_id", "input", ERROR_KEY})
_RESULT_KEY = re.compile(r"[a-z][a-z0-9_]*")
_STATE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,79}")


__all__ = ["PipelineError", "build_definition", "pipeline_steps", "to_mermaid"]


@dataclass(frozen=True)
class Timeouts:
    """Task and execution timeouts written into the definition."""

    task_seconds: int
    execution_seconds: int


def build_definition(registry: Registry | None = None, *, comment: str | None = None) -> dict[str, Any]:
    """The state machine definition (ASL, as a dict) for the steps in ``registry``.

    ``None`` means the built-in steps (``load_builtin_steps()``). Every Task's ``Resource`` is
    ``"${DispatcherFunctionArn}"``. Raises :class:`PipelineError` when the steps' placements do not
    make one pipeline or a state would read a path nothing wrote.
    """
    steps = registry if registry is not None else load_builtin_steps()
    pipeline = derive_pipeline(steps)
    stages = pipeline.stages
    failure = _step(steps, pipeline.failure_step)
    check_reads(stages, steps, pipeline)
    timeouts = compute_timeouts(stages, steps)

    states = _States()
    _emit(stages, pipeline.succeeded_state, steps, pipeline, timeouts, states)
    states[failure.state_name] = _task_state(
        failure, next_state=pipeline.failed_state, timeouts=timeouts, catch_to=None, pipeline=pipeline
    )
    states[pipeline.succeeded_state] = {"Type": "Succeed"}
    states[pipeline.failed_state] = {
        "Type": "Fail",
        "Error": "RefreshFailed",
        "Cause": f"The refresh failed; {failure.state_name} reported it (see the failure notification, "
        "the operation's state item and its audit trail).",
    }
    definition = {
        "Comment": comment or "aurora-restore: refresh an Aurora PostgreSQL cluster from a snapshot",
        "StartAt": _entry(stages[0], steps),
        "TimeoutSeconds": timeouts.execution_seconds,
        "States": dict(states),
    }
    check_error_handling(definition)
    return definition


# -- Retry and Catch as Step Functions accepts them ------------------------------------------------
#: The ``States.*`` error names Step Functions defines; any other name starting ``States.`` is refused.
STATES_ERROR_NAMES = frozenset(
    {
        "States.ALL",
        "States.DataLimitExceeded",
        "States.ExceedToleratedFailureThreshold",
        "States.HeartbeatTimeout",
        "States.Http.Socket",
        "States.IntrinsicFailure",
        "States.ItemReaderFailed",
        "States.NoChoiceMatched",
        "States.ParameterPathFailure",
        "States.Permissions",
        "States.QueryEvaluationError",
        "States.ResultPathMatchFailure",
        "States.ResultWriterFailed",
        "States.Runtime",
        "States.TaskFailed",
        "States.Timeout",
    }
)
#: Errors that end the execution whatever a Retry or Catch says: naming them promises handling
#: that never happens.
UNCATCHABLE_ERRORS = ("States.Runtime", "States.DataLimitExceeded")
JITTER_STRATEGIES = ("FULL", "NONE")


def check_error_handling(definition: dict[str, Any]) -> None:
    """Refuse Retry/Catch rules Step Functions refuses or ignores (moto accepts some of them).

    ``States.ALL`` must be alone in its ``ErrorEquals`` and in the last rule; ``JitterStrategy``
    is ``FULL`` or ``NONE``; error names are Step Functions' own ``States.*`` names or names of
    our own that do not start with ``States.``; and no rule names an error nothing can catch.
    """
    for name, state in definition["States"].items():
        for field in ("Retry", "Catch"):
            rules = state.get(field) or []
            for index, rule in enumerate(rules):
                where = f"state {name} {field}[{index}]"
                errors = rule.get("ErrorEquals")
                if not isinstance(errors, list) or not errors:
                    raise PipelineError(f"{where}: ErrorEquals must be a non-empty list of error names")
                if "States.ALL" in errors and (len(errors) > 1 or index != len(rules) - 1):
                    raise PipelineError(
                        f"{where}: States.ALL must be alone in its ErrorEquals, in the last rule of {field}"
                    )
                for error in errors:
                    if not isinstance(error, str) or not error:
                        raise PipelineError(f"{where}: error name {error!r} must be a non-empty string")
                    if error.startswith("States.") and error not in STATES_ERROR_NAMES:
                        raise PipelineError(
                            f"{where}: {error} is not a Step Functions error name; names starting with "
                            "'States.' are reserved for Step Functions' own errors"
                        )
                    if error in UNCATCHABLE_ERRORS:
                        raise PipelineError(
                            f"{where}: {error} ends the execution whatever {field} says; do not name it"
                        )
                jitter = rule.get("JitterStrategy")
                if field == "Retry" and jitter is not None and jitter not in JITTER_STRATEGIES:
                    raise PipelineError(
                        f"{where}: JitterStrategy {jitter!r} must be one of {', '.join(JITTER_STRATEGIES)}"
                    )


# -- placing the steps ---------------------------------------------------------------------------
def declared_steps(pipeline: Pipeline) -> list[str]:
    """Every step the declaration names, in order (the failure step last).

    A poll loop is named once; its check half is registered and placed with it.
    """
    return [*_stage_steps(pipeline.stages), pipeline.failure_step]


def pipeline_steps(registry: Registry) -> list[type[Step]]:
    """Every step of the pipeline in order, each poll loop's waiting and check halves after its start."""
    ordered: list[type[Step]] = []
    for name in declared_steps(derive_pipeline(registry)):
        cls = registry.get(name)
        ordered.append(cls)
        if issubclass(cls, PollLoopStep):
            if cls.waits_for_events:
                ordered.append(registry.get(cls.await_name))
            ordered.append(registry.get(cls.check_name))
    return ordered


def event_steps(registry: Registry) -> list[type[Step]]:
    """The steps EventBridge invokes (``pipeline_role = "event"``): no state runs them."""
    return [cls for cls in registry if cls.pipeline_role == "event"]


def dispatcher_steps(registry: Registry) -> list[type[Step]]:
    """Every step the dispatcher function runs: the pipeline's, then the event steps."""
    return [*pipeline_steps(registry), *event_steps(registry)]


def _stage_steps(stages: tuple[Stage, ...]) -> Iterator[str]:
    for stage in stages:
        if isinstance(stage, (Task, PollLoop)):
            yield stage.step
        else:
            yield from _stage_steps(stage.stages)


def _loop_step(registry: Registry, stage: PollLoop) -> type[PollLoopStep]:
    """The poll loop class ``stage`` names; a plain step there is an error naming what to change."""
    cls = _step(registry, stage.step)
    if not issubclass(cls, PollLoopStep):
        raise PipelineError(
            f"step {stage.step!r} is declared as a poll loop but {cls.__module__}.{cls.__qualname__} is "
            "not a PollLoopStep (dispatcher/poll_loop.py); give it start and check, or declare it as a Task"
        )
    return cls


# -- checking the paths ----------------------------------------------------------------------------
def check_reads(stages: tuple[Stage, ...], registry: Registry, pipeline: Pipeline) -> None:
    """Refuse a state that reads ``$.<key>`` when some path to it has not written ``<key>``.

    A missing path is ``States.Runtime``, which ``States.ALL`` does not catch: the execution would
    die without the failure handler, its notification or its lock release.
    """
    for cls in registry:
        _check_result_key(cls)
    failure = _step(registry, pipeline.failure_step)
    if tuple(failure.reads) != ("$",):
        raise PipelineError(
            f"the failure step {failure.name!r} must read only '$' (the whole data: any other key may be "
            f"missing when a step fails), not {list(failure.reads)}"
        )
    _check_stage_reads(stages, registry, {"$"})


#: For each key of the execution's data: the steps that may have written it last, on some path.
Writers = dict[str, list[type[Step]]]


def _check_stage_reads(stages: tuple[Stage, ...], registry: Registry, written: Writers | set[str]) -> Writers:
    """Walk ``stages`` as the execution would; refuse any read not written on every path into it.

    A read is a Task's Parameters key (``$.<key>``), a Choice's ``Variable`` or a Wait's
    ``SecondsPath``, nested fields included (``$.restore.swap_required``): the key must have been
    written on every path, and every step that may have written it last must declare the field
    in its ``outputs``.
    """
    state: Writers = dict(written) if isinstance(written, dict) else {key: [] for key in written}
    for stage in stages:
        if isinstance(stage, Task):
            cls = _step(registry, stage.step)
            _require(cls.state_name, [f"$.{key}" for key in cls.reads if key != "$"], state)
            if cls.reads == ("$",) and _writes_whole_data(cls, stage, stages):
                state = {}
            state[cls.result_key] = [cls]
        elif isinstance(stage, PollLoop):
            start = _loop_step(registry, stage)
            check = _step(registry, start.check_name)
            key = start.result_key
            _require(start.state_name, [f"$.{k}" for k in start.reads if k != "$"], state)
            # The Choice and the Waits are entered after any half; the check after the Wait.
            state[key] = [start, check]
            if start.waits_for_events:
                waiting = _step(registry, start.await_name)
                # The waiting Task's output is a check's (sent by itself or the event step).
                state[key] = [start, check, waiting]
                _require(start.choice_state, [f"$.{key}.complete", f"$.{key}.wait_for_events"], state)
                _require(
                    start.wait_state,
                    [f"$.{key}.fallback_seconds", *(f"$.{k}" for k in waiting.reads if k != "$")],
                    state,
                )
                _require(start.poll_wait_state, [f"$.{key}.next_poll_seconds"], state)
            else:
                _require(start.choice_state, [f"$.{key}.complete"], state)
                _require(start.wait_state, [f"$.{key}.next_poll_seconds"], state)
            _require(check.state_name, [f"$.{k}" for k in check.reads if k != "$"], state)
        else:
            _require(stage.choice, _rule_paths(stage.when), state)
            after = _check_stage_reads(stage.stages, registry, state)
            # The branch may be skipped: what it adds is not certain afterwards, and a key it
            # rewrites may have been written last by either side.
            merged = {
                key: writers + [w for w in after.get(key, writers) if w not in writers]
                for key, writers in state.items()
            }
            if stage.otherwise_state and stage.otherwise_key:
                # Skipped, the Pass state writes the key: certain on both paths, with the fields of
                # whichever side wrote it last.
                key = stage.otherwise_key
                merged[key] = [*after.get(key, []), _pass_writer(stage)]
            state = merged
    return state


def _pass_writer(stage: Branch) -> type[Step]:
    """The skipped branch's Pass state as a writer the proof can hold to its fields."""
    output = stage.otherwise_output or {}
    return type(
        "Otherwise",
        (Step,),
        {"name": f"({stage.otherwise_state})", "state_name": stage.otherwise_state, "outputs": tuple(output)},
    )


def _writes_whole_data(cls: type[Step], stage: Task, stages: tuple[Stage, ...]) -> bool:
    """True for the first state: its output replaces the whole data (``{request: ...}``)."""
    return bool(stages) and stages[0] is stage and cls.result_key == "request"


def _require(state: str, paths: list[str], written: Writers) -> None:
    """Refuse ``paths`` (``$.key`` or ``$.key.field...``) that some path into ``state`` lacks."""
    for path in paths:
        key, _, rest = path.removeprefix("$.").partition(".")
        if key not in written:
            raise PipelineError(
                f"state {state} reads {path}, which no earlier state certainly writes (written by then: "
                f"{', '.join(sorted(written)) or 'nothing'}); move the step later or make it read what exists"
            )
        lacking = [cls for cls in written[key] if rest and not _declares(cls, rest)]
        if lacking:
            names = ", ".join(f"{cls.name} (state {cls.state_name})" for cls in lacking)
            raise PipelineError(
                f"state {state} reads {path}, but step {names} may write $.{key} last and does not declare "
                f"{rest!r} in its outputs ({', '.join(lacking[0].outputs) or 'none'}); on AWS an absent path "
                "ends the execution with States.Runtime, which nothing catches. Return the field and add it "
                "to the step's outputs, or read another"
            )


def _declares(cls: type[Step], field: str) -> bool:
    """True when ``cls`` guarantees ``field`` (declared itself, or a field nested in it)."""
    return any(path == field or path.startswith(field + ".") for path in cls.outputs)


def _rule_paths(rule: dict[str, Any]) -> list[str]:
    """Every ``Variable`` path of a Choice rule (And/Or/Not included)."""
    paths: list[str] = []
    for nested in rule.get("And", []) + rule.get("Or", []) + ([rule["Not"]] if "Not" in rule else []):
        paths.extend(_rule_paths(nested))
    variable = rule.get("Variable")
    if isinstance(variable, str) and "IsPresent" not in rule:
        paths.append(variable)
    return paths


def _check_result_key(cls: type[Step]) -> None:
    key = cls.result_key
    if cls.produces_request:
        return
    if not _RESULT_KEY.fullmatch(key or "") or key in RESERVED_KEYS or key == "request":
        raise PipelineError(
            f"step {cls.name!r} has result_key {key!r}; it must be lower_snake_case and not one of "
            f"{', '.join(sorted(RESERVED_KEYS | {'request'}))}"
        )


class _States(dict[str, dict[str, Any]]):
    """The definition's states; refuses a name used twice or not fit for a state."""

    def __setitem__(self, name: str, state: dict[str, Any]) -> None:
        if name in self:
            raise PipelineError(
                f"two states are named {name!r}; every state name a step declares (state_name, run_when, "
                "a loop's choice_state/wait_state) must be unique"
            )
        if not _STATE_NAME.fullmatch(name):
            raise PipelineError(
                f"state name {name!r} must be 1-80 letters and digits, starting with a letter"
            )
        super().__setitem__(name, state)


# -- emitting the states -----------------------------------------------------------------------------
def compute_timeouts(stages: tuple[Stage, ...], registry: Registry) -> Timeouts:
    """Task timeout, and an execution timeout longer than every bounded wait together."""
    loops = [_loop_step(registry, stage) for stage in _loops(stages)]
    unknown = sorted({loop.max_wait_setting for loop in loops} - set(MAX_WAIT_LIMITS_SECONDS))
    if unknown:
        raise PipelineError(
            f"poll loop bound(s) {', '.join(unknown)} have no limit in MAX_WAIT_LIMITS_SECONDS; "
            f"known: {', '.join(sorted(MAX_WAIT_LIMITS_SECONDS))}"
        )
    waits = sum(MAX_WAIT_LIMITS_SECONDS[loop.max_wait_setting] for loop in loops)
    return Timeouts(task_seconds=TASK_TIMEOUT_SECONDS, execution_seconds=waits + EXECUTION_MARGIN_SECONDS)


def _loops(stages: tuple[Stage, ...]) -> Iterator[PollLoop]:
    for stage in stages:
        if isinstance(stage, PollLoop):
            yield stage
        elif isinstance(stage, Branch):
            yield from _loops(stage.stages)


def _entry(stage: Stage, registry: Registry) -> str:
    if isinstance(stage, Task):
        return _step(registry, stage.step).state_name
    if isinstance(stage, PollLoop):
        return _step(registry, stage.step).state_name
    return stage.choice


def _emit(
    stages: tuple[Stage, ...],
    after: str,
    registry: Registry,
    pipeline: Pipeline,
    timeouts: Timeouts,
    states: dict[str, dict[str, Any]],
) -> None:
    """Add the states of ``stages`` in order; the last one goes on to ``after``."""
    failure = _step(registry, pipeline.failure_step).state_name
    for index, stage in enumerate(stages):
        following = _entry(stages[index + 1], registry) if index + 1 < len(stages) else after
        if isinstance(stage, Task):
            cls = _step(registry, stage.step)
            states[cls.state_name] = _task_state(
                cls, next_state=following, timeouts=timeouts, catch_to=failure, pipeline=pipeline
            )
        elif isinstance(stage, PollLoop):
            start = _loop_step(registry, stage)
            check = _step(registry, start.check_name)
            key = start.result_key
            states[start.state_name] = _task_state(
                start, next_state=start.choice_state, timeouts=timeouts, catch_to=failure, pipeline=pipeline
            )
            done = {"Variable": f"$.{key}.complete", "BooleanEquals": True, "Next": following}
            # Without events, the loop polls through a Wait state, as the poll policy schedules.
            poll_wait = {
                "Type": "Wait",
                "SecondsPath": f"$.{key}.next_poll_seconds",
                "Next": check.state_name,
            }
            if start.waits_for_events:
                events = {
                    "Variable": f"$.{key}.wait_for_events",
                    "BooleanEquals": True,
                    "Next": start.wait_state,
                }
                states[start.choice_state] = {
                    "Type": "Choice",
                    "Choices": [done, events],
                    "Default": start.poll_wait_state,
                }
                waiting = _step(registry, start.await_name)
                states[start.wait_state] = _waiting_state(
                    waiting, next_state=start.choice_state, failure=failure
                )
                states[start.poll_wait_state] = poll_wait
            else:
                states[start.choice_state] = {
                    "Type": "Choice",
                    "Choices": [done],
                    "Default": start.wait_state,
                }
                states[start.wait_state] = poll_wait
            states[check.state_name] = _task_state(
                check, next_state=start.choice_state, timeouts=timeouts, catch_to=failure, pipeline=pipeline
            )
        else:
            states[stage.choice] = {
                "Type": "Choice",
                "Choices": [{**stage.when, "Next": _entry(stage.stages[0], registry)}],
                "Default": stage.otherwise_state or following,
            }
            if stage.otherwise_state:
                states[stage.otherwise_state] = {
                    "Type": "Pass",
                    "Result": stage.otherwise_output,
                    "ResultPath": f"$.{stage.otherwise_key}",
                    "Next": following,
                }
            _emit(stage.stages, following, registry, pipeline, timeouts, states)


def task_parameters(cls: type[Step]) -> dict[str, str]:
    """The Task's ``Parameters``: the step name, the execution id and one entry per key it reads."""
    parameters = {"step": cls.name, "execution_id.$": "$$.Execution.Id"}
    for key in cls.reads:
        if key == "$":
            parameters["input.$"] = "$"
        else:
            parameters[f"{key}.$"] = f"$.{key}"
    return parameters


def retry_rules(*, failure_step: bool = False) -> list[dict[str, Any]]:
    """Lambda's transient errors (AWS's recommendation), then ``Retryable``, with full jitter.

    The failure step also retries everything else a couple of times: when it fails, nobody is
    told, so it gets more chances than a step whose failure it would report.
    """
    rules: list[dict[str, Any]] = [
        {
            "ErrorEquals": list(LAMBDA_TRANSIENT_ERRORS),
            "IntervalSeconds": 2,
            "MaxAttempts": 6,
            "BackoffRate": 2,
            "MaxDelaySeconds": 60,
            "JitterStrategy": "FULL",
        },
        {
            "ErrorEquals": retryable_error_names(),
            "IntervalSeconds": 10,
            "MaxAttempts": 5,
            "BackoffRate": 2,
            "MaxDelaySeconds": 300,
            "JitterStrategy": "FULL",
        },
    ]
    if failure_step:
        rules.append(
            {
                "ErrorEquals": ["States.ALL"],
                "IntervalSeconds": 5,
                "MaxAttempts": 2,
                "BackoffRate": 2,
                "MaxDelaySeconds": 30,
                "JitterStrategy": "FULL",
            }
        )
    return rules


def _task_state(
    cls: type[Step],
    *,
    next_state: str,
    timeouts: Timeouts,
    catch_to: str | None,
    pipeline: Pipeline,
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": DISPATCHER_ARN_PLACEHOLDER,
        "Parameters": task_parameters(cls),
        "ResultPath": f"$.{cls.result_key}",
        "TimeoutSeconds": timeouts.task_seconds,
        "Retry": retry_rules(failure_step=cls.name == pipeline.failure_step),
    }
    if _is_first_step(cls, pipeline):
        # The first state's output is the validated request alone: keeping the raw input beside
        # it would carry the request twice through every state (Step Functions' 256 KiB limit).
        # Its Catch still sees the raw input, so the failure step can name the operation.
        state["ResultSelector"] = {f"{cls.result_key}.$": "$"}
        state["ResultPath"] = "$"
    # The failure step is never caught into itself: if it fails, the execution fails with its error.
    if catch_to is not None:
        state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": f"$.{ERROR_KEY}", "Next": catch_to}]
    state["Next"] = next_state
    return state


#: The Step Functions integration that invokes a Lambda function and waits for its task token.
WAIT_FOR_TASK_TOKEN_RESOURCE = "arn:aws:states:::lambda:invoke.waitForTaskToken"  # noqa: S105 - an ARN
#: The error a Task's ``TimeoutSeconds`` raises; the waiting Task catches it to poll once.
TIMEOUT_ERROR = "States.Timeout"


def _waiting_state(waiting: type[Step], *, next_state: str, failure: str) -> dict[str, Any]:
    """A poll loop's waiting Task: invokes its half with the task token, then waits for the token.

    It ends when the token is sent (the output is a check's, under ``$.<key>``), fails with the
    error sent or raised, or times out after ``fallback_seconds``: the timeout is caught back into
    the same state with the error under ``$.<key>.fallback`` (the rest of the data as it was), and
    that run of the waiting half is the fallback poll.
    """
    key = waiting.result_key
    state_name = waiting.state_name
    return {
        "Type": "Task",
        "Resource": WAIT_FOR_TASK_TOKEN_RESOURCE,
        "Parameters": {
            "FunctionName": DISPATCHER_ARN_PLACEHOLDER,
            "Payload": {**task_parameters(waiting), "task_token.$": "$$.Task.Token"},
        },
        "ResultPath": f"$.{key}",
        "TimeoutSecondsPath": f"$.{key}.fallback_seconds",
        "Retry": retry_rules(),
        "Catch": [
            {"ErrorEquals": [TIMEOUT_ERROR], "ResultPath": f"$.{key}.{TIMEOUT_FIELD}", "Next": state_name},
            {"ErrorEquals": ["States.ALL"], "ResultPath": f"$.{ERROR_KEY}", "Next": failure},
        ],
        "Next": next_state,
    }


def _is_first_step(cls: type[Step], pipeline: Pipeline) -> bool:
    first = pipeline.stages[0] if pipeline.stages else None
    return isinstance(first, Task) and first.step == cls.name


def _step(registry: Registry, name: str) -> type[Step]:
    try:
        return registry.get(name)
    except Exception:
        raise PipelineError(
            f"step {name!r} is not registered; registered steps: {', '.join(registry.names()) or '(none)'}"
        ) from None


# -- reading a definition ---------------------------------------------------------------------------
def task_payload(state: dict[str, Any]) -> dict[str, Any]:
    """What a Task sends the dispatcher: its ``Parameters``, or a waiting Task's ``Payload``."""
    parameters: dict[str, Any] = state.get("Parameters", {})
    if state.get("Resource") == WAIT_FOR_TASK_TOKEN_RESOURCE:
        payload: dict[str, Any] = parameters.get("Payload", {})
        return payload
    return parameters


def substitute(definition: dict[str, Any], function_arn: str) -> dict[str, Any]:
    """A copy of ``definition`` with the dispatcher's ARN in every Task (what CloudFormation does)."""
    import json

    text = json.dumps(definition).replace(DISPATCHER_ARN_PLACEHOLDER, function_arn)
    result: dict[str, Any] = json.loads(text)
    return result


def transitions(definition: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """Every edge ``(from, to, label)`` of the definition; label is ``""``, a condition, ``error``
    or ``timeout`` (a waiting Task's fallback to its loop's check)."""
    for name, state in definition["States"].items():
        for choice in state.get("Choices", []):
            yield name, choice["Next"], describe_rule(choice)
        if "Default" in state:
            yield name, state["Default"], "otherwise"
        if "Next" in state:
            yield name, state["Next"], ""
        for catch in state.get("Catch", []):
            yield name, catch["Next"], "timeout" if catch["ErrorEquals"] == [TIMEOUT_ERROR] else "error"


def describe_rule(rule: dict[str, Any]) -> str:
    """A Choice rule in a few words, e.g. ``copy.complete``, ``request.strategy = delete-first``."""
    if "And" in rule:
        return " and ".join(describe_rule(r) for r in rule["And"])
    if "Or" in rule:
        return " or ".join(describe_rule(r) for r in rule["Or"])
    if "Not" in rule:
        return "not " + describe_rule(rule["Not"])
    variable = str(rule.get("Variable", "")).removeprefix("$.")
    for operator, value in rule.items():
        if operator in {"Variable", "Next"}:
            continue
        if operator == "BooleanEquals":
            return variable if value else f"not {variable}"
        return f"{variable} = {value}" if operator.endswith("Equals") else f"{variable} {operator} {value}"
    return variable


def to_mermaid(definition: dict[str, Any]) -> str:
    """A Mermaid flowchart of the definition (Tasks as boxes, Choices as diamonds, errors dotted)."""
    states = definition["States"]
    lines = ["flowchart TD", f"    start((start)) --> {definition['StartAt']}"]
    for name, state in states.items():
        kind = state["Type"]
        if kind == "Task":
            step = task_payload(state).get("step", "")
            lines.append(f'    {name}["{name}<br/>{step}"]')
        elif kind == "Choice":
            lines.append(f"    {name}{{{name}}}")
        elif kind == "Wait":
            lines.append(f"    {name}([{name}])")
        elif kind == "Succeed":
            lines.append(f"    {name}((({name})))")
        elif kind == "Fail":
            lines.append(f"    {name}((({name})))")
        else:
            lines.append(f"    {name}[{name}]")
    for source, target, label in transitions(definition):
        if label == "error":
            lines.append(f"    {source} -.-> {target}")
        elif label == "timeout":
            lines.append(f'    {source} -.->|"timeout: poll"| {target}')
        elif label:
            lines.append(f'    {source} -->|"{label}"| {target}')
        else:
            lines.append(f"    {source} --> {target}")
    succeeded = [n for n, s in states.items() if s["Type"] == "Succeed"]
    failed = [n for n, s in states.items() if s["Type"] == "Fail"]
    lines.append("    classDef ok fill:#d4edda,stroke:#155724")
    lines.append("    classDef bad fill:#f8d7da,stroke:#721c24")
    if succeeded:
        lines.append(f"    class {','.join(succeeded)} ok")
    if failed:
        lines.append(f"    class {','.join(failed)} bad")
    return "\n".join(lines) + "\n"
