"""Restart safety and CA faults in the lab: the operator SIGKILLed at each issuance step, a CA
that rejects half of all nonces, and a CA that goes away and comes back with a new root.

Each test runs its own Pebble (``tests.lab.pebbles``), so Pebble's own log counts the orders it
received: "exactly one ACME order" is checked at the CA, not only in what the operator says.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest

from acmebridge.adapters.kube import Kube, core_path, ours_path
from acmebridge.domain.secret import pending_key_name
from tests.lab.conftest import make_certificate
from tests.lab.operator_proc import OperatorProcess
from tests.lab.pebbles import ExtraPebble, pebble_factory  # noqa: F401
from tests.lab.test_issuance import ready, solver_objects
from tests.lab.test_renewal import (
    GROUP,
    SECRET_CHECK,
    VERSION,
    assert_secret_matches,
    certificate,
    events,
    explain,
    pebble_issuer,
    wait_revision,
)
from tests.lab.waits import condition, get_object, wait_for

pytestmark = pytest.mark.lab

# Long enough that neither the plain schedule nor Pebble's ARI window (two thirds of the lifetime,
# give or take a day) can make a second order during a test.
VALIDITY = 90 * 24 * 3600
NAMES = ["web.restart.lab.test"]


def leftovers(k: Kube, namespace: str, name: str, uid: str) -> list[str]:
    """Solver objects and the pending key Secret still present for this Certificate."""
    left = solver_objects(k, namespace)
    if k.get(core_path("secrets", namespace, pending_key_name(name, uid))) is not None:
        left.append(f"Secret {pending_key_name(name, uid)}")
    return left


@pytest.mark.parametrize(
    "point",
    [
        pytest.param("new_order", id="killed right after newOrder, before the journal says so"),
        pytest.param("present", id="killed right after presenting the solver objects"),
        pytest.param("answer_challenge", id="killed right after answering the challenge"),
        pytest.param("finalize", id="killed right after finalizing the order"),
    ],
)
def test_sigkill_right_after_each_step_then_restart_completes_with_one_order(
    k: Kube,
    namespace: str,
    pebble_factory: Callable[..., ExtraPebble],  # noqa: F811
    operator_factory: Callable[..., OperatorProcess],
    point: str,
) -> None:
    pebble = pebble_factory(validity=VALIDITY)
    first = operator_factory(namespace, extra=[SECRET_CHECK], kill_after=point)
    issuer = pebble_issuer(k, namespace, pebble)
    created = make_certificate(k, namespace, "web", issuerRef={"name": issuer}, dnsNames=NAMES)
    uid = created["metadata"]["uid"]
    wait_for(
        lambda: not first.alive(),
        timeout=60,
        describe=lambda: (
            f"the operator to die after {point}\n" + explain(k, certificate(k, namespace, "web"))
        ),
    )
    assert first.proc.returncode == -signal.SIGKILL, first.log_text()[-3000:]
    print(f"killed after {point}; left then: {leftovers(k, namespace, 'web', uid)}")

    operator_factory(namespace, extra=[SECRET_CHECK])
    done = wait_revision(k, namespace, "web", 1)

    # Exactly one ACME order, counted at the CA: the restart found and resumed the one that
    # was created before the kill (for newOrder, by the account's order list).
    assert len(pebble.orders_added()) == 1, pebble.orders_added()
    assert done["status"]["revision"] == 1
    assert_secret_matches(k, namespace, "web-tls", dns_names=NAMES, root_pem=pebble.root_pem())
    # Nothing of the issuance is left behind.
    wait_for(
        lambda: not leftovers(k, namespace, "web", uid),
        timeout=30,
        describe=lambda: f"no leftovers, found {leftovers(k, namespace, 'web', uid)}",
    )
    assert "order" not in done["status"] and "issuingSince" not in done["status"]


def test_twenty_certificates_pending_after_a_restart_register_the_account_once(
    k: Kube,
    namespace: str,
    pebble_factory: Callable[..., ExtraPebble],  # noqa: F811
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    pebble = pebble_factory(validity=VALIDITY)
    first = operator_factory(namespace, extra=[SECRET_CHECK])
    issuer = pebble_issuer(k, namespace, pebble, ca=False)
    first.stop(signal.SIGKILL)
    names = [f"c{i:02d}" for i in range(20)]
    for name in names:
        make_certificate(
            k, namespace, name, issuerRef={"name": issuer}, dnsNames=[f"{name}.once.lab.test"]
        )
    # A new process: no account in memory, the Issuer and twenty Certificates all asking for it
    # at once. One registers; the others wait for it and share the result.
    second = operator_factory(namespace, extra=[SECRET_CHECK])
    for name in names:
        wait_revision(k, namespace, name, 1)
    assert second.acme_requests().get("new_account") == 1, second.acme_requests()


def test_issues_while_the_ca_rejects_half_of_all_nonces(
    k: Kube,
    namespace: str,
    pebble_factory: Callable[..., ExtraPebble],  # noqa: F811
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    pebble = pebble_factory(validity=VALIDITY, env={"PEBBLE_WFE_NONCEREJECT": "50"})
    assert "Configured to reject 50% of good nonces" in pebble.log_text()
    operator = operator_factory(namespace, extra=[SECRET_CHECK])
    issuer = pebble_issuer(k, namespace, pebble)
    make_certificate(k, namespace, "web", issuerRef={"name": issuer}, dnsNames=NAMES)
    done = wait_revision(k, namespace, "web", 1)
    assert_secret_matches(k, namespace, "web-tls", dns_names=NAMES, root_pem=pebble.root_pem())
    rejected = operator.log_text().count("urn:ietf:params:acme:error:badNonce")
    assert rejected > 0, "no nonce was rejected: the test proved nothing"
    failures = [e["message"] for e in events(k, namespace, "web", "Failed")]
    print(f"{rejected} nonces rejected; failed attempts: {failures}")
    # A rejected nonce is retried with the next one, so half of them rejected costs requests,
    # not attempts: a dozen POSTs each failing only after 8 rejections in a row make two failed
    # attempts about a one-in-a-thousand event (with a single retry, most runs see several).
    assert len(failures) <= 1, failures
    assert len(pebble.orders_added()) == 1, explain(k, done)


def test_ca_restarted_with_a_new_root_recovers_without_manual_action(
    k: Kube,
    namespace: str,
    pebble_factory: Callable[..., ExtraPebble],  # noqa: F811
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    pebble = pebble_factory(validity=VALIDITY)
    operator_factory(namespace, extra=[SECRET_CHECK])
    # No issuingCABundle: the root changes with the restart, and ca.crt is not the point here.
    issuer = pebble_issuer(k, namespace, pebble, ca=False)
    account = ready(k, namespace, issuer, plural="issuers")["status"]["acme"]["uri"]
    uid = make_certificate(k, namespace, "web", issuerRef={"name": issuer}, dnsNames=NAMES)[
        "metadata"
    ]["uid"]
    wait_revision(k, namespace, "web", 1)
    old_root = pebble.root_pem()

    pebble.stop()
    wanted = [*NAMES, "more.restart.lab.test"]
    k.merge_patch(ours_path("certificates", namespace, "web"), {"spec": {"dnsNames": wanted}})

    def waiting() -> dict[str, Any] | None:
        obj = certificate(k, namespace, "web")
        issuing = condition(obj, "Issuing") or {}
        return obj if issuing.get("reason") == "ACMEServerUnavailable" else None

    # A CA that is down is everyone's outage, not this Certificate's failure: it waits for the
    # server's probe, counting nothing.
    down = wait_for(
        waiting,
        timeout=60,
        describe=lambda: (
            "waiting for the CA while it is down\n" + explain(k, certificate(k, namespace, "web"))
        ),
    )
    assert not down["status"].get("failedIssuanceAttempts"), down["status"]
    pebble.start()
    assert pebble.root_pem() != old_root

    done = wait_revision(k, namespace, "web", 2, timeout=120)
    assert_secret_matches(k, namespace, "web-tls", dns_names=wanted, root_pem=pebble.root_pem())
    assert not done["status"].get("failedIssuanceAttempts"), done["status"]
    # The Issuer shows the account registered again at the new CA.
    fresh = get_object(k.api, GROUP, VERSION, "issuers", namespace, issuer)
    assert fresh is not None and (condition(fresh, "Ready") or {}).get("status") == "True"
    assert fresh["status"]["acme"]["uri"] != account, fresh["status"]
    wait_for(
        lambda: not leftovers(k, namespace, "web", uid),
        timeout=30,
        describe=lambda: f"no leftovers, found {leftovers(k, namespace, 'web', uid)}",
    )
