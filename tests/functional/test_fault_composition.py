"""Two --fault flags on one operation: each attempt fails once, as the first unexhausted fault says.

botocore calls every ``before-send`` handler and keeps the first answer; moto's own handler is one
of them. A call the client was told failed must not have been carried out by moto: the world
after the call is checked, not only the error the client saw.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from aurora_restore.simulate.hooks import FaultInjector, moto_skips_faulted_requests, parse_fault


def create(rds: Any) -> None:
    rds.create_db_cluster(
        DBClusterIdentifier="orders-dev",
        Engine="aurora-postgresql",
        MasterUsername="postgres",
        MasterUserPassword="not-a-secret-1",
    )


def test_faults_on_one_operation_compose_in_order_and_moto_never_runs_a_failed_call(clients: Any) -> None:
    # GIVEN a server error, then a denial, on the same call
    injector = FaultInjector(
        [
            parse_fault("rds.CreateDBCluster=InternalFailure*1"),
            parse_fault("rds.CreateDBCluster=AccessDenied*1"),
        ]
    )
    injector.register(clients.add_hook)
    rds = clients("rds", "us-west-2")
    with moto_skips_faulted_requests():
        # WHEN the step's client makes the call (botocore retries the server errors)
        with pytest.raises(ClientError) as caught:
            create(rds)
        # THEN the client got the denial after the server error, each fault injected its N times
        assert caught.value.response["Error"]["Code"] == "AccessDenied"
        assert injector.summary() == [
            {"fault": "rds.CreateDBCluster=InternalFailure*1", "injected": 1},
            {"fault": "rds.CreateDBCluster=AccessDenied*1", "injected": 1},
        ]
        # ... and no attempt was carried out: there is no cluster
        assert rds.describe_db_clusters()["DBClusters"] == []
        # WHEN the faults are spent, the next call reaches moto and works
        create(rds)
    assert [c["DBClusterIdentifier"] for c in rds.describe_db_clusters()["DBClusters"]] == ["orders-dev"]
