"""Which team a request belongs to, in the order the Oduflow server resolves it.

1. the auth token: a team's `auth_token` (or `production_token`) equal to the bearer token;
2. the Host header: a team's `hostname`, an environment hostname, or any name under the team's base
   (`base_domain`, else `hostname`), compared case-insensitively with the port stripped;
3. the only team, when exactly one is configured;
4. team "1".

Tokens written inline in oduflow.toml are compared directly. A `secret:KEY` token is looked up
through a `SecretResolver`, a callable from KEY to the value (or None when it does not know the key):
`env_secrets()` reads `ODUFLOW_SECRET_<KEY>` environment variables (the default), and
`oduflow_iac.automation.stack_secrets()` reads the stack's Pulumi config secret `oduflow-secrets:KEY`.
Every comparison uses `hmac.compare_digest`, and every team is compared, whatever matched first.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable, Mapping

from oduflow_iac.config import Config
from oduflow_iac.errors import UsageError

SecretResolver = Callable[[str], str | None]

DEFAULT_TEAM = "1"
ENV_PREFIX = "ODUFLOW_SECRET_"
_ENV_DROP = re.compile(r"[^A-Z0-9]")


def env_var_for(key: str, prefix: str = ENV_PREFIX) -> str:
    """`team1-token` -> `ODUFLOW_SECRET_TEAM1_TOKEN`."""
    return prefix + _ENV_DROP.sub("_", key.upper())


def env_secrets(environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX) -> SecretResolver:
    """Resolve `secret:KEY` from the environment variable `ODUFLOW_SECRET_<KEY>` (upper case, every
    character outside A-Z and 0-9 turned into `_`)."""
    source = os.environ if environ is None else environ

    def resolve(key: str) -> str | None:
        value = source.get(env_var_for(key, prefix))
        return value if value else None

    return resolve


def chain(*resolvers: SecretResolver) -> SecretResolver:
    """The first resolver that knows the key wins."""

    def resolve(key: str) -> str | None:
        for resolver in resolvers:
            value = resolver(key)
            if value is not None:
                return value
        return None

    return resolve


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def match_token(config: Config, token: str, secrets: SecretResolver | None = None) -> tuple[str | None, list[str]]:
    """The team whose auth or production token is `token`, and the secret keys that could not be
    resolved (so a caller can say why nothing matched)."""
    resolver = secrets or env_secrets()
    found: str | None = None
    unresolved: list[str] = []
    for team_id, team in config.teams:
        candidates = [t for t in (team.auth_token, team.production_token) if t is not None]
        for candidate in candidates:
            if candidate.config_key is not None:
                value = resolver(candidate.config_key)
                if value is None:
                    unresolved.append(candidate.config_key)
                    continue
            else:
                value = candidate.reveal()
            # No early exit: every team is compared, so timing does not tell which one matched.
            if _same(value, token) and found is None:
                found = team_id
    return found, unresolved


def normalise_host(host: str) -> str:
    """`Team-A.Example.com:8443` -> `team-a.example.com`; `[::1]:80` -> `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host.strip("[]")
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def match_host(config: Config, host: str) -> str | None:
    """The team serving `host`: its hostname, then an environment's hostname, then the team whose
    base the host is under (the longest base wins when bases nest)."""
    name = normalise_host(host)
    if not name:
        return None
    for team_id, team in config.teams:
        if team.hostname.lower() == name:
            return team_id
    for team_id, team in config.teams:
        for env in team.environments:
            if config.env_hostname(team_id, env).lower() == name:
                return team_id
    best: tuple[int, str] | None = None
    for team_id, team in config.teams:
        base = team.base.lower()
        if name.endswith(f".{base}") and (best is None or len(base) > best[0]):
            best = (len(base), team_id)
    return best[1] if best else None


def resolve_team(
    config: Config,
    token: str | None = None,
    host: str | None = None,
    *,
    secrets: SecretResolver | None = None,
    strict: bool = False,
) -> str:
    """The team id of a request, in the server's order (token, Host, the single team, team "1").

    With `strict`, a token that matches no team is refused instead of falling through to the Host
    header: a webhook must not act for a team because its token was wrong. A team that does not
    exist is refused either way.
    """
    if not config.team:
        raise UsageError(f"{config.path}: no team is configured ([team.N] sections)")
    if token:
        team_id, unresolved = match_token(config, token, secrets)
        if team_id is not None:
            return team_id
        if strict:
            hint = ""
            if unresolved:
                names = ", ".join(env_var_for(k) for k in unresolved)
                hint = f" (could not read the secret tokens {', '.join(unresolved)}: set {names})"
            raise UsageError(f"{config.path}: the token matches no team's auth_token{hint}")
    if host:
        team_id = match_host(config, host)
        if team_id is not None:
            return team_id
    if len(config.team) == 1:
        return next(iter(config.team))
    if DEFAULT_TEAM in config.team:
        return DEFAULT_TEAM
    teams = ", ".join(t for t, _ in config.teams)
    raise UsageError(
        f"{config.path}: cannot tell the team: no token or host matched and there is no team 1 (teams: {teams}); "
        "pass --team N"
    )


def require_team(config: Config, team_id: str) -> str:
    """`team_id` when the config defines it, else a UsageError naming the teams that exist."""
    if team_id not in config.team:
        teams = ", ".join(t for t, _ in config.teams) or "none"
        raise UsageError(f"{config.path}: team {team_id!r} is not defined (teams: {teams})")
    return team_id
