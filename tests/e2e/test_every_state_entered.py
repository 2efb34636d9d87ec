"""Across the e2e tests, every state of the generated definition was entered at least once.

Runs after every other test of the session (the e2e conftest's collection hook moves it to the
end, whatever the files' names or order). The states come from the execution histories the other
e2e tests recorded; a state no test reaches is a branch nobody has seen work. It judges only a
run of every e2e test of this directory (the ``slow`` variants may be left out; with ``-k`` or a
single file it skips).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import COLLECTED, EVERY_STATE_TEST, HERE


def test_every_state_of_the_definition_was_entered(
    request: pytest.FixtureRequest, definition: dict[str, Any], entered_states: set[str]
) -> None:
    # The hook finds this test by its name.
    assert request.node.name == EVERY_STATE_TEST
    # Judging before the others ran would see only part of the states.
    assert request.session.items[-1] is request.node, "runs before other tests; see the e2e conftest"
    collected = request.config.stash.get(COLLECTED, set())
    selected = {item.nodeid for item in request.session.items if Path(str(item.path)).parent == HERE}
    files = {Path(nodeid.split("::")[0]).name for nodeid in collected}
    # The normal run (every e2e test but the exhaustive slow variants), or more.
    if not collected <= selected or files != {path.name for path in HERE.glob("test_*.py")}:
        pytest.skip("judges only a run of every e2e test in this directory")
    if request.session.testsfailed:
        pytest.skip("an e2e test failed; its states may not have been reached")
    never_entered = sorted(set(definition["States"]) - entered_states)
    assert never_entered == []
