"""odoo.conf: the allow-list, rendering and parsing with Odoo's own semantics, and the hardening
policy reading the file the way Odoo does (odoo/odoo, odoo/tools/config.py, `configmanager.load`:
`RawConfigParser()` defaults, so keys are case-insensitive and a duplicate stops Odoo)."""

from __future__ import annotations

import configparser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oduflow_iac import naming, odoo_conf, policy
from oduflow_iac.odoo_conf import (
    ENVIRONMENT_OPTIONS,
    PLATFORM_OPTIONS,
    OdooConfError,
    option_problem,
    parse_odoo_conf,
    render_odoo_conf,
)
from tests.test_policy import SECRET_CONF, hardened, run_resource


def render(**options: Any) -> str:
    return render_odoo_conf(
        database="oduflow_1_main", admin_passwd="s3cret-master", workers=2, memory_mb=2048,
        addons_paths=["/mnt/extra-addons/acme"], options=options,
    )  # fmt: skip


def odoo_reads(text: str) -> dict[str, str]:
    """What Odoo's `configmanager.load` reads: a default RawConfigParser, section `options`."""
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return dict(parser.items("options"))


@pytest.mark.parametrize("key", sorted(PLATFORM_OPTIONS))
def test_every_platform_option_is_refused_with_its_reason(key: str) -> None:
    for spelling in (key, key.upper()):
        problem = option_problem(spelling, "x")
        assert problem is not None and "is set by the platform" in problem and "\n" not in problem
        with pytest.raises(ValueError, match="is set by the platform"):
            render(**{spelling: "x"})


@pytest.mark.parametrize("key", ["db_anything", "DB_HOST", "unknown_option", "Log_Level", "smtp_password"])
def test_anything_else_is_refused(key: str) -> None:
    assert option_problem(key, "x") is not None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("limit_time_cpu", 60), ("limit_time_real", 120), ("limit_time_real_cron", -1), ("limit_request", 8192),
        ("max_cron_threads", 2), ("log_level", "debug"), ("log_handler", "odoo.orm:DEBUG,werkzeug:CRITICAL"),
        ("without_demo", False), ("without_demo", "all"), ("without_demo", "sale,stock"), ("transient_age_limit", 1.5),
        ("email_from", "odoo@acme.example"), ("smtp_server", "smtp.acme.example"), ("smtp_port", 587),
        ("smtp_ssl", True),
    ],
)  # fmt: skip
def test_allowed_options_render_and_read_back_as_odoo_reads_them(key: str, value: Any) -> None:
    assert option_problem(key, value) is None
    text = render(**{key: value})
    expected = str(value) if not isinstance(value, bool) else ("True" if value else "False")
    assert parse_odoo_conf(text)[key] == odoo_reads(text)[key] == expected


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("limit_time_cpu", "60", "must be an integer"),
        ("limit_time_cpu", True, "must be an integer"),
        ("limit_time_cpu", 0, "must be an integer from 1"),
        ("smtp_port", 70000, "must be an integer from 1 to 65535"),
        ("log_level", "loud", "must be one of"),
        ("log_handler", "odoo:DEBUG\nlist_db = True", "control character U+000A"),
        ("email_from", "a@b.example\rdb_host = x", "control character U+000D"),
        ("email_from", " a@b.example", "surrounding whitespace"),
        ("smtp_server", "x.example\x85", "control character U+0085"),
        ("smtp_server", "-oProxy", "must be a hostname"),
        ("transient_age_limit", float("inf"), "must be a number"),
        ("smtp_ssl", "yes", "must be true or false"),
    ],
)
def test_bad_values_are_refused_in_one_line(key: str, value: Any, problem: str) -> None:
    found = option_problem(key, value)
    assert found is not None and problem in found and "\n" not in found and "\r" not in found


@given(
    st.dictionaries(
        st.sampled_from(sorted(ENVIRONMENT_OPTIONS)),
        st.one_of(st.integers(-5, 100000), st.booleans(), st.text(max_size=30), st.floats(allow_nan=False)),
        max_size=6,
    )
)
@settings(max_examples=200, deadline=None)
def test_render_and_parse_agree_with_odoo_for_any_accepted_options(options: dict[str, Any]) -> None:
    accepted = {k: v for k, v in options.items() if option_problem(k, v) is None}
    text = render(**accepted)
    assert parse_odoo_conf(text) == odoo_reads(text)
    lines = text.splitlines()
    assert len(lines) == len(set(lines)) == 1 + len(odoo_reads(text))  # one line per option, no injection
    for key, value in accepted.items():
        assert odoo_reads(text)[key] == str(value)  # booleans as Odoo writes them: True / False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[options]\nlist_db = False\nLIST_DB = True\n", "option list_db appears twice in section [options]"),
        ("[options]\nlist_db = False\n[options]\nx = 1\n", "section [options] appears twice"),
        ("list_db = True\n[options]\n", "line 1 is outside any section"),
        ("[options]\nadmin_passwd\n", "line 2 is not `key = value`"),
    ],
)
def test_parse_refuses_what_odoo_refuses(text: str, message: str) -> None:
    with pytest.raises(configparser.Error):
        odoo_reads(text)
    with pytest.raises(OdooConfError) as err:
        parse_odoo_conf(text)
    assert str(err.value) == message


def test_parse_never_quotes_a_value() -> None:
    with pytest.raises(OdooConfError) as err:
        parse_odoo_conf("[options]\nadmin_passwd = hunter2\nadmin_passwd = hunter3\n")
    assert "hunter" not in str(err.value)


# --------------------------------------------------------------------------------------------
# The hardening policy reads the file as Odoo does


NAME = naming.env_container_name("1", "main")


def violations(content: str) -> list[str]:
    return run_resource("odoo-hardening", policy.CONTAINER, hardened(content), secret_paths=SECRET_CONF)


def test_rendered_conf_passes() -> None:
    assert violations(render(log_level="warn")) == []


def test_upper_case_list_db_is_caught() -> None:
    content = render().replace("list_db = False", "LIST_DB = True")
    assert violations(content) == [
        f"Odoo container {NAME} has list_db = True; the database manager must be off (False)"
    ]


def test_a_duplicated_key_is_caught() -> None:
    content = render() + "List_Db = True\n"
    assert violations(content) == [
        f"Odoo container {NAME} has an odoo.conf Odoo refuses to read: "
        "option list_db appears twice in section [options]"
    ]


def test_colon_delimiter_and_default_section_are_read_as_odoo_reads_them() -> None:
    content = "[DEFAULT]\nlist_db: True\n" + render().replace("list_db = False\n", "")
    assert f"Odoo container {NAME} has list_db = True; the database manager must be off (False)" in violations(content)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("http_interface = 0.0.0.0", "sets odoo.conf option http_interface, which no environment may set"),
        ("server_wide_modules = base,web,x", "sets odoo.conf option server_wide_modules"),
        ("db_host = attacker.example", "sets odoo.conf option db_host"),
        ("some_option = 1", "sets odoo.conf option some_option, which no environment may set: it is not in the"),
    ],
)
def test_options_outside_the_allow_list_are_caught(line: str, problem: str) -> None:
    found = violations(render() + line + "\n")
    assert len(found) == 1 and found[0].startswith(f"Odoo container {NAME} {problem}"), found


def test_data_dir_and_addons_path_stay_where_the_platform_put_them() -> None:
    content = render().replace(f"data_dir = {odoo_conf.FILESTORE_PATH}", "data_dir = /tmp")
    content = content.replace("addons_path = /mnt/extra-addons/acme", "addons_path = /mnt/extra-addons/acme,/etc/x")
    assert violations(content) == [
        f"Odoo container {NAME} has data_dir = /tmp; its filestore is /var/lib/odoo",
        f"Odoo container {NAME} has addons_path entry /etc/x outside /mnt/extra-addons",
    ]


def test_docs_list_every_option_with_its_type_and_reason() -> None:
    from tests.conftest import ROOT

    text = (ROOT / "docs" / "policies.md").read_text(encoding="utf-8")
    for key, spec in ENVIRONMENT_OPTIONS.items():
        assert f"| `{key}` | {spec.type} | {spec.reason} |" in text, key
    for key, reason in PLATFORM_OPTIONS.items():
        assert f"| `{key}` | {reason} |" in text, key
