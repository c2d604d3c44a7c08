"""How a new database becomes a working Odoo database, as pure functions.

Odoo only installs `base` into a database it creates itself; the platform creates databases with the
provider, so a one-shot run of the environment's image does the rest once:
- a fresh database: `odoo -i base` (the template's modules for a template database);
- a clone of a template: what Odoo's own "duplicate database" does after CREATE DATABASE ... TEMPLATE:
  copy the template's filestore and give the copy its own `database.uuid` and `database.secret`
  (the key Odoo signs tokens with), which must never be shared between production and its clones.

In every path the admin user gets the environment's own password (templates a random one nobody
knows: Odoo's `admin`/`admin` never survives), and a marker `oduflow.initialised` = the database's
own name is written last. The one-shot checks the marker first and does nothing when it is there,
so re-creating the one-shot (an explicit `--replace`, a retry after a failure) never runs
`-i base` or a new identity against a database in service. A clone carries its template's marker,
whose value is the template's name, not its own.
"""

from __future__ import annotations

import shlex

from oduflow_iac.odoo_conf import FILESTORE_PATH

TEMPLATE_FILESTORE_MOUNT = "/template"
SCRIPT_DIR = "/oduflow"
INIT_SCRIPT_PATH = f"{SCRIPT_DIR}/init.sh"
HELPER_PATH = f"{SCRIPT_DIR}/init_db.py"
MARKER_KEY = "oduflow.initialised"
# The environment's admin password reaches the one-shot only, never the Odoo container.
ADMIN_PASSWORD_ENV = "ODUFLOW_ADMIN_PASSWORD"
# Odoo's own `res.users` crypt context (odoo/addons/base/models/res_users.py, 17.0): pbkdf2_sha512,
# 600000 rounds. Hashed inside the image with its own passlib, so the plan never hashes anything.
PBKDF2_ROUNDS = 600_000
# Odoo itself, not the official image's /entrypoint.sh: that script first waits on a connection to
# the `postgres` database, which team roles may not open (CONNECT revoked from PUBLIC), and puts
# the database password on Odoo's command line. Odoo leaves host, port, user and password to libpq
# when odoo.conf has none (odoo/sql_db.py `connection_info_for`), so the PG* variables do.
ODOO_COMMAND = "odoo"

# Runs with the image's Python, psycopg2 and passlib (Odoo's own dependencies); libpq's PG* variables
# say where and as whom. `check` exits 0 when the database carries its own marker; `finish` sets the
# admin password (a new identity first, for a clone) and writes the marker, in one transaction.
HELPER = f"""import os
import secrets
import sys

import psycopg2
import psycopg2.errors
from passlib.context import CryptContext

database = os.environ["PGDATABASE"]
connection = psycopg2.connect("")
try:
    with connection, connection.cursor() as cr:
        if sys.argv[1] == "check":
            try:
                cr.execute("SELECT value FROM ir_config_parameter WHERE key = %s", ({MARKER_KEY!r},))
            except psycopg2.errors.UndefinedTable:
                sys.exit(1)
            row = cr.fetchone()
            sys.exit(0 if row is not None and row[0] == database else 1)
        if "--new-identity" in sys.argv:
            cr.execute(
                "UPDATE ir_config_parameter SET value = gen_random_uuid()::text "
                "WHERE key IN ('database.uuid', 'database.secret')"
            )
        password = os.environ.get({ADMIN_PASSWORD_ENV!r}) or secrets.token_urlsafe(32)
        hashed = CryptContext(["pbkdf2_sha512"], pbkdf2_sha512__rounds={PBKDF2_ROUNDS}).hash(password)
        cr.execute(
            "UPDATE res_users SET password = %s WHERE id = "
            "(SELECT res_id FROM ir_model_data WHERE module = 'base' AND name = 'user_admin')",
            (hashed,),
        )
        if cr.rowcount != 1:
            sys.exit("the admin user (base.user_admin) was not found in " + database)
        cr.execute(
            "INSERT INTO ir_config_parameter (key, value, create_date, write_date) "
            "VALUES (%s, %s, now() at time zone 'UTC', now() at time zone 'UTC') "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, write_date = EXCLUDED.write_date",
            ({MARKER_KEY!r}, database),
        )
finally:
    connection.close()
"""


def _guard(database: str) -> list[str]:
    return [
        "set -eu",
        f"if python3 {HELPER_PATH} check; then",
        f"  echo {shlex.quote(f'{database} is initialised already: nothing to do')}",
        "  exit 0",
        "fi",
    ]


def install_script(database: str, modules: list[str]) -> str:
    """A fresh database (or a template): install `modules` (base at least), then the admin
    password and the marker. libpq's PG* variables say where and as whom."""
    install = [
        ODOO_COMMAND, "-d", database, "-i", ",".join(modules or ["base"]),
        "--stop-after-init", "--without-demo=all", "--no-http",
    ]  # fmt: skip
    lines = [*_guard(database), shlex.join(install), f"python3 {HELPER_PATH} finish"]
    return "\n".join(lines) + "\n"


def clone_finish_script(template_database: str, database: str) -> str:
    """A clone of a template: its filestore, a fresh identity, its own admin password, the marker."""
    source = shlex.quote(f"{TEMPLATE_FILESTORE_MOUNT}/filestore/{template_database}")
    target = shlex.quote(f"{FILESTORE_PATH}/filestore/{database}")
    lines = [
        *_guard(database),
        f"mkdir -p {shlex.quote(FILESTORE_PATH + '/filestore')}",
        f"if [ -d {source} ] && [ ! -e {target} ]; then cp -a {source} {target}; fi",
        f"python3 {HELPER_PATH} finish --new-identity",
    ]
    return "\n".join(lines) + "\n"
