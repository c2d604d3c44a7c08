"""Staging from production, in the config and the plan: `clone_from` refused where it cannot work
(one line naming file and key), the refresh one-shot in place of the init and re-created exactly
when the refresh generation changes (with the environment's Odoo container, nothing else), the plan
saying "staging ← copy of main (refresh 3 → 4)", and every non-production environment's mail going
to its team's catcher."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac import naming, odoo_conf
from oduflow_iac.config import Config, load_config
from oduflow_iac.errors import ConfigError
from oduflow_iac.lifecycle import refresh
from oduflow_iac.offline import changes
from oduflow_iac.offline.plan import PlanResult, plan_run, render_json
from oduflow_iac.revisions import EnvRevisions
from oduflow_iac.stack_settings import resolve_config
from tests.conftest import ROOT, SEED

CONTAINER = "docker:index/container:Container"

CLONED = (
    SEED
    + """
[[team.1.environments]]
branch = "main"
type = "production"
odoo_image = "odoo:17.0.20250101"

[[team.1.environments]]
branch = "staging"
type = "staging"
odoo_image = "odoo:17.0.20250101"
clone_from = "main"

[[team.1.environments]]
branch = "feature/x"
odoo_image = "odoo:17.0.20250101"

[[team.2.environments]]
branch = "main"
type = "production"
odoo_image = "odoo:18.0.20250101"
"""
)


def _problem(write_config: Callable[..., Path], text: str) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(write_config(text))
    (problem,) = err.value.problems
    return str(problem)


def _set(text: str, branch: str, line: str) -> str:
    """`line` added to the environment `branch` of team 1."""
    marker = f'branch = "{branch}"\n'
    head, tail = text.split(marker, 1)
    return head + marker + line + "\n" + tail


# ---------------------------------------------------------------------------------------------
# The config


def test_a_valid_clone_from_loads(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(CLONED))
    staging = config.team["1"].environments[1]
    assert staging.clone_from == "main"
    assert config.env_revisions("1", "staging").refresh == 0  # no lock entry: the first copy


@pytest.mark.parametrize(
    ("branch", "line", "key", "says"),
    [
        ("staging", 'clone_from = "staging"', "team.1.environments[1].clone_from", "is this environment itself"),
        (
            "staging",
            'clone_from = "prod"',
            "team.1.environments[1].clone_from",
            "'prod' is not an environment of team.1",
        ),
        ("main", 'clone_from = "staging"', "team.1.environments[0].clone_from", "production environment is never"),
    ],
)
def test_clone_from_refused(write_config: Callable[..., Path], branch: str, line: str, key: str, says: str) -> None:
    text = CLONED.replace('clone_from = "main"\n', "")
    shown = _problem(write_config, _set(text, branch, line))
    assert f"oduflow.toml: {key}: " in shown and says in shown


def test_a_loop_of_copies_is_refused(write_config: Callable[..., Path]) -> None:
    text = _set(CLONED, "feature/x", 'clone_from = "staging"')
    text = text.replace('clone_from = "main"', 'clone_from = "feature/x"')
    with pytest.raises(ConfigError) as err:
        load_config(write_config(text))
    shown = [str(p) for p in err.value.problems]
    assert any("environments[1].clone_from: the copies loop" in s for s in shown), shown
    # A chain that does not loop is fine: feature/x <- staging <- main.
    load_config(write_config(_set(CLONED, "feature/x", 'clone_from = "staging"')))


def test_clone_from_needs_odoo_16(write_config: Callable[..., Path]) -> None:
    old = CLONED.replace("odoo:17.0.20250101", "odoo:15.0-20240101")
    shown = _problem(write_config, old)
    assert "team.1.environments[1].clone_from: needs Odoo 16.0 or later" in shown
    assert "odoo:15.0-20240101" in shown and "Odoo 15.0" in shown
    # 16.0 is the first release with `odoo neutralize`.
    load_config(write_config(CLONED.replace("odoo:17.0.20250101", "odoo:16.0")))


def test_an_image_that_does_not_tell_its_version_needs_odoo_version(write_config: Callable[..., Path]) -> None:
    digest = "registry.example/odoo@sha256:" + "a" * 64
    text = CLONED.replace("odoo:17.0.20250101", digest)
    shown = _problem(write_config, text)
    assert "environments[1].clone_from" in shown and 'odoo_version = "17.0"' in shown
    stated = _set(_set(text, "staging", 'odoo_version = "17.0"'), "main", 'odoo_version = "17.0"')
    assert (
        load_config(write_config(stated)).env_odoo_version(
            "1", load_config(write_config(stated)).team["1"].environments[1]
        )
        == "17.0"
    )
    older = _set(text, "staging", 'odoo_version = "15.0"')
    assert "needs Odoo 16.0 or later" in _problem(write_config, older)


def test_odoo_version_may_not_contradict_the_tag(write_config: Callable[..., Path]) -> None:
    shown = _problem(write_config, _set(CLONED, "feature/x", 'odoo_version = "18.0"'))
    assert "environments[2].odoo_version: '18.0' contradicts the image 'odoo:17.0.20250101', Odoo 17.0" in shown


def test_a_copy_of_another_odoo_version_is_refused(write_config: Callable[..., Path]) -> None:
    text = CLONED.replace(
        'odoo_image = "odoo:17.0.20250101"\nclone_from', 'odoo_image = "odoo:18.0.20250101"\nclone_from'
    )
    shown = _problem(write_config, text)
    assert "environments[1].clone_from: 'main' runs Odoo 17.0 and this environment Odoo 18.0" in shown


@pytest.mark.parametrize("option", ["smtp_server", "smtp_port", "smtp_ssl"])
def test_a_non_production_environment_has_no_mail_server_of_its_own(
    write_config: Callable[..., Path], option: str
) -> None:
    value = {"smtp_server": '"smtp.example.com"', "smtp_port": "587", "smtp_ssl": "true"}[option]
    shown = _problem(write_config, _set(CLONED, "feature/x", f"odoo_options = {{ {option} = {value} }}"))
    assert f"environments[2].odoo_options.{option}: the mail of a development environment goes to" in shown
    # Production keeps its own.
    load_config(write_config(_set(CLONED, "main", f"odoo_options = {{ {option} = {value} }}")))


def test_the_catchers_hostname_is_the_teams_own(write_config: Callable[..., Path]) -> None:
    # Branch `mail` would be served at mail.<base>, the catcher's web UI.
    text = CLONED + '\n[[team.1.environments]]\nbranch = "mail"\nodoo_image = "odoo:17.0.20250101"\n'
    shown = _problem(write_config, text)
    assert "team.1.environments[3].branch: hostname 'mail.team-a.example.com' is already that of" in shown
    assert shown.endswith("the mail catcher of team.1")
    explicit = _set(CLONED, "feature/x", 'hostname = "mail.team-a.example.com"')
    assert "environments[2].hostname: hostname 'mail.team-a.example.com'" in _problem(write_config, explicit)


# ---------------------------------------------------------------------------------------------
# The plan


def plan_doc(path: Path) -> dict[str, Any]:
    config, settings = resolve_config(path, "local", ROOT)
    run, missing = plan_run(config, settings)
    return json.loads(render_json(PlanResult(config, run, [], missing)))


def _labels(r: dict[str, Any]) -> dict[str, str]:
    return {x["label"]: x["value"] for x in r["inputs"].get("labels") or []}


def _container(doc: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((r for r in doc["resources"] if r["type"] == CONTAINER and r["inputs"].get("name") == name), None)


def _generation(monkeypatch: pytest.MonkeyPatch, generation: int) -> None:
    """A revision lock whose refresh generation is `generation` for every environment."""
    monkeypatch.setattr(Config, "env_revisions", lambda self, t, b: EnvRevisions(repos={}, refresh=generation))


def test_the_refresh_one_shot_replaces_the_init(write_config: Callable[..., Path]) -> None:
    doc = plan_doc(write_config(CLONED))
    job = _container(doc, naming.env_refresh_container_name("1", "staging"))
    assert job is not None
    assert _container(doc, naming.env_init_container_name("1", "staging")) is None
    assert _container(doc, naming.env_init_container_name("1", "main")) is not None
    assert _labels(job) == {
        "oduflow.team": "1",
        "oduflow.managed": "true",
        "oduflow.role": "refresh",
        "oduflow.env": "staging",
        naming.LABEL_REFRESH: "0",
    }
    inputs = job["inputs"]
    assert inputs["mustRun"] is False and inputs["attach"] is True
    assert inputs["command"] == [refresh.SCRIPT_PATH] and inputs["image"] == "odoo:17.0.20250101"
    # Re-created only by its name or labels: the generation.
    for ignored in ("image", "envs", "uploads", "command", "volumes"):
        assert ignored in job["ignoreChanges"]
    assert "labels" not in job["ignoreChanges"]
    volumes = {v["containerPath"]: v for v in inputs["volumes"]}
    assert volumes[refresh.SOURCE_FILESTORE_MOUNT]["volumeName"] == naming.env_filestore_volume_name("1", "main")
    assert volumes[refresh.SOURCE_FILESTORE_MOUNT]["readOnly"] is True
    assert volumes[odoo_conf.FILESTORE_PATH]["volumeName"] == naming.env_filestore_volume_name("1", "staging")
    assert not volumes[odoo_conf.FILESTORE_PATH].get("readOnly")
    assert f"{refresh.SOURCE_ENV}=main" in inputs["envs"]
    assert [n["name"] for n in inputs["networksAdvanced"]] == [naming.team_network_name("1")]
    # The copy waits for production's init; the staging Odoo waits for the copy.
    main_init = _container(doc, naming.env_init_container_name("1", "main"))
    assert main_init is not None and main_init["urn"] in job["dependencies"]
    odoo = _container(doc, naming.env_container_name("1", "staging"))
    assert odoo is not None and job["urn"] in odoo["dependencies"]
    assert _labels(odoo)[naming.LABEL_REFRESH] == "0"
    assert naming.LABEL_REFRESH not in _labels(_container(doc, naming.env_container_name("1", "main")) or {})


def test_the_script_is_the_refresh_of_the_target_from_its_source(write_config: Callable[..., Path]) -> None:
    config, settings = resolve_config(write_config(CLONED), "local", ROOT)
    run, _ = plan_run(config, settings)
    (job,) = [r for r in run.resources if r.type == CONTAINER and r.name.endswith("-staging-refresh")]
    from oduflow_iac.offline.harness import reveal

    uploads = {u["file"]: u["content"] for u in reveal(job.inputs["uploads"])}
    expected = refresh.refresh_script(
        naming.env_db_name("1", "main"),
        naming.env_db_name("1", "staging"),
        0,
        base_url="http://staging.team-a.example.com",
    )
    assert uploads[refresh.SCRIPT_PATH] == expected


def test_a_new_generation_replaces_the_copy_and_its_odoo_only(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(CLONED)
    _generation(monkeypatch, 3)
    base = plan_doc(path)
    _generation(monkeypatch, 4)
    head = plan_doc(path)
    d = changes.diff_plans(base, head, "base", {("1", "main"): "production", ("1", "staging"): "staging"})
    job = _container(head, naming.env_refresh_container_name("1", "staging"))
    odoo = _container(head, naming.env_container_name("1", "staging"))
    # The copy's upgrade one-shot too: the copied database carries its source's recorded state.
    upgrade = _container(head, naming.env_upgrade_container_name("1", "staging"))
    assert job is not None and odoo is not None and upgrade is not None
    assert {(c.urn, c.action) for c in d.changed} == {
        (job["urn"], "replace"),
        (odoo["urn"], "replace"),
        (upgrade["urn"], "replace"),
    }
    notes = changes.notes(d)
    kinds = dict(notes)
    assert kinds["refresh"].startswith("staging ← copy of main (refresh 3 → 4), team 1: ")
    # Said once, as a refresh; the only re-run is the copy's upgrade.
    assert [t for k, t in notes if k == "re-run"] == [
        "one-shot `oduflow-1-staging-upgrade` (upgrade) of 1/staging is re-created and runs again (labels[4].value)."
    ]
    text = "\n".join(t for _, t in changes.text_lines(d))
    assert "staging ← copy of main (refresh 3 → 4)" in text
    assert "staging ← copy of main (refresh 3 → 4)" in "\n".join(changes.markdown_lines(d, 60000, "local"))
    # The same generation again: nothing.
    assert changes.diff_plans(head, plan_doc(path), "head").empty


def test_adding_clone_from_creates_the_first_copy(write_config: Callable[..., Path]) -> None:
    before = plan_doc(write_config(CLONED.replace('clone_from = "main"\n', ""), "base.toml"))
    after = plan_doc(write_config(CLONED, "head.toml"))
    d = changes.diff_plans(before, after, "base")
    actions = {c.name: c.action for c in d.changed}
    assert actions["team-1-staging-refresh"] == "create" and actions["team-1-staging-init"] == "delete"
    assert dict(changes.notes(d))["refresh"].startswith("staging ← copy of main (refresh 0)")


def test_the_plain_plan_says_what_is_a_copy(write_config: Callable[..., Path]) -> None:
    doc = plan_doc(write_config(CLONED))
    (note,) = [n for n in doc["notes"] if n["kind"] == "refresh"]
    assert (note["team"], note["branch"], note["cloneFrom"], note["generation"]) == ("1", "staging", "main", 0)
    assert note["message"].startswith("team 1: staging ← copy of main (refresh 0)")


# ---------------------------------------------------------------------------------------------
# The mail catcher


def test_one_mail_catcher_per_team_with_non_production_environments(write_config: Callable[..., Path]) -> None:
    doc = plan_doc(write_config(CLONED))
    catcher = _container(doc, naming.team_mail_catcher_container_name("1"))
    assert catcher is not None
    assert _container(doc, naming.team_mail_catcher_container_name("2")) is None  # production only
    inputs = catcher["inputs"]
    assert inputs["image"].startswith("axllent/mailpit:v1.31.2@sha256:")
    assert [n["name"] for n in inputs["networksAdvanced"]] == [naming.team_network_name("1")]
    assert not inputs.get("ports") and not inputs.get("networkMode")
    assert inputs["memory"] == 128 and inputs["memorySwap"] == 128
    assert inputs["securityOpts"] == ["no-new-privileges:true"] and inputs["capabilities"] == {"drops": ["ALL"]}
    assert inputs["restart"] == "unless-stopped" and inputs["destroyGraceSeconds"] == 10
    values = _labels(catcher)
    router = naming.team_mail_catcher_router_name("1")
    assert values[f"traefik.http.routers.{router}.rule"] == "Host(`mail.team-a.example.com`)"
    assert values[f"traefik.http.routers.{router}.middlewares"] == f"{naming.team_auth_middleware_name('1')}@docker"
    assert values[f"traefik.http.services.{router}.loadbalancer.server.port"] == "8025"
    assert values["traefik.docker.network"] == naming.team_network_name("1")
    assert values[f"traefik.http.middlewares.{naming.team_auth_middleware_name('1')}.basicauth.users"] == "[secret]"


def test_non_production_odoo_conf_points_at_the_catcher() -> None:
    rendered = odoo_conf.render_odoo_conf(
        database="d", admin_passwd="x", workers=0, memory_mb=1024, addons_paths=[], mail_catcher="oduflow-1-mail"
    )
    options = odoo_conf.parse_odoo_conf(rendered)
    assert (options["smtp_server"], options["smtp_port"], options["smtp_ssl"]) == ("oduflow-1-mail", "1025", "False")
    assert not {k for k in options if k.startswith("smtp_user") or k.startswith("smtp_password")}
    with pytest.raises(ValueError):
        odoo_conf.render_odoo_conf(
            database="d",
            admin_passwd="x",
            workers=0,
            memory_mb=1024,
            addons_paths=[],
            options={"smtp_server": "smtp.example.com"},
            mail_catcher="oduflow-1-mail",
        )
    production = odoo_conf.render_odoo_conf(
        database="d", admin_passwd="x", workers=0, memory_mb=1024, addons_paths=[], options={"smtp_port": 587}
    )
    assert odoo_conf.parse_odoo_conf(production).get("smtp_server") is None


def test_the_program_gives_the_catcher_to_non_production_only(write_config: Callable[..., Path]) -> None:
    from oduflow_iac.offline.harness import reveal

    config, settings = resolve_config(write_config(CLONED), "local", ROOT)
    run, _ = plan_run(config, settings)
    confs = {}
    for r in run.resources:
        if r.type == CONTAINER and r.name.endswith("-odoo"):
            (upload,) = [u for u in reveal(r.inputs["uploads"]) if u["file"] == odoo_conf.ODOO_CONF_PATH]
            confs[r.name] = odoo_conf.parse_odoo_conf(upload["content"])
    assert confs["team-1-staging-odoo"]["smtp_server"] == naming.team_mail_catcher_container_name("1")
    assert confs["team-1-feature-x-odoo"]["smtp_port"] == "1025"
    assert "smtp_server" not in confs["team-1-main-odoo"] and "smtp_server" not in confs["team-2-main-odoo"]


def test_a_failed_refresh_is_retried_by_the_next_up() -> None:
    from oduflow_iac import automation

    urn = (
        "urn:pulumi:local::oduflow::oduflow:index:TeamStack$oduflow:index:OdooEnvironment"
        "$docker:index/container:Container::team-1-staging-refresh"
    )
    deployment = {
        "resources": [
            {
                "urn": urn,
                "type": CONTAINER,
                "inputs": {"name": "oduflow-1-staging-refresh"},
                "outputs": {
                    "name": "oduflow-1-staging-refresh",
                    "exitCode": 3,
                    "labels": [{"label": "oduflow.role", "value": "refresh"}, {"label": "oduflow.team", "value": "1"}],
                },
            }
        ]
    }
    (failed,) = automation.failed_one_shots(deployment)
    assert (failed.name, failed.role, failed.exit_code) == ("oduflow-1-staging-refresh", "refresh", 3)


def test_a_copy_across_servers_is_refused(write_config: Callable[..., Path]) -> None:
    servers = (
        '[server.default]\ndocker_host = "unix:///var/run/docker.sock"\n'
        '[server.prod]\ndocker_host = "ssh://deploy@prod.example.com"\n'
    )
    text = servers + _set(CLONED, "main", 'server = "prod"')
    text = text.replace("[team.1]\n", '[team.1]\nserver = "default"\n', 1)
    shown = _problem(write_config, text.replace("[team.2]\n", '[team.2]\nserver = "default"\n', 1))
    assert "environments[1].clone_from: 'main' runs on server 'prod' and this environment on 'default'" in shown
