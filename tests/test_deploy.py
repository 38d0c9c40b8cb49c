"""Deployment: the Dockerfile (hadolint, its steps reproduced) and the Helm chart (real Helm)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from aiohttp.test_utils import TestServer
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from exporter.config import Place, parse_config
from exporter.healthcheck import url_from
from tests.conftest import free_port
from tests.kubeapi import KubeApi

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "unpod-exporter"
HELM_PYTHON = ROOT / ".venv-helm" / "bin" / "python"
MONITORING = ROOT / "monitoring"


# --- Dockerfile ------------------------------------------------------------------------------

def test_hadolint_finds_nothing_above_info():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, "--failure-threshold", "warning", "Dockerfile"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_dockerfile_is_production_shaped():
    text = dockerfile()
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2  # multi-stage
    assert "USER 10001:10001" in text
    assert "EXPOSE 9877" in text
    assert 'ENTRYPOINT ["unpod-exporter"]' in text
    assert "HEALTHCHECK" in text and "curl" not in text and "wget" not in text
    assert "org.opencontainers.image.source" in text


# The image itself is built and run for real by scripts/image-test.sh (buildah and podman).

@pytest.mark.parametrize("argv, url", [
    (["unpod-exporter", "--demo"], "http://127.0.0.1:9877/-/healthy"),
    (["/opt/venv/bin/unpod-exporter", "--web.listen-address", "127.0.0.1:19999"],
     "http://127.0.0.1:19999/-/healthy"),
    (["unpod-exporter", "--web.listen-address=[::]:9000"], "http://[::1]:9000/-/healthy"),
    (["python", "-m", "exporter", "--web.listen-address", "0.0.0.0:1234"],
     "http://127.0.0.1:1234/-/healthy"),
    (["unpod-exporter", "--web.config.file", "web.yml", "--web.listen-address", ":9443"],
     "https://127.0.0.1:9443/-/healthy"),
    (["unpod-exporter", "--web.config.file", "missing.yml"], "127.0.0.1:9877/-/healthy"),
])
def test_healthcheck_url_follows_the_command_line(tmp_path, argv, url):
    (tmp_path / "web.yml").write_text("tls_server_config: {cert_file: a.crt, key_file: a.key}\n")
    assert url_from(argv, tmp_path) == url


# The check finds the exporter among the processes it sees, as in a container, where there is
# one. On a shared machine another exporter would answer for the stopped one, so the test gives
# it a process namespace of its own (a fresh /proc), as the container runtime does.
IN_OWN_PIDS = """
import subprocess, sys, time
check = [sys.executable, "-m", "exporter.healthcheck"]
exporter = subprocess.Popen([sys.executable, "-m", "exporter", "--demo",
                             "--web.listen-address", sys.argv[1]])
deadline = time.monotonic() + 30
while subprocess.run(check).returncode != 0 and time.monotonic() < deadline:
    time.sleep(0.2)
running = subprocess.run(check).returncode
exporter.terminate()
exporter.wait(timeout=10)
print(running, subprocess.run(check).returncode)
"""


def test_healthcheck_finds_the_running_exporter():
    # on a free port, as a non-default listen address
    result = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", IN_OWN_PIDS,
         f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "1"]  # healthy while it runs, unhealthy once stopped


def test_lock_file_matches_pyproject():
    """requirements.lock (uv pip compile --generate-hashes) pins every dependency of
    pyproject.toml within its range, hashes every pin, and holds nothing that no dependency
    needs: a change to the dependencies without a refreshed lock fails here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {canonicalize_name(Requirement(r).name): Requirement(r)
              for r in project["dependencies"]}
    text = (ROOT / "requirements.lock").read_text()
    pins: dict[str, str] = {}
    needed_by: dict[str, set[str]] = {}
    current = ""
    for line in text.splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", line):
            current = canonicalize_name(match[1])
            pins[current] = match[2]
            assert line.rstrip().endswith("\\"), f"{current} has no hashes"
        elif re.fullmatch(r"\s+#\s+via", line):
            continue  # the names follow, one a line
        elif match := re.fullmatch(r"\s+#\s+(?:via\s+)?([A-Za-z0-9_.-]+)(?: \(.*\))?", line):
            needed_by.setdefault(current, set()).add(canonicalize_name(match[1]))
    for name, requirement in wanted.items():
        assert name in pins, f"{name} is in pyproject.toml but not in requirements.lock"
        assert pins[name] in requirement.specifier, f"{name}=={pins[name]} !~ {requirement}"
        assert "unpod-exporter" in needed_by.get(name, set()), f"{name} not via the project"
    for name, parents in needed_by.items():
        assert parents & ({"unpod-exporter"} | set(pins)), f"{name} is needed by nothing"
    stale = {n for n, parents in needed_by.items()
             if parents == {"unpod-exporter"} and n not in wanted}
    assert not stale, f"in the lock but no longer in pyproject.toml: {stale}"


# --- Helm ------------------------------------------------------------------------------------

def helm(*args: str) -> Any:
    assert HELM_PYTHON.exists(), "no .venv-helm: scripts/test.sh creates it (Python >= 3.12)"
    result = subprocess.run([str(HELM_PYTHON), str(ROOT / "tests" / "helm_action.py"), *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


WEB_TLS = {"enabled": True,
           "content": {"tls_server_config": {"cert_file": "tls.crt", "key_file": "tls.key"},
                       "basic_auth_users": {"prometheus": "$2y$10$" + "a" * 53}},
           "files": {"tls.crt": "CERT", "tls.key": "KEY"}}
TOGGLES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything-off": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False},
                       "grafanaDashboard": {"enabled": False}},
    "token-value": {"token": {"value": "tok-from-values"}},
    "existing-secret": {"token": {"existingSecret": "unpod-token", "existingSecretKey": "api"}},
    "web-config": {"webConfig": WEB_TLS,
                   "serviceMonitor": {"scheme": "https", "tlsConfig": {"insecureSkipVerify": True},
                                      "basicAuth": {"username": {"name": "s", "key": "u"}}}},
    "demo": {"demo": True, "grafanaDashboard": {"namespace": "grafana"}},
    "sharded": {"shards": 3},
    "alertmanager-config": {"alertmanagerConfig": {"enabled": True}},
    "webhook": {"webhook": {"enabled": True, "secret": {"existingSecret": "unpod-webhook"},
                            "ingress": {"enabled": True, "host": "hooks.example.com"}},
                "networkPolicy": {"enabled": True}},
}


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, item in override.items():
        out[key] = merge(out[key], item) if isinstance(item, dict) and isinstance(
            out.get(key), dict) else item
    return out


@pytest.mark.parametrize("toggle", sorted(TOGGLES))
def test_helm_lint_is_clean(toggle, tmp_path):
    chart = tmp_path / "unpod-exporter"
    shutil.copytree(CHART, chart)  # symlinks resolved: the copy holds the mixin's files
    values = merge(yaml.safe_load((CHART / "values.yaml").read_text()), TOGGLES[toggle])
    (chart / "values.yaml").write_text(yaml.safe_dump(values))
    result = helm("lint", str(chart))
    assert result["TotalChartsLinted"] == 1
    assert not result["Messages"], result["Messages"]
    assert not result["Errors"], result["Errors"]


async def install(values: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    kube = KubeApi()
    server = TestServer(kube.app(), host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        await asyncio.to_thread(helm, "install", str(CHART), kube.kubeconfig(url),
                                json.dumps(values))
    finally:
        await server.close()
    return {(obj["kind"], obj["metadata"]["name"]): obj for obj in kube.created}


def validate(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    version = kubernetes_validate.latest_version()
    for obj in objects.values():
        if obj["apiVersion"].startswith("monitoring.coreos.com"):
            continue  # CRDs: checked field by field below
        kubernetes_validate.validate(obj, version, strict=True)


async def test_helm_install_renders_valid_production_objects():
    objects = await install({"token": {"value": "tok-from-values"}})
    validate(objects)
    assert {kind for kind, _ in objects} == {"ConfigMap", "Secret", "Service", "Deployment",
                                            "ServiceMonitor", "PrometheusRule"}
    deployment = objects[("Deployment", "unpod-unpod-exporter")]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 1
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"]["memory"]
    assert "checksum/config" in pod["metadata"]["annotations"]

    config_map = objects[("ConfigMap", "unpod-unpod-exporter")]
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert config["api"]["token_file"] == "/etc/unpod-exporter/token/token"
    parse_config(config)  # the exporter accepts what the chart renders
    secret = objects[("Secret", "unpod-unpod-exporter-token")]
    assert secret["data"]["token"] == "dG9rLWZyb20tdmFsdWVz"

    service = objects[("Service", "unpod-unpod-exporter")]
    monitor = objects[("ServiceMonitor", "unpod-unpod-exporter")]
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert {"targetLabel": "job", "replacement": "unpod-exporter"} in \
        monitor["spec"]["endpoints"][0]["relabelings"]


async def test_chart_rules_and_dashboard_are_the_mixin_files_byte_for_byte():
    objects = await install({"grafanaDashboard": {"enabled": True},
                             "prometheusRule": {"additionalLabels": {"release": "kps"}}})
    rule = objects[("PrometheusRule", "unpod-unpod-exporter")]
    expected = [*yaml.safe_load((MONITORING / "rules.yaml").read_text())["groups"],
                *yaml.safe_load((MONITORING / "alerts.yaml").read_text())["groups"]]
    assert rule["spec"]["groups"] == expected
    assert rule["metadata"]["labels"]["release"] == "kps"
    dashboard = objects[("ConfigMap", "unpod-unpod-exporter-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    data = dashboard["data"]["unpod.json"].encode()
    assert hashlib.sha256(data).digest() == hashlib.sha256(
        (MONITORING / "dashboards" / "unpod.json").read_bytes()).digest()


def crd_matchers(matchers: list[str]) -> list[dict[str, str]]:
    """Alertmanager's matcher strings in the AlertmanagerConfig shape, parsed independently."""
    parsed = []
    for matcher in matchers:
        match = re.fullmatch(r'(\w+)(=~|!~|!=|=)"(.*)"', matcher)
        assert match, matcher
        parsed.append({"name": match[1], "value": match[3], "matchType": match[2]})
    return parsed


async def test_alertmanager_config_is_the_example_in_the_operators_shape():
    assert "AlertmanagerConfig" not in {kind for kind, _ in await install({})}  # opt-in
    objects = await install({"alertmanagerConfig": {"enabled": True,
                                                    "additionalLabels": {"alertmanager": "main"}}})
    config = objects[("AlertmanagerConfig", "unpod-unpod-exporter")]
    assert config["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    assert config["metadata"]["labels"]["alertmanager"] == "main"
    example = yaml.safe_load((MONITORING / "alertmanager.example.yaml").read_text())
    route, spec = example["route"], config["spec"]
    assert spec["route"] == {
        "receiver": route["receiver"], "groupBy": route["group_by"],
        "groupWait": route["group_wait"], "groupInterval": route["group_interval"],
        "repeatInterval": route["repeat_interval"],
        "routes": [{"receiver": r["receiver"], "matchers": crd_matchers(r["matchers"])}
                   for r in route["routes"]]}
    assert spec["inhibitRules"] == [
        {"sourceMatch": crd_matchers(rule["source_matchers"]),
         "targetMatch": crd_matchers(rule["target_matchers"]), "equal": rule["equal"]}
        for rule in example["inhibit_rules"]]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert spec["receivers"] == values["alertmanagerConfig"]["receivers"]
    assert {r["name"] for r in spec["receivers"]} >= {r["receiver"] for r in route["routes"]}
    assert all(any(k in r for k in ("webhookConfigs", "pagerdutyConfigs", "emailConfigs"))
               for r in spec["receivers"])


async def test_shards_make_a_statefulset_and_replicas_are_refused():
    objects = await install({"shards": 3})
    validate(objects)
    workload = objects[("StatefulSet", "unpod-unpod-exporter")]
    assert workload["spec"]["replicas"] == 3
    args = workload["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--shard.count=3" in args and "--shard.index=auto" in args
    assert ("Deployment", "unpod-unpod-exporter") not in objects
    with pytest.raises(AssertionError, match="use shards"):
        await install({"replicaCount": 2})


async def test_config_change_rolls_the_pod_and_web_config_is_mounted():
    first = await install({})
    second = await install({"config": {"orgs": [{"handle": "other-org"}]}, "webConfig": WEB_TLS})
    validate(second)

    def pod(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
        return objects[("Deployment", "unpod-unpod-exporter")]["spec"]["template"]

    assert (pod(first)["metadata"]["annotations"]["checksum/config"]
            != pod(second)["metadata"]["annotations"]["checksum/config"])
    container = pod(second)["spec"]["containers"][0]
    assert "--web.config.file=/etc/unpod-exporter/web/web.yml" in container["args"]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    web = second[("Secret", "unpod-unpod-exporter-web")]
    assert set(web["data"]) == {"web.yml", "tls.crt", "tls.key"}
    assert web["type"] == "Opaque"


# --- the webhook receiver -------------------------------------------------------------------

WEBHOOK = {"enabled": True, "secret": {"existingSecret": "unpod-webhook", "existingSecretKey": "s"},
           "agents": {"space-agent-8qmk42": {"org": "my-org", "space": "outbound-sales"}},
           "ingress": {"enabled": True, "className": "nginx", "host": "hooks.example.com",
                       "tls": [{"secretName": "hooks-tls", "hosts": ["hooks.example.com"]}]}}


async def test_webhook_is_off_by_default_and_exposed_on_its_own_port_when_on():
    kinds = {kind for kind, _ in await install({})}
    assert not kinds & {"Ingress", "NetworkPolicy"}
    objects = await install({"webhook": WEBHOOK, "networkPolicy": {"enabled": True}})
    validate(objects)
    name = "unpod-unpod-exporter"
    pod = objects[("Deployment", name)]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "metrics": 9877, "webhook": 9878}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "webhook-secret")
    volume = next(v for v in pod["volumes"] if v["name"] == "webhook-secret")
    assert volume["secret"]["secretName"] == "unpod-webhook"  # the existing Secret
    assert ("Secret", f"{name}-webhook") not in objects  # none of the chart's own

    config = yaml.safe_load(objects[("ConfigMap", name)]["data"]["config.yaml"])
    assert config["webhook"]["secret_file"] == mount["mountPath"] + "/s"
    webhook = parse_config(config).webhook  # the exporter accepts what the chart renders
    assert webhook is not None and webhook.address == (None, 9878)
    assert webhook.places() == {"space-agent-8qmk42": Place("my-org", "outbound-sales")}

    service = objects[("Service", f"{name}-webhook")]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["webhook"]
    assert [p["targetPort"] for p in objects[("Service", name)]["spec"]["ports"]] == ["metrics"]
    ingress = objects[("Ingress", f"{name}-webhook")]["spec"]
    assert ingress["ingressClassName"] == "nginx" and ingress["tls"][0]["secretName"] == "hooks-tls"
    paths = ingress["rules"][0]["http"]["paths"]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/webhook", "Exact")]
    assert paths[0]["backend"]["service"] == {"name": f"{name}-webhook",
                                              "port": {"name": "webhook"}}

    policy = objects[("NetworkPolicy", name)]["spec"]
    assert policy["podSelector"]["matchLabels"] == \
        objects[("Deployment", name)]["spec"]["selector"]["matchLabels"]
    rules = {rule["ports"][0]["port"]: rule for rule in policy["ingress"]}
    assert rules["metrics"]["from"] == [{"namespaceSelector": {}}]  # the cluster only
    assert "from" not in rules["webhook"]  # Unpod's servers: from anywhere


async def test_webhook_secret_from_values_and_the_refusals():
    objects = await install({"webhook": {"enabled": True, "secret": {"value": "whs-1"}}})
    secret = objects[("Secret", "unpod-unpod-exporter-webhook")]
    assert secret["data"] == {"secret": "d2hzLTE="}
    with pytest.raises(AssertionError, match="needs webhook.secret.existingSecret"):
        await install({"webhook": {"enabled": True}})
    with pytest.raises(AssertionError, match="must differ from service.port"):
        await install({"webhook": {"enabled": True, "port": 9877, "secret": {"value": "x"}}})
