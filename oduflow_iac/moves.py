"""Moves in progress: `<config stem>.moves.json` beside the config (minimal version; the config's
owner of issue 14 provides the full one with its checks).

`{"version": 1, "moves": [{"team": "1", "branch": null, "from": "default", "to": "s2", "phase": "copying"}]}`
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from oduflow_iac.errors import ConfigError

Phase = Literal["copying", "switched"]
PHASES: tuple[Phase, ...] = ("copying", "switched")
VERSION = 1


@dataclass(frozen=True)
class Move:
    team: str
    branch: str | None
    from_server: str
    to: str
    phase: Phase = "copying"

    def to_json(self) -> dict[str, object]:
        return {"team": self.team, "branch": self.branch, "from": self.from_server, "to": self.to, "phase": self.phase}


def moves_path_for(config_path: Path) -> Path:
    return config_path.with_name(f"{config_path.stem}.moves.json")


def read_moves(path: Path) -> list[Move]:
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [
            Move(str(m["team"]), m.get("branch"), str(m["from"]), str(m["to"]), m.get("phase", "copying"))
            for m in data.get("moves", [])
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError.single(str(path), "moves", f"is not a moves file: {exc}") from None


def write_moves(path: Path, moves: list[Move]) -> None:
    """Write the moves (the file is removed when none is left)."""
    if not moves:
        path.unlink(missing_ok=True)
        return
    text = json.dumps({"version": VERSION, "moves": [m.to_json() for m in moves]}, indent=2) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
