"""Package: the size of ``build/lambda.zip`` and the cold import of the code as packaged.

The zip is built by the documented command (``python -m infra.package``, docs/deploy.md), then
unpacked the way Lambda lays it out in ``/var/task``. The cold start is a fresh interpreter that
imports the handler from the unpacked tree, loads every step and makes the first ``rds`` client,
against the bare baseline (import boto3, make the same client), alternately, in the same run;
the result is the ratio of medians. boto3 comes from this machine, as the Lambda runtime provides
its own.

The package ships no ``.pyc`` (``--no-compile``) and ``/var/task`` is read-only, so Lambda compiles
the project's and the bundled libraries' modules on every cold start. The "as shipped" case
reproduces that (``PYTHONDONTWRITEBYTECODE=1`` on a tree without ``__pycache__``); the "with .pyc"
case compiles the tree first (for this interpreter) to show what shipping bytecode would save.
The zip's compiled extensions are built for Linux arm64; nothing on the measured path imports
them (asyncpg is imported only by setup_db_users, X-Ray only with tracing on).
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from benchmarks.cold_start import BASELINE, OURS

ROOT = Path(__file__).resolve().parent.parent
ZIP = ROOT / "build" / "lambda.zip"
#: Target for the zip (Lambda takes 50 MB zipped for a direct upload; small zips start faster).
SIZE_TARGET_BYTES = 10 * 1024 * 1024
#: Lambda's limit on the unzipped function (all layers included).
UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
BUILD_COMMAND = [sys.executable, "-m", "infra.package", "-o", str(ZIP)]


def _env(pythonpath: str | None, *, write_bytecode: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY", "_X_AMZN", "PYTHON"))}
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="eu-central-1",
        AWS_XRAY_SDK_ENABLED="false",
        PYTHONNOUSERSITE="1",
    )
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _time_once(code: str, env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=cwd)
    return time.perf_counter() - started


def _packaged_module(code: str, env: dict[str, str], cwd: Path) -> str:
    """Where the handler is imported from (proves the unpacked tree, not the checkout, is measured)."""
    probe = (
        code
        + "import dispatcher.handler, structlog; print(dispatcher.handler.__file__, structlog.__file__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, check=True, cwd=cwd, capture_output=True, text=True
    )
    return result.stdout.strip()


def build() -> tuple[float, str]:
    """Run the documented build; returns its wall time and pip's last line."""
    started = time.perf_counter()
    result = subprocess.run(BUILD_COMMAND, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(BUILD_COMMAND)} failed: {result.stderr.strip()[-500:]}")
    return time.perf_counter() - started, result.stdout.strip().splitlines()[-1]


def measure(runs: int = 15) -> dict[str, Any]:
    """Build the zip, measure it, unpack it, time the cold imports."""
    seconds, built = build()
    with zipfile.ZipFile(ZIP) as archive:
        unzipped = sum(info.file_size for info in archive.infolist())
        entries = len(archive.infolist())
        top: dict[str, int] = {}
        for info in archive.infolist():
            name = info.filename.split("/")[0]
            if not name.endswith(".dist-info"):
                top[name] = top.get(name, 0) + info.compress_size
    results: dict[str, Any] = {
        "command": "python -m infra.package",
        "build_seconds": round(seconds, 1),
        "built": built,
        "zip_bytes": ZIP.stat().st_size,
        "unzipped_bytes": unzipped,
        "entries": entries,
        "largest": sorted(top.items(), key=lambda item: -item[1])[:6],
        "cold_start": {},
    }
    with tempfile.TemporaryDirectory(prefix="aurora-restore-task-") as tmp:
        task = Path(tmp) / "task"
        with zipfile.ZipFile(ZIP) as archive:
            archive.extractall(task)
        # Run from an empty directory so nothing from the checkout can be imported by accident.
        empty = Path(tmp) / "cwd"
        empty.mkdir()
        results["imported_from"] = _packaged_module(OURS, _env(str(task), write_bytecode=False), empty)
        for label, compiled in (("as shipped (no .pyc)", False), ("with .pyc", True)):
            if compiled:
                compileall.compile_dir(str(task), quiet=1)
            base_env = _env(None, write_bytecode=False)
            our_env = _env(str(task), write_bytecode=False)
            _time_once(BASELINE, base_env, empty)
            _time_once(OURS, our_env, empty)
            base_times, our_times = [], []
            for _ in range(runs):
                base_times.append(_time_once(BASELINE, base_env, empty))
                our_times.append(_time_once(OURS, our_env, empty))
            base, ours = statistics.median(base_times), statistics.median(our_times)
            results["cold_start"][label] = {
                "baseline_ms": round(base * 1000, 1),
                "packaged_ms": round(ours * 1000, 1),
                "ratio": round(ours / base, 3),
                # The fastest run of each side is the least disturbed by other work on the machine.
                "ratio_of_fastest": round(min(our_times) / min(base_times), 3),
            }
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
        "Cold start of the unpacked package (import the handler, load every step, first `rds` client) "
        "against a bare handler importing boto3 and making the same client; fresh interpreters, "
        "alternating, medians, tracing off. Lambda's `/var/task` is read-only and the zip holds no "
        '`.pyc`, so every cold start compiles the shipped modules ("as shipped").',
        "",
        "| case | baseline, median (ms) | packaged, median (ms) | ratio of medians | ratio of fastest runs |",
        "|---|---|---|---|---|",
    ]
    for label, row in results["cold_start"].items():
        lines.append(
            f"| {label} | {row['baseline_ms']} | {row['packaged_ms']} | {row['ratio']} | {row['ratio_of_fastest']} |"
        )
    lines += ["", f"Imported from: `{results['imported_from']}`."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(report(measure()))
