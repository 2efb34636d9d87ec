"""What a step gets to work with: the request, its inputs, settings, clients and the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from dispatcher.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Callable

    from dispatcher.aws import Clients
    from dispatcher.settings import Settings
    from dispatcher.store import Store
    from refresh.request import RestoreRequest


def utc_now() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(timezone.utc)


@dataclass
class StepContext:
    """Everything a step needs arrives here, so a step runs and tests without the handler."""

    event: dict[str, Any]
    operation_id: str
    settings: Settings
    aws: Clients
    store: Store
    log: Any
    request: RestoreRequest | None = None
    execution_id: str | None = None
    clock: Callable[[], datetime] = field(default=utc_now)

    def require_request(self) -> RestoreRequest:
        """The validated request; steps after validate_request always have one."""
        if self.request is None:
            raise ValidationError("request", None, "this step needs the validated request in $.request")
        return self.request

    def input(self, key: str) -> dict[str, Any]:
        """An earlier step's output that the state machine passed in as ``key``."""
        value = self.event.get(key)
        if not isinstance(value, dict):
            raise ValidationError(key, value, f"this step needs the output of an earlier step as {key!r}")
        return value
