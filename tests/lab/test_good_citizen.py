"""A good citizen against any ACME CA: no renewal storm when the CA says "renew now" about
certificates it has just issued, no requests to the CA while nothing can change there, a new
Certificate that says Ready=False at once, and every waiting Certificate resumed within seconds
of a CA outage ending, without counting the outage as its failure.

The CA's behaviour is real Pebble (a private one per test) or Pebble behind a test-only proxy
(tests/lab/ariproxy.py); the operator is the real one, its requests counted by its own metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from acmebridge.adapters.kube import Kube
from tests.lab.ariproxy import PastWindowProxy
from tests.lab.conftest import acme_spec, make_certificate, make_issuer
from tests.lab.manifests import b64_file
from tests.lab.operator_proc import OperatorProcess
from tests.lab.pebbles import ExtraPebble, pebble_factory  # noqa: F401
from tests.lab.test_issuance import ready
from tests.lab.test_renewal import SECRET_CHECK, certificate, events, explain, pebble_issuer
from tests.lab.waits import condition, wait_for

pytestmark = pytest.mark.lab


@pytest.fixture
def proxy(pebble_factory: Callable[..., ExtraPebble]) -> Iterator[PastWindowProxy]:  # noqa: F811
    p = PastWindowProxy(pebble_factory(validity=60))
    yield p
    p.close()


def test_a_ca_that_says_renew_now_about_every_certificate_causes_no_storm(
    k: Kube,
    namespace: str,
    proxy: PastWindowProxy,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    operator_factory(namespace, extra=[SECRET_CHECK, "--ari-recheck-max=2"])
    spec = {
        "server": proxy.directory_url,
        "caBundle": b64_file(str(proxy.pebble.tls_ca)),
        "privateKeySecretRef": {"name": "acme-account"},
        "solvers": [{"http01": {"ingress": {"ingressClassName": "lab"}}}],
    }
    make_issuer(k, namespace, "pebble", spec)
    ready(k, namespace, "pebble", plural="issuers")
    make_certificate(
        k, namespace, "web", issuerRef={"name": "pebble"}, dnsNames=["web.storm.lab.test"]
    )

    def guarded() -> dict[str, Any] | None:
        obj = certificate(k, namespace, "web")
        ready_ = condition(obj, "Ready") or {}
        return obj if ready_.get("reason") == "RenewalInfoInPast" else None

    first = wait_for(
        guarded,
        timeout=60,
        describe=lambda: (
            "Ready=True RenewalInfoInPast\n" + explain(k, certificate(k, namespace, "web"))
        ),
    )
    assert condition(first, "Ready")["status"] == "True"  # type: ignore[index]
    assert events(k, namespace, "web", "RenewalInfoInPast"), explain(k, first)
    # Watch for 45 s: the CA asks for a renewal of each new certificate every second (its
    # Retry-After), but a 60 s certificate is held back to 30 s of age (half its lifetime, the
    # floor's cap here), so at most one renewal happens, where an unguarded client renews again
    # and again.
    started = time.monotonic()
    while time.monotonic() - started < 45:
        time.sleep(1)
    orders = proxy.pebble.orders_added()
    assert 1 <= len(orders) <= 2, (orders, explain(k, certificate(k, namespace, "web")))
    assert proxy.renewal_info_requests >= 10, "the CA was not asked: the test proved nothing"


def test_waiting_on_a_solver_makes_no_requests_to_the_ca_and_says_ready_false_at_once(
    lab: Any, k: Kube, namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    operator = operator_factory(namespace)
    nowhere = [{"http01": {"ingress": {"ingressClassName": "routes-nowhere"}}}]
    make_issuer(k, namespace, "nowhere", acme_spec(lab, solvers=nowhere))
    ready(k, namespace, "nowhere", plural="issuers")
    created = time.monotonic()
    make_certificate(
        k,
        namespace,
        "web",
        issuerRef={"name": "nowhere"},
        dnsNames=["a.quiet.lab.test", "b.quiet.lab.test"],
    )

    def not_ready() -> dict[str, Any] | None:
        obj = certificate(k, namespace, "web")
        r = condition(obj, "Ready") or {}
        return obj if r.get("status") == "False" else None

    wait_for(not_ready, timeout=10, describe="Ready=False on a new Certificate")
    print(f"Ready=False {time.monotonic() - created:.2f}s after the Certificate was created")

    def waiting_visibly() -> dict[str, Any] | None:
        obj = certificate(k, namespace, "web")
        issuing = condition(obj, "Issuing") or {}
        return obj if issuing.get("reason") == "WaitingForSelfCheck" else None

    wait_for(
        waiting_visibly, timeout=30, describe=lambda: explain(k, certificate(k, namespace, "web"))
    )
    before = operator.acme_requests()
    # Nothing can change at the CA before a challenge is answered: 20 s without a request.
    time.sleep(20)
    after = operator.acme_requests()
    assert after == before, (before, after)
    assert before.get("new_order") == 1 and before.get("get_authorization") == 2, before


def test_ten_certificates_waiting_on_a_ca_outage_are_ready_within_seconds_of_its_return(
    k: Kube,
    namespace: str,
    pebble_factory: Callable[..., ExtraPebble],  # noqa: F811
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    pebble = pebble_factory()
    operator_factory(namespace, extra=[SECRET_CHECK])
    issuer = pebble_issuer(k, namespace, pebble, ca=False)
    pebble.stop()
    down_since = time.monotonic()
    names = [f"c{i}" for i in range(10)]
    for name in names:
        make_certificate(
            k, namespace, name, issuerRef={"name": issuer}, dnsNames=[f"{name}.outage.lab.test"]
        )

    def all_waiting() -> bool:
        # None has a certificate yet: each says Ready=False because its CA is unavailable.
        for name in names:
            ready_ = condition(certificate(k, namespace, name), "Ready") or {}
            if ready_.get("reason") != "ACMEServerUnavailable":
                return False
        return True

    wait_for(all_waiting, timeout=60, describe=lambda: explain(k, certificate(k, namespace, "c0")))
    issuer_obj = ready(k, namespace, issuer, status="False", plural="issuers")
    assert condition(issuer_obj, "Ready")["reason"] == "ACMEServerUnavailable"  # type: ignore[index]
    # The CA stays away for a minute, as in a real outage.
    time.sleep(max(0.0, 60 - (time.monotonic() - down_since)))
    pebble.start()
    back = time.monotonic()

    def all_ready() -> bool:
        return all(
            (condition(certificate(k, namespace, n), "Ready") or {}).get("status") == "True"
            for n in names
        )

    wait_for(
        all_ready,
        timeout=15,
        describe=lambda: (
            "all ten Ready within 15 s of the CA's return\n"
            + explain(k, certificate(k, namespace, "c0"))
        ),
    )
    print(f"all ten Ready {time.monotonic() - back:.1f}s after the CA came back")
    for name in names:
        status = certificate(k, namespace, name)["status"]
        assert not status.get("failedIssuanceAttempts"), (name, status)
