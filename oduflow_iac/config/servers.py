"""Servers: the Docker hosts teams and environments are placed on (`[server.NAME]`).

A platform is one or more Docker engines, each running its own shared services (PostgreSQL,
Traefik, the socket proxy). `[server.NAME]` declares one: how to reach its engine (`docker_host`),
the public address DNS records of the teams on it point to (`address`) and, optionally, its
`capacity`, a quota the policy `capacity` checks. `team.N.server` places a team (its network, its
PostgreSQL proxy and roles, and every environment that does not say otherwise);
`team.N.environments[i].server` places one environment elsewhere (production on a machine of its own).

A file that declares no server has one, `default` (naming.DEFAULT_SERVER): the engine of
`platform.docker_host`, addressed by `dns.target`. Every configuration written before servers
existed therefore plans exactly as before, and the program keeps every logical name of server
`default` unchanged (zero churn). A platform that grows keeps its first machine as `[server.default]`.

This module holds the models, the pure checks of single values, and the rules across the file
(`placement_problems`); `Config` (model.py) exposes the placement API that calls into here.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from oduflow_iac import naming
from oduflow_iac.errors import Problem

if TYPE_CHECKING:
    from oduflow_iac.config.model import Config, Environment

SERVER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
DOCKER_HOST_SCHEMES = ("unix", "ssh", "tcp")
# What a host part of ssh:// or tcp:// may hold: a DNS name or an IPv4 literal (IPv6 in brackets is
# parsed separately). Nothing an ssh command line or a URL could read as something else.
_HOST_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})$")
_SSH_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]{0,31}$")
# A unix socket path: absolute, of ordinary path characters only (it reaches the Docker CLI, the
# provider and, in `oduflow-iac` commands, a subprocess environment).
_SOCKET_PATH = re.compile(r"^/[A-Za-z0-9._/-]{1,4095}$")


class _ServerModel(BaseModel):
    # As model._Model: unknown keys are errors, types strict.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Capacity(_ServerModel):
    """What a server offers the environments placed on it and the platform's own services."""

    cpu: float = Field(gt=0)
    memory_mb: int = Field(gt=0)
    disk_gb: int = Field(gt=0)


class Server(_ServerModel):
    docker_host: str
    # What the DNS records of the teams and environments on this server point to: an IP address
    # (A/AAAA records) or a hostname (CNAME records). Required for every server but `default` when
    # [dns] is set; `default` falls back to dns.target.
    address: str | None = None
    capacity: Capacity | None = None

    @field_validator("docker_host")
    @classmethod
    def _valid_docker_host(cls, value: str) -> str:
        problem = docker_host_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str | None) -> str | None:
        problem = address_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value


# --------------------------------------------------------------------------------------------
# Single values


def server_name_problem(name: str) -> str | None:
    """Why `name` cannot name a server, or None. It becomes part of logical names (`shared@s2`),
    stack names (`server-s2`) and messages: lower-case letters, digits and `-`, a letter first."""
    if SERVER_NAME.match(name):
        return None
    return "a server name is a lower-case letter then up to 30 lower-case letters, digits or `-`"


def docker_host_problem(value: str) -> str | None:
    """Why `value` is not a Docker host this platform accepts, or None. Only three forms:
    `unix:///absolute/socket/path`, `ssh://[user@]host[:port]` and `tcp://host:port`. The value
    reaches the Docker provider, `DOCKER_HOST` of subprocesses and ssh's command line (tunnel.py):
    anything else (a path after an ssh host, options, a password, shell characters) is refused."""
    if value != value.strip() or any(c.isspace() for c in value):
        return "must not contain whitespace"
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in DOCKER_HOST_SCHEMES:
        return "must be unix:///path/to/docker.sock, ssh://user@host[:port] or tcp://host:port"
    if scheme == "unix":
        if not _SOCKET_PATH.match(rest) or "/../" in f"{rest}/":
            return "a unix:// Docker host is an absolute socket path of letters, digits, `.`, `_`, `-` and `/`"
        return None
    parts = urlsplit(value)
    if parts.password is not None:
        return "must not hold a password (use an SSH key)"
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in value or "#" in value:
        return f"nothing may follow the host of a {scheme}:// Docker host (no path, query or fragment)"
    try:
        port = parts.port
    except ValueError:
        return "the port is not a number from 1 to 65535"
    if port == 0:  # urllib accepts 0; no engine listens there and ssh reads it as "default"
        return "the port is not a number from 1 to 65535"
    host = parts.hostname or ""
    if not _host_ok(host):
        return f"{scheme}:// needs a host name or IP address"
    if scheme == "tcp" and port is None:
        return "a tcp:// Docker host needs its port (tcp://host:2376)"
    user = parts.username
    if scheme == "tcp" and user is not None:
        return "a tcp:// Docker host has no user"
    if user is not None and not _SSH_USER.match(user):
        return "the ssh user is letters, digits, `.`, `_` and `-`, not starting with `-`"
    return None


def _host_ok(host: str) -> bool:
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return bool(_HOST_PART.match(host)) and ".." not in host and not host.endswith("-")


def normalise_docker_host(value: str) -> str:
    """One spelling per engine, to find two servers on one host: the scheme's default parts made
    explicit or dropped (`unix:///var/run//docker.sock/` = `unix:///var/run/docker.sock`,
    `ssh://Deploy@S1.example.:22` = `ssh://s1.example`), host names lower-cased without the
    root's trailing dot. The ssh user is dropped: `deploy@h` and `root@h` log in to the same
    machine and reach the same engine, so two servers spelled that way would be one host counted
    twice (capacity, placement)."""
    scheme, _, rest = value.partition("://")
    if scheme == "unix":
        return f"unix://{posixpath.normpath(rest)}"
    parts = urlsplit(value.rstrip("/"))
    try:
        port = parts.port
    except ValueError:
        port = None
    if scheme == "ssh" and port == 22:
        port = None
    host = (parts.hostname or "").lower().rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def address_problem(value: str) -> str | None:
    """Why `value` cannot be a server's public address, or None: an IP literal or a hostname (it
    becomes the content of DNS records)."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    from oduflow_iac.config.model import _check_hostname  # model imports this module

    try:
        _check_hostname(value)
    except ValueError:
        return f"{value!r} is neither an IP address nor a hostname"
    return None


def _address_fits_record(address: str, record_type: str) -> str | None:
    """Why a DNS record of `record_type` cannot point at `address`, or None."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if record_type == "A" and (ip is None or ip.version != 4):
        return f'{address!r} is not an IPv4 address, which dns.record_type "A" needs'
    if record_type == "AAAA" and (ip is None or ip.version != 6):
        return f'{address!r} is not an IPv6 address, which dns.record_type "AAAA" needs'
    if record_type == "CNAME" and ip is not None:
        return f'{address!r} is an IP address; dns.record_type "CNAME" needs a hostname'
    return None


# --------------------------------------------------------------------------------------------
# The placement of a whole file


def effective_servers(config: Config) -> dict[str, Server]:
    """The declared servers, or the implicit `default` one. The address of server `default` falls
    back to `dns.target`: the DNS records of a one-server platform point where they always did."""
    target = config.dns.target if config.dns is not None else None
    if not config.server:
        # Not validated again: platform.docker_host was, as a Platform key.
        return {naming.DEFAULT_SERVER: Server.model_construct(docker_host=config.platform.docker_host, address=target)}
    servers = dict(config.server)
    default = servers.get(naming.DEFAULT_SERVER)
    if default is not None and default.address is None and target is not None:
        servers[naming.DEFAULT_SERVER] = default.model_copy(update={"address": target})
    return servers


def configured_team_server(config: Config, team_id: str) -> str:
    """The server a team is placed on by the file (moves aside)."""
    own = config.team[team_id].server
    if own is not None:
        return own
    names = list(config.servers)
    if len(names) != 1:  # the loader refuses this; a Config built by hand may not have been checked
        raise KeyError(f"team {team_id} has no server and {len(names)} servers are declared")
    return names[0]


def configured_env_server(config: Config, team_id: str, env: Environment) -> str:
    return env.server if env.server is not None else configured_team_server(config, team_id)


@dataclass(frozen=True)
class PlacementIndex:
    """Where everything is, computed once per Config: each team's servers (its own first) and each
    server's environments in file order."""

    team_servers: dict[str, list[str]]
    by_server: dict[str, list[tuple[str, Environment]]]


def placement_index(config: Config) -> PlacementIndex:
    team_servers: dict[str, list[str]] = {}
    by_server: dict[str, list[tuple[str, Environment]]] = {}
    team_moves = {m.team: m.to for m in config.moves if m.branch is None}
    for team_id, team in config.teams:
        own = config.team_server(team_id)
        others: set[str] = set()
        for env in team.environments:
            for name in config.env_servers(team_id, env):
                by_server.setdefault(name, []).append((team_id, env))
                others.add(name)
        if team_id in team_moves:
            others.add(team_moves[team_id])
        team_servers[team_id] = [own, *sorted(others - {own})]
    return PlacementIndex(team_servers, by_server)


def placement_problems(config: Config, shown: str) -> list[Problem]:
    """Every rule across `[server.*]` and the placements: names, one engine per server, known
    servers, a server for every team when there are several, and addresses DNS can use."""
    problems: list[Problem] = []

    def add(key: str, message: str) -> None:
        problems.append(Problem(shown, key, message))

    declared = config.server
    engines: dict[str, str] = {}
    for name, server in declared.items():
        problem = server_name_problem(name)
        if problem:
            add(f"server.{name}", problem)
        engine = normalise_docker_host(server.docker_host)
        if engine in engines:
            add(f"server.{name}.docker_host", f"{server.docker_host!r} is the Docker host of server.{engines[engine]}")
        else:
            engines[engine] = name
    if declared and "docker_host" in config.platform.model_fields_set:
        add(
            "platform.docker_host",
            "not used when [server.NAME] tables are declared: set each server's docker_host "
            "(the first machine is usually [server.default])",
        )
    if config.dns is not None:
        for name, server in declared.items():
            if server.address is None and name != naming.DEFAULT_SERVER:
                add(
                    f"server.{name}.address",
                    "required when [dns] is set: the DNS records of the environments on this server point to it",
                )
            elif server.address is not None:
                problem = _address_fits_record(server.address, config.dns.record_type)
                if problem:
                    add(f"server.{name}.address", problem)

    names = list(declared) or [naming.DEFAULT_SERVER]
    known = ", ".join(names)

    def unknown(key: str, name: str) -> None:
        where = f"declared: {known}" if declared else f"no [server.NAME] is declared, so the only one is {known!r}"
        add(key, f"server {name!r} is not declared ({where})")

    for team_id, team in config.teams:
        if team.server is not None and team.server not in names:
            unknown(f"team.{team_id}.server", team.server)
        elif team.server is None and len(names) > 1:
            add(f"team.{team_id}.server", f"required: {len(names)} servers are declared ({known})")
        for i, env in enumerate(team.environments):
            if env.server is not None and env.server not in names:
                unknown(f"team.{team_id}.environments[{i}].server", env.server)
    return problems


def validate_server_key(value: Any) -> Any:
    """`team.N.server` / `environments[i].server`: a server name (checked against the declared ones
    across the file; here only its form, so a hostile value never reaches a message unquoted)."""
    if isinstance(value, str):
        problem = server_name_problem(value)
        if problem:
            raise ValueError(f"{value!r}: {problem}")
    return value


# --------------------------------------------------------------------------------------------
# What a server is asked for (policy `capacity`, plan output)


@dataclass(frozen=True)
class ServerDemand:
    """What the file places on one server. `environments`, `cpu` and `environments_memory_mb` are
    the Odoo containers' limits; `services_memory_mb` the platform's long-running services there
    (PostgreSQL, Traefik, the Docker socket proxy; per team with a footprint on the server its
    PostgreSQL proxy and, with [backup], its backup job; per team with a non-production environment
    there its mail catcher); `disk_gb` the disk reserved by the teams
    whose own server it is (`team.N.quota.disk_gb`). One-shot jobs (database init, addons fetch,
    upgrades) run briefly and are not counted; the platform's services have no CPU limit and count
    none."""

    environments: int
    cpu: Decimal
    environments_memory_mb: int
    services_memory_mb: int
    disk_gb: int

    @property
    def memory_mb(self) -> int:
        return self.environments_memory_mb + self.services_memory_mb


def server_demand(config: Config, server: str) -> ServerDemand:
    """What `server` is asked for by `config` (see ServerDemand); an environment being moved counts
    on both servers of its move."""
    placed = config.server_environments(server)
    cpu = Decimal(0)
    memory = 0
    for _, env in placed:
        limits = config.env_limits(env)
        cpu += Decimal(str(limits.cpu))
        memory += limits.memory_mb
    platform = config.platform
    teams_here = [t for t, _ in config.teams if server in config.team_servers(t)]
    per_team = platform.proxy_memory_mb + (config.backup.memory_mb if config.backup is not None else 0)
    services = platform.postgres_memory_mb + platform.traefik_memory_mb + platform.proxy_memory_mb
    # A team's mail catcher serves its non-production environments: counted on every server where
    # it has one (the team's network, which it joins, is per server).
    catchers = {t for t, env in placed if env.type != "production"}
    disk = sum(team.quota.disk_gb or 0 for t, team in config.teams if config.team_server(t) == server)
    return ServerDemand(
        environments=len(placed),
        cpu=cpu,
        environments_memory_mb=memory,
        services_memory_mb=services + per_team * len(teams_here) + platform.mail_catcher_memory_mb * len(catchers),
        disk_gb=disk,
    )
