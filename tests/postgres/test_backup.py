"""Backups restore: the team backup job's own script, run against the real server with its PG*
variables (only the S3 upload and the filestore tar are stand-ins), produces dumps that pg_restore
loads into a fresh database with the same tables and rows, dumps the team's templates too, and
saves the team roles' definitions with a query the team role itself runs: a file that puts back
their limits, settings and memberships, with no password and no other team's role in it."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from oduflow_iac import backup
from oduflow_iac.offline import harness
from tests.postgres import plans
from tests.postgres.conftest import PgServer
from tests.postgres.sql_apply import Applier, quote_ident

pytestmark = pytest.mark.postgres

FAKE_AWS = """#!/bin/sh
# aws s3 cp --only-show-errors SRC s3://BUCKET/KEY -> $FAKE_S3/BUCKET/KEY
[ "$1 $2 $3" = "s3 cp --only-show-errors" ] || { echo "unexpected aws call: $*" >&2; exit 64; }
case "$5" in s3://*) ;; *) echo "not an s3 URL: $5" >&2; exit 64 ;; esac
target="$FAKE_S3/${5#s3://}"
mkdir -p "$(dirname "$target")" && cp "$4" "$target"
"""
# The filestore volumes are not mounted here: an empty archive stands in for each.
FAKE_TAR = """#!/bin/sh
[ "$1" = "-czf" ] || { echo "unexpected tar call: $*" >&2; exit 64; }
: > "$2"
"""


def _stub(directory: Path, name: str, text: str) -> None:
    path = directory / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _table_counts(pg: PgServer, database: str) -> dict[str, int]:
    tables = [r[0] for r in pg.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database=database)]
    return {t: int(pg.scalar(f"SELECT count(*) FROM {quote_ident(t)}", database=database)) for t in tables}


@pytest.fixture
def backup_run(tmp_path: Path) -> harness.PlannedRun:
    path = plans.write_config(tmp_path, plans.with_backup(plans.load_document(plans.EXAMPLE)))
    return plans.plan_of(path)


def test_backup_script_dumps_restore_into_a_fresh_database(
    pg: PgServer, applier: Applier, backup_run: harness.PlannedRun, tmp_path: Path
) -> None:
    run = backup_run
    applier.apply(run)
    roles = plans.roles(run)
    containers = plans.backup_containers(run)
    assert len(containers) == len(roles), "one backup job per team"
    job = next(c for c in containers if c.envs.get("PGUSER") == "oduflow_team_1")
    assert job.envs["PGPASSWORD"] == roles["oduflow_team_1"].password, "the job logs in as the team role"
    targets = [db for db in plans.environment_databases(run) if db.owner == "oduflow_team_1"]
    assert targets

    # Data an Odoo would have written, as the team role.
    source = targets[0].name
    with pg.login("oduflow_team_1", job.envs["PGPASSWORD"], source) as conn:
        conn.execute("CREATE TABLE res_partner (id serial PRIMARY KEY, name text NOT NULL UNIQUE)")
        conn.execute(
            "CREATE TABLE sale_order (id serial PRIMARY KEY,"
            " partner_id int NOT NULL REFERENCES res_partner(id), amount numeric(12, 2))"
        )
        conn.execute("CREATE INDEX sale_order_partner ON sale_order (partner_id)")
        conn.execute("INSERT INTO res_partner (name) SELECT 'p' || g FROM generate_series(1, 300) g")
        conn.execute(
            "INSERT INTO sale_order (partner_id, amount) SELECT 1 + g % 300, g * 1.5 FROM generate_series(1, 1000) g"
        )

    # The script holds, for every environment, the very pg_dump command of backup.pg_dump_args.
    for db in targets:
        line = " ".join(shlex.quote(a) for a in backup.pg_dump_args(db.name, f"{backup.WORK_DIR}/{db.name}.dump"))
        assert line in job.script, f"{db.name}: pg_dump command not in the script"

    bindir = tmp_path / "bin"
    bindir.mkdir()
    _stub(bindir, "aws", FAKE_AWS)
    _stub(bindir, "tar", FAKE_TAR)
    script = tmp_path / "backup.sh"
    script.write_text(job.script)
    fake_s3 = tmp_path / "s3"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PG")},
        **job.envs,
        # The container reaches the shared server by its container name; here it is the test server.
        "PGHOST": pg.host,
        "PGPORT": str(pg.port),
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "FAKE_S3": str(fake_s3),
    }
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for db in targets:
        assert f"backed up {db.name}" in done.stdout

    bucket = job.script.split("s3://", 1)[1].split("/", 1)[0]
    # Every night lands in the daily tier (Sundays and the 1st also in weekly/monthly).
    dumps = sorted((fake_s3 / bucket / "daily" / source).glob("*.dump"))
    assert len(dumps) == 1, list(fake_s3.rglob("*"))

    restored = "oduflow_restore_check"
    with pg.admin() as conn:
        conn.execute(f'CREATE DATABASE {quote_ident(restored)} OWNER "oduflow_team_1" TEMPLATE template0'.encode())
    restore_env = {**env, "PGUSER": "oduflow_team_1"}
    done = subprocess.run(
        ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", f"--dbname={restored}", str(dumps[0])],
        env=restore_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr

    original = _table_counts(pg, source)
    assert original == {"res_partner": 300, "sale_order": 1000}
    assert _table_counts(pg, restored) == original
    assert pg.scalar("SELECT sum(amount) FROM sale_order", database=restored) == pg.scalar(
        "SELECT sum(amount) FROM sale_order", database=source
    )
    assert pg.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'sale_order_partner'", database=restored) == 1


def test_templates_and_role_definitions_are_backed_up(
    pg: PgServer, applier: Applier, backup_run: harness.PlannedRun, tmp_path: Path
) -> None:
    run = backup_run
    applier.apply(run)
    roles = plans.roles(run)
    job = next(c for c in plans.backup_containers(run) if c.envs.get("PGUSER") == "oduflow_team_1")
    template_dbs = [
        name for (name,) in pg.rows("SELECT datname FROM pg_database WHERE starts_with(datname, 'oduflow_template_1_')")
    ]

    bindir = tmp_path / "bin"
    bindir.mkdir()
    _stub(bindir, "aws", FAKE_AWS)
    _stub(bindir, "tar", FAKE_TAR)
    script = tmp_path / "backup.sh"
    script.write_text(job.script)
    fake_s3 = tmp_path / "s3"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PG")},
        **job.envs,
        "PGHOST": pg.host,
        "PGPORT": str(pg.port),
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "FAKE_S3": str(fake_s3),
    }
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    bucket = job.script.split("s3://", 1)[1].split("/", 1)[0]
    daily = fake_s3 / bucket / "daily"
    assert template_dbs, "the example config declares templates for team 1"
    for name in template_dbs:
        assert f"backed up {name}" in done.stdout
        assert len(list((daily / name).glob("*.dump"))) == 1
    statuses = list((fake_s3 / bucket / "status").glob("*.ok"))
    assert len(statuses) == 1 and "ok roles" in statuses[0].read_text()

    sql_files = list((daily / backup.ROLES_DIR).glob("*.sql"))
    assert len(sql_files) == 1
    text = sql_files[0].read_text()
    assert "PASSWORD" not in text.upper().replace("NO PASSWORD IS IN", "").replace("... PASSWORD", "")
    for password in (r.password for r in roles.values()):
        assert password not in text
    other_roles = [name for name in roles if name != "oduflow_team_1" and not name.startswith("oduflow_team_1_")]
    assert other_roles, "the example has other teams"
    for other in other_roles:
        assert other not in text
    assert "ALTER ROLE oduflow_team_1 WITH NOSUPERUSER" in text
    assert "GRANT oduflow_tenants TO oduflow_team_1;" in text

    # The file puts back what changed since: limit, settings, memberships.
    state = (
        "SELECT rolconnlimit, rolcreatedb, array(SELECT unnest(rolconfig) ORDER BY 1) FROM pg_roles WHERE rolname = %s"
    )
    before = pg.rows(state, ("oduflow_team_1",))
    with pg.admin() as conn:
        conn.execute("ALTER ROLE oduflow_team_1 CONNECTION LIMIT 999 CREATEDB")
        conn.execute("ALTER ROLE oduflow_team_1 SET statement_timeout = 1")
        conn.execute("ALTER ROLE oduflow_team_1 SET work_mem = '64MB'")
        conn.execute("REVOKE oduflow_tenants FROM oduflow_team_1")
    applied = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", str(sql_files[0]), pg.dsn],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert applied.returncode == 0, applied.stderr
    assert pg.rows(state, ("oduflow_team_1",)) == before
    assert pg.scalar("SELECT pg_has_role('oduflow_team_1', 'oduflow_tenants', 'MEMBER')")
