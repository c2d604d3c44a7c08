"""The harness's model of the Docker provider, without an engine: the value formats Read writes
(kreuzwerker/terraform-provider-docker v4.5.0) and the plan-derived topology helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docker import provider, standins, topology


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        # helpers.go nanoInt64ToDecimalString: FloatString(9); nine "0" characters -> FloatString(1),
        # else trailing zeros trimmed.
        (1_000_000_000, "1.0"),
        (2_000_000_000, "2.0"),
        (500_000_000, "0.5"),
        (1_500_000_000, "1.5"),
        (250_000_000, "0.25"),
        (100_000_000, "0.1"),
        (1_050_000_000, "1.05"),
        (10_000_000_000, "10."),  # ten zeros: trimmed, the dot stays
        (20_000_000_000, "20."),
        (50_000_000, "0.1"),  # nine zeros: rounded to one decimal
        (0, "0"),
    ],
)
def test_cpus_read_back_format(nanos: int, text: str) -> None:
    assert provider.nano_to_decimal_string(nanos) == text


@pytest.mark.parametrize(("text", "nanos"), [("1", 10**9), ("1.0", 10**9), ("0.5", 5 * 10**8), ("10.", 10**10)])
def test_cpus_parse(text: str, nanos: int) -> None:
    assert provider.parse_cpus(text) == nanos


def test_cpus_too_precise_is_refused() -> None:
    with pytest.raises(ValueError, match="too precise"):
        provider.parse_cpus("0.0000000001")


@pytest.mark.parametrize(
    ("text", "nanos", "back"),
    [
        ("30s", 30 * 10**9, "30s"),
        ("2m", 120 * 10**9, "2m0s"),
        ("2m0s", 120 * 10**9, "2m0s"),
        ("90s", 90 * 10**9, "1m30s"),
        ("1h", 3600 * 10**9, "1h0m0s"),
        ("500ms", 5 * 10**8, "500ms"),
        ("1.5s", 15 * 10**8, "1.5s"),
        ("0s", 0, "0s"),
    ],
)
def test_healthcheck_durations(text: str, nanos: int, back: str) -> None:
    assert provider.parse_go_duration(text) == nanos
    assert provider.go_duration_string(nanos) == back


def test_drift_names_what_a_refresh_changes() -> None:
    inputs = {"name": "c", "image": "odoo:17.0", "cpus": "1", "memory": 512.0}
    state = {
        "name": "c",
        "image": "odoo:17.0",
        "cpus": "1.0",
        "memory": 512,
        "memorySwap": 1024,
        "networkMode": "bridge",
        "restart": "no",
        "hostname": "0123456789ab",
    }
    drifts = {d.key: d for d in provider.container_drift(inputs, state)}
    assert set(drifts) == {"cpus", "memorySwap"}
    assert drifts["cpus"].replaces and not drifts["memorySwap"].replaces
    assert not provider.container_drift({**inputs, "cpus": "1.0", "memorySwap": 1024}, state)


def test_create_body_as_the_provider_sends_it() -> None:
    body = provider.container_create_body(
        {
            "name": "c",
            "memory": 256.0,
            "memorySwap": 256.0,
            "cpus": "1.5",
            "ports": [{"internal": 8069.0, "external": 50000.0, "ip": "127.0.0.1"}],
            "volumes": [{"volumeName": "v", "containerPath": "/data", "readOnly": True}],
            "healthcheck": {"tests": ["CMD", "true"], "interval": "30s", "startPeriod": "2m0s"},
        },
        "img:1",
    )
    host = body["HostConfig"]
    assert host["NetworkMode"] == "bridge" and host["Init"] is False
    assert host["Memory"] == host["MemorySwap"] == 256 * provider.MIB
    assert host["NanoCpus"] == 1_500_000_000
    assert host["PortBindings"] == {"8069/tcp": [{"HostIp": "127.0.0.1", "HostPort": "50000"}]}
    assert host["Binds"] == ["v:/data:ro"]
    assert body["Healthcheck"]["StartPeriod"] == 120 * 10**9


def test_traefik_listeners_from_its_command() -> None:
    assert sorted(
        topology.traefik_listeners(
            ["--entrypoints.web.address=:80", "--entrypoints.websecure.address=:443", "--ping=true"]
        )
    ) == ["0.0.0.0:443", "0.0.0.0:80", "0.0.0.0:8080"]
    assert sorted(
        topology.traefik_listeners(
            ["--entrypoints.web.address=:80", "--entrypoints.traefik.address=127.0.0.1:8080", "--ping=true"]
        )
    ) == ["0.0.0.0:80", "127.0.0.1:8080"]
    assert topology.public_traefik_ports(["--entrypoints.traefik.address=127.0.0.1:8080", "--ping"]) == set()


@pytest.mark.parametrize(
    ("reference", "local"),
    [
        ("odoo:17.0", "odoo:17.0"),
        ("postgres", "postgres:latest"),
        ("traefik:v3.6.1@sha256:" + "a" * 64, "traefik:v3.6.1"),
        ("registry:5000/team/img", "registry:5000/team/img:latest"),
    ],
)
def test_local_reference(reference: str, local: str) -> None:
    assert standins.local_reference(reference) == local


def test_static_busybox_detection(tmp_path: Path) -> None:
    assert not standins._is_static(Path("/bin/sh").resolve())
    not_elf = tmp_path / "x"
    not_elf.write_bytes(b"#!/bin/sh\n")
    assert not standins._is_static(not_elf)
