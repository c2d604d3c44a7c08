"""An oduflow.toml as an Oduflow server runs it loads unchanged (tests/data/oduflow-server.toml):
server sections ignored, Oduflow's defaults and "empty means unset" applied, what cannot be
honoured said in one line each, never a secret value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from oduflow_iac.cli import main
from oduflow_iac.config import load_config
from oduflow_iac.config.oduflow_compat import UNLIMITED_SLOTS, adapt
from tests.conftest import ROOT, SEED

SERVER_FILE = ROOT / "tests" / "data" / "oduflow-server.toml"
SECRETS = ("console-password-made-up", "AKIAMADEUPMADEUP0000", "made-up-secret-key", "sk-made-up", "made-up-registry")


def test_a_real_oduflow_file_loads(tmp_path: Path) -> None:
    copy = tmp_path / "oduflow.toml"
    copy.write_text(SERVER_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    config = load_config(copy)
    one, two = config.team["1"], config.team["2"]
    assert one.hostname == "dev.acme-odoo.example"  # Oduflow drops a scheme
    assert one.environment_slots == UNLIMITED_SLOTS  # 0: unlimited
    assert one.service_slots is None and one.db_quota_gb is None and one.public_scheme is None
    assert one.production_token is None
    assert two.port_range == (50000, 50100)  # Oduflow's default
    assert two.hostname == "oduflow.clients.acme-odoo.example"  # Oduflow's default from base_domain
    assert two.auth_token is None  # "": Oduflow generates one
    assert config.platform.acme_email == "ops@acme-odoo.example"  # mapped from [routing]
    assert config.backup is None  # Oduflow's production backups are not ours
    keys = [n.key for n in config.notices]
    assert keys == ["backup", "team.1.agent_enabled", "team.1.image_registry"]
    assert not [n for n in config.notices for s in SECRETS if s in str(n)]


def test_validate_of_a_real_oduflow_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--config", str(SERVER_FILE)]) == 0
    out, err = capsys.readouterr()
    assert "valid: 2 teams" in out
    lines = err.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"warning: {SERVER_FILE}: ") for line in lines)
    assert "unknown key" not in err and not [s for s in SECRETS if s in err + out]


def test_own_backup_keys_are_kept_and_oduflows_ignored(write_config: Callable[..., Path]) -> None:
    text = SEED + '\n[backup]\nbucket_prefix = "acme"\nregion = "eu-west-1"\naccess_key = "AKIAXXXXXXXX"\n'
    config = load_config(write_config(text))
    assert config.backup is not None and config.backup.bucket_prefix == "acme"
    (notice,) = config.notices
    assert notice.key == "backup" and "access_key" in notice.message and "AKIAXXXXXXXX" not in notice.message


def test_missing_ui_password_is_said(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(SEED.replace('ui_password = "pass-b"\n', "")))
    (notice,) = config.notices
    assert notice.key == "team.2.ui_password" and "no basic auth" in notice.message


def test_adapt_leaves_the_document_alone() -> None:
    raw = {"team": {"1": {"hostname": "a.example", "auth_token": "", "agent_enabled": True}}, "server": {"port": 1}}
    owned, notices = adapt(raw, "f.toml")
    assert raw["team"]["1"]["auth_token"] == "" and "server" in raw  # not modified
    assert "server" not in owned and "auth_token" not in owned["team"]["1"]
    assert "agent_enabled" not in owned["team"]["1"]
    assert [n.key for n in notices] == ["team.1.agent_enabled", "team.1.ui_password"]
