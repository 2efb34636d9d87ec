"""The fault matrix (tests/e2e/fault_matrix.py): AWS operations x classes of error, end to end.

The normal run takes a sample: every operation once with a permanent error (the classes in turn),
each transient class on every operation at once (one rehearsal per class, each call failing
twice, inside botocore's budget), and two failed first runs retried (one retry meeting the fault
again, one not). ``tox -e slow`` runs every operation with every class, one rehearsal each, and
every operation's permanent failure retried both ways. All print the count of cases run and
passed, and a table of every rehearsal.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aurora_restore.simulate.rehearsal import Report
from tests.e2e import fault_matrix
from tests.e2e.fault_matrix import Outcome, Run


@pytest.fixture
def operations(rehearse: Callable[..., Report], seed_input: dict[str, Any]) -> list[tuple[str, str]]:
    """Every AWS operation a clean swap refresh of the seed's input calls (from its aws_calls)."""
    raw_input, world = fault_matrix.scenario(seed_input)
    clean = rehearse(raw_input, world=world, **fault_matrix.OPTIONS)
    assert clean.status == "SUCCEEDED", clean.error
    found = fault_matrix.operations(clean.aws_calls)
    # The pipeline's calls reach every service it uses; a refactoring that drops one shows here.
    assert {service for service, _ in found} == {"dynamodb", "kms", "rds", "secretsmanager", "sns"}
    return found


def run_all(
    runs: list[Run],
    rehearse: Callable[..., Report],
    seed_input: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    title: str,
) -> list[Outcome]:
    outcomes = []
    for run in runs:
        raw_input, world = fault_matrix.scenario(seed_input)
        outcomes.append(fault_matrix.run_one(run, rehearse, raw_input, world))
    with capsys.disabled():
        print("\n" + fault_matrix.summary(outcomes, title=title))
    return outcomes


def test_fault_matrix_sample(
    rehearse: Callable[..., Report],
    seed_input: dict[str, Any],
    operations: list[tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN every operation the pipeline calls, each with one class of error (and the transient
    # classes on every service); WHEN each case runs end to end
    runs = fault_matrix.sample(operations)
    outcomes = run_all(runs, rehearse, seed_input, capsys, "Fault matrix, sample")
    # THEN every case ended as it must (the table above says which did not, and why)
    covered = {(c.service, c.operation, c.kind) for o in outcomes for c in o.run.cases}
    assert {o.run.retry for o in outcomes} >= set(fault_matrix.RETRY_OUTCOMES)
    assert {kind for _, _, kind in covered} == set(fault_matrix.CLASSES)
    assert {(s, o) for s, o, _ in covered} == set(operations)
    failed = [f"{o.run.name}: {'; '.join(o.problems)}" for o in outcomes if not o.passed]
    assert failed == [], "\n".join(failed)


@pytest.mark.slow
def test_fault_matrix_exhaustive(
    rehearse: Callable[..., Report],
    seed_input: dict[str, Any],
    operations: list[tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = fault_matrix.cases(operations)
    outcomes = run_all(runs, rehearse, seed_input, capsys, "Fault matrix, every operation x every class")
    assert len(outcomes) == len(operations) * len(fault_matrix.CLASSES)
    if os.environ.get(fault_matrix.DOC_VARIABLE):
        # python -m tests.e2e.fault_matrix: keep the table in the docs.
        table = fault_matrix.summary(outcomes, title=fault_matrix.EXHAUSTIVE_TITLE)
        fault_matrix.write_section(
            Path(os.environ[fault_matrix.DOC_VARIABLE]), fault_matrix.EXHAUSTIVE_TITLE, table
        )
    failed = [f"{o.run.name}: {'; '.join(o.problems)}" for o in outcomes if not o.passed]
    assert failed == [], "\n".join(failed)


@pytest.mark.slow
def test_fault_matrix_retry_exhaustive(
    rehearse: Callable[..., Report],
    seed_input: dict[str, Any],
    operations: list[tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN every operation whose permanent error fails the first run; WHEN the operation is
    # retried, meeting the same fault again or none
    runs = fault_matrix.retry_cases(operations)
    outcomes = run_all(runs, rehearse, seed_input, capsys, fault_matrix.RETRY_TITLE)
    # THEN each retry reported its own outcome once and left nothing it made behind
    assert {o.run.retry for o in outcomes} == set(fault_matrix.RETRY_OUTCOMES)
    if os.environ.get(fault_matrix.DOC_VARIABLE):
        table = fault_matrix.summary(outcomes, title=fault_matrix.RETRY_TITLE)
        fault_matrix.write_section(
            Path(os.environ[fault_matrix.DOC_VARIABLE]), fault_matrix.RETRY_TITLE, table
        )
    failed = [f"{o.run.name}: {'; '.join(o.problems)}" for o in outcomes if not o.passed]
    assert failed == [], "\n".join(failed)


@pytest.fixture
def clone_operations(
    rehearse: Callable[..., Report], operations: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The operations only a clean clone refresh calls (RestoreDBClusterToPointInTime)."""
    raw_input, world = fault_matrix.clone_scenario()
    clean = rehearse(raw_input, world=world, **fault_matrix.OPTIONS)
    assert clean.status == "SUCCEEDED", clean.error
    found = fault_matrix.clone_only(fault_matrix.operations(clean.aws_calls), operations)
    assert ("rds", "RestoreDBClusterToPointInTime") in found
    assert ("rds", "CopyDBClusterSnapshot") not in fault_matrix.operations(clean.aws_calls)
    return found


def run_clone(runs: list[Run], rehearse: Callable[..., Report], capsys: Any, title: str) -> list[Outcome]:
    outcomes = []
    for run in runs:
        raw_input, world = fault_matrix.clone_scenario()
        outcomes.append(fault_matrix.run_one(run, rehearse, raw_input, world))
    with capsys.disabled():
        print("\n" + fault_matrix.summary(outcomes, title=title))
    return outcomes


def test_fault_matrix_clone_sample(
    rehearse: Callable[..., Report],
    clone_operations: list[tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the clone path's own operations, each failing for good once (the first permanent
    # class) and retried with the fault gone; WHEN each runs end to end
    runs = [fault_matrix._retry_run(op, fault_matrix.PERMANENT[0], fault_matrix.RETRY_SUCCEEDS) for op in clone_operations]
    outcomes = run_clone(runs, rehearse, capsys, "Fault matrix, clone path sample")
    # THEN the first run failed once, reported, and the retry refreshed the target
    failed = [f"{o.run.name}: {'; '.join(o.problems)}" for o in outcomes if not o.passed]
    assert failed == [], "\n".join(failed)
    assert [(o.status, o.retry_status) for o in outcomes] == [("FAILED", "SUCCEEDED")] * len(outcomes)


@pytest.mark.slow
def test_fault_matrix_clone_exhaustive(
    rehearse: Callable[..., Report],
    clone_operations: list[tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = fault_matrix.cases(clone_operations) + fault_matrix.retry_cases(clone_operations)
    outcomes = run_clone(runs, rehearse, capsys, fault_matrix.CLONE_TITLE)
    assert len(outcomes) == len(clone_operations) * (len(fault_matrix.CLASSES) + len(fault_matrix.RETRY_OUTCOMES))
    if os.environ.get(fault_matrix.DOC_VARIABLE):
        doc = Path(os.environ[fault_matrix.DOC_VARIABLE])
        plain = [o for o in outcomes if o.run.retry is None]
        retried = [o for o in outcomes if o.run.retry is not None]
        for title, part in ((fault_matrix.CLONE_TITLE, plain), (fault_matrix.CLONE_RETRY_TITLE, retried)):
            fault_matrix.write_section(doc, title, fault_matrix.summary(part, title=title))
    failed = [f"{o.run.name}: {'; '.join(o.problems)}" for o in outcomes if not o.passed]
    assert failed == [], "\n".join(failed)
