"""`oduflow-iac plan`: the offline plan's contract, its formats, its exit codes, and no secret anywhere."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac.cli import main
from oduflow_iac.offline.harness import Secret, reveal
from oduflow_iac.offline.plan import (
    COMMENT_LIMIT,
    COMMENT_MARKER,
    plan,
    render_json,
    render_markdown,
    render_table,
    to_json,
)
from tests.conftest import ROOT, SEED

INLINE = (
    SEED
    + """
[team.1.templates.default]
odoo_image = "odoo:17.0"

[[team.1.environments]]
branch = "main"
type = "production"
template = "default"

[[team.1.environments]]
branch = "feature/login"
template = "default"

[[team.2.environments]]
branch = "main"
type = "staging"
odoo_image = "odoo:18.0"
"""
)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oduflow_iac.cli", "plan", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


def test_json_contract_on_the_example() -> None:
    result = run_cli("--stack", "local", "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"formatVersion", "project", "stack", "resources", "revisions", "violations", "notes", "summary"}
    assert doc["formatVersion"] == 2
    assert (doc["project"], doc["stack"]) == ("oduflow", "local")
    urns = {r["urn"] for r in doc["resources"]}
    for r in doc["resources"]:
        assert set(r) == {
            "urn",
            "type",
            "name",
            "parent",
            "custom",
            "inputs",
            "dependencies",
            "protect",
            "provider",
            "ignoreChanges",
            "replaceOnChanges",
            "deleteBeforeReplace",
            "secrets",
        }
        assert r["parent"] is None or r["parent"] in urns
        # a resource of a server's engines names the provider resource it goes through (random's
        # is the default provider: none); a component none
        if r["type"].startswith(("docker:", "postgresql:", "cloudflare:", "aws:")):
            assert r["provider"] in urns and "pulumi:providers:" in r["provider"].split("::")[2], r["urn"]
        elif not r["custom"]:
            assert r["provider"] is None
        assert all(d in urns for d in r["dependencies"])
        assert isinstance(r["custom"], bool) and isinstance(r["protect"], bool)
    odoo = next(r for r in doc["resources"] if r["inputs"].get("name") == "oduflow-1-main-odoo")
    assert odoo["type"] == "docker:index/container:Container" and odoo["custom"] is True
    assert "networksAdvanced" in odoo["inputs"]  # engine (camelCase) property names
    assert odoo["inputs"]["envs"][3] == "[secret]"
    assert odoo["inputs"]["uploads"][0]["content"] == "[secret]"
    # What a change would do to it: the provider replaces a container by deleting it first; the
    # secrets are named by path with a digest of their offline stand-in, never their value.
    assert odoo["deleteBeforeReplace"] is True and odoo["ignoreChanges"] == [] and odoo["replaceOnChanges"] == []
    assert set(odoo["secrets"]) >= {"envs[3]", "uploads[0].content"}
    assert all(len(v) == 16 for v in odoo["secrets"].values())
    database = next(r for r in doc["resources"] if r["inputs"].get("name") == "oduflow_1_main")
    assert "template" in database["ignoreChanges"] and database["protect"] is True
    component = next(r for r in doc["resources"] if r["type"] == "oduflow:index:OdooEnvironment")
    assert component["custom"] is False
    summary = doc["summary"]
    assert summary["resources"] == len(doc["resources"])
    assert sum(summary["by_type"].values()) == summary["resources"]
    assert summary["mandatory"] == sum(v["level"] == "mandatory" for v in doc["violations"]) == 0
    for v in doc["violations"]:
        assert set(v) == {"policy", "level", "urn", "message"} and v["level"] in ("mandatory", "advisory")


def _all_secrets(value: Any) -> set[str]:
    if isinstance(value, Secret):
        plain = reveal(value)
        return {json.dumps(plain) if not isinstance(plain, str) else plain}
    if isinstance(value, dict):
        return set().union(*(_all_secrets(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_all_secrets(v) for v in value)) if value else set()
    return set()


def _fragments(secret: str) -> set[str]:
    """Distinctive parts of a secret value (a whole odoo.conf is checked through its password)."""
    if "\n" in secret:  # odoo.conf: what makes it secret is its master password
        return {line.split("=", 1)[1].strip() for line in secret.splitlines() if line.startswith("admin_passwd")}
    parts = {secret}
    if "=" in secret:  # NAME=value container variables
        parts.add(secret.split("=", 1)[1])
    return {p for p in parts if len(p) >= 6}


def test_no_secret_appears_in_any_format(write_config: Callable[[str], Path]) -> None:
    path = write_config(INLINE)
    result = plan(path, project_dir=ROOT)
    secrets = {"token-team-a", "token-team-b", "pass-a", "pass-b"}
    for r in result.run.resources:
        for s in _all_secrets(r.inputs):
            secrets |= _fragments(s)
    assert any(s.startswith("mock") for s in secrets)  # generated passwords are among them
    table = io.StringIO()
    render_table(result, table)
    outputs = {
        "json": render_json(result),
        "markdown": render_markdown(result),
        "table": table.getvalue(),
    }
    for fmt, text in outputs.items():
        for secret in secrets:
            assert secret not in text, (fmt, secret[:4])
    # The inline secrets are flagged, by key path only.
    advisory = [v for v in result.violations if v.level == "advisory"]
    assert any("team.1.auth_token" in v.message for v in advisory)


def test_json_text_is_the_contract() -> None:
    """What `--format json` prints is `to_json`, secrets and unknowns hidden alike."""
    from dataclasses import replace

    from oduflow_iac.offline.harness import UNKNOWN

    result = plan(None, "cloud", ROOT)
    assert json.loads(render_json(result)) == to_json(result)
    first = replace(
        result.run.resources[0], inputs={"a": UNKNOWN, "b": [Secret("pw"), UNKNOWN, "x"], "c": Secret(UNKNOWN)}
    )
    odd = replace(result, run=replace(result.run, resources=[first, *result.run.resources[1:]]))
    text = render_json(odd)
    assert json.loads(text) == to_json(odd)
    assert json.loads(text)["resources"][0]["inputs"] == {
        "a": "[unknown]",
        "b": ["[secret]", "[unknown]", "x"],
        "c": "[secret]",
    }
    assert "pw" not in text and UNKNOWN not in text


def test_markdown_is_a_pull_request_comment() -> None:
    result = plan(None, "local", ROOT)
    text = render_markdown(result)
    assert text.startswith("<!-- oduflow-iac-plan -->")
    assert "| 1 | main (production), staging (staging), feature/login (development)" in text
    assert "50000, 50001, 50002, 50003" in text
    assert "<details><summary>All resources</summary>" in text
    assert text.count("| `docker:index/container:Container` |") == sum(
        r.type == "docker:index/container:Container" for r in result.run.resources
    )


def test_markdown_of_a_large_plan_fits_in_a_comment() -> None:
    """GitHub refuses comments over 65,536 characters: what does not fit is counted, not cut off."""
    from dataclasses import replace

    from oduflow_iac.offline.bridge import Violation

    result = plan(None, "local", ROOT)
    full = render_markdown(result)
    assert len(full) <= COMMENT_LIMIT
    # Resources by type instead of one by one.
    text = render_markdown(result, limit=len(full) - 1)
    assert len(text) < len(full) and "All resources" not in text
    assert "<details><summary>Resources by type</summary>" in text and text.rstrip().endswith("</details>")
    containers = sum(r.type == "docker:index/container:Container" for r in result.run.resources)
    assert f"| `docker:index/container:Container` | {containers} |" in text
    assert "| 1 | main (production), staging (staging), feature/login (development)" in text
    # Then environments and ports counted.
    text = render_markdown(result, limit=len(text) - 1)
    assert "| 1 | 4: 2 development, 1 production, 1 staging | " in text
    assert "| 4 ports in 50000–50003 |" in text and "50001" not in text
    # Then as many violations as fit, mandatory first, and how many are left out.
    many = [Violation("ports", "advisory", None, f"advisory {i}") for i in range(300)]
    many += [Violation("quotas", "mandatory", None, f"mandatory {i}") for i in range(300)]
    crowded = replace(result, violations=many)
    text = render_markdown(crowded, limit=6_000)
    assert len(text) <= 6_000 and text.startswith(COMMENT_MARKER)
    shown = text.count("| quotas | mandatory |") + text.count("| ports | advisory |")
    assert 0 < shown < 600 and f"… and {600 - shown} more violations" in text
    assert text.count("| quotas | mandatory |") == shown  # mandatory ones come first
    assert "Resources by type" in text and text.rstrip().endswith("</details>")
    # Whatever the room, the limit holds and a table is never cut in the middle of a row.
    for limit in range(1_000, len(render_markdown(crowded, limit=10**7)), 997):
        text = render_markdown(crowded, limit=limit)
        assert len(text) <= limit and text.startswith(COMMENT_MARKER)
        assert all(line.endswith("|") for line in text.splitlines() if line.startswith("|"))


def test_table_is_a_tree_then_a_summary() -> None:
    result = run_cli("--stack", "local")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    shared = next(i for i, line in enumerate(lines) if "oduflow:index:SharedInfra" in line)
    team1 = next(i for i, line in enumerate(lines) if "oduflow:index:TeamStack  team-1" in line)
    env = next(i for i, line in enumerate(lines) if "oduflow:index:OdooEnvironment  team-1-feature-login" in line)
    assert shared < team1 < env
    # 2 teams' mail catchers; an upgrade one-shot per environment (7) and template (2)
    assert lines[-1].startswith("Plan: 118 resources to create · 0 mandatory")


@pytest.mark.parametrize("fmt", ["table", "json", "markdown"])
def test_config_error_exit_2(write_config: Callable[[str], Path], fmt: str) -> None:
    path = write_config(SEED.replace('hostname = "team-b.example.com"', ""))
    result = run_cli("--config", str(path), "--format", fmt)
    assert result.returncode == 2
    assert result.stderr == f"error: {path}: team.2.hostname: required key is missing\n"
    assert result.stdout == ""


def test_mandatory_violation_exit_1(write_config: Callable[[str], Path]) -> None:
    path = write_config(INLINE.replace('odoo_image = "odoo:18.0"', 'odoo_image = "odoo:latest"'))
    result = run_cli("--config", str(path), "--format", "json")
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["summary"]["mandatory"] >= 1
    assert any(v["level"] == "mandatory" and "latest" in v["message"] for v in doc["violations"])


@pytest.mark.parametrize("fmt", ["json", "markdown"])
def test_same_plan_byte_for_byte_in_every_process(fmt: str) -> None:
    """A plan is diffed against the previous one in review: nothing may depend on the process
    (string hashing changes the order of Python sets from one process to the next)."""
    runs = [run_cli("--stack", "cloud", "--format", fmt, env={"PYTHONHASHSEED": seed}) for seed in ("1", "2")]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    assert all(r.stderr == "" for r in runs), runs[0].stderr
    if fmt == "json":  # one resource per line: a change shows as the lines of the resources it touches
        lines = runs[0].stdout.splitlines()
        doc = json.loads(runs[0].stdout)
        assert sum(1 for line in lines if line.startswith('    {"urn": ')) == len(doc["resources"])


def test_a_run_leaves_no_event_loop_or_thread_behind() -> None:
    """Plans run in long-lived processes (a webhook, a notebook): each run closes what it opened,
    and works from inside a running event loop too."""
    import asyncio
    import gc
    import threading

    from oduflow_iac.offline.plan import plan_config

    def open_loops() -> int:
        gc.collect()
        return sum(isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed() for o in gc.get_objects())

    before, threads = open_loops(), threading.active_count()
    run = plan_config(None, "cloud", ROOT)

    async def from_a_loop() -> int:
        return len(plan_config(None, "cloud", ROOT).resources)

    assert asyncio.run(from_a_loop()) == len(run.resources) > 0
    assert open_loops() <= before
    assert threading.active_count() == threads


def test_stack_selects_its_config_file_and_docker_host() -> None:
    doc = json.loads(run_cli("--stack", "cloud", "--format", "json").stdout)
    assert doc["stack"] == "cloud"
    provider = next(r for r in doc["resources"] if r["type"] == "pulumi:providers:docker")
    assert provider["inputs"]["host"] == "ssh://ops@odoo.acme.example"
    assert any(r["type"] == "cloudflare:index/dnsRecord:DnsRecord" for r in doc["resources"])


def test_unlocked_ports_are_pointed_out(write_config: Callable[[str], Path]) -> None:
    from oduflow_iac import ports

    path = write_config(INLINE)
    text = render_markdown(plan(path, project_dir=ROOT))
    assert "3 environments have no port in oduflow.ports.json (1/main, 1/feature/login, 2/main)" in text
    assert main(["lock", "--config", str(path)]) == 0
    assert ports.lock_path_for(path).exists()
    assert "have no port in" not in render_markdown(plan(path, project_dir=ROOT))
    # The example ships its lock.
    assert "have no port in" not in render_markdown(plan(None, "local", ROOT))
