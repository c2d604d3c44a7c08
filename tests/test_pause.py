"""Odoo stopped around upgrades and refreshes: which containers a preview names, and `up` stopping
them before the deployment and starting them after it, failed or not (against the fake CLI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac import automation
from oduflow_iac.automation import DockerResult
from oduflow_iac.config import load_config
from oduflow_iac.lifecycle import pause
from oduflow_iac.stack_settings import read_stack_settings
from tests.test_automation import FakeCli, config_file, fake_cli, project  # noqa: F401 (fixtures)

CONTAINER = "docker:index/container:Container"


def step(op: str, role: str, team: str | None, branch: str | None, name: str = "x") -> dict[str, Any]:
    labels = [{"label": "oduflow.role", "value": role}, {"label": "oduflow.managed", "value": "true"}]
    if team:
        labels.append({"label": "oduflow.team", "value": team})
    if branch:
        labels.append({"label": "oduflow.env", "value": branch})
    urn = f"urn:pulumi:local::oduflow::{CONTAINER}::{name}"
    return {
        "op": op,
        "urn": urn,
        "type": CONTAINER,
        "new": {"type": CONTAINER, "urn": urn, "inputs": {"labels": labels}},
    }


def test_only_environments_whose_upgrade_or_refresh_runs_are_stopped() -> None:
    steps = [
        step("replace", "upgrade", "1", "main"),
        step("create", "refresh", "2", "feature/Login"),
        step("same", "upgrade", "1", "staging"),  # not run: nothing to stop
        step("update", "upgrade", "1", "dev"),  # an in-place update runs nothing
        step("replace", "odoo", "1", "other"),  # Odoo's own replacement is Pulumi's business
        step("replace", "upgrade", "1", None),  # a template's upgrade: no Odoo of its own
        step("create-replacement", "upgrade", "3", "main"),
        {
            "op": "replace",
            "urn": "u",
            "old": {"inputs": {"labels": {"oduflow.role": "upgrade", "oduflow.team": "4", "oduflow.env": "x"}}},
        },
    ]
    assert pause.containers_to_stop(steps) == [
        "oduflow-1-main-odoo",
        "oduflow-2-feature-login-odoo",
        "oduflow-3-main-odoo",
        "oduflow-4-x-odoo",
    ]


class FakeDocker:
    def __init__(self, missing: set[str] = frozenset(), fake: FakeCli | None = None) -> None:  # type: ignore[assignment]
        self.missing = set(missing)
        self.fake = fake
        self.calls: list[tuple[str, str, list[str]]] = []  # (command, name, pulumi ops so far)

    def __call__(self, args: list[str], env: Any = None) -> DockerResult:
        ops = [c["args"][0] for c in self.fake.engine()] if self.fake else []
        self.calls.append((args[0], args[1], ops))
        if args[1] in self.missing:
            return DockerResult(1, f"Error response from daemon: No such container: {args[1]}")
        return DockerResult(0, args[1])


def test_paused_starts_again_on_error_and_skips_missing_containers() -> None:
    docker = FakeDocker(missing={"gone"})
    lines: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), pause.paused(["a", "gone", "b"], lambda a: docker(a), lines.append):
        raise RuntimeError("boom")
    assert [(c, n) for c, n, _ in docker.calls] == [
        ("stop", "a"),
        ("stop", "gone"),
        ("stop", "b"),
        ("start", "a"),
        ("start", "b"),
    ]


def _runner(
    root: Path, fake: FakeCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps: list[dict[str, Any]]
) -> Any:
    steps_file = tmp_path / "steps.json"
    steps_file.write_text(json.dumps(steps))
    monkeypatch.setenv("FAKE_PULUMI_STEPS", str(steps_file))
    settings = read_stack_settings("local", root)
    runner = automation.Runner(root, policy=False, out=lambda line: None)
    docker = FakeDocker(fake=fake)
    runner.docker = docker
    return runner, settings, docker


@pytest.mark.parametrize("fails", [False, True])
def test_up_stops_the_upgraded_environments_odoo_and_starts_it_after(
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
    fake_cli: FakeCli,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fails: bool,
) -> None:
    steps = [step("replace", "upgrade", "1", "main"), step("same", "upgrade", "1", "staging")]
    runner, settings, docker = _runner(project, fake_cli, tmp_path, monkeypatch, steps)
    if fails:
        monkeypatch.setenv("FAKE_PULUMI_FAIL", "up:local")
    result = runner.run("up", automation.select(settings), load_config(config_file))
    assert result.ok is not fails
    # Stopped after the preview and before the update; started after the update, whatever its end.
    assert docker.calls == [
        ("stop", "oduflow-1-main-odoo", ["preview"]),
        ("start", "oduflow-1-main-odoo", ["preview", "up"]),
    ]
    preview = next(c for c in fake_cli.engine() if c["args"][0] == "preview")
    assert "--policy-pack" not in preview["args"]  # the pack runs once, with `up`


def test_an_up_that_upgrades_nothing_stops_nothing(
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
    fake_cli: FakeCli,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner, settings, docker = _runner(project, fake_cli, tmp_path, monkeypatch, [step("same", "upgrade", "1", "main")])
    assert runner.run("up", automation.select(settings), load_config(config_file)).ok
    assert docker.calls == []
