"""docs/architecture.md's table of the execution's data says what the registered steps really do.

The table is what a reader (or a third-party step's author) relies on: which state runs which step,
what it reads and where its result goes. The steps' class attributes are the truth the template is
generated from, so the table is checked against them, row by row, in the pipeline's order.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from dispatcher.registry import load_builtin_steps
from tests.contract import contract_steps

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
HEADER = "| State | step | reads | result (`$.…`) |"


class Row(NamedTuple):
    """One row of the table that names at least one step."""

    states: list[str]
    steps: list[str]
    reads: set[str]
    result: str


def table_rows(text: str) -> list[Row]:
    """The table's rows naming a step (Choice and Wait rows name none), in the document's order."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(HEADER))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        steps = re.findall(r"`([a-z_]+)`", cells[1])
        if not steps:
            continue
        # `$` → `input`: the whole data, passed as `input`; "(+ swap)": what the check step adds.
        reads = set(re.findall(r"\$|[a-z_]+", cells[2])) - {"input"}
        rows.append(Row(re.findall(r"[A-Z][A-Za-z]+", cells[0]), steps, reads, cells[3].strip("`")))
    return rows


def mismatches(text: str) -> list[str]:
    """Every way the table disagrees with the registered built-in steps (empty when it agrees)."""
    registry = load_builtin_steps()
    rows = table_rows(text)
    problems = []
    documented = [name for row in rows for name in row.steps]
    declared = [step.name for step in contract_steps()]
    if documented != declared:
        problems.append(f"the table lists {documented}; the pipeline runs {declared}")
    for row in rows:
        steps = [registry.get(name) for name in row.steps if name in registry]
        for step in steps:
            if step.state_name not in row.states:
                problems.append(f"{step.name} runs as {step.state_name}, the table says {row.states}")
            if step.result_key != row.result:
                problems.append(f"{step.name} writes $.{step.result_key}, the table says $.{row.result}")
        # A row shared by a loop's two steps lists what either of them reads.
        reads = {key for step in steps for key in step.reads}
        if reads != row.reads:
            problems.append(f"{row.steps} read {sorted(reads)}, the table says {sorted(row.reads)}")
    return problems


def test_the_architecture_table_says_what_every_step_reads_and_writes_in_the_pipelines_order() -> None:
    assert mismatches(ARCHITECTURE.read_text()) == []


def test_a_row_that_drifted_from_its_step_is_named() -> None:
    text = ARCHITECTURE.read_text()
    drifted = text.replace(
        "| CopySnapshot | `copy_snapshot` | request, snapshot | `copy` |",
        "| CopySnapshot | `copy_snapshot` | request | `snapshot` |",
    )
    assert drifted != text
    assert mismatches(drifted) == [
        "copy_snapshot writes $.copy, the table says $.snapshot",
        "['copy_snapshot'] read ['request', 'snapshot'], the table says ['request']",
    ]
