"""The fleet: one stack per server, the team stacks that read them, `--all` over all of them, and
moving a team or an environment from one server to another.

Stacks of the per-server layout (docs/operations.md, "The fleet"):
- a server's stack holds its SharedInfra and the team roles on its PostgreSQL: `shared` for the
  server `default` (the legacy shared stack keeps its name and its state), `server-<NAME>` for any
  other (`oduflow:layout = server`, `oduflow:server = NAME`, its `oduflow:dockerHost`);
- a team's stack `team-<N>` reads the stack of every server it sits on (`oduflow:sharedStack` for
  `default`, `oduflow:serverStackPattern` formatted with `{server}` for the others).

`run_all` deploys the servers first, in parallel, then the teams, in parallel (a team only when
every server it sits on succeeded); destroy goes the other way. A move is a sequence of steps that
each leave the old placement serving until the new one answered (`Mover`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from oduflow_iac import moves, naming, ports, teams, tunnel
from oduflow_iac.automation import (
    SHARED_STACK,
    DockerRunner,
    Operation,
    Outcome,
    Output,
    Runner,
    RunResult,
    Selection,
    check_config_file,
    layout_of,
    require_pulumi_cli,
    run_docker,
    short_stack_name,
    team_stack_file,
    team_stack_name,
    team_stack_settings,
)
from oduflow_iac.config import Config, Environment, load_config
from oduflow_iac.editing import ConfigEdit
from oduflow_iac.errors import ConfigError, OduflowError, UsageError
from oduflow_iac.stack_settings import StackSettings, read_stack_settings

SERVER_STACK_PATTERN = "server-{server}"
TEAM_STACK_TYPE = "oduflow:index:TeamStack"
ENVIRONMENT_TYPE = "oduflow:index:OdooEnvironment"
# Protected resources a move may unprotect: those that live on a server (its Docker engine, its
# PostgreSQL). Anything else (an S3 bucket, a DNS zone) is not the old placement's to give up.
SERVER_RESOURCE_PREFIXES = ("docker:", "postgresql:")

# --------------------------------------------------------------------------------------------
# Stack names and settings


def server_stack_name(server: str) -> str:
    """`shared` for the server `default` (the legacy shared stack), `server-<NAME>` for the others."""
    return SHARED_STACK if server == naming.DEFAULT_SERVER else SERVER_STACK_PATTERN.format(server=server)


def stack_prefix(project_dir: Path, project: str) -> str:
    """`<organisation>/<project>` as the existing team stacks name the stacks they read (backends
    differ in the organisation), else `organization/<project>`, the self-managed backends' form."""
    stacks_dir = read_stack_settings_dir(project_dir)
    for path in sorted(stacks_dir.glob("Pulumi.team-*.yaml")):
        try:
            existing = read_stack_settings(path.name[len("Pulumi.") : -len(".yaml")], project_dir)
        except (UsageError, ConfigError):
            continue
        reference = existing.get("sharedStack") or ""
        if reference.count("/") == 2:
            return reference.rsplit("/", 1)[0]
    return f"organization/{project}"


def read_stack_settings_dir(project_dir: Path) -> Path:
    import yaml

    doc = yaml.safe_load((project_dir / "Pulumi.yaml").read_text(encoding="utf-8")) or {}
    return project_dir / str(doc.get("stackConfigDir") or ".")


def _is_server_stack(settings: StackSettings, server: str) -> bool:
    layout = layout_of(settings)
    if layout == "shared":
        return server == naming.DEFAULT_SERVER
    return layout == "server" and (settings.get("server") or "") == server


def server_stack_settings(entry: StackSettings, server: str) -> StackSettings:
    """The settings of `server`'s stack (the entry stack itself when it is that server's)."""
    if _is_server_stack(entry, server):
        return entry
    name = server_stack_name(server)
    try:
        settings = read_stack_settings(name, entry.project_dir)
    except UsageError:
        raise UsageError(
            f"stack {name} of server {server!r} has no config file; "
            f"`oduflow-iac up --all --stack {entry.stack}` creates it"
        ) from None
    if not _is_server_stack(settings, server):
        raise UsageError(f"stack {name} must set oduflow:layout: server and oduflow:server: {server}")
    return settings


def server_stack_values(config: Config, entry: StackSettings, server: str) -> dict[str, str]:
    """The stack config a new server stack gets: what the program's `server` layout reads."""
    return {
        "oduflow:configFile": entry.get("configFile") or "",
        "oduflow:layout": "server",
        "oduflow:server": server,
        "oduflow:dockerHost": config.servers[server].docker_host,
    }


def team_stack_values(config: Config, entry: StackSettings, team_id: str) -> dict[str, str]:
    """The stack config a new team stack gets: its team, the stacks of its servers, its Docker host
    (the one its own server's PostgreSQL is tunnelled through)."""
    prefix = stack_prefix(entry.project_dir, entry.project)
    values = {
        "oduflow:configFile": entry.get("configFile") or "",
        "oduflow:layout": "team",
        "oduflow:team": team_id,
        "oduflow:sharedStack": f"{prefix}/{SHARED_STACK}",
        "oduflow:serverStackPattern": f"{prefix}/{SERVER_STACK_PATTERN}",
    }
    if config.server:
        values["oduflow:dockerHost"] = config.servers[config.team_server(team_id)].docker_host
    else:
        # One server: the shared stack's Docker host, as the per-team layout always did.
        shared = entry if layout_of(entry) == "shared" else None
        if shared is not None and shared.get("dockerHost"):
            values["oduflow:dockerHost"] = shared.get("dockerHost") or ""
    return values


def ensure_server_stack(runner: Runner, entry: StackSettings, config: Config, server: str) -> StackSettings:
    """`server`'s stack settings, creating the stack (and its config file) when missing."""
    try:
        return server_stack_settings(entry, server)
    except UsageError:
        if (read_stack_settings_dir(entry.project_dir) / f"Pulumi.{server_stack_name(server)}.yaml").exists():
            raise
    _create(runner, server_stack_name(server), server_stack_values(config, entry, server))
    return server_stack_settings(entry, server)


def ensure_team_stack(runner: Runner, entry: StackSettings, config: Config, team_id: str) -> StackSettings:
    """The `team-N` stack's settings, creating the stack when missing (an existing one is kept as
    it is: a team stack without `oduflow:serverStackPattern` reads the default pattern)."""
    try:
        return team_stack_settings(entry, team_id)
    except UsageError:
        if team_stack_file(entry, team_id).exists():
            raise
    _create(runner, team_stack_name(team_id), team_stack_values(config, entry, team_id))
    return team_stack_settings(entry, team_id)


def _create(runner: Runner, name: str, values: Mapping[str, str]) -> None:
    from pulumi.automation import ConfigValue

    stack = runner._stack(name, create=True)
    stack.set_all_config({k: ConfigValue(value=v) for k, v in values.items()})
    runner.out(
        f"[{name}] created stack {name} "
        f"(set its secrets: `pulumi config set --secret --stack {name} oduflow-secrets:KEY`)"
    )


# --------------------------------------------------------------------------------------------
# --all: servers, then teams


def _guarded(name: str, operation: Operation, work: Callable[[], RunResult]) -> RunResult:
    """One stack's run: any failure is that stack's result, never the others' end."""
    try:
        return work()
    except OduflowError as exc:
        return RunResult(name, operation, False, str(exc).splitlines()[0])
    except Exception as exc:  # one stack's unexpected failure must not stop the others
        return RunResult(name, operation, False, f"{type(exc).__name__}: {exc}")


def _parallel(runner: Runner, jobs: Sequence[Callable[[], RunResult]]) -> list[RunResult]:
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(runner.parallel, len(jobs))) as pool:
        return list(pool.map(lambda job: job(), jobs))


def _stack_job(
    runner: Runner,
    operation: Operation,
    config: Config,
    name: str,
    ensure: Callable[[], StackSettings],
    existing: Callable[[], StackSettings],
    team_id: str | None = None,
    prefix: str | None = None,
) -> RunResult:
    """One stack's run of `operation`: preview and up create the stack when missing (`ensure`);
    refresh and destroy of a stack that does not exist have nothing to do."""

    def work() -> RunResult:
        if operation in ("preview", "up"):
            settings = ensure()
        else:
            try:
                settings = existing()
            except UsageError:
                return RunResult(name, operation, True, "no such stack: nothing to do")
        check_config_file(settings, config.path)
        shown = prefix if prefix is not None else f"[{settings.stack}] "
        return runner.run(operation, Selection(settings, team_id), config, prefix=shown, refresh_lock=False)

    return _guarded(name, operation, work)


def _server_job(runner: Runner, operation: Operation, entry: StackSettings, config: Config, server: str) -> RunResult:
    return _stack_job(
        runner,
        operation,
        config,
        server_stack_name(server),
        lambda: ensure_server_stack(runner, entry, config, server),
        lambda: server_stack_settings(entry, server),
    )


def _team_job(runner: Runner, operation: Operation, entry: StackSettings, config: Config, team_id: str) -> RunResult:
    name = team_stack_name(team_id)
    return _stack_job(
        runner,
        operation,
        config,
        name,
        lambda: ensure_team_stack(runner, entry, config, team_id),
        lambda: team_stack_settings(entry, team_id),
        team_id,
        prefix=f"[{name}] ",
    )


def run_all(runner: Runner, operation: Operation, entry: StackSettings, config: Config) -> list[RunResult]:
    """Every server stack in parallel, then every team stack in parallel (a team whose servers did
    not all succeed is skipped); destroy: the teams first, then each server no failed team sits on.
    One result per stack."""
    require_pulumi_cli()
    layout = layout_of(entry)
    if layout not in ("shared", "server"):
        raise UsageError(
            f"--all runs the per-server and per-team layout: stack {entry.stack} has oduflow:layout {layout}, "
            "not shared (pass --stack shared)"
        )
    if operation == "up":
        ports.write_lock(ports.lock_path_for(config.path), ports.lock_from(config))
    servers = list(config.servers)
    team_ids = [t for t, _ in config.teams]
    if operation == "destroy":
        team_results = _parallel(runner, [partial(_team_job, runner, operation, entry, config, t) for t in team_ids])
        failed_teams = [t for t, r in zip(team_ids, team_results, strict=True) if not r.ok]
        server_results: dict[str, RunResult] = {}
        jobs = []
        for server in servers:
            blocking = [t for t in failed_teams if server in config.team_servers(t)]
            if blocking:
                why = f"skipped: team stack {team_stack_name(blocking[0])} on it was not destroyed"
                server_results[server] = RunResult(server_stack_name(server), operation, False, why)
            else:
                jobs.append(server)
        done = _parallel(runner, [partial(_server_job, runner, operation, entry, config, s) for s in jobs])
        server_results.update(zip(jobs, done, strict=True))
        return team_results + [server_results[s] for s in servers]
    server_done = _parallel(runner, [partial(_server_job, runner, operation, entry, config, s) for s in servers])
    failed = {s: r for s, r in zip(servers, server_done, strict=True) if not r.ok}
    results: dict[str, RunResult] = {}
    runnable = []
    for team_id in team_ids:
        blocking = [s for s in config.team_servers(team_id) if s in failed]
        if blocking:
            why = f"skipped: the {failed[blocking[0]].stack} stack failed"
            results[team_id] = RunResult(team_stack_name(team_id), operation, False, why)
        else:
            runnable.append(team_id)
    done = _parallel(runner, [partial(_team_job, runner, operation, entry, config, t) for t in runnable])
    results.update(zip(runnable, done, strict=True))
    return server_done + [results[t] for t in team_ids]


# --------------------------------------------------------------------------------------------
# Which resources are a placement's (the stack's state, `stack export`)


def _urn_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _urn_type(urn: str) -> str:
    return urn.rsplit("::", 2)[-2].rsplit("$", 1)[-1]


def placement_root(team_id: str, branch: str | None, server: str) -> tuple[str, str]:
    """(component type, logical name) of a team's (branch None) or an environment's placement on
    `server`: the TeamStack `team-N` (`team-N@server` off the default server) or its OdooEnvironment."""
    team_name = naming.team_component_name(team_id, server)
    if branch is None:
        return TEAM_STACK_TYPE, team_name
    return ENVIRONMENT_TYPE, naming.resource_name(team_name, naming.slugify_branch(branch))


def placement_resources(
    deployment: Mapping[str, Any] | None, team_id: str, branch: str | None, server: str
) -> list[Mapping[str, Any]]:
    """Every resource of the placement: its component and whatever has it as an ancestor (by the
    `parent` links of the state: names alone are ambiguous, `team-1-main` prefixes `team-1-main-2`)."""
    resources = [r for r in (deployment or {}).get("resources") or [] if isinstance(r, Mapping) and not r.get("delete")]
    kind, name = placement_root(team_id, branch, server)
    team_kind, team_name = placement_root(team_id, None, server)
    urns = [str(r.get("urn")) for r in resources]
    parents = {urn for urn in urns if _urn_type(urn) == team_kind and _urn_name(urn) == team_name}
    inside: set[str] = set()
    for r in resources:
        urn = str(r.get("urn"))
        if _urn_type(urn) == kind and _urn_name(urn) == name and (branch is None or r.get("parent") in parents):
            inside.add(urn)
    grew = True
    while grew:
        grew = False
        for r in resources:
            urn = str(r.get("urn"))
            if urn not in inside and r.get("parent") in inside:
                inside.add(urn)
                grew = True
    return [r for r in resources if str(r.get("urn")) in inside]


def protected_urns(resources: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """(URNs a move unprotects: protected resources on the server; protected ones it leaves alone)."""
    mine: list[str] = []
    kept: list[str] = []
    for r in resources:
        if not r.get("protect"):
            continue
        (mine if str(r.get("type", "")).startswith(SERVER_RESOURCE_PREFIXES) else kept).append(str(r.get("urn")))
    return sorted(mine), sorted(kept)


# --------------------------------------------------------------------------------------------
# The jobs of a move: backup, restore, check (the parts that touch the servers themselves)


@dataclass
class JobResult:
    ok: bool
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PgEndpoint:
    """A server's PostgreSQL as the operator's machine reaches it (the superuser)."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)

    def env(self) -> dict[str, str]:
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGPASSWORD": self.password}


class MoveJobs(Protocol):
    def backup(self, config: Config, team_id: str, branch: str | None, server: str) -> JobResult: ...

    def restore(
        self, config: Config, team_id: str, envs: Sequence[Environment], source: str, target: str
    ) -> JobResult: ...

    def check(self, config: Config, team_id: str, envs: Sequence[Environment], server: str) -> JobResult: ...


def _pipe(
    first: list[str], first_env: Mapping[str, str], second: list[str], second_env: Mapping[str, str]
) -> JobResult:
    """`first | second`, each with its own environment (two servers): ok when both exit 0."""
    producer = subprocess.Popen(first, env={**os.environ, **first_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    consumer = subprocess.run(
        second, env={**os.environ, **second_env}, stdin=producer.stdout, capture_output=True, check=False
    )
    if producer.stdout is not None:
        producer.stdout.close()
    producer_err = producer.stderr.read().decode(errors="replace") if producer.stderr is not None else ""
    producer.wait()
    lines = [ln for ln in (producer_err + consumer.stderr.decode(errors="replace")).splitlines() if ln.strip()]
    return JobResult(producer.returncode == 0 and consumer.returncode == 0, lines[-3:])


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise UsageError(f"`{name}` is not on PATH; a move runs it on this machine (Debian: postgresql-client)")
    return found


def copy_database(source: PgEndpoint, target: PgEndpoint, database: str, owner: str) -> JobResult:
    """The database as it is on the source server, into the (empty, just deployed) database of the
    same name on the target server, its objects owned by the team role as the program made them."""
    dump = [_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "--dbname", database]
    load = [
        _tool("pg_restore"),
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-privileges",
        f"--role={owner}",
        "--exit-on-error",
        "--dbname",
        database,
    ]
    return _pipe(dump, source.env(), load, target.env())


class ServerJobs:
    """The jobs of a move on real servers.

    - backup: `backup now` of each moved environment on the old server (the team job's own script,
      `lifecycle.backup_ops.backup_now`): whatever happens next, a copy exists in the team's bucket.
    - restore (`restore_on`): each moved environment's database, dumped from the old server's
      PostgreSQL and restored into the new one (`copy_database`), and its filestore volume copied
      with a tar stream between the two Docker engines.
    - check: each moved environment's Odoo container on the new server is running and its Docker
      health check (`/web/health` inside the container) says healthy.
    """

    def __init__(
        self,
        endpoints: Callable[[str], Any],
        *,
        docker: DockerRunner = run_docker,
        health_timeout: float = 300.0,
        poll: float = 5.0,
        helper_image: str = "busybox:1.37",
    ) -> None:
        self.endpoints = endpoints  # server -> context manager yielding its PgEndpoint
        self.docker = docker
        self.health_timeout = health_timeout
        self.poll = poll
        self.helper_image = helper_image

    def backup(self, config: Config, team_id: str, branch: str | None, server: str) -> JobResult:
        if config.backup is None:
            return JobResult(True, ["no [backup] configured: no backup taken (the data is copied from the old server)"])
        from oduflow_iac.lifecycle import backup_ops

        host = config.servers[server].docker_host
        envs = config.team[team_id].environments
        moved = [e for e in envs if (e.branch == branch if branch is not None else e.server is None)]
        lines: list[str] = []
        for env in moved:
            if not env.backup:
                lines.append(f"{env.branch!r} has backup = false: not backed up")
                continue
            done = backup_ops.backup_now(config, team_id, env.branch, self.docker, host)
            lines.append(f"{done.message} on {server}")
            if not done.ok:
                return JobResult(False, [*lines, *[f"  {ln}" for ln in done.output.splitlines()[-3:]]])
        return JobResult(True, lines)

    def restore(self, config: Config, team_id: str, envs: Sequence[Environment], source: str, target: str) -> JobResult:
        return restore_on(self, config, team_id, envs, source, target)

    def check(self, config: Config, team_id: str, envs: Sequence[Environment], server: str) -> JobResult:
        host = {"DOCKER_HOST": config.servers[server].docker_host}
        waiting = [naming.env_container_name(team_id, e.branch) for e in envs if not e.disabled]
        lines: list[str] = []
        deadline = time.monotonic() + self.health_timeout
        while waiting:
            name = waiting[0]
            state = self.docker(["inspect", "--format", "{{json .State}}", name], host)
            status = container_health(state.output) if state.code == 0 else f"not found ({state.output})"
            if status == "healthy":
                lines.append(f"{name} on {server}: healthy")
                waiting.pop(0)
                continue
            if time.monotonic() >= deadline:
                return JobResult(False, [*lines, f"{name} on {server}: {status} after {self.health_timeout:g}s"])
            time.sleep(self.poll)
        return JobResult(True, lines or ["no enabled environment to check"])


def container_health(state_json: str) -> str:
    """`healthy`, or what the container is instead, from `docker inspect --format '{{json .State}}'`."""
    try:
        state = json.loads(state_json)
    except ValueError:
        return "unreadable state"
    if not isinstance(state, Mapping) or not state.get("Running"):
        return "not running"
    health = state.get("Health")
    if not isinstance(health, Mapping):
        return "running without a health check"
    return str(health.get("Status") or "unknown")


def restore_on(
    jobs: ServerJobs, config: Config, team_id: str, envs: Sequence[Environment], source: str, target: str
) -> JobResult:
    """Put the moved environments' data on `target`: THE one place a move restores (the backups'
    restore, given the target server's Docker host and PostgreSQL endpoint, takes its place)."""
    lines: list[str] = []
    owner = naming.team_role_name(team_id)
    with jobs.endpoints(source) as src, jobs.endpoints(target) as dst:
        for env in envs:
            database = naming.env_db_name(team_id, env.branch)
            copied = copy_database(src, dst, database, owner)
            lines += [f"  {line}" for line in copied.lines]
            if not copied.ok:
                return JobResult(False, [*lines, f"database {database}: not restored on {target}"])
            lines.append(f"database {database}: restored on {target}")
            volume = naming.env_filestore_volume_name(team_id, env.branch)
            filestore = copy_volume(config, volume, source, target, jobs.helper_image)
            lines += [f"  {line}" for line in filestore.lines]
            if not filestore.ok:
                return JobResult(False, [*lines, f"filestore {volume}: not copied to {target}"])
            lines.append(f"filestore {volume}: copied to {target}")
    return JobResult(True, lines)


def copy_volume(config: Config, volume: str, source: str, target: str, image: str) -> JobResult:
    """A Docker volume's files from one server's engine to the same volume on another's (a tar
    stream through this machine; the target volume exists: the deployment created it)."""
    docker = _tool("docker")
    read = [docker, "run", "--rm", "-v", f"{volume}:/data:ro", image, "tar", "-C", "/data", "-cf", "-", "."]
    write = [docker, "run", "--rm", "-i", "-v", f"{volume}:/data", image, "tar", "-C", "/data", "-xf", "-"]
    return _pipe(
        read,
        {"DOCKER_HOST": config.servers[source].docker_host},
        write,
        {"DOCKER_HOST": config.servers[target].docker_host},
    )


RANDOM_PASSWORD_TYPE = "random:index/randomPassword:RandomPassword"
# How `pulumi stack export --show-secrets` writes a secret value (the engine's secret signature).
_SECRET_SIG = "4dabf18193072939515e22adb298388d"


def superuser_password(deployment: Mapping[str, Any] | None, server: str) -> str | None:
    """`server`'s PostgreSQL superuser password, from the state of the stack that declares its
    SharedInfra (the RandomPassword `shared-postgres-password`, `shared@s2-postgres-password`).
    No stack exports it as an output (team stacks read server stacks' outputs); the operator who
    moves a team reads the server stack's own state, as `pulumi stack export --show-secrets` does."""
    suffix = f"::{naming.shared_component_name(server)}-postgres-password"
    for resource in (deployment or {}).get("resources") or []:
        if resource.get("type") != RANDOM_PASSWORD_TYPE or not str(resource.get("urn", "")).endswith(suffix):
            continue
        value = (resource.get("outputs") or {}).get("result")
        if isinstance(value, dict) and value.get(_SECRET_SIG) and "plaintext" in value:
            try:
                value = json.loads(value["plaintext"])
            except ValueError:
                return None
        return value if isinstance(value, str) and value else None
    return None


def stack_endpoints(runner: Runner, entry: StackSettings, config: Config) -> Callable[[str], Any]:
    """Each server's PostgreSQL as its superuser: the endpoint from its stack's outputs
    (`postgresAdminHost`, `postgresAdminPort`), the password from its state (superuser_password),
    through an SSH tunnel when the server's Docker host is ssh://."""

    @contextmanager
    def endpoint(server: str) -> Iterator[PgEndpoint]:
        from pulumi import automation as auto

        settings = server_stack_settings(entry, server) if layout_of(entry) != "all" else entry
        try:
            stack = auto.select_stack(settings.stack, work_dir=str(settings.project_dir))
            outputs = {k: v.value for k, v in stack.outputs().items()}
            deployment = stack.export_stack().deployment
        except auto.CommandError as exc:
            raise UsageError(f"could not read stack {settings.stack}: {exc}") from None
        password = superuser_password(deployment, server)
        if password is None:
            raise UsageError(f"stack {settings.stack} holds no PostgreSQL of server {server}: deploy it first")
        host = str(outputs.get("postgresAdminHost") or config.platform.postgres_admin_host)
        port = int(outputs.get("postgresAdminPort") or config.platform.postgres_port)
        target = tunnel.tunnel_target(config.servers[server].docker_host, host)
        if target is None:
            yield PgEndpoint(host, port, "postgres", password)
            return
        opened = tunnel.open_tunnel(target, port)
        try:
            yield PgEndpoint(tunnel.LOCALHOST, opened.local_port, "postgres", password)
        finally:
            opened.close()

    return endpoint


# --------------------------------------------------------------------------------------------
# Moving a team or an environment


Deployer = Callable[[Config, str, str | None, str, str, str], RunResult]
Unprotector = Callable[[StackSettings, Sequence[str]], JobResult]


def unprotect_urns(settings: StackSettings, urns: Sequence[str]) -> JobResult:
    """`pulumi state unprotect URN... --stack S --yes` (the Automation API has no such call)."""
    if not urns:
        return JobResult(True, ["nothing protected to lift"])
    exe = require_pulumi_cli()
    proc = subprocess.run(
        [exe, "state", "unprotect", *urns, "--stack", settings.stack, "--yes", "--non-interactive"],
        cwd=settings.project_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    if proc.returncode != 0:
        return JobResult(False, lines[-2:] or [f"pulumi state unprotect exited with {proc.returncode}"])
    return JobResult(True, [f"unprotected {urn}" for urn in urns])


@dataclass(frozen=True)
class MoveTarget:
    team: str
    branch: str | None  # None: the whole team

    def describe(self) -> str:
        return f"team {self.team}" if self.branch is None else f"environment {self.branch!r} of team {self.team}"


class MoveFailed(Exception):
    """A step failed: the move stops where it is (the old placement still serves)."""


class Mover:
    """Moves a team or an environment to another server, step by step:

    1. backup   the backup job on the old server
    2. copying  the move is written to the moves file (phase `copying`) and deployed: the placement
                now exists on both servers, DNS still points at the old one
    3. restore  the data of the old placement restored on the new one
    4. check    the new placement answers (its Odoo containers healthy)
    5. switch   phase `switched` deployed: DNS points at the new server
    6. finish   the old placement's protected server resources unprotected, the config's placement
                set to the new server, the move removed from the moves file, deployed: the old
                placement is removed

    A failing step stops the move there: before step 5 the old placement serves alone, and the
    moves file says which phase the move is in; `resume` continues from that phase (phase
    `copying` starts again at the backup: the old placement kept serving and its data moved on).
    """

    def __init__(
        self,
        config_path: Path,
        *,
        runner: Runner,
        entry: StackSettings,
        jobs: MoveJobs,
        unprotect: Unprotector = unprotect_urns,
        out: Output | None = None,
    ) -> None:
        self.path = config_path
        self.runner = runner
        self.entry = entry
        self.jobs = jobs
        self.unprotect = unprotect
        self.out = out

    @property
    def moves_path(self) -> Path:
        return moves.moves_path_for(self.path)

    # -- where things are ---------------------------------------------------------------------

    def _placement(self, config: Config, target: MoveTarget) -> str:
        if target.branch is None:
            return config.team_server(target.team)
        return config.env_server(target.team, _environment(config, target.team, target.branch))

    @staticmethod
    def _moved_envs(config: Config, target: MoveTarget, source: str) -> list[Environment]:
        """The environments that change server: one, or those of the team that follow the team."""
        envs = config.team[target.team].environments
        if target.branch is not None:
            return [e for e in envs if e.branch == target.branch]
        return [e for e in envs if e.server is None]

    @staticmethod
    def _listed(config: Config, target: MoveTarget) -> Any:
        for move in config.moves:
            if move.team == target.team and move.branch == target.branch:
                return move
        return None

    def _write(self, config: Config, target: MoveTarget, move: moves.Move | None) -> Config:
        kept = [m for m in config.moves if not _same(m, target)]
        moves.write_moves(self.moves_path, kept + ([move] if move else []))
        return load_config(self.path)

    # -- deployments ---------------------------------------------------------------------------

    def _deploy(
        self, config: Config, team_id: str, servers_first: Sequence[str] = (), servers_after: Sequence[str] = ()
    ) -> RunResult:
        """`up` of what the step changed: in the one-stack layout the stack (untargeted: the change
        spans the team's component and the servers' team roles; nothing else changes); else the
        given servers' stacks, the team's stack, then the servers to clean up after it."""
        if layout_of(self.entry) == "all":
            check_config_file(self.entry, config.path)
            return self.runner.run("up", Selection(self.entry), config)
        for server in servers_first:
            settings = ensure_server_stack(self.runner, self.entry, config, server)
            check_config_file(settings, config.path)
            result = self.runner.run("up", Selection(settings), config, prefix=f"[{settings.stack}] ")
            if not result.ok:
                return result
        team = ensure_team_stack(self.runner, self.entry, config, team_id)
        check_config_file(team, config.path)
        result = self.runner.run("up", Selection(team, team_id), config, prefix=f"[{team.stack}] ")
        if not result.ok:
            return result
        for server in servers_after:
            settings = server_stack_settings(self.entry, server)
            result = self.runner.run("up", Selection(settings), config, prefix=f"[{settings.stack}] ")
            if not result.ok:
                return result
        return result

    def _team_state(self, team_id: str) -> tuple[StackSettings, Mapping[str, Any] | None]:
        from pulumi import automation as auto

        settings = self.entry if layout_of(self.entry) == "all" else team_stack_settings(self.entry, team_id)
        try:
            stack = auto.select_stack(settings.stack, work_dir=str(settings.project_dir))
            return settings, stack.export_stack().deployment
        except auto.CommandError as exc:
            raise MoveFailed(f"could not read the state of stack {settings.stack}: {exc}") from None

    # -- the steps -----------------------------------------------------------------------------

    def move(self, team_id: str, branch: str | None, to: str | None, *, resume: bool = False) -> Outcome:
        outcome = Outcome(echo=self.out)
        config = load_config(self.path)
        teams.require_team(config, team_id)
        target = MoveTarget(team_id, branch)
        if branch is not None:
            _environment(config, team_id, branch)
        if to is not None and to not in config.servers:
            known = ", ".join(config.servers)
            raise UsageError(f"{self.path}: no server {to!r} (servers: {known})")
        listed = self._listed(config, target)
        if listed is None:
            if resume:
                return self._resume_finished(config, target, to, outcome)
            if to is None:
                raise UsageError("--to NAME is required (only --resume reads it from the moves file)")
            source = self._placement(config, target)
            if source == to:
                raise UsageError(f"{self.path}: {target.describe()} is already on server {to!r}")
            self._refuse_overlap(config, target)
            phase = None
        else:
            if not resume:
                raise UsageError(
                    f"{self.moves_path}: a move of {target.describe()} to {listed.to!r} is in progress "
                    f"(phase {listed.phase}): pass --resume to continue it"
                )
            if to is not None and to != listed.to:
                raise UsageError(
                    f"{self.moves_path}: {target.describe()} is moving to {listed.to!r}, not {to!r}"
                )
            source, to, phase = listed.from_server, listed.to, listed.phase
            outcome.add(f"resuming the move of {target.describe()} from {source!r} to {to!r} (phase {phase})")
        assert to is not None
        try:
            if phase != "switched":
                config = self._copy_and_switch(config, target, source, to, outcome)
            self._finish(config, target, source, to, outcome)
        except (MoveFailed, OduflowError) as exc:
            # A step's own error (a tool missing, a stack's outputs unreadable) stops the move the
            # same way as a failed step: the moves file says where it is.
            outcome.failed = True
            outcome.add(f"move stopped: {str(exc).splitlines()[0]}")
            now = load_config(self.path)
            where = self._listed(now, target)
            if where is None and self._placement(now, target) == to:
                outcome.add(f"{self.path}: {target.describe()} is placed on {to!r}; --resume removes the old placement")
            elif where is None:
                outcome.add(f"nothing was changed: {target.describe()} is on {source!r} as before")
            else:
                outcome.add(
                    f"{self.moves_path}: phase {where.phase}; the old placement on {source!r} is kept; "
                    f"fix the cause and run the same command with --resume"
                )
        return outcome

    def _refuse_overlap(self, config: Config, target: MoveTarget) -> None:
        for move in config.moves:
            if move.team == target.team and (move.branch is None or target.branch is None):
                what = "team" if move.branch is None else f"environment {move.branch!r}"
                raise UsageError(
                    f"{self.moves_path}: the {what} of team {target.team} is being moved to {move.to!r}: "
                    "finish that move first (--resume)"
                )

    def _step(self, outcome: Outcome, number: int, name: str, result: JobResult) -> None:
        outcome.add(f"step {number}/6 {name}: {'done' if result.ok else 'FAILED'}", *[f"  {ln}" for ln in result.lines])
        if not result.ok:
            raise MoveFailed(f"step {name} failed")

    def _deployed(self, outcome: Outcome, number: int, name: str, result: RunResult) -> None:
        outcome.runs.append(result)
        self._step(outcome, number, name, JobResult(result.ok, [result.line()]))

    def _copy_and_switch(self, config: Config, target: MoveTarget, source: str, to: str, outcome: Outcome) -> Config:
        team_id = target.team
        envs = self._moved_envs(config, target, source)
        self._step(outcome, 1, "backup", self.jobs.backup(config, team_id, target.branch, source))
        config = self._write(config, target, moves.Move(team_id, target.branch, source, to, "copying"))
        outcome.add(f"{self.moves_path}: {target.describe()} moving from {source!r} to {to!r} (phase copying)")
        self._deployed(outcome, 2, "deploy on the new server", self._deploy(config, team_id, servers_first=[to]))
        self._step(outcome, 3, "restore", self.jobs.restore(config, team_id, envs, source, to))
        self._step(outcome, 4, "check", self.jobs.check(config, team_id, envs, to))
        config = self._write(config, target, moves.Move(team_id, target.branch, source, to, "switched"))
        outcome.add(f"{self.moves_path}: phase switched: DNS points at {to!r}")
        self._deployed(outcome, 5, "switch DNS", self._deploy(config, team_id))
        return config

    def _finish(self, config: Config, target: MoveTarget, source: str, to: str, outcome: Outcome) -> None:
        settings, deployment = self._team_state(target.team)
        mine, kept = protected_urns(placement_resources(deployment, target.team, target.branch, source))
        if kept:
            outcome.add(*[f"  kept protected (not a server resource): {urn}" for urn in kept])
        self._step(outcome, 6, "unprotect the old placement", self.unprotect(settings, mine))
        edit = ConfigEdit.open(self.path)
        follows_team = target.branch is not None and to == config.team_server(target.team)
        edit.set_placement(target.team, target.branch, None if follows_team else to)
        edit.validate(self.path)
        # The entry goes first, then the placement: a config placing it on `to` while the entry
        # still says `from` may not load. A refused write puts the entry back.
        listed = list(config.moves)
        moves.write_moves(self.moves_path, [m for m in listed if not _same(m, target)])
        try:
            config = edit.save(self.path)
        except BaseException:
            moves.write_moves(self.moves_path, listed)
            raise
        outcome.add(*edit.summary, f"{self.moves_path}: move of {target.describe()} done")
        cleanup = [] if source in config.team_servers(target.team) else [source]
        result = self._deploy(config, target.team, servers_after=cleanup)
        outcome.runs.append(result)
        if not result.ok:
            raise MoveFailed(
                f"removing the old placement failed ({result.line()}); {target.describe()} serves from {to!r}: "
                "run the same command with --resume to remove it"
            )
        outcome.add(f"step 6/6 finish: done: {target.describe()} is on {to!r}, removed from {source!r}")

    def _resume_finished(self, config: Config, target: MoveTarget, to: str | None, outcome: Outcome) -> Outcome:
        """No move listed: a move whose last deployment failed left the old placement in the state
        (unprotected); remove it. Anything else has nothing to resume."""
        here = self._placement(config, target)
        if to is not None and to != here:
            raise UsageError(f"{self.moves_path}: no move of {target.describe()} in progress: nothing to resume")
        settings, deployment = self._team_state(target.team)
        # Only servers the config no longer places it on: a team's TeamStack on a server where one
        # of its environments stays is not a leftover.
        still = [here] if target.branch is not None else config.team_servers(target.team)
        leftovers = [
            s
            for s in config.servers
            if s not in still and placement_resources(deployment, target.team, target.branch, s)
        ]
        if not leftovers:
            raise UsageError(f"{self.moves_path}: no move of {target.describe()} in progress: nothing to resume")
        for source in leftovers:
            outcome.add(f"resuming: removing the old placement of {target.describe()} on {source!r}")
            mine, _ = protected_urns(placement_resources(deployment, target.team, target.branch, source))
            try:
                self._step(outcome, 6, "unprotect the old placement", self.unprotect(settings, mine))
            except MoveFailed as exc:
                outcome.failed = True
                outcome.add(f"move stopped: {exc}")
                return outcome
        cleanup = [s for s in leftovers if s not in config.team_servers(target.team)]
        result = self._deploy(config, target.team, servers_after=cleanup)
        outcome.runs.append(result)
        outcome.add(f"step 6/6 finish: {'done' if result.ok else 'FAILED'}: {result.line()}")
        return outcome


def _same(move: Any, target: MoveTarget) -> bool:
    return bool(move.team == target.team and move.branch == target.branch)


def _environment(config: Config, team_id: str, branch: str) -> Environment:
    for env in config.team[team_id].environments:
        if env.branch == branch:
            return env
    known = ", ".join(e.branch for e in config.team[team_id].environments) or "none"
    raise UsageError(f"{config.path}: team {team_id} has no environment for branch {branch!r} (branches: {known})")


__all__ = [
    "Mover",
    "ServerJobs",
    "ensure_server_stack",
    "ensure_team_stack",
    "run_all",
    "server_stack_name",
    "short_stack_name",
]


# --------------------------------------------------------------------------------------------
# The command line: `team move`, `env move` (ops_cli registers them)


def register_team(sub: Any, add_config_args: Callable[[Any], None]) -> None:
    team = sub.add_parser("team", help="fleet commands for a team (move it to another server)")
    team_sub = team.add_subparsers(dest="team_command", metavar="ACTION", required=True)
    p = team_sub.add_parser("move", help="move a team to another server: back up, deploy, restore, switch DNS, remove")
    _move_args(p, add_config_args)
    p.set_defaults(handler=_move_handler, branch=None)


def register_env(env_sub: Any, add_config_args: Callable[[Any], None]) -> None:
    p = env_sub.add_parser("move", help="move one environment to another server (as `team move`)")
    _move_args(p, add_config_args)
    p.add_argument("--branch", required=True, help="git branch of the environment (e.g. feature/login)")
    p.set_defaults(handler=_move_handler)


def _move_args(p: Any, add_config_args: Callable[[Any], None]) -> None:
    add_config_args(p)
    p.add_argument("--team", help="team id (default: the only team, else 1)")
    p.add_argument("--to", help="the server to move to, as in [server.NAME] (--resume reads it from the moves file)")
    p.add_argument("--resume", action="store_true", help="continue the move the moves file lists, from its phase")
    p.add_argument("--no-policy", action="store_true", help="deploy without the policy pack")


def make_jobs(runner: Runner, entry: StackSettings, config: Config) -> MoveJobs:
    """The jobs a move runs on the servers (tests replace this)."""
    return ServerJobs(stack_endpoints(runner, entry, config))


def _move_handler(ns: Any) -> int:
    from oduflow_iac.stack_settings import print_notices, resolve_config

    require_pulumi_cli()
    config, settings = resolve_config(ns.config, ns.stack, ns.project_dir)
    print_notices(config)
    if settings is None:
        stack = ns.stack or "local"
        raise UsageError(f"no stack config for stack {stack} (Pulumi.yaml and stacks/): pass --project-dir")
    check_config_file(settings, config.path)
    team_id = teams.require_team(config, ns.team) if ns.team is not None else teams.resolve_team(config)
    runner = Runner(settings.project_dir, policy=not ns.no_policy)
    mover = Mover(config.path, runner=runner, entry=settings, jobs=make_jobs(runner, settings, config), out=print)
    return mover.move(team_id, ns.branch, ns.to, resume=ns.resume).exit_code
