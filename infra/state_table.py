"""The architecture's table of the execution's data, generated from the definition and the steps.

One row per state, in the definition's order: a Task row names its step, the keys it reads and
where its result goes (the generated Task's ``Parameters``, the step's ``result_key``) and what
the output holds (the step's ``output_doc``); Choice, Wait, Succeed and Fail rows say what the
state reads and where it goes. ``python infra/build_template.py --update-docs`` writes the table
into docs/architecture.md between :data:`TABLE_START` and :data:`TABLE_END`, so the table can only
say what the registered steps do.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from infra.pipeline import PipelineError

if TYPE_CHECKING:
    from pathlib import Path

    from dispatcher.registry import Registry

#: The marker lines around the generated table in docs/architecture.md.
TABLE_START = "<!-- generated: state table (python infra/build_template.py --update-docs) -->"
TABLE_END = "<!-- end generated: state table -->"
HEADER = "| State | step | reads | result (`$.…`) | what the output holds |\n|---|---|---|---|---|"


def to_state_table(definition: dict[str, Any], registry: Registry) -> str:
    """The Markdown table of every state of ``definition`` (its steps looked up in ``registry``)."""
    states = definition["States"]
    catchers = _catch_result_paths(states)
    rows = [HEADER]
    for name, state in states.items():
        kind = state["Type"]
        if kind == "Task":
            rows.append(_task_row(name, state, registry, catchers.get(name)))
        elif kind == "Choice":
            rows.append(f"| {name} | {_cell(_choice(state))} | | | |")
        elif kind == "Wait":
            rows.append(f"| {name} | Wait, `SecondsPath: {state['SecondsPath']}` | | | |")
        elif kind == "Pass":
            written = ", ".join(f"`{k}`: {json.dumps(v)}" for k, v in (state.get("Result") or {}).items())
            key = state["ResultPath"].removeprefix("$.")
            rows.append(f"| {name} | Pass (nothing to do) | | `{key}` | {_cell(written)} |")
        else:
            rows.append(f"| {name} | {kind} | | | |")
    return "\n".join(rows) + "\n"


def _task_row(name: str, state: dict[str, Any], registry: Registry, caught_into: str | None) -> str:
    parameters = state["Parameters"]
    step = registry.get(parameters["step"])
    if not step.output_doc:
        raise PipelineError(
            f"step {step.name!r} ({name}) has no output_doc: say what its output holds, for "
            "docs/architecture.md's table"
        )
    reads = []
    for key, path in parameters.items():
        if not key.endswith(".$") or path.startswith("$$."):
            continue
        # "$" is the whole execution data, passed as `input`.
        reads.append(f"`$` → `{key[:-2]}`" if path == "$" else path.removeprefix("$."))
    what = f"`{step.name}`"
    if caught_into:
        what += f" (every Catch goes here, `ResultPath: {caught_into}`)"
    # The step's key, not the ResultPath: the first step's output is the whole data, {request: ...}.
    return f"| {name} | {what} | {', '.join(reads)} | `{step.result_key}` | {_cell(step.output_doc)} |"


def _catch_result_paths(states: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The state every Task's Catch goes to, with the Catch's ``ResultPath`` (none when they differ)."""
    targets = {
        (catch["Next"], catch.get("ResultPath", "$"))
        for state in states.values()
        if state["Type"] == "Task"
        for catch in state.get("Catch", [])
    }
    return dict(targets) if len(targets) == 1 else {}


def _choice(state: dict[str, Any]) -> str:
    branches = [f"{_rule(rule)} → {rule['Next']}" for rule in state["Choices"]]
    return "Choice: " + "; ".join(branches) + f", else {state['Default']}"


def _rule(rule: dict[str, Any]) -> str:
    if "And" in rule:
        return " and ".join(_rule(r) for r in rule["And"])
    if "Or" in rule:
        return " or ".join(_rule(r) for r in rule["Or"])
    if "Not" in rule:
        return "not " + _rule(rule["Not"])
    variable = rule["Variable"]
    for operator, value in rule.items():
        if operator in {"Variable", "Next"}:
            continue
        if operator == "BooleanEquals":
            return f"`{variable}`" if value else f"not `{variable}`"
        if operator.endswith("Equals"):
            shown = f'"{value}"' if isinstance(value, str) else value
            return f"`{variable} == {shown}`"
        return f"`{variable} {operator} {value}`"
    return f"`{variable}`"


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def update_state_table(table: str, path: Path) -> bool:
    """Rewrite the generated table in ``path`` (between the markers); True when it changed.

    A document without the markers is an error: it promises the table.
    """
    text = path.read_text()
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise PipelineError(
            f"{path.name} has no generated state table (between {TABLE_START} and {TABLE_END})"
        )
    updated = text[: start + len(TABLE_START)] + "\n" + table + text[end:]
    if updated == text:
        return False
    path.write_text(updated)
    return True
