"""The typed oduflow.toml model and its loader.

`load_config(path)` reads the file, validates it with pydantic, applies the cross-field rules that
pydantic cannot express (overlapping port ranges, duplicate hostnames, database-name collisions ...),
assigns stable host ports (see `ports.py`) and returns a `Config`. Any problem raises `ConfigError`
with one line per problem naming the file and the key path.

- `model.py`: every section and key (pydantic), with the rules a single key can express;
- `checks.py`: rules across keys and teams;
- `servers.py`: `[server.NAME]`, the placement of teams and environments on servers;
- `load.py`: reading the file and turning validation errors into problems.

The file of Oduflow itself is accepted unchanged: its `[team.N]` keys are modelled here and the
sections that belong to the Oduflow server alone are accepted and ignored (`IGNORED_SECTIONS`).
"""

from __future__ import annotations

from oduflow_iac.config.checks import (
    count_by_type,
    cross_checks,
)
from oduflow_iac.config.load import (
    load_config,
    parse_config,
)
from oduflow_iac.config.model import (
    ENV_TYPES,
    IGNORED_SECTIONS,
    MAX_BRANCH_LENGTH,
    PORT_MAX,
    PORT_MIN,
    SECRET_PREFIX,
    SECRETS_NAMESPACE,
    AddonOverride,
    AddonRepo,
    Backup,
    Config,
    Dns,
    Environment,
    EnvType,
    Organisation,
    Platform,
    Quota,
    Retention,
    SecretValue,
    Team,
    TeamDatabase,
    Template,
    TypeDefaults,
    branch_problem,
)
from oduflow_iac.config.servers import Capacity, Server
from oduflow_iac.errors import ConfigError, Problem

__all__ = [
    "ENV_TYPES",
    "IGNORED_SECTIONS",
    "MAX_BRANCH_LENGTH",
    "PORT_MAX",
    "PORT_MIN",
    "SECRETS_NAMESPACE",
    "SECRET_PREFIX",
    "AddonOverride",
    "AddonRepo",
    "Backup",
    "Capacity",
    "Config",
    "ConfigError",
    "Dns",
    "EnvType",
    "Environment",
    "Organisation",
    "Platform",
    "Problem",
    "Quota",
    "Retention",
    "SecretValue",
    "Server",
    "Team",
    "TeamDatabase",
    "Template",
    "TypeDefaults",
    "branch_problem",
    "count_by_type",
    "cross_checks",
    "load_config",
    "parse_config",
]
