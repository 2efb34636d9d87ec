"""setup_db_users against a real PostgreSQL: credentials reset, the users spec, safety, idempotency."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
import structlog

from dispatcher import logs
from dispatcher.errors import ResourceBusy, ValidationError
from refresh.errors import DatabaseSetupFailed, UnsafeTarget
from tests.functional.pg_world import (
    CLUSTER,
    MASTER,
    OPERATION,
    PRODUCTION_PASSWORD,
    REGION,
    TARGET,
    World,
    fast_step,
)

PRODUCTION_SCHEMA = """
CREATE ROLE app_owner NOLOGIN;
CREATE SCHEMA sales AUTHORIZATION app_owner;
CREATE TABLE sales.orders (id serial PRIMARY KEY, customer_email text NOT NULL);
CREATE TABLE sales.customers (id serial PRIMARY KEY, email text NOT NULL);
CREATE VIEW sales.recent_orders AS SELECT * FROM sales.orders;
ALTER TABLE sales.orders OWNER TO app_owner;
ALTER TABLE sales.customers OWNER TO app_owner;
ALTER VIEW sales.recent_orders OWNER TO app_owner;
ALTER SEQUENCE sales.orders_id_seq OWNER TO app_owner;
ALTER SEQUENCE sales.customers_id_seq OWNER TO app_owner;
INSERT INTO sales.customers (email) VALUES ('ann@prod.example'), ('bob@prod.example');
"""


@pytest.fixture
def world(postgres_server: Any, pg_database: str, clients: Any, store: Any) -> World:
    """A restored cluster whose database holds a small copy of production."""
    made = World.make(postgres_server, pg_database, clients, store)
    made.execute(PRODUCTION_SCHEMA)
    return made


def full_spec(world: World) -> dict[str, Any]:
    """A spec using every kind of grant, with role passwords in Secrets Manager."""
    return {
        "roles": [
            {
                "name": "app_rw",
                "login": True,
                "password_secret_arn": world.role_secret("app_rw", {"password": "rw-Pass-1"}),
            },
            {"name": "reporting", "login": False},
            {
                "name": "analyst",
                "login": True,
                "password_secret_arn": world.role_secret(
                    "analyst", {"username": "analyst", "password": "an-Pass-2"}
                ),
                "connection_limit": 3,
                "valid_until": "2031-01-01T00:00:00Z",
            },
        ],
        "grants": [
            {
                "type": "database",
                "database": world.database,
                "privileges": ["CONNECT"],
                "to": ["app_rw", "reporting"],
            },
            {"type": "schema", "schema": "sales", "privileges": ["USAGE"], "to": ["app_rw", "reporting"]},
            {
                "type": "tables",
                "schema": "sales",
                "privileges": ["SELECT", "INSERT", "UPDATE", "DELETE"],
                "to": ["app_rw"],
            },
            {"type": "tables", "schema": "sales", "privileges": ["SELECT"], "to": ["reporting"]},
            {"type": "sequences", "schema": "sales", "privileges": ["USAGE", "SELECT"], "to": ["app_rw"]},
            {
                "type": "default_privileges",
                "schema": "sales",
                "object_type": "tables",
                "for_role": "app_owner",
                "privileges": ["SELECT"],
                "to": ["reporting"],
            },
            {"type": "membership", "role": "reporting", "to": ["analyst"]},
        ],
    }


def privilege(world: World, check: str, *args: Any) -> bool:
    """One has_*_privilege / pg_has_role answer from the database itself."""
    return bool(world.sql(f"SELECT {check} AS ok", *args)[0]["ok"])


def test_first_run_locks_production_out_and_sets_up_the_spec(world: World) -> None:
    # GIVEN a restored copy that production's master password still opens
    assert world.login(MASTER, PRODUCTION_PASSWORD) == ""
    # WHEN the step runs with a spec using every kind of grant
    output = world.run(full_spec(world))
    # THEN production's master password no longer works, the RDS-managed one does
    assert world.login(MASTER, PRODUCTION_PASSWORD) == "InvalidPasswordError"
    assert world.login(MASTER, world.master_password_now()) == ""
    assert "ModifyDBCluster" in world.rds_calls
    assert world.emulation.applied == [
        {"cluster_id": CLUSTER, "username": MASTER, "how": "ManageMasterUserPassword"}
    ]
    master = output["master_user"]
    assert master["storage"] == "rds-managed"
    assert (
        master["secret_arn"].startswith(f"arn:aws:secretsmanager:{REGION}:")
        and "rds!cluster-" in master["secret_arn"]
    )
    assert master["requested_now"] is True
    # AND the roles exist as the spec says
    roles = {
        r["rolname"]: r
        for r in world.sql(
            "SELECT rolname, rolcanlogin, rolconnlimit, rolvaliduntil FROM pg_roles"
            " WHERE rolname IN ('app_rw', 'reporting', 'analyst')"
        )
    }
    assert roles["app_rw"]["rolcanlogin"] and not roles["reporting"]["rolcanlogin"]
    assert roles["analyst"]["rolconnlimit"] == 3
    assert roles["analyst"]["rolvaliduntil"].isoformat() == "2031-01-01T00:00:00+00:00"
    assert sorted(output["roles_created"]) == ["analyst", "app_rw", "reporting"]
    # AND each grant holds, asked of PostgreSQL itself
    assert privilege(world, "has_database_privilege('app_rw', $1, 'CONNECT')", world.database)
    assert privilege(world, "has_schema_privilege('reporting', 'sales', 'USAGE')")
    assert not privilege(world, "has_schema_privilege('reporting', 'sales', 'CREATE')")
    for table in ("sales.orders", "sales.customers", "sales.recent_orders"):
        assert privilege(world, f"has_table_privilege('app_rw', '{table}', 'INSERT')")
        assert privilege(world, f"has_table_privilege('reporting', '{table}', 'SELECT')")
        assert not privilege(world, f"has_table_privilege('reporting', '{table}', 'UPDATE')")
    assert privilege(world, "has_sequence_privilege('app_rw', 'sales.orders_id_seq', 'USAGE')")
    assert privilege(world, "pg_has_role('analyst', 'reporting', 'MEMBER')")
    # AND a table the owner makes later is readable by reporting (default privileges)
    world.execute("SET ROLE app_owner; CREATE TABLE sales.refunds (id int); RESET ROLE;")
    assert privilege(world, "has_table_privilege('reporting', 'sales.refunds', 'SELECT')")
    # AND the roles log in with the passwords from their secrets, over TLS
    assert world.login("app_rw", "rw-Pass-1") == ""
    assert world.login("analyst", "an-Pass-2") == ""
    # AND the output lists the grants, and the audit trail has the reset and the changes
    assert {"type": "membership", "role": "reporting", "to": "analyst"} in output["grants"]
    tables = [g for g in output["grants"] if g["type"] == "tables" and g["to"] == "app_rw"]
    assert tables == [
        {
            "type": "tables",
            "on": "sales",
            "privileges": ["SELECT", "INSERT", "UPDATE", "DELETE"],
            "to": "app_rw",
            "objects": 3,
        }
    ]
    events = {item["event"]: item for item in world.store.audit_trail(OPERATION)}
    assert events["master_password_reset"]["secret_arn"] == master["secret_arn"]
    assert sorted(events["users_spec_applied"]["roles_created"]) == ["analyst", "app_rw", "reporting"]
    assert output["changed"] is True


def catalog_state(world: World) -> list[Any]:
    """Everything the spec can change, as PostgreSQL reports it."""
    return [
        world.sql("SELECT rolname, rolcanlogin, rolconnlimit, rolvaliduntil FROM pg_roles ORDER BY rolname"),
        world.sql("SELECT roleid, member FROM pg_auth_members ORDER BY 1, 2"),
        world.sql(
            "SELECT relname, relacl::text FROM pg_class WHERE relnamespace = 'sales'::regnamespace ORDER BY 1"
        ),
        world.sql("SELECT nspname, nspacl::text FROM pg_namespace ORDER BY 1"),
        world.sql("SELECT datname, datacl::text FROM pg_database ORDER BY 1"),
        world.sql("SELECT defaclrole, defaclobjtype, defaclacl::text FROM pg_default_acl ORDER BY 1, 2"),
        world.sql("SELECT rolname, rolpassword FROM pg_authid ORDER BY 1"),
    ]


def test_applying_the_same_spec_again_changes_nothing(world: World) -> None:
    # GIVEN the spec applied once
    spec = full_spec(world)
    world.run(spec)
    before = catalog_state(world)
    calls_before = list(world.rds_calls)
    # WHEN the step runs again (a Step Functions retry, or a second apply)
    again = world.run(spec)
    # THEN it reports no change, changes no catalog (not even a password hash) and resets nothing again
    assert again["changed"] is False
    for key in ("roles_created", "roles_altered", "roles_disabled", "roles_dropped", "grants", "scripts_run"):
        assert again[key] == [], key
    assert catalog_state(world) == before
    assert again["master_user"]["requested_now"] is False
    assert "ModifyDBCluster" not in world.rds_calls[len(calls_before) :]
    assert len(world.emulation.applied) == 1


def test_existing_role_is_altered_to_the_spec_and_its_old_password_stops_working(world: World) -> None:
    # GIVEN production's application role, with production's password and limits
    world.execute("CREATE ROLE app_rw LOGIN PASSWORD 'prod-app-password' CONNECTION LIMIT 50")
    assert world.login("app_rw", "prod-app-password") == ""
    arn = world.role_secret("app_rw", {"password": "dev-app-password"})
    # WHEN the spec gives it a secret's password and a lower limit
    output = world.run(
        {"roles": [{"name": "app_rw", "login": True, "password_secret_arn": arn, "connection_limit": 5}]}
    )
    # THEN the role is altered, not created, and only the secret's password opens it
    assert output["roles_created"] == []
    assert output["roles_altered"] == [{"name": "app_rw", "changed": ["connection_limit", "password"]}]
    assert world.sql("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'app_rw'")[0]["rolconnlimit"] == 5
    assert world.login("app_rw", "prod-app-password") == "InvalidPasswordError"
    assert world.login("app_rw", "dev-app-password") == ""


def test_disable_and_drop_with_reassign(world: World) -> None:
    # GIVEN production roles: a batch user that logs in, and an ETL role owning a table and holding grants
    world.execute(
        """
        CREATE ROLE legacy_batch LOGIN PASSWORD 'batch-prod';
        CREATE ROLE etl LOGIN PASSWORD 'etl-prod';
        CREATE TABLE sales.etl_runs (id int);
        ALTER TABLE sales.etl_runs OWNER TO etl;
        GRANT SELECT ON sales.orders TO etl;
        GRANT USAGE ON SCHEMA sales TO etl;
        """
    )
    # WHEN the spec disables one and drops the other, handing its objects to app_owner
    output = world.run({"disable": ["legacy_batch"], "drop": [{"name": "etl", "reassign_to": "app_owner"}]})
    # THEN the batch user cannot log in any more, and has no password left
    assert output["roles_disabled"] == ["legacy_batch"]
    assert (
        world.sql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'legacy_batch'")[0]["rolcanlogin"]
        is False
    )
    assert (
        world.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'legacy_batch'")[0]["rolpassword"]
        is None
    )
    assert world.login("legacy_batch", "batch-prod") != ""
    # AND the ETL role is gone, its table now belongs to app_owner
    assert output["roles_dropped"] == [{"name": "etl", "reassigned_to": "app_owner", "objects_reassigned": 1}]
    assert world.sql("SELECT 1 FROM pg_roles WHERE rolname = 'etl'") == []
    owner = world.sql(
        "SELECT tableowner FROM pg_tables WHERE schemaname = 'sales' AND tablename = 'etl_runs'"
    )
    assert owner == [{"tableowner": "app_owner"}]
    # AND again: nothing left to do
    again = world.run({"disable": ["legacy_batch"], "drop": [{"name": "etl", "reassign_to": "app_owner"}]})
    assert again["changed"] is False
    assert again["roles_not_found"] == ["etl"]


def test_dropping_an_owner_without_reassign_target_fails_and_applies_nothing(world: World) -> None:
    # GIVEN a role that owns a table, and a spec that would also create a role
    world.execute(
        "CREATE ROLE etl NOLOGIN; CREATE TABLE sales.etl_runs (id int); ALTER TABLE sales.etl_runs OWNER TO etl;"
    )
    spec = {"roles": [{"name": "newcomer", "login": False}], "drop": ["etl"]}
    # WHEN the step runs
    with pytest.raises(DatabaseSetupFailed) as caught:
        world.run(spec)
    # THEN the error names the field to fix, the role and what it owns
    message = str(caught.value)
    assert "users.drop[0].reassign_to" in message
    assert "'etl' owns 1 object(s)" in message and "sales.etl_runs" in message
    assert "rolled back" in message
    # AND nothing of the spec was applied
    assert world.sql("SELECT 1 FROM pg_roles WHERE rolname = 'newcomer'") == []
    assert world.sql("SELECT 1 FROM pg_roles WHERE rolname = 'etl'") == [{"?column?": 1}]


def test_hostile_names_and_passwords_cannot_inject_sql(world: World) -> None:
    # GIVEN names and a password built to break out of quoting
    hostile_role = 'a"; DROP ROLE victim; --'
    hostile_schema = "we\"ird'; DROP SCHEMA sales CASCADE; --"
    hostile_password = "it's \\' a \"test\"'); DROP ROLE victim; -- \\"
    world.execute("CREATE ROLE victim NOLOGIN;")
    world.execute(f'CREATE SCHEMA "{hostile_schema.replace(chr(34), chr(34) * 2)}"; ')
    world.execute(f'CREATE TABLE "{hostile_schema.replace(chr(34), chr(34) * 2)}"."t\'1" (id int);')
    arn = world.role_secret("hostile", {"password": hostile_password})
    spec = {
        "roles": [{"name": hostile_role, "login": True, "password_secret_arn": arn}],
        "grants": [
            {"type": "database", "database": world.database, "privileges": ["CONNECT"], "to": [hostile_role]},
            {"type": "schema", "schema": hostile_schema, "privileges": ["USAGE"], "to": [hostile_role]},
            {"type": "tables", "schema": hostile_schema, "privileges": ["SELECT"], "to": [hostile_role]},
        ],
    }
    # WHEN the step applies them
    output = world.run(spec)
    # THEN the role exists under its exact name, nothing else was dropped, the grants hold
    assert output["roles_created"] == [hostile_role]
    assert world.sql("SELECT 1 AS ok FROM pg_roles WHERE rolname = $1", hostile_role) == [{"ok": 1}]
    assert world.sql("SELECT 1 AS ok FROM pg_roles WHERE rolname = 'victim'") == [{"ok": 1}]
    assert world.sql("SELECT 1 AS ok FROM pg_namespace WHERE nspname = 'sales'") == [{"ok": 1}]
    assert world.sql(
        "SELECT has_table_privilege($1, format('%I.%I', $2::text, 't''1'), 'SELECT') AS ok",
        hostile_role,
        hostile_schema,
    ) == [{"ok": True}]
    # AND the hostile password is the password, character for character
    assert world.login(hostile_role, hostile_password) == ""
    assert world.run(spec)["changed"] is False


def test_a_failing_script_rolls_back_names_itself_and_earlier_scripts_stay(world: World) -> None:
    # GIVEN two scripts: masking e-mail addresses, then one that changes data and then fails
    scripts = [
        {
            "name": "mask-emails",
            "sql": "UPDATE sales.customers SET email = 'user' || id || '@example.invalid';",
        },
        {"name": "broken", "sql": "DELETE FROM sales.customers; SELECT no_such_column FROM sales.orders;"},
    ]
    # WHEN the step runs
    with pytest.raises(DatabaseSetupFailed) as caught:
        world.run({"roles": [{"name": "reporting"}], "scripts": scripts})
    # THEN the error names the script and carries the database's message
    message = str(caught.value)
    assert "script 'broken' (inline) failed and was rolled back" in message
    assert 'column "no_such_column" does not exist' in message and "42703" in message
    # AND the failing script left nothing behind; the spec and the first script stay applied
    emails = [r["email"] for r in world.sql("SELECT email FROM sales.customers ORDER BY id")]
    assert emails == ["user1@example.invalid", "user2@example.invalid"]
    assert world.sql("SELECT 1 AS ok FROM pg_roles WHERE rolname = 'reporting'") == [{"ok": 1}]
    # WHEN the script is fixed and the step retried
    scripts[1] = {"name": "broken", "sql": "UPDATE sales.orders SET customer_email = 'x@example.invalid';"}
    output = world.run({"roles": [{"name": "reporting"}], "scripts": scripts})
    # THEN the first script does not run twice, the fixed one runs
    assert [s["name"] for s in output["scripts_skipped"]] == ["mask-emails"]
    assert [s["name"] for s in output["scripts_run"]] == ["broken"]


def test_scripts_from_s3_run_in_order(world: World) -> None:
    s3 = world.clients("s3", REGION)
    s3.create_bucket(Bucket="masking-scripts", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(
        Bucket="masking-scripts", Key="mask.sql", Body=b"UPDATE sales.customers SET email = md5(email);"
    )
    output = world.run({"scripts": [{"name": "mask", "s3_uri": "s3://masking-scripts/mask.sql"}]})
    assert output["scripts_run"][0]["source"] == "s3://masking-scripts/mask.sql"
    assert all("@" not in r["email"] for r in world.sql("SELECT email FROM sales.customers"))


def test_the_step_waits_until_the_password_change_has_applied(world: World) -> None:
    # GIVEN RDS reporting the cluster busy resetting credentials for two describes after the change
    from botocore.awsrequest import AWSResponse

    state = {"modified": False, "busy_left": 2}
    world.clients.add_hook("after-call.rds.ModifyDBCluster", lambda **_: state.update(modified=True))

    def busy(model: Any, **_: Any) -> Any:
        if not state["modified"] or state["busy_left"] == 0:
            return None
        state["busy_left"] -= 1
        import boto3

        real = boto3.client("rds", region_name=REGION).describe_db_clusters(DBClusterIdentifier=CLUSTER)
        cluster = {**real["DBClusters"][0], "Status": "resetting-master-credentials"}
        cluster["PendingModifiedValues"] = {"MasterUserPassword": "****"}
        return AWSResponse("https://rds", 200, {}, None), {"DBClusters": [cluster]}

    world.clients.add_hook("before-call.rds.DescribeDBClusters", busy)
    step = fast_step()
    # WHEN the step runs
    output = world.run({}, step=step)
    # THEN it waited (two polls, no wall-clock time here) before connecting with the new password
    assert output["master_user"]["polls"] == 2
    assert step.slept == [step.password_poll_seconds] * 2
    assert world.login(MASTER, PRODUCTION_PASSWORD) == "InvalidPasswordError"


def test_a_change_that_does_not_apply_in_time_is_retried_without_a_second_reset(
    postgres_server: Any, pg_database: str, clients: Any, store: Any
) -> None:
    # GIVEN a world where the cluster stays busy, and a wait budget of three polls
    world = World.make(postgres_server, pg_database, clients, store, password_reset_max_wait_seconds=30)
    from botocore.awsrequest import AWSResponse

    stuck = {"on": True}

    def busy(model: Any, **_: Any) -> Any:
        if not stuck["on"] or "ModifyDBCluster" not in world.rds_calls:
            return None
        import boto3

        real = boto3.client("rds", region_name=REGION).describe_db_clusters(DBClusterIdentifier=CLUSTER)
        return AWSResponse("https://rds", 200, {}, None), {
            "DBClusters": [{**real["DBClusters"][0], "Status": "modifying"}]
        }

    world.clients.add_hook("before-call.rds.DescribeDBClusters", busy)
    # WHEN the step runs out of its wait budget
    with pytest.raises(ResourceBusy) as caught:
        world.run({})
    assert "has not applied after 3 checks" in str(caught.value) and "cluster status is modifying" in str(
        caught.value
    )
    # THEN the state machine's retry waits for the same change instead of asking for another
    stuck["on"] = False
    output = world.run({})
    assert world.rds_calls.count("ModifyDBCluster") == 1
    assert output["master_user"]["requested_now"] is False
    assert world.login(MASTER, world.master_password_now()) == ""


def test_a_cluster_restored_with_an_rds_managed_secret_gets_it_rotated(world: World) -> None:
    # GIVEN a restored cluster that already has an RDS-managed secret, while production's
    # password still opens the database (made without the emulation: nothing changed in PostgreSQL)
    import boto3

    raw_rds = boto3.client("rds", region_name=REGION)
    inherited = raw_rds.modify_db_cluster(
        DBClusterIdentifier=CLUSTER, ManageMasterUserPassword=True, ApplyImmediately=True
    )
    inherited_arn = inherited["DBCluster"]["MasterUserSecret"]["SecretArn"]
    assert world.login(MASTER, PRODUCTION_PASSWORD) == ""
    # WHEN the step runs
    output = world.run({})
    # THEN it rotated that secret rather than asking for a new one, and production's password is locked out
    assert output["master_user"]["call"] == "RotateMasterUserPassword"
    assert output["master_user"]["secret_arn"] == inherited_arn
    assert world.login(MASTER, PRODUCTION_PASSWORD) == "InvalidPasswordError"
    assert world.login(MASTER, world.master_password_now()) == ""


def test_stack_secret_mode_keeps_the_password_in_the_stacks_secret(world: World) -> None:
    # WHEN the request asks for the stack's own secret
    output = world.run({}, master_password_storage="stack-secret")
    # THEN the secret is named after the target, tagged as ours, and holds the password that now works
    sm = world.clients("secretsmanager", REGION)
    described = sm.describe_secret(SecretId=f"aurora-restore/{TARGET}/master")
    assert output["master_user"]["secret_arn"] == described["ARN"]
    assert {"Key": "aurora-restore:managed", "Value": "true"} in described["Tags"]
    value = json.loads(sm.get_secret_value(SecretId=described["ARN"])["SecretString"])
    assert value["username"] == MASTER and value["operation_id"] == OPERATION
    assert world.login(MASTER, value["password"]) == ""
    assert world.login(MASTER, PRODUCTION_PASSWORD) == "InvalidPasswordError"
    assert world.emulation.applied[-1]["how"] == "MasterUserPassword"
    # AND a retry reuses it: no new version, no second reset
    versions = len(sm.list_secret_version_ids(SecretId=described["ARN"])["Versions"])
    again = world.run({}, master_password_storage="stack-secret")
    assert again["master_user"]["requested_now"] is False
    assert len(sm.list_secret_version_ids(SecretId=described["ARN"])["Versions"]) == versions
    assert world.rds_calls.count("ModifyDBCluster") == 1


def test_stack_secret_mode_takes_over_from_an_inherited_rds_managed_secret(world: World) -> None:
    # GIVEN a restored cluster with an RDS-managed secret, and a request for the stack's secret
    import boto3

    boto3.client("rds", region_name=REGION).modify_db_cluster(
        DBClusterIdentifier=CLUSTER, ManageMasterUserPassword=True, ApplyImmediately=True
    )
    # WHEN the step runs
    output = world.run({}, master_password_storage="stack-secret")
    # THEN RDS stops managing the password and the stack secret's password is the one that works
    cluster = world.clients("rds", REGION).describe_db_clusters(DBClusterIdentifier=CLUSTER)["DBClusters"][0]
    assert not cluster.get("MasterUserSecret")
    value = world.clients("secretsmanager", REGION).get_secret_value(
        SecretId=output["master_user"]["secret_arn"]
    )
    assert world.login(MASTER, json.loads(value["SecretString"])["password"]) == ""
    assert world.login(MASTER, PRODUCTION_PASSWORD) == "InvalidPasswordError"


def test_a_foreign_secret_with_the_stack_secrets_name_is_never_overwritten(world: World) -> None:
    sm = world.clients("secretsmanager", REGION)
    sm.create_secret(Name=f"aurora-restore/{TARGET}/master", SecretString='{"password": "someone-elses"}')
    with pytest.raises(UnsafeTarget, match="was not made by aurora-restore"):
        world.run({}, master_password_storage="stack-secret")
    assert "ModifyDBCluster" not in world.rds_calls
    assert json.loads(sm.get_secret_value(SecretId=f"aurora-restore/{TARGET}/master")["SecretString"]) == {
        "password": "someone-elses"
    }


def test_no_secret_reaches_logs_outputs_or_the_audit_trail(world: World) -> None:
    # GIVEN structlog writing JSON lines into a buffer, and role passwords in secrets
    stream = io.StringIO()
    before = structlog.get_config()
    logs.configure(json_lines=True, stream=stream, level="DEBUG")
    try:
        spec = full_spec(world)
        spec["scripts"] = [{"name": "mask", "sql": "UPDATE sales.customers SET email = 'masked';"}]
        output = world.run(spec, master_password_storage="stack-secret")
        stack_password = json.loads(
            world.clients("secretsmanager", REGION).get_secret_value(
                SecretId=output["master_user"]["secret_arn"]
            )["SecretString"]
        )["password"]
    finally:
        structlog.configure(**before)  # leave logging as the next test expects it
    # THEN no password appears anywhere: log lines, the output, the audit items
    written = stream.getvalue()
    assert "database users set up" in written and "master password reset requested" in written
    everything = written + json.dumps(output) + json.dumps(world.store.audit_trail(OPERATION), default=str)
    for secret in (stack_password, "rw-Pass-1", "an-Pass-2", PRODUCTION_PASSWORD):
        assert secret not in everything


def test_connection_refused_after_the_retry_budget(
    postgres_server: Any, pg_database: str, clients: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an endpoint where nothing listens, two attempts and a short backoff
    from aurora_restore.simulate.localdb import unused_port
    from steps.setup_db_users import SetupDBUsers

    port = unused_port()
    world = World.make(
        postgres_server,
        pg_database,
        clients,
        store,
        db_endpoint_override=f"127.0.0.1:{port}",
        db_connect_attempts=2,
    )
    monkeypatch.setattr(SetupDBUsers, "connect_backoff_base_seconds", 0.05)
    started = time.monotonic()
    # WHEN the step runs
    with pytest.raises(DatabaseSetupFailed) as caught:
        world.run({"roles": [{"name": "reporting"}]})
    # THEN it gave up after its budget, saying where and why
    message = str(caught.value)
    assert f"could not connect to 127.0.0.1:{port}/{pg_database} as 'master' after 2 attempts" in message
    assert "ConnectionRefusedError" in message or "OSError" in message
    assert time.monotonic() - started < 5


def test_a_certificate_that_does_not_verify_is_refused(
    postgres_server: Any, pg_database: str, clients: Any, store: Any, tmp_path: Any
) -> None:
    from aurora_restore.simulate.localdb import make_certificates

    _, _, other_ca = make_certificates(tmp_path / "other")
    world = World.make(postgres_server, pg_database, clients, store, db_ca_bundle=str(other_ca))
    with pytest.raises(DatabaseSetupFailed, match="does not verify against the configured CA bundle"):
        world.run({})


def test_bad_secrets_and_names_fail_before_anything_changes(world: World) -> None:
    # GIVEN specs whose role secret is missing, not JSON, without a password, outside the stack's
    # prefix, or that name the master user
    sm = world.clients("secretsmanager", REGION)
    missing = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:aurora-restore/missing-AbCdEf"
    not_json = world.role_secret("not-json", "not json")
    no_password = world.role_secret("no-password", {"username": "app_rw"})
    outside = sm.create_secret(Name="prod/app_rw", SecretString='{"password": "x"}')["ARN"]

    def role(arn: str) -> dict[str, Any]:
        return {"roles": [{"name": "app_rw", "login": True, "password_secret_arn": arn}]}

    cases = [
        (
            role(missing),
            "users.roles[0].password_secret_arn",
            f"no such secret in Secrets Manager in {REGION}",
        ),
        (role(not_json), "users.roles[0].password_secret_arn", "it is not JSON"),
        (role(no_password), "users.roles[0].password_secret_arn", "it has no password field"),
        (role(outside), "users.roles[0].password_secret_arn", "starts with 'aurora-restore/'"),
        ({"disable": [MASTER]}, "users.disable[0].name", "is the cluster's master user"),
    ]
    for spec, field, expected in cases:
        # WHEN the step runs
        with pytest.raises(ValidationError) as caught:
            world.run(spec)
        # THEN the error names the field and the problem
        assert caught.value.field == field
        assert expected in str(caught.value)
    # AND nothing changed: the master password was not even reset
    assert "ModifyDBCluster" not in world.rds_calls
    assert world.login(MASTER, PRODUCTION_PASSWORD) == ""
    assert world.sql("SELECT 1 FROM pg_roles WHERE rolname = 'app_rw'") == []


def test_a_cluster_this_operation_did_not_restore_is_never_touched(world: World) -> None:
    rds = world.clients("rds", REGION)
    rds.create_db_cluster(
        DBClusterIdentifier="someone-elses",
        Engine="aurora-postgresql",
        MasterUsername=MASTER,
        MasterUserPassword="restored-from-snapshot",
        Tags=[
            {"Key": "aurora-restore:managed", "Value": "true"},
            {"Key": "aurora-restore:operation-id", "Value": "op-other"},
        ],
    )
    step = fast_step()
    with pytest.raises(UnsafeTarget, match="was not restored by operation op-dbusers-1"):
        step.run(world.context(world.request({}), restore={"cluster_id": "someone-elses"}))
    assert "ModifyDBCluster" not in world.rds_calls


def test_through_the_dispatcher_the_output_and_audit_trail_hold_no_secret(
    world: World, registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the dispatcher with this world's settings and clients
    from dispatcher.handler import Dispatcher

    app = Dispatcher(registry=registry, settings=world.settings, clients=world.clients)
    app._store = world.store
    request = world.request(full_spec(world))
    # WHEN the state machine's task calls it
    output = app.handle(
        {
            "step": "setup_db_users",
            "execution_id": "exec-1",
            "request": request.to_dict(),
            "restore": {"cluster_id": CLUSTER},
        }
    )
    # THEN the output and the state item say what changed, and the audit trail brackets it
    assert sorted(output["roles_created"]) == ["analyst", "app_rw", "reporting"]
    item = world.store.get_operation(OPERATION)
    assert (
        item["results"]["setup_db_users"]["master_user"]["secret_arn"] == output["master_user"]["secret_arn"]
    )
    trail = [i["event"] for i in world.store.audit_trail(OPERATION)]
    assert trail == ["started", "master_password_reset", "users_spec_applied", "succeeded"]
    summary = world.store.audit_trail(OPERATION)[-1]["summary"]
    assert "3 created" in summary and "rds-managed" in summary
    assert world.master_password_now() not in json.dumps(item, default=str)
