"""One error hierarchy; class names are the error names the state machine retries and catches.

Lambda reports an exception's class name as its ``errorType``, and Step Functions matches
``Retry``/``Catch`` on that name only (no inheritance), so the template lists every subclass of
``Retryable`` by name (``retryable_error_names``).
"""

from __future__ import annotations

from typing import Any


class AuroraRestoreError(Exception):
    """Base of every error this project raises on purpose."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @classmethod
    def name(cls) -> str:
        """The error name Step Functions will match in Retry/Catch."""
        return cls.__name__

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for outputs, audit records and notifications."""
        return {"type": self.name(), "message": self.message, **_json_safe(self.details)}


class ValidationError(AuroraRestoreError):
    """The request (or a value derived from it) is not acceptable; nothing was changed."""

    def __init__(self, field: str, value: Any, allowed: str, *, show_value: bool = True) -> None:
        from dispatcher.logs import SECRET_KEY, looks_like_secret

        # The message travels to logs, the audit trail, the execution history and the SNS
        # message: the value of a field that names a secret (or a reference to one: a password
        # pasted into password_secret_arn), or a value that looks like one, is never echoed.
        name = field.split(".")[-1].split("[")[0]
        if not show_value or SECRET_KEY.search(name) or looks_like_secret(value):
            shown = NOT_SHOWN
        else:
            shown = _show(value)
        super().__init__(f"{field}: {shown} is not valid; {allowed}", field=field, allowed=allowed)
        self.field = field
        self.value = value
        self.allowed = allowed


class UnknownStep(AuroraRestoreError):
    """The event names a step nobody registered."""


class PollTimeout(AuroraRestoreError):
    """A resource did not reach the expected state within the configured maximum wait."""


class AwsCallFailed(AuroraRestoreError):
    """An AWS call failed permanently (access denied, invalid state, quota...)."""


class StepOutputIncomplete(AuroraRestoreError):
    """A step's output lacks a field it declares (``outputs``): a defect of the step, reported."""


class Retryable(AuroraRestoreError):
    """A transient failure (throttling, 5xx, a resource still settling): retry the state."""


class ResourceBusy(Retryable):
    """The resource is in a state that will pass (modifying, renaming...): try again shortly."""


#: What a refusal says instead of a value that may be a secret (as the logs mask one).
NOT_SHOWN = "***"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


#: The framework's own errors; the domain's (``refresh.errors``) subclass ``AuroraRestoreError``
#: and are found by ``retryable_error_names`` through ``__subclasses__`` like these.
ERROR_CLASSES: dict[str, type[AuroraRestoreError]] = {
    cls.__name__: cls
    for cls in (
        ValidationError,
        UnknownStep,
        PollTimeout,
        AwsCallFailed,
        StepOutputIncomplete,
        Retryable,
        ResourceBusy,
    )
}


def retryable_error_names() -> list[str]:
    """``Retryable`` and every subclass, by name, for the state machine's Retry rules."""
    names: list[str] = []
    pending: list[type[AuroraRestoreError]] = [Retryable]
    while pending:
        cls = pending.pop(0)
        names.append(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names
