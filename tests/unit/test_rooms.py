"""The house's rooms hold: a newcomer finds a feature where its name says, and nothing reaches
across rooms the wrong way (a step into another step, the framework into a step)."""

from __future__ import annotations

import ast
from pathlib import Path

from dispatcher.registry import load_builtin_steps

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def room_of(module: str) -> str | None:
    """The step room a ``steps.*`` module belongs to (``steps.setup_db_users.pgsql`` ->
    ``setup_db_users``); None for ``steps.lib`` and anything outside ``steps``."""
    parts = module.split(".")
    if parts[0] != "steps" or len(parts) < 2 or parts[1] == "lib":
        return None
    return parts[1]


def test_no_step_imports_another_step() -> None:
    crossings = []
    for path in sorted((ROOT / "steps").rglob("*.py")):
        own = room_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for module in imported_modules(path):
            other = room_of(module)
            if other is not None and other != own:
                crossings.append(f"{path.relative_to(ROOT)} imports {module}")
    assert crossings == []


def test_the_framework_imports_no_step_and_names_none() -> None:
    step_names = {cls.name for cls in load_builtin_steps()}
    assert {"validate_request", "send_notification", "setup_db_users", "handle_failure"} <= step_names
    problems = []
    for path in sorted((ROOT / "dispatcher").rglob("*.py")):
        # The registry imports the ``steps`` package to load what is in it, never a step by name.
        steps_imported = sorted(m for m in imported_modules(path) if m.startswith("steps."))
        if steps_imported:
            problems.append(f"{path.name} imports {', '.join(steps_imported)}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in step_names:
                problems.append(f"{path.name} names the step {node.value!r}")
    assert problems == []


def test_the_registry_loads_steps_that_are_packages() -> None:
    registry = load_builtin_steps()
    assert registry.get("setup_db_users").__module__ == "steps.setup_db_users.step"
    assert registry.get("handle_failure").__module__ == "steps.handle_failure.step"


def test_only_the_lock_module_knows_the_lock_items_key() -> None:
    # The key is written by refresh.target_lock alone; the operator policy's pattern and the
    # rehearsal's scan derive from the same prefix but never build a key.
    builders = [
        str(path.relative_to(ROOT))
        for root in ("dispatcher", "refresh", "steps")
        for path in (ROOT / root).rglob("*.py")
        if 'f"lock#' in path.read_text()
    ]
    assert builders == ["refresh/target_lock.py"]


def test_the_framework_imports_nothing_from_the_domain() -> None:
    # The framework gets the request's class from the step that declares it (``request_model``),
    # not by importing ``refresh``: not even for type checking.
    crossings = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / "dispatcher").rglob("*.py"))
        for module in sorted(imported_modules(path))
        if module == "refresh" or module.startswith("refresh.")
    ]
    assert crossings == []


def test_the_request_model_comes_from_the_step_that_produces_the_request() -> None:
    from dispatcher.registry import Registry
    from refresh.request import RestoreRequest

    assert load_builtin_steps().request_model() is RestoreRequest
    assert Registry().request_model() is None
