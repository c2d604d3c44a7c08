"""The SQL helper itself, on hand-written resources of the shape the program declares: the statements
are the provider's, a second apply is a no-op, drift is repaired, replacements behave as Pulumi's."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from oduflow_iac.offline.harness import PlannedResource, Secret
from tests.postgres.conftest import PgServer
from tests.postgres.sql_apply import (
    DATABASE_TYPE,
    GRANT_TYPE,
    ROLE_TYPE,
    Applier,
    CreateDatabaseError,
    PlanError,
    ProtectedError,
    dependency_order,
)

pytestmark = pytest.mark.postgres

PASSWORD = "s3cret-It's"  # a quote, to exercise the provider's literal quoting


def res(
    type_: str, name: str, inputs: dict[str, Any], deps: dict[str, list[str]] | None = None, protect: bool = False
) -> PlannedResource:
    deps = deps or {}
    flat = list(dict.fromkeys(u for urns in deps.values() for u in urns))
    return PlannedResource(
        urn=f"urn:pulumi:test::oduflow::{type_}::{name}",
        type=type_,
        name=name,
        parent=None,
        custom=True,
        inputs=inputs,
        dependencies=flat,
        protect=protect,
        property_dependencies=deps,
    )


def urn(type_: str, name: str) -> str:
    return f"urn:pulumi:test::oduflow::{type_}::{name}"


ROLE = urn(ROLE_TYPE, "role")


def role(name: str = "t_owner") -> PlannedResource:
    return res(ROLE_TYPE, "role", {"name": name, "login": True, "password": Secret(PASSWORD)})


def database(
    key: str, name: str, template: str = "template0", is_template: bool = False, protect: bool = False
) -> PlannedResource:
    inputs: dict[str, Any] = {
        "name": name,
        "owner": "t_owner",
        "template": template,
        "encoding": "UTF8",
        "lcCollate": "C",
        "lcCtype": "C",
    }
    deps = {"owner": [ROLE]}
    if is_template:
        inputs["isTemplate"] = True
    if template != "template0":
        deps["template"] = [urn(DATABASE_TYPE, "tpl")]
    return res(DATABASE_TYPE, key, inputs, deps, protect)


def revoke(key: str, db_key: str, db_name: str) -> PlannedResource:
    return res(
        GRANT_TYPE,
        key,
        {"database": db_name, "role": "public", "objectType": "database", "privileges": []},
        {"database": [urn(DATABASE_TYPE, db_key)]},
    )


def simple_plan(template: str = "template0", protect: bool = False) -> list[PlannedResource]:
    plan = [role()]
    if template != "template0":
        plan += [database("tpl", template, is_template=True), revoke("tpl-revoke", "tpl", template)]
    return [*plan, database("db", "t_env", template, protect=protect), revoke("db-revoke", "db", "t_env")]


def test_statements_are_the_providers(pg: PgServer, applier: Applier) -> None:
    result = applier.apply(simple_plan())

    assert result.statements == [
        "CREATE ROLE \"t_owner\" WITH ENCRYPTED PASSWORD '[secret]' VALID UNTIL 'infinity' CONNECTION LIMIT -1"
        " NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT LOGIN NOBYPASSRLS NOREPLICATION",
        'ALTER ROLE "t_owner" SET search_path TO DEFAULT',
        'CREATE DATABASE "t_env" OWNER "t_owner" TEMPLATE "template0" ENCODING \'UTF8\'  LC_COLLATE \'C\''
        "  LC_CTYPE 'C'  ALLOW_CONNECTIONS true CONNECTION LIMIT -1 IS_TEMPLATE false",
        "SET statement_timeout = 0",
        "SELECT pg_advisory_xact_lock(oid::bigint) FROM pg_database WHERE datname = 't_env'",
        'REVOKE ALL PRIVILEGES ON DATABASE "t_env" FROM "public"',
    ]
    assert pg.rows(
        "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype, datistemplate,"
        " datallowconn, datconnlimit FROM pg_database WHERE datname = 't_env'"
    ) == [("t_owner", "UTF8", "C", "C", False, True, -1)]
    # PUBLIC keeps nothing; the owner keeps everything (acldefault covers a NULL datacl too).
    acl = pg.rows(
        "SELECT grantee, privilege_type FROM pg_database,"
        " aclexplode(coalesce(datacl, acldefault('d', datdba))) WHERE datname = 't_env' ORDER BY 2"
    )
    owner_oid = pg.scalar("SELECT oid FROM pg_roles WHERE rolname = 't_owner'")
    assert acl == [(owner_oid, "CONNECT"), (owner_oid, "CREATE"), (owner_oid, "TEMPORARY")]
    # The password went through the provider's quoting intact.
    with pg.login("t_owner", PASSWORD, "t_env") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("t_owner",)


def test_second_apply_is_a_no_op_and_drift_is_repaired(pg: PgServer, applier: Applier) -> None:
    plan = simple_plan()
    applier.apply(plan)
    again = applier.apply(plan)
    assert not again.changed, again.statements

    # Someone opens the database to everybody and changes its limits behind the deployment's back.
    with pg.admin() as conn:
        conn.execute('GRANT CONNECT, TEMPORARY ON DATABASE "t_env" TO PUBLIC')
        conn.execute('ALTER DATABASE "t_env" CONNECTION LIMIT 3')
        conn.execute('ALTER ROLE "t_owner" NOLOGIN')
    repaired = applier.apply(plan)
    assert set(repaired.urns("update")) == {ROLE, urn(DATABASE_TYPE, "db"), urn(GRANT_TYPE, "db-revoke")}
    assert 'ALTER DATABASE "t_env" CONNECTION LIMIT = -1' in repaired.statements
    assert 'ALTER ROLE "t_owner" WITH LOGIN' in repaired.statements
    assert 'REVOKE ALL PRIVILEGES ON DATABASE "t_env" FROM "public"' in repaired.statements
    assert pg.scalar("SELECT has_database_privilege('public', 't_env', 'CONNECT')") is False
    assert not applier.apply(plan).changed


def test_removed_database_is_dropped_even_with_sessions_open(pg: PgServer, applier: Applier) -> None:
    applier.apply(simple_plan())
    session = pg.login("t_owner", PASSWORD, "t_env")  # Odoo still connected
    try:
        result = applier.apply([role()])
    finally:
        session.close()
    assert result.urns("delete") == [urn(GRANT_TYPE, "db-revoke"), urn(DATABASE_TYPE, "db")]
    assert result.statements[-3:] == [
        'ALTER DATABASE "t_env" ALLOW_CONNECTIONS false',
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 't_env' AND pid <> pg_backend_pid()",
        'DROP DATABASE "t_env" WITH ( FORCE )',
    ]
    assert "t_env" not in pg.databases()
    assert "t_owner" in pg.roles()


def test_template_database_is_cleared_before_drop(pg: PgServer, applier: Applier) -> None:
    applier.apply(simple_plan("t_template"))
    assert pg.scalar("SELECT datistemplate FROM pg_database WHERE datname = 't_template'") is True
    result = applier.apply([role()])
    assert 'ALTER DATABASE "t_template" IS_TEMPLATE false' in result.statements
    assert {"t_template", "t_env"}.isdisjoint(pg.databases())


def test_clone_is_refused_while_the_template_is_in_use(pg: PgServer, applier: Applier) -> None:
    full = simple_plan("t_template")
    applier.apply(full[:3])  # the role and the template only
    holder = pg.login("t_owner", PASSWORD, "t_template")  # e.g. the template's Odoo still running
    try:
        with pytest.raises(CreateDatabaseError) as caught:
            applier.apply(full)
    finally:
        holder.close()
    err = caught.value
    assert err.database == "t_env"
    assert 'source database "t_template" is being accessed by other users' in err.message
    text = str(err)
    assert '"t_template"' in text and "1 other session is connected" in text
    assert "pg_terminate_backend" in text and "WHERE datname = 't_template'" in text
    assert "t_env" not in pg.databases()  # nothing half-made: a retry starts clean

    retried = applier.apply(full)
    assert retried.urns("create") == [urn(DATABASE_TYPE, "db"), urn(GRANT_TYPE, "db-revoke")]


def test_replacement_drops_first_and_reapplies_the_grant(pg: PgServer, applier: Applier) -> None:
    applier.apply(simple_plan("t_template"))
    with pg.admin("t_env") as conn:
        conn.execute("CREATE TABLE marker (id int)")
    # The environment now starts from template0: the database is replaced (template is force-new),
    # delete-before-replace since its name is explicit, and its grant with it.
    plan = [r for r in simple_plan("t_template") if r.name != "db"]
    plan.insert(3, database("db", "t_env"))
    result = applier.apply(plan)
    assert result.urns("replace") == [urn(DATABASE_TYPE, "db"), urn(GRANT_TYPE, "db-revoke")]
    drop = result.statements.index('DROP DATABASE "t_env" WITH ( FORCE )')
    create = next(i for i, s in enumerate(result.statements) if s.startswith('CREATE DATABASE "t_env"'))
    assert drop < create
    assert pg.scalar("SELECT to_regclass('marker') IS NULL", database="t_env") is True
    assert pg.scalar("SELECT has_database_privilege('public', 't_env', 'CONNECT')") is False


def test_protected_database_is_never_dropped(pg: PgServer, applier: Applier) -> None:
    applier.apply(simple_plan(protect=True))
    with pytest.raises(ProtectedError):
        applier.apply([role()])
    assert "t_env" in pg.databases()


def test_unsupported_inputs_are_refused_not_ignored(applier: Applier) -> None:
    bad = res(GRANT_TYPE, "g", {"database": "x", "role": "r", "objectType": "table", "privileges": ["SELECT"]})
    with pytest.raises(PlanError, match="objectType"):
        applier.apply([bad])
    odd = res(ROLE_TYPE, "r", {"name": "x", "searchPaths": ["a"]})
    with pytest.raises(PlanError, match="searchPaths"):
        applier.apply([odd])


def test_dependency_order_is_topological() -> None:
    plan = simple_plan("t_template")
    ordered = dependency_order(list(reversed(plan)))
    position = {r.name: i for i, r in enumerate(ordered)}
    assert position["role"] < position["tpl"] < position["tpl-revoke"]
    assert position["tpl"] < position["db"] < position["db-revoke"]
    cyclic = [
        res(ROLE_TYPE, "a", {}, {"x": [urn(ROLE_TYPE, "b")]}),
        res(ROLE_TYPE, "b", {}, {"x": [urn(ROLE_TYPE, "a")]}),
    ]
    with pytest.raises(PlanError, match="cycle"):
        dependency_order(cyclic)


def test_new_role_cannot_connect_once_public_is_revoked(pg: PgServer, applier: Applier) -> None:
    applier.apply(simple_plan())
    with pg.admin() as conn:
        conn.execute("CREATE ROLE t_stranger LOGIN PASSWORD 'stranger'")
        conn.execute('CREATE DATABASE "t_open"')  # control: never revoked
    with pg.login("t_stranger", "stranger", "t_open") as conn:  # PUBLIC's default CONNECT
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        pg.login("t_stranger", "stranger", "t_env")
