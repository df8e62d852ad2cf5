# -*- test-case-name: tests.test_store_contract -*-
"""
A throw-away PostgreSQL server for tests and benchmarks, from the machine's own binaries.

L{PostgresServer} runs C{initdb} in a temporary directory and starts the server listening
only on a Unix socket there, so nothing else on the machine can reach it and no port is
taken. PostgreSQL refuses to run as root: as root the server runs as the C{postgres} system
user (Debian's C{postgresql} package makes it), which then owns the directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence

import psycopg

__all__ = ["PostgresServer", "PostgresUnavailable", "find_binaries"]


class PostgresUnavailable(Exception):
    """
    No PostgreSQL server can be run here; the message says why.
    """


def find_binaries() -> str:
    """
    The directory of the newest installed server's C{initdb} and C{pg_ctl}: C{$PG_BINDIR},
    else Debian's C{/usr/lib/postgresql/VERSION/bin}.

    @raise PostgresUnavailable: none is installed.
    """
    candidates = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    found.sort(key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0)
    candidates.extend(os.path.dirname(path) for path in reversed(found))
    for directory in candidates:
        if all(os.access(os.path.join(directory, name), os.X_OK) for name in ("initdb", "pg_ctl")):
            return directory
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or "
        "$PG_BINDIR: install Debian's 'postgresql' package"
    )


class PostgresServer:
    """
    One PostgreSQL cluster in a temporary directory; L{start} it, make databases, L{stop} it.

    @param settings: extra server settings (C{name=value}), for example C{fsync=off}.
    """

    def __init__(self, settings: Sequence[str] = ()) -> None:
        self._settings = list(settings)
        self._bindir = find_binaries()
        self._user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    "running as root, and there is no 'postgres' user to run the server as"
                ) from None
            self._user = "postgres"
        self.directory = ""
        self._databases = 0

    def _run(self, *command: str) -> None:
        prefix = ["/usr/sbin/runuser", "-u", self._user, "--"] if self._user else []
        result = subprocess.run(  # noqa: S603 (our own binaries, arguments as a list)
            [*prefix, *command], capture_output=True, text=True, check=False, cwd=self.directory
        )
        if result.returncode:
            raise PostgresUnavailable(
                f"{os.path.basename(command[0])} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )

    @property
    def _data(self) -> str:
        return os.path.join(self.directory, "data")

    def start(self) -> None:
        """
        Make the cluster and start the server; it listens only on its socket directory.
        """
        # A short path: a Unix socket's name must fit in 107 bytes.
        self.directory = tempfile.mkdtemp(prefix="linkrouter-pg-")
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        try:
            self._run(
                os.path.join(self._bindir, "initdb"),
                "--pgdata",
                self._data,
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-sync",
            )
            options = [
                "-c listen_addresses=''",
                f"-c unix_socket_directories='{self.directory}'",
                *(f"-c {setting}" for setting in self._settings),
            ]
            self._run(
                os.path.join(self._bindir, "pg_ctl"),
                "--pgdata",
                self._data,
                "--log",
                os.path.join(self.directory, "server.log"),
                "--options",
                " ".join(options),
                "--wait",
                "start",
            )
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def dsn(self, database: str = "postgres") -> str:
        """
        The connection string of C{database} on this server.
        """
        return f"host={self.directory} user=postgres dbname={database}"

    def create_database(self) -> str:
        """
        A new empty database; its connection string.
        """
        self._databases += 1
        name = f"test_{os.getpid()}_{self._databases}"
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        """
        Stop the server at once and remove its directory.
        """
        if not self.directory:
            return
        try:
            self._run(
                os.path.join(self._bindir, "pg_ctl"),
                "--pgdata",
                self._data,
                "--mode",
                "immediate",
                "--wait",
                "stop",
            )
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = ""
