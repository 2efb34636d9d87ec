"""The steps of docs/architecture.md (the contract), as a registry the template tests can build from.

The template is generated from the registered steps' class attributes only (``name``,
``state_name``, ``reads``, ``result_key``). Built-in steps that are registered are used as they are;
a step of the contract that no module registers yet gets a stand-in class with the contract's
attributes, here in the tests and never in the product. Once every step is registered the stand-ins
are unused, and a registered step that drifted from the contract shows up as a golden-file diff.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from dispatcher.registry import Registry, Step, load_builtin_steps


class ContractStep(NamedTuple):
    """One row of the contract table."""

    name: str
    state_name: str
    reads: tuple[str, ...]
    result_key: str
    mutating: bool


CONTRACT: tuple[ContractStep, ...] = (
    ContractStep("validate_request", "ValidateRequest", ("$",), "request", False),
    ContractStep("snapshot_check", "SnapshotCheck", ("request",), "snapshot", True),
    ContractStep("copy_snapshot", "CopySnapshot", ("request", "snapshot"), "copy", True),
    ContractStep("check_copy_status", "CheckCopyStatus", ("request", "copy"), "copy", False),
    ContractStep("delete_target", "DeleteRDS", ("request", "snapshot"), "delete", True),
    ContractStep("check_delete_status", "CheckDeleteStatus", ("request", "delete"), "delete", False),
    ContractStep("restore_snapshot", "RestoreSnapshot", ("request", "snapshot", "copy"), "restore", True),
    ContractStep("check_restore_status", "CheckRestoreStatus", ("request", "restore"), "restore", False),
    ContractStep("setup_db_users", "SetupDBUsers", ("request", "restore"), "users", True),
    ContractStep("swap_clusters", "SwapClusters", ("request", "snapshot", "restore"), "swap", True),
    ContractStep(
        "check_swap_status", "CheckSwapStatus", ("request", "snapshot", "restore", "swap"), "swap", False
    ),
    ContractStep("archive_snapshot", "ArchiveSnapshot", ("request", "copy", "restore"), "archive", True),
    ContractStep("sns_notification", "SendNotification", ("$",), "notification", True),
    ContractStep("handle_failure", "HandleFailure", ("$",), "failure", True),
)


def stand_in(row: ContractStep) -> type[Step]:
    """A step class with the contract's attributes (it is never run)."""

    def run(self: Step, ctx: Any) -> dict[str, Any]:
        raise NotImplementedError(f"stand-in for {row.name}: no module registers this step")

    return type(
        "StandIn" + row.state_name,
        (Step,),
        {
            "__doc__": f"Stand-in for {row.name} (tests only).",
            "__module__": __name__,
            "reads": row.reads,
            "result_key": row.result_key,
            "mutating": row.mutating,
            "run": run,
        },
    )


def contract_registry(*, stand_ins_only: bool = False) -> Registry:
    """A fresh registry: the registered built-in steps, plus stand-ins for the contract's others."""
    fresh = Registry()
    builtin = Registry() if stand_ins_only else load_builtin_steps()
    for row in CONTRACT:
        cls = builtin.get(row.name) if row.name in builtin else stand_in(row)
        fresh.register(row.name, state_name=row.state_name if cls.__module__ == __name__ else None)(cls)
    for cls in builtin:
        if cls.name not in fresh:
            fresh.register(cls.name)(cls)
    return fresh


def missing_builtin_steps() -> list[str]:
    """Steps of the contract that no module of ``steps/`` registers (yet)."""
    builtin = load_builtin_steps()
    return [row.name for row in CONTRACT if row.name not in builtin]


def contract_template(**options: Any) -> dict[str, Any]:
    """The template built from :func:`contract_registry`, as plain JSON data."""
    import json

    from infra.build_template import build_template

    return json.loads(build_template(registry=contract_registry(), **options).to_json())
