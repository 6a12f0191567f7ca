"""Status patches as kubelet writes them: a Node's heartbeat, and a Pod waiting, running or ended.

Test-only code, pure. The Pod patches are strategic-merge patches for the status subresource, so
conditions merge by ``type`` and container statuses by ``name``, leaving other writers' entries
alone. A condition keeps its lastTransitionTime while its status does not change, and a
container state names the other two states as null, because a merge must not leave both
``running`` and ``terminated`` set.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

JSON = dict[str, Any]
POD_CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")
STATES = ("waiting", "running", "terminated")


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(existing: list[JSON], wanted: Mapping[str, bool], now: str) -> list[JSON]:
    """Conditions ``wanted`` says, keeping lastTransitionTime where the status is unchanged."""
    before = {c.get("type"): c for c in existing}
    result = []
    for kind, value in wanted.items():
        status = "True" if value else "False"
        old = before.get(kind, {})
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        result.append({"type": kind, "status": status, "lastTransitionTime": since or now})
    return result


def _container_status(
    pod: JSON, *, state: str, detail: JSON, ready: bool, container_id: str
) -> JSON:
    container = pod["spec"]["containers"][0]
    status = {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": ready,
        "started": state == "running",
        "restartCount": 0,
        "state": {name: (detail if name == state else None) for name in STATES},
    }
    if container_id:
        status["containerID"] = container_id
    return status


def _addresses(host_ip: str, pod_ip: str) -> JSON:
    # The IP lists merge by `ip`; a Pod restarted on another address must not report both.
    replace = {"$patch": "replace"}
    return {
        "hostIP": host_ip,
        "hostIPs": [replace, {"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [replace, {"ip": pod_ip}],
    }


def waiting(pod: JSON, *, reason: str, message: str, now: str) -> JSON:
    """The container could not be created; the Pod stays Pending (kubelet retries)."""
    existing = pod.get("status", {}).get("conditions") or []
    wanted = {"PodScheduled": True, "Initialized": True, "ContainersReady": False, "Ready": False}
    return {
        "status": {
            "phase": "Pending",
            "conditions": conditions(existing, wanted, now),
            "containerStatuses": [
                _container_status(
                    pod,
                    state="waiting",
                    detail={"reason": reason, "message": message},
                    ready=False,
                    container_id="",
                )
            ],
        }
    }


def running(
    pod: JSON,
    *,
    host_ip: str,
    pod_ip: str,
    started_at: str,
    ready: bool,
    container_id: str,
    now: str,
) -> JSON:
    existing = pod.get("status", {}).get("conditions") or []
    wanted = {"PodScheduled": True, "Initialized": True, "ContainersReady": ready, "Ready": ready}
    return {
        "status": {
            "phase": "Running",
            **_addresses(host_ip, pod_ip),
            "startTime": pod.get("status", {}).get("startTime") or started_at,
            "conditions": conditions(existing, wanted, now),
            "containerStatuses": [
                _container_status(
                    pod,
                    state="running",
                    detail={"startedAt": started_at},
                    ready=ready,
                    container_id=container_id,
                )
            ],
        }
    }


def terminated(
    pod: JSON,
    *,
    host_ip: str,
    pod_ip: str,
    started_at: str,
    exit_code: int,
    reason: str,
    message: str,
    container_id: str,
    now: str,
) -> JSON:
    """The process has ended: Succeeded on exit code 0, else Failed. Nothing restarts it."""
    existing = pod.get("status", {}).get("conditions") or []
    wanted = {"PodScheduled": True, "Initialized": True, "ContainersReady": False, "Ready": False}
    body: JSON = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started_at,
        "finishedAt": now,
    }
    if message:
        body["message"] = message
    if container_id:
        body["containerID"] = container_id
    return {
        "status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            **_addresses(host_ip, pod_ip),
            "startTime": pod.get("status", {}).get("startTime") or started_at,
            "conditions": conditions(existing, wanted, now),
            "containerStatuses": [
                _container_status(
                    pod, state="terminated", detail=body, ready=False, container_id=container_id
                )
            ],
        }
    }


def node(existing: list[JSON], *, address: str, hostname: str, now: str) -> JSON:
    """A Ready Node with a fresh heartbeat, reachable at ``address``."""
    ready = conditions(existing, {"Ready": True}, now)[0]
    ready.update(lastHeartbeatTime=now, reason="KubeletReady", message="the lab's node agent is up")
    capacity = {"pods": "110", "cpu": "2", "memory": "4Gi"}
    return {
        "status": {
            "conditions": [ready],
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": hostname},
            ],
            "capacity": capacity,
            "allocatable": capacity,
        }
    }
