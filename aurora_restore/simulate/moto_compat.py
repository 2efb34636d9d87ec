"""moto corrected where it differs from RDS as documented, for the rehearsal and the tests alike.

Every correction names the AWS behaviour it reproduces, and is applied only while a block runs
(moto is as it was afterwards). :func:`corrections` applies them all: the rehearsal enters it
around every run. The tests enter the block for the service they exercise: ``faithful_rds``
(:func:`rds_as_documented`), ``atomic_dynamodb_writes`` (:func:`atomic_conditional_writes`), the
documented commands' test (:func:`change_sets_set_outputs`), so a step meets the same AWS in the
tests and in the rehearsal. Blocks nest: only the outermost applies and undoes.

Two are fixes moto merged upstream, re-applied only when the installed moto still has the faulty
code (its source is checked, not its version):

- Snapshot ARNs (https://github.com/getmoto/moto/issues/10177): RDS accepts a snapshot's ARN
  wherever it accepts its identifier, and an automated snapshot's identifier has a colon of its
  own (``...:cluster-snapshot:rds:orders-2026-11-20``). moto splits the ARN at its *last* colon
  and answers "not found". A cross-region copy names its source by ARN, so copying an automated
  snapshot needs this.
- Second executions (https://github.com/getmoto/moto/issues/10077): Step Functions runs any
  number of executions of one state machine. moto's ``StartExecution`` deep-copies the state
  machine with its running executions (threads, locks), so the second one fails with ``cannot
  pickle '_thread.RLock'``. A retry under a new execution name is a second execution.

The others are fidelity gaps moto has not fixed, applied whatever its version:

- No snapshot at creation: RDS takes automated backups in the backup window and removes them
  with the cluster. moto takes one named ``rds:<cluster>-<minute>`` the moment a cluster is
  created or restored and keeps it after the cluster is deleted, so a cluster restored under the
  same name within the minute (delete-first, or a retry) would collide with moto's leftover.
- Renames (``ModifyDBCluster(NewDBClusterIdentifier)``): RDS refuses a name another cluster holds
  (``DBClusterAlreadyExistsFault``), answers ``DBClusterNotFoundFault`` for a missing cluster, and
  keeps a cluster's instances across a rename. moto overwrites the other cluster, raises a
  KeyError, and leaves the instances under the old name, where they would belong to whatever
  cluster takes it next; the swap strategy renames twice and then deletes the old cluster's
  instances, so that would remove the new cluster's writer.
- Restores (``RestoreDBClusterFromSnapshot``): RDS refuses an identifier another cluster holds
  (``DBClusterAlreadyExistsFault``) and honours ``DeletionProtection=False``. moto overwrites
  the existing cluster and keeps the snapshot's source cluster's protection when told ``False``.
- Point-in-time restores and clones (``RestoreDBClusterToPointInTime``): RDS refuses an identifier
  another cluster holds (``DBClusterAlreadyExistsFault``), a source that is not available
  (``InvalidDBClusterStateFault``) and a ``RestoreToTime`` outside the source's
  ``EarliestRestorableTime``..``LatestRestorableTime`` (``InvalidRestoreFault``); a
  ``copy-on-write`` clone shares the source's storage, so it keeps the source's KMS key (another
  ``KmsKeyId`` is refused) and joins its clone group: every member reports the same
  ``CloneGroupId`` in DescribeDBClusters, which is how clones of one source are counted. Any
  ``KmsKeyId`` for an unencrypted source is rejected (the API reference, ``KmsKeyId``). moto
  restores any time, overwrites a taken name and leaves ``CloneGroupId`` empty.
- Conditional writes (DynamoDB ``PutItem``/``UpdateItem``/``DeleteItem`` with a
  ``ConditionExpression``): DynamoDB evaluates the condition and writes atomically. moto checks
  and then writes with nothing held between the two, so two threads can both pass
  ``attribute_not_exists`` (seen in CI: two of five racing operations "took" one target's lock).
  A lock around moto's writes gives the same guarantee, so a test judges our locking, not moto's.
- One request at a time per service, for RDS and DynamoDB (:func:`requests_atomic`): RDS answers
  each API call from one consistent view of its resources, and DynamoDB reads and writes an item
  atomically. moto keeps both in plain dicts with no lock: a Describe iterating RDS's clusters
  while another thread renames one, or an UpdateItem deep-copying an item (moto copies it before
  its write path) while another thread updates it, fails with "dictionary changed size during
  iteration". Seen when an RDS event's check ran beside the execution's own step (the check's hold
  and the step's progress on one state item). A lock around each request served of those
  services gives the services' guarantee.
- Accounts (:func:`accounts_as_documented`): moto plays several accounts (STS AssumeRole gives
  credentials of the role's account), but lets anyone assume any role, finds a snapshot by ARN
  only in the caller's own account, shares snapshots under the AWS managed key ``aws/rds``, and
  reports ``aws/*`` keys as customer keys. AWS evaluates the role's trust policy (principal account,
  ``sts:ExternalId``); copies a snapshot another account shared with the caller, by its ARN, only
  with a ``KmsKeyId`` of the caller's when encrypted and only when the source key's policy lets the
  caller's account use it (``KMSKeyNotAccessibleFault``); refuses to share a snapshot encrypted with
  an AWS managed key (RDS User Guide, "Sharing a DB cluster snapshot"); and ``aws/*`` keys are
  ``KeyManager: AWS``.
- Change sets (CloudFormation ``ExecuteChangeSet``): AWS sets the stack's outputs from the
  template the change set applied; moto's ``ChangeSet.apply`` leaves the stack without outputs,
  which ``aws cloudformation deploy`` followed by ``describe-stacks`` would then miss.
- Task tokens (Step Functions ``SendTaskSuccess``/``SendTaskFailure``): AWS refuses an ``output``
  that is not JSON or longer than 262,144 bytes (``InvalidOutput``) and passes ``SendTaskFailure``'s
  ``cause`` on to the failed Task (what a Catch's ``ResultPath`` holds). moto takes any output and
  drops the ``cause``, so a failure sent by the event step would reach the failure handler with no
  message.
"""

from __future__ import annotations

import contextlib
import copy as real_copy
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

#: A correction's ``apply``: changes moto and returns the function that undoes the change.
Apply = Callable[[], Callable[[], None]]


def _applied_once(apply: Apply) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """A block that applies ``apply`` unless an enclosing block already did (a test's fixture
    around a rehearsal), and undoes it when the outermost block ends."""
    depth = [0]

    @contextlib.contextmanager
    def block() -> Iterator[None]:
        undo = apply() if depth[0] == 0 else None
        depth[0] += 1
        try:
            yield
        finally:
            depth[0] -= 1
            if undo is not None:
                undo()

    block.__doc__ = apply.__doc__
    return block


def _arn_parts(identifier: str) -> tuple[str | None, str]:
    """(region, resource id) of an RDS ARN; the id keeps its own colons (``rds:...``)."""
    if not identifier.startswith("arn:"):
        return None, identifier
    parts = identifier.split(":", 6)
    return parts[3], parts[6] if len(parts) == 7 else identifier


def _get_snapshot(self: Any, identifier: str, resource_type: Any, not_found_exception: Any) -> Any:
    """``RDSBackend.get_snapshot`` that finds a snapshot by ARN whatever colons its id holds."""
    region, snapshot_id = _arn_parts(identifier)
    backend = self.get_backend("rds", region=region or self.region_name)
    snapshots = backend.resource_map[resource_type]
    if snapshot_id not in snapshots:
        raise not_found_exception(snapshot_id)
    return snapshots[snapshot_id]


class _DeepcopyWithoutExecutions:
    """``copy`` as moto's Step Functions parser sees it: a state machine's copy leaves its executions."""

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        memo = {} if memo is None else memo
        executions = getattr(value, "executions", None)
        if isinstance(executions, list):
            memo[id(executions)] = []
        return real_copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(real_copy, name)


def _no_creation_snapshot(self: Any) -> None:
    """RDS makes no snapshot when a cluster is created; its backups come in the backup window."""


def _name_taken(backend: Any, cluster_id: str) -> bool:
    """RDS cluster identifiers are case-insensitive: ``Orders`` and ``orders`` are one name."""
    return any(existing.lower() == cluster_id.lower() for existing in backend.clusters)


def _renames_as_rds_does(original: Any) -> Any:
    """``RDSBackend.modify_db_cluster`` that refuses taken names and keeps instances across a rename."""
    from moto.rds.exceptions import DBClusterNotFoundError, RDSClientError

    def modify_db_cluster(self: Any, kwargs: dict[str, Any]) -> Any:
        old_id = kwargs["db_cluster_identifier"]
        if old_id not in self.clusters:
            raise DBClusterNotFoundError(old_id)
        new_id: str = kwargs.get("new_db_cluster_identifier") or ""
        renamed = bool(new_id) and new_id.lower() != old_id.lower()
        if renamed and _name_taken(self, new_id):
            raise RDSClientError("DBClusterAlreadyExistsFault", f"DB Cluster {new_id} already exists")
        members = [
            instance
            for instance in self.databases.values()
            if str(getattr(instance, "db_cluster_identifier", None) or "").lower() == old_id.lower()
        ]
        result = original(self, kwargs)
        # Harmless where moto already moves the instances: they then already carry the new name.
        for instance in members if renamed else []:
            instance.db_cluster_identifier = new_id.lower()
        return result

    return modify_db_cluster


def _restores_as_rds_does(original: Any) -> Any:
    """``RDSBackend.restore_db_cluster_from_snapshot`` that refuses taken names and honours the flags."""
    from moto.rds.exceptions import RDSClientError

    def restore_db_cluster_from_snapshot(self: Any, from_snapshot_id: str, overrides: dict[str, Any]) -> Any:
        new_id = overrides.get("db_cluster_identifier")
        if new_id and _name_taken(self, new_id):
            raise RDSClientError("DBClusterAlreadyExistsFault", "DB cluster already exists")
        cluster = original(self, from_snapshot_id, overrides)
        if overrides.get("deletion_protection") is not None:
            cluster.deletion_protection = overrides["deletion_protection"] in (True, "true", "True")
        return cluster

    return restore_db_cluster_from_snapshot


def _restores_to_point_in_time_as_rds_does(original: Any) -> Any:
    """``RDSBackend.restore_db_cluster_to_point_in_time`` with RDS's refusals and clone groups."""
    import uuid
    from datetime import timezone

    from moto.rds.exceptions import RDSClientError

    def restore_db_cluster_to_point_in_time(
        self: Any, db_cluster_identifier: str, source_db_cluster_identifier: str, **kwargs: Any
    ) -> Any:
        if _name_taken(self, db_cluster_identifier):
            raise RDSClientError("DBClusterAlreadyExistsFault", "DB cluster already exists")
        source = self.clusters.get(source_db_cluster_identifier) or self.clusters.get(
            source_db_cluster_identifier.lower()
        )
        if source is None:
            raise RDSClientError(
                "DBClusterNotFoundFault", f"DBCluster {source_db_cluster_identifier} not found."
            )
        if source.status != "available":
            raise RDSClientError(
                "InvalidDBClusterStateFault",
                f"DbCluster {source.db_cluster_identifier} is not in available state",
            )
        restore_to = kwargs.get("restore_to_time")
        if restore_to is not None:
            when = restore_to if restore_to.tzinfo else restore_to.replace(tzinfo=timezone.utc)
            earliest = source.earliest_restorable_time
            earliest = earliest if earliest.tzinfo else earliest.replace(tzinfo=timezone.utc)
            latest = source.latest_restorable_time
            latest = latest if latest.tzinfo else latest.replace(tzinfo=timezone.utc)
            if not earliest <= when <= latest:
                raise RDSClientError(
                    "InvalidRestoreFault",
                    f"Restore time {when.isoformat()} is outside the restorable window "
                    f"{earliest.isoformat()} - {latest.isoformat()}",
                )
        copy_on_write = kwargs.get("restore_type") == "copy-on-write"
        key = kwargs.get("kms_key_id")
        if key and not source.storage_encrypted:
            raise RDSClientError(
                "InvalidParameterCombination", "KmsKeyId cannot be given for an unencrypted source DB cluster"
            )
        if copy_on_write and key and key != source.kms_key_id:
            raise RDSClientError(
                "InvalidParameterCombination", "A copy-on-write clone keeps the source DB cluster's KMS key"
            )
        cluster = original(self, db_cluster_identifier, source_db_cluster_identifier, **kwargs)
        if kwargs.get("deletion_protection") is not None:
            cluster.deletion_protection = kwargs["deletion_protection"] in (True, "true", "True")
        if copy_on_write:
            if not getattr(source, "clone_group_id", None):
                source.clone_group_id = str(uuid.uuid4())
            cluster.clone_group_id = source.clone_group_id
        else:
            cluster.clone_group_id = None
        return cluster

    return restore_db_cluster_to_point_in_time


def _still_faulty(function: Any, faulty_code: str) -> bool:
    try:
        return faulty_code in inspect.getsource(function)
    except (OSError, TypeError):
        return False


def _apply_rds() -> Callable[[], None]:
    """RDS (and the Step Functions engine) as documented while the block runs; see the module."""
    from moto.rds.models import DBCluster, RDSBackend
    from moto.stepfunctions.parser import models as parser_models

    saved_get_snapshot = RDSBackend.get_snapshot
    saved_modify = RDSBackend.modify_db_cluster
    saved_restore = RDSBackend.restore_db_cluster_from_snapshot
    saved_pitr = RDSBackend.restore_db_cluster_to_point_in_time
    saved_copy = parser_models.copy
    saved_backup = DBCluster.save_automated_backup
    DBCluster.save_automated_backup = _no_creation_snapshot  # type: ignore[method-assign]
    RDSBackend.modify_db_cluster = _renames_as_rds_does(saved_modify)  # type: ignore[method-assign]
    RDSBackend.restore_db_cluster_from_snapshot = _restores_as_rds_does(saved_restore)  # type: ignore[method-assign]
    RDSBackend.restore_db_cluster_to_point_in_time = _restores_to_point_in_time_as_rds_does(saved_pitr)  # type: ignore[method-assign]
    if _still_faulty(RDSBackend.get_snapshot, 'identifier.split(":")[-1]'):
        RDSBackend.get_snapshot = _get_snapshot  # type: ignore[method-assign]
    if _still_faulty(
        parser_models.StepFunctionsParserBackend.start_execution, "copy.deepcopy(state_machine)"
    ):
        parser_models.copy = _DeepcopyWithoutExecutions()  # type: ignore[assignment]

    def undo() -> None:
        RDSBackend.get_snapshot = saved_get_snapshot  # type: ignore[method-assign]
        RDSBackend.modify_db_cluster = saved_modify  # type: ignore[method-assign]
        RDSBackend.restore_db_cluster_from_snapshot = saved_restore  # type: ignore[method-assign]
        RDSBackend.restore_db_cluster_to_point_in_time = saved_pitr  # type: ignore[method-assign]
        parser_models.copy = saved_copy
        DBCluster.save_automated_backup = saved_backup  # type: ignore[method-assign]

    return undo


def _apply_dynamodb() -> Callable[[], None]:
    """DynamoDB's conditional writes atomic while the block runs, as DynamoDB's are."""
    from moto.dynamodb.models import DynamoDBBackend

    guard = threading.RLock()
    saved = {name: getattr(DynamoDBBackend, name) for name in ("put_item", "update_item", "delete_item")}

    def atomic(original: Any) -> Any:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            with guard:
                return original(self, *args, **kwargs)

        return write

    for name, original in saved.items():
        setattr(DynamoDBBackend, name, atomic(original))

    def undo() -> None:
        for name, original in saved.items():
            setattr(DynamoDBBackend, name, original)

    return undo


#: The services whose requests are served one at a time, by the host of their endpoint.
SERIAL_SERVICES = ("rds", "dynamodb")


def _apply_serial_requests() -> Callable[[], None]:
    """Each RDS or DynamoDB request served whole before the next of its service."""
    from moto.core.botocore_stubber import BotocoreStubber

    guards = {service: threading.RLock() for service in SERIAL_SERVICES}
    original = BotocoreStubber.process_request

    def process_request(self: Any, request: Any) -> Any:
        # Endpoints are <service>.<region>.amazonaws.com; other services keep moto's own pace.
        url = str(getattr(request, "url", ""))
        guard = next((g for service, g in guards.items() if f"://{service}." in url), None)
        if guard is None:
            return original(self, request)
        with guard:
            return original(self, request)

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]

    def undo() -> None:
        BotocoreStubber.process_request = original  # type: ignore[method-assign]

    return undo


def _apply_cloudformation() -> Callable[[], None]:
    """A change set sets its stack's outputs while the block runs, as CloudFormation does."""
    from moto.cloudformation.models import ChangeSet
    from moto.cloudformation.parsing import OutputMap

    original = ChangeSet.apply

    def apply(self: Any) -> None:
        original(self)
        self.stack.output_map = OutputMap(self.stack.resource_map, self.template_dict, self.stack.stack_id)

    ChangeSet.apply = apply  # type: ignore[method-assign]

    def undo() -> None:
        ChangeSet.apply = original  # type: ignore[method-assign]

    return undo


#: SendTaskSuccess's ``output``: at most this many bytes of UTF-8 JSON (the API's length limit).
TASK_OUTPUT_LIMIT_BYTES = 262_144


def _apply_task_tokens() -> Callable[[], None]:
    """SendTaskSuccess and SendTaskFailure as Step Functions documents them, while the block runs."""
    import json

    from moto.core.exceptions import JsonRESTError
    from moto.stepfunctions import responses
    from moto.stepfunctions.parser import models as parser_models

    backend = parser_models.StepFunctionsParserBackend
    saved_success = backend.send_task_success
    saved_failure = backend.send_task_failure
    saved_response = responses.StepFunctionResponse.send_task_failure

    def send_task_success(self: Any, task_token: str, outcome: str) -> Any:
        size = len((outcome or "").encode("utf-8"))
        if size > TASK_OUTPUT_LIMIT_BYTES:
            message = f"output is {size} bytes, more than {TASK_OUTPUT_LIMIT_BYTES}"
            raise JsonRESTError("InvalidOutput", message)
        try:
            json.loads(outcome)
        except (TypeError, ValueError):
            raise JsonRESTError("InvalidOutput", "The provided JSON output data is not valid") from None
        return saved_success(self, task_token, outcome)

    def send_task_failure(self: Any) -> Any:
        backend_of = self.stepfunction_backend
        token, error = self._get_param("taskToken"), self._get_param("error")
        if isinstance(backend_of, backend):
            backend_of.send_task_failure(token, error=error, cause=self._get_param("cause"))
        else:  # moto's backend that runs no state machine answers without looking
            backend_of.send_task_failure(token, error=error)
        from moto.core.responses import EmptyResult

        return EmptyResult()

    backend.send_task_success = send_task_success  # type: ignore[method-assign]
    responses.StepFunctionResponse.send_task_failure = send_task_failure  # type: ignore[method-assign]

    def undo() -> None:
        backend.send_task_success = saved_success  # type: ignore[method-assign]
        backend.send_task_failure = saved_failure  # type: ignore[method-assign]
        responses.StepFunctionResponse.send_task_failure = saved_response  # type: ignore[method-assign]

    return undo


def _trust_allows(document: Any, caller_account: str, external_id: str | None) -> bool:
    """The role's trust policy lets ``caller_account`` assume it with ``external_id`` (principals by
    account: moto's callers are not the roles a deployed stack would use)."""
    import json

    policy = json.loads(document) if isinstance(document, str) else document
    statements = policy.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if statement.get("Effect") != "Allow" or "sts:AssumeRole" not in actions:
            continue
        principal = statement.get("Principal", {})
        names = principal.get("AWS", []) if isinstance(principal, dict) else principal
        names = [names] if isinstance(names, str) else names
        if not any(n == "*" or n == caller_account or f":iam::{caller_account}:" in str(n) for n in names):
            continue
        wanted = (statement.get("Condition") or {}).get("StringEquals", {}).get("sts:ExternalId")
        if wanted is not None and wanted != external_id:
            continue
        return True
    return False


def _is_aws_managed_key(rds_backend: Any, key_id: str | None, account: str, region: str) -> bool:
    """The snapshot's key is an AWS managed key (moto's stand-in for "no key given" included)."""
    if not key_id or key_id == "default_kms_key_id":
        return bool(key_id)
    try:
        key = rds_backend.get_backend("kms", region=region, account_id=account).describe_key(key_id)
    except Exception:
        return False
    return any(alias.startswith("alias/aws/") for alias in getattr(key, "aliases", {})) or (
        getattr(key, "key_manager", "") == "AWS"
    )


def _apply_accounts() -> Callable[[], None]:
    """Several accounts as AWS keeps them apart while the block runs; see the module."""
    from moto.kms.models import KmsBackend
    from moto.rds.exceptions import DBClusterSnapshotNotFoundError, RDSClientError
    from moto.rds.models import RDSBackend
    from moto.sts.exceptions import STSClientError
    from moto.sts.models import STSBackend

    saved_assume = STSBackend.assume_role
    saved_get = RDSBackend.get_snapshot
    saved_copy = RDSBackend.copy_db_cluster_snapshot
    saved_modify = RDSBackend.modify_db_cluster_snapshot_attribute
    saved_default_keys = KmsBackend._generate_default_keys

    def assume_role(self: Any, **kwargs: Any) -> Any:
        from moto.iam.models import iam_backends

        role_arn = str(kwargs.get("role_arn", ""))
        account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
        roles = iam_backends[account]["aws"].roles.values() if account else []
        role = next((r for r in roles if r.arn == role_arn), None)
        if role is None or not _trust_allows(
            role.assume_role_policy_document, self.account_id, kwargs.get("external_id")
        ):
            raise STSClientError(
                "AccessDenied",
                f"User: arn:aws:iam::{self.account_id}:root is not authorized to perform: sts:AssumeRole on "
                f"resource: {role_arn}",
            )
        return saved_assume(self, **kwargs)

    def get_snapshot(self: Any, identifier: str, resource_type: Any, not_found_exception: Any) -> Any:
        if identifier.startswith("arn:") and identifier.split(":")[4] != self.account_id:
            parts = identifier.split(":", 6)
            owner = self.get_backend("rds", region=parts[3], account_id=parts[4])
            snapshot = owner.resource_map[resource_type].get(parts[6])
            restore = snapshot.attributes.get("restore", []) if snapshot is not None else []
            if snapshot is None or not (self.account_id in restore or "all" in restore):
                raise not_found_exception(parts[6])
            return snapshot
        return saved_get(self, identifier, resource_type, not_found_exception)

    def copy_db_cluster_snapshot(
        self: Any, source_db_cluster_snapshot_identifier: str, *args: Any, **kwargs: Any
    ) -> Any:
        source_id = source_db_cluster_snapshot_identifier
        if source_id.startswith("arn:") and source_id.split(":")[4] != self.account_id:
            source = get_snapshot(
                self,
                source_id,
                resource_type=_cluster_snapshot_type(),
                not_found_exception=DBClusterSnapshotNotFoundError,
            )
            key_id = getattr(source, "kms_key_id", None) if source.cluster.storage_encrypted else None
            if key_id:
                if not kwargs.get("kms_key_id"):
                    raise RDSClientError(
                        "InvalidParameterValue",
                        "KmsKeyId must be specified to copy an encrypted snapshot shared from another "
                        "account",
                    )
                owner = source_id.split(":")[4]
                if not _key_lets(self, key_id, owner, source_id.split(":")[3], self.account_id):
                    raise RDSClientError(
                        "KMSKeyNotAccessibleFault",
                        f"The source snapshot's KMS key {key_id} is not accessible to account "
                        f"{self.account_id}",
                    )
        return saved_copy(self, source_db_cluster_snapshot_identifier, *args, **kwargs)

    def modify_db_cluster_snapshot_attribute(
        self: Any,
        db_cluster_snapshot_identifier: str,
        attribute_name: str,
        values_to_add: Any = None,
        values_to_remove: Any = None,
    ) -> Any:
        snapshot = self.cluster_snapshots.get(db_cluster_snapshot_identifier)
        if values_to_add and snapshot is not None and snapshot.cluster.storage_encrypted:
            key_id = getattr(snapshot, "kms_key_id", None)
            if _is_aws_managed_key(self, key_id, self.account_id, self.region_name):
                raise RDSClientError(
                    "InvalidParameterValue",
                    "Snapshots encrypted with the default (AWS managed) KMS key cannot be shared; copy it "
                    "under a customer managed key first",
                )
        return saved_modify(
            self, db_cluster_snapshot_identifier, attribute_name, values_to_add, values_to_remove
        )

    def generate_default_keys(self: Any, alias_name: str) -> Any:
        key_id = saved_default_keys(self, alias_name)
        if key_id in self.keys:
            self.keys[key_id].key_manager = "AWS"
        return key_id

    STSBackend.assume_role = assume_role  # type: ignore[method-assign,assignment]
    RDSBackend.get_snapshot = get_snapshot  # type: ignore[method-assign]
    RDSBackend.copy_db_cluster_snapshot = copy_db_cluster_snapshot  # type: ignore[method-assign]
    RDSBackend.modify_db_cluster_snapshot_attribute = modify_db_cluster_snapshot_attribute  # type: ignore[method-assign]
    KmsBackend._generate_default_keys = generate_default_keys  # type: ignore[method-assign]

    def undo() -> None:
        STSBackend.assume_role = saved_assume  # type: ignore[method-assign]
        RDSBackend.get_snapshot = saved_get  # type: ignore[method-assign]
        RDSBackend.copy_db_cluster_snapshot = saved_copy  # type: ignore[method-assign]
        RDSBackend.modify_db_cluster_snapshot_attribute = saved_modify  # type: ignore[method-assign]
        KmsBackend._generate_default_keys = saved_default_keys  # type: ignore[method-assign]

    return undo


def _cluster_snapshot_type() -> Any:
    from moto.rds.models import DBClusterSnapshot

    return DBClusterSnapshot


def _key_lets(rds_backend: Any, key_id: str, owner: str, region: str, account: str) -> bool:
    """The key policy of ``owner``'s key lets ``account`` use it (Decrypt, CreateGrant)."""
    from refresh.source_accounts import policy_grants

    try:
        kms = rds_backend.get_backend("kms", region=region, account_id=owner)
        policy = kms.get_key_policy(kms.any_id_to_key_id(key_id))
    except Exception:
        return False
    return all(policy_grants(policy, account, action) for action in ("kms:Decrypt", "kms:CreateGrant"))


rds_as_documented = _applied_once(_apply_rds)
accounts_as_documented = _applied_once(_apply_accounts)
task_tokens_as_documented = _applied_once(_apply_task_tokens)
atomic_conditional_writes = _applied_once(_apply_dynamodb)
requests_atomic = _applied_once(_apply_serial_requests)
change_sets_set_outputs = _applied_once(_apply_cloudformation)


@contextlib.contextmanager
def corrections() -> Iterator[None]:
    """Every correction while the block runs (the rehearsal's moto); moto is as it was afterwards."""
    with (
        rds_as_documented(),
        accounts_as_documented(),
        atomic_conditional_writes(),
        requests_atomic(),
        change_sets_set_outputs(),
        task_tokens_as_documented(),
    ):
        yield
