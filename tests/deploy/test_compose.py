"""deploy/compose.yaml: valid against the compose specification, every file it mounts present, every
dependency and secret declared, images pinned, secrets only as files, and the configs it mounts
accepted by the tools that read them (recoverlink check, promtool, Grafana's provisioning).

Docker's engine is not on the machines that run these tests; `docker compose config` runs when the
client has the compose plugin and is skipped otherwise."""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from recoverlink.checking import check_file
from recoverlink.config.loader import load_config
from tests.deploy.support import (
    DEPLOY,
    REPO,
    assert_cli_accepts,
    materialize,
    run,
    secret_sources,
    tool,
    without,
)

COMPOSE = DEPLOY / "compose.yaml"
SECRET_PATHS = [
    ("webhook", "auth", "bearer"),
    ("api", "bootstrap_admin_token"),
    ("board", "session_secret"),
    ("actions", "credentials", "desktop", "bearer"),
    ("database",),
]


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # resolves the <<: merges
    assert isinstance(document, dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def bind_mounts(service: str) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (named volumes left out)."""
    mounts = {}
    for volume in services()[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (DEPLOY / source).resolve()
    return mounts


def command(service: str) -> list[str]:
    return ["recoverlink", *services()[service]["command"]]


def test_the_file_matches_the_compose_specification() -> None:
    try:
        import check_jsonschema  # noqa: F401
    except ImportError:
        tool("check-jsonschema", "pip install check-jsonschema (the `test` extra)")
    done = run(
        sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_docker_compose_config_accepts_the_file() -> None:
    probe = run("docker", "compose", "version") if shutil.which("docker") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("no `docker compose` on this machine (the docker client has no compose plugin)")
    done = run("docker", "compose", "-f", str(COMPOSE), "config", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_mounted_file_exists_in_the_repository() -> None:
    for name in services():
        for target, source in bind_mounts(name).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
    build = compose()["x-recoverlink"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).exists()


def test_every_dependency_names_a_service_of_the_file() -> None:
    for name, service in services().items():
        for dependency in service.get("depends_on", []):
            assert dependency in services(), f"{name} depends on unknown service {dependency}"


def test_every_image_is_pinned_to_a_version_tag() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    for name, service in services().items():
        image = service["image"]
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image}: pin a version tag"
        if image.startswith("recoverlink:"):
            assert tag == version, f"{name}: tag the image with the package's version, {version}"


def test_secrets_are_files_and_never_values_in_the_environment() -> None:
    declared = compose()["secrets"]
    for name, secret in declared.items():
        assert set(secret) == {"file"}, f"secret {name}: a file, never an environment variable"
        path = (DEPLOY / secret["file"]).resolve()
        assert path.parent == DEPLOY / "compose" / "secrets", f"secret {name}: keep it in compose/secrets/"
    ignored = (DEPLOY / "compose" / "secrets" / ".gitignore").read_text(encoding="utf-8").split()
    assert "*" in ignored, "compose/secrets/ must be git-ignored"
    used = set()
    for name, service in services().items():
        used.update(service.get("secrets", []))
        for variable, value in (service.get("environment") or {}).items():
            if re.search(r"(?i)password|token|secret", variable):
                assert variable.endswith("_FILE"), f"{name}: {variable} must name a file, not hold a value"
                assert str(value).startswith("/run/secrets/"), f"{name}: {variable}={value}"
    assert used <= set(declared), f"undeclared secrets: {used - set(declared)}"
    assert set(declared) <= used, f"secrets no service uses: {set(declared) - used}"


def test_the_servers_run_without_a_worker_beside_a_worker_of_their_own() -> None:
    server, worker, migrate = command("recoverlink"), command("worker"), command("migrate")
    assert server[1] == "serve" and "--no-worker" in server
    assert services()["recoverlink"]["deploy"]["replicas"] >= 2
    assert worker[1] == "worker"
    assert migrate[1:3] == ["db", "upgrade"]
    for argv in (server, worker, migrate):
        assert_cli_accepts(argv)


def test_servers_and_workers_start_only_after_the_migration_finished() -> None:
    assert services()["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("recoverlink", "worker"):
        migrate = services()[name]["depends_on"]["migrate"]
        assert migrate["condition"] == "service_completed_successfully", name


def entrypoint_script(password_file: Path) -> str:
    """The shell line of the recoverlink services' entrypoint, as a container's sh would get it
    (compose turns `$$` into `$`), reading the password from `password_file`."""
    entrypoint = services()["recoverlink"]["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    script = str(entrypoint[2]).replace("$$", "$")
    assert "/run/secrets/postgres_password" in script
    return script.replace("/run/secrets/postgres_password", str(password_file))


def test_the_entrypoint_builds_the_database_url_from_the_password_secret(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("0123abcd\n")
    fake = tmp_path / "bin" / "recoverlink"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$RECOVERLINK_DATABASE_URL"\necho "$@"\n')
    fake.chmod(0o755)
    argv = services()["recoverlink"]["entrypoint"][3:] + services()["recoverlink"]["command"]
    env = {"PATH": f"{fake.parent}:{os.environ['PATH']}"}
    done = run("/bin/sh", "-c", entrypoint_script(tmp_path / "password"), *argv, env=env)
    assert done.returncode == 0, done.stderr
    url, args = done.stdout.splitlines()
    assert url == "postgresql+psycopg://recoverlink:0123abcd@postgres:5432/recoverlink"
    assert args == " ".join(services()["recoverlink"]["command"])
    postgres = services()["postgres"]["environment"]
    assert postgres["POSTGRES_USER"] == "recoverlink" and postgres["POSTGRES_DB"] == "recoverlink"


def test_the_recoverlink_config_passes_recoverlink_check_with_what_compose_mounts(tmp_path: Path) -> None:
    materialize(tmp_path, bind_mounts("recoverlink"))
    config_file = tmp_path / "etc" / "recoverlink" / "recoverlink.yaml"
    summary = check_file(config_file)
    assert "config valid" in summary and " 0 rules" not in summary, summary
    mounted = {f"/run/secrets/{s}" for s in services()["recoverlink"]["secrets"]}
    for source in secret_sources(load_config(config_file)):
        assert source.file is not None and not source.generate, "compose secrets are files it mounts"
        assert str(source.file) in mounted, f"{source.file} is not a secret the service mounts"


def test_the_recoverlink_config_is_the_image_config_with_secrets_from_compose() -> None:
    ours = yaml.safe_load((DEPLOY / "compose" / "recoverlink.yaml").read_text(encoding="utf-8"))
    image = yaml.safe_load((DEPLOY / "container" / "recoverlink.yaml").read_text(encoding="utf-8"))
    assert without(ours, SECRET_PATHS) == without(image, SECRET_PATHS)


def test_prometheus_loads_its_config_and_the_shipped_rules(tmp_path: Path) -> None:
    promtool = tool("promtool", "apt-get install prometheus")
    materialize(tmp_path, bind_mounts("prometheus"))
    done = run(promtool, "check", "config", str(tmp_path / "etc" / "prometheus" / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout and "rules found" in done.stdout, done.stdout


def test_prometheus_scrapes_every_replica_and_worker_under_the_jobs_the_rules_alert_on() -> None:
    config = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    rules = (DEPLOY / "prometheus" / "recoverlink.rules.yml").read_text(encoding="utf-8")
    for job, service, port in (("recoverlink", "recoverlink", 9471), ("recoverlink-worker", "worker", 9472)):
        assert job in rules, f"the rules alert on job {job}"
        (discovery,) = jobs[job]["dns_sd_configs"]
        assert discovery["names"] == [service] and discovery["type"] == "A" and discovery["port"] == port
        assert service in services()
    (alerting,) = config["alerting"]["alertmanagers"]
    assert alerting["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_the_worker_serves_metrics_where_prometheus_scrapes_it() -> None:
    config = load_config(DEPLOY / "compose" / "recoverlink.yaml")
    assert config.worker.metrics_listen == "0.0.0.0:9472"
    assert config.server.listen == "0.0.0.0:9471"
    assert "9472" in " ".join(services()["worker"]["healthcheck"]["test"])


def test_grafana_provisions_the_shipped_dashboard_and_a_datasource_for_the_prometheus_service() -> None:
    mounts = bind_mounts("grafana")
    shipped = DEPLOY / "grafana" / "provisioning"
    assert mounts["/etc/grafana/provisioning/dashboards"] == shipped / "dashboards"
    provider = yaml.safe_load((shipped / "dashboards" / "recoverlink.yaml").read_text(encoding="utf-8"))
    assert mounts[provider["providers"][0]["options"]["path"]] == DEPLOY / "grafana" / "dashboards"
    datasources = mounts["/etc/grafana/provisioning/datasources"]
    ours = yaml.safe_load((datasources / "prometheus.yaml").read_text(encoding="utf-8"))
    theirs = yaml.safe_load((shipped / "datasources" / "prometheus.yaml").read_text(encoding="utf-8"))
    assert ours["datasources"][0].pop("url") == "http://prometheus:9090"
    theirs["datasources"][0].pop("url")
    assert ours == theirs, "the compose datasource is the shipped one with the service's url"


def test_create_secrets_makes_every_secret_once_readable_by_the_containers(tmp_path: Path) -> None:
    script = DEPLOY / "compose" / "create-secrets"
    target = tmp_path / "secrets"
    done = run("/bin/sh", str(script), str(target))
    assert done.returncode == 0, done.stderr
    declared = {Path(s["file"]).name for s in compose()["secrets"].values()}
    assert {p.name for p in target.iterdir()} == declared
    first = {}
    for path in target.iterdir():
        value = path.read_text()
        assert re.fullmatch(r"[0-9a-f]{64}", value), f"{path.name}: URL-safe, 256 bits"
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name
        first[path.name] = value
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    again = run("/bin/sh", str(script), str(target))
    assert again.returncode == 0 and again.stdout == ""
    assert {p.name: p.read_text() for p in target.iterdir()} == first, "a second run changes nothing"
