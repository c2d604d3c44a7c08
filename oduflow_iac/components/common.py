"""Small wiring helpers shared by the components."""

from __future__ import annotations

from typing import cast

import pulumi
import pulumi_docker as docker


def label_args(values: dict[str, str]) -> list[pulumi.Input[docker.ContainerLabelArgsDict]]:
    """Docker's label list from a plain mapping (order kept, so plans diff cleanly)."""
    return [docker.ContainerLabelArgsDict(label=k, value=v) for k, v in values.items()]


def as_secret(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """`value` as a secret Output. (Output.secret's overloads leave mypy unable to infer `str`.)"""
    return cast("pulumi.Output[str]", pulumi.Output.secret(value))


def secret_env(name: str, value: pulumi.Input[str]) -> pulumi.Output[str]:
    """A `NAME=value` container variable whose value is secret, so the whole entry is."""
    return as_secret(value).apply(lambda v: f"{name}={v}")


def one_shot(
    resource_name: str,
    *,
    container_name: str,
    image: str,
    command: list[str],
    labels: list[pulumi.Input[docker.ContainerLabelArgsDict]],
    opts: pulumi.ResourceOptions,
    entrypoints: list[str] | None = None,
    envs: list[pulumi.Input[str]] | None = None,
    uploads: list[docker.ContainerUploadArgsDict] | None = None,
    volumes: list[docker.ContainerVolumeArgsDict] | None = None,
    networks: list[pulumi.Input[str]] | None = None,
) -> docker.Container:
    """A container that runs once, when created: `attach` makes Pulumi wait until it exits, and
    `must_run=False` leaves it stopped afterwards instead of restarting it."""
    return docker.Container(
        resource_name,
        name=container_name,
        image=image,
        entrypoints=entrypoints,
        command=command,
        envs=envs,
        uploads=uploads,
        volumes=volumes,
        networks_advanced=[docker.ContainerNetworksAdvancedArgsDict(name=n) for n in networks or []],
        attach=True,
        logs=True,
        must_run=False,
        restart="no",
        labels=labels,
        opts=opts,
    )


def succeeded(container: docker.Container, container_name: str) -> pulumi.Output[int]:
    """The one-shot's exit code, failing the deployment when it is not 0: the provider only waits
    for the container to end and would otherwise report a failed module install as a success.
    Registered as a component output, so the engine awaits it."""

    def check(code: int | None) -> int:
        if code:
            raise RuntimeError(f"{container_name} exited with code {code}; see `docker logs {container_name}`")
        return 0

    return container.exit_code.apply(check)
