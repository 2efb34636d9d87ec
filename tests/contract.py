"""The contract between states (docs/architecture.md), read from the registered steps themselves.

The template and the state machine are generated from the built-in steps' class attributes
(``name``, ``state_name``, ``reads``, ``result_key``) in the order ``infra/pipeline.py`` declares.
The tests build them from the same classes, so there is no second copy of those facts here to go
stale: a step that changes what it reads or where its result goes shows up as a golden-file diff,
and docs/architecture.md's table is generated from them (``tests/unit/test_contract.py``).
"""

from __future__ import annotations

from typing import Any

from dispatcher.registry import Registry, Step, load_builtin_steps
from infra.state_machine import pipeline_steps


def contract_registry() -> Registry:
    """A fresh registry of the built-in steps (tests may add or remove steps in it freely)."""
    fresh = Registry()
    for cls in load_builtin_steps():
        fresh.register(cls.name)(cls)
    return fresh


def contract_steps() -> list[type[Step]]:
    """The built-in steps in the pipeline's declared order, the failure step last.

    Every declared step must be registered (``UnknownStep`` otherwise), as the template build
    itself requires.
    """
    registry = load_builtin_steps()
    return pipeline_steps(registry)


def contract_template(**options: Any) -> dict[str, Any]:
    """The template built from :func:`contract_registry`, as plain JSON data."""
    import json

    from infra.build_template import build_template

    return json.loads(build_template(registry=contract_registry(), **options).to_json())
