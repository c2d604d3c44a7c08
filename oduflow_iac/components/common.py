"""Small wiring helpers shared by the components."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker


def label_args(values: dict[str, str]) -> list[pulumi.Input[docker.ContainerLabelArgs]]:
    """Docker's label list from a plain mapping (order kept, so plans diff cleanly)."""
    return [docker.ContainerLabelArgs(label=k, value=v) for k, v in values.items()]
