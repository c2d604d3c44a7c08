"""Offline plan vs SDK floor: wall time and peak memory, N teams x M environments.

    python -m bench.compare            # 5x10, 20x50 and 40x50
    python -m bench.compare --quick    # 2x3 only (seconds)

For every scenario a first process plans it once to learn its resources (the floor's input).
Then every measurement runs in a process of its own: the plan (load the file, run the program
under mocks, evaluate the policies: what `oduflow-iac plan --format json` does) or the floor
(`bench.floor`), once for wall time and once, separately, for peak memory (tracemalloc slows
what it traces, so time is never measured under it). Each process imports everything and runs a
one-environment warm-up first, so imports and one-time caches are in neither number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import scenario as scenarios
from bench.scenario import Scenario

if TYPE_CHECKING:
    from oduflow_iac.offline.plan import PlanResult

ROOT = Path(__file__).resolve().parent.parent
FULL = (Scenario(5, 10), Scenario(20, 50), Scenario(20, 50, servers=3), Scenario(40, 50))
QUICK = (Scenario(2, 3),)
WARM_UP = Scenario(1, 1)
COLUMNS = (
    "scenario",
    "resources",
    "plan time (s)",
    "floor time (s)",
    "time ratio",
    "plan peak (MB)",
    "floor peak (MB)",
    "memory ratio",
)
TARGET_RATIO = 1.3


@dataclass(frozen=True)
class Measurement:
    seconds: float  # wall time
    peak_mb: float
    cpu_seconds: float = 0.0  # CPU time of the process (all threads): steadier on a busy machine


@dataclass(frozen=True)
class Row:
    scenario: Scenario
    resources: int  # custom resources, registered by both
    components: int  # component resources, registered by the plan only
    input_bytes: int
    plan: Measurement
    floor: Measurement

    @property
    def time_ratio(self) -> float:
        return self.plan.seconds / self.floor.seconds if self.floor.seconds else float("inf")

    @property
    def memory_ratio(self) -> float:
        return self.plan.peak_mb / self.floor.peak_mb if self.floor.peak_mb else float("inf")

    @property
    def cpu_ratio(self) -> float:
        return self.plan.cpu_seconds / self.floor.cpu_seconds if self.floor.cpu_seconds else float("inf")

    @property
    def ms_per_environment(self) -> float:
        return 1000 * self.plan.seconds / self.scenario.total_environments

    @property
    def floor_ms_per_environment(self) -> float:
        return 1000 * self.floor.seconds / self.scenario.total_environments


# --------------------------------------------------------------------------------------------
# What runs inside a measurement process


def plan_and_check(config_path: Path) -> PlanResult:
    """The offline plan with its policies and its JSON document, as `oduflow-iac plan --stack local
    --format json` runs it (less writing the document out)."""
    from oduflow_iac.offline.plan import plan, render_json

    result = plan(config_path, "local", ROOT)
    render_json(result)
    return result


def _plan_job(config_path: Path) -> Callable[[], Any]:
    return lambda: plan_and_check(config_path)


def _floor_job(spec_path: Path, typed: bool) -> Callable[[], Any]:
    from bench.floor import load_spec, registrations, run_calls

    calls = registrations(load_spec(spec_path), typed)
    return lambda: run_calls(calls)


def _warm_up(kind: str, spec_path: Path | None, workdir: Path, typed: bool) -> None:
    """Exercise every code path once (imports, lazy modules, caches) before measuring."""
    if kind == "plan":
        plan_and_check(scenarios.write(WARM_UP, workdir))
    else:
        from bench.floor import load_spec, run_floor

        assert spec_path is not None
        one_of_each = {r.type: r for r in reversed(load_spec(spec_path))}
        run_floor(list(one_of_each.values()), typed)


def worker(kind: str, mode: str, config_path: Path, spec_path: Path | None, out: Path, typed: bool = True) -> None:
    """One measurement: `kind` is plan, floor or spec; `mode` is time or memory."""
    if kind == "spec":
        from bench.floor import input_size, save_spec, spec_from_run

        run = plan_and_check(config_path).run
        spec = spec_from_run(run)
        assert spec_path is not None
        save_spec(spec, spec_path)
        components = sum(1 for r in run.resources if not r.custom)
        result: dict[str, Any] = {
            "resources": len(spec),
            "components": components,
            "input_bytes": input_size(spec),
        }
        out.write_text(json.dumps(result), encoding="utf-8")
        return
    with tempfile.TemporaryDirectory(prefix="oduflow-bench-warm-") as workdir:
        _warm_up(kind, spec_path, Path(workdir), typed)
    if kind == "plan":
        job = _plan_job(config_path)
    else:
        assert spec_path is not None
        job = _floor_job(spec_path, typed)
    if mode == "memory":
        tracemalloc.start()
        tracemalloc.reset_peak()
        job()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        result = {"peak_mb": peak / 2**20}
    else:
        start, cpu = time.perf_counter(), time.process_time()
        job()
        result = {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}
    out.write_text(json.dumps(result), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# The parent: one process per measurement


def _run_worker(
    kind: str, mode: str, config: Path, spec: Path | None, workdir: Path, floor: str = "typed"
) -> dict[str, Any]:
    out = workdir / f"result-{kind}-{mode}-{time.monotonic_ns()}.json"
    argv = [
        sys.executable,
        "-m",
        "bench.compare",
        "--worker",
        kind,
        "--mode",
        mode,
        "--config",
        str(config),
        "--out",
        str(out),
        "--floor",
        floor,
    ]
    if spec is not None:
        argv += ["--spec", str(spec)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {kind}/{mode} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


def measure(scenario: Scenario, workdir: Path, repeats: int = 1, floor: str = "typed") -> Row:
    """Plan vs floor for one scenario; time is the median of `repeats` processes."""
    folder = workdir / scenario.name
    config = scenarios.write(scenario, folder)
    spec = folder / "floor-spec.json"
    info = _run_worker("spec", "time", config, spec, folder)

    # Plan and floor alternate, so a change in the machine's load reaches both alike.
    runs: dict[str, list[dict[str, Any]]] = {"plan": [], "floor": []}
    for _ in range(max(1, repeats)):
        for kind in runs:
            runs[kind].append(_run_worker(kind, "time", config, spec, folder, floor))

    def measured(kind: str) -> Measurement:
        peak = float(_run_worker(kind, "memory", config, spec, folder, floor)["peak_mb"])
        return Measurement(
            statistics.median(r["seconds"] for r in runs[kind]),
            peak,
            statistics.median(r.get("cpu_seconds", 0.0) for r in runs[kind]),
        )

    planned, floored = measured("plan"), measured("floor")
    return Row(scenario, info["resources"], info["components"], info["input_bytes"], planned, floored)


def run(
    chosen: Sequence[Scenario],
    workdir: Path | None = None,
    repeats: int = 1,
    progress: Callable[[str], None] | None = None,
    floor: str = "typed",
) -> list[Row]:
    """Measure every scenario. Files go to `workdir` when given (and stay), else to a temporary
    directory removed afterwards."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="oduflow-bench-") as tmp:
            return run(chosen, Path(tmp), repeats, progress, floor)
    rows = []
    for sc in chosen:
        if progress:
            progress(f"measuring {sc.name} ({sc.total_environments} environments) ...")
        rows.append(measure(sc, workdir, repeats, floor))
    return rows


# --------------------------------------------------------------------------------------------
# Report


def table_rows(rows: Sequence[Row]) -> list[list[str]]:
    return [
        [
            r.scenario.name,
            str(r.resources),
            f"{r.plan.seconds:.2f}",
            f"{r.floor.seconds:.2f}",
            f"{r.time_ratio:.2f}",
            f"{r.plan.peak_mb:.1f}",
            f"{r.floor.peak_mb:.1f}",
            f"{r.memory_ratio:.2f}",
        ]
        for r in rows
    ]


def render_table(rows: Sequence[Row]) -> str:
    """A Markdown table (readable as plain text too)."""
    body = table_rows(rows)
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(COLUMNS)]
    right = [i > 0 for i in range(len(COLUMNS))]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right, strict=True))
        + "|"
    )
    return "\n".join([line(COLUMNS), rule, *(line(b) for b in body)])


def growth_lines(rows: Sequence[Row]) -> list[str]:
    """Time per environment, scenario to scenario: constant means linear growth. The floor's own
    figure shows how much of any change is the SDK's."""
    if not rows:
        return []
    first = rows[0]
    out = ["Wall time per environment (linear growth keeps it constant):"]
    for r in rows:
        rel = r.ms_per_environment / first.ms_per_environment if first.ms_per_environment else float("inf")
        out.append(
            f"  {r.scenario.name:>6}: {r.scenario.total_environments:5d} environments, "
            f"plan {r.ms_per_environment:7.2f} ms/environment ({rel:.2f}x {first.scenario.name}), "
            f"floor {r.floor_ms_per_environment:7.2f} ms/environment"
        )
    return out


def cpu_lines(rows: Sequence[Row]) -> list[str]:
    if not any(r.plan.cpu_seconds for r in rows):
        return []
    out = ["CPU time (all threads; less sensitive to other load on the machine):"]
    for r in rows:
        out.append(
            f"  {r.scenario.name:>6}: plan {r.plan.cpu_seconds:7.2f} s, floor {r.floor.cpu_seconds:7.2f} s, "
            f"ratio {r.cpu_ratio:.2f}"
        )
    return out


def verdict_lines(rows: Sequence[Row], reference: str = "20x50") -> list[str]:
    ref = next((r for r in rows if r.scenario.name == reference), None)
    if ref is None:
        return []
    ok_time = ref.time_ratio <= TARGET_RATIO
    ok_mem = ref.memory_ratio <= TARGET_RATIO
    return [
        f"Target on {reference}: plan <= {TARGET_RATIO}x floor. "
        f"time {ref.time_ratio:.2f}x ({'met' if ok_time else 'NOT met'}), "
        f"memory {ref.memory_ratio:.2f}x ({'met' if ok_mem else 'NOT met'})"
    ]


def report(rows: Sequence[Row]) -> str:
    parts = [render_table(rows), ""]
    parts += [
        "resources: custom resources registered by both; the plan also registers "
        + ", ".join(f"{r.components} components ({r.scenario.name})" for r in rows)
        + ".",
        "",
    ]
    parts += growth_lines(rows)
    cpu = cpu_lines(rows)
    if cpu:
        parts += ["", *cpu]
    verdict = verdict_lines(rows)
    if verdict:
        parts += ["", *verdict]
    return "\n".join(parts)


def _scenario(text: str) -> Scenario:
    """`20x50`, or `3s-20x50` for 20 teams of 50 environments on 3 servers."""
    servers, dash, rest = text.partition("s-")
    if not dash:
        servers, rest = "1", text
    teams, sep, envs = rest.partition("x")
    if not (sep and teams.isdigit() and envs.isdigit() and servers.isdigit() and int(teams) > 0 and int(envs) > 0):
        raise argparse.ArgumentTypeError(f"expected [SERVERSs-]TEAMSxENVS such as 20x50 or 3s-20x50, got {text!r}")
    return Scenario(int(teams), int(envs), max(1, int(servers)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true", help="only the tiny 2x3 scenario")
    which.add_argument(
        "--scenario",
        action="append",
        type=_scenario,
        metavar="[SERVERSs-]TEAMSxENVS",
        help="measure this scenario instead of the default ones (repeatable), e.g. 20x50 or 3s-20x50",
    )
    parser.add_argument("--repeat", type=int, default=1, help="time each side in N processes (median)")
    parser.add_argument("--workdir", type=Path, help="where scenarios and results are written")
    parser.add_argument(
        "--floor",
        choices=("typed", "generic"),
        default="typed",
        help="typed: the floor creates each resource through its provider's class (default); "
        "generic: a bare CustomResource by type token (the SDK alone)",
    )
    parser.add_argument("--worker", choices=("plan", "floor", "spec"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("time", "memory"), default="time", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.mode, args.config, args.spec, args.out, args.floor == "typed")
        return 0
    chosen = QUICK if args.quick else tuple(args.scenario) if args.scenario else FULL
    rows = run(
        chosen, args.workdir, args.repeat, progress=lambda m: print(m, file=sys.stderr, flush=True), floor=args.floor
    )
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
