"""What ``pip install .`` ships: every folder of Python modules is a package (the installed wheel
itself is checked by ``tox -e wheel``; this catches the mistake in the default run)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_folder_of_modules_is_a_package() -> None:
    # setup.cfg's ``packages = find:`` takes only folders with an __init__.py; any other folder of
    # modules works from the checkout and is missing after a normal install.
    missing = sorted(
        str(folder.relative_to(ROOT))
        for root in ("dispatcher", "refresh", "steps", "infra", "aurora_restore")
        for folder in {module.parent for module in (ROOT / root).rglob("*.py")}
        if "__pycache__" not in folder.parts and not (folder / "__init__.py").exists()
    )
    assert missing == []
