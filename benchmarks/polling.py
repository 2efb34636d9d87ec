"""Polling: the poll policy and the event-driven waits against fixed 30 s (copy) / 60 s (restore) waits.

Each timeline says, for every second after the wait began, what RDS would report: a copy's
``Status`` and ``PercentProgress``, or for a restore only whether it is done (restores report no
progress figure). Both designs replay every timeline:

- **production**: the start step (``copy_snapshot`` / ``restore_snapshot``) and every check call
  the real :func:`steps.lib.polling.poll_fields` with the production default ``Settings``; the
  state machine's Wait state sleeps the ``next_poll_seconds`` it returns (``StartX -> IsXComplete ->
  WaitForX -> CheckX -> IsXComplete ...``, as ``infra/state_machine.py`` generates it);
- **fixed waits**: ``StartX -> CheckX -> IsXComplete -> WaitForX (30 s or 60 s) -> CheckX ...``,
  the loop one writes first: a constant Wait state between checks, whatever RDS reports.

The **events** design (:func:`replay_events`) replays the same timelines through the waiting Task
with RDS events delivered after 1..30 s or lost at 0/5/50/100 %, side by side with both.

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

from dispatcher.poll_loop import reaim
from dispatcher.settings import Settings
from steps.lib.polling import (
    EVENT_FALLBACK_AIM_FACTOR,
    EVENT_FALLBACK_MAX_AIMED_SECONDS,
    EVENT_FALLBACK_SECONDS,
    EVENT_FALLBACK_UNMOVED_SECONDS,
    EVENTS_PER_POLL_ROUND,
    HISTORY_EVENT_LIMIT,
    history_events,
    poll_fields,
)

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
    #: Invocations made by the execution's own states (all of them but the event step's).
    in_execution: int | None = None

    @property
    def latency(self) -> float:
        """Seconds from done to noticed."""
        return self.noticed_at - self.done_at

    @property
    def history_events(self) -> int:
        """About this many history events (``EVENTS_PER_POLL_ROUND`` per invocation of a state)."""
        return history_events(self.polls if self.in_execution is None else self.in_execution)


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


#: Event delays (seconds from the change to the event step) and loss rates the events design is
#: replayed with; the loss rows use ``LOSS_DELAY_SECONDS``.
EVENT_DELAYS = (1, 5, 10, 30)
EVENT_LOSSES = (0.0, 0.05, 0.5, 1.0)
LOSS_DELAY_SECONDS = 5
#: Events RDS sends when a wait's resource is done: a copied snapshot (one), a restored cluster and
#: its writer instance (two). Each invokes the event step; the first ends the wait.
EVENTS_PER_DONE = {"copy": 1, "restore": 2}
#: Targets for the events design: mean latency, and loop invocations against the fixed waits'.
EVENT_LATENCY_TARGET_S = 10.0
EVENT_INVOCATION_SHARE_TARGET = 0.03


def replay_events(
    timeline: Timeline, settings: Settings, *, delay: float, lost: bool, trusted: bool = True
) -> tuple[Replay, bool]:
    """The loop with events, and whether events are trusted after it (the state table's record).

    Trusted (``wait_for_events``): start; the waiting half records its token and checks once,
    then waits for the event or its fallback timeout; a timeout runs the waiting half again (one
    invocation: its check is the fallback poll), which ends its own wait early (one more
    invocation) when the next fallback differs by more than ``REAIM_TOLERANCE``. A fallback that
    finds the work done means the event was lost: events are no longer trusted. Not trusted: the
    poll policy's loop through Wait states, exactly as :func:`replay_policy`. Either way a
    delivered event invokes the event step (``EVENTS_PER_DONE``; outside the execution, so no
    history events) and makes events trusted again.
    """
    arrival = math.inf if lost else timeline.done_at + delay
    events = 0 if lost else EVENTS_PER_DONE[timeline.kind]
    if not trusted:
        polled = replay_policy(timeline, settings)
        return (
            Replay(
                polled.polls + events, polled.transitions, timeline.done_at, polled.noticed_at, polled.polls
            ),
            not lost,
        )
    max_wait = (
        settings.copy_max_wait_seconds if timeline.kind == "copy" else settings.restore_max_wait_seconds
    )
    previous: dict[str, Any] | None = None

    def look(at: int) -> dict[str, Any]:
        percent, done = timeline.observe(at)
        return poll_fields(
            previous,
            now=START + timedelta(seconds=at),
            complete=done,
            percent=percent,
            max_wait_seconds=max_wait,
            settings=settings,
            what=timeline.name,
        )

    t = 0
    fields = look(t)  # the start step
    invocations = in_execution = 1
    transitions = 2  # the start Task, then IsXComplete
    if fields["complete"]:
        return Replay(invocations, transitions, timeline.done_at, t, in_execution), True
    previous = fields
    waited = int(fields["fallback_seconds"])
    # The waiting half records its token and checks once (the work may be done already).
    invocations += 1
    in_execution += 1
    transitions += 1
    if timeline.observe(t)[1]:
        return Replay(invocations, transitions + 1, timeline.done_at, t, in_execution), True
    while True:
        if arrival <= t + waited:
            invocations += events
            noticed = math.ceil(arrival)
            return Replay(invocations, transitions + 1, timeline.done_at, noticed, in_execution), True
        t += waited
        fields = look(t)  # the waiting half again, after its timeout: the fallback poll
        invocations += 1
        in_execution += 1
        transitions += 1
        if fields["complete"]:
            # Done and no event said so: the loops poll until an event arrives (this one, if it
            # was only later than the fallback).
            invocations += events
            return Replay(invocations, transitions + 1, timeline.done_at, t, in_execution), not lost
        previous = fields
        fallback = int(fields["fallback_seconds"])
        if reaim(waited, fallback):
            # It ends its own wait with the new fallback; IsXComplete, then the waiting half again.
            invocations += 1
            in_execution += 1
            transitions += 2
        waited = fallback


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
    events = measure_events(settings, rows)
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
        "events": events,
    }


def _lost(index: int, shift: int, loss: float) -> bool:
    """Whether the replay of timeline ``index`` at ``shift`` loses its event (the same in every run)."""
    import random

    return random.Random(index * 1000 + shift).random() < loss


def measure_events(settings: Settings, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The events design on the same timelines: per delay (nothing lost) and per loss rate."""
    fixed_polls = sum(r["fixed"]["polls"] for r in rows)
    policy_polls = sum(r["policy"]["polls"] for r in rows)
    policy_latency = statistics.mean(r["policy"]["latency_s"] for r in rows)
    fixed_latency = statistics.mean(r["fixed"]["latency_s"] for r in rows)

    def run(delay: float, loss: float) -> dict[str, Any]:
        per_kind: dict[str, list[dict[str, float]]] = {"copy": [], "restore": []}
        # One stack's waits one after another: whether events are trusted carries over (a new
        # stack polls until its first event arrives).
        trusted = False
        waited_for_events = 0
        for index, make in enumerate(TIMELINES):
            replays = []
            for shift in SHIFTS:
                waited_for_events += trusted
                replay, trusted = replay_events(
                    make(shift), settings, delay=delay, lost=_lost(index, shift, loss), trusted=trusted
                )
                replays.append(replay)
            per_kind[make(0).kind].append(_summary(replays))
        every = per_kind["copy"] + per_kind["restore"]
        invocations = sum(r["polls"] for r in every)
        return {
            "delay_s": delay,
            "loss": loss,
            "invocations": invocations,
            "share_of_fixed": invocations / fixed_polls,
            "latency_s": statistics.mean(r["latency_s"] for r in every),
            "copy_latency_s": statistics.mean(r["latency_s"] for r in per_kind["copy"]),
            "restore_latency_s": statistics.mean(r["latency_s"] for r in per_kind["restore"]),
            "worst_latency_s": max(r["latency_max_s"] for r in every),
            "waited_for_events": waited_for_events / (len(TIMELINES) * len(SHIFTS)),
        }

    by_delay = [run(delay, 0.0) for delay in EVENT_DELAYS]
    by_loss = [run(LOSS_DELAY_SECONDS, loss) for loss in EVENT_LOSSES]
    # Worst case for the history: the event of a 7-day copy lost while events were trusted.
    long_lost, _ = replay_events(LONG_COPY(0), settings, delay=LOSS_DELAY_SECONDS, lost=True)
    long_delivered, _ = replay_events(LONG_COPY(0), settings, delay=LOSS_DELAY_SECONDS, lost=False)
    return {
        "fixed_polls": fixed_polls,
        "fixed_latency_s": fixed_latency,
        "policy_polls": policy_polls,
        "policy_latency_s": policy_latency,
        "by_delay": by_delay,
        "by_loss": by_loss,
        "long_copy": {
            "delivered": {"invocations": long_delivered.polls, "history_events": long_delivered.history_events},
            "lost": {
                "invocations": long_lost.polls,
                "history_events": long_lost.history_events,
                "latency_s": long_lost.latency,
            },
        },
    }


def report_events(events: dict[str, Any]) -> list[str]:
    """The events design's section: side by side with the fixed 60 s waits and today's poll policy."""
    lines = [
        "",
        "### Event-driven waits",
        "",
        "The same timelines and shifts through the waiting Task, one stack's waits one after another. "
        "While events are trusted, the waiting half checks once, then waits for an RDS event (the event "
        "step checks and ends the wait) or its fallback timeout (`fallback_seconds`: "
        f"{EVENT_FALLBACK_AIM_FACTOR:g} x the estimated remaining time + `poll_min_seconds` past a copy's "
        f"expected finish, at most {EVENT_FALLBACK_MAX_AIMED_SECONDS // 3600} h; "
        f"{EVENT_FALLBACK_UNMOVED_SECONDS // 60} min for a copy that has not moved; "
        f"{EVENT_FALLBACK_SECONDS / 60:g} min with no progress figure; never shorter than the policy's "
        "own wait), after which it runs again: that one invocation is the fallback poll. A fallback poll "
        "that finds the work done is a missed event, and the loops then poll through Wait states on the "
        "poll policy's schedule until an event arrives; a new stack polls until its first event. "
        "Invocations = every dispatcher invocation the loop causes: start, waiting halves, checks and "
        f"event-step runs ({EVENTS_PER_DONE['copy']} event per copy, {EVENTS_PER_DONE['restore']} per "
        "restore: cluster and instance). Baselines from the same run: fixed 30 s / 60 s waits "
        f"({_n(events['fixed_polls'])} invocations, {_n(events['fixed_latency_s'])} s mean latency) and "
        f"today's poll policy with Wait states ({_n(events['policy_polls'])} invocations, "
        f"{_n(events['policy_latency_s'])} s).",
        "",
        "| events | invocations | share of fixed waits' | mean latency s (copies / restores) | worst latency s |",
        "|---|---|---|---|---|",
    ]
    for row in events["by_delay"]:
        lines.append(
            f"| delivered after {row['delay_s']:g} s | {_n(row['invocations'])} | {row['share_of_fixed']:.1%} "
            f"| {_n(row['latency_s'])} ({_n(row['copy_latency_s'])} / {_n(row['restore_latency_s'])}) "
            f"| {_n(row['worst_latency_s'])} |"
        )
    for row in events["by_loss"]:
        lines.append(
            f"| {row['loss']:.0%} lost (delay {row['delay_s']:g} s) | {_n(row['invocations'])} "
            f"| {row['share_of_fixed']:.1%} | {_n(row['latency_s'])} ({_n(row['copy_latency_s'])} / "
            f"{_n(row['restore_latency_s'])}) | {_n(row['worst_latency_s'])} |"
        )
    delivered = next(r for r in events["by_loss"] if r["loss"] == 0.0)
    half = next(r for r in events["by_loss"] if r["loss"] == 0.5)
    lost = next(r for r in events["by_loss"] if r["loss"] == 1.0)
    long_copy = events["long_copy"]

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**MISSED**"

    latency_ok = delivered["latency_s"] <= EVENT_LATENCY_TARGET_S
    share_ok = delivered["share_of_fixed"] <= EVENT_INVOCATION_SHARE_TARGET
    lost_ok = lost["latency_s"] <= events["policy_latency_s"] and lost["invocations"] <= events["policy_polls"]
    half_ok = delivered["latency_s"] <= half["latency_s"] <= lost["latency_s"]
    lines += [
        "",
        f"Targets (events delivered after {LOSS_DELAY_SECONDS:g} s unless said):",
        "",
        f"- mean detection latency at most {EVENT_LATENCY_TARGET_S:g} s, copies and restores alike: "
        f"{_n(delivered['copy_latency_s'])} / {_n(delivered['restore_latency_s'])} s -> {verdict(latency_ok)} "
        "(the latency is the event's delay: above 10 s only when EventBridge takes longer, see the 30 s row)",
        f"- loop invocations at most {EVENT_INVOCATION_SHARE_TARGET:.0%} of the fixed waits': "
        f"{delivered['share_of_fixed']:.1%} -> {verdict(share_ok)}",
        f"- every event lost: no worse than today's poll policy ({_n(events['policy_latency_s'])} s, "
        f"{_n(events['policy_polls'])} invocations): {_n(lost['latency_s'])} s, {_n(lost['invocations'])} "
        f"invocations -> {verdict(lost_ok)}",
        f"- half lost: between the two ({_n(delivered['latency_s'])} .. {_n(lost['latency_s'])} s): "
        f"{_n(half['latency_s'])} s -> {verdict(half_ok)}",
        f"- a 7-day copy inside {HISTORY_EVENT_LIMIT:,} history events: "
        f"{long_copy['delivered']['history_events']:,} with its event, "
        f"{long_copy['lost']['history_events']:,} with it lost -> "
        f"{verdict(long_copy['lost']['history_events'] < HISTORY_EVENT_LIMIT)}",
        "",
        "Where the invocations go, events delivered: every wait costs its start, one waiting half and "
        "the event step's run(s): 3 for a copy, 4 for a restore. The rest are fallbacks that fire before "
        "the finish, one invocation each: an 8 h copy looks every 2 h (the cap) until its estimate "
        "brings the finish within reach; a copy queued for an hour looks every 15 min until it moves; "
        "a restore longer than its 7.5 min fallback looks once per fallback.",
        "",
        "Where the latency goes, events lost: a lost event while events are trusted costs the overshoot "
        "of the fallback that finds the work done (5 % of the estimate plus `poll_min_seconds` for a "
        "copy whose rate held; up to a whole fallback for a restore or a copy that slowed down), and "
        "sends the next waits to the poll policy until an event arrives. With every event lost the "
        "stack never trusts events and is the poll policy, invocation for invocation; with half lost, "
        "about half the waits are polled.",
        "",
        "This is a model: the timelines are the ones above, the event delays constant, the loss "
        "independent per wait. Constants chosen from a grid over the aim factor (1.05..1.5), the cap "
        "(0.5..3 h), the restore fallback (5..15 min) and the unmoved-copy fallback (5..30 min): longer "
        "fallbacks spend fewer invocations and make each lost event cost more; 1.05 relies on the rate "
        "estimate, and a copy that slows near its end (the S-shaped row) pays one more fallback.",
    ]
    return lines


def _n(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def report(results: dict[str, Any]) -> str:
    """Markdown section for RESULTS.md."""
    settings = results["settings"]
    lines = [
        "## Polling",
        "",
        "Copy and restore timelines replayed through today's poll policy with Wait states (`steps.lib.polling."
        f"poll_fields`, default settings: {settings['poll_min_seconds']}..{settings['poll_max_seconds']} s; the "
        "loops now wait for RDS events and fall back to it, see *Event-driven waits* below) and "
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
    lines += report_events(results["events"])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(report(measure()))
