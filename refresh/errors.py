"""The refresh's own errors; class names are the error names the state machine catches.

They subclass the framework's base (``dispatcher.errors``), so the dispatcher reports them as any
other (type, message, details) and ``retryable_error_names`` sees any that subclass ``Retryable``.
"""

from __future__ import annotations

from dispatcher.errors import AuroraRestoreError


class TargetLocked(AuroraRestoreError):
    """Another operation holds the lock on the target cluster."""


class SnapshotNotFound(AuroraRestoreError):
    """The snapshot named by the request does not exist or is not usable."""


class UnsafeTarget(AuroraRestoreError):
    """A safety rule forbids touching this cluster."""


class CopyFailed(AuroraRestoreError):
    """The snapshot copy failed or vanished."""


class RestoreFailed(AuroraRestoreError):
    """The restored cluster or one of its instances ended in a failed state."""


class SwapFailed(AuroraRestoreError):
    """Renaming the new cluster into place failed (the first rename was undone if possible)."""


class DatabaseSetupFailed(AuroraRestoreError):
    """Resetting credentials or applying the users spec on the restored cluster failed."""


class ChecksFailed(AuroraRestoreError):
    """The restored copy failed one or more of the request's checks: it does not replace the target."""
