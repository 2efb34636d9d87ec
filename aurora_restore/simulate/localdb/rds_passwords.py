"""RDS applying a master password change to the local server (moto changes no real password)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aurora_restore.simulate.localdb.server import LocalPostgres, LocalPostgresError
from steps.lib.master_password import generate_master_password


@dataclass
class RdsMasterPasswordEmulation:
    """Plays RDS applying a master password change to the local server, through botocore hooks.

    moto 5.2.1 records ``ModifyDBCluster`` but changes no real password. For
    ``ManageMasterUserPassword=True`` it does create the RDS-owned secret
    (``rds!cluster-<uuid>``, ``MasterUserSecret`` in the describe output), but with a fixed value
    (``{"username": "admin", "password": "P@55w0rd!"}``), and its ``RotateMasterUserPassword``
    leaves the secret without a current version. After each successful ``ModifyDBCluster`` this
    does what RDS does:

    * ``MasterUserPassword=...``: the master user gets that password;
    * ``ManageMasterUserPassword=True`` or ``RotateMasterUserPassword=True``: a new random
      password, written to the cluster's secret as RDS writes it (master username and password),
      and given to the master user.

    ``applied`` lists what was done (cluster, user, how), never a password.
    """

    server: LocalPostgres
    clients: Any
    cluster_ids: tuple[str, ...] = ()
    applied: list[dict[str, str]] = field(default_factory=list)

    def install(self) -> RdsMasterPasswordEmulation:
        """Register the hooks on every client the ``Clients`` object makes."""
        self.clients.add_hook("before-parameter-build.rds.ModifyDBCluster", self._remember_params)
        self.clients.add_hook("after-call.rds.ModifyDBCluster", self._apply)
        return self

    def _remember_params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["aurora_restore_modify_params"] = dict(params)

    def _apply(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        params = context.pop("aurora_restore_modify_params", {})
        if http_response.status_code >= 300:
            return
        cluster = parsed.get("DBCluster", {})
        cluster_id = params.get("DBClusterIdentifier", cluster.get("DBClusterIdentifier", ""))
        if self.cluster_ids and cluster_id not in self.cluster_ids:
            return
        region = context.get("client_region")
        username = cluster.get("MasterUsername") or self._describe(cluster_id, region)["MasterUsername"]
        if params.get("MasterUserPassword"):
            self.server.set_password(username, params["MasterUserPassword"])
            self.applied.append({"cluster_id": cluster_id, "username": username, "how": "MasterUserPassword"})
            return
        how = next((k for k in ("ManageMasterUserPassword", "RotateMasterUserPassword") if params.get(k)), "")
        if not how:
            return
        secret = cluster.get("MasterUserSecret") or self._describe(cluster_id, region).get("MasterUserSecret")
        if not secret:
            raise LocalPostgresError(
                f"ModifyDBCluster({how}=True) on {cluster_id} left no MasterUserSecret; this moto does not "
                "make RDS-managed secrets, and the emulation needs it to"
            )
        password = generate_master_password()
        self.clients("secretsmanager", region).put_secret_value(
            SecretId=secret["SecretArn"],
            SecretString=json.dumps({"username": username, "password": password}),
        )
        self.server.set_password(username, password)
        self.applied.append({"cluster_id": cluster_id, "username": username, "how": how})

    def _describe(self, cluster_id: str, region: str | None) -> dict[str, Any]:
        found: dict[str, Any] = self.clients("rds", region).describe_db_clusters(
            DBClusterIdentifier=cluster_id
        )["DBClusters"][0]
        return found
