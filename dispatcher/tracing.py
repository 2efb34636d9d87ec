"""X-Ray, only in Lambda with tracing on; locally and in tests it stays silent and unimported."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

_patched = False


def enabled() -> bool:
    """Tracing is on in Lambda with active tracing, unless AWS_XRAY_SDK_ENABLED=false."""
    if os.environ.get("AWS_XRAY_SDK_ENABLED", "").lower() in {"false", "0", "no"}:
        return False
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and bool(os.environ.get("_X_AMZN_TRACE_ID"))


def _recorder() -> Any:
    global _patched
    from aws_xray_sdk.core import patch, xray_recorder

    if not _patched:
        patch(["botocore"])
        _patched = True
    return xray_recorder


@contextlib.contextmanager
def subsegment(name: str, **annotations: Any) -> Iterator[Any]:
    """An X-Ray subsegment named ``name`` when tracing is on; nothing otherwise."""
    if not enabled():
        yield None
        return
    recorder = _recorder()
    with recorder.in_subsegment(name) as segment:
        for key, value in annotations.items():
            if value is not None:
                segment.put_annotation(key, str(value))
        yield segment


@contextlib.asynccontextmanager
async def subsegment_async(name: str, **annotations: Any) -> AsyncIterator[Any]:
    """Async form, for database work (aws-xray-sdk cannot patch asyncpg)."""
    if not enabled():
        yield None
        return
    recorder = _recorder()
    async with recorder.in_subsegment_async(name) as segment:
        for key, value in annotations.items():
            if value is not None:
                segment.put_annotation(key, str(value))
        yield segment
