"""The command line behaves like the tools it is compared with (pulumi, terraform, gh): usage when
called bare, --version, --help on every option, one line per error with exit 2, a closed pipe is
a silent exit, and Ctrl-C stops a plan at once with 130."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from oduflow_iac.cli import EXIT_CLOSED_PIPE, build_parser, main
from tests.conftest import ROOT, SEED


def cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oduflow_iac.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        **kw,  # type: ignore[call-overload]
    )


def test_bare_command_prints_usage_and_exits_2() -> None:
    result = cli()
    assert result.returncode == 2
    assert result.stderr.startswith("usage: oduflow-iac")
    assert "validate" in result.stderr and "plan" in result.stderr and "exit status" in result.stderr


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == "oduflow-iac 0.1.0"


def _parsers(parser: argparse.ArgumentParser, path: str = "oduflow-iac") -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{path} {c.dest}" for c in action._choices_actions if not c.help]
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_usage_error_points_to_help() -> None:
    result = cli("plan", "--format", "yaml")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "oduflow-iac plan --help" in result.stderr


def test_closed_pipe_is_a_silent_exit() -> None:
    # `oduflow-iac validate | head -0`: the reader is gone before anything is written.
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "oduflow_iac.cli", "validate", "--stack", "local"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            check=False,
        )
    finally:
        os.close(write)
    assert result.stderr == ""
    assert result.returncode == EXIT_CLOSED_PIPE


def test_os_error_is_one_line_exit_2(write_config: Callable[[str], Path], tmp_path: Path) -> None:
    path = write_config(SEED)
    target = tmp_path / "missing-folder" / "x.json"
    result = cli("policy-config", "--config", str(path), "-o", str(target))
    assert result.returncode == 2
    assert result.stderr == f"error: {target}: No such file or directory\n"


def test_unreadable_config_folder_is_one_line(tmp_path: Path) -> None:
    result = cli("validate", "--config", str(tmp_path))  # a directory, not a file
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(tmp_path) in result.stderr and "Traceback" not in result.stderr


# --------------------------------------------------------------------------------------------
# Ctrl-C


@pytest.fixture(scope="module")
def large_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bench.scenario import Scenario, write

    return write(Scenario(4, 50), tmp_path_factory.mktemp("large"))


def _default_sigint() -> None:
    # A test runner started in the background may ignore SIGINT; a user's shell never does.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("delay", [0.8, 2.5, 5.0])
def test_first_ctrl_c_stops_a_plan_at_once(large_config: Path, delay: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "oduflow_iac.cli", "plan", "--config", str(large_config), "--format", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=_default_sigint,
    )
    try:
        time.sleep(delay)
        assert proc.poll() is None, "the plan ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        # The defect was a hang at 0 % CPU forever; a bound this loose tells it from a slow machine.
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err == "interrupted\n"
    assert elapsed < 30


def test_interrupted_run_leaves_no_thread_loop_or_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """In process: the harness cancels and closes its loop and joins its threads, puts Python's
    SIGINT handler back, and the next run works."""
    import asyncio
    import threading

    import pulumi_random as random

    from oduflow_iac.offline.harness import run_offline

    def program(interrupt_at: int | None) -> Callable[[], None]:
        def build() -> None:
            for i in range(300):
                random.RandomString(f"r{i}", length=8)
                if i == interrupt_at:
                    os.kill(os.getpid(), signal.SIGINT)

        return build

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = {t.ident for t in threading.enumerate()}
        with pytest.raises(KeyboardInterrupt):
            run_offline(program(100))
        left = [t.name for t in threading.enumerate() if t.ident not in before]
        assert left == []
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()
        run = run_offline(program(None))
        assert len(run.resources) == 300
    finally:
        signal.signal(signal.SIGINT, previous)
