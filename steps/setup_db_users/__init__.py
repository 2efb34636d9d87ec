"""setup_db_users: the restored copy gets its own master password and the request's users.

What serves only this step lives beside it:

- ``step``: the step itself (read secrets and scripts, reset the master password, apply the
  users spec and the scripts over TLS);
- ``master_password``: the reset and where the new password is kept (RDS-managed or the
  stack's secret);
- ``db_users``: the users spec turned into SQL, applied in one transaction;
- ``pgsql``: PostgreSQL quoting and SCRAM verifiers (the rehearsal's local database uses them
  too, to play RDS).

The connection itself (``steps.lib.pg_connect``) is shared: ValidateRequest checks the CA bundle.
"""

from __future__ import annotations

from steps.setup_db_users.step import SetupDBUsers

__all__ = ["SetupDBUsers"]
