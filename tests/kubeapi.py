"""A stand-in for the Kubernetes API on loopback: just enough for Helm's install action.

It answers discovery, reports every object as absent, and records what Helm creates: the
chart's objects arrive as JSON, exactly the rendered manifests (Helm's own release Secret
arrives as protobuf and is skipped).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import yaml
from aiohttp import web

RESOURCES = {
    "v1": [("configmaps", "ConfigMap"), ("secrets", "Secret"), ("services", "Service"),
           ("serviceaccounts", "ServiceAccount"), ("pods", "Pod"),
           ("namespaces", "Namespace")],
    "apps/v1": [("deployments", "Deployment"), ("statefulsets", "StatefulSet")],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget")],
    "networking.k8s.io/v1": [("ingresses", "Ingress"), ("networkpolicies", "NetworkPolicy")],
    "monitoring.coreos.com/v1": [("servicemonitors", "ServiceMonitor"),
                                 ("prometheusrules", "PrometheusRule")],
    "monitoring.coreos.com/v1alpha1": [("alertmanagerconfigs", "AlertmanagerConfig")],
}


def _resource_list(group_version: str) -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": [{"name": name, "singularName": kind.lower(), "kind": kind,
                           "namespaced": name != "namespaces",
                           "verbs": ["create", "delete", "get", "list", "patch", "update",
                                     "watch"]}
                          for name, kind in RESOURCES[group_version]]}


class KubeApi:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self._uids = itertools.count(1)

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path.rstrip("/")
        if request.method == "GET":
            return self._get(path)
        if request.method == "POST":
            body = await request.read()
            try:
                obj = json.loads(body)
            except ValueError:  # Helm's release record, in protobuf
                return web.Response(status=201, body=body,
                                    content_type="application/vnd.kubernetes.protobuf")
            self.created.append(obj)
            echoed = {**obj, "metadata": {**obj.get("metadata", {}),
                                          "uid": f"uid-{next(self._uids)}",
                                          "resourceVersion": "1"}}
            return web.json_response(echoed, status=201)
        if request.method in ("PUT", "PATCH"):
            return web.json_response(json.loads(await request.read() or b"{}"))
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def _get(self, path: str) -> web.Response:
        if path == "/version":
            return web.json_response({"major": "1", "minor": "31", "gitVersion": "v1.31.0",
                                      "platform": "linux/amd64"})
        if path == "/api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"],
                                      "serverAddressByClientCIDRs": []})
        if path == "/apis":
            by_group: dict[str, list[dict[str, str]]] = {}
            for group_version in RESOURCES:
                if "/" not in group_version:
                    continue
                group, version = group_version.split("/")
                by_group.setdefault(group, []).append({"groupVersion": group_version,
                                                       "version": version})
            groups = [{"name": group, "versions": versions, "preferredVersion": versions[0]}
                      for group, versions in by_group.items()]
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1",
                                      "groups": groups})
        if path == "/api/v1":
            return web.json_response(_resource_list("v1"))
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "apis" and f"{parts[2]}/{parts[3]}" in RESOURCES:
            return web.json_response(_resource_list(f"{parts[2]}/{parts[3]}"))
        kind = parts[-1] if parts else ""
        if any(kind == name for resources in RESOURCES.values() for name, _ in resources):
            return web.json_response({"kind": "List", "apiVersion": "v1", "items": [],
                                      "metadata": {"resourceVersion": "1"}})
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "reason": "NotFound", "code": 404,
                                  "message": f"{path} not found"}, status=404)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def kubeconfig(self, url: str) -> str:
        """A kubeconfig as a YAML string (helm-sdkpy takes YAML text or a path)."""
        return yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": url}}],
            "users": [{"name": "test", "user": {"token": "test"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test",
                                                      "namespace": "monitoring"}}],
        })
