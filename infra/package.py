"""Build ``build/lambda.zip``: the dispatcher and the steps, plus their runtime dependencies as
wheels for the Lambda platform (Linux, arm64, the function's Python), not what this machine built.

    python -m infra.package                   # or: python infra/package.py
    python -m infra.package -o build/lambda.zip --extra my-steps-plugin==1.2

How: pip resolves the runtime dependencies (``setup.cfg``'s ``install_requires``) for
``manylinux2014_aarch64`` / ``manylinux_2_28_aarch64`` and CPython 3.12 (``--only-binary=:all:``, so
asyncpg comes as its aarch64 wheel with an aarch64 ``.so``), drops what the Lambda runtime already
has (boto3, botocore and their own dependencies), installs the rest with ``--no-deps`` into a
staging directory, and zips it with the project's code. The zip is reproducible (fixed timestamps,
sorted entries), so an unchanged build is not uploaded again by ``aws cloudformation package``.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "build" / "lambda.zip"
#: The code the function runs (the handler is dispatcher.handler.lambda_handler).
PACKAGES = ("dispatcher", "steps")
#: Must match LAMBDA_RUNTIME and LAMBDA_ARCHITECTURE in infra/build_template.py.
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
#: The Lambda Python runtime ships these; packaging them would only shadow its own copies.
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)
#: Fixed time for every zip entry (the zip format starts at 1980).
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the zip and print its path and size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="zip to write")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="REQUIREMENT",
        help="another requirement to include, e.g. a package of third-party steps (repeatable)",
    )
    parser.add_argument(
        "--ca-bundle",
        type=Path,
        metavar="PEM",
        help="ship this CA bundle as certs/<name> (e.g. RDS's global-bundle.pem; the stack's DbCaBundle "
        "parameter then points at /var/task/certs/<name>)",
    )
    args = parser.parse_args(argv)
    output = build(args.output, extra=args.extra, ca_bundle=args.ca_bundle)
    print(f"{output} ({output.stat().st_size // 1024} KiB)")
    return 0


def runtime_requirements(setup_cfg: Path = ROOT / "setup.cfg") -> list[str]:
    """``install_requires`` of setup.cfg, without what the Lambda runtime provides."""
    config = configparser.ConfigParser()
    config.read(setup_cfg)
    lines = config["options"]["install_requires"].strip().splitlines()
    return [line.strip() for line in lines if line.strip() and _name(line) not in RUNTIME_PROVIDED]


def _name(requirement: str) -> str:
    for separator in "<>=!~;[ ":
        requirement = requirement.split(separator)[0]
    return requirement.strip().lower().replace("_", "-")


def _pip(*args: str) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, env=env)  # noqa: S603


def _platform_options() -> list[str]:
    options = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for platform in PLATFORMS:
        options += ["--platform", platform]
    return options


def resolve(requirements: Iterable[str], workdir: Path) -> list[str]:
    """Pinned ``name==version`` of every wheel to ship: the dependency closure minus the runtime's."""
    report = workdir / "report.json"
    _pip(
        "install",
        "--quiet",
        "--dry-run",
        "--ignore-installed",
        "--report",
        str(report),
        "--target",
        str(workdir / "resolve"),
        *_platform_options(),
        *requirements,
    )
    resolved = json.loads(report.read_text())["install"]
    pins = []
    for item in resolved:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if _name(name) not in RUNTIME_PROVIDED:
            pins.append(f"{name}=={version}")
    return sorted(pins, key=str.lower)


def install(pins: Iterable[str], target: Path) -> None:
    """Install exactly ``pins`` (no dependencies of their own: resolve() chose them) into ``target``."""
    _pip(
        "install",
        "--quiet",
        "--no-deps",
        "--no-compile",
        "--target",
        str(target),
        *_platform_options(),
        *pins,
    )


def copy_project(target: Path, root: Path = ROOT) -> None:
    """The project's packages, without caches."""
    for package in PACKAGES:
        shutil.copytree(
            root / package,
            target / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"),
            dirs_exist_ok=True,
        )


def write_zip(source: Path, output: Path) -> Path:
    """Zip ``source`` reproducibly: sorted entries, fixed times, 0644 files (0755 for .so)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    partial = output.with_suffix(output.suffix + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(source).as_posix(), date_time=ZIP_TIME)
            mode = 0o755 if path.suffix == ".so" or ".so." in path.name else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    partial.replace(output)
    return output


def build(output: Path = DEFAULT_OUTPUT, *, extra: Sequence[str] = (), ca_bundle: Path | None = None) -> Path:
    """Resolve, install and zip; returns the zip's path."""
    with tempfile.TemporaryDirectory(prefix="aurora-restore-package-") as tmp:
        workdir = Path(tmp)
        staging = workdir / "staging"
        staging.mkdir()
        pins = resolve([*runtime_requirements(), *extra], workdir)
        install(pins, staging)
        # The *.dist-info directories stay: third-party steps are found through their entry points.
        copy_project(staging)
        if ca_bundle is not None:
            add_ca_bundle(ca_bundle, staging)
        return write_zip(staging, Path(output))


def add_ca_bundle(bundle: Path, target: Path) -> Path:
    """Copy a PEM bundle to ``certs/`` in the package (refusing a file that holds no certificate)."""
    text = bundle.read_text()
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise SystemExit(f"{bundle} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")
    destination = target / "certs" / bundle.name
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(text)
    return destination


if __name__ == "__main__":
    sys.exit(main())
