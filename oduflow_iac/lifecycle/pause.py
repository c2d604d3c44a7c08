"""Odoo stopped around the jobs that rewrite its database: upgrades and refreshes.

Pulumi cannot stop a container before a one-shot runs: the engine only creates, updates and
deletes. So `oduflow-iac up` previews first; every environment whose `upgrade` or `refresh`
one-shot the preview creates or replaces has its Odoo container stopped (`docker stop`, which
gives Odoo its stop grace period to finish requests and crons), then the deployment runs, then
those containers are started again (`docker start`):
- the deployment failed (a failed upgrade leaves the Odoo container in place: its replacement
  depends on the upgrade's success): the previous Odoo serves again, on the previous code and, for
  production, the restored database;
- it succeeded: the container was replaced and the new one runs already (`docker start` of a
  running container does nothing); one that was not replaced (a one-shot retried alone) would
  otherwise stay stopped.
A container that does not exist (a new environment, a disabled one) is skipped.

The jobs themselves also end the sessions left on their own database (lifecycle/upgrade.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from oduflow_iac import naming

PAUSING_ROLES = frozenset({"upgrade", "refresh"})
# The steps that run a one-shot: a new one, or a replacement (`replace` in a preview, the pair
# `create-replacement`/`delete-replaced` in an update's events).
RUNNING_OPS = frozenset({"create", "replace", "create-replacement"})


class DockerResult(Protocol):
    @property
    def code(self) -> int: ...

    @property
    def output(self) -> str: ...


Docker = Callable[[list[str]], DockerResult]


def _labels(state: Mapping[str, Any] | None) -> dict[str, str]:
    raw = (state or {}).get("inputs", {}).get("labels") if isinstance(state, Mapping) else None
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    out: dict[str, str] = {}
    for item in raw or []:
        if isinstance(item, Mapping) and isinstance(item.get("label"), str):
            out[item["label"]] = str(item.get("value"))
    return out


def containers_to_stop(preview_steps: Iterable[Mapping[str, Any]]) -> list[str]:
    """Odoo containers of the environments whose upgrade or refresh one-shot a preview runs.
    A step is a dict `{op, urn, new: {inputs}, old: {inputs}}` (the engine's step metadata)."""
    names: set[str] = set()
    for step in preview_steps:
        if step.get("op") not in RUNNING_OPS:
            continue
        labels = _labels(step.get("new")) or _labels(step.get("old"))
        team, branch = labels.get(naming.LABEL_TEAM), labels.get(naming.LABEL_ENV)
        if labels.get(naming.LABEL_ROLE) in PAUSING_ROLES and team and branch:
            names.add(naming.env_container_name(team, branch))
    return sorted(names)


def step_of(event: Any) -> dict[str, Any] | None:
    """The step dict of an Automation API engine event (a resource pre-event), else None."""
    pre = getattr(event, "resource_pre_event", None)
    metadata = getattr(pre, "metadata", None)
    if metadata is None:
        return None
    op = getattr(metadata.op, "value", metadata.op)

    def state(s: Any) -> dict[str, Any] | None:
        return {"inputs": dict(s.inputs or {})} if s is not None else None

    return {"op": op, "urn": metadata.urn, "new": state(metadata.new), "old": state(metadata.old)}


@contextmanager
def paused(names: list[str], docker: Docker, out: Callable[[str], None]) -> Iterator[list[str]]:
    """Stop `names` for the duration of the block, start them again after it (also on error)."""
    stopped: list[str] = []
    try:
        for name in names:
            result = docker(["stop", name])
            if result.code == 0:
                stopped.append(name)
                out(f"stopped {name} for its upgrade or refresh")
            elif "no such container" in result.output.lower():
                continue
            else:
                raise RuntimeError(f"could not stop {name} (docker exit {result.code}): {result.output}")
        yield stopped
    finally:
        for name in stopped:
            result = docker(["start", name])
            if result.code == 0:
                out(f"started {name}")
            elif "no such container" not in result.output.lower():
                out(f"WARNING: could not start {name} again (docker exit {result.code}): {result.output}")


# Preview options that choose what is previewed (not how it is shown or checked).
PREVIEW_KEYS = ("target", "target_dependents", "replace", "color")


def up_paused(
    stack: Any,
    kwargs: Mapping[str, Any],
    run_up: Callable[[], Any],
    docker: Docker,
    out: Callable[[str], None],
) -> Any:
    """`pulumi up` with the Odoo of each environment being upgraded or refreshed stopped: a
    preview (without the policy pack: `up` runs it) finds them, `run_up` deploys."""
    steps: list[dict[str, Any]] = []

    def collect(event: Any) -> None:
        step = step_of(event)
        if step is not None:
            steps.append(step)

    stack.preview(on_event=collect, **{k: v for k, v in kwargs.items() if k in PREVIEW_KEYS})
    names = containers_to_stop(steps)
    if not names:
        return run_up()
    with paused(names, docker, out):
        return run_up()
