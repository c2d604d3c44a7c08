"""The typed oduflow.toml model: every section and key, with the rules pydantic can express."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from oduflow_iac import docker_form, naming
from oduflow_iac.config import servers as placement
from oduflow_iac.config.oduflow_compat import SERVER_SECTIONS
from oduflow_iac.config.servers import Server, validate_server_key
from oduflow_iac.config.values import (
    addon_repo_name_problem,
    module_name_problem,
    refname_problem,
    repo_url_problem,
)
from oduflow_iac.moves import Move
from oduflow_iac.postgres_server import default_team_connections

if TYPE_CHECKING:
    from oduflow_iac.revisions import EnvRevisions

EnvType = Literal["development", "staging", "production"]
ENV_TYPES: tuple[EnvType, ...] = ("development", "staging", "production")

# Sections of Oduflow's own oduflow.toml that configure its server process, not infrastructure.
IGNORED_SECTIONS = SERVER_SECTIONS

PORT_MIN = 1024
PORT_MAX = 65535
MAX_BRANCH_LENGTH = 100
SECRET_PREFIX = "secret:"
# `secret:KEY` is the stack config secret `oduflow-secrets:KEY`. Not the project namespace: Pulumi
# refuses project keys that Pulumi.yaml does not declare, and these keys are the user's to choose.
SECRETS_NAMESPACE = "oduflow-secrets"
_SECRET_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TEAM_ID = re.compile(r"^[a-z0-9]+$")


class _Model(BaseModel):
    # Sections this project owns reject unknown keys: a typo must not be silently ignored. Strict
    # types: `backup = "off"` must be an error, not a silently true string.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class SecretValue(BaseModel):
    """A secret written inline (Oduflow's format) or as `secret:KEY`, a Pulumi config secret
    `oduflow-secrets:KEY` of the stack. The value is never part of repr() or str()."""

    model_config = ConfigDict(frozen=True)

    inline_value: SecretStr | None = Field(default=None, repr=False)
    config_key: str | None = None

    def reveal(self) -> str:
        """The inline value itself (only the program and team resolution need it)."""
        return self.inline_value.get_secret_value() if self.inline_value is not None else ""

    @property
    def is_inline(self) -> bool:
        return self.config_key is None

    @property
    def stack_key(self) -> str | None:
        """The full stack config key of a reference (`oduflow-secrets:KEY`), None when inline."""
        return f"{SECRETS_NAMESPACE}:{self.config_key}" if self.config_key else None

    def identity(self) -> str:
        """What makes two secrets the same, for duplicate detection without revealing either."""
        return f"ref:{self.config_key}" if self.config_key else f"inline:{self.reveal()}"

    def __str__(self) -> str:
        return f"secret:{self.config_key}" if self.config_key else "[inline secret]"


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def _check_hostname(value: str | None) -> str | None:
    """A DNS name (RFC 1123); it ends up in DNS records and in Traefik's Host() rule, where
    anything else would be an injection."""
    if value is not None and not _HOSTNAME.match(value.lower()):
        raise ValueError(f"{value!r} is not a hostname (letters, digits, `-` and dots)")
    return value


def _check_cpus(value: float | None) -> float | None:
    """The Docker provider reads `cpus` back from nanoseconds in its own decimal form: a value that
    does not survive that (0.05 reads back as 0.1) would replace the container on every run."""
    if value is not None and not docker_form.cpus_round_trips(value):
        shown = docker_form.cpus_value(value)
        raise ValueError(f"{value:g} CPUs cannot be set exactly (the Docker provider reads it back as {shown})")
    return value


def _parse_secret(value: Any) -> Any:
    if isinstance(value, SecretValue) or value is None:
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if value.startswith(SECRET_PREFIX):
        key = value[len(SECRET_PREFIX) :]
        if not _SECRET_KEY.match(key):
            raise ValueError("a secret reference is `secret:KEY` with KEY of letters, digits, `_`, `.`, `-`")
        return SecretValue(config_key=key)
    if value == "":
        raise ValueError("must not be empty")
    return SecretValue(inline_value=SecretStr(value))


class Quota(_Model):
    cpu: float | None = Field(default=None, gt=0)
    memory_mb: int | None = Field(default=None, gt=0)
    disk_gb: int | None = Field(default=None, gt=0)
    environments: int | None = Field(default=None, gt=0)
    # Concurrent PostgreSQL sessions of the team role (its CONNECTION LIMIT); for the organisation,
    # a cap on all teams' limits together. Default for a team: what its environments need
    # (postgres_server.default_team_connections).
    db_connections: int | None = Field(default=None, gt=0)


class TeamDatabase(_Model):
    """Session settings of a team role (ALTER ROLE ... SET), in milliseconds; 0 turns one off.
    Defaults in `[platform.team_database]`, overrides in `[team.N.database]`."""

    statement_timeout_ms: int | None = Field(default=None, ge=0)
    idle_in_transaction_session_timeout_ms: int | None = Field(default=None, ge=0)


def _default_team_database() -> TeamDatabase:
    # Ten minutes per statement: far above Odoo's own request limit (limit_time_real, 120 s), room
    # for a migration's ALTER TABLE. Five minutes idle in a transaction: Odoo never idles inside
    # one; a forgotten `odoo shell` session must not hold locks (and block vacuum) for days.
    return TeamDatabase(statement_timeout_ms=600_000, idle_in_transaction_session_timeout_ms=300_000)


class Organisation(_Model):
    name: str = "default"
    quota: Quota = Quota()
    addons: list[AddonRepo] = []


class TypeDefaults(_Model):
    """Resource defaults of one environment type; every limit comes from here or the environment."""

    cpu: float = Field(gt=0)
    memory_mb: int = Field(gt=0)
    workers: int = Field(ge=0)

    @field_validator("cpu")
    @classmethod
    def _cpus_form(cls, value: float) -> float | None:
        return _check_cpus(value)


def _default_type_defaults() -> dict[EnvType, TypeDefaults]:
    return {
        "development": TypeDefaults(cpu=1.0, memory_mb=2048, workers=0),
        "staging": TypeDefaults(cpu=1.0, memory_mb=2048, workers=2),
        "production": TypeDefaults(cpu=2.0, memory_mb=4096, workers=4),
    }


class Platform(_Model):
    network: str = naming.SHARED_NETWORK
    docker_host: str = "unix:///var/run/docker.sock"
    # Images pinned by digest: a tag in front of `@` is informational (official images' tags are
    # rebuilt in place). Traefik >= v3.6.1 negotiates the Docker API version (earlier v3 releases
    # ask for 1.24, which Docker 29 refuses: traefik/traefik#12253, fixed by #12256).
    # Bookworm like the old `postgres:16.4`: another glibc would change the collation of indexed text.
    postgres_image: str = (
        "postgres:16.15-bookworm@sha256:efedf3595f1d6f415c08568ba171029bf54052e754cc9f030e3f2412b21f3d67"
    )
    postgres_memory_mb: int = Field(default=2048, gt=0)
    postgres_port: int = Field(default=5432, ge=1, le=PORT_MAX)
    # The server's max_connections, and the slots of it kept for superusers
    # (superuser_reserved_connections): the teams' connection limits must fit in the rest.
    postgres_max_connections: int = Field(default=200, ge=10, le=10000)
    postgres_reserved_connections: int = Field(default=5, ge=3, le=100)
    # temp_file_limit of every session, in MB (0: no limit). Server-wide: the provider cannot set it
    # per role (docs/postgresql-provider.md).
    postgres_temp_file_limit_mb: int = Field(default=10240, ge=0)
    team_database: TeamDatabase = Field(default_factory=_default_team_database)
    traefik_image: str = "traefik:v3.6.25@sha256:fbc395356327765e9725ae4a6b9c140ba6070cc0fa83c36ab4f1342adcea7141"
    traefik_memory_mb: int = Field(default=512, gt=0)
    # Serves Traefik a read-only, filtered Docker API on a unix socket (`-proxysocketendpoint`), and
    # each team's PostgreSQL proxy (the official HAProxy image).
    docker_proxy_image: str = (
        "wollomatic/socket-proxy:1.13.1@sha256:3935b709275e4ec35d6ed5a5c4a1f0d01ed31eec5e7234efc3357ecd47689002"
    )
    db_proxy_image: str = (
        "haproxy:3.2.24-alpine@sha256:d96a0d2c0c5eaeb70b20af39ae157753dda52233eb4b113b518b517239c0c9b4"
    )
    proxy_memory_mb: int = Field(default=64, gt=0)
    tls: bool = False
    acme_email: str | None = None
    dashboard: bool = False
    # Basic auth of Traefik's dashboard (user `oduflow`), required with `dashboard = true`.
    dashboard_password: SecretValue | None = None
    # Each team's mail catcher (Mailpit): what its non-production environments' mail goes to.
    mail_catcher_image: str = (
        "axllent/mailpit:v1.31.2@sha256:74d609a42ec279aa63c6b4622a6fa9b5408d1ad5b1d76a1c4be40a265ce0863d"
    )
    mail_catcher_memory_mb: int = Field(default=128, gt=0)
    # Debian's git and ssh in a Docker Official Image (alpine/git re-pushes its version tags weekly).
    addons_fetch_image: str = (
        "buildpack-deps:bookworm-scm@sha256:ccb9f3efc3b2262f3cb7bebd9881e670f858f0fdb6208cfeb320f3adf4f48ae8"
    )
    # Floats: the project publishes only `:16`, and no digest of it is published anywhere; the
    # images-pinned policy reports it until the operator pins the digest (docs/configuration.md).
    backup_image: str = "eeshugerman/postgres-backup-s3:16"
    # Loopback only: the policy `ports` refuses any other address (see docs/policies.md).
    publish_address: str = "127.0.0.1"
    postgres_admin_host: str = "127.0.0.1"
    # Where the machine running Pulumi dials PostgreSQL, when not `postgres_port` (a tunnel of one's
    # own on another local port). `oduflow-iac` sets it per run for its SSH tunnel
    # (ODUFLOW_POSTGRES_ADMIN_PORT, see tunnel.py).
    postgres_admin_port: int | None = Field(default=None, ge=1, le=PORT_MAX)
    # Traefik checks the basic-auth hash on every request, without a cache, and an Odoo page makes
    # dozens: at bcrypt's usual cost 10 each would take ~60 ms of the shared proxy's CPU. 5 is
    # what `htpasswd -B` produces.
    basic_auth_cost: int = Field(default=5, ge=4, le=14)
    environment_defaults: dict[EnvType, TypeDefaults] = Field(default_factory=_default_type_defaults)
    addons: list[AddonRepo] = []

    @field_validator("publish_address")
    @classmethod
    def _ip_literal(cls, value: str) -> str:
        # Docker takes it as the host IP of a port binding: an address, never a name.
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
        return value

    @field_validator("dashboard_password", mode="before")
    @classmethod
    def _parse_dashboard_password(cls, value: Any) -> Any:
        return _parse_secret(value)

    @model_validator(mode="after")
    def _dashboard_needs_password(self) -> Platform:
        if self.dashboard and self.dashboard_password is None:
            raise ValueError(
                "`dashboard = true` needs `dashboard_password`: the dashboard is never served without authentication"
            )
        return self

    @field_validator("team_database", mode="before")
    @classmethod
    def _merge_team_database(cls, value: Any) -> Any:
        # A partial table overrides only the keys it names.
        if isinstance(value, dict):
            return {**_default_team_database().model_dump(), **value}
        return value

    @field_validator("environment_defaults", mode="before")
    @classmethod
    def _merge_defaults(cls, value: Any) -> Any:
        # A partial table overrides only the types it names.
        if isinstance(value, dict):
            merged: dict[str, Any] = {k: v.model_dump() for k, v in _default_type_defaults().items()}
            for key, table in value.items():
                if key in merged and isinstance(table, dict):
                    merged[key] = {**merged[key], **table}
                else:
                    merged[key] = table
            return merged
        return value


class Dns(_Model):
    """Cloudflare DNS for team and environment hostnames."""

    provider: Literal["cloudflare"] = "cloudflare"
    zone: str
    zone_id: str
    target: str
    record_type: Literal["A", "AAAA", "CNAME"] = "A"
    proxied: bool = False
    ttl: int = Field(default=1, ge=1, le=86400)
    api_token: SecretValue | None = None

    @model_validator(mode="after")
    def _ttl(self) -> Dns:
        # Cloudflare: 1 means automatic; otherwise 60-86400, and proxied records are always automatic.
        if self.ttl != 1 and (self.ttl < 60 or self.proxied):
            raise ValueError("ttl is 1 (automatic) or 60-86400, and 1 when proxied")
        return self

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        _check_hostname(value)
        return value

    @field_validator("api_token", mode="before")
    @classmethod
    def _parse_token(cls, value: Any) -> Any:
        return _parse_secret(value)


class Retention(_Model):
    daily: int = Field(default=7, ge=0)
    weekly: int = Field(default=4, ge=0)
    monthly: int = Field(default=6, ge=0)

    def tiers(self) -> list[tuple[str, int]]:
        """(key prefix, days an object lives) of each kept tier: every night's backup goes to
        `daily/`, Sunday's also to `weekly/`, the 1st of the month's also to `monthly/`; each
        prefix has its own S3 expiry, so N of each are kept."""
        tiers = [("daily", self.daily), ("weekly", self.weekly * 7), ("monthly", self.monthly * 31)]
        return [(prefix, days) for prefix, days in tiers if days > 0]


class Backup(_Model):
    """Nightly dumps of every environment database and filestore to one S3 bucket per team."""

    bucket_prefix: str = Field(min_length=3)
    region: str
    schedule: str = "0 3 * * *"
    retention: Retention = Retention()
    # Object Lock default retention of every new backup object (see oduflow_iac.backup_storage):
    # GOVERNANCE can be lifted by a principal holding s3:BypassGovernanceRetention, COMPLIANCE by
    # nobody, not even the account root. Days default to the shortest kept tier's.
    lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    lock_days: int | None = Field(default=None, ge=1, le=36500)
    # The job container's memory (pg_dump, gzip and the AWS CLI stream; they hold little).
    memory_mb: int = Field(default=512, ge=64)
    # The job is unhealthy when its last run failed or ended longer ago than this.
    max_age_hours: int = Field(default=26, ge=1)
    # A read-only key (list and read, no write, no delete) per team for restores, given to no
    # container: a secret stack output for the operators who restore.
    restore_user: bool = False


class Template(_Model):
    odoo_image: str
    modules: list[str] = ["base", "web"]

    @field_validator("modules")
    @classmethod
    def _module_names(cls, modules: list[str]) -> list[str]:
        return _each(modules, module_name_problem)


def _each(values: list[str], problem_of: Any) -> list[str]:
    for i, value in enumerate(values):
        problem = problem_of(value)
        if problem:
            raise ValueError(f"[{i}]: {problem}")
    return values


def _branch_value(value: str) -> str:
    problem = refname_problem(value)
    if problem:
        raise ValueError(f"branch {value!r} {problem}")
    return value


class AddonRepo(_Model):
    """An addon repository. Platform and organisation repositories map Odoo versions to branches
    (`versions`); project repositories map environment types to branches (`branches`); a repository
    with a single `branch` is included as it is everywhere."""

    name: str = Field(min_length=1)
    url: str = Field(min_length=1)
    branch: str | None = None
    versions: dict[str, str] = {}
    branches: dict[EnvType, str] = {}

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        problem = addon_repo_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        problem = repo_url_problem(value)
        if problem:
            raise ValueError(f"the repository URL {problem}")
        return value

    @field_validator("branch")
    @classmethod
    def _valid_branch(cls, value: str | None) -> str | None:
        return _branch_value(value) if value is not None else None

    @field_validator("versions", "branches")
    @classmethod
    def _valid_branches(cls, value: dict[str, str]) -> dict[str, str]:
        for key, branch in value.items():
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+-]{0,19}", key):
                raise ValueError(f"{key!r} is not an Odoo version")
            _branch_value(branch)
        return value

    @model_validator(mode="after")
    def _one_branch_source(self) -> AddonRepo:
        if not (self.branch or self.versions or self.branches):
            raise ValueError("needs `branch`, `versions` or `branches`")
        return self


AddonOverride = str | Literal[False]


class Environment(_Model):
    branch: str
    type: EnvType = "development"
    odoo_image: str | None = None
    template: str | None = None
    port: int | None = Field(default=None, ge=1, le=PORT_MAX)
    cpu: float | None = Field(default=None, gt=0)
    memory_mb: int | None = Field(default=None, gt=0)
    workers: int | None = Field(default=None, ge=0)
    hostname: str | None = None

    @field_validator("cpu")
    @classmethod
    def _cpus_form(cls, value: float | None) -> float | None:
        return _check_cpus(value)

    protect: bool | None = None
    # Another environment of the same team this one is a neutralised copy of (lifecycle/refresh.py),
    # copied again at each refresh generation of the revision lock.
    clone_from: str | None = None
    # The Odoo version of the image when its tag does not tell (a digest-only or custom image);
    # `clone_from` needs to know it (`odoo neutralize` ships from Odoo 16.0).
    odoo_version: str | None = Field(default=None, pattern=r"^\d{1,3}\.\d{1,2}$")
    backup: bool = True
    disabled: bool = False
    networks: list[str] = []
    odoo_options: dict[str, str | int | float | bool] = {}
    addons: dict[str, AddonOverride] = {}
    # The server this environment runs on when not its team's (config/servers.py).
    server: str | None = None

    @field_validator("server", mode="before")
    @classmethod
    def _server_name(cls, value: Any) -> Any:
        return validate_server_key(value)

    @field_validator("hostname")
    @classmethod
    def _valid_hostname(cls, value: str | None) -> str | None:
        return _check_hostname(value)

    @field_validator("branch")
    @classmethod
    def _valid_branch(cls, branch: str) -> str:
        problem = branch_problem(branch)
        if problem:
            raise ValueError(problem)
        return branch

    @field_validator("addons")
    @classmethod
    def _valid_overrides(cls, value: dict[str, AddonOverride]) -> dict[str, AddonOverride]:
        for name, override in value.items():
            problem = addon_repo_name_problem(name)
            if problem:
                raise ValueError(problem)
            if isinstance(override, str):
                _branch_value(override)
        return value

    @property
    def slug(self) -> str:
        return naming.slugify_branch(self.branch)

    @property
    def is_protected(self) -> bool:
        """Production environments are protected unless the file says otherwise."""
        return self.protect if self.protect is not None else self.type == "production"


class Team(_Model):
    # Oduflow's own keys.
    hostname: str = Field(min_length=1)
    auth_token: SecretValue | None = None  # Oduflow generates one on first run when unset
    ui_password: SecretValue | None = None
    port_range: tuple[int, int]
    base_domain: str | None = None
    environment_slots: int = Field(default=20, gt=0)
    environment_hostname_mode: Literal["branch", "slots"] = "branch"
    service_slots: int | None = Field(default=None, ge=0)
    production_token: SecretValue | None = None
    db_quota_gb: float | None = Field(default=None, gt=0)
    disk_quota_gb: float | None = Field(default=None, gt=0)
    public_scheme: Literal["http", "https"] | None = None
    # What the infrastructure adds: hosts outside the base that this team's environments may use
    # (each owned by this team alone), and the credentials of its private addon repositories.
    custom_domains: list[str] = []
    git_token: SecretValue | None = None
    git_ssh_key: SecretValue | None = None
    git_username: str = Field(default="x-access-token", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    # What the infrastructure adds.
    quota: Quota = Quota()
    database: TeamDatabase = TeamDatabase()
    templates: dict[str, Template] = {}
    addons: list[AddonRepo] = []
    environments: list[Environment] = []
    # The server the team is placed on (config/servers.py); required when several are declared.
    server: str | None = None

    @field_validator("server", mode="before")
    @classmethod
    def _server_name(cls, value: Any) -> Any:
        return validate_server_key(value)

    @field_validator("auth_token", "ui_password", "production_token", "git_token", "git_ssh_key", mode="before")
    @classmethod
    def _parse_secrets(cls, value: Any) -> Any:
        return _parse_secret(value)

    @field_validator("port_range", mode="before")
    @classmethod
    def _range_from_list(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("hostname", "base_domain")
    @classmethod
    def _valid_hostname(cls, value: str | None) -> str | None:
        return _check_hostname(value)

    @field_validator("custom_domains")
    @classmethod
    def _valid_domains(cls, value: list[str]) -> list[str]:
        for i, host in enumerate(value):
            try:
                _check_hostname(host)
            except ValueError as exc:
                raise ValueError(f"[{i}]: {exc}") from None
        return value

    @field_validator("git_ssh_key")
    @classmethod
    def _key_by_reference(cls, value: SecretValue | None) -> SecretValue | None:
        # A private key is several lines: a reference keeps it out of the file (and of its review).
        if value is not None and value.is_inline:
            raise ValueError("must be a reference `secret:KEY` to a stack secret holding the private key")
        return value

    def program_secrets(self) -> list[SecretValue]:
        """The secrets of this team the Pulumi program reads (tokens are the operations CLI's)."""
        return [s for s in (self.ui_password, self.git_token, self.git_ssh_key) if s is not None]

    @field_validator("ui_password")
    @classmethod
    def _bcrypt_limit(cls, value: SecretValue | None) -> SecretValue | None:
        # Basic auth is a bcrypt hash, and bcrypt reads at most 72 bytes.
        if value is not None and value.is_inline and len(value.reveal().encode()) > 72:
            raise ValueError("is longer than 72 bytes, the most a bcrypt hash takes")
        return value

    @property
    def base(self) -> str:
        return self.base_domain or self.hostname


class Config(_Model):
    """A whole oduflow.toml, validated, with the stable host port of every environment."""

    organisation: Organisation = Organisation()
    platform: Platform = Platform()
    dns: Dns | None = None
    backup: Backup | None = None
    team: dict[str, Team] = {}
    # The Docker hosts (config/servers.py); none declared is the implicit `default`.
    server: dict[str, Server] = {}

    _path: Path = PrivateAttr(default=Path("oduflow.toml"))
    _ports: dict[str, dict[str, int]] = PrivateAttr(default_factory=dict)
    _unlocked: list[str] = PrivateAttr(default_factory=list)
    _notices: list[Any] = PrivateAttr(default_factory=list)  # errors.Problem: accepted, not honoured
    _revisions: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)  # revisions.Lock
    # Servers and moves (config/servers.py, moves.py): the effective servers and the placement
    # index are computed once, on first use.
    _moves: list[Move] = PrivateAttr(default_factory=list)
    _servers: dict[str, Server] | None = PrivateAttr(default=None)
    _placement: placement.PlacementIndex | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def notices(self) -> list[Any]:
        """What the file says that is accepted but not honoured (`errors.Problem`, one line each)."""
        return self._notices

    @property
    def ports(self) -> dict[str, dict[str, int]]:
        """Host port of every environment: `ports[team_id][branch]`."""
        return self._ports

    @property
    def teams(self) -> list[tuple[str, Team]]:
        """Teams in a stable order: numerically by id where ids are numbers."""
        return sorted(self.team.items(), key=lambda kv: _team_sort_key(kv[0]))

    @property
    def unlocked_environments(self) -> list[str]:
        """`team/branch` of environments without a pinned port or an entry in the port lock: their
        ports can still move when environments listed before them are removed."""
        return self._unlocked

    def env_revisions(self, team_id: str, branch: str) -> EnvRevisions:
        """The environment's pinned revisions and refresh generation from the revision lock
        (`revisions.EnvRevisions`; empty when the lock has no entry for it)."""
        from oduflow_iac.revisions import EnvRevisions  # at run time here: the lock module reads this model

        found: EnvRevisions | None = self._revisions.get(team_id, {}).get(branch)
        return found if found is not None else EnvRevisions()

    def environment_port(self, team_id: str, branch: str) -> int:
        return self._ports[team_id][branch]

    def environment_slot(self, team_id: str, branch: str) -> int:
        """A stable number (1-based) for `slots` hostname mode: the port's offset in the team range."""
        return self._ports[team_id][branch] - self.team[team_id].port_range[0] + 1

    def env_hostname(self, team_id: str, env: Environment) -> str:
        if env.hostname:
            return env.hostname
        team = self.team[team_id]
        return naming.env_hostname(
            team.base, env.branch, team.environment_hostname_mode, self.environment_slot(team_id, env.branch)
        )

    def env_limits(self, env: Environment) -> TypeDefaults:
        """CPU, memory and workers of an environment: its own values, else its type's defaults."""
        d = self.platform.environment_defaults[env.type]
        # Both sources were validated when the file loaded; validating again (the CPU round trip
        # through the provider's decimal form) costs more than the whole lookup, once per environment.
        return TypeDefaults.model_construct(
            cpu=env.cpu if env.cpu is not None else d.cpu,
            memory_mb=env.memory_mb if env.memory_mb is not None else d.memory_mb,
            workers=env.workers if env.workers is not None else d.workers,
        )

    def team_db_connections(self, team_id: str) -> int:
        """The team role's CONNECTION LIMIT: its quota, else what its environments need."""
        team = self.team[team_id]
        if team.quota.db_connections is not None:
            return team.quota.db_connections
        return default_team_connections([self.env_limits(e).workers for e in team.environments])

    def team_db_settings(self, team_id: str) -> TeamDatabase:
        """The team role's session settings: `[team.N.database]` over `[platform.team_database]`."""
        own, platform = self.team[team_id].database, self.platform.team_database
        return TeamDatabase(
            statement_timeout_ms=(
                own.statement_timeout_ms if own.statement_timeout_ms is not None else platform.statement_timeout_ms
            ),
            idle_in_transaction_session_timeout_ms=(
                own.idle_in_transaction_session_timeout_ms
                if own.idle_in_transaction_session_timeout_ms is not None
                else platform.idle_in_transaction_session_timeout_ms
            ),
        )

    def team_db_proxy_connections(self, team_id: str) -> int:
        """How many connections the team's PostgreSQL proxy lets through: the team's quota, else
        the server's own maximum. Never a count of its environments: the proxy's configuration is
        a ForceNew upload, and replacing the proxy cuts every connection of the team."""
        quota = self.team[team_id].quota.db_connections
        return quota if quota is not None else self.platform.postgres_max_connections

    def env_odoo_version(self, team_id: str, env: Environment) -> str | None:
        """The environment's Odoo version (`17.0`): its `odoo_version`, else its image's tag's."""
        from oduflow_iac.cascade import odoo_version

        return env.odoo_version or odoo_version(self.env_image(team_id, env))

    def mail_catcher_hostname(self, team_id: str) -> str | None:
        """The web UI of the team's mail catcher, or None: a team has one when it has a
        non-production environment (production sends real mail)."""
        team = self.team[team_id]
        if all(e.type == "production" for e in team.environments):
            return None
        return naming.team_mail_catcher_hostname(team.base.lower())

    def env_image(self, team_id: str, env: Environment) -> str:
        if env.odoo_image:
            return env.odoo_image
        assert env.template is not None  # validated: an environment has an image or a template
        return self.team[team_id].templates[env.template].odoo_image

    # ----------------------------------------------------------------------------------------
    # Servers and moves (config/servers.py, oduflow_iac/moves.py)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Config:
        # The placement caches describe the original; a copy with other teams or servers recomputes.
        copy = super().model_copy(update=update, deep=deep)
        copy._servers = None
        copy._placement = None
        return copy

    @property
    def servers(self) -> dict[str, Server]:
        """The declared servers by name, or `{"default": ...}` (platform.docker_host, dns.target)
        when the file declares none."""
        if self._servers is None:
            self._servers = placement.effective_servers(self)
        return self._servers

    def team_server(self, team_id: str) -> str:
        """The server a team is placed on: `team.N.server`, else the only server."""
        return placement.configured_team_server(self, team_id)

    def env_server(self, team_id: str, env: Environment) -> str:
        """The server an environment is placed on: its own `server`, else its team's."""
        return placement.configured_env_server(self, team_id, env)

    def team_servers(self, team_id: str) -> list[str]:
        """Every server the team has a footprint on: its own first, then the other servers its
        environments are placed on (during a move, both ends), sorted."""
        return list(self._placement_index().team_servers[team_id])

    def server_environments(self, server: str) -> list[tuple[str, Environment]]:
        """(team id, environment) of every environment on `server`, in file order; an environment
        being moved is on both servers of its move."""
        return list(self._placement_index().by_server.get(server, []))

    def _placement_index(self) -> placement.PlacementIndex:
        if self._placement is None:
            self._placement = placement.placement_index(self)
        return self._placement

    @property
    def moves(self) -> list[Move]:
        """The moves in progress (`moves.Move`), from `<stem>.moves.json` beside the file."""
        return list(self._moves)

    def _move_of(self, team_id: str, env: Environment) -> Move | None:
        moves = self._moves
        if not moves:
            return None
        for move in moves:
            if move.team == team_id and (move.branch == env.branch or (move.branch is None and env.server is None)):
                return move
        return None

    def env_servers(self, team_id: str, env: Environment) -> list[str]:
        """The servers an environment is declared on: its server, or [from, to] while it moves."""
        move = self._move_of(team_id, env)
        return [move.from_server, move.to] if move is not None else [self.env_server(team_id, env)]

    def env_dns_server(self, team_id: str, env: Environment) -> str:
        """The server an environment's DNS records point at: `from` until a move is switched."""
        move = self._move_of(team_id, env)
        if move is None:
            return self.env_server(team_id, env)
        return move.to if move.phase == "switched" else move.from_server

    def inline_secrets(self) -> list[str]:
        """Key paths of secrets written inline in the file (a policy flags them)."""
        found = []
        if self.dns and self.dns.api_token and self.dns.api_token.is_inline:
            found.append("dns.api_token")
        if self.platform.dashboard_password and self.platform.dashboard_password.is_inline:
            found.append("platform.dashboard_password")
        for team_id, team in self.teams:
            for key in ("auth_token", "ui_password", "production_token", "git_token"):
                value = getattr(team, key)
                if value is not None and value.is_inline:
                    found.append(f"team.{team_id}.{key}")
        return found


def _team_sort_key(team_id: str) -> tuple[int, int, str]:
    return (0, int(team_id), "") if team_id.isdigit() else (1, 0, team_id)


def branch_problem(branch: str) -> str | None:
    """Why a branch name is unusable, or None. Mirrors what git and the naming scheme accept."""
    if branch == "":
        return "branch name is empty"
    if branch != branch.strip():
        return f"branch name {branch!r} has surrounding whitespace"
    if len(branch) > MAX_BRANCH_LENGTH:
        return f"branch name is longer than {MAX_BRANCH_LENGTH} characters"
    problem = refname_problem(branch)
    if problem:
        return f"branch name {branch!r} {problem} (git check-ref-format --branch)"
    if naming.slugify_branch(branch) == "":
        return f"branch name {branch!r} has nothing left after slugging"
    return None


# Pydantic resolves the forward reference to AddonRepo used before its definition.
Organisation.model_rebuild()
Platform.model_rebuild()
