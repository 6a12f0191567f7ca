"""The stand-ins against the lab's real API server: a labelled Pod runs, is served, and goes away.

Each test creates its own objects in one namespace and waits (bounded) for what kubelet, the
endpointslice controller and an ingress controller would produce. The Pod is a small Python HTTP
server started from its own command line with ``$(POD_IP)``; it answers with its name and the
address it listens on, so a test learns where the process runs from the response itself.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.lab.standins._kube import ApiError, Kube

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

SERVER = """
import http.server, sys
address, name = sys.argv[1], sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{name} {address} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer((address, 8089), Handler).serve_forever()
"""


@pytest.fixture(scope="module")
def lab_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The lab's settings: from the ``lab`` fixture when there is one, else from ``.lab/env``."""
    with contextlib.suppress(pytest.FixtureLookupError):
        env: dict[str, str] = dict(request.getfixturevalue("lab").env)
        return env
    path = ROOT / ".lab" / "env"
    if not path.exists():
        pytest.skip("the lab is not up: python -m tests.lab.labctl up")
    lines = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in lines if not key.startswith("#")}


@pytest.fixture(scope="module")
def kube(lab_env: dict[str, str]) -> Kube:
    return Kube(lab_env["KUBECONFIG"])


@pytest.fixture(scope="module")
def namespace(kube: Kube) -> Iterator[str]:
    name = f"standins-{uuid.uuid4().hex[:8]}"
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    # The ServiceAccount admission plugin refuses Pods until the namespace's `default` exists.
    wait_for(
        lambda: _get(kube, f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        what="the namespace's default ServiceAccount",
    )
    yield name
    kube.request("DELETE", f"/api/v1/namespaces/{name}")


def wait_for(probe: Callable[[], T | None], *, what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def _get(kube: Kube, path: str) -> dict[str, Any] | None:
    try:
        return kube.get(path)
    except ApiError as error:
        if error.status == 404:
            return None
        raise


def _pod(name: str, *, labelled: bool = True, command: list[str] | None = None) -> dict[str, Any]:
    labels = {"app": name, **({"acmebridge.io/solver": "test"} if labelled else {})}
    container = {
        "name": "server",
        "image": "python:3",
        "command": command or ["python3", "-c", SERVER, "$(POD_IP)", "$(POD_NAME)"],
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "ports": [{"name": "http", "containerPort": 8089}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
    }
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [container],
        },
    }


def _create(kube: Kube, namespace: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    prefix = "/apis/networking.k8s.io/v1" if plural == "ingresses" else "/api/v1"
    return kube.request("POST", f"{prefix}/namespaces/{namespace}/{plural}", body=body)


def _condition(pod: dict[str, Any], kind: str) -> str | None:
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition["type"] == kind:
            return str(condition["status"])
    return None


def _ready_pod(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pod = _get(kube, f"/api/v1/namespaces/{namespace}/pods/{name}")
        return pod if pod and _condition(pod, "Ready") == "True" else None

    return wait_for(ready, what=f"Pod {name} to become Ready")


def _http_get(port: int, host: str, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _pid(pod: dict[str, Any]) -> int:
    container_id = pod["status"]["containerStatuses"][0]["containerID"]
    return int(container_id.removeprefix("standin://"))


def test_a_labelled_pod_runs_is_ready_and_is_reached_through_its_ingress(
    kube: Kube, namespace: str, lab_env: dict[str, str]
) -> None:
    _create(kube, namespace, "pods", _pod("web"))
    service = {
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
    _create(kube, namespace, "services", service)
    host = f"web.{namespace}.example"
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    ingress = {
        "metadata": {"name": "web"},
        "spec": {
            "ingressClassName": lab_env.get("LAB_INGRESS_CLASS", "lab"),
            "rules": [
                {
                    "host": host,
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                }
            ],
        },
    }
    _create(kube, namespace, "ingresses", ingress)

    pod = _ready_pod(kube, namespace, "web")
    pod_ip = pod["status"]["podIP"]
    assert pod["spec"]["nodeName"], "the Pod was bound to the lab's node"
    assert pod["status"]["phase"] == "Running"
    # EndpointSlices refuse loopback addresses, so Pods report a pod-network address.
    assert not ipaddress.ip_address(pod_ip).is_loopback

    def ready_endpoint() -> list[str] | None:
        slices = kube.get(
            f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
            {"labelSelector": "kubernetes.io/service-name=web"},
        )["items"]
        addresses = [
            address
            for endpoint_slice in slices
            for endpoint in endpoint_slice.get("endpoints") or []
            if (endpoint.get("conditions") or {}).get("ready")
            for address in endpoint["addresses"]
        ]
        return addresses or None

    assert wait_for(ready_endpoint, what="an EndpointSlice with the Pod") == [pod_ip]

    port = int(lab_env.get("LAB_HTTP01_PORT", "5002"))
    status, body = _http_get(port, f"{host}:{port}", "/.well-known/acme-challenge/x?y=1")
    assert status == 200, body
    name, address, path = body.split(" ")
    assert (name, path) == ("web", "/.well-known/acme-challenge/x?y=1")
    assert ipaddress.ip_address(address).is_loopback, "the process listens on loopback"
    assert _http_get(port, f"nobody.{namespace}.example", "/")[0] == 404


def test_deleting_a_pod_stops_its_process_and_removes_the_pod(kube: Kube, namespace: str) -> None:
    _create(kube, namespace, "pods", _pod("doomed"))
    pod = _ready_pod(kube, namespace, "doomed")
    pid = _pid(pod)
    assert Path(f"/proc/{pid}").exists()

    # A bound Pod's deletion is graceful: the API server waits for the node to confirm.
    kube.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/doomed")
    wait_for(
        lambda: _get(kube, f"/api/v1/namespaces/{namespace}/pods/doomed") is None,
        what="the Pod object to go away",
    )
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), what=f"process {pid} to end", timeout=5)


def test_an_unlabelled_pod_stays_pending_and_untouched(kube: Kube, namespace: str) -> None:
    created = _create(kube, namespace, "pods", _pod("ignored", labelled=False))
    # A labelled Pod created afterwards becoming Ready shows the agent has seen both.
    _create(kube, namespace, "pods", _pod("witness"))
    _ready_pod(kube, namespace, "witness")

    pod = kube.get(f"/api/v1/namespaces/{namespace}/pods/ignored")
    assert not pod["spec"].get("nodeName")
    assert pod["status"].get("phase") == "Pending"
    assert pod["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"], (
        "nobody wrote to it"
    )


def test_a_pod_whose_process_exits_reports_the_exit_code(kube: Kube, namespace: str) -> None:
    command = ["python3", "-c", "import sys; print('bye'); sys.exit(3)"]
    _create(kube, namespace, "pods", _pod("quitter", command=command))

    def finished() -> dict[str, Any] | None:
        pod = _get(kube, f"/api/v1/namespaces/{namespace}/pods/quitter")
        return pod if pod and pod.get("status", {}).get("phase") == "Failed" else None

    pod = wait_for(finished, what="the Pod to fail")
    state = pod["status"]["containerStatuses"][0]["state"]
    assert state["terminated"]["exitCode"] == 3, json.dumps(state)
    assert _condition(pod, "Ready") == "False"


def test_a_pod_ignoring_sigterm_is_killed_after_a_capped_grace_period(
    kube: Kube, namespace: str
) -> None:
    pod = _pod("stubborn", command=["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"])
    pod["spec"]["terminationGracePeriodSeconds"] = 300
    del pod["spec"]["containers"][0]["readinessProbe"], pod["spec"]["containers"][0]["ports"]
    _create(kube, namespace, "pods", pod)
    pid = _pid(_ready_pod(kube, namespace, "stubborn"))

    began = time.monotonic()
    kube.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/stubborn")
    wait_for(
        lambda: _get(kube, f"/api/v1/namespaces/{namespace}/pods/stubborn") is None,
        what="the Pod object to go away",
    )
    assert time.monotonic() - began < 10, "the agent does not wait out a 300s grace period"
    assert not Path(f"/proc/{pid}").exists()
