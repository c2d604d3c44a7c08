"""A generated oduflow.toml of N teams x M environments, deterministic for a given (N, M).

The mix is what a platform of many teams looks like: each team has one production environment,
a staging environment per ten (at least one), and development environments for the rest; two
templates (Odoo 17 and 18) plus a few environments on an explicit image; every seventh
environment on a pinned port at the top of the team's range; addon repositories at the platform,
organisation and team level, with per-environment overrides and exclusions; DNS and backups.
Secrets are `secret:KEY` references, as a real file would have them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

PORT_BASE = 20000
PORT_STRIDE = 100  # each team's range is [base + i*stride, base + i*stride + M + spare)
MAX_ENVIRONMENTS = PORT_STRIDE - 10
# Pinned as the examples pin them (docs/configuration.md, Images); the platform images are the
# defaults, pinned likewise.
ODOO_17 = "odoo:17.0-20260908@sha256:8779f8157ddcc37b84014c94646073f46fd4ad776b7a5d95fc3b0dc73a24a8fa"
ODOO_18 = "odoo:18.0-20260908@sha256:478065867b945579649373aa4cca3b56f7b74daf0522e5fdf85e7d1262e11d39"

_WORDS = (
    "login",
    "invoicing",
    "rounding",
    "stock",
    "payroll",
    "website",
    "pos",
    "crm",
    "helpdesk",
    "timesheet",
    "quality",
    "repair",
    "rental",
    "survey",
    "events",
    "fleet",
    "lunch",
    "studio",
)


@dataclass(frozen=True)
class Scenario:
    teams: int
    environments: int  # per team
    servers: int = 1  # more than one: `default`, s2, s3, ... each team on one, round robin

    @property
    def name(self) -> str:
        fleet = f"{self.servers}s-" if self.servers > 1 else ""
        return f"{fleet}{self.teams}x{self.environments}"

    @property
    def total_environments(self) -> int:
        return self.teams * self.environments


def _q(value: str) -> str:
    """A TOML basic string (the generated values never contain quotes or backslashes)."""
    return f'"{value}"'


def environment_types(count: int) -> list[str]:
    """Types of a team's environments in file order: production, staging(s), development."""
    if count <= 0:
        return []
    staging = max(1, count // 10) if count > 1 else 0
    return ["production"] + ["staging"] * staging + ["development"] * (count - 1 - staging)


def _branch(env_type: str, index: int, staging_index: int) -> str:
    if env_type == "production":
        return "main"
    if env_type == "staging":
        return "staging" if staging_index == 0 else f"staging-{staging_index + 1}"
    word = _WORDS[index % len(_WORDS)]
    kind = "fix" if index % 5 == 0 else "feature"
    return f"{kind}/{word}-{index}"


def render(scenario: Scenario) -> str:
    """The oduflow.toml text of `scenario`."""
    teams, envs = scenario.teams, scenario.environments
    if teams < 1 or envs < 1:
        raise ValueError("a scenario needs at least one team and one environment")
    if envs > MAX_ENVIRONMENTS:
        raise ValueError(f"at most {MAX_ENVIRONMENTS} environments per team")
    types = environment_types(envs)
    per_team_cpu = sum({"production": 2.0, "staging": 1.0, "development": 1.0}[t] for t in types)
    per_team_mem = sum({"production": 6144, "staging": 2048, "development": 2048}[t] for t in types)
    out: list[str] = [
        f"# Generated benchmark scenario: {teams} teams x {envs} environments.",
        "",
        "[organisation]",
        'name = "Benchmark Org"',
        "",
        "[organisation.quota]",
        f"cpu = {int(per_team_cpu * teams) + 1}",
        f"memory_mb = {per_team_mem * teams + 1024}",
        f"environments = {teams * envs}",
        "",
        "[[organisation.addons]]",
        'name = "org-common"',
        'url = "https://git.example.com/bench-org/odoo-common.git"',
        'versions = { "17.0" = "17.0", "18.0" = "18.0" }',
        "",
        "[platform]",
        # Room for every team's connection quota (below) and its provisioning role.
        f"postgres_max_connections = {teams * (_db_connections(envs) + 10) + 5}",
        "tls = true",
        'acme_email = "ops@example.com"',
        "",
        "[[platform.addons]]",
        'name = "oca-web"',
        'url = "https://github.com/OCA/web.git"',
        'versions = { "17.0" = "17.0", "18.0" = "18.0" }',
        "",
        "[[platform.addons]]",
        'name = "oca-server-tools"',
        'url = "https://github.com/OCA/server-tools.git"',
        'versions = { "17.0" = "17.0", "18.0" = "18.0" }',
        "",
        "[dns]",
        'zone = "example.com"',
        'zone_id = "0123456789abcdef0123456789abcdef"',
        'target = "203.0.113.10"',
        'api_token = "secret:cloudflare-token"',
        "",
        "[backup]",
        'bucket_prefix = "bench-odoo-backups"',
        'region = "eu-west-1"',
        "",
    ]
    if scenario.servers > 1:
        # Teams round robin: the default server keeps the names of a one-server platform.
        for n, name in enumerate(server_names(scenario.servers)):
            host = "unix:///var/run/docker.sock" if n == 0 else f"ssh://deploy@{name}.example.com"
            out += [
                f"[server.{name}]",
                f'docker_host = "{host}"',
                f'address = "203.0.113.{10 + n}"',
                "",
            ]
    for t in range(1, teams + 1):
        team = _team(t, envs, types, per_team_cpu, per_team_mem)
        if scenario.servers > 1:
            team.insert(1, f'server = "{server_names(scenario.servers)[(t - 1) % scenario.servers]}"')
        out += team
    return "\n".join(out) + "\n"


def server_names(count: int) -> list[str]:
    return ["default", *(f"s{n}" for n in range(2, count + 1))]


def _db_connections(envs: int) -> int:
    """A shared budget: three connections per environment on average, not each one's peak."""
    return 3 * envs + 2


def _team(t: int, envs: int, types: list[str], cpu: float, mem: int) -> list[str]:
    start = PORT_BASE + (t - 1) * PORT_STRIDE
    end = start + envs + 10
    p = f"team.{t}"
    lines = [
        f"[{p}]",
        f'hostname = "team-{t}.example.com"',
        f'auth_token = "secret:team{t}-token"',
        f'ui_password = "secret:team{t}-ui-password"',
        f"port_range = [{start}, {end}]",
        f"environment_slots = {envs}",
        f"db_quota_gb = {10 + envs}",
        "",
        f"[{p}.quota]",
        f"cpu = {int(cpu) + 1}",
        f"memory_mb = {mem + 1024}",
        f"environments = {envs}",
        f"db_connections = {_db_connections(envs)}",
        "",
        f"[{p}.templates.v17]",
        f'odoo_image = "{ODOO_17}"',
        'modules = ["base", "web", "sale_management"]',
        "",
        f"[{p}.templates.v18]",
        f'odoo_image = "{ODOO_18}"',
        "",
        f"[[{p}.addons]]",
        f'name = "team-{t}-addons"',
        f'url = "https://git.example.com/team-{t}/addons.git"',
        'branches = { development = "develop", staging = "staging", production = "main" }',
        "",
    ]
    if t % 3 == 0:
        lines += [
            f"[[{p}.addons]]",
            f'name = "team-{t}-extra"',
            f'url = "https://git.example.com/team-{t}/extra.git"',
            'branch = "main"',
            "",
        ]
    staging_seen = 0
    pinned = 0
    for i, env_type in enumerate(types):
        branch = _branch(env_type, i, staging_seen)
        if env_type == "staging":
            staging_seen += 1
        lines += [f"[[{p}.environments]]", f"branch = {_q(branch)}", f"type = {_q(env_type)}"]
        if i % 11 == 4:
            lines.append(f'odoo_image = "{ODOO_17}"')
        else:
            lines.append('template = "v18"' if (t + i) % 3 else 'template = "v17"')
        if i % 7 == 6:
            pinned += 1
            lines.append(f"port = {end - pinned}")
        if env_type == "production":
            lines.append("memory_mb = 6144")
            lines.append("workers = 6")
        if i % 4 == 3:
            lines.append(f'addons = {{ "team-{t}-addons" = {_q(branch)}, "oca-server-tools" = false }}')
        if i % 13 == 12:
            lines.append("backup = false")
        lines.append("")
    return lines


def write(scenario: Scenario, directory: str | Path | None = None) -> Path:
    """Write `scenario`'s oduflow.toml into `directory` (a new temporary one by default)."""
    folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="oduflow-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"oduflow-{scenario.name}.toml"
    path.write_text(render(scenario), encoding="utf-8")
    return path
