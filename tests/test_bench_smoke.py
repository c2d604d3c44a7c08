"""The benchmark runs end to end on its tiny scenario and reports every column.

No timing assertion: the numbers depend on the machine; `make bench` is where they are read.
"""

from __future__ import annotations

from pathlib import Path

from bench import compare, floor, scenario
from bench.scenario import Scenario
from oduflow_iac.config import load_config
from oduflow_iac.offline.plan import plan


def test_scenario_is_a_valid_config(tmp_path: Path) -> None:
    sc = Scenario(3, 12)
    config = load_config(scenario.write(sc, tmp_path))
    assert len(config.teams) == 3
    envs = [env for _, team in config.teams for env in team.environments]
    assert len(envs) == sc.total_environments
    assert {e.type for e in envs} == {"development", "staging", "production"}
    assert any(e.port is not None for e in envs)
    assert any(e.template is None for e in envs)
    assert any(e.addons for e in envs)
    assert scenario.render(sc) == scenario.render(Scenario(3, 12))  # deterministic


def test_floor_registers_what_the_plan_registers(tmp_path: Path) -> None:
    result = plan(scenario.write(Scenario(2, 3), tmp_path), "local", compare.ROOT)
    spec = floor.spec_from_run(result.run)
    assert len(spec) == sum(1 for r in result.run.resources if r.custom)
    for typed in (True, False):
        run = floor.run_floor(spec, typed)
        assert sorted(r.type for r in run.resources) == sorted(r.type for r in spec)
        assert floor.mismatches(spec, run) == []


def test_quick_comparison_reports_every_column(tmp_path: Path) -> None:
    rows = compare.run(compare.QUICK, workdir=tmp_path)
    assert [r.scenario.name for r in rows] == ["2x3"]
    row = rows[0]
    assert row.resources > 0 and row.components > 0
    assert row.plan.seconds > 0 and row.floor.seconds > 0
    assert row.plan.peak_mb > 0 and row.floor.peak_mb > 0

    table = compare.render_table(rows).splitlines()
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header == list(compare.COLUMNS)
    cells = [cell.strip() for cell in table[2].strip("|").split("|")]
    assert len(cells) == len(compare.COLUMNS)
    assert cells[0] == "2x3"
    assert cells[1] == str(row.resources)

    text = compare.report(rows)
    assert "ms/environment" in text
