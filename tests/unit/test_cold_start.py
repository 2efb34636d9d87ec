"""Importing the handler stays light: no asyncpg, troposphere, moto, X-Ray; no client made."""

from __future__ import annotations

import subprocess
import sys


def test_handler_import_pulls_in_nothing_heavy() -> None:
    code = (
        "import sys, dispatcher.handler, dispatcher.registry as r;"
        "r.load_builtin_steps();"
        "heavy = [m for m in ('asyncpg', 'troposphere', 'moto', 'aws_xray_sdk', 'pytest', 'cfnlint')"
        " if m in sys.modules];"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_no_client_is_made_at_import() -> None:
    code = (
        "import botocore.session as s; made = [];"
        "orig = s.Session.create_client;"
        "s.Session.create_client = lambda self, *a, **k: made.append(a) or orig(self, *a, **k);"
        "import dispatcher.handler; from dispatcher.registry import load_builtin_steps; load_builtin_steps();"
        "print(len(made))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "0"
