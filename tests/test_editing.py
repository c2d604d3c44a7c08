"""oduflow.toml edits: only the edited lines change; a refused edit leaves the file untouched."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oduflow_iac import ports
from oduflow_iac.config import branch_problem, load_config
from oduflow_iac.editing import ConfigEdit, _key_path, _scan, _split_lines
from oduflow_iac.errors import ConfigError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "oduflow.toml"

COMMENTED = textwrap.dedent(
    """\
    # Top comment: kept.
    [team.1]
    hostname = "team-a.example.com"   # trailing comment
    auth_token = "token-a"
    port_range = [50000, 50050]

    [team.1.templates.default]
    odoo_image = "odoo:17.0"
    modules = [
      "base",   # a comment inside an array
      "web",
    ]

    # The production environment.
    [[team.1.environments]]
    branch = "main"
    type   = "production"       # aligned, on purpose
    template = "default"
    # a trailing comment of main

    [[team.1.environments]]
    branch = 'feature/login'
    template = "default"
    odoo_options = { "log_level" = "debug" }

    # Team B below.
    [team.2]
    hostname = "team-b.example.com"
    auth_token = "token-b"
    port_range = [50050, 50100]
    """
)


def only_inserted(before: str, after: str, block: str) -> bool:
    """`after` is `before` with `block` inserted once, every other byte as it was."""
    return after.count(block) == before.count(block) + 1 and any(
        after == before[:i] + block + before[i:] for i in range(len(before) + 1) if after.startswith(before[:i])
    )


@pytest.fixture
def example(tmp_path: Path) -> Path:
    path = tmp_path / "oduflow.toml"
    shutil.copy(EXAMPLE, path)
    return path


@pytest.fixture
def commented(tmp_path: Path) -> Path:
    path = tmp_path / "oduflow.toml"
    path.write_text(COMMENTED, encoding="utf-8")
    return path


def edit_and_save(path: Path, action: str, *args: object) -> str:
    edit = ConfigEdit.open(path)
    getattr(edit, action)(*args)
    edit.save(path)
    return path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Byte-for-byte outside the edit


def test_add_environment_inserts_one_block_after_the_teams_last_environment(example: Path) -> None:
    before = example.read_text()
    values = {"branch": "feature/x", "type": "development", "template": "default"}
    after = edit_and_save(example, "add_environment", "1", values)
    block = '\n[[team.1.environments]]\nbranch = "feature/x"\ntype = "development"\ntemplate = "default"\n'
    assert only_inserted(before, after, block)
    # it lands after feature/invoicing and before [team.2]
    assert after.index("feature/invoicing") < after.index("feature/x") < after.index("[team.2]")


def test_add_environment_to_the_last_team_at_the_end_of_the_file(example: Path) -> None:
    before = example.read_text()
    after = edit_and_save(example, "add_environment", "2", {"branch": "feature/y", "odoo_image": "odoo:18.0"})
    assert after == before + '\n[[team.2.environments]]\nbranch = "feature/y"\nodoo_image = "odoo:18.0"\n'


def test_add_environment_to_a_team_without_environments(commented: Path) -> None:
    before = commented.read_text()
    after = edit_and_save(commented, "add_environment", "2", {"branch": "main", "odoo_image": "odoo:17.0"})
    assert after == before + '\n[[team.2.environments]]\nbranch = "main"\nodoo_image = "odoo:17.0"\n'


def test_comments_before_the_next_team_stay_with_it(commented: Path) -> None:
    after = edit_and_save(commented, "add_environment", "1", {"branch": "b", "template": "default"})
    assert '[[team.1.environments]]\nbranch = "b"\ntemplate = "default"\n\n# Team B below.\n[team.2]' in after
    assert only_inserted(COMMENTED, after, '\n[[team.1.environments]]\nbranch = "b"\ntemplate = "default"\n')


def test_disable_adds_one_line_after_the_environments_last_key(commented: Path) -> None:
    after = edit_and_save(commented, "set_environment_key", "1", "main", "disabled", True)
    assert only_inserted(COMMENTED, after, "disabled = true\n")
    assert 'template = "default"\ndisabled = true\n# a trailing comment of main' in after


def test_enable_restores_the_original_bytes(commented: Path) -> None:
    edit_and_save(commented, "set_environment_key", "1", "main", "disabled", True)
    after = edit_and_save(commented, "set_environment_key", "1", "main", "disabled", None)
    assert after == COMMENTED


def test_an_existing_boolean_is_rewritten_in_place(commented: Path) -> None:
    text = COMMENTED.replace('type   = "production"', 'type   = "production"\nprotect = true   # keep it')
    commented.write_text(text)
    after = edit_and_save(commented, "set_environment_key", "1", "main", "protect", False)
    assert after == text.replace("protect = true   # keep it", "protect = false   # keep it")


def test_remove_environment_takes_its_lines_and_its_header_comment(commented: Path) -> None:
    after = edit_and_save(commented, "remove_environment", "1", "main")
    block = (
        '# The production environment.\n[[team.1.environments]]\nbranch = "main"\n'
        'type   = "production"       # aligned, on purpose\ntemplate = "default"\n'
    )
    assert only_inserted(after, COMMENTED, block)
    assert "# a trailing comment of main" in after  # after the last key: not part of the table's lines


def test_remove_the_last_environment_before_another_team(commented: Path) -> None:
    after = edit_and_save(commented, "remove_environment", "1", "feature/login")
    assert "feature/login" not in after
    assert after.endswith(COMMENTED[COMMENTED.index("# Team B below.") :])
    assert "# a trailing comment of main\n\n# Team B below." in after


def test_add_then_remove_is_the_identity(example: Path) -> None:
    before = example.read_bytes()
    edit = ConfigEdit.open(example)
    edit.add_environment("1", {"branch": "tmp", "template": "default"})
    edit.remove_environment("1", "tmp")
    assert edit.text.encode() == before


def test_crlf_files_stay_crlf(tmp_path: Path) -> None:
    path = tmp_path / "oduflow.toml"
    path.write_bytes(COMMENTED.replace("\n", "\r\n").encode())
    edit = ConfigEdit.open(path)
    edit.add_environment("1", {"branch": "crlf", "template": "default"})
    edit.set_environment_key("1", "main", "disabled", True)
    edit.save(path)
    raw = path.read_bytes().decode()
    assert "\n" not in raw.replace("\r\n", "")
    assert 'branch = "crlf"\r\n' in raw and "disabled = true\r\n" in raw


def test_template_add_and_remove(commented: Path) -> None:
    after = edit_and_save(commented, "add_template", "1", "v18.0", {"odoo_image": "odoo:18.0", "modules": ["base"]})
    block = '\n[team.1.templates."v18.0"]\nodoo_image = "odoo:18.0"\nmodules = ["base"]\n'
    assert only_inserted(COMMENTED, after, block)
    assert after.index('"v18.0"') < after.index("# The production environment.")
    after = edit_and_save(commented, "remove_template", "1", "v18.0")
    assert after == COMMENTED


def test_template_for_a_team_without_templates_goes_before_its_environments(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        [team.1]
        hostname = "a.example.com"
        auth_token = "t"
        port_range = [50000, 50010]

        [team.1.quota]
        cpu = 2

        # Environments
        [[team.1.environments]]
        branch = "main"
        odoo_image = "odoo:17.0"
        """
    )
    path = tmp_path / "oduflow.toml"
    path.write_text(text)
    after = edit_and_save(path, "add_template", "1", "v17", {"odoo_image": "odoo:17.0"})
    assert only_inserted(text, after, '\n[team.1.templates.v17]\nodoo_image = "odoo:17.0"\n')
    assert after.index("cpu = 2") < after.index("[team.1.templates.v17]") < after.index("# Environments")


def test_inline_environments_are_edited_by_tomlkit_keeping_comments(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        [team.1]
        hostname = "a.example.com"  # host
        auth_token = "t"
        port_range = [50000, 50010]
        environments = [
          { branch = "main", odoo_image = "odoo:17.0" },  # the main one
        ]
        """
    )
    path = tmp_path / "oduflow.toml"
    path.write_text(text)
    after = edit_and_save(path, "set_environment_key", "1", "main", "disabled", True)
    assert "# the main one" in after and "# host" in after
    assert load_config(path).team["1"].environments[0].disabled
    after = edit_and_save(path, "add_environment", "1", {"branch": "dev", "odoo_image": "odoo:17.0"})
    assert [e.branch for e in load_config(path).team["1"].environments] == ["main", "dev"]
    assert after.startswith('[team.1]\nhostname = "a.example.com"  # host\n')


@given(
    branch=st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40
    ).filter(lambda b: branch_problem(b) is None)
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_branch_name_round_trips(tmp_path: Path, branch: str) -> None:
    edit = ConfigEdit(COMMENTED, "oduflow.toml")
    edit.add_environment("2", {"branch": branch, "odoo_image": "odoo:17.0"})
    edit.verify()
    assert tomllib.loads(edit.text)["team"]["2"]["environments"] == [{"branch": branch, "odoo_image": "odoo:17.0"}]
    edit.remove_environment("2", branch)
    assert edit.text == COMMENTED


# --------------------------------------------------------------------------------------------
# Refusals leave the file untouched


def unchanged(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), os.stat(path).st_mtime_ns


def test_an_invalid_result_is_refused_and_the_file_is_untouched(example: Path) -> None:
    before = unchanged(example)
    edit = ConfigEdit.open(example)
    edit.add_environment("1", {"branch": "x", "template": "missing"})
    with pytest.raises(ConfigError) as info:
        edit.save(example)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{example}: edit refused: the result would not be valid; the file is unchanged"
    assert f"{example}: team.1.environments[4].template: template 'missing' is not defined" in lines[1]
    assert unchanged(example) == before
    assert not ports.lock_path_for(example).exists()


def test_an_exhausted_port_range_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "oduflow.toml"
    path.write_text(
        '[team.1]\nhostname = "a"\nauth_token = "t"\nport_range = [50000, 50001]\n\n'
        '[[team.1.environments]]\nbranch = "main"\nodoo_image = "odoo:17.0"\n'
    )
    before = unchanged(path)
    edit = ConfigEdit.open(path)
    edit.add_environment("1", {"branch": "dev", "odoo_image": "odoo:17.0"})
    with pytest.raises(ConfigError, match="edit refused"):
        edit.save(path)
    assert unchanged(path) == before


def test_unknown_team_branch_and_template(example: Path) -> None:
    edit = ConfigEdit.open(example)
    with pytest.raises(UsageError, match=r"team '9' is not defined \(teams: 1, 2\)"):
        edit.add_environment("9", {"branch": "x"})
    with pytest.raises(UsageError, match=r"team 1 has no environment for branch 'nope' \(branches: main, "):
        edit.remove_environment("1", "nope")
    with pytest.raises(UsageError, match=r"team 2 has no template 'nope' \(templates: v18\)"):
        edit.remove_template("2", "nope")
    with pytest.raises(UsageError, match="already has a template 'v18'"):
        edit.add_template("2", "v18", {"odoo_image": "odoo:18.0"})
    assert not edit.changed


def test_a_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "oduflow.toml"
    path.write_text("[team.1\n")
    with pytest.raises(ConfigError, match="TOML syntax error"):
        ConfigEdit.open(path)


def test_save_refreshes_the_port_lock(example: Path) -> None:
    edit = ConfigEdit.open(example)
    edit.add_environment("1", {"branch": "feature/x", "template": "default"})
    config = edit.save(example)
    lock = ports.read_lock(ports.lock_path_for(example))
    assert lock["1"]["feature/x"] == config.environment_port("1", "feature/x")
    edit = ConfigEdit.open(example)
    edit.remove_environment("1", "feature/x")
    edit.save(example)
    assert "feature/x" not in ports.read_lock(ports.lock_path_for(example))["1"]


def test_an_edit_that_would_change_other_data_is_refused() -> None:
    edit = ConfigEdit(COMMENTED, "oduflow.toml")
    edit.text = edit.text.replace("token-b", "token-c")  # as if the editor had touched another line
    with pytest.raises(ConfigError, match="cannot be edited without changing other entries"):
        edit.verify()


# --------------------------------------------------------------------------------------------
# The line scanner


def test_scanner_sees_headers_only_at_statement_starts() -> None:
    text = textwrap.dedent(
        '''\
        a = """
        [not.a.header]
        """
        b = [
          [1, 2],
        ]
        "quoted.key" = 'x # not a comment'
        [ "team" . "1" ]
        c.d = 1
        [[team."1".environments]]  # comment
        branch = "main"
        '''
    )
    sections = _scan(_split_lines(text))
    assert [(s.path, s.is_array) for s in sections] == [
        ((), False),
        (("team", "1"), False),
        (("team", "1", "environments"), True),
    ]
    root = sections[0]
    assert [(st.key, st.start, st.end) for st in root.statements] == [
        (("a",), 0, 3),
        (("b",), 3, 6),
        (("quoted.key",), 6, 7),
    ]
    assert sections[1].statements[0].key == ("c", "d")


def test_key_paths() -> None:
    assert _key_path(' team . "1.5" ') == ("team", "1.5")
    assert _key_path("'a b'.c") == ("a b", "c")
