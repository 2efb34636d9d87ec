"""handle_failure: where every Catch of the state machine lands; report, clean up, close.

- ``step``: the failure handler (which step failed and why, the operation marked FAILED, the
  target lock released, one failure notification per execution);
- ``cleanup``: what this execution left behind removed, or restored under delete-first (it
  knows the replace strategies and never deletes a cluster this tool did not make).
"""

from __future__ import annotations

from steps.handle_failure.step import HandleFailure

__all__ = ["HandleFailure"]
