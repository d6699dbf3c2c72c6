"""Where the local stack finds its artifacts and templates and keeps its state."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from kappa.settings import StackSettings
from stack.exceptions import ArtifactsMissingError, StackError

INSTALL_HINT = "run `make install` (or scripts/install_jvm.sh)"


def repo_root() -> Path:
    """The checkout this package runs from."""
    return Path(__file__).resolve().parents[1]


def templates_dir() -> Path:
    """The local stack's config templates (compose/local/)."""
    path = repo_root() / "compose" / "local"
    if not path.is_dir():
        msg = (
            f"the local stack's templates are missing: {path} (run from a checkout of the project)"
        )
        raise StackError(msg)
    return path


@dataclass(frozen=True)
class Layout:
    """Absolute paths of one stack: artifacts (deps) and state."""

    state_dir: Path
    deps_dir: Path

    @classmethod
    def of(cls, settings: StackSettings) -> Layout:
        """A relative deps_dir is taken from the cwd, else from the checkout."""
        deps = settings.deps_dir
        if not deps.is_absolute() and not (deps / "jvm").is_dir():
            candidate = repo_root() / deps
            if (candidate / "jvm").is_dir():
                deps = candidate
        return cls(settings.state_dir.resolve(), deps.resolve())

    def jvm(self, component: str) -> Path:
        """Where the install step put ``component`` (kafka, registry, spark, hdfs)."""
        return self.deps_dir / "jvm" / component

    def require(self, component: str, probe: str) -> Path:
        """``jvm(component)``, checked to hold ``probe`` (a file name or a glob)."""
        folder = self.jvm(component)
        if not any(folder.glob(probe)):
            msg = f"{component} artifacts are missing from {folder}: {INSTALL_HINT}"
            raise ArtifactsMissingError(msg)
        return folder

    def home(self, service: str) -> Path:
        """The state folder of one service (config, data)."""
        path = self.state_dir / service
        path.mkdir(parents=True, exist_ok=True)
        return path

    def ensure(self) -> None:
        """Create the state folder, git-ignored from the inside."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ignore = self.state_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n")


def render(template: str, target: Path, **values: object) -> Path:
    """Fill ``${name}`` placeholders of a template of compose/local/ into ``target``."""
    text = (templates_dir() / template).read_text()
    try:
        rendered = string.Template(text).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        msg = f"template {template} needs a value for {exc.args[0]}"
        raise StackError(msg) from exc
    except ValueError as exc:
        msg = f"template {template} is malformed: {exc}"
        raise StackError(msg) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(rendered)
    return target


def copy_template(template: str, target: Path) -> Path:
    """Copy a template of compose/local/ as it is."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text((templates_dir() / template).read_text())
    return target
