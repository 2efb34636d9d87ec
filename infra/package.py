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

Bytecode: Lambda's ``/var/task`` is read-only, so modules shipped without ``.pyc`` are compiled on
every cold start. The build compiles everything with the runtime's own Python (3.12, found on PATH,
under pyenv, or given with ``--python``) into ``__pycache__/*.cpython-312.pyc`` as *unchecked-hash*
pycs: the interpreter loads them without reading or stat-ing the source, whatever timestamps the
unzipped files get. Without Python 3.12 the build refuses (``--no-compile`` ships sources only).

TLS: the RDS CA bundle is a required input (``--ca-bundle global-bundle.pem``, from
https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem, see "Certificate bundles by AWS
Region" in the Aurora user guide's SSL/TLS page); it ships as ``certs/global-bundle.pem`` and the
stack's ``DbCaBundle`` points there. ``--no-ca-bundle`` builds without it, for a stack deployed with
``DbTlsVerify=false``.
"""

from __future__ import annotations

import argparse
import configparser
import glob
import json
import os
import shutil
import ssl
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
PACKAGES = ("dispatcher", "refresh", "steps")
#: Must match LAMBDA_RUNTIME and LAMBDA_ARCHITECTURE in infra/build_template.py.
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
#: The Lambda Python runtime ships these; packaging them would only shadow its own copies.
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)
#: Fixed time for every zip entry (the zip format starts at 1980).
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
#: The tag Python 3.12 looks for in ``__pycache__`` (``sys.implementation.cache_tag``).
CACHE_TAG = "cpython-" + PYTHON_VERSION.replace(".", "")
#: Where the zip is unpacked on Lambda; compiled code names its files there (tracebacks, and a
#: build directory's name would make every build's bytes differ).
TASK_ROOT = "/var/task"
RDS_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
RDS_BUNDLE_DOC = "https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/UsingWithRDS.SSL.html"


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
    bundle = parser.add_mutually_exclusive_group()
    bundle.add_argument(
        "--ca-bundle",
        type=Path,
        metavar="PEM",
        help=f"the RDS CA bundle ({RDS_BUNDLE_URL}); ships as certs/<name>, and the stack's DbCaBundle "
        "parameter then points at /var/task/certs/<name>. Required unless --no-ca-bundle",
    )
    bundle.add_argument(
        "--no-ca-bundle",
        action="store_true",
        help="ship no CA bundle: only for a stack deployed with DbTlsVerify=false (TLS without "
        "verifying the server)",
    )
    parser.add_argument(
        "--python",
        metavar="PATH",
        help=f"the Python {PYTHON_VERSION} that compiles the bytecode (default: sys.executable when it "
        f"is {PYTHON_VERSION}, else python{PYTHON_VERSION} on PATH, else pyenv's)",
    )
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="ship sources only (no .pyc): every cold start then compiles them",
    )
    args = parser.parse_args(argv)
    if args.ca_bundle is None and not args.no_ca_bundle:
        parser.error(
            f"--ca-bundle PEM is required: the function verifies the restored cluster's TLS certificate "
            f"(DbTlsVerify=true by default). Download Amazon RDS's global bundle from {RDS_BUNDLE_URL} "
            f"(see {RDS_BUNDLE_DOC}, 'Certificate bundles by AWS Region') and pass --ca-bundle "
            "global-bundle.pem; or pass --no-ca-bundle and deploy with DbTlsVerify=false"
        )
    try:
        python = None if args.no_compile else lambda_python(args.python)
        output = build(args.output, extra=args.extra, ca_bundle=args.ca_bundle, python=python)
    except PackageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(f"{output} ({output.stat().st_size // 1024} KiB)")
    return 0


class PackageError(Exception):
    """A build input is missing or wrong; the message says which and what to do."""


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


def _python_version(python: str) -> str:
    try:
        result = subprocess.run(  # noqa: S603 (an interpreter path, no shell)
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError:
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def _pyenv_pythons() -> list[str]:
    """pyenv's installs of the runtime's version, newest first (without needing pyenv on PATH)."""
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    found = glob.glob(os.path.join(root, "versions", f"{PYTHON_VERSION}.*", "bin", f"python{PYTHON_VERSION}"))

    def patch(path: str) -> int:
        tail = Path(path).parent.parent.name.rsplit(".", 1)[-1]
        return int(tail) if tail.isdigit() else -1

    return sorted(found, key=patch, reverse=True)


def lambda_python(explicit: str | None = None) -> str:
    """The interpreter that compiles the zip's bytecode: it must be the Lambda runtime's version."""
    if explicit:
        version = _python_version(explicit)
        if version != PYTHON_VERSION:
            raise PackageError(
                f"--python {explicit} is Python {version or '(not runnable)'}; the function's runtime is "
                f"python{PYTHON_VERSION}, and bytecode from another version would be ignored there"
            )
        return explicit
    candidates = []
    if sys.version_info[:2] == tuple(int(n) for n in PYTHON_VERSION.split(".")):
        candidates.append(sys.executable)
    on_path = shutil.which(f"python{PYTHON_VERSION}")
    if on_path:
        candidates.append(on_path)
    candidates += _pyenv_pythons()
    for candidate in candidates:
        if _python_version(candidate) == PYTHON_VERSION:
            return candidate
    raise PackageError(
        f"the zip's bytecode must be compiled by Python {PYTHON_VERSION} (the function's runtime is "
        f"python{PYTHON_VERSION}) and none was found (not this interpreter, not python{PYTHON_VERSION} on "
        f"PATH, not under pyenv): install it (e.g. `pyenv install {PYTHON_VERSION}`), pass --python "
        f"/path/to/python{PYTHON_VERSION}, or pass --no-compile to ship sources only (slower cold starts)"
    )


def compile_bytecode(staging: Path, python: str) -> int:
    """Compile every module in ``staging`` with ``python`` (the runtime's version); returns the count.

    unchecked-hash: the loader trusts the pyc without looking at the source, so nothing depends
    on the unzipped files' times, and nothing is re-compiled or written on a read-only /var/task.
    """
    result = subprocess.run(  # noqa: S603 (an interpreter path and fixed arguments)
        [
            python,
            "-m",
            "compileall",
            "-q",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(staging),
            "-p",
            TASK_ROOT,
            str(staging),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise PackageError(
            f"compiling the package with {python} failed: {(result.stdout + result.stderr).strip()[-1000:]}"
        )
    return sum(1 for _ in staging.rglob(f"__pycache__/*.{CACHE_TAG}.pyc"))


def _ships(path: Path, source: Path, bytecode: bool) -> bool:
    if "__pycache__" not in path.relative_to(source).parts:
        return True
    # Only the runtime's own bytecode; anything else in a cache is a leftover of this machine.
    return bytecode and path.name.endswith(f".{CACHE_TAG}.pyc") and path.parent.name == "__pycache__"


def write_zip(source: Path, output: Path, *, bytecode: bool = False) -> Path:
    """Zip ``source`` reproducibly: sorted entries, fixed times, 0644 files (0755 for .so).

    ``bytecode``: also ship ``__pycache__/*.cpython-312.pyc`` (what :func:`compile_bytecode` wrote);
    other caches never ship.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in source.rglob("*") if p.is_file() and _ships(p, source, bytecode))
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


def build(
    output: Path = DEFAULT_OUTPUT,
    *,
    extra: Sequence[str] = (),
    ca_bundle: Path | None = None,
    python: str | None = None,
) -> Path:
    """Resolve, install, compile with ``python`` (None: ship sources only) and zip; returns the zip's path."""
    if ca_bundle is not None:
        check_ca_bundle(ca_bundle)
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
        if python is not None:
            compile_bytecode(staging, python)
        return write_zip(staging, Path(output), bytecode=python is not None)


def check_ca_bundle(bundle: Path) -> int:
    """Refuse a bundle that is missing or holds no certificate; returns how many CA certificates it holds."""
    if not bundle.is_file():
        raise PackageError(
            f"--ca-bundle {bundle}: no such file; download Amazon RDS's global bundle from "
            f"{RDS_BUNDLE_URL} (see {RDS_BUNDLE_DOC})"
        )
    text = bundle.read_text(errors="replace")
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise PackageError(f"{bundle} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(bundle))
    except ssl.SSLError as exc:
        raise PackageError(f"{bundle} holds no usable PEM certificate ({exc})") from None
    return int(context.cert_store_stats()["x509_ca"])


def add_ca_bundle(bundle: Path, target: Path) -> Path:
    """Copy a checked PEM bundle to ``certs/`` in the package."""
    check_ca_bundle(bundle)
    destination = target / "certs" / bundle.name
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(bundle.read_text())
    return destination


if __name__ == "__main__":
    sys.exit(main())
