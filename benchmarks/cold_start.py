"""Cold start: importing the dispatcher and making the first client, against a bare handler.

Both sides run as fresh interpreters, alternately, many times, in the same run; the result is the
ratio of medians, so a busy machine slows both alike. ``-X importtime`` gives the import share.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: The bare handler: what any Lambda talking to RDS pays anyway.
BASELINE = "import boto3\nboto3.client('rds', region_name='eu-central-1')\n"
#: Ours: import the handler, load every step (as the first invocation does), make the same client.
OURS = (
    "import dispatcher.handler as h\n"
    "from dispatcher.registry import load_builtin_steps\n"
    "load_builtin_steps()\n"
    "from dispatcher.aws import Clients\n"
    "Clients()('rds', 'eu-central-1')\n"
)
#: With tracing on, both sides also load and patch aws-xray-sdk.
TRACING_BASELINE = "from aws_xray_sdk.core import patch, xray_recorder\npatch(['botocore'])\n" + BASELINE
TRACING_OURS = OURS.replace(
    "from dispatcher.aws import Clients\n",
    "from dispatcher import tracing\ntracing._recorder()\nfrom dispatcher.aws import Clients\n",
)


def _env(tracing: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY", "_X_AMZN"))}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="eu-central-1")
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    if tracing:
        env.update(
            AWS_LAMBDA_FUNCTION_NAME="bench",
            _X_AMZN_TRACE_ID="Root=1-0-0",
            AWS_XRAY_CONTEXT_MISSING="IGNORE_ERROR",
        )
    else:
        env["AWS_XRAY_SDK_ENABLED"] = "false"
    return env


def _time_once(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT)
    return time.perf_counter() - started


def _import_ms(code: str, env: dict[str, str]) -> float:
    """Cumulative import time (ms) of every top-level import, from ``-X importtime``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    total_us = 0
    for line in result.stderr.splitlines():
        # "import time: self [us] | cumulative | imported package"; top level has no indent.
        if line.startswith("import time:") and "|" in line:
            parts = line.split("|")
            name = parts[2]
            if name.strip() and not name.startswith("  ") and parts[1].strip().isdigit():
                total_us += int(parts[1])
    return total_us / 1000


def measure(runs: int = 15) -> dict[str, Any]:
    """Median wall time of each side, alternating, and the ratios."""
    results: dict[str, Any] = {}
    for label, tracing, baseline, ours in (
        ("without tracing", False, BASELINE, OURS),
        ("with tracing", True, TRACING_BASELINE, TRACING_OURS),
    ):
        env = _env(tracing)
        _time_once(baseline, env)  # warm the file cache and the .pyc files for both sides
        _time_once(ours, env)
        base_times, our_times = [], []
        for _ in range(runs):
            base_times.append(_time_once(baseline, env))
            our_times.append(_time_once(ours, env))
        base, mine = statistics.median(base_times), statistics.median(our_times)
        results[label] = {
            "baseline_ms": round(base * 1000, 1),
            "dispatcher_ms": round(mine * 1000, 1),
            "ratio": round(mine / base, 3),
            "baseline_import_ms": round(_import_ms(baseline, env), 1),
            "dispatcher_import_ms": round(_import_ms(ours, env), 1),
        }
    return results


def report(results: dict[str, Any]) -> str:
    """Markdown section for RESULTS.md."""
    lines = [
        "## Cold start",
        "",
        "Fresh interpreter: import + first `rds` client. Baseline: a bare handler importing boto3 and",
        "making the same client (plus aws-xray-sdk patching when tracing is on). Target: ratio <= 1.10.",
        "",
        "| case | baseline (ms) | dispatcher (ms) | ratio | import, baseline (ms) | import, dispatcher (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for label, row in results.items():
        verdict = "ok" if row["ratio"] <= 1.10 else "OVER TARGET"
        lines.append(
            f"| {label} | {row['baseline_ms']} | {row['dispatcher_ms']} | {row['ratio']} ({verdict}) | "
            f"{row['baseline_import_ms']} | {row['dispatcher_import_ms']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(report(measure()))
