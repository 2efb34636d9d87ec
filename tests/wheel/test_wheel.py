"""The built wheel, installed as a user installs it: a clean virtualenv, the ``rehearsal`` extra, and
the ``aurora-restore`` command run from a directory outside the checkout.

The rest of the suite imports the checkout (pytest puts it first on ``sys.path``), so a package
folder left out of the wheel, a data file not shipped, or an import of a dev-only dependency
(troposphere, pytest, ...) would pass there and fail for a user. Run by ``tox -e wheel``
(``pytest -m wheel``); it builds, installs from the package index and runs one rehearsal (about a
minute), so the default run leaves it out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[2]
#: What the checkout ships: every importable package folder under these roots must be in the wheel.
SHIPPED_ROOTS = ("dispatcher", "refresh", "steps", "infra", "aurora_restore")
#: Only the ``dev`` extra has these; the installed command must not need any of them. (cfn-lint is
#: left out: moto's ``server`` extra, which the rehearsal needs, installs it too.)
DEV_ONLY = ("troposphere", "pytest", "hypothesis", "mypy", "ruff", "tox")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that could point Python back at the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))}
    env.update(PYTHONNOUSERSITE="1", AWS_XRAY_SDK_ENABLED="false", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(extra)
    return env


def checkout_packages() -> set[str]:
    """Dotted names of the folders in the checkout that hold Python modules."""
    found = set()
    for root in SHIPPED_ROOTS:
        for module in (ROOT / root).rglob("*.py"):
            if "__pycache__" not in module.parts:
                found.add(".".join(module.parent.relative_to(ROOT).parts))
    return found


#: Build leftovers: setuptools reuses ``build/lib`` and ``*.egg-info``, so a package folder a fresh
#: clone would lose can still reach a wheel built in a used checkout.
NOT_IN_A_CLONE = shutil.ignore_patterns(
    "build", "dist", "*.egg-info", ".tox", ".git", "__pycache__", ".*_cache", ".hypothesis", ".venv*"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds (the PEP 517 build ``pip install .`` runs) from a clean copy of the checkout."""
    source = tmp_path_factory.mktemp("clone") / "aurora-restore"
    shutil.copytree(ROOT, source, ignore=NOT_IN_A_CLONE)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(source)],
        check=True,
        env=clean_env(),
        timeout=300,
    )
    (built,) = out.glob("aurora_restore-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv (no system site-packages) with the wheel and its rehearsal extra; its bin/."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=True, clear=True)
    bindir = home / "bin"
    subprocess.run(
        [str(bindir / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[rehearsal]"],
        check=True,
        env=clean_env(),
        cwd=home,
        timeout=600,
    )
    return bindir


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """An empty working directory, far from the checkout."""
    assert ROOT not in tmp_path.parents
    return tmp_path


def test_the_wheel_holds_every_package_and_the_examples(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    packaged = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert checkout_packages() - packaged == set()
    examples = sorted(p.name for p in (ROOT / "aurora_restore" / "examples").glob("*.json"))
    assert examples, "the checkout has example inputs"
    for name in examples:
        assert f"aurora_restore/examples/{name}" in names


def test_the_installed_command_imports_the_wheel_and_no_dev_dependency(installed: Path, outside: Path) -> None:
    probe = (
        "import importlib.util, json, aurora_restore, dispatcher, refresh, steps, infra;"
        f"print(json.dumps({{'file': aurora_restore.__file__, 'dev': [m for m in {DEV_ONLY!r} "
        "if importlib.util.find_spec(m)]}))"
    )
    result = subprocess.run(
        [str(installed / "python"), "-c", probe],
        env=clean_env(),
        cwd=outside,
        capture_output=True,
        text=True,
        check=True,
    )
    seen = json.loads(result.stdout)
    # The code comes from the virtualenv's site-packages, not from the checkout.
    assert Path(seen["file"]).is_relative_to(installed.parent)
    assert not Path(seen["file"]).is_relative_to(ROOT)
    # No dev-only dependency is even installed, so nothing below can lean on one.
    assert seen["dev"] == []


def test_steps_lists_the_built_in_steps(installed: Path, outside: Path) -> None:
    result = subprocess.run(
        [str(installed / "aurora-restore"), "steps"],
        env=clean_env(),
        cwd=outside,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for step in ("validate_request", "copy_snapshot", "restore_snapshot", "setup_db_users"):
        assert step in result.stdout


def test_simulate_rehearses_a_refresh_to_succeeded(installed: Path, outside: Path) -> None:
    result = subprocess.run(
        [str(installed / "aurora-restore"), "simulate"],
        env=clean_env(),
        cwd=outside,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The run's verdict line, e.g. "SUCCEEDED in 4.08 s: operation op-test002".
    assert re.search(r"^SUCCEEDED in .*: operation ", result.stdout, re.MULTILINE), result.stdout[-3000:]
    # Nothing was written next to the user's working directory but what they asked for.
    assert not (outside / "aurora_restore").exists()
