"""run_checks: the validation gate; the restored copy replaces the target only if it passes its checks.

After setup_db_users (users, grants and scripts applied, the master password reset) and before
the swap, this step runs each of the request's ``checks`` (refresh/checks.py, docs/checks.md) on
the restored cluster, as the master user, over the same TLS connection setup_db_users uses:

- each in its own read-only transaction (``BEGIN READ ONLY``) with ``SET LOCAL statement_timeout``,
  sent as one prepared statement, so a check cannot write, cannot run a second statement (no
  ``COMMIT; DELETE ...``) and cannot run past its timeout;
- a row-count check fetches at most its bound plus one row and counts them; a value check reads
  one row of one column and compares that one value. Rows are never kept, logged or reported: a
  result says what was expected, what was seen (a row count, or the compared value cut to
  :data:`SEEN_MAX_CHARS` characters, hidden when it looks like a secret), and how long it took.

A check that fails, tries to write, runs past its timeout, names a missing database or meets an
SQL error is a failed check: every check runs, each result goes to the audit trail
(``checks_run``), the execution's record on the state item (for ``aurora-restore status``) and
the output, and the step raises ``ChecksFailed`` naming the failed ones; the failure handler then
removes the restored cluster (or keeps it, tagged, with ``keep_failed_restore``). A connection
lost while a check runs is ``Retryable``: the checks only read, so running them again is harmless.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from dispatcher import tracing
from dispatcher.errors import Retryable, ValidationError
from dispatcher.logs import looks_like_secret
from dispatcher.registry import Step, register
from refresh.checks import (
    SHOWN_VALUE_CHARS,
    VALUE_EXPECTATIONS,
    check_line,
    describe_expectation,
    expectation_of,
)
from refresh.errors import ChecksFailed, DatabaseSetupFailed
from refresh.request import request_of
from steps.lib.master_secret import read_master_password
from steps.lib.pg_connect import Endpoint, RetryPolicy, check_ca_bundle, connect, tls_context

if TYPE_CHECKING:
    from collections.abc import Mapping
    from ssl import SSLContext

    from dispatcher.context import StepContext

#: The compared value, as reported: the operator asked to see it, but a notification is no place
#: for a long text.
SEEN_MAX_CHARS = SHOWN_VALUE_CHARS
#: An SQL error's message, as reported (50 results of the longest kind stay near 20 KB).
ERROR_MAX_CHARS = 160
#: PostgreSQL's SQLSTATE classes whose messages may quote a row's value (``invalid input syntax for
#: type integer: "alice@corp.com"``, a key in a unique violation): only the condition is reported.
DATA_CLASSES = ("22", "23")
#: Seconds the client waits beyond a check's statement_timeout before it gives up on the server.
CLIENT_GRACE_SECONDS = 10.0
#: Failed checks the error message names (the caught error travels in the state data, and the
#: notification shows its first 2,000 characters); every result is in the audit trail.
MESSAGE_FAILED_CHECKS = 10
#: SQLSTATEs told apart in the results.
READ_ONLY_TRANSACTION = "25006"
QUERY_CANCELED = "57014"
INVALID_CATALOG_NAME = "3D000"


@register("run_checks", state_name="RunChecks")
class RunChecks(Step):
    """Run the request's checks on the restored cluster; fail with ChecksFailed when any fails."""

    aws_actions = (
        # The master password, from the secret setup_db_users left it in (RDS's or the stack's).
        "secretsmanager:GetSecretValue",
        "kms:Decrypt",
    )
    run_after = "setup_db_users"
    reads = ("request", "users")
    result_key = "checks"
    output_doc = "`ok`, each check's name, expectation, what was seen, duration (never rows), `counts`"
    outputs = ("ok", "results", "counts")
    # The checks only read; a second run finds the same and records it again.
    mutating = False

    def __init__(self) -> None:
        # Replaceable in tests, so connection retries cost no wall-clock time there.
        self.sleep = asyncio.sleep

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Run every check; return the results, or raise ChecksFailed naming the failed checks."""
        request = request_of(ctx)
        users = ctx.input("users")
        cluster_id = users.get("cluster_id")
        if not request.checks:
            return {"cluster_id": cluster_id, "ok": True, "results": [], "counts": _counts([])}
        found = users.get("master_user")
        master: dict[str, Any] = found if isinstance(found, dict) else {}
        host, port = users.get("endpoint"), users.get("port")
        if not isinstance(host, str) or not host or not isinstance(port, int) or not master.get("secret_arn"):
            raise ValidationError(
                "users",
                None,
                "the users step's output must name the endpoint, port and master user secret",
                show_value=False,
            )
        check_ca_bundle(ctx.settings.db_ca_bundle, verify=ctx.settings.db_tls_verify)
        password = read_master_password(ctx, str(master["secret_arn"]))
        results = asyncio.run(
            self._run_all(ctx, host, port, str(master.get("username")), password, request.checks)
        )
        counts = _counts(results)
        failed = [result for result in results if not result["ok"]]
        ctx.store.audit(
            ctx.operation_id,
            "checks_run",
            step=self.name,
            execution_id=ctx.execution_id,
            cluster_id=cluster_id,
            ok=not failed,
            results=results,
        )
        ctx.store.record_execution(ctx.operation_id, ctx.execution_id, checks=results)
        for result in results:
            ctx.log.info("check", line=check_line(result), ok=result["ok"])
        if failed:
            shown = failed[:MESSAGE_FAILED_CHECKS]
            named = "; ".join(f"{r['name']} (expected {r['expected']}, saw {r['seen']})" for r in shown)
            if len(failed) > MESSAGE_FAILED_CHECKS:
                named += f"; and {len(failed) - MESSAGE_FAILED_CHECKS} more (audit event checks_run)"
            raise ChecksFailed(
                f"{len(failed)} of {len(results)} checks failed on the restored cluster {cluster_id}, "
                f"so it does not replace {request.target_cluster_id}: {named}",
                cluster_id=cluster_id,
                failed=[r["name"] for r in failed],
            )
        return {"cluster_id": cluster_id, "ok": True, "results": results, "counts": counts}

    def summarize(self, output: dict[str, Any]) -> str:
        """``3 checks passed on <cluster>``."""
        counts = output.get("counts") or {}
        passed, total = counts.get("ok", 0), counts.get("total", 0)
        return f"{passed} of {total} checks passed on {output.get('cluster_id')}"

    async def _run_all(
        self,
        ctx: StepContext,
        host: str,
        port: int,
        user: str,
        password: str,
        checks: tuple[Mapping[str, Any], ...],
    ) -> list[dict[str, Any]]:
        """Each check in turn, one connection per database (opened when first needed)."""
        context = tls_context(ctx.settings.db_ca_bundle, verify=ctx.settings.db_tls_verify)
        policy = RetryPolicy(
            attempts=ctx.settings.db_connect_attempts, timeout_seconds=ctx.settings.db_connect_timeout_seconds
        )
        connections: dict[str, Any] = {}
        missing: dict[str, str] = {}
        results: list[dict[str, Any]] = []
        async with tracing.subsegment_async("run_checks.database", checks=len(checks)):
            try:
                for check in checks:
                    database = str(check["database"])
                    if database not in connections and database not in missing:
                        opened = await self._open(
                            ctx, Endpoint(host, port, database), user, password, context, policy
                        )
                        if isinstance(opened, str):
                            missing[database] = opened
                        else:
                            connections[database] = opened
                    if database in missing:
                        results.append(_result(check, False, missing[database], 0))
                        continue
                    results.append(await run_check(connections[database], check))
            finally:
                for connection in connections.values():
                    await connection.close(timeout=5)
        return results

    async def _open(
        self,
        ctx: StepContext,
        endpoint: Endpoint,
        user: str,
        password: str,
        context: SSLContext,
        policy: RetryPolicy,
    ) -> Any:
        """A connection to ``endpoint``, or the text a check reports when its database does not exist."""
        try:
            return await connect(
                endpoint,
                user=user,
                password=password,
                context=context,
                policy=policy,
                log=ctx.log,
                sleep=self.sleep,
            )
        except DatabaseSetupFailed as error:
            if error.details.get("sqlstate") == INVALID_CATALOG_NAME:
                return f"database {endpoint.database!r} does not exist on the restored cluster"
            raise


async def run_check(connection: Any, check: Mapping[str, Any]) -> dict[str, Any]:
    """One check in a read-only transaction with its statement timeout; its result, never its rows."""
    import asyncpg

    key, expected = expectation_of(check)
    timeout = int(check["timeout_seconds"])
    started = time.monotonic()
    try:
        async with connection.transaction(readonly=True):
            # SET LOCAL ends with the transaction: the next check starts from the session's default.
            await connection.execute(f"SET LOCAL statement_timeout = {timeout * 1000}")
            cursor = await connection.cursor(check["sql"], timeout=timeout + CLIENT_GRACE_SECONDS)
            limit = _fetch_limit(key, expected)
            rows = await cursor.fetch(limit, timeout=timeout + CLIENT_GRACE_SECONDS)
            if key in VALUE_EXPECTATIONS:
                passed, seen = _compare(key, expected, rows)
            else:
                passed, seen = _count(key, expected, len(rows), limit)
            del rows  # nothing of a row outlives the comparison
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
        if isinstance(exc, asyncpg.InterfaceError) and not connection.is_closed():
            raise
        raise Retryable(
            f"the connection to the restored cluster was lost during check {check['name']!r} "
            f"({type(exc).__name__}); the checks only read, so they run again"
        ) from None
    except asyncio.TimeoutError:
        passed, seen = False, f"no answer within its timeout of {timeout} s (the client gave up)"
    except asyncpg.PostgresError as exc:
        if str(getattr(exc, "sqlstate", "")).startswith("57P"):
            # The server is shutting down or restarting (57P01-57P04): not the check's doing.
            raise Retryable(
                f"the restored cluster ended the session during check {check['name']!r} "
                f"({type(exc).__name__}); the checks only read, so they run again"
            ) from None
        passed, seen = False, describe_sql_error(exc, timeout)
    return _result(check, passed, seen, int((time.monotonic() - started) * 1000))


def describe_sql_error(exc: Exception, timeout: int) -> str:
    """What a failed query did, in words; a data error's message (which may quote a row) is not shown."""
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    message = str(getattr(exc, "message", "") or exc)
    if sqlstate == READ_ONLY_TRANSACTION:
        return f"tried to write, which a check may not: it runs in a read-only transaction ({message})"
    if sqlstate == QUERY_CANCELED:
        return f"ran past its timeout of {timeout} s (statement_timeout) and was cancelled"
    if "multiple commands" in message:
        return "more than one SQL statement; a check is one query"
    condition = type(exc).__name__
    if sqlstate[:2] in DATA_CLASSES:
        return f"SQL error {sqlstate} ({condition}; its message may quote row data and is not shown)"
    return f"SQL error {sqlstate} ({condition}): {_cut(message, ERROR_MAX_CHARS)}"


def _fetch_limit(key: str, expected: Any) -> int:
    """Rows enough to decide: a bound plus one, one to tell "none" from "some", two for one value."""
    if key == "no_rows":
        return 1
    if key == "min_rows":
        return int(expected)
    if key in ("rows", "max_rows"):
        return int(expected) + 1
    return 2


def _count(key: str, expected: Any, fetched: int, limit: int) -> tuple[bool, str]:
    """A row-count expectation against the rows fetched (at most ``limit``)."""
    # Fetching stopped at the limit: there may be more rows than were fetched.
    seen = f"{'at least ' if fetched == limit else ''}{fetched} row{'s' if fetched != 1 else ''}"
    if key == "no_rows":
        return fetched == 0, seen
    if key == "rows":
        return fetched == expected, seen
    if key == "min_rows":
        return fetched >= expected, seen
    return fetched <= expected, seen


def _compare(key: str, expected: Any, rows: list[Any]) -> tuple[bool, str]:
    """A value expectation: exactly one row of one column, its value compared."""
    if not rows:
        return False, "no rows (a compared check returns one row of one value)"
    if len(rows) > 1:
        return False, "more than one row (a compared check returns one row of one value)"
    if len(rows[0]) != 1:
        return False, f"{len(rows[0])} columns (a compared check returns one value)"
    value = rows[0][0]
    seen = _shown(value)
    if key == "equals":
        return _equal(expected, value), seen
    number = _number(value)
    if number is None:
        return False, f"{seen}, which is not a number"
    bound = Decimal(str(expected))
    return (number >= bound if key == "at_least" else number <= bound), seen


def _equal(expected: Any, value: Any) -> bool:
    if expected is None or value is None:
        return expected is None and value is None
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(expected, bool) and isinstance(value, bool) and expected == value
    if isinstance(expected, (int, float)):
        number = _number(value)
        return number is not None and number == Decimal(str(expected))
    return (value if isinstance(value, str) else str(value)) == expected


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _shown(value: Any) -> str:
    """The seen value as reported: cut, and hidden when it looks like a password or a key."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return _cut(str(value), SEEN_MAX_CHARS)
    text = value if isinstance(value, str) else str(value)
    if looks_like_secret(text):
        return "a value that looks like a secret (not shown)"
    return repr(_cut(text, SEEN_MAX_CHARS))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _result(check: Mapping[str, Any], passed: bool, seen: str, duration_ms: int) -> dict[str, Any]:
    return {
        "name": check["name"],
        "database": check["database"],
        "expected": describe_expectation(check),
        "seen": seen,
        "ok": passed,
        "duration_ms": duration_ms,
    }


def _counts(results: list[dict[str, Any]]) -> dict[str, int]:
    passed = sum(1 for result in results if result["ok"])
    return {"total": len(results), "ok": passed, "failed": len(results) - passed}
