"""Oduflow's own oduflow.toml, loaded unchanged.

Read for behaviour from the released Oduflow package (PyPI `oduflow` 1.89.0: `oduflow/settings.py`,
`Settings.from_raw`; `oduflow/config_schema.py`, the key set of every section; and the commented
`oduflow/templates/oduflow.toml` it writes on first run). Nothing is copied; this module decides,
key by key, what such a file means here:

- sections that configure Oduflow's server process (`SERVER_SECTIONS`) are accepted and ignored;
  `[server]` is shared: its scalar keys are Oduflow's (ignored), its tables `[server.NAME]` are
  this project's Docker hosts (config/servers.py);
- team keys of Oduflow's server features (coding agent, image registry) are accepted and ignored,
  with a notice when they switch something on that oduflow-iac does not provide;
- Oduflow's "empty means unset" values (`auth_token = ""`, `public_scheme = ""`, `0` slots or
  quotas for "unlimited" / "off") and its defaults (`port_range` [50000, 50100), `hostname`
  `oduflow.<base_domain>`, a scheme before the hostname) are applied as Oduflow applies them;
- `[routing].acme_email` is mapped to `platform.acme_email`;
- Oduflow's `[backup]` (its production WAL archive: `bucket`, `access_key`, ...) is not what
  `[backup]` configures here (nightly dumps per team, `bucket_prefix` and `region`): its keys are
  ignored with a notice saying so, never echoing a value.

`adapt(raw, shown)` returns the document oduflow-iac validates and the notices (one `Problem` per
key that is accepted but cannot be honoured). docs/configuration.md lists the same decisions.
"""

from __future__ import annotations

import re
from typing import Any

from oduflow_iac.errors import Problem

# Oduflow 1.89.0, Settings.from_raw: the tables of its server. `template_sync` and `admin` are
# read there too; `route` holds its extra Traefik routes.
SERVER_SECTIONS = frozenset(
    {
        "server",
        "admin",
        "routing",
        "route",
        "database",
        "storage",
        "lifecycle",
        "template_sync",
        "agent",
        "production",
    }
)

# Oduflow's [server] (config_schema.py, group "server"; `host` is an alias of `bind`): scalars only,
# so they never clash with the `[server.NAME]` tables of oduflow-iac.
ODUFLOW_SERVER_KEYS = frozenset(
    {"bind", "host", "port", "allow_local_path", "allow_insecure_http", "trace", "disable_telemetry", "agent_feedback"}
)

# Team keys of Oduflow's server features that have no counterpart here.
SERVER_TEAM_KEYS = frozenset({"agent_enabled", "agent_default", "agent_env", "image_registry"})

# Oduflow's [backup] (config_schema.py, group "backup"): production WAL-G archive and snapshots.
ODUFLOW_BACKUP_KEYS = frozenset(
    {
        "bucket",
        "access_key",
        "secret_key",
        "endpoint",
        "region",
        "prefix",
        "snapshot_time",
        "basebackup_time",
        "keep",
        "walg_keep_full",
        "upload_threads",
    }
)
# What [backup] takes here (model.Backup); `region` is common to both.
OWN_BACKUP_KEYS = frozenset({"bucket_prefix", "region", "schedule", "retention"})

# Oduflow's defaults (settings.py): a team without port_range gets [50000, 50100].
DEFAULT_PORT_RANGE = (50000, 50100)
# `environment_slots = 0` is "unlimited" in Oduflow; here the port range is the only limit.
UNLIMITED_SLOTS = 65535

_EMPTY_IS_UNSET = ("auth_token", "production_token", "ui_password", "public_scheme", "base_domain")
_ZERO_IS_OFF = ("db_quota_gb", "disk_quota_gb")
_SCHEME = re.compile(r"^https?://", re.IGNORECASE)


def adapt(raw: dict[str, Any], shown: str) -> tuple[dict[str, Any], list[Problem]]:
    """The part of `raw` oduflow-iac validates, with Oduflow's conventions applied, and the
    notices for what is accepted but not honoured. `raw` is not modified."""
    notices: list[Problem] = []
    owned = {k: v for k, v in raw.items() if k not in SERVER_SECTIONS}
    servers = _servers(raw.get("server"), shown, notices)
    if servers is not None:
        owned["server"] = servers

    routing = raw.get("routing")
    if isinstance(routing, dict) and isinstance(routing.get("acme_email"), str) and routing["acme_email"]:
        platform = owned.get("platform")
        if platform is None or (isinstance(platform, dict) and "acme_email" not in platform):
            owned["platform"] = {**(platform or {}), "acme_email": routing["acme_email"]}

    backup = owned.get("backup")
    if isinstance(backup, dict):
        theirs = sorted(k for k in backup if k in ODUFLOW_BACKUP_KEYS - OWN_BACKUP_KEYS)
        if theirs:
            ours = {k: v for k, v in backup.items() if k not in ODUFLOW_BACKUP_KEYS - OWN_BACKUP_KEYS}
            keys = ", ".join(theirs)
            if set(ours) <= {"region"}:
                del owned["backup"]
                notices.append(
                    Problem(
                        shown,
                        "backup",
                        f"Oduflow's production backups ({keys}) are not run by oduflow-iac: ignored; "
                        "nightly backups here are `bucket_prefix` and `region` (docs/configuration.md)",
                    )
                )
            else:
                owned["backup"] = ours
                notices.append(
                    Problem(shown, "backup", f"{keys}: keys of Oduflow's production backups, not used here: ignored")
                )

    teams = owned.get("team")
    if isinstance(teams, dict):
        owned["team"] = {
            team_id: _team(str(team_id), table, shown, notices) if isinstance(table, dict) else table
            for team_id, table in teams.items()
        }
    return owned, notices


def _servers(table: Any, shown: str, notices: list[Problem]) -> Any:
    """`[server]` is two things: Oduflow's server process (scalar keys, ignored) and oduflow-iac's
    Docker hosts (`[server.NAME]` tables, config/servers.py). Tables are kept; a scalar that is not
    one of Oduflow's keys (`ODUFLOW_SERVER_KEYS`) may be an older Oduflow's or a server written
    without its name: ignored, with a notice."""
    if not isinstance(table, dict):
        return table
    for key, value in table.items():
        if not isinstance(value, dict) and key not in ODUFLOW_SERVER_KEYS:
            notices.append(
                Problem(
                    shown,
                    f"server.{key}",
                    "not a key of Oduflow's [server] (ignored); a Docker host is a table [server.NAME]",
                )
            )
    kept = {k: v for k, v in table.items() if isinstance(v, dict)}
    return kept or None


def _team(team_id: str, raw: dict[str, Any], shown: str, notices: list[Problem]) -> dict[str, Any]:
    prefix = f"team.{team_id}"
    team = {k: v for k, v in raw.items() if k not in SERVER_TEAM_KEYS}
    if raw.get("agent_enabled") is True:
        notices.append(
            Problem(shown, f"{prefix}.agent_enabled", "Oduflow's coding agent is not part of oduflow-iac: ignored")
        )
    if raw.get("image_registry"):
        notices.append(
            Problem(shown, f"{prefix}.image_registry", "Oduflow's image builds are not part of oduflow-iac: ignored")
        )
    for key in _EMPTY_IS_UNSET:
        if team.get(key) == "":
            del team[key]
    for key in _ZERO_IS_OFF:
        if team.get(key) == 0 and not isinstance(team.get(key), bool):
            del team[key]
    if team.get("environment_slots") == 0 and not isinstance(team.get("environment_slots"), bool):
        team["environment_slots"] = UNLIMITED_SLOTS
    if team.get("service_slots") == 0 and not isinstance(team.get("service_slots"), bool):
        del team["service_slots"]
    for key in ("hostname", "base_domain"):
        value = team.get(key)
        if isinstance(value, str) and _SCHEME.match(value):
            team[key] = _SCHEME.sub("", value).rstrip("/")
    if "hostname" not in team and isinstance(team.get("base_domain"), str):
        team["hostname"] = f"oduflow.{team['base_domain']}"
    if "port_range" not in team:
        team["port_range"] = list(DEFAULT_PORT_RANGE)
    if "ui_password" not in team:
        notices.append(
            Problem(
                shown,
                f"{prefix}.ui_password",
                "not set (Oduflow would generate one): the team's environments get no basic auth; "
                f'set it, e.g. ui_password = "secret:team{team_id}-ui-password"',
            )
        )
    return team
