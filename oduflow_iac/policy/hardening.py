"""Odoo hardening: what every Odoo container's odoo.conf must say."""

from __future__ import annotations

import re

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
)

from oduflow_iac import naming, odoo_conf
from oduflow_iac.policy.common import CONTAINER, ROLE_ODOO, SecretAwareArgs, _labels, _name

# --------------------------------------------------------------------------------------------
# odoo-hardening

_TRUE = ("True", "true")
_FALSE = ("False", "false")


def _dbfilter_problem(dbfilter: str | None, database: str) -> str | None:
    """Why `dbfilter` does not select exactly `database` (Odoo applies it with `re.match`)."""
    if not dbfilter:
        return "has no dbfilter, so it serves every database on the server"
    if "%h" in dbfilter or "%d" in dbfilter:
        return f"has dbfilter {dbfilter!r}, which depends on the request's host name"
    try:
        pattern = re.compile(dbfilter)
    except re.error:
        return f"has dbfilter {dbfilter!r}, which is not a valid regular expression"
    if not pattern.match(database):
        return f"has dbfilter {dbfilter!r}, which does not match its database {database}"
    swapped = database[:-1] + ("x" if database[-1:] != "x" else "y")
    for other in (
        f"{database}x",
        f"{database}_copy",
        f"x{database}",
        swapped,
        database.replace("_", "-"),
        "postgres",
        "template1",
        "oduflow_other_main",
    ):
        if other != database and pattern.match(other):
            return f"has dbfilter {dbfilter!r}, which also matches {other!r}, not only its database {database}"
    return None


def _is_addons_dir(path: str) -> bool:
    """`/mnt/extra-addons/<one name>`: a repository the environment's fetcher cloned."""
    head, _, leaf = path.rpartition("/")
    return head == odoo_conf.ADDONS_ROOT and leaf not in ("", ".", "..")


def validate_odoo_hardening(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """The odoo.conf uploaded into every Odoo container hides the database manager, serves only the
    environment's database, trusts the proxy, and sets a master password kept secret; it is read the
    way Odoo reads it (`odoo_conf.parse_odoo_conf`: `LIST_DB` is `list_db`, a duplicate is an error)
    and sets no option outside what the platform writes and the environments' allow-list.

    Secretness is known offline only (`SecretAwareArgs`): the engine gives policies secrets as plain
    values without saying they were secret, so under the engine that one check is skipped.
    """
    if args.resource_type != CONTAINER:
        return
    props = args.props
    labels = _labels(props, naming.LABEL_ROLE, naming.LABEL_TEAM, naming.LABEL_ENV)
    if labels.get(naming.LABEL_ROLE) != ROLE_ODOO:
        return
    name = _name(props, args.name)
    index, content = None, None
    for i, upload in enumerate(props.get("uploads") or []):
        if upload.get("file") == odoo_conf.ODOO_CONF_PATH:
            index, content = i, upload.get("content")
    if index is None or not content:
        report(f"Odoo container {name} does not upload {odoo_conf.ODOO_CONF_PATH}", None)
        return
    try:
        options = odoo_conf.parse_odoo_conf(str(content))
    except odoo_conf.OdooConfError as exc:
        report(f"Odoo container {name} has an odoo.conf Odoo refuses to read: {exc}", None)
        return
    for key in options:
        if key not in odoo_conf.RENDERED_OPTIONS and key not in odoo_conf.ENVIRONMENT_OPTIONS:
            reason = odoo_conf.PLATFORM_OPTIONS.get(key, "it is not in the allow-list")
            report(f"Odoo container {name} sets odoo.conf option {key}, which no environment may set: {reason}", None)
    data_dir = options.get("data_dir")
    if data_dir != odoo_conf.FILESTORE_PATH:
        report(f"Odoo container {name} has data_dir = {data_dir}; its filestore is {odoo_conf.FILESTORE_PATH}", None)
    for path in (options.get("addons_path") or "").split(","):
        if path and not _is_addons_dir(path.strip()):
            report(f"Odoo container {name} has addons_path entry {path.strip()} outside {odoo_conf.ADDONS_ROOT}", None)
    list_db = options.get("list_db")
    if list_db not in _FALSE:
        report(f"Odoo container {name} has list_db = {list_db}; the database manager must be off (False)", None)
    proxy_mode = options.get("proxy_mode")
    if proxy_mode not in _TRUE:
        report(f"Odoo container {name} has proxy_mode = {proxy_mode}; behind Traefik it must be True", None)
    team, branch = labels.get(naming.LABEL_TEAM), labels.get(naming.LABEL_ENV)
    database = naming.env_db_name(team, branch) if team and branch else options.get("db_name")
    if not database:
        report(f"Odoo container {name} names no database (no oduflow.team and oduflow.env labels, no db_name)", None)
    else:
        problem = _dbfilter_problem(options.get("dbfilter"), database)
        if problem:
            report(f"Odoo container {name} {problem}", None)
    admin = options.get("admin_passwd")
    if not admin or admin == "admin":
        report(f"Odoo container {name} has no master password (admin_passwd unset or Odoo's default)", None)
    elif isinstance(args, SecretAwareArgs) and not args.is_secret("uploads", index, "content"):
        report(f"Odoo container {name} uploads its master password (admin_passwd) in a value that is not secret", None)
