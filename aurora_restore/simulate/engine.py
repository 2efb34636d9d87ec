"""The two seams the rehearsal opens in moto's Step Functions engine, and nothing else.

1. **Lambda invocations.** moto's engine invokes a Task's Lambda through
   ``lambda_eval_utils._invoke_lambda_function``, which would ask moto's Lambda to run the code in
   Docker. :class:`InProcessLambda` answers that call instead by running
   ``dispatcher.handler.lambda_handler`` in this process, and answers the way real Lambda does: the
   handler's return value as the JSON payload, or ``FunctionError: Unhandled`` with the Python
   runtime's error payload (``errorMessage``, ``errorType`` = the exception's class name,
   ``requestId``, ``stackTrace``). moto's engine then reports ``Error`` = ``errorType`` and
   ``Cause`` = the payload, as Step Functions does, so the definition's Retry and Catch match the
   same names they will match in AWS.
2. **The clock of waits.** A waiting Task (``.waitForTaskToken``) waits for its token at most its
   ``TimeoutSeconds``, and a Wait state waits its ``SecondsPath`` seconds of real time (the
   steps' poll policy never asks for less than 1 s), a Retry rule waits
   ``IntervalSeconds * BackoffRate^n`` (``time.sleep`` in moto's ``retrier_decl``), and botocore
   sleeps its exponential backoff between attempts of a throttled call (``time.sleep`` in
   ``botocore.endpoint``) and, in adaptive mode, waits for its client-side token bucket to refill
   (``botocore.retries.bucket``: its clock and its condition). :func:`compressed_waits` runs all
   of them on one faster clock, so a rehearsal of hours of polling and a six-attempt backoff
   takes seconds. The definition, the
   steps' poll decisions and botocore's retry decisions are unchanged; only the rehearsal's clock
   for those waits runs faster.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

#: The function the rehearsal "deploys": every Task's Resource is substituted with this ARN.
FUNCTION_NAME = "aurora-restore-dispatcher-rehearsal"


def function_arn(region: str, account: str) -> str:
    """The dispatcher's ARN in the rehearsal."""
    return f"arn:aws:lambda:{region}:{account}:function:{FUNCTION_NAME}"


@dataclass
class LambdaContext:
    """The parts of Lambda's context object the dispatcher (and powertools-style code) reads."""

    function_name: str
    invoked_function_arn: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    log_group_name: str = f"/aws/lambda/{FUNCTION_NAME}"
    log_stream_name: str = "rehearsal"
    timeout_seconds: int = 900
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


@dataclass
class Invocation:
    """One Lambda invocation as the rehearsal saw it."""

    step: str | None
    started: float
    duration: float = 0.0
    error_type: str | None = None


def lambda_error_payload(error: BaseException, request_id: str) -> dict[str, Any]:
    """What the Python Lambda runtime returns for an unhandled exception."""
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(traceback.extract_tb(error.__traceback__)),
    }


class InProcessLambda:
    """Serves the state machine's Lambda invocations with ``dispatcher.handler.lambda_handler``.

    ``before`` / ``after`` callbacks see each invocation (the rehearsal counts polls with them).
    """

    def __init__(
        self,
        function_arn: str,
        handler: Callable[[dict[str, Any], Any], Any] | None = None,
        *,
        before: Callable[[dict[str, Any]], None] | None = None,
        after: Callable[[Invocation], None] | None = None,
    ) -> None:
        self.function_arn = function_arn
        self._handler = handler
        self._before = before
        self._after = after
        self.invocations: list[Invocation] = []
        #: The step running now, per thread (hooks on AWS calls read it).
        self.local = threading.local()

    @property
    def current_step(self) -> str | None:
        """The step the current thread's invocation runs, if any."""
        return getattr(self.local, "step", None)

    def handler(self) -> Callable[[dict[str, Any], Any], Any]:
        """The Lambda entry point (looked up at call time, so a reset dispatcher is honoured)."""
        if self._handler is not None:
            return self._handler
        from dispatcher.handler import lambda_handler

        return lambda_handler

    def invoke(self, parameters: dict[str, Any], region: str, state_credentials: Any) -> dict[str, Any]:
        """Stand-in for moto's ``_invoke_lambda_function``: same arguments, same response shape."""
        name = parameters.get("FunctionName")
        if name not in (self.function_arn, FUNCTION_NAME):
            from botocore.exceptions import ClientError

            raise ClientError(
                cast(
                    Any,
                    {
                        "Error": {
                            "Code": "ResourceNotFoundException",
                            "Message": f"Function not found: {name}",
                        },
                        "ResponseMetadata": {"HTTPStatusCode": 404, "RequestId": str(uuid.uuid4())},
                    },
                ),
                "Invoke",
            )
        raw = parameters.get("Payload") or b"{}"
        event = json.loads(raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw)
        step = event.get("step") if isinstance(event, dict) else None
        context = LambdaContext(FUNCTION_NAME, self.function_arn)
        invocation = Invocation(step=step if isinstance(step, str) else None, started=time.time())
        if self._before is not None and isinstance(event, dict):
            self._before(event)
        self.local.step = invocation.step
        started = time.perf_counter()
        try:
            result = self.handler()(event, context)
            # Lambda serialises the return value; what cannot be serialised is the runtime's error.
            payload: Any = json.loads(json.dumps(result))
            response: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": payload}
        except Exception as error:
            invocation.error_type = type(error).__name__
            if isinstance(error, TypeError) and "JSON serializable" in str(error):
                invocation.error_type = "Runtime.MarshalError"
                payload = {
                    "errorMessage": f"Unable to marshal response: {error}",
                    "errorType": "Runtime.MarshalError",
                    "requestId": context.aws_request_id,
                    "stackTrace": [],
                }
            else:
                payload = lambda_error_payload(error, context.aws_request_id)
            response = {
                "StatusCode": 200,
                "ExecutedVersion": "$LATEST",
                "FunctionError": "Unhandled",
                "Payload": payload,
            }
        finally:
            self.local.step = None
        invocation.duration = time.perf_counter() - started
        self.invocations.append(invocation)
        if self._after is not None:
            self._after(invocation)
        return response

    @contextlib.contextmanager
    def installed(self) -> Iterator[InProcessLambda]:
        """Answer moto's Lambda invocations while the block runs."""
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

        original = lambda_eval_utils._invoke_lambda_function
        lambda_eval_utils._invoke_lambda_function = self.invoke
        try:
            yield self
        finally:
            lambda_eval_utils._invoke_lambda_function = original


class _ScaledTime:
    """The ``time`` module on the rehearsal's clock: ``sleep`` shorter, ``time`` faster, by ``scale``."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self._anchor = time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, float(seconds)) * self.scale)

    def time(self) -> float:
        return self._anchor + (time.time() - self._anchor) / self.scale

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class _ScaledCondition:
    """A ``threading.Condition`` whose timed waits run on the rehearsal's clock."""

    def __init__(self, scale: float, lock: Any = None) -> None:
        self._condition = threading.Condition(lock)
        self._scale = scale

    def wait(self, timeout: float | None = None) -> bool:
        return self._condition.wait(None if timeout is None else timeout * self._scale)

    def __enter__(self) -> Any:
        return self._condition.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._condition.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._condition, name)


class _ScaledThreading:
    """The ``threading`` module as botocore's token bucket sees it: its Condition on the clock."""

    def __init__(self, scale: float) -> None:
        self._scale = scale

    def Condition(self, lock: Any = None) -> _ScaledCondition:
        return _ScaledCondition(self._scale, lock)

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


def _scaled_wait_interval(scale: float) -> Callable[..., None]:
    """``WaitFunction._wait_interval`` waiting ``scale`` times as long (an execution stop ends it)."""

    def wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
        if wait_seconds > 0:
            env.program_state_event.wait(wait_seconds * scale)

    return wait_interval


@contextlib.contextmanager
def compressed_waits(scale: float) -> Iterator[None]:
    """Scale Wait states, Retry intervals and botocore's backoff by ``scale`` (0 < scale <= 1).

    Only clients made inside the block get the faster token bucket (it is made with the client).
    """
    from botocore import endpoint
    from botocore.retries import bucket
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import Timeout
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint

    if not 0 < scale <= 1:
        raise ValueError(f"the time scale must be more than 0 and at most 1, got {scale}")
    modules: tuple[Any, ...] = (retrier_decl, endpoint, bucket)
    token_bucket: Any = bucket  # its module attribute ``threading`` is swapped; typeshed hides it
    originals = [module.time for module in modules]
    original_threading = token_bucket.threading
    original_wait = WaitFunction._wait_interval
    original_callback_wait = CallbackEndpoint.wait
    original_with_timeout = ExecutionState._evaluate_with_timeout
    original_timeout_body = Timeout._eval_body
    if scale != 1:
        clock = _ScaledTime(scale)
        for module in modules:
            module.time = clock
        token_bucket.threading = _ScaledThreading(scale)
        WaitFunction._wait_interval = _scaled_wait_interval(scale)  # type: ignore[method-assign]
        CallbackEndpoint.wait = _scaled_callback_wait(original_callback_wait, scale)  # type: ignore[method-assign]
        ExecutionState._evaluate_with_timeout = _waiting_task_timeout(original_with_timeout)  # type: ignore[method-assign]
        Timeout._eval_body = _outer_timeout(original_timeout_body)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            module.time = original
        token_bucket.threading = original_threading
        WaitFunction._wait_interval = original_wait  # type: ignore[method-assign]
        CallbackEndpoint.wait = original_callback_wait  # type: ignore[method-assign]
        ExecutionState._evaluate_with_timeout = original_with_timeout  # type: ignore[method-assign]
        Timeout._eval_body = original_timeout_body  # type: ignore[method-assign]


#: Set, in the engine's thread, while a waiting Task's overall time limit is being read.
_task_limit = threading.local()


def _waiting_task_timeout(original: Callable[..., Any]) -> Callable[..., Any]:
    """A waiting Task's overall limit lifted; its wait for the token (scaled) keeps the timeout.

    moto bounds the whole Task (the Lambda invocation, then the wait for the token) by
    ``TimeoutSeconds`` of real time. On the rehearsal's clock the wait shrinks but the invocation
    does not: a one-second fallback would time out a check still running, which AWS, where a check
    takes a second against fallbacks of minutes, never sees. The wait for the token still times
    out after the scaled ``TimeoutSeconds``, once the invocation has returned.
    """

    def evaluate(self: Any, env: Any) -> None:
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
            ResourceCondition,
        )

        resource = getattr(self, "resource", None)
        waiting = getattr(resource, "condition", None) == ResourceCondition.WaitForTaskToken
        _task_limit.lifted = waiting
        try:
            original(self, env)
        finally:
            _task_limit.lifted = False

    return evaluate


def _outer_timeout(original: Callable[..., Any]) -> Callable[..., Any]:
    def eval_body(self: Any, env: Any) -> None:
        original(self, env)
        if getattr(_task_limit, "lifted", False):
            # Read once per Task, in the engine's thread: the invocation's own read is elsewhere.
            _task_limit.lifted = False
            env.stack.pop()
            env.stack.append(None)

    return eval_body


def _scaled_callback_wait(original: Callable[..., Any], scale: float) -> Callable[..., Any]:
    """A waiting Task's wait for its token (``TimeoutSeconds``) on the rehearsal's clock."""

    def wait(self: Any, timeout: float | None = None) -> Any:
        return original(self, timeout=None if timeout is None else timeout * scale)

    return wait


# -- where moto is more lenient than AWS -----------------------------------------------------------
#: Step Functions' limit on any state's input or output, after Parameters: 256 KiB of UTF-8 JSON.
STATE_DATA_LIMIT_BYTES = 262_144
#: Step Functions' limit on one execution's history; past it the execution fails.
HISTORY_EVENT_LIMIT = 25_000
#: Errors ``States.ALL`` does not match, in Retry or Catch (AWS: "can't catch the
#: States.DataLimitExceeded terminal error or Runtime error types").
UNCATCHABLE_ERRORS = ("States.Runtime", "States.DataLimitExceeded")


@dataclass
class StateDataMeter:
    """The largest state data and the number of history events the rehearsal's executions made."""

    max_state_bytes: int = 0
    #: History events per execution (keyed by its event manager), in the order they started.
    events: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def history_events(self) -> int:
        """Events of the longest execution (each execution has its own 25,000-event budget)."""
        return max(self.events.values(), default=0)

    def measure(self, value: Any) -> int:
        """Record ``value``'s size as Step Functions counts it; return the size."""
        text = (
            value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        )
        size = len(text.encode("utf-8", "surrogatepass"))
        with self._lock:
            self.max_state_bytes = max(self.max_state_bytes, size)
        return size

    def count_event(self, manager: Any) -> int:
        """One more history event for the execution owning ``manager``; return its count."""
        with self._lock:
            count = self.events.get(id(manager), 0) + 1
            self.events[id(manager)] = count
        return count


def _failure(env: Any, error: str, cause: str) -> Exception:
    """moto's uncaught-failure exception for ``error`` (one of the ``States.*`` names)."""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    kind = {
        "States.Runtime": StatesErrorNameType.StatesRuntime,
        "States.DataLimitExceeded": StatesErrorNameType.StatesStatesDataLimitExceeded,
    }[error]
    return FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=kind),
            event_type=HistoryEventType.TaskFailed,
            event_details=cast(
                EventDetails,
                {"taskFailedEventDetails": TaskFailedEventDetails(error=error, cause=cause)},
            ),
        )
    )


@contextlib.contextmanager
def as_strict_as_aws(meter: StateDataMeter | None = None) -> Iterator[StateDataMeter]:
    """Make moto's Step Functions engine fail an execution wherever AWS would.

    - ``States.ALL`` in a Retry or Catch no longer matches ``States.Runtime`` or
      ``States.DataLimitExceeded``: the execution fails without the failure step, as on AWS.
    - A Choice whose ``Variable`` is absent from the state's input ends the execution with
      ``States.Runtime`` (moto takes the rule as false and goes to the Default); ``IsPresent``
      still tests presence.
    - A Task whose ``Parameters`` name a path absent from the input ends it with
      ``States.Runtime`` (moto reports a catchable ``States.TaskFailed``).
    - A Task input after Parameters over 256 KiB is ``States.DataLimitExceeded`` (moto checks
      only outputs), and moto's own output checks count from the same meter.
    - An execution whose history passes 25,000 events fails.

    Yields the meter that saw every state's data and counted every history event.
    """
    from moto.stepfunctions.parser.asl.component.common.error_name import error_equals_decl
    from moto.stepfunctions.parser.asl.component.state import state as state_module
    from moto.stepfunctions.parser.asl.component.state.choice.comparison import comparison_variable
    from moto.stepfunctions.parser.asl.component.state.choice.comparison.comparison_func import ComparisonFunc
    from moto.stepfunctions.parser.asl.component.state.choice.comparison.comparison_operator_type import (
        ComparisonOperatorType,
    )
    from moto.stepfunctions.parser.asl.component.state.choice.comparison.variable import NoSuchVariable
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_lambda
    from moto.stepfunctions.parser.asl.eval.event import event_manager
    from moto.stepfunctions.parser.asl.utils.json_path import NoSuchJsonPathError

    meter = meter if meter is not None else StateDataMeter()
    decl = error_equals_decl.ErrorEqualsDecl
    lambda_state = state_task_lambda.StateTaskLambda
    comparison = comparison_variable.ComparisonVariable
    manager = event_manager.EventManager
    originals: list[tuple[Any, str, Any]] = [
        (decl, "_eval_body", decl._eval_body),
        (lambda_state, "_from_error", lambda_state._from_error),
        (lambda_state, "_eval_parameters", lambda_state._eval_parameters),
        (comparison, "_eval_body", comparison._eval_body),
        (manager, "add_event", manager.add_event),
        (state_module.CommonStateField, "_eval_body", state_module.CommonStateField._eval_body),
        (state_module, "is_within_size_quota", state_module.is_within_size_quota),
        (state_task_lambda, "is_within_size_quota", state_task_lambda.is_within_size_quota),
    ]
    original_decl_eval = decl._eval_body
    original_from_error = lambda_state._from_error
    original_parameters = lambda_state._eval_parameters
    original_add_event = manager.add_event
    original_enter = state_module.CommonStateField._eval_body

    def error_equals(self: Any, env: Any) -> None:
        error_name = env.stack[-1]
        name = getattr(error_name, "error_name", None)
        if name in UNCATCHABLE_ERRORS and all(
            getattr(n, "error_name", None) != name for n in self.error_names
        ):
            env.stack.pop()
            env.stack.append(False)
            return
        original_decl_eval(self, env)

    def from_error(self: Any, env: Any, ex: Exception) -> Any:
        if isinstance(ex, NoSuchJsonPathError):
            cause = (
                f"The JSONPath '{ex.json_path}' specified for the field '{env.next_field_name}' could not be "
                "found in the input"
            )
            return _failure(env, "States.Runtime", cause).failure_event  # type: ignore[attr-defined]
        return original_from_error(self, env, ex)

    def eval_parameters(self: Any, env: Any) -> dict[str, Any]:
        parameters: dict[str, Any] = original_parameters(self, env)
        size = meter.measure(parameters.get("Payload"))
        if size > STATE_DATA_LIMIT_BYTES:
            raise _failure(
                env,
                "States.DataLimitExceeded",
                f"The state/task input after Parameters is {size} bytes, more than the maximum of "
                f"{STATE_DATA_LIMIT_BYTES} bytes",
            )
        return parameters

    def compare(self: Any, env: Any) -> None:
        self.variable.eval(env)
        value = env.stack[-1]
        function = self.comparison_function
        if isinstance(value, NoSuchVariable) and not (
            isinstance(function, ComparisonFunc)
            and function.operator_type == ComparisonOperatorType.IsPresent
        ):
            path = value.path.split(",")[0]
            raise _failure(
                env,
                "States.Runtime",
                f"Invalid path '{path}': The choice state's condition path references an invalid value.",
            )
        function.eval(env)

    def add_event(self: Any, context: Any, event_type: Any, *args: Any, **kwargs: Any) -> int:
        meter.count_event(self)
        event_id: int = original_add_event(self, context, event_type, *args, **kwargs)
        return event_id

    def enter_state(self: Any, env: Any) -> None:
        # Checked as a state is entered, outside any Retry or Catch: nothing handles it.
        if meter.events.get(id(env.event_manager), 0) >= HISTORY_EVENT_LIMIT:
            raise _failure(
                env,
                "States.Runtime",
                f"The execution history reached {HISTORY_EVENT_LIMIT} events, Step Functions' limit for "
                "one execution; the rehearsal ends the execution here",
            )
        original_enter(self, env)

    def within_quota(value: Any) -> bool:
        return meter.measure(value) <= STATE_DATA_LIMIT_BYTES

    decl._eval_body = error_equals  # type: ignore[method-assign]
    lambda_state._from_error = from_error  # type: ignore[method-assign]
    lambda_state._eval_parameters = eval_parameters  # type: ignore[method-assign]
    comparison._eval_body = compare  # type: ignore[method-assign]
    manager.add_event = add_event  # type: ignore[method-assign]
    state_module.CommonStateField._eval_body = enter_state  # type: ignore[method-assign]
    state_module.is_within_size_quota = within_quota
    state_task_lambda.is_within_size_quota = within_quota
    try:
        yield meter
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
