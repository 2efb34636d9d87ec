"""The dispatcher role allows every AWS call a refresh makes, as AWS would authorize it (moto checks no IAM).

Each scenario is one rehearsal (the generated state machine, the real dispatcher, moto, the session's
PostgreSQL), run once per module. Every call it recorded, plus what AWS checks on the caller on a
service's behalf, is evaluated against the generated template's dispatcher-role policy resolved for a
stack deployed the way the scenario needs (``tests/iam_check.py``). Mutation: removing any single
statement the calls need makes the check fail, naming the call, the action and the resource.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aurora_restore.simulate.rehearsal import Options, Rehearsal, Report
from aurora_restore.simulate.world import ACCOUNT, SecretSpec, World, default_world
from infra.build_template import build_template
from refresh.request import RestoreRequest
from tests import iam_check

SECRETS_PREFIX = "aurora-restore/"
EXPORT_ROLE = f"arn:aws:iam::{ACCOUNT}:role/aurora-restore-export"
SECRETS_KEY = f"arn:aws:kms:eu-central-1:{ACCOUNT}:key/users-secrets-key"


@dataclasses.dataclass
class Scenario:
    """A rehearsal and the stack parameters an operator deploys for it."""

    name: str
    body: dict[str, Any]
    world: Any = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Calls (service.Operation) the scenario must make: proof it went down the path it names.
    makes: tuple[str, ...] = ()
    #: Users-spec secrets the operator keeps under a customer managed key (name -> key ARN); moto
    #: does not model a secret's key, the stack parameter SecretsKmsKeyArns names it.
    secret_keys: dict[str, str] = dataclasses.field(default_factory=dict)


def _body(**fields: Any) -> dict[str, Any]:
    database = f"iam_{uuid.uuid4().hex[:8]}"
    body = {
        "operation_id": f"op-iam-{uuid.uuid4().hex[:8]}",
        "snapshot_id": "rds:orders-2026-11-20-02-00",
        "source_region": "eu-west-1",
        "target_region": "eu-central-1",
        "target_cluster_id": "orders-dev",
        "database": database,
        "users": {
            "roles": [
                {"name": "iam_app", "login": True, "password_secret_arn": f"{SECRETS_PREFIX}iam/iam_app"},
                {"name": "iam_reporting", "login": False},
            ],
            "grants": [
                {"type": "database", "database": database, "privileges": ["CONNECT"], "to": ["iam_app"]}
            ],
        },
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def _world(body: dict[str, Any], *, target: bool = True, encrypted: bool = True) -> World:
    request = RestoreRequest.from_event({"body": body})
    world = default_world(request)
    clusters = tuple(
        dataclasses.replace(c, storage_encrypted=encrypted, kms_key=c.kms_key if encrypted else None)
        for c in world.clusters
        if target or c.id != request.target_cluster_id
    )
    snapshots = tuple(dataclasses.replace(s, encrypted=encrypted) for s in world.snapshots)
    secret = SecretSpec(
        request.target_region, f"{SECRETS_PREFIX}iam/iam_app", {"password": "iam-check-only-pw"}
    )
    return dataclasses.replace(world, clusters=clusters, snapshots=snapshots, secrets=(secret,))


#: A check that passes on any database: the gate runs (and reads the master password) in the swap.
PASSING_CHECK = {"name": "reachable", "sql": "SELECT 1", "rows": 1}
#: A check that fails on any database: the gate refuses the copy.
FAILING_CHECK = {"name": "never", "sql": "SELECT 1", "no_rows": True}


def _scenarios() -> dict[str, Scenario]:
    swap = _body(checks=[PASSING_CHECK])
    gate_keeps = _body(checks=[FAILING_CHECK], keep_failed_restore=True)
    delete_first = _body(strategy="delete-first", source_region="eu-central-1")
    # A new target is placed by the request (ValidateRequest refuses one nobody places).
    new_target = _body(
        target_cluster_id="orders-new",
        db_subnet_group="orders-new-private",
        vpc_security_group_ids=["sg-0123456789abcdef0"],
    )
    unencrypted = _body(source_region="eu-central-1")
    failing = _body()
    export = _body()
    export_key = f"arn:aws:kms:eu-central-1:{ACCOUNT}:key/export-key"
    clone = _body(snapshot_id="clone:orders", source_region="eu-central-1")
    pitr = _body(snapshot_id="pitr:orders@latest", source_region="eu-central-1", strategy="delete-first")
    return {
        "clone-same-region": Scenario(
            "clone",
            clone,
            _world(clone),
            # The clone is made from the live cluster, swapped in, and nothing is copied.
            makes=("rds.RestoreDBClusterToPointInTime", "rds.CreateDBInstance", "rds.ModifyDBCluster"),
        ),
        "pitr-delete-first": Scenario(
            "pitr",
            pitr,
            _world(pitr),
            makes=("rds.DeleteDBCluster", "rds.RestoreDBClusterToPointInTime"),
        ),
        "swap-cross-region-encrypted": Scenario(
            "swap",
            swap,
            _world(swap),
            parameters={"SecretsKmsKeyArns": [SECRETS_KEY]},
            makes=(
                "rds.CopyDBClusterSnapshot",
                "rds.ModifyDBCluster",
                "rds.DeleteDBInstance",
                "secretsmanager.GetSecretValue",
                "sns.Publish",
                # A waiting half that finds its work done answers its own task token.
                "stepfunctions.SendTaskSuccess",
            ),
            secret_keys={f"{SECRETS_PREFIX}iam/iam_app": SECRETS_KEY},
        ),
        "delete-first-same-region": Scenario(
            "delete-first",
            delete_first,
            _world(delete_first),
            makes=("rds.DeleteDBCluster", "rds.CreateDBInstance"),
        ),
        "new-target": Scenario(
            "new-target",
            new_target,
            _world(new_target, target=False),
            makes=("rds.RestoreDBClusterFromSnapshot",),
        ),
        "unencrypted-same-region": Scenario(
            "unencrypted",
            unencrypted,
            _world(unencrypted, encrypted=False),
            makes=("rds.CopyDBClusterSnapshot", "rds.RestoreDBClusterFromSnapshot"),
        ),
        "restore-fails-clean-up": Scenario(
            "failing",
            failing,
            _world(failing),
            # With RDS events delivered: the event step's check sees the failure and fails the wait.
            options={
                "restore_polls": 1,
                "restore_outcome": "failed",
                "event_delay_seconds": 5.0,
                "poll_min_seconds": 30,
                "poll_max_seconds": 900,
            },
            # The failed restore is deleted again, and the failure is notified.
            makes=("rds.DeleteDBCluster", "sns.Publish", "stepfunctions.SendTaskFailure"),
        ),
        "checks-fail-keep": Scenario(
            "checks-fail-keep",
            gate_keeps,
            _world(gate_keeps),
            # The copy that failed its checks is kept and tagged, not deleted; the failure is notified.
            makes=("secretsmanager.GetSecretValue", "rds.AddTagsToResource", "sns.Publish"),
        ),
        "export": Scenario(
            "export",
            export,
            _world(export),
            options={
                "settings": {
                    "AURORA_RESTORE_EXPORT_BUCKET": "aurora-restore-exports",
                    "AURORA_RESTORE_EXPORT_ROLE_ARN": EXPORT_ROLE,
                    "AURORA_RESTORE_EXPORT_KMS_KEY_ID": export_key,
                }
            },
            parameters={
                "ExportBucket": "aurora-restore-exports",
                "ExportRoleArn": EXPORT_ROLE,
                "ExportKmsKeyArn": export_key,
            },
            makes=("rds.StartExportTask",),
        ),
    }


SCENARIOS = _scenarios()
#: The default run: between them nearly every call, the failure path included; the rest with -m slow.
DEFAULT = (
    "swap-cross-region-encrypted",
    "delete-first-same-region",
    "restore-fails-clean-up",
    "checks-fail-keep",
    "clone-same-region",
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    built: dict[str, Any] = json.loads(build_template(stage="rehearsal").to_json())
    return built


@pytest.fixture(scope="module")
def reports(postgres_server: Any) -> Iterator[dict[str, Report]]:
    """Each scenario's rehearsal, run at most once per module (the calls are reused)."""
    from steps.setup_db_users.pgsql import quote_ident

    roles = {row["rolname"] for row in postgres_server.fetch("SELECT rolname FROM pg_roles")}
    databases = {row["datname"] for row in postgres_server.fetch("SELECT datname FROM pg_database")}
    cache: dict[str, Report] = {}
    yield cache
    # The session's server is shared: drop what the rehearsals made.
    for row in postgres_server.fetch("SELECT datname FROM pg_database"):
        if row["datname"] not in databases:
            postgres_server.drop_database(row["datname"])
    for row in postgres_server.fetch("SELECT rolname FROM pg_roles"):
        if row["rolname"] not in roles:
            name = quote_ident(row["rolname"])
            postgres_server.execute(f"DROP OWNED BY {name}; DROP ROLE {name}")


def rehearse(name: str, reports: dict[str, Report], postgres_server: Any) -> Report:
    if name not in reports:
        scenario = SCENARIOS[name]
        options = {"poll_min_seconds": 0, "poll_max_seconds": 0, **scenario.options}
        reports[name] = Rehearsal(
            Options(input={"body": scenario.body}, world=scenario.world, postgres=postgres_server, **options)
        ).run()
    return reports[name]


def stack_for(scenario: Scenario, report: Report, template: dict[str, Any]) -> iam_check.Stack:
    """The stack an operator deploys for this scenario: its region, and the keys the world uses."""
    region = scenario.body["target_region"]
    source_keys = sorted(
        {
            s["kms_key_id"]
            for s in report.world_before["snapshots"]
            if s.get("encrypted") and s.get("kms_key_id")
        }
    )
    target_keys = sorted(
        {
            c["params"]["KmsKeyId"]
            for c in report.aws_calls
            if c["operation"] == "CopyDBClusterSnapshot" and c["params"].get("KmsKeyId")
        }
        | {
            c["kms_key_id"]
            for c in report.world_before["clusters"]
            if c["region"] == region and c.get("storage_encrypted") and c.get("kms_key_id")
        }
    )
    parameters: dict[str, Any] = {
        "Stage": "rehearsal",
        "SecretsPrefix": SECRETS_PREFIX,
        "TargetKmsKeyArn": target_keys[0] if target_keys else "",
        "SourceKmsKeyArns": source_keys or [""],
        # An operator copying across regions names the source region, so IAM keeps both sides of
        # the copy to the regions they belong to.
        "SourceRegions": [scenario.body["source_region"]]
        if scenario.body["source_region"] != region
        else [""],
        **scenario.parameters,
    }
    return iam_check.Stack(template, region, ACCOUNT, parameters)


def requests_of(report: Report, stack: iam_check.Stack, scenario: Scenario) -> list[iam_check.Request]:
    topic = stack.template["Resources"]["NotificationTopic"]["Properties"]
    topic_key = stack.resolve(topic["KmsMasterKeyId"]) if "KmsMasterKeyId" in topic else None
    if topic_key and not str(topic_key).startswith("arn:"):
        topic_key = stack.physical("StackKey", "Arn")
    return iam_check.all_requests(
        report.aws_calls,
        report.world_before,
        ACCOUNT,
        topic_key_arn=topic_key,
        secret_keys=scenario.secret_keys,
    )


def _check(name: str, reports: dict[str, Report], postgres_server: Any, template: dict[str, Any]) -> None:
    # GIVEN a rehearsal of the scenario and the template resolved for its stack
    report = rehearse(name, reports, postgres_server)
    scenario = SCENARIOS[name]
    made = {f"{c['service']}.{c['operation']}" for c in report.aws_calls}
    assert set(scenario.makes) <= made, f"{name} did not make {sorted(set(scenario.makes) - made)}"
    stack = stack_for(scenario, report, template)
    statements = iam_check.resolve_policy(stack)
    # WHEN every call (and what AWS checks on its behalf) is authorized against the policy
    refused = [d.describe() for d in iam_check.refusals(statements, requests_of(report, stack, scenario))]
    # THEN nothing is refused
    assert refused == [], "\n".join(refused)


@pytest.mark.parametrize("name", DEFAULT)
def test_the_dispatcher_role_allows_every_call(
    name: str, reports: dict[str, Report], postgres_server: Any, template: dict[str, Any]
) -> None:
    _check(name, reports, postgres_server, template)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(SCENARIOS) - set(DEFAULT)))
def test_the_dispatcher_role_allows_every_call_in_every_scenario(
    name: str, reports: dict[str, Report], postgres_server: Any, template: dict[str, Any]
) -> None:
    _check(name, reports, postgres_server, template)


def test_removing_any_statement_the_calls_need_fails_the_check(
    reports: dict[str, Report], postgres_server: Any, template: dict[str, Any]
) -> None:
    """Mutation: each statement some request is allowed by is removed in turn; the check must fail."""
    needed: dict[str, list[str]] = {}
    for name in DEFAULT:
        report = rehearse(name, reports, postgres_server)
        stack = stack_for(SCENARIOS[name], report, template)
        statements = iam_check.resolve_policy(stack)
        requests = requests_of(report, stack, SCENARIOS[name])
        # A statement is needed when some request is allowed by it alone.
        sole = [iam_check.allowing(statements, r) for r in requests]
        assert all(sole), "a request is refused before any mutation"
        for sid in sorted({allowed[0] for allowed in sole if len(allowed) == 1}):
            # GIVEN the policy without that statement
            without = [s for s in statements if s.get("Sid") != sid]
            # WHEN the same requests are authorized
            refused = list(iam_check.refusals(without, requests))
            # THEN some are refused, and the message names the call, action and resource
            assert refused, f"{name}: removing {sid} refused nothing"
            first = refused[0].describe()
            assert (
                "call #" in first
                and refused[0].request.action in first
                and refused[0].request.resource in first
            )
            needed.setdefault(sid, []).append(name)
    # The statements the default scenarios exercise, among them the fixes AWS's checks need.
    assert {
        "DescribeTheSecretsManagerKeyForRdsManagedSecrets",
        "RdsManagedMasterSecretsInTargetRegions",
        "CopySnapshotsOutOfTheSourceRegionsTaggedManaged",
        "CloneOrRestoreClustersToPointInTimeTaggedManaged",
        "LetRdsHoldGrantsOnTheTargetKey",
        "LetRdsHoldGrantsOnTheSourceKeys",
        "StateAndAuditTables",
        "NotifyTheTopic",
        "UseTheStackKey",
        "DecryptUserSecretsThroughSecretsManager",
        "ReplaceOnlyManagedResources",
        "FinalSnapshotsOfReplacedClusters",
        "AnswerWaitsHasNoResourceLevelPermissions",
    } <= set(needed)


#: Services the dispatcher itself calls for every step (its state and audit tables).
FRAMEWORK_SERVICES = ("dynamodb:",)


@pytest.mark.parametrize("name", DEFAULT)
def test_every_call_a_step_makes_is_one_it_declares(
    name: str, reports: dict[str, Report], postgres_server: Any, template: dict[str, Any]
) -> None:
    """The role is derived from the steps' ``aws_actions``: a call a step does not declare would be
    allowed only by luck (another step's declaration), so each step must declare its own."""
    import re

    from dispatcher.registry import load_builtin_steps
    from infra.policies import _covers

    # GIVEN the scenario's rehearsal and what AWS authorizes for each call (on its behalf too)
    report = rehearse(name, reports, postgres_server)
    stack = stack_for(SCENARIOS[name], report, template)
    registry = load_builtin_steps()
    undeclared = []
    for request in requests_of(report, stack, SCENARIOS[name]):
        found = re.search(r"\(step (\w+)\)", request.call)
        assert found, request.call
        step = registry.get(found.group(1))
        # WHEN the action is looked up among the step's own declarations
        if request.action.startswith(FRAMEWORK_SERVICES):
            continue
        if not any(_covers(declared, request.action) for declared in step.aws_actions):
            undeclared.append(f"{step.name}: {request.action} ({request.call})")
    # THEN every one is there
    assert undeclared == []


def test_the_state_machine_and_schedule_roles_allow_what_their_services_do(template: dict[str, Any]) -> None:
    """Step Functions invokes every Task's function and sets up log delivery; the schedule starts runs."""
    from aurora_restore.simulate.rehearsal import substitute, task_resources
    from infra.state_machine import DISPATCHER_ARN_VARIABLE

    # GIVEN the stack in its region, and the definition with the function's ARN substituted
    stack = iam_check.Stack(template, "eu-central-1", ACCOUNT, {"Stage": "rehearsal"})
    state_machine = template["Resources"]["StateMachine"]["Properties"]
    substitutions = {k: stack.resolve(v) for k, v in state_machine["DefinitionSubstitutions"].items()}
    definition = json.loads(substitute(state_machine["Definition"], substitutions))
    function_arn = substitutions[DISPATCHER_ARN_VARIABLE]

    def request(action: str, resource: str) -> iam_check.Request:
        return iam_check.Request(
            "Step Functions", action, resource, {"aws:RequestedRegion": ("eu-central-1",)}
        )

    # The eight actions Step Functions' logging guide lists on "*" (cw-logs.html).
    log_delivery = [
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    ]
    wanted = [request("lambda:InvokeFunction", arn) for arn in task_resources(definition)]
    wanted += [request(action, "*") for action in log_delivery]
    assert {r.resource for r in wanted[:-8]} == {function_arn}
    # WHEN they are authorized against the state machine's role
    refused = [
        d.describe() for d in iam_check.refusals(iam_check.resolve_policy(stack, "StateMachineRole"), wanted)
    ]
    # THEN none is refused; and the schedule's role may start executions of this state machine only
    assert refused == [], "\n".join(refused)
    schedule = iam_check.resolve_policy(stack, "ScheduleRole")
    machine = stack.ref("StateMachine")
    assert iam_check.evaluate(schedule, request("states:StartExecution", machine)).allowed
    assert not iam_check.evaluate(schedule, request("states:StartExecution", machine + "-other")).allowed


# -- production in another account ---------------------------------------------------------------
#: Each side of a cross-account refresh, from one rehearsal of the example: the calls made here are
#: the dispatcher role's, the calls made there (``account`` on the record) the source role's.
CROSS_ACCOUNT_EXAMPLE = Path(__file__).resolve().parents[2] / "aurora_restore" / "examples"


@pytest.fixture(scope="module")
def cross_account(postgres_server: Any) -> Report:
    from aurora_restore.simulate.world import load_world

    raw = json.loads((CROSS_ACCOUNT_EXAMPLE / "cross-account-input.json").read_text())
    world = load_world((CROSS_ACCOUNT_EXAMPLE / "cross-account-world.json").read_text())
    report = Rehearsal(
        Options(input=raw, world=world, postgres=postgres_server, poll_min_seconds=0, poll_max_seconds=0)
    ).run()
    assert report.status == "SUCCEEDED", report.error
    return report


def _source_copy_key(report: Report) -> str:
    return next(
        str(c["params"]["KmsKeyId"])
        for c in report.aws_calls
        if c.get("account") and c["operation"] == "CopyDBClusterSnapshot"
    )


def test_the_dispatcher_role_allows_every_call_of_a_cross_account_refresh(
    cross_account: Report, template: dict[str, Any]
) -> None:
    # GIVEN the refresh stack deployed with the source account's role and shareable key
    role = next(c for c in cross_account.aws_calls if c["operation"] == "AssumeRole")["params"]["RoleArn"]
    here = [c for c in cross_account.aws_calls if not c.get("account")]
    target_key = next(c["params"]["KmsKeyId"] for c in here if c["operation"] == "CopyDBClusterSnapshot")
    stack = iam_check.Stack(
        template,
        "eu-central-1",
        ACCOUNT,
        {
            "Stage": "rehearsal",
            "TargetKmsKeyArn": target_key,
            "SourceKmsKeyArns": [_source_copy_key(cross_account)],
            "SourceRegions": ["eu-west-1"],
            "SourceAccountRoleArns": [role],
            "SourceAccountExternalId": "rehearsal-external-id-0001",
        },
    )
    statements = iam_check.resolve_policy(stack)
    world_here = {
        "clusters": [c for c in cross_account.world_before["clusters"] if not c.get("account")],
        "snapshots": [s for s in cross_account.world_before["snapshots"] if not s.get("account")],
    }
    requests = iam_check.all_requests(here, world_here, ACCOUNT)
    # WHEN every call made in this account is authorized
    refused = [d.describe() for d in iam_check.refusals(statements, requests)]
    # THEN nothing is refused, and assuming the role is allowed by its own statement only
    assert refused == [], "\n".join(refused)
    assume = [r for r in requests if r.action == "sts:AssumeRole"]
    assert assume and all(
        iam_check.allowing(statements, r) == ["AssumeTheSourceAccountRoles"] for r in assume
    )
    other_role = dataclasses.replace(assume[0], resource="arn:aws:iam::222222222222:role/anything")
    assert not iam_check.evaluate(statements, other_role).allowed
    # AND each call here is one its step declares (the role is derived from the declarations)
    import re

    from dispatcher.registry import load_builtin_steps
    from infra.policies import _covers

    registry = load_builtin_steps()
    undeclared = []
    for request in requests:
        step = registry.get(re.search(r"\(step (\w+)\)", request.call).group(1))  # type: ignore[union-attr]
        if not request.action.startswith(FRAMEWORK_SERVICES) and not any(
            _covers(declared, request.action) for declared in step.aws_actions
        ):
            undeclared.append(f"{step.name}: {request.action}")
    assert undeclared == []


def test_the_source_account_role_allows_every_call_made_there(cross_account: Report) -> None:
    from infra.build_template import render
    from infra.source_account import build_source_account_template

    # GIVEN the source-account stack as deployed for the example
    source = json.loads(render(build_source_account_template()))
    account = "111111111111"
    stack = iam_check.Stack(
        source,
        "eu-west-1",
        account,
        {
            "TargetAccountId": ACCOUNT,
            "DispatcherRoleArn": f"arn:aws:iam::{ACCOUNT}:role/aurora-restore-dispatcher",
            "ExternalId": "rehearsal-external-id-0001",
            "ShareableKmsKeyArn": _source_copy_key(cross_account),
        },
    )
    statements = iam_check.resolve_policy(stack, role="SourceAccountRole")
    there = [c for c in cross_account.aws_calls if c.get("account") == account]
    assert {c["operation"] for c in there} >= {
        "CopyDBClusterSnapshot",
        "ModifyDBClusterSnapshotAttribute",
        "DeleteDBClusterSnapshot",
    }
    source_world = {
        "clusters": [c for c in cross_account.world_before["clusters"] if c.get("account") == account],
        "snapshots": [s for s in cross_account.world_before["snapshots"] if s.get("account") == account],
    }
    # WHEN each of them (and what RDS checks on its behalf) is authorized against the role
    requests = iam_check.all_requests(there, source_world, account)
    refused = [d.describe() for d in iam_check.refusals(statements, requests)]
    # THEN nothing is refused
    assert refused == [], "\n".join(refused)
