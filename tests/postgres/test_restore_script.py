"""The restore's database script against the real server and client tools, fed a crafted dump.

The dump is the job's, whose key can write anything: what pg_restore renders from a crafted archive
reaches psql. A stand-in pg_restore wraps the real one and injects lines after the first statement
of its output (inside the `\\restrict` the real one opens), as a crafted TOC entry would:
a psql meta-command that runs a shell command, and rows that print the old fixed success marker
before a failure. Neither may run, nor make a rolled-back restore look committed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from oduflow_iac.lifecycle import restore
from tests.postgres.conftest import PgServer, pg, pg_dsn  # noqa: F401 (fixtures)

pytestmark = pytest.mark.postgres

SOURCE, TARGET = "oduflow_rs_source", "oduflow_rs_target"

# ODUFLOW_TEST_OLD=1: a pg_restore from before CVE-2025-8714's fix (no --restrict-key, no
# restrict line in its output).
STAND_IN = r"""#!/bin/sh
inject() {{ awk '{{ print }} /^SET / && !done {{ print ENVIRON["ODUFLOW_TEST_PAYLOAD"]; done = 1 }}'; }}
if [ "${{ODUFLOW_TEST_OLD:-}}" = 1 ]; then
  case "$*" in *--help*) {real} --help | grep -v restrict; exit 0 ;; esac
  {real} "$@" | grep -v -e '^.restrict' -e '^.unrestrict' | inject
  exit 0
fi
case "$*" in *--help*) exec {real} "$@" ;; esac
{real} "$@" | inject
"""


@pytest.fixture
def world(pg: PgServer, tmp_path: Path) -> tuple[PgServer, Path, dict[str, str]]:  # noqa: F811
    real = shutil.which("pg_restore")
    if real is None or shutil.which("psql") is None or shutil.which("pg_dump") is None:
        pytest.skip("the PostgreSQL client tools are not installed")
    for name, value in ((SOURCE, "from the backup"), (TARGET, "live")):
        with pg.admin() as conn:
            conn.execute(f"CREATE DATABASE {name}".encode())
        with pg.admin(name) as conn:
            conn.execute("CREATE TABLE t (v text)")
            conn.execute("INSERT INTO t VALUES (%s)", (value,))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PG")},
        "PGHOST": pg.host,
        "PGPORT": str(pg.port),
        "PGUSER": pg.superuser,
        "PGPASSWORD": str(pg.params.get("password", "")),
    }
    dump = tmp_path / "backup.dump"
    subprocess.run(["pg_dump", "-Fc", f"--file={dump}", SOURCE], env=env, check=True, timeout=60)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pg_restore").write_text(STAND_IN.format(real=real))
    (bindir / "pg_restore").chmod(0o755)
    env["PATH"] = f"{bindir}:{env['PATH']}"
    return pg, dump, env


def _restore(env: dict[str, str], dump: Path, payload: str, old: bool = False) -> subprocess.CompletedProcess[str]:
    script = restore.database_restore_script(TARGET, str(dump))
    env = {**env, "ODUFLOW_TEST_PAYLOAD": payload, "ODUFLOW_TEST_OLD": "1" if old else ""}
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120)


def test_a_plain_dump_is_restored(world: tuple[PgServer, Path, dict[str, str]]) -> None:
    server, dump, env = world
    done = _restore(env, dump, "")
    assert done.returncode == 0, done.stderr
    assert server.rows("SELECT v FROM t", database=TARGET) == [("from the backup",)]


def test_a_dumps_meta_command_does_not_run(world: tuple[PgServer, Path, dict[str, str]], tmp_path: Path) -> None:
    server, dump, env = world
    pwned = tmp_path / "pwned"
    done = _restore(env, dump, f"\\! touch {pwned}")
    assert not pwned.exists(), "psql ran a shell command from the dump"
    # Refused as an error: the transaction rolls back, the live rows stay.
    assert done.returncode != 0
    assert server.rows("SELECT v FROM t", database=TARGET) == [("live",)]


def test_a_pg_restore_that_cannot_restrict_psql_is_refused(
    world: tuple[PgServer, Path, dict[str, str]], tmp_path: Path
) -> None:
    """Before 13.22/14.19/15.14/16.10/17.6 psql would run the dump's shell escape: refused, unchanged."""
    server, dump, env = world
    pwned = tmp_path / "pwned"
    done = _restore(env, dump, f"\\! touch {pwned}", old=True)
    assert not pwned.exists(), "psql ran a shell command from the dump"
    assert done.returncode != 0 and restore.OLD_PG_RESTORE in done.stderr
    assert server.rows("SELECT v FROM t", database=TARGET) == [("live",)]


def test_a_dump_cannot_print_the_success_marker(world: tuple[PgServer, Path, dict[str, str]]) -> None:
    server, dump, env = world
    payload = f"SELECT '{restore.COMMITTED}';\nSELECT 1/0;"
    done = _restore(env, dump, payload)
    assert done.returncode != 0 and "rolled back" in done.stderr
    assert "restored" not in done.stdout
    assert server.rows("SELECT v FROM t", database=TARGET) == [("live",)]
