"""Every rule of the oduflow policy pack: port ranges, quotas, tenant isolation, Odoo hardening,
pinned images, backups, and advisory guardrails.

`POLICIES` is the one list of rules. `policies/__main__.py` hands it to the Pulumi engine
(`pulumi preview --policy-pack policies`); `oduflow_iac.offline.bridge` runs the very same objects
against a program planned under mocks. This module imports only the standard library, pulumi_policy
and the SDK's pure modules (`naming`, `odoo_conf`, `backup`: standard library only), so the policy
pack runs without the providers or the config model installed.

The rules read resources the way the engine hands them over: engine (camelCase) property names,
secrets unwrapped to plain values, and every unknown value (during a preview) raising
`UnknownValueError` when read, which the engine reports as an advisory "can't run policy ... during
preview". A rule reads only what it needs (a label's value only when its key matches, a bucket
reference only when the dependency graph does not already tell) so that unknown values elsewhere do
not stop it. Cross-resource rules make one pass over the resources and relate them through
dictionaries: the cost of every rule is linear in the number of resources.

Configuration comes per policy from the policy-pack config (`oduflow_iac.policy_config`), rendered
from oduflow.toml: the intent (ranges, quotas, production environments) that the resources are
checked against. Without config a rule checks what it can on its own.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from oduflow_iac import backup, naming, odoo_conf

PACK_NAME = "oduflow"
PACK_VERSION = "0.1.0"  # kept equal to policies/PulumiPolicy.yaml (a test checks)

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
VOLUME = "docker:index/volume:Volume"
DATABASE = "postgresql:index/database:Database"
GRANT = "postgresql:index/grant:Grant"
# The S3 types of pulumi-aws 7, and their `V2` names of earlier major versions.
BUCKET_TYPES = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
VERSIONING_TYPES = frozenset(
    {"aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2"}
)
ENCRYPTION_TYPES = frozenset(
    {
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
    }
)
PUBLIC_ACCESS_BLOCK_TYPE = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")

ROLE_ODOO = "odoo"
ROLE_DATABASE = "database"
ROLE_PROXY = "proxy"
ROLE_BACKUP = "backup"
TRAEFIK_DASHBOARD_PORT = 8080
WILDCARD_IPS = frozenset({"", "0.0.0.0", "::", "[::]"})


# --------------------------------------------------------------------------------------------
# Secretness


class SecretAwareArgs(ResourceValidationArgs):
    """Resource validation arguments that also say which properties were secret.

    The Pulumi engine unwraps secrets before a policy sees them and does not say which values were
    secret, so under the engine a rule receives plain `ResourceValidationArgs` and skips its
    secretness checks. The offline bridge sees the program's registrations with their secret
    markers and passes this subclass, so offline those checks are enforced.
    """

    def __init__(
        self,
        resource_type: str,
        props: Mapping[str, Any],
        urn: str,
        name: str,
        opts: PolicyResourceOptions,
        provider: PolicyProviderResource | None,
        config: Mapping[str, Any] | None = None,
        *,
        secret_paths: Iterable[tuple[str | int, ...]] = (),
    ) -> None:
        super().__init__(resource_type, props, urn, name, opts, provider, config)
        self.secret_paths = frozenset(secret_paths)

    def is_secret(self, *path: str | int) -> bool:
        """Whether the property at `path` is secret: it, or a value that contains it, was marked."""
        return any(path[:i] in self.secret_paths for i in range(1, len(path) + 1))


# --------------------------------------------------------------------------------------------
# Reading properties


def _labels(props: Mapping[str, Any], *keys: str) -> dict[str, str]:
    """The values of the Docker labels `keys`; other labels' values are never read (one of them may
    be unknown during a preview, e.g. a basic-auth hash of a password not yet generated)."""
    wanted = set(keys)
    found: dict[str, str] = {}
    labels = props.get("labels") or []
    if isinstance(labels, Mapping):
        return {k: str(labels[k]) for k in labels if k in wanted}
    for entry in labels:
        key = entry.get("label")
        if key in wanted:
            found[key] = str(entry.get("value"))
    return found


def _number(value: Any) -> Decimal | None:
    """A number from the wire (where every number is a float) or from a string (`cpus = "1.5"`)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _int(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == number.to_integral_value() else None


def _fmt(number: Decimal | float | int) -> str:
    """`8`, not `8.0`; `1.5` as it is."""
    d = number if isinstance(number, Decimal) else Decimal(str(number))
    return format(d.normalize(), "f")


def _name(props: Mapping[str, Any], fallback: str) -> str:
    name = props.get("name")
    return str(name) if name else fallback


def _is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("::1", "[::1]", "localhost")


@dataclass(frozen=True)
class _Production:
    """A production environment of the policy config."""

    team: str
    branch: str
    database: str
    filestore: str


def _production(config: Mapping[str, Any]) -> list[_Production]:
    return [
        _Production(str(p["team"]), str(p["branch"]), str(p["database"]), str(p["filestore"]))
        for p in config.get("production") or []
    ]


# --------------------------------------------------------------------------------------------
# Config schemas (JSON schema, validated by the engine against --policy-pack-config)

_PORT = {"type": "integer", "minimum": 1, "maximum": 65536}
_QUOTA = {
    "type": "object",
    "properties": {
        "cpu": {"type": "number", "minimum": 0},
        "memory_mb": {"type": "integer", "minimum": 0},
        "environments": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}
_PRODUCTION = {
    "type": "array",
    "description": "Production environments of oduflow.toml, with their database and filestore volume.",
    "items": {
        "type": "object",
        "properties": {
            "team": {"type": "string"},
            "branch": {"type": "string"},
            "database": {"type": "string"},
            "filestore": {"type": "string"},
        },
        "required": ["team", "branch", "database", "filestore"],
        "additionalProperties": False,
    },
}

PORTS_SCHEMA = PolicyConfigSchema(
    properties={
        "ranges": {
            "type": "object",
            "description": "Each team's host port range, half-open: start <= port < end.",
            "additionalProperties": {
                "type": "object",
                "properties": {"start": _PORT, "end": _PORT},
                "required": ["start", "end"],
                "additionalProperties": False,
            },
        }
    }
)
QUOTAS_SCHEMA = PolicyConfigSchema(
    properties={
        "teams": {"type": "object", "description": "Each team's quota.", "additionalProperties": _QUOTA},
        "organisation": _QUOTA,
    }
)
ISOLATION_SCHEMA = PolicyConfigSchema(
    properties={
        "teams": {"type": "array", "description": "The team ids.", "items": {"type": "string"}},
        "shared_network": {"type": "string", "description": "The network every container may join."},
    }
)
BACKUPS_SCHEMA = PolicyConfigSchema(
    properties={
        "configured": {"type": "boolean", "description": "Whether oduflow.toml has a [backup] section."},
        "production": _PRODUCTION,
    }
)
PRODUCTION_SCHEMA = PolicyConfigSchema(properties={"production": _PRODUCTION})
INLINE_SECRETS_SCHEMA = PolicyConfigSchema(
    properties={
        "paths": {
            "type": "array",
            "description": "Key paths of oduflow.toml whose secret is written inline.",
            "items": {"type": "string"},
        }
    }
)


# --------------------------------------------------------------------------------------------
# ports


def validate_ports(args: StackValidationArgs, report: ReportViolation) -> None:
    """Team containers publish only inside their team's range; no host port is published twice;
    the shared PostgreSQL is never published on every address."""
    config = args.get_config()
    ranges: dict[str, tuple[int, int]] = {
        str(team): (int(r["start"]), int(r["end"])) for team, r in (config.get("ranges") or {}).items()
    }
    # (protocol, host port) -> holder per ip and a holder on every address: O(1) per published port.
    by_ip: dict[tuple[str, int], dict[str, str]] = {}
    wildcard: dict[tuple[str, int], str] = {}
    for r in args.resources:
        if r.resource_type != CONTAINER:
            continue
        props = r.props
        ports = props.get("ports") or []
        if not ports:
            continue
        name = _name(props, r.name)
        labels = _labels(props, naming.LABEL_TEAM, naming.LABEL_ROLE)
        team = labels.get(naming.LABEL_TEAM)
        is_db = name == naming.SHARED_DB_CONTAINER or labels.get(naming.LABEL_ROLE) == ROLE_DATABASE
        team_range = ranges.get(team) if team else None
        if team and ranges and team_range is None:
            report(f"team {team} publishes ports but has no port range", r.urn)
        for port in ports:
            external = _int(port.get("external"))
            internal = _int(port.get("internal"))
            ip = str(port.get("ip") or "")
            protocol = str(port.get("protocol") or "tcp")
            if team_range is not None:
                start, end = team_range
                if external is None:
                    report(
                        f"team {team} publishes container port {internal} on a host port Docker picks, "
                        f"outside its range [{start}, {end})",
                        r.urn,
                    )
                elif not start <= external < end:
                    report(f"team {team} publishes port {external} outside its range [{start}, {end})", r.urn)
            if is_db and ip in WILDCARD_IPS:
                report(
                    f"the shared PostgreSQL container {name} publishes port {external} on every address; "
                    f"publish it on a loopback or private address only",
                    r.urn,
                )
            if external is None:
                continue
            key = (protocol, external)
            shown = f"{ip or '0.0.0.0'}:{external}/{protocol}"
            holders = by_ip.setdefault(key, {})
            if ip in WILDCARD_IPS:
                other = wildcard.get(key) or next(iter(holders.values()), None)
            else:
                other = holders.get(ip) or wildcard.get(key)
            if other is not None:
                report(f"host port {shown} is published by both {other} and {name}", r.urn)
            if ip in WILDCARD_IPS:
                wildcard.setdefault(key, name)
            holders.setdefault(ip, name)


# --------------------------------------------------------------------------------------------
# quotas


@dataclass
class _Usage:
    environments: int = 0
    cpu: Decimal = Decimal(0)
    memory_mb: Decimal = Decimal(0)

    def add(self, cpu: Decimal | None, memory: Decimal | None) -> None:
        self.environments += 1
        self.cpu += cpu or 0
        self.memory_mb += memory or 0


def _over_quota(who: str, singular: bool, limit_of: str, usage: _Usage, quota: Mapping[str, Any]) -> list[str]:
    run, ask = ("runs", "asks for") if singular else ("run", "ask for")
    out = []
    environments, cpu, memory = (_number(quota.get(k)) for k in ("environments", "cpu", "memory_mb"))
    if environments is not None and usage.environments > environments:
        out.append(f"{who} {run} {usage.environments} environments, over {limit_of} of {_fmt(environments)}")
    if cpu is not None and usage.cpu > cpu:
        out.append(f"{who} {ask} {_fmt(usage.cpu)} CPUs, over {limit_of} of {_fmt(cpu)}")
    if memory is not None and usage.memory_mb > memory:
        out.append(f"{who} {ask} {_fmt(usage.memory_mb)} MB of memory, over {limit_of} of {_fmt(memory)} MB")
    return out


def validate_quotas(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every Odoo container has CPU and memory limits; each team's environments, CPUs and memory stay
    within its quota, and all teams' together within the organisation's."""
    config = args.get_config()
    per_team: dict[str, _Usage] = {}
    total = _Usage()
    for r in args.resources:
        if r.resource_type != CONTAINER:
            continue
        labels = _labels(r.props, naming.LABEL_ROLE, naming.LABEL_TEAM)
        if labels.get(naming.LABEL_ROLE) != ROLE_ODOO:
            continue
        name = _name(r.props, r.name)
        memory = _number(r.props.get("memory"))
        cpu = _number(r.props.get("cpus"))
        if memory is None or memory <= 0:
            report(f"Odoo container {name} has no memory limit", r.urn)
        if cpu is None or cpu <= 0:
            report(f"Odoo container {name} has no CPU limit", r.urn)
        team = labels.get(naming.LABEL_TEAM)
        if team is not None:
            per_team.setdefault(team, _Usage()).add(cpu, memory)
        total.add(cpu, memory)
    team_quotas = config.get("teams") or {}
    for team, usage in per_team.items():
        if team in team_quotas:
            for message in _over_quota(f"team {team}", True, "its quota", usage, team_quotas[team]):
                report(message, None)
    if config.get("organisation"):
        organisation = config["organisation"]
        for message in _over_quota("all teams together", False, "the organisation quota", total, organisation):
            report(message, None)


# --------------------------------------------------------------------------------------------
# isolation


def _team_of_database(name: str, teams: set[str] | None) -> str | None:
    """The team of `oduflow_{team}_{slug}` (or a template `oduflow_template_{team}_{name}`); with the
    known team ids the longest one that fits wins, so ids containing `_` work."""
    for prefix in ("oduflow_template_", "oduflow_"):
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        if teams is None:
            match = re.match(r"([^_]+)_", rest)
            if match:
                return match.group(1)
            continue
        best = None
        for i, char in enumerate(rest):
            if char == "_" and rest[:i] in teams:
                best = rest[:i]
        if best is not None:
            return best
    return None


def _revokes_public(props: Mapping[str, Any]) -> bool:
    return (
        str(props.get("role") or "").lower() == "public"
        and props.get("objectType") == "database"
        and not list(props.get("privileges") or [])
    )


def validate_isolation(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every team database is owned by its team's role and closed to PUBLIC; a team's containers
    join only the shared network and their own team's."""
    config = args.get_config()
    teams = {str(t) for t in config["teams"]} if "teams" in config else None
    shared = str(config.get("shared_network") or naming.SHARED_NETWORK)
    databases: list[tuple[PolicyResource, str, str]] = []
    revoking: list[PolicyResource] = []
    revoked_urns: set[str] = set()
    for r in args.resources:
        props = r.props
        if r.resource_type == DATABASE:
            if props.get("isTemplate"):
                continue
            name = str(props.get("name") or "")
            team = _team_of_database(name, teams)
            if team is None:
                continue
            databases.append((r, name, team))
            owner = props.get("owner")
            role = naming.team_role_name(team)
            if owner != role:
                owner_shown = owner or "the provider's user"
                report(f"database {name} of team {team} is owned by {owner_shown}, not by {role}", r.urn)
        elif r.resource_type == GRANT and _revokes_public(props):
            revoking.append(r)
            revoked_urns.update(d.urn for d in r.dependencies)
        elif r.resource_type == CONTAINER:
            team = _labels(props, naming.LABEL_TEAM).get(naming.LABEL_TEAM)
            if team is None:
                continue
            own = naming.team_network_name(team)
            allowed = {shared, own}
            name = _name(props, r.name)
            for net in props.get("networksAdvanced") or []:
                net_name = str(net.get("name"))
                if net_name not in allowed:
                    report(
                        f"container {name} of team {team} joins network {net_name}; "
                        f"only {shared} and {own} are allowed",
                        r.urn,
                    )
            mode = props.get("networkMode")
            if mode and mode not in ("bridge", "default") and mode not in allowed:
                report(
                    f"container {name} of team {team} uses network mode {mode}; only {shared} and {own} are allowed",
                    r.urn,
                )
    # The engine relates a grant to its database through dependencies; a grant's `database`
    # name is read only for databases that relation does not cover.
    revoked_names: set[str] | None = None
    for r, name, team in databases:
        if r.urn in revoked_urns:
            continue
        if revoked_names is None:
            revoked_names = {str(g.props.get("database")) for g in revoking}
        if name not in revoked_names:
            report(
                f"database {name} of team {team} is open to PUBLIC: no grant to public on it with no privileges",
                r.urn,
            )


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


def validate_odoo_hardening(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """The odoo.conf uploaded into every Odoo container hides the database manager, serves only the
    environment's database, trusts the proxy, and sets a master password kept secret.

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
    options = odoo_conf.parse_odoo_conf(str(content))
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
# images-pinned, images-immutable


# A digest is `algorithm:hex` (OCI image-spec, descriptor digests); Docker refuses anything else.
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
# A date stamp in a tag (`odoo:17.0-20260908`: the nightly build the image installs).
_DATE_STAMP = re.compile(r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")
# Images whose full version has two numbers, from this major on (PostgreSQL 10 dropped the third:
# `16.15` is a patch release). Any other image needs three (`3.6.25`) or a date stamp.
_TWO_PART_VERSIONS = {"postgres": 10}


def _repository(name: str) -> str:
    """`docker.io/library/postgres` -> `postgres`: the registry host and Docker Hub's `library/`
    prefix dropped (a first part with a `.` or `:`, or `localhost`, is a registry)."""
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if len(parts) > 1 and parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts)


def tag_is_immutable(repository: str, tag: str) -> bool:
    """Whether a tag names one release rather than a line of them: a full version (`v3.6.25`,
    `3.2.24-alpine`, `16.15-bookworm` for PostgreSQL) or a date stamp (`17.0-20260908`). `17.0`,
    `16`, `v3`, `3.6` and codenames (`bookworm-scm`, `edge`) move to every new release of their line.
    The publisher can still re-push any tag (official images are rebuilt on base-image updates):
    only a digest pins the bytes; a full-version tag at least pins the software."""
    version = tag[1:] if tag[:1] in "vV" and tag[1:2].isdigit() else tag
    head, *suffixes = version.split("-")
    numbers = head.split(".")
    if not all(n.isdigit() for n in numbers):
        return False
    if len(numbers) >= 3 or any(_DATE_STAMP.fullmatch(s) for s in suffixes):
        return True
    if len(numbers) == 1:
        return bool(_DATE_STAMP.fullmatch(head))
    since = _TWO_PART_VERSIONS.get(_repository(repository))
    return since is not None and int(numbers[0]) >= since


def _split_reference(reference: str) -> tuple[str, str | None, str | None]:
    """`name[:tag][@digest]` -> (name, tag, digest); a registry port (`registry:5000/odoo`) is not a tag."""
    rest, at, digest = reference.partition("@")
    name, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:
        return rest, None, digest if at else None
    return name, tag, digest if at else None


def image_problem(reference: str) -> str | None:
    """Why an image reference pins nothing at all, or None: `:latest`, no tag (which means latest),
    or a digest that is not one (Docker refuses it)."""
    name, tag, digest = _split_reference(reference)
    if digest is not None:
        if not digest:
            return "has an empty digest"
        return None if _DIGEST.fullmatch(digest) else f"has a malformed digest {digest}"
    if not tag or not name:
        return "has no tag, which means latest"
    if tag.lower() == "latest":
        return "is tagged latest"
    return None


def floating_tag(reference: str) -> str | None:
    """The tag of a reference that no digest pins and whose tag floats (`odoo:17.0` -> `17.0`), or
    None. A digest pins whatever the tag before it says; see `tag_is_immutable` for tags."""
    name, tag, digest = _split_reference(reference)
    if digest is not None or not tag or not name or tag.lower() == "latest":
        return None  # pinned, or image_problem's case
    return None if tag_is_immutable(name, tag) else tag


def _image(args: ResourceValidationArgs) -> tuple[str, str] | None:
    """The image of a container or `RemoteImage`, and how a message names the resource."""
    if args.resource_type == CONTAINER:
        image, what = args.props.get("image"), f"container {_name(args.props, args.name)}"
    elif args.resource_type == REMOTE_IMAGE:
        image, what = args.props.get("name"), f"image resource {args.name}"
    else:
        return None
    return None if image is None else (str(image), what)


def validate_images_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every container image is pinned to a tag or a digest: never `latest`, never untagged."""
    found = _image(args)
    if found is None:
        return
    image, what = found
    problem = image_problem(image)
    if problem:
        report(f"{what} uses image {image} which {problem}; pin a digest (@sha256:...) or a release tag", None)


def validate_images_immutable(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every container image is pinned by digest or by a tag naming one release: a floating tag
    (`17.0`, `16`, `v3`) is reported with the resource and the image it names."""
    found = _image(args)
    if found is None:
        return
    image, what = found
    tag = floating_tag(image)
    if tag:
        report(
            f"{what} uses image {image} whose tag {tag} floats: it moves to each new release of its "
            "line, so hosts differ and rebuilds arrive unreviewed; pin a digest (@sha256:...) or a release tag",
            None,
        )


# --------------------------------------------------------------------------------------------
# backups


def dumped_databases(script: str) -> set[str]:
    """Databases a shell script dumps with `pg_dump` (`--dbname=X`, `--dbname X`, `-d X`, `-dX`)."""
    found: set[str] = set()
    for line in script.splitlines():
        if "pg_dump" not in line or line.lstrip().startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue  # unbalanced quotes: not a line the shell would run either
        in_dump = wants_value = False  # wants_value: the last word was `-d` or `--dbname`
        for token in words:
            word = token.rstrip(";")
            if wants_value:
                found.add(word)
                wants_value = False
            elif word == "pg_dump" or word.endswith("/pg_dump"):
                in_dump = True
            elif in_dump:
                if word.startswith("--dbname="):
                    found.add(word.split("=", 1)[1])
                elif word in ("--dbname", "-d"):
                    wants_value = True
                elif word.startswith("-d") and not word.startswith("--") and len(word) > 2:
                    found.add(word[2:])
            if token in ("&&", "||", "|") or token.endswith(";"):
                in_dump = wants_value = False
    return found


def _backup_script(props: Mapping[str, Any]) -> str:
    for upload in props.get("uploads") or []:
        if upload.get("file") == backup.SCRIPT_PATH:
            return str(upload.get("content") or "")
    return ""


def validate_backups(args: StackValidationArgs, report: ReportViolation) -> None:
    """Backup buckets are versioned, encrypted and closed to the public; when backups are
    configured every production environment's database is dumped, and its filestore mounted, by
    its team's backup job."""
    config = args.get_config()
    buckets: dict[str, PolicyResource] = {}  # urn -> bucket
    bucket_by_name: dict[str, str] = {}  # bucket name -> urn
    settings: list[tuple[str, PolicyResource]] = []  # (kind, resource)
    jobs: dict[str, PolicyResource] = {}  # team -> backup container
    databases: set[str] = set()
    for r in args.resources:
        t = r.resource_type
        if t in BUCKET_TYPES:
            buckets[r.urn] = r
            bucket_by_name[str(r.props.get("bucket") or r.name)] = r.urn
        elif t in VERSIONING_TYPES:
            settings.append(("versioning", r))
        elif t in ENCRYPTION_TYPES:
            settings.append(("encryption", r))
        elif t == PUBLIC_ACCESS_BLOCK_TYPE:
            settings.append(("public-access-block", r))
        elif t == DATABASE:
            databases.add(str(r.props.get("name") or ""))
        elif t == CONTAINER:
            labels = _labels(r.props, naming.LABEL_ROLE, naming.LABEL_TEAM)
            team = labels.get(naming.LABEL_TEAM)
            if team is not None and (
                labels.get(naming.LABEL_ROLE) == ROLE_BACKUP
                or _name(r.props, r.name) == naming.team_backup_container_name(team)
            ):
                jobs[team] = r

    good: dict[str, set[str]] = {urn: set() for urn in buckets}
    for kind, r in settings:
        # The engine relates a setting to its bucket by dependency; the `bucket` name is read only
        # when no dependency is a bucket (it may be unknown during a preview of a new bucket).
        targets = [d.urn for d in r.dependencies if d.urn in buckets]
        if not targets:
            urn = bucket_by_name.get(str(r.props.get("bucket")))
            targets = [urn] if urn else []
        if _setting_ok(kind, r.props):
            for urn in targets:
                good[urn].add(kind)
    for urn, bucket in buckets.items():
        name = str(bucket.props.get("bucket") or bucket.name)
        if "versioning" not in good[urn]:
            report(f"backup bucket {name} has no BucketVersioning with status Enabled", urn)
        if "encryption" not in good[urn]:
            report(f"backup bucket {name} has no default server-side encryption", urn)
        if "public-access-block" not in good[urn]:
            report(f"backup bucket {name} has no BucketPublicAccessBlock with all four blocks on", urn)

    if not config.get("configured"):
        return
    scripts: dict[str, tuple[set[str], set[str]]] = {}
    for env in _production(config):
        if env.database not in databases:
            continue  # not part of this stack (another team's stack, or the shared one)
        job = jobs.get(env.team)
        if job is None:
            report(f"production environment {env.branch} of team {env.team} has no backup job", None)
            continue
        if env.team not in scripts:
            mounted = {str(v.get("volumeName")) for v in job.props.get("volumes") or [] if v.get("volumeName")}
            scripts[env.team] = (dumped_databases(_backup_script(job.props)), mounted)
        dumped, mounted = scripts[env.team]
        if env.database not in dumped:
            report(
                f"the backup job of team {env.team} does not dump database {env.database} "
                f"of production environment {env.branch}",
                job.urn,
            )
        if env.filestore not in mounted:
            report(
                f"the backup job of team {env.team} does not mount filestore {env.filestore} "
                f"of production environment {env.branch}",
                job.urn,
            )


def _setting_ok(kind: str, props: Mapping[str, Any]) -> bool:
    if kind == "versioning":
        return (props.get("versioningConfiguration") or {}).get("status") == "Enabled"
    if kind == "encryption":
        return any(
            (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
            for rule in props.get("rules") or []
        )
    return all(props.get(flag) is True for flag in PUBLIC_ACCESS_FLAGS)


# --------------------------------------------------------------------------------------------
# Advisory guardrails


def validate_inline_secrets(args: StackValidationArgs, report: ReportViolation) -> None:
    """Secrets belong in the stack's encrypted config (`secret:KEY`), not inline in oduflow.toml."""
    for path in args.get_config().get("paths") or []:
        report(f"{path} is written inline in oduflow.toml; reference a stack secret with secret:KEY", None)


def validate_traefik_dashboard(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Traefik's dashboard and API are not served without authentication nor published beyond loopback."""
    if args.resource_type != CONTAINER:
        return
    props = args.props
    name = _name(props, args.name)
    role = _labels(props, naming.LABEL_ROLE).get(naming.LABEL_ROLE)
    if role != ROLE_PROXY and name != naming.SHARED_TRAEFIK_CONTAINER:
        return
    flags = [str(a) for key in ("entrypoints", "command") for a in props.get(key) or []]
    if any(f.lower() in ("--api.insecure", "--api.insecure=true") for f in flags):
        report(f"Traefik container {name} serves its dashboard and API without authentication (--api.insecure)", None)
    for port in props.get("ports") or []:
        if _int(port.get("internal")) != TRAEFIK_DASHBOARD_PORT:
            continue
        ip = str(port.get("ip") or "")
        if not _is_loopback(ip):
            report(
                f"Traefik container {name} publishes its dashboard port {TRAEFIK_DASHBOARD_PORT} "
                f"on {ip or 'every address'}, beyond loopback",
                None,
            )


def validate_production_protected(args: StackValidationArgs, report: ReportViolation) -> None:
    """A production environment's database and filestore are protected from `pulumi destroy`."""
    production = _production(args.get_config())
    if not production:
        return
    wanted_db = {p.database: p for p in production}
    wanted_fs = {p.filestore: p for p in production}
    for r in args.resources:
        if r.resource_type == DATABASE:
            env = wanted_db.get(str(r.props.get("name")))
            what = "database"
        elif r.resource_type == VOLUME:
            env = wanted_fs.get(str(r.props.get("name")))
            what = "filestore"
        else:
            continue
        if env is not None and not r.opts.protect:
            report(
                f"the {what} of production environment {env.branch} of team {env.team} is not protected",
                r.urn,
            )


# --------------------------------------------------------------------------------------------
# The pack

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

POLICIES: list[Policy] = [
    StackValidationPolicy(
        name="ports",
        description="Team containers publish host ports only inside their team's range, no host port is "
        "published twice, and the shared PostgreSQL is never published on every address.",
        validate=validate_ports,
        enforcement_level=MANDATORY,
        config_schema=PORTS_SCHEMA,
    ),
    StackValidationPolicy(
        name="quotas",
        description="Every Odoo container has CPU and memory limits, and each team's environments, CPUs and "
        "memory stay within its quota and all teams' within the organisation quota.",
        validate=validate_quotas,
        enforcement_level=MANDATORY,
        config_schema=QUOTAS_SCHEMA,
    ),
    StackValidationPolicy(
        name="isolation",
        description="Team databases are owned by the team's role and closed to PUBLIC; team containers join "
        "only the shared network and their own team's.",
        validate=validate_isolation,
        enforcement_level=MANDATORY,
        config_schema=ISOLATION_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="odoo-hardening",
        description="Odoo runs with list_db = False, a dbfilter matching only its own database, proxy_mode = "
        "True and a master password; offline the password must also be secret (the engine does not tell "
        "policies which values are secret, so that check runs only in the offline plan).",
        validate=validate_odoo_hardening,
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="images-pinned",
        description="Container images are pinned to a tag or a digest: never latest, never untagged.",
        validate=validate_images_pinned,
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="images-immutable",
        description="Container images are pinned by digest or by a tag naming one release (full version or "
        "date); floating tags such as 17.0, 16 or v3 are reported with the image they name.",
        validate=validate_images_immutable,
        enforcement_level=ADVISORY,
    ),
    StackValidationPolicy(
        name="backups",
        description="Backup buckets are versioned, encrypted and block public access; with backups "
        "configured, every production environment is covered by its team's backup job.",
        validate=validate_backups,
        enforcement_level=MANDATORY,
        config_schema=BACKUPS_SCHEMA,
    ),
    StackValidationPolicy(
        name="inline-secrets",
        description="Secrets are referenced from the stack's encrypted config, not written inline in oduflow.toml.",
        validate=validate_inline_secrets,
        enforcement_level=ADVISORY,
        config_schema=INLINE_SECRETS_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="traefik-dashboard",
        description="Traefik's dashboard is not served without authentication nor published beyond loopback.",
        validate=validate_traefik_dashboard,
        enforcement_level=ADVISORY,
    ),
    StackValidationPolicy(
        name="production-protected",
        description="Production databases and filestores are protected against deletion.",
        validate=validate_production_protected,
        enforcement_level=ADVISORY,
        config_schema=PRODUCTION_SCHEMA,
    ),
]

POLICY_NAMES = tuple(p.name for p in POLICIES)
