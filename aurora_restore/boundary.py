"""The command line's one error boundary: whatever goes wrong becomes one line and an exit code.

An operator at 3 a.m. needs to read what happened and what to do, not a traceback. Every
command runs inside :func:`run`; the commands raise, this module explains. Exit codes:

- ``0``: the command did what was asked (for ``status``: the operation is running or succeeded);
- ``1``: the operation failed, timed out or was stopped (``status``, ``watch``, ``--watch``);
- ``2``: the command could not do its job: a bad argument or input file, an unknown stack or
  operation, a refusal (still running, already ran), AWS refusing or unreachable;
- ``130``: interrupted (Ctrl-C).

AWS errors are explained with the call that failed (``dynamodb:GetItem on table ops-state``):
:func:`remember_calls` registers a botocore hook on the operator's session that notes each call's
action and the resource it names, so the explanation does not depend on every call site
wrapping its calls.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_MISUSE, EXIT_INTERRUPTED = 0, 1, 2, 130


class OperatorError(Exception):
    """Something the operator must fix (no such stack, operation or lock); the message says what.

    Raised by the commands and :mod:`aurora_restore.operator`, explained here as its message and
    ``exit_code``; it lives beside the boundary so the boundary needs nothing from the commands.
    """

    def __init__(self, message: str, *, exit_code: int = EXIT_MISUSE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


#: Request parameters that name the resource a call is about, and what to call it.
_RESOURCE_PARAMS = {
    "TableName": "table",
    "executionArn": "execution",
    "stateMachineArn": "state machine",
    "StackName": "stack",
}
ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess"}
)
CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidAccessKeyId",
    }
)
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "RequestThrottledException",
    }
)


def _short(arn: str) -> str:
    """The name at the end of an execution or state machine ARN (the part an operator typed)."""
    return arn.rsplit(":", 1)[-1] if arn.startswith("arn:") else arn


@dataclass(frozen=True)
class AwsCall:
    """The AWS call being made: IAM action, region and the resource it names."""

    action: str
    region: str | None
    resource: str | None = None
    resource_kind: str | None = None

    @property
    def on(self) -> str:
        """`` on table ops-state`` or nothing."""
        return f" on {self.resource_kind} {_short(self.resource)}" if self.resource else ""


_last_call: contextvars.ContextVar[AwsCall | None] = contextvars.ContextVar("aws_call", default=None)


def remember_calls(session: Any) -> None:
    """Note every call the boto3 ``session``'s clients make, for :func:`explain`."""
    session.events.register("before-parameter-build", _note_call)


def _note_call(params: dict[str, Any], model: Any, context: dict[str, Any] | None = None, **_: Any) -> None:
    service = model.service_model
    # IAM actions are prefixed with the signing name ("states" for Step Functions).
    prefix = service.signing_name or service.endpoint_prefix
    resource = kind = None
    for key, what in _RESOURCE_PARAMS.items():
        value = params.get(key)
        if isinstance(value, str) and value:
            resource, kind = value, what
            break
    _last_call.set(AwsCall(f"{prefix}:{model.name}", (context or {}).get("client_region"), resource, kind))


def last_call() -> AwsCall | None:
    """The most recent call noted in this context."""
    return _last_call.get()


def explain_client_error(exc: Any) -> str:
    """One line for a botocore ``ClientError``: what AWS refused and what to do."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "")
    message = " ".join(str(error.get("Message") or "").split())
    call = last_call()
    action = call.action if call else exc.operation_name
    on = call.on if call else ""
    region = f" in {call.region}" if call and call.region else ""
    said = f"{code}: {message}" if message else code
    if code in ACCESS_DENIED_CODES:
        return (
            f"AWS denied {action}{on} ({said}); your AWS identity lacks this permission: use a profile "
            "or role allowed to operate the stack (--profile)"
        )
    if code in CREDENTIAL_CODES:
        return (
            f"AWS did not accept your credentials for {action} ({said}); refresh them (aws sso login, "
            "aws configure, new session keys) or pass --profile"
        )
    if code in THROTTLING_CODES:
        return (
            f"AWS throttled {action}{on}{region} ({said}) past botocore's retries; wait a minute and "
            "run it again"
        )
    if code == "ExecutionDoesNotExist" and call and call.resource:
        return (
            f"no execution {_short(call.resource)}{region} on the stack's state machine: check the "
            "operation id (aurora-restore start prints it; notifications carry it as operation_id)"
        )
    if code in ("ResourceNotFoundException", "StateMachineDoesNotExist") and call and call.resource:
        return (
            f"the {call.resource_kind} {_short(call.resource)} does not exist{region} ({said}); the "
            "stack's outputs name it: check --region is the stack's region and the stack is fully deployed"
        )
    return f"AWS refused {action}{on}{region} ({said})"


def explain(exc: BaseException) -> tuple[str, int] | None:
    """The line and exit code for an exception an operator can meet; None for a bug."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
        SSOError,
        TokenRetrievalError,
    )

    from dispatcher.errors import ValidationError

    if isinstance(exc, OperatorError):
        return str(exc), exc.exit_code
    if isinstance(exc, ValidationError):
        return f"the request is not valid, nothing was started: {exc}", EXIT_MISUSE
    if isinstance(exc, ClientError):
        return explain_client_error(exc), EXIT_MISUSE
    if isinstance(exc, NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION", EXIT_MISUSE
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return (
            f"{exc}: configure the AWS CLI (aws configure, aws sso login) or pass --profile",
            EXIT_MISUSE,
        )
    if isinstance(exc, ProfileNotFound):
        return f"{exc}; the profiles are in ~/.aws/config (aws configure list-profiles)", EXIT_MISUSE
    if isinstance(exc, (SSOError, TokenRetrievalError)):
        return f"{exc}", EXIT_MISUSE
    if isinstance(exc, ConnectionError):
        call = last_call()
        doing = f" for {call.action}" if call else ""
        return f"cannot reach AWS{doing} ({exc}); check the network, proxy and --region", EXIT_MISUSE
    if isinstance(exc, BotoCoreError):
        call = last_call()
        doing = f"{call.action}: " if call else ""
        return f"AWS call failed: {doing}{exc}", EXIT_MISUSE
    if isinstance(exc, RecursionError):
        return (
            "the input is nested too deeply to read (a request is a JSON object a few levels deep)",
            EXIT_MISUSE,
        )
    return None


def run(command: str, action: Callable[[], int]) -> int:
    """Run ``action``; an exception an operator can meet becomes one line on stderr and an exit code."""
    try:
        return action()
    except KeyboardInterrupt:
        print(f"aurora-restore {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        explained = explain(exc)
        if explained is None:
            raise
        line, code = explained
        print(f"aurora-restore {command}: {line}", file=sys.stderr)
        return code
