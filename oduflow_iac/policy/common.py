"""What every rule family shares: resource types, secretness, reading engine-shaped properties."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from pulumi_policy import (
    PolicyProviderResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
)

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
ROLE_DB_PROXY = "db-proxy"
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
