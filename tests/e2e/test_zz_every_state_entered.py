"""Across the e2e tests, every state of the generated definition was entered at least once.

Runs last in the directory (file order). The states come from the execution histories the other
e2e tests recorded; a state no test reaches is a branch nobody has seen work. It judges only a
run of the whole directory: with ``-k``/``-m`` or a single file it skips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


def test_every_state_of_the_definition_was_entered(
    request: pytest.FixtureRequest, definition: dict[str, Any], entered_states: set[str]
) -> None:
    config = request.config
    collected = {
        Path(str(item.path)) for item in request.session.items if Path(str(item.path)).parent == HERE
    }
    if config.option.keyword or config.option.markexpr or collected != set(HERE.glob("test_*.py")):
        pytest.skip("judges only a run of every e2e test in this directory")
    if request.session.testsfailed:
        pytest.skip("an e2e test failed; its states may not have been reached")
    never_entered = sorted(set(definition["States"]) - entered_states)
    assert never_entered == []
