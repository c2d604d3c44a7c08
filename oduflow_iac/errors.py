"""Typed errors raised at the boundaries; the CLI turns them into one-line messages (exit 2)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A problem is one line whatever the file holds: a key or value quoted in it may contain controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _one_line(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@dataclass(frozen=True)
class Problem:
    """One problem in an input file: where it is and what is wrong."""

    file: str
    key: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        key, message = _one_line(self.key), _one_line(self.message)
        return f"{where}: {key}: {message}" if key else f"{where}: {message}"


class OduflowError(Exception):
    """Base class of every error the CLI reports as a message rather than a traceback."""


class ConfigError(OduflowError):
    """oduflow.toml (or a file beside it) is unusable. Carries every problem found, one line each."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    @classmethod
    def single(cls, file: str, key: str, message: str, line: int | None = None) -> ConfigError:
        return cls([Problem(file, key, message, line)])


class UsageError(OduflowError):
    """The command line itself is wrong (unknown team, missing stack file, ...)."""


class PulumiCliMissing(OduflowError):
    """An Automation API command needs the `pulumi` executable and it is not on PATH."""
