"""The module-upgrade one-shot of an environment (and of a template), as pure functions.

It runs the environment's image with the new odoo.conf (the new revision's addon directories)
after the addon fetcher and the database's initialisation, and before the Odoo container: that
container depends on its success (components.common.succeeded), so a failed upgrade never
replaces the Odoo serving the previous code.

Which modules it upgrades (the rule):
- the database records what it was last upgraded to in `ir_config_parameter`:
  `oduflow.image` (the image) and `oduflow.module_trees` (JSON: module -> `tree/version`, the git
  tree id of the module's directory at the pinned commit and its manifest's `version`);
- the image changed: every installed module (`-u all`): a new image is a new Odoo (and new
  standard modules), whose data and schema every installed module may depend on; this is the
  classic cause of "column does not exist" after an image bump;
- else: exactly the installed modules whose tree or version differs from the recorded one.
  The version matters because Odoo runs a module's migration scripts (`migrations/<version>/`)
  only when the manifest version is higher than the installed one; the tree because most code
  changes (a new field, a changed view, new data) bump no version, yet need `-u` to reach the
  database. A version change always changes the tree (the manifest is in it); both are recorded so
  the plan can say which upgrades run migration scripts;
- nothing recorded yet (a new database, or one created before this job existed): nothing is
  upgraded, the current state is recorded as the baseline (the modules were just installed from
  this very code, or have been running it);
- modules not installed are never installed by an upgrade.
The new state is recorded only after Odoo exited 0, so a failed upgrade is retried in full.

Production: before upgrading, the database is dumped (`pg_dump -Fc`) and the filestore archived
into a private directory of the environment's own filestore volume; if Odoo fails, both are
restored (`pg_restore --clean --if-exists --no-owner` into the same database, the filestore
unpacked again) before the one-shot exits non-zero naming the module Odoo was loading (from its
`Loading module NAME (i/n)` log line, odoo/odoo odoo/modules/loading.py, 17.0: INFO for a module
being updated, DEBUG otherwise, hence `--log-handler odoo.modules.loading:DEBUG`) and the
`docker logs` to read. Other environments are not restored (no backup is taken): a failed
upgrade leaves their database as Odoo left it, and the previous Odoo keeps serving.

Before the upgrade, the job ends every other session on its own database (pg_terminate_backend,
as the team role that owns them): the Odoo container was stopped by `oduflow-iac up`
(lifecycle/pause.py), and cron workers or shells must not write while modules are upgraded.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from oduflow_iac.odoo_conf import FILESTORE_PATH, ODOO_CONF_PATH
from oduflow_iac.odoo_init import ODOO_COMMAND, SCRIPT_DIR

SCRIPT_PATH = f"{SCRIPT_DIR}/upgrade.sh"
HELPER_PATH = f"{SCRIPT_DIR}/upgrade_db.py"
STATE_PATH = f"{SCRIPT_DIR}/upgrade-state.json"
IMAGE_KEY = "oduflow.image"
MODULE_TREES_KEY = "oduflow.module_trees"
# In the filestore volume (the environment's own, never shared), out of Odoo's `filestore/` and
# `sessions/`: the database dump and the filestore archive of the last production upgrade.
BACKUP_DIR = f"{FILESTORE_PATH}/.oduflow-upgrade"
LOG_PATH = "/tmp/oduflow-upgrade.log"
LABEL_DIGEST = "oduflow.upgrade"  # the one-shot's label: re-created exactly when the state changes

# Runs with the image's Python and psycopg2 (Odoo's own driver; psycopg 3 works the same here);
# libpq's PG* variables say where and as whom. Commands:
#   terminate      end every other session on the database
#   plan STATE     print `all`, nothing, or the comma-separated modules to upgrade
#   record STATE   write the state in one transaction
HELPER = f"""import json
import sys

try:
    import psycopg2 as driver
except ImportError:  # psycopg 3 (the same DB-API calls)
    import psycopg as driver

IMAGE_KEY = {IMAGE_KEY!r}
TREES_KEY = {MODULE_TREES_KEY!r}


def param(cr, key):
    cr.execute("SELECT value FROM ir_config_parameter WHERE key = %s", (key,))
    row = cr.fetchone()
    return row[0] if row else None


def modules_to_upgrade(cr, state):
    image, trees = param(cr, IMAGE_KEY), param(cr, TREES_KEY)
    if image is None and trees is None:
        return []  # the baseline: recorded, nothing upgraded
    if image != state["image"]:
        return ["all"]
    try:
        recorded = json.loads(trees or "{{}}")
    except ValueError:
        recorded = None
    if not isinstance(recorded, dict):
        return ["all"]  # a damaged record: everything, rather than guess
    cr.execute("SELECT name FROM ir_module_module WHERE state IN ('installed', 'to upgrade')")
    installed = {{row[0] for row in cr.fetchall()}}
    new = state["modules"]
    return sorted(m for m in installed if m in new and recorded.get(m) != new[m])


def main():
    command = sys.argv[1]
    state = json.load(open(sys.argv[2])) if len(sys.argv) > 2 else None
    connection = driver.connect("")
    try:
        cr = connection.cursor()
        if command == "terminate":
            cr.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            print("ended %d other session(s)" % cr.fetchone()[0], file=sys.stderr)
        elif command == "plan":
            print(",".join(modules_to_upgrade(cr, state)))
        elif command == "record":
            for key, value in ((IMAGE_KEY, state["image"]), (TREES_KEY, json.dumps(state["modules"], sort_keys=True))):
                cr.execute(
                    "INSERT INTO ir_config_parameter (key, value, create_date, write_date) "
                    "VALUES (%s, %s, now() at time zone 'UTC', now() at time zone 'UTC') "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, write_date = EXCLUDED.write_date",
                    (key, value),
                )
        else:
            sys.exit("unknown command " + command)
        connection.commit()
    finally:
        connection.close()


main()
"""


def state_document(state: Mapping[str, Any]) -> str:
    """The new state (revisions.upgrade_state) as the uploaded file the helper reads."""
    return json.dumps(state, sort_keys=True, indent=1) + "\n"


def uploads(script: str, state: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(path, content) of the script, its database helper and the new state."""
    return [(SCRIPT_PATH, script), (HELPER_PATH, HELPER), (STATE_PATH, state_document(state))]


def odoo_upgrade_argv(database: str, modules: str, *, conf: bool = True) -> list[str]:
    """Odoo's own upgrade: `-u` of the chosen modules (`all` after an image change), then stop.
    A template has no odoo.conf (its init runs Odoo with libpq's variables alone)."""
    config = ["-c", ODOO_CONF_PATH] if conf else []
    return [
        ODOO_COMMAND, *config, "-d", database, "-u", modules,
        "--stop-after-init", "--no-http", "--log-handler", "odoo.modules.loading:DEBUG",
    ]  # fmt: skip


def backup_lines(database: str) -> list[str]:
    """Dump the database and archive its filestore into the volume's private directory."""
    d = shlex.quote(BACKUP_DIR)
    dump = shlex.quote(f"{BACKUP_DIR}/{database}.dump")
    tar = shlex.quote(f"{BACKUP_DIR}/{database}-filestore.tar")
    store = shlex.quote(f"{FILESTORE_PATH}/filestore")
    return [
        f"(umask 077 && mkdir -p {d})",
        f"rm -f {dump} {tar}",
        f'echo "backing up {database} before the upgrade"',
        f"pg_dump -Fc --no-owner -f {dump} {shlex.quote(database)}",
        f"mkdir -p {store}",
        # No archive: the database had no filestore, and a restore leaves it without one.
        f"if [ -d {store}/{shlex.quote(database)} ]; then tar -C {store} -cf {tar} {shlex.quote(database)}; fi",
    ]


def restore_lines(database: str) -> list[str]:
    """Put the database and the filestore back as they were before the upgrade."""
    dump = shlex.quote(f"{BACKUP_DIR}/{database}.dump")
    tar = shlex.quote(f"{BACKUP_DIR}/{database}-filestore.tar")
    store = shlex.quote(f"{FILESTORE_PATH}/filestore")
    target = shlex.quote(f"{FILESTORE_PATH}/filestore/{database}")
    return [
        f'echo "restoring {database} and its filestore as they were before the upgrade" >&2',
        f"python3 {HELPER_PATH} terminate",
        f"if ! pg_restore --clean --if-exists --no-owner --single-transaction --exit-on-error"
        f" -d {shlex.quote(database)} {dump}; then",
        f'  echo "RESTORE FAILED: the dump of {database} is kept in {BACKUP_DIR}" >&2',
        "  exit 2",
        "fi",
        f"rm -rf {target}",
        f"if [ -f {tar} ]; then tar -C {store} -xf {tar}; fi",
    ]


def failed_module_line() -> str:
    """The module Odoo was loading when it stopped: its last `Loading module NAME (i/n)` line."""
    return f"failed=\"$(sed -n 's/.*[Ll]oading module \\([A-Za-z0-9_]*\\) (.*/\\1/p' {LOG_PATH} | tail -n 1)\""


def upgrade_script(database: str, container_name: str, *, production: bool, conf: bool = True) -> str:
    """The one-shot's `/bin/sh` script (see the module's docstring for the rule)."""
    q = shlex.quote
    argv = odoo_upgrade_argv(database, "MODULES", conf=conf)
    upgrade = " ".join('"$modules"' if a == "MODULES" else q(a) for a in argv)
    lines = [
        "set -eu",
        f"python3 {HELPER_PATH} terminate",
        f'modules="$(python3 {HELPER_PATH} plan {STATE_PATH})"',
        'if [ -z "$modules" ]; then',
        f"  echo {q(f'{database}: no module to upgrade; recording the state')}",
        f"  python3 {HELPER_PATH} record {STATE_PATH}",
        "  exit 0",
        "fi",
        f'echo "{database}: upgrading $modules"',
    ]
    if production:
        lines += backup_lines(database)
    lines += [
        f"rm -f {LOG_PATH}",
        # POSIX sh has no pipefail: the exit status travels in a file (`set -e` does not stop
        # at the left of `&&`/`||`).
        f"{{ {upgrade} && echo 0 > {LOG_PATH}.code || echo $? > {LOG_PATH}.code; }} 2>&1 | tee {LOG_PATH}",
        f'code="$(cat {LOG_PATH}.code)"',
        'if [ "$code" != 0 ]; then',
        f"  {failed_module_line()}",
    ]
    if production:
        lines += [f"  {line}" for line in restore_lines(database)]
        undone = "the database and filestore were restored; the previous Odoo keeps serving"
    else:
        undone = "the previous Odoo keeps serving"
    message = (
        f"upgrade of {database} failed (odoo exit $code) while loading module ${{failed:-unknown}}: "
        f"{undone}; read \\`docker logs {container_name}\\`"
    )
    lines += [
        f'  echo "{message}" >&2',
        "  exit 1",
        "fi",
        f"python3 {HELPER_PATH} record {STATE_PATH}",
    ]
    if production:
        lines.append(f"rm -f {q(f'{BACKUP_DIR}/{database}.dump')} {q(f'{BACKUP_DIR}/{database}-filestore.tar')}")
    lines.append(f'echo "{database}: upgraded $modules"')
    return "\n".join(lines) + "\n"
