"""The step registry: register, refuse duplicates, name the known steps on a miss."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.errors import UnknownStep
from dispatcher.registry import DuplicateStep, Registry, Step


def test_register_and_get() -> None:
    registry = Registry()

    @registry.register("say_hello")
    class SayHello(Step):
        """Say hello."""

        def run(self, ctx: Any) -> dict[str, Any]:
            return {"hello": True}

    assert registry.get("say_hello") is SayHello
    assert SayHello.state_name == "SayHello"
    assert SayHello.result_key == "say_hello"
    assert SayHello.description() == "Say hello."


def test_duplicate_name_is_refused_with_both_classes_named() -> None:
    registry = Registry()

    @registry.register("copy")
    class First(Step):
        """First."""

    with pytest.raises(DuplicateStep, match=r"already registered by .*First"):

        @registry.register("copy")
        class Second(Step):
            """Second."""


def test_unknown_step_names_itself_and_the_known_ones() -> None:
    registry = Registry()
    registry.register("alpha")(type("Alpha", (Step,), {"__doc__": "A."}))
    registry.register("beta")(type("Beta", (Step,), {"__doc__": "B."}))
    with pytest.raises(UnknownStep) as caught:
        registry.get("gamma")
    assert "'gamma'" in str(caught.value)
    assert "known steps: alpha, beta" in str(caught.value)


def test_a_step_may_not_write_over_the_request() -> None:
    registry = Registry()
    bad = type("Bad", (Step,), {"__doc__": "Bad.", "result_key": "request"})
    with pytest.raises(ValueError, match="overwrite the request"):
        registry.register("bad")(bad)


def test_builtin_steps_all_have_a_docstring_and_a_result_key(registry: Registry) -> None:
    assert "validate_request" in registry
    for cls in registry:
        assert cls.description(), cls
        assert cls.result_key, cls
        assert cls.run is not Step.run, f"{cls.name} does not implement run"


def test_plugins_load_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata as metadata

    calls: list[str] = []

    class Plugin(Step):
        """A third-party step."""

        run_after = "setup_db_users"

    class FakeEntryPoint:
        name = "plugin_step"

        def load(self) -> type[Step]:
            calls.append("load")
            return Plugin

    monkeypatch.setattr(metadata, "entry_points", lambda group: [FakeEntryPoint()] if group else [])
    registry = Registry()
    assert calls == []
    assert registry.load_plugins() == ["plugin_step"]
    assert registry.load_plugins() == []
    assert calls == ["load"]
    assert registry.get("plugin_step") is Plugin
