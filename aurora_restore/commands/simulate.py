"""Rehearse a refresh locally: the generated state machine end to end, against moto and a real PostgreSQL.

No AWS account is touched: AWS is moto, in this process; the state machine is exactly the one
the template deploys, run by moto's Step Functions engine; every Task is served by the real
dispatcher and steps; setup_db_users talks to a real PostgreSQL server.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aurora_restore import render

if TYPE_CHECKING:
    from aurora_restore.history import StateRun
    from aurora_restore.simulate.rehearsal import Report

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_MISUSE = 0, 1, 2
#: Operations that only read; the summary lists the others, the run's plan of changes.
READ_PREFIXES = ("Describe", "List", "Get")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The rehearsal's flags."""
    parser.add_argument(
        "--input",
        metavar="FILE",
        help='execution input (the request fields, or wrapped as {"body": {...}}); default: an '
        "encrypted automated snapshot copied across regions over a managed target, shipped as "
        "aurora_restore/examples/default-input.json",
    )
    parser.add_argument(
        "--world",
        metavar="FILE",
        help="what exists before the run (clusters, snapshots, kms_keys, secrets); default: the source "
        "cluster and snapshot the input names, KMS keys, and an existing managed target cluster",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="a PostgreSQL server (with TLS; the URL's role must be a superuser) to stand in for the "
        "restored cluster (default: start an embedded one)",
    )
    parser.add_argument(
        "--database-ca",
        metavar="FILE",
        default="",
        help="CA bundle to verify --database-url's certificate with (default: TLS without verification)",
    )
    parser.add_argument(
        "--polls",
        metavar="copy=N,restore=N",
        default="",
        help="report the copy / the restore in progress for N polls first (delete=N: the target deleted "
        "by the delete-first strategy is still 'deleting' for N polls)",
    )
    parser.add_argument(
        "--outcome",
        metavar="copy=failed|restore=failed",
        default="",
        help="make the copy or the restore end badly (after its --polls)",
    )
    parser.add_argument(
        "--fault",
        metavar="SERVICE.Operation=ErrorCode[*N]",
        action="append",
        default=[],
        help="make that AWS call fail with that error code, the first N times or always; repeatable "
        "(e.g. rds.CopyDBClusterSnapshot=ThrottlingException*2)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON report instead of progress")
    parser.add_argument(
        "--poll-seconds",
        metavar="MIN,MAX",
        default="0,1",
        help="poll bounds the Lambda gets, i.e. how long Wait states last (default 0,1)",
    )
    parser.add_argument(
        "--time-scale",
        metavar="FACTOR",
        type=float,
        default=0.01,
        help="the rehearsal's clock: Wait states, Retry intervals and botocore's backoff last this "
        "fraction of their real time (1 = as in AWS; default 0.01)",
    )
    parser.add_argument(
        "--event-delay",
        metavar="SECONDS",
        type=float,
        default=None,
        help="deliver the RDS events the stack's rule would hand the dispatcher this many seconds of the "
        "rehearsal's clock after each change (default 5). A resource held by --polls N finishes N+1 "
        "poll intervals (30 s, or --poll-seconds MIN when longer) after its loop starts",
    )
    parser.add_argument(
        "--event-loss",
        metavar="FRACTION",
        type=float,
        default=None,
        help="lose this fraction of the RDS events (0 to 1; default 0): with 1 every wait ends by its "
        "own check or its fallback poll",
    )
    parser.add_argument(
        "--timeout", metavar="SECONDS", type=float, default=300.0, help="stop the execution after this long"
    )
    parser.add_argument(
        "--logs", action="store_true", help="also print the Lambda's log lines (JSON) to stderr as they come"
    )
    parser.add_argument(
        "--retry",
        nargs=argparse.REMAINDER,
        metavar="OPTION",
        help="after the first execution ends, run 'aurora-restore retry' of the operation in the same world "
        "(same operation id, a new execution); must come last: the options after it (--fault, --polls, "
        "--outcome) apply to the retry only. The report holds both executions; the exit status is the "
        "retry's",
    )


def _retry_parser() -> argparse.ArgumentParser:
    """The options that may follow --retry: what the retry's execution meets."""
    parser = argparse.ArgumentParser(prog="aurora-restore simulate ... --retry", add_help=False)
    parser.add_argument("--polls", default="")
    parser.add_argument("--outcome", default="")
    parser.add_argument("--fault", action="append", default=[])
    return parser


def build_retry_options(words: list[str]) -> Any:
    """The retry's scenario from the words after --retry; ValueError names what is not allowed."""
    from aurora_restore.simulate.hooks import parse_fault, parse_outcome, parse_polls
    from aurora_restore.simulate.rehearsal import RetryOptions

    parsed, unknown = _retry_parser().parse_known_args(words)
    if unknown:
        raise ValueError(
            f"--retry {' '.join(unknown)}: after --retry only --fault, --polls and --outcome may follow "
            "(they apply to the retry); put the other options before --retry"
        )
    polls = parse_polls(parsed.polls)
    outcome = parse_outcome(parsed.outcome)
    return RetryOptions(
        faults=[parse_fault(spec) for spec in parsed.fault],
        copy_polls=polls.get("copy", 0),
        restore_polls=polls.get("restore", 0),
        delete_polls=polls.get("delete", 0),
        copy_outcome=outcome.get("copy", "available"),
        restore_outcome=outcome.get("restore", "available"),
    )


def _misuse(message: str) -> int:
    print(f"aurora-restore simulate: {message}", file=sys.stderr)
    return EXIT_MISUSE


def read_input(path: str | None) -> Any:
    """The execution input from FILE, or the shipped default input."""
    if path is None:
        shipped = resources.files("aurora_restore").joinpath("examples/default-input.json")
        return json.loads(shipped.read_text())
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"--input {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--input {path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(
            f"--input {path}: nested too deeply to read; a request is a few levels deep"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(
            f"--input {path}: must be a JSON object (the execution input), got {type(value).__name__}"
        )
    return value


def build_options(args: argparse.Namespace) -> Any:
    """Turn the flags into rehearsal options; ValueError / OSError say what is wrong."""
    from aurora_restore.simulate.hooks import parse_fault, parse_outcome, parse_polls
    from aurora_restore.simulate.rehearsal import DEFAULT_EVENT_DELAY_SECONDS, Options
    from aurora_restore.simulate.world import load_world

    raw_input = read_input(args.input)
    world = None
    if args.world:
        try:
            text = Path(args.world).read_text()
        except OSError as exc:
            raise ValueError(f"--world {args.world}: cannot read it ({exc.strerror or exc})") from None
        world = load_world(text, source=f"--world {args.world}")
    polls = parse_polls(args.polls)
    outcome = parse_outcome(args.outcome)
    faults = [parse_fault(spec) for spec in args.fault]
    low, _, high = args.poll_seconds.partition(",")
    if not (low.strip().isdigit() and high.strip().isdigit()) or int(high) < int(low):
        raise ValueError(
            f"--poll-seconds {args.poll_seconds!r}: expected MIN,MAX whole seconds with MIN <= MAX"
        )
    if not 0 < args.time_scale <= 1:
        raise ValueError(f"--time-scale {args.time_scale}: must be more than 0 and at most 1")
    event_delay, event_loss = args.event_delay, args.event_loss
    if event_loss is not None and not 0 <= event_loss <= 1:
        raise ValueError(f"--event-loss {event_loss}: must be a fraction from 0 to 1")
    if event_delay is not None and event_delay < 0:
        raise ValueError(f"--event-delay {event_delay}: must be 0 or more seconds")
    if event_delay is None:
        event_delay = DEFAULT_EVENT_DELAY_SECONDS
    return Options(
        input=raw_input,
        world=world,
        faults=faults,
        copy_polls=polls.get("copy", 0),
        restore_polls=polls.get("restore", 0),
        delete_polls=polls.get("delete", 0),
        copy_outcome=outcome.get("copy", "available"),
        restore_outcome=outcome.get("restore", "available"),
        database_url=args.database_url,
        database_ca_file=args.database_ca,
        poll_min_seconds=int(low),
        poll_max_seconds=int(high),
        time_scale=args.time_scale,
        event_delay_seconds=event_delay,
        event_loss=event_loss or 0.0,
        timeout_seconds=args.timeout,
        log_stream=sys.stderr if args.logs else None,
        retry=build_retry_options(args.retry) if getattr(args, "retry", None) is not None else None,
    )


def run(args: argparse.Namespace) -> int:
    """Run the rehearsal; exit 0 SUCCEEDED, 1 FAILED, 2 misuse."""
    from aurora_restore.simulate.database import DatabaseError
    from aurora_restore.simulate.rehearsal import Rehearsal, RehearsalError
    from aurora_restore.simulate.world import WorldError

    try:
        options = build_options(args)
    except (ValueError, OSError) as exc:
        return _misuse(str(exc))
    rehearsal = Rehearsal(
        options,
        progress=None if args.json else _print_progress,
        on_retry=None if args.json else _print_retry_header,
    )
    if not args.json:
        _print_header(rehearsal)
    try:
        report = rehearsal.run()
    except (RehearsalError, WorldError, DatabaseError) as exc:
        return _misuse(str(exc))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print_summary(report)
        if report.retry is not None:
            print(f"\nThe retry ({report.retry.execution_name}):", end="")
            print_summary(report.retry)
    return EXIT_SUCCEEDED if report.final.status == "SUCCEEDED" else EXIT_FAILED


def _print_header(rehearsal: Any) -> None:
    request = rehearsal.request()
    if request is None:
        print("Rehearsing an input that is not a valid request (the first state will refuse it)")
    else:
        # Without an operation_id in the input, the execution derives one when it runs.
        fields = rehearsal.options.input.get("body", rehearsal.options.input)
        named = fields.get("operation_id") if isinstance(fields, dict) else None
        print(
            f"Rehearsing {named or 'a refresh'}: {request.snapshot_id} ({request.source_region}) -> "
            f"{request.target_cluster_id} ({request.target_region}), strategy {request.strategy}"
        )
    print("AWS is moto in this process; no AWS account is used.\n", flush=True)


def _print_retry_header(name: str) -> None:
    print(f"\nRetrying the operation as execution {name} (aurora-restore retry), in the world left behind\n")


def _print_progress(change: str, run: StateRun) -> None:
    if change == "exited" or run.type == "Fail":
        print(render.state_line(run), flush=True)


def _where(entry: dict[str, Any]) -> str:
    """``eu-west-1``, or ``account 111111111111, eu-west-1`` for another account's resource."""
    return f"account {entry['account']}, {entry['region']}" if entry.get("account") else str(entry["region"])


def _describe_changes(report: Report) -> list[str]:
    before = {(_where(c), c["id"]): c for c in report.world_before["clusters"]}
    after = {(_where(c), c["id"]): c for c in report.world_after["clusters"]}
    lines: list[str] = []
    for key, cluster in after.items():
        old = before.get(key)
        members = ", ".join(cluster["instances"]) or "no instances"
        if old is None:
            lines.append(f"  + cluster {key[1]} ({key[0]}): {cluster['status']}, {members}")
        elif set(old["instances"]) != set(cluster["instances"]) or old["tags"] != cluster["tags"]:
            lines.append(f"  ~ cluster {key[1]} ({key[0]}): replaced; now {cluster['status']}, {members}")
    for key in before.keys() - after.keys():
        lines.append(f"  - cluster {key[1]} ({key[0]}): deleted")
    snaps_before = {(_where(s), s["id"]): s for s in report.world_before["snapshots"]}
    snaps_after = {(_where(s), s["id"]): s for s in report.world_after["snapshots"]}
    for key, snapshot in snaps_after.items():
        if key not in snaps_before:
            lines.append(f"  + snapshot {key[1]} ({key[0]}): {snapshot['status']}")
        elif snapshot.get("shared_with") != snaps_before[key].get("shared_with"):
            lines.append(
                f"  ~ snapshot {key[1]} ({key[0]}): shared with {snapshot.get('shared_with') or 'nobody'}"
            )
    for key in snaps_before.keys() - snaps_after.keys():
        lines.append(f"  - snapshot {key[1]} ({key[0]}): deleted")
    others = sorted(
        {
            str(e["account"])
            for e in report.world_before["clusters"] + report.world_before["snapshots"]
            if e.get("account")
        }
    )
    for account in others:
        if not any(f"account {account}," in line for line in lines):
            lines.append(f"  = account {account}: left as it was (what the refresh made there is gone)")
    return lines or ["  (nothing in RDS changed)"]


def _describe_database(report: Report) -> list[str]:
    results = (report.state_item or {}).get("results") or {}
    users = results.get("setup_db_users")
    if not isinstance(users, dict):
        return []
    lines: list[str] = []
    master = users.get("master_user") or {}
    if master.get("reset"):
        lines.append(
            f"  master password of {master.get('username')} reset ({master.get('call')}); kept in "
            f"{master.get('secret_arn')}"
        )
    for key, what in (
        ("roles_created", "roles created"),
        ("roles_altered", "roles altered"),
        ("roles_disabled", "roles disabled"),
        ("roles_dropped", "roles dropped"),
    ):
        if users.get(key):
            lines.append(f"  {what}: {', '.join(map(str, users[key]))}")
    if users.get("grants"):
        lines.append(f"  grants: {(users.get('counts') or {}).get('grants', len(users['grants']))}")
    scripts = [
        str(script.get("name")) for script in users.get("scripts_run") or [] if isinstance(script, dict)
    ]
    if scripts:
        lines.append(f"  scripts run: {', '.join(scripts)}")
    return lines


def _describe_waits(report: Report) -> list[str]:
    """Dispatcher invocations per poll loop, and (with events) the RDS events and detection latency."""
    rows = [(loop, row) for loop, row in report.loop_invocations.items() if loop != "events"]
    if not rows:
        return []
    lines = ["\nDispatcher invocations in the loops (start + waiting + checks):"]
    for loop, row in rows:
        latency = report.detection_latency.get(loop)
        noticed = f"; noticed {latency:g} s after it finished" if latency is not None else ""
        lines.append(
            f"  {loop:<8} {row['total']} ({row['start']} + {row['waiting']} + {row['checks']}){noticed}"
        )
    events = report.events
    if events:
        lines.append(
            f"  RDS events: {events['sent']} sent, {events['lost']} lost, {events['delivered']} delivered "
            f"after {events['delay_s']:g} s; event step invocations: "
            f"{report.loop_invocations.get('events', {}).get('total', 0)}"
        )
    return lines


def _describe_checks(report: Report) -> list[str]:
    """Each check's result, one line each, from the audit trail (a failed gate has no output)."""
    from refresh.checks import check_line

    runs = [event for event in report.audit if event.get("event") == "checks_run"]
    if not runs:
        return []
    return [f"  {check_line(result)}" for result in runs[-1].get("results") or [] if isinstance(result, dict)]


def print_summary(report: Report) -> None:
    """The human summary after the progress lines."""
    print()
    print(f"{report.status} in {render.seconds(report.duration)}: operation {report.operation_id}")
    if report.error:
        where = f" in {report.error['state']} ({report.error['step']})" if report.error.get("state") else ""
        print(f"  error: {report.error['type']}{where}: {report.error['message']}")
    for notification in report.notifications:
        print(f"  notification: {notification['subject']}")
    if not report.notifications:
        print("  notification: none was published")
    print("\nWhat changed in RDS:")
    for line in _describe_changes(report):
        print(line)
    check_lines = _describe_checks(report)
    if check_lines:
        print("\nChecks on the restored copy (the gate before the swap):")
        for line in check_lines:
            print(line)
    database_lines = _describe_database(report)
    if database_lines:
        print(f"\nWhat changed in the database (PostgreSQL at {report.database.get('endpoint')}):")
        for line in database_lines:
            print(line)
    for line in _describe_waits(report):
        print(line)
    counts: dict[str, int] = {}
    for call in report.aws_calls:
        counts[call["service"]] = counts.get(call["service"], 0) + 1
    by_service = ", ".join(f"{service} {n}" for service, n in sorted(counts.items()))
    print(f"\nAWS calls made by the steps: {len(report.aws_calls)} ({by_service})")
    print("The changes among them, in order (reads and the state/audit tables left out):")
    for call in report.aws_calls:
        if call["service"] == "dynamodb" or call["operation"].startswith(READ_PREFIXES):
            continue
        failed = f"  -> {call['error']}" if call["error"] else ""
        where = f"account {call['account']}, {call['region']}" if call.get("account") else call["region"]
        print(f"  {call['step'] or '':<22} {call['service']}.{call['operation']} ({where}){failed}")
    injected = [f for f in report.faults if f["injected"]]
    if injected:
        print("Faults injected: " + ", ".join(f"{f['fault']} x{f['injected']}" for f in injected))
    print("\nThe full report (states, state item, audit trail, every call's parameters): add --json")
