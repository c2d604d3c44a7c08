"""The SDK floor: the least a Pulumi program can spend registering a given set of resources.

A flat loop, no components, no policies, no config model: one `pulumi.CustomResource` per
resource, registered under the very mocks the offline plan uses (`run_offline`). The list of
resources (type, name and inputs) is taken from a real planned run of the same scenario, so the
floor registers the same number of custom resources, of the same types, with inputs of the same
size (the same values, secrets revealed, as plain inputs). Component resources are the program's
own structure and are not part of the floor.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from oduflow_iac.offline.harness import PlannedRun, reveal, run_offline


@dataclass(frozen=True)
class FloorResource:
    type: str
    name: str
    inputs: dict[str, Any]


def spec_from_run(run: PlannedRun) -> list[FloorResource]:
    """The custom resources of a planned run, in registration order, with unique names."""
    seen: set[str] = set()
    spec = []
    for i, res in enumerate(r for r in run.resources if r.custom):
        # Names are unique per parent in the program; the floor has no parents.
        name = res.name if res.name not in seen else f"{res.name}-{i}"
        seen.add(name)
        spec.append(FloorResource(res.type, name, reveal(res.inputs)))
    return spec


def input_size(spec: Sequence[FloorResource]) -> int:
    """Bytes of all inputs as compact JSON: what "inputs of the same size" compares."""
    return sum(len(json.dumps(r.inputs, separators=(",", ":"), sort_keys=True)) for r in spec)


def save_spec(spec: Sequence[FloorResource], path: Path) -> None:
    data = [{"type": r.type, "name": r.name, "inputs": r.inputs} for r in spec]
    path.write_text(json.dumps(data), encoding="utf-8")


def load_spec(path: Path) -> list[FloorResource]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [FloorResource(d["type"], d["name"], d["inputs"]) for d in data]


def floor_program(spec: Sequence[FloorResource]) -> Callable[[], None]:
    def program() -> None:
        for res in spec:
            pulumi.CustomResource(res.type, res.name, dict(res.inputs))

    return program


def run_floor(spec: Sequence[FloorResource], stack: str = "local") -> PlannedRun:
    """Register every resource of `spec` under the offline mocks; returns what was recorded."""
    return run_offline(floor_program(spec), stack=stack)
