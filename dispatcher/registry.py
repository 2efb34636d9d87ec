"""The step registry: a dict keyed by step name, filled by a decorator.

Built-in steps live one per module in ``steps/`` and register on import. Third-party steps come
through the ``aurora_restore.steps`` entry-point group, read once and only when asked
(``Registry.load_plugins``): scanning installed packages is not something a cold start should do.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from dispatcher.errors import UnknownStep

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from dispatcher.context import StepContext

ENTRY_POINT_GROUP = "aurora_restore.steps"
#: The package of ``steps`` that holds shared helpers, not a step.
SHARED_PACKAGE = "lib"


class RequestModel(Protocol):
    """What the step that produces ``$.request`` offers the framework: the request's class.

    The framework builds ``ctx.request`` with it and reads an operation id from a raw input
    before any step validated it, without knowing what a request holds.
    """

    @classmethod
    def from_event(cls, raw: Any, *, execution_id: str | None = None) -> Any:
        """The validated request from ``$.request``."""

    @staticmethod
    def peek_operation_id(raw: Any, execution_id: str | None = None) -> str:
        """Best-effort operation id of a raw input, never raising."""


class Step:
    """One unit of the pipeline, run by the dispatcher as one Task state.

    Subclasses set ``name`` (via ``@register``) and implement :meth:`run`. The class attributes
    below tell the template how the state machine calls the step.
    """

    #: Registered name; the ``step`` field of the event.
    name: ClassVar[str] = ""
    #: State name in the state machine (what the Step Functions console and the operator CLI
    #: show); ``@register`` defaults it to the step's name in CamelCase.
    state_name: ClassVar[str] = ""
    #: Keys of the execution's data the step reads, each passed as ``"<key>.$": "$.<key>"``.
    #: ``"$"`` passes the whole execution data as ``input`` (first state, notifications, failure).
    reads: ClassVar[tuple[str, ...]] = ("request",)
    #: Where its output goes: ``$.<result_key>``. Never ``request`` (the request is not
    #: overwritten), except for the one step that makes it.
    result_key: ClassVar[str] = ""
    #: True for the step that turns the execution input into ``$.request``; only it may write there.
    produces_request: ClassVar[bool] = False
    #: On that step: the request's class, from which the framework builds ``ctx.request``.
    request_model: ClassVar[type[RequestModel] | None] = None
    #: True for the step that reports the refresh's success: when it fails, the refresh itself had
    #: completed, so the failure handler must leave the restored cluster alone.
    final_notification: ClassVar[bool] = False
    #: Fields every successful output has (``a.b`` for nested ones). The template's build proves
    #: each path a Choice, a Wait or Parameters reads against them (an absent path is
    #: ``States.Runtime``, which nothing catches); the dispatcher refuses an output without them.
    outputs: ClassVar[tuple[str, ...]] = ()
    #: The IAM actions the step's AWS calls need, including what AWS checks on the caller when a
    #: service acts on its behalf (``kms:CreateGrant`` for an encrypted copy...). The template's
    #: dispatcher role allows these and no others beside the framework's own (tables, logs, traces).
    aws_actions: ClassVar[tuple[str, ...]] = ()
    #: What the output holds, in the operator's words: docs/architecture.md's table of the
    #: execution's data shows it (``python infra/build_template.py --update-docs`` writes it).
    output_doc: ClassVar[str] = ""
    #: False for steps that only read (checks, polls); the idempotency test runs the others twice.
    mutating: ClassVar[bool] = True
    #: Where the step runs, for built-in and third-party steps alike: right after the step named
    #: here (after the whole loop when it names either half of a poll loop). ``infra/pipeline.py``
    #: derives the pipeline from these.
    run_after: ClassVar[str | None] = None
    #: Set when the step (with the steps placed after it by others) runs only when a Choice holds.
    run_when: ClassVar[RunWhen | None] = None
    #: ``"first"`` for the step that takes the raw input, ``"failure"`` for the one every Catch
    #: goes to; None for the others, which set ``run_after``.
    pipeline_role: ClassVar[str | None] = None
    #: True for the failure step: it must run (and notify) even when the state table refuses the
    #: dispatcher's own records, so those are logged instead of failing the invocation.
    records_best_effort: ClassVar[bool] = False
    #: The step this one was generated from (a poll loop's check half), placed with it; else None.
    part_of: ClassVar[type[Step] | None] = None

    @classmethod
    def derived_steps(cls) -> tuple[type[Step], ...]:
        """Steps generated from this one, registered with it (a poll loop's check half)."""
        return ()

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Do the step's work for ``ctx.request`` and return a JSON-safe result.

        Must be idempotent: Step Functions and Lambda retry, so every step runs twice sooner
        or later, and the second run must adopt what the first made.
        """
        raise NotImplementedError

    @classmethod
    def description(cls) -> str:
        """First line of the class docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def operation_id(self, event: dict[str, Any]) -> str | None:
        """The operation this event belongs to, read before the step runs (for logs and records)."""
        request = event.get("request")
        if isinstance(request, dict):
            value = request.get("operation_id")
            return value if isinstance(value, str) else None
        return None

    def recorded_output(self, output: dict[str, Any]) -> dict[str, Any]:
        """What the state item keeps of the output under ``results.<step>``: all of it by default.

        A DynamoDB item holds at most 400 KB; a step whose output is kept elsewhere on the item
        keeps a pointer here instead of a second copy.
        """
        return output

    def summarize(self, output: dict[str, Any]) -> str:
        """A short, secret-free line about the output for the audit trail."""
        parts = [f"{k}={v}" for k, v in output.items() if isinstance(v, (str, int, float, bool))]
        text = ", ".join(parts)
        return text if len(text) <= 300 else text[:297] + "..."


@dataclass(frozen=True)
class RunWhen:
    """A step's condition: its stage runs only when ``rule`` (an ASL Choice rule, no ``Next``) holds.

    ``choice`` names the Choice state; when the rule does not hold the pipeline goes on past it
    (through ``otherwise_state``, writing ``otherwise_output`` as the step's result, when set).
    """

    choice: str
    rule: dict[str, Any]
    #: When later steps read the step's ``result_key`` whichever way the Choice goes: the Pass state
    #: the Choice takes otherwise, and what it writes there (every later read then finds the key,
    #: with these fields, which the build's path proof holds the readers to).
    otherwise_state: str | None = None
    otherwise_output: dict[str, Any] | None = None


def missing_outputs(declared: tuple[str, ...], output: Any) -> list[str]:
    """The declared fields (dotted paths) that ``output`` lacks."""
    missing: list[str] = []
    for path in declared:
        value = output
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                missing.append(path)
                break
            value = value[part]
    return missing


S = TypeVar("S", bound=type[Step])


class DuplicateStep(ValueError):
    """Two step classes asked for the same name."""


class Registry:
    """Step classes by name."""

    def __init__(self) -> None:
        self._steps: dict[str, type[Step]] = {}
        self._plugins_loaded = False

    def register(self, name: str, *, state_name: str | None = None) -> Callable[[S], S]:
        """Class decorator: register the class under ``name``; a duplicate name is an error."""

        def decorate(cls: S) -> S:
            existing = self._steps.get(name)
            if existing is not None and existing is not cls:
                raise DuplicateStep(
                    f"step {name!r} is already registered by {existing.__module__}.{existing.__qualname__};"
                    f" {cls.__module__}.{cls.__qualname__} cannot take the same name"
                )
            cls.name = name
            if state_name:
                cls.state_name = state_name
            elif not cls.state_name:
                cls.state_name = "".join(part.capitalize() for part in name.split("_"))
            if not cls.result_key:
                cls.result_key = name
            if cls.result_key == "request" and not cls.produces_request:
                raise ValueError(f"step {name!r}: result_key 'request' would overwrite the request")
            self._steps[name] = cls
            for derived in cls.derived_steps():
                existing_part = getattr(self._steps.get(derived.name), "part_of", None)
                if existing_part is cls:
                    continue  # a trial stand-in for this loop's half, registered first, stays
                if existing_part is not None and issubclass(cls, existing_part):
                    del self._steps[derived.name]  # a subclass of the loop brings its own half
                self.register(derived.name, state_name=derived.state_name)(derived)
            return cls

        return decorate

    def get(self, name: Any) -> type[Step]:
        """The class registered under ``name``; ``UnknownStep`` lists the known ones otherwise."""
        try:
            return self._steps[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self._steps)) or "(none)"
            raise UnknownStep(f"unknown step {name!r}; known steps: {known}", step=name) from None

    def request_model(self) -> type[RequestModel] | None:
        """The request's class, declared by the step that produces the request; None without one."""
        return next(
            (cls.request_model for cls in self._steps.values() if cls.produces_request and cls.request_model),
            None,
        )

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._steps)

    def __contains__(self, name: object) -> bool:
        return name in self._steps

    def __iter__(self) -> Iterator[type[Step]]:
        return iter([self._steps[n] for n in self.names()])

    def __len__(self) -> int:
        return len(self._steps)

    def unregister(self, name: str) -> None:
        """Remove a step and the steps generated from it (tests that register an extra step clean up)."""
        removed = self._steps.pop(name, None)
        for other in [n for n, cls in self._steps.items() if removed and cls.part_of is removed]:
            self._steps.pop(other)

    def load_plugins(self) -> list[str]:
        """Import every ``aurora_restore.steps`` entry point once; return the names added."""
        if self._plugins_loaded:
            return []
        from importlib.metadata import entry_points

        before = set(self._steps)
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            loaded = entry_point.load()
            # An entry point may name a module (registering on import) or a Step class.
            if isinstance(loaded, type) and issubclass(loaded, Step) and loaded.name not in self._steps:
                self.register(loaded.name or entry_point.name)(loaded)
        self._plugins_loaded = True
        return sorted(set(self._steps) - before)


#: The process-wide registry the built-in steps register into.
registry = Registry()
register = registry.register


def load_builtin_steps() -> Registry:
    """Import every public module and package of ``steps``, which registers its steps.

    A step that needs several modules is a package (its ``__init__`` imports the step); ``lib``
    holds what several steps share and registers nothing.
    """
    import steps

    for module in pkgutil.iter_modules(steps.__path__):
        if not module.name.startswith("_") and module.name != SHARED_PACKAGE:
            importlib.import_module(f"steps.{module.name}")
    return registry
