"""Refresh paths: a snapshot, a copy-on-write clone, a point-in-time restore, for one source.

Two halves, so the README can advise which to use:

- **measured, same run**: one rehearsal of each path against the same world (production ``orders``
  with 7 days of backups and an automated snapshot, the managed ``orders-staging`` beside it, one
  region; ``aurora_restore/examples/staging-world.json`` plus the snapshot), swap strategy: the
  states entered, the Lambda invocations, the AWS calls that changed something, the history events,
  and each path's wall time as a ratio of the snapshot path's (the baseline of the same run). The
  rehearsal's RDS finishes everything at once, so this half counts work, not hours.
- **expected on AWS**: for sources of 100 GiB, 1 TiB and 10 TiB, the time of each stage from what
  AWS publishes about how it grows, with the rates as stated assumptions (AWS publishes none):

  - a clone's creation does not grow with the size: copy-on-write shares the source's pages and
    allocates storage only when either side writes ("Cloning a volume for an Amazon Aurora DB
    cluster", https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/Aurora.Managing.Clone.html);
  - a snapshot copy is a full copy and grows with the size (a queued copy waits at 0 %;
    "Copying a DB cluster snapshot",
    https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/aurora-copy-snapshot.html);
  - a restore from a snapshot downloads the data from S3 to the storage nodes before the cluster
    is available, with no lazy loading, and grows with the size, though not linearly (AWS
    Knowledge Center, "Why is my Aurora snapshot restore taking a long time?",
    https://repost.aws/knowledge-center/aurora-mysql-snapshot-restore-options);
  - a point-in-time restore (``full-copy``) builds a new volume from the continuous backups like a
    snapshot restore, with no copy ("Overview of backing up and restoring an Aurora DB cluster",
    https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/Aurora.Managing.Backups.html; the
    cloning page: "the full-copy protocol acts like point-in-time recovery");
  - instances (``CreateDBInstance``), the master password reset and the users' setup do not
    depend on the data's size.

Run ``python -m benchmarks.refresh_paths`` to print the section and replace it in RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "aurora_restore" / "examples"
RESULTS = Path(__file__).with_name("RESULTS.md")
TITLE = "## Refresh paths"
SIZES_GIB = (100, 1024, 10 * 1024)

#: Assumed rates (AWS publishes none): replace them with your own from ``aurora-restore watch``.
#: GiB per hour of a snapshot copy (same-region automated or cross-region).
COPY_GIB_PER_HOUR = 250.0
#: GiB per hour a restore (from a snapshot or a point in time, full-copy) loads, after a fixed start.
RESTORE_GIB_PER_HOUR = 500.0
RESTORE_FIXED_MINUTES = 15.0
#: A copy-on-write clone's creation, whatever the size.
CLONE_MINUTES = 10.0
#: The writer's CreateDBInstance, once the cluster is available.
INSTANCE_MINUTES = 10.0
#: Master password reset and users' setup (ModifyDBCluster and PostgreSQL work).
SETUP_MINUTES = 3.0

#: Each path's request against the same world; the snapshot path is the baseline.
PATHS = {
    "snapshot": "latest:orders",
    "clone": "clone:orders",
    "pitr": "pitr:orders@latest",
}


@dataclasses.dataclass(frozen=True)
class Expected:
    """One path's expected duration on AWS for one size, by stage (minutes)."""

    path: str
    size_gib: int
    stages: dict[str, float]

    @property
    def minutes(self) -> float:
        """Whole refresh, stages in sequence."""
        return sum(self.stages.values())


def expected(path: str, size_gib: int) -> Expected:
    """The model above for ``path`` and a source of ``size_gib``."""
    restore = RESTORE_FIXED_MINUTES + size_gib / RESTORE_GIB_PER_HOUR * 60
    if path == "snapshot":
        stages = {"copy": size_gib / COPY_GIB_PER_HOUR * 60, "restore": restore}
    elif path == "clone":
        stages = {"clone": CLONE_MINUTES}
    elif path == "pitr":
        stages = {"restore": restore}
    else:
        raise ValueError(f"unknown path {path!r}; one of {', '.join(PATHS)}")
    return Expected(path, size_gib, {**stages, "instances": INSTANCE_MINUTES, "setup": SETUP_MINUTES})


def _world() -> Any:
    from aurora_restore.simulate.world import SnapshotSpec, load_world

    world = load_world((EXAMPLES / "staging-world.json").read_text(), "staging-world.json")
    snapshot = SnapshotSpec(
        id="rds:orders-2026-11-20-02-00", region="eu-west-1", cluster="orders", type="automated", encrypted=True
    )
    return dataclasses.replace(world, snapshots=(snapshot,))


def _rehearse(snapshot_id: str) -> dict[str, Any]:
    from aurora_restore.simulate.rehearsal import Options, Rehearsal

    body = {**json.loads((EXAMPLES / "clone-input.json").read_text())["body"]}
    body.update(snapshot_id=snapshot_id, operation_id=f"op-bench-{snapshot_id.split(':')[0]}")
    started = time.monotonic()
    report = Rehearsal(
        Options(input={"body": body}, world=_world(), poll_min_seconds=0, poll_max_seconds=0)
    ).run()
    seconds = time.monotonic() - started
    changes = [
        f"{c['service']}.{c['operation']}"
        for c in report.aws_calls
        if c["service"] == "rds" and not c["operation"].startswith(("Describe", "List"))
    ]
    return {
        "status": report.status,
        "states": len(report.states),
        "tasks": sum(1 for run in report.states if run.type == "Task"),
        "history_events": report.history_events,
        "rds_changes": changes,
        "seconds": seconds,
    }


def measure() -> dict[str, Any]:
    """Rehearse each path once (snapshot first, the baseline) and model each size."""
    measured = {path: _rehearse(snapshot_id) for path, snapshot_id in PATHS.items()}
    model = {path: {size: expected(path, size) for size in SIZES_GIB} for path in PATHS}
    return {"measured": measured, "model": model}


def _hours(minutes: float) -> str:
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.0f} min"


def report(results: dict[str, Any]) -> str:
    """The Markdown section."""
    measured, model = results["measured"], results["model"]
    baseline = measured["snapshot"]["seconds"]
    lines = [
        TITLE,
        "",
        "The same source (`orders`, 7 days of backups, an automated snapshot) refreshed into `orders-staging` "
        "in its region by swap, three ways (`benchmarks/refresh_paths.py`).",
        "",
        "Measured in one run of the rehearsal (moto finishes every copy and restore at once, so this counts "
        "work; the time is a ratio to the snapshot path of the same run):",
        "",
        "| path | ended | states entered | Lambda invocations | history events | RDS changes | time vs snapshot |",
        "|---|---|---|---|---|---|---|",
    ]
    for path, row in measured.items():
        changes = ", ".join(dict.fromkeys(c.removeprefix("rds.") for c in row["rds_changes"]))
        lines.append(
            f"| `{PATHS[path]}` | {row['status']} | {row['states']} | {row['tasks']} | {row['history_events']} "
            f"| {changes} | {row['seconds'] / baseline:.2f}x |"
        )
    lines += [
        "",
        "Expected on AWS, by source size (stages in sequence; the rates are assumptions, since AWS publishes "
        f"none: copy {COPY_GIB_PER_HOUR:g} GiB/h, restore {RESTORE_FIXED_MINUTES:g} min + "
        f"{RESTORE_GIB_PER_HOUR:g} GiB/h, clone {CLONE_MINUTES:g} min whatever the size, instances "
        f"{INSTANCE_MINUTES:g} min, setup {SETUP_MINUTES:g} min; what grows with size is what AWS documents, "
        "see the module's sources):",
        "",
        "| path | " + " | ".join(f"{s:,} GiB" for s in SIZES_GIB) + " | grows with size |",
        "|---|" + "---|" * len(SIZES_GIB) + "---|",
    ]
    growth = {"snapshot": "copy and restore", "clone": "nothing", "pitr": "restore"}
    for path in PATHS:
        cells = [_hours(model[path][size].minutes) for size in SIZES_GIB]
        lines.append(f"| `{PATHS[path]}` | " + " | ".join(cells) + f" | {growth[path]} |")
    largest = SIZES_GIB[-1]
    ratio = model["snapshot"][largest].minutes / model["clone"][largest].minutes
    lines += [
        "",
        f"At {largest:,} GiB the clone is about **{ratio:.0f}x** faster than the snapshot path under these "
        "rates, and its lead grows with the size; a point-in-time restore saves the copy but not the restore.",
        "",
    ]
    return "\n".join(lines)


def _replace_section(text: str, section: str) -> str:
    start = text.find(TITLE)
    if start < 0:
        marker = text.find("## Test suite time")
        return text[:marker] + section + "\n" + text[marker:] if marker >= 0 else text + "\n" + section
    end = text.find("\n## ", start + len(TITLE))
    return text[:start] + section + (text[end + 1 :] if end >= 0 else "")


def main() -> int:
    """Measure, print, and replace this section of RESULTS.md."""
    section = report(measure())
    print(section)
    RESULTS.write_text(_replace_section(RESULTS.read_text(), section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
