"""Quoting and SCRAM verifiers: no name or password can leave its quotes."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steps.setup_db_users.pgsql import qualified, quote_ident, quote_literal, saslprep, scram_verifier


def test_identifiers_are_always_quoted_with_inner_quotes_doubled() -> None:
    assert quote_ident("app_rw") == '"app_rw"'
    assert quote_ident("App") == '"App"'
    assert quote_ident('a"; DROP ROLE x; --') == '"a""; DROP ROLE x; --"'
    assert qualified('we"ird', "t'1") == '"we""ird"."t\'1"'


def test_literals_survive_quotes_and_backslashes_whatever_the_server_setting() -> None:
    assert quote_literal("plain") == "E'plain'"
    assert quote_literal("it's") == "E'it''s'"
    assert quote_literal("back\\slash'") == "E'back\\\\slash'''"


def test_nul_characters_are_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        quote_ident("a\x00b")
    with pytest.raises(ValueError, match="NUL"):
        quote_literal("a\x00b")


@given(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=40))
def test_a_quoted_identifier_reads_back_as_the_same_name(name: str) -> None:
    quoted = quote_ident(name)
    # Reading it back the way PostgreSQL's scanner does: outer quotes off, "" -> ".
    inner = quoted[1:-1]
    assert inner.replace('""', "").count('"') == 0
    assert inner.replace('""', '"') == name


@given(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=40))
def test_a_quoted_literal_has_no_unescaped_quote(text: str) -> None:
    inner = quote_literal(text)[2:-1]
    # Drop escaped backslashes first, then doubled quotes: no lone quote may remain.
    assert inner.replace("\\\\", "").replace("''", "").count("'") == 0


def test_scram_verifier_matches_rfc_7677_computation() -> None:
    salt = b"0123456789abcdef"
    verifier = scram_verifier("pencil", salt=salt, iterations=4096)
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt_b64 = iterations_salt.split(":")
    stored_b64, server_b64 = keys.split(":")
    assert method == "SCRAM-SHA-256" and iterations == "4096"
    assert base64.b64decode(salt_b64) == salt
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    assert (
        base64.b64decode(stored_b64) == hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    )
    assert base64.b64decode(server_b64) == hmac.digest(salted, b"Server Key", "sha256")


def test_each_verifier_has_its_own_salt() -> None:
    assert scram_verifier("same") != scram_verifier("same")


def test_saslprep_normalizes_like_postgresql() -> None:
    assert saslprep("I\u00adX") == b"IX"  # soft hyphen maps to nothing
    assert saslprep("a\u00a0b") == b"a b"  # non-ASCII space becomes a space
    assert saslprep("\u2168") == b"IX"  # NFKC
    assert saslprep("ascii \\ 'as is'") == b"ascii \\ 'as is'"
    assert saslprep("é\u0007") == "é\u0007".encode()  # prohibited: the raw bytes, as PostgreSQL does
