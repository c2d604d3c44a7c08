"""The program's database model, applied to a real server with the provider's SQL.

For the example config and for a generated config whose branch names run to 100 characters (so
database names are cut to 63 bytes): every team role reaches its own databases and nothing else,
PUBLIC's CONNECT is really gone, environments cloned from a template carry its data, names on the
server are the planned names byte for byte, re-applying changes nothing, and removing an
environment drops its database only.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import psycopg
import pytest

from oduflow_iac import naming
from oduflow_iac.components.shared_infra import SERVER_DATABASES
from oduflow_iac.offline import harness
from tests.postgres import plans
from tests.postgres.conftest import PgServer
from tests.postgres.sql_apply import (
    DATABASE_TYPE,
    GRANT_TYPE,
    ROLE_TYPE,
    Applier,
    CreateDatabaseError,
)

pytestmark = pytest.mark.postgres

CONFIGS = ["example", "long-branches"]


@pytest.fixture(scope="module")
def config_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    long_dir = tmp_path_factory.mktemp("long")
    return {
        "example": plans.EXAMPLE,
        "long-branches": plans.write_config(long_dir, plans.long_branch_config()),
    }


@pytest.fixture(params=CONFIGS)
def run(request: pytest.FixtureRequest, config_paths: dict[str, Path]) -> harness.PlannedRun:
    return plans.plan_of(config_paths[request.param])


@pytest.fixture
def example_run() -> harness.PlannedRun:
    return plans.plan_of(plans.EXAMPLE)


def denied(pg: PgServer, user: str, password: str, database: str) -> bool:
    """True when PostgreSQL refuses `user` the database for lack of CONNECT (not for a bad password)."""
    try:
        pg.login(user, password, database).close()
    except psycopg.OperationalError as exc:
        if "permission denied for database" in str(exc):
            return True
        raise
    return False


def by_team(run: harness.PlannedRun) -> dict[str, list[plans.PlannedDatabase]]:
    out: dict[str, list[plans.PlannedDatabase]] = {}
    for db in plans.databases(run):
        out.setdefault(db.owner, []).append(db)
    return out


# ---------------------------------------------------------------------------------------------
# Access


def test_team_roles_connect_to_their_own_databases(pg: PgServer, applier: Applier, run: harness.PlannedRun) -> None:
    applier.apply(run)
    roles = plans.roles(run)
    owned = by_team(run)
    assert set(owned) == set(roles), "every database is owned by a team role of the plan"
    for role_name, dbs in owned.items():
        for db in dbs:
            with pg.login(role_name, roles[role_name].password, db.name) as conn:
                row = conn.execute("SELECT current_user, current_database()").fetchone()
                assert row == (role_name, db.name)
                conn.execute("CREATE TABLE owner_can_write (id int)")  # owner: a real working database


def test_other_teams_and_new_roles_are_refused(pg: PgServer, applier: Applier, run: harness.PlannedRun) -> None:
    applier.apply(run)
    roles = plans.roles(run)
    owned = by_team(run)
    assert len(owned) >= 2, "the configs have two teams"
    for mine, theirs in itertools.permutations(owned, 2):
        for db in owned[theirs]:
            assert denied(pg, mine, roles[mine].password, db.name), f"{mine} reached {db.name}"

    with pg.admin() as conn:
        conn.execute("CREATE ROLE oduflow_stranger LOGIN PASSWORD 'stranger'")
        conn.execute("CREATE DATABASE oduflow_control")
    # Control: the stranger can log in where PUBLIC keeps its default CONNECT ...
    with pg.login("oduflow_stranger", "stranger", "oduflow_control") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # ... and nowhere the plan revoked it, templates included, nor on the server's own databases.
    for name in [*(db.name for db in plans.databases(run)), *SERVER_DATABASES]:
        assert denied(pg, "oduflow_stranger", "stranger", name), name
        assert pg.scalar("SELECT has_database_privilege('public', %s, 'CONNECT')", (name,)) is False
    # the team roles neither: `postgres` and `template1` are closed to every team
    for role in roles:
        for name in SERVER_DATABASES:
            assert denied(pg, role, roles[role].password, name), (role, name)


def test_every_database_has_its_grant_wired_to_it(run: harness.PlannedRun) -> None:
    """Each database has exactly one revoke-PUBLIC grant whose `database` is computed from that
    Database resource: the dependency that makes Pulumi re-apply the grant when the database is
    replaced (otherwise a re-created database silently gets PUBLIC's default CONNECT back)."""
    for db in plans.databases(run):
        grants = plans.grants_on(run, db.name)
        assert len(grants) == 1, db.name
        grant = grants[0]
        inputs = harness.reveal(grant.inputs)
        assert (inputs["role"], inputs["objectType"], inputs["privileges"]) == ("public", "database", [])
        assert grant.property_dependencies.get("database") == [db.urn]


def test_clones_wait_for_their_template_to_be_closed(run: harness.PlannedRun) -> None:
    """CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template, the provider
    included (its grant connects to the database it revokes on). Every clone must therefore come
    after the template's grant, not merely after the template database."""
    templates = {db.name: db for db in plans.template_databases(run)}
    clones = [db for db in plans.environment_databases(run) if db.template in templates]
    for db in clones:
        waits_for = plans.depends_on(run, db.urn)
        template = templates[db.template]
        assert template.urn in waits_for
        for grant in plans.grants_on(run, template.name):
            assert grant.urn in waits_for, f"{db.name} may be cloned while {grant.name} is connected"


def test_role_passwords_survive_the_providers_quoting(run: harness.PlannedRun) -> None:
    """The provider doubles backslashes inside a plain '...' literal, so a password with `\\` would be
    stored differently from what Odoo and the backup job send. Team role passwords come from
    RandomPassword resources whose alphabet has no backslash."""
    by_urn = run.by_urn()
    for role in run.of_type(ROLE_TYPE):
        if not harness.reveal(role.inputs).get("login"):
            continue  # a group role: no password
        sources = role.property_dependencies.get("password", [])
        assert sources, f"{role.name}: password not generated"
        for source in sources:
            generator = by_urn[source]
            assert generator.type == "random:index/randomPassword:RandomPassword"
            inputs = harness.reveal(generator.inputs)
            if inputs.get("special", True):
                assert "\\" not in inputs.get("overrideSpecial", "!@#$%&*()-_=+[]{}<>:?")


# ---------------------------------------------------------------------------------------------
# Names


def test_database_names_are_the_planned_names_byte_for_byte(
    pg: PgServer, applier: Applier, run: harness.PlannedRun
) -> None:
    planned = [db.name for db in plans.databases(run)]
    assert len(planned) == len(set(planned)), "two resources plan the same database"
    assert all(len(n.encode()) <= naming.MAX_IDENTIFIER_BYTES for n in planned)
    applier.apply(run)
    on_server = {n for n in pg.databases() if n.startswith("oduflow_")}
    assert on_server == set(planned)
    for name in planned:  # bytea comparison: no truncation, case folding or normalisation
        assert pg.scalar("SELECT datname::text::bytea FROM pg_database WHERE datname = %s", (name,)) == name.encode()


def test_long_branches_are_cut_to_63_bytes_and_stay_distinct(
    pg: PgServer, applier: Applier, config_paths: dict[str, Path]
) -> None:
    run = plans.plan_of(config_paths["long-branches"])
    envs = plans.environment_databases(run)
    assert len(envs) == 2 * len(plans.long_branches())
    cut = [db.name for db in envs if len(db.name.encode()) == naming.MAX_IDENTIFIER_BYTES]
    assert len(cut) == len(envs), "every long branch needed cutting"
    # Branches equal on their first 80 characters still get different databases.
    assert len({db.name for db in envs}) == len(envs)
    applier.apply(run)
    assert {db.name for db in envs} <= pg.databases()


# ---------------------------------------------------------------------------------------------
# Templates


def _before_clones(run: harness.PlannedRun) -> list[harness.PlannedResource]:
    """The plan up to the templates: roles, template databases and their grants."""
    keep = {db.name for db in plans.template_databases(run)}
    out = []
    for r in run.resources:
        inputs = harness.reveal(r.inputs)
        if r.type == ROLE_TYPE or (
            r.type in (DATABASE_TYPE, GRANT_TYPE) and inputs.get("name", inputs.get("database")) in keep
        ):
            out.append(r)
    return out


def _fill_template(pg: PgServer, run: harness.PlannedRun, template: plans.PlannedDatabase) -> None:
    """What the template's Odoo init does, in miniature: tables and rows, as the team role."""
    password = plans.roles(run)[template.owner].password
    with pg.login(template.owner, password, template.name) as conn:
        conn.execute("CREATE TABLE res_partner (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute("CREATE TABLE ir_module_module (id serial PRIMARY KEY, name text, state text)")
        conn.execute("INSERT INTO res_partner (name) SELECT 'partner ' || g FROM generate_series(1, 25) g")
        conn.execute("INSERT INTO ir_module_module (name, state) VALUES ('base', 'installed'), ('web', 'installed')")


def test_environments_cloned_from_a_template_carry_its_data(
    pg: PgServer, applier: Applier, example_run: harness.PlannedRun
) -> None:
    run = example_run
    applier.apply(_before_clones(run))
    templates = plans.template_databases(run)
    assert templates
    for template in templates:
        _fill_template(pg, run, template)
    applier.apply(run)

    clones = [db for db in plans.environment_databases(run) if db.template != "template0"]
    assert clones
    roles = plans.roles(run)
    for db in clones:
        with pg.login(db.owner, roles[db.owner].password, db.name) as conn:
            assert conn.execute("SELECT count(*) FROM res_partner").fetchone() == (25,)
            assert conn.execute("SELECT string_agg(name, ',' ORDER BY name) FROM ir_module_module").fetchone() == (
                "base,web",
            )
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'res_partner'").fetchone()
            assert owner == (db.owner,)
    for db in plans.environment_databases(run):
        if db.template == "template0":
            assert pg.scalar("SELECT to_regclass('res_partner') IS NULL", database=db.name) is True


def test_a_template_in_use_is_explained_and_a_retry_succeeds(
    pg: PgServer, applier: Applier, example_run: harness.PlannedRun
) -> None:
    run = example_run
    applier.apply(_before_clones(run))
    template = plans.template_databases(run)[0]
    password = plans.roles(run)[template.owner].password
    holder = pg.login(template.owner, password, template.name)  # a session left open on the template
    try:
        with pytest.raises(CreateDatabaseError) as caught:
            applier.apply(run)
    finally:
        holder.close()
    text = str(caught.value)
    assert f'template database "{template.name}"' in text
    assert "1 other session is connected" in text
    assert "pg_terminate_backend" in text and "Run the deployment again" in text

    applier.apply(run)  # the session is gone: the same deployment now completes
    assert {db.name for db in plans.databases(run)} <= pg.databases()


# ---------------------------------------------------------------------------------------------
# Re-applying and removing


def test_applying_the_same_plan_twice_changes_nothing(pg: PgServer, applier: Applier, run: harness.PlannedRun) -> None:
    first = applier.apply(run)
    assert len(first.urns("create")) == len(
        [r for r in run.resources if r.type in (ROLE_TYPE, DATABASE_TYPE, GRANT_TYPE)]
    )
    second = applier.apply(run)
    assert not second.changed, second.statements


def test_removing_an_environment_drops_only_its_database(
    pg: PgServer, applier: Applier, tmp_path: Path, example_run: harness.PlannedRun
) -> None:
    applier.apply(example_run)
    gone = naming.env_db_name("1", "feature/login")
    survivors = {db.name for db in plans.databases(example_run)} - {gone}
    roles = plans.roles(example_run)
    for db in plans.environment_databases(example_run):
        with pg.login(db.owner, roles[db.owner].password, db.name) as conn:
            conn.execute("CREATE TABLE marker (db text)")
            conn.execute("INSERT INTO marker VALUES (current_database())")
    oids = dict(pg.rows("SELECT datname, oid FROM pg_database"))

    smaller = plans.write_config(
        tmp_path, plans.without_environment(plans.load_document(plans.EXAMPLE), "1", "feature/login")
    )
    result = applier.apply(plans.plan_of(smaller))

    deleted = result.urns("delete")
    assert len(deleted) == 2 and all("feature-login" in u for u in deleted), deleted
    # Nothing else changes but the team role's connection limit, derived from its environments:
    # an in-place ALTER ROLE.
    others = [s for s in result.steps if s.op != "delete"]
    assert [st.sql for s in others for st in s.statements] == ['ALTER ROLE "oduflow_team_1" CONNECTION LIMIT 30']
    assert gone not in pg.databases()
    for name in survivors:
        assert dict(pg.rows("SELECT datname, oid FROM pg_database"))[name] == oids[name], f"{name} re-created"
    for db in plans.environment_databases(example_run):
        if db.name != gone:
            assert pg.scalar("SELECT db FROM marker", database=db.name) == db.name


def test_renaming_a_template_keeps_the_environment_databases(
    pg: PgServer, applier: Applier, tmp_path: Path, example_run: harness.PlannedRun
) -> None:
    applier.apply(example_run)
    envs = [db for db in plans.environment_databases(example_run) if db.owner == "oduflow_team_1"]
    oids = dict(pg.rows("SELECT datname, oid FROM pg_database"))

    document = plans.load_document(plans.EXAMPLE)
    templates = document["team"]["1"]["templates"]
    templates["v17"] = templates.pop("default")
    for env in document["team"]["1"]["environments"]:
        if env.get("template") == "default":
            env["template"] = "v17"
    result = applier.apply(plans.plan_of(plans.write_config(tmp_path, document)))

    assert not result.urns("replace"), result.urns("replace")
    for db in envs:
        assert dict(pg.rows("SELECT datname, oid FROM pg_database"))[db.name] == oids[db.name]
