"""Two replicas of the chart's HA values on the real node: one works, and it hands over.

With `replicas: 2` the chart runs a StatefulSet whose Pods peer through kopf, each with its
ordinal as its priority (docs/install.md, "High availability"): the replica with the highest
ordinal works and the other stands by. The tests read who worked from each Pod's own metrics
(fetched from its address) and the peering decisions from each container's log. Deleting the
working replica's Pod stops it cleanly: it leaves the peering object, and the standby resumes
within ``HANDOVER_SECONDS``, the time docs/install.md gives; the StatefulSet's replacement then
takes the work back. The tests run in file order and share the release.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.lab.labenv import Lab
from tests.lab.waits import wait_for
from tests.node.release import (
    JSON,
    TIMEOUT,
    Release,
    certificate,
    container_log,
    is_ready,
    kubectl_json,
    metrics,
    operator_pods,
    pebble_issuer,
    sample,
    wait_ready_certificate,
)
from tests.node.release import release as make_release

# docs/install.md: a replica whose Pod is deleted hands over within this many seconds.
HANDOVER_SECONDS = 10
RECONCILES = "acmebridge_controller_reconcile_total"
PAUSED = "Pausing operations in favour of"
RESUMED = "Resuming operations after the pause"


@pytest.fixture(scope="module")
def release(
    lab: Lab, node: str, helm: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    # kopf's peering CRDs may be in the lab already (other releases, other kopf operators);
    # then this release must not try to own them (the chart's README says so).
    existing = lab.kubectl(
        "get", "crd", "kopfpeerings.kopf.dev", "--ignore-not-found", "-o", "name"
    )
    folder = tmp_path_factory.mktemp("node-ha")
    yield from make_release(
        lab, helm, folder, "node-ha", replicas=2, peering={"createCRDs": not existing.strip()}
    )


def replicas(lab: Lab, release: Release) -> dict[int, JSON]:
    """The Ready Pods of the StatefulSet by ordinal."""
    return {
        int(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"]): p
        for p in operator_pods(lab, release)
        if is_ready(p)
    }


def reconciles(pod: JSON, kind: str) -> float:
    return sample(metrics(pod), RECONCILES, {"kind": kind})


def log_lines(lab: Lab, pod: JSON, text: str) -> list[datetime]:
    return [when for when, line in container_log(lab, pod) if text in line]


def paused(lab: Lab, pod: JSON) -> bool:
    """Whether the replica's last peering decision was to pause. A replica with a peering
    name starts paused (kopf logs nothing for that) and says so only when it resumes."""
    decisions = [(t, PAUSED) for t in log_lines(lab, pod, PAUSED)]
    decisions += [(t, RESUMED) for t in log_lines(lab, pod, RESUMED)]
    return not decisions or max(decisions)[1] == PAUSED


def test_only_the_replica_with_the_highest_ordinal_reconciles(
    lab: Lab, helm: Path, release: Release
) -> None:
    ns = release.namespace
    release.install(helm, lab)

    def both() -> dict[int, JSON] | None:
        found = replicas(lab, release)
        return found if len(found) == 2 else None

    pods = wait_for(both, timeout=TIMEOUT, describe="both replicas Ready")
    peering = ["-n", ns, "get", "kopfpeering", release.name]
    wait_for(
        lambda: len(kubectl_json(lab, *peering).get("status") or {}) == 2,
        timeout=TIMEOUT,
        describe=lambda: f"both replicas in the peering object: {kubectl_json(lab, *peering)}",
    )
    leader, standby = pods[1], pods[0]
    # The replicas create the peering object as they start (no Helm hook): the leader resumes
    # once it has seen the object, the standby stays (or goes back to being) paused.
    wait_for(
        lambda: not paused(lab, leader) and paused(lab, standby),
        timeout=TIMEOUT,
        describe=f"{leader['metadata']['name']} to work, {standby['metadata']['name']} to pause",
    )
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(pebble_issuer(lab, ns, "pebble")))
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(certificate(ns, "first")))
    wait_ready_certificate(lab, ns, "first")

    assert reconciles(leader, "certificates") > 0
    assert reconciles(leader, "issuers") > 0
    assert reconciles(standby, "certificates") == 0, "the standby replica reconciled"
    assert reconciles(standby, "issuers") == 0, "the standby replica reconciled"
    assert paused(lab, standby), "the standby replica resumed"


def test_deleting_the_working_replicas_pod_hands_over(lab: Lab, release: Release) -> None:
    ns = release.namespace
    pods = replicas(lab, release)
    leader, standby = pods[1], pods[0]
    deleted_at = datetime.now(UTC)
    lab.kubectl("-n", ns, "delete", "pod", leader["metadata"]["name"], "--wait=false")
    resumed = wait_for(
        lambda: [t for t in log_lines(lab, standby, RESUMED) if t >= deleted_at],
        timeout=HANDOVER_SECONDS,
        describe=f"{standby['metadata']['name']} to resume (docs/install.md's handover time)",
    )[0]
    print(f"\nhandover: the standby resumed {(resumed - deleted_at).total_seconds():.1f}s after")

    # The StatefulSet replaces the Pod; the replacement outranks the standby, which pauses.
    replacement = wait_for(
        lambda: (
            (p := replicas(lab, release).get(1))
            and p["metadata"]["uid"] != leader["metadata"]["uid"]
            and p
        ),
        timeout=TIMEOUT,
        describe="the StatefulSet's replacement Pod Ready",
    )
    paused_again = wait_for(
        lambda: [t for t in log_lines(lab, standby, PAUSED) if t > resumed],
        timeout=TIMEOUT,
        describe="the standby to pause again in favour of the replacement",
    )[0]
    started = datetime.fromisoformat(
        replacement["status"]["containerStatuses"][0]["state"]["running"]["startedAt"].replace(
            "Z", "+00:00"
        )
    )
    print(
        f"the replacement's container started {(started - deleted_at).total_seconds():.1f}s "
        f"after the deletion; the standby paused again after "
        f"{(paused_again - deleted_at).total_seconds():.1f}s"
    )
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(certificate(ns, "second")))
    wait_ready_certificate(lab, ns, "second")
    assert reconciles(replacement, "certificates") > 0, "the replacement did not take over"
