"""`oduflow-iac plan --diff-against / --base-ref`: what a change creates, updates, replaces and deletes,
as the real providers would do it. Expectations come from the config change and the plans, not
from the current resource set."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac.offline import changes
from oduflow_iac.offline.plan import PlanResult, plan_run, render_json
from oduflow_iac.stack_settings import resolve_config
from tests.conftest import ROOT
from tests.test_plan import INLINE

CONTAINER = "docker:index/container:Container"
ENV_COMPONENT = "oduflow:index:OdooEnvironment"


def plan_doc(path: Path) -> dict[str, Any]:
    """The JSON plan of a config file (policies left out: only resources are compared)."""
    config, settings = resolve_config(path, "local", ROOT)
    run, missing = plan_run(config, settings)
    return json.loads(render_json(PlanResult(config, run, [], missing)))


def diff_of(write_config: Callable[..., Path], before: str, after: str) -> changes.PlanDiff:
    base = plan_doc(write_config(before, "base.toml"))
    head = plan_doc(write_config(after, "head.toml"))
    return changes.diff_plans(base, head, "base.toml", {("1", "main"): "production", ("2", "main"): "staging"})


def _descendants(doc: dict[str, Any], root_urn: str) -> set[str]:
    found = {root_urn}
    for r in doc["resources"]:  # parents come before their children
        if r["parent"] in found:
            found.add(r["urn"])
    return found


def _odoo_container(doc: dict[str, Any], team: str, branch_slug: str) -> dict[str, Any]:
    return next(r for r in doc["resources"] if r["inputs"].get("name") == f"oduflow-{team}-{branch_slug}-odoo")


def _by_action(d: changes.PlanDiff) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for c in d.changed:
        out.setdefault(c.action, set()).add(c.urn)
    return out


def test_an_added_environment_only_creates_resources_under_it(write_config: Callable[..., Path]) -> None:
    added = INLINE + '\n[[team.2.environments]]\nbranch = "feature/x"\nodoo_image = "odoo:18.0"\n'
    d = diff_of(write_config, INLINE, added)
    head = plan_doc(write_config(added, "again.toml"))
    component = next(r for r in head["resources"] if r["type"] == ENV_COMPONENT and r["name"] == "team-2-feature-x")
    under = _descendants(head, component["urn"])
    assert {c.urn for c in d.changed if c.action == "create"} == under
    # Besides: the team role's connection limit, derived from its environments without a quota,
    # grows in place (ALTER ROLE); nothing is replaced or deleted.
    others = [(c.name, c.action, c.paths) for c in d.changed if c.action != "create"]
    assert others == [("team-2-role", "update", ["connectionLimit"])], others
    assert len(under) > 3  # the component, its database, its container...


def test_an_image_bump_replaces_exactly_that_odoo_container(write_config: Callable[..., Path]) -> None:
    after = INLINE.replace('odoo_image = "odoo:18.0"', 'odoo_image = "odoo:18.0.1"')
    d = diff_of(write_config, INLINE, after)
    odoo = _odoo_container(plan_doc(write_config(after, "h.toml")), "2", "main")
    # The init one-shot lists the image in its ignoreChanges: an upgrade, never a re-init. The
    # upgrade one-shot's digest label moves with the image: it runs `-u all` before the new Odoo.
    upgrade = next(c for c in d.changed if c.role == "upgrade")
    assert {c.urn for c in d.changed} == {odoo["urn"], upgrade.urn}, [(c.name, c.action, c.paths) for c in d.changed]
    assert upgrade.name == "team-2-main-upgrade" and upgrade.action == "replace"
    assert upgrade.paths == ["labels[4].value"]
    (c,) = [c for c in d.changed if c.urn == odoo["urn"]]
    assert (c.action, c.replacing) == ("replace", ["image"])
    # An Odoo container of a non-production environment: interruption said, not as production.
    (line,) = d.interruptions()
    assert "Odoo 2/main (staging" in line and "PRODUCTION" not in line


def test_a_replaced_one_shot_is_said_to_run_again() -> None:
    base = plan_doc_cached()
    init = next(
        r
        for r in base["resources"]
        if r["type"] == CONTAINER and {"label": "oduflow.role", "value": "init"} in r["inputs"].get("labels", [])
    )
    head = copy.deepcopy(base)
    target = next(r for r in head["resources"] if r["urn"] == init["urn"])
    target["inputs"]["labels"].append({"label": "oduflow.extra", "value": "x"})
    d = changes.diff_plans(base, head, "base")
    (c,) = d.changed
    assert c.action == "replace" and not d.interruptions()
    (line,) = [t for k, t in changes.notes(d) if k == "re-run"]
    assert line.startswith(f"one-shot `{init['inputs']['name']}` (init) of ") and "runs again" in line


def test_a_cpu_change_replaces_exactly_that_odoo_container(write_config: Callable[..., Path]) -> None:
    before = INLINE.replace('type = "production"\ntemplate = "default"', 'type = "production"\ntemplate = "default"\n')
    after = INLINE.replace(
        'type = "production"\ntemplate = "default"', 'type = "production"\ntemplate = "default"\ncpu = 3\n'
    )
    assert after != INLINE
    d = diff_of(write_config, before, after)
    head = plan_doc(write_config(after, "h.toml"))
    odoo = _odoo_container(head, "1", "main")
    assert {c.urn for c in d.changed} == {odoo["urn"]}
    (c,) = d.changed
    assert (c.action, c.replacing) == ("replace", ["cpus"])
    # A production Odoo replaced is called out, with the interruption it means.
    (line,) = d.interruptions()
    assert line.startswith("PRODUCTION Odoo 1/main (production")
    assert "deleted before the new one is created" in line and "site is down" in line


def test_a_label_only_change_replaces_and_a_memory_change_updates() -> None:
    base = plan_doc_cached()
    odoo = next(
        r
        for r in base["resources"]
        if r["type"] == CONTAINER and {"label": "oduflow.role", "value": "odoo"} in r["inputs"].get("labels", [])
    )
    i = next(i for i, lab in enumerate(odoo["inputs"]["labels"]) if lab["label"] == "oduflow.env")

    head = copy.deepcopy(base)
    target = next(r for r in head["resources"] if r["urn"] == odoo["urn"])
    target["inputs"]["labels"][i]["value"] = "renamed"
    d = changes.diff_plans(base, head, "base")
    (c,) = d.changed
    assert (c.action, c.paths, c.replacing) == ("replace", [f"labels[{i}].value"], [f"labels[{i}].value"])

    head = copy.deepcopy(base)
    target = next(r for r in head["resources"] if r["urn"] == odoo["urn"])
    target["inputs"]["memory"] = target["inputs"]["memory"] * 2
    d = changes.diff_plans(base, head, "base")
    (c,) = d.changed
    assert (c.action, c.paths, c.replacing) == ("update", ["memory"], [])
    assert not d.interruptions()


def test_ignore_changes_and_replace_on_changes_of_the_registration() -> None:
    base = plan_doc_cached()
    db = next(r for r in base["resources"] if "template" in r["ignoreChanges"])
    head = copy.deepcopy(base)
    target = next(r for r in head["resources"] if r["urn"] == db["urn"])
    target["inputs"]["template"] = "another_template"  # ForceNew upstream, but ignored
    assert changes.diff_plans(base, head, "base").empty
    target["ignoreChanges"] = []
    (c,) = changes.diff_plans(base, head, "base").changed
    assert (c.action, c.replacing) == ("replace", ["template"])
    target["inputs"]["template"] = db["inputs"]["template"]
    target["inputs"]["owner"] = "someone_else"  # an update upstream...
    assert changes.diff_plans(base, head, "base").changed[0].action == "update"
    target["replaceOnChanges"] = ["owner"]  # ... unless the program asks for a replacement
    assert changes.diff_plans(base, head, "base").changed[0].action == "replace"


def test_a_secret_is_compared_without_being_shown(write_config: Callable[..., Path]) -> None:
    """`workers` lives in odoo.conf, a secret upload (it holds the master password): the container
    is replaced, the path is named, the value never shown."""
    after = INLINE.replace('odoo_image = "odoo:18.0"', 'odoo_image = "odoo:18.0"\nworkers = 7')
    d = diff_of(write_config, INLINE, after)
    odoo = next(c for c in d.changed if c.inputs.get("name") == "oduflow-2-main-odoo")
    upload = next(x for x in odoo.details if x.path.startswith("uploads"))
    assert upload.secret == "changed" and "uploads[0].content" in odoo.replacing
    assert changes.describe(upload) == "uploads[0].content: [secret] changed"
    # A base plan without digests (an older format): whether it changed cannot be known.
    base = plan_doc(write_config(INLINE, "b2.toml"))
    for r in base["resources"]:
        del r["secrets"]
    d = changes.diff_plans(base, base | {"resources": plan_doc(write_config(INLINE, "b3.toml"))["resources"]}, "old")
    assert d.empty or all(c.action == "unchanged" or all(x.secret == "unknown" for x in c.details) for c in d.changes)
    unknown = [x for c in d.changes for x in c.details if x.secret == "unknown"]
    assert unknown and all("cannot be known" in changes.describe(x) for x in unknown)


def test_renaming_a_protected_production_environment_is_blocked(write_config: Callable[..., Path]) -> None:
    after = INLINE.replace('branch = "main"\ntype = "production"', 'branch = "master"\ntype = "production"')
    d = diff_of(write_config, INLINE, after)
    blocked = d.blocked
    assert blocked and all(c.action == "delete" and c.protected for c in blocked)
    assert {c.type for c in blocked} >= {"postgresql:index/database:Database"}
    text = "\n".join(t for _, t in changes.text_lines(d))
    assert "is protected and would be deleted: `pulumi up` refuses" in text
    assert "hostname main.team-a.example.com: no longer served" in text


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        [sys.executable, "-m", "oduflow_iac.cli", "plan", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        env={**env, "PYTHONPATH": str(ROOT)},
    )


def test_the_cli_exits_1_on_a_blocked_change(write_config: Callable[..., Path], tmp_path: Path) -> None:
    base = write_config(INLINE, "base.toml")
    doc = run_cli("--config", str(base), "--format", "json")
    assert doc.returncode == 0, doc.stderr
    (tmp_path / "base.json").write_text(doc.stdout)
    head = write_config(
        INLINE.replace('branch = "main"\ntype = "production"', 'branch = "master"\ntype = "production"')
    )
    result = run_cli("--config", str(head), "--diff-against", str(tmp_path / "base.json"), "--format", "markdown")
    assert result.returncode == 1, result.stderr
    assert result.stdout.index("### Changes against") < result.stdout.index("| team | environments |")
    assert "⛔ **blocked**" in result.stdout


@pytest.fixture(scope="module")
def local_plan_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `plan --stack local --format json` writes, once for the module."""
    from oduflow_iac.offline.plan import plan

    path = tmp_path_factory.mktemp("plans") / "local.json"
    path.write_text(render_json(plan(None, "local", ROOT)))
    return path


@pytest.mark.parametrize("fmt", ["table", "json", "markdown"])
def test_a_plan_diffed_against_itself_has_no_changes(
    local_plan_json: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from oduflow_iac.cli import main

    args = ["plan", "--project-dir", str(ROOT), "--stack", "local", "--format", fmt]
    assert main([*args, "--diff-against", str(local_plan_json)]) == 0
    result = capsys.readouterr()
    if fmt == "json":
        doc = json.loads(result.out)
        assert doc["formatVersion"] == changes.FORMAT_VERSION and doc["changes"] == []
        counts = doc["summary"]["changes"]["counts"]
        assert counts["unchanged"] == len(doc["resources"]) and sum(counts.values()) == counts["unchanged"]
        assert list(doc)[:4] == ["formatVersion", "project", "stack", "changes"]
    elif fmt == "table":
        assert result.out.startswith("no changes against")
    else:
        assert "### No changes against" in result.out


def test_a_base_that_is_not_a_plan_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from oduflow_iac.cli import main

    args = ["plan", "--project-dir", str(ROOT), "--stack", "local", "--diff-against"]
    (tmp_path / "x.json").write_text('{"a": 1}')
    assert main([*args, str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert (
        err == f'error: {tmp_path / "x.json"}: not an `oduflow-iac plan --format json` document (no "resources" list)\n'
    )
    assert main([*args, str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'missing.json'}: cannot read")


def _git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t"}
    env |= {"GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, env=env).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_base_ref_equals_diff_against_the_base_plan(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "stacks").mkdir(parents=True)
    (repo / "examples").mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", repo / "Pulumi.yaml")
    shutil.copy(ROOT / "stacks" / "Pulumi.local.yaml", repo / "stacks" / "Pulumi.local.yaml")
    shutil.copy(ROOT / "examples" / "oduflow.toml", repo / "examples" / "oduflow.toml")
    shutil.copy(ROOT / "examples" / "oduflow.ports.json", repo / "examples" / "oduflow.ports.json")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "first")
    base = run_cli("--project-dir", str(repo), "--stack", "local", "--format", "json", cwd=repo)
    assert base.returncode == 0, base.stderr
    (tmp_path / "base.json").write_text(base.stdout)

    config = repo / "examples" / "oduflow.toml"
    text = config.read_text()
    config.write_text(
        text
        + textwrap.dedent("""
        [[team.2.environments]]
        branch = "feature/new"
        template = "v18"
        """)
    )
    _git(repo, "commit", "-qam", "second")
    status = _git(repo, "status", "--porcelain")

    by_ref = run_cli(
        "--project-dir", str(repo), "--stack", "local", "--format", "json", "--base-ref", "HEAD~1", cwd=repo
    )
    by_file = run_cli(
        "--project-dir",
        str(repo),
        "--stack",
        "local",
        "--format",
        "json",
        "--diff-against",
        str(tmp_path / "base.json"),
        cwd=repo,
    )
    assert by_ref.returncode == by_file.returncode == 0, by_ref.stderr + by_file.stderr
    a, b = json.loads(by_ref.stdout), json.loads(by_file.stdout)
    assert any(c["action"] == "create" and "feature-new" in c["urn"] for c in a["changes"])
    assert a["summary"]["changes"]["base"].startswith("HEAD~1 (")
    a["summary"]["changes"]["base"] = b["summary"]["changes"]["base"]
    assert a == b
    # The working tree and the index are as they were.
    assert _git(repo, "status", "--porcelain") == status
    assert config.read_text() != text

    bad = run_cli("--project-dir", str(repo), "--stack", "local", "--base-ref", "no-such-ref", cwd=repo)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --base-ref no-such-ref: no such commit")


_CACHE: dict[str, dict[str, Any]] = {}


def plan_doc_cached() -> dict[str, Any]:
    if "local" not in _CACHE:
        config, settings = resolve_config(None, "local", ROOT)
        run, missing = plan_run(config, settings)
        _CACHE["local"] = json.loads(render_json(PlanResult(config, run, [], missing)))
    return _CACHE["local"]


def test_a_large_change_fits_in_a_comment() -> None:
    """Against an empty base everything is a create: the change section takes at most half of the
    comment, lists the rows that fit and counts the rest; the whole comment stays within the limit."""
    from oduflow_iac.offline.plan import plan, render_markdown

    result = plan(None, "local", ROOT)
    d = changes.diff_plans({"resources": []}, plan_doc_cached(), "empty")
    assert d.counts()["create"] == len(result.run.resources)
    for limit in (3_000, 6_000, 60_000):
        text = render_markdown(result, limit=limit, diff=d)
        assert len(text) <= limit and text.startswith("<!-- oduflow-iac-plan -->")
        section = text[text.index("### Changes against") : text.index("| team | environments |")]
        assert len(section) <= limit // 2
        rows = section.count("| + create |")
        assert rows == len(result.run.resources) or f"… and {len(result.run.resources) - rows} more" in section


def test_the_diff_is_the_same_in_every_process(local_plan_json: Path, tmp_path: Path) -> None:
    base = json.loads(local_plan_json.read_text())
    base["resources"] = base["resources"][: len(base["resources"]) // 2]  # the rest is created
    (tmp_path / "base.json").write_text(json.dumps(base))
    runs = []
    diff = ["--diff-against", str(tmp_path / "base.json")]
    for seed in ("1", "2"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {"PYTHONHASHSEED": seed}
        runs.append(
            subprocess.run(
                [sys.executable, "-m", "oduflow_iac.cli", "plan", "--stack", "local", "--format", "json", *diff],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
                env=env,
            )
        )
    assert runs[0].returncode == 0 and runs[0].stdout == runs[1].stdout
    assert json.loads(runs[0].stdout)["changes"]


def test_a_rotated_stack_secret_is_seen_without_being_read(tmp_path: Path) -> None:
    """`pulumi config set --secret` writes a new ciphertext into the stack file: the plan's stand-in
    for the secret changes with it, so the diff says which resources the rotation replaces."""
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    (project / "examples").mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    shutil.copy(ROOT / "examples" / "oduflow.toml", project / "examples" / "oduflow.toml")
    shutil.copy(ROOT / "examples" / "oduflow.ports.json", project / "examples" / "oduflow.ports.json")
    stack_file = project / "stacks" / "Pulumi.local.yaml"

    def doc(ciphertext: str) -> dict[str, Any]:
        stack_file.write_text(
            "config:\n  oduflow:configFile: examples/oduflow.toml\n"
            f"  oduflow-secrets:team1-ui-password:\n    secure: {ciphertext}\n"
        )
        config, settings = resolve_config(None, "local", project)
        run, missing = plan_run(config, settings)
        text = render_json(PlanResult(config, run, [], missing))
        assert ciphertext not in text
        return json.loads(text)

    first = doc("v1:AAAAAAAAAAAAAAAA:first")
    assert changes.diff_plans(first, doc("v1:AAAAAAAAAAAAAAAA:first"), "same").empty
    d = changes.diff_plans(first, doc("v1:BBBBBBBBBBBBBBBB:second"), "rotated")
    assert d.changed
    secret_details = [x for c in d.changed for x in c.details]
    assert all(x.secret == "changed" for x in secret_details)
    # Only team 1 uses the rotated secret.
    assert {c.team for c in d.changed} == {"1"}
    # Basic auth is a Traefik label of each environment's container: labels are ForceNew.
    assert any(c.action == "replace" and c.role == "odoo" for c in d.changed)


def test_a_changed_file_is_shown_by_its_first_differing_line() -> None:
    d = changes.Detail("uploads[0].content", "global\n  maxconn 14\nx\n", "global\n  maxconn 20\ny\n")
    assert changes.describe(d) == "uploads[0].content: line 2: maxconn 14 -> maxconn 20 (and 1 more lines)"
    d = changes.Detail("uploads[0].content", "a\nb\n", "a\nb\nc\n")
    assert changes.describe(d) == "uploads[0].content: line 3: (none) -> c"
