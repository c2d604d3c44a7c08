"""A team's own `up` against the whole fleet's: the program run (under the mocks, no policies) of
one team stack and of the all-in-one stack of the same config, N servers x T teams x E environments.

    python -m bench.team_scope                 # 3 servers, 20 teams x 50 environments
    python -m bench.team_scope --scenario 3s-20x50 --repeat 5

What a team-scoped `up` costs its program is what it declares: its own TeamStacks and the stack
references of the servers it sits on. Wall time is the median of `--repeat` runs in this process,
after a warm-up; numbers, never assertions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench import scenario as scenarios
from bench.compare import _scenario
from bench.scenario import Scenario


@dataclass(frozen=True)
class ScopeRow:
    layout: str
    resources: int
    seconds: float


def program_run(config_path: Path, layout: str, team: str | None) -> tuple[int, float]:
    """(resources registered, seconds) of one program run under the mocks."""
    from oduflow_iac.config import load_config
    from oduflow_iac.offline.harness import run_offline
    from oduflow_iac.offline.plan import secret_config
    from oduflow_iac.program import ProgramSettings, build

    config = load_config(config_path)
    settings = ProgramSettings(
        docker_host=config.platform.docker_host, layout=layout, team=team, shared_stack="org/oduflow/shared"
    )
    values, keys, _missing = secret_config(config, None, [team] if team else None)
    start = time.perf_counter()
    run = run_offline(partial(build, config, settings), stack=f"team-{team}" if team else "local", config=values,
                      secret_keys=keys)  # fmt: skip
    return len(run.resources), time.perf_counter() - start


def measure(scenario: Scenario, repeats: int = 3) -> list[ScopeRow]:
    with tempfile.TemporaryDirectory(prefix="oduflow-bench-scope-") as folder:
        path = scenarios.write(scenario, folder)
        program_run(scenarios.write(Scenario(1, 1), Path(folder) / "warm"), "all", None)  # imports, caches
        rows = []
        for layout, team in (("all", None), ("team", "1")):
            runs = [program_run(path, layout, team) for _ in range(max(1, repeats))]
            rows.append(ScopeRow(layout if team is None else f"team {team}", runs[0][0],
                                 statistics.median(s for _, s in runs)))  # fmt: skip
        return rows


def report(scenario: Scenario, rows: list[ScopeRow]) -> str:
    fleet = rows[0]
    lines = [
        f"scenario {scenario.name}: program run under the mocks (median)",
        "| stack | resources | time (s) | share of the fleet's time |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row.layout} | {row.resources} | {row.seconds:.2f} | {row.seconds / fleet.seconds:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.team_scope", description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", type=_scenario, default=Scenario(20, 50, servers=3))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(report(args.scenario, measure(args.scenario, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
