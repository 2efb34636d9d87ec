"""AWS clients made on first use, one per (service, region), and AWS errors in our terms."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from dispatcher.errors import AuroraRestoreError, AwsCallFailed, Retryable

if TYPE_CHECKING:
    from botocore.config import Config

#: Error codes AWS uses for throttling; botocore's retry mode retries them first, and
#: whatever still fails after its budget becomes ``Retryable`` for the state machine.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
TRANSIENT_CODES = frozenset(
    {"InternalFailure", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeoutException"}
)


class Clients:
    """Cached boto3 clients per (service, region); nothing is created until asked for."""

    def __init__(
        self, default_region: str | None = None, max_attempts: int = 5, *, model_loader: Any = None
    ) -> None:
        self._default_region = default_region
        #: A botocore ``Loader`` to share parsed service models between Clients (tests and the
        #: rehearsal make many; Lambda makes one, and the default is a fresh loader).
        self._model_loader = model_loader
        self._max_attempts = max_attempts
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._lock = threading.Lock()
        self._session: Any = None
        self._config: Config | None = None
        self._hooks: list[tuple[str, Any]] = []

    def add_hook(self, event_name: str, handler: Any) -> None:
        """Register a botocore event handler on every client, made now or later.

        The rehearsal records calls (``before-call``) and injects faults (``before-send``) this
        way; production registers none.
        """
        with self._lock:
            self._hooks.append((event_name, handler))
            for client in self._clients.values():
                client.meta.events.register(event_name, handler)

    def __call__(self, service: str, region: str | None = None) -> Any:
        """Return the client for ``service`` in ``region`` (the default region when None)."""
        key = (service, region or self._default_region)
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    client = self._make(*key)
                    self._clients[key] = client
        return client

    def _make(self, service: str, region: str | None) -> Any:
        import boto3
        from botocore.config import Config

        if self._session is None:
            self._session = boto3.session.Session()
            if self._model_loader is not None:
                self._session._session.register_component("data_loader", self._model_loader)
        if self._config is None:
            # botocore's adaptive mode retries throttling and 5xx with backoff and a client-side
            # rate limiter; we only see what survives its budget.
            self._config = Config(
                retries={"mode": "adaptive", "max_attempts": self._max_attempts},
                connect_timeout=10,
                read_timeout=60,
            )
        client = self._session.client(service, region_name=region, config=self._config)
        for event_name, handler in self._hooks:
            client.meta.events.register(event_name, handler)
        return client

    def assumed(self, credentials: dict[str, Any], account: str = "") -> Clients:
        """Clients acting with an assumed role's ``credentials`` (STS AssumeRole's), same hooks.

        Made per invocation and never cached beyond it: the credentials expire. Each call's
        botocore context names ``account`` (``context["account"]``), so hooks can tell whose it was.
        """
        import boto3

        other = Clients(self._default_region, self._max_attempts, model_loader=self._model_loader)
        other._session = boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
        if self._model_loader is not None:
            other._session._session.register_component("data_loader", self._model_loader)
        def name_account(context: dict[str, Any], **_: Any) -> None:
            context["account"] = account

        # First, so every other hook of the call already sees the account.
        other._hooks = [("provide-client-params", name_account), *self._hooks]
        return other

    def clear(self) -> None:
        """Forget every client (tests use it for a fresh moto world)."""
        with self._lock:
            self._clients.clear()
            self._session = None


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, or '' for anything else."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def translate(exc: BaseException) -> BaseException:
    """Map a botocore error to ours: transient ones to ``Retryable``, the rest to ``AwsCallFailed``.

    Our own errors and anything that is not from botocore pass through unchanged.
    """
    if isinstance(exc, AuroraRestoreError):
        return exc
    from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as AwsConnectionError

    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        operation = getattr(exc, "operation_name", "") or "AWS call"
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if code in THROTTLING_CODES or code in TRANSIENT_CODES or status >= 500:
            return Retryable(
                f"{operation} failed with {code or status} (transient): {message}",
                code=code,
                operation=operation,
            )
        return AwsCallFailed(f"{operation} failed with {code}: {message}", code=code, operation=operation)
    if isinstance(exc, (AwsConnectionError, HTTPClientError)):
        # Connection resets, read timeouts, endpoint errors: the network, not the request.
        return Retryable(f"AWS call failed before a response: {exc}", code=type(exc).__name__)
    if isinstance(exc, BotoCoreError):
        # Bad parameters, no credentials, no region: retrying cannot help.
        return AwsCallFailed(f"AWS call failed: {exc}", code=type(exc).__name__)
    return exc
