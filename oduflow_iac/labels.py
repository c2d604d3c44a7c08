"""Container labels: Oduflow's own (`oduflow.*`) and Traefik v3 routing, as pure functions.

Every Traefik label here is one of the Traefik v3 Docker provider's documented labels (the tests
check each against the Traefik project's reference list).
"""

from __future__ import annotations

from dataclasses import dataclass

from oduflow_iac import naming


@dataclass(frozen=True)
class Route:
    """How Traefik reaches one environment."""

    team_id: str
    branch: str
    host: str
    tls: bool
    websocket: bool
    basic_auth: bool
    resolver: str = naming.TLS_RESOLVER


def oduflow_labels(team_id: str, branch: str | None, role: str) -> dict[str, str]:
    labels = {naming.LABEL_TEAM: team_id, naming.LABEL_MANAGED: "true", naming.LABEL_ROLE: role}
    if branch is not None:
        labels[naming.LABEL_ENV] = branch
    return labels


def shared_labels(role: str) -> dict[str, str]:
    """Labels of what every team shares (no `oduflow.team`)."""
    values = oduflow_labels("", None, role)
    del values[naming.LABEL_TEAM]
    return values


def _router(name: str, rule: str, route: Route, service: str) -> dict[str, str]:
    r = f"traefik.http.routers.{name}"
    labels = {
        f"{r}.rule": rule,
        f"{r}.entrypoints": "websecure" if route.tls else "web",
        f"{r}.service": service,
    }
    if route.tls:
        labels[f"{r}.tls"] = "true"
        labels[f"{r}.tls.certresolver"] = route.resolver
    if route.basic_auth:
        labels[f"{r}.middlewares"] = f"{naming.team_auth_middleware_name(route.team_id)}@docker"
    return labels


def traefik_labels(route: Route, network: str = naming.SHARED_NETWORK) -> dict[str, str]:
    """Routing of an environment: HTTP to Odoo's port, `/websocket` to the gevent port when the
    environment runs workers (Odoo serves websockets there only in multi-process mode)."""
    name = naming.env_router_name(route.team_id, route.branch)
    host_rule = f"Host(`{route.host}`)"
    labels = {"traefik.enable": "true", "traefik.docker.network": network}
    labels |= _router(name, host_rule, route, name)
    labels[f"traefik.http.services.{name}.loadbalancer.server.port"] = str(naming.ODOO_HTTP_PORT)
    if route.websocket:
        ws = naming.env_router_name(route.team_id, route.branch, "ws")
        labels |= _router(ws, f"{host_rule} && PathPrefix(`/websocket`)", route, ws)
        labels[f"traefik.http.services.{ws}.loadbalancer.server.port"] = str(naming.ODOO_LONGPOLLING_PORT)
    return labels


def basic_auth_label(team_id: str, users: str) -> tuple[str, str]:
    """The team's basic-auth middleware; `users` is `user:hash` (a bcrypt hash, never a password)."""
    return f"traefik.http.middlewares.{naming.team_auth_middleware_name(team_id)}.basicauth.users", users


_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_BCRYPT_LAST = ".Oeu"  # the 22nd salt character carries 2 bits: only these four are canonical


def bcrypt_salt(seed: str, cost: int) -> bytes:
    """A valid bcrypt salt from stored random text, so the hash (and the label holding it) is the
    same on every run: a new salt each run would replace every container on every `pulumi up`."""
    chars = [c if c in _BCRYPT_ALPHABET else "." for c in seed[:21].ljust(21, ".")]
    last = _BCRYPT_LAST[sum(map(ord, seed)) % 4]
    return f"$2b${cost:02d}${''.join(chars)}{last}".encode()


def basic_auth_users(password: str, seed: str, cost: int, user: str = naming.BASIC_AUTH_USER) -> str:
    """Traefik's `user:hash` for basic auth, bcrypt-hashed (Traefik accepts bcrypt, MD5, SHA1) at
    `cost` (`platform.basic_auth_cost`)."""
    import bcrypt

    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt_salt(seed, cost)).decode()}"
