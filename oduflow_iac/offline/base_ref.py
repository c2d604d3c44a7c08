"""`plan --base-ref REF`: the files a plan reads, as they are at a git ref, in a temporary folder.

Nothing in the working tree or the index is touched: each file is read with `git show REF:path`
(Pulumi.yaml, the stack file, the stack's config file and the port and revision locks beside it) and written at
the same relative place under a temporary directory, which is removed afterwards.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from oduflow_iac import ports, revisions
from oduflow_iac.errors import UsageError
from oduflow_iac.stack_settings import PROJECT_FILE, find_project_dir, read_stack_settings


@dataclass(frozen=True)
class RefCheckout:
    """Where the ref's files are: its project folder and, when one was named, its config file."""

    ref: str
    commit: str
    project_dir: Path
    config: Path | None
    root: Path  # the temporary folder standing for the repository's top level

    def shown(self, text: str) -> str:
        """A message about a file of the ref, with the repository path instead of the temporary one."""
        return text.replace(f"{self.root}/", f"{self.ref}:")


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise UsageError("--base-ref needs git on PATH") from None


def _show(top: Path, commit: str, rel: PurePosixPath) -> bytes | None:
    done = _git(top, "show", f"{commit}:{rel.as_posix()}")
    return done.stdout if done.returncode == 0 else None


def _project_or_config_dir(config: Path | None) -> Path:
    """The folder of Pulumi.yaml; with an explicit config outside any project, the config's folder
    (a plan of an explicit config works without a project around it)."""
    try:
        return find_project_dir(config.parent if config else None)
    except UsageError:
        if config is None:
            raise
        return config.parent


@contextmanager
def checkout(ref: str, config: Path | None, stack: str, project_dir: Path | None) -> Iterator[RefCheckout]:
    """The plan inputs at `ref`, for the duration of the `with` block."""
    project = (project_dir or _project_or_config_dir(config)).resolve()
    done = _git(project, "rev-parse", "--show-toplevel")
    if done.returncode != 0:
        raise UsageError(f"--base-ref {ref}: {project} is not in a git repository")
    top = Path(done.stdout.decode().strip()).resolve()
    done = _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if done.returncode != 0:
        raise UsageError(f"--base-ref {ref}: no such commit in {top}")
    commit = done.stdout.decode().strip()

    def rel(path: Path) -> PurePosixPath:
        try:
            return PurePosixPath(path.resolve().relative_to(top).as_posix())
        except ValueError:
            raise UsageError(f"--base-ref {ref}: {path} is outside the repository {top}") from None

    with tempfile.TemporaryDirectory(prefix="oduflow-base-") as tmp:
        root = Path(tmp)

        def put(path: PurePosixPath, required: bool) -> Path:
            content = _show(top, commit, path)
            if content is None and required:
                raise UsageError(f"--base-ref {ref}: {path} does not exist at {ref}")
            target = root / path
            if content is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            return target

        project_rel = rel(project)
        project_file = put(project_rel / PROJECT_FILE, required=config is None)
        stack_dir = project_rel
        if project_file.is_file():
            doc = yaml.safe_load(project_file.read_text(encoding="utf-8")) or {}
            stack_dir = project_rel / str(doc.get("stackConfigDir") or ".") if isinstance(doc, dict) else project_rel
        put(stack_dir / f"Pulumi.{stack}.yaml", required=config is None)
        base_project = root / project_rel
        if config is not None:
            config_rel = rel(config)
        else:
            settings = read_stack_settings(stack, base_project)
            relative = settings.get("configFile")
            if not relative:
                raise UsageError(f"--base-ref {ref}: {stack_dir}/Pulumi.{stack}.yaml has no oduflow:configFile")
            config_rel = rel(project / relative)
        base_config = put(config_rel, required=True)
        for lock in (ports.lock_path_for(base_config), revisions.lock_path_for(base_config)):
            put(PurePosixPath(lock.relative_to(root).as_posix()), required=False)
        yield RefCheckout(ref, commit, base_project, base_config if config is not None else None, root)
