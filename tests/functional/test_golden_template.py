"""The committed golden copy of the template: any change to the template is a reviewable diff.

Regenerate after an intended change (and review the diff in the commit):

    python infra/build_template.py -o tests/golden/template.json
"""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

import pytest

from infra.build_template import DIAGRAM_DOCUMENTS, build_template, render, update_diagrams
from infra.state_machine import build_definition, to_mermaid
from tests.contract import contract_registry

pytestmark = pytest.mark.template

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "template.json"
REGENERATE = "python infra/build_template.py -o tests/golden/template.json"
UPDATE_DOCS = "python infra/build_template.py --update-docs"


def diff_against_golden(text: str) -> str:
    """A unified diff from the golden copy to ``text`` (empty when they agree)."""
    lines = difflib.unified_diff(
        GOLDEN.read_text().splitlines(keepends=True),
        text.splitlines(keepends=True),
        fromfile="tests/golden/template.json",
        tofile="generated",
        n=2,
    )
    return "".join(lines)


def test_the_template_matches_its_golden_copy() -> None:
    diff = diff_against_golden(render(build_template(registry=contract_registry())))
    assert not diff, (
        f"the template changed; if that is intended, run `{REGENERATE}` and commit the golden copy.\n"
        + "\n".join(diff.splitlines()[:200])
    )


def test_a_change_shows_up_as_a_diff() -> None:
    # A one-line change to the template is one changed line in the diff, named in context.
    changed = render(build_template(stage="prod", registry=contract_registry()))
    diff = diff_against_golden(changed)
    removed = [line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert removed == ['-      "Default": "dev",'] and added == ['+      "Default": "prod",']


def test_the_documented_command_reproduces_the_golden_copy_from_a_checkout(tmp_path: Path) -> None:
    output = tmp_path / "template.json"
    subprocess.run(
        [sys.executable, "infra/build_template.py", "-o", str(output)], cwd=ROOT, check=True, timeout=120
    )
    diff = diff_against_golden(output.read_text())
    assert not diff, "\n".join(diff.splitlines()[:200])


@pytest.mark.parametrize("document", DIAGRAM_DOCUMENTS)
def test_every_document_shows_the_current_diagram(document: str) -> None:
    diagram = to_mermaid(build_definition(contract_registry()))
    assert "```mermaid\n" + diagram + "```" in (ROOT / document).read_text(), (
        f"{document}'s state machine diagram is stale: run {UPDATE_DOCS}"
    )


def test_one_command_rewrites_every_stale_copy(tmp_path: Path) -> None:
    # GIVEN copies of the documents whose diagrams are stale (a state renamed since)
    for document in DIAGRAM_DOCUMENTS:
        (tmp_path / document).parent.mkdir(parents=True, exist_ok=True)
        current = (ROOT / document).read_text()
        start = current.index("```mermaid\nflowchart TD\n    start((start))")
        text = current[:start] + current[start:].replace("WaitForCopy", "WaitForTheCopy", 2)
        (tmp_path / document).write_text(text)
    diagram = to_mermaid(build_definition(contract_registry()))
    # WHEN the diagrams are updated
    changed = update_diagrams(diagram, root=tmp_path)
    # THEN each copy is current again, and nothing else in the documents changed
    assert sorted(changed) == sorted(tmp_path / d for d in DIAGRAM_DOCUMENTS)
    for document in DIAGRAM_DOCUMENTS:
        assert (tmp_path / document).read_text() == (ROOT / document).read_text()
    assert update_diagrams(diagram, root=tmp_path) == []
