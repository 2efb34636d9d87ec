"""A poll loop as one step: ``start`` the slow work, ``check`` it until it is complete.

RDS has no event for a finished copy, restore, rename or deletion, so the state machine polls.
One :class:`PollLoopStep` subclass, registered once, is the whole loop: the registry also
registers its check half (a generated :class:`PollCheck`), and the state machine generates the
loop's four states from the class::

    <state_name> (start) -> Is<Key>Complete (Choice on $.<key>.complete)
        -> WaitFor<Key> (Wait, SecondsPath $.<key>.next_poll_seconds) -> Check<Key>Status (check)
        -> Is<Key>Complete ...

``<Key>`` is the capitalised ``result_key``; both halves write ``$.<result_key>`` and declare the
same ``outputs``. The halves stay two Task states (and two registered names) because each
dispatcher invocation is one bounded unit of work, and the operator's history shows which half
ran. The steps end the loop with ``PollTimeout`` past ``max_wait_setting``; the state machine's
own ``TimeoutSeconds`` is only the backstop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from dispatcher.registry import Step

if TYPE_CHECKING:
    from dispatcher.context import StepContext


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


class PollLoopStep(Step):
    """A step that starts slow work, then is checked until ``$.<result_key>.complete``."""

    #: Outputs both halves guarantee; a loop's Choice and Wait read these two. (``aws_actions``
    #: covers both halves too: they share the routines that call AWS.)
    outputs: ClassVar[tuple[str, ...]] = ("complete", "next_poll_seconds")
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
    _check_half: ClassVar[type[Step] | None] = None

    def start(self, ctx: StepContext) -> dict[str, Any]:
        """Start the slow work (adopting work already started) and return the poll fields."""
        raise NotImplementedError

    def check(self, ctx: StepContext) -> dict[str, Any]:
        """Look at the work once, act if it is the loop's turn, and return the poll fields."""
        raise NotImplementedError

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """The start half."""
        return self.start(ctx)

    def summarize_check(self, output: dict[str, Any]) -> str:
        """The audit line for a check's output; the start's line unless the loop says otherwise."""
        return self.summarize(output)

    @classmethod
    def derived_steps(cls) -> tuple[type[Step], ...]:
        """The check half, generated once per loop class."""
        key = _camel(cls.result_key)
        cls.check_name = cls.__dict__.get("check_name") or f"check_{cls.result_key}_status"
        cls.check_state_name = cls.__dict__.get("check_state_name") or _camel(cls.check_name)
        cls.choice_state = cls.__dict__.get("choice_state") or f"Is{key}Complete"
        cls.wait_state = cls.__dict__.get("wait_state") or f"WaitFor{key}"
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
        return (made,)


class PollCheck(Step):
    """The check half of a poll loop: runs the loop's ``check``; made by the registry, never written."""

    part_of: ClassVar[type[Step] | None] = None

    def _loop(self) -> PollLoopStep:
        loop = self.part_of
        assert loop is not None and issubclass(loop, PollLoopStep)
        return loop()

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """The loop's check."""
        return self._loop().check(ctx)

    def summarize(self, output: dict[str, Any]) -> str:
        """The loop's summary line for a check."""
        return self._loop().summarize_check(output)

    def recorded_output(self, output: dict[str, Any]) -> dict[str, Any]:
        """What the loop keeps of its output."""
        return self._loop().recorded_output(output)
