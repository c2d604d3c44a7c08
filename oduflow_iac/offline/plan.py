"""`oduflow-iac plan`: the whole program under the SDK's mocks, then every policy of the pack, with
no Pulumi CLI, no Docker engine and no credentials. What a pull request shows before `pulumi up`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oduflow_iac.config import Config
from oduflow_iac.errors import UsageError
from oduflow_iac.offline.harness import UNKNOWN, PlannedResource, PlannedRun, Secret, redact, run_offline
from oduflow_iac.program import ProgramSettings, build
from oduflow_iac.stack_settings import StackSettings, resolve_config
from oduflow_iac.wording import plural

if TYPE_CHECKING:
    from oduflow_iac.offline.bridge import Violation
    from oduflow_iac.offline.changes import PlanDiff

PLACEHOLDER = "offline-placeholder"
COMMENT_MARKER = "<!-- oduflow-iac-plan -->"
COMPONENT_PREFIX = "oduflow:index:"


@dataclass
class PlanResult:
    config: Config
    run: PlannedRun
    violations: list[Violation]
    missing_secrets: list[str] = field(default_factory=list)

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.level == "mandatory"]

    @property
    def advisory(self) -> list[Violation]:
        return [v for v in self.violations if v.level != "mandatory"]


def secret_config(
    config: Config, settings: StackSettings | None, teams: list[str] | None = None
) -> tuple[dict[str, str], list[str], list[str]]:
    """Stack config for the mocked run: plain values as the stack file has them; every secret the
    program may read (the stack's `secure:` keys and the `secret:KEY` references of oduflow.toml)
    set to a placeholder and marked secret. Returns (values, secret keys, references the stack lacks)."""
    values = dict(settings.values) if settings else {}
    secure = set(settings.secure_keys) if settings else set()
    refs = _secret_refs(config, teams)
    missing = sorted({r for r in refs if r not in secure and r not in values}) if settings else []
    keys = sorted(secure | set(refs))
    stored = _ciphertexts(settings)
    for key in keys:
        values[key] = stand_in(key, stored.get(key))
    return values, keys, missing


def stand_in(key: str, ciphertext: str | None) -> str:
    """The offline value of a secret: never the secret, but different when the stack file holds a
    different ciphertext for it, so a diff of two plans can tell whether a stack secret changed
    without reading it (`pulumi config set --secret` writes a new ciphertext)."""
    import hashlib

    mark = hashlib.sha256(ciphertext.encode()).hexdigest()[:12] if ciphertext else "unset"
    return f"{PLACEHOLDER}:{key}:{mark}"


def _ciphertexts(settings: StackSettings | None) -> dict[str, str]:
    """The stack file's `secure:` values (ciphertext, as committed), by full key."""
    if settings is None:
        return {}
    import yaml

    try:
        doc = yaml.safe_load(settings.stack_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    section = doc.get("config") if isinstance(doc, dict) else None
    out: dict[str, str] = {}
    for key, value in (section or {}).items() if isinstance(section, dict) else ():
        if isinstance(value, dict) and isinstance(value.get("secure"), str):
            out[key if ":" in key else f"{settings.project}:{key}"] = value["secure"]
    return out


def _secret_refs(config: Config, teams: list[str] | None = None) -> list[str]:
    """The `secret:KEY` references the program reads for these teams (all when None); tokens are
    the operations CLI's, not the program's."""
    chosen = [team for team_id, team in config.teams if teams is None or team_id in teams]
    secrets = [config.dns.api_token if config.dns else None, config.platform.dashboard_password]
    secrets += [s for team in chosen for s in team.program_secrets()]
    return [s.stack_key for s in secrets if s is not None and s.stack_key]


def plan_run(
    config: Config,
    settings: StackSettings | None,
    *,
    stack: str = "local",
    on_register: Callable[[PlannedResource], None] | None = None,
) -> tuple[PlannedRun, list[str]]:
    """Run the program for `config` under mocks, with the stack's settings."""
    project = settings.project if settings else "oduflow"
    program_settings = ProgramSettings.from_values(config, settings.get if settings else lambda _key: None)
    problem = program_settings.problem(config)
    if problem:
        where = f"{settings.stack_file}: " if settings else ""
        raise UsageError(f"{where}{problem}")
    deployed = {"all": None, "shared": [], "server": [], "team": [program_settings.team or ""]}.get(
        program_settings.layout
    )
    values, keys, missing = secret_config(config, settings, deployed)
    run = run_offline(
        partial(build, config, program_settings),  # not a lambda: one frame less in every stack the SDK captures
        project=project,
        stack=settings.stack if settings else stack,
        config=values,
        secret_keys=keys,
        on_register=on_register,
        referenced_docker_hosts=referenced_docker_hosts(config, program_settings),
    )
    return run, missing


def referenced_docker_hosts(config: Config, settings: ProgramSettings) -> dict[str, str]:
    """What each server stack a team stack reads would export as `dockerHost`: the config's own
    value, so the offline plan of a team stack shows which engine each resource goes to."""
    from oduflow_iac.program import server_docker_host

    if settings.layout != "team" or settings.team not in config.team:
        return {}
    return {
        settings.server_stack(server): server_docker_host(config, settings, server)
        for server in config.team_servers(settings.team)
    }


def plan_config(
    config_path: str | Path | None = None, stack: str | None = None, project_dir: Path | None = None
) -> PlannedRun:
    """The planned run of a config (the stack's own config file when `config_path` is None);
    `stack` None: the default stack `local`, optional with an explicit config file."""
    config, settings = resolve_config(Path(config_path) if config_path else None, stack, project_dir)
    return plan_run(config, settings, stack=stack or "local")[0]


def plan(
    config_path: Path | None,
    stack: str | None = None,
    project_dir: Path | None = None,
    on_register: Callable[[PlannedResource], None] | None = None,
    on_phase: Callable[[str, Config], None] | None = None,
) -> PlanResult:
    """Plan and check: the run plus every policy, with the policy config rendered from the same file.
    `on_phase("program" | "policies", config)` is called as each long phase starts (progress)."""
    from oduflow_iac.offline.bridge import run_policies
    from oduflow_iac.policy_config import render_policy_config

    config, settings = resolve_config(config_path, stack, project_dir)
    if on_phase is not None:
        on_phase("program", config)
    run, missing = plan_run(config, settings, stack=stack or "local", on_register=on_register)
    if on_phase is not None:
        on_phase("policies", config)
    # The recorded run is large and lives until the end: keep the collector from walking it again
    # and again while the policies allocate (its cost would grow with the size of the plan). No
    # full collection first: it costs more than the little garbage it would free before the end.
    gc.freeze()
    try:
        violations = run_policies(run, render_policy_config(config))
    finally:
        gc.unfreeze()
    return PlanResult(config, run, violations, missing)


# --------------------------------------------------------------------------------------------
# Output


# Version of the JSON plan's shape (`formatVersion`); raised when a key is removed or changes meaning.
JSON_FORMAT_VERSION = 2


def to_json(result: PlanResult, diff: PlanDiff | None = None) -> dict[str, Any]:
    """The JSON contract other tools read. Every secret is "[secret]". With `diff`: what the plan
    changes against its base, first."""
    from oduflow_iac.offline import changes

    run = result.run
    doc: dict[str, Any] = {"formatVersion": JSON_FORMAT_VERSION, "project": run.project, "stack": run.stack}
    if diff is not None:
        doc["changes"] = [changes.change_doc(c) for c in changes.ordered(diff)]
    doc["resources"] = [_resource_doc(r, whole_numbers(redact(r.inputs))) for r in run.resources]
    doc["revisions"] = _revisions(result.config)
    doc["violations"] = [_violation_doc(v) for v in result.violations]
    doc["notes"] = plan_notes(result)
    doc["summary"] = _summary_doc(result, diff)
    return doc


def whole_numbers(value: Any) -> Any:
    """Numbers as the program wrote them: the engine's wire format (a protobuf Struct) has only
    doubles, so a port 50000 comes back as 50000.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    if isinstance(value, Secret):
        return Secret(whole_numbers(value.value))
    return value


def _revisions(config: Config) -> dict[str, Any]:
    """What each environment runs (revisions.plan_section): what `--diff-against` compares."""
    from oduflow_iac import revisions

    return revisions.plan_section(config)


def _revisions_json(config: Config) -> str:
    """One environment per line, like resources."""
    section = _revisions(config)
    if not section:
        return "{}"
    rows = [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in section.items()]
    return "{\n" + ",\n".join(rows) + "\n  }"


def _unpinned_note(config: Config) -> str | None:
    from oduflow_iac import revisions

    envs = revisions.unpinned(_revisions(config))
    if not envs:
        return None
    shown = ", ".join(envs[:5]) + (f" and {len(envs) - 5} more" if len(envs) > 5 else "")
    return (
        f"{plural(len(envs), 'environment')} {'runs' if len(envs) == 1 else 'run'} unpinned addon repositories "
        f"({shown}): the fetcher takes each branch head when it runs and no module is upgraded; "
        "`oduflow-iac env update --team N --branch B` pins them in "
        f"{revisions.lock_path_for(config.path).name}"
    )


def plan_notes(result: PlanResult) -> list[dict[str, Any]]:
    """What the table and the markdown say besides resources and violations, for tools."""
    notes: list[dict[str, Any]] = [
        {"kind": "config", "file": n.file, "key": n.key, "message": n.message} for n in result.config.notices
    ]
    if result.config.unlocked_environments:
        notes.append(
            {
                "kind": "unlocked-ports",
                "environments": list(result.config.unlocked_environments),
                "message": _unlocked_note(result.config),
            }
        )
    if result.missing_secrets:
        keys = list(result.missing_secrets)
        notes.append({"kind": "missing-secrets", "keys": keys, "message": _missing_note(result)})
    for team, branch, source, generation in _copies(result.config):
        notes.append(
            {
                "kind": "refresh",
                "team": team,
                "branch": branch,
                "cloneFrom": source,
                "generation": generation,
                "message": _refresh_note(team, branch, source, generation),
            }
        )
    unpinned = _unpinned_note(result.config)
    if unpinned:
        from oduflow_iac import revisions

        envs = revisions.unpinned(_revisions(result.config))
        notes.append({"kind": "unpinned", "environments": envs, "message": unpinned})
    return notes


def _copies(config: Config) -> list[tuple[str, str, str, int]]:
    """(team, branch, source, refresh generation) of every environment with `clone_from`."""
    return [
        (team_id, env.branch, env.clone_from, config.env_revisions(team_id, env.branch).refresh)
        for team_id, team in config.teams
        for env in team.environments
        if env.clone_from is not None
    ]


def _refresh_note(team: str, branch: str, source: str, generation: int) -> str:
    return (
        f"team {team}: {branch} ← copy of {source} (refresh {generation}), neutralised; "
        f"`oduflow-iac env refresh --team {team} --branch {branch}` takes a new copy"
    )


def _missing_note(result: PlanResult) -> str:
    return (
        f"the stack has no value yet for {', '.join(result.missing_secrets)}: "
        "set each with `pulumi config set --secret KEY ...` before `pulumi up`"
    )


def _violation_doc(v: Violation) -> dict[str, Any]:
    return {"policy": v.policy, "level": v.level, "urn": v.urn, "message": v.message}


def _summary_doc(result: PlanResult, diff: PlanDiff | None = None) -> dict[str, Any]:
    by_type = Counter(r.type for r in result.run.resources)
    doc: dict[str, Any] = {
        "resources": len(result.run.resources),
        "by_type": dict(sorted(by_type.items())),
        "mandatory": len(result.mandatory),
        "advisory": len(result.advisory),
    }
    if diff is not None:
        from oduflow_iac.offline import changes

        doc["changes"] = changes.summary_doc(diff)
    return doc


def _resource_doc(r: PlannedResource, inputs: Any) -> dict[str, Any]:
    from oduflow_iac.offline import changes, replacements

    return {
        "urn": r.urn,
        "type": r.type,
        "name": r.name,
        "parent": r.parent,
        "custom": r.custom,
        "inputs": inputs,
        "dependencies": r.dependencies,
        "protect": r.protect,
        # Where it is created: the provider resource's URN (each server has its own providers).
        "provider": provider_urn(r),
        "ignoreChanges": r.ignore_changes,
        "replaceOnChanges": r.replace_on_changes,
        # As the engine will do it: asked for by the program or always done by the provider.
        "deleteBeforeReplace": replacements.deletes_before_replace(r.type, r.custom, r.delete_before_replace),
        "secrets": changes.secret_digests(r.inputs, _secret_plain, UNKNOWN),
    }


def _secret_plain(value: Any) -> Any:
    from oduflow_iac.offline.harness import reveal

    return reveal(value) if isinstance(value, Secret) else None


def _redacted_json(value: Any) -> str:
    """`json.dumps(redact(value))` without copying `value`: secrets through the encoder's hook,
    unknowns (only ever whole strings) replaced in the text."""

    def hidden(o: object) -> str:
        if isinstance(o, Secret):
            return "[secret]"
        raise TypeError(f"{type(o).__name__} is not JSON serializable")

    return json.dumps(value, default=hidden).replace(f'"{UNKNOWN}"', '"[unknown]"')


def render_json(result: PlanResult, diff: PlanDiff | None = None) -> str:
    """`to_json` as text: the top level indented, each resource and violation on one line of its
    own (a plan diffs line by line, and the C encoder serialises it several times faster than an
    indented dump)."""
    from oduflow_iac.offline import changes

    run = result.run

    def array(rows: list[str]) -> str:
        return "[\n" + ",\n".join(f"    {row}" for row in rows) + "\n  ]" if rows else "[]"

    resources = [_redacted_json(_resource_doc(r, whole_numbers(r.inputs))) for r in run.resources]
    violations = [json.dumps(_violation_doc(v)) for v in result.violations]
    notes = [json.dumps(n) for n in plan_notes(result)]
    summary = json.dumps(_summary_doc(result, diff), indent=2).replace("\n", "\n  ")
    lines = [
        f'  "formatVersion": {JSON_FORMAT_VERSION}',
        f'  "project": {json.dumps(run.project)}',
        f'  "stack": {json.dumps(run.stack)}',
    ]
    if diff is not None:
        lines.append(f'  "changes": {array([json.dumps(changes.change_doc(c)) for c in changes.ordered(diff)])}')
    lines += [
        f'  "resources": {array(resources)}',
        f'  "revisions": {_revisions_json(result.config)}',
        f'  "violations": {array(violations)}',
        f'  "notes": {array(notes)}',
        f'  "summary": {summary}',
    ]
    return "{\n" + ",\n".join(lines) + "\n}\n"


@dataclass
class _Node:
    resource: PlannedResource
    children: list[_Node] = field(default_factory=list)


def resource_tree(run: PlannedRun) -> list[_Node]:
    """Resources as a forest by parent, in registration order (shared first, then each team)."""
    nodes = {r.urn: _Node(r) for r in run.resources}
    roots: list[_Node] = []
    for r in run.resources:
        parent = nodes.get(r.parent) if r.parent else None
        (parent.children if parent else roots).append(nodes[r.urn])
    return roots


def team_of(run: PlannedRun) -> dict[str, str | None]:
    """Each resource's team (from its TeamStack ancestor), None for shared resources."""
    return {urn: team for urn, (_server, team) in placement_of(run).items()}


def provider_urn(r: PlannedResource) -> str | None:
    """The URN of the provider resource `r` is created through (the engine's reference is
    `URN::ID`), None for components and the default provider."""
    return r.provider.rsplit("::", 1)[0] if r.provider else None


def placement_of(run: PlannedRun) -> dict[str, tuple[str | None, str | None]]:
    """Each resource's (server, team): from its TeamStack or SharedInfra ancestor (`team-1@s2`,
    `shared@s2`), a team's database roles from their name, a provider of a team stack from its name
    (`shared@s2-docker`), anything else from the provider it goes through. None where nothing
    places it (a StackReference). A parent is always registered before its children and a
    provider before what uses it, so one pass in registration order suffices."""
    from oduflow_iac import naming

    out: dict[str, tuple[str | None, str | None]] = {}
    for r in run.resources:
        where: tuple[str | None, str | None] = (None, None)
        team = naming.team_of_component(r.name) if r.type == f"{COMPONENT_PREFIX}TeamStack" else None
        if team is not None:
            where = (team[1], team[0])
        elif r.type in (f"{COMPONENT_PREFIX}SharedInfra", f"{COMPONENT_PREFIX}TeamDatabaseRoles"):
            where = (naming.split_server_scoped(r.name)[1], None)
        elif r.parent in out:
            where = out[r.parent]
        elif r.type.startswith("pulumi:providers:"):
            where = (naming.split_server_scoped(r.name.rsplit("-", 1)[0])[1], None)
        if where == (None, None) and provider_urn(r) in out:
            where = (out[provider_urn(r) or ""][0], None)
        out[r.urn] = where
    return out


@dataclass(frozen=True)
class ServerUse:
    """What a server's placements ask of it against its capacity (None: no capacity declared)."""

    server: str
    environments: int
    cpu: float
    memory_mb: int
    capacity_cpu: float | None = None
    capacity_memory_mb: int | None = None

    def text(self) -> str:
        def of(used: float, cap: float | None, unit: str = "") -> str:
            shown = f"{used:g}{unit}"
            return f"{shown} of {cap:g}{unit}" if cap is not None else shown

        return (
            f"{plural(self.environments, 'environment')} · cpu {of(self.cpu, self.capacity_cpu)} · "
            f"memory {of(self.memory_mb, self.capacity_memory_mb, ' MB')}"
        )


def server_use(config: Config, server: str) -> ServerUse:
    """The environments declared on `server` (both placements of one being moved count: both run
    during the move) and the sum of their cpu and memory limits, against the server's capacity."""
    placed = config.server_environments(server)
    limits = [config.env_limits(env) for _team, env in placed]
    capacity = config.servers[server].capacity
    return ServerUse(
        server,
        len(placed),
        round(sum(limit.cpu for limit in limits), 3),
        sum(limit.memory_mb for limit in limits),
        capacity.cpu if capacity is not None else None,
        capacity.memory_mb if capacity is not None else None,
    )


def _label(r: PlannedResource) -> str:
    name = r.inputs.get("name") if isinstance(r.inputs.get("name"), str) else None
    shown = f"{r.name}" + (f" ({name})" if name and name != r.name else "")
    return f"{r.type}  {shown}" + ("  [protected]" if r.protect else "")


def render_table(result: PlanResult, out: Any = None, diff: PlanDiff | None = None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.tree import Tree

    console = Console(file=out or sys.stdout, highlight=False)
    if not console.is_terminal:
        # Piped: the width the user asked for (COLUMNS), else one wide enough for the tree.
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else 160
        console = Console(file=out or sys.stdout, highlight=False, width=width)
    if diff is not None:
        _print_changes(console, diff)
    run = result.run
    title = f"oduflow plan · project {run.project} · stack {run.stack}"
    tree = Tree(f"[bold]{title}[/bold]")

    def add(branch: Tree, node: _Node) -> None:
        style = "cyan" if node.resource.type.startswith(COMPONENT_PREFIX) else "green"
        sub = branch.add(f"[{style}]+[/{style}] {_escape(_label(node.resource))}")
        for child in node.children:
            add(sub, child)

    placement = placement_of(run)
    roots = resource_tree(run)
    for server, label in _server_groups(result.config, placement):
        group = tree.add(f"[bold]{_escape(label)}[/bold]") if server is not None else tree
        for root in sorted(
            (n for n in roots if placement[n.resource.urn][0] == server),
            key=lambda n: _team_key(placement[n.resource.urn][1]),
        ):
            add(group, root)
    console.print(tree)

    if result.violations:
        table = Table(title="Policy violations", show_lines=False)
        table.add_column("policy")
        table.add_column("level")
        table.add_column("resource")
        table.add_column("message")
        for v in sorted(result.violations, key=lambda v: (v.level != "mandatory", v.policy)):
            colour = "red" if v.level == "mandatory" else "yellow"
            table.add_row(v.policy, f"[{colour}]{v.level}[/{colour}]", _escape(_short_urn(v.urn)), _escape(v.message))
        console.print(table)
    # Sentences are not wrapped by us: a terminal wraps them between words, a pipe keeps them whole.
    if result.config.unlocked_environments:
        console.print(f"[yellow]note:[/yellow] {_escape(_unlocked_note(result.config))}", soft_wrap=True)
    if result.missing_secrets:
        console.print(f"[yellow]note:[/yellow] {_escape(_missing_note(result))}", soft_wrap=True)
    for copy in _copies(result.config):
        console.print(f"[yellow]note:[/yellow] {_escape(_refresh_note(*copy))}", soft_wrap=True)
    unpinned = _unpinned_note(result.config)
    if unpinned:
        console.print(f"[yellow]warning:[/yellow] {_escape(unpinned)}", soft_wrap=True)
    console.print(_summary_line(result), soft_wrap=True)


def _print_changes(console: Any, diff: PlanDiff) -> None:
    """The change against the base, before the plan it is part of."""
    from oduflow_iac.offline.changes import text_lines

    for style, text in text_lines(diff):
        console.print(f"[{style}]{_escape(text)}[/{style}]" if style else _escape(text))
    console.print()


def _unlocked_note(config: Config) -> str:
    from oduflow_iac.ports import lock_path_for

    envs = config.unlocked_environments
    shown = ", ".join(envs[:5]) + (f" and {len(envs) - 5} more" if len(envs) > 5 else "")
    return (
        f"{plural(len(envs), 'environment')} {'has' if len(envs) == 1 else 'have'} no port in "
        f"{lock_path_for(config.path).name} ({shown}): "
        "run `oduflow-iac lock` and commit the file, so their ports never move"
    )


def _team_key(team: str | None) -> tuple[int, int, str]:
    """Shared resources first, then teams in the config's order (numeric ids by number)."""
    if team is None:
        return (0, 0, "")
    return (1, int(team), "") if team.isdigit() else (2, 0, team)


def _server_groups(
    config: Config, placement: Mapping[str, tuple[str | None, str | None]]
) -> list[tuple[str | None, str]]:
    """The plan's servers in the config's order with their use against capacity, then what no
    server places (a stack reference), if anything."""
    present = {server for server, _team in placement.values()}
    groups: list[tuple[str | None, str]] = [
        (server, f"server {server} · {server_use(config, server).text()}")
        for server in config.servers
        if server in present
    ]
    groups += [(s, f"server {s}") for s in sorted(x for x in present if x is not None and x not in config.servers)]
    if None in present:
        groups.append((None, ""))
    return groups


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _short_urn(urn: str | None) -> str:
    return urn.rsplit("::", 1)[-1] if urn else "(stack)"


def _summary_line(result: PlanResult) -> str:
    m, a = len(result.mandatory), len(result.advisory)
    verdict = "[red]blocked by mandatory policy violations[/red]" if m else "[green]policies pass[/green]"
    return (
        f"Plan: {plural(len(result.run.resources), 'resource')} to create · {m} mandatory, "
        f"{plural(a, 'advisory violation')} · {verdict}"
    )


# GitHub refuses a comment over 65,536 characters; what the workflow adds must fit as well.
COMMENT_LIMIT = 60_000


@dataclass
class _Section:
    """A markdown table with what comes before and after its rows; `what` names the rows."""

    intro: list[str]
    rows: list[str]
    outro: list[str]
    what: str

    def lines(self) -> list[str]:
        return [*self.intro, *self.rows, *self.outro]

    def more(self, dropped: int, stack: str) -> str:
        return f"… and {dropped} more {self.what}: `oduflow-iac plan --stack {stack}` shows them all."

    def fitted(self, budget: int, stack: str) -> list[str] | None:
        """As many rows as fit in `budget` characters and how many are left out; None when not
        even one fits."""
        # Room for the closing line at its longest (every row left out).
        used = len("\n".join([*self.intro, *self.outro, "", self.more(len(self.rows), stack)])) + 1
        kept: list[str] = []
        for row in self.rows:
            if used + len(row) + 1 > budget:
                break
            kept.append(row)
            used += len(row) + 1
        if self.rows and not kept:
            return None
        dropped = len(self.rows) - len(kept)
        more = ["", self.more(dropped, stack)] if dropped else []
        return [*self.intro, *kept, *more, *self.outro]


def render_markdown(result: PlanResult, limit: int = COMMENT_LIMIT, diff: PlanDiff | None = None) -> str:
    """A pull-request comment: per-team summary, violations, every resource in a collapsible block.
    Within `limit` characters: a large plan lists resources by type, then environments and ports
    as counts; past that, violations come first and each table shows the rows that fit and how
    many it leaves out. With `diff`, the change comes first, in at most half of `limit`."""
    run = result.run
    placement = placement_of(run)
    teams = {urn: team for urn, (_server, team) in placement.items()}
    mandatory, advisory = len(result.mandatory), len(result.advisory)
    head = [
        COMMENT_MARKER,
        f"## oduflow plan · stack `{run.stack}`",
        "",
        ("❌ " if mandatory or (diff is not None and diff.blocked) else "✅ ")
        + f"**{len(run.resources)} resources**, {mandatory} mandatory and {advisory} advisory policy violations.",
        "",
    ]
    if diff is not None:
        from oduflow_iac.offline.changes import markdown_lines

        head += markdown_lines(diff, limit // 2, run.stack)
    notes: list[str] = []
    if result.config.unlocked_environments:
        notes += [f"> note: {_unlocked_note(result.config)}", ""]
    if result.missing_secrets:
        keys = ", ".join(f"`{k}`" for k in result.missing_secrets)
        notes += [f"> note: the stack has no value yet for {keys}; `pulumi up` needs them.", ""]
    for copy in _copies(result.config):
        notes += [f"> note: {_md(_refresh_note(*copy))}", ""]
    unpinned = _unpinned_note(result.config)
    if unpinned:
        notes += [f"> warning: {_md(unpinned)}", ""]
    violations = _md_violations(result)
    listed, counted = _md_teams(result, placement, listed=True), _md_teams(result, placement, listed=False)
    by_type = _md_resource_types(run)
    for teams_table, resources in (
        (listed, _md_resources(run, teams)),
        (listed, by_type),
        (counted, by_type),
    ):
        text = "\n".join([*head, *teams_table.lines(), *violations.lines(), *notes, *resources.lines()])
        if len(text) <= limit:
            return text
    # Thousands of violations or of teams: violations first, with at least half of the room;
    # each table as many rows as fit, and how many it leaves out.
    parts = [*head, *notes]
    budget = limit - len("\n".join(parts)) - 1
    rest = len("\n".join([*counted.lines(), *by_type.lines()])) + 1
    if violations.rows:
        shown = violations.fitted(budget - min(rest, budget // 2), run.stack) or []
        parts += shown
        budget -= len("\n".join(shown)) + 1
    for section in (counted, by_type):
        lines = section.fitted(budget, run.stack)
        if lines is None:
            break
        parts += lines
        budget -= len("\n".join(lines)) + 1
    return "\n".join(parts)


def _md_teams(result: PlanResult, placement: Mapping[str, tuple[str | None, str | None]], listed: bool) -> _Section:
    """Per server (its use against its capacity, its shared resources), then per team on it: its
    environments there and their ports, listed, or (`listed=False`) counted."""
    config = result.config
    per_place: Counter[tuple[str | None, str | None]] = Counter(placement.values())
    rows = []
    for server, label in _server_groups(config, placement):
        if server is not None:
            rows.append(f"| **{_md(label)}** | | | |")
        rows.append(f"| shared | – | {per_place.get((server, None), 0)} | – |")
        for team_id, _team in config.teams:
            if server is None or server not in config.team_servers(team_id):
                continue
            envs_here = [e for e in _team.environments if server in config.env_servers(team_id, e)]
            ports = sorted(config.ports.get(team_id, {})[e.branch] for e in envs_here)
            if listed:
                envs = ", ".join(f"{e.branch} ({e.type})" for e in envs_here) or "–"
                port_text = ", ".join(str(p) for p in ports) or "–"
            else:
                types = Counter(e.type for e in envs_here)
                envs = f"{len(envs_here)}: " + ", ".join(f"{n} {t}" for t, n in sorted(types.items()))
                port_text = f"{plural(len(ports), 'port')} in {ports[0]}–{ports[-1]}" if ports else "–"
            rows.append(f"| {team_id} | {_md(envs)} | {per_place.get((server, team_id), 0)} | {port_text} |")
    intro = ["| team | environments | resources | ports |", "|---|---|---|---|"]
    return _Section(intro, rows, [""], "teams")


def _md_violations(result: PlanResult) -> _Section:
    rows = [
        f"| {v.policy} | {v.level} | `{_md(_short_urn(v.urn))}` | {_md(v.message)} |"
        for v in sorted(result.violations, key=lambda v: (v.level != "mandatory", v.policy))
    ]
    if not rows:
        return _Section([], [], [], "violations")
    intro = ["### Policy violations", "", "| policy | level | resource | message |", "|---|---|---|---|"]
    return _Section(intro, rows, [""], "violations")


def _md_resources(run: PlannedRun, teams: Mapping[str, str | None]) -> _Section:
    intro = ["<details><summary>All resources</summary>", "", "| type | name | team | protect |", "|---|---|---|---|"]
    rows = [
        f"| `{r.type}` | `{_md(r.name)}` | {teams.get(r.urn) or 'shared'} | {'yes' if r.protect else ''} |"
        for r in run.resources
    ]
    return _Section(intro, rows, ["", "</details>", ""], "resources")


def _md_resource_types(run: PlannedRun) -> _Section:
    """The resources counted by type, for a plan too large to list in a comment."""
    by_type = Counter(r.type for r in run.resources)
    intro = [
        "<details><summary>Resources by type</summary>",
        "",
        f"Too many to list in a comment: `oduflow-iac plan --stack {run.stack}` shows every one.",
        "",
        "| type | count |",
        "|---|---|",
    ]
    rows = [f"| `{t}` | {n} |" for t, n in sorted(by_type.items())]
    return _Section(intro, rows, ["", "</details>", ""], "resource types")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def plan_command(ns: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from oduflow_iac.stack_settings import print_notices

    err = Console(stderr=True)
    # On a terminal only (never in a pipe or a CI log): what it is doing, and how far along.
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = progress.add_task("reading the config", total=None)
    done = {"envs": 0}

    def on_phase(phase: str, config: Config) -> None:
        if phase == "program":
            total = sum(len(t.environments) for _, t in config.teams)
            progress.update(task, description="declaring environments", total=total or None, completed=0)
        else:
            progress.update(task, description="checking policies", total=None)

    def on_register(r: PlannedResource) -> None:
        if r.type == f"{COMPONENT_PREFIX}OdooEnvironment":
            done["envs"] += 1
            progress.update(task, completed=done["envs"])

    base = base_plan(ns)  # first: a bad base is a usage error before the plan's work
    with progress:
        result = plan(ns.config, ns.stack, ns.project_dir, on_register=on_register, on_phase=on_phase)
    print_notices(result.config)
    diff = plan_diff(base, result)
    if ns.format == "json":
        sys.stdout.write(render_json(result, diff))
    elif ns.format == "markdown":
        sys.stdout.write(render_markdown(result, diff=diff))
    else:
        render_table(result, diff=diff)
    return 1 if result.mandatory or (diff is not None and diff.blocked) else 0


@dataclass
class BasePlan:
    """What a plan is compared against: a JSON plan document, its label, its environments' types."""

    doc: dict[str, Any]
    label: str
    env_types: dict[tuple[str, str], str] = field(default_factory=dict)


def base_plan(ns: argparse.Namespace) -> BasePlan | None:
    """The base of `--diff-against FILE` or `--base-ref REF`, if either is given."""
    from oduflow_iac.offline import changes

    against: Path | None = getattr(ns, "diff_against", None)
    ref: str | None = getattr(ns, "base_ref", None)
    if ref is not None:
        doc, label, types = base_plan_at(ref, ns.config, ns.stack, ns.project_dir)
        return BasePlan(doc, label, types)
    if against is None:
        return None
    try:
        doc = json.loads(Path(against).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{against}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{against}: not JSON: {exc}") from None
    try:
        changes.check_plan_doc(doc)
    except changes.NotAPlan as exc:
        raise UsageError(f"{against}: {exc}") from None
    return BasePlan(doc, str(against))


def plan_diff(base: BasePlan | None, result: PlanResult) -> PlanDiff | None:
    """What `result` changes against `base` (the head's environment types win over the base's)."""
    from oduflow_iac.offline import changes

    if base is None:
        return None
    env_types = {**base.env_types, **_env_types(result.config)}
    return changes.diff_plans(base.doc, json.loads(render_json(result)), base.label, env_types)


def base_plan_at(
    ref: str, config: Path | None, stack: str, project_dir: Path | None
) -> tuple[dict[str, Any], str, dict[tuple[str, str], str]]:
    """The JSON plan of the config and stack files as they are at git `ref` (policies not run:
    only the resources are compared), its label and its environments' types."""
    from oduflow_iac.errors import OduflowError
    from oduflow_iac.offline.base_ref import checkout

    with checkout(ref, config, stack, project_dir) as co:
        try:
            base_config, settings = resolve_config(co.config, stack, co.project_dir)
            run, missing = plan_run(base_config, settings, stack=stack)
        except OduflowError as exc:
            lines = [f"--base-ref {ref}: {co.shown(line)}" for line in str(exc).splitlines()]
            raise UsageError("\n".join(lines)) from None
        doc = json.loads(render_json(PlanResult(base_config, run, [], missing)))
        return doc, f"{ref} ({co.commit[:12]})", _env_types(base_config)


def _env_types(config: Config) -> dict[tuple[str, str], str]:
    return {(team_id, env.branch): str(env.type) for team_id, team in config.teams for env in team.environments}
