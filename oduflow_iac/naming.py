"""Every name the platform gives to anything: the one place names come from.

The names match Oduflow's own wherever those are valid, so an oduflow-iac platform and an Oduflow
server agree on databases, containers, networks and labels. PostgreSQL silently truncates
identifiers to 63 bytes and Docker uses container names as DNS labels (also 63 bytes), so every
identifier is kept within 63 bytes deterministically: when it must be cut, the tail is replaced by
a short digest of the full name, which keeps distinct long names distinct.
"""

from __future__ import annotations

import hashlib
import re

MAX_IDENTIFIER_BYTES = 63
DIGEST_CHARS = 8

# The server of a file that declares none ([server.NAME], config/servers.py): its resources keep
# the logical names they had before servers existed.
DEFAULT_SERVER = "default"

SHARED_NETWORK = "oduflow-net"
SHARED_DB_CONTAINER = "oduflow-db"
SHARED_TRAEFIK_CONTAINER = "oduflow-traefik"
SHARED_DB_VOLUME = "oduflow-db-data"
TRAEFIK_CERTS_VOLUME = "oduflow-traefik-certs"
# Traefik reads the Docker API only through this filtering proxy, over a socket in this volume.
DOCKER_PROXY_CONTAINER = "oduflow-docker-proxy"
DOCKER_PROXY_VOLUME = "oduflow-docker-proxy"

# Group roles (NOLOGIN, no privileges) that pg_hba.conf matches with `+group`: every team role is
# a member of the first, every team's provisioning role of the second. Not `oduflow_team_*`: a team
# id could make a team role of that name.
TENANT_GROUP_ROLE = "oduflow_tenants"
TENANT_ADMIN_GROUP_ROLE = "oduflow_tenant_admins"

LABEL_TEAM = "oduflow.team"
LABEL_MANAGED = "oduflow.managed"
LABEL_ENV = "oduflow.env"
LABEL_ROLE = "oduflow.role"
# The refresh generation (clone_from) a refresh one-shot ran and its environment's Odoo runs on.
LABEL_REFRESH = "oduflow.refresh"

TLS_RESOLVER = "oduflow"  # HTTP-01, or DNS-01 through Cloudflare when [dns] is set
TLS_RESOLVER_HTTP = "oduflow-http"  # HTTP-01 for hosts outside the DNS zone when [dns] is set
BASIC_AUTH_USER = "oduflow"
ODOO_HTTP_PORT = 8069
ODOO_LONGPOLLING_PORT = 8072
# Mailpit's own defaults: SMTP without TLS or authentication, and its web UI.
MAIL_CATCHER_SMTP_PORT = 1025
MAIL_CATCHER_UI_PORT = 8025

_SLUG_DROP = re.compile(r"[^a-zA-Z0-9_-]")
_HOST_DROP = re.compile(r"[^a-z0-9-]")


def slugify_branch(branch: str) -> str:
    """Oduflow's branch slug: `/` becomes `-`, anything outside [a-zA-Z0-9_-] is dropped, lower-cased."""
    return _SLUG_DROP.sub("", branch.replace("/", "-")).lower()


def fit_identifier(name: str, limit: int = MAX_IDENTIFIER_BYTES) -> str:
    """`name` unchanged when it fits in `limit` bytes, else its head plus `-` and a digest of all of it."""
    raw = name.encode()
    if len(raw) <= limit:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:DIGEST_CHARS]
    head = raw[: limit - DIGEST_CHARS - 1].decode(errors="ignore")
    return f"{head}-{digest}"


def env_db_name(team_id: str, branch: str) -> str:
    """Environment database: `oduflow_{team}_{slug}` (e.g. `oduflow_1_feature-login`)."""
    return fit_identifier(f"oduflow_{team_id}_{slugify_branch(branch)}")


def template_db_name(team_id: str, name: str) -> str:
    """Template database: `oduflow_template_{team}_{name}` with `/` turned into `-` and the case and
    dots kept, as Oduflow names it (`Big-Client_2` stays `Big-Client_2`), so an existing Oduflow
    template database is adopted, not copied. The config allows only Oduflow's characters."""
    return fit_identifier(f"oduflow_template_{team_id}_{name.replace('/', '-')}")


def team_role_name(team_id: str) -> str:
    """The PostgreSQL login role that owns every database of a team."""
    return fit_identifier(f"oduflow_team_{team_id}")


def team_db_admin_role_name(team_id: str) -> str:
    """The login role a per-team stack's postgresql provider uses: creates and drops the team's
    databases (CREATEDB, member of the team role), nothing else."""
    return fit_identifier(f"oduflow_team_{team_id}_admin")


def team_network_name(team_id: str) -> str:
    return fit_identifier(f"oduflow-{team_id}-net")


def team_db_proxy_container_name(team_id: str) -> str:
    """The team's only way to PostgreSQL: a TCP forwarder on the team network and the database
    network. No environment's name can be this one: theirs all end in a role suffix (`-odoo` ...)."""
    return fit_identifier(f"oduflow-{team_id}-pg")


def env_container_name(team_id: str, branch: str) -> str:
    return fit_identifier(f"oduflow-{team_id}-{slugify_branch(branch)}-odoo")


def env_filestore_volume_name(team_id: str, branch: str) -> str:
    return fit_identifier(f"oduflow-{team_id}-{slugify_branch(branch)}-filestore")


def env_addons_volume_name(team_id: str, branch: str) -> str:
    return fit_identifier(f"oduflow-{team_id}-{slugify_branch(branch)}-addons")


def env_addons_fetch_container_name(team_id: str, branch: str) -> str:
    return fit_identifier(f"oduflow-{team_id}-{slugify_branch(branch)}-addons-fetch")


def env_upgrade_container_name(team_id: str, branch: str) -> str:
    """The module-upgrade one-shot of an environment (lifecycle/upgrade.py)."""
    return fit_identifier(f"oduflow-{team_id}-{slugify_branch(branch)}-upgrade")


def template_upgrade_container_name(team_id: str, name: str) -> str:
    """The module-upgrade one-shot of a template (an image bump of the template)."""
    return fit_identifier(f"oduflow-{team_id}-template-{slugify_branch(name)}-upgrade")


COMMIT_DIR_CHARS = 12


def addons_checkout_dir(repo: str, commit: str | None) -> str:
    """The directory of one repository under the addons root: `{repo}@{commit[:12]}` for a pinned
    commit (one directory per revision, so the running Odoo keeps its code while the next revision
    is upgraded), `{repo}` for an unpinned branch head. `@` is in no repository name."""
    return f"{repo}@{commit[:COMMIT_DIR_CHARS]}" if commit else repo


def env_refresh_container_name(team_id: str, branch: str) -> str:
    """The refresh one-shot of an environment with `clone_from` (lifecycle/refresh.py)."""
    return fit_identifier(f"oduflow-{team_id}-{slugify_branch(branch)}-refresh")


def team_mail_catcher_container_name(team_id: str) -> str:
    """The team's mail catcher (Mailpit): the SMTP server of its non-production environments. No
    environment's container can be named so: theirs all end in a role suffix after the branch."""
    return fit_identifier(f"oduflow-{team_id}-mail")


def team_mail_catcher_router_name(team_id: str) -> str:
    """Traefik router (and service) of the catcher's web UI: never an environment's, whose routers
    all end in `-http` or `-ws`."""
    return fit_identifier(f"oduflow-{team_id}-mail-ui")


def team_mail_catcher_hostname(base: str) -> str:
    """The catcher's web UI: `mail.` under the team's base (an environment may not take it)."""
    return f"mail.{base}"


def env_router_name(team_id: str, branch: str, kind: str = "http") -> str:
    """Traefik router (and service) of an environment: `…-http`, and `…-ws` for websockets. Every
    router carries a suffix, so branch `x`'s websocket router cannot be branch `x-ws`'s router."""
    return f"{fit_identifier(f'oduflow-{team_id}-{slugify_branch(branch)}', MAX_IDENTIFIER_BYTES - 5)}-{kind}"


def env_init_container_name(team_id: str, branch: str) -> str:
    return fit_identifier(f"oduflow-{team_id}-{slugify_branch(branch)}-init")


def env_restore_container_name(team_id: str, branch: str, step: str) -> str:
    """A one-shot of `oduflow-iac restore` (step `filestore` or `neutralize`), removed when done."""
    return fit_identifier(f"oduflow-{team_id}-{slugify_branch(branch)}-restore-{step}")


def template_init_container_name(team_id: str, name: str) -> str:
    return fit_identifier(f"oduflow-{team_id}-template-{slugify_branch(name)}-init")


def template_filestore_volume_name(team_id: str, name: str) -> str:
    return fit_identifier(f"oduflow-{team_id}-template-{slugify_branch(name)}-filestore")


def team_auth_middleware_name(team_id: str) -> str:
    return fit_identifier(f"oduflow-{team_id}-auth")


def team_backup_container_name(team_id: str) -> str:
    return fit_identifier(f"oduflow-{team_id}-backup")


def team_backup_user_name(team_id: str) -> str:
    return fit_identifier(f"oduflow-{team_id}-backup")


def team_backup_restore_user_name(team_id: str) -> str:
    """The optional read-only IAM user whose key restores a team's backups (held by operators)."""
    return fit_identifier(f"oduflow-{team_id}-restore")


def team_backup_bucket_name(prefix: str, team_id: str) -> str:
    """S3 bucket names are 3-63 characters of lower-case letters, digits, `-` and `.`."""
    raw = _HOST_DROP.sub("-", f"{prefix}-team-{team_id}".lower()).strip("-")
    return fit_identifier(raw)


def host_label(text: str) -> str:
    """A DNS label from any text: lower-case letters, digits and `-`, at most 63 bytes."""
    label = _HOST_DROP.sub("-", text.lower()).strip("-")
    return fit_identifier(label).strip("-")


def env_hostname(base: str, branch: str, mode: str, slot: int) -> str:
    """Public hostname of an environment under the team's base (`base_domain`, else `hostname`).

    `branch` mode names the host after the branch; `slots` mode after the environment's stable slot
    number, so hostnames are reused as branches come and go.
    """
    label = f"env-{slot}" if mode == "slots" else host_label(slugify_branch(branch))
    return f"{label}.{base}"


def resource_name(*parts: str) -> str:
    """Pulumi logical names: parts joined by `-`; long names are fitted so URNs stay readable."""
    return "-".join(p for p in parts if p)


def server_scoped(name: str, server: str) -> str:
    """The logical name of a component placed on `server`: unchanged on the default server (every
    config and state from before servers keeps every URN), `name@server` elsewhere. `@` appears in
    no other logical name, so `team-1@s2` can never be the name of a team `1@s2`."""
    return name if server == DEFAULT_SERVER else f"{name}@{server}"


def split_server_scoped(name: str) -> tuple[str, str]:
    """`(name, server)` of a name made by `server_scoped`."""
    base, _, server = name.partition("@")
    return base, server or DEFAULT_SERVER


SHARED_COMPONENT = "shared"


def shared_component_name(server: str = DEFAULT_SERVER) -> str:
    """The SharedInfra of `server`: `shared` on the default server, `shared@s2` elsewhere."""
    return server_scoped(SHARED_COMPONENT, server)


def team_component_name(team_id: str, server: str = DEFAULT_SERVER) -> str:
    """A team's TeamStack on `server`: `team-1` on the default server, `team-1@s2` elsewhere."""
    return server_scoped(f"team-{team_id}", server)


def team_of_component(name: str) -> tuple[str, str] | None:
    """`(team_id, server)` of a TeamStack's logical name, None for any other name."""
    base, server = split_server_scoped(name)
    return (base.removeprefix("team-"), server) if base.startswith("team-") else None
