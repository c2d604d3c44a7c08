"""Fixtures of the tests that run against a real PostgreSQL server.

The server comes from ODUFLOW_TEST_PG_DSN (a superuser connection string), which
scripts/with-postgres.sh sets up with a throw-away cluster. Without it the tests skip, saying so,
except under CI=true where a missing server fails them: CI must never pass by skipping.

Each test starts from the server as it was and leaves it so: the databases and roles a test
creates are dropped afterwards (sessions ended, IS_TEMPLATE cleared first).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.postgres.sql_apply import Applier, quote_ident

DSN_VARIABLE = "ODUFLOW_TEST_PG_DSN"


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    dsn = os.environ.get(DSN_VARIABLE, "")
    if not dsn:
        reason = (
            f"{DSN_VARIABLE} is not set: run the tests through scripts/with-postgres.sh "
            "(it starts a throw-away PostgreSQL server)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.fail(f"{DSN_VARIABLE} is set but the server cannot be reached: {exc}", pytrace=False)
    return dsn


@dataclass
class PgServer:
    """The test server: connect as the superuser or as any role, over the same host and port."""

    dsn: str

    @property
    def params(self) -> dict[str, Any]:
        return conninfo_to_dict(self.dsn)

    @property
    def host(self) -> str:
        return str(self.params.get("host", "localhost"))

    @property
    def port(self) -> int:
        return int(self.params.get("port", 5432))

    @property
    def superuser(self) -> str:
        return str(self.params.get("user", "postgres"))

    def admin(self, database: str = "postgres", autocommit: bool = True) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, dbname=database, autocommit=autocommit)

    def login(self, user: str, password: str, database: str) -> psycopg.Connection[Any]:
        """A session as `user` with `password`, over TCP (password authentication)."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=user,
            password=password,
            dbname=database,
            autocommit=True,
            connect_timeout=10,
        )

    def scalar(self, sql: str, params: tuple[Any, ...] = (), database: str = "postgres") -> Any:
        with self.admin(database) as conn:
            row = conn.execute(sql, params).fetchone()
            return None if row is None else row[0]

    def rows(self, sql: str, params: tuple[Any, ...] = (), database: str = "postgres") -> list[tuple[Any, ...]]:
        with self.admin(database) as conn:
            return conn.execute(sql, params).fetchall()

    def databases(self) -> set[str]:
        return {r[0] for r in self.rows("SELECT datname FROM pg_database")}

    def roles(self) -> set[str]:
        return {r[0] for r in self.rows("SELECT rolname FROM pg_roles")}

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            ident = quote_ident(name)
            conn.execute(f"ALTER DATABASE {ident} IS_TEMPLATE false".encode())
            conn.execute(f"DROP DATABASE IF EXISTS {ident} WITH (FORCE)".encode())

    def drop_role(self, name: str) -> None:
        with self.admin() as conn:
            ident = quote_ident(name)
            conn.execute(f"DROP OWNED BY {ident}".encode())
            conn.execute(f"DROP ROLE IF EXISTS {ident}".encode())


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[PgServer]:
    """The server, restored after the test to the databases and roles it had before."""
    server = PgServer(pg_dsn)
    databases, roles = server.databases(), server.roles()
    # The plans revoke PUBLIC's CONNECT on the server's own databases: given back afterwards.
    public_connect = {
        name for (name,) in server.rows(
            "SELECT datname FROM pg_database WHERE datname IN ('postgres', 'template1')"
            " AND has_database_privilege('public', datname, 'CONNECT')"
        )
    }  # fmt: skip
    yield server
    for name in sorted(public_connect):
        if not server.scalar("SELECT has_database_privilege('public', %s, 'CONNECT')", (name,)):
            with server.admin() as conn:
                conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {quote_ident(name)} TO PUBLIC".encode())
    for name in sorted(server.databases() - databases):
        server.drop_database(name)
    for name in sorted(server.roles() - roles):
        server.drop_role(name)


@pytest.fixture
def applier(pg: PgServer) -> Applier:
    """A fresh engine state against the test server."""
    return Applier(pg.dsn)
