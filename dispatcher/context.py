"""What a step gets to work with: the request, its inputs, settings, clients and the store."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from dispatcher.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Callable

    from dispatcher.aws import Clients
    from dispatcher.registry import Registry
    from dispatcher.settings import Settings
    from dispatcher.store import Store


def derive_operation_id(execution_id: str | None) -> str:
    """An operation id for an input without one: stable per execution, so retries agree."""
    if execution_id:
        return "op-" + hashlib.sha256(execution_id.encode()).hexdigest()[:16]
    return "op-" + secrets.token_hex(8)


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
    #: The validated request, made by the registry's request model (see ``Registry.request_model``)
    #: from ``$.request``; the framework does not know its type, the domain's steps do.
    request: Any = None
    execution_id: str | None = None
    clock: Callable[[], datetime] = field(default=utc_now)
    #: The dispatcher's registry: a step that runs another step's code (the event step runs the
    #: waiting loop's check) finds it there. None: the built-in steps' registry.
    registry: Registry | None = None

    def require_request(self) -> Any:
        """The validated request; steps after the one that produces it always have one."""
        if self.request is None:
            raise ValidationError("request", None, "this step needs the validated request in $.request")
        return self.request

    def input(self, key: str) -> dict[str, Any]:
        """An earlier step's output that the state machine passed in as ``key``."""
        value = self.event.get(key)
        if not isinstance(value, dict):
            raise ValidationError(key, value, f"this step needs the output of an earlier step as {key!r}")
        return value
