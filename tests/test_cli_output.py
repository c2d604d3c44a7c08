"""What the commands print: the JSON plan carries the notes, versions its shape and keeps whole
numbers whole; piped tables keep sentences whole; lifecycle commands say what really happens."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac.automation import DockerResult, Lifecycle
from oduflow_iac.cli import main
from oduflow_iac.offline.plan import JSON_FORMAT_VERSION, plan, render_table
from tests.conftest import EXAMPLE, SEED

ENVS = '\n[[team.1.environments]]\nbranch = "main"\ntype = "production"\nodoo_image = "odoo:17.0"\n'


def _floats(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in _floats(v)]
    return []


@pytest.fixture
def unlocked(write_config: Callable[..., Path]) -> Path:
    """A config with no port lock beside it and a secret the stack lacks."""
    return write_config(SEED + ENVS)


def test_json_plan_has_version_notes_and_whole_numbers(unlocked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["plan", "--config", str(unlocked), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["formatVersion"] == JSON_FORMAT_VERSION
    kinds = [n["kind"] for n in doc["notes"]]
    assert "unlocked-ports" in kinds
    unlocked_note = next(n for n in doc["notes"] if n["kind"] == "unlocked-ports")
    assert unlocked_note["environments"] == ["1/main"]
    whole = [f for r in doc["resources"] for f in _floats(r["inputs"]) if f.is_integer()]
    assert whole == []
    published = [p for r in doc["resources"] for p in r["inputs"].get("ports", []) if isinstance(p, dict)]
    assert [p["external"] for p in published if p.get("external") == 50000] == [50000]
    assert all(isinstance(p["external"], int) for p in published if "external" in p)


def test_json_plan_notes_name_missing_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parent.parent
    shutil.copy(root / "Pulumi.yaml", tmp_path)
    (tmp_path / "stacks").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "oduflow.toml")
    (tmp_path / "stacks" / "Pulumi.local.yaml").write_text("config:\n  oduflow:configFile: oduflow.toml\n")
    main(["plan", "--project-dir", str(tmp_path), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    missing = next(n for n in doc["notes"] if n["kind"] == "missing-secrets")
    assert "oduflow-secrets:team1-ui-password" in missing["keys"]


def test_piped_table_honours_columns_and_keeps_sentences(unlocked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "70")
    result = plan(unlocked)
    out = io.StringIO()
    render_table(result, out)
    lines = out.getvalue().splitlines()
    note = [line for line in lines if line.startswith("note:")]
    assert note and "run `oduflow-iac lock` and commit the file, so their ports never move" in note[0]
    assert "1 environment has no port" in note[0]
    tree = [line for line in lines if not line.startswith(("note:", "Plan:"))]
    assert max(len(line) for line in tree) <= 70


def test_validate_wording_and_disabled(write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    text = SEED.split("[team.2]")[0] + ENVS + "disabled = true\n"
    path = write_config(text)
    assert main(["validate", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "valid: 1 team, 1 environment (1 disabled)" in out
    assert out.splitlines()[1].endswith("disabled")


def test_env_disable_warns_for_production_and_twice_is_nothing(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(SEED + ENVS)
    args = ["env", "disable", "--config", str(path), "--team", "1", "--branch", "main", "--no-deploy"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "WARNING: 'main' is a production environment" in out and "oduflow-iac up" in out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "already disabled; nothing to do" in out and "oduflow-iac up" not in out


def test_cleanup_dry_run_lists_orphans(config_file_copy: Path) -> None:
    calls: list[list[str]] = []

    def docker(args: list[str], env: Mapping[str, str]) -> DockerResult:
        calls.append(args)
        return DockerResult(0, "oduflow-1-main-odoo\noduflow-1-old-branch-odoo\n" if args[0] == "ps" else "")

    outcome = Lifecycle(config_file_copy, docker=docker).cleanup("1", orphans=True, dry_run=True)
    assert "leftover container: oduflow-1-old-branch-odoo" in outcome.lines
    assert [c[0] for c in calls] == ["ps"]  # listed, nothing removed


@pytest.fixture
def config_file_copy(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLE, tmp_path / "oduflow.toml")
    return tmp_path / "oduflow.toml"
