"""Stable ports: an environment's port never moves because others were added, removed or reordered."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from oduflow_iac import ports
from oduflow_iac.config import load_config
from oduflow_iac.errors import ConfigError
from tests.conftest import SEED

RANGE = (50000, 50040)


def test_lowest_free_port_in_file_order() -> None:
    assert ports.assign_team_ports(RANGE, ["a", "b", "c"], {}, {}) == {"a": 50000, "b": 50001, "c": 50002}


def test_pins_win_over_the_lock() -> None:
    got = ports.assign_team_ports(RANGE, ["a", "b"], {"b": 50000}, {"a": 50000})
    assert got == {"b": 50000, "a": 50001}


def test_exhausted_range() -> None:
    assert ports.assign_team_ports((50000, 50002), ["a", "b", "c"], {}, {}) is None


names = st.lists(st.text(alphabet="abcdefgh/", min_size=1, max_size=6), min_size=1, max_size=25, unique=True)


@settings(max_examples=300)
@given(names, st.data())
def test_edits_never_move_another_environment(before: list[str], data: st.DataObject) -> None:
    lock = ports.assign_team_ports(RANGE, before, {}, {})
    assert lock is not None
    # Remove some, add some new ones anywhere, and shuffle.
    kept = data.draw(st.lists(st.sampled_from(before), unique=True))
    added = data.draw(st.lists(st.text(alphabet="xyz", min_size=1, max_size=4), unique=True, max_size=10))
    added = [a for a in added if a not in before]
    after = data.draw(st.permutations(kept + added))
    new = ports.assign_team_ports(RANGE, list(after), {}, lock)
    assert new is not None
    for branch in kept:
        assert new[branch] == lock[branch]
    assert len(set(new.values())) == len(new)
    assert all(RANGE[0] <= p < RANGE[1] for p in new.values())


def test_lock_file_round_trip_keeps_ports_through_a_reorder(write_config: Callable[[str], Path]) -> None:
    envs = "".join(f'\n[[team.1.environments]]\nbranch = "{b}"\nodoo_image = "odoo:17.0"\n' for b in ("a", "b", "c"))
    path = write_config(SEED + envs)
    config = load_config(path)
    assert ports.write_lock(ports.lock_path_for(path), ports.lock_from(config)) is True
    assert ports.write_lock(ports.lock_path_for(path), ports.lock_from(config)) is False
    # Drop "a" and put a new branch first: b and c keep their ports, the newcomer takes a's.
    envs = "".join(f'\n[[team.1.environments]]\nbranch = "{b}"\nodoo_image = "odoo:17.0"\n' for b in ("new", "c", "b"))
    path.write_text(SEED + envs)
    again = load_config(path)
    assert again.ports["1"] == {"b": 50001, "c": 50002, "new": 50000}


def test_damaged_lock_is_a_config_error(write_config: Callable[[str], Path]) -> None:
    path = write_config(SEED)
    ports.lock_path_for(path).write_text('{"teams": {"1": {"main": "x"}}}')
    try:
        load_config(path)
    except ConfigError as exc:
        assert "oduflow.ports.json: teams.1: must map branch names to port numbers" in str(exc)
    else:
        raise AssertionError("a damaged lock must be refused")
