"""The fault matrix: every AWS operation the pipeline calls, failing with every class of error.

The operations are not listed by hand: they are read from a clean rehearsal's ``aws_calls``.
Each class of error becomes the error code AWS would use for that operation, taken from
botocore's model of the operation (its declared errors) where it declares one:

- transient (injected a bounded number of times, more than botocore's own retries, so the state
  machine's Retry has to act too): throttling, a 5xx;
- permanent (injected on every call): access denied, not found, invalid state, already exists,
  quota exceeded.

A transient case must end SUCCEEDED, refreshed, with one success notification and no lock. A
permanent case must end FAILED with exactly one failure notification, the lock released, the
state item FAILED, a complete audit trail, the target cluster intact (swap strategy) and nothing
the tool made left behind. Copies are not orphans: the product keeps every copy it made after a
failure (``steps.handle_failure.cleanup`` never deletes snapshots); each carries the managed, operation,
source-snapshot and target tags, so the next refresh of the target reuses it and
``archive_snapshot``'s retention deletes it in time. Final snapshots of deleted clusters are
backups, kept on purpose.

Some calls are optional by design: ``rds.ListTagsForResource`` reads the source snapshot's tags
only to copy them onto the copy (another account's snapshot's tags cannot be read at all), so
the refresh goes on without them. A permanent error there ends SUCCEEDED, like a transient one.
``dynamodb.DeleteItem`` only releases the target's lock, after the success was published, and a
loop's one-check-at-a-time hold, which expires by itself: a permanent error there ends SUCCEEDED
too, with the lock left held and reported (never a FAILED message after the SUCCEEDED one: an
execution sends exactly one).

The retry dimension: a permanent fault fails the first execution, then ``aurora-restore retry``
runs the operation again as a new execution in the world the first left. Either the retry meets
the same fault and must fail again, with exactly one FAILED message of its own, the lock
released and nothing it made left behind; or the fault is gone and the retry must succeed, with
exactly one SUCCEEDED message, the target refreshed and the state item SUCCEEDED.

Where a fault takes away the very thing an expectation needs (publishing when ``sns.Publish``
always fails, writing the state item when ``dynamodb.UpdateItem`` does...) that expectation is
waived for the case and the waiver is listed in the summary.

Run as a module to rewrite ``docs/fault-matrix.md`` from an exhaustive run:
``python -m tests.e2e.fault_matrix``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispatcher.aws import THROTTLING_CODES, TRANSIENT_CODES
from refresh.request import MANAGED_TAG, OPERATION_TAG, RestoreRequest

#: Calls the pipeline can do without (see the module doc): their permanent errors end SUCCEEDED.
OPTIONAL = {("rds", "ListTagsForResource"), ("dynamodb", "DeleteItem")}
#: What the retry of a failed first run meets: the same fault again, or none.
RETRY_FAILS, RETRY_SUCCEEDS = "fails", "succeeds"
RETRY_OUTCOMES = (RETRY_FAILS, RETRY_SUCCEEDS)
#: The sample's retry runs: (operation, what the retry meets), when the pipeline calls it.
SAMPLE_RETRIES = (
    (("rds", "RestoreDBClusterFromSnapshot"), RETRY_SUCCEEDS),
    (("rds", "CreateDBInstance"), RETRY_FAILS),
)
TRANSIENT = ("throttling", "5xx")
PERMANENT = ("access denied", "not found", "invalid state", "already exists", "quota exceeded")
CLASSES = TRANSIENT + PERMANENT
#: botocore's attempts per call in the dispatcher's clients (``dispatcher.aws.Clients``: the first
#: and 5 retries). A transient fault injected this many times fails every attempt of one
#: invocation, so it reaches the state machine's Retry, and the next invocation gets through.
BOTOCORE_ATTEMPTS = 1 + 5
TRANSIENT_TIMES = BOTOCORE_ATTEMPTS
#: In a storm (every operation at once) each call fails this many times, inside botocore's own
#: budget: with every call failing all its attempts, one state needs one Step Functions retry per
#: distinct operation it calls, more than the definition's 5, and the outcome would hang on the
#: timing of the polls (seen in CI: the old cluster's deletion ran out of retries after the swap).
#: The single-operation runs above are the ones that exhaust botocore and reach the Retry.
STORM_TRANSIENT_TIMES = 2
SOURCE_SNAPSHOT_TAG = "aurora-restore:source-snapshot"
TARGET_TAG = "aurora-restore:target"
#: Loops that can never finish (a fault that makes every poll fail the same way) end in PollTimeout
#: after this long instead of the production default of a day; a clean rehearsal finishes well within.
MAX_WAIT_SECONDS = 20
#: The rehearsal options every case runs with.
OPTIONS: dict[str, Any] = {
    "settings": {
        "AURORA_RESTORE_COPY_MAX_WAIT_SECONDS": str(MAX_WAIT_SECONDS),
        "AURORA_RESTORE_RESTORE_MAX_WAIT_SECONDS": str(MAX_WAIT_SECONDS),
    },
    "timeout_seconds": 120,
}
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "fault-matrix.md"

#: Codes tried first for a class, most telling first (when the operation declares them).
PREFERRED = {
    "not found": (
        "DBClusterNotFoundFault",
        "DBClusterSnapshotNotFoundFault",
        "DBInstanceNotFound",
        "ResourceNotFoundException",
        "NotFoundException",
        "NotFound",
    ),
    "invalid state": (
        "InvalidDBClusterStateFault",
        "InvalidDBClusterSnapshotStateFault",
        "InvalidDBInstanceState",
        "KMSInvalidStateException",
        "KMSInvalidState",
        "InvalidRequestException",
        "ResourceInUseException",
    ),
    "already exists": (
        "DBClusterAlreadyExistsFault",
        "DBClusterSnapshotAlreadyExistsFault",
        "DBInstanceAlreadyExists",
        "AlreadyExistsException",
        "ResourceExistsException",
    ),
    "quota exceeded": (
        "SnapshotQuotaExceeded",
        "DBClusterQuotaExceededFault",
        "InstanceQuotaExceeded",
        "StorageQuotaExceeded",
        "ItemCollectionSizeLimitExceededException",
    ),
}
#: What a class is called in a code when no preferred code fits.
KEYWORDS = {
    "not found": ("NotFound",),
    "invalid state": ("InvalidState", "State", "Disabled"),
    "already exists": ("AlreadyExists", "Exists"),
    "quota exceeded": ("QuotaExceeded", "LimitExceeded"),
}


@dataclass(frozen=True)
class Case:
    """One AWS operation failing with one class of error."""

    service: str
    operation: str
    kind: str
    code: str

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT

    @property
    def must_succeed(self) -> bool:
        """Transient errors, and any error of an optional call, must not fail the refresh."""
        return self.transient or (self.service, self.operation) in OPTIONAL

    @property
    def fault(self) -> str:
        """The rehearsal's --fault spec."""
        return self.fault_spec(TRANSIENT_TIMES)

    def fault_spec(self, transient_times: int) -> str:
        """The --fault spec with transient errors injected ``transient_times`` times."""
        times = f"*{transient_times}" if self.transient else ""
        return f"{self.service}.{self.operation}={self.code}{times}"

    @property
    def name(self) -> str:
        return f"{self.service}.{self.operation} {self.kind} ({self.code})"


@dataclass(frozen=True)
class Run:
    """One rehearsal: one case, or one class of error on every operation at once.

    With ``retry`` set, the operation is retried after the first execution fails: the retry meets
    the same faults (``fails``) or none (``succeeds``).
    """

    cases: tuple[Case, ...]
    retry: str | None = None

    @property
    def retry_faults(self) -> list[str]:
        """The retry's --fault specs."""
        return self.faults if self.retry == RETRY_FAILS else []

    @property
    def kind(self) -> str:
        return self.cases[0].kind

    @property
    def transient(self) -> bool:
        return all(case.transient for case in self.cases)

    @property
    def must_succeed(self) -> bool:
        return all(case.must_succeed for case in self.cases)

    @property
    def faults(self) -> list[str]:
        if len(self.cases) == 1:
            return [self.cases[0].fault]
        return [case.fault_spec(STORM_TRANSIENT_TIMES) for case in self.cases]

    @property
    def operation(self) -> str:
        """``service.Operation``, or how many operations fail at once."""
        if len(self.cases) == 1:
            return f"{self.cases[0].service}.{self.cases[0].operation}"
        return f"all {len(self.cases)} operations at once"

    @property
    def code(self) -> str:
        codes = sorted({case.code for case in self.cases})
        return codes[0] if len(codes) == 1 else ", ".join(codes)

    @property
    def name(self) -> str:
        retry = f", retry {self.retry}" if self.retry else ""
        return f"{self.operation} {self.kind} ({self.code}){retry}"


@dataclass
class Outcome:
    """What one run did and what was wrong with it."""

    run: Run
    status: str
    problems: list[str]
    waived: list[str]
    seconds: float
    failed_step: str | None = None
    injected: int = 0
    #: The retry's status and notification statuses, for a run with a retry.
    retry_status: str | None = None
    retry_notifications: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.problems


# -- building the cases ----------------------------------------------------------------------------
def operations(aws_calls: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """Every (service, operation) a rehearsal's steps called, sorted."""
    return sorted({(str(c["service"]), str(c["operation"])) for c in aws_calls})


def _code(shape: Any) -> str:
    return str(shape.metadata.get("error", {}).get("code") or shape.name)


def error_code(service: str, operation: str, kind: str) -> str:
    """The error code AWS would answer ``operation`` with for ``kind``, from botocore's model."""
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    query = model.protocol in ("query", "ec2", "rest-xml")
    if kind == "throttling":
        return "Throttling" if query else "ThrottlingException"
    if kind == "5xx":
        return "ServiceUnavailable"
    if kind == "access denied":
        # SNS answers a denied call with AuthorizationError; the other query and JSON services so.
        if service == "sns":
            return "AuthorizationError"
        return "AccessDenied" if query else "AccessDeniedException"
    declared = [_code(e) for e in model.operation_model(operation).error_shapes]
    everywhere = [_code(e) for e in model.error_shapes]
    # A permanent class must not be a code the product (rightly) treats as transient.
    for pool in (declared, everywhere):
        usable = [c for c in pool if c not in THROTTLING_CODES and c not in TRANSIENT_CODES]
        for preferred in PREFERRED[kind]:
            if preferred in usable:
                return preferred
        for keyword in KEYWORDS[kind]:
            found = [c for c in usable if keyword in c]
            if found:
                return found[0]
    return {"not found": "NotFound", "invalid state": "InvalidState", "already exists": "AlreadyExists"}.get(
        kind, "LimitExceeded"
    )


def cases(ops: Iterable[tuple[str, str]], kinds: Iterable[str] = CLASSES) -> list[Run]:
    """Every operation x every class, one run each (the exhaustive matrix)."""
    wanted = list(kinds)
    return [Run((Case(s, o, k, error_code(s, o, k)),)) for s, o in ops for k in wanted]


def sample(ops: list[tuple[str, str]]) -> list[Run]:
    """The normal run's sample: every operation once with a permanent class (the classes in turn,
    so each appears), and each transient class on every operation at once (one run per class:
    every call fails all its botocore attempts once before it goes through)."""
    runs = []
    for index, (service, operation) in enumerate(ops):
        kind = PERMANENT[index % len(PERMANENT)]
        runs.append(Run((Case(service, operation, kind, error_code(service, operation, kind)),)))
    for kind in TRANSIENT:
        runs.append(Run(tuple(Case(s, o, kind, error_code(s, o, kind)) for s, o in ops)))
    for op, retry in SAMPLE_RETRIES:
        if op in ops:
            runs.append(_retry_run(op, PERMANENT[0], retry))
    return runs


def _retry_run(op: tuple[str, str], kind: str, retry: str) -> Run:
    service, operation = op
    return Run((Case(service, operation, kind, error_code(service, operation, kind)),), retry=retry)


def retry_cases(ops: Iterable[tuple[str, str]]) -> list[Run]:
    """The retry dimension, exhaustively: every operation whose permanent error fails the first run
    (access denied, the class every operation declares), with the retry failing and succeeding."""
    return [
        _retry_run(op, PERMANENT[0], retry) for op in ops if op not in OPTIONAL for retry in RETRY_OUTCOMES
    ]


# -- judging one case ------------------------------------------------------------------------------
def _clusters(world: dict[str, Any], region: str) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in world["clusters"] if c["region"] == region}


def _snapshots(world: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["region"], s["id"]): s for s in world["snapshots"]}


def _text(value: Any) -> str:
    return json.dumps(value, default=str)


def judge(run: Run, report: Any, request: RestoreRequest) -> tuple[list[str], list[str]]:
    """(problems, waived expectations) of one run's report."""
    problems: list[str] = []
    waived: list[str] = []
    fault = run.operation
    region, target = request.target_region, request.target_cluster_id
    before, after = _clusters(report.world_before, region), _clusters(report.world_after, region)
    statuses = [n["attributes"].get("status") for n in report.notifications]

    def expect(condition: bool, problem: str, *, waive_for: tuple[str, ...] = ()) -> None:
        if condition:
            return
        if fault in waive_for:
            waived.append(problem)
        else:
            problems.append(problem)

    # The environment: a cluster under the target's name, available.
    original = before.get(target)
    now = after.get(target)
    expect(now is not None, f"no cluster named {target} after the run")
    if now is not None:
        expect(now["status"] == "available", f"{target} is {now['status']} after the run")

    if run.must_succeed:
        expect(report.status == "SUCCEEDED", f"ended {report.status}, not SUCCEEDED ({_error(report)})")
        expect(statuses == ["SUCCEEDED"], f"notifications {statuses}, expected one SUCCEEDED")
        if now is not None:
            expect(
                now["tags"].get(OPERATION_TAG) == request.operation_id,
                f"{target} was not refreshed by this run",
            )
    else:
        expect(report.status == "FAILED", f"ended {report.status}, not FAILED")
        item = report.state_item or {}
        expect(
            statuses == ["FAILED"],
            f"notifications {statuses}, expected exactly one FAILED",
            waive_for=("sns.Publish",),
        )
        expect(
            item.get("status") == "FAILED",
            f"state item is {item.get('status')}, not FAILED",
            waive_for=("dynamodb.UpdateItem", "dynamodb.PutItem", "dynamodb.GetItem"),
        )
        problem = _audit_gaps(report.audit)
        expect(not problem, problem, waive_for=("dynamodb.PutItem",))
        # Swap: the original target keeps its name until the new cluster has taken it, and is
        # deleted only after it was renamed away (the swap's last phase), never replaced in place.
        if original is not None and now is not None:
            if now["tags"].get(OPERATION_TAG) != request.operation_id:
                expect(
                    now["instances"] == original["instances"] and now["tags"] == original["tags"],
                    f"{target} is not the original cluster any more",
                )
            else:
                expect(
                    _retired(report, target, original, after),
                    f"{target} was replaced without the original being renamed away first",
                )
    holders = sorted(str(lock.get("lock_owner")) for lock in report.locks)
    expect(not holders, f"lock still held by {', '.join(holders)}", waive_for=("dynamodb.DeleteItem",))

    # Nothing the tool made left behind (or, when the fault stopped the clean-up, named in the report).
    told = _text(report.notifications)
    for cluster_id, cluster in after.items():
        if cluster_id in before or cluster_id == target or cluster["status"] == "deleting":
            continue
        if cluster_id in told and not run.must_succeed:
            waived.append(f"cluster {cluster_id} left behind, named in the failure notification")
            continue
        problems.append(f"cluster {cluster_id} ({cluster['status']}) left behind")
    old_snapshots = _snapshots(report.world_before)
    for key, snapshot in _snapshots(report.world_after).items():
        if key in old_snapshots or snapshot["type"] == "automated":
            continue
        tags = snapshot["tags"]
        if tags.get(MANAGED_TAG) == "true" and tags.get(SOURCE_SNAPSHOT_TAG) and tags.get(TARGET_TAG):
            continue  # a copy, kept for reuse and retention
        if "-final-" in snapshot["id"] and snapshot.get("cluster") not in after:
            continue  # the final snapshot of a cluster this run deleted
        problems.append(
            f"snapshot {snapshot['id']} in {snapshot['region']} left behind, untagged for retention"
        )
    return problems, waived


def judge_retry(run: Run, report: Any, request: RestoreRequest) -> tuple[list[str], list[str]]:
    """(problems, waived expectations) of the retry's execution, in the world the first one left."""
    problems: list[str] = []
    waived: list[str] = []
    fault = run.operation
    retry = report.retry
    if retry is None:
        return ["no retry ran"], waived
    region, target = request.target_region, request.target_cluster_id
    before, after = _clusters(report.world_before, region), _clusters(retry.world_after, region)
    statuses = [n["attributes"].get("status") for n in retry.notifications]
    item = retry.state_item or {}

    def expect(condition: bool, problem: str, *, waive_for: tuple[str, ...] = ()) -> None:
        if condition:
            return
        if fault in waive_for and run.retry == RETRY_FAILS:
            waived.append(f"retry: {problem}")
        else:
            problems.append(f"retry: {problem}")

    now = after.get(target)
    expect(
        now is not None and now["status"] == "available", f"{target} missing or not available after the retry"
    )
    if run.retry == RETRY_SUCCEEDS:
        expect(retry.status == "SUCCEEDED", f"ended {retry.status}, not SUCCEEDED ({_error(retry)})")
        expect(statuses == ["SUCCEEDED"], f"notifications {statuses}, expected one SUCCEEDED")
        expect(item.get("status") == "SUCCEEDED", f"state item is {item.get('status')}, not SUCCEEDED")
        expect("error" not in item, "the state item still carries the first run's error")
        if now is not None:
            expect(now["tags"].get(OPERATION_TAG) == request.operation_id, f"{target} was not refreshed")
    else:
        expect(retry.status == "FAILED", f"ended {retry.status}, not FAILED")
        expect(
            statuses == ["FAILED"],
            f"notifications {statuses}, expected exactly one FAILED of its own",
            waive_for=("sns.Publish",),
        )
        about = [
            n["message"].get("execution_id") for n in retry.notifications if isinstance(n["message"], dict)
        ]
        expect(
            all(arn == retry.execution_arn for arn in about),
            f"its message is about {about}, not {retry.execution_arn}",
        )
        expect(
            item.get("status") == "FAILED",
            f"state item is {item.get('status')}, not FAILED",
            waive_for=("dynamodb.UpdateItem", "dynamodb.PutItem", "dynamodb.GetItem"),
        )
    holders = sorted(str(lock.get("lock_owner")) for lock in retry.locks)
    expect(not holders, f"lock still held by {', '.join(holders)}", waive_for=("dynamodb.DeleteItem",))
    told = _text(retry.notifications)
    for cluster_id, cluster in after.items():
        if cluster_id in before or cluster_id == target or cluster["status"] == "deleting":
            continue
        if cluster_id in told and run.retry == RETRY_FAILS:
            waived.append(f"retry: cluster {cluster_id} left behind, named in its failure notification")
            continue
        problems.append(f"retry: cluster {cluster_id} ({cluster['status']}) left behind")
    return problems, waived


def _retired(report: Any, target: str, original: dict[str, Any], after: dict[str, Any]) -> bool:
    """True when the original target was renamed away (and is still there, or was deleted after)."""
    if any(c["instances"] == original["instances"] and c["id"] != target for c in after.values()):
        return True
    return any(
        call["operation"] == "ModifyDBCluster"
        and str(call["params"].get("DBClusterIdentifier", "")).lower() == target.lower()
        and call["params"].get("NewDBClusterIdentifier")
        and not call.get("error")
        for call in report.aws_calls
    )


def _failed_step(report: Any) -> str | None:
    """The failed step the failure notification names (the state item may be unreadable)."""
    for notification in report.notifications:
        message = notification.get("message")
        if isinstance(message, dict) and message.get("status") == "FAILED":
            step = message.get("failed_step")
            return str(step) if step else None
    return None


def _error(report: Any) -> str:
    error = report.error or {}
    return f"{error.get('error', error.get('Error', ''))}: {str(error.get('cause', error.get('Cause', '')))[:300]}"


def _audit_gaps(audit: list[dict[str, Any]]) -> str:
    """'' when every started step has an outcome and the failure handler finished; else what is missing."""
    open_steps: dict[str, int] = {}
    for event in audit:
        step = str(event.get("step", ""))
        if event.get("event") == "started":
            open_steps[step] = open_steps.get(step, 0) + 1
        elif event.get("event") in ("succeeded", "failed"):
            open_steps[step] = open_steps.get(step, 0) - 1
    unfinished = sorted(step for step, count in open_steps.items() if count > 0)
    handled = any(e.get("step") == "handle_failure" and e.get("event") == "succeeded" for e in audit)
    gaps = []
    if unfinished:
        gaps.append(f"steps started without an outcome: {unfinished}")
    if not handled:
        gaps.append("no handle_failure success on the audit trail")
    return "; ".join(gaps)


# -- running -----------------------------------------------------------------------------------------
def run_one(run: Run, rehearse: Callable[..., Any], raw_input: dict[str, Any], world: Any) -> Outcome:
    """One rehearsal with the run's faults."""
    from aurora_restore.simulate.hooks import parse_fault
    from aurora_restore.simulate.rehearsal import RetryOptions

    request = RestoreRequest.from_event(raw_input)
    started = time.monotonic()
    options: dict[str, Any] = dict(OPTIONS)
    if run.retry is not None:
        options["retry"] = RetryOptions(faults=[parse_fault(f) for f in run.retry_faults])
    report = rehearse(raw_input, world=world, faults=[parse_fault(f) for f in run.faults], **options)
    problems, waived = judge(run, report, request)
    if run.retry is not None:
        more_problems, more_waived = judge_retry(run, report, request)
        problems += more_problems
        waived += more_waived
    failed_step = ((report.state_item or {}).get("error") or {}).get("step") or _failed_step(report)
    injected = {str(f["fault"]): int(f.get("injected", 0)) for f in report.faults}
    never = sorted(spec for spec, count in injected.items() if count == 0)
    if never:
        problems.append(f"never injected (the operation was not called): {never}")
    retry = report.retry
    return Outcome(
        run,
        report.status,
        problems,
        waived,
        time.monotonic() - started,
        failed_step,
        sum(injected.values()),
        retry_status=retry.status if retry is not None else None,
        retry_notifications=tuple(
            str(n["attributes"].get("status")) for n in (retry.notifications if retry is not None else [])
        ),
    )


def summary(outcomes: list[Outcome], *, title: str) -> str:
    """Markdown: the counts and one row per case; runs with a retry in a table of their own."""
    plain = [o for o in outcomes if o.run.retry is None]
    retried = [o for o in outcomes if o.run.retry is not None]
    parts = [_summary(plain, title=title)] if plain else []
    if retried:
        parts.append(retry_summary(retried, title=f"{title}: retries" if plain else title))
    return "\n".join(parts)


def retry_summary(outcomes: list[Outcome], *, title: str) -> str:
    """Markdown for runs with a retry: how each execution ended and what the retry sent."""
    passed = sum(o.passed for o in outcomes)
    lines = [
        f"### {title}",
        "",
        f"**{len(outcomes)} first-run failures retried, {passed} passed, {len(outcomes) - passed} failed** "
        f"({sum(o.seconds for o in outcomes):.0f} s, both executions).",
        "",
        "| operation | class | code | retry meets | first ended | failed step | retry ended "
        "| retry's notifications | seconds | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        verdict = "pass" if o.passed else "FAIL: " + "; ".join(o.problems)
        if o.waived:
            verdict += " (waived: " + "; ".join(o.waived) + ")"
        meets = "the same fault" if o.run.retry == RETRY_FAILS else "no fault"
        lines.append(
            f"| {o.run.operation} | {o.run.kind} | `{o.run.code}` | {meets} | {o.status} "
            f"| {o.failed_step or '-'} | {o.retry_status} | {', '.join(o.retry_notifications) or 'none'} "
            f"| {o.seconds:.1f} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def _summary(outcomes: list[Outcome], *, title: str) -> str:
    """Markdown: the counts, then one row per case."""
    passed = sum(o.passed for o in outcomes)
    cases_run = sum(len(o.run.cases) for o in outcomes)
    cases_passed = sum(len(o.run.cases) for o in outcomes if o.passed)
    lines = [
        f"### {title}",
        "",
        f"**{cases_run} cases (operation x class) run, {cases_passed} passed, {cases_run - cases_passed} "
        f"failed**, in {len(outcomes)} rehearsals ({passed} passed; {sum(o.seconds for o in outcomes):.0f} s).",
        "",
        "| operation | class | code | injected | ended | failed step | seconds | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        verdict = "pass" if o.passed else "FAIL: " + "; ".join(o.problems)
        if o.waived:
            verdict += " (waived: " + "; ".join(o.waived) + ")"
        lines.append(
            f"| {o.run.operation} | {o.run.kind} | `{o.run.code}` | {o.injected} | {o.status} "
            f"| {o.failed_step or '-'} | {o.seconds:.1f} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


#: A check every copy passes: the gate (RunChecks, its master password read) runs in every case.
GATE_CHECK = {"name": "copy-answers", "sql": "SELECT 1", "rows": 1}


def scenario(seed_input: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The seed's input (swap, existing managed target) with a users spec and a check, and its world."""
    from tests.e2e.conftest import seed_request, with_users

    raw_input, world = with_users(seed_input)
    return seed_request(raw_input, checks=[GATE_CHECK]), world


def clone_scenario() -> tuple[dict[str, Any], Any]:
    """A clone of a live cluster in the same region (the short path: no copy, no archive) over the
    managed target, swap, with a users spec, and its world."""
    from tests.e2e.conftest import with_users

    clone_input = {
        "body": {
            "operation_id": "op-fault-clone",
            "snapshot_id": "clone:orders",
            "source_region": "eu-west-1",
            "target_region": "eu-west-1",
            "target_cluster_id": "orders-staging",
        }
    }
    return with_users(clone_input)


def clone_only(clone_ops: Iterable[tuple[str, str]], snapshot_ops: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The operations only the clone path calls (the rest are the snapshot path's, matrixed there)."""
    seen = set(snapshot_ops)
    return [op for op in clone_ops if op not in seen]


#: Set by :func:`main`: the exhaustive test writes the document there.
DOC_VARIABLE = "AURORA_RESTORE_FAULT_MATRIX_DOC"


#: The document's two tables, each written by its own exhaustive test.
EXHAUSTIVE_TITLE = "Exhaustive run"
RETRY_TITLE = "Exhaustive run: retries"
#: The clone path's own operations (RestoreDBClusterToPointInTime), every class, and retried.
CLONE_TITLE = "Exhaustive run: the clone path"
CLONE_RETRY_TITLE = "Exhaustive run: the clone path, retries"


def intro() -> str:
    """docs/fault-matrix.md up to the tables: what is checked and how to regenerate."""
    return (
        "# Fault matrix\n\n"
        + (__doc__ or "").split("\n\nRun as a module")[0].split("\n", 1)[1].strip()
        + "\n\nThe clone path (``clone:<cluster>``: no copy, no archive, RestoreDBClusterToPointInTime) "
        "has a table of its own for the operations only it calls, each with every class and retried "
        "both ways, on a clone of a same-region cluster over the managed target.\n\n"
        "Regenerate with `python -m tests.e2e.fault_matrix` (the exhaustive runs: every "
        "operation x every class, then the retries, then the clone path; about 9 minutes in all on a "
        "quiet 2-core machine, about 15 on a busy one), or one table only with `python -m "
        "tests.e2e.fault_matrix --only retry` (or `--only classes`, `--only clone`); the normal test "
        "run takes a sample, `tox -e slow` runs everything.\n\n"
    )


def document(outcomes: list[Outcome]) -> str:
    """docs/fault-matrix.md with only the every-operation x every-class table."""
    return intro() + summary(outcomes, title=EXHAUSTIVE_TITLE)


def write_section(path: Path, title: str, table: str) -> None:
    """Rewrite the intro and the ``### title`` table of the document, keeping the other table."""
    old = path.read_text() if path.exists() else ""
    sections: dict[str, str] = {}
    for chunk in old.split("\n### ")[1:]:
        heading = chunk.split("\n", 1)[0].strip()
        sections[heading] = "### " + chunk.rstrip("\n") + "\n"
    sections[title] = table.rstrip("\n") + "\n"
    order = [EXHAUSTIVE_TITLE, RETRY_TITLE, CLONE_TITLE, CLONE_RETRY_TITLE]
    ordered = [sections[t] for t in order if t in sections] + [
        body for heading, body in sections.items() if heading not in order
    ]
    path.write_text(intro() + "\n".join(ordered))


def main(argv: list[str]) -> int:
    """Run the exhaustive tests (pytest, with its fixtures) and have them rewrite docs/fault-matrix.md.

    ``--only retry`` runs the retry table's test only, ``--only classes`` the other one.
    """
    import os

    import pytest

    selection = "exhaustive"
    if argv[:1] == ["--only"] and len(argv) > 1:
        selection = {
            "retry": "exhaustive and retry",
            "classes": "exhaustive and not retry and not clone",
            "clone": "exhaustive and clone",
        }[argv[1]]
        argv = argv[2:]
    os.environ[DOC_VARIABLE] = str(DOC)
    return int(
        pytest.main(
            [
                str(Path(__file__).with_name("test_fault_matrix.py")),
                "-m",
                "slow",
                "-k",
                selection,
                "-q",
                *argv,
            ]
        )
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
