"""odoo.conf of an environment, as a pure function.

The hardening every multi-tenant Odoo needs: the database manager hidden (`list_db = False`), the
server restricted to exactly its own database (`dbfilter = ^name$`), `proxy_mode` on behind
Traefik, and a master password (`admin_passwd`) that nobody chose and nobody sees.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from oduflow_iac import naming

ODOO_CONF_PATH = "/etc/odoo/odoo.conf"
FILESTORE_PATH = "/var/lib/odoo"
ADDONS_ROOT = "/mnt/extra-addons"

# Options an environment may not override: they are what keeps tenants apart.
PROTECTED_OPTIONS = frozenset({"db_name", "dbfilter", "admin_passwd", "db_host", "db_user", "db_password"})


def dbfilter_for(database: str) -> str:
    """A filter that matches exactly one database name (regex metacharacters escaped)."""
    return f"^{re.escape(database)}$"


def _value(v: str | int | float | bool) -> str:
    return str(v) if not isinstance(v, bool) else ("True" if v else "False")


def render_odoo_conf(
    *,
    database: str,
    admin_passwd: str,
    workers: int,
    memory_mb: int,
    addons_paths: list[str],
    options: Mapping[str, str | int | float | bool] | None = None,
) -> str:
    """The [options] section. Database host and credentials are left to the official image's
    HOST/PORT/USER/PASSWORD variables so the password lives in one secret place."""
    # Memory limits per worker: Odoo's defaults are sized for 2 GB+ hosts; keep the soft limit
    # under the container's share so Odoo recycles a worker before the kernel kills it.
    per_worker = max(memory_mb // max(workers + 1, 1), 256)
    conf: dict[str, str | int | float | bool] = {
        "db_name": database,
        "dbfilter": dbfilter_for(database),
        "list_db": False,
        "proxy_mode": True,
        "admin_passwd": admin_passwd,
        "data_dir": FILESTORE_PATH,
        "workers": workers,
        "max_cron_threads": 1 if workers else 0,
        "gevent_port": naming.ODOO_LONGPOLLING_PORT,
        "limit_memory_soft": per_worker * 1024 * 1024,
        "limit_memory_hard": per_worker * 1024 * 1024 * 5 // 4,
        "without_demo": "all",
    }
    if addons_paths:
        conf["addons_path"] = ",".join(addons_paths)
    for key, value in (options or {}).items():
        if key not in PROTECTED_OPTIONS:
            conf[key] = value
    lines = ["[options]"] + [f"{k} = {_value(v)}" for k, v in conf.items()]
    return "\n".join(lines) + "\n"


def parse_odoo_conf(text: str) -> dict[str, str]:
    """`key = value` pairs of the [options] section (what Odoo's own config parser reads)."""
    out: dict[str, str] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if section == "options" and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out
