"""Rehearsal: wall time of a full ``aurora-restore simulate`` with its default input.

Each side is a fresh interpreter, alternately, several times, in the same run; medians:

- **simulate**: ``python -m aurora_restore.cli simulate --json`` with the shipped default
  input (``aurora_restore/examples/default-input.json``), i.e. moto started, the world the request implies seeded, an embedded
  PostgreSQL started for setup_db_users, the generated state machine executed by moto's engine
  with every Task served by the real dispatcher, and the report written;
- **baseline**: the same interpreter start, moto started with the same configuration and the same
  world seeded through the rehearsal's own ``seed``, then nothing: what any moto-based check
  would pay before doing anything.

The difference is what the pipeline, its PostgreSQL and the engine cost; the embedded
PostgreSQL's start is also timed on its own for scale.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIMULATE = [sys.executable, "-m", "aurora_restore.cli", "simulate", "--json"]
#: Start moto as the rehearsal does and seed the world the default input implies; nothing else.
BASELINE = """
import json
from importlib import resources
from moto import mock_aws
from aurora_restore.simulate.world import default_world, seed
from dispatcher.aws import Clients
from dispatcher.request import RestoreRequest

raw = json.loads(resources.files("aurora_restore").joinpath("examples/default-input.json").read_text())
request = RestoreRequest.from_event(raw)
with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
    seed(default_world(request), Clients(default_region=request.target_region))
"""
POSTGRES = """
from aurora_restore.simulate.localdb import local_postgres
with local_postgres():
    pass
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "_X_AMZN"))}
    env.update(PYTHONPATH=str(ROOT), AWS_XRAY_SDK_ENABLED="false")
    return env


def _timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(command[1:4])} failed ({result.returncode}): {result.stderr[-800:]}")
    return elapsed, result.stdout


def measure(runs: int = 5) -> dict[str, Any]:
    """Median wall time of the simulate command and of the baseline, alternating."""
    simulate_times, baseline_times, postgres_times = [], [], []
    report: dict[str, Any] = {}
    _timed([sys.executable, "-c", BASELINE])  # warm the file cache and the .pyc files
    for _ in range(runs):
        seconds, stdout = _timed(SIMULATE)
        simulate_times.append(seconds)
        report = json.loads(stdout)
        baseline_times.append(_timed([sys.executable, "-c", BASELINE])[0])
        postgres_times.append(_timed([sys.executable, "-c", POSTGRES])[0])
    simulate, baseline = statistics.median(simulate_times), statistics.median(baseline_times)
    return {
        "runs": runs,
        "simulate_s": round(simulate, 2),
        "baseline_s": round(baseline, 2),
        "ratio": round(simulate / baseline, 2),
        "postgres_start_s": round(statistics.median(postgres_times), 2),
        "status": report.get("status"),
        "states_entered": len(report.get("states", [])),
        "aws_calls": len(report.get("aws_calls", [])),
        "execution_s": report.get("duration"),
    }


def report(results: dict[str, Any]) -> str:
    """Markdown section for RESULTS.md."""
    return (
        "\n".join(
            [
                "## Rehearsal",
                "",
                "Wall time of `aurora-restore simulate --json` with its default input (fresh interpreter; moto, "
                "the seeded world, an embedded PostgreSQL, the generated state machine run by moto's engine, "
                "every Task through the real dispatcher) against a baseline that starts moto the same way and "
                f"seeds the same world, then stops. Medians of {results['runs']} alternating runs.",
                "",
                "| | seconds |",
                "|---|---|",
                f"| baseline: interpreter + moto + the seeded world | {results['baseline_s']} |",
                f"| `aurora-restore simulate` (ended {results['status']}, {results['states_entered']} states, "
                f"{results['aws_calls']} AWS calls) | {results['simulate_s']} |",
                f"| of which the rehearsal's own run, from its report | {results['execution_s']} |",
                f"| for scale: starting and stopping the embedded PostgreSQL alone | {results['postgres_start_s']} |",
                "",
                f"Ratio simulate / baseline: **{results['ratio']}x**.",
            ]
        )
        + "\n"
    )


if __name__ == "__main__":
    print(report(measure()))
