"""Connecting to the restored cluster with asyncpg: TLS verified, bounded retries, explicit timeouts.

asyncpg is imported inside the functions only: the handler's cold start must not pay for it.
A freshly restored or renamed cluster refuses connections for a while and its DNS name lags, so
connection errors, "the database system is starting up" and (just after a password change) a
refused password are retried with exponential backoff and jitter, up to
``settings.db_connect_attempts`` attempts of ``settings.db_connect_timeout_seconds`` each.
"""

from __future__ import annotations

import asyncio
import os
import random
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dispatcher.errors import ValidationError
from refresh.errors import DatabaseSetupFailed

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

APPLICATION_NAME = "aurora-restore"


@dataclass(frozen=True)
class Endpoint:
    """Where to connect: the cluster's writer endpoint, or the rehearsal's override."""

    host: str
    port: int
    database: str

    def __str__(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"


#: Stack parameters behind ``AURORA_RESTORE_DB_CA_BUNDLE`` and ``AURORA_RESTORE_DB_TLS_VERIFY``; the
#: errors name them because they are what the operator changes.
CA_BUNDLE_PARAMETER = "DbCaBundle"
TLS_VERIFY_PARAMETER = "DbTlsVerify"
#: Where AWS publishes the bundle that holds every RDS root CA (all regions).
RDS_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
HOW_TO_SHIP = (
    f"build the zip with `python -m infra.package --ca-bundle global-bundle.pem` ({RDS_BUNDLE_URL}) and "
    f"set the stack parameter {CA_BUNDLE_PARAMETER}=/var/task/certs/global-bundle.pem, or set "
    f"{TLS_VERIFY_PARAMETER}=false to connect without verifying the server"
)


def check_ca_bundle(ca_bundle: str, *, verify: bool = True) -> None:
    """Refuse, before anything changes, a configuration that cannot verify the cluster's certificate.

    Verification is on unless the stack turned it off explicitly (``DbTlsVerify=false``); then
    the bundle must be configured and be a file in the function (``/var/task`` is the zip).
    """
    if not verify:
        return
    if not ca_bundle:
        raise ValidationError(
            CA_BUNDLE_PARAMETER,
            ca_bundle,
            f"{TLS_VERIFY_PARAMETER} is true (the default), so the restored cluster's TLS certificate is "
            f"verified and a CA bundle is needed: {HOW_TO_SHIP}",
        )
    if not os.path.isfile(ca_bundle):
        raise ValidationError(
            CA_BUNDLE_PARAMETER,
            ca_bundle,
            f"no such file in the function (AURORA_RESTORE_DB_CA_BUNDLE comes from the stack parameter "
            f"{CA_BUNDLE_PARAMETER}); {HOW_TO_SHIP}",
        )


def tls_context(ca_bundle: str = "", *, verify: bool = True) -> ssl.SSLContext:
    """TLS always; the server's certificate chain and host name verified against ``ca_bundle``.

    ``verify=False`` (the stack's explicit ``DbTlsVerify=false``) is libpq's ``sslmode=require``:
    encrypted, but the server is not authenticated.
    """
    if verify:
        check_ca_bundle(ca_bundle, verify=True)
        try:
            context = ssl.create_default_context(cafile=ca_bundle)
        except ssl.SSLError as exc:
            raise ValidationError(
                CA_BUNDLE_PARAMETER,
                ca_bundle,
                f"the file holds no usable PEM certificate ({exc}); {HOW_TO_SHIP}",
            ) from None
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass
class RetryPolicy:
    """How hard to try: attempts, per-attempt timeout, and the backoff between attempts."""

    attempts: int = 8
    timeout_seconds: float = 10.0
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 20.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): capped, jittered."""
        cap = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))
        return cap / 2 + random.uniform(0, cap / 2)  # noqa: S311 (jitter, not security)


async def connect(
    endpoint: Endpoint,
    *,
    user: str,
    password: str,
    context: ssl.SSLContext,
    policy: RetryPolicy,
    log: Any,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> Any:
    """An asyncpg connection over TLS, or ``DatabaseSetupFailed`` once the retry budget is spent."""
    import asyncpg

    retryable = (
        OSError,  # refused, reset, DNS not there yet (socket.gaierror)
        asyncio.TimeoutError,
        asyncpg.CannotConnectNowError,  # starting up, shutting down, in recovery
        asyncpg.TooManyConnectionsError,
        asyncpg.InvalidPasswordError,  # a password change that has not reached every node yet
        asyncpg.ConnectionDoesNotExistError,
    )
    started = time.monotonic()
    last_error = ""
    for attempt in range(1, max(1, policy.attempts) + 1):
        try:
            connection = await asyncpg.connect(
                host=endpoint.host,
                port=endpoint.port,
                user=user,
                password=password,
                database=endpoint.database,
                ssl=context,
                timeout=policy.timeout_seconds,
                command_timeout=None,
                server_settings={"application_name": APPLICATION_NAME},
            )
        except ssl.SSLCertVerificationError as exc:
            raise DatabaseSetupFailed(
                f"the server at {endpoint.host}:{endpoint.port} presented a certificate that does not verify "
                f"against the configured CA bundle ({exc.verify_message}); check the stack parameter "
                f"{CA_BUNDLE_PARAMETER} (AURORA_RESTORE_DB_CA_BUNDLE) and the cluster's CA",
                endpoint=str(endpoint),
            ) from None
        except retryable as exc:
            last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt < policy.attempts:
                pause = policy.backoff(attempt)
                log.info(
                    "database not reachable yet",
                    endpoint=str(endpoint),
                    attempt=attempt,
                    attempts=policy.attempts,
                    error=last_error,
                    retry_in_seconds=round(pause, 2),
                )
                await sleep(pause)
            continue
        except asyncpg.PostgresError as exc:
            # Anything else the server says (no such database, no permission) will not pass by waiting.
            raise DatabaseSetupFailed(
                f"the server at {endpoint} refused {user!r}: {type(exc).__name__}: {exc}",
                endpoint=str(endpoint),
                sqlstate=getattr(exc, "sqlstate", ""),
            ) from None
        log.info("connected to the database", endpoint=str(endpoint), user=user, attempt=attempt)
        return connection
    raise DatabaseSetupFailed(
        f"could not connect to {endpoint} as {user!r} after {policy.attempts} attempts over "
        f"{time.monotonic() - started:.1f} s (last error: {last_error}); check that the cluster is "
        "available, that the function's security group may reach it on its port, "
        "and that its DNS name resolves",
        endpoint=str(endpoint),
        attempts=policy.attempts,
    )


async def can_log_in(
    endpoint: Endpoint, *, user: str, password: str, context: ssl.SSLContext, timeout: float
) -> bool:
    """True when ``user`` can log in with ``password`` right now (one attempt, no retry).

    The master user cannot read password hashes on RDS (``pg_authid`` is closed to it), so this
    is how the step tells whether a role's password is already the one its secret holds.
    """
    import asyncpg

    try:
        connection = await asyncpg.connect(
            host=endpoint.host,
            port=endpoint.port,
            user=user,
            password=password,
            database=endpoint.database,
            ssl=context,
            timeout=timeout,
            server_settings={"application_name": APPLICATION_NAME},
        )
    except asyncpg.InsufficientPrivilegeError:
        # "permission denied for database": raised after the password was accepted.
        return True
    except (asyncpg.PostgresError, OSError, asyncio.TimeoutError):
        return False
    await connection.close()
    return True
