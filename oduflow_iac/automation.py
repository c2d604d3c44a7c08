"""A Python API over `pulumi.automation`: deploy stacks, and manage environments' lifecycle.

Everything here drives the real project: a `LocalWorkspace` whose `work_dir` is the directory of
Pulumi.yaml, so `pulumi up` runs `__main__.py` with the stack's own config (stacks/Pulumi.<stack>.yaml).
The `pulumi` executable must be on PATH (`require_pulumi_cli`).

Layouts (`oduflow:layout` of a stack):
- `all` (default): one stack holds SharedInfra and every team; an operation for one team targets
  that team's component (`urn:...::oduflow:index:TeamStack::team-N`) with its dependents, which
  include every resource the component owns;
- `shared` + one `team-N` stack per team: an operation for one team runs that team's stack;
  `run_all` runs `shared` first, then the team stacks in parallel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from oduflow_iac import backup, naming, ports, teams, tunnel
from oduflow_iac.config import SECRETS_NAMESPACE, Config, EnvType, branch_problem, load_config
from oduflow_iac.editing import ConfigEdit, TomlValue
from oduflow_iac.errors import ConfigError, OduflowError, PulumiCliMissing, UsageError
from oduflow_iac.lifecycle import pause
from oduflow_iac.naming import DEFAULT_SERVER
from oduflow_iac.stack_settings import StackSettings, read_stack_settings

Operation = Literal["preview", "up", "destroy", "refresh"]
OPERATIONS: tuple[Operation, ...] = ("preview", "up", "destroy", "refresh")
LAYOUTS = ("all", "shared", "server", "team")
SHARED_STACK = "shared"
MAX_PARALLEL = 4
POLICY_DIR = "policies"
INSTALL_HINT = (
    "install it with `curl -fsSL https://get.pulumi.com | sh` "
    "(or see https://www.pulumi.com/docs/install/) and make sure it is on PATH"
)

Output = Callable[[str], None]
PolicyRenderer = Callable[[Config], Any]


def require_pulumi_cli() -> str:
    """The path of the `pulumi` executable, or PulumiCliMissing saying how to install it."""
    found = shutil.which("pulumi")
    if found is None:
        raise PulumiCliMissing(f"the Pulumi CLI (`pulumi`) is not on PATH: {INSTALL_HINT}")
    return found


# --------------------------------------------------------------------------------------------
# Names


def team_stack_name(team_id: str) -> str:
    return f"team-{team_id}"


def short_stack_name(stack: str) -> str:
    """`org/oduflow/team-1` -> `team-1` (URNs carry the short name)."""
    return stack.split("/")[-1]


def team_component_urn(stack: str, project: str, team_id: str) -> str:
    return f"urn:pulumi:{short_stack_name(stack)}::{project}::oduflow:index:TeamStack::{team_stack_name(team_id)}"


def environment_component_urn(stack: str, project: str, team_id: str, branch: str) -> str:
    name = naming.resource_name(team_stack_name(team_id), naming.slugify_branch(branch))
    kind = "oduflow:index:TeamStack$oduflow:index:OdooEnvironment"
    return f"urn:pulumi:{short_stack_name(stack)}::{project}::{kind}::{name}"


def layout_of(settings: StackSettings) -> str:
    layout = settings.get("layout") or "all"
    if layout not in LAYOUTS:
        raise ConfigError.single(
            str(settings.stack_file), f"config.{settings.project}:layout", f"must be one of {', '.join(LAYOUTS)}"
        )
    return layout


def stack_config_path(settings: StackSettings) -> Path | None:
    relative = settings.get("configFile")
    return (settings.project_dir / relative) if relative else None


def check_config_file(settings: StackSettings, config_path: Path) -> None:
    """A deployment reads the stack's `oduflow:configFile`: refuse to deploy another file's edit."""
    expected = stack_config_path(settings)
    if expected is None:
        raise ConfigError.single(str(settings.stack_file), "config.oduflow:configFile", "required key is missing")
    if expected.resolve() != config_path.resolve():
        raise UsageError(
            f"{config_path} is not the config file of stack {settings.stack} ({expected}); "
            "a deployment would not see it (drop --config, or pass --no-deploy)"
        )


def docker_host_for(settings: StackSettings | None, config: Config) -> str:
    value = settings.get("dockerHost") if settings is not None else None
    return value or config.platform.docker_host


def stack_docker_host(settings: StackSettings, config: Config) -> str:
    """The Docker host a stack's program deploys to. A `team-N` stack without its own
    `oduflow:dockerHost` uses the shared stack's (the program reads it from the shared stack's outputs)."""
    own = settings.get("dockerHost")
    if own:
        return own
    reference = settings.get("sharedStack") if layout_of(settings) == "team" else None
    if reference:
        try:
            shared = read_stack_settings(short_stack_name(reference), settings.project_dir)
        except (UsageError, ConfigError):
            shared = None
        if shared is not None and shared.get("dockerHost"):
            return shared.get("dockerHost") or ""
    return config.platform.docker_host


def _tunnel_targets(settings: StackSettings, config: Config) -> list[tuple[str, tunnel.SshTarget]]:
    """The ssh:// servers whose PostgreSQL a stack's program dials, each with its tunnel's target: a
    server stack its own server, a team stack every server the team sits on, the one-stack layout
    every server (program.stack_servers decides the same from inside the program)."""
    layout = layout_of(settings)
    if layout in ("server", "shared"):
        servers = [settings.get("server") or DEFAULT_SERVER]
    elif layout == "team" and (settings.get("team") or "") in config.team:
        servers = config.team_servers(settings.get("team") or "")
    else:
        servers = list(config.servers)
    targets = []
    for server in servers:
        if layout in ("server", "shared") or (server == DEFAULT_SERVER and not config.server):
            docker_host = stack_docker_host(settings, config)
        elif server in config.servers:
            docker_host = config.servers[server].docker_host
        else:
            continue
        try:
            target = tunnel.tunnel_target(docker_host, config.platform.postgres_admin_host)
        except ValueError as exc:
            where = "" if server == DEFAULT_SERVER else f" (server {server})"
            raise UsageError(f"Docker host of stack {settings.stack}{where}: {exc}") from None
        if target is not None:
            targets.append((server, target))
    return targets


# --------------------------------------------------------------------------------------------
# What the stack's state says (Automation API `export_stack`)

CONTAINER_TYPE = "docker:index/container:Container"
POSTGRESQL_PROVIDER_TYPE = "pulumi:providers:postgresql"
ONE_SHOT_ROLES = ("init", "template-init", "addons-fetch", "refresh", "upgrade")


@dataclass(frozen=True)
class FailedOneShot:
    urn: str
    name: str
    role: str
    exit_code: int | None

    def line(self) -> str:
        how = f"exit code {self.exit_code}" if self.exit_code is not None else "its creation failed"
        return f"retrying {self.role} one-shot {self.name} ({how} in the last run): replacing it"


def _resources(deployment: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not deployment:
        return []
    return [r for r in deployment.get("resources") or [] if isinstance(r, Mapping) and not r.get("delete")]


def state_labels(resource: Mapping[str, Any]) -> dict[str, str]:
    """A container's labels, as the provider records them: a list of {label, value} (outputs, else inputs)."""
    for section in ("outputs", "inputs"):
        raw = (resource.get(section) or {}).get("labels")
        if isinstance(raw, list):
            pairs = [item for item in raw if isinstance(item, Mapping)]
            return {
                item["label"]: item["value"]
                for item in pairs
                if isinstance(item.get("label"), str) and isinstance(item.get("value"), str)
            }
    return {}


def failed_one_shots(deployment: Mapping[str, Any] | None, team: str | None = None) -> list[FailedOneShot]:
    """One-shot containers (init, template-init, addons-fetch, refresh) whose recorded exit code is not 0, or
    whose creation failed (`initErrors`): `oduflow-iac up` replaces them so they run again. `team`
    keeps only that team's (a one-stack `--team` run touches nothing else)."""
    found = []
    for resource in _resources(deployment):
        if resource.get("type") != CONTAINER_TYPE:
            continue
        labels = state_labels(resource)
        role = labels.get(naming.LABEL_ROLE, "")
        if role not in ONE_SHOT_ROLES or (team is not None and labels.get(naming.LABEL_TEAM) != team):
            continue
        outputs = resource.get("outputs") or {}
        code = outputs.get("exitCode")
        exit_code = int(code) if isinstance(code, (int, float)) and not isinstance(code, bool) else None
        if (exit_code is not None and exit_code != 0) or resource.get("initErrors"):
            name = str(outputs.get("name") or (resource.get("inputs") or {}).get("name") or resource.get("urn"))
            found.append(FailedOneShot(str(resource.get("urn")), name, role, exit_code))
    return sorted(found, key=lambda f: f.urn)


def recorded_postgres_port(deployment: Mapping[str, Any] | None, server: str = DEFAULT_SERVER) -> int | None:
    """The loopback port `server`'s postgresql provider (`shared-postgresql`, `shared@s2-postgresql`)
    was last configured with: the port a tunnel should bind so that the provider's configuration
    does not change (and the only one refresh and destroy can use: they do not run the program and
    configure the provider from the state)."""
    suffix = f"::{naming.shared_component_name(server)}-postgresql"
    for resource in _resources(deployment):
        if resource.get("type") != POSTGRESQL_PROVIDER_TYPE or not str(resource.get("urn", "")).endswith(suffix):
            continue
        inputs = resource.get("inputs") or {}
        if str(inputs.get("host") or tunnel.LOCALHOST) not in tunnel.LOOPBACK_HOSTS:
            continue
        raw = inputs.get("port")
        # Provider inputs of non-string types are JSON-encoded by the SDK (`"5432"`).
        text = str(raw).strip().strip('"') if raw is not None else ""
        if text.isdigit() and 1 <= int(text) <= 65535:
            return int(text)
    return None


# --------------------------------------------------------------------------------------------
# Where an operation runs


@dataclass(frozen=True)
class Selection:
    """The stack an operation runs on and, in the one-stack layout, the URNs it is limited to."""

    settings: StackSettings
    team: str | None = None
    targets: tuple[str, ...] = ()

    @property
    def stack(self) -> str:
        return self.settings.stack

    @property
    def target_dependents(self) -> bool:
        return bool(self.targets)

    def describe(self) -> str:
        return f"{self.stack} (team {self.team})" if self.team and self.targets else self.stack


def select(settings: StackSettings, team_id: str | None = None, *, extra_targets: Sequence[str] = ()) -> Selection:
    """Where `--stack S [--team N]` runs. `extra_targets` (URNs of resources the program no longer
    declares, e.g. a removed environment) are added when the selection targets a team."""
    layout = layout_of(settings)
    if team_id is None:
        return Selection(settings, (settings.get("team") or None) if layout == "team" else None)
    if layout == "all":
        urn = team_component_urn(settings.stack, settings.project, team_id)
        return Selection(settings, team_id, (urn, *extra_targets))
    if layout == "team":
        own = settings.get("team") or ""
        if own != team_id:
            raise UsageError(f"stack {settings.stack} deploys team {own or '(none)'}, not team {team_id}")
        return Selection(settings, team_id)
    return Selection(team_stack_settings(settings, team_id), team_id)


def team_stack_file(shared: StackSettings, team_id: str) -> Path:
    return shared.stack_file.with_name(f"Pulumi.{team_stack_name(team_id)}.yaml")


def team_stack_settings(shared: StackSettings, team_id: str) -> StackSettings:
    """The `team-N` stack of the per-team layout, checked against the team it must deploy."""
    name = team_stack_name(team_id)
    try:
        settings = read_stack_settings(name, shared.project_dir)
    except UsageError:
        raise UsageError(
            f"stack {name} has no config file ({team_stack_file(shared, team_id)}); "
            f"`oduflow-iac up --all --stack {shared.stack}` creates it, or copy stacks/Pulumi.team-1.yaml"
        ) from None
    if layout_of(settings) != "team" or (settings.get("team") or "") != team_id:
        raise UsageError(f'stack {name} must set oduflow:layout: team and oduflow:team: "{team_id}"')
    return settings


# --------------------------------------------------------------------------------------------
# Running operations


@dataclass
class RunResult:
    stack: str
    operation: str
    ok: bool
    message: str = ""
    changes: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    retried: list[str] = field(default_factory=list)  # failed one-shots this `up` replaced

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def line(self) -> str:
        if not self.ok:
            return f"{self.operation} {self.stack}: FAILED: {self.message}"
        counts = ", ".join(f"{n} {op}" for op, n in sorted(self.changes.items()) if n) or "no changes"
        notes = [self.message] if self.message else []
        if self.retried:
            notes.append(f"retried {len(self.retried)} failed one-shot(s): {', '.join(self.retried)}")
        extra = f" ({'; '.join(notes)})" if notes else ""
        return f"{self.operation} {self.stack}: {counts}{extra}"


def command_error_message(exc: BaseException) -> str:
    """The engine's own error lines from a CommandError, without its stdout dump."""
    text = str(exc)
    stdout, _, stderr = text.partition(" stderr: ")
    picked: list[str] = []
    for source in (stderr, stdout):
        for raw in source.splitlines():
            line = raw.strip()
            if line.startswith("error:") and line not in picked:
                picked.append(line.removeprefix("error:").strip())
    if not picked:
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
        picked = lines[-1:] or ["the Pulumi CLI failed"]
    return "; ".join(picked[:3])


def _color() -> str:
    return "always" if sys.stdout.isatty() else "never"


class Runner:
    """Runs preview/up/destroy/refresh through the Automation API, streaming the engine's output."""

    def __init__(
        self,
        project_dir: Path,
        *,
        out: Output = print,
        policy: bool = True,
        policy_renderer: PolicyRenderer | None = None,
        env_vars: Mapping[str, str] | None = None,
        parallel: int = MAX_PARALLEL,
    ) -> None:
        self.project_dir = project_dir.resolve()
        self._out = out
        self._lock = threading.Lock()
        self.policy = policy
        self.policy_renderer = policy_renderer
        self.env_vars = dict(env_vars or {})
        self.parallel = max(1, parallel)
        self._tunnel_lock = threading.Lock()  # parallel team stacks: one port choice at a time
        self.docker: DockerRunner = run_docker  # stops and starts Odoo around upgrades

    def out(self, line: str) -> None:
        with self._lock:
            self._out(line)

    def _render_policy(self, config: Config) -> Any:
        if self.policy_renderer is not None:
            return self.policy_renderer(config)
        from oduflow_iac.policy_config import render_policy_config  # imported when a pack runs

        return render_policy_config(config)

    def _stack(self, name: str, *, create: bool) -> Any:
        from pulumi import automation as auto

        opts = auto.LocalWorkspaceOptions(env_vars=self.env_vars)
        if create:
            return auto.create_or_select_stack(name, work_dir=str(self.project_dir), opts=opts)
        return auto.select_stack(name, work_dir=str(self.project_dir), opts=opts)

    def run(
        self, operation: Operation, selection: Selection, config: Config, *, prefix: str = "", refresh_lock: bool = True
    ) -> RunResult:
        """Run one operation on one stack. Engine failures are a failed RunResult (exit 1)."""
        if operation not in OPERATIONS:
            raise UsageError(f"unknown operation {operation!r}")
        require_pulumi_cli()
        if operation == "up" and refresh_lock:
            ports.write_lock(ports.lock_path_for(config.path), ports.lock_from(config))
        self.out(f"{prefix}==> {operation} {selection.describe()}")
        kwargs: dict[str, Any] = {"on_output": lambda line: self.out(prefix + line), "color": _color()}
        if selection.targets:
            kwargs["target"] = list(selection.targets)
            kwargs["target_dependents"] = True
        with tempfile.TemporaryDirectory(prefix="oduflow-policy-") as tmp:
            if operation in ("preview", "up") and self.policy:
                kwargs.update(self._policy_args(config, Path(tmp)))
            result = self._invoke(operation, selection, config, kwargs, prefix)
        self.out(prefix + result.line())
        return result

    def _policy_args(self, config: Config, tmp: Path) -> dict[str, list[str]]:
        pack = self.project_dir / POLICY_DIR
        if not pack.is_dir():
            raise UsageError(f"{pack}: the policy pack is missing (pass --no-policy to run without it)")
        rendered = self._render_policy(config)
        config_file = tmp / "policy-config.json"
        text = rendered if isinstance(rendered, str) else json.dumps(rendered, indent=2)
        config_file.write_text(text, encoding="utf-8")
        return {"policy_packs": [str(pack)], "policy_pack_configs": [str(config_file)]}

    def _invoke(
        self, operation: Operation, selection: Selection, config: Config, kwargs: dict[str, Any], prefix: str = ""
    ) -> RunResult:
        from pulumi.automation import CommandError, InvalidVersionError, StackNotFoundError

        name = selection.stack
        try:
            stack = self._stack(name, create=operation in ("preview", "up"))
            targets = _tunnel_targets(selection.settings, config)
            deployment: Mapping[str, Any] | None = None
            if operation == "up" or targets:
                deployment = stack.export_stack().deployment
            retried: list[FailedOneShot] = []
            if operation == "up":
                team = selection.team if selection.targets else None
                retried = failed_one_shots(deployment, team)
                for failed in retried:
                    self.out(prefix + failed.line())
                if retried:
                    kwargs = {**kwargs, "replace": [f.urn for f in retried]}
            with self._tunnels(operation, config, targets, deployment, prefix) as env:
                stack.workspace.env_vars = {**self.env_vars, **env}
                if operation == "up":
                    # Odoo stopped around upgrades and refreshes (lifecycle/pause.py).
                    docker_env = {"DOCKER_HOST": stack_docker_host(selection.settings, config)}
                    result = pause.up_paused(
                        stack,
                        kwargs,
                        lambda: self._engine(operation, stack, name, kwargs),
                        lambda args: self.docker(args, docker_env),
                        lambda line: self.out(prefix + line),
                    )
                else:
                    result = self._engine(operation, stack, name, kwargs)
            result.retried = [f.name for f in retried]
            return result
        except StackNotFoundError:
            return RunResult(name, operation, False, f"stack {name} does not exist (nothing to {operation})")
        except CommandError as exc:
            return RunResult(name, operation, False, command_error_message(exc))
        except RuntimeError as exc:  # the SDK's own (e.g. no summary event came back from the engine)
            return RunResult(name, operation, False, str(exc))
        except InvalidVersionError as exc:
            raise UsageError(f"the Pulumi CLI is not usable: {exc}") from None
        except subprocess.CalledProcessError as exc:
            raise UsageError(f"the Pulumi CLI is not usable: `pulumi version` exited with {exc.returncode}") from None
        except FileNotFoundError:
            raise PulumiCliMissing(f"the Pulumi CLI (`pulumi`) could not be run: {INSTALL_HINT}") from None
        except tunnel.TunnelError as exc:
            return RunResult(name, operation, False, str(exc))

    @staticmethod
    def _engine(operation: Operation, stack: Any, name: str, kwargs: dict[str, Any]) -> RunResult:
        if operation == "preview":
            preview = stack.preview(**kwargs)
            return RunResult(name, operation, True, changes=dict(preview.change_summary or {}))
        if operation == "up":
            up = stack.up(**kwargs)
            outputs = {k: ("[secret]" if v.secret else v.value) for k, v in (up.outputs or {}).items()}
            changes = dict(up.summary.resource_changes or {})
            return RunResult(name, operation, True, changes=changes, outputs=outputs)
        if operation == "refresh":
            refreshed = stack.refresh(**kwargs)
            return RunResult(name, operation, True, changes=dict(refreshed.summary.resource_changes or {}))
        destroyed = stack.destroy(**kwargs)
        return RunResult(name, operation, True, changes=dict(destroyed.summary.resource_changes or {}))

    @contextmanager
    def _tunnels(
        self,
        operation: Operation,
        config: Config,
        targets: Sequence[tuple[str, tunnel.SshTarget]],
        deployment: Mapping[str, Any] | None,
        prefix: str,
    ) -> Iterator[dict[str, str]]:
        """The environment of one run: for each ssh:// server the stack deploys to, an SSH tunnel to
        its PostgreSQL, open for the run and closed after it (also on error or Ctrl-C), and the local
        port it listens on (ODUFLOW_POSTGRES_ADMIN_PORT, `..._PORT_S2` for server s2)."""
        with ExitStack() as stack:
            env: dict[str, str] = {}
            for server, target in targets:
                env.update(stack.enter_context(self._tunnel(operation, config, server, target, deployment, prefix)))
            yield env

    @contextmanager
    def _tunnel(
        self,
        operation: Operation,
        config: Config,
        server: str,
        target: tunnel.SshTarget,
        deployment: Mapping[str, Any] | None,
        prefix: str,
    ) -> Iterator[dict[str, str]]:
        # refresh and destroy do not run the program: the engine configures the provider from the
        # state, so only the port recorded there works. preview and up (targeted ones too: the engine
        # targets providers implicitly, pulumi/pulumi pkg/resource/deploy/step_generator.go,
        # isImplicitlyTargetedResource) take that port when free, so the provider does not change,
        # else any free port (the provider is then updated in place, nothing is replaced).
        strict = operation in ("refresh", "destroy")
        remote = config.platform.postgres_port
        with self._tunnel_lock:
            opened = tunnel.open_tunnel(
                target, remote, preferred=recorded_postgres_port(deployment, server), strict=strict
            )
        try:
            self.out(
                f"{prefix}tunnel: {tunnel.LOCALHOST}:{opened.local_port} -> "
                f"{target.destination} {tunnel.LOCALHOST}:{remote} (PostgreSQL, over ssh)"
            )
            yield tunnel.tunnel_env(opened, server)
        finally:
            opened.close()
            self.out(f"{prefix}tunnel: closed {tunnel.LOCALHOST}:{opened.local_port}")

    # -- the per-team layout ------------------------------------------------------------------

    def ensure_team_stack(self, shared: StackSettings, team_id: str) -> StackSettings:
        """The `team-N` stack's settings, creating the stack (and its config file) when missing."""
        try:
            return team_stack_settings(shared, team_id)
        except UsageError:
            if team_stack_file(shared, team_id).exists():
                raise
        from pulumi.automation import ConfigValue

        name = team_stack_name(team_id)
        stack = self._stack(name, create=True)
        values = {
            "oduflow:configFile": shared.get("configFile") or "",
            "oduflow:layout": "team",
            "oduflow:team": team_id,
            "oduflow:sharedStack": self._shared_stack_name(shared),
        }
        if shared.get("dockerHost"):
            values["oduflow:dockerHost"] = shared.get("dockerHost") or ""
        stack.set_all_config({k: ConfigValue(value=v) for k, v in values.items()})
        self.out(
            f"[{name}] created stack {name} "
            f"(set its secrets: `pulumi config set --secret --stack {name} oduflow-secrets:KEY`)"
        )
        return team_stack_settings(shared, team_id)

    @staticmethod
    def _shared_stack_name(shared: StackSettings) -> str:
        """What the existing team stacks call the shared stack (the organization differs between
        backends), else `organization/<project>/<stack>`, the self-managed backends' form."""
        for path in sorted(shared.stack_file.parent.glob("Pulumi.team-*.yaml")):
            try:
                existing = read_stack_settings(path.name[len("Pulumi.") : -len(".yaml")], shared.project_dir)
            except (UsageError, ConfigError):
                continue
            reference = existing.get("sharedStack") or ""
            if short_stack_name(reference) == shared.stack:
                return reference
        return f"organization/{shared.project}/{shared.stack}"

    def run_all(self, operation: Operation, shared: StackSettings, config: Config) -> list[RunResult]:
        """`shared`, then every team stack in parallel (destroy: the teams, then `shared`). A team's
        failure leaves the others as they are; every result is returned, one per stack."""
        require_pulumi_cli()
        if layout_of(shared) != "shared":
            raise UsageError(
                f"--all runs the per-team layout: stack {shared.stack} has oduflow:layout {layout_of(shared)}, "
                "not shared (pass --stack shared)"
            )
        if operation == "up":
            ports.write_lock(ports.lock_path_for(config.path), ports.lock_from(config))
        shared_selection = Selection(shared)
        results: list[RunResult] = []
        if operation != "destroy":
            first = self.run(operation, shared_selection, config, refresh_lock=False)
            results.append(first)
            if not first.ok:
                results += [
                    RunResult(team_stack_name(t), operation, False, "skipped: the shared stack failed")
                    for t, _ in config.teams
                ]
                return results
        results += self._run_teams(operation, shared, config)
        if operation == "destroy":
            if all(r.ok for r in results):
                results.append(self.run(operation, shared_selection, config, refresh_lock=False))
            else:
                results.append(RunResult(shared.stack, operation, False, "skipped: a team stack was not destroyed"))
        return results

    def _run_teams(self, operation: Operation, shared: StackSettings, config: Config) -> list[RunResult]:
        def one(team_id: str) -> RunResult:
            name = team_stack_name(team_id)
            try:
                if operation in ("preview", "up"):
                    settings = self.ensure_team_stack(shared, team_id)
                else:
                    try:
                        settings = team_stack_settings(shared, team_id)
                    except UsageError:
                        return RunResult(name, operation, True, "no such stack: nothing to do")
                check_config_file(settings, config.path)
                selection = Selection(settings, team_id)
                return self.run(operation, selection, config, prefix=f"[{name}] ", refresh_lock=False)
            except OduflowError as exc:
                return RunResult(name, operation, False, str(exc).splitlines()[0])
            except Exception as exc:  # one team's unexpected failure must not stop the others
                return RunResult(name, operation, False, f"{type(exc).__name__}: {exc}")

        team_ids = [t for t, _ in config.teams]
        with ThreadPoolExecutor(max_workers=min(self.parallel, max(1, len(team_ids)))) as pool:
            return list(pool.map(one, team_ids))


# --------------------------------------------------------------------------------------------
# Odoo admin credentials (the secret stack output `odooAdmin`)

ADMIN_OUTPUT = "odooAdmin"


@dataclass(frozen=True)
class Credentials:
    login: str
    password: str = field(repr=False)  # never in a repr, a log line or an exception


def credentials_key(team_id: str, branch: str) -> str:
    """The key of an environment in `odooAdmin`: `<team>/<branch>`, the branch as in oduflow.toml."""
    return f"{team_id}/{branch}"


def credentials_from_outputs(outputs: Mapping[str, Any], stack: str, team_id: str, branch: str) -> Credentials:
    """The admin login and password of one environment from a stack's outputs (values in clear)."""
    table = outputs.get(ADMIN_OUTPUT)
    if not isinstance(table, Mapping):
        raise UsageError(
            f"stack {stack} has no {ADMIN_OUTPUT} output: deploy it first (`oduflow-iac up --stack {stack}`)"
        )
    entry = table.get(credentials_key(team_id, branch))
    if not isinstance(entry, Mapping):
        raise UsageError(
            f"stack {stack} holds no admin credentials for environment {branch!r} of team {team_id}: "
            "deploy it first (`oduflow-iac up`)"
        )
    login, password = entry.get("login"), entry.get("password")
    if not isinstance(login, str) or not isinstance(password, str):
        key = credentials_key(team_id, branch)
        raise UsageError(f"stack {stack}: {ADMIN_OUTPUT}[{key!r}] is not a login and a password")
    return Credentials(login, password)


def read_credentials(project_dir: Path, selection: Selection, team_id: str, branch: str) -> Credentials:
    """An environment's Odoo admin credentials from the stack that deploys it (its `team-N` stack in
    the per-team layout). The secret is decrypted by the Pulumi CLI and only returned."""
    from pulumi import automation as auto

    require_pulumi_cli()
    try:
        stack = auto.select_stack(selection.stack, work_dir=str(project_dir.resolve()))
        outputs = {k: v.value for k, v in stack.outputs().items()}
    except auto.StackNotFoundError:
        raise UsageError(f"stack {selection.stack} does not exist: deploy it first") from None
    except auto.CommandError as exc:
        message = command_error_message(exc)
        raise UsageError(f"could not read the outputs of stack {selection.stack}: {message}") from None
    return credentials_from_outputs(outputs, selection.stack, team_id, branch)


def stack_secrets(project_dir: Path, stack: str) -> teams.SecretResolver:
    """Resolve `secret:KEY` from the stack's Pulumi config secret `oduflow-secrets:KEY` (needs the CLI)."""
    cache: dict[str, str | None] = {}
    holder: list[Any] = []

    def resolve(key: str) -> str | None:
        if key not in cache:
            from pulumi import automation as auto

            require_pulumi_cli()
            try:
                if not holder:
                    holder.append(auto.select_stack(stack, work_dir=str(project_dir)))
                cache[key] = str(holder[0].get_config(f"{SECRETS_NAMESPACE}:{key}").value)
            except auto.CommandError:  # no such stack, or no such key: this resolver does not know it
                cache[key] = None
        return cache[key]

    return resolve


# --------------------------------------------------------------------------------------------
# The docker client (backups before a production environment is deleted, leftover containers)


@dataclass(frozen=True)
class DockerResult:
    code: int
    output: str


DockerRunner = Callable[[list[str], Mapping[str, str]], DockerResult]


def run_docker(args: list[str], env: Mapping[str, str]) -> DockerResult:
    """Run the `docker` client against the stack's Docker host (DOCKER_HOST in `env`)."""
    exe = shutil.which("docker")
    if exe is None:
        raise UsageError("the `docker` client is not on PATH; it is needed to run this on the Docker host")
    proc = subprocess.run([exe, *args], env={**os.environ, **env}, capture_output=True, text=True, check=False)
    return DockerResult(proc.returncode, (proc.stdout + proc.stderr).strip())


def backup_command(team_id: str) -> list[str]:
    """Run the team's backup job once, now: the script its scheduled container runs."""
    return ["exec", naming.team_backup_container_name(team_id), "/bin/sh", backup.SCRIPT_PATH]


def expected_containers(config: Config, team_id: str) -> set[str]:
    """Names of the containers the program declares for a team."""
    team = config.team[team_id]
    names = {naming.fit_identifier(f"oduflow-{team_id}-template-{t}-init") for t in team.templates}
    names |= {naming.template_upgrade_container_name(team_id, t) for t in team.templates}
    for env in team.environments:
        names.add(naming.env_addons_fetch_container_name(team_id, env.branch))
        names.add(naming.env_upgrade_container_name(team_id, env.branch))
        if not env.disabled:
            names.add(naming.env_container_name(team_id, env.branch))
    if config.backup is not None:
        names.add(naming.team_backup_container_name(team_id))
    return names


# --------------------------------------------------------------------------------------------
# Environment and template lifecycle


@dataclass
class Outcome:
    """What a lifecycle command did: lines to print and the deployments it ran."""

    lines: list[str] = field(default_factory=list)
    runs: list[RunResult] = field(default_factory=list)
    failed: bool = False
    echo: Output | None = None  # print each line as it is added

    def add(self, *lines: str) -> None:
        for line in lines:
            self.lines.append(line)
            if self.echo is not None:
                self.echo(line)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or any(not r.ok for r in self.runs) else 0


@dataclass
class EnvironmentInfo:
    team: str
    branch: str
    type: str
    url: str
    host: str
    host_port: int
    local_url: str
    disabled: bool

    def lines(self) -> list[str]:
        state = " (disabled)" if self.disabled else ""
        return [
            f"environment {self.branch!r} of team {self.team} ({self.type}){state}",
            f"  url:       {self.url}",
            f"  host port: {self.host_port} ({self.local_url})",
        ]


def environment_info(config: Config, team_id: str, branch: str) -> EnvironmentInfo:
    env = next(e for e in config.team[team_id].environments if e.branch == branch)
    host = config.env_hostname(team_id, env)
    port = config.environment_port(team_id, branch)
    scheme = "https" if config.platform.tls else "http"
    return EnvironmentInfo(
        team_id,
        branch,
        env.type,
        f"{scheme}://{host}",
        host,
        port,
        f"http://{config.platform.publish_address}:{port}",
        env.disabled,
    )


Deploy = Callable[[Config, str, Sequence[str]], RunResult]


def make_deploy(runner: Runner, settings: StackSettings) -> Deploy:
    """Deploy what changed for one team: `up` of its stack (per-team layout) or of its component."""

    def deploy(config: Config, team_id: str, extra_targets: Sequence[str] = ()) -> RunResult:
        selection = select(settings, team_id, extra_targets=extra_targets)
        check_config_file(selection.settings, config.path)
        return runner.run("up", selection, config)

    return deploy


class Lifecycle:
    """Environment and template commands: edit oduflow.toml, then deploy that team (unless `deploy`
    is None, which edits only)."""

    def __init__(
        self,
        config_path: Path,
        *,
        deploy: Deploy | None = None,
        settings: StackSettings | None = None,
        docker: DockerRunner | None = None,
        docker_host: str | None = None,
        out: Output | None = None,
    ) -> None:
        self.path = config_path
        self.out = out
        self.deploy = deploy
        self.settings = settings
        self._docker = docker
        self.docker_host = docker_host

    def docker(self, args: list[str], env: Mapping[str, str]) -> DockerResult:
        return (self._docker or run_docker)(args, env)

    def _outcome(self, *lines: str) -> Outcome:
        outcome = Outcome(echo=self.out)
        outcome.add(*lines)
        return outcome

    def _config(self, team_id: str) -> Config:
        config = load_config(self.path)
        teams.require_team(config, team_id)
        return config

    def _finish(self, outcome: Outcome, config: Config, team_id: str, extra: Sequence[str] = ()) -> Outcome:
        if self.deploy is None:
            outcome.add("not deployed (--no-deploy): run `oduflow-iac up` to apply")
            return outcome
        outcome.runs.append(self.deploy(config, team_id, extra))
        return outcome

    def _environment(self, config: Config, team_id: str, branch: str) -> Any:
        for env in config.team[team_id].environments:
            if env.branch == branch:
                return env
        known = ", ".join(e.branch for e in config.team[team_id].environments) or "none"
        raise UsageError(f"{self.path}: team {team_id} has no environment for branch {branch!r} (branches: {known})")

    # -- environments -------------------------------------------------------------------------

    def create_environment(
        self,
        team_id: str,
        branch: str,
        *,
        env_type: EnvType = "development",
        template: str | None = None,
        image: str | None = None,
    ) -> tuple[Outcome, EnvironmentInfo]:
        config = self._config(team_id)
        problem = branch_problem(branch)
        if problem:
            raise ConfigError.single(str(self.path), f"team.{team_id}.environments", problem)
        if any(e.branch == branch for e in config.team[team_id].environments):
            raise UsageError(f"{self.path}: team {team_id} already has an environment for branch {branch!r}")
        team = config.team[team_id]
        if template is None and image is None:
            if "default" in team.templates:
                template = "default"
            elif len(team.templates) == 1:
                template = next(iter(team.templates))
            else:
                raise UsageError(
                    f"{self.path}: team.{team_id}.templates: no `default` template and not exactly one: "
                    "pass --template NAME or --image IMAGE"
                )
        values: dict[str, TomlValue] = {"branch": branch, "type": env_type}
        if template is not None:
            values["template"] = template
        if image is not None:
            values["odoo_image"] = image
        edit = ConfigEdit.open(self.path)
        edit.add_environment(team_id, values)
        config = edit.save(self.path)
        info = environment_info(config, team_id, branch)
        outcome = self._outcome(*edit.summary, *info.lines())
        return self._finish(outcome, config, team_id), info

    def set_disabled(self, team_id: str, branch: str, disabled: bool) -> Outcome:
        config = self._config(team_id)
        env = self._environment(config, team_id, branch)
        edit = ConfigEdit.open(self.path)
        changed = edit.set_environment_key(team_id, branch, "disabled", True if disabled else None)
        config = edit.save(self.path)
        word = "disabled" if disabled else "enabled"
        if not changed:
            # Nothing to deploy: saying "run up to apply" would send the user after nothing.
            return self._outcome(f"environment {branch!r} of team {team_id} is already {word}; nothing to do")
        lines = list(edit.summary)
        if disabled:
            lines.append("its Odoo container is removed; its database and filestore are kept")
            if env.type == "production":
                lines.insert(0, f"WARNING: {branch!r} is a production environment: it stops serving its users")
        return self._finish(self._outcome(*lines), config, team_id)

    def delete_environment(self, team_id: str, branch: str, *, force: bool = False) -> Outcome:
        """Delete an environment and its data. Production: back up first (refused without a
        [backup] unless `force`). Protected: a first deployment lifts `protect`, then the removal."""
        config = self._config(team_id)
        env = self._environment(config, team_id, branch)
        outcome = self._outcome()
        if env.type == "production" and not self._backup_before_delete(config, team_id, env, force, outcome):
            outcome.failed = True
            return outcome
        # `protect = false` already in the file may not be deployed yet (an earlier attempt whose
        # first deployment failed): deploy it again before the removal, it costs one no-op update.
        if env.is_protected or (env.protect is False and self.deploy is not None):
            if env.is_protected:
                edit = ConfigEdit.open(self.path)
                edit.set_environment_key(team_id, branch, "protect", False)
                config = edit.save(self.path)
                outcome.add(f"step 1/2: {branch!r} marked protect = false so its database can be dropped")
            else:
                outcome.add(f"step 1/2: {branch!r} is marked protect = false; deploying that first")
            if self.deploy is None:
                outcome.add("not deployed (--no-deploy): run `oduflow-iac up`, then `env delete` again to remove it")
                return outcome
            first = self.deploy(config, team_id, ())
            outcome.runs.append(first)
            if not first.ok:
                outcome.add(
                    f"the protection was not lifted; {self.path} says protect = false: fix the failure "
                    "and run `env delete` again"
                )
                return outcome
            outcome.add("step 2/2: removing the environment")
        edit = ConfigEdit.open(self.path)
        edit.remove_environment(team_id, branch)
        config = edit.save(self.path)
        database = naming.env_db_name(team_id, branch)
        outcome.add(*edit.summary, f"deploying drops its database {database} and its filestore")
        extra: tuple[str, ...] = ()
        if self.settings is not None:
            extra = (environment_component_urn(self.settings.stack, self.settings.project, team_id, branch),)
        return self._finish(outcome, config, team_id, extra)

    def _backup_before_delete(self, config: Config, team_id: str, env: Any, force: bool, outcome: Outcome) -> bool:
        where = f"{self.path}: team.{team_id}: environment {env.branch!r} is production"
        if config.backup is None:
            if not force:
                raise UsageError(
                    f"{where} and no [backup] is configured, so no backup can be taken before its database "
                    "is dropped: configure [backup], or pass --force to delete it without a backup"
                )
            outcome.add("WARNING: no [backup] configured; deleting without a backup (--force)")
            return True
        if not env.backup:
            if not force:
                raise UsageError(
                    f"{where} with backup = false, so the backup job does not dump it: "
                    "pass --force to delete it without a backup"
                )
            outcome.add("WARNING: backup = false; deleting without a backup (--force)")
            return True
        host = self.docker_host or config.platform.docker_host
        outcome.add(f"backing up team {team_id} ({naming.team_backup_container_name(team_id)} on {host})")
        result = self.docker(backup_command(team_id), {"DOCKER_HOST": host})
        if result.output:
            outcome.add(*[f"  {line}" for line in result.output.splitlines()])
        if result.code == 0:
            outcome.add("backup done")
            return True
        if force:
            outcome.add(f"WARNING: the backup job failed (exit {result.code}); deleting anyway (--force)")
            return True
        outcome.add(f"the backup job failed (exit {result.code}); nothing was changed (pass --force to delete anyway)")
        return False

    # -- templates ----------------------------------------------------------------------------

    def init_template(self, team_id: str, name: str, image: str, modules: Sequence[str] | None = None) -> Outcome:
        config = self._config(team_id)
        values: dict[str, TomlValue] = {"odoo_image": image}
        if modules:
            values["modules"] = list(modules)
        edit = ConfigEdit.open(self.path)
        edit.add_template(team_id, name, values)
        config = edit.save(self.path)
        db = naming.template_db_name(team_id, name)
        return self._finish(self._outcome(*edit.summary, f"template database: {db}"), config, team_id)

    def list_templates(self, team_id: str) -> list[tuple[str, str, list[str], list[str]]]:
        """(name, image, modules, branches using it) of each template of a team."""
        team = self._config(team_id).team[team_id]
        return [
            (name, t.odoo_image, list(t.modules), [e.branch for e in team.environments if e.template == name])
            for name, t in sorted(team.templates.items())
        ]

    def delete_template(self, team_id: str, name: str) -> Outcome:
        config = self._config(team_id)
        team = config.team[team_id]
        if name not in team.templates:
            known = ", ".join(sorted(team.templates)) or "none"
            raise UsageError(f"{self.path}: team {team_id} has no template {name!r} (templates: {known})")
        users = [e.branch for e in team.environments if e.template == name]
        if users:
            raise UsageError(
                f"{self.path}: team.{team_id}.templates.{name}: used by {', '.join(users)}: "
                "delete those environments or give them another template first"
            )
        edit = ConfigEdit.open(self.path)
        edit.remove_template(team_id, name)
        config = edit.save(self.path)
        return self._finish(self._outcome(*edit.summary), config, team_id)

    # -- cleanup ------------------------------------------------------------------------------

    def cleanup(
        self,
        team_id: str,
        *,
        gone_branches: Iterable[str] = (),
        remove_disabled: bool = False,
        dry_run: bool = False,
        orphans: bool = False,
        remove_orphans: bool = False,
    ) -> Outcome:
        """Remove the environments of branches that no longer exist (and, with `remove_disabled`,
        the disabled ones), never a protected one; then deploy; then report (or remove) containers
        labelled for the team that the program no longer declares."""
        config = self._config(team_id)
        team = config.team[team_id]
        gone = set(gone_branches)
        outcome = self._outcome()
        doomed: list[str] = []
        for env in team.environments:
            if env.branch in gone:
                reason = "branch is gone"
            elif remove_disabled and env.disabled:
                reason = "disabled"
            else:
                continue
            if env.is_protected:
                outcome.add(f"kept {env.branch!r} ({reason}): protected, use `env delete`")
                continue
            doomed.append(env.branch)
            outcome.add(f"{'would remove' if dry_run else 'removing'} {env.branch!r} ({reason})")
        for branch in sorted(gone - {e.branch for e in team.environments}):
            outcome.add(f"no environment for gone branch {branch!r}")
        if dry_run:
            # Listing is read-only: a dry run still lists the orphans (and removes none).
            if orphans or remove_orphans:
                self._orphans(config, team_id, False, outcome)
            outcome.add("dry run: nothing changed")
            return outcome
        if doomed:
            edit = ConfigEdit.open(self.path)
            for branch in doomed:
                edit.remove_environment(team_id, branch)
            config = edit.save(self.path)
            extra: tuple[str, ...] = ()
            if self.settings is not None:
                extra = tuple(
                    environment_component_urn(self.settings.stack, self.settings.project, team_id, b) for b in doomed
                )
            self._finish(outcome, config, team_id, extra)
        elif not (orphans or remove_orphans):
            outcome.add("nothing to clean up")
        if (orphans or remove_orphans) and outcome.exit_code == 0:
            self._orphans(config, team_id, remove_orphans, outcome)
        return outcome

    def _orphans(self, config: Config, team_id: str, remove: bool, outcome: Outcome) -> None:
        env = {"DOCKER_HOST": self.docker_host or config.platform.docker_host}
        listed = self.docker(
            [
                "ps",
                "-a",
                "--filter",
                f"label={naming.LABEL_TEAM}={team_id}",
                "--filter",
                f"label={naming.LABEL_MANAGED}=true",
                "--format",
                "{{.Names}}",
            ],
            env,
        )
        if listed.code != 0:
            outcome.add(f"could not list containers (exit {listed.code}): {listed.output}")
            outcome.failed = True
            return
        found = {n.strip().lstrip("/") for n in listed.output.splitlines() if n.strip()}
        leftovers = sorted(found - expected_containers(config, team_id))
        if not leftovers:
            outcome.add("no leftover containers")
            return
        outcome.add(*[f"leftover container: {name}" for name in leftovers])
        if remove:
            removed = self.docker(["rm", "-f", *leftovers], env)
            if removed.code != 0:
                outcome.add(f"could not remove them (exit {removed.code}): {removed.output}")
                outcome.failed = True
            else:
                outcome.add(f"removed {len(leftovers)} leftover containers")
