"""MINIMAL LOCAL STAND-IN for `oduflow_iac/lifecycle/neutralize.py`, which the staging-refresh work
owns (docs: design contract `neutralize_script(database) -> str`). `restore.py` imports the real
module when it is there and falls back to this one only until it lands on main; delete this file
then.

What it does (a subset of the real one): Odoo's own `odoo neutralize -c CONF -d DB` (odoo/odoo,
odoo/cli/neutralize.py, 16.0 and later), then a new `database.uuid` and `database.secret` (the key
Odoo signs sessions and tokens with), in one psql transaction. Not here: the copy's own admin
password and the `oduflow.initialised` marker.
"""

from __future__ import annotations

import shlex

from oduflow_iac import odoo_conf, odoo_init

IDENTITY_SQL = """BEGIN;
UPDATE ir_config_parameter SET value = gen_random_uuid()::text, write_date = now() at time zone 'UTC'
 WHERE key IN ('database.uuid', 'database.secret');
COMMIT;
"""


def neutralize_command(database: str, conf: str = odoo_conf.ODOO_CONF_PATH) -> list[str]:
    return [odoo_init.ODOO_COMMAND, "neutralize", "-c", conf, "-d", database]


def neutralize_script(database: str, *, base_url: str | None = None) -> str:
    del base_url  # the real module sets web.base.url; the stand-in does not
    return (
        "\n".join(
            [
                shlex.join(neutralize_command(database)),
                f"{shlex.join(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', database])} <<'ODUFLOW_SQL'",
                IDENTITY_SQL.rstrip("\n"),
                "ODUFLOW_SQL",
            ]
        )
        + "\n"
    )
