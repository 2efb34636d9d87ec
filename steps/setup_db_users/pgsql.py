"""SQL text that no name or password can break out of.

PostgreSQL cannot bind parameters in DDL (``CREATE ROLE``, ``GRANT``, ``ALTER ROLE ... PASSWORD``),
so names and literals are quoted here, the way PostgreSQL's own ``quote_ident`` and
``quote_literal`` do. Passwords never reach SQL text at all: :func:`scram_verifier` turns one into
the SCRAM-SHA-256 verifier PostgreSQL stores (what ``psql``'s ``\\password`` sends), so the server
log, ``pg_stat_statements`` or an error message can at worst show a salted hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata

SCRAM_ITERATIONS = 4096


def quote_ident(name: str) -> str:
    """``name`` as a quoted identifier: always quoted (exact case), inner quotes doubled."""
    if "\x00" in name:
        raise ValueError("a PostgreSQL identifier cannot contain a NUL character")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as an escape-string literal ``E'...'``.

    The ``E''`` form reads the same whether or not the server has ``standard_conforming_strings``
    on, so a backslash can never end the literal early.
    """
    if "\x00" in text:
        raise ValueError("a PostgreSQL string cannot contain a NUL character")
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def qualified(schema: str, name: str) -> str:
    """``schema.name``, both quoted."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802 / RFC 7677).

    PostgreSQL accepts it in ``ALTER ROLE ... PASSWORD`` and stores it as is; the password itself
    is never sent. The password is SASLprep-normalized first, as PostgreSQL and its clients do.
    """
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def saslprep(password: str) -> bytes:
    """RFC 4013 SASLprep, falling back to the raw bytes exactly where PostgreSQL does.

    PostgreSQL (``pg_saslprep``) and the clients (libpq, asyncpg) use the raw UTF-8 bytes when a
    password contains prohibited or unassigned characters; doing the same here keeps the verifier
    usable by every client.
    """
    raw = password.encode("utf-8")
    if password.isascii():
        return raw
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in password if not stringprep.in_table_b1(ch)
    )
    normalized = unicodedata.normalize("NFKC", mapped)
    if not normalized:
        return raw
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    if any(check(ch) for ch in normalized for check in prohibited):
        return raw
    if any(stringprep.in_table_d1(ch) for ch in normalized):
        # Bidirectional text: RandALCat characters must start and end it, with no LCat inside.
        if not (stringprep.in_table_d1(normalized[0]) and stringprep.in_table_d1(normalized[-1])):
            return raw
        if any(stringprep.in_table_d2(ch) for ch in normalized):
            return raw
    return normalized.encode("utf-8")
