"""Hostile configs (tests/data/hostile/*.toml): each injection is refused with one line naming the
file and the key (exit 2, through the CLI), or stopped by a mandatory policy (exit 1); no
credential written in a config appears in any plan format or message.

Each file's first line says what must happen: `# refused: KEY: FRAGMENT` or
`# policy: POLICY: FRAGMENT`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from oduflow_iac.cli import main
from oduflow_iac.offline.plan import plan, render_json, render_markdown, render_table
from tests.conftest import ROOT

CORPUS = sorted((Path(__file__).parent / "data" / "hostile").glob("*.toml"))


def expectation(path: Path) -> tuple[str, str, str]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    kind, _, rest = first.removeprefix("# ").partition(": ")
    key, _, fragment = rest.partition(": ")
    return kind, key, fragment


def test_the_corpus_is_there() -> None:
    assert len(CORPUS) >= 40
    assert {expectation(p)[0] for p in CORPUS} == {"refused", "policy"}


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_hostile_config(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kind, key, fragment = expectation(path)
    if kind == "refused":
        for command in ("validate", "plan"):
            assert main([command, "--config", str(path)]) == 2
            out = capsys.readouterr()
            lines = out.err.strip().splitlines()
            assert len(lines) == 1, lines
            assert lines[0].startswith(f"error: {path}: {key}: "), lines[0]
            assert fragment in lines[0], lines[0]
    else:
        assert main(["plan", "--config", str(path), "--format", "json"]) == 1
        doc = json.loads(capsys.readouterr().out)
        found = [v for v in doc["violations"] if v["level"] == "mandatory"]
        assert {v["policy"] for v in found} == {key}, found
        assert any(fragment in v["message"] for v in found), found


LEAKY = """
[[organisation.addons]]
name = "common"
url = "https://git.example.com/org/common.git"
branch = "main"

[team.1]
hostname = "team-a.example.com"
auth_token = "tok-AUTH-inline-1111"
ui_password = "pw-UI-inline-2222"
production_token = "tok-PROD-inline-3333"
git_token = "ghp_GITTOKEN-inline-4444"
git_ssh_key = "secret:team1-deploy-key"
port_range = [50000, 50050]

[[team.1.addons]]
name = "private"
url = "git@git.example.com:acme/private.git"
branch = "main"

[[team.1.environments]]
branch = "main"
type = "production"
odoo_image = "odoo:17.0"

[[team.1.environments]]
branch = "dev"
odoo_image = "odoo:17.0"
"""
INLINE_SECRETS = ("tok-AUTH-inline-1111", "pw-UI-inline-2222", "tok-PROD-inline-3333", "ghp_GITTOKEN-inline-4444")


def test_no_credential_of_the_config_in_any_plan_format(write_config: Callable[[str], Path]) -> None:
    path = write_config(LEAKY)
    result = plan(path, project_dir=ROOT)
    table = io.StringIO()
    render_table(result, table)
    for fmt, text in {
        "json": render_json(result),
        "markdown": render_markdown(result),
        "table": table.getvalue(),
    }.items():
        for secret in INLINE_SECRETS:
            assert secret not in text, (fmt, secret[:6])
    # The fetcher gets the credentials as secret variables only: never in its command or labels.
    fetch = [r for r in result.run.resources if str(r.inputs.get("name", "")).endswith("-addons-fetch")]
    assert fetch
    for r in fetch:
        visible = json.dumps({k: v for k, v in r.inputs.items() if k != "envs"}, default=str)
        assert "ghp_GITTOKEN" not in visible
        assert all(type(e).__name__ == "Secret" for e in r.inputs["envs"])


def test_a_refused_credential_url_is_not_repeated(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    text = LEAKY.replace("git@git.example.com:acme/private.git", "https://ghp_INURL-5555@git.example.com/acme/p.git")
    path = write_config(text)
    for command in ("validate", "plan", "policy-config"):
        assert main([command, "--config", str(path)]) == 2
        out = capsys.readouterr()
        assert "ghp_INURL-5555" not in out.err + out.out
        assert "embeds credentials" in out.err


OWNERSHIP = """
[team.1]
hostname = "portal.team-a.example.com"
base_domain = "team-a.example.com"
auth_token = "a"
ui_password = "pa"
port_range = [50000, 50050]
custom_domains = ["client.example", "erp.other-client.example"]

[[team.1.environments]]
branch = "main"
type = "production"
odoo_image = "odoo:17.0"
hostname = "client.example"

[[team.1.environments]]
branch = "shop"
type = "production"
odoo_image = "odoo:17.0"
hostname = "shop.client.example"

[[team.1.environments]]
branch = "apex"
odoo_image = "odoo:17.0"
hostname = "team-a.example.com"

[team.2]
hostname = "team-b.example.com"
auth_token = "b"
port_range = [50050, 50100]
environment_hostname_mode = "slots"

[[team.2.environments]]
branch = "main"
type = "production"
odoo_image = "odoo:18.0"

[[team.2.environments]]
branch = "www"
type = "production"
odoo_image = "odoo:18.0"
hostname = "www.team-b.example.com"
"""


def test_own_names_are_accepted(write_config: Callable[[str], Path]) -> None:
    from oduflow_iac.config import load_config

    config = load_config(write_config(OWNERSHIP))
    hosts = {env.branch: config.env_hostname(t, env) for t, team in config.teams for env in team.environments}
    assert hosts["shop"] == "shop.client.example" and hosts["www"] == "www.team-b.example.com"
    assert config.team["2"].ui_password is None  # production only: no basic auth to configure


@pytest.mark.parametrize(
    ("change", "key", "fragment"),
    [
        # team 2 names its production after a host under team 1's custom domain
        (('hostname = "www.team-b.example.com"', 'hostname = "x.client.example"'),
         "team.2.environments[1].hostname", "it is owned by team.1"),
        # the team's own portal host is not a base for environments when base_domain is set
        (('hostname = "team-a.example.com"', 'hostname = "x.portal.team-a.example.com"'),
         None, None),
        # a slot host of team 2 (its `main` holds slot 1) taken by another of its environments
        (('hostname = "www.team-b.example.com"', 'hostname = "env-1.team-b.example.com"'),
         "team.2.environments[1].hostname", "is the slot hostname of team.2.environments[0]"),
    ],
)  # fmt: skip
def test_ownership_edges(
    write_config: Callable[[str], Path], change: tuple[str, str], key: str | None, fragment: str | None
) -> None:
    from oduflow_iac.config import ConfigError, load_config

    path = write_config(OWNERSHIP.replace(*change))
    if key is None:
        load_config(path)  # under the team's base: fine
        return
    with pytest.raises(ConfigError) as err:
        load_config(path)
    (problem,) = err.value.problems
    assert problem.key == key and fragment in problem.message, problem
