"""Neutralising a copy of a production database, as pure functions: the shell lines a one-shot of
the environment's Odoo image runs once the copy is in place (a refresh of `clone_from`, a restore
into another environment).

1. Odoo's own neutralisation, exactly as Odoo ships it: `odoo neutralize -c CONF -d DB`
   (odoo/odoo, odoo/cli/neutralize.py, from 16.0 on; 15.0 has no such command). It runs the
   `data/neutralize.sql` of every installed module found on the addons path of CONF (base marks
   the database `database.is_neutralized`, mail and fetchmail turn their servers off, base its
   crons, payment providers go to test mode, ...), so CONF is the environment's own odoo.conf,
   whose addons_path lists the environment's repositories.
2. An identity of its own: new `database.uuid` and `database.secret` (the key Odoo signs session
   and access tokens with), as Odoo's own copy does (odoo/odoo, odoo/service/db.py,
   `exp_duplicate_database`/`exp_restore` with `copy=True`: `ir.config_parameter.init(force=True)`).
   A copy sharing production's secret would accept production's tokens and vice versa.
3. Its own admin password: the environment's (variable `odoo_init.ADMIN_PASSWORD_ENV`), hashed
   the way Odoo stores it (pbkdf2_sha512, `odoo_init.PBKDF2_ROUNDS` rounds, passlib's format),
   computed by the image's Python standard library: the plan never hashes anything and the
   password is never on a command line.
4. The marker `oduflow.initialised` = the database's own name, so the environment's init one-shot
   never installs `base` over the copy (the copy carries production's marker, production's name).

Steps 2 to 4 are one transaction of plain SQL run by `psql` (the official Odoo image ships the
PostgreSQL client), with libpq's PG* variables saying where and as whom: the tests run that SQL on
a real server, where Odoo itself cannot run.
"""

from __future__ import annotations

import shlex

from oduflow_iac import odoo_conf, odoo_init

# What `odoo neutralize` is called as: Odoo itself (odoo_init.ODOO_COMMAND), its own subcommand.
NEUTRALIZE_SUBCOMMAND = "neutralize"
# The Odoo release that ships the subcommand (odoo/odoo 16.0, odoo/cli/neutralize.py).
MIN_ODOO_MAJOR = 16
# The psql variable the admin password's hash travels in (a hash, never the password).
_HASH_VARIABLE = "admin_hash"

# Standard library only: passlib's `$pbkdf2-sha512$ROUNDS$SALT$CHECKSUM` with its "ab64" base64
# (`.` for `+`, no padding) and a 16-byte salt, which Odoo's CryptContext verifies.
HASH_PROGRAM = f"""import base64, hashlib, os, sys
password = os.environ.get({odoo_init.ADMIN_PASSWORD_ENV!r}, "")
if not password:
    sys.exit("{odoo_init.ADMIN_PASSWORD_ENV} is not set: the copy gets no admin password of its own")
salt = os.urandom(16)
digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, {odoo_init.PBKDF2_ROUNDS})
ab64 = lambda raw: base64.b64encode(raw).decode().rstrip("=").replace("+", ".")
print("$pbkdf2-sha512${odoo_init.PBKDF2_ROUNDS}$" + ab64(salt) + "$" + ab64(digest))
"""


def neutralize_command(database: str, conf: str = odoo_conf.ODOO_CONF_PATH) -> list[str]:
    """Odoo's own neutralisation of `database`, with the environment's odoo.conf."""
    return [odoo_init.ODOO_COMMAND, NEUTRALIZE_SUBCOMMAND, "-c", conf, "-d", database]


def identity_sql(database: str, base_url: str | None = None) -> str:
    """One transaction: a new uuid and secret, the admin password (psql variable `admin_hash`), the
    marker; `web.base.url` the environment's own URL when given (links in mail and reports)."""
    params = [
        ("'database.uuid'", "gen_random_uuid()::text"),
        ("'database.secret'", "gen_random_uuid()::text"),
        (f"'{odoo_init.MARKER_KEY}'", _literal(database)),
    ]
    if base_url is not None:
        params.append(("'web.base.url'", _literal(base_url)))
    lines = ["BEGIN;"]
    lines += [upsert_parameter_sql(key, value) for key, value in params]
    lines += [
        # psql does not interpolate inside a DO body: the hash reaches it as a transaction setting.
        f"SELECT set_config('oduflow.admin_hash', :'{_HASH_VARIABLE}', true) \\g /dev/null",
        "DO $$ BEGIN",
        "  UPDATE res_users SET password = current_setting('oduflow.admin_hash') WHERE id = (",
        "    SELECT res_id FROM ir_model_data WHERE module = 'base' AND name = 'user_admin');",
        "  IF NOT FOUND THEN RAISE EXCEPTION 'the admin user (base.user_admin) was not found'; END IF;",
        "END $$;",
        "COMMIT;",
    ]
    return "\n".join(lines) + "\n"


def upsert_parameter_sql(key_literal: str, value_sql: str) -> str:
    """Set one `ir_config_parameter` (unique on key in every Odoo), as Odoo's ORM would."""
    return (
        "INSERT INTO ir_config_parameter (key, value, create_date, write_date) "
        f"VALUES ({key_literal}, {value_sql}, now() at time zone 'UTC', now() at time zone 'UTC') "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, write_date = EXCLUDED.write_date;"
    )


def psql_command(database: str) -> list[str]:
    """psql on `database`, stopping at the first error, reading nothing of the user's ~/.psqlrc."""
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database]


def neutralize_script(database: str, *, base_url: str | None = None) -> str:
    """Shell lines (POSIX sh, under `set -eu`) that neutralise `database` in place: Odoo's
    `odoo neutralize`, then the identity transaction. Needs the environment's odoo.conf at
    odoo_conf.ODOO_CONF_PATH, libpq's PG* variables and `odoo_init.ADMIN_PASSWORD_ENV`."""
    # The hash is a shell variable psql receives whole (double quotes: its `$` are not expanded again).
    psql = f'{shlex.join(psql_command(database))} -v "{_HASH_VARIABLE}=$ODUFLOW_ADMIN_HASH"'
    lines = [
        f"echo {shlex.quote(f'neutralising {database} with odoo neutralize')}",
        shlex.join(neutralize_command(database)),
        "ODUFLOW_ADMIN_HASH=$(python3 - <<'ODUFLOW_HASH'",
        HASH_PROGRAM.rstrip("\n"),
        "ODUFLOW_HASH",
        ")",
        f"{psql} <<'ODUFLOW_SQL'",
        identity_sql(database, base_url).rstrip("\n"),
        "ODUFLOW_SQL",
        "unset ODUFLOW_ADMIN_HASH",
    ]
    return "\n".join(lines) + "\n"


def _literal(text: str) -> str:
    """An SQL string literal (standard_conforming_strings: only `'` doubles)."""
    return "'" + text.replace("'", "''") + "'"
