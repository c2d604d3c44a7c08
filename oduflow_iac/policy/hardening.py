"""Odoo hardening: what every Odoo container's odoo.conf must say (and where its mail goes)."""

from __future__ import annotations

import re
from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from oduflow_iac import naming, odoo_conf
from oduflow_iac.policy.common import CONTAINER, ROLE_ODOO, SecretAwareArgs, _labels, _name, _production

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


# --------------------------------------------------------------------------------------------
# mail-caught

ROLE_MAIL_CATCHER = "mail-catcher"
# Odoo's command line (optparse, odoo/tools/config.py) takes `--smtp`, `--smtp-port`, `--smtp-ssl`,
# `--smtp-user`, `--smtp-password`, `--smtp-ssl-*`, and any unambiguous prefix of a long option.
_SMTP_FLAG_PREFIX = "--sm"
_FALSE_SPELLINGS = ("false", "0", "no", "off", "")


def _odoo_conf_upload(props: Any) -> str | None:
    for upload in props.get("uploads") or []:
        if upload.get("file") == odoo_conf.ODOO_CONF_PATH:
            content = upload.get("content")
            return str(content) if content else None
    return None


def _behind_team_auth(props: Any, team: str) -> bool:
    """Whether the container's routers carry its team's basic auth: what the platform gives every
    non-production environment (the fallback when the policy has no config)."""
    middleware = f"{naming.team_auth_middleware_name(team)}@docker"
    for entry in props.get("labels") or []:
        key = str(entry.get("label") or "")
        routed = key.startswith("traefik.http.routers.") and key.endswith(".middlewares")
        if routed and middleware in str(entry.get("value") or "").split(","):
            return True
    return False


def _mail_problems(options: dict[str, str], catcher: str | None) -> list[str]:
    """Why this odoo.conf sends mail elsewhere than to `catcher` (its team's), or []."""
    problems = []
    for key, value in options.items():
        if not odoo_conf.is_mail_server_option(key) or key in ("smtp_server", "smtp_port"):
            continue
        if key == "smtp_ssl":
            if value.strip().lower() not in _FALSE_SPELLINGS:
                problems.append(f"sets smtp_ssl = {value} (the catcher takes plain SMTP on the team network)")
        else:
            problems.append(f"sets {key}, a mail server option of its own")
    server = options.get("smtp_server")
    if catcher is None:
        problems.append("has no mail catcher in its team (no container with oduflow.role = mail-catcher)")
    elif server != catcher:
        where = f"smtp_server = {server}" if server else "no smtp_server"
        problems.append(f"has {where}, not its team's mail catcher {catcher}")
    port = options.get("smtp_port")
    if port is not None and port.strip() != str(naming.MAIL_CATCHER_SMTP_PORT):
        problems.append(f"has smtp_port = {port}, not the catcher's {naming.MAIL_CATCHER_SMTP_PORT}")
    return problems


def validate_mail_caught(args: StackValidationArgs, report: ReportViolation) -> None:
    """No non-production environment has an outgoing mail server of its own: its odoo.conf, read
    as Odoo reads it (keys in any case), sends to its team's mail catcher (smtp_server = the
    catcher's container, smtp_port 1025, no TLS, no user or password), and its command line names
    no `--smtp*` option. Production is left alone. Which environments are production comes from the
    config; without it, an environment behind its team's basic auth is one that is not."""
    config = args.get_config()
    configured = "production" in config
    production = {(p.team, p.branch) for p in _production(config)}
    catchers: dict[str, str] = {}
    odoos = []
    for r in args.resources:
        if r.resource_type != CONTAINER:
            continue
        found = _labels(r.props, naming.LABEL_ROLE, naming.LABEL_TEAM, naming.LABEL_ENV)
        role, team = found.get(naming.LABEL_ROLE), found.get(naming.LABEL_TEAM)
        if role == ROLE_MAIL_CATCHER and team:
            catchers[team] = _name(r.props, r.name)
        elif role == ROLE_ODOO and team and found.get(naming.LABEL_ENV):
            odoos.append((r, team, found[naming.LABEL_ENV]))
    for r, team, branch in odoos:
        if (team, branch) in production or (not configured and not _behind_team_auth(r.props, team)):
            continue
        name = _name(r.props, r.name)
        for arg in [str(a) for key in ("entrypoints", "command") for a in r.props.get(key) or []]:
            if arg.startswith(_SMTP_FLAG_PREFIX):
                report(
                    f"non-production Odoo {name} sets its own mail server on its command line ({arg.split('=')[0]})",
                    r.urn,
                )
        content = _odoo_conf_upload(r.props)
        if content is None:
            continue  # odoo-hardening reports a container without odoo.conf
        try:
            options = odoo_conf.parse_odoo_conf(content)
        except odoo_conf.OdooConfError:
            continue  # odoo-hardening reports it
        for problem in _mail_problems(options, catchers.get(team)):
            report(f"non-production Odoo {name} {problem}: its mail must be caught", r.urn)
