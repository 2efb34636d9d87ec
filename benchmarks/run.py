"""Run every benchmark and write benchmarks/RESULTS.md with the machine and the date.

    python -m benchmarks.run            # all
    python -m benchmarks.run cold_start # some

Each benchmark module has ``measure() -> dict`` and ``report(results) -> str`` (a Markdown section).
Results are ratios against a baseline measured in the same run, never absolute timings alone.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

BENCHMARKS = ["polling", "cold_start", "package", "rehearsal", "fan_out", "refresh_paths"]
RESULTS = Path(__file__).with_name("RESULTS.md")
#: The default ``pytest`` run's wall time, measured by hand: timing the whole suite from here would
#: take minutes on every benchmark run and compete with the benchmarks for the machine's cores.
#: Written as is whenever RESULTS.md is regenerated; update the row after measuring again.
SUITE_TIME = """## Test suite time

Wall time of the default `pytest` run (what CI runs on each interpreter; the slow variants stay in
`tox -e slow`), with `AWS_XRAY_SDK_ENABLED=false PYTHONHASHSEED=0` as tox sets them:

| commit | machine | passed | wall time | goal |
|---|---|---|---|---|
| 85f5550 | 2 cores · Python 3.11.7 | 723 | 4 min 11 s | under 5 min per interpreter: **met** |
| 1f4469c (after the renovation) | 2 cores · Python 3.11.7 | 869 | 3 min 22 s | under 5 min per interpreter: **met** |
"""


def machine() -> str:
    """One line about where the numbers come from."""
    return (
        f"{platform.node()} · {platform.machine()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · {platform.platform()}"
    )


def main(argv: list[str]) -> int:
    """Run the named benchmarks (all by default) and write RESULTS.md."""
    names = argv or [n for n in BENCHMARKS if importlib.util.find_spec(f"benchmarks.{n}")]
    sections = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"running {name} ...", file=sys.stderr)
        sections.append(module.report(module.measure()))
    header = (
        "# Benchmark results\n\n"
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}.\n"
        "Regenerate with `python -m benchmarks.run`.\n\n"
    )
    RESULTS.write_text(header + "\n".join([*sections, SUITE_TIME]))
    print(RESULTS.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
