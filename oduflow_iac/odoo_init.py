"""How a new database becomes a working Odoo database, as pure functions.

Odoo only installs `base` into a database it creates itself; the platform creates databases with the
provider, so a one-shot run of the environment's image does the rest once, when the environment is
created:
- a fresh database: `odoo -i base` (plus the template's modules for a template database);
- a clone of a template: what Odoo's own "duplicate database" does after CREATE DATABASE ... TEMPLATE:
  copy the template's filestore and give the copy its own `database.uuid` and `database.secret`
  (the key Odoo signs tokens with), which must never be shared between production and its clones.
"""

from __future__ import annotations

import shlex

from oduflow_iac.odoo_conf import FILESTORE_PATH

TEMPLATE_FILESTORE_MOUNT = "/template"


def install_command(database: str, modules: list[str]) -> list[str]:
    return [
        "odoo", "-d", database, "-i", ",".join(modules or ["base"]),
        "--stop-after-init", "--without-demo=all", "--no-http",
    ]  # fmt: skip


def clone_finish_script(template_database: str, database: str) -> str:
    """Run with the image's shell and psql (PG* variables): filestore copy, fresh identity."""
    source = shlex.quote(f"{TEMPLATE_FILESTORE_MOUNT}/filestore/{template_database}")
    target = shlex.quote(f"{FILESTORE_PATH}/filestore/{database}")
    return (
        "\n".join(
            [
                "set -eu",
                f"mkdir -p {shlex.quote(FILESTORE_PATH + '/filestore')}",
                f"if [ -d {source} ] && [ ! -e {target} ]; then cp -a {source} {target}; fi",
                'psql -v ON_ERROR_STOP=1 -c "UPDATE ir_config_parameter SET value = gen_random_uuid()::text '
                "WHERE key IN ('database.uuid', 'database.secret')\"",
            ]
        )
        + "\n"
    )
