"""Status patches read as kubelet's: conditions keep their history, one container state."""

from __future__ import annotations

from typing import Any

from tests.lab.standins import _status

POD: dict[str, Any] = {
    "metadata": {"name": "p", "namespace": "ns"},
    "spec": {"containers": [{"name": "solver", "image": "acmebridge:dev"}]},
    "status": {
        "startTime": "2030-01-01T00:00:00Z",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastTransitionTime": "2030-01-01T00:00:00Z",
            },
            {"type": "Ready", "status": "False", "lastTransitionTime": "2030-01-01T00:00:01Z"},
        ],
    },
}
LATER = "2030-01-01T00:05:00Z"


def _conditions(patch: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        c["type"]: (c["status"], c["lastTransitionTime"]) for c in patch["status"]["conditions"]
    }


def test_ready_pod_reports_addresses_and_changed_conditions_only() -> None:
    patch = _status.running(
        POD,
        host_ip="127.0.0.1",
        pod_ip="10.244.0.2",
        started_at=LATER,
        ready=True,
        container_id="standin://42",
        now=LATER,
    )
    status = patch["status"]
    assert (status["phase"], status["podIP"], status["podIPs"][-1]) == (
        "Running",
        "10.244.0.2",
        {"ip": "10.244.0.2"},
    )
    assert status["podIPs"][0] == {"$patch": "replace"}, "the list is replaced, not merged"
    assert status["startTime"] == "2030-01-01T00:00:00Z", "the first start time stays"
    conditions = _conditions(patch)
    assert conditions["PodScheduled"] == ("True", "2030-01-01T00:00:00Z"), "unchanged: same time"
    assert conditions["Ready"] == ("True", LATER), "changed: a new transition time"
    container = status["containerStatuses"][0]
    assert (container["name"], container["ready"], container["started"]) == ("solver", True, True)
    assert container["state"] == {
        "waiting": None,
        "running": {"startedAt": LATER},
        "terminated": None,
    }


def test_exit_code_decides_the_terminal_phase_and_clears_running() -> None:
    def finished(code: int) -> dict[str, Any]:
        patch = _status.terminated(
            POD,
            host_ip="127.0.0.1",
            pod_ip="10.244.0.2",
            started_at=LATER,
            exit_code=code,
            reason="Error" if code else "Completed",
            message="",
            container_id="standin://42",
            now=LATER,
        )
        status: dict[str, Any] = patch["status"]
        return status

    assert finished(0)["phase"] == "Succeeded"
    failed = finished(3)
    assert failed["phase"] == "Failed"
    state = failed["containerStatuses"][0]["state"]
    assert state["running"] is None and state["terminated"]["exitCode"] == 3
    assert _conditions({"status": failed})["Ready"][0] == "False"


def test_a_container_that_cannot_be_created_leaves_the_pod_pending() -> None:
    patch = _status.waiting(POD, reason="CreateContainerConfigError", message="m", now=LATER)
    assert patch["status"]["phase"] == "Pending"
    state = patch["status"]["containerStatuses"][0]["state"]
    assert state["waiting"] == {"reason": "CreateContainerConfigError", "message": "m"}
