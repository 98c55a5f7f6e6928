"""What the deploy tests share: where the artifacts are, the external checkers they run, and a way
to lay out the files a container would see so that recoverlink's own `check` can read them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from recoverlink.cli import main
from recoverlink.config.base import SecretSource

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def tool(name: str, install: str) -> str:
    """The path of an external checker. Missing is a failure under CI (`CI` is set), where
    `make test` has installed it, and a skip elsewhere, naming how to get it."""
    for candidate in (shutil.which(name), Path(sys.executable).parent / name, Path("/usr/bin") / name):
        if candidate and Path(candidate).exists():
            return str(candidate)
    problem = f"{name} is missing: {install} (`make test` does it)"
    if os.environ.get("CI"):
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


def run(*argv: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=env)


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def assert_cli_accepts(argv: list[str]) -> None:
    """The command line an artifact runs names a real `recoverlink` command and real options
    (`--help` after them stops click before it acts, but only once every option is known)."""
    assert argv[0].endswith("recoverlink"), argv
    result = CliRunner().invoke(main, [*argv[1:], "--help"])
    assert result.exit_code == 0, f"{argv}: {result.output}"


def materialize(root: Path, mounts: Mapping[str, Path]) -> None:
    """Copy each host file or directory to where a container sees it (`mounts`: container path ->
    host path), under `root`."""
    for target, source in mounts.items():
        destination = root / target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination, dirs_exist_ok=True)
        else:
            shutil.copyfile(source, destination)


def secret_sources(model: Any) -> Iterator[SecretSource]:
    """Every secret source anywhere in a config model."""
    if isinstance(model, SecretSource):
        yield model
    elif isinstance(model, BaseModel):
        for name in type(model).model_fields:
            yield from secret_sources(getattr(model, name))
    elif isinstance(model, dict):
        for value in model.values():
            yield from secret_sources(value)
    elif isinstance(model, list | tuple):
        for value in model:
            yield from secret_sources(value)


def without(tree: Any, paths: list[tuple[str, ...]]) -> Any:
    """A copy of a parsed YAML mapping without the keys at `paths` (for comparing configs that must
    differ only there)."""
    if not isinstance(tree, dict):
        return tree
    heads = {p[0] for p in paths if len(p) == 1}
    result = {}
    for key, value in tree.items():
        if key in heads:
            continue
        rest = [p[1:] for p in paths if len(p) > 1 and p[0] == key]
        result[key] = without(value, rest) if rest else value
    return result
