"""A throwaway PostgreSQL server for tests and benchmarks: a test helper, in the manner of
pytest-postgresql, that no module of the library imports.

:func:`start_cluster` runs ``initdb`` in a temporary directory and starts ``postgres`` on
127.0.0.1 on a free port, password-authenticated, with no Unix socket, and creates a
database ``atlas``; :meth:`PostgresCluster.stop` shuts it down and deletes the directory.
PostgreSQL refuses to run as root, so when this process is root the server runs as the
``postgres`` user (created by Debian's ``postgresql`` package), or ``nobody`` when there is
no such user. It needs PostgreSQL's server programs, and psycopg (the ``postgres`` extra)
for :meth:`PostgresCluster.execute` and the store URLs it gives.

The programs are looked up in ``ATLAS_EDA_PG_BIN`` (a directory), then on ``PATH``, then in
``/usr/lib/postgresql/<version>/bin`` (newest first), the place Debian installs them.

A session-wide server, and a fresh schema for each test, in a ``conftest.py``::

    import pytest

    from atlas_eda import TemporalStore
    from atlas_eda.testing.postgres import PostgresUnavailableError, start_cluster


    @pytest.fixture(scope="session")
    def pg_cluster():
        try:
            cluster = start_cluster(durable=False)  # no fsync: fast, and thrown away anyway
        except PostgresUnavailableError as exc:
            pytest.skip(str(exc))
        with cluster:  # stopped, and its directory deleted, at the end of the session
            yield cluster


    @pytest.fixture
    def pg_store(pg_cluster):
        schema = pg_cluster.create_schema()  # tests never see each other's events
        store = TemporalStore(url=pg_cluster.url(schema=schema))
        yield store
        store.close()
        pg_cluster.drop_schema(schema)
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

__all__ = [
    "BIN_ENV_VAR",
    "HOW_TO_INSTALL",
    "SUPERUSER",
    "PostgresCluster",
    "PostgresUnavailableError",
    "find_bindir",
    "start_cluster",
]

logger = logging.getLogger(__name__)

BIN_ENV_VAR = "ATLAS_EDA_PG_BIN"
"""A directory holding ``initdb``, ``pg_ctl`` and ``postgres``, to use before any other."""

SUPERUSER = "atlas"
"""The name of the cluster's superuser (its password is random, in ``PostgresCluster``)."""

HOW_TO_INSTALL = (
    "install PostgreSQL's server (Debian/Ubuntu: 'apt-get install postgresql', which "
    "'make test' does when run as root), or set ATLAS_EDA_PG_BIN to the directory that "
    "holds initdb, pg_ctl and postgres"
)
"""What to do when PostgreSQL's server programs are missing (for error and skip messages)."""
_PROGRAMS = ("initdb", "pg_ctl", "postgres")


class PostgresUnavailableError(RuntimeError):
    """No usable PostgreSQL server binaries, or the throwaway server would not start."""


def find_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or ``None``."""
    candidates: list[Path] = []
    configured = os.environ.get(BIN_ENV_VAR)
    if configured:
        candidates.append(Path(configured))
    initdb = shutil.which("initdb")
    if initdb:
        # /usr/local/bin/initdb may be a symlink into the real bin directory.
        candidates += [Path(initdb).parent, Path(initdb).resolve().parent]
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted(
            (p for p in debian.iterdir() if p.name.isdigit()),
            key=lambda p: int(p.name),
            reverse=True,
        )
        candidates += [v / "bin" for v in versions]
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in _PROGRAMS):
            return directory
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _server_user() -> str | None:
    """The user to run the server as: ``None`` (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailableError(
        "Running as root, and there is neither a 'postgres' nor a 'nobody' user to run "
        "PostgreSQL as (it refuses to run as root)."
    )


@dataclass
class PostgresCluster:
    """A running throwaway server, made by :func:`start_cluster`. ``url()`` gives store
    URLs for it; ``stop()`` ends it and deletes its directory; as a context manager it
    stops on exit.

    ``directory`` holds the cluster (``data/``) and its log (``server.log``); ``bindir``
    the server programs used; ``user`` and ``password`` the superuser's credentials;
    ``run_as`` the system user the server runs as (``None``: this process's user)."""

    directory: Path
    bindir: Path
    port: int
    user: str
    password: str
    run_as: str | None
    host: str = "127.0.0.1"
    database: str = "atlas"
    _stopped: bool = field(default=False, repr=False)

    def url(self, database: str | None = None, **query: Any) -> str:
        """A ``postgresql://`` store URL for ``database`` (default: the cluster's own
        database), with ``query`` as its query string (``schema=...``, ``pool_size=...``)."""
        credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        address = f"{credentials}@{self.host}:{self.port}/{database or self.database}"
        suffix = f"?{urlencode(query)}" if query else ""
        return f"postgresql://{address}{suffix}"

    def connect(self, database: str | None = None) -> Any:
        """An autocommit psycopg connection as the cluster's superuser."""
        import psycopg  # noqa: PLC0415  (an optional dependency: the 'postgres' extra)

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
            autocommit=True,
            connect_timeout=10,
        )

    def execute(self, *statements: str, database: str | None = None) -> None:
        """Run SQL statements (DDL: ``CREATE SCHEMA`` ...) in autocommit mode."""
        with self.connect(database) as connection:
            for statement in statements:
                connection.execute(statement)

    def create_schema(self, name: str | None = None) -> str:
        """Create a fresh schema (a random name unless given) and return its name."""
        schema = name or f"s_{secrets.token_hex(6)}"
        self.execute(f'CREATE SCHEMA "{schema}"')
        return schema

    def drop_schema(self, name: str) -> None:
        """Drop a schema and everything in it."""
        self.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database (a random name unless given) and return its name."""
        database = name or f"d_{secrets.token_hex(6)}"
        self.execute(f'CREATE DATABASE "{database}"', database="postgres")
        return database

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            _run(
                self.run_as,
                [
                    str(self.bindir / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.directory / "data"),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "60",
                ],
            )
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
        logger.info("stopped PostgreSQL on %s:%s", self.host, self.port)

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _run(run_as: str | None, command: list[str], timeout: float = 120) -> None:
    if run_as is not None:
        command = ["runuser", "-u", run_as, "--", *command]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False
    )
    if completed.returncode != 0:
        raise PostgresUnavailableError(
            f"{' '.join(command)} failed ({completed.returncode}): "
            f"{(completed.stderr or completed.stdout).strip()[-2000:]}"
        )


def start_cluster(
    *,
    durable: bool = True,
    max_connections: int = 200,
    parent: str | None = None,
    attempts: int = 3,
) -> PostgresCluster:
    """Start a throwaway server on 127.0.0.1 and create its database ``atlas``.

    ``durable=False`` turns off fsync (faster tests; a crash of the machine loses the
    cluster, which is thrown away anyway). ``parent`` is the directory to create the
    cluster's temporary directory in (default: the system's; when this process is root,
    one the server's user can reach); ``attempts`` how many free ports to try. Raises
    :class:`PostgresUnavailableError` when no server programs are found or the server
    does not start."""
    if attempts < 1:
        raise ValueError(
            f"start_cluster(attempts={attempts!r}): attempts is how many free ports to try; "
            f"pass 1 or more."
        )
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailableError(f"PostgreSQL's server is not installed: {HOW_TO_INSTALL}.")
    run_as = _server_user()
    directory = Path(tempfile.mkdtemp(prefix="atlas-pg-", dir=parent))
    password = secrets.token_urlsafe(18)
    try:
        _own(directory, run_as)
        _initdb(bindir, directory, run_as, SUPERUSER, password)
        options = _server_options(max_connections, durable)
        port = _start_server(bindir, directory, run_as, options, attempts)
        cluster = PostgresCluster(
            directory=directory,
            bindir=bindir,
            port=port,
            user=SUPERUSER,
            password=password,
            run_as=run_as,
        )
        try:
            cluster.execute(f'CREATE DATABASE "{cluster.database}"', database="postgres")
        except BaseException:
            cluster.stop()
            raise
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    logger.info("started PostgreSQL %s on 127.0.0.1:%s in %s", bindir, port, directory)
    return cluster


def _own(path: Path, run_as: str | None) -> None:
    """Give ``path`` to the server's user, when the server runs as another user."""
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _initdb(bindir: Path, directory: Path, run_as: str | None, user: str, password: str) -> None:
    """Create the cluster in ``directory / "data"``, its superuser ``user`` authenticated
    by ``password`` (scram-sha-256; the password passes through a file readable by the
    server's user alone, deleted at once, never through the command line)."""
    pwfile = directory / "pwfile"
    pwfile.write_text(password + "\n")
    _own(pwfile, run_as)
    pwfile.chmod(0o600)
    _run(
        run_as,
        [
            str(bindir / "initdb"),
            "-D",
            str(directory / "data"),
            "-U",
            user,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
    )
    pwfile.unlink()


def _server_options(max_connections: int, durable: bool) -> list[str]:
    """The server's settings: TCP on 127.0.0.1 only (no Unix socket to place or clean up)."""
    options = [
        "-c listen_addresses=127.0.0.1",
        "-c unix_socket_directories=''",
        f"-c max_connections={max_connections}",
    ]
    if not durable:
        options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
    return options


def _start_server(
    bindir: Path, directory: Path, run_as: str | None, options: list[str], attempts: int
) -> int:
    """Start the server on a free port and wait until it accepts connections; the port."""
    attempt = 1
    while True:
        port = _free_port()
        try:
            _run(
                run_as,
                [
                    str(bindir / "pg_ctl"),
                    "start",
                    "-D",
                    str(directory / "data"),
                    "-l",
                    str(directory / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    " ".join([f"-p {port}", *options]),
                ],
            )
        except PostgresUnavailableError:
            if attempt >= attempts:
                raise
        else:
            return port
        attempt += 1
        time.sleep(0.2)  # most likely the port was taken meanwhile: another one
