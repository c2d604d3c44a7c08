"""The shared PostgreSQL server's configuration: pure functions, the config keys that feed them, and
what the plan hands the PostgreSQL container and the team roles. (The same files run on a real
server in tests/postgres/test_server_wrapper.py.)"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from oduflow_iac import naming, postgres_server
from oduflow_iac.config import load_config
from oduflow_iac.errors import ConfigError
from tests.test_components import CONTAINER, named, planned

TEAM = """
[team.{id}]
hostname = "team-{id}.example.com"
auth_token = "token-{id}"
ui_password = "pass-{id}"
port_range = [{start}, {end}]
{extra}
[[team.{id}.environments]]
branch = "main"
type = "production"
odoo_image = "odoo:17.0"

[[team.{id}.environments]]
branch = "dev"
odoo_image = "odoo:17.0"
"""


def teams(count: int, extra: str = "", head: str = "") -> str:
    body = "".join(
        TEAM.format(id=i, start=50000 + 100 * i, end=50050 + 100 * i, extra=extra.format(id=i))
        for i in range(1, count + 1)
    )
    return head + body


# --------------------------------------------------------------------------------------------
# pg_hba.conf


def _hba_rows() -> list[list[str]]:
    return [line.split() for line in postgres_server.render_pg_hba().splitlines() if not line.startswith("#")]


def test_pg_hba_has_no_trust_and_only_scram_passwords() -> None:
    rows = _hba_rows()
    assert rows
    methods = {row[-1] for row in rows}
    assert methods <= {"peer", "scram-sha-256", "reject"}
    assert "trust" not in postgres_server.render_pg_hba()
    # the only local line that admits anyone is the superuser's, by OS identity
    assert [r for r in rows if r[0] == "local" and r[-1] != "reject"] == [["local", "all", "postgres", "peer"]]
    # everything not listed is refused, from any address
    assert rows[-1] == ["host", "all", "all", "all", "reject"]


def test_pg_hba_admits_each_role_from_its_path_only() -> None:
    gw = f"{postgres_server.GATEWAY_PLACEHOLDER}/32"
    admitted = [(r[2], r[3]) for r in _hba_rows() if r[0] == "host" and r[-1] == "scram-sha-256"]
    tenants, admins = f"+{naming.TENANT_GROUP_ROLE}", f"+{naming.TENANT_ADMIN_GROUP_ROLE}"
    assert admitted == [
        ("postgres", "127.0.0.1/32"),
        ("postgres", "::1/128"),
        ("postgres", gw),
        (admins, gw),
        (tenants, "samenet"),
    ]
    rows = _hba_rows()
    order = [(r[2], r[3], r[-1]) for r in rows]
    # a provisioning role is a member of its team role, so of the tenants group too: it must be
    # refused elsewhere before the team line could admit it; team roles never through the gateway
    assert order.index((admins, "all", "reject")) < order.index((tenants, "samenet", "scram-sha-256"))
    assert order.index((tenants, gw, "reject")) < order.index((tenants, "samenet", "scram-sha-256"))


def test_group_names_cannot_be_team_roles() -> None:
    for group in (naming.TENANT_GROUP_ROLE, naming.TENANT_ADMIN_GROUP_ROLE):
        assert not group.startswith("oduflow_team_")


# --------------------------------------------------------------------------------------------
# The server's command and the wrapper


def test_server_command_sets_hba_scram_limits() -> None:
    command = postgres_server.server_command(max_connections=300, reserved_connections=7, temp_file_limit_mb=2048)
    assert command[0] == "postgres"
    settings = dict(arg.split("=", 1) for arg in command[2::2])
    assert all(flag == "-c" for flag in command[1::2])
    assert settings == {
        "hba_file": postgres_server.HBA_PATH,
        "password_encryption": "scram-sha-256",
        "max_connections": "300",
        "superuser_reserved_connections": "7",
        "temp_file_limit": "2048MB",
    }
    unlimited = postgres_server.server_command(max_connections=10, reserved_connections=3, temp_file_limit_mb=0)
    assert "temp_file_limit=-1" in unlimited


def test_the_wrapper_execs_the_image_entrypoint_and_never_puts_the_password_on_a_command_line() -> None:
    script = postgres_server.render_entrypoint()
    lines = script.splitlines()
    assert lines[0] == "#!/bin/sh"
    # last statement: exec the image's own entrypoint with the same arguments (PID 1 is postgres)
    assert lines[-1] == f'exec {postgres_server.IMAGE_ENTRYPOINT} "$@"'
    # the password variable is read by psql itself (\getenv), never expanded into an argument
    uses = [line for line in lines if postgres_server.PASSWORD_VARIABLE in line]
    assert uses == [
        f"\\getenv oduflow_password {postgres_server.PASSWORD_VARIABLE}",
        f'if [ -n "${{{postgres_server.PASSWORD_VARIABLE}:-}}" ]; then',
    ]
    assert "ALTER ROLE postgres PASSWORD :'oduflow_password';" in lines
    # statement logging off for that session, and the keeper always exits 0 (postmaster's reaper)
    assert "SET log_min_error_statement = 'panic';" in lines
    assert "    ( set +e; keep_password; exit 0 ) &" in lines


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_the_wrapper_is_valid_shell() -> None:
    result = subprocess.run(["sh", "-n"], input=postgres_server.render_entrypoint(), text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_connection_budget_of_an_environment() -> None:
    assert postgres_server.environment_connections(0) == postgres_server.THREADED_ODOO_CONNECTIONS
    assert postgres_server.environment_connections(4) == 2 * (4 + 2)
    assert postgres_server.default_team_connections([4, 0]) == 12 + 8 + postgres_server.TEAM_EXTRA_CONNECTIONS


# --------------------------------------------------------------------------------------------
# Config


def test_team_connection_limit_and_session_settings(write_config: Callable[..., Path]) -> None:
    text = teams(
        2,
        head="[platform.team_database]\nstatement_timeout_ms = 60000\n",
    )
    text = text.replace(
        '[[team.2.environments]]\nbranch = "main"',
        "[team.2.quota]\ndb_connections = 7\n\n[team.2.database]\nstatement_timeout_ms = 0\n"
        'idle_in_transaction_session_timeout_ms = 1500\n\n[[team.2.environments]]\nbranch = "main"',
        1,
    )
    config = load_config(write_config(text))
    # team 1: derived (production workers 4, development threaded) and the platform's settings
    assert config.team_db_connections("1") == postgres_server.default_team_connections([4, 0])
    one = config.team_db_settings("1")
    assert (one.statement_timeout_ms, one.idle_in_transaction_session_timeout_ms) == (60000, 300000)
    # team 2: its own
    assert config.team_db_connections("2") == 7
    two = config.team_db_settings("2")
    assert (two.statement_timeout_ms, two.idle_in_transaction_session_timeout_ms) == (0, 1500)


def test_the_teams_must_fit_in_the_server(write_config: Callable[..., Path]) -> None:
    text = teams(3, head="[platform]\npostgres_max_connections = 60\npostgres_reserved_connections = 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(write_config(text))
    [problem] = info.value.problems
    assert problem.key == "platform.postgres_max_connections"
    assert "55 connections" in problem.message and "team.3: 22" in problem.message
    assert "\n" not in str(problem)
    # with quotas that fit, it loads
    head = "[platform]\npostgres_max_connections = 60\npostgres_reserved_connections = 5\n"
    load_config(write_config(teams(3, extra="[team.{id}.quota]\ndb_connections = 5\n", head=head)))


def test_the_organisation_caps_the_teams(write_config: Callable[..., Path]) -> None:
    text = "[organisation.quota]\ndb_connections = 30\n" + teams(2)
    with pytest.raises(ConfigError) as info:
        load_config(write_config(text))
    assert [p.key for p in info.value.problems] == ["organisation.quota.db_connections"]


@pytest.mark.parametrize(
    ("snippet", "key"),
    [
        ("[team.1.quota]\ndb_connections = 0\n", "team.1.quota.db_connections"),
        ("[team.1.database]\nstatement_timeout_ms = -1\n", "team.1.database.statement_timeout_ms"),
        ("[team.1.database]\nwork_mem = 5\n", "team.1.database.work_mem"),
    ],
)
def test_bad_database_keys_are_one_line_errors(write_config: Callable[..., Path], snippet: str, key: str) -> None:
    text = teams(1).replace("[[team.1.environments]]", snippet + "\n[[team.1.environments]]", 1)
    with pytest.raises(ConfigError) as info:
        load_config(write_config(text))
    assert [p.key for p in info.value.problems] == [key]


# --------------------------------------------------------------------------------------------
# The plan


def test_the_postgres_container_runs_the_wrapper_with_its_files() -> None:
    db = named(planned("local"), CONTAINER, "oduflow-db")
    assert db.inputs["entrypoints"] == ["/bin/sh", postgres_server.ENTRYPOINT_PATH]
    assert db.inputs["command"][0] == "postgres"
    assert f"hba_file={postgres_server.HBA_PATH}" in db.inputs["command"]
    uploads = {u["file"]: u for u in db.inputs["uploads"]}
    assert uploads[postgres_server.ENTRYPOINT_PATH]["content"] == postgres_server.render_entrypoint()
    assert uploads[postgres_server.ENTRYPOINT_PATH]["executable"] is True
    assert uploads[postgres_server.HBA_TEMPLATE_PATH]["content"] == postgres_server.render_pg_hba()


def test_team_roles_carry_their_limits() -> None:
    run = planned("local")
    roles = {r.inputs["name"]: r for r in run.of_type("postgresql:index/role:Role")}
    one = roles["oduflow_team_1"].inputs
    assert one["connectionLimit"] == 38  # examples/oduflow.toml: derived from team 1's environments
    assert one["statementTimeout"] == 600000 and one["idleInTransactionSessionTimeout"] == 300000
    assert one["roles"] == [naming.TENANT_GROUP_ROLE]
    for group in (naming.TENANT_GROUP_ROLE, naming.TENANT_ADMIN_GROUP_ROLE):
        assert roles[group].inputs["login"] is False
    # all-in-one: no provisioning role (the team stacks are the same stack, with the superuser)
    assert "oduflow_team_1_admin" not in roles
    server_dbs = ("postgres", "template1")
    grants = [r.inputs for r in run.of_type("postgresql:index/grant:Grant") if r.inputs["database"] in server_dbs]
    assert sorted((g["database"], g["role"], tuple(g["privileges"])) for g in grants) == [
        ("postgres", naming.TENANT_ADMIN_GROUP_ROLE, ("CONNECT",)),
        ("postgres", "public", ()),
        ("template1", "public", ()),
    ]
