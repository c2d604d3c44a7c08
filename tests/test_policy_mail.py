"""The mandatory policy `mail-caught`: it catches a non-production environment with an outgoing
mail server of its own, in every way Odoo would take one (odoo.conf in any spelling Odoo's parser
reads, its command line), and leaves production alone."""

from __future__ import annotations

from typing import Any

import pytest

from oduflow_iac import naming, odoo_conf, policy
from tests.test_policy import container, odoo, run_stack

CATCHER = naming.team_mail_catcher_container_name("1")
CONFIG = {"production": [{"team": "1", "branch": "main", "database": "d", "filestore": "f"}]}


def conf(extra: str = "", catcher: str | None = CATCHER) -> list[dict[str, Any]]:
    text = "[options]\ndb_name = x\n"
    if catcher is not None:
        text += f"smtp_server = {catcher}\nsmtp_port = 1025\nsmtp_ssl = False\n"
    return [{"file": odoo_conf.ODOO_CONF_PATH, "content": text + extra}]


def catcher(team: str = "1") -> Any:
    return container(naming.team_mail_catcher_container_name(team), team=team, role="mail-catcher")


def test_the_pack_has_it_mandatory() -> None:
    (rule,) = [p for p in policy.POLICIES if p.name == "mail-caught"]
    assert rule.enforcement_level == policy.MANDATORY


def test_caught_mail_passes() -> None:
    staging = odoo("1", "staging", uploads=conf())
    prod = odoo("1", "main", uploads=conf("", catcher="smtp.example.com"))
    assert run_stack("mail-caught", [catcher(), staging, prod], CONFIG) == []


def test_a_non_production_environment_with_its_own_smtp_server_is_caught() -> None:
    staging = odoo(
        "1",
        "staging",
        uploads=[{"file": odoo_conf.ODOO_CONF_PATH, "content": "[options]\nsmtp_server = smtp.gmail.com\n"}],
    )
    (found,) = run_stack("mail-caught", [catcher(), staging], CONFIG)
    assert found == (
        f"non-production Odoo {naming.env_container_name('1', 'staging')} has smtp_server = smtp.gmail.com, "
        f"not its team's mail catcher {CATCHER}: its mail must be caught"
    )


CAUGHT = f"smtp_server = {CATCHER}\nsmtp_port = 1025\nsmtp_ssl = False\n"


@pytest.mark.parametrize(
    "options",
    [
        CAUGHT + "SMTP_USER = me@example.com\n",  # Odoo's parser lower-cases keys
        CAUGHT + "smtp_password: hunter2\n",  # `:` as well as `=`
        CAUGHT + "  Smtp_Ssl_Certificate_Filename = /x.pem\n",
        CAUGHT.replace("smtp_ssl = False", "smtp_ssl = True"),
        CAUGHT.replace("smtp_port = 1025", "smtp_port = 587"),
        CAUGHT.replace(f"smtp_server = {CATCHER}", "Smtp_Server = smtp.example.com"),
    ],
)
def test_every_spelling_odoo_reads_is_caught(options: str) -> None:
    staging = odoo("1", "staging", uploads=[{"file": odoo_conf.ODOO_CONF_PATH, "content": "[options]\n" + options}])
    found = run_stack("mail-caught", [catcher(), staging], CONFIG)
    assert len(found) == 1 and "its mail must be caught" in found[0], found


def test_a_server_in_the_default_section_is_caught() -> None:
    text = "[DEFAULT]\nsmtp_server = smtp.example.com\n[options]\ndb_name = x\n"
    staging = odoo("1", "staging", uploads=[{"file": odoo_conf.ODOO_CONF_PATH, "content": text}])
    assert run_stack("mail-caught", [catcher(), staging], CONFIG)


@pytest.mark.parametrize("flag", ["--smtp=smtp.example.com", "--smtp-user=me", "--smtp-pass=x", "--smtp-port"])
def test_a_command_line_mail_server_is_caught(flag: str) -> None:
    staging = odoo("1", "staging", uploads=conf(), command=["--config", odoo_conf.ODOO_CONF_PATH, flag])
    (found,) = run_stack("mail-caught", [catcher(), staging], CONFIG)
    assert "on its command line" in found and flag.split("=")[0] in found


def test_another_teams_catcher_does_not_count() -> None:
    staging = odoo("1", "staging", uploads=conf(catcher=naming.team_mail_catcher_container_name("2")))
    found = run_stack("mail-caught", [catcher("1"), catcher("2"), staging], CONFIG)
    assert found and "not its team's mail catcher" in found[0]
    assert "has no mail catcher in its team" in run_stack("mail-caught", [odoo("1", "x", uploads=conf())], CONFIG)[0]


def test_production_is_left_alone() -> None:
    prod = odoo("1", "main", uploads=conf("smtp_user = me\nsmtp_password = p\n", catcher="smtp.example.com"))
    assert run_stack("mail-caught", [prod], CONFIG) == []


def test_without_config_the_team_auth_tells_non_production() -> None:
    auth = [
        {"label": "traefik.http.routers.r-http.middlewares", "value": f"{naming.team_auth_middleware_name('1')}@docker"}
    ]
    bad = [{"file": odoo_conf.ODOO_CONF_PATH, "content": "[options]\nsmtp_server = smtp.example.com\n"}]
    behind = odoo("1", "staging", uploads=bad)
    behind.props["labels"] = [*behind.props["labels"], *auth]
    open_ = odoo("1", "main", uploads=bad)
    found = run_stack("mail-caught", [catcher(), behind, open_], {})
    assert len(found) == 1 and naming.env_container_name("1", "staging") in found[0]
