"""The SDK floor: the least a Pulumi program can spend registering a given set of resources.

A flat loop, no components, no policies, no config model: one resource per entry, registered under
the very mocks the offline plan uses (`run_offline`). The list of resources (type, name, inputs)
comes from a real planned run of the same scenario, so the floor registers the same number of
custom resources, of the same types, with the same inputs (secrets revealed, as plain values).

By default each resource is created through its provider's own Python class
(`pulumi_docker.Container`, `pulumi_aws.s3.Bucket` ...), as any program using these providers
must: the classes' typed inputs and per-output bookkeeping are part of the floor. `typed=False`
registers a bare `CustomResource` by type token instead: the SDK alone, below any real program.
Component resources are the program's own structure and are not part of the floor.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
from pulumi import _types

from oduflow_iac.offline.harness import PlannedRun, reveal, run_offline

PROVIDER_PREFIX = "pulumi:providers:"
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


@dataclass(frozen=True)
class FloorResource:
    type: str
    name: str
    inputs: dict[str, Any]


def spec_from_run(run: PlannedRun) -> list[FloorResource]:
    """The custom resources of a planned run, in its order, with names unique without parents."""
    seen: set[str] = set()
    spec = []
    for i, res in enumerate(r for r in run.resources if r.custom):
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


# --------------------------------------------------------------------------------------------
# Provider classes


@cache
def resource_class(type_: str) -> type[pulumi.CustomResource] | None:
    """The provider SDK's class for a type token (`aws:s3/bucket:Bucket` -> pulumi_aws.s3.Bucket),
    or None when no installed package has it."""
    try:
        package, module, name = type_.split(":")
        if type_.startswith(PROVIDER_PREFIX):
            mod = importlib.import_module(f"pulumi_{name}")
            name = "Provider"
        else:
            mod = importlib.import_module(f"pulumi_{package}")
            sub = module.split("/")[0]
            if sub != "index":
                mod = importlib.import_module(f"pulumi_{package}.{_snake(sub)}")
        cls = getattr(mod, name)
    except (ImportError, AttributeError, ValueError):
        return None
    return cls if isinstance(cls, type) and issubclass(cls, pulumi.CustomResource) else None


def _snake(name: str) -> str:
    return _CAMEL.sub(r"_\1", name).lower()


@cache
def _python_names(cls: type) -> dict[str, str]:
    return dict(_types.resource_pulumi_to_py_names(cls))


def class_kwargs(cls: type, res: FloorResource) -> dict[str, Any]:
    """The class's keyword arguments for the wire inputs of `res` (nested values stay as on the
    wire). A provider's inputs are JSON-encoded on the wire: decoded back, so they encode the same."""
    names = _python_names(cls)
    provider = res.type.startswith(PROVIDER_PREFIX)
    out = {}
    for key, value in res.inputs.items():
        if provider and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        out[names.get(key) or _snake(key)] = value
    return out


class FloorCustomResource(pulumi.CustomResource):
    """Any custom resource, by type token. A concrete subclass, as every provider's resource class
    is, so the SDK does the same per-registration work (it records the caller's source position)."""

    def __init__(self, type_: str, name: str, props: dict[str, Any]) -> None:
        super().__init__(type_, name, props)


Registration = Callable[[], object]


def registrations(spec: Sequence[FloorResource], typed: bool = True) -> list[Registration]:
    """One call per resource, everything looked up in advance (imports, classes, argument names),
    so running them is the registrations alone."""
    calls: list[Registration] = []
    for res in spec:
        cls = resource_class(res.type) if typed else None
        if cls is not None:
            calls.append(_typed(cls, res.name, class_kwargs(cls, res)))
        else:
            calls.append(_generic(res))
    return calls


def _typed(cls: type, name: str, kwargs: dict[str, Any]) -> Registration:
    return lambda: cls(name, **kwargs)


def _generic(res: FloorResource) -> Registration:
    return lambda: FloorCustomResource(res.type, res.name, dict(res.inputs))


def floor_program(calls: Sequence[Registration]) -> Callable[[], None]:
    def program() -> None:
        for call in calls:
            call()

    return program


def run_floor(spec: Sequence[FloorResource], typed: bool = True, stack: str = "local") -> PlannedRun:
    """Register every resource of `spec` under the offline mocks; returns what was recorded."""
    return run_calls(registrations(spec, typed), stack)


def run_calls(calls: Sequence[Registration], stack: str = "local") -> PlannedRun:
    return run_offline(floor_program(calls), stack=stack)


def mismatches(spec: Sequence[FloorResource], run: PlannedRun) -> list[str]:
    """Names of the resources whose recorded inputs differ from the spec: the floor's own check
    that it registered the same inputs."""
    recorded = {r.name: reveal(r.inputs) for r in run.resources if r.custom}
    return [r.name for r in spec if recorded.get(r.name) != r.inputs]
