"""List the registered steps (name, module, description)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from dispatcher.registry import load_builtin_steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--json and --plugins."""
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument(
        "--plugins",
        action="store_true",
        help="also load third-party steps from the aurora_restore.steps entry point",
    )


def run(args: argparse.Namespace) -> int:
    """Print the registry."""
    registry = load_builtin_steps()
    if args.plugins:
        registry.load_plugins()
    rows: list[dict[str, Any]] = [
        {
            "name": cls.name,
            "state": cls.state_name,
            "module": cls.__module__,
            "mutating": cls.mutating,
            "description": cls.description(),
        }
        for cls in registry
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    name_width = max((len(r["name"]) for r in rows), default=4)
    module_width = max((len(r["module"]) for r in rows), default=6)
    print(f"{'STEP':<{name_width}}  {'MODULE':<{module_width}}  DESCRIPTION")
    for row in rows:
        print(f"{row['name']:<{name_width}}  {row['module']:<{module_width}}  {row['description']}")
    return 0
