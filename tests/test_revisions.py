"""The revision lock, `env update` / `env refresh`, the git reader, and what a lock change does to the
plan: exactly the moved environment's upgrade one-shot is re-created, the fetcher takes the pinned
commit, routine edits never re-run an upgrade, a failed upgrade creates no new Odoo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac import cli, git_revisions, naming, ops_cli, revisions
from oduflow_iac.cascade import ResolvedAddon
from oduflow_iac.config import load_config
from oduflow_iac.errors import ConfigError, UsageError
from oduflow_iac.offline import changes
from oduflow_iac.offline.harness import PlannedResource, PlannedRun, reveal
from oduflow_iac.offline.plan import PlanResult, plan_run, render_json

CONTAINER = "docker:index/container:Container"
GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")

CONFIG = """
[platform]
tls = false

[[platform.addons]]
name = "oca-web"
url = "https://github.com/OCA/web.git"
versions = { "17.0" = "17.0" }

[team.1]
hostname = "team-a.localhost"
port_range = [50000, 50050]
git_token = "tok-inline-123"
ui_password = "ui-pass-123"

[[team.1.addons]]
name = "team-a-addons"
url = "https://git.example.com/team-a/addons.git"
branches = { development = "develop", staging = "main", production = "main" }

[[team.1.environments]]
branch = "main"
type = "production"
odoo_image = "odoo:17.0"

[[team.1.environments]]
branch = "staging"
type = "staging"
odoo_image = "odoo:17.0"

[[team.1.environments]]
branch = "feature/x"
odoo_image = "odoo:17.0"
addons = { "oca-web" = false }
"""

A = "a" * 40
B = "b" * 40
T1 = "1" * 40
T2 = "2" * 40


def lock_doc(entries: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "teams": {"1": entries}}


def env_entry(commit: str = A, tree: str = T1, version: str = "17.0.1.0.0", refresh: int = 0) -> dict[str, Any]:
    return {
        "refresh": refresh,
        "repos": {"team-a-addons": {"commit": commit, "modules": {"sale_x": {"tree": tree, "version": version}}}},
    }


def write(tmp_path: Path, lock: dict[str, Any] | None = None, name: str = "oduflow") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(CONFIG), encoding="utf-8")
    if lock is not None:
        (tmp_path / f"{name}.revisions.json").write_text(json.dumps(lock), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# The lock


def test_an_absent_entry_is_empty_and_a_present_one_is_read(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, lock_doc({"main": env_entry(refresh=3)})))
    assert config.env_revisions("1", "staging") == revisions.EnvRevisions({}, 0)
    main = config.env_revisions("1", "main")
    assert main.refresh == 3 and main.commit("team-a-addons") == A
    assert main.modules() == {"sale_x": revisions.ModuleRevision(T1, "17.0.1.0.0")}


def test_the_lock_is_written_sorted_and_reads_back_the_same(tmp_path: Path) -> None:
    lock = {
        "1": {
            "staging": revisions.EnvRevisions({"z": revisions.RepoRevision(B), "a": revisions.RepoRevision(A)}, 1),
            "main": revisions.EnvRevisions(
                {
                    "a": revisions.RepoRevision(
                        A, {"m2": revisions.ModuleRevision(T2), "m1": revisions.ModuleRevision(T1, "1.0")}
                    )
                }
            ),
        },
        "10": {"main": revisions.EnvRevisions({}, 0)},
        "2": {"main": revisions.EnvRevisions({}, 2)},
    }
    path = tmp_path / "x.revisions.json"
    assert revisions.write_revisions(path, lock) is True
    assert revisions.write_revisions(path, lock) is False  # unchanged: not rewritten
    text = path.read_text()
    assert list(json.loads(text)["teams"]) == ["1", "2", "10"]
    assert text.index('"main"') < text.index('"staging"') and text.index('"m1"') < text.index('"m2"')
    assert revisions.read_revisions(path) == lock


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        (
            {"refresh": 0, "repos": {"team-a-addons": {"commit": "--upload-pack=touch /tmp/x"}}},
            "repos.team-a-addons.commit",
        ),
        ({"refresh": 0, "repos": {"team-a-addons": {"commit": A.upper()}}}, "repos.team-a-addons.commit"),
        ({"refresh": 0, "repos": {"team-a-addons": {"commit": A[:12]}}}, "repos.team-a-addons.commit"),
        ({"refresh": 0, "repos": {"../../etc": {"commit": A}}}, "repos.../../etc"),
        ({"refresh": 0, "repos": {"team-a-addons": {"commit": A, "modules": {"x;rm -rf /": {"tree": T1}}}}}, "modules"),
        (
            {
                "refresh": 0,
                "repos": {"team-a-addons": {"commit": A, "modules": {"m": {"tree": T1, "version": "1.0 $(id)"}}}},
            },
            "modules.m.version",
        ),
        (
            {"refresh": 0, "repos": {"team-a-addons": {"commit": A, "modules": {"m": {"tree": "HEAD"}}}}},
            "modules.m.tree",
        ),
        ({"refresh": -1, "repos": {}}, "main.refresh"),
        ({"refresh": True, "repos": {}}, "main.refresh"),
        ({"refresh": 0, "repos": {}, "extra": 1}, "teams.1.main"),
        ({"refresh": 0, "repos": {"oca-web-2": {"commit": A}}}, "repos.oca-web-2"),  # not in the cascade
    ],
)
def test_a_hostile_or_damaged_lock_is_one_line_naming_file_and_key(
    tmp_path: Path, entry: dict[str, Any], key: str
) -> None:
    path = write(tmp_path, lock_doc({"main": entry}))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    (problem,) = exc.value.problems
    assert problem.file.endswith("oduflow.revisions.json") and key in problem.key, str(problem)
    assert "\n" not in str(problem)


def test_unreadable_lock_and_wrong_version(tmp_path: Path) -> None:
    path = write(tmp_path)
    lock = tmp_path / "oduflow.revisions.json"
    lock.write_text("{not json")
    with pytest.raises(ConfigError, match="is not a readable revision lock"):
        load_config(path)
    lock.write_text(json.dumps({"version": 2, "teams": {}}))
    with pytest.raises(ConfigError, match="version: must be 1"):
        load_config(path)


def test_a_repository_the_cascade_dropped_is_refused_until_env_update_rerecords(tmp_path: Path) -> None:
    # feature/x excludes oca-web: a lock still pinning it names the command that puts it right.
    entry = {"refresh": 0, "repos": {"oca-web": {"commit": A}}}
    path = write(tmp_path, lock_doc({"feature/x": entry}))
    with pytest.raises(
        ConfigError, match=r"teams\.1\.feature/x\.repos\.oca-web: .*env update --team 1 --branch feature/x"
    ):
        load_config(path)
    config = load_config(path, check_revisions=False)
    pruned = revisions.pruned(config, revisions.read_revisions(tmp_path / "oduflow.revisions.json"))
    assert pruned == {"1": {"feature/x": revisions.EnvRevisions({}, 0)}}


def test_stale_environments_are_not_errors_and_are_dropped_on_write(tmp_path: Path) -> None:
    path = write(tmp_path, lock_doc({"gone": env_entry(), "main": env_entry()}))
    config = load_config(path)
    pruned = revisions.pruned(config, revisions.read_revisions(tmp_path / "oduflow.revisions.json"))
    assert set(pruned["1"]) == {"main"}


def test_upgrade_digest_moves_with_image_tree_or_version_only() -> None:
    m = {"sale_x": revisions.ModuleRevision(T1, "1.0")}
    d = revisions.upgrade_digest("odoo:17.0", m)
    assert d == revisions.upgrade_digest("odoo:17.0", dict(m))
    assert d != revisions.upgrade_digest("odoo:17.0.1", m)
    assert d != revisions.upgrade_digest("odoo:17.0", {"sale_x": revisions.ModuleRevision(T2, "1.0")})
    assert d != revisions.upgrade_digest("odoo:17.0", {"sale_x": revisions.ModuleRevision(T1, "1.1")})
    assert revisions.changed_modules(
        m, {"sale_x": revisions.ModuleRevision(T2, "1.0"), "new": revisions.ModuleRevision(T1)}
    ) == [
        "new",
        "sale_x",
    ]


# --------------------------------------------------------------------------------------------
# Real git repositories


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1"}  # fmt: skip
    return subprocess.run(
        [GIT or "git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(path: Path, branch: str = "main") -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", branch)
    (path / "sale_x").mkdir()
    (path / "sale_x" / "__manifest__.py").write_text("# a comment\n{'name': 'X', 'version': '17.0.1.0.0'}\n")
    (path / "sale_x" / "models.py").write_text("x = 1\n")
    (path / "docs").mkdir()
    (path / "docs" / "README").write_text("not a module\n")
    (path / "bad-name").mkdir()
    (path / "bad-name" / "__manifest__.py").write_text("{'version': '1.0'}\n")
    # A manifest that is code: read as a literal it is refused, never run.
    (path / "evil").mkdir()
    marker = path.parent / "pwned"
    (path / "evil" / "__manifest__.py").write_text(
        f"__import__('os').system('touch {marker}') or {{'version': '1.0'}}\n"
    )
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "one")
    return path


def commit_change(repo: Path, file: str, text: str) -> str:
    (repo / file).write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", f"change {file}")
    return git(repo, "rev-parse", "HEAD")


class LocalRemote(git_revisions.GitRemote):
    """The git reader on local repositories: each addon's URL replaced by a file:// one, with the
    protocol allow-list widened to `file` here only."""

    def __init__(self, repos: dict[str, Path], secrets: git_revisions.Secrets | None = None) -> None:
        super().__init__(secrets or git_revisions.Secrets(), protocols=("file",))
        self.repos = repos
        self.calls: list[tuple[str, str]] = []

    def _local(self, addon: ResolvedAddon) -> ResolvedAddon:
        return replace(addon, url=f"file://{self.repos[addon.name]}")

    def head(self, addon: ResolvedAddon) -> str:
        self.calls.append(("head", addon.name))
        return super().head(self._local(addon))

    def modules(self, addon: ResolvedAddon, commit: str) -> dict[str, revisions.ModuleRevision]:
        self.calls.append(("modules", addon.name))
        return super().modules(self._local(addon), commit)


@needs_git
def test_heads_and_module_trees_come_from_git_and_manifests_are_never_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "addons")
    remote = LocalRemote({"a": repo})
    addon = ResolvedAddon("a", "https://example.invalid/a.git", "main", "project")
    head = remote.head(addon)
    assert head == git(repo, "rev-parse", "HEAD")
    modules = remote.modules(addon, head)
    # Only directories named like Odoo modules with a manifest; the tree id is git's own.
    assert set(modules) == {"sale_x", "evil"}
    assert modules["sale_x"] == revisions.ModuleRevision(git(repo, "rev-parse", f"{head}:sale_x"), "17.0.1.0.0")
    assert modules["evil"].version is None and not (tmp_path / "pwned").exists()
    # A code change without a version bump moves the tree; an older commit can be read too.
    new = commit_change(repo, "sale_x/models.py", "x = 2\n")
    assert remote.modules(addon, new)["sale_x"].tree != modules["sale_x"].tree
    assert remote.modules(addon, head) == modules
    with pytest.raises(UsageError, match="branch nope does not exist"):
        remote.head(replace(addon, branch="nope"))


@needs_git
def test_the_reader_refuses_protocols_outside_the_allow_list(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "addons")
    production = git_revisions.GitRemote()  # what the command line builds: https and ssh only
    for url in (f"file://{repo}", f"ext::sh -c touch% {tmp_path}/ext-ran", str(repo)):
        with pytest.raises(UsageError, match="ls-remote failed") as exc:
            production.head(ResolvedAddon("a", url, "main", "project"))
        assert url not in str(exc.value)  # never the URL (it may hold a credential)
    assert not (tmp_path / "ext-ran").exists()


@needs_git
def test_the_token_travels_in_the_environment_of_own_repositories_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "addons")
    seen: list[tuple[list[str], dict[str, str]]] = []
    real = subprocess.run

    def spy(argv: list[str], **kwargs: Any) -> Any:
        seen.append((list(argv), dict(kwargs.get("env") or {})))
        return real(argv, **kwargs)

    monkeypatch.setattr(git_revisions.subprocess, "run", spy)
    remote = LocalRemote({"own": repo, "oca": repo}, git_revisions.Secrets(token="tok-secret-999"))
    remote.head(ResolvedAddon("own", "https://x.invalid/o.git", "main", "project"))
    remote.head(ResolvedAddon("oca", "https://x.invalid/p.git", "main", "platform"))
    (own_argv, own_env), (oca_argv, oca_env) = seen
    assert all("tok-secret-999" not in a for a in own_argv + oca_argv)
    assert own_env.get("ODUFLOW_GIT_TOKEN") == "tok-secret-999" and "ODUFLOW_GIT_TOKEN" not in oca_env
    assert any(a.startswith("credential.helper=!") for a in own_argv)
    assert not any(a.startswith("credential.helper=!") for a in oca_argv)
    assert "--end-of-options" in own_argv and own_argv.index("--end-of-options") < own_argv.index(f"file://{repo}")


def test_rev_options_are_checked() -> None:
    assert git_revisions.parse_revs([f"x={A.upper()}"]) == {"x": A}
    for bad in ("x", f"={A}", "x=abc123", f"x={A}0", "x=--upload-pack=evil"):
        with pytest.raises(UsageError):
            git_revisions.parse_revs([bad])


# --------------------------------------------------------------------------------------------
# The commands


@pytest.fixture
def repos(tmp_path: Path) -> dict[str, Path]:
    return {"team-a-addons": make_repo(tmp_path / "team-a"), "oca-web": make_repo(tmp_path / "oca", "17.0")}


@needs_git
def test_env_update_records_heads_and_modules_then_moves_one_environment(
    tmp_path: Path, repos: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[LocalRemote] = []

    def factory(secrets: git_revisions.Secrets) -> LocalRemote:
        assert secrets.token == "tok-inline-123"  # the team's own token, for its own repositories
        made.append(LocalRemote(repos, secrets))
        return made[-1]

    monkeypatch.setattr(ops_cli, "make_remote", factory)
    path = write(tmp_path)
    lock_file = tmp_path / "oduflow.revisions.json"
    for branch in ("main", "staging"):
        assert cli.run(["env", "update", "--config", str(path), "--team", "1", "--branch", branch, "--no-deploy"]) == 0
    lock = json.loads(lock_file.read_text())["teams"]["1"]
    head = git(repos["team-a-addons"], "rev-parse", "HEAD")
    assert lock["main"]["repos"]["team-a-addons"]["commit"] == head
    assert lock["main"]["repos"]["oca-web"]["commit"] == git(repos["oca-web"], "rev-parse", "HEAD")
    assert lock["main"]["repos"]["team-a-addons"]["modules"]["sale_x"]["version"] == "17.0.1.0.0"
    assert lock["staging"] == lock["main"]
    out = capsys.readouterr().out
    assert f"1/main: team-a-addons: unpinned -> {head[:12]} (modules changed: evil, sale_x)" in out
    assert "not deployed (--no-deploy)" in out

    # A push to main: main is updated; staging keeps its commit until it is updated itself.
    new = commit_change(repos["team-a-addons"], "sale_x/__manifest__.py", "{'version': '17.0.1.1.0'}\n")
    assert cli.run(["env", "update", "--config", str(path), "--team", "1", "--branch", "main", "--no-deploy"]) == 0
    lock = json.loads(lock_file.read_text())["teams"]["1"]
    assert lock["main"]["repos"]["team-a-addons"]["commit"] == new
    assert lock["staging"]["repos"]["team-a-addons"]["commit"] == head
    assert lock["main"]["repos"]["team-a-addons"]["modules"]["sale_x"]["version"] == "17.0.1.1.0"
    out = capsys.readouterr().out
    assert f"team-a-addons: {head[:12]} -> {new[:12]} (modules changed: sale_x)" in out
    # The unchanged repository's modules were not read again.
    assert ("modules", "oca-web") not in made[-1].calls

    # --rev pins an older commit; nothing else to do when run again.
    args = ["env", "update", "--config", str(path), "--team", "1", "--branch", "main", "--no-deploy"]
    assert cli.run([*args, "--rev", f"team-a-addons={head}"]) == 0
    assert json.loads(lock_file.read_text())["teams"]["1"]["main"]["repos"]["team-a-addons"]["commit"] == head
    assert cli.run([*args, "--rev", f"team-a-addons={head}"]) == 0
    assert "nothing to deploy" in capsys.readouterr().out
    assert cli.run([*args, "--rev", f"nope={head}"]) == 2
    assert "--rev nope: not an addon repository of this environment" in capsys.readouterr().err


def test_env_refresh_needs_clone_from_and_increments_the_generation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, lock_doc({"staging": env_entry(refresh=3)}))
    assert cli.run(["env", "refresh", "--config", str(path), "--team", "1", "--branch", "staging", "--no-deploy"]) == 2
    assert "has no `clone_from`" in capsys.readouterr().err
    # A copy of production (`clone_from`): the generation moves; its repositories stay.
    path.write_text(path.read_text().replace('type = "staging"', 'type = "staging"\nclone_from = "main"'))
    assert cli.run(["env", "refresh", "--config", str(path), "--team", "1", "--branch", "staging", "--no-deploy"]) == 0
    assert "1/staging: refresh 3 -> 4" in capsys.readouterr().out
    entry = json.loads((tmp_path / "oduflow.revisions.json").read_text())["teams"]["1"]["staging"]
    assert entry["refresh"] == 4 and entry["repos"]["team-a-addons"]["commit"] == A
    assert load_config(path).env_revisions("1", "staging").refresh == 4


# --------------------------------------------------------------------------------------------
# The program under mocks


def planned(path: Path) -> PlannedRun:
    return plan_run(load_config(path), None)[0]


def plan_doc(path: Path) -> dict[str, Any]:
    config = load_config(path)
    run, missing = plan_run(config, None)
    return json.loads(render_json(PlanResult(config, run, [], missing)))


def containers(run: PlannedRun, role: str) -> dict[str, PlannedResource]:
    out = {}
    for r in run.of_type(CONTAINER):
        labels = {item["label"]: item["value"] for item in reveal(r.inputs).get("labels") or []}
        if labels.get(naming.LABEL_ROLE) == role:
            out[str(reveal(r.inputs)["name"])] = r
    return out


def test_pinned_commits_reach_the_fetcher_and_odoo_conf(tmp_path: Path) -> None:
    path = write(tmp_path, lock_doc({"main": env_entry()}))
    run = planned(path)
    fetch = containers(run, "addons-fetch")["oduflow-1-main-addons-fetch"]
    script = reveal(fetch.inputs)["command"][0]
    assert f"fetch --quiet --depth 1 --end-of-options https://git.example.com/team-a/addons.git {A}" in script
    odoo = containers(run, "odoo")["oduflow-1-main-odoo"]
    conf = next(u["content"] for u in reveal(odoo.inputs)["uploads"] if u["file"] == "/etc/odoo/odoo.conf")
    assert f"/mnt/extra-addons/team-a-addons@{A[:12]}" in conf and "/mnt/extra-addons/oca-web," in conf + ","
    # The staging environment is not pinned: its branch head, as before.
    staging = containers(run, "addons-fetch")["oduflow-1-staging-addons-fetch"]
    assert "--branch=main" in reveal(staging.inputs)["command"][0]


def test_a_lock_change_replaces_exactly_the_moved_environments_upgrade(tmp_path: Path) -> None:
    base = plan_doc(write(tmp_path, lock_doc({"main": env_entry(), "staging": env_entry()}), "base"))
    moved = {"main": env_entry(commit=B, tree=T2, version="17.0.1.1.0"), "staging": env_entry()}
    head = plan_doc(write(tmp_path, lock_doc(moved), "head"))
    d = changes.diff_plans(base, head, "base")
    upgrades = [c for c in d.changed if c.role == "upgrade"]
    assert [(c.name, c.action) for c in upgrades] == [("team-1-main-upgrade", "replace")]
    # Everything that changes is the moved environment's: its fetcher (the new commit), its
    # upgrade and its Odoo (odoo.conf names the new directory); staging and feature/x: nothing.
    assert {(c.name, c.action) for c in d.changed} == {
        ("team-1-main-addons-fetch", "replace"),
        ("team-1-main-upgrade", "replace"),
        ("team-1-main-odoo", "replace"),
    }
    # Pulumi creates the new Odoo only after the upgrade succeeded.
    odoo = next(r for r in head["resources"] if r["name"] == "team-1-main-odoo")
    assert upgrades[0].urn in odoo["dependencies"]


def _upgrade_one_shots(run: PlannedRun) -> dict[str, PlannedResource]:
    return {r.urn: r for r in containers(run, "upgrade").values()}


def test_routine_edits_never_recreate_an_upgrade(tmp_path: Path) -> None:
    path = write(tmp_path, lock_doc({"main": env_entry()}))
    before = _upgrade_one_shots(planned(path))
    edited = (
        textwrap.dedent(CONFIG)
        .replace('git_token = "tok-inline-123"', 'git_token = "tok-rotated"')
        .replace(
            'type = "staging"',
            'type = "staging"\nworkers = 3\nmemory_mb = 4096\nodoo_options = { limit_time_real = 300 }',
        )
    )
    path.write_text(edited)
    after = _upgrade_one_shots(planned(path))
    assert set(before) == set(after) and len(before) == 3
    changed_somewhere = False
    for urn, old in before.items():
        new = after[urn]
        differing = {
            k for k in set(old.inputs) | set(new.inputs) if reveal(old.inputs.get(k)) != reveal(new.inputs.get(k))
        }
        changed_somewhere |= bool(differing)
        assert "labels" not in differing and differing <= set(new.ignore_changes), (urn, differing)
    assert changed_somewhere  # the edits reached the one-shots' inputs: ignoring them is what held


FAILING_UPGRADE = """
import json, sys
from oduflow_iac.config import load_config
from oduflow_iac.offline import harness
from oduflow_iac.offline.harness import reveal
from oduflow_iac.offline.plan import plan_run

original = harness.OfflineMocks.new_resource

def failing_upgrade(self, args):
    id_, state = original(self, args)
    if args.typ == "docker:index/container:Container" and str(args.inputs.get("name", "")) == "oduflow-1-main-upgrade":
        state = {**state, "exitCode": 1}
    return id_, state

harness.OfflineMocks.new_resource = failing_upgrade
registered = []
try:
    plan_run(load_config(sys.argv[1]), None, on_register=registered.append)
    error = None
except Exception as exc:
    error = str(exc)
names = sorted(str(reveal(r.inputs).get("name")) for r in registered if r.type == "docker:index/container:Container")
print(json.dumps({"error": error, "names": names}))
"""


def test_a_failed_upgrade_creates_no_new_odoo(tmp_path: Path) -> None:
    # In a process of its own: the SDK's threads outlive a failed program, and CPython 3.11 shares
    # the AST parser's state between threads (the next test module's import would trip on it).
    import sys

    path = write(tmp_path, lock_doc({"main": env_entry()}))
    done = subprocess.run(
        [sys.executable, "-c", FAILING_UPGRADE, str(path)], capture_output=True, text=True, check=True, timeout=300
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "oduflow-1-main-upgrade exited with code 1: read `docker logs" in result["error"]
    assert "oduflow-1-main-upgrade" in result["names"] and "oduflow-1-main-odoo" not in result["names"]
    assert "oduflow-1-staging-odoo" in result["names"]  # the other environments are not held back


def test_the_upgrade_one_shot_of_production_backs_up_and_others_do_not(tmp_path: Path) -> None:
    run = planned(write(tmp_path, lock_doc({"main": env_entry()})))
    ups = containers(run, "upgrade")
    scripts = {n: {u["file"]: u["content"] for u in reveal(r.inputs)["uploads"]} for n, r in ups.items()}
    main = scripts["oduflow-1-main-upgrade"]
    assert "pg_dump -Fc" in main["/oduflow/upgrade.sh"] and "pg_restore --clean" in main["/oduflow/upgrade.sh"]
    assert "pg_dump" not in scripts["oduflow-1-staging-upgrade"]["/oduflow/upgrade.sh"]
    state = json.loads(main["/oduflow/upgrade-state.json"])
    assert state == {"image": "odoo:17.0", "modules": {"sale_x": f"{T1}/17.0.1.0.0"}}
    r = ups["oduflow-1-main-upgrade"]
    labels = {i["label"]: i["value"] for i in reveal(r.inputs)["labels"]}
    assert labels["oduflow.upgrade"] == revisions.upgrade_digest(
        "odoo:17.0", {"sale_x": revisions.ModuleRevision(T1, "17.0.1.0.0")}
    )
    assert reveal(r.inputs)["mustRun"] is False and "labels" not in r.ignore_changes


def test_the_plan_diff_says_which_repositories_move_and_which_modules_are_upgraded(tmp_path: Path) -> None:
    base_entry = env_entry()
    base_entry["repos"]["team-a-addons"]["modules"]["stock_y"] = {"tree": T1, "version": "1.0"}
    moved = json.loads(json.dumps(base_entry))
    moved["repos"]["team-a-addons"]["commit"] = B
    moved["repos"]["team-a-addons"]["modules"]["sale_x"] = {"tree": T2, "version": "17.0.1.1.0"}
    moved["repos"]["team-a-addons"]["modules"]["stock_y"] = {"tree": T2, "version": "1.0"}
    base = plan_doc(write(tmp_path, lock_doc({"main": base_entry, "staging": base_entry}), "base"))
    head = plan_doc(write(tmp_path, lock_doc({"main": moved, "staging": base_entry}), "head"))
    d = changes.diff_plans(base, head, "base")
    (move,) = d.revisions
    assert move == {
        "environment": "1/main",
        "repos": [{"repo": "team-a-addons", "from": A, "to": B}],
        "upgrade": ["sale_x", "stock_y"],
        "versions": {"sale_x": {"from": "17.0.1.0.0", "to": "17.0.1.1.0"}},
    }
    line = revisions.describe_move(move)
    assert line == (
        f"1/main: team-a-addons {A[:12]} -> {B[:12]}; upgrades where installed: "
        "sale_x (17.0.1.0.0 -> 17.0.1.1.0: migration scripts run), stock_y (code changed)"
    )
    assert changes.summary_doc(d)["revisions"] == [move]
    assert ("yellow", f"  revision: {line}") in changes.text_lines(d)
    assert any("📌 **revision**: 1/main: team-a-addons" in row for row in changes.markdown_lines(d, 60_000, "local"))
    # An image bump is an upgrade of every installed module.
    bumped = plan_doc(write(tmp_path, lock_doc({"main": base_entry, "staging": base_entry}), "bumped"))
    bumped["revisions"]["1/staging"]["image"] = "odoo:17.0.1"
    (image_move,) = changes.diff_plans(base, bumped, "base").revisions
    assert image_move["upgrade"] == "all" and "-u all" in revisions.describe_move(image_move)


def test_unpinned_environments_are_a_plan_warning(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, lock_doc({"main": env_entry()})))
    run, missing = plan_run(config, None)
    doc = json.loads(render_json(PlanResult(config, run, [], missing)))
    (note,) = [n for n in doc["notes"] if n["kind"] == "unpinned"]
    # main pins team-a-addons, but not oca-web.
    assert note["environments"] == ["1/main", "1/staging", "1/feature/x"]
    assert "env update --team N --branch B" in note["message"]
    assert doc["revisions"]["1/main"]["repos"]["team-a-addons"]["commit"] == A
    assert doc["revisions"]["1/main"]["repos"]["oca-web"] == {"branch": "17.0", "commit": None, "modules": {}}


@needs_git
def test_base_ref_reads_the_revision_lock_of_the_base(tmp_path: Path) -> None:
    from oduflow_iac.offline.plan import base_plan_at

    top = tmp_path / "repo"
    top.mkdir()
    git(top, "init", "-q", "-b", "main")
    path = write(top, lock_doc({"main": env_entry()}))
    git(top, "add", ".")
    git(top, "commit", "-q", "-m", "base")
    (top / "oduflow.revisions.json").write_text(json.dumps(lock_doc({"main": env_entry(commit=B, tree=T2)})))
    doc, label, _types = base_plan_at("HEAD", path, None, top)  # type: ignore[arg-type]
    assert doc["revisions"]["1/main"]["repos"]["team-a-addons"]["commit"] == A  # the base's, not the work tree's
    head = plan_doc(path)
    (move,) = changes.diff_plans(doc, head, label).revisions
    assert move["repos"] == [{"repo": "team-a-addons", "from": A, "to": B}] and move["upgrade"] == ["sale_x"]


def test_a_new_refresh_generation_upgrades_the_copy_again(tmp_path: Path) -> None:
    # The copy brings its source's database and recorded state: its own code is upgraded from there.
    def config_with(refresh: int, name: str) -> Path:
        path = write(tmp_path, lock_doc({"staging": env_entry(refresh=refresh)}), name)
        path.write_text(path.read_text().replace('type = "staging"', 'type = "staging"\nclone_from = "main"'))
        return path

    d = changes.diff_plans(plan_doc(config_with(3, "base")), plan_doc(config_with(4, "head")), "base")
    replaced = {(c.name, c.role) for c in d.changed if c.action == "replace" and c.role in ("upgrade", "refresh")}
    assert replaced == {("team-1-staging-upgrade", "upgrade"), ("team-1-staging-refresh", "refresh")}
    assert not [c for c in d.changed if c.role == "upgrade" and "staging" not in c.name]
