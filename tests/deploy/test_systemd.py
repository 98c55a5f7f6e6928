"""deploy/systemd/: the units pass `systemd-analyze verify` (unknown keys, bad values, missing
executables are errors) and score an exposure of at most 2.0 in `systemd-analyze security`, run
the documented command lines as the recoverlink user, and reload with SIGHUP.

systemd is not PID 1 where these tests run, so both checks use `--root` on a throw-away tree that
holds the units and a stand-in for /opt/recoverlink/.venv/bin/recoverlink (verify insists that the
executable exists; the install puts the real one there)."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, assert_cli_accepts, run, tool

UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
EXECUTABLE = "/opt/recoverlink/.venv/bin/recoverlink"
CONFIG = "/etc/recoverlink/recoverlink.yaml"
MAX_EXPOSURE = 20  # systemd-analyze's --threshold is the exposure level times ten


def directives(unit: Path) -> dict[str, list[str]]:
    """Every `Key=value` of a unit, by key, in order (a key may repeat, as SystemCallFilter= does)."""
    found: dict[str, list[str]] = {}
    for raw in unit.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def one(unit: Path, key: str) -> str:
    (value,) = directives(unit)[key]
    return value


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root for systemd-analyze: the units in /etc/systemd/system and the executables they run."""
    units = tmp_path / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(unit, units / unit.name)
    stand_in = tmp_path / EXECUTABLE.lstrip("/")
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    (tmp_path / "bin").mkdir()
    shutil.copy("/bin/kill", tmp_path / "bin" / "kill")
    return tmp_path


def test_both_units_are_shipped() -> None:
    assert [u.name for u in UNITS] == ["recoverlink-worker.service", "recoverlink.service"]


def test_the_units_pass_systemd_analyze_verify(root: Path) -> None:
    analyze = tool("systemd-analyze", "apt-get install systemd")
    names = [u.name for u in UNITS]
    done = run(analyze, "verify", f"--root={root}", "--recursive-errors=no", "--man=no", *names)
    # verify exits 0 on warnings too: any line about our units (an unknown key, say) is a failure.
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def test_the_units_are_hardened_to_an_exposure_of_at_most_two(root: Path) -> None:
    analyze = tool("systemd-analyze", "apt-get install systemd")
    for unit in UNITS:
        done = run(
            analyze, "security", "--offline=yes", f"--root={root}", f"--threshold={MAX_EXPOSURE}", unit.name
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Overall exposure level" in done.stdout


@pytest.mark.parametrize("unit", UNITS, ids=[u.stem for u in UNITS])
def test_the_unit_runs_unprivileged_with_its_state_directory_alone_writable(unit: Path) -> None:
    found = directives(unit)
    assert one(unit, "User") == "recoverlink" and one(unit, "Group") == "recoverlink"
    assert one(unit, "EnvironmentFile") == "-/etc/recoverlink/env", "optional: the unit starts without it"
    assert one(unit, "Restart") == "on-failure"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "ReadWritePaths": "/var/lib/recoverlink",
        "StateDirectory": "recoverlink",
        "CapabilityBoundingSet": "",
    }.items():
        assert found.get(key) == [value], f"{unit.name}: {key}={value}"


def test_the_server_unit_serves_the_documented_config_and_reloads_on_sighup() -> None:
    unit = DEPLOY / "systemd" / "recoverlink.service"
    argv = shlex.split(one(unit, "ExecStart"))
    assert argv == [EXECUTABLE, "serve", "--config", CONFIG]
    assert_cli_accepts(argv)
    assert one(unit, "ExecReload") == "/bin/kill -HUP $MAINPID", "SIGHUP reloads catalog and rules"
    # SIGTERM to gunicorn's master alone: it drains requests and stops its outbox worker itself.
    assert one(unit, "KillMode") == "mixed"


def test_the_worker_unit_runs_a_worker_on_the_same_config() -> None:
    unit = DEPLOY / "systemd" / "recoverlink-worker.service"
    argv = shlex.split(one(unit, "ExecStart"))
    assert argv == [EXECUTABLE, "worker", "--config", CONFIG]
    assert_cli_accepts(argv)
    assert "ExecReload" not in directives(unit), "a worker follows reloads through the store"
