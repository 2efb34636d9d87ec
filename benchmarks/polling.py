"""Polling: the production poll policy against fixed 30 s (copy) / 60 s (restore) waits.

Each timeline says, for every second after the wait began, what RDS would report: a copy's
``Status`` and ``PercentProgress``, or for a restore only whether it is done (restores report no
progress figure). Both designs replay every timeline:

- **production**: the start step (``copy_snapshot`` / ``restore_snapshot``) and every check call
  the real :func:`steps.lib.polling.poll_fields` with the production default ``Settings``; the
  state machine's Wait state sleeps the ``next_poll_seconds`` it returns (``StartX -> IsXComplete ->
  WaitForX -> CheckX -> IsXComplete ...``, as ``infra/state_machine.py`` generates it);
- **fixed waits**: ``StartX -> CheckX -> IsXComplete -> WaitForX (30 s or 60 s) -> CheckX ...``,
  the loop one writes first: a constant Wait state between checks, whatever RDS reports.

Counted per replay: polls (Lambda invocations in the loop, the start step included), state
transitions (every Task, Choice and Wait entered: what Standard workflows bill), history events
(``EVENTS_PER_POLL_ROUND`` per Lambda invocation, from ``steps.lib.polling``) and the detection
latency (from the moment the resource is done to the poll that sees it). Lambda run time and
transition latency are left out on both sides alike.

A fixed grid can land exactly on a round finishing time (a 30 min copy polled every 30 s is seen
the very second it ends), so every timeline is replayed with its end moved later by 0, 5, ... 55 s
(``SHIFTS``) and the figures are averaged over those replays.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from dispatcher.settings import Settings
from steps.lib.polling import EVENTS_PER_POLL_ROUND, HISTORY_EVENT_LIMIT, history_events, poll_fields

MINUTE = 60
HOUR = 3600
DAY = 86_400
START = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
#: Seconds the end of each timeline is moved later, one replay per value.
SHIFTS = tuple(range(60))
#: The baseline's fixed waits between checks (WaitForCopy 30 s, WaitForRestore 60 s).
FIXED_WAIT_SECONDS = {"copy": 30, "restore": 60}
#: Target: the production policy makes at most this share of the fixed waits' polls.
POLL_SHARE_TARGET = 0.10
#: What-if caps on the wait of loops with no progress figure (``poll_max_seconds``; the default
#: is 900): the trade-off between polls and latency when nothing tells the policy how far along
#: a restore is. Reported beside the targets, never used to judge them.
SILENT_CAPS = (60, 120, 300, 900)

#: What RDS reports ``t`` seconds after the wait began: (percent or None, done).
Observation = tuple["int | None", bool]


@dataclass(frozen=True)
class Timeline:
    """One resource's life: how long it takes and what it reports on the way."""

    name: str
    kind: str  # "copy" (reports PercentProgress) or "restore" (reports no progress figure)
    done_at: float
    percent_at: Callable[[float], float] | None  # exact share done, 0..1; None: no figure

    def observe(self, t: float) -> Observation:
        """What a status check at ``t`` sees: RDS's whole percent, and whether it is done."""
        if t >= self.done_at:
            return (100 if self.percent_at else None), True
        if self.percent_at is None:
            return None, False
        # RDS reports a whole percent and flips to "available" only at the end.
        return min(99, max(0, math.floor(100 * self.percent_at(t)))), False


def linear_copy(name: str, duration: float, *, queued: float = 0.0) -> Callable[[float], Timeline]:
    """A copy that sits at 0 % for ``queued`` seconds (the region's 5 copy slots busy), then moves
    steadily for ``duration``; the shift lengthens the moving part."""

    def make(shift: float) -> Timeline:
        moving = duration + shift
        return Timeline(name, "copy", queued + moving, lambda t: (t - queued) / moving)

    return make


def s_shaped_copy(name: str, duration: float, steepness: float = 10.0) -> Callable[[float], Timeline]:
    """A copy that starts slowly, runs fast in the middle and crawls at the end (a logistic curve)."""

    def make(shift: float) -> Timeline:
        total = duration + shift

        def logistic(x: float) -> float:
            return 1.0 / (1.0 + math.exp(-steepness * (x - 0.5)))

        low, high = logistic(0.0), logistic(1.0)
        return Timeline(name, "copy", total, lambda t: (logistic(t / total) - low) / (high - low))

    return make


def silent_restore(name: str, duration: float) -> Callable[[float], Timeline]:
    """A restore: no progress figure, done after ``duration``."""

    def make(shift: float) -> Timeline:
        return Timeline(name, "restore", duration + shift, None)

    return make


#: The timelines the targets are judged on.
TIMELINES: tuple[Callable[[float], Timeline], ...] = (
    linear_copy("copy, linear 30 min", 30 * MINUTE),
    linear_copy("copy, linear 2 h", 2 * HOUR),
    linear_copy("copy, linear 8 h", 8 * HOUR),
    linear_copy("copy, queued 1 h then linear 1 h", HOUR, queued=HOUR),
    s_shaped_copy("copy, S-shaped 2 h", 2 * HOUR),
    silent_restore("restore, 10 min (no progress figure)", 10 * MINUTE),
    silent_restore("restore, 25 min (no progress figure)", 25 * MINUTE),
    silent_restore("restore, 60 min (no progress figure)", 60 * MINUTE),
)
#: The history-limit case, judged on its own.
LONG_COPY = linear_copy("copy, linear 7 days", 7 * DAY)


@dataclass
class Replay:
    """What one design did on one timeline."""

    polls: int  # Lambda invocations in the loop, the start step included
    transitions: int  # Task + Choice + Wait states entered
    done_at: float
    noticed_at: float

    @property
    def latency(self) -> float:
        """Seconds from done to noticed."""
        return self.noticed_at - self.done_at

    @property
    def history_events(self) -> int:
        """About this many history events (``EVENTS_PER_POLL_ROUND`` per invocation)."""
        return history_events(self.polls)


def replay_policy(timeline: Timeline, settings: Settings) -> Replay:
    """The production loop: the start step and each check call the real ``poll_fields``."""
    max_wait = (
        settings.copy_max_wait_seconds if timeline.kind == "copy" else settings.restore_max_wait_seconds
    )
    t = 0
    previous: dict[str, Any] | None = None
    transitions = 0
    while True:
        percent, done = timeline.observe(t)
        fields = poll_fields(
            previous,
            now=START + timedelta(seconds=t),
            complete=done,
            percent=percent,
            max_wait_seconds=max_wait,
            settings=settings,
            what=timeline.name,
        )
        transitions += 2  # the Task (start or check), then IsXComplete
        if fields["complete"]:
            return Replay(fields["polls"], transitions, timeline.done_at, t)
        transitions += 1  # WaitForX
        t += int(fields["next_poll_seconds"])
        previous = fields


def replay_fixed_waits(timeline: Timeline) -> Replay:
    """The fixed-wait loop: start, check at once, then the same wait between checks."""
    wait = FIXED_WAIT_SECONDS[timeline.kind]
    checks = math.ceil(timeline.done_at / wait) + 1  # checks at 0, wait, 2*wait ... until done
    noticed = (checks - 1) * wait
    # Start Task, then per check: Task + Choice, and a Wait between checks.
    transitions = 1 + 2 * checks + (checks - 1)
    return Replay(1 + checks, transitions, timeline.done_at, noticed)


def _summary(replays: list[Replay]) -> dict[str, float]:
    return {
        "polls": statistics.mean(r.polls for r in replays),
        "transitions": statistics.mean(r.transitions for r in replays),
        "history_events": statistics.mean(r.history_events for r in replays),
        "latency_s": statistics.mean(r.latency for r in replays),
        "latency_max_s": max(r.latency for r in replays),
    }


def measure() -> dict[str, Any]:
    """Replay every timeline, shifted, through both designs; per-timeline means and the totals."""
    settings = Settings()
    rows: list[dict[str, Any]] = []
    for make in TIMELINES:
        timelines = [make(shift) for shift in SHIFTS]
        ours = _summary([replay_policy(t, settings) for t in timelines])
        fixed = _summary([replay_fixed_waits(t) for t in timelines])
        rows.append({"name": timelines[0].name, "kind": timelines[0].kind, "policy": ours, "fixed": fixed})

    def total(side: str, key: str, kind: str | None = None) -> float:
        return sum(r[side][key] for r in rows if kind is None or r["kind"] == kind)

    def mean_latency(side: str, kind: str | None = None) -> float:
        return statistics.mean(r[side]["latency_s"] for r in rows if kind is None or r["kind"] == kind)

    totals: dict[str, Any] = {}
    for kind in (None, "copy", "restore"):
        label = kind or "all"
        totals[label] = {
            "policy_polls": total("policy", "polls", kind),
            "fixed_polls": total("fixed", "polls", kind),
            "poll_share": total("policy", "polls", kind) / total("fixed", "polls", kind),
            "policy_transitions": total("policy", "transitions", kind),
            "fixed_transitions": total("fixed", "transitions", kind),
            "policy_latency_s": mean_latency("policy", kind),
            "fixed_latency_s": mean_latency("fixed", kind),
        }

    long_ours = replay_policy(LONG_COPY(0), settings)
    long_fixed = replay_fixed_waits(LONG_COPY(0))
    fixed_rounds_allowed = HISTORY_EVENT_LIMIT // EVENTS_PER_POLL_ROUND
    long_copy = {
        "name": LONG_COPY(0).name,
        "policy": {
            "polls": long_ours.polls,
            "transitions": long_ours.transitions,
            "history_events": long_ours.history_events,
            "latency_s": long_ours.latency,
        },
        "fixed": {
            "polls": long_fixed.polls,
            "transitions": long_fixed.transitions,
            "history_events": long_fixed.history_events,
            # Past the limit the execution fails: the fixed-wait loop dies this many hours in.
            "dies_after_hours": (fixed_rounds_allowed - 1) * FIXED_WAIT_SECONDS["copy"] / HOUR,
        },
    }
    silent = [make for make in TIMELINES if make(0).kind == "restore"]
    trade_off = []
    for cap in SILENT_CAPS:
        capped = Settings(poll_max_seconds=cap)
        per_timeline = [_summary([replay_policy(make(shift), capped) for shift in SHIFTS]) for make in silent]
        trade_off.append(
            {
                "poll_max_seconds": cap,
                "polls": sum(r["polls"] for r in per_timeline),
                "latency_s": statistics.mean(r["latency_s"] for r in per_timeline),
            }
        )
    all_ = totals["all"]
    targets = {
        "poll_share": {
            "value": all_["poll_share"],
            "target": POLL_SHARE_TARGET,
            "met": all_["poll_share"] <= POLL_SHARE_TARGET,
        },
        "mean_latency": {
            "value": all_["policy_latency_s"],
            "target": all_["fixed_latency_s"],
            "met": all_["policy_latency_s"] <= all_["fixed_latency_s"],
        },
        "long_copy_events": {
            "value": long_ours.history_events,
            "target": HISTORY_EVENT_LIMIT,
            "met": long_ours.history_events < HISTORY_EVENT_LIMIT,
        },
    }
    return {
        "settings": {
            "poll_min_seconds": settings.poll_min_seconds,
            "poll_max_seconds": settings.poll_max_seconds,
        },
        "shifts": list(SHIFTS),
        "rows": rows,
        "totals": totals,
        "long_copy": long_copy,
        "targets": targets,
        "silent_trade_off": trade_off,
    }


def _n(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def report(results: dict[str, Any]) -> str:
    """Markdown section for RESULTS.md."""
    settings = results["settings"]
    lines = [
        "## Polling",
        "",
        "Copy and restore timelines replayed through the production poll policy (`steps.lib.polling."
        f"poll_fields`, default settings: {settings['poll_min_seconds']}..{settings['poll_max_seconds']} s) and "
        "through fixed 30 s (copy) / 60 s (restore) waits. Each timeline is replayed "
        f"{len(results['shifts'])} times with its end moved 0..{results['shifts'][-1]} s later; figures are "
        f"means over those replays. Polls = Lambda invocations in the loop (start step included); "
        f"history events = {EVENTS_PER_POLL_ROUND} per invocation; latency = done -> noticed.",
        "",
        "| timeline | polls (policy / fixed) | share | transitions (policy / fixed) | history events (policy / fixed) "
        "| mean latency s (policy / fixed) | worst latency s (policy / fixed) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        ours, fixed = row["policy"], row["fixed"]
        lines.append(
            f"| {row['name']} | {_n(ours['polls'])} / {_n(fixed['polls'])} | {ours['polls'] / fixed['polls']:.1%} "
            f"| {_n(ours['transitions'])} / {_n(fixed['transitions'])} "
            f"| {_n(ours['history_events'])} / {_n(fixed['history_events'])} "
            f"| {_n(ours['latency_s'])} / {_n(fixed['latency_s'])} "
            f"| {_n(ours['latency_max_s'])} / {_n(fixed['latency_max_s'])} |"
        )
    lines += [
        "",
        "| timelines | polls (policy / fixed) | share | transitions (policy / fixed) | mean latency s (policy / fixed) |",
    ]
    lines.append("|---|---|---|---|---|")
    for label, row in results["totals"].items():
        lines.append(
            f"| {label} | {_n(row['policy_polls'])} / {_n(row['fixed_polls'])} | {row['poll_share']:.1%} "
            f"| {_n(row['policy_transitions'])} / {_n(row['fixed_transitions'])} "
            f"| {_n(row['policy_latency_s'])} / {_n(row['fixed_latency_s'])} |"
        )
    long_copy = results["long_copy"]
    ours, fixed = long_copy["policy"], long_copy["fixed"]
    lines += [
        "",
        f"**{long_copy['name']}**: policy {ours['polls']:,} polls, {ours['transitions']:,} transitions, "
        f"{ours['history_events']:,} history events (limit {HISTORY_EVENT_LIMIT:,}), noticed "
        f"{_n(ours['latency_s'])} s after the end. Fixed waits would need {fixed['polls']:,} polls and "
        f"{fixed['history_events']:,} events: that execution hits the limit and fails about "
        f"{fixed['dies_after_hours']:.1f} h in.",
        "",
        "Targets:",
        "",
    ]
    targets = results["targets"]
    share, latency, events = targets["poll_share"], targets["mean_latency"], targets["long_copy_events"]
    lines.append(
        f"- polls at most {share['target']:.0%} of the fixed waits': {share['value']:.1%} -> "
        f"**{'met' if share['met'] else 'MISSED'}**"
    )
    if latency["met"]:
        verdict = "**met**"
    else:
        verdict = (
            f"**MISSED** by {latency['value'] - latency['target']:.0f} s "
            f"({latency['value'] / latency['target']:.1f}x the fixed waits')"
        )
    lines.append(
        f"- mean detection latency no worse than the fixed waits' ({_n(latency['target'])} s): "
        f"{_n(latency['value'])} s -> {verdict}"
    )
    copy, restore = results["totals"]["copy"], results["totals"]["restore"]
    lines.append(
        f"  - copies: {_n(copy['policy_latency_s'])} s vs {_n(copy['fixed_latency_s'])} s at "
        f"{copy['poll_share']:.1%} of the polls; restores: {_n(restore['policy_latency_s'])} s vs "
        f"{_n(restore['fixed_latency_s'])} s at {restore['poll_share']:.1%} of the polls"
    )
    lines.append(
        f"- a 7-day copy inside {events['target']:,} history events: {events['value']:,} -> "
        f"**{'met' if events['met'] else 'MISSED'}**"
    )
    restore_fixed_polls = results["totals"]["restore"]["fixed_polls"]
    lines += [
        "",
        "Restores report no progress figure, so any schedule trades polls for latency: seeing the end "
        "within about half a wait needs short waits near an end nobody can predict. The same "
        "policy with its `poll_max_seconds` capped (what-if; the default is 900 s), restores only:",
        "",
        "| poll_max_seconds | restore polls (fixed waits: "
        + _n(restore_fixed_polls)
        + ") | mean restore latency s (fixed waits: "
        + _n(results["totals"]["restore"]["fixed_latency_s"])
        + ") |",
        "|---|---|---|",
    ]
    for row in results["silent_trade_off"]:
        lines.append(f"| {row['poll_max_seconds']} | {_n(row['polls'])} | {_n(row['latency_s'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(report(measure()))
