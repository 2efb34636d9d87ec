"""Shape check of the request's ``users`` spec, done with the rest of the request.

The setup_db_users step owns the meaning of the spec; this module only refuses what can be
refused before anything touches AWS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dispatcher.errors import ValidationError

SECTIONS = ("roles", "grants", "disable", "drop", "scripts")


def validate_users_spec(spec: Any) -> dict[str, Any]:
    """Return the spec as a plain dict, or raise ``ValidationError`` naming the bad part."""
    if not isinstance(spec, Mapping):
        raise ValidationError("users", spec, "must be an object with " + ", ".join(SECTIONS))
    unknown = sorted(k for k in spec if k not in SECTIONS)
    if unknown:
        raise ValidationError(
            f"users.{unknown[0]}", spec[unknown[0]], "is not known; sections: " + ", ".join(SECTIONS)
        )
    for section in SECTIONS:
        if section in spec and not isinstance(spec[section], list):
            raise ValidationError(f"users.{section}", spec[section], "must be a list")
    return dict(spec)
