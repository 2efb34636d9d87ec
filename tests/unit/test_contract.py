"""docs/architecture.md's table of the execution's data is the one the registered steps generate.

The table is what a reader (or a third-party step's author) relies on: which state runs which step,
what it reads, where its result goes and what the output holds. It is generated from the state
machine's definition and the steps' class attributes (``output_doc`` included) by
``python infra/build_template.py --update-docs``; these tests fail, naming that command and each
row that differs, when the committed copy is not what the command would write.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.build_template import STATE_TABLE_DOCUMENT, builtin_state_table
from infra.pipeline import PipelineError
from infra.state_machine import build_definition
from infra.state_table import TABLE_END, TABLE_START, to_state_table, update_state_table
from tests.contract import contract_registry, contract_steps

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / STATE_TABLE_DOCUMENT
UPDATE_DOCS = "python infra/build_template.py --update-docs"


def committed_table(text: str) -> str:
    """The table between the generated-table markers of ``text``."""
    start, end = text.index(TABLE_START) + len(TABLE_START) + 1, text.index(TABLE_END)
    return text[start:end]


def mismatches(text: str) -> list[str]:
    """Every row of the committed table that differs from the generated one, by state (empty when equal)."""
    generated = builtin_state_table(contract_registry()).splitlines()
    committed = committed_table(text).splitlines()
    if generated == committed:
        return []

    def by_state(lines: list[str]) -> dict[str, str]:
        return {line.split("|")[1].strip(): line for line in lines[2:]}

    want, have = by_state(generated), by_state(committed)
    problems = [
        f"{state}: the doc has no row; {UPDATE_DOCS} writes {want[state]}"
        for state in want
        if state not in have
    ]
    problems += [
        f"{state}: the doc has a row no state has; {UPDATE_DOCS} drops it"
        for state in have
        if state not in want
    ]
    problems += [
        f"{state}: the doc says {have[state]}; {UPDATE_DOCS} writes {want[state]}"
        for state in want
        if state in have and want[state] != have[state]
    ]
    return problems or [f"the table's header or order differs from what {UPDATE_DOCS} writes"]


def test_the_architecture_table_is_what_the_command_generates() -> None:
    assert mismatches(ARCHITECTURE.read_text()) == []


def test_the_table_has_a_row_for_every_step_in_the_pipelines_order() -> None:
    # The generated table itself: every built-in step once, in the pipeline's order, the failure step last.
    steps = re.findall(r"^\| \w+ \| `([a-z_]+)`", builtin_state_table(contract_registry()), re.M)
    assert steps == [step.name for step in contract_steps()]


def test_a_row_that_drifted_from_its_step_is_named_with_the_command() -> None:
    text = ARCHITECTURE.read_text()
    drifted = text.replace(
        "| CopySnapshot | `copy_snapshot` | request, snapshot | `copy` |",
        "| CopySnapshot | `copy_snapshot` | request | `snapshot` |",
    )
    assert drifted != text
    [problem] = mismatches(drifted)
    assert problem.startswith(
        "CopySnapshot: the doc says | CopySnapshot | `copy_snapshot` | request | `snapshot` |"
    )
    assert (
        f"; {UPDATE_DOCS} writes | CopySnapshot | `copy_snapshot` | request, snapshot | `copy` |" in problem
    )


def test_a_renamed_state_is_named_on_both_sides() -> None:
    text = ARCHITECTURE.read_text().replace("| WaitForCopy |", "| WaitForTheCopy |")
    problems = mismatches(text)
    assert problems[0].startswith(f"WaitForCopy: the doc has no row; {UPDATE_DOCS} writes | WaitForCopy |")
    assert problems[1] == f"WaitForTheCopy: the doc has a row no state has; {UPDATE_DOCS} drops it"


def test_the_output_text_is_the_step_s_own(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a step whose output_doc changed
    registry = contract_registry()
    monkeypatch.setattr(registry.get("send_notification"), "output_doc", "message id, subject, and the topic")
    # WHEN the table is generated
    table = to_state_table(build_definition(registry), registry)
    # THEN its row says so
    assert (
        "| SendNotification | `send_notification` | `$` → `input` | `notification` | "
        "message id, subject, and the topic |"
    ) in table


def test_a_step_that_does_not_say_what_its_output_holds_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = contract_registry()
    monkeypatch.setattr(registry.get("archive_snapshot"), "output_doc", "")
    with pytest.raises(PipelineError, match=r"step 'archive_snapshot' \(ArchiveSnapshot\) has no output_doc"):
        to_state_table(build_definition(registry), registry)


def test_the_command_rewrites_only_the_table(tmp_path: Path) -> None:
    # GIVEN a copy of the document whose table is stale (a state renamed since)
    current = ARCHITECTURE.read_text()
    stale = tmp_path / "architecture.md"
    stale.write_text(current.replace("| WaitForCopy |", "| WaitForTheCopy |"))
    # WHEN the table is updated
    assert update_state_table(builtin_state_table(contract_registry()), stale) is True
    # THEN the document is the committed one again, and a second run changes nothing
    assert stale.read_text() == current
    assert update_state_table(builtin_state_table(contract_registry()), stale) is False


def test_a_document_without_the_markers_is_refused(tmp_path: Path) -> None:
    document = tmp_path / "architecture.md"
    document.write_text("# Architecture\n")
    with pytest.raises(PipelineError, match="has no generated state table"):
        update_state_table(builtin_state_table(contract_registry()), document)
