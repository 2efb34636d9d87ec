"""A poll loop as one step: ``start`` the slow work, then wait until a ``check`` finds it complete.

RDS sends events when a copy, restore, rename or deletion changes state, but delivery is best
effort, so an event is a hint to check, never a fact. One :class:`PollLoopStep` subclass,
registered once, is the whole loop: the registry also registers its check half (a generated
:class:`PollCheck`) and its waiting half (a generated :class:`PollAwait`), and the state machine
generates the loop's states from the class::

    <state_name> (start) -> Is<Key>Complete (Choice: $.<key>.complete, then $.<key>.wait_for_events)
        -> WaitFor<Key> (waiting Task, .waitForTaskToken, times out after $.<key>.fallback_seconds)
              on States.Timeout -> WaitFor<Key> again (its own check is the fallback poll)
        -> Is<Key>Complete ...
    Is<Key>Complete with events not trusted -> WaitToCheck<Key> (Wait, $.<key>.next_poll_seconds)
        -> Check<Key>Status (check) -> Is<Key>Complete ...

The waiting half records its task token against the resources :meth:`PollLoopStep.awaits` names
(:mod:`dispatcher.waits`), then checks once (the resource may be done already) and, when it is,
completes its own wait with the check's output. Otherwise an RDS event about one of those
resources makes the event step run the same check and complete the wait with its output (or fail
it with its error). When no event comes, the Task times out after ``fallback_seconds`` (aimed
just past a copy's expected finish, else minutes; see ``steps/lib/polling.py``)
and runs again: that one invocation is the fallback poll. It ends its own wait early, with the
fresh output, when the next fallback should be much shorter or longer than the one it was given
(a Task's timeout is read once, when the state is entered).

Whether a loop waits for events is decided at every look (``wait_for_events``): only once an RDS
event has reached the stack in the region, and no fallback poll has since found the work done
after a long wait with no event having reported it (events being lost). Otherwise the loops poll
on the poll policy's schedule as they did before there were events
(:func:`dispatcher.waits.events_trusted`).

``<Key>`` is the capitalised ``result_key``; every half writes ``$.<result_key>`` and declares the
same ``outputs``. The halves stay separate Task states (and registered names) because each
dispatcher invocation is one bounded unit of work, and the operator's history shows which half
ran. The steps end the loop with ``PollTimeout`` past ``max_wait_setting``; the state machine's
own ``TimeoutSeconds`` is only the backstop.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from dispatcher import waits
from dispatcher.registry import Step

if TYPE_CHECKING:
    from dispatcher.context import StepContext


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


class PollLoopStep(Step):
    """A step that starts slow work, then is checked until ``$.<result_key>.complete``."""

    #: Outputs every half guarantees; a loop's Choice reads ``complete``, its waiting Task's timeout
    #: is ``fallback_seconds``. (``aws_actions``
    #: covers both halves too: they share the routines that call AWS.)
    outputs: ClassVar[tuple[str, ...]] = ("complete", "next_poll_seconds", "fallback_seconds")
    #: Keys of the execution's data the check half reads (the start half reads ``reads``).
    check_reads: ClassVar[tuple[str, ...]] = ()
    #: False when the check only looks; True when it also acts (re-issues a deletion, renames).
    check_mutating: ClassVar[bool] = False
    #: The ``dispatcher.settings.Settings`` field bounding the wait (the halves raise PollTimeout).
    max_wait_setting: ClassVar[str] = ""
    #: What the check half's output holds (its ``output_doc``), for the architecture's table.
    check_output_doc: ClassVar[str] = "same shape"
    #: Derived from ``result_key`` at registration unless the class sets them.
    check_name: ClassVar[str] = ""
    check_state_name: ClassVar[str] = ""
    choice_state: ClassVar[str] = ""
    wait_state: ClassVar[str] = ""
    await_name: ClassVar[str] = ""
    #: The Wait state the loop polls through while events are not trusted.
    poll_wait_state: ClassVar[str] = ""
    #: Fields of the loop's output naming the resources whose RDS events may end the wait (a
    #: string or a list of strings each); see :meth:`awaits`.
    awaited_fields: ClassVar[tuple[str, ...]] = ()
    #: False for work whose RDS events never reach this stack's bus (a copy inside another
    #: account): the loop waits with a Wait state for ``next_poll_seconds`` and has no waiting half.
    waits_for_events: ClassVar[bool] = True
    _check_half: ClassVar[type[Step] | None] = None
    _await_half: ClassVar[type[Step] | None] = None

    def start(self, ctx: StepContext) -> dict[str, Any]:
        """Start the slow work (adopting work already started) and return the poll fields."""
        raise NotImplementedError

    def check(self, ctx: StepContext) -> dict[str, Any]:
        """Look at the work once, act if it is the loop's turn, and return the poll fields."""
        raise NotImplementedError

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """The start half."""
        return _with_mode(self, ctx, self.start(ctx))

    def awaits(self, fields: dict[str, Any]) -> list[str]:
        """The RDS identifiers whose events may mean the wait is over, read from the last output.

        Every identifier an event about the work would carry as its ``SourceIdentifier``: the
        snapshot being copied, the cluster and instances being restored, the clusters being renamed.
        """
        found: list[str] = []
        for name in self.awaited_fields:
            value = fields.get(name)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and item and item not in found:
                    found.append(item)
        return found

    def summarize_check(self, output: dict[str, Any]) -> str:
        """The audit line for a check's output; the start's line unless the loop says otherwise."""
        return self.summarize(output)

    @classmethod
    def derived_steps(cls) -> tuple[type[Step], ...]:
        """The check half and (for a loop that waits for events) the waiting half, made once per class."""
        key = _camel(cls.result_key)
        cls.check_name = cls.__dict__.get("check_name") or f"check_{cls.result_key}_status"
        cls.check_state_name = cls.__dict__.get("check_state_name") or _camel(cls.check_name)
        cls.choice_state = cls.__dict__.get("choice_state") or f"Is{key}Complete"
        cls.wait_state = cls.__dict__.get("wait_state") or f"WaitFor{key}"
        cls.await_name = cls.__dict__.get("await_name") or f"await_{cls.result_key}"
        cls.poll_wait_state = cls.__dict__.get("poll_wait_state") or f"WaitToCheck{key}"
        if cls.waits_for_events:
            # Every half returns them (see _with_mode); the Choice and the waiting Task read them.
            cls.outputs = (*cls.outputs, *(f for f in EVENT_FIELDS if f not in cls.outputs))
        made = cls.__dict__.get("_check_half")
        if made is None or made.name != cls.check_name:
            made = type(
                f"{cls.__name__}Check",
                (PollCheck,),
                {
                    "__doc__": cls.check.__doc__,
                    "__module__": cls.__module__,
                    "__qualname__": f"{cls.__qualname__}.check",
                    "name": cls.check_name,
                    "state_name": cls.check_state_name,
                    "reads": cls.check_reads or (*cls.reads, cls.result_key),
                    "result_key": cls.result_key,
                    "outputs": cls.outputs,
                    "mutating": cls.check_mutating,
                    "aws_actions": cls.aws_actions,
                    "output_doc": cls.check_output_doc,
                    "part_of": cls,
                },
            )
            cls._check_half = made
        if not cls.waits_for_events:
            return (made,)
        waiting = cls.__dict__.get("_await_half")
        if waiting is None or waiting.name != cls.await_name:
            waiting = type(
                f"{cls.__name__}Await",
                (PollAwait,),
                {
                    "__doc__": f"Wait for an RDS event about {cls.result_key} (checking once first).",
                    "__module__": cls.__module__,
                    "__qualname__": f"{cls.__qualname__}.await",
                    "name": cls.await_name,
                    "state_name": cls.wait_state,
                    "reads": cls.check_reads or (*cls.reads, cls.result_key),
                    "result_key": cls.result_key,
                    "outputs": cls.outputs,
                    "mutating": cls.check_mutating,
                    "aws_actions": (*cls.aws_actions, *AWAIT_ACTIONS),
                    "output_doc": "the check's output, sent by whoever saw the work complete",
                    "part_of": cls,
                },
            )
            cls._await_half = waiting
        return (made, waiting)


#: What every half of a loop that waits for events returns beside the poll fields: how long the
#: waiting Task waits, and whether the loop waits for events at all (else it polls as before).
EVENT_FIELDS = ("fallback_seconds", "wait_for_events")
#: Where the waiting Task's Catch puts a timeout (``$.<key>.fallback``): the next run of the
#: waiting half knows its wait ran out, so a check that finds the work done is a missed event.
TIMEOUT_FIELD = "fallback"
#: The waiting half ends its own wait early when the next fallback differs from the one it was
#: given by more than this fraction (a Task's timeout is fixed when the state is entered).
REAIM_TOLERANCE = 0.5


def _region(ctx: StepContext, fields: dict[str, Any]) -> str:
    return str(fields.get("region") or ctx.settings.stack_region)


def _with_mode(loop: PollLoopStep, ctx: StepContext, output: dict[str, Any]) -> dict[str, Any]:
    """``output`` with ``wait_for_events`` (for a loop that can wait for events)."""
    if loop.waits_for_events and isinstance(output, dict):
        trusted = (
            waits.events_trusted(ctx.store, _region(ctx, output)) if not output.get("complete") else False
        )
        output = {**output, "wait_for_events": trusted}
        output.setdefault("fallback_seconds", 0)
    return output


def _check_alone(loop: PollLoopStep, ctx: StepContext) -> dict[str, Any]:
    """The loop's check; for a check that acts, never at the same time as another of its checks."""
    if not loop.check_mutating:
        return loop.check(ctx)
    with waits.one_check_at_a_time(
        ctx.store, ctx.operation_id, loop.result_key, holder=uuid.uuid4().hex, clock=ctx.clock
    ) as alone:
        if not alone:
            from dispatcher.errors import Retryable

            raise Retryable(f"another check of {loop.result_key} in this execution is still running")
        return loop.check(ctx)


def reaim(waited: int, fallback: int) -> bool:
    """True when the next fallback is far enough from ``waited`` to end the wait and set it anew."""
    return fallback < waited * (1 - REAIM_TOLERANCE) or fallback > waited * (1 + REAIM_TOLERANCE)


class PollCheck(Step):
    """The check half of a poll loop: runs the loop's ``check``; made by the registry, never written."""

    part_of: ClassVar[type[Step] | None] = None

    def _loop(self) -> PollLoopStep:
        loop = self.part_of
        assert loop is not None and issubclass(loop, PollLoopStep)
        return loop()

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """The loop's check."""
        loop = self._loop()
        return _with_mode(loop, ctx, loop.check(ctx))

    def summarize(self, output: dict[str, Any]) -> str:
        """The loop's summary line for a check."""
        return self._loop().summarize_check(output)

    def recorded_output(self, output: dict[str, Any]) -> dict[str, Any]:
        """What the loop keeps of its output."""
        return self._loop().recorded_output(output)


#: What a waiting half calls beside the loop's own actions: it completes its own wait when its
#: first check finds the work done.
AWAIT_ACTIONS = ("states:SendTaskSuccess",)


class PollAwait(PollCheck):
    """The waiting half of a poll loop: records its task token, checks once, and waits.

    Its Task waits for ``SendTaskSuccess``/``SendTaskFailure`` (``.waitForTaskToken``): the value
    it returns is not the state's output. It sends the check's output itself when the work is
    complete, when events are no longer trusted (the loop goes back to polling) and when the
    next fallback should differ much from this Task's timeout; a failing check fails the
    invocation, which fails the Task with the check's error, as a poll's would. Run again after
    a timeout (``$.<key>.fallback`` set), its check is the loop's fallback poll.
    """

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Record the token against the awaited resources, then check once."""
        loop = self._loop()
        token = ctx.event.get("task_token")
        if not isinstance(token, str) or not token:
            from dispatcher.errors import ValidationError

            raise ValidationError("task_token", None, "the waiting Task passes $$.Task.Token as task_token")
        fields = ctx.input(loop.result_key)
        region = _region(ctx, fields)
        # The Task's timeout (TimeoutSecondsPath), read when the state was entered.
        waited = int(fields.get("fallback_seconds") or 0)
        timed_out = isinstance(fields.get(TIMEOUT_FIELD), dict)
        check_event = {key: ctx.event[key] for key in self.reads if key in ctx.event}
        waiter = waits.Waiter(
            execution_id=ctx.execution_id or "",
            operation_id=ctx.operation_id,
            token=token,
            check_step=loop.check_name,
            check_event={"step": loop.check_name, "execution_id": ctx.execution_id, **check_event},
            expires_at=waits.expiry(ctx.clock(), waited),
        )
        resources = loop.awaits(fields)
        # Recorded before the check: an event arriving from now on finds the token, and whatever
        # happened before is what the check sees.
        for resource in resources:
            waits.add_waiter(ctx.store, region, resource, waiter)
        output = _with_mode(loop, ctx, _check_alone(loop, ctx))
        complete = bool(output.get("complete"))
        if complete and timed_out and waited >= waits.MISS_AFTER_SECONDS:
            # The work finished with no event ending a long wait: lost, or far later than the
            # fallback. Loops poll as before until the next event arrives.
            waits.record_miss(ctx.store, region, resources, ctx.clock())
            ctx.log.warning(
                "the fallback poll found the work done before any event said so; polling until events arrive",
                resources=resources,
                region=region,
            )
        ends = complete or not output.get("wait_for_events") or reaim(waited, int(output["fallback_seconds"]))
        if ends:
            answer = json.dumps(output, default=str)
            ctx.aws("stepfunctions").send_task_success(taskToken=token, output=answer)
            for resource in resources:
                waits.remove_waiter(ctx.store, region, resource, waiter)
            return output
        ctx.log.info(
            "waiting for an event",
            resources=resources,
            region=region,
            fallback_seconds=waited,
            fallback_poll=timed_out,
        )
        return output
