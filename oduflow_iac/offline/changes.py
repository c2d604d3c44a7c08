"""What a change does: two offline plans (JSON documents, `--format json`) compared the way
`pulumi preview` would show them, resource by resource: `create`, `update`, `replace`, `delete` or
unchanged, with the input paths that differ.

Whether a difference is an update or a replacement follows the real providers
(`replacements.py`), the resource's `replaceOnChanges`, and its `ignoreChanges` (as the engine
does, the new registration's list applies). Secret values never appear: a plan carries `[secret]`
for them and, per path, a digest of the offline stand-in (never of a real secret: the offline run
holds none). Equal digests: the secret is the same; different: it changed; a plan without digests:
whether it changed cannot be known and is said so.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from oduflow_iac import naming, revisions
from oduflow_iac.lifecycle import refresh
from oduflow_iac.offline import replacements

FORMAT_VERSION = 2
ACTIONS = ("create", "update", "replace", "delete", "unchanged")
SECRET = "[secret]"
UNKNOWN_TEXT = "[unknown]"
PROTECT_PATH = "(protect)"
CONTAINER = "docker:index/container:Container"
TEAM_STACK = "oduflow:index:TeamStack"
ONE_SHOT_ROLES = frozenset({"init", "template-init", "addons-fetch", "upgrade", "refresh"})

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST = re.compile(r"Host\(`([^`]+)`\)")


def join_path(path: str, key: str | int) -> str:
    """A Pulumi property path: `a.b[0]`, `tags["oduflow.team"]` for keys that are not names."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENT.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


# --------------------------------------------------------------------------------------------
# Secret digests (written into the plan)


def secret_digests(value: Any, is_secret: Any, unknown: str, path: str = "") -> dict[str, str]:
    """Per path of a secret in `value`, a short digest of its offline stand-in, or "unknown" when
    part of it is unknown until deployment. `is_secret(v)` tells a secret and returns its plain
    value (or None)."""
    out: dict[str, str] = {}
    for p, plain in _secrets(value, is_secret, path):
        text = json.dumps(plain, sort_keys=True, separators=(",", ":"))
        if unknown in text:
            out[p] = "unknown"
        else:
            out[p] = hashlib.sha256(b"oduflow-plan-secret\0" + text.encode()).hexdigest()[:16]
    return out


def _secrets(value: Any, is_secret: Any, path: str) -> Iterator[tuple[str, Any]]:
    plain = is_secret(value)
    if plain is not None:
        yield path, plain
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _secrets(v, is_secret, join_path(path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _secrets(v, is_secret, join_path(path, i))


# --------------------------------------------------------------------------------------------
# The diff


@dataclass
class Detail:
    """One differing input path, its values as the plans show them (secrets already `[secret]`)."""

    path: str
    old: Any
    new: Any
    secret: str | None = None  # "changed" or "unknown" for a secret compared by digest


@dataclass
class Change:
    urn: str
    type: str
    name: str
    action: str
    details: list[Detail] = field(default_factory=list)
    replacing: list[str] = field(default_factory=list)
    unknown_inputs: list[str] = field(default_factory=list)
    delete_before_replace: bool = False
    protected: bool = False  # protected in the base: the engine refuses to delete or replace it
    team: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)  # the head's (or, deleted, the base's)

    @property
    def paths(self) -> list[str]:
        return [d.path for d in self.details]

    @property
    def blocked(self) -> bool:
        return self.protected and self.action in ("delete", "replace")

    @property
    def role(self) -> str | None:
        return self.labels.get(naming.LABEL_ROLE)


@dataclass
class PlanDiff:
    base: str  # what the plan is compared against, for people
    changes: list[Change]  # every resource of either plan, unchanged ones included
    env_types: dict[tuple[str, str], str] = field(default_factory=dict)
    # Per environment: repositories that move, modules upgraded (revisions.plan_moves).
    revisions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changed(self) -> list[Change]:
        return [c for c in self.changes if c.action != "unchanged"]

    def counts(self) -> dict[str, int]:
        n = Counter(c.action for c in self.changes)
        return {a: n.get(a, 0) for a in ACTIONS}

    @property
    def blocked(self) -> list[Change]:
        return [c for c in self.changes if c.blocked]

    @property
    def empty(self) -> bool:
        return not self.changed

    def interruptions(self) -> list[str]:
        return [m for c in self.changes if (m := interruption(c, self.env_types))]

    def moves(self) -> list[str]:
        return moves(self.changes)


class NotAPlan(ValueError):
    """The base document is not an offline plan."""


def check_plan_doc(doc: Any) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("resources"), list):
        raise NotAPlan('not an `oduflow-iac plan --format json` document (no "resources" list)')
    for r in doc["resources"]:
        if not isinstance(r, dict) or not isinstance(r.get("urn"), str) or not isinstance(r.get("inputs"), dict):
            raise NotAPlan("not an `oduflow-iac plan --format json` document (a resource without urn or inputs)")


def diff_plans(
    base: Mapping[str, Any],
    head: Mapping[str, Any],
    base_label: str,
    env_types: dict[tuple[str, str], str] | None = None,
) -> PlanDiff:
    """Every resource of `head` and `base` with what applying `head` over `base` does to it."""
    check_plan_doc(base)
    check_plan_doc(head)
    old = {r["urn"]: r for r in base["resources"]}
    new = {r["urn"]: r for r in head["resources"]}
    teams = {**_teams(base["resources"]), **_teams(head["resources"])}
    changes: list[Change] = []
    for r in head["resources"]:
        before = old.get(r["urn"])
        changes.append(_compare(before, r, teams) if before is not None else _whole(r, "create", teams))
    changes += [_whole(r, "delete", teams) for r in base["resources"] if r["urn"] not in new]
    # A base plan written before plans carried revisions shows none (nothing to compare with).
    moved = revisions.plan_moves(base.get("revisions") or {}, head.get("revisions") or {})
    return PlanDiff(base_label, changes, dict(env_types or {}), moved)


def _whole(r: Mapping[str, Any], action: str, teams: Mapping[str, str | None]) -> Change:
    return Change(
        urn=r["urn"],
        type=r["type"],
        name=r["name"],
        action=action,
        protected=action == "delete" and bool(r.get("protect")),
        team=teams.get(r["urn"]),
        labels=_labels(r["inputs"]),
        inputs=r["inputs"],
        delete_before_replace=_dbr(r),
    )


def _dbr(r: Mapping[str, Any]) -> bool:
    custom, asked = bool(r.get("custom", True)), bool(r.get("deleteBeforeReplace"))
    return replacements.deletes_before_replace(r["type"], custom, asked)


def _compare(before: Mapping[str, Any], after: Mapping[str, Any], teams: Mapping[str, str | None]) -> Change:
    type_, custom = after["type"], bool(after.get("custom", True))
    ignore = list(after.get("ignoreChanges") or [])
    details: list[Detail] = []
    for d in _diff(before["inputs"], after["inputs"], ""):
        if replacements.covered(ignore, d.path):
            continue
        removed = d.path == replacements.top_level(d.path) and d.new is _ABSENT
        if removed and replacements.ignored_on_removal(type_, custom, d.path):
            continue
        details.append(d)
    known = {d.path for d in details}
    old_digests, new_digests = before.get("secrets"), after.get("secrets")
    for path in sorted(_secret_paths(before["inputs"], after["inputs"])):
        if any(_within(path, p) for p in known) or replacements.covered(ignore, path):
            continue
        a = (old_digests or {}).get(path)
        b = (new_digests or {}).get(path)
        if a is None or b is None or "unknown" in (a, b):
            details.append(Detail(path, SECRET, SECRET, "unknown"))
        elif a != b:
            details.append(Detail(path, SECRET, SECRET, "changed"))
    compared = [d for d in details if d.secret != "unknown"]
    verdict = replacements.classify(
        type_, custom, [d.path for d in compared], list(after.get("replaceOnChanges") or [])
    )
    if bool(before.get("protect")) != bool(after.get("protect")):
        details.append(Detail(PROTECT_PATH, bool(before.get("protect")), bool(after.get("protect"))))
    action = verdict.action if compared else ("update" if any(d.path == PROTECT_PATH for d in details) else "unchanged")
    return Change(
        urn=after["urn"],
        type=type_,
        name=after["name"],
        action=action,
        details=details,
        replacing=verdict.replacing if action == "replace" else [],
        unknown_inputs=verdict.unknown,
        delete_before_replace=_dbr(after),
        protected=bool(before.get("protect")),
        team=teams.get(after["urn"]),
        labels=_labels(after["inputs"]),
        inputs=after["inputs"],
    )


class _Absent:
    def __repr__(self) -> str:
        return "(none)"


_ABSENT: Any = _Absent()


def _diff(old: Any, new: Any, path: str) -> Iterator[Detail]:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            yield from _diff(old.get(key, _ABSENT), new.get(key, _ABSENT), join_path(path, key))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=False)):
            yield from _diff(a, b, join_path(path, i))
    else:
        secret = "changed" if SECRET in (old, new) else None
        yield Detail(path, old, new, secret)


def _secret_paths(old: Any, new: Any, path: str = "") -> Iterator[str]:
    """Paths holding `[secret]` in both plans: equal in the text, compared by digest."""
    if old == SECRET and new == SECRET:
        yield path
    elif isinstance(old, dict) and isinstance(new, dict):
        for key in set(old) & set(new):
            yield from _secret_paths(old[key], new[key], join_path(path, key))
    elif isinstance(old, list) and isinstance(new, list):
        for i, (a, b) in enumerate(zip(old, new, strict=False)):
            yield from _secret_paths(a, b, join_path(path, i))


def _within(path: str, ancestor: str) -> bool:
    return path == ancestor or (path.startswith(ancestor) and path[len(ancestor)] in ".[")


def _labels(inputs: Mapping[str, Any]) -> dict[str, str]:
    """Container/network/volume labels (`[{label, value}]`) as a mapping."""
    out: dict[str, str] = {}
    for item in inputs.get("labels") or []:
        if isinstance(item, dict) and isinstance(item.get("label"), str):
            out[item["label"]] = str(item.get("value"))
    return out


def _teams(resources: list[Mapping[str, Any]]) -> dict[str, str | None]:
    """Each resource's team, from its TeamStack ancestor (parents come before children)."""
    out: dict[str, str | None] = {}
    for r in resources:
        if r["type"] == TEAM_STACK:
            out[r["urn"]] = str(r["name"]).removeprefix("team-").split("@")[0]
        else:
            parent = r.get("parent")
            out[r["urn"]] = out.get(parent) if parent else None
    return out


# --------------------------------------------------------------------------------------------
# What a reviewer reads first


def is_long_running(c: Change) -> bool:
    if c.type != CONTAINER:
        return False
    if c.role in ONE_SHOT_ROLES:
        return False
    return c.inputs.get("mustRun") is not False


def interruption(c: Change, env_types: Mapping[tuple[str, str], str]) -> str | None:
    """What a replaced long-running container means for its users, or None."""
    if c.action != "replace" or not is_long_running(c):
        return None
    name = str(c.inputs.get("name") or c.name)
    grace = c.inputs.get("destroyGraceSeconds") or c.inputs.get("stopTimeout")
    stop = f"stopped (up to {_number(grace)} s to shut down cleanly)" if grace else "killed (no stop grace period)"
    order = "then deleted before the new one is created" if c.delete_before_replace else "after the new one starts"
    why = ", ".join(c.replacing[:4]) + (" ..." if len(c.replacing) > 4 else "")
    role, team, env = c.role, c.labels.get(naming.LABEL_TEAM) or c.team, c.labels.get(naming.LABEL_ENV)
    if role == "odoo" and team and env:
        kind = env_types.get((team, env), "environment")
        who = f"{'PRODUCTION ' if kind == 'production' else ''}Odoo {team}/{env} ({kind}, `{name}`)"
        effect = "its site is down until the new container is healthy"
    elif role == "database":
        who = f"the PostgreSQL server (`{name}`)"
        effect = "every environment of every team loses its database until the new server accepts connections"
    elif role == "proxy":
        who = f"Traefik (`{name}`)"
        effect = "every hostname is unreachable until it is back"
    elif role == "db-proxy":
        who = f"the PostgreSQL proxy of team {team} (`{name}`)"
        effect = "every environment of the team loses its database connection until the new proxy is up"
    elif role == "docker-proxy":
        who = f"the Docker API proxy (`{name}`)"
        effect = "Traefik sees no container change (no new or removed route) until it is back"
    else:
        who = f"{role or 'container'} `{name}`" + (f" of team {team}" if team else "")
        effect = "its service is interrupted while it is recreated"
    return f"{who} is replaced ({why}): {stop}, {order}: {effect}."


def rerun(c: Change) -> str | None:
    """A replaced one-shot runs again: an init runs against the database it initialised."""
    if c.type != CONTAINER or c.action != "replace" or c.role not in ONE_SHOT_ROLES or c.role == "refresh":
        return None
    name = str(c.inputs.get("name") or c.name)
    team, env = c.labels.get(naming.LABEL_TEAM) or c.team, c.labels.get(naming.LABEL_ENV)
    of = f" of {team}/{env}" if team and env else (f" of team {team}" if team else "")
    why = ", ".join(c.replacing[:4]) + (" ..." if len(c.replacing) > 4 else "")
    return f"one-shot `{name}` ({c.role}){of} is re-created and runs again ({why})."


def refresh_note(c: Change) -> str | None:
    """A refresh one-shot created or replaced: `staging ← copy of main (refresh 3 → 4)`: the
    environment's data is replaced by a neutralised copy of its source when the change is applied."""
    if c.type != CONTAINER or c.role != "refresh" or c.action not in ("create", "replace"):
        return None
    team, env = c.labels.get(naming.LABEL_TEAM) or c.team, c.labels.get(naming.LABEL_ENV)
    prefix = f"{refresh.SOURCE_ENV}="
    sources = [e[len(prefix) :] for e in c.inputs.get("envs") or [] if isinstance(e, str) and e.startswith(prefix)]
    new = c.labels.get(naming.LABEL_REFRESH, "?")
    old = _labels(_old_inputs(c)).get(naming.LABEL_REFRESH) if c.action == "replace" else None
    generation = f"refresh {old} → {new}" if old is not None and old != new else f"refresh {new}"
    return (
        f"{env} ← copy of {sources[0] if sources else '?'} ({generation}), team {team}: its database and "
        "filestore become a neutralised copy, and its Odoo restarts on it."
    )


def critical(c: Change, env_types: Mapping[tuple[str, str], str]) -> bool:
    """A production Odoo or the PostgreSQL server: called out first."""
    if c.role == "database":
        return True
    team, env = c.labels.get(naming.LABEL_TEAM) or c.team, c.labels.get(naming.LABEL_ENV)
    return c.role == "odoo" and env_types.get((team or "", env or "")) == "production"


def _endpoints(c: Change) -> set[tuple[str, str]]:
    """Host ports and hostnames a resource holds: ("port", "50001"), ("hostname", "a.example.com")."""
    out: set[tuple[str, str]] = set()
    if c.type == CONTAINER:
        for p in c.inputs.get("ports") or []:
            if isinstance(p, dict) and p.get("external") is not None:
                ip, port = p.get("ip"), _number(p["external"])
                out.add(("port", f"{ip}:{port}" if ip else port))
        for value in c.labels.values():
            out |= {("hostname", h) for h in _HOST.findall(value)}
    elif c.type == "cloudflare:index/dnsRecord:DnsRecord" and isinstance(c.inputs.get("name"), str):
        out.add(("hostname", c.inputs["name"]))
    return out


def moves(changes: list[Change]) -> list[str]:
    """Ports and hostnames that change hands or disappear: `port 127.0.0.1:50001 (a -> b)`."""
    before: dict[tuple[str, str], str] = {}
    after: dict[tuple[str, str], str] = {}
    for c in changes:
        label = str(c.inputs.get("name") or c.name)
        if c.action == "delete":
            before.update(dict.fromkeys(_endpoints(c), label))
        elif c.action == "create":
            after.update(dict.fromkeys(_endpoints(c), label))
        elif c.action in ("update", "replace") and any(
            d.path.startswith(("ports", "labels", "name")) for d in c.details
        ):
            # The base side of a changed resource: its old values are in the details.
            old = Change(c.urn, c.type, c.name, c.action, inputs=_old_inputs(c), labels={})
            old.labels = _labels(old.inputs)
            before.update(dict.fromkeys(_endpoints(old), label))
            after.update(dict.fromkeys(_endpoints(c), label))
    lines = []
    for key in sorted(set(before) | set(after)):
        kind, value = key
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        if a and b:
            lines.append(f"{kind} {value}: from {a} to {b}")
        elif a:
            lines.append(f"{kind} {value}: no longer served (was {a})")
    return lines


def _number(v: Any) -> str:
    """Numbers as people write them: the wire format makes every number a float (50000.0)."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _old_inputs(c: Change) -> dict[str, Any]:
    """The head inputs with each differing path set back to its base value."""
    old = json.loads(json.dumps(c.inputs))
    for d in c.details:
        if d.path == PROTECT_PATH or d.secret:
            continue
        _set_path(old, d.path, d.old)
    return old


_TOKEN = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]|\.')


def _set_path(root: dict[str, Any], path: str, value: Any) -> None:
    keys: list[str | int] = []
    for m in _TOKEN.finditer(path):
        if m.group(1):
            keys.append(m.group(1))
        elif m.group(2):
            keys.append(int(m.group(2)))
        elif m.group(3):
            keys.append(json.loads(m.group(3)))
    node: Any = root
    for k in keys[:-1]:
        node = node[k]
    last = keys[-1]
    if value is _ABSENT:
        if isinstance(node, dict):
            node.pop(last, None)
    else:
        node[last] = value


# --------------------------------------------------------------------------------------------
# Output


def change_doc(c: Change) -> dict[str, Any]:
    doc: dict[str, Any] = {"urn": c.urn, "type": c.type, "action": c.action, "paths": c.paths}
    if c.replacing:
        doc["replacing"] = c.replacing
    secrets = {d.path: d.secret for d in c.details if d.secret}
    if secrets:
        doc["secrets"] = secrets
    if c.unknown_inputs:
        doc["unknownInputs"] = c.unknown_inputs
    if c.action == "replace":
        doc["deleteBeforeReplace"] = c.delete_before_replace
    if c.blocked:
        doc["blocked"] = "protected: pulumi up refuses to " + c.action + " it"
    return doc


def summary_doc(d: PlanDiff) -> dict[str, Any]:
    return {
        "base": d.base,
        "counts": d.counts(),
        "blocked": [c.urn for c in d.blocked],
        "interruptions": d.interruptions(),
        "reruns": [line for c in d.changes if (line := rerun(c))],
        "moves": d.moves(),
        "revisions": d.revisions,
    }


def _value(v: Any) -> str:
    if v is _ABSENT:
        return "(none)"
    text = v if isinstance(v, str) else _number(v) if isinstance(v, float) else json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(d: Detail) -> str:
    """One differing path for people: `memory: 2048 -> 4096`, `envs[3]: [secret] changed`."""
    if d.path == PROTECT_PATH:
        return f"protect: {str(d.old).lower()} -> {str(d.new).lower()}"
    if d.secret == "unknown":
        return f"{d.path}: [secret] (whether it changed cannot be known from the base plan)"
    if d.secret == "changed" and d.old == SECRET and d.new == SECRET:
        return f"{d.path}: [secret] changed"
    if isinstance(d.old, str) and isinstance(d.new, str) and "\n" in d.old + d.new:
        return f"{d.path}: {_first_changed_line(d.old, d.new)}"
    return f"{d.path}: {_value(d.old)} -> {_value(d.new)}"


def _first_changed_line(old: str, new: str) -> str:
    """A file's change in one line: its first differing line, and how many more differ."""
    a, b = old.splitlines(), new.splitlines()
    differing = [i for i in range(max(len(a), len(b))) if a[i : i + 1] != b[i : i + 1]]
    if not differing:
        return "line endings changed"
    i = differing[0]
    before = _value(a[i].strip()) if i < len(a) else "(none)"
    after = _value(b[i].strip()) if i < len(b) else "(none)"
    more = f" (and {len(differing) - 1} more lines)" if len(differing) > 1 else ""
    return f"line {i + 1}: {before} -> {after}{more}"


def headline(d: PlanDiff) -> str:
    if d.empty:
        return f"no changes against {d.base}"
    counts = d.counts()
    return f"changes against {d.base}: " + ", ".join(f"{counts[a]} {a}" for a in ACTIONS)


def notes(d: PlanDiff) -> list[tuple[str, str]]:
    """(kind, text) lines of the summary: blocked, interruptions (critical first), revisions
    (repositories that move, modules upgraded), re-runs, moves."""
    out: list[tuple[str, str]] = []
    for c in d.blocked:
        out.append(
            (
                "blocked",
                f"`{c.name}` ({c.type}) is protected and would be {'deleted' if c.action == 'delete' else 'replaced'}:"
                " `pulumi up` refuses; lift `protect` in its own change first (`oduflow-iac env delete` does)",
            )
        )
    crit = [c for c in d.changes if interruption(c, d.env_types) and critical(c, d.env_types)]
    rest = [c for c in d.changes if interruption(c, d.env_types) and not critical(c, d.env_types)]
    out += [("interruption", interruption(c, d.env_types) or "") for c in [*crit, *rest]]
    out += [("revision", revisions.describe_move(m)) for m in d.revisions]
    out += [("refresh", line) for c in d.changes if (line := refresh_note(c))]
    out += [("re-run", line) for c in d.changes if (line := rerun(c))]
    out += [("moves", m) for m in d.moves()]
    unknown = sorted({f"{c.type}.{p}" for c in d.changes for p in c.unknown_inputs})
    if unknown:
        out.append(("unknown", "inputs not in the provider table, assumed to replace: " + ", ".join(unknown)))
    return out


SYMBOL = {"create": "+", "update": "~", "replace": "+-", "delete": "-", "unchanged": " "}
ORDER = {"delete": 0, "replace": 1, "update": 2, "create": 3}


def ordered(d: PlanDiff) -> list[Change]:
    """What destroys first: deletes, replaces, updates, creates (each in plan order)."""
    return sorted(d.changed, key=lambda c: ORDER[c.action])


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_lines(d: PlanDiff, budget: int, stack: str) -> list[str]:
    """The change, for the pull-request comment, in at most `budget` characters: the headline, what
    is blocked or interrupted, ports and hostnames that move, then one row per changed resource
    (deletes and replacements first) as many as fit, and how many are left out."""
    lines = [f"### {'No changes' if d.empty else 'Changes'} against {_md(d.base)}", ""]
    if d.empty:
        return [*lines, "This change creates, updates, replaces and deletes nothing.", ""]
    counts = d.counts()
    lines += [" · ".join(f"**{counts[a]}** {a}" for a in ACTIONS), ""]
    icon = {
        "blocked": "⛔",
        "interruption": "⚠️",
        "revision": "📌",
        "refresh": "🔄",
        "re-run": "🔁",
        "moves": "↪️",
        "unknown": "❓",
    }
    for kind, text in notes(d):
        lines.append(f"- {icon[kind]} **{kind}**: {_md(text)}")
    if len(lines) > 4:
        lines.append("")
    head = ["| action | resource | team | what differs |", "|---|---|---|---|"]
    rows = []
    for c in ordered(d):
        what = "; ".join(describe(x) for x in c.details) if c.details else ""
        if c.replacing:
            what += f" (replaced because of {', '.join(c.replacing)})"
        rows.append(
            f"| {SYMBOL[c.action]} {c.action}{' ⛔' if c.blocked else ''} | `{_md(c.type)}` `{_md(c.name)}` | "
            f"{c.team or 'shared'} | {_md(what)} |"
        )
    used = len("\n".join(lines + head)) + 200
    if used > budget:  # not even the notes fit: keep the headline and the counts
        lines = lines[:4]
        used = len("\n".join(lines + head)) + 200
    kept = []
    for row in rows:
        if used + len(row) + 1 > budget:
            break
        kept.append(row)
        used += len(row) + 1
    out = [*lines, *head, *kept, ""] if kept else [*lines]
    if len(kept) < len(rows):
        out += [
            f"… and {len(rows) - len(kept)} more changed resources: "
            f"`oduflow-iac plan --stack {stack} --diff-against BASE` shows them all.",
            "",
        ]
    return out


def text_lines(d: PlanDiff) -> list[tuple[str, str]]:
    """(style, text) lines of the change for the terminal."""
    out = [("bold", headline(d))]
    for kind, text in notes(d):
        out.append(("red" if kind == "blocked" else "yellow", f"  {kind}: {text}"))
    colour = {"create": "green", "update": "yellow", "replace": "magenta", "delete": "red"}
    for c in ordered(d):
        mark = " [blocked: protected]" if c.blocked else ""
        out.append((colour[c.action], f"  {SYMBOL[c.action]:<2} {c.action:<8} {c.type}  {c.name}{mark}"))
        for x in c.details:
            forces = " (forces replacement)" if x.path in c.replacing else ""
            out.append(("", f"        {describe(x)}{forces}"))
    return out
