"""Team roles on a real server: the limits the plan sets hold, and a per-team stack's provisioning
role can do what the team stack needs and nothing to another team.

The plans are the real program's, under mocks, in the all-in-one layout and in the per-team layout
(`shared` stack, then `team-N` stacks); `Applier` replays the provider's SQL. The team stacks are
applied as their provisioning role, exactly as their postgresql provider would log in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from oduflow_iac import naming, program
from oduflow_iac.config import Config, load_config
from oduflow_iac.offline import harness
from tests.postgres import plans
from tests.postgres.conftest import PgServer
from tests.postgres.sql_apply import Applier

pytestmark = pytest.mark.postgres

CONFIG = """
[team.1]
hostname = "team-a.example.com"
auth_token = "token-a"
ui_password = "ui-a"
port_range = [50000, 50050]

[team.1.quota]
db_connections = 3

[team.1.database]
statement_timeout_ms = 500
idle_in_transaction_session_timeout_ms = 1000

[team.1.templates.default]
odoo_image = "odoo:17.0"

[[team.1.environments]]
branch = "main"
type = "production"
template = "default"

[[team.1.environments]]
branch = "feature/a"
odoo_image = "odoo:17.0"

[team.2]
hostname = "team-b.example.com"
auth_token = "token-b"
ui_password = "ui-b"
port_range = [50050, 50100]

[team.2.templates.v18]
odoo_image = "odoo:18.0"

[[team.2.environments]]
branch = "main"
template = "v18"
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(plans.write_config(tmp_path, CONFIG))


def plan(config: Config, layout: str, team: str | None = None) -> harness.PlannedRun:
    settings = program.ProgramSettings(
        docker_host="unix:///var/run/docker.sock", layout=layout, team=team,
        shared_stack="organization/oduflow/shared" if team else None,
    )  # fmt: skip
    stack = f"team-{team}" if team else layout
    return harness.run_offline(lambda: program.build(config, settings), stack=stack)


def connect_as(pg: PgServer, role: str, password: str, database: str) -> psycopg.Connection[Any]:
    return pg.login(role, password, database)


# ---------------------------------------------------------------------------------------------
# All-in-one: the limits of the team role


@pytest.fixture
def applied(pg: PgServer, applier: Applier, config: Config) -> dict[str, plans.PlannedRole]:
    applier.apply(plan(config, "all"))
    return plans.roles(plan(config, "all"))


def test_the_connection_limit_holds(pg: PgServer, applied: dict[str, plans.PlannedRole]) -> None:
    role = applied["oduflow_team_1"]
    db = naming.env_db_name("1", "main")
    assert pg.scalar("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'oduflow_team_1'") == 3
    held = [connect_as(pg, role.name, role.password, db) for _ in range(3)]
    try:
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            connect_as(pg, role.name, role.password, db)
        # another team is not affected by team 1 being at its limit
        other = applied["oduflow_team_2"]
        with connect_as(pg, other.name, other.password, naming.env_db_name("2", "main")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        for conn in held:
            conn.close()
    # the derived default of a team without a quota: what its environments need
    assert pg.scalar("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'oduflow_team_2'") > 0


def test_the_timeouts_are_in_force(pg: PgServer, applied: dict[str, plans.PlannedRole]) -> None:
    role = applied["oduflow_team_1"]
    db = naming.env_db_name("1", "main")
    with connect_as(pg, role.name, role.password, db) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("500ms",)
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("1s",)
        with pytest.raises(errors.QueryCanceled, match="statement timeout"):
            conn.execute("SELECT pg_sleep(3)")
    # a transaction left open is ended by the server, with its session
    conn = psycopg.connect(
        host=pg.host, port=pg.port, user=role.name, password=role.password, dbname=db, connect_timeout=10
    )
    conn.execute("SELECT 1")  # opens a transaction (not autocommit)
    time.sleep(2.5)
    with pytest.raises(psycopg.Error, match="idle-in-transaction timeout"):
        conn.execute("SELECT 1")
    conn.close()
    # team 2 gets the platform defaults
    other = applied["oduflow_team_2"]
    with connect_as(pg, other.name, other.password, naming.env_db_name("2", "main")) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("10min",)
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("5min",)


def test_a_team_sees_no_other_teams_queries(pg: PgServer, applied: dict[str, plans.PlannedRole]) -> None:
    """pg_stat_activity lists every session, but only superusers, pg_read_all_stats and members of
    the session's role see its query, state, client address or timings."""
    two, one = applied["oduflow_team_2"], applied["oduflow_team_1"]
    busy = connect_as(pg, two.name, two.password, naming.env_db_name("2", "main"))
    secret_query = "SELECT pg_sleep(3) /* team 2 secret */"
    worker = threading.Thread(target=lambda: busy.execute(secret_query), daemon=True)
    worker.start()
    try:
        time.sleep(0.5)
        with connect_as(pg, one.name, one.password, naming.env_db_name("1", "main")) as conn:
            rows = conn.execute(
                "SELECT usename, datname, query, state, client_addr, query_start"
                " FROM pg_stat_activity WHERE usename = %s",
                (two.name,),
            ).fetchall()
        assert rows, "the session is listed (role and database names are visible)"
        for _usename, datname, query, state, client_addr, query_start in rows:
            assert datname == naming.env_db_name("2", "main")
            assert query == "<insufficient privilege>"
            assert state is None and client_addr is None and query_start is None
        # the superuser does see it: the session was really running the query
        assert secret_query in [r[0] for r in pg.rows("SELECT query FROM pg_stat_activity")]
    finally:
        worker.join(10)
        busy.close()


# ---------------------------------------------------------------------------------------------
# The per-team layout: provisioning roles


def _provisioner_dsn(pg: PgServer, roles: dict[str, plans.PlannedRole], team: str) -> str:
    admin = roles[naming.team_db_admin_role_name(team)]
    return f"host={pg.host} port={pg.port} user={admin.name} password={admin.password} dbname=postgres"


@pytest.fixture
def per_team(pg: PgServer, config: Config) -> tuple[dict[str, plans.PlannedRole], Callable[[str], Applier]]:
    shared_run = plan(config, "shared")
    Applier(pg.dsn).apply(shared_run)
    roles = plans.roles(shared_run)
    return roles, lambda team: Applier(_provisioner_dsn(pg, roles, team))


def test_a_team_stack_deploys_as_its_provisioning_role(pg: PgServer, config: Config, per_team: Any) -> None:
    roles, applier_for = per_team
    for team in ("1", "2"):
        team_run = plan(config, "team", team)
        applier = applier_for(team)
        assert applier.server.current_user == naming.team_db_admin_role_name(team)
        applier.apply(team_run)
        assert not applier.apply(team_run).changed, "a second apply sends nothing"
        for db in plans.databases(team_run):
            assert pg.scalar("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (db.name,)) == (
                naming.team_role_name(team)
            )
        # the team role (created by the shared stack) works in its databases
        role = roles[naming.team_role_name(team)]
        with connect_as(pg, role.name, role.password, naming.env_db_name(team, "main")) as conn:
            conn.execute("CREATE TABLE t (x int)")


def test_a_provisioning_role_cannot_touch_another_team(pg: PgServer, config: Config, per_team: Any) -> None:
    roles, applier_for = per_team
    for team in ("1", "2"):
        applier_for(team).apply(plan(config, "team", team))
    admin = roles[naming.team_db_admin_role_name("1")]
    theirs = naming.env_db_name("2", "main")
    with connect_as(pg, admin.name, admin.password, "postgres") as conn:
        attempts = {
            "drop their database": f'DROP DATABASE "{theirs}"',
            "take their database": f'ALTER DATABASE "{theirs}" OWNER TO oduflow_team_1',
            "rename their role": "ALTER ROLE oduflow_team_2 RENAME TO stolen",
            "reset their password": "ALTER ROLE oduflow_team_2 PASSWORD 'x'",
            "raise its own team's limit": "ALTER ROLE oduflow_team_1 CONNECTION LIMIT -1",
            "lift its own team's timeout": "ALTER ROLE oduflow_team_1 RESET statement_timeout",
            "reset its own team's password": "ALTER ROLE oduflow_team_1 PASSWORD 'x'",
            "create a login role": "CREATE ROLE extra LOGIN PASSWORD 'x'",
            "join their role": "GRANT oduflow_team_2 TO oduflow_team_1_admin",
            "grant itself superuser": "ALTER ROLE oduflow_team_1_admin SUPERUSER",
            "reopen template1": "GRANT CONNECT ON DATABASE template1 TO oduflow_team_1",
            "end their sessions": "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE usename = 'oduflow_team_2' AND pid <> pg_backend_pid()",
        }
        # team 2 has a session open, so ending it would show
        two = roles["oduflow_team_2"]
        with connect_as(pg, two.name, two.password, theirs):
            for what, sql in attempts.items():
                try:
                    result = conn.execute(sql.encode())
                    rows = result.fetchall() if result.description else []
                except (errors.InsufficientPrivilege, errors.ObjectNotInPrerequisiteState) as exc:
                    assert "permission denied" in str(exc) or "must " in str(exc), (what, exc)
                    continue
                # pg_terminate_backend returns false (with a warning) rather than raising
                assert what == "end their sessions" and rows and not any(r[0] for r in rows), (what, rows)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        connect_as(pg, admin.name, admin.password, theirs)
    assert theirs in pg.databases()
    # and it cannot log in where the team roles do (pg_hba aside, the team's databases are its own)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        connect_as(pg, admin.name, admin.password, "template1")


def test_a_provisioning_role_cannot_copy_another_teams_template(pg: PgServer, config: Config, per_team: Any) -> None:
    roles, applier_for = per_team
    for team in ("1", "2"):
        applier_for(team).apply(plan(config, "team", team))
    admin = roles[naming.team_db_admin_role_name("1")]
    with (
        connect_as(pg, admin.name, admin.password, "postgres") as conn,
        pytest.raises(errors.InsufficientPrivilege, match="permission denied to copy database"),
    ):
        conn.execute(f'CREATE DATABASE stolen OWNER oduflow_team_1 TEMPLATE "{naming.template_db_name("2", "v18")}"')
