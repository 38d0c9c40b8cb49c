"""Deployment: the Dockerfile (hadolint, its steps reproduced) and the Helm chart (real Helm)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from aiohttp.test_utils import TestServer

from exporter.config import parse_config
from tests.conftest import free_port, parse_metrics, value
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


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory) -> Path:
    """The image's build steps, outside Docker: only the files the Dockerfile copies go into
    the context, the wheel is built the same way and installed into a fresh venv."""
    tmp = tmp_path_factory.mktemp("image")
    context = tmp / "src"
    context.mkdir()
    for line in dockerfile().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, _ = line.split()[1:]
            for source in sources:
                path = ROOT / source
                if path.is_dir():
                    shutil.copytree(path, context / source,
                                    ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(path, context / source)
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir",
                    str(wheels), "."], cwd=context, check=True, timeout=300)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    wheel = next(wheels.glob("*.whl"))
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True,
                   timeout=600)
    return venv


def test_image_entry_point_version(image_venv):
    result = subprocess.run([str(image_venv / "bin" / "unpod-exporter"), "--version"],
                            capture_output=True, text=True, timeout=30)
    from exporter import __version__
    assert result.returncode == 0 and result.stdout.strip() == f"unpod-exporter {__version__}"


def test_image_demo_smoke_and_healthcheck(image_venv, tmp_path):
    port = free_port()
    python = str(image_venv / "bin" / "python")
    proc = subprocess.Popen([str(image_venv / "bin" / "unpod-exporter"), "--demo",
                             "--web.listen-address", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    try:
        deadline = time.monotonic() + 10
        calls = None
        while time.monotonic() < deadline and not calls:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=2) as response:
                    calls = value(parse_metrics(response.read().decode()), "unpod_calls",
                                  org="acme-telecom")
            except OSError:
                time.sleep(0.1)
        assert calls and calls > 0
        check = [python, "-m", "exporter.healthcheck"]
        assert subprocess.run([*check, f"127.0.0.1:{port}/-/healthy"], timeout=30).returncode == 0
        assert subprocess.run([*check, f"127.0.0.1:{free_port()}/-/healthy"],
                              timeout=30).returncode == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert list(tmp_path.iterdir()) == []  # wrote nothing: fine on a read-only root


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
