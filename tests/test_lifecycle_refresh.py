"""The refresh and neutralisation scripts as text: valid POSIX shell, Odoo's own command, the
target only, no secret in them. (tests/postgres/test_refresh.py runs them on a real server.)"""

from __future__ import annotations

import subprocess

import pytest

from oduflow_iac import odoo_init
from oduflow_iac.lifecycle import neutralize, refresh


def test_neutralize_runs_odoos_own_command_then_the_identity() -> None:
    script = neutralize.neutralize_script("oduflow_1_staging")
    assert "\nodoo neutralize -c /etc/odoo/odoo.conf -d oduflow_1_staging\n" in script
    assert script.index("odoo neutralize") < script.index("database.secret")
    assert subprocess.run(["sh", "-n"], input="set -eu\n" + script, text=True, check=False).returncode == 0
    # The password reaches the hash program through its variable only, never a command line.
    assert f"os.environ.get({odoo_init.ADMIN_PASSWORD_ENV!r}" in script
    compile(neutralize.HASH_PROGRAM, "hash", "exec")


def test_neutralize_quotes_what_it_is_given() -> None:
    script = neutralize.neutralize_script("db", base_url="https://x.example/it's")
    assert "'https://x.example/it''s'" in script  # an SQL literal, `'` doubled


def test_refresh_never_names_the_source_where_it_ends_sessions_or_drops() -> None:
    script = refresh.refresh_script("oduflow_1_main", "oduflow_1_staging", 3)
    assert subprocess.run(["sh", "-n"], input=script, text=True, check=False).returncode == 0
    for line in script.splitlines():
        if "pg_terminate_backend" in line or "empty_target" in line or "DROP" in line or "psql" in line:
            assert "oduflow_1_main" not in line, line
    # The source is only read: pg_dump, and the read-only mount of its filestore.
    assert "pg_dump -Fc --lock-wait-timeout=60s -d oduflow_1_main" in script
    assert "pg_restore --no-owner --no-privileges --single-transaction --exit-on-error -d oduflow_1_staging" in script
    assert "TEMPLATE" not in script
    assert "cp -a /source/filestore/oduflow_1_main /var/lib/odoo/filestore/oduflow_1_staging.refresh-new" in script
    assert script.index("odoo neutralize") < script.index("VALUES ('oduflow.refresh', '3',")


def test_refresh_refuses_a_database_into_itself() -> None:
    with pytest.raises(ValueError):
        refresh.refresh_script("db", "db", 1)
