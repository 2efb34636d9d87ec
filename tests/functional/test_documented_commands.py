"""The documented commands, run as written: the AWS CLI (from PyPI) against a local moto server.

How command blocks are found (the rule every author of README.md, docs/deploy.md and
docs/runbook.md follows):

- A command block is a fenced block whose info string is ``bash`` or ``sh``. Its text is what
  Markdown shows (the fence's own indentation removed), byte for byte.
- Every command block runs, unless the last non-blank line before its opening fence is
  ``<!-- not-run: REASON -->``; the reason is required and says why the block cannot run here.
- A document's blocks run in order, each under ``bash -euo pipefail`` from the root of a copy of
  the checkout; shell variables a block sets are seen by the blocks after it (in that document
  only), so a placeholder is a variable set in an earlier block.
- docs/deploy.md runs first, on a fresh local AWS (moto's server); docs/runbook.md runs next on
  the stack deploy.md made; README.md runs on a fresh local AWS of its own.

What the test provides, as a reader's account would have it: the clusters, snapshot and KMS keys of
``aurora_restore/examples/orders-world.json`` (what the docs' example refresh names), the target's
network (a VPC, two private subnets and their route table, the DB subnet group ``orders-dev-db``,
the clusters' security group), an IAM role ``dba-on-call`` for the operator policy, credentials
and a region (eu-central-1) in the environment, and a stand-in for RDS's CA bundle (the bundle's
download is the one block that needs the internet beyond PyPI).

Where moto cannot do what AWS does, and what the test does instead:

- moto runs no execution here (its CloudFormation deploys a ``Definition`` without
  ``DefinitionString`` as an empty state machine, and its Lambda needs Docker). After each block
  the test plays the first two states of every new execution (ValidateRequest, SnapshotCheck) by
  calling the real dispatcher with the deployed function's environment, as Step Functions would
  (the zip the docs built unpacked in a temporary directory stands for Lambda's ``/var/task``):
  the operation is recorded, the target's lock taken, the audit trail begun. The execution itself
  stays RUNNING until a documented command stops it.
- moto's change sets do not set the stack's outputs (``ChangeSet.apply`` skips them; AWS sets the
  outputs of the template the change set applied): corrected while the test runs, by the
  rehearsal's own correction (``aurora_restore.simulate.moto_compat.change_sets_set_outputs``).
- moto finds a ``TemplateURL``'s bucket only when its host is ``localhost``: the endpoint is
  ``http://localhost:<port>``.
- moto does not evaluate IAM: the calls the runbook's ``aurora-restore`` commands make reach the
  server's request recorder, and each must be an action the deployed operator policy allows.

The run takes about 1.5 minutes (``tox -e docs``, in the default ``tox`` matrix); the default
``pytest`` run only checks the rule and that README.md and docs/deploy.md deploy alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aurora_restore.simulate import moto_compat

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("docs/deploy.md", "docs/runbook.md", "README.md")
REGION = "eu-central-1"
WORLD = ROOT / "aurora_restore" / "examples" / "orders-world.json"

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>```+)(?P<info>[^`]*)$")
NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>.*?)\s*-->\s*$")
COMMAND_LANGUAGES = {"bash", "sh"}


@dataclass
class Block:
    """One fenced command block of a document."""

    document: str
    line: int
    text: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"


def command_blocks(document: str, text: str | None = None) -> list[Block]:
    """The ``bash``/``sh`` blocks of ``document`` (relative to the checkout), with their markers."""
    lines = (text if text is not None else (ROOT / document).read_text()).splitlines(keepends=True)
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index].rstrip("\n"))
        if not opening:
            index += 1
            continue
        indent, ticks = opening["indent"], opening["ticks"]
        language = opening["info"].strip().split(" ")[0]
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not re.match(rf"^[ \t]*{ticks}\s*$", lines[end]):
            line = lines[end]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip(" \t"))
            end += 1
        if language in COMMAND_LANGUAGES:
            before = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            marker = NOT_RUN.match(before)
            blocks.append(Block(document, index + 1, "".join(body), marker["reason"] if marker else None))
        index = end + 1
    return blocks


# -- the rule itself, checked on every run (cheap) --------------------------------------------------
def test_the_rule_reads_blocks_markers_and_indentation() -> None:
    text = (
        "intro\n\n```bash\necho one\n```\n\n<!-- not-run: needs a browser -->\n\n```sh\nopen x\n```\n"
        "- item\n\n  ```sh\n  echo two \\\n    --flag\n  ```\n\n```json\n{}\n```\n"
    )

    blocks = command_blocks("x.md", text)

    assert [(b.line, b.text, b.not_run) for b in blocks] == [
        (3, "echo one\n", None),
        (9, "open x\n", "needs a browser"),
        (14, "echo two \\\n  --flag\n", None),
    ]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_command_block_runs_or_says_why_not(document: str) -> None:
    blocks = command_blocks(document)

    assert blocks, f"{document} has no command blocks: the rule no longer finds them"
    unexplained = [b.where for b in blocks if b.not_run is not None and len(b.not_run) < 15]
    assert unexplained == [], "a not-run marker needs its reason"


def parameter_overrides(document: str) -> dict[str, str]:
    """``Key=Value`` of the refresh stack's ``aws cloudformation deploy`` command in ``document``'s
    command blocks (the one that runs: the source-account stack's deploy is in another account)."""
    import shlex

    (command,) = [
        b.text.replace("\\\n", " ")
        for b in command_blocks(document)
        if "aws cloudformation deploy" in b.text and b.not_run is None
    ]
    words = shlex.split(command[command.index("aws cloudformation deploy") :], comments=True)
    overrides = words[words.index("--parameter-overrides") + 1 :]
    return dict(w.split("=", 1) for w in overrides if "=" in w and not w.startswith("-"))


def test_readme_and_deploy_guide_deploy_alike_with_every_required_parameter() -> None:
    from tests.contract import contract_template

    required = {k for k, v in contract_template()["Parameters"].items() if "Default" not in v}
    readme, guide = parameter_overrides("README.md"), parameter_overrides("docs/deploy.md")

    assert required <= set(readme) and required <= set(guide)
    # The README is the short form of the guide: nothing of its own, and the same values.
    assert {k: v for k, v in guide.items() if k in readme} == readme
    for name in ("TargetKmsKeyArn", "SourceKmsKeyArns", "DbCaBundle"):
        assert name in readme, name
    for document in ("README.md", "docs/deploy.md"):
        deploy = next(
            b.text for b in command_blocks(document) if "aws cloudformation deploy" in b.text and b.not_run is None
        )
        assert "--s3-bucket" in deploy, document
        packaging = next(b.text for b in command_blocks(document) if "python -m infra.package" in b.text)
        assert "--ca-bundle build/global-bundle.pem" in packaging, document


# -- running them ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A fresh moto server on 127.0.0.1; yields its endpoint URL (host ``localhost``, see above)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://localhost:{port}"
    try:
        import requests

        # The server serves moto's in-process backends: start from an empty AWS.
        requests.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()
        yield endpoint
    finally:
        server.stop()


def copy_checkout(destination: Path) -> Path:
    """The checkout's files (tracked and new, not ignored) in ``destination``, as a clone has them."""
    git = shutil.which("git") or "git"
    listed = subprocess.run(
        [git, "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0 and listed.stdout:
        for name in listed.stdout.decode().split("\0"):
            source = ROOT / name
            if name and source.is_file():
                target = destination / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    else:  # not a git checkout (an sdist): everything but caches and build output
        shutil.copytree(
            ROOT,
            destination,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(".git", ".tox", "build", "__pycache__", "*.egg-info", ".venv"),
        )
    return destination


def stand_in_ca_bundle(path: Path) -> None:
    """A self-signed CA certificate in PEM, where the docs download RDS's bundle."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in RDS CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


class Shell:
    """Runs blocks one by one, carrying the shell variables they set to the next ones."""

    def __init__(self, cwd: Path, env: dict[str, str], state: Path) -> None:
        self.cwd, self.env, self.state = cwd, env, state
        self.bash = shutil.which("bash") or "/bin/bash"
        baseline = subprocess.run(
            [self.bash, "-c", "compgen -v"], env=env, capture_output=True, text=True, check=True
        ).stdout
        self.baseline = state.with_suffix(".baseline")
        self.baseline.write_text(baseline)

    def run(self, block: Block) -> subprocess.CompletedProcess[str]:
        prelude = f'set -euo pipefail\nif [ -f "{self.state}" ]; then source "{self.state}"; fi\n'
        epilogue = (
            "\n__names=$(compgen -v | grep -vxF -f "
            f'"{self.baseline}" | grep -v -e "^__" -e "^BASH" -e "^PIPESTATUS$" -e "^FUNCNAME$" || true)\n'
            f'for __n in $__names; do declare -p "$__n"; done > "{self.state}"\n'
        )
        return subprocess.run(
            [self.bash, "-c", prelude + block.text + epilogue],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )


class LocalAws:
    """boto3 clients on the moto server, and the stand-in for the execution's first states."""

    def __init__(self, endpoint: str, task_root: Path, code: Path) -> None:
        self.endpoint = endpoint
        self.played: set[str] = set()
        self.task_root, self.code = task_root, code

    def client(self, service: str, region: str = REGION) -> Any:
        import boto3

        return boto3.client(service, region_name=region, endpoint_url=self.endpoint)

    def seed_world(self) -> None:
        """The example's clusters, snapshot and keys, as the reader's accounts have them."""
        from aurora_restore.simulate.moto_compat import corrections
        from aurora_restore.simulate.world import load_world, seed

        with corrections():
            seed(load_world(WORLD.read_text(), str(WORLD)), self.client)
        self.seed_network()
        # The on-call role deploy.md attaches the operator policy to.
        self.client("iam").create_role(
            RoleName="dba-on-call",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"AWS": "123456789012"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
        )

    def seed_network(self) -> None:
        """The target's network: a VPC with two private subnets and their route table, the DB subnet
        group ``orders-dev-db`` over them, and the clusters' security group on ``orders-dev``."""
        ec2, rds = self.client("ec2"), self.client("rds")
        vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")[
                "Subnet"
            ]["SubnetId"]
            for i, zone in enumerate("ab")
        ]
        route_table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        for subnet in subnets:
            ec2.associate_route_table(RouteTableId=route_table, SubnetId=subnet)
        group = ec2.create_security_group(GroupName="orders-dev-db", Description="the clusters", VpcId=vpc)
        rds.create_db_subnet_group(
            DBSubnetGroupName="orders-dev-db", DBSubnetGroupDescription="orders-dev", SubnetIds=subnets
        )
        rds.modify_db_cluster(
            DBClusterIdentifier="orders-dev", VpcSecurityGroupIds=[group["GroupId"]], ApplyImmediately=True
        )

    def play_new_executions(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """Run ValidateRequest and SnapshotCheck of each execution started since the last call."""
        sfn = self.client("stepfunctions")
        lambda_ = self.client("lambda")
        played = []
        for machine in sfn.list_state_machines()["stateMachines"]:
            for execution in sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]:
                arn = execution["executionArn"]
                if arn in self.played or execution["status"] != "RUNNING":
                    continue
                self.played.add(arn)
                described = sfn.describe_execution(executionArn=arn)
                function = "aurora-restore-dispatcher-" + machine["name"].rsplit("-", 1)[-1]
                environment = lambda_.get_function_configuration(FunctionName=function)["Environment"]
                self._first_states(arn, json.loads(described["input"]), environment["Variables"], monkeypatch)
                played.append(arn)
        return played

    def _first_states(
        self, execution_arn: str, document: Any, variables: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from dispatcher.handler import Dispatcher
        from dispatcher.settings import Settings

        # Lambda unpacks the zip at /var/task; the stand-in unpacks the zip the docs built (the one
        # deployed) in a temporary directory and points the function's /var/task paths there.
        if not self.task_root.exists():
            with zipfile.ZipFile(self.code) as archive:
                archive.extractall(self.task_root)
        variables = {
            name: str(self.task_root) + value[len("/var/task") :]
            if str(value).startswith("/var/task/")
            else value
            for name, value in variables.items()
        }
        with monkeypatch.context() as patch:
            where = {"AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": self.endpoint}
            for name, value in {**variables, **where}.items():
                patch.setenv(name, str(value))
            dispatcher = Dispatcher(settings=Settings.from_env())
            request = dispatcher.handle(
                {"step": "validate_request", "execution_id": execution_arn, "input": document}, None
            )
            dispatcher.handle(
                {"step": "snapshot_check", "execution_id": execution_arn, "request": request}, None
            )


@pytest.fixture
def documented_env(tmp_path: Path) -> dict[str, str]:
    """The reader's environment: the project's Python and the AWS CLI first on PATH, a region."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # The zip's wheels come from PyPI: keep pip's cache of the real home.
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    env.update(
        {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
            "AWS_XRAY_SDK_ENABLED": "false",
            "PYTHONHASHSEED": "0",
        }
    )
    ensure_cli(env, tmp_path / "bin")
    return env


def ensure_cli(env: dict[str, str], bin_dir: Path) -> None:
    """``aurora-restore`` on PATH: the installed console script (tox installs the project), else a
    stand-in running this checkout's ``aurora_restore.cli`` (an uninstalled development checkout)."""
    if shutil.which("aurora-restore", path=env["PATH"]):
        return
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "aurora-restore"
    shim.write_text(
        f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -c '
        '"import sys; from aurora_restore.cli import main; sys.exit(main())" "$@"\n'
    )
    shim.chmod(0o755)
    env["PATH"] = os.pathsep.join([str(bin_dir), env["PATH"]])


def find_aws_cli(env: dict[str, str]) -> str:
    aws = shutil.which("aws", path=env["PATH"])
    if aws is None:
        if os.environ.get("AURORA_RESTORE_REQUIRE_AWSCLI") == "1":
            pytest.fail("the AWS CLI is required (AURORA_RESTORE_REQUIRE_AWSCLI=1) but `aws` is not on PATH")
        pytest.skip("the AWS CLI is not installed (tox -e docs installs it)")
    return aws


class CallLog:
    """The AWS calls the blocks make, as moto's server receives them (its request recorder)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        from moto.moto_api import recorder

        recorder._location = str(self.path)  # type: ignore[attr-defined]
        recorder.start_recording()
        try:
            yield
        finally:
            recorder.stop_recording()

    def calls(self, *, by_aws_cli: bool) -> set[str]:
        """``service:Action`` of every recorded call, by the AWS CLI or by everything else (boto3)."""
        import base64
        from urllib.parse import parse_qs

        found = set()
        if not self.path.exists():
            return found
        for line in self.path.read_text().splitlines():
            entry = json.loads(line)
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            if headers.get("user-agent", "").startswith("aws-cli/") != by_aws_cli:
                continue
            scope = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", headers.get("authorization", ""))
            if not scope:
                continue
            target = headers.get("x-amz-target", "")
            if target:
                action = target.rsplit(".", 1)[-1]
            else:
                body = entry.get("body") or ""
                text = base64.b64decode(body).decode() if entry.get("body_encoded") else body
                action = parse_qs(text).get("Action", [""])[0]
            if action:
                found.add(f"{scope[1]}:{action}")
        return found


def run_document(
    document: str,
    shell: Shell,
    local: LocalAws,
    monkeypatch: pytest.MonkeyPatch,
    ran: list[str],
    log: CallLog | None = None,
) -> None:
    """Every block of ``document`` that is not marked, in order; fails on the first that fails."""
    for block in command_blocks(document):
        if block.not_run is not None:
            continue
        with log.recording() if log is not None else contextlib.nullcontext():
            result = shell.run(block)
        assert result.returncode == 0, (
            f"{block.where} failed (exit {result.returncode}):\n{block.text}\n"
            f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
        )
        ran.append(block.where)
        local.play_new_executions(monkeypatch)



@contextlib.contextmanager
def documented_world(
    tmp_path: Path, documented_env: dict[str, str]
) -> Iterator[tuple[Path, dict[str, str], LocalAws]]:
    """A copy of the checkout, the AWS CLI's environment, and a local AWS holding the example's world."""
    find_aws_cli(documented_env)
    checkout = copy_checkout(tmp_path / "aurora-restore")
    stand_in_ca_bundle(checkout / "build" / "global-bundle.pem")
    with moto_server() as endpoint, moto_compat.change_sets_set_outputs():
        env = {**documented_env, "AWS_ENDPOINT_URL": endpoint}
        local = LocalAws(endpoint, tmp_path / "var-task", checkout / "build" / "lambda.zip")
        local.seed_world()
        yield checkout, env, local


@pytest.mark.docs
def test_the_deploy_guide_and_the_runbook_run_as_written(
    tmp_path: Path, documented_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a copy of the checkout, the AWS CLI, a fresh local AWS holding the example's world
    ran: list[str] = []
    with documented_world(tmp_path, documented_env) as (checkout, env, local):

        # WHEN deploy.md's blocks run, then the runbook's (each in its own shell, as two readers)
        run_document(
            "docs/deploy.md", Shell(checkout, env, tmp_path / "deploy.state"), local, monkeypatch, ran
        )
        deployed = local.client("cloudformation").describe_stacks(StackName="aurora-restore-dev")["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in deployed["Outputs"]}
        log = CallLog(tmp_path / "runbook-calls.jsonl")
        run_document(
            "docs/runbook.md", Shell(checkout, env, tmp_path / "runbook.state"), local, monkeypatch, ran, log
        )

        # THEN the stack is the documented one, its function runs the zip that was built, the
        # operator policy is there, and the runbook's lock release left the target unlocked
        assert deployed["StackStatus"] == "CREATE_COMPLETE"
        function = local.client("lambda").get_function(FunctionName=outputs["DispatcherFunctionName"])
        assert function["Configuration"]["CodeSize"] == (checkout / "build" / "lambda.zip").stat().st_size
        assert function["Configuration"]["Environment"]["Variables"]["AURORA_RESTORE_DB_CA_BUNDLE"] == (
            "/var/task/certs/global-bundle.pem"
        )
        policy = local.client("iam").get_policy(PolicyArn=outputs["OperatorPolicyArn"])["Policy"]
        assert policy["Arn"] == outputs["OperatorPolicyArn"]
        locks = local.client("dynamodb").get_item(
            TableName=outputs["StateTableName"],
            Key={"operation_id": {"S": "lock#eu-central-1#orders-dev"}},
        )
        assert "Item" not in locks
        trail = local.client("dynamodb").query(
            TableName=outputs["AuditTableName"],
            KeyConditionExpression="operation_id = :id",
            ExpressionAttributeValues={":id": {"S": "op-orders-dev-1"}},
        )["Items"]
        assert "lock_force_released" in [item["event"]["S"] for item in trail]
        executions = local.client("stepfunctions").list_executions(stateMachineArn=outputs["StateMachineArn"])
        assert {e["name"]: e["status"] for e in executions["executions"]}["op-orders-dev-1"] == "ABORTED"
        # ... and every call the runbook's aurora-restore commands made is one the operator policy
        # allows (GetCallerIdentity needs no permission)
        document = local.client("iam").get_policy_version(
            PolicyArn=outputs["OperatorPolicyArn"], VersionId=policy["DefaultVersionId"]
        )["PolicyVersion"]["Document"]
        document = json.loads(document) if isinstance(document, str) else document
        allowed = {a for statement in document["Statement"] for a in statement["Action"]}
        made = log.calls(by_aws_cli=False)
        assert {"cloudformation:DescribeStacks", "dynamodb:GetItem", "states:StartExecution"} <= made
        assert made - allowed - {"sts:GetCallerIdentity"} == set()
    assert [w for w in ran if w.startswith("docs/runbook.md")], "no runbook block ran"


@pytest.mark.docs
def test_the_readme_runs_as_written(
    tmp_path: Path, documented_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a copy of the checkout, the AWS CLI, a fresh local AWS holding the example's world
    ran: list[str] = []
    with documented_world(tmp_path, documented_env) as (checkout, env, local):

        # WHEN the README's blocks run
        run_document("README.md", Shell(checkout, env, tmp_path / "readme.state"), local, monkeypatch, ran)

        # THEN its deploy made the stack
        stack = local.client("cloudformation").describe_stacks(StackName="aurora-restore-dev")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert ran
