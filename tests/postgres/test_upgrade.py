"""The module-upgrade one-shot's script on the real PostgreSQL: the recorded state in an
`ir_config_parameter` table created like Odoo's, which modules it upgrades, and the production
rollback (pg_dump / pg_restore and the filestore archive) when Odoo fails. Odoo itself cannot run
here: a stand-in `odoo` records its command line, writes what a half-done upgrade writes, and
exits as Odoo does; the exact command is asserted."""

from __future__ import annotations

import glob
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from oduflow_iac import revisions
from oduflow_iac.lifecycle import upgrade
from tests.postgres.conftest import PgServer

ROLE, PASSWORD, DB = "oduflow_team_9", "upgrade-test-pw", "oduflow_9_upg"
CONTAINER = "oduflow-9-upg-upgrade"
T1, T2 = "1" * 40, "2" * 40

# Odoo's own DDL of the two tables (odoo/addons/base/models/ir_config_parameter.py and
# ir_module.py, 17.0, as the ORM creates them), reduced to the columns the script reads and writes.
ODOO_TABLES = """
CREATE TABLE ir_config_parameter (
    id serial PRIMARY KEY, key varchar NOT NULL, value text NOT NULL,
    create_uid int, create_date timestamp, write_uid int, write_date timestamp,
    CONSTRAINT ir_config_parameter_key_uniq UNIQUE (key)
);
CREATE TABLE ir_module_module (id serial PRIMARY KEY, name varchar NOT NULL UNIQUE, state varchar);
INSERT INTO ir_module_module (name, state) VALUES
    ('base', 'installed'), ('sale_x', 'installed'), ('stock_y', 'installed'), ('other_z', 'uninstalled');
CREATE TABLE res_partner (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO res_partner (name) SELECT 'p' || g FROM generate_series(1, 50) g;
"""

FAKE_ODOO = """#!/bin/sh
printf '%s\\n' "$@" > "$ODOO_ARGV"
echo "2026-01-01 00:00:00,000 1 INFO db odoo.modules.loading: loading 40 modules..."
echo "2026-01-01 00:00:00,000 1 INFO db odoo.modules.loading: Loading module base (1/40)"
echo "2026-01-01 00:00:00,000 1 INFO db odoo.modules.loading: Loading module sale_x (12/40)"
if [ -n "${ODOO_FAIL:-}" ]; then
    psql -q -d "$PGDATABASE" \
        -c "INSERT INTO res_partner (name) VALUES ('half-upgraded'); UPDATE res_partner SET name = 'x'"
    echo changed > "$FILESTORE/filestore/$PGDATABASE/ab/new-attachment"
    echo "psycopg2.errors.UndefinedColumn: column sale_order.x does not exist"
    exit 255
fi
"""


def _server_bindir() -> str:
    """pg_dump and pg_restore of the newest server version installed (a dump needs its server's)."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: float(p.split("/")[4]), reverse=True):
        if os.path.exists(f"{candidate}/pg_dump"):
            return candidate
    found = shutil.which("pg_dump")
    if not found:
        pytest.skip("pg_dump is not installed")
    return os.path.dirname(found)


@pytest.fixture
def env_db(pg: PgServer) -> PgServer:
    with pg.admin() as conn:
        conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'".encode())
        conn.execute(f"CREATE DATABASE {DB} OWNER {ROLE}".encode())
    with pg.login(ROLE, PASSWORD, DB) as conn:
        conn.execute(ODOO_TABLES.encode())
    return pg


class Job:
    """The one-shot's files, at a temporary root instead of / (the script's paths rewritten)."""

    def __init__(self, tmp: Path, pg: PgServer, *, production: bool, image: str, modules: dict[str, Any]) -> None:
        self.tmp, self.pg = tmp, pg
        self.scripts, self.filestore, self.bin = tmp / "oduflow", tmp / "var-lib-odoo", tmp / "bin"
        for d in (self.scripts, self.filestore / "filestore" / DB / "ab", self.bin):
            d.mkdir(parents=True, exist_ok=True)
        (self.filestore / "filestore" / DB / "ab" / "abcdef").write_bytes(b"attachment bytes \x00\x01")
        script = upgrade.upgrade_script(DB, CONTAINER, production=production)
        self.script = script  # as the container gets it
        state = revisions.upgrade_state(image, modules)
        for path, content in upgrade.uploads(script, state):
            local = self._local(path)
            Path(local).write_text(self._rewrite(content))
        self._stub("odoo", FAKE_ODOO)
        self._stub("python3", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        self.argv = tmp / "odoo-argv"

    def _rewrite(self, text: str) -> str:
        return (
            text.replace(upgrade.SCRIPT_DIR + "/", f"{self.scripts}/")
            .replace(upgrade.FILESTORE_PATH, str(self.filestore))
            .replace(upgrade.LOG_PATH, str(self.tmp / "upgrade.log"))
        )

    def _local(self, path: str) -> str:
        return self._rewrite(path)

    def _stub(self, name: str, text: str) -> None:
        path = self.bin / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def run(self, **extra: str) -> subprocess.CompletedProcess[str]:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PG")},
            "PATH": f"{self.bin}:{_server_bindir()}:{os.environ['PATH']}",
            "PGHOST": self.pg.host,
            "PGPORT": str(self.pg.port),
            "PGUSER": ROLE,
            "PGPASSWORD": PASSWORD,
            "PGDATABASE": DB,
            "ODOO_ARGV": str(self.argv),
            "FILESTORE": str(self.filestore),
            **extra,
        }
        script = self._local(upgrade.SCRIPT_PATH)
        return subprocess.run(["sh", script], env=env, capture_output=True, text=True, timeout=300)

    def odoo_argv(self) -> list[str] | None:
        return self.argv.read_text().splitlines() if self.argv.exists() else None


def params(pg: PgServer) -> dict[str, str]:
    return dict(pg.rows("SELECT key, value FROM ir_config_parameter", database=DB))


def modules(**trees: str) -> dict[str, revisions.ModuleRevision]:
    return {m: revisions.ModuleRevision(t, "17.0.1.0.0") for m, t in trees.items()}


def test_first_run_records_a_baseline_and_upgrades_nothing(env_db: PgServer, tmp_path: Path) -> None:
    job = Job(tmp_path, env_db, production=False, image="odoo:17.0", modules=modules(sale_x=T1, stock_y=T1))
    done = job.run()
    assert done.returncode == 0, done.stderr
    assert job.odoo_argv() is None
    recorded = params(env_db)
    assert recorded[upgrade.IMAGE_KEY] == "odoo:17.0"
    assert json.loads(recorded[upgrade.MODULE_TREES_KEY]) == {
        "sale_x": f"{T1}/17.0.1.0.0",
        "stock_y": f"{T1}/17.0.1.0.0",
    }


def test_exactly_the_installed_modules_whose_code_changed_are_upgraded(env_db: PgServer, tmp_path: Path) -> None:
    Job(
        tmp_path / "a", env_db, production=False, image="odoo:17.0", modules=modules(sale_x=T1, stock_y=T1, other_z=T1)
    ).run()
    # A session left on the database (a cron worker, a shell) is ended first.
    held = psycopg.connect(host=env_db.host, port=env_db.port, user=ROLE, password=PASSWORD, dbname=DB, autocommit=True)
    job = Job(
        tmp_path / "b", env_db, production=False, image="odoo:17.0", modules=modules(sale_x=T2, stock_y=T1, other_z=T2)
    )
    done = job.run()
    assert done.returncode == 0, done.stderr
    # other_z changed too, but is not installed: never installed by an upgrade.
    assert job.odoo_argv() == upgrade.odoo_upgrade_argv(DB, "sale_x")[1:]
    assert job.odoo_argv() == [
        "-c", "/etc/odoo/odoo.conf", "-d", DB, "-u", "sale_x",
        "--stop-after-init", "--no-http", "--log-handler", "odoo.modules.loading:DEBUG",
    ]  # fmt: skip
    assert json.loads(params(env_db)[upgrade.MODULE_TREES_KEY])["sale_x"] == f"{T2}/17.0.1.0.0"
    with pytest.raises(psycopg.OperationalError):
        held.execute("SELECT 1")
    # Nothing changed since: nothing to upgrade.
    again = Job(
        tmp_path / "c", env_db, production=False, image="odoo:17.0", modules=modules(sale_x=T2, stock_y=T1, other_z=T2)
    )
    assert again.run().returncode == 0 and again.odoo_argv() is None
    # An image bump: every installed module.
    bump = Job(
        tmp_path / "d",
        env_db,
        production=False,
        image="odoo:17.0.1",
        modules=modules(sale_x=T2, stock_y=T1, other_z=T2),
    )
    assert bump.run().returncode == 0
    assert bump.odoo_argv() is not None and bump.odoo_argv()[4:6] == ["-u", "all"]  # type: ignore[index]
    assert params(env_db)[upgrade.IMAGE_KEY] == "odoo:17.0.1"


def test_a_failed_production_upgrade_restores_database_and_filestore(env_db: PgServer, tmp_path: Path) -> None:
    Job(tmp_path / "a", env_db, production=True, image="odoo:17.0", modules=modules(sale_x=T1)).run()
    before_rows = env_db.rows("SELECT id, name FROM res_partner ORDER BY id", database=DB)
    before_params = params(env_db)
    job = Job(tmp_path / "b", env_db, production=True, image="odoo:17.0", modules=modules(sale_x=T2))
    store = job.filestore / "filestore" / DB
    before_files = {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file()}
    done = job.run(ODOO_FAIL="1")
    assert done.returncode == 1
    assert (
        f"upgrade of {DB} failed (odoo exit 255) while loading module sale_x: the database and filestore were "
        f"restored; the previous Odoo keeps serving; read `docker logs {CONTAINER}`"
    ) in done.stderr
    # Odoo did write (the stand-in's half-done upgrade); the restore put every row back.
    assert env_db.rows("SELECT id, name FROM res_partner ORDER BY id", database=DB) == before_rows
    assert params(env_db) == before_params  # the state is not recorded: the next run retries
    after_files = {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file()}
    assert after_files == before_files
    assert env_db.scalar("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (DB,)) == ROLE
    # The backup stays in the volume's private directory, out of Odoo's filestore.
    backup_dir = Path(str(job.filestore) + upgrade.BACKUP_DIR.removeprefix(upgrade.FILESTORE_PATH))
    assert (backup_dir / f"{DB}.dump").exists() and oct(backup_dir.stat().st_mode & 0o777) == "0o700"


def test_a_successful_production_upgrade_records_the_state_and_drops_the_backup(
    env_db: PgServer, tmp_path: Path
) -> None:
    Job(tmp_path / "a", env_db, production=True, image="odoo:17.0", modules=modules(sale_x=T1)).run()
    job = Job(tmp_path / "b", env_db, production=True, image="odoo:17.0", modules=modules(sale_x=T2))
    done = job.run()
    assert done.returncode == 0, done.stderr
    assert "backing up" in done.stdout and job.odoo_argv() is not None
    assert json.loads(params(env_db)[upgrade.MODULE_TREES_KEY]) == {"sale_x": f"{T2}/17.0.1.0.0"}
    backup_dir = Path(str(job.filestore) + upgrade.BACKUP_DIR.removeprefix(upgrade.FILESTORE_PATH))
    assert not (backup_dir / f"{DB}.dump").exists()
