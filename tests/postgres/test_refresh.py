"""Refresh from production, on the real server: the refresh one-shot's own script (refresh.py,
neutralize.py) run as the team role the program creates, between the example's production and
staging databases, with its PG* variables. Only Odoo itself is a stand-in (no Odoo runs here): a
stub `odoo` records the command it is called with, and the tests assert that command.

Proved: the copy has production's rows; a session held open on production during the copy is
still alive after it (and the target's sessions are ended); the target keeps its name, owner and
closed CONNECT (no drift for the provider); tables only the target had are gone; the copy's uuid,
secret and admin password differ from production's; the filestore is copied under the target's
name; a failed neutralisation leaves the target empty, never an un-neutralised copy.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from oduflow_iac import naming, odoo_conf, odoo_init
from oduflow_iac.lifecycle import neutralize, refresh
from tests.postgres import plans
from tests.postgres.conftest import PgServer
from tests.postgres.sql_apply import Applier

pytestmark = pytest.mark.postgres

TEAM = "1"
SOURCE = naming.env_db_name(TEAM, "main")
TARGET = naming.env_db_name(TEAM, "staging")
ROLE = naming.team_role_name(TEAM)
ADMIN_PASSWORD = "staging-admin-password-42"

# The tables Odoo's neutralisation and identity touch, as Odoo declares them (the columns used).
ODOO_TABLES = """
CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key varchar NOT NULL, value text NOT NULL,
  create_uid int, create_date timestamp, write_uid int, write_date timestamp,
  CONSTRAINT ir_config_parameter_key_uniq UNIQUE (key));
CREATE TABLE res_users (id serial PRIMARY KEY, login varchar NOT NULL UNIQUE, password varchar);
CREATE TABLE ir_model_data (id serial PRIMARY KEY, module varchar NOT NULL, name varchar NOT NULL,
  model varchar NOT NULL, res_id int);
CREATE TABLE res_partner (id serial PRIMARY KEY, name varchar NOT NULL);
CREATE TABLE ir_attachment (id serial PRIMARY KEY, store_fname varchar,
  res_id int REFERENCES res_partner(id));
"""


def _stub(directory: Path, name: str, text: str) -> None:
    path = directory / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _pbkdf2_ok(password: str, stored: str) -> bool:
    """passlib's pbkdf2_sha512 check, from its format: $pbkdf2-sha512$ROUNDS$SALT$CHECKSUM (ab64)."""
    _, scheme, rounds, salt, checksum = stored.split("$")
    if scheme != "pbkdf2-sha512":
        return False

    def unab64(text: str) -> bytes:
        text = text.replace(".", "+")
        return base64.b64decode(text + "=" * (-len(text) % 4))

    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), unab64(salt), int(rounds))
    return digest == unab64(checksum)


@pytest.fixture
def team(pg: PgServer, applier: Applier) -> dict[str, Any]:
    """The example applied (team roles and databases as the program creates them), production
    filled with what an Odoo holds, staging with data of its own."""
    run = plans.plan_of(plans.EXAMPLE)
    applier.apply(run)
    password = plans.roles(run)[ROLE].password
    with pg.login(ROLE, password, SOURCE) as conn:
        conn.execute(ODOO_TABLES)
        conn.execute("INSERT INTO res_partner (name) SELECT 'customer ' || g FROM generate_series(1, 500) g")
        conn.execute("INSERT INTO ir_attachment (store_fname, res_id) VALUES ('ab/abcdef', 1), ('cd/cdef01', 2)")
        conn.execute("INSERT INTO res_users (login, password) VALUES ('admin', 'production-hash')")
        conn.execute(
            "INSERT INTO ir_model_data (module, name, model, res_id) "
            "SELECT 'base', 'user_admin', 'res.users', id FROM res_users WHERE login = 'admin'"
        )
        conn.execute(
            "INSERT INTO ir_config_parameter (key, value) VALUES ('database.uuid', 'prod-uuid'), "
            "('database.secret', 'prod-secret'), ('oduflow.initialised', %s)",
            (SOURCE,),
        )
    with pg.login(ROLE, password, TARGET) as conn:
        conn.execute(ODOO_TABLES)
        conn.execute("INSERT INTO res_partner (name) VALUES ('staging only')")
        # A table of a module installed on staging alone, referencing one the dump holds: what
        # `pg_restore --clean` cannot drop (the reason the target is emptied instead).
        conn.execute("CREATE TABLE x_staging_module (id serial PRIMARY KEY, partner_id int REFERENCES res_partner(id))")
        conn.execute("INSERT INTO x_staging_module (partner_id) VALUES (1)")
    return {"password": password}


def _filestores(tmp_path: Path) -> tuple[Path, Path]:
    source_root, target_root = tmp_path / "source", tmp_path / "target"
    prod = source_root / "filestore" / SOURCE
    (prod / "ab").mkdir(parents=True)
    (prod / "cd").mkdir()
    (prod / "ab" / "abcdef").write_bytes(b"\x00invoice pdf\xff" * 1000)
    (prod / "cd" / "cdef01").write_bytes(b"logo")
    old = target_root / "filestore" / TARGET / "ee"
    old.mkdir(parents=True)
    (old / "eeeeee").write_bytes(b"staging attachment")
    return source_root, target_root


def _run(
    pg: PgServer, team: dict[str, Any], tmp_path: Path, script: str, odoo_exit: int = 0
) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "odoo-calls"
    _stub(bin_dir, "odoo", f'#!/bin/sh\necho "$*" >> {calls}\nexit {odoo_exit}\n')
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PGHOST": pg.host,
        "PGPORT": str(pg.port),
        "PGUSER": ROLE,
        "PGPASSWORD": team["password"],
        odoo_init.ADMIN_PASSWORD_ENV: ADMIN_PASSWORD,
    }
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False)


def _params(pg: PgServer, database: str) -> dict[str, str]:
    return dict(pg.rows("SELECT key, value FROM ir_config_parameter", database=database))


def test_refresh_copies_production_without_touching_its_sessions(
    pg: PgServer, team: dict[str, Any], tmp_path: Path
) -> None:
    source_root, target_root = _filestores(tmp_path)
    before = pg.rows(
        "SELECT datname, datdba::regrole::text, datacl::text FROM pg_database WHERE datname = %s", (TARGET,)
    )
    # A production session in the middle of a transaction, and an Odoo session left on staging.
    held = pg.login(ROLE, team["password"], SOURCE)
    held.autocommit = False
    held.execute("SELECT count(*) FROM res_partner").fetchone()
    held_pid = held.info.backend_pid
    stale = pg.login(ROLE, team["password"], TARGET)

    script = refresh.refresh_script(SOURCE, TARGET, 4, source_root=str(source_root), target_root=str(target_root))
    result = _run(pg, team, tmp_path, script)
    assert result.returncode == 0, result.stderr

    # Production served throughout: the held session is alive, its transaction still open.
    assert held.execute("SELECT count(*) FROM res_partner").fetchone() == (500,)
    held.rollback()
    assert pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (held_pid,)) == 1
    held.close()
    # The target's session was ended.
    with pytest.raises(psycopg.OperationalError):
        stale.execute("SELECT 1")
    stale.close()

    # Production's rows, and nothing of the target's own.
    assert pg.scalar("SELECT count(*) FROM res_partner", database=TARGET) == 500
    assert pg.scalar("SELECT name FROM res_partner WHERE id = 1", database=TARGET) == "customer 1"
    assert pg.scalar("SELECT to_regclass('x_staging_module')", database=TARGET) is None
    # Same name, owner and ACL (CONNECT still closed to PUBLIC): the provider sees no drift.
    after = pg.rows(
        "SELECT datname, datdba::regrole::text, datacl::text FROM pg_database WHERE datname = %s", (TARGET,)
    )
    assert after == before
    assert before[0][1] == ROLE
    # The copy's tables belong to the team role, whoever owned them in the dump.
    owners = {r[0] for r in pg.rows("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'", database=TARGET)}
    assert owners == {ROLE}

    # Odoo's own neutralisation, exactly as Odoo ships it, with the environment's odoo.conf.
    calls = (tmp_path / "odoo-calls").read_text().splitlines()
    assert calls == [f"neutralize -c {odoo_conf.ODOO_CONF_PATH} -d {TARGET}"]
    assert neutralize.neutralize_command(TARGET) == ["odoo", "neutralize", "-c", "/etc/odoo/odoo.conf", "-d", TARGET]

    # Its own identity and admin password; production's untouched.
    prod, copy = _params(pg, SOURCE), _params(pg, TARGET)
    assert prod["database.uuid"] == "prod-uuid" and prod["database.secret"] == "prod-secret"
    assert copy["database.uuid"] not in ("", "prod-uuid")
    assert copy["database.secret"] not in ("", "prod-secret", copy["database.uuid"])
    assert copy[odoo_init.MARKER_KEY] == TARGET and prod[odoo_init.MARKER_KEY] == SOURCE
    assert copy[refresh.MARKER_KEY] == "4" and refresh.MARKER_KEY not in prod
    stored = pg.scalar("SELECT password FROM res_users WHERE login = 'admin'", database=TARGET)
    assert stored != "production-hash"
    assert stored.startswith(f"$pbkdf2-sha512${odoo_init.PBKDF2_ROUNDS}$")
    assert _pbkdf2_ok(ADMIN_PASSWORD, stored) and not _pbkdf2_ok("admin", stored)
    assert pg.scalar("SELECT password FROM res_users WHERE login = 'admin'", database=SOURCE) == "production-hash"
    assert ADMIN_PASSWORD not in result.stdout + result.stderr

    # The filestore: production's bytes under the target's name, the target's own files gone.
    prod_fs, copy_fs = source_root / "filestore" / SOURCE, target_root / "filestore" / TARGET
    assert (copy_fs / "ab" / "abcdef").read_bytes() == (prod_fs / "ab" / "abcdef").read_bytes()
    assert (copy_fs / "cd" / "cdef01").read_bytes() == b"logo"
    assert not (copy_fs / "ee").exists()
    assert sorted(p.name for p in (target_root / "filestore").iterdir()) == [TARGET]
    assert (prod_fs / "cd" / "cdef01").read_bytes() == b"logo"


def test_a_second_refresh_replaces_the_first(pg: PgServer, team: dict[str, Any], tmp_path: Path) -> None:
    source_root, target_root = _filestores(tmp_path)
    for generation in (1, 2):
        script = refresh.refresh_script(
            SOURCE, TARGET, generation, source_root=str(source_root), target_root=str(target_root)
        )
        result = _run(pg, team, tmp_path, script)
        assert result.returncode == 0, result.stderr
        with pg.login(ROLE, team["password"], SOURCE) as conn:
            conn.execute("INSERT INTO res_partner (name) VALUES ('new customer')")
    assert pg.scalar("SELECT count(*) FROM res_partner", database=TARGET) == 501
    assert _params(pg, TARGET)[refresh.MARKER_KEY] == "2"


def test_a_failed_neutralisation_leaves_the_target_empty(pg: PgServer, team: dict[str, Any], tmp_path: Path) -> None:
    source_root, target_root = _filestores(tmp_path)
    script = refresh.refresh_script(SOURCE, TARGET, 1, source_root=str(source_root), target_root=str(target_root))
    result = _run(pg, team, tmp_path, script, odoo_exit=3)
    assert result.returncode == 3
    assert "emptying the target again" in result.stderr
    assert pg.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database=TARGET) == []
    assert pg.scalar("SELECT count(*) FROM res_partner", database=SOURCE) == 500
    # Emptied, the database is still the provider's: same owner.
    assert pg.scalar("SELECT datdba::regrole::text FROM pg_database WHERE datname = %s", (TARGET,)) == ROLE


def test_a_missing_admin_password_stops_the_neutralisation(pg: PgServer, team: dict[str, Any], tmp_path: Path) -> None:
    with pg.login(ROLE, team["password"], TARGET) as conn:
        conn.execute("DROP TABLE x_staging_module")
        conn.execute("INSERT INTO ir_config_parameter (key, value) VALUES ('database.uuid', 'u')")
    script = "set -eu\n" + neutralize.neutralize_script(TARGET)
    env_script = f"unset {odoo_init.ADMIN_PASSWORD_ENV}\n{script}"
    result = _run(pg, team, tmp_path, env_script)
    assert result.returncode != 0
    assert f"{odoo_init.ADMIN_PASSWORD_ENV} is not set" in result.stderr
    assert _params(pg, TARGET)["database.uuid"] == "u"  # nothing half-done
