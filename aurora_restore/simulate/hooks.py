"""botocore event hooks on the dispatcher's clients: record every AWS call, inject faults and states.

Everything here is registered with ``dispatcher.aws.Clients.add_hook``; the product's code paths
are untouched, and botocore's own machinery (its retry modes, its error parsing, the waiters a
step might use) sees the injected responses as it would see AWS's.

- :class:`CallRecorder` (``provide-client-params`` / ``after-call``): service, operation, region
  and the call's parameters with secret values redacted, in order, with the step that made it.
- :class:`FaultInjector` (``before-send``): ``SERVICE.Operation=ErrorCode[*N]`` answers that call
  with that AWS error, the first N times or always, so botocore's retry handling sees it.
- :class:`ProgressScript` (``after-call`` on the Describe calls): moto makes copies and restores
  available at once; this reports them in progress for N polls first, with a percent for copies,
  and optionally ends them in a failed state.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dispatcher.aws import TRANSIENT_CODES
from dispatcher.logs import REDACTED, is_secret_key, redact

#: Statuses a copy / restore may be told to end in (``--outcome copy=failed``).
COPY_OUTCOMES = ("available", "failed")
RESTORE_OUTCOMES = (
    "available",
    "failed",
    "inaccessible-encryption-credentials",
    "incompatible-parameters",
    "incompatible-restore",
)
#: The steps that look at each loop's resource (the event step runs the loops' checks).
COPY_STEPS = ("copy_snapshot", "check_copy_status", "await_copy", "rds_event")
RESTORE_STEPS = ("restore_snapshot", "check_restore_status", "await_restore", "rds_event")
DELETE_STEPS = ("delete_target", "check_delete_status", "await_delete", "rds_event")
#: The step that starts each loop: with events, the loop's time starts there.
POLL_STARTS = {"copy": "copy_snapshot", "restore": "restore_snapshot", "delete": "delete_target"}
#: The copy inside another account (cross-account refreshes): ``copy_polls`` holds it in progress too,
#: counted by its own check (its events go to that account's bus, so it is only ever polled).
SHARE_STEPS = ("share_source_snapshot", "check_source_share_status")
#: The loops ``--polls`` can hold in progress, and the check step that counts a poll of each.
POLL_CHECKS = {
    "copy": "check_copy_status",
    "restore": "check_restore_status",
    "delete": "check_delete_status",
}
#: Each loop's waiting half: with no events delivered, each of its runs (the look before it
#: waits, then each fallback poll) is a poll too.
POLL_AWAITS = {"copy": "await_copy", "restore": "await_restore", "delete": "await_delete"}


class ScenarioError(ValueError):
    """A --fault / --polls / --outcome value the rehearsal cannot use; names the value."""


# -- recording ----------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """API parameters as JSON data: bytes summarised, datetimes in ISO form."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def redact_params(value: Any) -> Any:
    """``dispatcher.logs.redact`` for API parameters, keeping switches readable.

    ``ManageMasterUserPassword: true`` names a password but holds none; the plan should show it.
    """
    if isinstance(value, dict):
        return {
            key: item
            if isinstance(item, bool)
            else (REDACTED if is_secret_key(str(key)) and item not in (None, "") else redact_params(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_params(item) for item in value]
    return redact(value)


@dataclass
class CallRecorder:
    """Every AWS call the steps made, in order, redacted: the dry-run plan of the pipeline."""

    current_step: Callable[[], str | None] = lambda: None
    calls: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, add_hook: Callable[[str, Any], None]) -> None:
        """Install on the dispatcher's clients."""
        add_hook("provide-client-params", self._before)
        add_hook("after-call", self._after)
        add_hook("after-call-error", self._after_error)

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        record = {
            "service": model.service_model.service_name,
            "operation": model.name,
            "region": context.get("client_region"),
            "step": self.current_step(),
            "params": redact_params(_plain(params)),
            "error": None,
        }
        if context.get("account"):
            # A call made in another account through its role (a cross-account refresh).
            record["account"] = context["account"]
        with self._lock:
            self.calls.append(record)
        context["aurora_restore_call"] = record

    def _after(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        record = context.get("aurora_restore_call")
        if record is not None and getattr(http_response, "status_code", 200) >= 300:
            record["error"] = parsed.get("Error", {}).get("Code") or str(http_response.status_code)

    def _after_error(self, exception: BaseException, context: dict[str, Any], **_: Any) -> None:
        record = context.get("aurora_restore_call")
        if record is not None:
            record["error"] = type(exception).__name__


# -- faults -------------------------------------------------------------------------------------
_FAULT = re.compile(
    r"^(?P<service>[A-Za-z0-9-]+)\.(?P<operation>[A-Za-z0-9]+)=(?P<code>[A-Za-z0-9._-]+)(?:\*(?P<times>\d+))?$"
)


@dataclass
class Fault:
    """``SERVICE.Operation=ErrorCode[*N]``: that call fails with that code, N times or always."""

    service: str
    operation: str
    code: str
    times: int | None = None
    #: botocore's hyphenated service id (the event name's middle part) and protocol.
    event_service: str = ""
    protocol: str = ""
    injected: int = 0

    @property
    def spec(self) -> str:
        """The fault as the operator wrote it."""
        return f"{self.service}.{self.operation}={self.code}" + (f"*{self.times}" if self.times else "")

    @property
    def status_code(self) -> int:
        """The HTTP status AWS uses for the code (throttling 400, server trouble 5xx)."""
        if self.code == "ServiceUnavailable":
            return 503
        if self.code in TRANSIENT_CODES or self.code.startswith("Internal"):
            return 500
        return 400

    def exhausted(self) -> bool:
        """True once the fault has been injected its N times."""
        return self.times is not None and self.injected >= self.times


def parse_fault(text: str) -> Fault:
    """Parse and check a fault against botocore's models (service and operation must exist)."""
    match = _FAULT.match(text.strip())
    if not match:
        raise ScenarioError(
            f"--fault {text!r}: expected SERVICE.Operation=ErrorCode or SERVICE.Operation=ErrorCode*N, "
            "e.g. rds.CopyDBClusterSnapshot=ThrottlingException*2"
        )
    import botocore.session
    from botocore.exceptions import UnknownServiceError

    session = botocore.session.get_session()
    service = match["service"].lower()
    try:
        model = session.get_service_model(service)
    except UnknownServiceError:
        raise ScenarioError(
            f"--fault {text!r}: {match['service']!r} is not an AWS service botocore knows"
        ) from None
    if match["operation"] not in model.operation_names:
        close = [o for o in model.operation_names if o.lower() == match["operation"].lower()]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ScenarioError(f"--fault {text!r}: {service} has no operation {match['operation']!r}{hint}")
    protocol = model.protocol
    if protocol not in ("query", "json", "rest-json", "rest-xml", "ec2"):
        raise ScenarioError(f"--fault {text!r}: cannot fake errors of the {protocol} protocol")
    times = int(match["times"]) if match["times"] else None
    if times == 0:
        raise ScenarioError(f"--fault {text!r}: *N must be at least 1 (leave it out for 'always')")
    return Fault(
        service=service,
        operation=match["operation"],
        code=match["code"],
        times=times,
        event_service=model.service_id.hyphenize(),
        protocol=protocol,
    )


class _RawBody:
    """The raw-response object botocore reads an injected body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body

    def read(self, *_: Any) -> bytes:
        body, self._body = self._body, b""
        return body


def error_response(fault: Fault, url: str) -> Any:
    """An ``AWSResponse`` carrying ``fault.code`` in the service's own error format."""
    from botocore.awsrequest import AWSResponse

    request_id = str(uuid.uuid4())
    message = f"Injected by the rehearsal (--fault {fault.spec})"
    from botocore.awsrequest import HTTPHeaders

    headers = HTTPHeaders()
    headers["x-amzn-RequestId"] = request_id
    if fault.protocol == "query":
        kind = "Receiver" if fault.status_code >= 500 else "Sender"
        body = (
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{fault.code}</Code><Message>{message}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        headers["Content-Type"] = "text/xml"
    elif fault.protocol == "ec2":
        body = (
            f"<Response><Errors><Error><Code>{fault.code}</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
        headers["Content-Type"] = "text/xml"
    elif fault.protocol == "rest-xml":
        body = (
            f"<Error><Code>{fault.code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        headers["Content-Type"] = "application/xml"
    else:
        body = json.dumps({"__type": fault.code, "message": message})
        headers["Content-Type"] = "application/x-amz-json-1.1"
        headers["x-amzn-ErrorType"] = fault.code
    return AWSResponse(url, fault.status_code, headers, _RawBody(body.encode()))


#: Set on a request the fault injector answered, so moto does not carry it out as well.
FAULTED = "_aurora_restore_faulted"


@dataclass
class FaultInjector:
    """Answers the named calls with AWS errors (``before-send``, so botocore retries them).

    Faults on the same operation compose in the order given: each attempt of the call is answered
    by the first fault not yet exhausted, and only by it (``rds.X=Throttling*2`` then
    ``rds.X=AccessDenied`` is two throttles, then denied). botocore calls every ``before-send``
    handler and keeps the first response, so one handler per operation decides for all its faults:
    with one handler per fault, a later exhausted fault would clear the mark that keeps moto from
    carrying out the call an earlier fault answered, and moto would run a call the client was told
    failed.
    """

    faults: list[Fault]
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, add_hook: Callable[[str, Any], None]) -> None:
        """Install on the dispatcher's clients: one handler per faulted operation."""
        by_event: dict[str, list[Fault]] = {}
        for fault in self.faults:
            by_event.setdefault(f"before-send.{fault.event_service}.{fault.operation}", []).append(fault)
        for event_name, faults in by_event.items():
            add_hook(event_name, self._handler(faults))

    def _handler(self, faults: list[Fault]) -> Callable[..., Any]:
        def send(request: Any, **_: Any) -> Any:
            with self._lock:
                fault = next((f for f in faults if not f.exhausted()), None)
                # botocore sends the same request object again on a retry: mark every attempt.
                setattr(request, FAULTED, fault is not None)
                if fault is None:
                    return None
                fault.injected += 1
            return error_response(fault, request.url)

        return send

    def summary(self) -> list[dict[str, Any]]:
        """Each fault and how often it was injected."""
        return [{"fault": f.spec, "injected": f.injected} for f in self.faults]


@contextlib.contextmanager
def moto_skips_faulted_requests() -> Iterator[None]:
    """Keep moto from carrying out a request the fault injector already answered.

    botocore hands ``before-send`` to every handler and uses the first response, so moto's own
    handler would still run the request (a throttled restore would restore): a faulted request
    never reached AWS, and must not reach moto.
    """
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.__call__

    def call(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        if getattr(request, FAULTED, False):
            return None
        return original(self, event_name, request, **kwargs)

    BotocoreStubber.__call__ = call  # type: ignore[method-assign]
    try:
        yield
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]


# -- in-progress and failed states ---------------------------------------------------------------
@dataclass
class ProgressScript:
    """Makes the copy, the restore and a deletion report in progress for N polls, then end as told.

    A poll is one run of the loop's check step (``check_copy_status``, ``check_restore_status``,
    ``check_delete_status``); the loop's first step is poll 0. With N > 0, while poll <= N the
    resource is in progress (copies at ``100 * poll / (N + 1)`` percent); after that it ends in the
    outcome status. With N = 0 moto's own status stands (or the outcome, at once).
    moto deletes a cluster at once; with ``delete_polls`` a cluster deleted by ``delete_target``
    is still described, ``deleting``, for N polls, as RDS shows it. Only what this run created or
    deleted is touched, and only in the responses of those steps: the failure handler sees the
    world as moto has it.
    """

    copy_polls: int = 0
    restore_polls: int = 0
    delete_polls: int = 0
    copy_outcome: str = "available"
    restore_outcome: str = "available"
    current_step: Callable[[], str | None] = lambda: None
    polls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(POLL_CHECKS, 0))
    copies: set[tuple[str, str]] = field(default_factory=set)
    restored_clusters: set[tuple[str, str]] = field(default_factory=set)
    restored_instances: set[tuple[str, str]] = field(default_factory=set)
    deleted_clusters: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: With RDS events delivered the loops look rarely, so a poll cannot be the unit of progress:
    #: given this clock (rehearsal seconds), a resource held for N polls is in progress for
    #: ``N + 1`` times ``seconds_per_poll`` after its loop started, whoever looks.
    clock: Callable[[], float] | None = None
    seconds_per_poll: float = 1.0
    #: Called with (loop, rehearsal time it finishes) when a held loop starts (clock mode).
    on_loop_started: Callable[[str, float], None] | None = None
    started: dict[str, float] = field(default_factory=dict)

    def held(self, loop: str) -> bool:
        """True when this script holds ``loop``'s resources in progress or makes them fail."""
        polls = {"copy": self.copy_polls, "restore": self.restore_polls, "delete": self.delete_polls}[loop]
        outcome = {"copy": self.copy_outcome, "restore": self.restore_outcome}.get(loop, "available")
        return bool(polls) or outcome != "available"

    def poll(self, loop: str) -> int:
        """How many polls' worth of progress ``loop`` has made (clock mode: time since it started)."""
        if self.clock is None:
            return self.polls[loop]
        begun = self.started.get(loop)
        if begun is None:
            return 0
        return int((self.clock() - begun) / self.seconds_per_poll)

    def resources_of(self, loop: str) -> list[tuple[str, str, str, str]]:
        """(kind, region, identifier, message) of each resource of ``loop`` this run made or deleted."""
        outcome = {"copy": self.copy_outcome, "restore": self.restore_outcome}.get(loop, "available")
        failed = outcome != "available"
        if loop == "copy":
            message = "DB cluster snapshot copy failed" if failed else "Finished DB cluster snapshot copy"
            return [("cluster-snapshot", r, i, message) for r, i in sorted(self.copies)]
        if loop == "restore":
            message = "DB cluster restore failed" if failed else "DB cluster created"
            clusters = [("cluster", r, i, message) for r, i in sorted(self.restored_clusters)]
            made = sorted(self.restored_instances)
            instances = [("instance", r, i, "DB instance created") for r, i in made]
            return clusters + instances
        return [("cluster", r, i, "DB cluster deleted") for r, i in sorted(self.deleted_clusters)]

    def finishes_at(self, loop: str) -> float | None:
        """Rehearsal time the loop's resources finish (clock mode, once it started)."""
        begun = self.started.get(loop)
        if begun is None or self.clock is None:
            return None
        polls = {"copy": self.copy_polls, "restore": self.restore_polls, "delete": self.delete_polls}[loop]
        return begun + (polls + 1) * self.seconds_per_poll

    @property
    def active(self) -> bool:
        """False when the script changes nothing (moto's states as they are)."""
        return bool(
            self.copy_polls
            or self.restore_polls
            or self.copy_outcome != "available"
            or self.restore_outcome != "available"
        )

    def register(self, add_hook: Callable[[str, Any], None]) -> None:
        """Install on the dispatcher's clients."""
        add_hook("after-call.rds.CopyDBClusterSnapshot", self._copied)
        add_hook("after-call.rds.DescribeDBClusterSnapshots", self._describe_snapshots)
        add_hook("after-call.rds.RestoreDBClusterFromSnapshot", self._restored)
        add_hook("after-call.rds.RestoreDBClusterToPointInTime", self._restored)
        add_hook("after-call.rds.CreateDBInstance", self._instance_created)
        add_hook("after-call.rds.DescribeDBClusters", self._describe_clusters)
        add_hook("after-call.rds.DescribeDBInstances", self._describe_instances)
        add_hook("after-call.rds.DeleteDBCluster", self._deleted)
        add_hook("before-call.rds.DescribeDBClusters", self._still_deleting)

    def step_invoked(self, event: dict[str, Any]) -> None:
        """Count polls (called by the Lambda bridge before each invocation)."""
        for loop, check in POLL_CHECKS.items():
            if event.get("step") in (check, POLL_AWAITS[loop]):
                self.polls[loop] += 1
        if event.get("step") == SHARE_STEPS[1]:
            self.polls["share"] = self.polls.get("share", 0) + 1

    def step_returned(self, step: str | None) -> None:
        """Clock mode: a loop's time starts when its start step has returned (called by the bridge).

        Not when it is invoked: on a slow machine the start step alone could outlast a short held
        time, and the loop's first look would find the work already done.
        """
        for loop, start in POLL_STARTS.items():
            if self.clock is not None and step == start and loop not in self.started:
                self.started[loop] = self.clock()
                finish = self.finishes_at(loop)
                if self.on_loop_started is not None and finish is not None and self.held(loop):
                    self.on_loop_started(loop, finish)

    def _deleted(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        cluster = parsed.get("DBCluster")
        if not cluster or self.current_step() not in DELETE_STEPS or http_response.status_code >= 300:
            return
        key = (context.get("client_region") or "", cluster["DBClusterIdentifier"].lower())
        self.deleted_clusters[key] = {**cluster, "Status": "deleting", "DBClusterMembers": []}

    def _still_deleting(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
        if self.current_step() not in DELETE_STEPS or self.poll("delete") > self.delete_polls:
            return None
        body = params.get("body")
        if not isinstance(body, dict):
            return None
        cluster_id = str(body.get("DBClusterIdentifier", "")).lower()
        described = self.deleted_clusters.get((context.get("client_region") or "", cluster_id))
        if described is None:
            return None
        from botocore.awsrequest import AWSResponse, HTTPHeaders

        response = AWSResponse(params.get("url", ""), 200, HTTPHeaders(), _RawBody(b""))
        return response, {"DBClusters": [dict(described)], "ResponseMetadata": {"HTTPStatusCode": 200}}

    def _copy_state(self) -> tuple[str, int] | None:
        step = self.current_step()
        if step not in COPY_STEPS and step not in SHARE_STEPS:
            return None
        poll = self.poll("copy") if step in COPY_STEPS else self.polls.get("share", 0)
        if self.copy_polls and poll <= self.copy_polls:
            return "copying", (100 * poll) // (self.copy_polls + 1)
        if self.copy_outcome != "available":
            return self.copy_outcome, (100 * self.copy_polls) // (self.copy_polls + 1)
        return None

    def _restore_state(self) -> str | None:
        if self.current_step() not in RESTORE_STEPS:
            return None
        if self.restore_polls and self.poll("restore") <= self.restore_polls:
            return "creating"
        if self.restore_outcome != "available":
            return self.restore_outcome
        return None

    def _copied(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        snapshot = parsed.get("DBClusterSnapshot")
        if not snapshot:
            return
        self.copies.add((context.get("client_region") or "", snapshot["DBClusterSnapshotIdentifier"].lower()))
        state = self._copy_state()
        if state is not None:
            snapshot["Status"], snapshot["PercentProgress"] = state

    def _describe_snapshots(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        state = self._copy_state()
        if state is None:
            return
        region = context.get("client_region") or ""
        for snapshot in parsed.get("DBClusterSnapshots", []):
            if (region, snapshot["DBClusterSnapshotIdentifier"].lower()) in self.copies:
                snapshot["Status"], snapshot["PercentProgress"] = state

    def _restored(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        cluster = parsed.get("DBCluster")
        if not cluster:
            return
        self.restored_clusters.add(
            (context.get("client_region") or "", cluster["DBClusterIdentifier"].lower())
        )
        state = self._restore_state()
        if state is not None:
            cluster["Status"] = state

    def _instance_created(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        instance = parsed.get("DBInstance")
        if not instance:
            return
        region = context.get("client_region") or ""
        if (region, str(instance.get("DBClusterIdentifier", "")).lower()) in self.restored_clusters:
            self.restored_instances.add((region, instance["DBInstanceIdentifier"].lower()))
            if self._restore_state() is not None:
                instance["DBInstanceStatus"] = "creating"

    def _describe_clusters(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        state = self._restore_state()
        if state is None:
            return
        region = context.get("client_region") or ""
        for cluster in parsed.get("DBClusters", []):
            if (region, cluster["DBClusterIdentifier"].lower()) in self.restored_clusters:
                cluster["Status"] = state

    def _describe_instances(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        state = self._restore_state()
        if state is None:
            return
        region = context.get("client_region") or ""
        for instance in parsed.get("DBInstances", []):
            if (region, instance["DBInstanceIdentifier"].lower()) in self.restored_instances:
                # A failed restore is the cluster's state; its instances just never became ready.
                instance["DBInstanceStatus"] = "creating" if state in ("creating", "failed") else state


def parse_polls(text: str) -> dict[str, int]:
    """``copy=N,restore=N,delete=N`` -> {"copy": N, "restore": N, "delete": N}."""
    result: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in POLL_CHECKS or not value.isdigit() or int(value) > 1000:
            raise ScenarioError(
                f"--polls {text!r}: expected copy=N,restore=N,delete=N (any of them) with N from 0 to 1000"
            )
        result[name] = int(value)
    return result


def parse_outcome(text: str) -> dict[str, str]:
    """``copy=failed`` / ``restore=failed`` (or another final restore status)."""
    result: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        allowed = {"copy": COPY_OUTCOMES, "restore": RESTORE_OUTCOMES}.get(name)
        if allowed is None or value not in allowed:
            raise ScenarioError(
                f"--outcome {text!r}: expected copy=({'|'.join(COPY_OUTCOMES)}) or "
                f"restore=({'|'.join(RESTORE_OUTCOMES)})"
            )
        result[name] = value
    return result


__all__ = [
    "CallRecorder",
    "Fault",
    "FaultInjector",
    "ProgressScript",
    "ScenarioError",
    "parse_fault",
    "parse_outcome",
    "parse_polls",
]
