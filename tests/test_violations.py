"""End to end: the program planned under mocks, then the policy pack through the offline bridge.

`examples/oduflow.toml` passes every mandatory policy; each `examples/violations/<policy>[--case].toml`
is a small valid config with one violation, caught by that mandatory policy and by no other, except
those the loader now refuses first (`LOADER_REFUSES`): for them the CLI exits 2 naming the key.
"""

from __future__ import annotations

import functools
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi_policy
import pulumi_policy.policy
import pytest

from oduflow_iac import policy
from oduflow_iac.config import Config, load_config
from oduflow_iac.offline.bridge import Violation, run_policies, to_wire
from oduflow_iac.offline.harness import UNKNOWN, PlannedResource, PlannedRun, run_offline
from oduflow_iac.policy_config import render_policy_config
from oduflow_iac.program import ProgramSettings, build

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "oduflow.toml"
CLOUD_EXAMPLE = ROOT / "examples" / "cloud" / "oduflow.toml"
VIOLATIONS = sorted((ROOT / "examples" / "violations").glob("*.toml"))
# Examples whose violation the config loader refuses before any policy runs: the key it names.
LOADER_REFUSES = {
    "odoo-hardening": "team.1.environments[1].odoo_options.list_db: list_db is set by the platform",
    "mail-caught": "team.1.environments[1].odoo_options.smtp_server: the mail of a development environment goes",
}
PLANNED = [p for p in VIOLATIONS if p.stem not in LOADER_REFUSES]
MANDATORY = {p.name for p in policy.POLICIES if p.enforcement_level is policy.MANDATORY}


def secret_keys(config: Config) -> list[str]:
    """Every `secret:KEY` the file references, as its stack config key `oduflow-secrets:KEY`."""
    values = [config.dns.api_token] if config.dns else []
    for _, team in config.teams:
        values += [team.auth_token, team.production_token, *team.program_secrets()]
    return sorted({v.stack_key for v in values if v is not None and v.stack_key})


@functools.cache
def check(path: Path) -> tuple[Violation, ...]:
    config = load_config(path)
    keys = secret_keys(config)
    run = run_offline(
        lambda: build(config, ProgramSettings(docker_host="unix:///var/run/docker.sock")),
        config=dict.fromkeys(keys, "placeholder"),
        secret_keys=keys,
    )
    return tuple(run_policies(run, render_policy_config(config)))


def test_example_has_no_mandatory_violation() -> None:
    found = check(EXAMPLE)
    assert [v for v in found if v.level == "mandatory"] == []
    assert not [v for v in found if "during preview" in v.message]


def test_example_images_do_not_float() -> None:
    """The defaults and the example pin every image (digest or release tag)."""
    assert [v.message for v in check(EXAMPLE) if v.policy == "images-immutable"] == []


def test_cloud_example_floats_only_the_backup_image() -> None:
    """The backup job's default image has no published digest (its project pushes only the moving
    `:16`): the one floating image, reported (advisory) until the operator pins it by digest."""
    found = [v for v in check(CLOUD_EXAMPLE) if v.policy == "images-immutable"]
    assert found, "the default backup image floats and must be reported"
    for v in found:
        assert v.level == "advisory"
        pattern = r"^container oduflow-\w+-backup uses image eeshugerman/postgres-backup-s3:16 whose tag 16 "
        assert re.match(pattern, v.message), v


def policy_of(path: Path) -> str:
    return path.stem.split("--")[0]


def test_every_mandatory_policy_has_a_violation_example() -> None:
    assert {policy_of(p) for p in VIOLATIONS} == MANDATORY


EXPECTED = {
    "ports": r"^team 1 publishes port 50070 outside its range \[50000, 50010\)$",
    "ports--publish-address": r"^team 1 container oduflow-1-main-odoo publishes port 5000\d on 0\.0\.0\.0, beyond",
    "quotas": r"^team 1 asks for 12288 MB of memory, over its quota of 8192 MB$",
    "isolation": r"^container oduflow-1-feature-login-odoo of team 1 joins network oduflow-2-net of another team$",
    "odoo-hardening": r"^Odoo container oduflow-1-feature-login-odoo has list_db = True;",
    "images-pinned": r"^container oduflow-1-feature-login-odoo uses image odoo:latest which is tagged latest;",
    "capacity": r"^server default: 3 environments and the platform's services need 6 CPUs, 13120 MB, 0 GB of disk; "
    r"capacity is 4 CPUs, 8192 MB, 100 GB of disk \(over on CPU, memory\)$",
    "backups": r"^the backup job of team 1 does not dump database oduflow_1_main of production environment main$",
}


@pytest.mark.parametrize("path", PLANNED, ids=[p.stem for p in PLANNED])
def test_violation_example(path: Path) -> None:
    found = [v for v in check(path) if v.level == "mandatory"]
    assert {v.policy for v in found} == {policy_of(path)}, found
    assert any(re.search(EXPECTED[path.stem], v.message) for v in found), found
    assert all(v.urn is None or v.urn.startswith("urn:pulumi:local::oduflow::") for v in found)


def test_violation_examples_name_their_policy() -> None:
    for path in VIOLATIONS:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith(f"# Violates `{policy_of(path)}`"), path


@pytest.mark.parametrize("stem", sorted(LOADER_REFUSES))
def test_loader_refuses_what_the_policy_would_catch(stem: str) -> None:
    path = ROOT / "examples" / "violations" / f"{stem}.toml"
    out = subprocess.run(
        [sys.executable, "-m", "oduflow_iac.cli", "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2, out
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: {LOADER_REFUSES[stem]}"), line


# --------------------------------------------------------------------------------------------
# The pack as the CLI runs it


def test_pack_entry_point_hands_over_the_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: made.append(kwargs))
    monkeypatch.setattr(sys, "path", list(sys.path))
    runpy.run_path(str(ROOT / "policies" / "__main__.py"), run_name="__main__")
    assert len(made) == 1
    assert made[0]["name"] == "oduflow"
    assert made[0]["policies"] is policy.POLICIES


def test_pack_metadata_matches() -> None:
    yaml = pytest.importorskip("yaml")
    meta = yaml.safe_load((ROOT / "policies" / "PulumiPolicy.yaml").read_text(encoding="utf-8"))
    assert str(meta["version"]) == policy.PACK_VERSION
    assert (meta["runtime"]["name"] if isinstance(meta["runtime"], dict) else meta["runtime"]) == "python"
    assert meta["description"]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for line in (ROOT / "policies" / "requirements.txt").read_text(encoding="utf-8").split():
        assert f'"{line}"' in pyproject, line


def test_rules_import_without_the_sdk() -> None:
    """The pack's virtualenv has pulumi-policy only: the rules must not pull in the providers,
    the config model or the offline harness."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import oduflow_iac.policy; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "pulumi_policy" in loaded
    assert not loaded & {"pydantic", "pulumi_docker", "pulumi_aws", "pulumi_postgresql", "tomlkit", "bcrypt"}
    follow = (
        "import sys; sys.path.insert(0, sys.argv[1]); import oduflow_iac.policy; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('oduflow_iac'))))"
    )
    ours = subprocess.run([sys.executable, "-c", follow, str(ROOT)], capture_output=True, text=True, check=True)
    modules = {m for m in ours.stdout.split() if not m.startswith("oduflow_iac.policy.")}
    assert modules <= {
        "oduflow_iac",
        "oduflow_iac.policy",
        "oduflow_iac.naming",
        "oduflow_iac.odoo_conf",
        "oduflow_iac.backup",
        "oduflow_iac.backup_storage",
    }


# --------------------------------------------------------------------------------------------
# The bridge against pulumi_policy's own analyzer


def analyzer_diagnostics(run: PlannedRun, policy_config: dict[str, Any]) -> set[tuple[str, str, str]]:
    """What the analyzer the engine talks to reports for `run`: its servicer, called with the
    protobuf requests the engine sends (the effective enforcement level of every policy included)."""
    from google.protobuf import struct_pb2
    from pulumi.runtime import proto

    servicer_type = getattr(pulumi_policy.policy, "_PolicyAnalyzerServicer", None)
    if servicer_type is None:
        pytest.skip("this pulumi-policy has no analyzer servicer to compare with")
    servicer = servicer_type(policy.PACK_NAME, policy.PACK_VERSION, policy.POLICIES, policy.ADVISORY)
    levels = {"mandatory": proto.MANDATORY, "advisory": proto.ADVISORY}

    def struct(value: dict[str, Any]) -> Any:
        message = struct_pb2.Struct()
        message.update(value)
        return message

    configs = {}
    for p in policy.POLICIES:
        assert p.enforcement_level is not None
        configs[p.name] = proto.PolicyConfig(
            enforcementLevel=levels[p.enforcement_level.value], properties=struct(policy_config.get(p.name, {}))
        )
    servicer.Configure(proto.ConfigureAnalyzerRequest(policyConfig=configs), None)

    def resource(r: PlannedResource) -> Any:
        return proto.AnalyzerResource(
            type=r.type,
            properties=struct(to_wire(r.inputs)),
            urn=r.urn,
            name=r.name,
            options=proto.AnalyzerResourceOptions(protect=r.protect, parent=r.parent or ""),
            parent=r.parent or "",
            dependencies=r.dependencies,
        )

    diagnostics = []
    for r in run.resources:
        request = proto.AnalyzeRequest(
            type=r.type,
            properties=struct(to_wire(r.inputs)),
            urn=r.urn,
            name=r.name,
            options=proto.AnalyzerResourceOptions(protect=r.protect, parent=r.parent or ""),
        )
        diagnostics += servicer.Analyze(request, None).diagnostics
    diagnostics += servicer.AnalyzeStack(
        proto.AnalyzeStackRequest(resources=[resource(r) for r in run.resources]), None
    ).diagnostics
    names = {v: k for k, v in levels.items()}
    return {(d.policyName, names[d.enforcementLevel], d.message) for d in diagnostics}


@pytest.mark.parametrize("path", [EXAMPLE, *PLANNED], ids=["example", *(p.stem for p in PLANNED)])
def test_bridge_reports_what_the_analyzer_reports(path: Path) -> None:
    config = load_config(path)
    keys = secret_keys(config)
    run = run_offline(
        lambda: build(config, ProgramSettings(docker_host="unix:///var/run/docker.sock")),
        config=dict.fromkeys(keys, "placeholder"),
        secret_keys=keys,
    )
    rendered = render_policy_config(config)
    assert bridge_diagnostics(run, rendered) == analyzer_diagnostics(run, rendered)


def bridge_diagnostics(run: PlannedRun, policy_config: dict[str, Any]) -> set[tuple[str, str, str]]:
    descriptions = {p.name: p.description for p in policy.POLICIES}
    out: set[tuple[str, str, str]] = set()
    for v in run_policies(run, policy_config):
        # The analyzer prefixes a violation's message with the policy's description.
        message = v.message if v.message.startswith("can't run policy") else f"{descriptions[v.policy]}\n{v.message}"
        out.add((v.policy, v.level, message))
    return out


def test_bridge_reports_unknowns_as_the_analyzer_does() -> None:
    def container(name: str, **inputs: Any) -> PlannedResource:
        urn = f"urn:pulumi:local::oduflow::{policy.CONTAINER}::{name}"
        return PlannedResource(urn, policy.CONTAINER, name, None, True, {"name": name, **inputs}, [], False)

    run = PlannedRun(
        "oduflow",
        "local",
        [container("a", image=UNKNOWN), container("b", image="odoo", ports=UNKNOWN)],
        {},
    )
    found = bridge_diagnostics(run, {})
    assert found == analyzer_diagnostics(run, {})
    assert {(name, level) for name, level, _ in found} == {
        ("images-pinned", "advisory"),
        ("images-pinned", "mandatory"),
        ("images-immutable", "advisory"),
        ("ports", "advisory"),
    }
