"""Small wiring helpers shared by the components."""

from __future__ import annotations

from typing import cast

import pulumi
import pulumi_docker as docker


def label_args(values: dict[str, str]) -> list[pulumi.Input[docker.ContainerLabelArgs]]:
    """Docker's label list from a plain mapping (order kept, so plans diff cleanly)."""
    return [docker.ContainerLabelArgs(label=k, value=v) for k, v in values.items()]


def as_secret(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """`value` as a secret Output. (Output.secret's overloads leave mypy unable to infer `str`.)"""
    return cast("pulumi.Output[str]", pulumi.Output.secret(value))


def secret_env(name: str, value: pulumi.Input[str]) -> pulumi.Output[str]:
    """A `NAME=value` container variable whose value is secret, so the whole entry is."""
    return as_secret(value).apply(lambda v: f"{name}={v}")
