"""Package: the size of ``build/lambda.zip`` and the cold import of the code as shipped.

The zip is built by the documented command (``python -m infra.package --ca-bundle ...``,
docs/deploy.md; the bundle here is a throwaway CA, as RDS's is not downloadable offline), then
unpacked the way Lambda lays it out in ``/var/task``. The cold start is a fresh Python 3.12 (the
function's runtime, the interpreter the zip's bytecode is for) that imports the handler from the
unpacked tree, loads every step and makes the first ``rds`` client, against the bare baseline
(import boto3, make the same client), alternately, in the same run; the result is the ratio of
medians. boto3 and its dependencies stand in for the runtime's own copy: installed for 3.12 into
one directory both sides import from (and compiled, so neither side pays for it).

``/var/task`` is read-only, so both sides run with ``PYTHONDONTWRITEBYTECODE=1``. "as shipped" is
the zip as built (``.pyc`` compiled by 3.12, unchecked-hash); "sources only" deletes the
``__pycache__`` folders from the unpacked tree to show what shipping without bytecode costs (every
cold start compiles the modules). The zip's compiled extensions are built for Linux arm64; nothing
on the measured path imports them (asyncpg is imported only by setup_db_users, X-Ray only with
tracing on).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from benchmarks.cold_start import BASELINE, OURS
from infra import package

ROOT = Path(__file__).resolve().parent.parent
ZIP = ROOT / "build" / "lambda.zip"
#: Target for the zip (Lambda takes 50 MB zipped for a direct upload; small zips start faster).
SIZE_TARGET_BYTES = 10 * 1024 * 1024
#: Lambda's limit on the unzipped function (all layers included).
UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
#: The packaged cold start may cost at most this much more than the bare baseline.
COLD_START_TARGET = 1.10
#: What the Lambda runtime provides; the same directory serves both sides.
RUNTIME_PACKAGES = ("boto3",)


def _env(pythonpath: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY", "_X_AMZN", "PYTHON"))}
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="eu-central-1",
        AWS_XRAY_SDK_ENABLED="false",
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPATH=pythonpath,
    )
    return env


def _time_once(python: str, code: str, env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([python, "-c", code], env=env, check=True, cwd=cwd)
    return time.perf_counter() - started


def _packaged_module(python: str, code: str, env: dict[str, str], cwd: Path) -> str:
    """Where the handler is imported from (proves the unpacked tree, not the checkout, is measured)."""
    probe = (
        code
        + "import sys, dispatcher.handler, structlog, boto3\n"
        + "print(sys.version.split()[0], dispatcher.handler.__cached__, structlog.__file__, boto3.__file__)\n"
    )
    result = subprocess.run(
        [python, "-c", probe], env=env, check=True, cwd=cwd, capture_output=True, text=True
    )
    return result.stdout.strip()


def build(workdir: Path) -> tuple[float, str]:
    """Run the documented build (with a throwaway CA as the bundle); its wall time and last line."""
    from aurora_restore.simulate.localdb import make_certificates

    _, _, ca = make_certificates(workdir / "ca")
    bundle = workdir / "global-bundle.pem"
    shutil.copy(ca, bundle)
    command = [sys.executable, "-m", "infra.package", "-o", str(ZIP), "--ca-bundle", str(bundle)]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")
    return time.perf_counter() - started, result.stdout.strip().splitlines()[-1]


def runtime_site(target: Path, python: str) -> Path:
    """boto3 and its dependencies for Python 3.12, compiled by it: the runtime's part of both sides."""
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), "--no-compile",
            "--python-version", package.PYTHON_VERSION, "--implementation", "cp", "--only-binary=:all:",
            *RUNTIME_PACKAGES,
        ],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    package.compile_bytecode(target, python)
    return target


def _race(python: str, our_path: str, base_path: str, cwd: Path, runs: int) -> dict[str, Any]:
    base_env, our_env = _env(base_path), _env(our_path)
    _time_once(python, BASELINE, base_env, cwd)
    _time_once(python, OURS, our_env, cwd)
    base_times, our_times = [], []
    for _ in range(runs):
        base_times.append(_time_once(python, BASELINE, base_env, cwd))
        our_times.append(_time_once(python, OURS, our_env, cwd))
    base, ours = statistics.median(base_times), statistics.median(our_times)
    return {
        "baseline_ms": round(base * 1000, 1),
        "packaged_ms": round(ours * 1000, 1),
        "ratio": round(ours / base, 3),
        # The fastest run of each side is the least disturbed by other work on the machine.
        "ratio_of_fastest": round(min(our_times) / min(base_times), 3),
    }


def measure(runs: int = 21) -> dict[str, Any]:
    """Build the zip, measure it, unpack it, time the cold imports with the runtime's Python."""
    python = package.lambda_python()
    with tempfile.TemporaryDirectory(prefix="aurora-restore-task-") as tmp:
        workdir = Path(tmp)
        seconds, built = build(workdir)
        with zipfile.ZipFile(ZIP) as archive:
            infos = archive.infolist()
        top: dict[str, int] = {}
        for info in infos:
            name = info.filename.split("/")[0]
            if not name.endswith(".dist-info"):
                top[name] = top.get(name, 0) + info.compress_size
        results: dict[str, Any] = {
            "command": "python -m infra.package --ca-bundle global-bundle.pem",
            "build_seconds": round(seconds, 1),
            "built": built,
            "zip_bytes": ZIP.stat().st_size,
            "unzipped_bytes": sum(info.file_size for info in infos),
            "entries": len(infos),
            "pycs": sum(1 for info in infos if info.filename.endswith(".pyc")),
            "largest": sorted(top.items(), key=lambda item: -item[1])[:6],
            "python": python,
            "cold_start": {},
        }
        task = workdir / "task"
        with zipfile.ZipFile(ZIP) as archive:
            archive.extractall(task)
        runtime = runtime_site(workdir / "runtime", python)
        # Run from an empty directory so nothing from the checkout can be imported by accident.
        empty = workdir / "cwd"
        empty.mkdir()
        ours_path = os.pathsep.join([str(task), str(runtime)])
        results["imported_from"] = _packaged_module(python, OURS, _env(ours_path), empty)
        results["cold_start"]["as shipped (.pyc for 3.12)"] = _race(python, ours_path, str(runtime), empty, runs)
        for cache in sorted(task.rglob("__pycache__"), reverse=True):
            shutil.rmtree(cache)
        results["cold_start"]["sources only (no .pyc)"] = _race(python, ours_path, str(runtime), empty, runs)
    return results


def _mib(size: float) -> str:
    return f"{size / 1024 / 1024:.2f} MiB"


def report(results: dict[str, Any]) -> str:
    """Markdown section for RESULTS.md."""
    size = results["zip_bytes"]
    verdict = "met" if size < SIZE_TARGET_BYTES else "MISSED"
    lines = [
        "## Package",
        "",
        f"`{results['command']}` (the documented build; {results['build_seconds']} s here) wrote "
        f"`build/lambda.zip`: **{_mib(size)}** ({size:,} bytes, {results['entries']} entries), "
        f"{_mib(results['unzipped_bytes'])} unzipped (Lambda's limit: 250 MiB). "
        f"Target under {_mib(SIZE_TARGET_BYTES)}: **{verdict}**.",
        "",
        "Largest parts (compressed): "
        + ", ".join(f"{name} {size / 1024:.0f} KiB" for name, size in results["largest"])
        + ".",
        "",
        f"The zip holds {results['pycs']} `.pyc` files (every module, compiled by Python 3.12 with "
        "`--invalidation-mode unchecked-hash`, in `__pycache__/*.cpython-312.pyc`).",
        "",
        "Cold start of the unpacked package with the function's Python 3.12 "
        f"(`{results['python']}`): import the handler, load every step, first `rds` client; against a "
        "bare handler importing boto3 and making the same client. Fresh interpreters, alternating, "
        "medians, tracing off, no bytecode written (`/var/task` is read-only); boto3 for 3.12 in one "
        f"directory both sides import. Target: ratio <= {COLD_START_TARGET:.2f}.",
        "",
        "| case | baseline, median (ms) | packaged, median (ms) | ratio of medians | ratio of fastest runs |",
        "|---|---|---|---|---|",
    ]
    for label, row in results["cold_start"].items():
        verdict = "met" if row["ratio"] <= COLD_START_TARGET else "MISSED"
        lines.append(
            f"| {label} | {row['baseline_ms']} | {row['packaged_ms']} | {row['ratio']} ({verdict}) "
            f"| {row['ratio_of_fastest']} |"
        )
    lines += ["", f"Imported from: `{results['imported_from']}`."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(report(measure()))
