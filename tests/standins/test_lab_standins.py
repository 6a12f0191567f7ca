"""The stand-ins against the lab's real API server: a labelled Pod runs, is served, and goes away.

Each test creates its own objects in a fresh namespace and waits (bounded) for what kubelet, the
endpointslice controller and an ingress controller would produce. The Pod is a small Python HTTP
server started from its own command line with ``$(POD_IP)``; it answers with its name and the
address it listens on, so a test learns where the process runs from the response itself.

While the lab's real node is up (`make node-up`), the node agent binds no Pod: the scheduler
places every Pod on the real node. The tests then create their Pods bound to the agent's Node,
which it runs as before; everything but the binding is tested the same way.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.lab.labenv import Lab
from tests.lab.standins._kube import ApiError, Kube
from tests.lab.waits import wait_for

pytestmark = pytest.mark.lab

JSONObj = dict[str, Any]
WAIT = 30.0  # seconds; each step takes well under one on an idle lab

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
def api(lab: Lab) -> Kube:
    return Kube(str(lab.kubeconfig))


def _pod_spec(
    name: str,
    *,
    placement: dict[str, str],
    labelled: bool = True,
    command: list[str] | None = None,
) -> JSONObj:
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
            **placement,
        },
    }


class Namespace:
    """The objects of one test namespace, read and written through the real API server."""

    def __init__(self, api: Kube, name: str, placement: dict[str, str]) -> None:
        self.api, self.name = api, name
        # Empty, or the agent's Node while the real node is up (Lab.node_agent_placement).
        self.placement = placement

    def path(self, plural: str, name: str = "") -> str:
        group = "/apis/networking.k8s.io/v1" if plural == "ingresses" else "/api/v1"
        if plural == "endpointslices":
            group = "/apis/discovery.k8s.io/v1"
        return f"{group}/namespaces/{self.name}/{plural}" + (f"/{name}" if name else "")

    def create(self, plural: str, body: JSONObj) -> JSONObj:
        return self.api.request("POST", self.path(plural), body=body)

    def get(self, plural: str, name: str) -> JSONObj | None:
        try:
            return self.api.get(self.path(plural, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def delete_pod(self, name: str) -> None:
        self.api.request("DELETE", self.path("pods", name))

    def wait_pod(self, name: str, until: str) -> JSONObj:
        """Waits until the Pod is Ready (``until="Ready"``) or in the given phase."""

        def reached() -> JSONObj | None:
            pod = self.get("pods", name)
            if pod is None:
                return None
            if until == "Ready":
                return pod if _condition(pod, "Ready") == "True" else None
            return pod if pod.get("status", {}).get("phase") == until else None

        pod = wait_for(reached, timeout=WAIT, describe=lambda: self._describe(name, until))
        assert pod is not None
        return pod

    def wait_gone(self, name: str) -> None:
        wait_for(
            lambda: self.get("pods", name) is None,
            timeout=WAIT,
            describe=lambda: self._describe(name, "to go away"),
        )

    def _describe(self, name: str, until: str) -> str:
        pod = self.get("pods", name)
        status = json.dumps(pod.get("status") if pod else None, indent=1)
        return f"Pod {self.name}/{name} ({until}); its status: {status}"


@pytest.fixture
def ns(api: Kube, namespace: str, lab: Lab) -> Namespace:
    return Namespace(api, namespace, lab.node_agent_placement())


def _condition(pod: JSONObj, kind: str) -> str | None:
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition["type"] == kind:
            return str(condition["status"])
    return None


def _pid(pod: JSONObj) -> int:
    container_id: str = pod["status"]["containerStatuses"][0]["containerID"]
    return int(container_id.removeprefix("standin://"))


def _http_get(port: int, host: str, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_a_labelled_pod_runs_is_ready_and_is_reached_through_its_ingress(
    ns: Namespace, lab: Lab
) -> None:
    ns.create("pods", _pod_spec("web", placement=ns.placement))
    ports = [{"name": "http", "port": 80, "targetPort": "http"}]
    ns.create(
        "services",
        {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": ports}},
    )
    host = f"web.{ns.name}.example"
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    paths = [{"path": "/", "pathType": "Prefix", "backend": backend}]
    rules = [{"host": host, "http": {"paths": paths}}]
    ingress_spec = {"ingressClassName": lab.ingress_class, "rules": rules}
    ns.create("ingresses", {"metadata": {"name": "web"}, "spec": ingress_spec})

    pod = ns.wait_pod("web", "Ready")
    pod_ip = pod["status"]["podIP"]
    # Bound by the agent, or by the test while the real node is up.
    assert pod["spec"]["nodeName"] == "lab-node", "the Pod was bound to the agent's node"
    assert pod["status"]["phase"] == "Running"
    # EndpointSlices refuse loopback addresses, so Pods report a pod-network address.
    assert not ipaddress.ip_address(pod_ip).is_loopback

    def ready_addresses() -> list[str] | None:
        slices = ns.api.get(
            ns.path("endpointslices"), {"labelSelector": "kubernetes.io/service-name=web"}
        )
        addresses = [
            address
            for endpoint_slice in slices["items"]
            for endpoint in endpoint_slice.get("endpoints") or []
            if (endpoint.get("conditions") or {}).get("ready")
            for address in endpoint["addresses"]
        ]
        return addresses or None

    assert wait_for(ready_addresses, timeout=WAIT, describe="an EndpointSlice with the Pod") == [
        pod_ip
    ]

    status, body = _http_get(
        lab.http01_port, f"{host}:{lab.http01_port}", "/.well-known/acme-challenge/x?y=1"
    )
    assert status == 200, body
    name, address, path = body.split(" ")
    assert (name, path) == ("web", "/.well-known/acme-challenge/x?y=1")
    assert ipaddress.ip_address(address).is_loopback, "the process listens on loopback"
    assert _http_get(lab.http01_port, f"nobody.{ns.name}.example", "/")[0] == 404


def test_deleting_a_pod_stops_its_process_and_removes_the_pod(ns: Namespace) -> None:
    ns.create("pods", _pod_spec("doomed", placement=ns.placement))
    pid = _pid(ns.wait_pod("doomed", "Ready"))
    assert Path(f"/proc/{pid}").exists()

    # A bound Pod's deletion is graceful: the API server waits for the node to confirm.
    ns.delete_pod("doomed")
    ns.wait_gone("doomed")
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=5, describe=f"process {pid} to end")


def test_an_unlabelled_pod_stays_pending_and_untouched(ns: Namespace) -> None:
    created = ns.create("pods", _pod_spec("ignored", placement=ns.placement, labelled=False))
    # A labelled Pod created afterwards becoming Ready shows the agent has seen both.
    ns.create("pods", _pod_spec("witness", placement=ns.placement))
    ns.wait_pod("witness", "Ready")

    pod = ns.get("pods", "ignored")
    assert pod is not None
    # Unbound, or bound to the agent's Node by the test itself: either way not run.
    assert pod["spec"].get("nodeName") == ns.placement.get("nodeName")
    assert pod["status"].get("phase") == "Pending"
    assert pod["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"], (
        "nobody wrote to it"
    )
    # Bound but never run, it would wait for a kubelet to confirm a graceful deletion, and hold
    # its namespace in Terminating: delete it at once, as for a Pod on a gone node.
    ns.api.request("DELETE", ns.path("pods", "ignored"), body={"gracePeriodSeconds": 0})
    ns.wait_gone("ignored")


def test_a_pod_whose_process_exits_reports_the_exit_code(ns: Namespace) -> None:
    command = ["python3", "-c", "import sys; print('bye'); sys.exit(3)"]
    ns.create("pods", _pod_spec("quitter", placement=ns.placement, command=command))

    pod = ns.wait_pod("quitter", "Failed")
    state = pod["status"]["containerStatuses"][0]["state"]
    assert state["terminated"]["exitCode"] == 3, json.dumps(state)
    assert _condition(pod, "Ready") == "False"


def test_a_pod_ignoring_sigterm_is_killed_after_a_capped_grace_period(ns: Namespace) -> None:
    pod = _pod_spec(
        "stubborn",
        placement=ns.placement,
        command=["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
    )
    pod["spec"]["terminationGracePeriodSeconds"] = 300
    del pod["spec"]["containers"][0]["readinessProbe"], pod["spec"]["containers"][0]["ports"]
    ns.create("pods", pod)
    pid = _pid(ns.wait_pod("stubborn", "Ready"))

    began = time.monotonic()
    ns.delete_pod("stubborn")
    ns.wait_gone("stubborn")
    assert time.monotonic() - began < 10, "the agent does not wait out a 300s grace period"
    assert not Path(f"/proc/{pid}").exists()
