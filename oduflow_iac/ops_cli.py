"""Operations commands (preview/up/destroy/refresh, env, template, cleanup) over the Automation API."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def register(sub: Any, add_config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the operations subcommands to the CLI."""
