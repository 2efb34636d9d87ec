"""One rehearsal: the generated state machine, run by moto's engine, against a seeded moto world.

The pieces, in the order a run puts them together:

1. moto in process with ``execute_state_machine`` on; the world seeded (:mod:`.world`); the stack's
   tables, topic (with an SQS queue subscribed, to read what was published) made as the template
   makes them.
2. A real PostgreSQL standing in for the restored cluster (:mod:`.database`).
3. The Lambda's environment (table names, topic, KMS key, tiny poll bounds, the database
   endpoint override), the dispatcher built from it, and the hooks on its clients
   (:mod:`.hooks`): call recording, faults, in-progress states.
4. ``infra.state_machine.build_definition()`` with the dispatcher's ARN substituted, created as a
   state machine in moto and started; its Lambda invocations answered in process
   (:mod:`.engine`).
5. The history followed until the end, then the report: states, state item, audit trail,
   notifications, AWS calls, and the world after.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aurora_restore.history import ExecutionHistory, StateRun, read_new_events
from aurora_restore.simulate import engine, moto_compat
from aurora_restore.simulate.events import EventDelivery
from aurora_restore.simulate.hooks import (
    CallRecorder,
    Fault,
    FaultInjector,
    ProgressScript,
    moto_skips_faulted_requests,
)
from aurora_restore.simulate.world import ACCOUNT, SeededWorld, World, default_world, describe_world, seed
from refresh.request import RestoreRequest, peek_operation_id

#: The placeholder every Task's Resource carries (CloudFormation's DefinitionSubstitutions).
FUNCTION_PLACEHOLDER = "${DispatcherFunctionArn}"
TOPIC_NAME = "aurora-restore-rehearsal"
STATE_TABLE = "aurora-restore-state"
AUDIT_TABLE = "aurora-restore-audit"
STATE_MACHINE_NAME = "aurora-restore-rehearsal"
#: When RDS's events reach the dispatcher after a change, in rehearsal seconds: EventBridge
#: usually hands RDS events on within seconds.
DEFAULT_EVENT_DELAY_SECONDS = 5.0
#: With events, how long one ``--polls`` poll of progress lasts (rehearsal seconds, or
#: ``--poll-seconds MIN`` when longer): long enough that a held copy or restore is still in
#: progress when its loop first looks, so its event, not a look, ends the wait (as in AWS, where
#: work takes minutes and a look a second).
EVENT_SECONDS_PER_POLL = 30


class RehearsalError(Exception):
    """The rehearsal itself could not run (bad input, bad world, no database...): exit 2."""


@dataclass
class Options:
    """How to run the rehearsal (the command's flags)."""

    #: The execution input, exactly as ``start-execution`` would get it.
    input: Any
    world: World | None = None
    faults: list[Fault] = field(default_factory=list)
    copy_polls: int = 0
    restore_polls: int = 0
    delete_polls: int = 0
    copy_outcome: str = "available"
    restore_outcome: str = "available"
    #: An existing PostgreSQL server for setup_db_users (TLS, a superuser role); None: embedded.
    database_url: str | None = None
    #: CA bundle to verify --database-url's certificate with (empty: TLS without verification).
    database_ca_file: str = ""
    #: A running ``aurora_restore.simulate.localdb.LocalPostgres`` to use as is (tests share one per session).
    postgres: Any = None
    #: Poll bounds the Lambda gets (AURORA_RESTORE_POLL_MIN/MAX_SECONDS): Wait states last this long.
    poll_min_seconds: int = 0
    poll_max_seconds: int = 1
    #: The rehearsal's clock: Wait states, Retry intervals and botocore's backoff last this
    #: fraction of their real time (1 = as in AWS).
    time_scale: float = 0.01
    #: RDS events handed to the dispatcher this many rehearsal seconds after each change (None:
    #: no events, and a resource held by ``--polls N`` finishes at its N-th look), and the
    #: fraction of them lost.
    event_delay_seconds: float | None = DEFAULT_EVENT_DELAY_SECONDS
    event_loss: float = 0.0
    #: Events about resources whose identifiers start with one of these are lost (a chosen loss).
    lost_events: tuple[str, ...] = ()
    #: Wall-clock limit for the execution; past it the execution is stopped.
    timeout_seconds: float = 300.0
    #: The definition to run; None builds it with ``infra.state_machine.build_definition``.
    definition: dict[str, Any] | None = None
    #: The step registry the dispatcher and the definition use; None = the built-in steps.
    registry: Any = None
    #: Extra AURORA_RESTORE_* settings for the Lambda (the stack's parameters).
    settings: dict[str, str] = field(default_factory=dict)
    #: Where the Lambda's log lines go (None keeps them in the report object only).
    log_stream: Any = None
    #: Run ``aurora-restore retry`` of the operation after the first execution ends, in the same
    #: world, with these scenario options (None: no retry).
    retry: RetryOptions | None = None


@dataclass
class RetryOptions:
    """What the retry's execution meets (``simulate --retry --fault ... --outcome ...``).

    The first execution's faults, polls and outcomes do not carry over: the retry meets only these.
    """

    faults: list[Fault] = field(default_factory=list)
    copy_polls: int = 0
    restore_polls: int = 0
    delete_polls: int = 0
    copy_outcome: str = "available"
    restore_outcome: str = "available"


@dataclass
class Report:
    """What the rehearsal found; ``to_dict`` is the ``--json`` report."""

    status: str
    error: dict[str, Any] | None
    operation_id: str
    execution_arn: str
    states: list[StateRun]
    state_item: dict[str, Any] | None
    audit: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    aws_calls: list[dict[str, Any]]
    world_before: dict[str, Any]
    world_after: dict[str, Any]
    faults: list[dict[str, Any]]
    duration: float
    definition_states: list[str]
    locks: list[dict[str, Any]] = field(default_factory=list)
    lambda_logs: list[str] = field(default_factory=list)
    database: dict[str, Any] = field(default_factory=dict)
    #: Largest state data (input after Parameters, output, Lambda result) in bytes of UTF-8 JSON,
    #: and the execution's history events: Step Functions' limits are 262,144 and 25,000.
    max_state_bytes: int = 0
    history_events: int = 0
    #: The execution's name (the operation id, or ``<operation id>-retry-1`` for a retry).
    execution_name: str = ""
    #: The retry's own report, when the rehearsal ran one (``--retry``).
    retry: Report | None = None
    #: Dispatcher invocations per poll loop (start, waiting half, checks) and of the event step.
    loop_invocations: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Per held loop (clock mode): seconds from the resource finishing to the execution knowing it.
    detection_latency: dict[str, float] = field(default_factory=dict)
    #: The RDS events sent, lost and delivered (with --event-delay / --event-loss).
    events: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> Report:
        """The report of the last execution: the retry's when there was one."""
        return self.retry.final if self.retry is not None else self

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON data (a retry's report under ``retry``, in the same shape)."""
        report = self._execution_dict()
        if self.retry is not None:
            report["retry"] = self.retry._execution_dict()
        return report

    def _execution_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "error": self.error,
            "operation_id": self.operation_id,
            "execution_arn": self.execution_arn,
            "duration": round(self.duration, 3),
            "states": [run.to_dict() for run in self.states],
            "state_item": self.state_item,
            "audit": self.audit,
            "notifications": self.notifications,
            "aws_calls": self.aws_calls,
            "faults": self.faults,
            "world_before": self.world_before,
            "world_after": self.world_after,
            "locks": self.locks,
            "database": self.database,
            "max_state_bytes": self.max_state_bytes,
            "history_events": self.history_events,
            "execution_name": self.execution_name,
            "loop_invocations": self.loop_invocations,
            "detection_latency": self.detection_latency,
            "events": self.events,
        }


def load_definition(registry: Any = None) -> dict[str, Any]:
    """The state machine definition exactly as the template emits it."""
    try:
        from infra.state_machine import build_definition
    except ImportError as exc:  # pragma: no cover - only before the template lands
        raise RehearsalError(f"infra.state_machine.build_definition is not available ({exc})") from None
    return build_definition(registry)


def substitute(definition: dict[str, Any], values: dict[str, str]) -> str:
    """The definition's JSON with ``${Name}`` placeholders replaced, as DefinitionSubstitutions do."""
    text = json.dumps(definition)
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    leftover = [part.split("}", 1)[0] for part in text.split("${")[1:]]
    if leftover:
        raise RehearsalError(
            f"the definition has placeholders the rehearsal does not know: {sorted(set(leftover))}"
        )
    return text


def task_resources(definition: dict[str, Any]) -> set[str]:
    """The function every Task state invokes (nested Parallel/Map branches included): its
    ``Resource``, or the ``FunctionName`` of a Lambda integration such as a waiting Task's."""
    found: set[str] = set()

    def visit(states: dict[str, Any]) -> None:
        for state in states.values():
            if state.get("Type") == "Task":
                resource = state.get("Resource", "")
                if resource.startswith("arn:aws:states:::lambda:invoke"):
                    resource = state.get("Parameters", {}).get("FunctionName", resource)
                found.add(resource)
            for branch in state.get("Branches", []):
                visit(branch.get("States", {}))
            for key in ("Iterator", "ItemProcessor"):
                if isinstance(state.get(key), dict):
                    visit(state[key].get("States", {}))

    visit(definition.get("States", {}))
    return found


def state_names(definition: dict[str, Any]) -> list[str]:
    """Every state of the definition (top level)."""
    return list(definition.get("States", {}))


def _stack_region_of(raw_input: Any, world: World) -> str:
    """Where a rehearsal of an invalid request runs: its target region if that reads as one."""
    import re

    fields = raw_input.get("body", raw_input) if isinstance(raw_input, dict) else {}
    region = fields.get("target_region") if isinstance(fields, dict) else None
    if isinstance(region, str) and re.match(r"^[a-z]{2}(?:-[a-z]+)+-\d$", region):
        return region
    return (world.regions or ["us-east-1"])[0]


@dataclass
class _Scenario:
    """One execution's progress script and fault injector."""

    script: ProgressScript
    injector: FaultInjector


#: How ``aurora-restore retry`` names the first retry of an operation (``operator.retry``).
RETRY_SUFFIX = "-retry-1"


def retry_execution(operation_id: str, raw_input: Any) -> tuple[str, Any]:
    """The execution name and input ``aurora-restore retry`` would start for this operation.

    The same request, with the operation id written into it (so the retry never derives another),
    under the name ``<operation id>-retry-1``.
    """
    from aurora_restore.operator import with_operation_id

    if not isinstance(raw_input, dict):
        raise RehearsalError("--retry needs an input object: aurora-restore retry refuses anything else")
    document = with_operation_id(raw_input, operation_id)
    try:
        RestoreRequest.from_event(document)
    except Exception as exc:
        raise RehearsalError(
            f"--retry: aurora-restore retry refuses this operation's input: it is not a valid request ({exc})"
        ) from None
    return operation_id + RETRY_SUFFIX, document


def execution_name(raw_input: Any) -> str:
    """The operation id when the input names one (so names repeat as operations do), else random."""
    fields = raw_input.get("body", raw_input) if isinstance(raw_input, dict) else {}
    operation_id = fields.get("operation_id") if isinstance(fields, dict) else None
    if isinstance(operation_id, str) and operation_id == peek_operation_id(raw_input):
        return operation_id
    return "rehearsal-" + secrets.token_hex(6)


@contextlib.contextmanager
def _environment(values: dict[str, str], drop: tuple[str, ...]) -> Iterator[None]:
    """Set (and afterwards restore) process environment variables: the Lambda's environment."""
    saved = {k: os.environ.get(k) for k in (*values, *drop)}
    for key in drop:
        os.environ.pop(key, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet_moto() -> Iterator[None]:
    """moto's engine logs every caught error at ERROR level; the report says it better."""
    logger = logging.getLogger("moto")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
        logger.propagate = propagate


class _LineSink(io.TextIOBase):
    """A text stream that keeps complete lines (the Lambda's CloudWatch log, in memory)."""

    def __init__(self, echo: Any = None) -> None:
        self.lines: list[str] = []
        self._partial = ""
        self._echo = echo

    def write(self, text: str) -> int:
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        self.lines.extend(complete)
        if self._echo is not None:
            self._echo.write(text)
        return len(text)


@contextlib.contextmanager
def _lambda_logs(sink: _LineSink) -> Iterator[None]:
    """Send the dispatcher's structlog output to ``sink`` as JSON lines, as in Lambda."""
    import structlog

    from dispatcher import logs

    saved = structlog.get_config()
    saved_flag = logs._configured
    logs.configure(json_lines=True, stream=sink)
    try:
        yield
    finally:
        structlog.configure(**saved)
        logs._configured = saved_flag


_boto_session: Any = None


def _shared_boto_session() -> Any:
    """One boto3 session for every rehearsal in the process.

    Each new session parses the service models' JSON again (about a second for the services a
    run touches); sharing one keeps a second rehearsal in the same process fast. Credentials are
    moto's fake ones, the same in every rehearsal.
    """
    global _boto_session
    if _boto_session is None:
        import boto3

        _boto_session = boto3.session.Session()
    return _boto_session


class Rehearsal:
    """Runs one execution of the generated state machine against a moto world; see the module doc."""

    def __init__(
        self,
        options: Options,
        progress: Callable[[str, StateRun], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.options = options
        self._progress = progress
        #: Told the retry's execution name just before a ``--retry`` execution starts.
        self._on_retry = on_retry

    def request(self) -> RestoreRequest | None:
        """The validated request, or None when the input is invalid (the rehearsal shows how it fails)."""
        from dispatcher.errors import ValidationError

        try:
            return RestoreRequest.from_event(self.options.input)
        except ValidationError:
            return None

    def world(self) -> World:
        """The world to seed: the --world file, or the one the request implies."""
        if self.options.world is not None:
            return self.options.world
        request = self.request()
        if request is None:
            # A bad request still runs, to show how the first state refuses it; it implies no world.
            return World()
        return default_world(request)

    def run(self) -> Report:
        """Run the rehearsal and return its report."""
        from moto import mock_aws

        options = self.options
        world = self.world()
        request = self.request()
        if options.retry is not None and request is None:
            raise RehearsalError(
                "--retry needs a valid request: aurora-restore retry refuses an operation whose input "
                "does not validate"
            )
        stack_region = request.target_region if request else _stack_region_of(options.input, world)
        definition = options.definition or load_definition(options.registry)
        started = time.monotonic()
        sink = _LineSink(options.log_stream)
        with contextlib.ExitStack() as stack:
            stack.enter_context(
                _environment(
                    {
                        "AWS_DEFAULT_REGION": stack_region,
                        "AWS_REGION": stack_region,
                        "AWS_XRAY_SDK_ENABLED": "false",
                    },
                    drop=("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STEPFUNCTIONS"),
                )
            )
            stack.enter_context(mock_aws(config={"stepfunctions": {"execute_state_machine": True}}))
            stack.enter_context(_quiet_moto())
            stack.enter_context(moto_compat.corrections())
            stack.enter_context(moto_skips_faulted_requests())
            stack.enter_context(_lambda_logs(sink))
            from dispatcher.aws import Clients

            # The rehearsal's own clients (seeding, reading back): no hooks, never recorded.
            own = Clients(default_region=stack_region)
            own._session = _shared_boto_session()
            seeded = seed(world, own)
            regions = sorted(
                set(world.regions) | ({request.source_region, request.target_region} if request else set())
            )
            world_before = describe_world(own, regions, seeded.elsewhere)
            topic_arn, queue_url = self._make_stack(own, stack_region)
            database = stack.enter_context(self._database(world, request))
            lambda_env = self._lambda_environment(seeded, stack_region, topic_arn, database)
            stack.enter_context(_environment(lambda_env, drop=()))

            from dispatcher import handler

            handler.reset()
            if options.registry is not None:
                handler._dispatcher = handler.Dispatcher(registry=options.registry)
            app = handler.get_dispatcher()
            app.clients._session = _shared_boto_session()
            # Made now, not first by a waiting half mid-run: botocore makes clients from one
            # session one at a time, and this thread keeps reading the execution's history.
            app.clients("stepfunctions", stack_region)
            recorder = CallRecorder(current_step=lambda: self._bridge_step())
            recorder.register(app.clients.add_hook)
            first = self._scenario(options.faults, options, app.clients.add_hook)
            self._scenario_now = first
            bridge = engine.InProcessLambda(
                engine.function_arn(stack_region, ACCOUNT),
                before=lambda event: self._scenario_now.script.step_invoked(event),
                after=lambda invocation: self._scenario_now.script.step_returned(invocation.step),
            )
            self._bridge = bridge
            self._events = None
            if options.event_delay_seconds is not None:
                self._events = EventDelivery(
                    delay_seconds=options.event_delay_seconds,
                    loss=options.event_loss,
                    scale=options.time_scale,
                    invoke=lambda event: bridge.invoke(
                        {"FunctionName": bridge.function_arn, "Payload": json.dumps(event).encode()},
                        stack_region,
                        None,
                    ),
                    account=ACCOUNT,
                    lose_identifiers=tuple(options.lost_events),
                )
                self._events.register(
                    app.clients.add_hook, held=lambda loop: self._scenario_now.script.held(loop)
                )
                stack.callback(self._events.close)
                self._arm(first)
            if request is not None:
                database.install_emulation(app.clients.add_hook, own)
            stack.enter_context(bridge.installed())
            stack.enter_context(engine.compressed_waits(options.time_scale))
            meter = stack.enter_context(engine.as_strict_as_aws())
            stack.callback(handler.reset)

            sfn = own("stepfunctions", stack_region)
            text = substitute(definition, {"DispatcherFunctionArn": bridge.function_arn})
            machine_arn = sfn.create_state_machine(
                name=STATE_MACHINE_NAME,
                definition=text,
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/aurora-restore-rehearsal-states",
            )["stateMachineArn"]

            def execute(
                name: str, document: Any, scenario: _Scenario, before: dict[str, Any], since: float
            ) -> Report:
                """Start one execution, follow it to its end, and report it."""
                self._scenario_now = scenario
                # Each execution reports its own largest state data and history length.
                meter.max_state_bytes = 0
                meter.events.clear()
                calls_before = len(recorder.calls)
                logs_before = len(sink.lines)
                invocations_before = len(bridge.invocations)
                sent_before = len(self._events.sent) if self._events is not None else 0
                execution_arn = sfn.start_execution(
                    stateMachineArn=machine_arn, name=name, input=json.dumps(document)
                )["executionArn"]
                history = self._follow(sfn, execution_arn)
                operation_id = self._operation_id(history, execution_arn)

                from dispatcher.store import Store

                store = Store(own("dynamodb", stack_region), STATE_TABLE, AUDIT_TABLE)
                return Report(
                    status=history.status,
                    error=history.failure() if history.status != "SUCCEEDED" else None,
                    operation_id=operation_id,
                    execution_arn=execution_arn,
                    states=history.states,
                    state_item=store.get_operation(operation_id),
                    audit=store.audit_trail(operation_id),
                    notifications=self._notifications(own("sqs", stack_region), queue_url),
                    aws_calls=recorder.calls[calls_before:],
                    world_before=before,
                    world_after=describe_world(own, regions, seeded.elsewhere),
                    faults=scenario.injector.summary(),
                    duration=time.monotonic() - since,
                    definition_states=state_names(definition),
                    locks=self._locks(own("dynamodb", stack_region)),
                    lambda_logs=sink.lines[logs_before:],
                    database=database.describe(),
                    max_state_bytes=meter.max_state_bytes,
                    history_events=meter.history_events,
                    execution_name=name,
                    loop_invocations=loop_invocations(bridge.invocations[invocations_before:]),
                    detection_latency=self._detection_latency(scenario, history.states),
                    events=self._events.summary(since=sent_before) if self._events is not None else {},
                )

            if self._events is not None:
                # The stack has been in use: RDS events already reached it from its region's own
                # traffic (an automated backup of a cluster there), so its loops wait for events.
                # In an empty region the first loop polls until its own event arrives.
                there = [c.id for c in world.clusters if c.region == stack_region]
                if there:
                    self._events.region_traffic(
                        "cluster", stack_region, there[0], "Automated backup of the DB cluster completed"
                    )
            report = execute(execution_name(options.input), options.input, first, world_before, started)
            if options.retry is not None:
                name, document = retry_execution(report.operation_id, options.input)
                second = self._scenario(options.retry.faults, options.retry, app.clients.add_hook)
                if self._events is not None:
                    self._arm(second)
                if self._on_retry is not None:
                    self._on_retry(name)
                report.retry = execute(name, document, second, report.world_after, time.monotonic())
            return report

    # -- what each execution meets -----------------------------------------------------------------
    _bridge: Any = None
    _events: EventDelivery | None = None
    _scenario_now: _Scenario

    def _arm(self, scenario: _Scenario) -> None:
        """Clock mode: a held loop's resources finish on time and RDS sends their events then.

        Not when every event is lost: nothing could end a wait but a look, so ``--polls N`` keeps
        counting looks (the waiting halves' and the checks'), as without events.
        """
        events = self._events
        assert events is not None
        if self.options.event_loss >= 1:
            return
        script = scenario.script
        script.clock = events.now
        script.seconds_per_poll = float(max(EVENT_SECONDS_PER_POLL, self.options.poll_min_seconds))

        def finished(loop: str, at: float) -> None:
            def send() -> None:
                if self._scenario_now is not scenario:
                    return
                for kind, region, identifier, message in script.resources_of(loop):
                    events.changed(kind, region, identifier, message, at=at)

            events.at(at, send)

        script.on_loop_started = finished

    def _detection_latency(self, scenario: _Scenario, states: list[StateRun]) -> dict[str, float]:
        """For each held loop: rehearsal seconds from its resources finishing to its last Choice."""
        if self._events is None:
            return {}
        found: dict[str, float] = {}
        for loop in scenario.script.started:
            finish = scenario.script.finishes_at(loop)
            choice = f"Is{loop.capitalize()}Complete"
            entered = [run.entered_at for run in states if run.name == choice]
            if finish is None or not entered or not scenario.script.held(loop):
                continue
            noticed = max(entered).timestamp() / self.options.time_scale
            found[loop] = round(max(0.0, noticed - finish), 1)
        return found

    def _bridge_step(self) -> str | None:
        return self._bridge.current_step if self._bridge is not None else None

    def _scenario(self, faults: list[Fault], polls: Any, add_hook: Callable[[str, Any], None]) -> _Scenario:
        """Faults and in-progress states for one execution; their hooks act only while it runs.

        botocore hooks cannot be taken off a client, so each execution's are registered behind a
        switch: the retry meets its own ``--fault``/``--polls``/``--outcome``, not the first run's.
        """
        script = ProgressScript(
            copy_polls=polls.copy_polls,
            restore_polls=polls.restore_polls,
            delete_polls=polls.delete_polls,
            copy_outcome=polls.copy_outcome,
            restore_outcome=polls.restore_outcome,
        )
        script.current_step = self._bridge_step
        scenario = _Scenario(script=script, injector=FaultInjector(list(faults)))

        def while_current(event_name: str, hook: Any) -> None:
            def handler(**kwargs: Any) -> Any:
                return hook(**kwargs) if self._scenario_now is scenario else None

            add_hook(event_name, handler)

        scenario.injector.register(while_current)
        script.register(while_current)
        return scenario

    # -- the stack the template would have made ----------------------------------------------------
    def _make_stack(self, own: Any, region: str) -> tuple[str, str]:
        from dispatcher.store import create_tables

        create_tables(own("dynamodb", region), STATE_TABLE, AUDIT_TABLE)
        topic_arn = own("sns", region).create_topic(Name=TOPIC_NAME)["TopicArn"]
        sqs = own("sqs", region)
        queue_url = sqs.create_queue(QueueName=f"{TOPIC_NAME}-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        own("sns", region).subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        return topic_arn, queue_url

    def _database(self, world: World, request: RestoreRequest | None) -> Any:
        from aurora_restore.simulate.database import NoDatabase, rehearsal_database
        from dispatcher.registry import load_builtin_steps

        registry = self.options.registry if self.options.registry is not None else load_builtin_steps()
        if "setup_db_users" not in registry:
            return contextlib.nullcontext(NoDatabase())
        return rehearsal_database(
            server=self.options.postgres,
            database_url=self.options.database_url,
            ca_file=self.options.database_ca_file,
            world=world,
            request=request,
        )

    @staticmethod
    def _locks(dynamodb: Any) -> list[dict[str, Any]]:
        """Target locks still held after the run (there should be none)."""
        from boto3.dynamodb.types import TypeDeserializer

        plain = TypeDeserializer()
        items = dynamodb.scan(
            TableName=STATE_TABLE,
            FilterExpression="begins_with(operation_id, :lock)",
            ExpressionAttributeValues={":lock": {"S": "lock#"}},
        )["Items"]
        return [{k: str(plain.deserialize(v)) for k, v in item.items()} for item in items]

    def _lambda_environment(
        self, seeded: SeededWorld, region: str, topic_arn: str, database: Any
    ) -> dict[str, str]:
        options = self.options
        env = {
            "AURORA_RESTORE_STAGE": "rehearsal",
            "AURORA_RESTORE_STATE_TABLE": STATE_TABLE,
            "AURORA_RESTORE_AUDIT_TABLE": AUDIT_TABLE,
            "AURORA_RESTORE_TOPIC_ARN": topic_arn,
            "AURORA_RESTORE_POLL_MIN_SECONDS": str(options.poll_min_seconds),
            "AURORA_RESTORE_POLL_MAX_SECONDS": str(options.poll_max_seconds),
            "AURORA_RESTORE_LOAD_PLUGINS": "false",
        }
        for key, value in seeded.world.stack.items():
            if key == "default_kms_key_id" and isinstance(value, str) and value.startswith("alias/"):
                # The stack parameter is the key's ARN, as the template passes it.
                value = seeded.key_arns.get((region, value), value)
            if isinstance(value, list):
                value = ",".join(value)
            env["AURORA_RESTORE_" + key.upper()] = str(value)
        env.update(database.environment)
        env.update(options.settings)
        return env

    # -- following the execution -------------------------------------------------------------------
    def _follow(self, sfn: Any, execution_arn: str) -> ExecutionHistory:
        """Wait for the end, showing progress from the history when someone watches.

        Each history read serialises every event so far; without a watcher the history is read
        once, at the end, so the engine gets the CPU.
        """
        history = ExecutionHistory()
        watched = self._progress is not None
        deadline = time.monotonic() + self.options.timeout_seconds
        stopped = False
        while True:
            described = sfn.describe_execution(executionArn=execution_arn)
            running = described["status"] == "RUNNING"
            if watched or not running:
                self._feed(history, sfn, execution_arn)
            if not running:
                # The end event can trail the status by a moment in moto's engine.
                if not history.finished:
                    time.sleep(0.05)
                    self._feed(history, sfn, execution_arn)
                history.status = described["status"]
                history.error = history.error or described.get("error")
                history.cause = history.cause or described.get("cause")
                return history
            if time.monotonic() > deadline and not stopped:
                sfn.stop_execution(
                    executionArn=execution_arn,
                    error="RehearsalTimeout",
                    cause="the rehearsal's --timeout passed",
                )
                stopped = True
            time.sleep(0.25 if watched else 0.1)

    def _feed(self, history: ExecutionHistory, sfn: Any, execution_arn: str) -> None:
        for change, run in history.feed(read_new_events(sfn, execution_arn, history.last_event_id)):
            if self._progress is not None:
                self._progress(change, run)

    def _operation_id(self, history: ExecutionHistory, execution_arn: str) -> str:
        from dispatcher.registry import load_builtin_steps

        registry = self.options.registry if self.options.registry is not None else load_builtin_steps()
        # The step that makes the request (its role, not its name) holds the operation id.
        makers = {cls.name for cls in registry if cls.produces_request}
        for run in history.states:
            if run.step in makers and isinstance(run.output, dict):
                value = run.output.get("operation_id")
                if isinstance(value, str):
                    return value
        return peek_operation_id(self.options.input, execution_arn)

    @staticmethod
    def _notifications(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                envelope = json.loads(message["Body"])
                body = envelope.get("Message", "")
                try:
                    parsed: Any = json.loads(body)
                except ValueError:
                    parsed = body
                found.append(
                    {
                        "subject": envelope.get("Subject"),
                        "message": parsed,
                        "attributes": {
                            k: v.get("Value") for k, v in (envelope.get("MessageAttributes") or {}).items()
                        },
                    }
                )
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


#: Which loop each of the dispatcher's steps belongs to (the event step counts on its own).
LOOP_STEPS = {
    "copy": ("copy_snapshot", "await_copy", "check_copy_status"),
    "delete": ("delete_target", "await_delete", "check_delete_status"),
    "restore": ("restore_snapshot", "await_restore", "check_restore_status"),
    "swap": ("swap_clusters", "await_swap", "check_swap_status"),
}


def loop_invocations(invocations: list[engine.Invocation]) -> dict[str, dict[str, int]]:
    """Dispatcher invocations per poll loop: its start, its waiting half, its checks; and events."""
    counts: dict[str, dict[str, int]] = {}
    for loop, (start, waiting, check) in LOOP_STEPS.items():
        names = [i.step for i in invocations]
        row = {"start": names.count(start), "waiting": names.count(waiting), "checks": names.count(check)}
        if any(row.values()):
            counts[loop] = {**row, "total": sum(row.values())}
    events = sum(1 for i in invocations if i.step == "rds_event")
    if events:
        counts["events"] = {"total": events}
    return counts
