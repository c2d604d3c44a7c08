"""odoo.conf of an environment, as pure functions: what an environment may set, rendering, parsing.

The hardening every multi-tenant Odoo needs: the database manager hidden (`list_db = False`), the
server restricted to exactly its own database (`dbfilter = ^name$`), `proxy_mode` on behind
Traefik, and a master password (`admin_passwd`) that nobody chose and nobody sees.

An environment adds options only from `ENVIRONMENT_OPTIONS`, a typed allow-list: everything else
either keeps tenants apart or points Odoo at files, hosts and ports the platform decides
(`PLATFORM_OPTIONS` says why for each). The config loader refuses the rest with one line naming the
key; `render_odoo_conf` refuses them again, so a program built without the loader cannot slip one in.

Parsing follows Odoo's own reader (odoo/odoo, odoo/tools/config.py, `configmanager.load`):
`configparser.RawConfigParser()` with its defaults, i.e. keys lower-cased (`LIST_DB` is `list_db`),
no interpolation, and a duplicated option or section an error that stops Odoo from starting.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from oduflow_iac import naming

ODOO_CONF_PATH = "/etc/odoo/odoo.conf"
FILESTORE_PATH = "/var/lib/odoo"
ADDONS_ROOT = "/mnt/extra-addons"

OptionValue = str | int | float | bool

# C0 controls, DEL and C1 controls: a newline starts a new odoo.conf line (or shell command, or
# label), and the others have no business in a configuration value.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def control_character(text: str) -> str | None:
    """The first control character of `text` as `U+000A`, or None."""
    match = _CONTROL.search(text)
    return f"U+{ord(match.group()):04X}" if match else None


# --------------------------------------------------------------------------------------------
# What an environment may set


@dataclass(frozen=True)
class OptionSpec:
    """One option an environment may set: its type as the docs show it, why it is safe, and the
    check of a value (None when fine, else why not)."""

    type: str
    reason: str
    check: Callable[[OptionValue], str | None]


def _int(low: int, high: int) -> Callable[[OptionValue], str | None]:
    def check(value: OptionValue) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"must be an integer from {low} to {high}"
        return None

    return check


def _float(low: float, high: float) -> Callable[[OptionValue], str | None]:
    def check(value: OptionValue) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
            return f"must be a number above {low:g} and at most {high:g}"
        return None

    return check


def _bool(value: OptionValue) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _choice(*choices: str) -> Callable[[OptionValue], str | None]:
    def check(value: OptionValue) -> str | None:
        return None if isinstance(value, str) and value in choices else f"must be one of {', '.join(choices)}"

    return check


def _text(pattern: str, what: str, *, also_bool: bool = False) -> Callable[[OptionValue], str | None]:
    compiled = re.compile(pattern)

    def check(value: OptionValue) -> str | None:
        if also_bool and isinstance(value, bool):
            return None
        if not isinstance(value, str) or not compiled.fullmatch(value):
            return f"must be {what}"
        return None

    return check


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "NOTSET")
_HANDLER = rf"[A-Za-z0-9_.]*:(?:{'|'.join(_LOG_LEVELS)})"
_MODULE = r"[a-z0-9_]+"
_HOSTNAME = (
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)

ENVIRONMENT_OPTIONS: dict[str, OptionSpec] = {
    "limit_time_cpu": OptionSpec(
        "integer 1-86400",
        "CPU seconds a request may use before its worker is recycled: this environment's own workers",
        _int(1, 86400),
    ),
    "limit_time_real": OptionSpec(
        "integer 1-86400", "wall-clock seconds a request may take: this environment's own workers", _int(1, 86400)
    ),
    "limit_time_real_cron": OptionSpec(
        "integer -1-86400",
        "wall-clock seconds of a cron job (-1: as limit_time_real): its own cron threads",
        _int(-1, 86400),
    ),
    "limit_request": OptionSpec(
        "integer 1-10000000", "requests a worker serves before it is recycled: its own workers", _int(1, 10_000_000)
    ),
    "max_cron_threads": OptionSpec(
        "integer 0-4",
        "cron threads of this environment; each holds a connection counted against the team role's limit",
        _int(0, 4),
    ),
    "log_level": OptionSpec(
        "one of Odoo's levels",
        "verbosity of this container's own log",
        _choice(
            "info",
            "debug_rpc",
            "warn",
            "test",
            "critical",
            "runbot",
            "debug_sql",
            "error",
            "debug",
            "debug_rpc_answer",
            "notset",
        ),
    ),
    "log_handler": OptionSpec(
        "`PREFIX:LEVEL[,...]`",
        "per-logger levels of this container's own log",
        _text(rf"{_HANDLER}(?:,{_HANDLER})*", "`PREFIX:LEVEL` entries separated by commas"),
    ),
    "without_demo": OptionSpec(
        "true, false, `all` or module names",
        "whether modules installed later load demo data: this database only",
        _text(
            rf"all|{_MODULE}(?:,{_MODULE})*", "true, false, `all` or module names separated by commas", also_bool=True
        ),
    ),
    "transient_age_limit": OptionSpec(
        "number of hours, above 0 and up to 8760",
        "how long wizard records live in this database",
        _float(0, 8760),
    ),
    "email_from": OptionSpec(
        "e-mail address",
        "default sender of this environment's mail",
        _text(r"[A-Za-z0-9._%+'-]+@" + _HOSTNAME, "an e-mail address"),
    ),
    "smtp_server": OptionSpec(
        "hostname",
        "outgoing mail server (containers have egress anyway); credentials belong in the database's mail server record",
        _text(_HOSTNAME, "a hostname"),
    ),
    "smtp_port": OptionSpec("integer 1-65535", "port of that server", _int(1, 65535)),
    "smtp_ssl": OptionSpec("boolean", "STARTTLS to that server", _bool),
}

_REASON_ISOLATION = "it keeps tenants apart"
_REASON_PORTS = "Traefik reaches Odoo on fixed ports of the container"
_REASON_FILES = "it points Odoo at files of the container the platform lays out"
# Options the platform decides, with the reason an environment cannot set them. Every other name
# that is not in ENVIRONMENT_OPTIONS is refused as well; these only get a precise reason.
PLATFORM_OPTIONS: dict[str, str] = {
    "admin_passwd": "the master password is random and secret, " + _REASON_ISOLATION,
    "dbfilter": "it restricts the server to this environment's database, " + _REASON_ISOLATION,
    "list_db": "the database manager stays off, " + _REASON_ISOLATION,
    "proxy_mode": "it must stay on behind Traefik (client addresses and scheme come from the proxy)",
    "db_name": "the database is the environment's own",
    "db_host": "the database connection comes from the platform (the password would go to that host)",
    "db_port": "the database connection comes from the platform",
    "db_user": "the database role is the team's",
    "db_password": "the database password is the team role's secret",
    "db_sslmode": "the database connection comes from the platform",
    "db_maxconn": "connections are bounded by the team role's limit",
    "db_template": "databases are created by the platform",
    "db_replica_host": "the database connection comes from the platform",
    "db_replica_port": "the database connection comes from the platform",
    "pg_path": "it names executables Odoo runs",
    "log_db": "it writes log records into another database",
    "log_db_level": "it belongs to log_db",
    "data_dir": "the filestore is the environment's volume; " + _REASON_FILES,
    "addons_path": "addons come from the repository cascade; " + _REASON_FILES,
    "server_wide_modules": "server-wide modules load before dbfilter selects a database",
    "upgrade_path": _REASON_FILES,
    "pre_upgrade_scripts": _REASON_FILES,
    "geoip_database": _REASON_FILES,
    "geoip_city_db": _REASON_FILES,
    "geoip_country_db": _REASON_FILES,
    "import_partial": _REASON_FILES,
    "pidfile": _REASON_FILES,
    "logfile": "the log goes to the container's output, where the platform collects it",
    "syslog": "the log goes to the container's output, where the platform collects it",
    "dev_mode": "developer mode enables the interactive debugger and reloading (code execution)",
    "http_interface": _REASON_PORTS,
    "http_port": _REASON_PORTS,
    "http_enable": _REASON_PORTS,
    "gevent_port": _REASON_PORTS,
    "longpolling_port": _REASON_PORTS,
    "x_sendfile": "it needs a matching proxy configuration Traefik does not have",
    "workers": "set it with the environment's `workers` key (it sizes the memory limits too)",
    "limit_memory_soft": "derived from the environment's `memory_mb`",
    "limit_memory_hard": "derived from the environment's `memory_mb`",
}


def option_problem(key: str, value: OptionValue) -> str | None:
    """Why an environment may not set odoo.conf option `key` to `value`, or None. One line, and it
    repeats the key (never the value: an option value may be anything the user typed)."""
    bad = control_character(key)
    if bad:
        return f"option name contains the control character {bad}"
    name = key.lower()  # what Odoo's parser makes of it
    shown = key if name == key else f"{key} (Odoo reads it as {name})"
    if name in PLATFORM_OPTIONS:
        return f"{shown} is set by the platform: {PLATFORM_OPTIONS[name]}"
    if name.startswith("db_"):
        return f"{shown} is set by the platform: the database connection is the platform's"
    spec = ENVIRONMENT_OPTIONS.get(name)
    if spec is None:
        return f"{shown} is not an option an environment may set (allowed: {', '.join(ENVIRONMENT_OPTIONS)})"
    if name != key:
        return f"{shown}: write option names in lower case"
    if isinstance(value, str):
        bad = control_character(value)
        if bad:
            return f"{key} contains the control character {bad}"
        if value != value.strip():
            return f"{key} has surrounding whitespace (Odoo's parser would drop it)"
    problem = spec.check(value)
    return f"{key} {problem} ({spec.type})" if problem else None


# --------------------------------------------------------------------------------------------
# Rendering


def dbfilter_for(database: str) -> str:
    """A filter that matches exactly one database name (regex metacharacters escaped)."""
    return f"^{re.escape(database)}$"


def _value(v: OptionValue) -> str:
    return str(v) if not isinstance(v, bool) else ("True" if v else "False")


def is_mail_server_option(key: str) -> bool:
    """An option naming Odoo's outgoing mail server or its credentials (`smtp_server`, `smtp_port`,
    `smtp_ssl`, `smtp_user`, `smtp_password`, `smtp_ssl_*` in odoo/tools/config.py), in any
    spelling Odoo's parser accepts (it lower-cases keys)."""
    return key.strip().lower().startswith("smtp")


def mail_catcher_options(host: str) -> dict[str, OptionValue]:
    """odoo.conf of a non-production environment: every outgoing mail to its team's catcher, plain
    SMTP on the team network, no credentials."""
    return {"smtp_server": host, "smtp_port": naming.MAIL_CATCHER_SMTP_PORT, "smtp_ssl": False}


# Every option render_odoo_conf itself writes (the hardening policy accepts these and the allowed ones).
RENDERED_OPTIONS = frozenset(
    {
        "db_name",
        "dbfilter",
        "list_db",
        "proxy_mode",
        "admin_passwd",
        "data_dir",
        "workers",
        "max_cron_threads",
        "gevent_port",
        "limit_memory_soft",
        "limit_memory_hard",
        "without_demo",
        "addons_path",
        "smtp_server",
        "smtp_port",
        "smtp_ssl",
    }
)


def render_odoo_conf(
    *,
    database: str,
    admin_passwd: str,
    workers: int,
    memory_mb: int,
    addons_paths: list[str],
    options: Mapping[str, OptionValue] | None = None,
    mail_catcher: str | None = None,
) -> str:
    """The [options] section. Database host and credentials are left to the official image's
    HOST/PORT/USER/PASSWORD variables so the password lives in one secret place.

    Raises ValueError for an option an environment may not set or a value that would not read back
    as written (control characters, surrounding whitespace): the output is always what
    `parse_odoo_conf` and Odoo read. With `mail_catcher` (every non-production environment), mail
    goes to that host (`mail_catcher_options`), and an option of the environment's own naming a
    mail server is refused (ValueError) as well."""
    # Memory limits per worker: Odoo's defaults are sized for 2 GB+ hosts; keep the soft limit
    # under the container's share so Odoo recycles a worker before the kernel kills it.
    per_worker = max(memory_mb // max(workers + 1, 1), 256)
    conf: dict[str, OptionValue] = {
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
    if mail_catcher is not None:
        conf |= mail_catcher_options(mail_catcher)
    for key, value in conf.items():
        text = _value(value)
        if control_character(text) or text != text.strip():
            raise ValueError(f"odoo.conf option {key} would not read back as written")
    for key, value in (options or {}).items():
        problem = option_problem(key, value)
        if problem:
            raise ValueError(f"odoo.conf: {problem}")
        if mail_catcher is not None and is_mail_server_option(key):
            raise ValueError(f"odoo.conf: {key}: a non-production environment's mail goes to its team's mail catcher")
        conf[key] = value
    lines = ["[options]"] + [f"{k} = {_value(v)}" for k, v in conf.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Parsing


class OdooConfError(ValueError):
    """Odoo would refuse this odoo.conf (its parser raises); the message never quotes a value."""


def parse_odoo_conf(text: str) -> dict[str, str]:
    """The [options] section as Odoo reads it: `RawConfigParser()` with its defaults (keys
    lower-cased, `=` or `:`, `#`/`;` comments, DEFAULT's keys inherited, duplicates an error).
    A file without [options] gives {} (Odoo then runs on its defaults). Raises OdooConfError."""
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text, source="odoo.conf")
    except configparser.DuplicateOptionError as exc:
        raise OdooConfError(f"option {exc.option} appears twice in section [{exc.section}]") from None
    except configparser.DuplicateSectionError as exc:
        raise OdooConfError(f"section [{exc.section}] appears twice") from None
    except configparser.MissingSectionHeaderError as exc:
        raise OdooConfError(f"line {exc.lineno} is outside any section") from None
    except configparser.ParsingError as exc:
        lines = ", ".join(str(n) for n, _ in exc.errors)
        raise OdooConfError(f"line {lines} is not `key = value`") from None
    except configparser.Error as exc:  # pragma: no cover - every reading error is one of the above
        raise OdooConfError(type(exc).__name__) from None
    if not parser.has_section("options"):
        return {}
    return dict(parser.items("options"))
