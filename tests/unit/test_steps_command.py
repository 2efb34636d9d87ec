"""`aurora-restore steps`: what is registered, as a table and as JSON."""

from __future__ import annotations

import json

import pytest

from aurora_restore.cli import main
from dispatcher.registry import load_builtin_steps


def test_steps_lists_every_registered_step_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["steps", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == load_builtin_steps().names()
    copy = next(r for r in rows if r["name"] == "copy_snapshot")
    assert copy["module"] == "steps.copy_snapshot"
    assert copy["state"] == "CopySnapshot"
    assert copy["mutating"] is True
    assert copy["description"]


def test_steps_table_has_name_module_and_description(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["steps"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["STEP", "MODULE", "DESCRIPTION"]
    assert any(line.startswith("validate_request ") and "steps.validate_request" in line for line in lines)
