"""deploy/kubernetes/: every manifest valid against Kubernetes' own schemas (kubernetes-validate,
offline), and consistent with itself and with recoverlink: probes on the ports the containers
expose, Services and the ServiceMonitor on those ports, environment variables recoverlink reads,
the restricted Pod Security Standard, writable paths where recoverlink writes, a config that passes
`recoverlink check` with exactly the files and secrets the pods mount, and a PrometheusRule equal to
deploy/prometheus/recoverlink.rules.yml. The Prometheus Operator's kinds have no schema offline:
their fields are checked against the monitoring.coreos.com/v1 CRDs' field lists below."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from recoverlink.checking import check_file
from recoverlink.config import loader
from recoverlink.config.loader import load_config, load_settings
from recoverlink.config.secrets import read_secret
from tests.deploy.support import (
    DEPLOY,
    assert_cli_accepts,
    load_documents,
    run,
    secret_sources,
    tool,
    without,
)

KUBERNETES = DEPLOY / "kubernetes"
RULES_FILE = DEPLOY / "prometheus" / "recoverlink.rules.yml"
# The oldest release whose API these manifests use (policy/v1, batch/v1 TTL, seccompProfile) that
# kubernetes-validate still ships, and the newest it knows.
OLDEST_RELEASE = "1.27"
OPERATOR_GROUP = "monitoring.coreos.com/v1"
SECRET_PATHS = [
    ("webhook", "auth", "bearer"),
    ("api", "bootstrap_admin_token"),
    ("board", "session_secret"),
    ("actions", "credentials", "desktop", "bearer"),
    ("database",),
    ("impact", "prometheus", "url"),
]
# Fields of the monitoring.coreos.com/v1 CRDs (prometheus-operator's PrometheusRule and
# ServiceMonitor), as far as these manifests may use them.
RULE_GROUP_FIELDS = {
    "name",
    "interval",
    "labels",
    "limit",
    "partial_response_strategy",
    "query_offset",
    "rules",
}
RULE_FIELDS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
SERVICE_MONITOR_FIELDS = {
    "selector",
    "endpoints",
    "namespaceSelector",
    "jobLabel",
    "targetLabels",
    "podTargetLabels",
}
ENDPOINT_FIELDS = {
    "port",
    "targetPort",
    "path",
    "scheme",
    "interval",
    "scrapeTimeout",
    "honorLabels",
    "relabelings",
}
DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


def resources() -> list[dict[str, Any]]:
    return [doc for path in manifest_files() for doc in load_documents(path)]


def find(kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def workloads() -> list[dict[str, Any]]:
    return [r for r in resources() if r["kind"] in {"Deployment", "Job"}]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    return containers


def container(kind: str, name: str) -> dict[str, Any]:
    (only,) = containers(find(kind, name))
    return only


def config_map_config() -> str:
    text: str = find("ConfigMap", "recoverlink-config")["data"]["recoverlink.yaml"]
    return text


def kustomization() -> dict[str, Any]:
    document = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def pod_files(root: Path, workload: dict[str, Any]) -> Path:
    """Write what the workload's container sees through its volumes under `root` (ConfigMaps from
    these manifests, Secret keys as placeholder files, emptyDirs as directories)."""
    spec = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    (only,) = spec["containers"]
    for mount in only["volumeMounts"]:
        volume = volumes[mount["name"]]
        target = root / mount["mountPath"].lstrip("/")
        if "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)
            continue
        if "configMap" in volume:
            data = find("ConfigMap", volume["configMap"]["name"])["data"]
            items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]
            files = {item["path"]: data[item["key"]] for item in items}
        else:
            items = volume["secret"]["items"]
            files = {item["path"]: f"placeholder-{item['key']}\n" for item in items}
        if "subPath" in mount:
            files = {"": files[mount["subPath"]]}
        for path, content in files.items():
            destination = target / path if path else target
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_text(content, encoding="utf-8")
    return root


def test_every_manifest_passes_the_kubernetes_schema_of_the_oldest_and_newest_release() -> None:
    try:
        import kubernetes_validate
        from kubernetes_validate.utils import latest_version
    except ImportError:
        tool("kubernetes-validate", "pip install kubernetes-validate (the `test` extra)")
        raise
    checked = 0
    for resource in resources():
        if resource["apiVersion"] == OPERATOR_GROUP:
            continue  # no schema offline: see test_operator_resources_use_only_fields_of_their_crds
        for release in (OLDEST_RELEASE, latest_version()):
            try:
                kubernetes_validate.validate(resource, release, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{resource['kind']}/{resource['metadata']['name']} on {release}: {exc.message}")
        checked += 1
    assert checked >= 9


def test_every_manifest_names_its_api_version_kind_and_name() -> None:
    for path in manifest_files():
        for resource in load_documents(path):
            assert resource.get("apiVersion") and resource.get("kind"), path.name
            name = resource.get("metadata", {}).get("name")
            assert name and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), f"{path.name}: {name!r}"
            labels = resource["metadata"].get("labels", {})
            assert labels.get("app.kubernetes.io/part-of") == "recoverlink", f"{path.name}: {name}"


def test_the_kustomization_applies_everything_but_the_secret_example_and_the_migration_job() -> None:
    listed = set(kustomization()["resources"])
    assert listed == {p.name for p in manifest_files()} - {"secret.example.yaml", "migrate-job.yaml"}
    assert (
        kustomization()["namespace"] == "recoverlink" == find("Namespace", "recoverlink")["metadata"]["name"]
    )
    for path in manifest_files():
        if path.name in listed:
            for resource in load_documents(path):
                assert "namespace" not in resource["metadata"], f"{path.name}: kustomize sets the namespace"


def test_kubectl_kustomize_builds_the_set() -> None:
    found = run("sh", "-c", "command -v kubectl")
    if found.returncode != 0:
        pytest.skip("kubectl is not installed here (it is optional: the schema test covers the manifests)")
    done = run("kubectl", "kustomize", str(KUBERNETES))
    assert done.returncode == 0, done.stderr
    built = {
        (r["kind"], r["metadata"]["name"], r["metadata"].get("namespace"))
        for r in yaml.safe_load_all(done.stdout)
    }
    expected = {
        (r["kind"], r["metadata"]["name"], None if r["kind"] == "Namespace" else "recoverlink")
        for path in manifest_files()
        if path.name in kustomization()["resources"]
        for r in load_documents(path)
    }
    assert built == expected


def test_serve_runs_two_replicas_without_a_worker_and_the_workers_on_their_own() -> None:
    assert find("Deployment", "recoverlink-serve")["spec"]["replicas"] == 2
    serve = container("Deployment", "recoverlink-serve")
    worker = container("Deployment", "recoverlink-worker")
    migrate = container("Job", "recoverlink-migrate")
    assert serve["args"][0] == "serve" and "--no-worker" in serve["args"]
    assert worker["args"][0] == "worker"
    assert migrate["args"][:2] == ["db", "upgrade"]
    for each in (serve, worker, migrate):
        assert_cli_accepts([*each["command"], *each["args"]])


def test_probes_ask_the_ports_the_containers_expose() -> None:
    for workload in workloads():
        for each in containers(workload):
            ports = {p["name"]: p["containerPort"] for p in each.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in each:
                    action = each[probe].get("httpGet") or each[probe]["tcpSocket"]
                    assert action["port"] in ports or action["port"] in ports.values(), (each["name"], probe)


def test_the_server_listens_where_its_probes_and_service_look() -> None:
    serve = container("Deployment", "recoverlink-serve")
    config = yaml.safe_load(config_map_config())
    env = {e["name"]: e.get("value") for e in serve["env"]}
    (port,) = serve["ports"]
    assert (
        port["containerPort"]
        == port_of(config["server"]["listen"])
        == port_of(env["RECOVERLINK_LISTEN"])
        == 9471
    )
    assert serve["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert serve["livenessProbe"]["httpGet"]["path"] == "/-/healthy"


def test_the_worker_serves_its_metrics_where_its_probes_and_service_look() -> None:
    worker = container("Deployment", "recoverlink-worker")
    listen = yaml.safe_load(config_map_config())["worker"]["metrics_listen"]
    assert listen.startswith("0.0.0.0:"), "reachable from Prometheus, not only from the pod itself"
    (port,) = worker["ports"]
    assert port["containerPort"] == port_of(listen) == 9472 and port["name"] == "metrics"


def test_services_select_pods_and_target_ports_those_pods_expose() -> None:
    for service in (r for r in resources() if r["kind"] == "Service"):
        selector = service["spec"]["selector"]
        (workload,) = [
            w for w in workloads() if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert workload["kind"] == "Deployment", service["metadata"]["name"]
        ports = {p["name"] for c in containers(workload) for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, service["metadata"]["name"]


def test_the_service_monitor_scrapes_both_services_under_the_jobs_the_rules_alert_on() -> None:
    monitor = find("ServiceMonitor", "recoverlink")["spec"]
    selected = [
        r
        for r in resources()
        if r["kind"] == "Service"
        and monitor["selector"]["matchLabels"].items() <= r["metadata"]["labels"].items()
    ]
    # Without jobLabel the job is the Service's name: the jobs RecoverlinkDown watches.
    assert "jobLabel" not in monitor
    (watched,) = re.findall(r'up\{job=~"([^"]+)"\}', RULES_FILE.read_text(encoding="utf-8"))
    assert {s["metadata"]["name"] for s in selected} == set(watched.split("|"))
    service_ports = {p["name"] for s in selected for p in s["spec"]["ports"]}
    assert {e["port"] for e in monitor["endpoints"]} == service_ports
    assert all(e["path"] == "/metrics" for e in monitor["endpoints"])


def test_environment_variables_are_ones_recoverlink_reads_and_secrets_are_references() -> None:
    known = {loader.ENV_CONFIG, loader.ENV_DATABASE_URL, loader.ENV_LISTEN}
    example = find("Secret", "recoverlink")["stringData"]
    for workload in workloads():
        for each in containers(workload):
            for variable in each.get("env", []):
                assert variable["name"] in known, (
                    f"{each['name']}: recoverlink does not read {variable['name']}"
                )
                if variable["name"] == loader.ENV_DATABASE_URL:
                    ref = variable["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == "recoverlink" and ref["key"] in example
            names = {v["name"] for v in each.get("env", [])}
            assert loader.ENV_DATABASE_URL in names, f"{each['name']}: SQLite is for one process only"
        for volume in workload["spec"]["template"]["spec"]["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] == "recoverlink"
                assert {i["key"] for i in volume["secret"]["items"]} <= set(example)


def dockerfile_uid() -> int:
    (user,) = re.findall(r"^USER (\d+)", (DEPLOY / "Dockerfile").read_text(encoding="utf-8"), re.MULTILINE)
    return int(user)


def test_pods_meet_the_restricted_pod_security_standard_as_the_image_user() -> None:
    assert (
        find("Namespace", "recoverlink")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        == "restricted"
    )
    for workload in workloads():
        pod = workload["spec"]["template"]["spec"]
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == dockerfile_uid()
        assert context["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for each in pod["containers"]:
            security = each["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert security["readOnlyRootFilesystem"] is True


def test_every_container_requests_resources_and_has_a_memory_limit() -> None:
    for workload in workloads():
        for each in containers(workload):
            resources_ = each["resources"]
            assert {"cpu", "memory"} <= set(resources_["requests"]), each["name"]
            assert "memory" in resources_["limits"], each["name"]


def test_the_server_writes_only_to_memory_backed_empty_dirs() -> None:
    serve = find("Deployment", "recoverlink-serve")["spec"]["template"]["spec"]
    empty = {v["name"] for v in serve["volumes"] if "emptyDir" in v}
    (each,) = serve["containers"]
    writable = {m["mountPath"] for m in each["volumeMounts"] if m["name"] in empty}
    metrics_dir = yaml.safe_load(config_map_config())["server"]["metrics_dir"]
    assert metrics_dir in writable, "server.metrics_dir: prometheus_client's multiprocess files"
    assert "/tmp" in writable, "gunicorn's worker heartbeat files"


@pytest.mark.parametrize(
    ("kind", "name"), [("Deployment", "recoverlink-serve"), ("Deployment", "recoverlink-worker")]
)
def test_the_config_passes_recoverlink_check_with_the_files_and_secrets_the_pod_mounts(
    tmp_path: Path, kind: str, name: str
) -> None:
    root = pod_files(tmp_path, find(kind, name))
    config_file = root / "etc" / "recoverlink" / "recoverlink.yaml"
    summary = check_file(config_file)
    assert "config valid" in summary and " 0 rules" not in summary, summary
    for source in secret_sources(load_config(config_file)):
        assert source.file is not None and not source.generate, "every secret comes from the Secret"
        assert source.file.is_relative_to(root), f"{source.file}: mount it from the Secret"
        assert read_secret(source, {}, str(source.file)).startswith("placeholder-")


def test_the_migration_job_mounts_what_db_upgrade_reads(tmp_path: Path) -> None:
    root = pod_files(tmp_path, find("Job", "recoverlink-migrate"))
    url = "postgresql+psycopg://recoverlink@postgres/recoverlink"
    settings = load_settings(
        root / "etc" / "recoverlink" / "recoverlink.yaml", {loader.ENV_DATABASE_URL: url}
    )
    assert settings.database_url == url


def test_the_config_is_the_image_config_with_secrets_from_the_secret() -> None:
    ours = yaml.safe_load(config_map_config())
    image = yaml.safe_load((DEPLOY / "container" / "recoverlink.yaml").read_text(encoding="utf-8"))
    assert without(ours, SECRET_PATHS) == without(image, SECRET_PATHS)


def test_the_generated_manifests_are_up_to_date() -> None:
    done = run(sys.executable, str(KUBERNETES / "render.py"), "--check")
    assert done.returncode == 0, done.stderr


def test_the_catalog_and_rules_config_maps_hold_the_repository_files() -> None:
    repository = DEPLOY.parent
    catalog = find("ConfigMap", "recoverlink-catalog")["data"]
    rules = find("ConfigMap", "recoverlink-rules")["data"]
    assert catalog == {
        "catalog.yaml": (DEPLOY / "catalog.yaml").read_text(encoding="utf-8"),
        "catalog-info.yaml": (DEPLOY / "backstage" / "catalog-info.yaml").read_text(encoding="utf-8"),
    }
    assert rules == {
        p.name: p.read_text(encoding="utf-8") for p in sorted((repository / "rules").glob("*.yaml"))
    }


def test_the_prometheus_rule_holds_exactly_the_shipped_rule_groups() -> None:
    spec = find("PrometheusRule", "recoverlink")["spec"]
    assert spec == yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))


def test_the_prometheus_rule_passes_promtool_check_rules(tmp_path: Path) -> None:
    promtool = tool("promtool", "apt-get install prometheus")
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump({"groups": find("PrometheusRule", "recoverlink")["spec"]["groups"]}))
    done = run(promtool, "check", "rules", str(extracted))
    assert done.returncode == 0, done.stdout + done.stderr


def test_operator_resources_use_only_fields_of_their_crds() -> None:
    for group in find("PrometheusRule", "recoverlink")["spec"]["groups"]:
        assert set(group) <= RULE_GROUP_FIELDS and group["name"], group.get("name")
        assert DURATION.match(group.get("interval", "0")), group["name"]
        for rule in group["rules"]:
            assert set(rule) <= RULE_FIELDS and ("alert" in rule) != ("record" in rule), rule
            assert DURATION.match(rule.get("for", "0")), rule
            for mapping in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in rule.get(mapping, {}).values()), rule
    monitor = find("ServiceMonitor", "recoverlink")
    assert monitor["apiVersion"] == OPERATOR_GROUP
    assert set(monitor["spec"]) <= SERVICE_MONITOR_FIELDS and {"selector", "endpoints"} <= set(
        monitor["spec"]
    )
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= ENDPOINT_FIELDS and DURATION.match(endpoint["interval"]), endpoint


def test_the_secret_example_holds_only_placeholders() -> None:
    text = (KUBERNETES / "secret.example.yaml").read_text(encoding="utf-8")
    assert "EXAMPLE ONLY" in text
    for key, value in find("Secret", "recoverlink")["stringData"].items():
        assert "REPLACE_ME" in value, f"{key}: a placeholder, never a real value"
