"""The one Lambda function: route ``event["step"]`` to a registered step and record the outcome.

Around each step: a fresh log context, an X-Ray subsegment when tracing is on, the state item
and audit records (started / succeeded / failed, with duration). Nothing heavy is imported and
no AWS client is made at import time: this module is the cold start.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import structlog

from dispatcher import aws, logs, tracing
from dispatcher.aws import Clients
from dispatcher.context import StepContext, derive_operation_id
from dispatcher.errors import AuroraRestoreError, StepOutputIncomplete, UnknownStep
from dispatcher.registry import Registry, Step, load_builtin_steps, missing_outputs
from dispatcher.settings import Settings
from dispatcher.store import Store

_cold_start = True


class Dispatcher:
    """Runs one step per invocation; holds what warm invocations reuse (clients, settings)."""

    def __init__(
        self,
        registry: Registry | None = None,
        settings: Settings | None = None,
        clients: Clients | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.registry = registry or load_builtin_steps()
        if self.settings.load_plugins:
            self.registry.load_plugins()
        self.clients = clients or Clients()
        self._store: Store | None = None
        self.log = logs.get_logger("aurora_restore.dispatcher")

    @property
    def store(self) -> Store:
        """The state/audit store, made on first use (its client too)."""
        if self._store is None:
            self._store = Store(
                self.clients("dynamodb"),
                self.settings.state_table,
                self.settings.audit_table,
                audit_ttl_days=self.settings.audit_ttl_days,
            )
        return self._store

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        """Run the step the event names and return its JSON-safe output."""
        global _cold_start
        cold_start, _cold_start = _cold_start, False
        structlog.contextvars.clear_contextvars()
        if not isinstance(event, dict):
            raise UnknownStep(f"the event must be an object with a 'step' field, got {type(event).__name__}")
        step_name = event.get("step")
        execution_id = event.get("execution_id") if isinstance(event.get("execution_id"), str) else None
        structlog.contextvars.bind_contextvars(
            step=step_name,
            execution_id=execution_id,
            aws_request_id=getattr(context, "aws_request_id", None),
            cold_start=cold_start,
        )
        # Unknown steps fail here, before any AWS call.
        step = self.registry.get(step_name)()
        # The request's class comes from the step that produces the request; a registry without
        # one (test steps only) runs steps with no request and ids derived from the execution.
        model = self.registry.request_model()
        operation_id = step.operation_id(event) or (
            model.peek_operation_id(event.get("input"), execution_id)
            if model is not None
            else derive_operation_id(execution_id)
        )
        structlog.contextvars.bind_contextvars(operation_id=operation_id)

        request = None
        if model is not None and isinstance(event.get("request"), dict):
            request = model.from_event(event["request"], execution_id=execution_id)
        ctx = StepContext(
            event=event,
            operation_id=operation_id,
            settings=self.settings,
            aws=self.clients,
            store=self.store,
            log=self.log,
            request=request,
            execution_id=execution_id,
            registry=self.registry,
        )
        # Each record on its own: for the failure step, one refused write must not skip the next.
        if step.records_operation:
            with self._recording(step):
                self.store.step_started(operation_id, step.name, execution_id)
            with self._recording(step):
                self.store.audit(operation_id, "started", step=step.name, execution_id=execution_id or "")
        self.log.info("step started")
        started = time.perf_counter()
        try:
            with tracing.subsegment(step.name, operation_id=operation_id, step=step.name):
                output = json_safe(step.run(ctx))
            missing = missing_outputs(step.outputs, output)
            if missing:
                # Reported here, through the failure step: on AWS a Choice reading the absent
                # field would end the execution with States.Runtime and nobody told.
                raise StepOutputIncomplete(
                    f"step {step.name} returned no {', '.join(missing)}; it declares outputs "
                    f"{', '.join(step.outputs)} (the state machine reads them)",
                    step=step.name,
                    missing=missing,
                )
        except Exception as raw_error:
            error = aws.translate(raw_error)
            duration_ms = int((time.perf_counter() - started) * 1000)
            detail = error_detail(error)
            if step.records_operation:
                self._record_failure(operation_id, step.name, detail, duration_ms, execution_id)
            self.log.error(
                "step failed", duration_ms=duration_ms, error_type=detail["type"], error=detail["message"]
            )
            if error is raw_error:
                raise
            raise error from raw_error
        duration_ms = int((time.perf_counter() - started) * 1000)
        summary = step.summarize(output)
        if step.records_operation:
            with self._recording(step):
                self.store.step_succeeded(operation_id, step.name, step.recorded_output(output), duration_ms)
            with self._recording(step):
                self.store.audit(
                    operation_id, "succeeded", step=step.name, duration_ms=duration_ms, summary=summary
                )
        self.log.info("step succeeded", duration_ms=duration_ms, summary=summary)
        return output

    @contextlib.contextmanager
    def _recording(self, step: Step) -> Iterator[None]:
        """Around the state item and audit writes of a step: their errors in the project's terms.

        A throttled or failing table must not surface as botocore's ``ClientError``: the state
        machine retries only ``Retryable``, so a throttle that outlived botocore's retries would
        otherwise fail the whole refresh. The failure step records best effort, throttled or not: a
        table that refuses writes, even one throttled without end, must not stop the failure from
        being reported (the state's Retry would only meet the same table again, then give up
        with nobody told).
        """
        try:
            yield
        except Exception as raw_error:
            error = aws.translate(raw_error)
            if step.records_best_effort:
                self.log.error("could not record the step in the state table", record_error=str(error))
                return
            if error is raw_error:
                raise
            raise error from raw_error

    def _record_failure(
        self,
        operation_id: str,
        step: str,
        detail: dict[str, Any],
        duration_ms: int,
        execution_id: str | None = None,
    ) -> None:
        # Recording must never hide the step's own error: a broken table is logged, not raised.
        try:
            self.store.step_failed(operation_id, step, detail, duration_ms, execution_id)
            self.store.audit(
                operation_id,
                "failed",
                step=step,
                duration_ms=duration_ms,
                error_type=detail["type"],
                summary=detail["message"][:500],
            )
        except Exception as exc:
            self.log.error("could not record the step failure", record_error=str(exc))


def error_detail(error: BaseException) -> dict[str, Any]:
    """Type and message of an error, JSON-safe and redacted."""
    if isinstance(error, AuroraRestoreError):
        detail = error.to_dict()
    else:
        detail = {"type": type(error).__name__, "message": str(error)}
    cleaned: dict[str, Any] = logs.redact(detail)
    # Free text may quote a value (``password=...``) that key-based redaction cannot see.
    cleaned["message"] = logs.scrub_text(str(cleaned.get("message", "")))
    return cleaned


def json_safe(value: Any) -> Any:
    """A JSON round trip: what Step Functions will see of the output."""
    return json.loads(json.dumps(value, default=str))


_dispatcher: Dispatcher | None = None


def get_dispatcher() -> Dispatcher:
    """The process-wide dispatcher, built on the first invocation."""
    global _dispatcher
    if _dispatcher is None:
        _dispatcher = Dispatcher()
    return _dispatcher


def reset() -> None:
    """Drop the process-wide dispatcher (tests and the rehearsal use it between worlds)."""
    global _dispatcher, _cold_start
    _dispatcher = None
    _cold_start = True


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point for every state of the state machine."""
    return get_dispatcher().handle(event, context)
